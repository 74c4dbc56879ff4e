"""Representatives page, the formatting its tables share: number formats and column settings
of the boards, the chosen columns and the downloads."""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

import cs_metrics
from cs_metrics import Filters, Metric, Warehouse
from cs_metrics.analysis.leaderboard import (
    BOARD_COLUMNS,
    default_columns,
)
from cs_metrics.core.access import LOCAL
from views._auth import current_scope
from views._exports import csv_bytes, export_button, parquet_bytes

# Short column labels with their unit, so the default columns fit a 1500 px window; the
# registry's label and description are in each column's help.
BOARD_LABELS: dict[str, str] = {
    "ticket_count": "Tickets", "median_first_response_min": "FRT med. (min)",
    "avg_first_response_min": "FRT avg (min)", "median_resolution_h": "Res. med. (h)",
    "avg_resolution_h": "Res. avg (h)", "sla_first_response_pct": "SLA FRT (%)",
    "sla_resolution_pct": "SLA res. (%)", "fcr_pct": "FCR (%)", "reopen_pct": "Reopen (%)",
    "aht_min": "AHT (min)", "csat_pct": "CSAT (%)", "nps": "NPS", "open_count": "Open",
    "in_progress_count": "In progress", "closed_count": "Closed",
}


def board_format(metric: Metric) -> str:
    """The registry's Python format spec as a column_config printf format, without the
    unit: the column label carries it."""
    if metric.is_count:
        return "localized"
    digits = re.search(r"\.(\d+)f", metric.format)
    sign = "+" if metric.format.startswith("+") else ""
    return f"%{sign}.{digits.group(1) if digits else 1}f"


def board_columns(names: list[str], empty: set[str]) -> dict[str, object]:
    """Column config of the leaderboard: short labels with units; an empty metric is text."""
    config: dict[str, object] = {}
    for name in names:
        m = cs_metrics.get_metric(name)
        label, help_text = BOARD_LABELS.get(name, m.label), f"{m.label}: {m.description}"
        # as wide as the label, no wider: auto-sizing leaves room the default set cannot spare
        width = max(56, round(6.4 * len(label)) + 10)
        config[name] = (st.column_config.TextColumn(label, help=help_text, width=width)
                        if name in empty
                        else st.column_config.NumberColumn(label, help=help_text, width=width,
                                                           format=board_format(m)))
    return config


def columns_ui(wh: Warehouse) -> list[str]:
    """The leaderboard columns the lead picks (shared by the three tabs)."""
    return st.multiselect(
        "Columns", list(BOARD_COLUMNS), default=list(default_columns(wh)), key="board_columns",
        format_func=lambda n: cs_metrics.get_metric(n).label,
        help="Figures shown in the leaderboards. Those this dataset has no inputs for show "
        "“–”.")


def file_stem(kind: str, filters: Filters) -> str:
    start = filters.date_from.isoformat() if filters.date_from else "start"
    end = filters.date_to.isoformat() if filters.date_to else "end"
    return f"{kind}_{start}_to_{end}"


def downloads(df: pd.DataFrame, kind: str, filters: Filters) -> None:
    stem = file_stem(kind, filters)
    left, right, _ = st.columns([1, 1, 4])
    scope = current_scope() or LOCAL
    export_button("CSV", lambda: csv_bytes(df), f"{stem}.csv", "text/csv", key=f"csv_{kind}",
                  rows=len(df), filters=filters, where=left, scope=scope)
    export_button("Parquet", lambda: parquet_bytes(df, scope), f"{stem}.parquet",
                  "application/vnd.apache.parquet", key=f"parquet_{kind}", rows=len(df),
                  filters=filters, where=right, scope=scope)
