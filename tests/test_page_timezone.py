"""The app's reporting zone: the sidebar's Time zone (``tz=`` in the link, the settings'
``[display] timezone`` by default) makes every page count local days; pages show the numbers
the library computes for that zone."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from cs_metrics import Filters, Warehouse, get_metric, query
from cs_metrics.analysis.seasonality import daily_series
from cs_metrics.core.zones import to_local
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("fresh_caches")


def run(monkeypatch, db, page: str, **params: str) -> AppTest:
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    at = AppTest.from_file(str(REPO / page), default_timeout=90)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def card(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def library(db, metrics: list[str], filters: Filters) -> pd.DataFrame:
    wh = Warehouse(db)
    try:
        return query(wh, metrics, filters=filters)
    finally:
        wh.close()


def test_a_link_with_tz_counts_local_days(monkeypatch, sample_db):
    at = run(monkeypatch, sample_db, "app.py", tz="Pacific/Auckland", range="custom",
             **{"from": "2025-02-01", "to": "2025-02-07"})
    assert at.sidebar.selectbox(key="report_tz").value == "Pacific/Auckland"
    local = Filters.build(date(2025, 2, 1), date(2025, 2, 8), tz="Pacific/Auckland")
    utc = Filters.build(date(2025, 2, 1), date(2025, 2, 8))
    want = library(sample_db, ["ticket_count", "avg_first_response_min"], local)
    other = library(sample_db, ["ticket_count"], utc)
    assert card(at, "Tickets") == get_metric("ticket_count").display(want["ticket_count"][0])
    assert want["ticket_count"][0] != other["ticket_count"][0]  # the zone matters
    assert card(at, "Avg first response") == get_metric("avg_first_response_min").display(
        want["avg_first_response_min"][0])
    wh = Warehouse(sample_db)
    as_of = to_local(wh.as_of(), "Pacific/Auckland")
    wh.close()
    assert any(c.startswith(f"Data as of {as_of:%Y-%m-%d %H:%M} Pacific/Auckland")
               for c in captions(at))
    assert at.query_params["tz"] == "Pacific/Auckland"
    # choosing UTC again drops the parameter (the settings' zone needs none) and the figure
    at.sidebar.selectbox(key="report_tz").set_value("UTC").run()
    assert "tz" not in at.query_params
    assert card(at, "Tickets") == get_metric("ticket_count").display(other["ticket_count"][0])


def test_an_unknown_zone_in_a_link_is_ignored_with_a_note(monkeypatch, sample_db):
    hostile = "UTC'); drop table tickets; --"
    at = run(monkeypatch, sample_db, "app.py", tz=hostile)
    assert at.sidebar.selectbox(key="report_tz").value == "UTC"
    assert any("Ignored in the link" in c and "drop table tickets" in c for c in captions(at))
    wh = Warehouse(sample_db)
    try:
        assert wh.has_table("tickets")
    finally:
        wh.close()


def test_the_settings_zone_is_the_default(monkeypatch, sample_db, tmp_path):
    settings = tmp_path / "settings.toml"
    settings.write_text('[display]\ntimezone = "America/New_York"\n', encoding="utf-8")
    monkeypatch.setenv("CS_METRICS_SETTINGS", str(settings))
    at = run(monkeypatch, sample_db, "views/seasonality.py", range="all-time")
    assert at.sidebar.selectbox(key="report_tz").value == "America/New_York"
    assert "tz" not in at.query_params
    wh = Warehouse(sample_db)
    try:
        series = daily_series(wh, Filters(tz="America/New_York"))
        utc = daily_series(wh, Filters())
    finally:
        wh.close()
    assert not series.equals(utc)
    # the forecast's backtest reads the same local days: its day count is in a caption
    text = " ".join(captions(at))
    assert f"{len(series)} days" in text or f"{len(series):,} days" in text
