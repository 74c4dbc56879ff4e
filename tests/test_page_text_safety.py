"""Text from the data and from a link is shown as text on the pages: never a link, an image,
HTML or a Streamlit directive. CSV downloads cannot run as spreadsheet formulas.

One hostile warehouse serves the module: a generated sample whose manager, team,
representative, channel, location, domain, city, outage and comments were rewritten into
Markdown and HTML that would phish or fetch from ``evil.example``, plus stored alerts that
quote them. Every page is opened through a link that carries more of the same.
"""

from __future__ import annotations

import io
import re
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from google.protobuf.message import Message
from streamlit.testing.v1 import AppTest

import cs_metrics
from cs_metrics import Filters, Warehouse, load_settings
from cs_metrics.analysis.leaderboard import leaderboard
from cs_metrics.core.safe_text import escape_markdown, markdown_code
from cs_metrics.ops.alerts import active_alerts, run_alerts
from simulations.generator import generate
from tests.conftest import REPO

TIMEOUT = 120

# every hostile value names evil.example (or says "evil"), so a check can find where it went
MANAGER = "[Click](http://evil.example/m) ![img](http://evil.example/m.png)"
TEAM = "<img src=http://evil.example/t.png onerror=alert(1)> Team :red[evil]"
REP = "Rep **evil**\n# Heading $x$ <script>alert('evil')</script>"
CHANNEL = "chat [evil](javascript:alert(1))"
LOCATION = "![map](http://evil.example/l.png) evil-town www.evil.example"
DOMAIN = "`tv` <b>evil</b> :material/warning: :blue[x]"
CITY = "[Evil City](http://evil.example/c) :red[now]"
OUTAGE_DESCRIPTION = "<iframe src=http://evil.example/o></iframe> [evil](http://evil.example)"
ALERT_TITLE = f"Outage suspected: {LOCATION}"
ALERT_MESSAGE = f"Tickets in {LOCATION} tripled; ask {MANAGER} <!channel>"
# a link someone crafted: values that are not in the data end up in the sidebar's note
LINK_PHISH = "[Session expired - sign in again](http://evil.example)"
LINK_PIXEL = "![x](http://evil.example/pixel.png)"
LINK = {"range": "all-time", "team": TEAM, "location": LINK_PHISH, "rep_name": LINK_PIXEL}
# text cells a spreadsheet would run; numbers that merely begin with "-" stay numbers
FORMULAS = ['=HYPERLINK("http://evil.example","x")', "=cmd|' /C calc'!A0", "@SUM(1)", "+1",
            "-1", "\t=1+1"]

# Which string fields of an element Streamlit renders as Markdown: every label and tooltip,
# the body of text elements, a metric's value and delta, the options of a radio or a select
# slider, a pill's content. A selectbox's or multiselect's options are plain text.
MARKDOWN_BODIES = {"Markdown", "Heading", "Alert", "Toast", "Metric"}
MARKDOWN_OPTIONS = {"Radio", "Slider"}
# Markup a renderer acts on where it stands unescaped in the source: a link or an image,
# HTML, a directive (:red[..], :material/..:), maths, a heading...
LIVE = re.compile(r"\]\(|!\[|<|>|:[a-z_]+\[|:material/|javascript:|\$|^\s*#", re.MULTILINE)
# ...and a bare URL, which GitHub-flavoured Markdown (Streamlit's) links wherever it stands
# in the text once escapes are resolved
AUTOLINK = re.compile(r"https?://|www\.", re.IGNORECASE)
# the one link the pages write themselves: an alert's own view, a path of this app
OWN_LINK = re.compile(r"\[Open the filtered view\]\(/[^()\s<>]*\)")
# the pages' own markup around a value: an alert's severity icon that starts its line
OWN_MARKUP = re.compile(r"^:material/[a-z_]+: ")

