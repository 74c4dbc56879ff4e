"""Scheduled reports: ``[[schedules]]`` in the settings, built and e-mailed by the running
server on their cron schedule.

The server calls ``run_due`` about every second with the app's read-write warehouse and the
current UTC time. For each schedule it takes the latest cron slot at or before that time (in
the schedule's zone); when that slot has not been delivered, it builds the report
(``reports.build_report`` + ``reports.render``) and e-mails it (``reports.send_report_email``).

* Catching up: after downtime only the latest missed slot runs, once; older ones are skipped.
* A new schedule never fires for a slot more than an hour before it was first seen
  (``FIRST_SIGHT_GRACE``): the first call that meets a schedule (its name, cron and zone)
  records the time in ``schedule_seen``; changing the cron or the zone makes it a new
  schedule.
* Every try is a row of ``schedule_runs`` (name, slot, attempt, started_at, finished_at,
  outcome ``ok`` or ``failed``, error, recipients, retry_at, via, period). A failure is
  tried again as alert notifications are (cs_metrics.ops.notify): after
  ``[notifications] retry_base_s`` seconds, then twice as long, ... up to ``retry_attempts``
  tries in all, and not at all when trying again cannot help (a refused login, a report with
  no tickets). Here the waits are not slept: the next call of ``run_due`` after ``retry_at``
  makes the next try, so the server never blocks. ``retry_at`` null on a failed row means the
  slot was given up. A slot delivered ``ok`` is never sent again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd
from croniter import CroniterError, croniter

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.settings import Schedule, Settings
from cs_metrics.core.warehouse import catalog_changed
from cs_metrics.metrics.registry import Filters

if TYPE_CHECKING:
    from cs_metrics.core.warehouse import Warehouse

__all__ = [
    "RUNS_TABLE",
    "ScheduleRun",
    "deliveries",
    "find_schedule",
    "last_outcomes",
    "next_runs",
    "run_due",
    "run_now",
    "slot_before",
]

_log = logging.getLogger(__name__)

RUNS_TABLE = "schedule_runs"
SEEN_TABLE = "schedule_seen"
# A slot at most this long before the app first saw its schedule is still sent: a schedule
# added (or an app started) just after its time does not wait a whole period.
FIRST_SIGHT_GRACE = timedelta(hours=1)
RUN_COLUMNS = ["name", "slot", "attempt", "started_at", "finished_at", "outcome", "error",
               "recipients", "retry_at", "via", "period"]

_DDL = (
    f"""create table if not exists {RUNS_TABLE} (
        name varchar, slot timestamp, attempt integer, started_at timestamp,
        finished_at timestamp, outcome varchar, error varchar, recipients varchar,
        retry_at timestamp, via varchar, period varchar)""",
    f"""create table if not exists {SEEN_TABLE} (
        name varchar, cron varchar, timezone varchar, first_seen_at timestamp)""",
)


@dataclass(frozen=True)
class ScheduleRun:
    """One try of one scheduled report (a row of ``schedule_runs``); times naive UTC."""

    name: str
    slot: datetime  # the cron slot delivered (a manual run: the moment it was asked for)
    attempt: int
    started_at: datetime
    finished_at: datetime
    outcome: str  # ok or failed
    error: str
    recipients: tuple[str, ...]
    retry_at: datetime | None  # the next try of a failed slot; None: delivered or given up
    via: str = "schedule"  # schedule (its cron) or manual (`schedules run`)
    period: str = ""  # the report's period, as its label says

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


# --- cron slots --------------------------------------------------------------------------------


def _utc(local: datetime) -> datetime:
    return local.astimezone(timezone.utc).replace(tzinfo=None)


def slot_before(schedule: Schedule, now: datetime) -> datetime:
    """The latest cron slot at or before ``now`` (naive UTC), as naive UTC; the cron is read
    in the schedule's zone, so "0 8 * * mon" is 08:00 there in summer and in winter."""
    zone = ZoneInfo(schedule.timezone)
    local = now.replace(tzinfo=timezone.utc).astimezone(zone)
    try:
        # croniter's get_prev is strictly before its start: a microsecond later includes now
        slot = _utc(croniter(schedule.cron, local + timedelta(microseconds=1))
                    .get_prev(datetime))
        return slot if slot <= now else _utc(croniter(schedule.cron, local).get_prev(datetime))
    except (CroniterError, ValueError, OverflowError) as exc:
        raise CsMetricsError(f"Schedule {schedule.name!r}: its cron {schedule.cron!r} has no "
                             f"slot before {now:%Y-%m-%d %H:%M} UTC ({exc}).") from exc


