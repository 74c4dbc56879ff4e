"""Ticket flow: tickets closed per period, counted when they were resolved.

The registry attributes every ticket to the period it was created; a "closed over time"
series needs the resolution time instead, so the date range applies to ``resolved_at``.
"""

from __future__ import annotations

import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.core.zones import local_date_sql
from cs_metrics.metrics.registry import GRAINS, Filters, filter_sql

__all__ = ["resolved_per_period"]


def resolved_per_period(wh: Warehouse, filters: Filters, grain: str) -> pd.DataFrame:
    """Closed tickets by the ``grain`` bucket of their ``resolved_at``: columns ``period``
    (bucket start, a date) and ``resolved_count``.

    The date range of ``filters`` applies to ``resolved_at``; the dimension filters as
    everywhere. A closed ticket without a resolved_at has no period and is not counted.
    """
    if grain not in GRAINS:
        raise CsMetricsError(f"Unknown grain {grain!r}; use {', '.join(GRAINS)}.")
    if not wh.has_table("tickets"):
        raise CsMetricsError(
            f"The warehouse {wh.path} has no tickets yet; run "
            "`python -m cs_metrics ingest SOURCE` first."
        )
    where, params = filter_sql(filters, date_column="resolved_at")
    sql = (
        f"select date_trunc('{grain}', {local_date_sql('t.resolved_at', filters.tz)}) "
        "as period, "
        "count(*) as resolved_count from tickets t "
        f"where {where} and t.status = 'closed' and t.resolved_at is not null "
        "group by period order by period"
    )
    df = wh.df(sql, params)
    df["period"] = pd.to_datetime(df["period"]).dt.date
    df["resolved_count"] = df["resolved_count"].astype("int64")
    return df
