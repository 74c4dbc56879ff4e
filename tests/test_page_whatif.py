"""The What-if simulation page, run headless: it shows what the engine projects."""

from __future__ import annotations

import io
import json
from datetime import datetime, time, timedelta
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from cs_metrics import Warehouse
from cs_metrics.analysis.whatif import OutageScenario, simulate_outage
from cs_metrics.core import audit
from cs_metrics.core.safe_text import escape_markdown
from tests.conftest import REPO

PAGE = str(REPO / "views" / "whatif.py")
TIMEOUT = 120

pytestmark = pytest.mark.usefixtures("fresh_caches")


def run_page(monkeypatch, db: Path) -> AppTest:
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    monkeypatch.setenv("CS_METRICS_BASEMAP", "off")
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def submit(at: AppTest) -> AppTest:
    next(b for b in at.button if b.label == "Run the simulation").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def scenario_of(at: AppTest) -> OutageScenario:
    """The scenario the form describes, as the page builds it."""
    ss = at.session_state
    return OutageScenario(
        start=datetime.combine(ss["wi_day"], ss["wi_time"]), hours=float(ss["wi_hours"]),
        severity=ss["wi_severity"], radius_km=float(ss["wi_radius"]), city=ss["wi_city"],
        extra_staff=int(ss["wi_extra"]))


def library(db: Path, scenario: OutageScenario, runs: int = 200, seed: int = 7):
    wh = Warehouse(db)
    try:
        return simulate_outage(wh, scenario, runs=runs, seed=seed)
    finally:
        wh.close()


def test_nothing_runs_before_the_form_is_sent(sample_db, monkeypatch):
    at = run_page(monkeypatch, sample_db)
    assert "Describe an outage and run the simulation." in [i.value for i in at.info]
    assert not at.metric


def test_the_page_shows_the_engines_projection(sample_db, monkeypatch, deferred_downloads):
    at = run_page(monkeypatch, sample_db)
    wh = Warehouse(sample_db)
    last = min(wh.created_range()[1].date(), wh.as_of().date())
    wh.close()
    assert at.session_state["wi_day"] == last + timedelta(days=1)
    assert at.session_state["wi_time"] == time(14, 0)
    at.selectbox(key="wi_severity").set_value("critical")
    at.slider(key="wi_radius").set_value(40.0)
    submit(at)
    scenario = scenario_of(at)
    assert scenario.severity == "critical" and scenario.radius_km == 40.0
    want = library(sample_db, scenario)
    assert escape_markdown(want.summary) in [s.value for s in at.success]
    shown = {m.label: m.value for m in at.metric}
    assert shown["Extra tickets"] == f"{want.totals.extra_tickets_p50:,.0f}"
    assert shown["Peak backlog"] == f"{want.totals.peak_backlog_p50:,.0f}"
    assert shown["Extra agents needed"] == f"{want.totals.max_extra_agents_needed:,} at most"
    table = next(d.value for d in at.dataframe if "extra_agents_needed" in d.value.columns)
    assert table["extra_arrivals"].tolist() == pytest.approx(
        want.hours["extra_arrivals"].tolist())
    assert table["backlog_p50"].tolist() == pytest.approx(want.hours["backlog_p50"].tolist())
    assert len(at.get("deck_gl_json_chart")) >= 1  # the affected area on a map
    area = json.loads(at.get("deck_gl_json_chart")[-1].proto.json)
    circle = next(layer for layer in area["layers"] if layer["id"] == "area")
    assert circle["data"][0]["radius_m"] == pytest.approx(40_000)
    # the hour-by-hour projection and the scenario as files, made on click and logged
    saved = next(name for name in deferred_downloads if name.endswith(".json"))
    assert OutageScenario.from_json(deferred_downloads[saved]()) == scenario
    csv = saved.removesuffix(".json") + ".csv"
    got = pd.read_csv(io.BytesIO(deferred_downloads[csv]()))
    assert got["backlog_p50"].tolist() == pytest.approx(want.hours["backlog_p50"].tolist())
    wh = Warehouse(sample_db)
    logged = audit.entries(wh, action="export")["target"].tolist()
    wh.close()
    assert csv in logged and saved in logged

    # a milder scenario never projects more extra tickets
    at.selectbox(key="wi_severity").set_value("minor")
    submit(at)
    milder = {m.label: m.value for m in at.metric}
    assert int(milder["Extra tickets"].replace(",", "")) <= \
        int(shown["Extra tickets"].replace(",", ""))


def test_recommended_staff_and_saved_scenarios(sample_db, monkeypatch):
    at = run_page(monkeypatch, sample_db)
    at.selectbox(key="wi_severity").set_value("critical")
    at.slider(key="wi_radius").set_value(60.0)
    submit(at)
    scenario = scenario_of(at)
    base = library(sample_db, scenario)
    if base.totals.max_extra_agents_needed > 0:
        at.toggle(key="wi_recommended").set_value(True).run()
        assert not at.exception
        staffed = library(sample_db, base.recommended_scenario())
        assert f"With the recommended staff: {escape_markdown(staffed.summary)}" in \
            [i.value for i in at.info]
        assert staffed.totals.sla_breach_pct_p50 <= base.totals.sla_breach_pct_p50
        at.toggle(key="wi_recommended").set_value(False).run()
    at.button(key="wi_save").click().run()
    at.selectbox(key="wi_severity").set_value("minor")
    submit(at)
    at.text_input(key="wi_name").set_value("minor one").run()
    at.button(key="wi_save").click().run()
    compare = next(d.value for d in at.dataframe if "minor one" in d.value.columns)
    assert len(compare.columns) == 2
    assert compare.loc["severity"].tolist() == ["critical", "minor"]
    saved = at.session_state["whatif_saved"]
    assert OutageScenario.from_json(saved[0]["json"]) == scenario


def test_the_start_time_is_read_in_the_reporting_zone(sample_db, monkeypatch, tmp_path):
    """With the settings' zone New York, 14:00 on the form is 19:00 UTC (EST): the page
    simulates the outage the library simulates from 19:00 UTC, and says its hours in that
    zone."""
    settings = tmp_path / "settings.toml"
    settings.write_text('[display]\ntimezone = "America/New_York"\n', encoding="utf-8")
    monkeypatch.setenv("CS_METRICS_SETTINGS", str(settings))
    at = run_page(monkeypatch, sample_db)
    assert any(t.label == "Start time (America/New_York)" for t in at.time_input)
    submit(at)
    ss = at.session_state
    local_start = datetime.combine(ss["wi_day"], ss["wi_time"])
    assert local_start.month in (1, 2, 3) and local_start.hour == 14
    utc = OutageScenario(
        start=local_start + timedelta(hours=5), hours=float(ss["wi_hours"]),
        severity=ss["wi_severity"], radius_km=float(ss["wi_radius"]), city=ss["wi_city"],
        extra_staff=int(ss["wi_extra"]))
    want = library(sample_db, utc)
    assert escape_markdown(want.summary) in [s.value for s in at.success]
    shown = {m.label: m.value for m in at.metric}
    assert shown["Extra tickets"] == f"{want.totals.extra_tickets_p50:,.0f}"
    # the same form read as UTC is another outage, with other figures
    other = library(sample_db, scenario_of(at))
    assert other.scenario.start != want.scenario.start
