"""Every command beside the running app: with `streamlit run app.py` holding the warehouse,
each command hands itself to the app and gives the output and exit code it gives on a copy
no one holds; a load handed over appears on a page; a busy or missing app is said so."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import cs_metrics
from cs_metrics import Filters, Warehouse, get_metric
from cs_metrics.ops.jobs import HEARTBEAT, JobServer, absolute_argv, job_dir
from simulations import generator
from tests.conftest import REPO
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, free_port, wait_for_run, wait_healthy


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CS_METRICS_")}
    env.update({"PYTHONPATH": str(REPO), "CS_METRICS_BASEMAP": "off", **extra})
    return env


def cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cs_metrics", *args], cwd=cwd,
                          env=_env(**env), capture_output=True, text=True, timeout=300)


@contextlib.contextmanager
def served(db: Path, log: Path, **env: str) -> Iterator[str]:
    """`streamlit run app.py` on ``db`` with its work loop on, started as the service starts
    it (one run of the app through the script health check); yields its URL."""
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.fileWatcherType", "none",
             "--server.scriptHealthCheckEnabled", "true",
             "--browser.gatherUsageStats", "false"],
            cwd=REPO, env=_env(CS_METRICS_DB=str(db), CS_METRICS_SERVER_LOOP="on", **env),
            stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(proc, f"{url}/_stcore/health", log)
        urllib.request.urlopen(f"{url}/_stcore/script-health-check", timeout=90).read()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A warehouse held by a running app (its work loop on) and an identical copy no one
    holds; yields (held db, free db, app url)."""
    tmp = tmp_path_factory.mktemp("server")
    generator.generate(tmp / "sample", tickets=2500, days=60, seed=21, end=datetime(2025, 3, 1))
    held, free = tmp / "held" / "wh.duckdb", tmp / "free" / "wh.duckdb"
    held.parent.mkdir()
    free.parent.mkdir()
    cs_metrics.ingest(tmp / "sample", db=held)
    shutil.copy(held, free)
    log = tmp / "streamlit.log"
    with served(held, log) as url:
        beat = job_dir(held) / HEARTBEAT
        deadline = time.monotonic() + 30
        while not beat.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert beat.exists(), log.read_text()
        yield held, free, url


