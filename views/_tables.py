"""How the pages show tables and counts: labels of columns and segments, plurals, whole
counts as integers, and what a dataset is missing for a metric."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import streamlit as st

import cs_metrics
from cs_metrics import CsMetricsError, Metric, Warehouse
from views._filter_defs import FILTER_DIMENSIONS

# How a table or card shows a missing value (see show_table).
MISSING = "–"
# How the UI names a missing input ("this dataset has no ..."), by registry requirement.
INPUT_NAMES: dict[str, str] = {
    "first_response_at": "first-response times",
    "resolved_at": "resolution times",
    "contacts": "contact counts",
    "reopened_count": "reopen counts",
    "handle_time_s": "handle times",
    "customer_id": "customer ids",
    "feedback.ticket_id": "survey feedback",
    "feedback.csat": "CSAT scores",
    "feedback.nps": "NPS scores",
    "feedback.ces": "CES scores",
    "feedback.comment": "survey comments",
    "ticket_events.ticket_id": "status history (ticket_events)",
}


# Column names that say a column counts things (``tickets``, ``ticket_count``, ``n_reps``,
# ``responses``): written as integers when every value is whole. Not an average or a share.
_COUNT_NAME = re.compile(
    r"(^|_)(count|counts|n|tickets|responses|surveys|events|comments|rows|loaded|rejected|"
    r"merged|collapsed|breached|total)$|^(n|num)_")


_NOT_COUNT = re.compile(r"(^|_)(avg|mean|median|pct|rate|share|per|ratio|min|h|s)(_|$)")


def _is_count_column(name: object) -> bool:
    try:
        return cs_metrics.get_metric(str(name)).is_count
    except (CsMetricsError, KeyError):
        text = str(name).lower()
        return bool(_COUNT_NAME.search(text)) and not _NOT_COUNT.search(text)


def integer_counts(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its count columns as integers (pandas' nullable ``Int64``, a missing
    value stays missing) where pandas made them float because of a missing value: a
    registry metric with ``is_count``, or a column named as a count, whose values are all
    whole. Exports write ``7852``, never ``7852.0``. Other columns are left as they are."""
    out = None
    for col in df.columns:
        series = df[col]
        if not pd.api.types.is_float_dtype(series) or not _is_count_column(col):
            continue
        values = series.dropna()
        if len(values) and not ((values % 1 == 0).all() and values.abs().max() < 2**53):
            continue
        out = df.copy() if out is None else out
        out[col] = series.astype("Int64")
    return df if out is None else out


def plural(n: int | float, word: str, many: str | None = None) -> str:
    """``n`` with its noun, singular for exactly one: ``1 ticket``, ``2,345 tickets``,
    ``1 entry``/``3 entries`` (``many`` for an irregular plural; ``y`` after a consonant
    becomes ``ies``). Every count in a message goes through this."""
    if many is None:
        many = (word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou"
                else word + "s")
    return f"{n:,} {word if n == 1 else many}"


def show_table(df: pd.DataFrame, *, column_config: dict[str, Any] | None = None,
               hide_index: bool = True, where: object = st, labels: bool = True,
               **kwargs: Any) -> Any:
    """``where.dataframe(df, ...)`` the way every page shows a table: a missing value
    (None, NaN, NaT) reads "–" instead of "None" or an empty cell, and the index is
    hidden. Give columns their labels with ``column_config`` (never show raw column
    names); any other ``st.dataframe`` argument (``key``, ``on_select``,
    ``column_order``, ...) passes through. Columns the caller gives no label get
    ``column_label``'s, unless ``labels`` is false (columns named by the data, such as a
    transposed table's). Returns what ``st.dataframe`` returns (the selection with
    ``on_select``)."""
    kwargs.setdefault("placeholder", MISSING)
    config = {str(c): column_label(str(c)) for c in df.columns
              if not isinstance(c, tuple)} if labels and isinstance(df, pd.DataFrame) else {}
    config.update(column_config or {})
    return where.dataframe(  # type: ignore[attr-defined]
        df, hide_index=hide_index, column_config=config, **kwargs)


