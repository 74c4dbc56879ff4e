"""The Ticket trends page, run headless with AppTest: its figures are the library's figures."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import cs_metrics
from cs_metrics import Filters, Warehouse
from cs_metrics.core.safe_text import escape_markdown
from cs_metrics.metrics.drilldown import ticket_page
from cs_metrics.metrics.flow import resolved_per_period
from tests.conftest import REPO, open_expanders, ticket, write_csv

APP = str(REPO / "app.py")
TRENDS = "views/trends.py"
TIMEOUT = 60
DEFAULT_DAYS = 90

pytestmark = pytest.mark.usefixtures("fresh_caches")


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory) -> Path:
    """Tickets only: no domain, channel, location, customer or feedback."""
    tmp = tmp_path_factory.mktemp("trends_tiny")
    write_csv(tmp / "src", "tickets", [
        ticket("T1", "2025-01-10 10:00:00", "closed", priority="high",
               resolved_at="2025-01-10 12:00:00"),
        ticket("T2", "2025-01-12 09:30:00", "open"),
        ticket("T3", "2025-01-20 15:00:00", "in_progress", priority="low"),
        ticket("T4", "2025-01-24 08:00:00", "closed", resolved_at="2025-01-25 08:00:00"),
    ])
    cs_metrics.ingest(tmp / "src", db=tmp / "wh.duckdb")
    return tmp / "wh.duckdb"


def library(db: Path, fn):
    wh = Warehouse(db)  # read-write, like the app: one configuration per process
    try:
        return fn(wh)
    finally:
        wh.close()


def default_filters(db: Path, days: int = DEFAULT_DAYS, **where) -> Filters:
    def window(wh: Warehouse) -> tuple[date, date]:
        end = wh.as_of().date() + timedelta(days=1)
        return end - timedelta(days=days), end

    start, end = library(db, window)
    return Filters.build(start, end, **where)


def trends(monkeypatch, db: Path, params: dict | None = None, open_data: bool = True
           ) -> AppTest:
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in (params or {}).items():
        at.query_params[key] = value
    at.run()
    at.switch_page(TRENDS).run()
    assert not at.exception, [e.value for e in at.exception]
    if open_data:  # every chart's "Data": its table and downloads
        open_expanders(at)
        assert not at.exception, [e.value for e in at.exception]
    return at


def frame(at: AppTest, first_column: str, second: str | None = None) -> pd.DataFrame:
    for df in (d.value for d in at.dataframe):
        cols = list(df.columns)
        if cols[0] == first_column and (second is None or cols[1] == second):
            return df
    raise AssertionError(f"no table starting with {first_column}")


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def expected_figures(db: Path, filters: Filters, grain: str = "week") -> dict:
    def compute(wh: Warehouse) -> dict:
        return {
            "created": cs_metrics.query(wh, ["ticket_count"], grain=grain, filters=filters),
            "closed": resolved_per_period(wh, filters, grain),
            "backlog": cs_metrics.query(wh, ["backlog"], grain=grain, filters=filters),
            "backlog_end": int(cs_metrics.query(wh, ["backlog"], filters=filters)["backlog"][0]),
            "domain": cs_metrics.query(wh, ["ticket_count"], by=["domain"], filters=filters),
            "csat": cs_metrics.query(wh, ["csat_pct"], grain=grain, filters=filters),
        }

    return library(db, compute)


def assert_shows(at: AppTest, want: dict) -> None:
    shown = metrics(at)
    assert shown["Tickets created"] == f"{want['created']['ticket_count'].sum():,}"
    assert shown["Tickets closed"] == f"{want['closed']['resolved_count'].sum():,}"
    assert shown["Backlog"] == f"{want['backlog_end']:,}"
    flows = frame(at, "period", "created").set_index("period")
    created = want["created"].set_index("period")["ticket_count"]
    closed = want["closed"].set_index("period")["resolved_count"]
    assert flows["created"][flows["created"] > 0].to_dict() == created.to_dict()
    assert flows["closed"][flows["closed"] > 0].to_dict() == closed.to_dict()
    backlog = frame(at, "period", "backlog")
    assert backlog["backlog"].tolist() == want["backlog"]["backlog"].tolist()
    domains = frame(at, "domain").set_index("domain")["ticket_count"]
    assert domains.to_dict() == want["domain"].set_index("domain")["ticket_count"].to_dict()
    csat = frame(at, "period", "csat_pct")
    lib = want["csat"].dropna(subset=["csat_pct"])
    assert csat["csat_pct"].tolist() == pytest.approx(lib["csat_pct"].tolist())


def test_trends_show_the_library_figures(sample_db, monkeypatch):
    at = trends(monkeypatch, sample_db, open_data=False)
    # a chart's table and downloads are made once its "Data" is opened, not on every run
    closed = [e for e in at.expander if e.label == "Data"]
    assert len(closed) == 8 and all(not e.children for e in closed)
    assert not at.get("download_button")
    tables = len(at.dataframe)  # the tickets behind the figures, at the bottom
    open_expanders(at)
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.dataframe) == tables + 8
    assert at.title[0].value == "Ticket trends"
    assert_shows(at, expected_figures(sample_db, default_filters(sample_db)))
    # every chart's data downloads as CSV and Parquet, named after the filters
    files = [b.proto.label for b in at.get("download_button")]
    assert files.count("Download CSV") == files.count("Download Parquet") >= 8

    at.radio(key="trends_grain").set_value("month").run()
    assert not at.exception
    assert_shows(at, expected_figures(sample_db, default_filters(sample_db), grain="month"))


def test_a_filter_changes_the_figures(sample_db, monkeypatch):
    at = trends(monkeypatch, sample_db)
    before = metrics(at)["Tickets created"]
    at.multiselect(key="filter_channel").select("chat").run()
    at.selectbox(key="date_preset").select("Last 30 days").run()
    assert not at.exception
    filters = default_filters(sample_db, days=30, channel=["chat"])
    assert_shows(at, expected_figures(sample_db, filters))
    assert metrics(at)["Tickets created"] != before
    assert at.query_params["channel"] == "chat"
    assert at.query_params["range"] == "last-30-days"


def test_query_params_restore_the_filters(sample_db, monkeypatch):
    at = trends(monkeypatch, sample_db, {
        "range": "custom", "from": "2025-01-06", "to": "2025-01-19",
        "priority": ["high", "urgent"],
    })
    assert at.selectbox(key="date_preset").value == "Custom range"
    assert at.date_input(key="date_custom").value == (date(2025, 1, 6), date(2025, 1, 19))
    assert at.multiselect(key="filter_priority").value == ["high", "urgent"]
    filters = Filters.build(date(2025, 1, 6), date(2025, 1, 20), priority=["high", "urgent"])
    assert_shows(at, expected_figures(sample_db, filters))


def test_invalid_query_params_are_ignored_with_a_note(sample_db, monkeypatch):
    at = trends(monkeypatch, sample_db, {
        "range": "last-fortnight", "from": "yesterday", "channel": ["chat", "carrier pigeon"],
    })
    assert at.multiselect(key="filter_channel").value == ["chat"]
    assert at.selectbox(key="date_preset").value == "Last 90 days"
    note = next(c.value for c in at.sidebar.caption if c.value.startswith("Ignored"))
    for ignored in ("channel=carrier pigeon", "range=last-fortnight", "from=yesterday"):
        assert escape_markdown(ignored) in note, ignored  # as text, not Markdown
    assert_shows(at, expected_figures(sample_db, default_filters(sample_db, channel="chat")))


def test_drilldown_lists_the_library_tickets(sample_db, monkeypatch):
    at = trends(monkeypatch, sample_db)
    filters = default_filters(sample_db)
    domain = frame(at, "domain")["domain"][0]
    at.selectbox(key="trends_drill_by").set_value("domain").run()
    at.selectbox(key="trends_drill_value").set_value(domain).run()
    assert not at.exception
    first = library(sample_db, lambda wh: ticket_page(wh, filters, extra={"domain": domain}))
    second = library(sample_db, lambda wh: ticket_page(wh, filters, extra={"domain": domain},
                                                        offset=50))
    shown = frame(at, "ticket_id")
    assert shown["ticket_id"].tolist() == first.rows["ticket_id"].tolist()
    assert f"Tickets 1–50 of {first.total:,}, newest first" in [c.value for c in at.caption]
    at.button(key="trends_drill_next").click().run()
    assert frame(at, "ticket_id")["ticket_id"].tolist() == second.rows["ticket_id"].tolist()
    at.button(key="trends_drill_prev").click().run()
    assert frame(at, "ticket_id")["ticket_id"].tolist() == first.rows["ticket_id"].tolist()

    # a period: the tickets created in that week
    at.selectbox(key="trends_drill_by").set_value("period").run()
    week = date.fromisoformat(at.selectbox(key="trends_drill_value").value)
    page = library(sample_db, lambda wh: ticket_page(wh, filters, period=week, grain="week"))
    assert frame(at, "ticket_id")["ticket_id"].tolist() == page.rows["ticket_id"].tolist()
    created = frame(at, "period", "created").set_index("period")["created"]
    assert page.total == created[week]

    # the backlog at the end of that week: the tickets its figure counts
    at.selectbox(key="trends_drill_by").set_value("backlog").run()
    assert at.selectbox(key="trends_drill_value").value == week.isoformat()
    end = datetime.combine(week + timedelta(days=7), datetime.min.time())
    page = library(sample_db, lambda wh: ticket_page(wh, filters, open_at=end))
    assert frame(at, "ticket_id")["ticket_id"].tolist() == page.rows["ticket_id"].tolist()
    backlog = frame(at, "period", "backlog").set_index("period")["backlog"]
    assert page.total == backlog[week] > 0


def test_selecting_a_row_of_a_chart_table_lists_its_tickets(sample_db, monkeypatch):
    at = trends(monkeypatch, sample_db)
    filters = default_filters(sample_db)
    channels = frame(at, "channel", "ticket_count")
    at.session_state["data_tickets_by_channel"] = {"selection": {"rows": [1], "columns": []}}
    at.run()
    assert not at.exception
    channel = channels["channel"][1]
    assert at.selectbox(key="trends_drill_by").value == "channel"
    assert at.selectbox(key="trends_drill_value").value == channel
    page = library(sample_db, lambda wh: ticket_page(wh, filters, extra={"channel": channel}))
    assert frame(at, "ticket_id")["ticket_id"].tolist() == page.rows["ticket_id"].tolist()
    assert page.total == channels["ticket_count"][1]
    # the same selection again does not pull the list back after another choice
    at.selectbox(key="trends_drill_by").set_value("domain").run()
    assert at.selectbox(key="trends_drill_by").value == "domain"


def test_missing_dimensions_are_explained(tiny_db, monkeypatch):
    at = trends(monkeypatch, tiny_db, {"range": "all-time"})
    infos = [i.value for i in at.info]
    assert any("This dataset has no domain" in i for i in infos)
    assert any("This dataset has no channel" in i for i in infos)
    assert any("This dataset has no service location" in i for i in infos)
    assert any("This dataset has no CSAT scores" in i for i in infos)
    assert metrics(at)["Tickets created"] == "4"
    assert metrics(at)["Tickets closed"] == "2"
    # only the dimensions the dataset has are offered as filters
    assert [m.label for m in at.multiselect] == ["Priority", "Customer segment"]