def slot_after(schedule: Schedule, now: datetime) -> datetime:
    """The first cron slot after ``now`` (naive UTC), as naive UTC."""
    zone = ZoneInfo(schedule.timezone)
    local = now.replace(tzinfo=timezone.utc).astimezone(zone)
    try:
        return _utc(croniter(schedule.cron, local).get_next(datetime))
    except (CroniterError, ValueError, OverflowError) as exc:
        raise CsMetricsError(f"Schedule {schedule.name!r}: its cron {schedule.cron!r} has no "
                             f"slot after {now:%Y-%m-%d %H:%M} UTC ({exc}).") from exc


def _local(moment: datetime, tz: str) -> datetime:
    return moment.replace(tzinfo=timezone.utc).astimezone(ZoneInfo(tz)).replace(tzinfo=None)


def next_runs(settings: Settings, now: datetime) -> pd.DataFrame:
    """Every schedule with its next run after ``now`` (naive UTC): name, next_run_utc,
    next_run_local (wall-clock time in ``timezone``), timezone, cron, audience, subject,
    period, format, recipients; soonest first."""
    columns = ["name", "next_run_utc", "next_run_local", "timezone", "cron", "audience",
               "subject", "period", "format", "recipients"]
    rows = []
    for s in settings.schedules:
        nxt = slot_after(s, now)
        rows.append((s.name, nxt, _local(nxt, s.timezone), s.timezone, s.cron, s.audience,
                     s.team or s.rep or "", s.period, s.format, ", ".join(s.recipients)))
    df = pd.DataFrame(rows, columns=columns)
    return df.sort_values(["next_run_utc", "name"], kind="stable").reset_index(drop=True)


def find_schedule(settings: Settings, name: str) -> Schedule:
    """The schedule named ``name`` (any case); CsMetricsError naming the known ones."""
    for s in settings.schedules:
        if s.name.lower() == name.strip().lower():
            return s
    known = ", ".join(repr(s.name) for s in settings.schedules) or "none"
    raise CsMetricsError(
        f"There is no schedule named {name!r} in {settings.source}; the schedules are: {known}."
    )


# --- the log ------------------------------------------------------------------------------------


def _writable(wh: Warehouse) -> duckdb.DuckDBPyConnection:
    if wh.read_only:
        raise CsMetricsError(
            f"Cannot run scheduled reports: the warehouse {wh.path} is open read-only; they are "
            "run and logged by the process that writes it (the app)."
        )
    con = wh.connection()
    try:
        for ddl in _DDL:
            con.execute(ddl)
    except duckdb.Error as exc:
        raise CsMetricsError(f"Cannot create the schedule tables in {wh.path}: {exc}") from exc
    finally:
        catalog_changed()
    return con


def _log_run(con: duckdb.DuckDBPyConnection, run: ScheduleRun) -> None:
    con.execute(
        f"insert into {RUNS_TABLE} ({', '.join(RUN_COLUMNS)}) values "
        f"({', '.join('?' for _ in RUN_COLUMNS)})",
        [run.name, run.slot, run.attempt, run.started_at, run.finished_at, run.outcome,
         run.error, ", ".join(run.recipients), run.retry_at, run.via, run.period],
    )


def deliveries(wh: Warehouse, limit: int = 200) -> pd.DataFrame:
    """The latest ``limit`` tries of scheduled reports, newest first (empty before any)."""
    if not wh.has_table(RUNS_TABLE):
        return pd.DataFrame(columns=RUN_COLUMNS)
    return wh.df(
        f"select {', '.join(RUN_COLUMNS)} from {RUNS_TABLE} "
        "order by started_at desc, attempt desc limit ?", [int(limit)]
    )


def last_outcomes(wh: Warehouse) -> dict[str, ScheduleRun]:
    """The latest try of each schedule, by name."""
    df = deliveries(wh, limit=100_000)
    out: dict[str, ScheduleRun] = {}
    for row in df.itertuples(index=False):
        if row.name in out:
            continue
        out[row.name] = ScheduleRun(
            row.name, _py(row.slot), int(row.attempt), _py(row.started_at),
            _py(row.finished_at), row.outcome, row.error or "",
            tuple(r.strip() for r in (row.recipients or "").split(",") if r.strip()),
            _py(row.retry_at), row.via, row.period or "")
    return out


def _py(value: object) -> datetime | None:
    if value is None or (not isinstance(value, datetime) and pd.isna(value)):
        return None
    return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value  # type: ignore


# --- running ------------------------------------------------------------------------------------


# Reports built for a slot whose e-mail failed, kept for its next try (building one takes
# seconds): by (warehouse, schedule, slot). A server holds a handful at most.
_PENDING: dict[tuple[str, str, datetime], Any] = {}
_PENDING_MAX = 32


