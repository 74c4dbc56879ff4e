"""Alert rules evaluated after every refresh; raised alerts are deduplicated, stored and notified.

The rules (settings section ``[alerts]``, one table per rule) and their tests:

- ``outage``: tickets created in one location or domain over the last ``window_min`` minutes
  against the same window (same hour of the week) in each of the previous ``history_weeks``
  weeks. Expected count ``mu = (history tickets + 0.5) / weeks`` (the half ticket keeps a
  group that is new to the data from being infinitely surprising). Flagged when the
  one-sided Poisson exact test ``P(X >= observed | mu) < p_value / m`` (Bonferroni over the
  ``m`` groups tested), ``observed >= min_count`` and ``observed >= min_ratio * mu``.
- ``sla_breached`` / ``sla_at_risk``: open or in-progress tickets without a first response,
  of the listed priorities or customer segments, that have waited at least their
  first-response target (breached) or ``at_risk_share`` of it (at risk); one alert per kind.
- ``ticket_reopened``: a ticket of ``reopened_priorities`` whose status went from closed to
  open or in progress (``ticket_events``) since the last evaluation.
- ``vip_closed_unanswered``: a ticket of ``vip_segments`` closed since the last evaluation
  without any first response.
- ``csat_drop``: the share of CSAT responses of 4-5 over the last ``recent_days`` days against
  the ``baseline_days`` before; flagged when the one-sided pooled two-proportion z-test gives
  ``p < p_value`` and the drop is at least ``min_drop_points`` percentage points.

Clocks: rules run on the data's clock (``Warehouse.as_of()``, the wall clock for a live feed):
alert times, cooldowns and mutes' ``until`` are on it. Acknowledgements, mutes' ``muted_at``
and delivery attempts record the wall clock, when a person or a server acted.

An alert's ``id`` is the stable key ``rule:subject``. Each time it is raised it is stored as
one occurrence ``id#n`` in the table ``alerts``; raised again within its rule's cooldown it is
only counted (``seen_count``). Alerts about a state (outage, SLA, CSAT) resolve when a later
evaluation no longer finds them; alerts about an event stay active for ``active_h`` hours.

This module runs the rules (``run_alerts``, and on a schedule) and is the public API; the
parts live beside it: ``alert_model`` (the ``Alert`` type and the rule catalogue, shared with
``notify``), ``alert_rules`` (the rules, read-only), ``alert_store`` (the tables; reading,
acknowledging, muting). The tests of significance are ``cs_metrics.core._stats``.
"""

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import duckdb
import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.settings import NotificationSettings, Settings, load_settings
from cs_metrics.core.warehouse import Warehouse, catalog_changed
from cs_metrics.ops.alert_model import (
    RULES,
    Alert,
    RuleInfo,
    _jsonable,
    rules_without_inputs,
)
from cs_metrics.ops.alert_rules import (
    _evaluate,
    _last_run,
    _or_list,
    evaluate,
    outage_scan,
    poisson_sf,
    two_proportion_z,
)
from cs_metrics.ops.alert_store import (
    _ALERT_COLUMNS,
    _allowed,
    _cooldowns,
    _muted,
    _resolve,
    _writable,
    acknowledge,
    active_alerts,
    alert_history,
    mark_in_app_shown,
    mute,
    mutes,
    pending_in_app,
    unmute,
)
from cs_metrics.ops.notify import Delivery, notify

__all__ = [
    "RULES",
    "Alert",
    "AlertRun",
    "RuleInfo",
    "acknowledge",
    "active_alerts",
    "alert_history",
    "alert_schedule",
    "alert_schedule_error",
    "evaluate",
    "last_evaluation",
    "mark_in_app_shown",
    "mute",
    "mutes",
    "outage_scan",
    "pending_in_app",
    "poisson_sf",
    "rules_in_force",
    "rules_without_inputs",
    "run_alerts",
    "run_alerts_on_schedule",
    "two_proportion_z",
    "unmute",
]


