"""The Alerts page, run headless: active alerts, acknowledgement, mutes and rules, as stored."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cs_metrics import Warehouse, load_settings
from cs_metrics.core.safe_text import escape_markdown
from cs_metrics.ops.alerts import active_alerts, alert_history, evaluate, mutes, rules_in_force
from tests.conftest import REPO

PAGE = str(REPO / "views" / "alerts.py")
OVERVIEW = str(REPO / "views" / "overview.py")
TIMEOUT = 60

pytestmark = pytest.mark.usefixtures("fresh_caches")


@pytest.fixture()
def alert_db(sample_db, tmp_path) -> Path:
    """A copy of the page sample, whose queue holds breached high-priority tickets."""
    db = tmp_path / "wh.duckdb"
    shutil.copy(sample_db, db)
    return db


def run_page(monkeypatch, db: Path, page: str = PAGE) -> AppTest:
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    monkeypatch.delenv("CS_METRICS_SETTINGS", raising=False)
    at = AppTest.from_file(page, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def library(db: Path, fn):
    wh = Warehouse(db)
    try:
        return fn(wh)
    finally:
        wh.close()


def test_evaluate_acknowledge_and_mute(alert_db, monkeypatch):
    expected = library(alert_db, lambda wh: evaluate(wh, load_settings()))
    assert expected, "the sample should raise at least one alert"
    at = run_page(monkeypatch, alert_db)
    # the rules have not run: no false reassurance (tests/test_alerts_schedule.py)
    assert "Nothing needs attention: no active alert." not in [s.value for s in at.success]
    empty = "No alert has fired yet."
    assert any(c.value.startswith(empty) for c in at.caption)  # the History tab says so
    # rather than an empty table (the other table is the rules in force)
    assert not [d for d in at.dataframe if "occurrence_id" in d.value.columns]
    at.button(key="alerts_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    active = library(alert_db, active_alerts)
    assert not any(c.value.startswith(empty) for c in at.caption)
    history = library(alert_db, alert_history)
    assert len(history) == len(active)
    assert sorted(history["occurrence_id"]) in [sorted(d.value["occurrence_id"])
                                                for d in at.dataframe
                                                if "occurrence_id" in d.value.columns]
    assert sorted(active["alert_id"]) == sorted(a.id for a in expected)
    assert f"Active alerts ({len(active)})" in [h.value for h in at.subheader]
    shown = [m.value for m in at.markdown]
    for title in active["title"]:
        assert any(f"**{escape_markdown(title)}**" in m for m in shown), title

    # acknowledged: no longer active, recorded with who did it
    first = active.iloc[0]
    at.button(key=f"ack_{first['occurrence_id']}").click().run()
    history = library(alert_db, alert_history).set_index("occurrence_id")
    assert history.loc[first["occurrence_id"], "acknowledged_by"] == "local user"
    left = library(alert_db, active_alerts)
    assert first["occurrence_id"] not in set(left["occurrence_id"])
    assert f"Active alerts ({len(left)})" in [h.value for h in at.subheader]


def test_muting_a_rule_hides_its_alerts(alert_db, monkeypatch):
    at = run_page(monkeypatch, alert_db)
    at.button(key="alerts_run").click().run()
    first = library(alert_db, active_alerts).iloc[0]
    at.selectbox(key=f"mute_for_{first['occurrence_id']}").set_value("1 day")
    at.button(key=f"mute_rule_{first['occurrence_id']}").click().run()
    assert not at.exception
    still = library(alert_db, active_alerts)
    assert first["rule"] not in set(still["rule"])
    muted = library(alert_db, mutes)
    assert first["rule"] in set(muted["target"])
    assert (muted["muted_by"] == "local user").all()


def test_rules_in_force_are_the_settings(alert_db, monkeypatch):
    at = run_page(monkeypatch, alert_db)
    want = rules_in_force(load_settings())
    table = next(d.value for d in at.dataframe if list(d.value.columns) == list(want.columns))
    assert table.astype(str).values.tolist() == want.astype(str).values.tolist()


def test_new_alerts_pop_up_once_on_the_overview(alert_db, monkeypatch):
    at = run_page(monkeypatch, alert_db)
    at.button(key="alerts_run").click().run()
    titles = set(library(alert_db, active_alerts)["title"])
    overview = run_page(monkeypatch, alert_db, OVERVIEW)
    toasts = [t.value for t in overview.toast]
    assert toasts and all(any(f"**{escape_markdown(t)}**" in x for t in titles)
                          for x in toasts)
    again = run_page(monkeypatch, alert_db, OVERVIEW)
    assert not again.toast  # shown once, then marked in the warehouse
