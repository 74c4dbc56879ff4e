"""The queue right now: what arrived in the last hour, what is open, what waits longest, and
which tickets are close to missing their first-response target.

"Now" is the data's as-of moment (``Warehouse.as_of``: its latest timestamp), so a warehouse
fed live reads as live and a historical export reads as of its last event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse, first_response_deadline_sql
from cs_metrics.metrics.registry import Filters, available, filter_sql, get_metric

__all__ = ["AT_RISK_SHARE", "LiveSnapshot", "at_risk_tickets", "has_first_responses",
           "live_snapshot"]

# A ticket is "at risk" once it has waited this share of the time from its creation to its
# first-response deadline unanswered (for a policy in business time, of the wall-clock time
# to the deadline, closed hours included).
AT_RISK_SHARE = 0.8
_WAITING = "t.status in ('open', 'in_progress') and t.first_response_at is null"


@dataclass(frozen=True)
class LiveSnapshot:
    """The last ``minutes`` before ``now`` and the queue at ``now`` (dimension filters apply;
    the date range does not: the queue holds tickets of any age)."""

    now: datetime | None
    minutes: int
    arrivals: int  # tickets created in the last ``minutes``
    arrivals_before: int  # the same span one week earlier, for comparison
    open_now: int  # open or in progress at ``now``
    # The next four are None when the dataset has no first-response times at all: every open
    # ticket would read as unanswered and breached, a figure the data cannot give.
    waiting: int | None  # of those, not answered yet
    oldest_unanswered_min: float | None  # how long the longest-waiting ticket has waited
    oldest_unanswered_id: str | None
    at_risk: int | None  # unanswered, past AT_RISK_SHARE of the way to the deadline, not past it
    breached: int | None  # unanswered and at or past the deadline already
    refreshed_at: str | None  # when the warehouse was last loaded (meta derived_at)
    has_first_responses: bool = True  # whether the dataset holds any first_response_at


def _undated(filters: Filters | None) -> Filters:
    filters = filters or Filters()
    return Filters(None, None, filters.where)


def live_snapshot(wh: Warehouse, filters: Filters | None = None, minutes: int = 60
                  ) -> LiveSnapshot:
    """The numbers of the Overview's live panel, in one pass over the tickets."""
    if minutes < 1:
        raise CsMetricsError(f"Look back at least one minute, not {minutes}.")
    if not wh.has_table("tickets"):
        raise CsMetricsError(f"The warehouse {wh.path} has no tickets yet; run "
                             "`python -m cs_metrics ingest SOURCE` first.")
    now = wh.as_of()
    refreshed = wh.meta("derived_at")
    answered = has_first_responses(wh)
    if now is None:
        zero = 0 if answered else None
        return LiveSnapshot(None, minutes, 0, 0, 0, zero, None, None, zero, zero, refreshed,
                            answered)
    where, params = filter_sql(_undated(filters), date_column=None)
    since, week = now - timedelta(minutes=minutes), timedelta(days=7)
    age = "date_diff('second', t.created_at, cast(? as timestamp)) / 60.0"
    deadline = first_response_deadline_sql(wh)
    span = f"date_diff('microsecond', t.created_at, {deadline}) / 60000000.0"
    # Three narrow reads instead of one pass over every ticket: the two windows skip the
    # row groups outside them on created_at, and the queue keeps the open tickets in the
    # scan itself. ``status <> 'closed'`` follows from the list, but DuckDB applies a list
    # only after reading every row's columns, and a plain comparison while scanning.
    sql = f"""
        select
            (select count(*) from tickets t where {where}
                and t.created_at > ? and t.created_at <= ?) as arrivals,
            (select count(*) from tickets t where {where}
                and t.created_at > ? and t.created_at <= ?) as before,
            q.*
        from (
            select
                count(*) as open_now,
                count(*) filter (where {_WAITING}) as waiting,
                max({age}) filter (where {_WAITING}) as oldest_min,
                arg_max(t.ticket_id, {age}) filter (where {_WAITING}) as oldest_id,
                count(*) filter (where {_WAITING}
                    and {age} >= ? * {span}
                    and cast(? as timestamp) < {deadline}) as at_risk,
                count(*) filter (where {_WAITING}
                    and cast(? as timestamp) >= {deadline}) as breached
            from tickets t where {where} and t.status in ('open', 'in_progress')
                and t.status <> 'closed' and t.created_at between ? and ?
        ) q
    """
    # The queue holds tickets created from the plausible window's start up to now: one of
    # year 0001 (written past a load's checks) would wait for millions of hours, and one
    # dated after now has not arrived yet.
    first = wh.plausible_window()[0]
    # in the order of the ? marks: each window with the filters, then the queue's ages
    # (oldest, its id, at risk around the share and before the deadline, breached), its
    # filters and span
    args = [*params, since, now, *params, since - week, now - week,
            now, now, now, AT_RISK_SHARE, now, now, *params, first, now]
    row = wh.df(sql, args).iloc[0]

    def count(name: str) -> int:
        return 0 if pd.isna(row[name]) else int(row[name])

    if not answered:  # arrivals and the open queue stand; nothing about answers does
        return LiveSnapshot(
            now=now, minutes=minutes, arrivals=count("arrivals"),
            arrivals_before=count("before"), open_now=count("open_now"), waiting=None,
            oldest_unanswered_min=None, oldest_unanswered_id=None, at_risk=None,
            breached=None, refreshed_at=refreshed, has_first_responses=False,
        )

    oldest_id = None if pd.isna(row["oldest_id"]) else str(row["oldest_id"])
    own, own_params = wh.listing_sql("t")
    if oldest_id is not None and own != "true" and not wh.scalar(
            f"select count(*) from tickets t where t.ticket_id = ? and {own}",
            [oldest_id, *own_params]):
        oldest_id = None  # the team's oldest is someone else's ticket: its age, not its id
    return LiveSnapshot(
        now=now, minutes=minutes, arrivals=count("arrivals"), arrivals_before=count("before"),
        open_now=count("open_now"), waiting=count("waiting"),
        oldest_unanswered_min=None if pd.isna(row["oldest_min"]) else float(row["oldest_min"]),
        oldest_unanswered_id=oldest_id,
        at_risk=count("at_risk"), breached=count("breached"), refreshed_at=refreshed,
    )