def _deliver(wh: Warehouse, settings: Settings, schedule: Schedule, now: datetime,
             key: tuple[str, str, datetime] | None) -> tuple[str, str, bool]:
    """Build and e-mail one report: (period label, error, retriable); error "" when sent."""
    from cs_metrics.ops import reports
    from cs_metrics.ops.notify import DeliveryError

    period = ""
    rendered = _PENDING.pop(key, None) if key else None
    try:
        if rendered is None:
            filters = Filters.build(**{d: list(v) for d, v in schedule.where})
            filters = Filters(where=filters.where, tz=settings.display_timezone)
            report = reports.build_report(
                wh, schedule.audience, schedule.period, team=schedule.team, rep=schedule.rep,
                filters=filters, settings=settings, now=now.replace(tzinfo=timezone.utc))
            rendered = reports.render(report)
        period = rendered.report.scope.period.label
        reports.send_report_email(rendered, schedule.recipients, settings, fmt=schedule.format)
    except DeliveryError as exc:  # the mail server: it says whether trying again can help
        if exc.retriable and key is not None and rendered is not None:
            if len(_PENDING) >= _PENDING_MAX:
                _PENDING.pop(next(iter(_PENDING)))
            _PENDING[key] = rendered
        return period, str(exc), exc.retriable
    except CsMetricsError as exc:  # the report itself (no tickets, unknown team): a finding
        return period, str(exc), False
    except Exception as exc:  # noqa: BLE001 - a schedule must never stop the server's loop
        _log.exception("scheduled report %s failed", schedule.name)
        return period, f"{type(exc).__name__}: {exc}", True
    return period, "", False


def _attempt(con: duckdb.DuckDBPyConnection, wh: Warehouse, settings: Settings,
             schedule: Schedule, slot: datetime, attempt: int, now: datetime,
             via: str) -> ScheduleRun:
    started = time.perf_counter()
    policy = settings.notifications
    last_try = via != "schedule" or attempt >= policy.retry_attempts
    # a retry sends the report its first try built; a manual run builds its own
    key = (str(wh.path), schedule.name, slot) if via == "schedule" else None
    period, error, retriable = _deliver(wh, settings, schedule, now, key)
    if last_try and key is not None:
        _PENDING.pop(key, None)
    finished = now + timedelta(seconds=time.perf_counter() - started)
    retry_at = None
    if error and retriable and not last_try:
        # the notifications' backoff: retry_base_s, then twice as long before each next try
        retry_at = finished + timedelta(seconds=policy.retry_base_s * 2 ** (attempt - 1))
    run = ScheduleRun(schedule.name, slot, attempt, now, finished, "failed" if error else "ok",
                      error, schedule.recipients, retry_at, via, period)
    _log_run(con, run)
    if error:
        _log.warning("scheduled report %s (slot %s, try %d) failed: %s", schedule.name, slot,
                     attempt, error)
    return run


def _first_seen(con: duckdb.DuckDBPyConnection, schedule: Schedule, now: datetime) -> datetime:
    key = [schedule.name, schedule.cron, schedule.timezone]
    row = con.execute(
        f"select min(first_seen_at) from {SEEN_TABLE} where name = ? and cron = ? and "
        "timezone = ?", key).fetchall()
    if row and row[0][0] is not None:
        return row[0][0]
    con.execute(f"insert into {SEEN_TABLE} values (?, ?, ?, ?)", [*key, now])
    return now


def run_due(wh: Warehouse, settings: Settings, now: datetime) -> list[ScheduleRun]:
    """Build and e-mail every schedule whose latest slot at or before ``now`` (naive UTC) is
    due: not delivered yet, not before the schedule was first seen, and not waiting for its
    next try. Returns the tries made now (usually none); every one is logged. A failure is
    logged, never raised."""
    if not settings.schedules:
        return []
    con = _writable(wh)
    runs: list[ScheduleRun] = []
    for schedule in settings.schedules:
        try:
            slot = slot_before(schedule, now)
        except CsMetricsError as exc:  # one schedule's cron never blocks the others
            _log.warning("%s", exc)
            continue
        if slot < _first_seen(con, schedule, now) - FIRST_SIGHT_GRACE:
            continue
        tries = con.execute(
            f"select attempt, outcome, retry_at from {RUNS_TABLE} where name = ? and slot = ? "
            "and via = 'schedule' order by attempt desc", [schedule.name, slot]
        ).fetchall()
        if any(outcome == "ok" for _, outcome, _ in tries):
            continue
        if tries:
            attempt, _, retry_at = tries[0]
            if retry_at is None or now < retry_at:
                continue  # given up, or not yet time for the next try
            attempt += 1
        else:
            attempt = 1
        runs.append(_attempt(con, wh, settings, schedule, slot, attempt, now, "schedule"))
    return runs


def run_now(wh: Warehouse, settings: Settings, name: str, now: datetime) -> ScheduleRun:
    """Build and e-mail the schedule ``name`` now, whatever its cron (``schedules run``): one
    try, logged as a manual run; it neither delivers nor skips a cron slot."""
    schedule = find_schedule(settings, name)
    con = _writable(wh)
    return _attempt(con, wh, settings, schedule, now, 1, now, "manual")
