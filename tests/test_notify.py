from __future__ import annotations

import dataclasses
import email
import email.message
import json
import socket
import socketserver
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.settings import load_settings
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.loader import ingest
from cs_metrics.ops.alerts import Alert, alert_history, run_alerts
from cs_metrics.ops.notify import (
    DeliveryError,
    deliver,
    deliveries,
    notify,
    post_webhook,
    redact_url,
    send_email,
    slack_payload,
)
from tests.conftest import ticket, write_csv

T0 = datetime(2024, 1, 10, 12, 0)


def _alert(i: int = 1, severity: str = "critical") -> Alert:
    return Alert(
        id=f"sla_breached:t{i}", rule="sla_breached", severity=severity,
        title=f"SLA breached: {i} unanswered",
        message=f"{i} urgent tickets have waited past the first-response target.",
        figures={"count": i}, link="/trends?range=last-7-days&priority=urgent", created_at=T0,
        occurrence_id=f"sla_breached:t{i}#1",
    )


# --- a local webhook receiver and SMTP server --------------------------------------------------


class Hook:
    """A local HTTP server: POST /ok answers 200, /fail 500, /gone 404; bodies are kept."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict, bytes]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.requests.append((self.path, dict(self.headers), body))
                code = {"/ok": 200, "/fail": 500, "/gone": 404}.get(self.path, 404)
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok" if code == 200 else b"no")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    server = Hook()
    yield server
    server.close()


class SmtpStub:
    """Just enough SMTP (no TLS, no AUTH) for smtplib to send; messages are kept."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], email.message.Message]] = []
        stub = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, text: str) -> None:
                self.wfile.write(f"{text}\r\n".encode())

            def handle(self):
                self.reply("220 stub ESMTP")
                sender, rcpts = "", []
                while line := self.rfile.readline():
                    cmd = line.decode().strip()
                    verb = cmd.split(" ", 1)[0].split(":", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.wfile.write(b"250-stub\r\n250 HELP\r\n")
                    elif verb == "MAIL":
                        sender = cmd.split(":", 1)[1].strip()
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        rcpts.append(cmd.split(":", 1)[1].strip())
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 go ahead")
                        data = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk[1:] if chunk.startswith(b"..") else chunk
                        stub.messages.append((sender, rcpts, email.message_from_bytes(data)))
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 OK")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def smtp():
    server = SmtpStub()
    yield server
    server.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(tmp_path, channels: list[str], webhooks: list[str] = (), **email_keys):
    """Notification settings read from a file, as a user would write them."""
    mail = {"host": "127.0.0.1", "port": 25, "security": "none", "sender": "alerts@example.com",
            "recipients": ["lead@example.com", "ops@example.com"], **email_keys}
    path = tmp_path / "settings.toml"
    path.write_text(
        f"[notifications]\nchannels = {json.dumps(channels)}\nretry_attempts = 4\n"
        "retry_base_s = 0.5\ntimeout_s = 5\napp_url = 'https://cs.example.com'\n"
        f"[notifications.webhook]\nurls = {json.dumps(list(webhooks))}\nurls_env = ''\n"
        "[notifications.email]\n"
        + "".join(f"{key} = {json.dumps(value)}\n" for key, value in mail.items())
    )
    return load_settings(path).notifications


# --- webhook -----------------------------------------------------------------------------------


def test_webhook_posts_slack_shaped_json(hook):
    status = post_webhook(f"{hook.url}/ok", slack_payload([_alert(1), _alert(2, "warning")],
                                                         "https://cs.example.com"))
    assert status == 200
    [(path, headers, body)] = hook.requests
    assert path == "/ok" and headers["Content-Type"].startswith("application/json")
    payload = json.loads(body)
    assert set(payload) == {"text", "blocks"}
    assert payload["text"].splitlines() == [
        "[CRITICAL] 1 urgent tickets have waited past the first-response target.",
        "[WARNING] 2 urgent tickets have waited past the first-response target.",
    ]
    header, first, second = payload["blocks"]
    assert header == {"type": "header", "text": {
        "type": "plain_text", "text": "2 new alerts: SLA breached: 1 unanswered and 1 more"}}
    assert first["type"] == "section" and first["text"]["type"] == "mrkdwn"
    assert first["text"]["text"] == (
        "*[CRITICAL] SLA breached: 1 unanswered*\n"
        "1 urgent tickets have waited past the first-response target.\n"
        "<https://cs.example.com/trends?range=last-7-days&priority=urgent|Open in the app>")
    assert "*[WARNING] SLA breached: 2 unanswered*" in second["text"]["text"]


def test_webhook_errors_say_whether_to_retry(hook):
    with pytest.raises(DeliveryError, match="HTTP 500") as info:
        post_webhook(f"{hook.url}/fail", {"text": "x"})
    assert info.value.retriable
    with pytest.raises(DeliveryError, match="HTTP 404") as info:
        post_webhook(f"{hook.url}/gone", {"text": "x"})
    assert not info.value.retriable
    with pytest.raises(DeliveryError, match="could not be reached") as info:
        post_webhook(f"http://127.0.0.1:{_closed_port()}/x", {"text": "x"}, timeout=2)
    assert info.value.retriable and isinstance(info.value, CsMetricsError)


def test_redacted_webhook_addresses_hide_the_secret():
    assert redact_url("https://hooks.slack.com/services/T0/B0/s3cr3t") == (
        "https://hooks.slack.com/services/…")
    assert redact_url("https://user:pw@example.com:8443/hook?token=x") == (
        "https://example.com:8443/hook/…")


# --- email -------------------------------------------------------------------------------------


def test_email_through_a_local_smtp_server(smtp, tmp_path):
    settings = _settings(tmp_path, ["email"], port=smtp.port)
    delays: list[float] = []
    rows = deliver([_alert(1), _alert(2, "warning")], settings, sleep=delays.append)
    assert delays == []
    assert [(d.channel, d.attempt, d.status) for d in rows] == [("email", 1, "sent")] * 2
    assert rows[0].target == "lead@example.com, ops@example.com via 127.0.0.1:" + str(smtp.port)
    [(sender, rcpts, msg)] = smtp.messages
    assert sender == "<alerts@example.com>"
    assert rcpts == ["<lead@example.com>", "<ops@example.com>"]
    assert msg["Subject"] == "[cs-metrics] 2 new alerts: SLA breached: 1 unanswered and 1 more"
    body = msg.get_payload(decode=True).decode()
    assert "[CRITICAL] SLA breached: 1 unanswered" in body
    assert "Open: https://cs.example.com/trends?range=last-7-days&priority=urgent" in body


class FakeSMTP:
    """Stands in for smtplib.SMTP: records STARTTLS, login and the message."""

    sent: list = []

    def __init__(self, host, port, timeout=None):
        self.calls = [("connect", host, port, timeout)]
        FakeSMTP.sent.append(self.calls)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.calls.append(("quit",))

    def starttls(self, context=None):
        self.calls.append(("starttls", context is not None))

    def login(self, user, password):
        self.calls.append(("login", user, password))

    def send_message(self, msg):
        self.calls.append(("send", msg["To"]))


def test_email_starttls_login_reads_the_password_from_the_environment(monkeypatch, tmp_path):
    import cs_metrics.ops.notify as notify_module

    FakeSMTP.sent = []
    monkeypatch.setattr(notify_module.smtplib, "SMTP", FakeSMTP)
    monkeypatch.setenv("TEST_SMTP_PW", "hunter2")
    settings = _settings(tmp_path, ["email"], username="bot", password_env="TEST_SMTP_PW",
                         security="starttls")
    send_email(settings.email, "subject", "body", timeout=3)
    [calls] = FakeSMTP.sent
    assert calls == [("connect", "127.0.0.1", 25, 3), ("starttls", True),
                     ("login", "bot", "hunter2"), ("send", "lead@example.com, ops@example.com"),
                     ("quit",)]


def test_missing_smtp_password_fails_at_once_without_retries(monkeypatch, tmp_path):
    monkeypatch.delenv("TEST_SMTP_PW", raising=False)
    settings = _settings(tmp_path, ["email"], username="bot", password_env="TEST_SMTP_PW")
    delays: list[float] = []
    rows = deliver([_alert()], settings, sleep=delays.append)
    [row] = rows
    assert (row.attempt, row.status) == (1, "failed") and delays == []
    assert "TEST_SMTP_PW" in row.error and "hunter2" not in row.error


# --- retries, independence, the log ------------------------------------------------------------


@pytest.mark.parametrize("broken", ["http_500", "refused"])
def test_failing_webhook_is_retried_with_backoff_while_email_succeeds(
    hook, smtp, tmp_path, broken
):
    url = f"{hook.url}/fail" if broken == "http_500" else f"http://127.0.0.1:{_closed_port()}/x"
    settings = _settings(tmp_path, ["in_app", "email", "webhook"], [url, f"{hook.url}/ok"],
                         port=smtp.port)
    db = tmp_path / "wh.duckdb"
    wh = Warehouse(db)
    delays: list[float] = []
    rows = notify(wh, [_alert()], settings, sleep=delays.append)
    assert delays == [0.5, 1.0, 2.0]  # only the failing channel waits, twice as long each time
    failing = [d for d in rows if d.target == redact_url(url)]
    assert [(d.attempt, d.status) for d in failing] == [
        (1, "retrying"), (2, "retrying"), (3, "retrying"), (4, "failed")]
    assert ("HTTP 500" if broken == "http_500" else "could not be reached") in failing[-1].error
    final = {(d.channel, d.target): d.status for d in rows}
    assert final[("email", f"lead@example.com, ops@example.com via 127.0.0.1:{smtp.port}")] \
        == "sent"
    assert final[("webhook", f"{hook.url}/ok")] == "sent"
    assert final[("in_app", "app")] == "pending"
    assert len(smtp.messages) == 1
    if broken == "http_500":
        assert [p for p, _, _ in hook.requests].count("/fail") == 4
    logged = deliveries(wh)
    assert len(logged) == len(rows) == 1 + 1 + 4 + 1
    assert set(logged.columns) == {"occurrence_id", "alert_id", "channel", "target", "attempt",
                                   "status", "error", "at"}
    assert logged[logged["status"] == "failed"]["target"].tolist() == [redact_url(url)]


def test_a_raising_channel_never_reaches_the_caller(tmp_path):
    settings = _settings(tmp_path, ["webhook"], ["https://example.invalid/hook"])

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    delays: list[float] = []
    rows = deliver([_alert()], settings, sleep=delays.append, webhook_poster=explode)
    assert [d.status for d in rows] == ["retrying", "retrying", "retrying", "failed"]
    assert rows[-1].error == "RuntimeError: boom" and delays == [0.5, 1.0, 2.0]


def test_min_severity_keeps_info_alerts_in_the_app(hook, tmp_path):
    settings = _settings(tmp_path, ["in_app", "webhook"], [f"{hook.url}/ok"])
    rows = deliver([_alert(1, "info")], settings)
    assert [(d.channel, d.status) for d in rows] == [("in_app", "pending")]
    assert hook.requests == []


def test_run_alerts_notifies_new_alerts_only(hook, tmp_path):
    folder = tmp_path / "src"
    fmt = "%Y-%m-%d %H:%M:%S"
    write_csv(folder, "tickets", [
        ticket("U1", (T0 - timedelta(minutes=30)).strftime(fmt), "open", priority="urgent"),
        # one answered ticket: the dataset has first responses, so the SLA rules can run
        ticket("A0", (T0 - timedelta(hours=2)).strftime(fmt), "closed", priority="low",
               first_response_at=(T0 - timedelta(hours=2) + timedelta(minutes=5)).strftime(fmt),
               resolved_at=(T0 - timedelta(hours=1)).strftime(fmt)),
    ])
    ingest(folder, db=tmp_path / "wh.duckdb")
    wh = Warehouse(tmp_path / "wh.duckdb")
    settings = dataclasses.replace(
        load_settings(), notifications=_settings(tmp_path, ["webhook"], [f"{hook.url}/ok"]))
    run = run_alerts(wh, settings, now=T0)
    assert [a.id for a in run.raised] == ["sla_breached:all"]
    assert [(d.channel, d.status) for d in run.deliveries] == [("webhook", "sent")]
    [(_, _, body)] = hook.requests
    assert "U1" in json.loads(body)["text"]
    assert alert_history(wh)["deliveries"].tolist() == ["webhook: sent"]
    run_alerts(wh, settings, now=T0 + timedelta(minutes=5))  # within the cooldown
    assert len(hook.requests) == 1


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "match"),
    [
        ("[notifications.email]\npassword = 'x'\n",
         r"notifications\.email\.password .* not allowed.*environment variable"),
        ("[notifications]\nchannels = ['pager']\n", r"notifications\.channels .*'pager'"),
        ("[notifications]\nchannels = ['email']\n", r"notifications\.email\.host .* must be set"),
        ("[notifications]\nchannels = ['webhook']\n[notifications.webhook]\nurls_env = ''\n",
         r"notifications\.webhook\.urls .* must be set"),
        ("[notifications.webhook]\nurls = ['ftp://x']\n", r"notifications\.webhook\.urls"),
        ("[notifications]\nretry_attempts = 0\n", r"notifications\.retry_attempts .* 1 to 10"),
        ("[notifications]\ntimeout_s = 0\n", r"notifications\.timeout_s"),
        ("[notifications.email]\nport = 'smtp'\n", r"notifications\.email\.port"),
        ("[notifications.email]\nsecurity = 'ssl'\n", r"notifications\.email\.security"),
        ("[notifications.email]\nrecipients = ['nobody']\n", r"notifications\.email\.recipients"),
        ("[notifications]\nmin_severity = 'high'\n", r"notifications\.min_severity"),
    ],
)
def test_bad_notification_settings_name_the_key(tmp_path, toml, match):
    bad = tmp_path / "bad.toml"
    bad.write_text(toml)
    with pytest.raises(CsMetricsError, match=match):
        load_settings(bad)


def test_email_from_and_webhook_urls_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "s.toml"
    path.write_text(
        "[notifications]\nchannels = ['email', 'webhook']\n"
        "[notifications.webhook]\nurls = ['https://a.example/h']\nurls_env = 'TEST_HOOKS'\n"
        "[notifications.email]\nhost = 'smtp.example.com'\nfrom = 'cs@example.com'\n"
        "recipients = ['lead@example.com']\n"
    )
    monkeypatch.setenv("TEST_HOOKS", "https://b.example/h, https://a.example/h")
    n = load_settings(path).notifications
    assert n.email.sender == "cs@example.com"
    assert n.webhooks() == ("https://a.example/h", "https://b.example/h")
    assert "password" not in {f for f in n.email.__dataclass_fields__}
