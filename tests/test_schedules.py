"""Scheduled reports ([[schedules]]): settings, cron slots in a zone, delivery through a real
SMTP server on localhost (aiosmtpd) with catch-up and retries, the `schedules` and `status`
commands, and the Reports page's section."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from cs_metrics import CsMetricsError, Filters, Warehouse, get_metric, load_settings, query
from cs_metrics.ops import reports as R
from cs_metrics.ops.schedules import deliveries, next_runs, run_due, slot_before
from tests.conftest import REPO

aiosmtpd = pytest.importorskip("aiosmtpd.controller",
                               reason="aiosmtpd is not installed (requirements-dev.txt)")


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content,
                                                                    policy=policy.default)))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Smtp:
    """A local SMTP server on ``port`` while inside ``with``."""

    def __init__(self, port: int) -> None:
        self.inbox = Inbox()
        self.controller = aiosmtpd.Controller(self.inbox, hostname="127.0.0.1", port=port)

    def __enter__(self) -> Inbox:
        self.controller.start()
        return self.inbox

    def __exit__(self, *exc) -> None:
        self.controller.stop()


HEAD = """
[notifications]
retry_attempts = 3
retry_base_s = 30
timeout_s = 2

[notifications.email]
host = "127.0.0.1"
port = {port}
security = "none"
sender = "reports@example.com"
subject_prefix = "[cs-metrics]"
"""

DAILY = """
[[schedules]]
name = "Daily exec"
audience = "executive"
period = "last-week"
cron = "0 8 * * *"
recipients = ["boss@example.com", "ops@example.com"]
"""


def write_settings(tmp_path: Path, body: str, port: int = 2525) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(HEAD.format(port=port) + body, encoding="utf-8")
    return path


@pytest.fixture()
def db(sample_db, tmp_path) -> Path:
    copy = tmp_path / "wh.duckdb"
    shutil.copy(sample_db, copy)
    return copy


# --- settings ----------------------------------------------------------------------------------


def test_a_valid_schedule_is_read_whole(tmp_path):
    s = load_settings(write_settings(tmp_path, """
