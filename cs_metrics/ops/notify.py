"""Notifications of new alerts: in-app (the app shows a toast), email over SMTP, webhooks.

Settings: ``[notifications]``, ``[notifications.email]``, ``[notifications.webhook]``. Every
channel and target is tried on its own thread, so a slow or failing one never holds up the
others; a failure is tried again after ``retry_base_s``, then twice as long, ... up to
``retry_attempts`` tries in all, then recorded as failed. Every try is a row of the table
``alert_deliveries`` (occurrence, alert id, channel, target, attempt, status, error, at).
Nothing here raises into the caller: a refresh never fails because a mail server is down.

In-app notifications are only marked (status ``pending``): the page shows them with
``st.toast`` and calls ``cs_metrics.ops.alerts.mark_in_app_shown``.
"""

from __future__ import annotations

import json
import logging
import re
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import duckdb
import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.safe_text import escape_slack, header_text
from cs_metrics.core.settings import ALERT_SEVERITIES, EmailSettings, NotificationSettings
from cs_metrics.core.warehouse import catalog_changed

if TYPE_CHECKING:
    from cs_metrics.core.warehouse import Warehouse
    from cs_metrics.ops.alert_model import Alert

__all__ = [
    "Delivery",
    "DeliveryError",
    "deliver",
    "deliveries",
    "email_content",
    "notify",
    "post_webhook",
    "send_email",
    "slack_payload",
]

_log = logging.getLogger(__name__)

DELIVERY_STATUSES = ("pending", "shown", "sent", "retrying", "failed")
_MAX_LISTED = 20  # alerts spelled out in one email or webhook message


class DeliveryError(CsMetricsError):
    """A notification could not be delivered; ``retriable`` says whether trying again can
    help (a server error or timeout can, a refused password or a 404 cannot)."""

    def __init__(self, message: str, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


@dataclass(frozen=True)
class Delivery:
    """One try of one channel for one alert (a row of ``alert_deliveries``)."""

    occurrence_id: str
    alert_id: str
    channel: str  # in_app, email, webhook
    target: str  # recipients and server, or the webhook address with its secret part hidden
    attempt: int
    status: str  # pending (in-app), sent, retrying (will try again), failed (gave up)
    error: str
    at: datetime


_DELIVERIES_DDL = """create table if not exists alert_deliveries (
    occurrence_id varchar, alert_id varchar, channel varchar, target varchar, attempt integer,
    status varchar, error varchar, "at" timestamp)"""


def ensure_deliveries_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_DELIVERIES_DDL)
    catalog_changed()


def redact_url(url: str) -> str:
    """An address fit for logs: webhook URLs carry their secret in the path (Slack's
    ``/services/T…/B…/secret``), so only the host and the first path segment are kept."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    segments = [s for s in parts.path.split("/") if s]
    path = f"/{segments[0]}" if segments else ""
    if len(segments) > 1 or parts.query:
        path += "/…"
    return f"{parts.scheme}://{host}{path}"


# --- message bodies ----------------------------------------------------------------------------


def _severity_rank(severity: str) -> int:
    return ALERT_SEVERITIES.index(severity) if severity in ALERT_SEVERITIES else 0


def _headline(alerts: Sequence[Alert]) -> str:
    n = len(alerts)
    worst = max(alerts, key=lambda a: _severity_rank(a.severity))
    more = f" and {n - 1} more" if n > 1 else ""
    return f"{n} new alert{'s' if n != 1 else ''}: {worst.title}{more}"


# what may not stand unencoded inside Slack's ``<url|text>``: its delimiters, whitespace
_SLACK_URL_BREAKERS = re.compile(r"[<>|\s\"`]")
_SLACK_HEADER_MAX = 150  # characters of a header block's text, entities included


def _slack_url(link: str) -> str:
    """``link`` fit to stand inside ``<...|...>``: the query is already URL-encoded, and a
    delimiter of Slack's markup in the configured ``app_url`` is percent-encoded too (the
    query's ``&`` stays as it is, as Slack reads it in a link)."""
    return _SLACK_URL_BREAKERS.sub(lambda m: quote(m.group()), link)


