"""A warehouse holding tickets of year 0001, 2100 and 9999, written past a load's checks
(straight into its tables, then derived again): every page, report and command still
works, the default views stay on the bulk of the data, and each says what it left out."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from cs_metrics import Filters, Warehouse, query
from cs_metrics.analysis.cohorts import cohort_tables
from cs_metrics.analysis.outages import outage_impact
from cs_metrics.analysis.whatif import OutageScenario
from cs_metrics.cli.main import main
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import rebuild_derived
from cs_metrics.ingestion.loader import ingest
from cs_metrics.metrics.drilldown import bucket
from cs_metrics.metrics.live import at_risk_tickets, live_snapshot
from tests.conftest import REPO, open_expanders, ticket, write_csv

TIMEOUT = 120
IMPLAUSIBLE = ("X-0001", "X-0001-OPEN", "X-2100", "X-9999", "X-9999-OPEN")
NOTE = "5 tickets have a date outside the plausible window 1990-01-01"
# pages, and whether they show the data (and so the note); the rest manage data or the log
PAGES = {
    "overview": True, "trends": True, "representatives": True, "feedback": True,
    "seasonality": True, "outages": True, "whatif": True, "reports": True, "alerts": True,
    "data_quality": True, "data_sources": False, "audit": False,
}
FILTER_PAGES = ("overview", "trends", "representatives", "feedback", "seasonality", "outages",
                "reports")

pytestmark = pytest.mark.usefixtures("fresh_caches")

_PLANT = """
insert into tickets (ticket_id, created_at, status, first_response_at, resolved_at, priority,
    channel, domain, location, location_lat, location_lon, customer_id, rep_id, contacts,
    reopened_count, handle_time_s, subject, is_test)
select v.id, v.created, v.status, v.responded, v.resolved, v.priority, t.channel, t.domain,
    t.location, t.location_lat, t.location_lon, t.customer_id, t.rep_id, 1, 0, 300, v.id, false
from (values
    ('X-0001', timestamp '0001-01-01 00:00:00', 'closed', timestamp '0001-01-01 01:00:00',
     timestamp '2025-02-01 00:00:00', 'normal'),
    ('X-0001-OPEN', timestamp '0001-01-01 00:00:00', 'open', null, null, 'urgent'),
    ('X-2100', timestamp '2100-06-01 09:00:00', 'in_progress', null, null, 'high'),
    ('X-9999', timestamp '9999-12-31 10:00:00', 'closed', timestamp '9999-12-31 11:00:00',
     timestamp '9999-12-31 23:59:59', 'high'),
    ('X-9999-OPEN', timestamp '9999-12-31 23:59:59', 'open', null, null, 'urgent')
) v(id, created, status, responded, resolved, priority)
cross join (select * from tickets where location_lat is not null and customer_id is not null
            and rep_id is not null order by ticket_id limit 1) t;
insert into ticket_events values
    ('X-0001', timestamp '0001-01-01 00:00:00', 'open', null),
    ('X-9999', timestamp '9999-12-31 10:00:00', 'open', null),
    ('X-9999', timestamp '9999-12-31 23:59:59', 'closed', null);
insert into feedback (feedback_id, ticket_id, submitted_at, csat, nps, ces, comment) values
    ('FX-0001', 'X-0001', timestamp '0001-01-02 00:00:00', 5, 10, 1, 'Fixed in year one'),
    ('FX-9999', 'X-9999', timestamp '9999-12-31 23:59:59', 1, 0, 7, 'Awful, far future');
insert into outages (outage_id, location, lat, lon, radius_km, started_at, ended_at, severity,
    description)
select v.id, o.location, o.lat, o.lon, o.radius_km, v.started, v.ended, v.severity, v.id
from (values ('OX-FOREVER', timestamp '0001-01-01 00:00:00', timestamp '9999-12-31 23:59:59',
              'critical'),
             ('OX-FUTURE', timestamp '9999-12-31 00:00:00', null, 'major')
) v(id, started, ended, severity)
cross join (select * from outages where lat is not null order by outage_id limit 1) o;
update representatives set hired_at = date '0001-01-01'
    where rep_id = (select min(rep_id) from representatives);