pytestmark = pytest.mark.usefixtures("fresh_caches")


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("hostile")
    src = tmp / "src"
    generate(src, tickets=2500, days=90, seed=5, end=datetime(2025, 3, 1))
    reps = pd.read_parquet(src / "representatives.parquet")
    first_team = reps["team"].iloc[0]
    reps.loc[reps["team"] == first_team, "manager"] = MANAGER
    reps.loc[reps["team"] == first_team, "team"] = TEAM
    reps.loc[0, "name"] = REP
    reps.to_parquet(src / "representatives.parquet", index=False)
    tickets = pd.read_parquet(src / "tickets.parquet")
    top_place = tickets["location"].value_counts().index[0]
    tickets.loc[tickets["channel"] == "chat", "channel"] = CHANNEL
    tickets.loc[tickets["location"] == top_place, "location"] = LOCATION
    tickets.loc[tickets["domain"] == tickets["domain"].iloc[0], "domain"] = DOMAIN
    tickets.to_parquet(src / "tickets.parquet", index=False)
    customers = pd.read_parquet(src / "customers.parquet")
    top_city = customers["city"].value_counts().index[0]
    customers.loc[customers["city"] == top_city, "city"] = CITY
    customers.to_parquet(src / "customers.parquet", index=False)
    outages = pd.read_parquet(src / "outages.parquet")
    outages["location"] = LOCATION
    outages["description"] = OUTAGE_DESCRIPTION
    outages.to_parquet(src / "outages.parquet", index=False)
    feedback = pd.read_parquet(src / "feedback.parquet")
    # the newest comments, which the feedback page lists first
    newest = feedback[feedback["comment"].notna()].nlargest(len(FORMULAS), "submitted_at")
    feedback.loc[newest.index, "comment"] = FORMULAS
    feedback.to_parquet(src / "feedback.parquet", index=False)
    db = tmp / "wh.duckdb"
    cs_metrics.ingest(src, db=db)

    # Alerts as the rules store them (SLA ones on this sample), rewritten to quote the data
    # as an outage alert does; one carries a link to another site.
    wh = Warehouse(db)
    try:
        assert run_alerts(wh, load_settings()).raised, "the sample should raise an alert"
    finally:
        wh.close()
    con = duckdb.connect(str(db))
    try:
        con.execute("update alerts set title = ?, message = ?, link = ?",
                    [ALERT_TITLE, ALERT_MESSAGE, "/trends?" + urlencode({"location": LOCATION})])
        con.execute("update alerts set link = 'http://evil.example/phish' where occurrence_id ="
                    " (select min(occurrence_id) from alerts)")
    finally:
        con.close()
    return db


# --- what the pages render as Markdown ---------------------------------------------------------


def _strings(msg: Message) -> list[tuple[str, str, str]]:
    """(message type, field, text) of every string in a protobuf message, nested ones too."""
    out = []
    for field, value in msg.ListFields():
        for v in value if field.is_repeated else [value]:
            if isinstance(v, Message):
                out += _strings(v)
            elif isinstance(v, str):
                out.append((msg.DESCRIPTOR.name, field.name, v))
    return out


def markdown_sources(at: AppTest) -> list[str]:
    """The Markdown source of everything the run drew that Streamlit renders as Markdown."""
    found = []
    for node in at._tree:
        proto = getattr(node, "proto", None)
        if not isinstance(proto, Message):
            continue
        for kind, field, text in _strings(proto):
            if (field in ("label", "help")
                    or (field == "body" and kind in MARKDOWN_BODIES)
                    or (field == "delta" and kind == "Metric")
                    or (field == "options" and kind in MARKDOWN_OPTIONS)
                    or (field == "content" and kind == "Option")):
                found.append(text)
    return found


def live_markup(source: str) -> list[str]:
    """What in ``source`` would render as a link, an image, HTML or a directive."""
    text = OWN_MARKUP.sub("", OWN_LINK.sub("", source))
    # an escaped character renders as itself, so it cannot start any markup...
    found = LIVE.findall(re.sub(r"\\.", "", text))
    # ...but it is part of the text that autolinks are looked for in
    return found + AUTOLINK.findall(re.sub(r"\\(.)", r"\1", text))


def assert_text_only(at: AppTest) -> list[str]:
    """Nothing hostile is rendered live, and no hostile value appears unescaped."""
    sources = markdown_sources(at)
    hostile = [s for s in sources if "evil" in s.lower()]
    assert hostile, "the run showed none of the hostile values"
    assert [(s, live_markup(s)) for s in hostile if live_markup(s)] == []
    for value in (MANAGER, TEAM, REP, CHANNEL, LOCATION, DOMAIN, CITY, LINK_PHISH,
                  LINK_PIXEL, OUTAGE_DESCRIPTION, *REP.splitlines()):
        assert not [s for s in sources if value in s], value
    return sources


def shows(sources: list[str], text: str) -> bool:
    """Whether ``text`` is shown, escaped, in one of the Markdown sources."""
    return any(escape_markdown(text) in s for s in sources)