@dataclass(frozen=True)
class AlertRun:
    """What one ``run_alerts`` did."""

    now: datetime | None  # the data's clock the rules ran at
    raised: tuple[Alert, ...]  # new occurrences, stored and notified
    suppressed: tuple[Alert, ...]  # raised again within the cooldown: only counted
    muted: tuple[Alert, ...]  # new occurrences stored without notifications
    resolved: tuple[str, ...]  # occurrence ids whose condition cleared or that expired
    deliveries: tuple[Delivery, ...]
    rules_run: tuple[str, ...]  # rules that could run on this data

    def summary(self) -> str:
        """A few lines for the command line."""
        if self.now is None:
            return "No tickets in the warehouse: no alert rules ran."
        lines = [
            f"Alerts at {self.now:%Y-%m-%d %H:%M} (data time): {len(self.raised)} new, "
            f"{len(self.suppressed)} repeated within their cooldown, {len(self.muted)} muted, "
            f"{len(self.resolved)} resolved; rules run: {', '.join(self.rules_run) or 'none'}."
        ]
        lines += [f"  [{a.severity}] {a.message}" for a in self.raised]
        failed = sorted({(d.channel, d.target) for d in self.deliveries if d.status == "failed"})
        lines += [f"  delivery failed: {channel} {target}" for channel, target in failed]
        return "\n".join(lines)


def run_alerts(
    wh: Warehouse,
    settings: Settings | None = None,
    now: datetime | None = None,
    notifier: Callable[[Warehouse, Sequence[Alert], NotificationSettings], Sequence[Delivery]]
    | None = notify,
) -> AlertRun:
    """Evaluate the rules, suppress repeats within each rule's cooldown, store, notify.

    Call it after every refresh, from the process that holds the warehouse read-write. New
    alerts that are not muted go to ``notifier`` (default ``cs_metrics.ops.notify.notify``: in-app,
    email and webhooks as configured, every attempt logged in ``alert_deliveries``); a
    notifier failure never raises here.
    """
    settings = settings or load_settings()
    now = now or wh.as_of()
    if now is None:
        return AlertRun(None, (), (), (), (), (), ())
    wh = _allowed(wh, "all_alerts", "run the alert rules over every team")
    con = _writable(wh, "store alerts")
    alerts, ran = _evaluate(wh, settings, now, None)
    cooldowns = _cooldowns(settings)
    raised: list[Alert] = []
    suppressed: list[Alert] = []
    muted: list[Alert] = []
    try:
        con.execute("begin transaction")
        for alert in alerts:
            latest = con.execute(
                "select occurrence_id, seq, created_at from alerts where alert_id = ? "
                "order by seq desc limit 1",
                [alert.id],
            ).fetchall()
            if latest and now - latest[0][2] < timedelta(minutes=cooldowns[alert.rule]):
                # the same condition again: count it, keep it active, do not notify again
                con.execute(
                    "update alerts set last_seen_at = ?, seen_count = seen_count + 1, "
                    "resolved_at = null where occurrence_id = ?",
                    [now, latest[0][0]],
                )
                suppressed.append(replace(alert, occurrence_id=latest[0][0]))
                continue
            seq = (latest[0][1] + 1) if latest else 1
            stored = replace(alert, occurrence_id=f"{alert.id}#{seq}")
            is_muted = _muted(con, alert, now)
            con.execute(
                f"insert into alerts ({', '.join(_ALERT_COLUMNS)}) values "
                f"({', '.join('?' for _ in _ALERT_COLUMNS)})",
                [stored.occurrence_id, alert.id, seq, alert.rule, alert.severity, alert.title,
                 alert.message, json.dumps(_jsonable(alert.figures)), alert.link, now, now, 1,
                 is_muted, None, None, None],
            )
            (muted if is_muted else raised).append(stored)
        resolved = _resolve(con, settings, now, ran, {a.id for a in alerts})
        con.execute(
            "insert into alert_runs values (?, ?, ?, ?, ?, ?, ?)",
            [now, datetime.now(), len(raised), len(suppressed), len(muted), len(resolved),
             ",".join(ran)],
        )
        con.execute("commit")
    except BaseException as exc:
        con.execute("rollback")
        if isinstance(exc, duckdb.Error):
            raise CsMetricsError(f"Storing alerts in {wh.path} failed: {exc}") from exc
        raise
    deliveries: tuple[Delivery, ...] = ()
    if notifier is not None and raised:
        try:
            deliveries = tuple(notifier(wh, raised, settings.notifications))
        except Exception as exc:  # a notifier must never break a refresh
            at = datetime.now()
            deliveries = tuple(
                Delivery(a.occurrence_id or a.id, a.id, "notifier", "", 1, "failed",
                         f"{type(exc).__name__}: {exc}", at)
                for a in raised
            )
    return AlertRun(now, tuple(raised), tuple(suppressed), tuple(muted), tuple(resolved),
                    deliveries, tuple(ran))