update representatives set hired_at = date '9999-12-31'
    where rep_id = (select max(rep_id) from representatives);
"""


@pytest.fixture(scope="module")
def extreme_db(sample_dir, tmp_path_factory) -> Path:
    """The session's sample, loaded as usual, then the extremes written in directly and the
    derived tables rebuilt, as a script or another tool writing the file would leave it."""
    db = tmp_path_factory.mktemp("extremes") / "wh.duckdb"
    ingest(sample_dir, db=db)
    con = duckdb.connect(str(db))
    try:
        con.execute("begin")
        con.execute(_PLANT)
        rebuild_derived(con)
        con.execute("commit")
    finally:
        con.close()
    # the commands' own copy: a command opens its file afresh, and the pages of this module
    # keep theirs open with the app's configuration (one per file and process)
    shutil.copy(db, db.with_name("cli.duckdb"))
    return db


@pytest.fixture(scope="module")
def cli_db(extreme_db) -> Path:
    return extreme_db.with_name("cli.duckdb")


def _open(db: Path):
    # read-write, like the app: one process opens a DuckDB file with one configuration
    return Warehouse(db)


def test_the_data_clock_and_the_presets_keep_to_the_bulk_of_the_data(extreme_db, sample_dir,
                                                                    tmp_path):
    plain_db = tmp_path / "plain.duckdb"
    ingest(sample_dir, db=plain_db)
    wh, plain = _open(extreme_db), _open(plain_db)
    try:
        assert wh.as_of() == plain.as_of() and wh.as_of().year == 2025
        assert wh.created_range() == plain.created_range()
        count, first, last = wh.implausible()
        assert count == 5 and first == datetime(1990, 1, 1)
        assert last.date() >= date.today()
        assert plain.implausible() is None
        derived = wh.df(
            "select first_response_min, resolution_h, sla_first_response_met, "
            "sla_resolution_met from tickets where ticket_id in (?, ?, ?, ?, ?)",
            list(IMPLAUSIBLE))
        assert len(derived) == 5 and derived.isna().all().all()
        # all time: five more tickets, and the averages of the others (no 985,798 h)
        names = ["ticket_count", "avg_resolution_h", "avg_first_response_min",
                 "sla_resolution_pct", "csat_avg"]
        got, want = query(wh, names).iloc[0], query(plain, names).iloc[0]
        assert got["ticket_count"] == want["ticket_count"] + 5
        assert got["avg_resolution_h"] == pytest.approx(want["avg_resolution_h"])
        assert got["avg_first_response_min"] == pytest.approx(want["avg_first_response_min"])
        assert got["sla_resolution_pct"] == pytest.approx(want["sla_resolution_pct"])
        # the default view (last 90 days of data) is the same on both
        end = date(2025, 3, 1)
        window = Filters(date(2024, 12, 1), end)
        # equal but for the order a parallel sum adds its floats in (the two files' rows
        # are stored in different orders)
        pd.testing.assert_frame_equal(query(wh, names, filters=window),
                                      query(plain, names, filters=window), rtol=1e-12)
        # the live queue is the queue of the plausible tickets up to now: nobody has waited
        # since year 1, and a ticket of 9999 has not arrived
        got_live, want_live = live_snapshot(wh), live_snapshot(plain)
        assert got_live.open_now > 0 and got_live.oldest_unanswered_min < 60 * 24 * 365
        assert replace(got_live, refreshed_at=None) == replace(want_live, refreshed_at=None)
        assert at_risk_tickets(wh).equals(at_risk_tickets(plain))
    finally:
        wh.close()
        plain.close()


def test_library_figures_over_every_day_stay_small_and_whole(extreme_db):
    wh = _open(extreme_db)
    try:
        everything = Filters(date(1, 1, 1), date(9999, 12, 31))
        monthly = query(wh, ["ticket_count", "avg_resolution_h"], grain="month",
                        filters=Filters())
        periods = monthly.set_index("period")
        assert periods.loc[date(1, 1, 1), "ticket_count"] == 2
        assert periods.loc[date(9999, 12, 1), "ticket_count"] == 2
        assert periods.loc[date(2100, 6, 1), "ticket_count"] == 1
        assert monthly["avg_resolution_h"].max() < 200  # no millennia of resolution
        # the backlog's days run over the plausible centuries, not from year 1 to 9999
        daily = query(wh, ["backlog"], grain="day", filters=Filters())
        assert len(daily) < 400
        assert len(query(wh, ["backlog"], grain="day", filters=everything)) <= 110_000
        summary, by_month = cohort_tables(wh, Filters(), "cohort")
        assert date(1, 1, 1) in set(summary["cohort"])
        impact = outage_impact(wh, Filters()).set_index("outage_id")
        assert impact.loc["OX-FOREVER", "hours"] != impact.loc["OX-FOREVER", "hours"]  # NaN
        assert any("2 outages started outside the plausible window" in n
                   for n in outage_impact(wh, Filters()).attrs["notes"])
    finally:
        wh.close()


@pytest.mark.parametrize("grain", ["day", "week", "month"])
def test_the_last_bucket_of_year_9999_ends_with_time(grain):
    start, end = bucket(date(9999, 12, 31), grain)
    assert start <= datetime(9999, 12, 31) and end == datetime.max
    assert bucket(date(1, 1, 3), "week")[0] == datetime(1, 1, 1)  # 0001-01-01: a Monday


def _run_page(monkeypatch, db: Path, page: str, params: dict[str, str] | None = None
              ) -> AppTest:
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    monkeypatch.setenv("CS_METRICS_BASEMAP", "off")
    at = AppTest.from_file(str(REPO / "views" / f"{page}.py"), default_timeout=TIMEOUT)
    for key, value in (params or {}).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    open_expanders(at)
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(at: AppTest) -> list[str]:
    return [e.value for e in [*at.caption, *at.markdown, *at.info, *at.warning]
            if isinstance(e.value, str)]


@pytest.mark.parametrize("page", sorted(PAGES))
def test_every_page_renders_and_says_what_it_left_out(extreme_db, monkeypatch, page):
    at = _run_page(monkeypatch, extreme_db, page)
    assert not at.error, [e.value for e in at.error]
    if PAGES[page]:
        assert any(NOTE in t for t in _texts(at)), _texts(at)
        assert any("Data as of 2025-02-28" in t for t in _texts(at))


@pytest.mark.parametrize("params", [{"range": "all-time"},
                                    {"range": "custom", "from": "0001-01-01",
                                     "to": "9999-12-31"}],
                         ids=["all-time", "from-year-1"])
@pytest.mark.parametrize("page", FILTER_PAGES)
def test_a_range_that_includes_the_extremes_renders(extreme_db, monkeypatch, page, params):
    at = _run_page(monkeypatch, extreme_db, page, params)
    assert any(NOTE in t for t in _texts(at))
    if page == "overview":
        # the cards count every ticket of the range, the extremes too
        wh = _open(extreme_db)
        try:
            everything = int(query(wh, ["ticket_count"]).iloc[0, 0])
        finally:
            wh.close()
        cards = {m.label: m.value for m in at.metric}
        if params["range"] == "all-time":
            assert cards["Tickets"] == f"{everything:,}"
        else:  # the range ends on the last plausible day: the far future stays out
            assert cards["Tickets"] == f"{everything - 3:,}"


def test_the_outages_page_says_which_outages_it_could_not_measure(extreme_db, monkeypatch):
    at = _run_page(monkeypatch, extreme_db, "outages", {"range": "all-time"})
    assert any("2 outages started outside the plausible window 1990" in t.replace("\\", "")
               for t in _texts(at)), _texts(at)


def test_the_reports_page_builds_its_report(extreme_db, monkeypatch):
    monkeypatch.setenv("CS_METRICS_DB", str(extreme_db))
    at = AppTest.from_file(str(REPO / "views" / "reports.py"), default_timeout=TIMEOUT).run()
    at.button(key="report_build").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.metric and any(NOTE in t for t in _texts(at))


def test_the_what_if_page_runs_its_simulation(extreme_db, monkeypatch):
    at = _run_page(monkeypatch, extreme_db, "whatif")
    at.session_state["wi_runs"] = 20
    next(b for b in at.button if b.label == "Run the simulation").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.metric


@pytest.mark.parametrize(("period", "label"), [("last-month", "February 2025"),
                                               ("last-week", "Week 2025-W08")])
def test_report_command_reads_periods_against_the_bulk_of_the_data(cli_db, tmp_path,
                                                                   capsys, period, label):
    out = tmp_path / "report"
    code = main(["report", "--audience", "executive", "--period", period,
                 "--db", str(cli_db), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    data = json.loads((out / "report.json").read_text())
    assert data["scope"]["period"]["label"].startswith(label)
    assert data["scope"]["data_as_of"].startswith("2025-02-28")
    assert any(note.startswith(NOTE) for note in data["notes"])
    assert NOTE in (out / "report.html").read_text()


@pytest.mark.parametrize("period", ["0001-01", "9999-12", "0001-01-01:2025-01-31",
                                    "2025-01-01:9999-12-31"])
def test_report_periods_outside_the_centuries_are_one_sentence(cli_db, tmp_path, capsys,
                                                               period):
    code = main(["report", "--audience", "executive", "--period", period,
                 "--db", str(cli_db), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert "must lie between 1900-01-01 and 2199-12-31" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_query_command_over_every_day(cli_db, tmp_path, capsys):
    out = tmp_path / "q.csv"
    code = main(["query", "--metrics", "ticket_count,avg_resolution_h,backlog", "--grain",
                 "month", "--db", str(cli_db), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    lines = out.read_text().splitlines()
    assert lines[0] == "period,ticket_count,avg_resolution_h,backlog"
    by_period = {line.split(",")[0]: line.split(",") for line in lines[1:]}
    assert by_period["0001-01-01"][1:3] == ["2", ""]
    assert by_period["9999-12-01"][1:3] == ["2", ""]
    assert len(lines) < 60  # the backlog's months stay within the plausible centuries
    counts = []
    for dates in ([], ["--from", "0001-01-01", "--to", "9999-12-31"]):
        code = main(["query", "--metrics", "ticket_count", *dates, "--db", str(cli_db),
                     "--format", "json"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        counts.append(json.loads(captured.out)[0]["ticket_count"])
    # --to is exclusive: the two tickets of 9999-12-31 fall after it
    assert counts[1] == counts[0] - 2


def test_what_if_starts_outside_the_centuries_are_refused(cli_db, capsys):
    with pytest.raises(CsMetricsError, match="between 1900-01-01 and 2199-12-31"):
        OutageScenario(start=datetime(9999, 12, 31, 10), hours=6, severity="major",
                       radius_km=5, lat=40.0, lon=-74.0)
    code = main(["simulate-outage", "--lat", "40", "--lon", "-74", "--radius-km", "5",
                 "--start", "0001-01-01T00:00", "--hours", "6", "--severity", "major",
                 "--db", str(cli_db)])
    err = capsys.readouterr().err
    assert code == 2 and "0001-01-01 00:00" in err and "Traceback" not in err


def test_a_small_load_afterwards_keeps_the_count_and_the_clock(extreme_db, tmp_path):
    """The incremental refresh of a live load leaves what a rebuild would."""
    db = tmp_path / "copy.duckdb"
    shutil.copy(extreme_db, db)
    write_csv(tmp_path / "live", "tickets", [ticket("LIVE-1", "2025-02-28 23:50:00")])
    ingest(tmp_path / "live", db=db)
    wh = _open(db)
    try:
        assert wh.implausible()[0] == 5
        assert wh.as_of() == datetime(2025, 2, 28, 23, 50)
        incremental = wh.df("select * from meta where key not in ('derived_at', "
                            "'plausible_to') order by key")
        con = wh.connection()
        con.execute("begin")
        rebuild_derived(con)
        con.execute("commit")
        rebuilt = wh.df("select * from meta where key not in ('derived_at', "
                        "'plausible_to') order by key")
    finally:
        wh.close()
    assert incremental.equals(rebuilt)