def same(pair, args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    """Run ``args`` (with {db} and {out} placeholders) on both; assert equal results."""
    held, free, _ = pair
    runs = []
    for db, name in ((held, "held"), (free, "free")):
        out = tmp / name
        out.mkdir(exist_ok=True)
        argv = [a.replace("{db}", str(db)).replace("{out}", str(out)) for a in args]
        run = cli(argv, cwd=tmp)
        runs.append((run, db, out))
    (a, a_db, a_out), (b, b_db, b_out) = runs

    def norm(text: str, db: Path, out: Path) -> str:
        text = text.replace(str(out), "OUT").replace(str(db.parent), "DIR")
        return re.sub(r" in \d+\.\d s$", " in N s", text, flags=re.M)  # a load's duration

    assert a.returncode == b.returncode, (a.stderr, b.stderr)
    assert norm(a.stdout, a_db, a_out) == norm(b.stdout, b_db, b_out)
    # stderr: the same sentences (the app may say first that it is busy)
    held_err = [line for line in norm(a.stderr, a_db, a_out).splitlines()
                if "is busy" not in line]
    assert held_err == norm(b.stderr, b_db, b_out).splitlines()
    assert "held open by" not in a.stderr and "Traceback" not in a.stderr
    return a


READS = [
    ["query", "--metrics", "ticket_count,avg_first_response_min,csat_pct", "--by", "channel",
     "--grain", "week", "--db", "{db}"],
    ["query", "--metrics", "ticket_count,backlog", "--grain", "day", "--tz", "America/New_York",
     "--from", "2025-02-01", "--to", "2025-02-08", "--format", "json", "--db", "{db}"],
    ["query", "--metrics", "ticket_count", "--format", "parquet", "--out", "{out}/q.parquet",
     "--db", "{db}"],
    ["query", "--metrics", "no_such_metric", "--db", "{db}"],
    ["quality", "--db", "{db}"],
    ["forecast", "--days", "5", "--where", "channel=chat", "--db", "{db}"],
    ["topics", "--k", "3", "--format", "json", "--db", "{db}"],
    ["simulate-outage", "--lat", "40.7", "--lon", "-74.0", "--radius-km", "50", "--start",
     "2025-02-20T14:00", "--hours", "6", "--severity", "major", "--runs", "20", "--seed", "7",
     "--db", "{db}"],
    ["audit", "--action", "dataset_loaded", "--format", "json", "--db", "{db}"],
]


@pytest.mark.parametrize("args", READS, ids=lambda a: " ".join(a[:3]))
def test_a_command_beside_the_app_gives_the_same_result(pair, tmp_path, args):
    run = same(pair, args, tmp_path)
    if "--out" in args:
        held_file = tmp_path / "held" / "q.parquet"
        import pandas as pd

        assert pd.read_parquet(held_file).equals(pd.read_parquet(tmp_path / "free" /
                                                                 "q.parquet"))
    elif "no_such_metric" in args:
        assert run.returncode == 2 and "Unknown metric" in run.stderr
    else:
        assert run.returncode == 0 and run.stdout.strip()


def test_report_beside_the_app(pair, tmp_path):
    args = ["report", "--audience", "executive", "--period", "last-week", "--format", "md",
            "--out", "{out}/rep", "--db", "{db}"]
    same(pair, args, tmp_path)
    held = json.loads((tmp_path / "held" / "rep" / "report.json").read_text())
    free = json.loads((tmp_path / "free" / "rep" / "report.json").read_text())
    assert held["tables"] == free["tables"] and held["tables"]["kpis"]["rows"]


def test_loads_and_alerts_beside_the_app_and_the_page_shows_them(pair, tmp_path):
    held, free, url = pair
    more = tmp_path / "more"
    generator.generate(more, tickets=300, days=5, seed=77, end=datetime(2025, 3, 1))
    run = same(pair, ["ingest", str(more), "--db", "{db}"], tmp_path)
    assert "tickets" in run.stdout and run.returncode == 0
    same(pair, ["alerts", "--once", "--no-notify", "--db", "{db}"], tmp_path)
    # the load was audited in the app's warehouse, as the command does on its own (the
    # entries' numbers, times and hashes differ: the app wrote entries of its own before)
    logs = [json.loads(cli(["audit", "--action", "dataset_loaded", "--format", "json",
                            "--db", str(db)], tmp_path).stdout) for db in (held, free)]
    assert [len(entries) for entries in logs] == [1, 1]
    details = [json.loads(entries[0]["detail"]) for entries in logs]
    assert details[0]["loaded"] == details[1]["loaded"] > 0
    assert logs[0][0]["actor"] == logs[1][0]["actor"] == "local"
    # a mapped export too
    export = tmp_path / "export"
    export.mkdir()
    (export / "requests.csv").write_text(
        "Id,Opened,State\nX-1,2025-02-27 10:00,Closed\nX-2,2025-02-27 11:00,Open\n",
        encoding="utf-8")
    (export / "mapping.toml").write_text(
        '[tickets]\nsource = "requests.csv"\n[tickets.columns]\nticket_id = "Id"\n'
        'created_at = "Opened"\nstatus = "lower(State)"\n', encoding="utf-8")
    same(pair, ["ingest", str(export), "--mapping", str(export / "mapping.toml"),
                "--db", "{db}"], tmp_path)

    wh = Warehouse(free, read_only=True)
    try:
        end = wh.as_of().date() + timedelta(days=1)
        count = cs_metrics.query(wh, ["ticket_count"], filters=Filters(
            end - timedelta(days=90), end))["ticket_count"].iloc[0]
    finally:
        wh.close()
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: the page is not opened")
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.goto(url)
            wait_for_run(page)
            card = page.get_by_test_id("stMetric").filter(
                has=page.get_by_test_id("stMetricLabel").get_by_text("Tickets", exact=True))
            value = card.get_by_test_id("stMetricValue")
            value.wait_for(timeout=30_000)
            assert value.inner_text().strip() == get_metric("ticket_count").display(count)
        finally:
            browser.close()


def test_a_busy_app_is_said_and_a_timeout_is_exit_2(tmp_path):
    """A warehouse held by a process whose heartbeat is fresh but which takes no command."""
    db = tmp_path / "wh.duckdb"
    generator.generate(tmp_path / "s", tickets=200, days=10, seed=3, end=datetime(2025, 3, 1))
    cs_metrics.ingest(tmp_path / "s", db=db)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "print('held', flush=True); time.sleep(120)", str(db)], stdout=subprocess.PIPE,
        text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        folder = job_dir(db)
        folder.mkdir(mode=0o700)
        (folder / HEARTBEAT).write_text("{}")
        run = cli(["query", "--metrics", "ticket_count", "--db", str(db)], tmp_path,
                  CS_METRICS_JOB_TIMEOUT="3")
        assert run.returncode == 2
        assert "is busy" in run.stderr
        assert "did not take the command within 3 s" in run.stderr
        assert [p.name for p in folder.glob("*.json")] == [HEARTBEAT]  # the job withdrawn
        # no fresh heartbeat: the lock's own message, no waiting
        os.utime(folder / HEARTBEAT, (time.time() - 3600, time.time() - 3600))
        started = time.monotonic()
        run = cli(["query", "--metrics", "ticket_count", "--db", str(db)], tmp_path)
        assert run.returncode == 2 and "held open by" in run.stderr
        assert time.monotonic() - started < 30
    finally:
        holder.kill()
        holder.wait()