[[schedules]]
name = "team-A monthly"
audience = "team"
team = "Team A"
period = "2025-01"
cron = "30 6 1 * *"
timezone = "America/New_York"
recipients = ["lead@example.com"]
format = "md"
where = { channel = ["chat", "email"], priority = "urgent" }
"""))
    (sched,) = s.schedules
    assert (sched.name, sched.audience, sched.team, sched.rep) == (
        "team-A monthly", "team", "Team A", None)
    assert (sched.period, sched.cron, sched.timezone, sched.format) == (
        "2025-01", "30 6 1 * *", "America/New_York", "md")
    assert sched.recipients == ("lead@example.com",)
    assert sched.where == (("channel", ("chat", "email")), ("priority", ("urgent",)))
    assert load_settings().schedules == ()  # none by default


BAD = {
    "bad cron": ('cron = "0 25 * * *"', "cron"),
    "cron with seconds": ('cron = "0 0 8 * * *"', "cron"),
    "unknown audience": ('audience = "board"', "audience"),
    "bad zone": ('timezone = "Mars/Olympus"', "timezone"),
    "bad period": ('period = "next-week"', "period"),
    "bad recipient": ('recipients = ["not an address"]', "recipients"),
    "no recipients": ("recipients = []", "recipients"),
    "rep without its audience": ('rep = "R001"', "rep"),
    "unknown dimension": ('where = { planet = "x" }', "where"),
    "unknown key": ('colour = "blue"', "colour"),
    "bad format": ('format = "pdf"', "format"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_schedule_names_the_file_schedule_and_key(tmp_path, case):
    line, key = BAD[case]
    field = line.split(" = ")[0]
    body = "\n".join(x for x in DAILY.strip().splitlines() if not x.startswith(f"{field} ="))
    path = write_settings(tmp_path, body + "\n" + line + "\n")
    with pytest.raises(CsMetricsError) as err:
        load_settings(path)
    text = str(err.value)
    assert str(path) in text and "Daily exec" in text and key in text, text


def test_team_audience_needs_a_team(tmp_path):
    path = write_settings(tmp_path, DAILY.replace('"executive"', '"team"'))
    with pytest.raises(CsMetricsError, match=r"schedules\[1\] \(Daily exec\)\.team in .*"
                                             r"settings\.toml must be a team"):
        load_settings(path)


def test_duplicate_names_are_refused(tmp_path):
    path = write_settings(tmp_path, DAILY + DAILY.replace("Daily exec", "daily EXEC"))
    with pytest.raises(CsMetricsError, match=r"schedules\[2\]\.name in .*settings\.toml "
                                             r"repeats the name 'daily EXEC'"):
        load_settings(path)


def test_schedules_need_an_smtp_server(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text(DAILY, encoding="utf-8")
    with pytest.raises(CsMetricsError, match="notifications.email.host"):
        load_settings(path)


# --- cron slots --------------------------------------------------------------------------------


def test_next_run_follows_the_zone_across_dst(tmp_path):
    s = load_settings(write_settings(tmp_path, DAILY.replace(
        'cron = "0 8 * * *"', 'cron = "0 9 * * *"\ntimezone = "Europe/Berlin"')))
    # Berlin leaves CET (UTC+1) for CEST (UTC+2) on Sunday 30 March 2025 at 02:00
    before = next_runs(s, datetime(2025, 3, 28, 12))
    after = next_runs(s, datetime(2025, 3, 29, 12))
    assert before["next_run_utc"][0] == datetime(2025, 3, 29, 8)
    assert after["next_run_utc"][0] == datetime(2025, 3, 30, 7)
    assert before["next_run_local"][0] == after["next_run_local"][0] - timedelta(days=1)
    assert after["next_run_local"][0] == datetime(2025, 3, 30, 9)
    assert list(after.columns[:3]) == ["name", "next_run_utc", "next_run_local"]
    (sched,) = s.schedules
    # a slot is included at its very moment, and the previous one is found across the change
    assert slot_before(sched, datetime(2025, 3, 30, 7)) == datetime(2025, 3, 30, 7)
    assert slot_before(sched, datetime(2025, 3, 30, 6, 59)) == datetime(2025, 3, 29, 8)


# --- delivery ----------------------------------------------------------------------------------

T0 = datetime(2025, 3, 3, 7, 59)  # the server first sees the schedule a minute before 08:00


def plain_body(message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain" and not part.get_filename():
            return part.get_payload(decode=True).decode()
    raise AssertionError("no plain-text part")


def test_a_schedule_first_seen_just_after_its_slot_sends_it_once(db, tmp_path):
    port = free_port()
    settings = load_settings(write_settings(tmp_path, DAILY, port))
    with Smtp(port) as inbox:
        wh = Warehouse(db)
        try:
            # first seen 40 s after the 08:00 slot (the app started then): sent, once
            (run,) = run_due(wh, settings, datetime(2025, 3, 10, 8, 0, 40))
            assert run.ok and run.slot == datetime(2025, 3, 10, 8)
            assert run_due(wh, settings, datetime(2025, 3, 10, 8, 1, 40)) == []
        finally:
            wh.close()
    assert len(inbox.messages) == 1


def test_due_in_the_past_minute_sends_once_then_catches_up_once(db, tmp_path):
    port = free_port()
    settings = load_settings(write_settings(tmp_path, DAILY, port))
    with Smtp(port) as inbox:
        wh = Warehouse(db)
        try:
            assert run_due(wh, settings, T0) == []  # 2 March's slot was before it was seen
            (run,) = run_due(wh, settings, datetime(2025, 3, 3, 8, 0, 40))
            assert run_due(wh, settings, datetime(2025, 3, 3, 8, 1, 40)) == []
            assert (run.ok, run.slot, run.attempt) == (True, datetime(2025, 3, 3, 8), 1)
            assert len(inbox.messages) == 1
            # three days down: 4, 5 and 6 March's slots were missed, one report catches up
            (late,) = run_due(wh, settings, datetime(2025, 3, 6, 10))
            assert run_due(wh, settings, datetime(2025, 3, 6, 10, 0, 1)) == []
            assert late.slot == datetime(2025, 3, 6, 8) and late.ok
            assert len(inbox.messages) == 2
            log = deliveries(wh)
            period = R.resolve_period(wh, "last-week")
            count = query(wh, ["ticket_count"], filters=Filters(period.date_from,
                                                                period.date_to))
        finally:
            wh.close()
    assert list(log["outcome"]) == ["ok", "ok"]
    assert list(log["slot"]) == [datetime(2025, 3, 6, 8), datetime(2025, 3, 3, 8)]
    recipients, message = inbox.messages[0]
    assert sorted(recipients) == ["boss@example.com", "ops@example.com"]
    assert message["Subject"].startswith("[cs-metrics]") and period.label in message["Subject"]
    shown = get_metric("ticket_count").display(count["ticket_count"].iloc[0])
    body = plain_body(message)
    assert f"- {get_metric('ticket_count').label}: {shown}," in body
    names = [p.get_filename() for p in message.walk() if p.get_filename()]
    assert names and names[0].endswith(".html")


def test_a_failing_smtp_is_logged_and_retried_per_the_policy(db, tmp_path):
    port = free_port()  # nobody listens there until the server starts below
    settings = load_settings(write_settings(tmp_path, DAILY, port))
    slot = datetime(2025, 3, 3, 8)
    wh = Warehouse(db)
    try:
        run_due(wh, settings, T0)
        (first,) = run_due(wh, settings, slot + timedelta(seconds=5))
        assert not first.ok and first.attempt == 1 and "127.0.0.1" in first.error
        # the notifications' backoff: retry_base_s (30 s) after the first try
        assert first.retry_at - first.finished_at == timedelta(seconds=30)
        assert run_due(wh, settings, slot + timedelta(seconds=20)) == []  # not yet
        with Smtp(port) as inbox:
            (second,) = run_due(wh, settings, first.retry_at + timedelta(seconds=1))
            assert run_due(wh, settings, first.retry_at + timedelta(seconds=90)) == []
        log = deliveries(wh)
    finally:
        wh.close()
    assert second.ok and second.attempt == 2 and second.slot == slot
    assert len(inbox.messages) == 1
    assert list(log["attempt"]) == [2, 1]
    assert list(log["outcome"]) == ["ok", "failed"]
    assert log["error"].iloc[1].startswith("Sending email through 127.0.0.1")


def test_retries_stop_after_the_last_try(db, tmp_path):
    settings = load_settings(write_settings(tmp_path, DAILY.replace(
        '"last-week"', '"2025-02"'), free_port()))
    wh = Warehouse(db)
    try:
        run_due(wh, settings, T0)
        at = datetime(2025, 3, 3, 8)
        tries = []
        for _ in range(3):
            (run,) = run_due(wh, settings, at)
            tries.append(run)
            at = (run.retry_at or run.finished_at) + timedelta(seconds=1)
        assert run_due(wh, settings, at + timedelta(hours=1)) == []  # given up
    finally:
        wh.close()
    assert [t.attempt for t in tries] == [1, 2, 3]
    waits = [t.retry_at - t.finished_at for t in tries[:2]]
    assert waits == [timedelta(seconds=30), timedelta(seconds=60)]
    assert tries[2].retry_at is None and not tries[2].ok


# --- commands ----------------------------------------------------------------------------------


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "cs_metrics", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_schedules_and_status_commands(db, tmp_path):
    port = free_port()
    path = write_settings(tmp_path, DAILY.replace('"last-week"', '"2025-02"'), port)
    listed = cli("schedules", "--settings", str(path), "--db", str(db))
    assert listed.returncode == 0, listed.stderr
    assert "Daily exec" in listed.stdout and "0 8 * * *" in listed.stdout
    assert "next_run_utc" in listed.stdout

    unknown = cli("schedules", "run", "Weekly", "--settings", str(path), "--db", str(db))
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        f"error: There is no schedule named 'Weekly' in {path}; the schedules are: "
        "'Daily exec'."]

    calm = cli("status", "--settings", str(path), "--db", str(db))
    assert calm.returncode == 0, calm.stdout + calm.stderr  # nothing needs attention yet
    assert f"warehouse      {db}" in calm.stdout
    assert "failed deliveries in the last day: 0" in calm.stdout
    assert calm.stdout.rstrip().endswith("status         OK")

    down = cli("schedules", "run", "daily exec", "--settings", str(path), "--db", str(db))
    assert down.returncode == 2 and "Traceback" not in down.stderr
    assert "was not delivered: Sending email through 127.0.0.1" in down.stderr

    inbox_dir = tmp_path / "inbox"
    (inbox_dir / "batch-1").mkdir(parents=True)
    (inbox_dir / "batch-1" / "tickets.csv").write_text("ticket_id,created_at,status\n")
    state = cli("status", "--settings", str(path), "--db", str(db), "--format", "json",
                env={"CS_METRICS_INBOX": str(inbox_dir)})
    assert state.returncode == 1, state.stderr  # the failed delivery needs attention
    data = json.loads(state.stdout)
    assert data["ok"] is False
    assert [f["kind"] for f in data["failed_deliveries"]] == ["report"]
    assert data["inbox"]["waiting"] == 1 and data["inbox"]["batches"] == ["batch-1"]
    assert data["schedules"][0]["name"] == "Daily exec"
    assert data["schedules"][0]["last_outcome"].startswith("failed")
    assert data["last_load"]["outcome"] == "ok"
    wh = Warehouse(db, read_only=True)
    try:
        tickets = int(query(wh, ["ticket_count"])["ticket_count"].iloc[0])
        stored = int(wh.scalar("select count(*) from tickets"))
    finally:
        wh.close()
    assert data["warehouse"]["tickets"] == stored >= tickets > 0

    with Smtp(port) as inbox:
        sent = cli("schedules", "run", "Daily exec", "--settings", str(path), "--db", str(db))
    assert sent.returncode == 0, sent.stderr
    assert "emailed the report 'Daily exec' (February 2025) to boss@example.com" in sent.stdout
    assert len(inbox.messages) == 1
    missing = cli("status", "--db", str(tmp_path / "nope.duckdb"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: There is no warehouse")


# --- the page ----------------------------------------------------------------------------------


def test_reports_page_lists_schedules_and_deliveries(db, tmp_path, monkeypatch, fresh_caches):
    from streamlit.testing.v1 import AppTest

    settings_path = write_settings(tmp_path, DAILY.replace('"last-week"', '"2025-02"'),
                                   free_port())
    settings = load_settings(settings_path)
    wh = Warehouse(db)
    try:
        run_due(wh, settings, T0)
        run_due(wh, settings, datetime(2025, 3, 3, 8))  # nobody listens there: failed
    finally:
        wh.close()
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    monkeypatch.setenv("CS_METRICS_SETTINGS", str(settings_path))
    at = AppTest.from_file(str(REPO / "views" / "reports.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Scheduled reports" in [h.value for h in at.subheader]
    nxt, log = (d.value for d in at.dataframe)  # the schedules, then the delivery log
    assert list(nxt["name"]) == ["Daily exec"]
    assert nxt["recipients"].iloc[0] == "boss@example.com, ops@example.com"
    assert list(log["outcome"]) == ["failed"] and log["attempt"].iloc[0] == 1
    assert any("1 tries, 1 failed" in c.value for c in at.caption)
