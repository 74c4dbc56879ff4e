"""Performance reports: every figure is the registry's, the files stand alone, periods and
audiences mean what they say, and an empty period is refused."""

from __future__ import annotations

import io
import json
import math
import re
import struct
import subprocess
import sys
import zipfile
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from cs_metrics import CsMetricsError, Filters, Warehouse, get_metric, query
from cs_metrics.cli.main import main
from cs_metrics.ingestion.loader import ingest
from cs_metrics.ops import reports as R
from tests.conftest import REPO, ticket, write_csv

CHROMIUM = Path("/usr/bin/chromium")  # Debian's, as in tests/test_browser.py
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DATA_BLOCK = re.compile(
    r'<script type="application/json" id="cs-metrics-report-data">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def built(sample_wh) -> dict[str, R.RenderedReport]:
    """One rendered report per audience, February 2025 of the session's sample."""
    team = sample_wh.dimension_values("team")[0]
    rep = sample_wh.dimension_values("rep_id")[0]
    out = {}
    for audience, kw in (("executive", {}), ("team", {"team": team}),
                         ("representative", {"rep": rep})):
        out[audience] = R.render(R.build_report(sample_wh, audience, "last-month", **kw))
    return out


def embedded(rendered: R.RenderedReport) -> dict:
    """The figures as the HTML file carries them (what a reader of the file can check)."""
    match = DATA_BLOCK.search(rendered.html)
    assert match, "the HTML has no machine-readable block"
    return json.loads(match.group(1))


def same(a, b) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or pd.isna(b)
    if b is None or pd.isna(b):
        return False
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


def check_source(wh: Warehouse, rows: list[dict], src: dict) -> int:
    """Compare a table's rows with ``query`` run as the source says; returns figures checked."""
    filters = R.filters_from_json(src["filters"])
    q = query(wh, src["metrics"], by=src["by"], grain=src["grain"], filters=filters)
    checked = 0
    if src["layout"] == "long":
        got = {r["metric"]: r[src["column"]] for r in rows}
        for m in src["metrics"]:
            want = q[m].iloc[0] if len(q) else None
            assert same(got[m], want), (m, src["column"], got[m], want)
            checked += 1
        return checked
    keys = list(src["by"]) + (["period"] if src["grain"] else [])
    renamed = src.get("keys", {})
    columns = src.get("rename", {})
    suffix = src.get("suffix", "")
    if "period" in q.columns:
        q["period"] = q["period"].map(lambda d: d.isoformat())
    index = {tuple(None if pd.isna(v) else v for v in r[keys]): r for _, r in q.iterrows()}
    for row in rows:
        key = tuple(row[renamed.get(k, k)] for k in keys)
        for m in src["metrics"]:
            value = row[columns.get(m, m + suffix)]
            if key not in index:
                # a group the query has no row for: a count of zero, or nothing shown
                assert value in (0, None), (key, m, value)
                continue
            assert same(value, index[key][m]), (src["filters"], key, m, value, index[key][m])
            checked += 1
    return checked


# --- periods -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "kind", "start", "end", "prev_start"), [
    ("last-week", "week", date(2025, 2, 17), date(2025, 2, 24), date(2025, 2, 10)),
    ("last-month", "month", date(2025, 2, 1), date(2025, 3, 1), date(2025, 1, 1)),
    ("2025-01", "month", date(2025, 1, 1), date(2025, 2, 1), date(2024, 12, 1)),
    ("2025-02-01:2025-02-14", "range", date(2025, 2, 1), date(2025, 2, 15), date(2025, 1, 18)),
])
def test_periods_are_read_against_the_data(sample_wh, spec, kind, start, end, prev_start):
    # the sample's last ticket is on Friday 28 Feb 2025 and its data reaches 23:43 that day
    p = R.resolve_period(sample_wh, spec)
    assert (p.kind, p.date_from, p.date_to, p.previous_from, p.previous_to) == (
        kind, start, end, prev_start, start)


@pytest.mark.parametrize("spec", ["yesterday", "2025-13", "2025-02-30:2025-03-01",
                                  "2025-03-01:2025-02-01", "2025-02-01", ""])
def test_a_bad_period_says_what_is_allowed(sample_wh, spec):
    with pytest.raises(CsMetricsError, match="last-week|month|ends before|does not exist"):
        R.resolve_period(sample_wh, spec)