def test_the_app_runs_only_its_own_users_command_lines(tmp_path):
    ran: list[list[str]] = []

    def runner(argv, settings):
        ran.append(argv)
        return 0, "ok\n", ""

    server = JobServer(tmp_path / "wh.duckdb", runner)
    assert oct(server.folder.stat().st_mode & 0o777) == "0o700"

    def submit(name: str, body: object, owner: int | None = None) -> Path:
        path = server.folder / f"{name}.json"
        path.write_text(json.dumps(body) if not isinstance(body, str) else body)
        if owner is not None:
            os.chown(path, owner, owner)
        return path

    submit("1", {"argv": ["generate", "--out", "/tmp/x"], "settings": None})
    submit("2", {"argv": "query --metrics ticket_count; rm -rf /", "settings": None})
    submit("3", "{not json")
    submit("4", {"argv": ["ingest", "--inbox", "/x", "--watch"], "settings": None})
    submit("5", {"argv": ["query", "--metrics", "ticket_count"], "settings": None})
    if os.getuid() == 0:
        submit("6", {"argv": ["quality"], "settings": None}, owner=65534)
    assert server.serve_pending() == (6 if os.getuid() == 0 else 5)
    results = {p.stem: json.loads(p.read_text()) for p in server.folder.glob("*.done")}
    assert ran == [["query", "--metrics", "ticket_count"]]
    assert results["5"] == {"code": 0, "stdout": "ok\n", "stderr": ""}
    assert "does not run `generate`" in results["1"]["stderr"]
    assert "not a command line" in results["2"]["stderr"]
    assert "could not be read" in results["3"]["stderr"]
    assert "does not run `ingest`" in results["4"]["stderr"]
    if os.getuid() == 0:
        assert "does not belong to the user" in results["6"]["stderr"]
    assert all(r["code"] == 2 for k, r in results.items() if k != "5")


def test_paths_are_made_absolute_before_they_are_handed_over(tmp_path):
    flags = frozenset({"--replace", "--debug"})
    argv = ["ingest", "export", "--mapping", "m.toml", "--replace", "--db=wh.duckdb"]
    assert absolute_argv(argv, tmp_path, flags) == [
        "ingest", str(tmp_path / "export"), "--mapping", str(tmp_path / "m.toml"),
        "--replace", f"--db={tmp_path / 'wh.duckdb'}"]
    argv = ["--debug", "ingest", "--replace", "src", "--rejects", "r.csv"]
    assert absolute_argv(argv, tmp_path, flags) == [
        "--debug", "ingest", "--replace", str(tmp_path / "src"), "--rejects",
        str(tmp_path / "r.csv")]
    argv = ["report", "--email", "--out", "rep", "--where", "channel=chat"]
    assert absolute_argv(argv, tmp_path, flags) == [
        "report", "--email", "--out", str(tmp_path / "rep"), "--where", "channel=chat"]