def _slack_header(text: str) -> str:
    """``text`` escaped and cut to Slack's header limit without splitting an entity."""
    cut = text[:_SLACK_HEADER_MAX]
    while len(escape_slack(cut)) > _SLACK_HEADER_MAX:
        cut = cut[:-1]
    return escape_slack(cut)


def slack_payload(alerts: Sequence[Alert], app_url: str = "") -> dict[str, Any]:
    """A Slack-compatible body: ``text`` (the fallback line) and ``blocks``, one per alert.

    Titles and messages name values of the data (a ticket id, a location, a comment's
    words): Slack's control characters in them are escaped, so ``<!channel>``, ``<@U1>``
    or ``<http://x|click>`` in the data is shown, never a mention or a link. Only the
    link to the app is markup.
    """
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _slack_header(
            _headline(alerts))}}
    ]
    for alert in list(alerts)[:_MAX_LISTED]:
        link = _slack_url(alert.absolute_link(app_url))
        # Slack only links absolute addresses; a relative one is shown as text
        opens = f"<{link}|Open in the app>" if link.startswith("http") else f"Open: `{link}`"
        title, message = escape_slack(alert.title), escape_slack(alert.message)
        blocks.append({
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"*[{alert.severity.upper()}] {title}*\n{message}\n{opens}",
            },
        })
    if len(alerts) > _MAX_LISTED:
        blocks.append({
            "type": "context",
            "elements": [{"type": "mrkdwn",
                          "text": f"…and {len(alerts) - _MAX_LISTED} more in the app."}],
        })
    text = "\n".join(f"[{a.severity.upper()}] {escape_slack(a.message)}"
                     for a in list(alerts)[:_MAX_LISTED])
    return {"text": text, "blocks": blocks}


def email_content(alerts: Sequence[Alert], settings: NotificationSettings) -> tuple[str, str]:
    """(subject, plain-text body) of the email announcing ``alerts``. The body is plain
    text, so the data's words need no escaping there; the subject is kept to one line."""
    prefix = settings.email.subject_prefix
    subject = header_text(f"{prefix} {_headline(alerts)}")
    parts = []
    for alert in list(alerts)[:_MAX_LISTED]:
        parts.append(
            f"[{alert.severity.upper()}] {alert.title}\n{alert.message}\n"
            f"Open: {alert.absolute_link(settings.app_url)}\n"
            f"Alert id: {alert.id} (raised {alert.created_at:%Y-%m-%d %H:%M}, data time)\n"
        )
    if len(alerts) > _MAX_LISTED:
        parts.append(f"...and {len(alerts) - _MAX_LISTED} more in the app.\n")
    parts.append("Acknowledge or mute these alerts on the Alerts page.")
    return subject, "\n".join(parts)


# --- the channels ------------------------------------------------------------------------------


def send_email(
    email: EmailSettings,
    subject: str,
    body: str,
    *,
    timeout: float = 10.0,
    password: str | None = None,
) -> None:
    """Send one plain-text email to ``email.recipients`` over SMTP.

    ``security`` "tls" connects with implicit TLS, "starttls" upgrades the connection, "none"
    sends in the clear (a local relay only). With a ``username``, the password is ``password``
    or the environment variable ``email.password_env``. Raises ``DeliveryError``.
    """
    if not email.recipients:
        raise DeliveryError(
            "Email needs notifications.email.host, sender and recipients in the settings.",
            retriable=False,
        )
    msg = EmailMessage()
    # a subject naming a value of the data stays one header, whoever composed it
    msg["Subject"] = header_text(subject)
    try:
        msg["From"] = email.sender
        msg["To"] = ", ".join(email.recipients)
    except ValueError as exc:  # the email package refuses a header that spans lines
        raise DeliveryError(
            f"notifications.email.sender or recipients are not plain addresses: {exc}.",
            retriable=False,
        ) from None
    msg.set_content(body)
    send_message(email, msg, timeout=timeout, password=password)


