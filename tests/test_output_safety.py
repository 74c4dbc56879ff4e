"""Values of the data leave the app as text: reports (HTML and Markdown), e-mail, Slack text
and CSV files show them, and nothing in them becomes markup, a mention, a header or a
spreadsheet formula. Each test feeds hostile values through the real path and checks both
that they are neutralised and that the legitimate text is still there to read."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import subprocess
import sys
from datetime import datetime, timedelta
from email.header import decode_header, make_header
from pathlib import Path

import pandas as pd
import pytest

from cs_metrics import CsMetricsError, Warehouse
from cs_metrics.cli.main import main
from cs_metrics.core import audit
from cs_metrics.core.safe_text import FORMULA_PREFIXES, xml_safe
from cs_metrics.core.settings import load_settings
from cs_metrics.ingestion.loader import ingest
from cs_metrics.ops import reports as R
from cs_metrics.ops.alerts import Alert, alert_history, run_alerts
from cs_metrics.ops.notify import deliver, slack_payload
from tests.conftest import REPO, ticket, write_csv
from tests.test_notify import Hook, SmtpStub

SCRIPT = "<script>alert(1)</script>"
LINK = "[Click](http://evil)"
IMAGE = "![x](http://evil/p.png)"
IMG_TAG = "<img src=x onerror=alert(1)>"
CHANNEL = "<!channel>"
SLACK_LINK = "<http://evil|click>"
HYPERLINK = '=HYPERLINK("http://evil","x")'
DDE = "=cmd|' /C calc'!A0"
AT_SUM = "@SUM(1)"
PIPE_TEAM = f"{LINK} | A"
CRLF_TEAM = "Ops\r\nBcc: a@evil.example"
EMPHASIS = "**bold** _it_ `code`"

DOMAINS = (HYPERLINK, DDE, AT_SUM, "Billing")
LOCATIONS = (IMG_TAG, "Paris")
SEGMENTS = (EMPHASIS, "vip")
CHANNELS = ("chat", "+1 call")
REPS = (("R1", IMAGE, PIPE_TEAM, SCRIPT), ("R2", CHANNEL, CRLF_TEAM, SLACK_LINK),
        ("R3", "Ada Lovelace", "Support", "Grace Hopper"))
COMMENTS = (f"{DDE} refund delayed again", f"{AT_SUM} refund not received",
            "-2+3 login broken password reset", "+1 login broken again")
# every value of the data the report shows in a table (and CRLF_TEAM)
REPORT_VALUES = (*DOMAINS, *LOCATIONS, *SEGMENTS, IMAGE, CHANNEL, PIPE_TEAM, SCRIPT, SLACK_LINK,
                 "Ada Lovelace", "Grace Hopper")
CHARTS = {"volume_trend.png", *R.REFERENCE_CHARTS}
R_DATA = re.compile(
    r'<script type="application/json" id="cs-metrics-report-data">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory) -> Path:
    """Two weeks of tickets whose names, places and comments are hostile."""
    folder = tmp_path_factory.mktemp("hostile_src")
    rows = []
    for i in range(56):
        day = 1 + i % 14
        rows.append(ticket(
            f"T{i}", f"2024-01-{day:02d} 10:00:00", "closed",
            first_response_at=f"2024-01-{day:02d} 10:30:00",
            resolved_at=f"2024-01-{day:02d} 15:00:00", priority="normal",
            channel=CHANNELS[i % 2], domain=DOMAINS[i % 4], location=LOCATIONS[i % 2],
            customer_segment=SEGMENTS[i % 2], rep_id=REPS[i % 3][0], subject=SCRIPT))
    write_csv(folder, "tickets", rows)
    write_csv(folder, "representatives", [
        {"rep_id": r, "name": n, "team": t, "manager": m} for r, n, t, m in REPS])
    write_csv(folder, "feedback", [
        {"ticket_id": f"T{i}", "submitted_at": "2024-01-14 18:00:00", "csat": 2, "nps": 0,
         "comment": COMMENTS[i % 4]} for i in range(56)])
    db = tmp_path_factory.mktemp("hostile_db") / "wh.duckdb"
    ingest(folder, db=db)
    return db


@pytest.fixture(scope="module")
def hostile_reports(hostile_db) -> dict[str, R.RenderedReport]:
    wh = Warehouse(hostile_db, read_only=True)
    try:
        assert CRLF_TEAM in wh.dimension_values("team")  # the line break survived the load
        return {
            "executive": R.render(R.build_report(wh, "executive", "2024-01-08:2024-01-14")),
            "team": R.render(R.build_report(wh, "team", "2024-01-08:2024-01-14",
                                            team=CRLF_TEAM)),
        }
    finally:
        wh.close()


def shown(markdown: str) -> str:
    """The text a CommonMark renderer shows: a backslash before ASCII punctuation is dropped
    and the character is literal (CommonMark 0.31, section 2.4)."""
    # the word joiner that keeps a URL from being linked is invisible
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace("\u2060", "")


# --- reports -----------------------------------------------------------------------------------


def test_markdown_report_shows_every_value_as_text(hostile_reports):
    md = hostile_reports["executive"].markdown
    for value in (SCRIPT, LINK, IMAGE, IMG_TAG, CHANNEL, SLACK_LINK, HYPERLINK, EMPHASIS):
        assert value not in md, value
    # no markup of the data's: every unescaped "<" or "](" is gone, but for the charts
    assert re.search(r"(?<!\\)<", md) is None
    assert set(re.findall(r"(?<!\\)\]\(([^)]*)\)", md)) == CHARTS
    assert not re.search(r"(?<!\\)[*_`]{1,2}(?:bold|it|code)", md)
    text = shown(md)
    for value in (*REPORT_VALUES, "Ops Bcc: a@evil.example"):  # a line break: a space
        assert value in text, value
    # the "|" of a team's name does not add a cell: every row has its table's columns
    table: list[int] = []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            table.append(len(re.findall(r"(?<!\\)\|", line)))
        elif table:
            assert len(set(table)) == 1, table
            table = []


def test_markdown_report_escapes_the_title_and_scope(hostile_reports):
    md = hostile_reports["team"].markdown
    title = md.splitlines()[0]
    assert title == r"# Team performance report\: Ops Bcc\: a\@evil\.example"
    assert r"| Audience | Team: Ops Bcc\: a\@evil\.example |" in md


def test_html_report_shows_every_value_as_text(hostile_reports):
    page = hostile_reports["executive"].html
    block = R_DATA.search(page)
    body = page.replace(block.group(0), "")
    ours = {"html", "head", "meta", "title", "style", "body", "div", "h1", "h2", "h3", "p",
            "section", "table", "thead", "tbody", "tr", "th", "td", "figure", "img", "ul",
            "li", "span"}
    assert set(re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", body)) <= ours
    assert all(src.startswith("data:image/png;base64,")
               for src in re.findall(r'<img [^>]*src="([^"]*)"', body))
    assert "href" not in body
    text = html.unescape(body)
    for value in (*REPORT_VALUES, CRLF_TEAM):
        assert value in text, value
    # the JSON block keeps the values as they are, and nothing in it can end the element
    assert "<" not in block.group(1) and ">" not in block.group(1)
    data = json.loads(block.group(1))
    assert {r["team"] for r in data["tables"]["teams"]["rows"]} == {PIPE_TEAM, CRLF_TEAM,
                                                                   "Support"}
    assert {r["manager"] for r in data["tables"]["managers"]["rows"]} == {
        SCRIPT, SLACK_LINK, "Grace Hopper"}


# --- e-mail ------------------------------------------------------------------------------------


@pytest.fixture
def smtp():
    server = SmtpStub()
    yield server
    server.close()


def mail_settings(tmp_path: Path, port: int, webhook: str = ""):
    """Settings as a user writes them: e-mail to a local server, or a webhook alone."""
    channels = ["webhook"] if webhook else ["email"]
    path = tmp_path / "settings.toml"
    path.write_text(
        f"[notifications]\nchannels = {json.dumps(channels)}\nretry_attempts = 2\n"
        "retry_base_s = 0.01\ntimeout_s = 5\napp_url = 'https://cs.example.com'\n"
        f"[notifications.webhook]\nurls = {json.dumps([webhook] if webhook else [])}\n"
        "urls_env = ''\n"
        f"[notifications.email]\nhost = '127.0.0.1'\nport = {port}\nsecurity = 'none'\n"
        "sender = 'reports@example.org'\nrecipients = ['ops@example.org']\n"
        "subject_prefix = '[cs-metrics]'\n", encoding="utf-8")
    return load_settings(path)


def test_report_email_subject_cannot_add_a_header(hostile_reports, smtp, tmp_path):
    rendered = hostile_reports["team"]
    sent = R.send_report_email(rendered, ["lead@example.org"], mail_settings(tmp_path, smtp.port))
    assert sent == ("lead@example.org",)
    [(_, rcpts, msg)] = smtp.messages
    assert rcpts == ["<lead@example.org>"]  # nobody added as a blind copy
    assert msg["Bcc"] is None and msg["Cc"] is None
    subject = str(make_header(decode_header(msg["Subject"])))
    assert subject == ("[cs-metrics] Team performance report: Ops Bcc: a@evil.example · "
                       "08 Jan 2024 – 14 Jan 2024 (7 days)")
    html_part = next(p for p in msg.walk() if p.get_content_type() == "text/html")
    html_part = html_part.get_payload(decode=True).decode("utf-8")
    # SMTP carries lines ending in CRLF; the content is the rendered report's
    assert html_part.replace("\r\n", "\n") == rendered.html.replace("\r\n", "\n")
    assert "&lt;!channel&gt;" in html_part and CHANNEL not in html_part
    assert "&lt;http&#58;//evil|click&gt;" in html_part and SLACK_LINK not in html_part


@pytest.mark.parametrize("address", ["lead@example.org\r\nBcc: a@evil.example",
                                     "lead@example.org\nX-Injected: 1", "a@b c@d"])
def test_report_email_refuses_an_address_that_spans_lines(hostile_reports, smtp, tmp_path,
                                                           address):
    with pytest.raises(CsMetricsError, match="not an email address"):
        R.send_report_email(hostile_reports["team"], [address],
                            mail_settings(tmp_path, smtp.port))
    assert smtp.messages == []


def _alert(title: str, message: str, link: str = "/trends?range=last-7-days") -> Alert:
    return Alert(id="sla_breached:all", rule="sla_breached", severity="critical", title=title,
                 message=message, figures={}, link=link, created_at=datetime(2024, 1, 10),
                 occurrence_id="sla_breached:all#1")


def test_alert_email_subject_from_the_data_stays_one_header(smtp, tmp_path):
    settings = mail_settings(tmp_path, smtp.port).notifications
    alert = _alert("x\r\nBcc: a@evil.example", f"{SCRIPT} waited {LINK}")
    rows = deliver([alert], settings, sleep=lambda s: None)
    assert [(d.channel, d.status) for d in rows] == [("email", "sent")]
    [(_, rcpts, msg)] = smtp.messages
    assert rcpts == ["<ops@example.org>"]
    assert msg["Bcc"] is None
    assert msg["Subject"] == "[cs-metrics] 1 new alert: x Bcc: a@evil.example"
    body = msg.get_payload(decode=True).decode()
    # the body is plain text: the values are there as they are, to be read
    assert f"{SCRIPT} waited {LINK}" in body


# --- Slack -------------------------------------------------------------------------------------


def test_slack_text_shows_mentions_and_links_of_the_data_as_text():
    alert = _alert(f"Outage suspected: location {CHANNEL} <@U123>",
                   f"Tickets about {SLACK_LINK} & more in {IMG_TAG}",
                   link="/trends?range=last-7-days&location=%3C%21channel%3E")
    payload = slack_payload([alert], "https://cs.example.com")
    raw = json.dumps(payload, ensure_ascii=False)
    for value in (CHANNEL, "<@U123>", SLACK_LINK, IMG_TAG):
        assert value not in raw, value
    section = payload["blocks"][1]["text"]["text"]
    assert section == (
        "*[CRITICAL] Outage suspected: location &lt;!channel&gt; &lt;@U123&gt;*\n"
        "Tickets about &lt;http://evil|click&gt; &amp; more in &lt;img src=x onerror=alert(1)"
        "&gt;\n"
        "<https://cs.example.com/trends?range=last-7-days&location=%3C%21channel%3E"
        "|Open in the app>")
    assert payload["blocks"][0]["text"]["text"] == (
        "1 new alert: Outage suspected: location &lt;!channel&gt; &lt;@U123&gt;")
    assert payload["text"] == (
        "[CRITICAL] Tickets about &lt;http://evil|click&gt; &amp; more in "
        "&lt;img src=x onerror=alert(1)&gt;")


def test_slack_link_markup_survives_an_app_url_with_slack_delimiters():
    payload = slack_payload([_alert("t", "m")], "https://cs.example.com/a|b>c")
    section = payload["blocks"][1]["text"]["text"]
    assert section.endswith(
        "<https://cs.example.com/a%7Cb%3Ec/trends?range=last-7-days|Open in the app>")
    assert section.count("|") == 1 and section.count("<") == 1


def test_slack_header_is_cut_without_breaking_an_entity():
    payload = slack_payload([_alert("<" * 200, "m")])
    header = payload["blocks"][0]["text"]["text"]
    assert len(header) <= 150
    assert re.fullmatch(r"1 new alert: (&lt;)+", header)


def test_an_alert_from_hostile_data_reaches_slack_as_text(hook_server, tmp_path):
    folder = tmp_path / "src"
    now = datetime(2024, 1, 10, 12, 0)
    fmt = "%Y-%m-%d %H:%M:%S"
    write_csv(folder, "tickets", [
        ticket(CHANNEL, (now - timedelta(minutes=30)).strftime(fmt), "open",
               priority="urgent", customer_segment="<@U123>"),
        # one answered ticket: the dataset has first responses, so the SLA rules can run
        ticket("A0", (now - timedelta(hours=2)).strftime(fmt), "closed", priority="low",
               first_response_at=(now - timedelta(hours=2) + timedelta(minutes=5)).strftime(fmt),
               resolved_at=(now - timedelta(hours=1)).strftime(fmt)),
    ])
    ingest(folder, db=tmp_path / "wh.duckdb")
    wh = Warehouse(tmp_path / "wh.duckdb")
    try:
        settings = mail_settings(tmp_path, 25, webhook=f"{hook_server.url}/ok")
        run = run_alerts(wh, settings, now=now)
        stored = alert_history(wh)["message"].tolist()
    finally:
        wh.close()
    assert [d.status for d in run.deliveries] == ["sent"]
    [(_, _, body)] = hook_server.requests
    assert CHANNEL not in body.decode() and "<@U123>" not in body.decode()
    payload = json.loads(body)
    assert "&lt;!channel&gt; (urgent, segment &lt;@U123&gt;)" in payload["text"]
    # the alert itself keeps the data as it is: escaping belongs to each renderer
    assert any(f"{CHANNEL} (urgent, segment <@U123>)" in m for m in stored)


@pytest.fixture
def hook_server():
    server = Hook()
    yield server
    server.close()


# --- CSV ---------------------------------------------------------------------------------------


def read_csv_text(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_query_csv_neutralises_formulas_on_stdout_and_in_a_file(hostile_db, tmp_path, capsys):
    args = ["query", "--metrics", "ticket_count,nps", "--by", "domain,channel",
            "--db", str(hostile_db)]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "q.csv")]) == 0
    assert (tmp_path / "q.csv").read_text(encoding="utf-8") == stdout
    rows = read_csv_text(stdout)
    assert sorted({r["domain"] for r in rows}) == sorted(
        ["'" + HYPERLINK, "'" + DDE, "'" + AT_SUM, "Billing"])
    assert {r["channel"] for r in rows} == {"'+1 call", "chat"}
    # numbers are not text: a negative NPS is written as a number
    assert {r["nps"] for r in rows} == {"-100"}
    assert sum(int(r["ticket_count"]) for r in rows) == 56


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_query_json_and_parquet_keep_the_values(hostile_db, tmp_path, fmt):
    out = tmp_path / f"q.{fmt}"
    assert main(["query", "--metrics", "ticket_count", "--by", "domain", "--format", fmt,
                 "--out", str(out), "--db", str(hostile_db)]) == 0
    df = pd.read_json(out) if fmt == "json" else pd.read_parquet(out)
    assert sorted(df["domain"]) == sorted(DOMAINS)


def test_topics_csv_neutralises_examples_and_domains(hostile_db, capsys):
    assert main(["topics", "--k", "2", "--db", str(hostile_db)]) == 0
    rows = read_csv_text(capsys.readouterr().out)
    assert rows
    for row in rows:
        for column, cell in row.items():
            if column not in ("sentiment_avg", "csat_avg"):  # numbers, negative or not
                assert not cell.startswith(FORMULA_PREFIXES), (column, cell)
    # comments that begin with a formula are examples, shown after a '
    examples = [r["examples"] for r in rows]
    assert any(e.startswith("'") and e[1:].startswith(FORMULA_PREFIXES) for e in examples)
    assert "refund" in " ".join(examples) and "login broken" in " ".join(examples)
    assert {r["main_domain"] for r in rows} <= {"'" + d for d in DOMAINS[:3]} | {"Billing"}
    assert any(float(r["sentiment_avg"]) < 0 for r in rows)  # numbers stay numbers


def test_rejects_csv_neutralises_the_values_of_the_source(tmp_path):
    folder = tmp_path / "src"
    write_csv(folder, "tickets", [
        ticket("OK1"),
        ticket("BAD1", status=DDE),
        ticket("BAD2", priority=AT_SUM),
        ticket("BAD3", created_at=HYPERLINK),
    ])
    result = ingest(folder, db=tmp_path / "wh.duckdb", rejects_csv=tmp_path / "rejects.csv")
    with open(result.rejects_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_value = {r["value"]: r for r in rows}
    assert set(by_value) == {"'" + DDE, "'" + AT_SUM, "'" + HYPERLINK}
    assert {r["source_row"] for r in rows} == {"2", "3", "4"}
    for row in rows:
        for column, cell in row.items():
            assert not cell.startswith(FORMULA_PREFIXES), (column, cell)
    # the warehouse's rejects table keeps the source's text as it was
    wh = Warehouse(tmp_path / "wh.duckdb", read_only=True)
    try:
        stored = set(wh.df("select value from rejects")["value"])
    finally:
        wh.close()
    assert stored == {DDE, AT_SUM, HYPERLINK}


def test_audit_csv_neutralises_cells_and_can_still_be_checked(tmp_path, capsys):
    db = tmp_path / "wh.duckdb"
    wh = Warehouse(db)
    try:
        audit.record(wh, "ana@example.com", "admin", "export", HYPERLINK, {"rows": 1})
        audit.record(wh, "@evil", "viewer", "export", "-report.csv", {"format": DDE})
        stored = audit.entries(wh)
    finally:
        wh.close()
    assert main(["audit", "--db", str(db)]) == 0
    rows = read_csv_text(capsys.readouterr().out)
    assert [r["target"] for r in rows] == ["'-report.csv", "'" + HYPERLINK]
    assert rows[0]["actor"] == "'@evil"
    # a cell given a leading ' loses just that to give the stored (hashed) text back
    for row, (_, want) in zip(rows, stored.iterrows(), strict=True):
        for column in ("actor", "role", "action", "target", "detail", "hash", "prev_hash"):
            cell = row[column]
            if cell.startswith("'") and cell[1:].startswith(FORMULA_PREFIXES):
                cell = cell[1:]
            assert cell == (want[column] or ""), column


# --- control characters ------------------------------------------------------------------------

# A control character XML 1.0 does not allow, anywhere in a chart's text, made vl-convert abort
# the whole process (SIGABRT) when the report's charts were drawn.
CTL_TEAMS = tuple(f"Billing{c}x" for c in ("\x00", "\x01", "\x1b", "\x0b", "\x7f"))
ESC_TEAM = "\x1b[2J\x1b]0;owned\x07" + "L" * 5000
CTL_MANAGER = "Boss\r\nFAKE LINE"
FILLER_TEAMS = tuple(f"Team {i:02d}" for i in range(22))
CHART_SCRIPT = r"""
import json, sys
import vl_convert as vlc
from cs_metrics import Warehouse
from cs_metrics.ops import reports as R