def test_the_running_app_runs_the_rules_and_sends_a_due_report_once(tmp_path):
    """With only the app's service: the rules run at start (no inbox) and raise the SLA
    alert the data holds; a schedule due in the past minute is e-mailed once; `report
    --email` beside the app sends through the same SMTP."""
    from datetime import UTC

    from cs_metrics.ops.alerts import alert_schedule
    from tests.test_schedules import HEAD, Smtp
    from tests.test_schedules import free_port as smtp_port

    generator.generate(tmp_path / "s", tickets=1500, days=40, seed=8, end=datetime(2025, 3, 1))
    db = tmp_path / "wh.duckdb"
    cs_metrics.ingest(tmp_path / "s", db=db)
    mail = smtp_port()
    now = datetime.now(UTC)
    if now.second > 45:  # the slot must still be this minute's when the app first looks
        time.sleep(61 - now.second)
        now = datetime.now(UTC)
    settings = tmp_path / "settings.toml"
    settings.write_text(HEAD.format(port=mail) + f"""
[[schedules]]
name = "Exec now"
audience = "executive"
period = "last-week"
cron = "{now.minute} {now.hour} * * *"
recipients = ["lead@example.com"]
""", encoding="utf-8")
    log = tmp_path / "streamlit.log"
    with Smtp(mail) as inbox, served(db, log, CS_METRICS_SETTINGS=str(settings)):
        deadline = time.monotonic() + 60
        while not inbox.messages and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3)  # a few more ticks of the loop: nothing more is sent
        assert len(inbox.messages) == 1, log.read_text()[-3000:]
        recipients, message = inbox.messages[0]
        assert recipients == ["lead@example.com"]
        assert "Executive performance report" in message["Subject"]
        status = cli(["status", "--format", "json", "--db", str(db),
                      "--settings", str(settings)], tmp_path)
        assert status.returncode in (0, 1), status.stderr
        # the report command beside the app e-mails through the same SMTP
        run = cli(["report", "--audience", "executive", "--period", "last-week",
                   "--out", str(tmp_path / "rep"), "--email", "boss@example.com",
                   "--settings", str(settings), "--db", str(db)], tmp_path)
        assert run.returncode == 0, run.stderr
        assert "emailed the report to boss@example.com" in run.stderr
        assert (tmp_path / "rep" / "report.html").is_file()
        assert len(inbox.messages) == 2 and inbox.messages[1][0] == ["boss@example.com"]
    wh = Warehouse(db, read_only=True)
    try:
        alerts = wh.df("select rule, severity from alerts")
        runs = wh.df("select outcome, via from schedule_runs")
        last, _ = alert_schedule(wh, cs_metrics.load_settings(settings))
    finally:
        wh.close()
    # the SLA breach the generated data holds, raised by the rules the app ran at start
    assert ("sla_breached", "critical") in set(alerts.itertuples(index=False, name=None)), \
        alerts
    assert last is not None
    assert runs.to_dict("records") == [{"outcome": "ok", "via": "schedule"}]


def test_a_job_folder_that_is_not_the_users_own_is_not_trusted(tmp_path):
    """A link in place of the job folder, or a folder others may write, is neither served
    by the app nor written to by a command (which then gives the lock's own sentence)."""
    from cs_metrics.core.errors import CsMetricsError
    from cs_metrics.ops.jobs import server_alive

    db = tmp_path / "wh.duckdb"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (elsewhere / HEARTBEAT).write_text("{}")
    job_dir(db).symlink_to(elsewhere)
    assert not server_alive(db)
    with pytest.raises(CsMetricsError, match="is a link"):
        JobServer(db, lambda argv, settings: (0, "", ""))
    job_dir(db).unlink()
    server = JobServer(db, lambda argv, settings: (0, "", ""))
    server.heartbeat()
    assert server_alive(db)
    os.chmod(server.folder, 0o777)  # opened to everyone: its heartbeat proves nothing
    assert not server_alive(db)
    # the app makes its own folder private again when it starts
    again = JobServer(db, lambda argv, settings: (0, "", ""))
    assert oct(again.folder.stat().st_mode & 0o777) == "0o700"
    again.heartbeat()
    assert server_alive(db)