def run_page(monkeypatch, db: Path, page: str, state: dict | None = None,
             link: dict[str, str] = LINK) -> AppTest:
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    monkeypatch.setenv("CS_METRICS_BASEMAP", "off")
    monkeypatch.delenv("CS_METRICS_SETTINGS", raising=False)
    at = AppTest.from_file(str(REPO / "views" / page), default_timeout=TIMEOUT)
    for key, value in link.items():
        at.query_params[key] = value
    for key, value in (state or {}).items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def rerun(at: AppTest, **state: object) -> AppTest:
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def selected(row: int) -> dict:
    return {"selection": {"rows": [row], "columns": []}}


def library(db: Path, fn):
    wh = Warehouse(db)
    try:
        return fn(wh)
    finally:
        wh.close()


# --- the pages -------------------------------------------------------------------------------


def test_a_crafted_link_is_text_in_the_sidebar_and_the_caption(hostile_db, monkeypatch):
    """The issue's link: its unknown values are quoted in the sidebar's note as text; a known
    hostile team filters the page and is quoted in the caption as text; a drill into a
    hostile channel names it as text."""
    at = run_page(monkeypatch, hostile_db, "trends.py",
                  {"trends_drill_by": "channel", "trends_drill_value": CHANNEL})
    assert [m.value for m in at.sidebar.multiselect if m.label == "Team"] == [[TEAM]]
    sources = assert_text_only(at)
    note = next(c.value for c in at.sidebar.caption if c.value.startswith("Ignored in the link"))
    assert escape_markdown(f"location={LINK_PHISH}") in note
    assert escape_markdown(f"rep_name={LINK_PIXEL}") in note
    assert shows([c.value for c in at.caption], f"Team: {TEAM}")
    assert f"**{escape_markdown(f'Channel: {CHANNEL}')}**" in sources


def test_representatives_names_are_text(hostile_db, monkeypatch):
    """Drills into a hostile manager, team and representative, and a hostile rep's detail."""
    boards = {level: library(hostile_db, lambda wh, lv=level: leaderboard(
        wh, Filters.build(team=TEAM), lv)) for level in ("rep", "team", "manager")}
    rep_id = boards["rep"].loc[boards["rep"]["rep_name"] == REP, "rep_id"].iloc[0]
    at = run_page(monkeypatch, hostile_db, "representatives.py", {"detail_rep": rep_id})
    shown = {d.key: d.value for d in at.dataframe if d.key}
    rows = {key: int((shown[key][col] == value).to_numpy().argmax())
            for key, col, value in (("board_rep", "rep_id", rep_id),
                                    ("board_team", "team", TEAM),
                                    ("board_manager", "manager", MANAGER))}
    rerun(at, **{key: selected(row) for key, row in rows.items()})
    sources = assert_text_only(at)
    for who, name in (("representative", REP), ("team", TEAM), ("manager", MANAGER)):
        assert f"**{escape_markdown(f'Tickets of {who} {name}')}**" in sources, who
    assert any(escape_markdown(TEAM) in c.value and escape_markdown(MANAGER) in c.value
               for c in at.caption if c.value.startswith("Team: "))


def test_an_outage_location_is_text(hostile_db, monkeypatch):
    at = run_page(monkeypatch, hostile_db, "outages.py")
    impact = next(d.value for d in at.dataframe if d.key == "outage_table")
    assert (impact["location"] == LOCATION).all()
    rerun(at, outage_table=selected(0))
    assert_text_only(at)
    assert f"Outage: {escape_markdown(LOCATION)}" in [h.value for h in at.subheader]


def test_feedback_groups_are_text(hostile_db, monkeypatch):
    """A breakdown row of a hostile team, and a comparison of it whose verdict names it."""
    at = run_page(monkeypatch, hostile_db, "feedback.py", {"fb_breakdown": "Team"})
    table = next(d.value for d in at.dataframe if d.key == "fb_breakdown_table")
    row = int((table["team"] == TEAM).to_numpy().argmax())
    other = library(hostile_db, lambda wh: [t for t in wh.dimension_values("team")
                                            if t != TEAM][0])
    rerun(at, fb_breakdown_table=selected(row), fbx_view="Compare groups",
          fbx_cmp_dim="Team", fbx_cmp_a_team=TEAM, fbx_cmp_b_team=other)
    sources = assert_text_only(at)
    assert f"**{escape_markdown(f'Tickets of team {TEAM} (with or without a survey)')}**" in \
        sources
    verdicts = [a.value for a in (*at.success, *at.info, *at.warning)]
    assert any(escape_markdown(TEAM) in v for v in verdicts), verdicts