def has_first_responses(wh: Warehouse) -> bool:
    """Whether the dataset holds first-response times (the SLA metric's inputs)."""
    return available(get_metric("sla_first_response_pct"), wh)


def at_risk_tickets(wh: Warehouse, filters: Filters | None = None, limit: int = 50
                    ) -> pd.DataFrame:
    """Unanswered tickets at or past ``AT_RISK_SHARE`` of the way to their first-response
    deadline, most urgent (largest share of the time to the deadline used) first: ticket_id,
    created_at, priority, customer_segment, channel, waited_min, target_min (the policy's,
    in business minutes for a business-hours policy), share_of_target, deadline."""
    now = wh.as_of()
    if now is None or not wh.has_table("tickets") or not has_first_responses(wh):
        return pd.DataFrame(columns=["ticket_id", "created_at", "priority", "customer_segment",
                                     "channel", "waited_min", "target_min", "share_of_target",
                                     "deadline"])
    where, params = filter_sql(_undated(filters), date_column=None)
    own, own_params = wh.listing_sql("t")
    where, params = f"{where} and {own}", [*params, *own_params]
    age = "date_diff('second', t.created_at, cast(? as timestamp)) / 60.0"
    deadline = first_response_deadline_sql(wh)
    span = f"date_diff('microsecond', t.created_at, {deadline}) / 60000000.0"
    return wh.df(
        f"select t.ticket_id, t.created_at, t.priority, t.customer_segment, t.channel, "
        f"{age} as waited_min, t.sla_first_response_target_min as target_min, "
        f"{age} / ({span}) as share_of_target, {deadline} as deadline "
        f"from tickets t where {where} and {_WAITING} "
        f"and {span} > 0 and t.created_at between ? and ? "
        f"and {age} >= ? * {span} "
        "order by share_of_target desc, t.created_at limit ?",
        # the queue as live_snapshot counts it: created in the plausible window up to now
        [now, now, *params, wh.plausible_window()[0], now, now, AT_RISK_SHARE, int(limit)],
    )