def tiny(tmp_path: Path, rows: list[dict]) -> Warehouse:
    folder = tmp_path / "src"
    write_csv(folder, "tickets", rows)
    ingest(folder, db=tmp_path / "wh.duckdb")
    return Warehouse(tmp_path / "wh.duckdb", read_only=True)


@pytest.mark.parametrize(("last", "week_start"), [
    ("2024-01-14 10:00:00", date(2024, 1, 1)),  # Sunday cut short: that week is not complete
    ("2024-01-14 23:30:00", date(2024, 1, 8)),  # the data reaches Sunday's last hour
])
def test_last_week_needs_its_sunday_complete(tmp_path, last, week_start):
    wh = tiny(tmp_path, [ticket("A", "2024-01-02 09:00:00"), ticket("B", last)])
    p = R.resolve_period(wh, "last-week")
    assert (p.date_from, p.date_to) == (week_start, date.fromordinal(week_start.toordinal() + 7))
    wh.close()


# --- every figure is the registry's --------------------------------------------------------------


@pytest.mark.parametrize("audience", ["executive", "team", "representative"])
def test_every_figure_equals_query(built, sample_wh, audience):
    rendered = built[audience]
    data = embedded(rendered)
    assert data == json.loads(rendered.json_text)  # the HTML's block is report.json
    checked = 0
    for key, table in data["tables"].items():
        if key not in ("changes", "rep_trend"):
            assert table["sources"], f"{key} names no query"
        for src in table["sources"]:
            checked += check_source(sample_wh, table["rows"], src)
    assert checked > 100
    # what the reader sees: each KPI row starts with its label and the registry's figure
    scope = data["scope"]
    filters = R.filters_from_json({**scope["filters"], "date_from": scope["period"]["date_from"],
                                   "date_to": scope["period"]["date_to"]})
    kpis = [r["metric"] for r in data["tables"]["kpis"]["rows"]]
    want = query(sample_wh, kpis, filters=filters).iloc[0]
    for name in kpis:
        metric = get_metric(name)
        cell = f'<td>{metric.label}</td><td class="num">{metric.display(want[name])}</td>'
        assert cell in rendered.html, cell
        assert f"| {metric.label} | {metric.display(want[name])} |" in rendered.markdown


def test_scope_names_period_dataset_run_and_definitions(built, sample_wh):
    scope = embedded(built["executive"])["scope"]
    assert scope["period"]["label"] == "February 2025"
    assert scope["dataset"] == str(sample_wh.path)
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", scope["run_id"])
    assert scope["metric_version"] == R.metric_definitions_version()
    assert scope["metric_version"].startswith("registry-")
    assert scope["generated_at"] and scope["data_as_of"].startswith("2025-02-28")
    for text in (scope["run_id"], scope["metric_version"], "February 2025"):
        assert text in built["executive"].html and text in built["executive"].markdown


def test_the_definition_version_follows_the_registry(monkeypatch):
    before = R.metric_definitions_version()
    changed = dict(R.METRICS)
    changed["nps"] = R.replace(changed["nps"], kind=changed["ticket_count"].kind)
    monkeypatch.setattr("cs_metrics.ops.reports.model.METRICS", changed)
    assert R.metric_definitions_version() != before
    # counting a metric on another timestamp changes its meaning too
    changed["nps"] = R.replace(R.METRICS["nps"], time_dimension="resolved_at")
    assert R.metric_definitions_version() != before


def test_success_metrics_are_checked_against_the_settings_targets(built):
    success = built["executive"].report.success.df
    assert set(success["metric"]) >= {"sla_first_response_pct", "csat_pct", "fcr_pct"}
    for _, row in success.iterrows():
        metric = get_metric(row["metric"])
        target = R.metric_target(metric)
        assert row["target"] == target
        met = row["value"] >= target if metric.direction == "higher" else row["value"] <= target
        assert row["status"] == ("met" if met else "not met")


# --- audiences ---------------------------------------------------------------------------------


def test_a_team_report_shows_only_that_teams_representatives(built, sample_wh):
    report = built["team"].report
    team = report.scope.subject
    p = report.scope.period
    members = query(sample_wh, ["ticket_count"], by=["rep_id", "team"],
                    filters=Filters(p.date_from, p.date_to))
    mine = set(members.loc[members["team"] == team, "rep_id"])
    others = set(members.loc[members["team"] != team, "rep_id"].dropna())
    shown = set(report.representatives.df["rep_id"])
    assert shown == mine and mine
    assert set(report.teams.df["team"]) == {team}
    rows = embedded(built["team"])["tables"]["representatives"]["rows"]
    assert {r["rep_id"] for r in rows} == mine
    for rep_id in others:
        assert rep_id not in built["team"].html


