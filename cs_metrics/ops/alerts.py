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
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any
from urllib.parse import urlencode

import duckdb
import pandas as pd

from cs_metrics.core import audit
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.schema import DIMENSIONS
from cs_metrics.core.settings import ALERT_SEVERITIES, NotificationSettings, Settings, load_settings
from cs_metrics.core.warehouse import Warehouse, catalog_changed, first_response_deadline_sql
from cs_metrics.ops.notify import Delivery, ensure_deliveries_table, notify

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
class RuleInfo:
    name: str
    label: str
    section: str  # settings table, e.g. "alerts.sla"
    kind: str  # "state" resolves when no longer found; "event" expires after active_h


RULES: dict[str, RuleInfo] = {
    r.name: r
    for r in (
        RuleInfo("outage", "Outage suspected", "alerts.outage", "state"),
        RuleInfo("sla_breached", "SLA breached", "alerts.sla", "state"),
        RuleInfo("sla_at_risk", "SLA at risk", "alerts.sla", "state"),
        RuleInfo("ticket_reopened", "Ticket reopened", "alerts.watch", "event"),
        RuleInfo("vip_closed_unanswered", "Closed without a first response", "alerts.watch",
                 "event"),
        RuleInfo("csat_drop", "CSAT drop", "alerts.csat", "state"),
        RuleInfo("emerging_issue", "Emerging issue in comments", "alerts.emerging", "state"),
    )
}

# The inputs each rule reads, named like ``Metric.requires``. A rule whose inputs the dataset
# lacks does not run: without first-response times every open ticket would look unanswered
# and breached, every closed one closed unanswered.
RULE_INPUTS: dict[str, tuple[str, ...]] = {
    "sla_breached": ("first_response_at",),
    "sla_at_risk": ("first_response_at",),
    "vip_closed_unanswered": ("first_response_at",),
    "csat_drop": ("feedback.csat",),
    "emerging_issue": ("feedback.comment",),
}


def rules_without_inputs(wh: Warehouse) -> dict[str, tuple[str, ...]]:
    """Rule -> the inputs it needs that this dataset lacks (rules missing none left out)."""
    if not _has(wh, "tickets"):
        return {}
    present = {f"feedback.{c}" for c in wh.nonempty_columns("feedback")}
    present |= wh.nonempty_columns("tickets_src")
    out = {}
    for rule, needs in RULE_INPUTS.items():
        lacking = tuple(n for n in needs if n not in present)
        if lacking:
            out[rule] = lacking
    return out


# the app's filter query parameters (views/_common.py); other dimensions are left out of links
_LINK_DIMENSIONS = ("channel", "priority", "domain", "location", "customer_segment", "team",
                    "rep_name")


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class Alert:
    """One alert as a rule raised it. ``figures`` is a read-only mapping of the numbers in
    ``message``; ``link`` is a relative app URL to the filtered view."""

    id: str  # stable key "rule:subject": the same condition gives the same id
    rule: str
    severity: str  # info, warning or critical
    title: str
    message: str
    figures: Mapping[str, Any] = field(hash=False)
    link: str
    created_at: datetime
    occurrence_id: str | None = None  # "id#n" once stored by run_alerts

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise CsMetricsError(f"Unknown alert rule {self.rule!r}; rules: {', '.join(RULES)}.")
        if self.severity not in ALERT_SEVERITIES:
            raise CsMetricsError(
                f"Unknown severity {self.severity!r}; use {', '.join(ALERT_SEVERITIES)}."
            )
        object.__setattr__(self, "figures", _freeze(dict(self.figures)))

    def absolute_link(self, app_url: str = "") -> str:
        return f"{app_url.rstrip('/')}{self.link}" if app_url else self.link


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


# --- the statistics ----------------------------------------------------------------------------


def poisson_sf(k: int, mu: float) -> float:
    """P(X >= k) for X ~ Poisson(mu), accurate in the far tail (no 1 - cdf cancellation)."""
    k = int(k)
    if k <= 0:
        return 1.0
    if mu <= 0:
        return 0.0
    if k > mu:
        # sum the upper terms from k on: each is the previous times mu / j < 1
        total = term = 1.0
        j = k
        while term > 1e-17 * total:
            j += 1
            term *= mu / j
            total += term
        return min(1.0, math.exp(k * math.log(mu) - mu - math.lgamma(k + 1)) * total)
    # the tail is not small here, so 1 - P(X <= k - 1) loses nothing that matters
    total = term = 1.0
    for i in range(k - 1, 0, -1):
        term *= i / mu
        total += term
    lower = math.exp((k - 1) * math.log(mu) - mu - math.lgamma(k)) * total
    return max(0.0, 1.0 - lower)