# --- the schedule ------------------------------------------------------------------------------

# One row: the wall-clock moment (naive UTC) of the last scheduled evaluation that succeeded,
# of the last attempt, and when the next is due; for pages and commands of other processes.
_SCHEDULE_DDL = """create table if not exists alert_schedule (
    last_run_at timestamp, attempted_at timestamp, next_run_at timestamp, every_min double,
    error varchar)"""

# This process's last scheduled attempt per warehouse file. Kept in memory, not read back from
# the table: the first call of a process (the app's start) evaluates whatever the table says.
_scheduled: dict[str, datetime] = {}
_scheduled_lock = threading.Lock()


def run_alerts_on_schedule(wh: Warehouse, settings: Settings, now: datetime) -> AlertRun | None:
    """Run the rules (``run_alerts``, on the data's clock) when the schedule says so.

    ``now`` is the wall clock, naive UTC. Due at the first call of this process for the
    warehouse file, then once ``[alerts] every`` minutes have passed since the last attempt
    (or the clock went back). Returns the run, or None when not due. The moment is recorded in
    the table ``alert_schedule`` (see ``alert_schedule``); a run that fails is recorded with
    its error, raised, and tried again after ``every`` minutes, not on every call.
    """
    base = wh.base
    key = str(base.path.resolve())
    every = timedelta(minutes=settings.alerts.every)
    with _scheduled_lock:
        last = _scheduled.get(key)
        # a clock set back runs them at once rather than waiting for the old time to return
        if last is not None and last <= now < last + every:
            return None
        _scheduled[key] = now
    try:
        run = run_alerts(base, settings)
    except CsMetricsError as exc:
        try:
            _record_schedule(base, now, every, str(exc))
        except CsMetricsError:
            pass  # e.g. a read-only warehouse: the run's own error says more
        raise
    _record_schedule(base, now, every, None)
    return run


def _record_schedule(wh: Warehouse, now: datetime, every: timedelta, error: str | None) -> None:
    con = wh.connection()
    try:
        con.execute(_SCHEDULE_DDL)
        catalog_changed()
        con.execute("begin transaction")
        try:
            before = con.execute("select max(last_run_at) from alert_schedule").fetchall()
            last = now if error is None else before[0][0]
            con.execute("delete from alert_schedule")
            con.execute("insert into alert_schedule values (?, ?, ?, ?, ?)",
                        [last, now, now + every, every.total_seconds() / 60, error])
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    except duckdb.Error as exc:
        raise CsMetricsError(f"Cannot record the alert schedule in {wh.path}: {exc}") from exc


def _schedule_row(wh: Warehouse) -> tuple[datetime | None, datetime | None, str | None] | None:
    base = wh.base  # when the rules run is no one's data: every scope may see it
    if not base.has_table("alert_schedule"):
        return None
    try:
        rows = base.connection().execute(
            "select last_run_at, attempted_at, error from alert_schedule "
            "order by attempted_at desc limit 1"
        ).fetchall()
    except duckdb.Error as exc:
        raise CsMetricsError(f"Cannot read the alert schedule in {wh.path}: {exc}") from exc
    return rows[0] if rows else None