def test_a_manager_stands_for_all_of_their_teams(sample_wh):
    manager = sample_wh.dimension_values("manager")[0]
    report = R.build_report(sample_wh, "team", "last-week", team=manager)
    assert dict(report.scope.filters.where) == {"manager": (manager,)}
    assert set(report.managers.df["manager"]) == {manager}
    assert "teams of" in report.scope.title


def test_a_representative_is_set_against_the_team_median(built, sample_wh):
    report = built["representative"].report
    rep_id = dict(report.scope.filters.where)["rep_id"][0]
    team = query(sample_wh, ["ticket_count"], by=["team"], filters=Filters.build(rep_id=rep_id))
    team = team.sort_values("ticket_count").iloc[-1]["team"]
    p = report.scope.period
    per_rep = query(sample_wh, ["ticket_count", "avg_resolution_h", "csat_pct"], by=["rep_id"],
                    filters=Filters.build(p.date_from, p.date_to, team=team))
    kpis = report.kpis.df.set_index("metric")
    for name in ("ticket_count", "avg_resolution_h", "csat_pct"):
        assert same(kpis.at[name, "team_median"], per_rep[name].median())
    # one person's report lists no colleague
    assert report.representatives is None and report.teams is None
    colleagues = set(per_rep["rep_id"].dropna()) - {rep_id}
    assert colleagues and not any(c in built["representative"].html for c in colleagues)


@pytest.mark.parametrize(("kw", "message"), [
    ({"audience": "team"}, "needs --team"),
    ({"audience": "team", "team": "Nobody"}, "no team or manager 'Nobody'"),
    ({"audience": "representative", "rep": "R9999"}, "no representative 'R9999'"),
    ({"audience": "executive", "team": "Billing"}, "covers everyone"),
    ({"audience": "board"}, "Unknown audience"),
])
def test_a_bad_audience_choice_is_explained(sample_wh, kw, message):
    with pytest.raises(CsMetricsError, match=message):
        R.build_report(sample_wh, period="last-week", **kw)


def test_an_empty_period_is_refused_with_the_data_range(sample_wh, tmp_path):
    with pytest.raises(CsMetricsError, match=r"No tickets were created in May 2019.*01 Nov 2024"):
        R.build_report(sample_wh, "executive", "2019-05")
    with pytest.raises(CsMetricsError, match="No tickets"):
        R.build_report(sample_wh, "executive", "last-week",
                       filters=Filters.build(channel="carrier pigeon"))


# --- notable changes -----------------------------------------------------------------------------


def surge_rows() -> list[dict]:
    """Week 1: 40 chat and 40 email tickets; week 2: 40 chat and 160 email."""
    rows = []
    for week, emails in ((0, 40), (7, 160)):
        for i in range(40 + emails):
            day = 1 + week + i % 7
            channel = "chat" if i < 40 else "email"
            rows.append(ticket(f"T{week}-{i}", f"2024-01-{day:02d} {8 + i % 10:02d}:00:00",
                               "closed", channel=channel,
                               domain="see https://example.com/help",
                               resolved_at=f"2024-01-{day:02d} {19 + i % 3:02d}:00:00"))
    rows.append(ticket("LAST", "2024-01-14 23:30:00", "open", channel="chat"))
    return rows


def test_notable_changes_are_found_and_their_test_is_named(tmp_path):
    wh = tiny(tmp_path, surge_rows())
    report = R.build_report(wh, "executive", "last-week")
    changes = report.changes.df
    found = {(d, v, m) for d, v, m in zip(changes["dimension"], changes["value"],
                                          changes["metric"], strict=True)}
    assert (None, None, "ticket_count") in found
    assert ("channel", "email", "ticket_count") in found
    assert ("channel", "chat", "ticket_count") not in found  # 40 -> 41: no change
    email = changes[(changes["dimension"] == "channel") & (changes["value"] == "email")].iloc[0]
    assert (email["previous"], email["current"]) == (40, 160)
    assert "Poisson rate test" in email["sentence"] and "p < 0.001" in email["sentence"]
    assert email["q_value"] < 0.05
    # the tests are stated in the report, beside the changes
    rendered = R.render(report)
    assert "Poisson rate test" in rendered.html and "two-proportion z-test" in rendered.html
    assert "Benjamini" in rendered.html
    # a value of the data that reads like an address is shown, never linked or fetched
    assert "example.com/help" in rendered.html
    assert "https://" not in rendered.html.lower() and "http://" not in rendered.html.lower()
    assert json.loads(DATA_BLOCK.search(rendered.html).group(1))["tables"]["domains"]["rows"][0][
        "domain"] == "see https://example.com/help"
    wh.close()


