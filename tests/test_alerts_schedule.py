"""Alerts on their own: the app's scheduled evaluation (``run_alerts_on_schedule``), what the
Alerts page says about it, ``[alerts] every``, and the ``staffing`` command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cs_metrics import load_settings
from cs_metrics.cli.main import main
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.safe_text import escape_markdown
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ops import alerts as alerts_module
from cs_metrics.ops.alerts import (
    active_alerts,
    alert_schedule,
    alert_schedule_error,
    evaluate,
    last_evaluation,
    run_alerts_on_schedule,
)
from tests.conftest import REPO

PAGE = str(REPO / "views" / "alerts.py")
START = datetime(2025, 3, 1, 12, 0)  # the wall clock the tests choose (naive UTC)
NO_REASSURANCE = "Nothing needs attention: no active alert."


@pytest.fixture(autouse=True)
def _new_process(monkeypatch):
    """Every test starts as a freshly started app: no scheduled run yet in this process."""
    monkeypatch.setattr(alerts_module, "_scheduled", {})
    monkeypatch.delenv("CS_METRICS_SETTINGS", raising=False)


@pytest.fixture()
def db(sample_db, tmp_path) -> Path:
    """A copy of the page sample, whose queue holds breached high-priority tickets."""
    path = tmp_path / "wh.duckdb"
    shutil.copy(sample_db, path)
    return path


@pytest.fixture()
def wh(db):
    w = Warehouse(db)
    yield w
    w.close()


def _settings(tmp_path: Path, text: str):
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path)


# --- the schedule ------------------------------------------------------------------------------


def test_due_at_start_then_every_interval(wh):
    settings = load_settings()
    assert settings.alerts.every == 5
    assert alert_schedule(wh, settings) == (None, None)
    first = run_alerts_on_schedule(wh, settings, START)
    assert first is not None and first.now == wh.as_of()  # the rules ran on the data's clock
    assert alert_schedule(wh, settings) == (START, START + timedelta(minutes=5))
    assert alert_schedule_error(wh) is None
    runs = wh.scalar("select count(*) from alert_runs")
    for minutes in (0, 1, 4, 4.99):
        assert run_alerts_on_schedule(wh, settings, START + timedelta(minutes=minutes)) is None
    assert wh.scalar("select count(*) from alert_runs") == runs  # nothing evaluated
    assert alert_schedule(wh, settings) == (START, START + timedelta(minutes=5))
    later = START + timedelta(minutes=5)
    again = run_alerts_on_schedule(wh, settings, later)
    assert again is not None
    assert wh.scalar("select count(*) from alert_runs") == runs + 1
    assert alert_schedule(wh, settings) == (later, later + timedelta(minutes=5))
    # the table holds one row, with the next moment for readers without the settings
    rows = wh.connection().execute(
        "select last_run_at, next_run_at, every_min from alert_schedule").fetchall()
    assert rows == [(later, later + timedelta(minutes=5), 5.0)]


def test_app_start_and_clock_set_back_run_at_once(wh, monkeypatch):
    settings = load_settings()
    assert run_alerts_on_schedule(wh, settings, START) is not None
    assert run_alerts_on_schedule(wh, settings, START + timedelta(minutes=1)) is None
    # a restarted app runs them at its start, whatever the table says
    monkeypatch.setattr(alerts_module, "_scheduled", {})
    assert run_alerts_on_schedule(wh, settings, START + timedelta(minutes=2)) is not None
    # a wall clock set back an hour does not wait an hour for the next run
    back = START - timedelta(hours=1)
    assert run_alerts_on_schedule(wh, settings, back) is not None
    assert alert_schedule(wh, settings)[0] == back


def test_every_comes_from_the_settings(wh, tmp_path):
    settings = _settings(tmp_path, "[alerts]\nevery = 0.5\n")
    assert settings.alerts.every == 0.5
    assert run_alerts_on_schedule(wh, settings, START) is not None
    assert run_alerts_on_schedule(wh, settings, START + timedelta(seconds=29)) is None
    assert run_alerts_on_schedule(wh, settings, START + timedelta(seconds=30)) is not None
    assert alert_schedule(wh, settings)[1] == START + timedelta(seconds=60)


def test_scheduled_run_raises_the_sla_alert_with_no_inbox(wh):
    settings = load_settings()
    assert not wh.has_table("inbox_manifest")  # no live inbox: only the schedule runs them
    expected = {a.id for a in evaluate(wh, settings) if a.rule == "sla_breached"}
    assert expected == {"sla_breached:all"}  # the breach the data holds
    run = run_alerts_on_schedule(wh, settings, START)
    breached = [a for a in run.raised if a.rule == "sla_breached"]
    assert {a.id for a in breached} == expected
    assert breached[0].severity == "critical"
    assert breached[0].figures["count"] > 0
    active = active_alerts(wh)
    assert set(active.loc[active["rule"] == "sla_breached", "alert_id"]) == expected
    # the in-app channel (the default) got it, to show as a pop-up
    pending = wh.scalar(
        "select count(*) from alert_deliveries where channel = 'in_app' and status = 'pending' "
        "and occurrence_id = ?", [breached[0].occurrence_id])
    assert pending == 1
    # within the cooldown a later scheduled run counts it, without raising it again
    again = run_alerts_on_schedule(wh, settings, START + timedelta(minutes=5))
    assert not [a for a in again.raised if a.rule == "sla_breached"]
    assert {a.id for a in again.suppressed if a.rule == "sla_breached"} == expected


def test_a_failed_run_is_recorded_and_not_retried_every_second(db):
    settings = load_settings()
    ro = Warehouse(db, read_only=True)
    try:
        with pytest.raises(CsMetricsError, match="read-only"):
            run_alerts_on_schedule(ro, settings, START)
        # tried again after `every`, not on each tick of the server's loop
        assert run_alerts_on_schedule(ro, settings, START + timedelta(seconds=1)) is None
        assert alert_schedule(ro, settings) == (None, None)  # nothing could be written
    finally:
        ro.close()


def test_a_failure_after_a_success_keeps_the_last_success(wh, monkeypatch):
    settings = load_settings()
    run_alerts_on_schedule(wh, settings, START)

    def broken(*args, **kwargs):
        raise CsMetricsError("Query failed: disk full.")

    monkeypatch.setattr(alerts_module, "run_alerts", broken)
    later = START + timedelta(minutes=5)
    with pytest.raises(CsMetricsError, match="disk full"):
        run_alerts_on_schedule(wh, settings, later)
    assert alert_schedule(wh, settings) == (START, later + timedelta(minutes=5))
    assert alert_schedule_error(wh) == "Query failed: disk full."


def test_empty_warehouse_is_scheduled_without_alerts(tmp_path):
    wh = Warehouse(tmp_path / "empty.duckdb")
    try:
        run = run_alerts_on_schedule(wh, load_settings(), START)
        assert run is not None and run.now is None and run.raised == ()
        assert alert_schedule(wh, load_settings()) == (START, START + timedelta(minutes=5))
    finally:
        wh.close()


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", '"x"', "2000", "true", "nan"])
def test_every_must_be_minutes_up_to_a_day(tmp_path, value):
    path = tmp_path / "settings.toml"
    path.write_text(f"[alerts]\nevery = {value}\n", encoding="utf-8")
    with pytest.raises(CsMetricsError) as err:
        load_settings(path)
    message = str(err.value)
    assert message.startswith(f"Setting alerts.every in {path} must be a number of minutes "
                              "above 0 and at most 1440")
    assert "\n" not in message


@pytest.mark.parametrize("value, minutes", [("1440", 1440.0), ("0.25", 0.25), ("15", 15.0)])
def test_every_accepts_minutes(tmp_path, value, minutes):
    assert _settings(tmp_path, f"[alerts]\nevery = {value}\n").alerts.every == minutes


# --- the Alerts page ---------------------------------------------------------------------------


def _page(monkeypatch, db: Path, settings: Path | None = None) -> AppTest:
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    if settings is not None:
        monkeypatch.setenv("CS_METRICS_SETTINGS", str(settings))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _texts(at: AppTest) -> list[str]:
    return [e.value for kind in (at.caption, at.info, at.success, at.warning, at.markdown)
            for e in kind]


@pytest.mark.usefixtures("fresh_caches")
def test_page_before_and_after_the_first_scheduled_run(db, tmp_path, monkeypatch):
    # rules that find nothing: only "not run yet" tells this page from "all clear"
    quiet = tmp_path / "quiet.toml"
    quiet.write_text("[alerts]\nenabled = false\nevery = 10\n", encoding="utf-8")
    at = _page(monkeypatch, db, quiet)
    texts = _texts(at)
    assert NO_REASSURANCE not in texts
    assert any(t.startswith("The rules have not run yet") for t in (i.value for i in at.info))
    assert ("The rules have not run on the schedule yet: the app evaluates them within "
            "seconds of its start, then every 10 minutes.") in texts
    assert at.subheader[0].value == "Active alerts (0)"
    assert at.button(key="alerts_run")  # the button stays

    wh = Warehouse(db)
    try:
        run_alerts_on_schedule(wh, load_settings(quiet), START)
    finally:
        wh.close()
    at = _page(monkeypatch, db, quiet)
    texts = _texts(at)
    assert any(t.startswith("Rules last ran at 2025-03-01 12:00 UTC; next run at "
                            "2025-03-01 12:10 UTC (every 10 minutes).") for t in texts)
    assert NO_REASSURANCE in [s.value for s in at.success]  # now it is true
    assert not at.info


@pytest.mark.usefixtures("fresh_caches")
def test_page_shows_what_a_scheduled_run_raised(db, monkeypatch):
    at = _page(monkeypatch, db)
    assert NO_REASSURANCE not in _texts(at)
    wh = Warehouse(db)
    try:
        assert last_evaluation(wh) is None
        run = run_alerts_on_schedule(wh, load_settings(), START)
    finally:
        wh.close()
    at = _page(monkeypatch, db)
    assert f"Active alerts ({len(run.raised)})" in [h.value for h in at.subheader]
    assert any(t.startswith("Rules last ran at 2025-03-01 12:00 UTC; next run at "
                            "2025-03-01 12:05 UTC") for t in _texts(at))
    assert NO_REASSURANCE not in _texts(at)


@pytest.mark.usefixtures("fresh_caches")
def test_page_says_when_the_scheduled_run_failed(db, monkeypatch):
    wh = Warehouse(db)
    try:
        alerts_module._record_schedule(wh, START, timedelta(minutes=5),
                                       "Query failed: *disk* full.")
    finally:
        wh.close()
    at = _page(monkeypatch, db)
    shown = [w.value for w in at.warning]
    assert shown == ["The last scheduled evaluation failed: "
                     + escape_markdown("Query failed: *disk* full.")]
    assert "\\*disk\\*" in shown[0]  # the error's text is text, not emphasis
    assert "The rules have not run on the schedule yet; next attempt at 2025-03-01 12:05 UTC." \
        in _texts(at)
    assert NO_REASSURANCE not in _texts(at)


# --- staffing ----------------------------------------------------------------------------------

EXAMPLE = ["staffing", "--contacts", "100", "--interval-min", "30", "--aht-s", "180",
           "--target-answer-s", "20", "--service-level", "0.8"]
COLUMNS = ["raw_agents", "agents", "service_level", "occupancy", "waiting_probability", "asa_s"]


def test_staffing_published_example_csv(capsys):
    """100 calls in 30 min, AHT 180 s, 80 % in 20 s: 10 Erlangs, 14 agents."""
    assert main([*EXAMPLE, "--shrinkage", "0.3", "--max-occupancy", "0.85"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[0].split(",") == COLUMNS
    values = dict(zip(COLUMNS, lines[1].split(","), strict=True))
    assert len(lines) == 2
    assert values["raw_agents"] == "14"
    assert values["agents"] == "20"  # 14 / (1 - 0.3)
    assert round(float(values["service_level"]), 4) == 0.8884
    assert round(float(values["occupancy"]), 4) == 0.7143
    assert round(float(values["waiting_probability"]), 4) == 0.1741
    assert round(float(values["asa_s"]), 2) == 7.84
    assert "10 Erlangs" in out.err


def test_staffing_json_and_shrinkage(capsys):
    assert main([*EXAMPLE, "--format", "json", "--shrinkage", "0"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert len(row) == 1 and list(row[0]) == COLUMNS
    assert row[0]["raw_agents"] == 14 and row[0]["agents"] == 14  # no shrinkage
    assert row[0]["service_level"] == pytest.approx(0.8883500192)
    assert main([*EXAMPLE, "--format", "json", "--shrinkage", "35%",
                 "--max-occupancy", "0.7"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    # 14 agents would be 71 % busy: the 70 % cap asks for 15, 15 / 0.65 scheduled
    assert row["raw_agents"] == 15 and row["agents"] == 24
    assert row["occupancy"] == pytest.approx(10 / 15)


def test_staffing_defaults_come_from_the_settings(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text("[staffing]\nshrinkage = 0.5\n", encoding="utf-8")
    assert main([*EXAMPLE, "--format", "json", "--settings", str(path)]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert (row["raw_agents"], row["agents"]) == (14, 28)


@pytest.mark.parametrize("args, message", [
    (["--contacts", "-1"], "error: --contacts -1.0 must be zero or more contacts."),
    (["--interval-min", "0"], "error: --interval-min 0.0 must be a positive number of minutes."),
    (["--aht-s", "inf"], "error: --aht-s inf must be a positive number of seconds."),
    (["--service-level", "80"], "error: --service-level '80' must be a share of contacts "
                                "between 0 and 1 (exclusive); write 80 % as 0.8 or 80%."),
    (["--service-level", "100%"], "error: --service-level '100%' must be a share of contacts "
                                  "between 0 and 1 (exclusive), e.g. 0.8 or 80%."),
    (["--shrinkage", "1"], "error: --shrinkage '1' must be a share of paid time from 0 to "
                           "0.9, e.g. 0.8 or 80%."),
    (["--max-occupancy", "abc"], "error: --max-occupancy 'abc' must be a share of logged-in "
                                 "time from 0.05 to 1, e.g. 0.8 or 80%."),
    (["--contacts", "1e9"], "error: 1e+09 contacts of 180 s in 30 min are 100,000,000 "
                            "Erlangs, more than the 100,000 this command sizes; check the "
                            "units (--interval-min in minutes, --aht-s in seconds)."),
])
def test_staffing_refuses_bad_input(capsys, args, message):
    argv = list(EXAMPLE)
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    assert main(argv) == 2
    err = capsys.readouterr()
    assert err.out == ""
    assert err.err.strip() == message


def test_staffing_runs_as_a_command_without_a_warehouse(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "cs_metrics", *EXAMPLE, "--shrinkage", "0.3"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PATH": "", "PYTHONPATH": str(REPO), "CS_METRICS_DB": str(tmp_path / "none.db")},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].startswith("14,20,")
    assert not (tmp_path / "none.db").exists()
