"""Ticket flow: tickets closed per period, counted when they were resolved.

The registry metric ``resolved_count`` places each closed ticket in the period of its
``resolved_at`` (its time dimension), so the date range applies to ``resolved_at``; this is
the series the trend page and the reports draw, read through the one compiler.
"""

from __future__ import annotations

import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.metrics.registry import GRAINS, Filters, query

__all__ = ["resolved_per_period"]


def resolved_per_period(wh: Warehouse, filters: Filters, grain: str) -> pd.DataFrame:
    """Closed tickets by the ``grain`` bucket of their ``resolved_at``: columns ``period``
    (bucket start, a date) and ``resolved_count``.

    The date range of ``filters`` applies to ``resolved_at``; the dimension filters as
    everywhere. A closed ticket without a resolved_at has no period and is not counted.
    """
    if grain not in GRAINS:
        raise CsMetricsError(f"Unknown grain {grain!r}; use {', '.join(GRAINS)}.")
    df = query(wh, ["resolved_count"], grain=grain, filters=filters)
    # a period whose resolved tickets are none of them closed any more (reopened) has no
    # row here, as a series of closings never had one
    df = df[df["resolved_count"] > 0].reset_index(drop=True)
    # a dataset without resolved_at has the metric empty (float); here it is no closings
    return df.astype({"resolved_count": "int64"})
