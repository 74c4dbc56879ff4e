"""Hostile-user checks of the hand-over job folder, the reporting zone and the schedules:
each test is a defence that holds today (findings that do not hold are reported, not here)."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.safe_text import header_text
from cs_metrics.core.settings import handed_settings, load_settings
from cs_metrics.core.zones import check_zone, local_sql
from cs_metrics.ops.jobs import HEARTBEAT, JobServer, job_dir, server_alive


def _server(tmp_path: Path, ran: list) -> JobServer:
    db = tmp_path / "wh.duckdb"
    db.write_text("")

    def runner(argv, settings):
        ran.append((argv, settings))
        return 0, "ran\n", ""

    return JobServer(db, runner)


def _job(srv: JobServer, name: str, payload: object) -> Path:
    path = srv.folder / f"{name}.json"
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload),
                    encoding="utf-8")
    return path


def _result(srv: JobServer, name: str) -> dict:
    return json.loads((srv.folder / f"{name}.done").read_text(encoding="utf-8"))


def test_the_job_folder_is_private(tmp_path):
    srv = _server(tmp_path, [])
    st = srv.folder.lstat()
    assert stat.S_ISDIR(st.st_mode) and not st.st_mode & (stat.S_IRWXG | stat.S_IRWXO)


def test_a_symlinked_job_folder_is_refused_and_its_target_left_alone(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    os.chmod(target, 0o755)
    (target / "x.json").write_text(json.dumps({"argv": ["status"]}))
    db = tmp_path / "wh.duckdb"
    db.write_text("")
    job_dir(db).symlink_to(target)
    with pytest.raises(CsMetricsError, match="link"):
        JobServer(db, lambda argv, settings: (0, "", ""))
    assert stat.S_IMODE(target.stat().st_mode) == 0o755  # not chmodded through the link
    assert (target / "x.json").exists()  # nothing taken from it


def test_a_heartbeat_in_a_folder_open_to_others_is_no_app(tmp_path):
    db = tmp_path / "wh.duckdb"
    db.write_text("")
    folder = job_dir(db)
    folder.mkdir()
    (folder / HEARTBEAT).write_text("{}")
    os.chmod(folder, 0o777)
    assert not server_alive(db)  # a command does not hand itself to a forged app
    os.chmod(folder, 0o700)
    assert server_alive(db)


def test_a_symlinked_job_file_is_not_run(tmp_path):
    ran: list = []
    srv = _server(tmp_path, ran)
    real = tmp_path / "mine.json"
    real.write_text(json.dumps({"argv": ["status"], "settings": None}))
    (srv.folder / "1.json").symlink_to(real)
    srv.serve_pending()
    assert ran == []
    assert _result(srv, "1")["code"] == 2


@pytest.mark.parametrize("payload", [
    "x" * 1_100_000,                      # too large
    "[1, 2",                              # broken JSON
    "\udcff",                             # not text once written (surrogate escaped below)
    {"argv": "status"},                   # argv not a list
    {"argv": []},
    {"argv": ["status", 3]},
    {"argv": ["status"], "settings": 5},
    {"argv": ["generate", "--out", "/tmp/x"]},          # not a handed command
    {"argv": ["--debug", "feed", "--db", "/tmp/x"]},
    {"argv": ["ingest", "--inbox", "/tmp", "--watch"]},  # runs for ever
])
def test_a_job_that_is_not_a_handed_command_line_is_answered_not_run(tmp_path, payload):
    ran: list = []
    srv = _server(tmp_path, ran)
    if payload == "\udcff":
        (srv.folder / "1.json").write_bytes(b"\xff\xfe{")
    else:
        _job(srv, "1", payload)
    assert srv.serve_pending() == 1
    assert ran == []
    result = _result(srv, "1")
    assert result["code"] == 2 and result["stderr"].startswith("error: ")
    assert "Traceback" not in result["stderr"]
    assert stat.S_IMODE((srv.folder / "1.done").stat().st_mode) == 0o600


def test_a_flood_of_bad_jobs_is_answered_in_one_pass(tmp_path):
    ran: list = []
    srv = _server(tmp_path, ran)
    for i in range(300):
        _job(srv, f"{i:04d}", {"argv": ["generate"]})
    _job(srv, "9999", {"argv": ["status"]})
    assert srv.serve_pending() == 301
    assert [argv for argv, _ in ran] == [["status"]]


def test_a_failing_command_does_not_stop_the_loop(tmp_path):
    db = tmp_path / "wh.duckdb"
    db.write_text("")

    def runner(argv, settings):
        raise RuntimeError("boom")

    srv = JobServer(db, runner)
    _job(srv, "1", {"argv": ["status"]})
    _job(srv, "2", {"argv": ["status"]})
    assert srv.serve_pending() == 2
    assert "boom" in _result(srv, "2")["stderr"]


def test_handed_settings_stay_in_the_job_thread(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text('[display]\ntimezone = "Asia/Tokyo"\n')
    outside = load_settings().display_timezone
    seen: list[str] = []
    with handed_settings(str(mine)):
        assert load_settings().display_timezone == "Asia/Tokyo"
        t = threading.Thread(target=lambda: seen.append(load_settings().display_timezone))
        t.start()
        t.join()
    assert seen == [outside]  # the pages' threads keep the app's own settings


@pytest.mark.parametrize("tz", [
    "UTC'); drop table tickets; --", "Europe/Berl\u0456n", "A" * 100_000, " UTC",
    "../../../../etc/passwd", "/etc/localtime", "localtime", "right/UTC", "posix/UTC",
    "UTC\n", "Europe/Berlin\x00", "", None, 5,
])
def test_only_zone_database_names_reach_sql(tz):
    with pytest.raises(CsMetricsError) as err:
        local_sql("created_at", tz)  # type: ignore[arg-type]
    assert len(str(err.value)) < 400  # a long value is not echoed whole
    with pytest.raises(CsMetricsError):
        check_zone(tz)


@pytest.mark.parametrize("value", ["'; drop table t; --", "Europe/Berl\u0456n", "x" * 5000,
                                   "Europe/Berlin ", "localtime"])
def test_display_timezone_in_settings_is_checked(tmp_path, value):
    path = tmp_path / "s.toml"
    path.write_text(f"[display]\ntimezone = {json.dumps(value)}\n", encoding="utf-8")
    with pytest.raises(CsMetricsError, match="timezone"):
        load_settings(path)


def test_header_text_keeps_a_header_on_one_line():
    assert header_text("Team\r\nBcc: evil@example.com") == "Team Bcc: evil@example.com"
    assert "\n" not in header_text("a\nb\rc\u2028d\x85e")


SCHEDULE = """
[notifications.email]
host = "127.0.0.1"
sender = "a@example.com"

