"""The app's pages, run headless with AppTest: the numbers shown are the library's numbers."""

from __future__ import annotations

import base64
import io
from datetime import date, timedelta
from pathlib import Path

import altair as alt
import pandas as pd
import pytest
import streamlit as st
from streamlit.proto.Metric_pb2 import Metric as MetricProto
from streamlit.testing.v1 import AppTest

import cs_metrics
from cs_metrics import Filters, Warehouse, get_metric
from cs_metrics.core.safe_text import escape_markdown, markdown_code
from simulations import generator
from tests.conftest import REPO, open_expanders, ticket, write_csv
from views._overview_cards import KPI_ROWS, sparkline_svg

APP = str(REPO / "app.py")
QUALITY_PAGE = "views/data_quality.py"
TIMEOUT = 60
DEFAULT_DAYS = 90  # the Overview's default date range: the last 90 days of data
KPI_NAMES = (
    "ticket_count", "avg_first_response_min", "median_first_response_min", "avg_resolution_h",
    "open_count", "in_progress_count", "closed_count", "sla_first_response_pct", "fcr_pct",
    "csat_pct", "nps",
)

pytestmark = pytest.mark.usefixtures("fresh_caches")


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory) -> Path:
    """Tickets only, no first_response_at, no feedback; two rows that must be rejected."""
    tmp = tmp_path_factory.mktemp("app_tiny")
    write_csv(tmp / "src", "tickets", [
        ticket("T1", "2025-01-10 10:00:00", "closed", priority="high",
               resolved_at="2025-01-10 12:00:00"),
        ticket("T2", "2025-01-12 09:30:00", "open"),
        ticket("T3", "2025-01-20 15:00:00", "in_progress", priority="low"),
        ticket("T4", "2025-01-24 08:00:00", "closed", resolved_at="2025-01-25 08:00:00"),
        ticket("T5", "2025-01-21 08:00:00", "wontfix"),
        ticket("T6", "yesterday", "open"),
    ])
    cs_metrics.ingest(tmp / "src", db=tmp / "wh.duckdb")
    return tmp / "wh.duckdb"


def default_filters(wh: Warehouse, days: int = DEFAULT_DAYS) -> Filters:
    end = wh.as_of().date() + timedelta(days=1)
    return Filters(end - timedelta(days=days), end)


def expected(db: Path, metrics: list[str], days: int = DEFAULT_DAYS) -> tuple[pd.Series, Filters]:
    # Read-write, like the app: one process must open a DuckDB file with one configuration.
    wh = Warehouse(db)
    try:
        filters = default_filters(wh, days)
        return cs_metrics.query(wh, metrics, filters=filters).iloc[0], filters
    finally:
        wh.close()