def send_message(
    email: EmailSettings,
    msg: EmailMessage,
    *,
    timeout: float = 10.0,
    password: str | None = None,
) -> None:
    """Send a composed message (its own recipients) through the SMTP server of ``email``:
    the one connection, TLS and login code for alerts and reports. Raises ``DeliveryError``.
    """
    where = f"{email.host}:{email.port}"
    if not email.host or not email.sender:
        raise DeliveryError(
            "Email needs notifications.email.host, sender and recipients in the settings.",
            retriable=False,
        )
    secret = None
    if email.username:
        secret = password if password is not None else email.password()
        if not secret:
            raise DeliveryError(
                f"The SMTP password for {email.username} is not set: put it in the environment "
                f"variable {email.password_env or '(notifications.email.password_env)'}.",
                retriable=False,
            )
    context = ssl.create_default_context()
    try:
        if email.security == "tls":
            smtp = smtplib.SMTP_SSL(email.host, email.port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(email.host, email.port, timeout=timeout)
        with smtp:
            if email.security == "starttls":
                smtp.starttls(context=context)
            if email.username:
                smtp.login(email.username, secret or "")
            smtp.send_message(msg)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(
            f"The mail server {where} refused the login of {email.username}: {exc.smtp_code}; "
            f"check the username and the password in ${email.password_env}.",
            retriable=False,
        ) from exc
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
        raise DeliveryError(
            f"The mail server {where} refused the sender or recipients: {exc}.", retriable=False
        ) from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise DeliveryError(
            f"The mail server {where} does not support {email.security}: {exc}; change "
            "notifications.email.security.",
            retriable=False,
        ) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"Sending email through {where} failed: {exc}.") from exc


def post_webhook(url: str, payload: dict[str, Any], *, timeout: float = 10.0) -> int:
    """POST ``payload`` as JSON to ``url``; returns the HTTP status. Raises ``DeliveryError``
    (retriable for timeouts, refused connections, 5xx and 429)."""
    shown = redact_url(url)
    if not url.startswith(("http://", "https://")):
        raise DeliveryError(f"The webhook {shown} is not an http(s) address.", retriable=False)
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode("utf-8"),
        headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "cs-metrics"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(
            f"The webhook {shown} answered HTTP {exc.code} {exc.reason}.",
            retriable=exc.code >= 500 or exc.code in (408, 429),
        ) from exc
    except urllib.error.URLError as exc:
        raise DeliveryError(f"The webhook {shown} could not be reached: {exc.reason}.") from exc
    except (TimeoutError, OSError) as exc:
        raise DeliveryError(f"The webhook {shown} could not be reached: {exc}.") from exc


# --- delivering with retries -------------------------------------------------------------------

Attempt = tuple[int, str, str, datetime]  # attempt, status, error, at


def _with_retries(
    action: Callable[[], Any],
    attempts: int,
    base_s: float,
    sleep: Callable[[float], None],
    clock: Callable[[], datetime],
) -> list[Attempt]:
    tries: list[Attempt] = []
    for attempt in range(1, attempts + 1):
        try:
            action()
        except DeliveryError as exc:
            error, retriable = str(exc), exc.retriable
        except Exception as exc:  # a channel must never raise into the caller
            error, retriable = f"{type(exc).__name__}: {exc}", True
        else:
            tries.append((attempt, "sent", "", clock()))
            return tries
        final = attempt == attempts or not retriable
        tries.append((attempt, "failed" if final else "retrying", error, clock()))
        if final:
            break
        sleep(base_s * 2 ** (attempt - 1))
    return tries