[[schedules]]
name = {name}
audience = "executive"
period = "last-week"
cron = {cron}
recipients = {recipients}
"""


@pytest.mark.parametrize(("name", "cron", "recipients"), [
    ('"<b>x</b>"', '"@daily"', '["x@example.com"]'),
    ('"x\\r\\nBcc: y"', '"@daily"', '["x@example.com"]'),
    ('"ok"', '"@reboot"', '["x@example.com"]'),
    ('"ok"', '"0 0 0 * * *"', '["x@example.com"]'),         # six fields (seconds)
    ('"ok"', '"* * * * * ; rm -rf /"', '["x@example.com"]'),
    ('"ok"', '"@daily"', '["x@example.com\\r\\nBcc: evil@example.com"]'),
    ('"ok"', '"@daily"', '["x@example.com evil@example.com"]'),
    ('"ok"', '"@daily"', '[]'),
    ('"ok"', '"* * 31 2 *"', '["x@example.com"]'),            # valid, but never comes
    ('"ok"', '"0 0 30 2 *"', '["x@example.com"]'),
    ('"ok"', '"@daily"', '["x@y.example,root"]'),              # a second address
    ('"ok"', '"@daily"', '["Boss <boss@example.com>"]'),
])
def test_hostile_schedules_are_refused_when_the_settings_load(tmp_path, name, cron, recipients):
    path = tmp_path / "s.toml"
    path.write_text(SCHEDULE.format(name=name, cron=cron, recipients=recipients),
                    encoding="utf-8")
    with pytest.raises(CsMetricsError, match="schedules"):
        load_settings(path)


@pytest.mark.usefixtures("fresh_caches")
def test_a_hostile_tz_link_is_ignored_and_shown_as_text(monkeypatch, sample_db):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO

    monkeypatch.setenv("CS_METRICS_DB", str(sample_db))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=90)
    at.query_params["tz"] = ("![x](http://evil.example/t.png) <img src=x onerror=alert(1)> "
                             "[c](javascript:alert(1)) :red[boo] $$x$$ UTC'--")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.sidebar.selectbox(key="report_tz").value == "UTC"
    note = next(c.value for c in at.caption if c.value.startswith("Ignored in the link"))
    for escaped in ("\\!\\[x\\]\\(", "\\<img"):
        assert escaped in note  # escaped: rendered as the characters typed
    # and cut to its first 60 characters: a long value is not echoed whole
    assert "javascript" not in note and "boo" not in note


# --- what a first review found, and its fixes -------------------------------------------------


def test_an_abbreviated_watch_is_refused_by_the_app():
    """argparse takes --wat for --watch: the app reads the command line as the command would
    and does not run a watch, which would hold its work loop for ever."""
    from cs_metrics.cli.main import run_in_app

    code, out, err = run_in_app(["ingest", "--inbox", "/nonexistent", "--wat"], None)
    assert code == 2 and out == "" and "does not run `ingest` with these options" in err
    code, _, err = run_in_app(["generate", "--out", "/tmp/x"], None)
    assert code == 2 and "does not run `generate`" in err


@pytest.mark.parametrize("payload", ["[1]", "[" * 100_000 + "]" * 100_000, "7", '"query"'])
def test_a_job_that_is_json_but_no_object_is_answered(tmp_path, payload):
    ran: list = []
    srv = _server(tmp_path, ran)
    _job(srv, "odd", payload)
    assert srv.serve_pending() == 1
    result = _result(srv, "odd")
    assert result["code"] == 2 and not ran
    assert "not a command line" in result["stderr"] or "could not be read" in result["stderr"]
    assert not list(srv.folder.glob("*.running"))


def test_a_planted_link_is_never_written_through(tmp_path):
    """The app's own temporary names, planted as links by someone who could write there,
    are replaced, never followed: the file they point at is left as it was."""
    srv = _server(tmp_path, [])
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (srv.folder / f".{HEARTBEAT}.{os.getpid()}").symlink_to(victim)
    srv.heartbeat()
    assert victim.read_text() == "precious"
    assert server_alive(tmp_path / "wh.duckdb")


def test_a_folder_swapped_under_the_app_stops_it_taking_commands(tmp_path):
    ran: list = []
    srv = _server(tmp_path, ran)
    srv.folder.rename(tmp_path / "moved")
    srv.folder.mkdir(mode=0o777)
    os.chmod(srv.folder, 0o777)
    _job(srv, "j", {"argv": ["quality"], "settings": None})
    with pytest.raises(CsMetricsError, match="no longer the app's own"):
        srv.serve_pending()
    with pytest.raises(CsMetricsError, match="no longer the app's own"):
        srv.heartbeat()
    assert not ran


@pytest.mark.parametrize("value", ['"right/UTC"', '"posix/Europe/Berlin"'])
def test_zone_database_copies_are_refused_where_they_are_set(tmp_path, value):
    path = tmp_path / "s.toml"
    path.write_text(f"[display]\ntimezone = {value}\n", encoding="utf-8")
    with pytest.raises(CsMetricsError, match="display.timezone"):
        load_settings(path)


@pytest.mark.parametrize(("args", "needle"), [
    (["ingest", "--inbox", "{tmp}", "--interval", "nan"], "--interval"),
    (["ingest", "--inbox", "{tmp}", "--interval", "1e308"], "--interval"),
    (["staffing", "--contacts", "100", "--interval-min", "30", "--aht-s", "180",
      "--target-answer-s", "20", "--service-level", "0.8", "--max-occupancy", "1e-300"],
     "--max-occupancy"),
    (["staffing", "--contacts", "100", "--interval-min", "30", "--aht-s", "180",
      "--target-answer-s", "20", "--service-level", "0.8", "--shrinkage", "0.9999999999"],
     "--shrinkage"),
])
def test_numbers_that_would_spin_or_overflow_are_refused(tmp_path, capsys, args, needle):
    from cs_metrics.cli.main import main

    code = main([a.replace("{tmp}", str(tmp_path)) for a in args] + ["--db",
                                                                      str(tmp_path / "w.db")]
                if args[0] == "ingest" else args)
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err