def test_alerts_quoting_the_data_are_text(hostile_db, monkeypatch):
    """Stored alerts whose title and message quote the data; a link to another site is not
    offered; the overview pops them up as text."""
    at = run_page(monkeypatch, hostile_db, "alerts.py", link={})
    sources = assert_text_only(at)
    assert any(f"**{escape_markdown(ALERT_TITLE)}**" in s for s in sources)
    assert escape_markdown(ALERT_MESSAGE) in sources
    links = [s for s in sources if OWN_LINK.search(s)]
    active = library(hostile_db, active_alerts)
    assert len(links) == len(active) - 1  # the one to evil.example is left out
    assert all("evil.example/phish" not in s for s in sources)
    overview = run_page(monkeypatch, hostile_db, "overview.py", link={})
    assert_text_only(overview)
    toasts = [t.value for t in overview.toast]
    assert toasts and all(t.startswith(f"**{escape_markdown(ALERT_TITLE)}** — ") for t in toasts)


def test_a_reports_subject_is_text(hostile_db, monkeypatch):
    at = run_page(monkeypatch, hostile_db, "reports.py",
                  {"report_audience": "team", "report_team": TEAM, "report_period": "sidebar"})
    at.button(key="report_build").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert_text_only(at)
    assert any(escape_markdown(TEAM) in h.value for h in at.subheader)


def test_a_what_if_city_is_text(hostile_db, monkeypatch):
    at = run_page(monkeypatch, hostile_db, "whatif.py", {"wi_city": CITY, "wi_runs": 20},
                  link={})
    next(b for b in at.button if b.label == "Run the simulation").click().run()
    assert not at.exception, [e.value for e in at.exception]
    sources = assert_text_only(at)
    assert shows(sources, CITY)


def test_every_filtered_page_quotes_the_link_as_text(hostile_db, monkeypatch):
    """The pages not opened above, through the same crafted link."""
    for page in ("overview.py", "seasonality.py"):
        at = run_page(monkeypatch, hostile_db, page)
        sources = assert_text_only(at)
        assert shows(sources, f"location={LINK_PHISH}"), page
        assert shows(sources, f"Team: {TEAM}"), page


@pytest.mark.parametrize("path", ["/srv/cs/wh.duckdb", "/tmp/a`b/[x](http://evil.example)",
                                  "/tmp/``/x", "`leading", "trailing`"])
def test_a_path_shown_as_code_cannot_end_its_code_span(path):
    """A path in a code span (a setting: the warehouse, the inbox) shows as typed: no run of
    backticks in it is as long as the fence, and CommonMark strips just the padding."""
    code = markdown_code(path)
    fence = re.match("`+", code).group()
    assert code == f"{fence} {path} {fence}"
    assert max(map(len, re.findall("`+", path)), default=0) < len(fence)


# --- CSV downloads -------------------------------------------------------------------------------


def test_csv_downloads_cannot_run_formulas(hostile_db, monkeypatch, deferred_downloads):
    """The comments CSV prefixes every formula-like text cell with a quote; its Parquet keeps
    the text as written; a CSV's negative numbers stay numbers."""
    at = run_page(monkeypatch, hostile_db, "feedback.py", link={"range": "all-time"})
    assert not at.error, [e.value for e in at.error]
    made = {name: make for name, make in deferred_downloads.items()
            if name.startswith(("feedback_comments_page1_", "sentiment_by_csat_"))}
    comments_csv = next(v for k, v in made.items() if k.startswith("feedback_comments")
                        and k.endswith(".csv"))()
    comments_parquet = next(v for k, v in made.items() if k.startswith("feedback_comments")
                            and k.endswith(".parquet"))()
    csv = pd.read_csv(io.BytesIO(comments_csv), dtype={"comment": str})
    comments = csv["comment"].dropna().tolist()
    assert sorted(c for c in comments if c.startswith("'")) == sorted("'" + f for f in FORMULAS)
    assert not [c for c in comments if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    raw = pq.read_table(io.BytesIO(comments_parquet)).to_pandas()
    assert sorted(c for c in raw["comment"] if c in FORMULAS) == sorted(FORMULAS)
    assert (csv["csat"].dropna() >= 1).all()  # numbers are written as numbers
    sentiment = next(v for k, v in made.items() if k.startswith("sentiment_by_csat")
                     and k.endswith(".csv"))()
    table = pd.read_csv(io.BytesIO(sentiment))
    assert pd.api.types.is_float_dtype(table["sentiment_avg"])
    assert (table["sentiment_avg"] < 0).any(), "the lowest CSAT should read negative"
    assert "'-" not in sentiment.decode()