def run_app(monkeypatch, db: Path | None) -> AppTest:
    if db is None:
        monkeypatch.delenv("CS_METRICS_DB", raising=False)
    else:
        monkeypatch.setenv("CS_METRICS_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


LIVE_LABELS = {"Arrivals", "Awaiting a first answer", "Oldest unanswered", "SLA at risk"}
UNRESOLVED_LABELS = {"Open now", "In progress now", "Unresolved now", "Over 30 days old"}
# The Overview's cards of the range say that they count by current status.
CARD_LABELS = {"open_count": "Still open", "in_progress_count": "Still in progress",
               "closed_count": "Closed (current status)"}


def card_label(name: str) -> str:
    return CARD_LABELS.get(name, get_metric(name).label)


def cards(at: AppTest) -> dict[str, object]:
    """The KPI cards of the range (the live panel's and the unresolved-now ones are apart)."""
    return {m.label: m for m in at.metric
            if m.label not in LIVE_LABELS | UNRESOLVED_LABELS}


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def colour(card) -> str:
    return MetricProto.MetricColor.Name(card.proto.color)


def expected_colour(change: float, fmt: str, higher_is_better: bool) -> str:
    if float(fmt % abs(change)) == 0:
        return "GRAY"
    return "GREEN" if (change > 0) == higher_is_better else "RED"


def test_overview_cards_show_the_library_numbers(sample_db, monkeypatch):
    want, _ = expected(sample_db, list(KPI_NAMES))
    at = run_app(monkeypatch, sample_db)
    shown = cards(at)
    assert set(shown) == {card_label(n) for n in KPI_NAMES}
    assert shown["Tickets"].value == get_metric("ticket_count").display(want["ticket_count"])
    for name in KPI_NAMES:
        metric = get_metric(name)
        assert shown[card_label(name)].value == metric.display(want[name]), name
    assert not at.error
    assert any(c.startswith("Data as of 2025-02-28") for c in captions(at))
    # The sample starts 90 days before its end: no earlier window to compare with.
    assert all(m.delta in ("", None) for m in cards(at).values())


def test_overview_live_panel_is_the_library_snapshot(sample_db, monkeypatch):
    from cs_metrics.metrics.live import live_snapshot

    at = run_app(monkeypatch, sample_db)
    wh = Warehouse(sample_db)
    snap = live_snapshot(wh)
    wh.close()
    live = {m.label: m for m in at.metric if m.label in LIVE_LABELS}
    assert live["Arrivals"].value == f"{snap.arrivals:,}"
    assert live["Awaiting a first answer"].value == f"{snap.waiting:,}"
    assert live["SLA at risk"].value == f"{snap.at_risk:,}"
    assert live["SLA at risk"].delta == f"{snap.breached:,} already breached"
    assert any(m.value.startswith("**Last 60 minutes** · as of 2025-02-28")
               for m in at.markdown)


def test_overview_targets_and_changes(sample_db, monkeypatch):
    names = ["ticket_count", "avg_first_response_min", "csat_pct", "nps"]
    want, filters = expected(sample_db, names, days=30)
    wh = Warehouse(sample_db)
    length = filters.date_to - filters.date_from
    before = cs_metrics.query(wh, names, filters=Filters(filters.date_from - length,
                                                         filters.date_from)).iloc[0]
    wh.close()
    at = run_app(monkeypatch, sample_db)
    at.selectbox(key="date_preset").select("Last 30 days").run()
    assert not at.exception
    shown = cards(at)
    assert shown["Tickets"].value == get_metric("ticket_count").display(want["ticket_count"])
    change = int(want["ticket_count"] - before["ticket_count"])
    assert shown["Tickets"].delta == f"{change:+,} tickets"
    csat = want["csat_pct"] - before["csat_pct"]
    assert shown["CSAT"].delta == f"{csat:+.1f} pp"
    # Ticket volume has no better direction; higher CSAT is good; a longer response is bad.
    assert colour(shown["Tickets"]) == "GRAY"
    assert colour(shown["CSAT"]) == expected_colour(csat, "%.1f", higher_is_better=True)
    response = want["avg_first_response_min"] - before["avg_first_response_min"]
    assert colour(shown["Avg first response"]) == expected_colour(
        response, "%.1f", higher_is_better=False)
    lines = captions(at)
    target = cs_metrics.metric_target(get_metric("avg_first_response_min"))
    met = want["avg_first_response_min"] <= target
    assert f"Target ≤ {target:,.1f} min · {':green[met]' if met else ':red[not met]'}" in lines
    assert any(c.startswith("Changes are against the previous 30 days") for c in lines)

    # The choice survives a visit to another page.
    at.switch_page(QUALITY_PAGE).run()
    at.switch_page("views/overview.py").run()
    assert at.selectbox(key="date_preset").value == "Last 30 days"
    assert cards(at)["Tickets"].value == get_metric("ticket_count").display(want["ticket_count"])


def test_overview_sparklines_are_the_weekly_registry_query(sample_db, monkeypatch):
    wh = Warehouse(sample_db)
    filters = default_filters(wh)
    weekly = cs_metrics.query(wh, list(KPI_NAMES), grain="week", filters=filters)
    wh.close()
    at = run_app(monkeypatch, sample_db)
    shown = cards(at)
    weekly = weekly.sort_values("period")
    assert len(weekly) >= 13  # 90 days: 13 full weeks and the partial ones at the edges
    # each card's line, in the cards' order, is the weekly query's values drawn
    order = [n for _, row in KPI_ROWS for n in row]  # the cards' order on the page
    assert set(order) == set(KPI_NAMES)
    assert sparklines(at) == [sparkline_svg(weekly[n].dropna().astype(float).tolist())
                              for n in order]
    for name in KPI_NAMES:
        assert "week by week" in shown[card_label(name)].help
        assert not shown[card_label(name)].proto.chart_data  # no Vega sparkline


def test_overview_sparklines_come_from_one_weekly_query(sample_db, monkeypatch):
    calls: list[tuple[tuple[str, ...], str | None]] = []
    real = cs_metrics.query

    def counted(wh, metrics, by=(), grain=None, filters=None):
        calls.append((tuple(metrics), grain))
        return real(wh, metrics, by, grain, filters)

    monkeypatch.setattr(cs_metrics, "query", counted)
    at = run_app(monkeypatch, sample_db)
    assert len(sparklines(at)) == len(KPI_NAMES)
    weekly = [m for m, grain in calls if grain == "week"]
    assert len(weekly) == 2
    assert set(map(frozenset, weekly)) == {frozenset(KPI_NAMES),
                                            frozenset({"ticket_count", "backlog"})}
    # a rerun is served from the cache: no query at all
    calls.clear()
    at.run()
    assert not at.exception and calls == []


def test_overview_downloads_carry_the_filters(sample_db, monkeypatch):
    at = run_app(monkeypatch, sample_db)
    at.multiselect(key="filter_channel").select("chat").run()
    assert not at.exception
    open_expanders(at)  # "Download the KPI figures"
    wh = Warehouse(sample_db)
    end = default_filters(wh).date_to
    wh.close()
    slug = f"{end - timedelta(days=DEFAULT_DAYS):%Y-%m-%d}_{end - timedelta(days=1):%Y-%m-%d}" \
        "_channel-chat"
    files = [b.help.rsplit(": ", 1)[-1] for b in at.get("download_button")]
    want = [f"{name}_{slug}.{ext}"
            for name in ("overview_kpis", "overview_kpis_weekly",
                         "overview_weekly_tickets_backlog", "overview_customer_segments")
            for ext in ("csv", "parquet")]
    assert files == want


def test_missing_inputs_have_no_sparkline(tiny_db, monkeypatch):
    at = run_app(monkeypatch, tiny_db)
    shown = cards(at)
    for label in ("Avg first response", "Median first response", "CSAT", "NPS"):
        assert shown[label].value == "–", label
    # four tickets over three weeks: the volume card still has its line, and it is the
    # first line of the page
    assert sparklines(at)[0] == sparkline_svg([2.0, 2.0])
    present = [n for n in KPI_NAMES if shown[card_label(n)].value != "–"]
    assert len(sparklines(at)) <= len(present)


def sparklines(at) -> list[str]:
    """The SVG markup of the page's sparkline images, in page order."""
    out = []
    for img in at.get("image"):
        for one in img.proto.imgs:
            head, _, data = one.url.partition(",")
            if head == "data:image/svg+xml;base64":
                out.append(base64.b64decode(data).decode("utf-8"))
    return out


def test_overview_segments_table(sample_db, monkeypatch):
    want, filters = expected(sample_db, ["ticket_count"])
    at = run_app(monkeypatch, sample_db)
    table = at.dataframe[0].value
    assert list(table.columns) == [
        "customer_segment", "customer_count", "ticket_count", "csat_pct", "share_pct",
        "segment_label",
    ]
    # the segments read by their names from the settings; the codes stay for the drill-down
    assert dict(zip(table["customer_segment"], table["segment_label"], strict=True))["M"] \
        == "Mid-market"
    assert table["ticket_count"].sum() == want["ticket_count"]
    assert table["share_pct"].sum() == pytest.approx(100.0)
    wh = Warehouse(sample_db)
    by_segment = cs_metrics.query(wh, ["csat_pct"], by=["customer_segment"], filters=filters)
    wh.close()
    merged = table.merge(by_segment, on="customer_segment", suffixes=("", "_lib"))
    assert merged["csat_pct"].tolist() == pytest.approx(merged["csat_pct_lib"].tolist())

    # selecting a segment lists its tickets
    at.session_state["segments"] = {"selection": {"rows": [1], "columns": []}}
    at.run()
    assert not at.exception
    segment = table["customer_segment"].iloc[1]
    wh = Warehouse(sample_db)
    page = cs_metrics.ticket_page(wh, filters, extra={"customer_segment": segment})
    wh.close()
    listed = next(d.value for d in at.dataframe if d.value.columns[0] == "ticket_id")
    assert listed["ticket_id"].tolist() == page.rows["ticket_id"].tolist()
    assert page.total == table["ticket_count"].iloc[1]


def test_data_quality_page_shows_the_report(sample_db, monkeypatch):
    wh = Warehouse(sample_db)
    report = cs_metrics.quality_report(wh)
    wh.close()
    at = run_app(monkeypatch, sample_db)
    at.switch_page(QUALITY_PAGE).run()
    assert not at.exception
    shown = cards(at)
    assert shown["Quality score (0–100)"].value == f"{report.score:.1f}"
    assert shown["Validity"].value == f"{100 * report.validity:.1f} %"
    assert "0.6" in shown["Quality score (0–100)"].help
    tables = at.dataframe[0].value
    assert tables["loaded"].sum() == report.tables["loaded"].sum()
    assert "No rows were rejected." in [s.value for s in at.success]


def test_missing_inputs_say_so_instead_of_a_number(tiny_db, monkeypatch):
    at = run_app(monkeypatch, tiny_db)
    shown = cards(at)
    assert shown["Tickets"].value == "4"
    for label in ("Avg first response", "Median first response"):
        assert shown[label].value == "–"
    lines = captions(at)
    assert lines.count("This dataset has no first-response times.") == 3  # avg, median, SLA
    assert "This dataset has no CSAT scores." in lines
    assert "This dataset has no NPS scores." in lines
    assert "This dataset has no contact counts." in lines
    # T1 took 2 h, T4 24 h
    assert shown["Avg resolution"].value == get_metric("avg_resolution_h").display(13.0)


def test_data_quality_lists_rejected_rows(tiny_db, monkeypatch, deferred_downloads):
    at = run_app(monkeypatch, tiny_db)
    at.switch_page(QUALITY_PAGE).run()
    assert not at.exception
    rejected = at.dataframe[-1].value
    assert list(rejected.columns) == [
        "table_name", "source_file", "source_row", "reason", "column_name", "value", "detail",
    ]
    assert sorted(rejected["reason"]) == ["unknown_status", "unparseable_timestamp"]
    assert sorted(rejected["source_row"]) == [5, 6]
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download these rows (CSV)", "Download these rows (Parquet)"]
    # the files, made on click, hold the rows listed
    csv = pd.read_csv(io.BytesIO(deferred_downloads["rejects.csv"]()))
    parquet = pd.read_parquet(io.BytesIO(deferred_downloads["rejects.parquet"]()))
    for got in (csv, parquet):
        assert sorted(got["source_row"]) == [5, 6]
        assert sorted(got["reason"]) == ["unknown_status", "unparseable_timestamp"]


def test_a_named_warehouse_that_does_not_exist_is_an_error(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere.duckdb"
    at = run_app(monkeypatch, missing)
    assert "does not exist" in at.error[0].value
    assert not missing.exists()
    assert not at.metric


def test_first_start_generates_and_loads_the_sample(tmp_path, monkeypatch):
    real = generator.generate

    def small(out, end=None):
        return real(out, tickets=1500, days=40, seed=3, end=end)

    monkeypatch.setattr(generator, "generate", small)
    monkeypatch.chdir(tmp_path)
    at = run_app(monkeypatch, None)
    assert at.status[0].label.startswith("Sample dataset ready")
    steps = " ".join(m.value for m in at.status[0].markdown)
    assert "Generated 1,500 tickets" in steps and "Loaded" in steps
    assert (tmp_path / "data" / "sample" / "tickets.parquet").is_file()
    loaded = Warehouse(tmp_path / "data" / "warehouse.duckdb")
    total = int(cs_metrics.query(loaded, ["ticket_count"])["ticket_count"].iloc[0])
    # 40 days of data all fall inside the default "last 90 days"
    assert cards(at)["Tickets"].value == f"{total:,d}"

    # A later start reuses the warehouse: no second generation.
    monkeypatch.setattr(generator, "generate", lambda *a, **k: pytest.fail("generated again"))
    st.cache_resource.clear()
    again = run_app(monkeypatch, None)
    assert not again.status
    assert cards(again)["Tickets"].value == cards(at)["Tickets"].value


def test_custom_range(sample_db, monkeypatch):
    wh = Warehouse(sample_db)
    filters = Filters(date(2025, 1, 6), date(2025, 1, 20))  # 6 Jan to 19 Jan inclusive
    want = cs_metrics.query(wh, ["ticket_count"], filters=filters)["ticket_count"].iloc[0]
    wh.close()
    at = run_app(monkeypatch, sample_db)
    at.selectbox(key="date_preset").select("Custom range").run()
    at.date_input(key="date_custom").set_value((date(2025, 1, 6), date(2025, 1, 19))).run()
    assert not at.exception
    assert cards(at)["Tickets"].value == get_metric("ticket_count").display(want)
    assert "Tickets created 06 Jan 2025 – 19 Jan 2025 (14 days)" in captions(at)


@pytest.mark.parametrize(
    ("preset", "start"),
    [
        ("Last 7 days", date(2025, 2, 22)),
        ("Last 30 days", date(2025, 1, 30)),
        ("Last 90 days", date(2024, 12, 1)),
        ("Quarter to date", date(2025, 1, 1)),
        ("Year to date", date(2025, 1, 1)),
        ("All time", None),
    ],
)
def test_date_presets_end_on_the_data_day(preset, start):
    from views._filter_defs import _preset_window, previous_period

    end = date(2025, 3, 1)  # the day after the data's last day, 28 Feb 2025
    got = _preset_window(preset, end)
    assert got == (start, end if start else None)
    before = previous_period(Filters(*got))
    if start is None:
        assert before is None
    else:
        assert before.date_to == start and before.date_to - before.date_from == end - start


def test_overview_uses_the_global_filters(sample_db, monkeypatch):
    wh = Warehouse(sample_db)
    filters = default_filters(wh)
    chat = Filters.build(filters.date_from, filters.date_to, channel=["chat"],
                         priority=["high", "urgent"])
    want = cs_metrics.query(wh, ["ticket_count"], filters=chat)["ticket_count"].iloc[0]
    wh.close()
    at = run_app(monkeypatch, sample_db)
    labels = [m.label for m in at.multiselect]
    assert labels == ["Channel", "Priority", "Domain", "Location", "Customer segment", "Team",
                      "Representative", "Tag"]
    # options come by volume, most tickets first
    channels = at.multiselect(key="filter_channel").options
    assert len(channels) >= 3
    at.multiselect(key="filter_channel").select("chat").run()
    at.multiselect(key="filter_priority").select("high").select("urgent").run()
    assert not at.exception
    assert cards(at)["Tickets"].value == get_metric("ticket_count").display(want)
    assert at.query_params["channel"] == "chat"
    assert sorted(at.query_params["priority"]) == ["high", "urgent"]

    # the filters survive a page without them, and the Clear button resets everything
    at.switch_page(QUALITY_PAGE).run()
    at.switch_page("views/overview.py").run()
    assert at.multiselect(key="filter_priority").value == ["high", "urgent"]
    assert cards(at)["Tickets"].value == get_metric("ticket_count").display(want)
    at.button(key="filters_clear").click().run()
    assert not at.exception
    assert at.multiselect(key="filter_channel").value == []
    assert at.selectbox(key="date_preset").value == "Last 90 days"
    assert "channel" not in at.query_params and at.query_params["range"] == "last-90-days"


def test_overview_opens_the_view_of_a_shared_link(sample_db, monkeypatch):
    filters = Filters.build(date(2025, 2, 1), date(2025, 2, 15), customer_segment="M")
    wh = Warehouse(sample_db)
    want = cs_metrics.query(wh, ["ticket_count"], filters=filters)["ticket_count"].iloc[0]
    wh.close()
    monkeypatch.setenv("CS_METRICS_DB", str(sample_db))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"from": "2025-02-01", "to": "2025-02-14",
                            "customer_segment": "M", "team": "no such team"})
    at.run()
    assert not at.exception
    assert cards(at)["Tickets"].value == get_metric("ticket_count").display(want)
    assert "Tickets created 01 Feb 2025 – 14 Feb 2025 (14 days)" in captions(at)
    assert any(escape_markdown("team=no such team") in c for c in captions(at))
    assert at.query_params["range"] == "custom" and at.query_params["to"] == "2025-02-14"


