"""Drill-down: the tickets behind a figure, one page at a time.

The where clause mirrors the metric compiler's (same filters, same ``?`` parameters, test
tickets excluded), so the rows listed are exactly the tickets a figure counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.core.zones import local_columns, utc_moment
from cs_metrics.metrics.registry import GRAINS, Filters, filter_sql

__all__ = [
    "COLUMNS",
    "MAX_LIMIT",
    "ORDERS",
    "TicketPage",
    "bucket",
    "rep_label",
    "ticket_page",
]

# The columns a drill-down lists; csat is the ticket's mean survey score (1-5). rep_id
# beside rep_name: without a representatives table a ticket has an id but no name.
COLUMNS: tuple[str, ...] = (
    "ticket_id", "created_at", "status", "priority", "channel", "domain", "location",
    "customer_segment", "rep_name", "rep_id", "team", "first_response_min", "resolution_h",
    "sla_first_response_met", "csat",
)
_SELECT = ", ".join(
    "t.fb_csat_sum * 1.0 / nullif(t.fb_csat_n, 0) as csat" if c == "csat" else f"t.{c}"
    for c in COLUMNS
)

# Orders a caller may ask for; ticket_id breaks ties so pages never overlap.
ORDERS: dict[str, str] = {
    "created_at desc": "t.created_at desc, t.ticket_id desc",
    "created_at asc": "t.created_at asc, t.ticket_id asc",
    "first_response_min desc": "t.first_response_min desc nulls last, t.ticket_id",
    "resolution_h desc": "t.resolution_h desc nulls last, t.ticket_id",
    "priority": "case t.priority when 'urgent' then 0 when 'high' then 1 when 'normal' then 2 "
                "else 3 end, t.created_at desc, t.ticket_id",
}
MAX_LIMIT = 1000


@dataclass(frozen=True)
class TicketPage:
    rows: pd.DataFrame
    total: int  # tickets matching, over all pages
    limit: int
    offset: int

    @property
    def first(self) -> int:
        """1-based number of the first row shown (0 when nothing matches)."""
        return self.offset + 1 if len(self.rows) else 0

    @property
    def last(self) -> int:
        return self.offset + len(self.rows)

    @property
    def has_next(self) -> bool:
        return self.offset + self.limit < self.total


def _missing(value: object) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):  # a list-like value: not one missing value
        return False


def rep_label(name: object, rep_id: object, none: str = "(none)") -> str:
    """How a ticket list or a drill's label names a representative: the name, else the
    rep id (a dataset without a representatives table has ids but no names), else
    ``none`` (an unassigned ticket). Never "None"."""
    if not _missing(name) and str(name).strip():
        return str(name)
    if not _missing(rep_id) and str(rep_id).strip():
        return str(rep_id)
    return none


def _as_ts(d: date | datetime) -> datetime:
    return d if isinstance(d, datetime) else datetime(d.year, d.month, d.day)


def bucket(period: date, grain: str) -> tuple[datetime, datetime]:
    """[start, end) of the ``grain`` bucket holding ``period`` (weeks start on Monday)."""
    if grain not in GRAINS:
        raise CsMetricsError(f"Unknown grain {grain!r}; use {', '.join(GRAINS)}.")
    day = period.date() if isinstance(period, datetime) else period
    if grain == "day":
        start = day
    elif grain == "week":
        start = day - timedelta(days=day.weekday())  # 0001-01-01 was a Monday
    else:
        start = day.replace(day=1)
    try:
        if grain == "day":
            end = _as_ts(day + timedelta(days=1))
        elif grain == "week":
            end = _as_ts(start + timedelta(days=7))
        else:
            end = _as_ts(date(start.year + start.month // 12, start.month % 12 + 1, 1))
    except (OverflowError, ValueError):
        # the last bucket of year 9999 (data written past ingest's checks): it ends with time
        end = datetime.max
    return _as_ts(start), end


def ticket_page(
    wh: Warehouse,
    filters: Filters,
    *,
    period: date | None = None,
    grain: str | None = None,
    extra: dict[str, str | None] | None = None,
    open_at: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
    order: str = "created_at desc",
) -> TicketPage:
    """One page of the tickets matching ``filters`` (test tickets excluded).

    ``period`` with ``grain`` narrows to the tickets created in that bucket; ``extra`` adds
    dimension = value constraints. ``open_at`` lists the backlog at that moment instead, as
    the backlog metric counts it: tickets created before it and not resolved by then, the
    date range not applying (a stock holds older tickets too). Only ``limit`` rows are
    read; ``total`` counts them all.
    """
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise CsMetricsError(f"A page holds 1 to {MAX_LIMIT} tickets, not {limit!r}.")
    if not isinstance(offset, int) or offset < 0:
        raise CsMetricsError(f"The offset must be 0 or more, not {offset!r}.")
    if order not in ORDERS:
        raise CsMetricsError(f"Unknown order {order!r}; use one of: {', '.join(ORDERS)}.")
    if (period is None) != (grain is None):
        raise CsMetricsError("Give both a period and its grain, or neither.")
    if open_at is not None and period is not None:
        raise CsMetricsError("List either the tickets created in a period or the backlog at "
                             "a moment, not both.")
    if not wh.has_table("tickets"):
        raise CsMetricsError(
            f"The warehouse {wh.path} has no tickets yet; run "
            "`python -m cs_metrics ingest SOURCE` first."
        )
    if open_at is not None:
        where, params = filter_sql(filters, date_column=None, extra=extra)
        moment = utc_moment(_as_ts(open_at), filters.tz)  # a local moment, as periods are
        where += (" and t.created_at < ? and (t.effective_resolved_at is null "
                  "or t.effective_resolved_at >= ?)")
        params += [moment, moment]
    else:
        where, params = filter_sql(filters, extra=extra)
    if period is not None and grain is not None:
        start, end = bucket(period, grain)  # a local bucket of the reporting zone
        where += " and t.created_at >= ? and t.created_at < ?"
        params += [utc_moment(start, filters.tz),
                   end if end == datetime.max else utc_moment(end, filters.tz)]
    own, own_params = wh.listing_sql("t")
    where += f" and {own}"
    params += own_params
    total = int(wh.scalar(f"select count(*) from tickets t where {where}", params) or 0)
    rows = wh.df(
        f"select {_SELECT} from tickets t where {where} order by {ORDERS[order]} "
        "limit ? offset ?",
        [*params, limit, offset],
    )
    # moments read in the reporting zone, like the periods the tickets were picked by
    rows = local_columns(rows, ("created_at",), filters.tz)
    return TicketPage(rows=rows, total=total, limit=limit, offset=offset)