def test_changes_show_the_registry_figures(built, sample_wh):
    for rendered in built.values():
        report = rendered.report
        for _, row in report.changes.df.iterrows():
            by = [row["dimension"]] if row["dimension"] else []
            for col, filters in (("current", report.scope.current()),
                                 ("previous", report.scope.previous())):
                q = query(sample_wh, [row["metric"]], by=by, filters=filters)
                if by:
                    q = q[q[row["dimension"]] == row["value"]]
                assert same(row[col], q[row["metric"]].iloc[0])


# --- the files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("audience", ["executive", "team", "representative"])
def test_the_html_stands_alone(built, audience):
    page = built[audience].html
    lowered = page.lower()
    assert "http://" not in lowered and "https://" not in lowered
    assert "<link" not in lowered and "@import" not in lowered and "url(" not in lowered
    assert "@font-face" not in lowered
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) >= 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "@media print" in page and "@page" in page
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # the in-page preview is the same body, its style scoped to the report
    assert built[audience].preview_html.startswith('<div class="csm-report"><style>')


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("audience", ["executive", "team", "representative"])
def test_the_charts_are_sensible_pngs(built, audience):
    images = built[audience].images
    assert set(R.REFERENCE_CHARTS) <= set(images) and "volume_trend.png" in images
    for name, data in images.items():
        width, height = png_size(data)
        assert 600 <= width <= 4000 and 300 <= height <= 3000, (name, width, height)
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            colours = im.convert("RGB").getcolors(maxcolors=1 << 16)
            assert colours is None or len(colours) > 8, name  # not a blank image
        assert 5_000 < len(data) < 400_000, (name, len(data))
    if audience == "representative":
        assert "rep_vs_team.png" in images


def test_files_written_for_html_and_markdown(built, tmp_path):
    rendered = built["team"]
    html_files = R.write_report(rendered, tmp_path / "html", "html")
    assert sorted(p.name for p in html_files) == sorted(
        ["report.html", "report.json", *R.REFERENCE_CHARTS])
    assert (tmp_path / "html" / "report.html").read_text(encoding="utf-8") == rendered.html
    md_files = {p.name for p in R.write_report(rendered, tmp_path / "md", "md")}
    assert {"report.md", "report.json", "volume_trend.png", *R.REFERENCE_CHARTS} <= md_files
    markdown = (tmp_path / "md" / "report.md").read_text(encoding="utf-8")
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (tmp_path / "md" / image).is_file()
    with zipfile.ZipFile(io.BytesIO(rendered.markdown_zip())) as zf:
        assert {"report.md", "report.json", *R.REFERENCE_CHARTS} <= set(zf.namelist())
        assert zf.read("report.md").decode() == rendered.markdown
    with pytest.raises(CsMetricsError, match="is a file"):
        R.write_report(rendered, tmp_path / "html" / "report.html")