def test_file_names_carry_the_filters():
    from views._filter_defs import filters_slug

    filters = Filters.build(date(2025, 1, 1), date(2025, 2, 1), channel=["email", "chat"],
                            location="New York/NY")
    assert filters_slug(filters) == \
        "2025-01-01_2025-01-31_channel-chat+email_location-New-York-NY"
    assert filters_slug(Filters()) == "start_end"


def test_overview_loads_a_live_inbox_in_the_background(sample_db, tmp_path, monkeypatch):
    """With CS_METRICS_INBOX set, the app loads new batches itself and the live panel shows
    them on its next run."""
    import shutil
    import time as clock

    from cs_metrics.metrics.live import live_snapshot
    from tests.conftest import ticket, write_csv

    db = tmp_path / "wh.duckdb"
    shutil.copy(sample_db, db)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("CS_METRICS_INBOX", str(inbox))
    monkeypatch.setenv("CS_METRICS_INBOX_INTERVAL", "0.5")
    at = run_app(monkeypatch, db)
    before = {m.label: m.value for m in at.metric}
    assert any(c.startswith(f"Live: loading new batches from {markdown_code(inbox)}")
               for c in captions(at))
    wh = Warehouse(db)  # the same process: the app's warehouse object serves both
    now = wh.as_of()
    wh.close()
    stamp = (now + timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")
    batch = write_csv(tmp_path / "staging", "tickets", [
        ticket(f"LIVE{i}", stamp, "open", priority="urgent") for i in range(7)]).parent
    batch.rename(inbox / "batch-20990101T000000000000-000001")
    deadline = clock.monotonic() + 30
    after = before
    try:
        while clock.monotonic() < deadline and after["Arrivals"] == before["Arrivals"]:
            clock.sleep(0.5)
            at.run()
            after = {m.label: m.value for m in at.metric}
    finally:
        from views._live import stop_live_refreshers

        stop_live_refreshers()
    assert after["Arrivals"] != before["Arrivals"]
    wh = Warehouse(db)
    want = live_snapshot(wh)
    wh.close()
    assert after["Arrivals"] == f"{want.arrivals:,}"
    assert want.arrivals >= 7


def test_the_app_hands_the_gil_over_sooner_than_python_does(sample_db, monkeypatch):
    """Sessions share one interpreter: a run waiting on DuckDB gets the GIL back from a busy
    run within the app's switch interval, not Python's default 5 ms (bench/bench_gil.py)."""
    import sys

    from bench.bench_gil import app_interval_s
    from views._live import GIL_SWITCH_INTERVAL_S

    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        run_app(monkeypatch, sample_db)
        assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL_S)
        assert GIL_SWITCH_INTERVAL_S < 0.005
        assert app_interval_s() == GIL_SWITCH_INTERVAL_S  # what the bench reads
    finally:
        sys.setswitchinterval(before)


