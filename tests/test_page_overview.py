"""The Overview, run headless: tickets created in the range apart from tickets unresolved now,
and the cards' changes against the previous period or the same dates a year earlier, each the
library's figure."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cs_metrics import Filters, Warehouse, get_metric, ingest, query
from cs_metrics.analysis.aging import AGE_BANDS, age_bands
from simulations.generator import generate
from tests.conftest import REPO

APP = str(REPO / "app.py")
TIMEOUT = 90
# tickets from 18 Oct 2023 to 28 Feb 2025
END = datetime(2025, 3, 1)
RANGE = {"from": "2024-12-01", "to": "2025-02-28"}
CURRENT = Filters(date(2024, 12, 1), date(2025, 3, 1))
# 1 Dec 2023 - 28 Feb 2024: the same dates a year earlier (29 February has no day in 2025)
YEAR_EARLIER = Filters(date(2023, 12, 1), date(2024, 2, 29))
UNRESOLVED = {"Open now", "In progress now", "Unresolved now", "Over 30 days old"}

pytestmark = pytest.mark.usefixtures("fresh_caches")


@pytest.fixture(scope="module")
def long_db(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("overview_long")
    generate(tmp / "src", tickets=3000, days=500, seed=29, end=END)
    ingest(tmp / "src", db=tmp / "wh.duckdb")
    return tmp / "wh.duckdb"


def run(monkeypatch, db: Path, **params: str) -> AppTest:
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict:
    return {m.label: m for m in at.metric}


def library(db: Path, names: list[str], *filters: Filters):
    wh = Warehouse(db)  # as the app opens it: one configuration per file and process
    try:
        rows = [query(wh, names, filters=f).iloc[0] for f in filters]
        bands = age_bands(wh, Filters(), split="status")
    finally:
        wh.close()
    return rows, bands


def test_created_in_the_range_and_unresolved_now_are_apart(long_db, monkeypatch):
    names = ["ticket_count", "open_count", "in_progress_count", "closed_count"]
    (now,), bands = library(long_db, names, CURRENT)
    at = run(monkeypatch, long_db, **RANGE)
    shown = metrics(at)
    # the range's tickets, by the status they have now
    assert shown["Tickets"].value == f"{int(now['ticket_count']):,}"
    assert shown["Still open"].value == f"{int(now['open_count']):,}"
    assert shown["Still in progress"].value == f"{int(now['in_progress_count']):,}"
    assert shown["Closed (current status)"].value == f"{int(now['closed_count']):,}"
    # the unresolved tickets now, created on any day: the aging library's counts
    by_status = bands.groupby("group")["tickets"].sum()
    open_now, in_progress = int(by_status.get("open", 0)), int(by_status.get("in_progress", 0))
    old = int(bands.loc[bands["band_order"] == len(AGE_BANDS) - 1, "tickets"].sum())
    assert shown["Open now"].value == f"{open_now:,}"
    assert shown["In progress now"].value == f"{in_progress:,}"
    assert shown["Unresolved now"].value == f"{open_now + in_progress:,}"
    assert shown["Over 30 days old"].value == f"{old:,}"
    # 500 days of history: tickets unresolved for more than 30 days exist, older than the range
    assert old > 0 and open_now + in_progress > int(now["open_count"] + now["in_progress_count"])
    headers = [h.value for h in at.subheader]
    assert "Created in the range: Tickets created 01 Dec 2024 – 28 Feb 2025 (90 days)" in headers
    assert any(h.startswith("Unresolved now · as of 2025-02-28") for h in headers)
    # the help says why the closed count differs from the trends page's
    created = next(h for h in at.subheader if h.value.startswith("Created in the range"))
    assert "by the day they were resolved" in created.help
    assert [p.proto.page for p in at.get("page_link")] == ["views/aging.py"] or \
        any("Aging & SLA" in str(p.proto.label) for p in at.get("page_link"))


def test_the_changes_are_against_the_same_dates_a_year_earlier(long_db, monkeypatch):
    names = ["ticket_count", "csat_pct", "avg_first_response_min"]
    (now, then), _ = library(long_db, names, CURRENT, YEAR_EARLIER)
    at = run(monkeypatch, long_db, **RANGE, compare="year")
    shown = metrics(at)
    change = int(now["ticket_count"] - then["ticket_count"])
    assert shown["Tickets"].delta == f"{change:+,} tickets"
    csat = now["csat_pct"] - then["csat_pct"]
    assert shown["CSAT"].delta == f"{csat:+.1f} pp"
    response = now["avg_first_response_min"] - then["avg_first_response_min"]
    assert shown[get_metric("avg_first_response_min").label].delta == f"{response:+,.1f} min"
    texts = [c.value for c in at.caption]
    assert "Changes are against the same dates a year earlier (01 Dec 2023 – 28 Feb 2024)." \
        in texts
    # the unresolved-now figures have no change: they are a stock, not the range's
    assert all(not shown[label].delta for label in UNRESOLVED)


def test_the_choice_switches_between_previous_period_and_a_year_earlier(long_db, monkeypatch):
    previous = Filters(date(2024, 9, 2), date(2024, 12, 1))
    (now, before, then), _ = library(long_db, ["ticket_count"], CURRENT, previous,
                                     YEAR_EARLIER)
    against_previous = int(now["ticket_count"] - before["ticket_count"])
    against_year = int(now["ticket_count"] - then["ticket_count"])
    at = run(monkeypatch, long_db, **RANGE)
    assert metrics(at)["Tickets"].delta == f"{against_previous:+,} tickets"
    assert "compare" not in at.query_params
    at.button_group(key="compare").set_value("year").run()
    assert not at.exception
    assert metrics(at)["Tickets"].delta == f"{against_year:+,} tickets"
    assert at.query_params["compare"] == "year"
    # the choice survives a visit to another page
    at.switch_page("views/data_quality.py").run()
    at.switch_page("views/overview.py").run()
    assert not at.exception
    assert at.button_group(key="compare").value == "year"
    assert metrics(at)["Tickets"].delta == f"{against_year:+,} tickets"
    at.button_group(key="compare").set_value("previous").run()
    assert metrics(at)["Tickets"].delta == f"{against_previous:+,} tickets"
    assert "compare" not in at.query_params


def test_no_year_earlier_comparison_before_the_data_starts(long_db, monkeypatch):
    at = run(monkeypatch, long_db, **{"from": "2024-01-01", "to": "2024-01-31"},
             compare="year")
    shown = metrics(at)
    # January 2023 is before the data starts (18 Oct 2023): no change, not a drop to zero
    assert all(not m.delta for m in shown.values() if m.label not in
               {"Arrivals", "SLA at risk"})
    texts = [c.value for c in at.caption]
    assert any(t.startswith("No data a year earlier (01 Jan 2023 – 31 Jan 2023); the data "
                            "starts on 18 Oct 2023") for t in texts), texts
