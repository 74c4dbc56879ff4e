"""The Seasonality & staffing page, run headless: it shows what the library computes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import cs_metrics
from cs_metrics import Filters, ServiceLevel, Warehouse
from cs_metrics.analysis.seasonality import (
    arrival_heatmap,
    backtest,
    daily_series,
    decompose,
    forecast_daily,
    forecast_hourly,
)
from cs_metrics.analysis.staffing import handle_time_s, staffing_plan
from cs_metrics.core.safe_text import escape_markdown
from tests.conftest import REPO, open_expanders, ticket, write_csv

PAGE = str(REPO / "views" / "seasonality.py")
TIMEOUT = 120

pytestmark = pytest.mark.usefixtures("fresh_caches")


def run_page(monkeypatch, db: Path, params: dict | None = None) -> AppTest:
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    for key, value in (params or {}).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    open_expanders(at)  # the tables behind the charts
    assert not at.exception, [e.value for e in at.exception]
    return at


def library(db: Path, fn):
    wh = Warehouse(db)
    try:
        return fn(wh)
    finally:
        wh.close()


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# the tables of the page, told apart by their columns (AppTest shows no key for them)
TABLES = {
    "season_heatmap": ("weekday", "weekday_name", "hour", "tickets"),
    "season_forecast": ("date", "forecast", "lower", "upper"),
    "staff_table": ("weekday", "weekday_name", "hour_of_day"),
    "staff_plan": ("hour", "arrivals", "aht_s"),
}


def table(at: AppTest, key: str) -> pd.DataFrame:
    start = TABLES[key]
    return next(d.value for d in at.dataframe
                if tuple(d.value.columns[:len(start)]) == start)


def expected(wh: Warehouse, filters: Filters, weeks: int = 4) -> dict:
    series = daily_series(wh, filters)
    fc = forecast_daily(series, weeks * 7, level=0.9)
    hourly = forecast_hourly(wh, filters, fc)
    settings = cs_metrics.load_settings().staffing
    aht = round(handle_time_s(wh, filters) or settings.aht_s)
    plan = staffing_plan(hourly[["hour", "arrivals"]], aht, settings.service_level("default"),
                         shrinkage=settings.shrinkage, max_occupancy=settings.max_occupancy)
    return {
        "decomposition": decompose(series),
        "heatmap": arrival_heatmap(wh, filters),
        "forecast": fc,
        "backtest": backtest(series, 14, 4, level=0.9),
        "plan": plan,
    }


def test_page_shows_the_library_figures(sample_db, monkeypatch):
    at = run_page(monkeypatch, sample_db)
    want = library(sample_db, lambda wh: expected(wh, Filters()))
    dec, bt, plan = want["decomposition"], want["backtest"], want["plan"]
    markdown = [m.value for m in at.markdown]
    assert f"**Weekly.** {escape_markdown(dec.weekly_verdict)}" in markdown
    # 90 days: no yearly cycle
    assert escape_markdown(dec.yearly_note) in [c.value for c in at.caption]
    shown = metrics(at)
    assert shown["MAPE, model"] == f"{bt.model_mape_pct:.1f} %"
    assert shown["MAPE, last week repeated"] == f"{bt.baseline_mape_pct:.1f} %"
    assert shown["MASE, model"] == f"{bt.model_mase:.2f}"
    assert shown["Agent-hours scheduled (forecast)"] == f"{plan['scheduled_agents'].sum():,.0f}"
    assert shown["Peak agents in an hour"] == f"{plan['scheduled_agents'].max():,}"
    assert escape_markdown(bt.summary) in [s.value for s in (*at.success, *at.warning)]

    heat = table(at, "season_heatmap")
    pd.testing.assert_frame_equal(heat.reset_index(drop=True), want["heatmap"],
                                  check_dtype=False)
    fc = table(at, "season_forecast")
    assert len(fc) == 28
    assert fc["forecast"].tolist() == pytest.approx(want["forecast"]["forecast"].tolist())
    full_plan = table(at, "staff_plan")
    assert full_plan["scheduled_agents"].tolist() == plan["scheduled_agents"].tolist()

    # the weekday x hour table: the plan averaged, beside the reps active in the data
    staff = table(at, "staff_table")
    assert len(staff) == 168
    plan = plan.assign(weekday=pd.to_datetime(plan["hour"]).dt.day_of_week,
                       hod=pd.to_datetime(plan["hour"]).dt.hour)
    mean = plan.groupby(["weekday", "hod"])["scheduled_agents"].mean().to_numpy()
    assert staff["scheduled_agents"].to_numpy() == pytest.approx(mean)
    now = library(sample_db, lambda wh: cs_metrics.current_staffing(wh, Filters()))
    merged = staff.merge(now, left_on=["weekday", "hour_of_day"],
                         right_on=["weekday", "hour"], how="left")
    assert merged["active_reps_x"].tolist() == pytest.approx(
        merged["active_reps_y"].fillna(0).tolist())


def test_horizon_inputs_and_filters_change_the_figures(sample_db, monkeypatch):
    at = run_page(monkeypatch, sample_db, {"channel": "chat"})
    chat = Filters.build(channel="chat")
    want = library(sample_db, lambda wh: expected(wh, chat))
    settings = cs_metrics.load_settings().staffing
    # one channel in the filters: its service-level target applies
    assert at.selectbox(key="staff_channel").value == "chat"
    level = settings.service_level("chat")
    assert at.number_input(key="staff_within_chat").value == level.within_s
    assert table(at, "season_forecast")["forecast"].tolist() == pytest.approx(
        want["forecast"]["forecast"].tolist())

    at.select_slider(key="season_weeks").set_value(2).run()
    assert len(table(at, "season_forecast")) == 14
    at.number_input(key="staff_shrinkage").set_value(50.0).run()
    hourly = library(sample_db, lambda wh: forecast_hourly(
        wh, chat, forecast_daily(daily_series(wh, chat), 14, level=0.9)))
    aht = round(library(sample_db, lambda wh: handle_time_s(wh, chat)) or settings.aht_s)
    plan = staffing_plan(hourly[["hour", "arrivals"]], aht, ServiceLevel(level.target,
                         level.within_s), shrinkage=0.5, max_occupancy=settings.max_occupancy)
    assert metrics(at)["Agent-hours scheduled (forecast)"] == \
        f"{plan['scheduled_agents'].sum():,.0f}"

    # the sidebar's own date range instead of the whole history
    at.toggle(key="season_whole_history").set_value(False).run()
    assert not at.exception
    wh_want = library(sample_db, lambda wh: (wh.as_of(), wh.created_range()))
    last = min(wh_want[1][1].date(), wh_want[0].date())
    ranged = Filters.build(last + timedelta(days=1) - timedelta(days=90),
                           last + timedelta(days=1), channel="chat")
    series = library(sample_db, lambda wh: daily_series(wh, ranged))
    dec = decompose(series)
    assert f"**Weekly.** {escape_markdown(dec.weekly_verdict)}" in \
        [m.value for m in at.markdown]


def test_too_little_history_says_so(tmp_path, monkeypatch):
    rows = [ticket(f"T{i}", f"2025-01-{1 + i % 10:02d} 10:00:00") for i in range(40)]
    write_csv(tmp_path / "src", "tickets", rows)
    cs_metrics.ingest(tmp_path / "src", db=tmp_path / "wh.duckdb")
    at = run_page(monkeypatch, tmp_path / "wh.duckdb")
    assert any("at least 28 days" in i.value for i in at.info)
    assert not at.metric
