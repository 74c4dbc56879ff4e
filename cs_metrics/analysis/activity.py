"""Agent activity: how each representative and team works, read from the status history.

The figures are registry metrics over per-ticket sums of ``ticket_events`` stored at load
(``ev_*`` on the query table, see ``cs_metrics.core.warehouse``); this module only names them and
asks for them per representative or team, so pages, reports and exports share one list.
"""

from __future__ import annotations

import pandas as pd

from cs_metrics.analysis.leaderboard import Level, leaderboard
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.metrics.registry import Filters, get_metric, missing_inputs

# the activity figures, then the reopen rate from the tickets' own counter beside the one
# from their history; tickets first, so a lead sees how many tickets each row stands for
ACTIVITY_METRICS: tuple[str, ...] = (
    "ticket_count", "closed_count", "touches_per_ticket", "reassignments_per_ticket",
    "median_open_h", "median_in_progress_h", "one_touch_pct", "event_reopen_pct", "reopen_pct",
)
# the metrics read from the status history (empty without ``ticket_events``)
EVENT_METRICS: tuple[str, ...] = (
    "touches_per_ticket", "reassignments_per_ticket", "median_open_h", "median_in_progress_h",
    "one_touch_pct", "event_reopen_pct",
)
ACTIVITY_LEVELS: tuple[Level, ...] = ("rep", "team")


def has_status_history(wh: Warehouse) -> bool:
    """Whether the dataset has status events for the activity figures."""
    return not any(missing_inputs(get_metric(m), wh) for m in EVENT_METRICS)


def activity(wh: Warehouse, filters: Filters | None = None, level: Level = "rep") -> pd.DataFrame:
    """One row per representative (rep_id, rep_name, team, manager) or team with
    ``ACTIVITY_METRICS``, most tickets first; tickets without one are left out. Without a
    status history the event figures are empty (NaN) in every row, never zero."""
    if level not in ACTIVITY_LEVELS:
        raise CsMetricsError(f"Unknown level {level!r}; use {', '.join(ACTIVITY_LEVELS)}.")
    return leaderboard(wh, filters, level, metrics=ACTIVITY_METRICS)