def segment_label(code: object) -> str:
    """What a customer segment is called on pages (``[display.segments]``, ``M`` ->
    "Mid-market"); the code as the data writes it when not named; "–" when missing."""
    try:
        label = cs_metrics.load_settings().segment_label(code)
    except CsMetricsError:  # the settings page says why; show the data's own code
        label = None if code is None or pd.isna(code) else str(code)
    return MISSING if label is None else label


def with_segment_labels(df: pd.DataFrame, column: str = "customer_segment",
                        into: str = "segment_label") -> pd.DataFrame:
    """``df`` with ``into`` holding ``column``'s segment labels (``column`` keeps the code
    a drill-down filters on); unchanged without ``column``."""
    if column not in df.columns:
        return df
    out = df.copy()
    out[into] = [segment_label(v) for v in out[column]]
    return out


# Labels of columns the pages' tables share, beside the registry's metrics and dimensions.
COLUMN_LABELS: dict[str, str] = {
    "period": "Period", "ticket_id": "Ticket", "created_at": "Created", "rep_id": "Rep id",
    "status": "Status", "subject": "Subject", "share_pct": "Share (%)", "count": "Count",
    "tickets": "Tickets", "customers": "Customers", "responses": "Responses",
    "created": "Created", "closed": "Closed", "rows": "Rows", "reason": "Reason",
    "table": "Table", "column": "Column", "value": "Value", "note": "Note",
    "rank": "Rank", "hour": "Hour", "weekday": "Weekday", "date": "Date", "day": "Day",
    "week": "Week", "month": "Month", "scenario": "Scenario", "rule": "Rule",
    "severity": "Severity", "title": "Title", "message": "Message", "fired_at": "Fired at",
}


# Unit suffixes of column names (first_response_min) and how a label writes them.
_UNIT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_pct", "%"), ("_min", "min"), ("_h", "h"), ("_s", "s"), ("_km", "km"),
)


def column_label(name: str) -> str:
    """How a table heads column ``name``: a registry metric's label with its unit, a
    dimension's label, a shared column's label, else the name in words with its unit
    (``first_response_min`` -> "First response (min)"). Pages give their own labels with
    ``column_config`` where these do not fit."""
    metric = cs_metrics.METRICS.get(name)
    if metric is not None:
        unit = metric.unit if metric.unit and metric.unit not in (
            "tickets", "customers", "responses", "score") else ""
        return f"{metric.label} ({unit})" if unit else metric.label
    dims = dict(FILTER_DIMENSIONS)
    if name in dims:
        return dims[name]
    if name in COLUMN_LABELS:
        return COLUMN_LABELS[name]
    words, unit = name, ""
    for suffix, shown in _UNIT_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            words, unit = name[: -len(suffix)], shown
            break
    text = words.replace("_", " ").strip().capitalize() or name
    return f"{text} ({unit})" if unit else text


def missing_text(metric: Metric, wh: Warehouse) -> str | None:
    """"this dataset has no ..." when the metric's inputs are absent, else None."""
    missing = cs_metrics.missing_inputs(metric, wh)
    if not missing:
        return None
    names = [INPUT_NAMES.get(m, m.replace("feedback.", "feedback ")) for m in missing]
    return f"This dataset has no {' or '.join(names)}."


def load_count_columns() -> dict[str, Any]:
    """Column settings of the counts a load reports beside read/loaded/rejected: rows
    merged, skipped or folded into their key's latest row (Data quality and Your data)."""
    number = st.column_config.NumberColumn
    return {
        "collapsed": number("Merged duplicates", format="localized",
                            help="Identical dimension rows merged into one."),
        "skipped_empty": number("Empty feedback skipped", format="localized",
                                help="Feedback rows with no score and no comment."),
        "skipped_filter": number(
            "Skipped by the filter", format="localized",
            help="Rows the mapping's `where` left out: not rejected, not scored."),
        "merged": number(
            "Merged into the latest row", format="localized",
            help="Earlier rows of a key the mapping's `one_row_per` keeps once (its latest "
                 "row by `latest_by`)."),
    }
