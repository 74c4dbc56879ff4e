"""The alert rules: each reads the warehouse at a moment and returns the alerts it raises.

What each rule tests is described in ``cs_metrics.ops.alerts``; the tests of significance
are ``cs_metrics.core._stats``'. Read-only: storing and notifying is ``alerts.run_alerts``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from cs_metrics.core import _stats
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.schema import DIMENSIONS
from cs_metrics.core.settings import Settings, load_settings
from cs_metrics.core.warehouse import Warehouse, first_response_deadline_sql
from cs_metrics.ops.alert_model import Alert, _has, _link, rules_without_inputs

__all__ = ["evaluate", "outage_scan", "poisson_sf", "two_proportion_z"]


# --- the statistics ----------------------------------------------------------------------------


def poisson_sf(k: int, mu: float) -> float:
    """P(X >= k) for X ~ Poisson(mu), accurate in the far tail (no 1 - cdf cancellation)."""
    return _stats.poisson_upper_tail(k, mu)


def two_proportion_z(good1: int, n1: int, good2: int, n2: int) -> tuple[float, float]:
    """Pooled two-proportion z-test of H1: p1 < p2; returns (z, one-sided p-value).

    An empty window gives (nan, nan); all good or all bad in both windows gives z = 0,
    p = 0.5 (no evidence either way)."""
    return _stats.two_proportion_ztest(good1, n1, good2, n2, alternative="smaller")


# --- helpers -----------------------------------------------------------------------------------


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