@pytest.mark.browser
def test_chromium_opens_the_report_offline(built, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium package)")
    sync_api = pytest.importorskip("playwright.sync_api")
    path = R.write_report(built["executive"], tmp_path / "out")[0]
    requested: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1600})

            def deny(route):  # the report must not need anything beyond its file
                requested.append(route.request.url)
                route.abort()

            page.route(re.compile(r"^(?!file:|data:).*"), deny)
            page.goto(path.as_uri())
            page.get_by_role("heading", name="Key figures").wait_for(timeout=10_000)
            loaded = page.evaluate(
                "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
            assert loaded and page.locator("img").count() >= 3
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            page.emulate_media(media="print")
            pdf = page.pdf(format="A4")
        finally:
            browser.close()
    assert requested == []
    assert (tmp_path / "report.png").stat().st_size > 50_000
    assert pdf[:5] == b"%PDF-" and len(pdf) > 50_000


# --- email -------------------------------------------------------------------------------------


class FakeSMTP:
    sent: list[dict] = []

    def __init__(self, host, port, timeout=None):
        self.calls = {"host": host, "port": port}
        FakeSMTP.sent.append(self.calls)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def starttls(self, context=None):
        self.calls["starttls"] = True

    def login(self, user, password):
        self.calls["login"] = (user, password)

    def send_message(self, msg):
        self.calls["msg"] = msg


def smtp_settings(tmp_path: Path) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(
        "[notifications.email]\nhost = 'smtp.example.org'\nport = 587\n"
        "sender = 'reports@example.org'\nrecipients = ['ops@example.org']\n"
        "username = 'bot'\npassword_env = 'TEST_REPORT_PW'\n", encoding="utf-8")
    return path


def test_the_report_goes_out_by_email(built, tmp_path, monkeypatch):
    FakeSMTP.sent = []
    monkeypatch.setattr("cs_metrics.ops.notify.smtplib.SMTP", FakeSMTP)
    monkeypatch.setenv("TEST_REPORT_PW", "s3cret")
    settings = R.load_settings(smtp_settings(tmp_path))
    to = R.send_report_email(built["team"], ["lead@example.org"], settings)
    assert to == ("lead@example.org",)
    [calls] = FakeSMTP.sent
    assert calls["starttls"] and calls["login"] == ("bot", "s3cret")
    msg = calls["msg"]
    assert msg["To"] == "lead@example.org" and "Team performance report" in msg["Subject"]
    html_part = msg.get_body(preferencelist=("html",))
    assert html_part.get_content() == built["team"].html
    attachments = list(msg.iter_attachments())
    assert [a.get_filename() for a in attachments] == [f"{built['team'].stem}.html"]
    assert "Tickets:" in msg.get_body(preferencelist=("plain",)).get_content()
    # without addresses: the settings' recipients
    assert R.send_report_email(built["team"], [], settings) == ("ops@example.org",)


def test_email_without_smtp_settings_is_explained(built, monkeypatch):
    monkeypatch.setattr("cs_metrics.ops.notify.smtplib.SMTP", FakeSMTP)
    with pytest.raises(CsMetricsError, match="notifications.email.host"):
        R.send_report_email(built["team"], ["lead@example.org"], R.load_settings())


# --- command line --------------------------------------------------------------------------------


def test_cli_writes_the_report(sample_wh, tmp_path, capsys):
    out = tmp_path / "weekly"
    team = sample_wh.dimension_values("team")[0]
    code = main(["report", "--audience", "team", "--team", team, "--period", "last-week",
                 "--out", str(out), "--db", str(sample_wh.path)])
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert {Path(p).name for p in printed} == {"report.html", "report.json", *R.REFERENCE_CHARTS}
    assert all(Path(p).is_file() for p in printed)
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["scope"]["subject"] == team and data["scope"]["period"]["spec"] == "last-week"


@pytest.mark.parametrize(("args", "message"), [
    (["--audience", "executive", "--period", "2019-05"], "No tickets were created"),
    (["--audience", "executive", "--period", "someday"], "is not a period"),
    (["--audience", "team", "--period", "last-week"], "needs --team"),
    (["--audience", "executive", "--period", "last-week", "--where", "colour=red"],
     "Unknown dimension"),
])
def test_cli_refuses_bad_input_with_exit_2_and_writes_nothing(sample_wh, tmp_path, capsys,
                                                              args, message):
    out = tmp_path / "none"
    code = main(["report", *args, "--out", str(out), "--db", str(sample_wh.path)])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_cli_emails_the_report(sample_wh, tmp_path, monkeypatch, capsys):
    FakeSMTP.sent = []
    monkeypatch.setattr("cs_metrics.ops.notify.smtplib.SMTP", FakeSMTP)
    monkeypatch.setenv("TEST_REPORT_PW", "s3cret")
    code = main(["report", "--audience", "executive", "--period", "last-week", "--format", "md",
                 "--out", str(tmp_path / "md"), "--email", "a@example.org,b@example.org",
                 "--settings", str(smtp_settings(tmp_path)), "--db", str(sample_wh.path)])
    assert code == 0
    assert "emailed the report to a@example.org, b@example.org" in capsys.readouterr().err
    assert FakeSMTP.sent[0]["msg"]["To"] == "a@example.org, b@example.org"
    assert (tmp_path / "md" / "report.md").is_file()


def test_cli_report_as_a_command(sample_wh, tmp_path):
    """The real entry point, as cron runs it."""
    res = subprocess.run(
        [sys.executable, "-m", "cs_metrics", "report", "--audience", "executive",
         "--period", "2025-02-01:2025-02-14", "--format", "md", "--out", str(tmp_path / "r"),
         "--db", str(sample_wh.path)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "r" / "report.md").read_text(encoding="utf-8").startswith(
        "# Executive performance report")
