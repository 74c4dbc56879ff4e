"""The text of one value in a report's tables and charts, by the kind of its column.

Shared by the HTML and Markdown tables and by the charts' labels, so a value reads the same
everywhere; escaping is the renderer's business, not this module's.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.settings import load_settings
from cs_metrics.metrics.registry import get_metric
from cs_metrics.ops.reports.changes import change_text

# (df column, header, kind): "text" is a value of the data (escaped as such in Markdown),
# "label" the report's own words (metric labels, statuses), "metric:<name>", "int", ...
Column = tuple[str, str, str]
TEXT_KINDS: tuple[str, ...] = ("text", "label", "date", "segment")


def _fmt(kind: str, value: Any, row: pd.Series | dict | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    if kind.startswith("metric:"):
        return get_metric(kind.split(":", 1)[1]).display(value)
    if kind == "row_metric":  # the row's own metric (long tables)
        return get_metric(row["metric"]).display(value)
    if kind == "row_change":
        return change_text(get_metric(row["metric"]), row["value"], row["previous"])
    if kind == "row_year_change":
        return change_text(get_metric(row["metric"]), row["value"], row["year_earlier"])
    if kind == "row_gap":
        m = get_metric(row["metric"])
        spec = m.format.lstrip("+")
        unit = "pp" if m.unit == "%" else m.unit
        return f"{format(value, '+' + spec)} {unit}".rstrip()
    if kind == "target":
        m = get_metric(row["metric"])
        sign = {"higher": "≥ ", "lower": "≤ "}.get(m.direction or "", "")
        return f"{sign}{m.display(value)}"
    if kind == "pct":
        return f"{value:.1f} %"
    if kind == "int":
        return f"{int(value):,d}"
    if kind == "date":
        return value.isoformat() if hasattr(value, "isoformat") else str(value)
    if kind == "segment":  # named as the settings' [display.segments] name it
        try:
            return load_settings().segment_label(value) or "–"
        except CsMetricsError:
            return str(value)
    if kind == "p":
        return "< 0.001" if value < 0.001 else f"{value:.3f}"
    if kind == "z":
        return f"{value:+.1f}"
    return str(value)