def _normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def two_proportion_z(good1: int, n1: int, good2: int, n2: int) -> tuple[float, float]:
    """Pooled two-proportion z-test of H1: p1 < p2; returns (z, one-sided p-value)."""
    if n1 <= 0 or n2 <= 0:
        return math.nan, math.nan
    p1, p2 = good1 / n1, good2 / n2
    pooled = (good1 + good2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:  # all good or all bad in both windows: no evidence either way
        return 0.0, 0.5 if p1 == p2 else (0.0 if p1 < p2 else 1.0)
    z = (p1 - p2) / se
    return z, _normal_cdf(z)


# --- helpers -----------------------------------------------------------------------------------


def _link(page: str, range_: str | None = "last-7-days", date_from: datetime | None = None,
          date_to: datetime | None = None, **dims: Sequence[str] | str | None) -> str:
    params: list[tuple[str, str]] = []
    if date_from is not None and date_to is not None:
        params += [("range", "custom"), ("from", date_from.date().isoformat()),
                   ("to", date_to.date().isoformat())]
    elif range_:
        params.append(("range", range_))
    for dim, values in dims.items():
        if dim not in _LINK_DIMENSIONS or values is None:
            continue
        for v in [values] if isinstance(values, str) else values:
            params.append((dim, str(v)))
    return f"/{page}?{urlencode(params)}" if params else f"/{page}"


def _due(ticket: pd.Series) -> str:
    """", due 2025-03-03 09:00 UTC" when a ticket's deadline is not its creation plus the
    target in elapsed time (a business-hours policy, or the source's own due time)."""
    deadline = ticket.get("deadline")
    if deadline is None or pd.isna(deadline):
        return ""
    elapsed = pd.Timestamp(ticket["created_at"]) + pd.Timedelta(minutes=float(
        ticket["target_min"]))
    if abs(pd.Timestamp(deadline) - elapsed) < pd.Timedelta(seconds=1):
        return ""
    return f", due {pd.Timestamp(deadline):%Y-%m-%d %H:%M} UTC"


def _minutes(value: float) -> str:
    if value < 120:
        return f"{value:.0f} min"
    if value < 48 * 60:
        return f"{value / 60:.1f} h"
    return f"{value / 1440:.1f} days"


def _or_list(values: Sequence[str]) -> str:
    values = list(values)
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


def _ts(value: Any) -> datetime:
    return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value


def _has(wh: Warehouse, table: str) -> bool:
    return wh.has_table(table)


def _last_run(wh: Warehouse) -> datetime | None:
    if not _has(wh, "alert_runs"):
        return None
    return wh.scalar("select max(evaluated_at) from alert_runs")


# --- the rules ---------------------------------------------------------------------------------


def outage_scan(
    wh: Warehouse, settings: Settings | None = None, now: datetime | None = None
) -> pd.DataFrame:
    """Every (dimension, value) group the outage rule tests at ``now``, with the test.

    Columns: dimension, value, observed, history (tickets in all history windows), weeks,
    expected, ratio, p_value, threshold (p_value / groups tested), flagged. Empty when there
    are fewer than ``min_history_weeks`` complete weeks of history.
    """
    return _outage_scan(wh, (settings or load_settings()).alerts.outage, now)[0]


_SCAN_COLUMNS = ["dimension", "value", "observed", "history", "weeks", "expected", "ratio",
                 "p_value", "threshold", "flagged"]


def _outage_scan(wh: Warehouse, rule, now: datetime | None) -> tuple[pd.DataFrame, bool]:
    now = now or wh.as_of()
    empty = pd.DataFrame(columns=_SCAN_COLUMNS)
    if now is None or not _has(wh, "tickets"):
        return empty, False
    span = wh.created_range()
    first = span[0] if span else None
    window = timedelta(minutes=rule.window_min)
    windows = [(0, now - window, now)]
    for w in range(1, rule.history_weeks + 1):
        stop = now - timedelta(weeks=w)
        # only complete weeks: a window before the data began would read as zero arrivals
        if first is not None and stop - window >= first:
            windows.append((w, stop - window, stop))
    weeks = len(windows) - 1
    if weeks < rule.min_history_weeks:
        return empty, False
    values_sql = ", ".join("(?, cast(? as timestamp), cast(? as timestamp))" for _ in windows)
    frames = []
    for dim in rule.dimensions:
        if dim not in DIMENSIONS:  # identifiers only ever come from the dimension list
            raise CsMetricsError(f"Unknown dimension {dim!r} in alerts.outage.dimensions.")
        sql = f"""
            with w(week, start_at, stop_at) as (values {values_sql}),
            counts as (
                select cast(t.{dim} as varchar) as value, w.week, count(*) as n
                from tickets t join w on t.created_at > w.start_at and t.created_at <= w.stop_at
                where not t.is_test and t.{dim} is not null
                    and t.created_at > ? and t.created_at <= ?
                group by all
            ),
            final as (
                select value,
                    coalesce(sum(n) filter (where week = 0), 0) as observed,
                    coalesce(sum(n) filter (where week > 0), 0) as history
                from counts group by value
            )
            select * from final order by value
        """
        params: list[Any] = [p for win in windows for p in win]
        params += [min(start for _, start, _ in windows), now]
        df = wh.df(sql, params)
        df.insert(0, "dimension", dim)
        frames.append(df)
    scan = pd.concat(frames, ignore_index=True) if frames else empty.iloc[:, :4]
    if scan.empty:
        return empty, True
    scan["observed"] = scan["observed"].astype("int64")
    scan["history"] = scan["history"].astype("int64")
    scan["weeks"] = weeks
    scan["expected"] = (scan["history"] + 0.5) / weeks
    scan["ratio"] = scan["observed"] / scan["expected"]
    scan["p_value"] = [poisson_sf(k, mu) for k, mu in zip(scan["observed"], scan["expected"],
                                                            strict=True)]
    scan["threshold"] = rule.p_value / len(scan)
    scan["flagged"] = (
        (scan["p_value"] < scan["threshold"])
        & (scan["observed"] >= rule.min_count)
        & (scan["ratio"] >= rule.min_ratio)
    )
    return scan[_SCAN_COLUMNS], True


def _outage_alerts(wh: Warehouse, settings: Settings, now: datetime) -> tuple[list[Alert], bool]:
    rule = settings.alerts.outage
    scan, ran = _outage_scan(wh, rule, now)
    alerts = []
    m = len(scan)
    for row in scan[scan["flagged"]].itertuples(index=False):
        what = f"{row.dimension.replace('_', ' ')} {row.value}"
        message = (
            f"Suspected outage in {what}: {row.observed} tickets in the last "
            f"{rule.window_min:g} min against {row.expected:.1f} expected from the same hour of "
            f"the week over the previous {row.weeks} weeks ({row.ratio:.1f}x; one-sided Poisson "
            f"exact test p = {row.p_value:.2g} < {rule.p_value:g}/{m} groups (Bonferroni) "
            f"= {row.threshold:.2g})."
        )
        alerts.append(Alert(
            id=f"outage:{row.dimension}={row.value}",
            rule="outage",
            severity=rule.severity,
            title=f"Outage suspected: {what}",
            message=message,
            figures={
                "dimension": row.dimension, "value": row.value, "observed": row.observed,
                "expected": round(float(row.expected), 3), "ratio": round(float(row.ratio), 3),
                "weeks": row.weeks, "window_min": rule.window_min, "p_value": row.p_value,
                "threshold": row.threshold, "groups_tested": m,
                "test": "one-sided Poisson exact test, Bonferroni",
            },
            link=_link("trends", **{row.dimension: row.value}),
            created_at=now,
        ))
    return alerts, ran


def _sla_alerts(wh: Warehouse, settings: Settings, now: datetime) -> tuple[list[Alert], bool]:
    rule = settings.alerts.sla
    if not _has(wh, "tickets") or not (rule.priorities or rule.segments) \
            or "sla_breached" in rules_without_inputs(wh):
        return [], False
    pri = list(rule.priorities) or [""]
    seg = list(rule.segments) or [""]
    # judged by the stored deadline, as the live panel and the SLA metric judge them: a
    # policy in business time has its deadline on the business clock
    deadline = first_response_deadline_sql(wh)
    scoped = f"""
        with scoped as (
            select t.ticket_id, t.created_at, t.priority, t.customer_segment,
                t.sla_first_response_target_min as target_min,
                date_diff('second', t.created_at, cast(? as timestamp)) / 60.0 as waited_min,
                {deadline} as deadline,
                date_diff('microsecond', t.created_at, {deadline}) / 60000000.0 as span_min
            from tickets t
            where not t.is_test and t.status in ('open', 'in_progress')
                and t.first_response_at is null and t.sla_first_response_target_min > 0
                and t.created_at <= ?
                and (t.priority in ({', '.join('?' for _ in pri)})
                     or t.customer_segment in ({', '.join('?' for _ in seg)}))
        ),
        kinds as (
            select *, case when cast(? as timestamp) >= deadline then 'breached'
                else 'at_risk' end as kind
            from scoped where waited_min >= ? * span_min
        )
    """
    params = [now, now, *pri, *seg, now, rule.at_risk_share]
    groups = wh.df(
        scoped + "select kind, priority, customer_segment, count(*) as n from kinds group by all",
        params,
    )
    top = wh.df(
        scoped + "select * from kinds qualify row_number() over "
        "(partition by kind order by created_at, ticket_id) <= ? order by kind, created_at, "
        "ticket_id",
        [*params, rule.max_ids],
    )
    scope = " or ".join(
        part for part in (
            f"{'/'.join(rule.priorities)}-priority" if rule.priorities else "",
            f"segment {_or_list(rule.segments)}" if rule.segments else "",
        ) if part
    )
    alerts = []
    for kind, name in (("breached", "sla_breached"), ("at_risk", "sla_at_risk")):
        mine = groups[groups["kind"] == kind]
        if mine.empty:
            continue
        rows = top[top["kind"] == kind]
        oldest = rows.iloc[0]
        n = int(mine["n"].sum())
        by_priority = {str(k): int(v) for k, v in mine.groupby("priority")["n"].sum().items()}
        priorities = sorted(by_priority)
        segments = sorted({str(s) for s in mine["customer_segment"].dropna()})
        if set(priorities) <= set(rule.priorities):
            dims: dict[str, list[str]] = {"priority": priorities}
        elif mine["customer_segment"].notna().all() and set(segments) <= set(rule.segments):
            dims = {"customer_segment": segments}
        else:
            dims = {}
        waited, target = float(oldest["waited_min"]), float(oldest["target_min"])
        about = (f"{oldest['ticket_id']} ({oldest['priority']}, "
                 f"segment {oldest['customer_segment']})")
        tickets = "ticket has" if n == 1 else "tickets have"
        if kind == "breached":
            message = (
                f"{n} {scope} {tickets} waited past the first-response target without a "
                f"reply; the oldest, {about}, has waited {_minutes(waited)} against a "
                f"{target:g}-min target{_due(oldest)}."
            )
            severity, title = rule.breached_severity, f"SLA breached: {n} unanswered"
        else:
            message = (
                f"{n} {scope} {tickets} waited at least {rule.at_risk_share:.0%} of the "
                f"first-response target without a reply; the oldest, {about}, has waited "
                f"{_minutes(waited)} of a {target:g}-min target{_due(oldest)}."
            )
            severity, title = rule.at_risk_severity, f"SLA at risk: {n} unanswered"
        alerts.append(Alert(
            id=f"{name}:all",
            rule=name,
            severity=severity,
            title=title,
            message=message,
            figures={
                "count": n, "by_priority": by_priority,
                "oldest_ticket_id": str(oldest["ticket_id"]),
                "oldest_created_at": _ts(oldest["created_at"]),
                "oldest_waited_min": round(waited, 1), "oldest_target_min": target,
                "oldest_deadline": _ts(oldest["deadline"]),
                "ticket_ids": [str(t) for t in rows["ticket_id"]],
                "at_risk_share": rule.at_risk_share,
            },
            link=_link("trends", **dims),
            created_at=now,
        ))
    return alerts, True


def _since(wh: Warehouse, settings: Settings, now: datetime, since: datetime | None) -> datetime:
    rule = settings.alerts.watch
    if since is None:
        since = _last_run(wh)
    # the first run, or data reloaded behind the last run: look back a little, not forever
    if since is None or since > now or since < now - timedelta(hours=rule.active_h):
        since = now - timedelta(minutes=rule.lookback_min)
    return since


def _watch_alerts(
    wh: Warehouse, settings: Settings, now: datetime, since: datetime
) -> tuple[list[Alert], list[str]]:
    rule = settings.alerts.watch
    alerts: list[Alert] = []
    ran: list[str] = []
    if not _has(wh, "tickets"):
        return alerts, ran
    has_events = _has(wh, "ticket_events")
    if rule.reopened_priorities and has_events:
        ran.append("ticket_reopened")
        pri = list(rule.reopened_priorities)
        rows = wh.df(
            f"""
            with touched as (
                select distinct ticket_id from ticket_events where event_at > ? and event_at <= ?
            ),
            ev as (
                select e.ticket_id, e.event_at, e.status,
                    lag(e.status) over (partition by e.ticket_id order by e.event_at, e.rowid)
                        as previous
                from ticket_events e semi join touched using (ticket_id)
            ),
            final as (
                select ev.ticket_id, ev.event_at, ev.status, t.priority, t.customer_segment,
                    t.domain, t.location
                from ev join tickets t using (ticket_id)
                where ev.event_at > ? and ev.event_at <= ? and ev.previous = 'closed'
                    and ev.status in ('open', 'in_progress') and not t.is_test
                    and t.priority in ({', '.join('?' for _ in pri)})
            )
            select * from final order by event_at, ticket_id
            """,
            [since, now, since, now, *pri],
        )
        for ticket_id, group in rows.groupby("ticket_id", sort=False):
            last = group.iloc[-1]
            at = _ts(last["event_at"])
            where = ", ".join(str(v) for v in (last["domain"], last["location"]) if pd.notna(v))
            status = str(last["status"]).replace("_", " ")
            alerts.append(Alert(
                id=f"ticket_reopened:{ticket_id}",
                rule="ticket_reopened",
                severity=rule.severity,
                title=f"{str(last['priority']).capitalize()} ticket {ticket_id} reopened",
                message=(
                    f"{str(last['priority']).capitalize()} ticket {ticket_id}"
                    f"{f' ({where})' if where else ''} was reopened at {at:%Y-%m-%d %H:%M} "
                    f"(closed -> {status})"
                    f"{f', {len(group)} times since {since:%H:%M}' if len(group) > 1 else ''}."
                ),
                figures={
                    "ticket_id": str(ticket_id), "priority": str(last["priority"]),
                    "reopened_at": at, "status": str(last["status"]),
                    "reopens": len(group), "since": since,
                },
                link=_link("trends", priority=str(last["priority"])),
                created_at=now,
            ))
    if rule.vip_segments and "vip_closed_unanswered" not in rules_without_inputs(wh):
        ran.append("vip_closed_unanswered")
        seg = list(rule.vip_segments)
        closes = (
            "select ticket_id, max(event_at) as closed_at from ticket_events "
            "where status = 'closed' and event_at > ? and event_at <= ? group by ticket_id"
            if has_events else
            "select null::varchar as ticket_id, null::timestamp as closed_at "
            "where ? is null and ? is null"
        )
        rows = wh.df(
            f"""
            with closes as ({closes}),
            final as (
                select t.ticket_id, coalesce(c.closed_at, t.resolved_at) as closed_at,
                    t.priority, t.customer_segment, t.domain, t.location
                from tickets t left join closes c using (ticket_id)
                where t.status = 'closed' and t.first_response_at is null and not t.is_test
                    and t.customer_segment in ({', '.join('?' for _ in seg)})
                    and (c.closed_at is not null or (t.resolved_at > ? and t.resolved_at <= ?))
            )
            select * from final order by closed_at, ticket_id
            """,
            [since, now, *seg, since, now],
        )
        for row in rows.itertuples(index=False):
            at = _ts(row.closed_at)
            when = f" at {at:%Y-%m-%d %H:%M}" if at is not None and pd.notna(at) else ""
            alerts.append(Alert(
                id=f"vip_closed_unanswered:{row.ticket_id}",
                rule="vip_closed_unanswered",
                severity=rule.severity,
                title=f"Segment {row.customer_segment} ticket {row.ticket_id} closed unanswered",
                message=(
                    f"Segment {row.customer_segment} ticket {row.ticket_id} ({row.priority} "
                    f"priority) was closed{when} without any first response."
                ),
                figures={
                    "ticket_id": str(row.ticket_id), "customer_segment": row.customer_segment,
                    "priority": row.priority, "closed_at": at if when else None,
                },
                link=_link("trends", customer_segment=str(row.customer_segment)),
                created_at=now,
            ))
    return alerts, ran


def _csat_alerts(wh: Warehouse, settings: Settings, now: datetime) -> tuple[list[Alert], bool]:
    rule = settings.alerts.csat
    if not _has(wh, "feedback_facts") or "csat_drop" in rules_without_inputs(wh):
        return [], False
    split = now - timedelta(days=rule.recent_days)
    start = split - timedelta(days=rule.baseline_days)
    row = wh.df(
        """
        with scored as (
            select coalesce(submitted_at, created_at) as ts, csat >= 4 as good
            from feedback_facts
            where not is_test and csat is not null
                and coalesce(submitted_at, created_at) > ?
                and coalesce(submitted_at, created_at) <= ?
        )
        select count(*) filter (where ts > ?) as n1,
            count(*) filter (where ts > ? and good) as g1,
            count(*) filter (where ts <= ?) as n2,
            count(*) filter (where ts <= ? and good) as g2
        from scored
        """,
        [start, now, split, split, split, split],
    ).iloc[0]
    n1, g1, n2, g2 = (int(v) for v in row)
    if n1 < rule.min_responses or n2 < rule.min_responses:
        return [], True
    z, p = two_proportion_z(g1, n1, g2, n2)
    p1, p2 = 100 * g1 / n1, 100 * g2 / n2
    drop = p2 - p1
    if not (p < rule.p_value and drop >= rule.min_drop_points):
        return [], True
    message = (
        f"CSAT fell to {p1:.1f} % over the last {rule.recent_days:g} days ({g1} of {n1} "
        f"responses 4-5) from {p2:.1f} % over the {rule.baseline_days:g} days before ({g2} of "
        f"{n2}): {drop:.1f} points lower, one-sided two-proportion z-test z = {z:.2f}, "
        f"p = {p:.2g} < {rule.p_value:g}."
    )
    return [Alert(
        id="csat_drop:all",
        rule="csat_drop",
        severity=rule.severity,
        title=f"CSAT drop: {p1:.1f} % (-{drop:.1f} points)",
        message=message,
        figures={
            "recent_pct": round(p1, 2), "baseline_pct": round(p2, 2),
            "drop_points": round(drop, 2), "recent_good": g1, "recent_n": n1,
            "baseline_good": g2, "baseline_n": n2, "z": round(z, 4), "p_value": p,
            "recent_days": rule.recent_days, "baseline_days": rule.baseline_days,
            "test": "one-sided pooled two-proportion z-test",
        },
        link=_link("feedback", date_from=start, date_to=now),
        created_at=now,
    )], True


def _emerging_alerts(wh: Warehouse, settings: Settings, now: datetime
                     ) -> tuple[list[Alert], bool]:
    rule = settings.alerts.emerging
    if not _has(wh, "feedback_facts") or "comment" not in wh.columns("feedback_facts") \
            or "emerging_issue" in rules_without_inputs(wh):
        return [], False
    from cs_metrics.analysis.topics import emerging_issues

    found = emerging_issues(wh, end=now, recent_days=rule.recent_days,
                            baseline_days=rule.baseline_days, min_count=rule.min_count,
                            min_growth=rule.min_growth, alpha=rule.alpha)
    alerts = []
    for row in found.issues.itertuples():
        growth = "new" if not math.isfinite(row.growth) else f"{row.growth:.1f}x"
        alerts.append(Alert(
            id=f"emerging_issue:{row.issue}",
            rule="emerging_issue",
            severity=rule.severity,
            title=f"Emerging issue: {row.issue}",
            message=(
                f"Comments about \"{row.issue}\" rose to {row.recent_share_pct:.1f} % of the "
                f"last {rule.recent_days} days' comments ({row.recent_comments}) from "
                f"{row.baseline_share_pct:.1f} % before ({growth}); q = {row.q_value:.2g}; "
                f"mostly {row.domains}."
            ),
            figures={
                "issue": row.issue, "recent_comments": int(row.recent_comments),
                "recent_share_pct": round(float(row.recent_share_pct), 3),
                "baseline_share_pct": round(float(row.baseline_share_pct), 3),
                "q_value": float(row.q_value), "domains": str(row.domains),
                "locations": str(row.locations), "test": found.test,
            },
            link=_link("feedback", date_from=found.recent[0], date_to=found.recent[1]),
            created_at=now,
        ))
    return alerts, True


def _evaluate(
    wh: Warehouse, settings: Settings, now: datetime, since: datetime | None
) -> tuple[list[Alert], list[str]]:
    cfg = settings.alerts
    alerts: list[Alert] = []
    ran: list[str] = []
    if not cfg.enabled:
        return alerts, ran
    if cfg.outage.enabled:
        found, ok = _outage_alerts(wh, settings, now)
        alerts += found
        ran += ["outage"] if ok else []
    if cfg.sla.enabled:
        found, ok = _sla_alerts(wh, settings, now)
        alerts += found
        ran += ["sla_breached", "sla_at_risk"] if ok else []
    if cfg.watch.enabled:
        found, rules = _watch_alerts(wh, settings, now, _since(wh, settings, now, since))
        alerts += found
        ran += rules
    if cfg.csat.enabled:
        found, ok = _csat_alerts(wh, settings, now)
        alerts += found
        ran += ["csat_drop"] if ok else []
    if cfg.emerging.enabled:
        found, ok = _emerging_alerts(wh, settings, now)
        alerts += found
        ran += ["emerging_issue"] if ok else []
    unique = {a.id: a for a in alerts}  # one alert per key
    return list(unique.values()), ran


def evaluate(
    wh: Warehouse,
    settings: Settings | None = None,
    now: datetime | None = None,
    since: datetime | None = None,
) -> list[Alert]:
    """The alerts the enabled rules raise at ``now`` (default: the data's as-of moment).

    Read-only: nothing is stored. ``since`` starts the watched-ticket window (default: the
    last stored run; with none, or one more than ``alerts.watch.active_h`` ago,
    ``alerts.watch.lookback_min`` before ``now``).
    """
    settings = settings or load_settings()
    now = now or wh.as_of()
    if now is None:
        return []
    return _evaluate(wh, settings, now, since)[0]


# --- storage -----------------------------------------------------------------------------------

_DDL = (
    """create table if not exists alerts (
        occurrence_id varchar, alert_id varchar, seq integer, rule varchar, severity varchar,
        title varchar, message varchar, figures varchar, link varchar,
        created_at timestamp, last_seen_at timestamp, seen_count integer, muted boolean,
        acknowledged_at timestamp, acknowledged_by varchar, resolved_at timestamp)""",
    """create table if not exists alert_mutes (
        target varchar, until timestamp, muted_by varchar, muted_at timestamp,
        reason varchar)""",
    """create table if not exists alert_runs (
        evaluated_at timestamp, ran_at timestamp, raised integer, suppressed integer,
        muted integer, resolved integer, rules varchar)""",
)

_ALERT_COLUMNS = ["occurrence_id", "alert_id", "seq", "rule", "severity", "title", "message",
                  "figures", "link", "created_at", "last_seen_at", "seen_count", "muted",
                  "acknowledged_at", "acknowledged_by", "resolved_at"]


def _writable(wh: Warehouse, what: str) -> duckdb.DuckDBPyConnection:
    if wh.read_only:
        raise CsMetricsError(
            f"Cannot {what}: the warehouse {wh.path} is open read-only; alerts are stored by "
            "the process that refreshes it (the app, or `python -m cs_metrics alerts --once` "
            "while the app is stopped)."
        )
    con = wh.connection()
    try:
        for ddl in _DDL:
            con.execute(ddl)
        ensure_deliveries_table(con)
    except duckdb.Error as exc:
        raise CsMetricsError(f"Cannot create the alert tables in {wh.path}: {exc}") from exc
    finally:
        catalog_changed()
    return con


def _in_scope(wh: Warehouse, alert_id: str) -> Warehouse:
    """The warehouse to write an acknowledgement to, once the alert is one the caller's
    scope sees (``cs_metrics.core.access``); the scope's own connections only read."""
    if wh.scope is None:
        return wh
    seen = wh.has_table("alerts") and wh.scalar(
        "select count(*) from alerts where occurrence_id = ? or alert_id = ?",
        [alert_id, alert_id])
    if not seen:
        raise CsMetricsError(
            f"There is no alert {alert_id!r} among those you can see; the ids are listed by "
            "active_alerts (the Alerts page)."
        )
    return wh.base


def _allowed(wh: Warehouse, permission: str, what: str) -> Warehouse:
    """The unscoped warehouse, if the caller's scope may do ``what``."""
    if wh.scope is None:
        return wh
    if not wh.scope.may(permission):
        raise CsMetricsError(f"Your role ({wh.scope.role}) may not {what}.")
    return wh.base


def _muted(con: duckdb.DuckDBPyConnection, alert: Alert, now: datetime) -> bool:
    rows = con.execute(
        "select 1 from alert_mutes where target in (?, ?) and until > ? limit 1",
        [alert.id, alert.rule, now],
    ).fetchall()
    return bool(rows)


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


def _cooldowns(settings: Settings) -> dict[str, float]:
    a = settings.alerts
    return {
        "outage": a.outage.cooldown_min, "sla_breached": a.sla.cooldown_min,
        "sla_at_risk": a.sla.cooldown_min, "ticket_reopened": a.watch.cooldown_min,
        "vip_closed_unanswered": a.watch.cooldown_min, "csat_drop": a.csat.cooldown_min,
        "emerging_issue": a.emerging.cooldown_min,
    }


def _resolve(
    con: duckdb.DuckDBPyConnection, settings: Settings, now: datetime, ran: list[str],
    firing: set[str],
) -> list[str]:
    resolved: list[str] = []
    state = [r for r in ran if RULES[r].kind == "state"]
    if state:
        # only rules that ran can say a condition cleared
        resolved += [r[0] for r in con.execute(
            "update alerts set resolved_at = ? where resolved_at is null "
            "and rule in (select unnest(?::varchar[])) "
            "and alert_id not in (select unnest(?::varchar[])) returning occurrence_id",
            [now, state, sorted(firing)],
        ).fetchall()]
    events = [name for name, info in RULES.items() if info.kind == "event"]
    resolved += [r[0] for r in con.execute(
        "update alerts set resolved_at = ? where resolved_at is null "
        "and rule in (select unnest(?::varchar[])) and created_at <= ? returning occurrence_id",
        [now, events, now - timedelta(hours=settings.alerts.watch.active_h)],
    ).fetchall()]
    return sorted(resolved)


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


# --- reading, acknowledging, muting ------------------------------------------------------------


def _clock(wh: Warehouse) -> datetime | None:
    """The data's clock for mutes: the last run, else the as-of moment."""
    return _last_run(wh) or wh.as_of()


def _empty_alerts() -> pd.DataFrame:
    return pd.DataFrame(columns=[*_ALERT_COLUMNS, "deliveries"])


_SEVERITY_RANK = "case severity when 'critical' then 3 when 'warning' then 2 else 1 end"

_WITH_DELIVERIES = """
with last as (
    select occurrence_id, channel, status,
        row_number() over (partition by occurrence_id, channel, target
                           order by attempt desc, "at" desc) as rn
    from alert_deliveries
),
summary as (
    select occurrence_id, string_agg(channel || ': ' || status, ', ' order by channel)
        as deliveries
    from last where rn = 1 group by occurrence_id
),
final as (
    select a.*, s.deliveries from alerts a left join summary s using (occurrence_id)
)
"""


def active_alerts(wh: Warehouse) -> pd.DataFrame:
    """Alerts not acknowledged, not resolved and not muted now, most severe and newest first.

    One row per occurrence with the columns of table ``alerts`` (``figures`` as JSON text)
    plus ``deliveries`` ("email: sent, webhook: failed").
    """
    if not _has(wh, "alerts") or not _has(wh, "alert_deliveries"):
        return _empty_alerts()
    now = _clock(wh)
    return wh.df(
        _WITH_DELIVERIES + f"""
        select * from final f
        where acknowledged_at is null and resolved_at is null
            and not exists (select 1 from alert_mutes m
                            where m.target in (f.alert_id, f.rule) and m.until > ?)
        order by {_SEVERITY_RANK} desc, created_at desc, seq desc
        """,
        [now],
    )


def alert_history(wh: Warehouse, limit: int = 200) -> pd.DataFrame:
    """The latest ``limit`` occurrences, acknowledged, resolved and muted ones included."""
    if not _has(wh, "alerts") or not _has(wh, "alert_deliveries"):
        return _empty_alerts()
    return wh.df(
        _WITH_DELIVERIES + "select * from final order by created_at desc, seq desc limit ?",
        [int(limit)],
    )


def acknowledge(wh: Warehouse, alert_id: str, by: str, at: datetime | None = None, *,
                role: str = "") -> int:
    """Acknowledge an occurrence (``id#n``) or every unacknowledged occurrence of an alert id.

    Returns how many were newly acknowledged (0 if they already were). When any were, the
    audit log gets an ``alert_acknowledged`` entry by ``by`` (with ``role``) in the same
    transaction.
    """
    if not by or not by.strip():
        raise CsMetricsError("Say who acknowledges the alert (a name or an email address).")
    who = audit.signed_in(wh)  # the scope's issuer and subject, before it is left behind
    wh = _in_scope(wh, alert_id)
    _writable(wh, "acknowledge an alert")
    with audit.appending(wh, "acknowledge an alert") as log:
        known = log.con.execute(
            "select count(*) from alerts where occurrence_id = ? or alert_id = ?",
            [alert_id, alert_id],
        ).fetchall()[0][0]
        if not known:
            raise CsMetricsError(
                f"There is no alert {alert_id!r}; the ids are listed by active_alerts (the "
                "Alerts page)."
            )
        at = at or datetime.now()
        rows = log.con.execute(
            "update alerts set acknowledged_at = ?, acknowledged_by = ? "
            "where (occurrence_id = ? or alert_id = ?) and acknowledged_at is null "
            "returning occurrence_id",
            [at, by.strip(), alert_id, alert_id],
        ).fetchall()
        if rows:
            log.record(by, role, "alert_acknowledged", alert_id,
                       {"occurrences": sorted(r[0] for r in rows), "acknowledged_at": at},
                       **who)
    return len(rows)


def _check_target(target: str) -> None:
    rule = target.split(":", 1)[0]
    if rule not in RULES or (":" in target and not target.split(":", 1)[1]):
        raise CsMetricsError(
            f"Cannot mute {target!r}: name a rule ({', '.join(RULES)}) or an alert id such as "
            "'outage:location=Austin'."
        )


def mute(
    wh: Warehouse,
    key_or_rule: str,
    until: datetime | timedelta,
    by: str,
    reason: str = "",
    *,
    role: str = "",
) -> datetime:
    """Mute an alert id or a whole rule until ``until`` on the data's clock.

    A ``timedelta`` counts from the data's clock (the last run, else the as-of moment). Muted
    alerts are still stored, not notified and not listed as active. Returns the end. The
    audit log gets an ``alert_muted`` entry by ``by`` (with ``role``) in the same transaction.
    """
    _check_target(key_or_rule)
    if not by or not by.strip():
        raise CsMetricsError("Say who mutes the alert (a name or an email address).")
    base = _clock(wh)
    if isinstance(until, timedelta):
        if base is None:
            raise CsMetricsError("The warehouse has no data yet; mute until a date instead.")
        until = base + until
    if base is not None and until <= base:
        raise CsMetricsError(
            f"Cannot mute {key_or_rule!r} until {until:%Y-%m-%d %H:%M}: the data's clock is "
            f"already at {base:%Y-%m-%d %H:%M}; pick a later end."
        )
    who = audit.signed_in(wh)
    wh = _allowed(wh, "mute_alerts", "mute alerts")
    _writable(wh, "mute an alert")
    with audit.appending(wh, "mute an alert") as log:
        log.con.execute(
            "insert into alert_mutes values (?, ?, ?, ?, ?)",
            [key_or_rule, until, by.strip(), datetime.now(), reason],
        )
        log.record(by, role, "alert_muted", key_or_rule, {"until": until, "reason": reason},
                   **who)
    return until


def unmute(wh: Warehouse, key_or_rule: str, *, by: str = "", role: str = "") -> int:
    """Lift every mute of an alert id or rule; returns how many were lifted.

    When any were, the audit log gets an ``alert_unmuted`` entry by ``by`` (``unknown`` when
    not given) in the same transaction.
    """
    who = audit.signed_in(wh)
    wh = _allowed(wh, "mute_alerts", "unmute alerts")
    _writable(wh, "unmute an alert")
    with audit.appending(wh, "unmute an alert") as log:
        lifted = len(log.con.execute(
            "delete from alert_mutes where target = ? returning target", [key_or_rule]
        ).fetchall())
        if lifted:
            log.record((by or "").strip() or audit.UNKNOWN_ACTOR, role, "alert_unmuted",
                       key_or_rule, {"lifted": lifted}, **who)
    return lifted


def mutes(wh: Warehouse) -> pd.DataFrame:
    """Mutes in force on the data's clock: target, until, muted_by, muted_at, reason."""
    if not _has(wh, "alert_mutes"):
        return pd.DataFrame(columns=["target", "until", "muted_by", "muted_at", "reason"])
    return wh.df(
        "select * from alert_mutes where until > ? order by until desc", [_clock(wh)]
    )


def pending_in_app(wh: Warehouse, limit: int = 20) -> pd.DataFrame:
    """Alerts whose in-app notification has not been shown yet (the page toasts them, then
    calls ``mark_in_app_shown``)."""
    if not _has(wh, "alerts") or not _has(wh, "alert_deliveries"):
        return _empty_alerts()
    return wh.df(
        _WITH_DELIVERIES + """
        select * from final f
        where acknowledged_at is null
            and exists (select 1 from alert_deliveries d where d.occurrence_id = f.occurrence_id
                        and d.channel = 'in_app' and d.status = 'pending')
        order by created_at desc, seq desc limit ?
        """,
        [int(limit)],
    )


def mark_in_app_shown(wh: Warehouse, occurrence_ids: Sequence[str]) -> int:
    """Record that the app showed these alerts; returns how many were pending."""
    if not occurrence_ids:
        return 0
    wh = wh.base  # the scope saw them; marking them shown changes nothing else
    con = _writable(wh, "mark alerts as shown")
    return len(con.execute(
        "update alert_deliveries set status = 'shown', \"at\" = ? where channel = 'in_app' "
        "and status = 'pending' and occurrence_id in (select unnest(?::varchar[])) "
        "returning occurrence_id",
        [datetime.now(), list(occurrence_ids)],
    ).fetchall())


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