def test_a_run_that_loads_modules_freezes_them_out_of_garbage_collection(sample_db, monkeypatch):
    """A full collection walks every tracked object holding the GIL, stopping every session's
    run: 0.2-0.3 s with the pages' libraries loaded. After a run that imported modules the app
    collects once and freezes what is alive, so later collections walk only new objects."""
    import gc
    import sys
    import types

    import views._live as common

    gc.unfreeze()
    monkeypatch.setattr(common, "_frozen_at_modules", 0)
    freezes = []
    monkeypatch.setattr(gc, "freeze", lambda real=gc.freeze: (freezes.append(1), real())[1])
    tracked_before = len(gc.get_objects())
    run_app(monkeypatch, sample_db)
    assert freezes
    assert gc.get_freeze_count() > 0.5 * tracked_before  # the libraries are out of the walk
    assert len(gc.get_objects()) < 0.5 * tracked_before
    assert common._frozen_at_modules == len(sys.modules)

    freezes.clear()
    run_app(monkeypatch, sample_db)  # nothing new loaded: nothing collected or frozen again
    assert not freezes
    assert common._frozen_at_modules == len(sys.modules)

    monkeypatch.setitem(sys.modules, "cs_metrics_test_loaded", types.ModuleType("loaded"))
    run_app(monkeypatch, sample_db)  # a module was imported: frozen again, with it
    assert freezes == [1]
    assert common._frozen_at_modules == len(sys.modules)


