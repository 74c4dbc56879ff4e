"""Customer cohorts: CSAT and recontact by the month a customer first appeared, or by segment.

- *Cohort*: the month of the customer's first (non-test) ticket in the data, whatever the
  filters. Customers of the data's first month may be older than the data: their cohort
  reads "at or before" that month (column ``left_censored``).
- *CSAT* of a group: its tickets' CSAT responses of 4 or 5 over all CSAT responses (the
  registry's ``csat_pct``) and their mean (``csat_avg``).
- *Recontact*: a closed ticket (with a resolution time and a customer) is followed by a
  recontact when the same customer opens another ticket after it was created and no later
  than ``recontact_days`` days after it was resolved. Only tickets whose window has ended
  by the data's "now" count, so recent tickets do not look better than they are.

Tickets belong to the filters by their ``created_at`` and dimensions, like every metric.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.core.zones import local_sql
from cs_metrics.metrics.registry import Filters, filter_sql

__all__ = ["COHORT_COLUMNS", "RECONTACT_DAYS", "TENURE_BANDS", "cohort_table", "cohort_tables"]

RECONTACT_DAYS = 7
MIN_RESPONSES = 30  # fewer CSAT responses: shown, flagged, not compared
FEW = "few responses"

# months since the customer's first ticket (at the ticket's creation) -> band
TENURE_BANDS: tuple[tuple[str, int], ...] = (
    ("first month", 0), ("1–2 months", 1), ("3–5 months", 3), ("6–11 months", 6),
    ("12+ months", 12),
)
GROUPINGS = ("cohort", "customer_segment", "tenure")

COHORT_COLUMNS: tuple[str, ...] = (
    "customers", "tickets", "csat_responses", "csat_pct", "csat_avg", "recontact_base",
    "recontacts", "recontact_pct", "note",
)


def cohort_table(
    wh: Warehouse,
    filters: Filters | None = None,
    by: Literal["cohort", "customer_segment", "tenure"] = "cohort",
    *,
    grain: Literal["month"] | None = None,
    recontact_days: int = RECONTACT_DAYS,
    min_responses: int = MIN_RESPONSES,
) -> pd.DataFrame:
    """CSAT and recontact per group of ``by``; with ``grain="month"`` one row per group and
    month of ticket creation (``period``), for a cohort-by-month view.

    Columns: the group (``cohort`` as the first day of the month, ``customer_segment`` or
    ``tenure``), [``period``], then ``COHORT_COLUMNS``; ``cohort`` rows also carry
    ``left_censored``. Groups with fewer than ``min_responses`` CSAT responses are marked
    "few responses".
    """
    if grain not in (None, "month"):
        raise CsMetricsError(f"Cohorts come by month or not at all, not by {grain!r}.")
    whole, monthly = cohort_tables(wh, filters, by, recontact_days=recontact_days,
                                   min_responses=min_responses)
    return monthly if grain else whole


def cohort_tables(
    wh: Warehouse,
    filters: Filters | None = None,
    by: Literal["cohort", "customer_segment", "tenure"] = "cohort",
    *,
    recontact_days: int = RECONTACT_DAYS,
    min_responses: int = MIN_RESPONSES,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``cohort_table`` without and with ``grain="month"``, from one pass over the tickets."""
    if by not in GROUPINGS:
        raise CsMetricsError(f"Group cohorts by one of {', '.join(GROUPINGS)}, not {by!r}.")
    if recontact_days < 0:
        raise CsMetricsError("The recontact window must be 0 days or more.")
    if not wh.has_table("tickets") or "customer_id" not in wh.nonempty_columns("tickets_src"):
        raise CsMetricsError("This dataset has no customer ids, so it has no customer cohorts.")
    filters = filters or Filters()
    where, params = filter_sql(filters)
    as_of = wh.as_of()
    # months of the reporting zone (the zone is checked: only known names reach the SQL)
    tz = filters.tz
    # expressions over the columns of ``marked`` below; band labels are constants of this
    # module, never user text
    tenure = f"date_diff('month', cohort, date_trunc('month', {local_sql('created_at', tz)}))"
    tenure_case = "case " + " ".join(
        f"when {tenure} >= {lo} then '{label}'" for label, lo in reversed(TENURE_BANDS)
    ) + " end"
    group = {"cohort": "cohort", "customer_segment": "customer_segment",
             "tenure": tenure_case}[by]
    needs_cohort = by != "customer_segment"
    # The customer's next ticket (any ticket, not only the filtered ones), strictly later:
    # only tickets from the first filtered one to the last recontact window's end can be
    # it, so the window function reads those, not the whole history.
    firsts = f"""
        firsts as (
            select customer_id,
                cast(date_trunc('month', min({local_sql('created_at', tz)})) as date) as cohort
            from tickets where not is_test and customer_id is not null group by customer_id
        ),""" if needs_cohort else ""
    cohort_col = "f.cohort" if needs_cohort else "cast(null as date) as cohort"
    cohort_join = "join firsts f on f.customer_id = b.customer_id" if needs_cohort else ""
    sql = f"""
        with {firsts}
        scanned as (
            -- one scan: the filtered tickets (in_base) and every ticket that can follow
            -- one of them, each with its customer's next ticket
            select t.customer_id, t.created_at, t.customer_segment,
                case when t.status = 'closed' then t.resolved_at end as resolved_at,
                coalesce(t.fb_csat_n, 0) as csat_n, coalesce(t.fb_csat_good, 0) as csat_good,
                coalesce(t.fb_csat_sum, 0) as csat_sum,
                ({where}) as in_base,
                min(t.created_at) over (
                    partition by t.customer_id order by t.created_at
                    range between interval '1 microsecond' following and unbounded following
                ) as next_at
            from tickets t
            where not t.is_test and t.customer_id is not null
                and t.created_at >= ? and t.created_at <= ?
        ),
        marked as (
            select b.*, {cohort_col},
                cast(date_trunc('month', {local_sql('b.created_at', tz)}) as date) as period,
                b.resolved_at is not null
                    and b.resolved_at + to_microseconds(?) <= ? as in_window,
                b.next_at is not null
                    and b.next_at <= b.resolved_at + to_microseconds(?) as recontacted
            from scanned b
            {cohort_join}
            where b.in_base
        ),
        grouped as (
            select {group} as grp, period, customer_id, csat_n, csat_good, csat_sum,
                in_window, recontacted
            from marked
        ),
        final as (
            select grp, period, grouping(period) = 1 as whole,
                count(distinct customer_id) as customers, count(*) as tickets,
                sum(csat_n) as csat_responses,
                100.0 * sum(csat_good) / nullif(sum(csat_n), 0) as csat_pct,
                sum(csat_sum) * 1.0 / nullif(sum(csat_n), 0) as csat_avg,
                count(*) filter (where in_window) as recontact_base,
                count(*) filter (where in_window and recontacted) as recontacts
            from grouped group by grouping sets ((grp), (grp, period))
        )
        select * from final order by whole desc, grp, period
    """
    window = int(recontact_days) * 86_400_000_000
    # the bounds as values, not a join, so the scan skips the row groups outside them
    lo, hi = wh.connection().execute(
        f"select min(t.created_at), max(case when t.status = 'closed' then t.resolved_at end) "
        f"from tickets t where {where} and t.customer_id is not null",
        params,
    ).fetchall()[0]
    if lo is not None:
        hi = max(d for d in (lo, hi) if d is not None)
        # a close in year 9999 (written past a load's checks) has no window after it
        hi = hi + timedelta(days=recontact_days) \
            if datetime.max - hi > timedelta(days=recontact_days) else datetime.max
    df = wh.df(sql, [*params, lo, hi, window, as_of, window])
    df = df.rename(columns={"grp": by})
    for col in ("customers", "tickets", "csat_responses", "recontact_base", "recontacts"):
        df[col] = df[col].fillna(0).astype("int64")
    df["csat_pct"] = df["csat_pct"].astype("float64")
    df["csat_avg"] = df["csat_avg"].astype("float64")
    df["recontact_pct"] = np.where(df["recontact_base"] > 0,
                                   100.0 * df["recontacts"] / df["recontact_base"].where(
                                       df["recontact_base"] > 0, 1), np.nan)
    df["note"] = np.where(df["csat_responses"] < min_responses, FEW, "")
    df["period"] = pd.to_datetime(df["period"]).dt.date
    cols = [by, *COHORT_COLUMNS]
    if by == "cohort":
        first = wh.scalar(
            f"select cast(date_trunc('month', min({local_sql('created_at', tz)})) as date) "
            "from tickets "
            "where not is_test and customer_id is not null"
        )
        df["cohort"] = pd.to_datetime(df["cohort"]).dt.date
        df["left_censored"] = df["cohort"] == first
        cols.append("left_censored")
    out = []
    for whole, keys in ((True, [by]), (False, [by, "period"])):
        part = df[df["whole"] == whole]
        if by == "tenure":
            order = {label: i for i, (label, _) in enumerate(TENURE_BANDS)}
            part = part.sort_values(keys, key=lambda s: s.map(order) if s.name == "tenure"
                                    else s)
        else:
            part = part.sort_values(keys)
        wanted = cols if whole else [by, "period", *cols[1:]]
        out.append(part[wanted].reset_index(drop=True))
    return out[0], out[1]