def deliver(
    alerts: Sequence[Alert],
    settings: NotificationSettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], datetime] = datetime.now,
    email_sender: Callable[..., None] = send_email,
    webhook_poster: Callable[..., int] = post_webhook,
) -> tuple[Delivery, ...]:
    """Send ``alerts`` on every configured channel; one Delivery per alert and try.

    Email and webhooks get one message per run listing the alerts of ``min_severity`` or
    worse; each channel and target runs on its own thread with its own retries.
    """
    alerts = list(alerts)
    if not alerts:
        return ()
    rows: list[Delivery] = []

    def rows_for(group: Sequence[Alert], channel: str, target: str,
                 tries: list[Attempt]) -> list[Delivery]:
        return [
            Delivery(a.occurrence_id or a.id, a.id, channel, target, attempt, status, error, at)
            for attempt, status, error, at in tries
            for a in group
        ]

    if "in_app" in settings.channels:
        at = clock()
        rows += rows_for(alerts, "in_app", "app", [(1, "pending", "", at)])
    floor = _severity_rank(settings.min_severity)
    loud = [a for a in alerts if _severity_rank(a.severity) >= floor]
    jobs: list[tuple[str, str, Callable[[], Any]]] = []
    if loud and "email" in settings.channels:
        email = settings.email
        subject, body = email_content(loud, settings)
        target = f"{', '.join(email.recipients)} via {email.host}:{email.port}"
        jobs.append(("email", target, lambda: email_sender(
            email, subject, body, timeout=settings.timeout_s)))
    if loud and "webhook" in settings.channels:
        payload = slack_payload(loud, settings.app_url)
        for url in settings.webhooks():
            jobs.append(("webhook", redact_url(url), lambda url=url: webhook_poster(
                url, payload, timeout=settings.timeout_s)))
    if jobs:
        with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="notify") as pool:
            futures = [
                (channel, target, pool.submit(_with_retries, action, settings.retry_attempts,
                                              settings.retry_base_s, sleep, clock))
                for channel, target, action in jobs
            ]
            for channel, target, future in futures:
                rows += rows_for(loud, channel, target, future.result())
    return tuple(rows)


def notify(
    wh: Warehouse,
    alerts: Sequence[Alert],
    settings: NotificationSettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    **channels: Callable[..., Any],
) -> tuple[Delivery, ...]:
    """``deliver`` the alerts and log every try in ``alert_deliveries``; never raises.

    ``channels`` may replace ``email_sender`` or ``webhook_poster`` (tests, other transports).
    """
    try:
        rows = deliver(alerts, settings, sleep=sleep, **channels)
    except Exception as exc:  # e.g. a thread could not start: record it, do not raise
        at = datetime.now()
        rows = tuple(
            Delivery(a.occurrence_id or a.id, a.id, "notify", "", 1, "failed",
                     f"{type(exc).__name__}: {exc}", at)
            for a in alerts
        )
    try:
        con = wh.connection()
        ensure_deliveries_table(con)
        if rows:
            frame = pd.DataFrame(
                [(d.occurrence_id, d.alert_id, d.channel, d.target, d.attempt, d.status,
                  d.error, d.at) for d in rows],
                columns=["occurrence_id", "alert_id", "channel", "target", "attempt", "status",
                         "error", "at"],
            )
            con.register("alert_deliveries_df", frame)
            try:
                con.execute("insert into alert_deliveries select * from alert_deliveries_df")
            finally:
                con.unregister("alert_deliveries_df")
    except (duckdb.Error, CsMetricsError) as exc:
        # a read-only or busy warehouse: the deliveries are still returned to the caller
        _log.warning("Could not log %d alert deliveries in %s: %s", len(rows), wh.path, exc)
    return rows


def deliveries(wh: Warehouse, limit: int = 200) -> pd.DataFrame:
    """The latest ``limit`` delivery tries, newest first."""
    if not wh.has_table("alert_deliveries"):
        return pd.DataFrame(columns=["occurrence_id", "alert_id", "channel", "target",
                                     "attempt", "status", "error", "at"])
    return wh.df(
        'select * from alert_deliveries order by "at" desc, attempt desc limit ?', [int(limit)]
    )
