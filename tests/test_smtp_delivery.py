"""Alert e-mail through a real SMTP server on localhost (aiosmtpd), and what happens when it
is down: the failure is logged and retried, and the in-app alert still shows."""

from __future__ import annotations

import shutil
import socket
from email import message_from_bytes
from pathlib import Path

import pytest

from cs_metrics import Warehouse, load_settings
from cs_metrics.ops.alerts import pending_in_app, run_alerts
from cs_metrics.ops.notify import deliveries

aiosmtpd = pytest.importorskip("aiosmtpd.controller",
                               reason="aiosmtpd is not installed (requirements-dev.txt)")


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings_file(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(f"""
[notifications]
channels = ["in_app", "email"]
min_severity = "warning"
retry_attempts = 3
retry_base_s = 0.01
timeout_s = 2

[notifications.email]
host = "127.0.0.1"
port = {port}
security = "none"
sender = "alerts@example.com"
recipients = ["lead@example.com", "ops@example.com"]
subject_prefix = "[cs-metrics]"
""", encoding="utf-8")
    return path


@pytest.fixture()
def db(sample_db, tmp_path) -> Path:
    copy = tmp_path / "wh.duckdb"
    shutil.copy(sample_db, copy)
    return copy


def test_alert_email_reaches_a_real_smtp_server(db, tmp_path):
    inbox = Inbox()
    port = free_port()
    controller = aiosmtpd.Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = load_settings(settings_file(tmp_path, port))
        wh = Warehouse(db)
        try:
            run = run_alerts(wh, settings)
            log = deliveries(wh)
        finally:
            wh.close()
    finally:
        controller.stop()
    sent = [a for a in run.raised if a.severity in ("warning", "critical")]
    assert sent, "the sample should raise a warning or critical alert"
    assert len(inbox.messages) == 1  # one message per run, listing the alerts
    recipients, message = inbox.messages[0]
    assert sorted(recipients) == ["lead@example.com", "ops@example.com"]
    assert message["Subject"].startswith("[cs-metrics]")
    body = message.get_payload(decode=True).decode()
    for alert in sent:
        assert alert.title in body
        assert alert.message in body  # the figures, as the alert states them
    email = log[log["channel"] == "email"]
    assert set(email["status"]) == {"sent"}


def test_smtp_down_is_logged_retried_and_the_in_app_alert_still_shows(db, tmp_path):
    settings = load_settings(settings_file(tmp_path, free_port()))  # nobody listens there
    wh = Warehouse(db)
    try:
        run = run_alerts(wh, settings)
        log = deliveries(wh)
        pending = pending_in_app(wh)
    finally:
        wh.close()
    assert run.raised
    email = log[log["channel"] == "email"]
    assert len(email) == 3  # every try, then failed
    assert sorted(email["attempt"]) == [1, 2, 3]
    assert email.sort_values("attempt")["status"].iloc[-1] == "failed"
    assert email["error"].notna().all()
    assert set(pending["occurrence_id"]) == {a.occurrence_id for a in run.raised}