def test_charts_build_cheaply_and_are_valid_vega_lite(sample_db, monkeypatch):
    """Building a chart holds the interpreter every other session needs, so no page pays
    for what is only a check:

    - a channel given as a shorthand string or a dict (``x="day:T"``, ``alt.value(...)``,
      ``alt.condition(...)``) is parsed by Altair against every schema class, 4-6 ms each
      time; a channel object (``alt.X("day:T")``, ``alt.ColorValue(...)``) costs 0.03 ms;
    - Altair's validation of each spec (and of each part as it is made) against Vega-Lite's
      JSON schema is skipped when a page runs (``show_chart``, the app's debug mode off).

    The check is made here instead: every chart every page sends (with a simulation and a
    report) is valid Vega-Lite."""
    import json

    import jsonschema
    from altair.utils import schemapi

    from bench.bench_sessions import app_pages

    def where() -> str:
        import traceback

        page = [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in traceback.extract_stack()
                if "/views/" in f.filename]
        return page[-1] if page else "?"

    parsed: list[str] = []
    validated: list[str] = []
    real_parse = schemapi._FromDict.__init__
    real_validate = vars(schemapi.SchemaBase)["validate"]  # the classmethod itself

    def counting_parse(self, *args, **kwargs):
        parsed.append(where())
        real_parse(self, *args, **kwargs)

    def counting_validate(cls, instance, schema=None):
        import traceback

        if not any(f.filename.endswith("cs_metrics/ops/reports/charts.py")  # a report's PNG
                   for f in traceback.extract_stack()):
            validated.append(where())
        return real_validate.__func__(cls, instance, schema)

    monkeypatch.setattr(schemapi._FromDict, "__init__", counting_parse)
    monkeypatch.setattr(schemapi.SchemaBase, "validate", classmethod(counting_validate))
    at = run_app(monkeypatch, sample_db)
    specs = [(at.get("vega_lite_chart"), "overview")]
    for page in app_pages()[1:]:
        at.switch_page(page.file).run()
        if page.path == "whatif":  # its charts come with a simulation
            next(b for b in at.button if b.label == "Run the simulation").click().run()
        elif page.path == "reports":  # and the report's with a report
            at.button(key="report_build").click().run()
        assert not at.exception, (page.file, [e.value for e in at.exception])
        specs.append((at.get("vega_lite_chart"), page.path))
    assert schemapi.DEBUG_MODE is False  # app.py turned Altair's checks of parts off
    assert parsed == [], sorted(set(parsed))
    assert validated == [], sorted(set(validated))

    monkeypatch.setattr(schemapi.SchemaBase, "validate", real_validate)
    charts = [(json.loads(c.proto.spec), page) for found, page in specs for c in found]
    assert len(charts) >= 20  # the pages did draw their charts
    for spec, page in charts:
        assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/v6"), page
        try:
            alt.Root.validate(spec)
        except jsonschema.ValidationError as exc:
            pytest.fail(f"a chart on {page or 'overview'} is not valid Vega-Lite: {exc.message}")
    # the check can fail: a mark Vega-Lite does not have
    bad = {**next(spec for spec, _ in charts if "mark" in spec), "mark": {"type": "pie-slice"}}
    with pytest.raises(jsonschema.ValidationError, match="pie-slice"):
        alt.Root.validate(bad)