def alert_schedule(wh: Warehouse, settings: Settings) -> tuple[datetime | None, datetime | None]:
    """(last scheduled evaluation, next one), wall clock, naive UTC; (None, None) before the
    first. The next is ``[alerts] every`` minutes after the last attempt, so a failed attempt
    gives (None or the last success, the next try)."""
    row = _schedule_row(wh)
    if row is None or row[1] is None:
        return None, None
    return row[0], row[1] + timedelta(minutes=settings.alerts.every)


def last_evaluation(wh: Warehouse) -> datetime | None:
    """The data's clock of the last stored evaluation of any kind (scheduled, after a
    refresh, on the page's button, ``alerts --once``); None when the rules never ran."""
    return _last_run(wh)


def alert_schedule_error(wh: Warehouse) -> str | None:
    """Why the last scheduled evaluation failed; None when it succeeded or none was made."""
    row = _schedule_row(wh)
    return row[2] if row else None


def rules_in_force(settings: Settings | None = None) -> pd.DataFrame:
    """One row per rule as the settings define it: rule, label, section, enabled, severity,
    cooldown_min, condition (a sentence with the thresholds)."""
    settings = settings or load_settings()
    a = settings.alerts
    o, s, w, c, e = a.outage, a.sla, a.watch, a.csat, a.emerging
    scope = " or ".join(
        x for x in (
            f"priority {_or_list(s.priorities)}" if s.priorities else "",
            f"segment {_or_list(s.segments)}" if s.segments else "",
        ) if x
    ) or "no tickets (no priorities or segments listed)"
    rows = [
        ("outage", o.enabled, o.severity, o.cooldown_min,
         f"Tickets per {', '.join(o.dimensions)} over the last {o.window_min:g} min against the "
         f"same hour of the week in the previous {o.history_weeks} weeks: one-sided Poisson "
         f"exact test p < {o.p_value:g} / groups tested (Bonferroni), at least {o.min_count} "
         f"tickets and {o.min_ratio:g}x the expected number; needs {o.min_history_weeks} "
         "weeks of history."),
        ("sla_breached", s.enabled, s.breached_severity, s.cooldown_min,
         f"Open or in-progress tickets of {scope} without a first response that have waited "
         "their first-response target."),
        ("sla_at_risk", s.enabled, s.at_risk_severity, s.cooldown_min,
         f"Open or in-progress tickets of {scope} without a first response that have waited "
         f"{s.at_risk_share:.0%} of their first-response target."),
        ("ticket_reopened", w.enabled and bool(w.reopened_priorities), w.severity,
         w.cooldown_min,
         f"A ticket of priority {_or_list(w.reopened_priorities or ['(none)'])} reopened "
         f"(closed -> open or in progress) since the last evaluation; active for "
         f"{w.active_h:g} h."),
        ("vip_closed_unanswered", w.enabled and bool(w.vip_segments), w.severity,
         w.cooldown_min,
         f"A ticket of segment {_or_list(w.vip_segments or ['(none)'])} closed without any "
         f"first response since the last evaluation; active for {w.active_h:g} h."),
        ("csat_drop", c.enabled, c.severity, c.cooldown_min,
         f"CSAT % (4-5) of the last {c.recent_days:g} days against the {c.baseline_days:g} days "
         f"before: one-sided two-proportion z-test p < {c.p_value:g}, at least "
         f"{c.min_drop_points:g} points lower, {c.min_responses} responses in each window."),
        ("emerging_issue", e.enabled, e.severity, e.cooldown_min,
         f"A comment term's share over the last {e.recent_days} days against the "
         f"{e.baseline_days} days before: one-sided exact conditional binomial test "
         f"(over-dispersion corrected), Benjamini-Hochberg q < {e.alpha:g}, at least "
         f"{e.min_count} recent comments and {e.min_growth:g}x the earlier share."),
    ]
    return pd.DataFrame(
        [
            {"rule": name, "label": RULES[name].label, "section": RULES[name].section,
             "enabled": bool(a.enabled and enabled), "severity": severity,
             "cooldown_min": cooldown, "condition": condition}
            for name, enabled, severity, cooldown, condition in rows
        ]
    )