real, specs = vlc.vegalite_to_png, []
def recording(spec, *args, **kwargs):
    specs.append(spec)
    return real(spec, *args, **kwargs)
vlc.vegalite_to_png = recording
db, teams = sys.argv[1], json.loads(sys.argv[2])
wh = Warehouse(db, read_only=True)
shown = {}
for audience, team in [("executive", None)] + [("team", t) for t in teams]:
    specs.clear()
    rendered = R.render(R.build_report(wh, audience, "2024-01-08:2024-01-14", team=team))
    assert set(rendered.images) >= set(R.REFERENCE_CHARTS)
    shown[team or audience] = json.dumps(specs, ensure_ascii=False)
print(json.dumps(shown))
"""


@pytest.fixture(scope="module")
def control_db(tmp_path_factory) -> Path:
    """Two weeks of tickets of teams (and a manager) whose names hold control characters."""
    folder = tmp_path_factory.mktemp("control_src")
    teams = (*CTL_TEAMS, ESC_TEAM, *FILLER_TEAMS)
    reps = [(f"R{i}", f"Rep{i}", team, CTL_MANAGER if i == 0 else "Grace Hopper")
            for i, team in enumerate(teams)]
    rows = []
    for i in range(4 * len(reps)):
        day = 1 + 4 * (i // len(reps))  # each representative on days 1, 5, 9 and 13
        rows.append(ticket(
            f"T{i}", f"2024-01-{day:02d} 10:00:00", "closed",
            first_response_at=f"2024-01-{day:02d} 10:30:00",
            resolved_at=f"2024-01-{day:02d} 15:00:00", priority="normal", channel="chat",
            domain="Billing", customer_segment="vip", rep_id=reps[i % len(reps)][0]))
    write_csv(folder, "tickets", rows)
    # Parquet keeps a NUL that a CSV file could not carry
    pd.DataFrame([{"rep_id": r, "name": n, "team": t, "manager": m} for r, n, t, m in reps]
                 ).to_parquet(folder / "representatives.parquet")
    write_csv(folder, "feedback", [
        {"ticket_id": f"T{i}", "submitted_at": "2024-01-14 18:00:00", "csat": 4, "nps": 9}
        for i in range(4 * len(reps))])
    db = tmp_path_factory.mktemp("control_db") / "wh.duckdb"
    ingest(folder, db=db)
    wh = Warehouse(db, read_only=True)
    try:
        assert set(CTL_TEAMS) <= set(wh.dimension_values("team"))  # they survived the load
    finally:
        wh.close()
    return db


def test_report_charts_draw_names_with_control_characters(control_db):
    """The executive and a team report of such names render their PNG charts. In a
    subprocess, so an abort fails this test instead of killing the test run."""
    team = CTL_TEAMS[0]
    res = subprocess.run(
        [sys.executable, "-c", CHART_SCRIPT, str(control_db), json.dumps([team])],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    specs = json.loads(res.stdout.strip().splitlines()[-1])
    not_xml = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
    for name, spec in specs.items():
        assert not not_xml.search(spec), name
    # the executive dashboard shows every team, each control character as U+FFFD
    for name in CTL_TEAMS:
        assert json.dumps(name.translate({ord(name[7]): "\ufffd"}),
                          ensure_ascii=False) in specs["executive"]
    # the team report's chart titles name the team the same way
    assert "Billing\ufffdx: business performance" in specs[team]


def test_unknown_team_lists_the_names_escaped_and_cut(control_db):
    wh = Warehouse(control_db, read_only=True)
    try:
        with pytest.raises(CsMetricsError, match="no team or manager 'Nobody'") as err:
            R.build_report(wh, "team", "2024-01-08:2024-01-14", team="Nobody")
        with pytest.raises(CsMetricsError, match="needs --team") as missing:
            R.build_report(wh, "team", "2024-01-08:2024-01-14")
    finally:
        wh.close()
    for message in (str(err.value), str(missing.value)):
        assert message.isprintable()  # no ESC, no line break, no NUL reaches the terminal
        assert "Billing\\x00x" in message and "Billing\\x1bx" in message
        assert "Boss\\r\\nFAKE LINE" in message
        # 20 of the 28 teams, each cut at 80 characters, then how many are left out
        assert "and 8 more" in message
        cut = "\\x1b[2J\\x1b]0;owned\\x07"
        cut += "L" * (79 - len(cut))
        assert cut + "…," in message and cut + "L" not in message
        assert len(message) < 2500


def test_xml_safe_replaces_only_what_xml_does_not_allow():
    assert xml_safe("a\x00b\x01\x0b\x0c\x1b\x7f\x85\x9f\ud800\udfff\ufffe\uffffz") == (
        "a\ufffdb" + "\ufffd" * 11 + "z")
    kept = "Tab\tLF\nCR\r é ü \u00a0 \u2028 \ufffd \U0001f600 日本"
    assert xml_safe(kept) == kept
