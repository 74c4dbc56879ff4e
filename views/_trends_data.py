"""Ticket trends page, its tables: created vs closed per period, tickets by a dimension or a
tag with the long tail folded into one row."""

from __future__ import annotations

import pandas as pd

import cs_metrics
from cs_metrics import Filters, Warehouse
from views._cache import resolved, run_query
from views._charts import TOP_CATEGORIES
from views._tables import missing_text

TOP_N = TOP_CATEGORIES


# The tag report: its figures, and how many tags it shows before one "Other" row.
TAG_METRICS: tuple[str, ...] = ("ticket_count", "avg_first_response_min", "avg_resolution_h",
                                "csat_pct")


TOP_TAGS = 10
NO_VALUE = "(not set)"


def _period_ts(df: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(df["period"])


def flow(wh: Warehouse, filters: Filters, grain: str) -> pd.DataFrame:
    """period, created (registry ticket_count), closed (by resolution period)."""
    created = run_query(wh, ("ticket_count",), grain=grain, filters=filters)
    closed = resolved(wh, filters, grain)
    df = created.rename(columns={"ticket_count": "created"}).merge(
        closed.rename(columns={"resolved_count": "closed"}), on="period", how="outer"
    )
    df[["created", "closed"]] = df[["created", "closed"]].fillna(0).astype("int64")
    return df.sort_values("period", ignore_index=True)


def _top_title(df: pd.DataFrame, label: str) -> str:
    """"Tickets by <label>", naming how many values a folded chart shows of how many."""
    last = str(df[df.columns[0]].iloc[-1])
    if len(df) > TOP_N and last.startswith("Other ("):
        more = int(last.removeprefix("Other (").split()[0])
        return f"Tickets by {label.lower()} (top {TOP_N} of {TOP_N + more:,})"
    return f"Tickets by {label.lower()}"


def by_dimension(wh: Warehouse, filters: Filters, dim: str, top: int | None = None
                 ) -> pd.DataFrame:
    """dim, ticket_count: most tickets first; past ``top`` values one "Other (n)" row."""
    df = run_query(wh, ("ticket_count",), by=(dim,), filters=filters)
    df[dim] = df[dim].astype("object").where(df[dim].notna(), NO_VALUE)
    df = df.sort_values(["ticket_count", dim], ascending=[False, True], ignore_index=True)
    if top is not None and len(df) > top:
        rest = df.iloc[top:]
        other = pd.DataFrame({dim: [f"Other ({len(rest)} more)"],
                              "ticket_count": [int(rest["ticket_count"].sum())]})
        df = pd.concat([df.iloc[:top], other], ignore_index=True)
    return df


def by_tag(wh: Warehouse, filters: Filters, top: int = TOP_TAGS) -> pd.DataFrame:
    """tag and the TAG_METRICS the dataset has, most tickets first. A ticket counts once in
    each of its tags; tickets without tags are in no row. Past ``top`` tags one row
    "Other (n more)": the tickets with any of those tags (and the filters), each once."""
    names = tuple(m for m in TAG_METRICS if not missing_text(cs_metrics.get_metric(m), wh))
    df = run_query(wh, names, by=("tag",), filters=filters)
    df = df.sort_values(["ticket_count", "tag"], ascending=[False, True], ignore_index=True)
    if len(df) > top:
        rest = tuple(sorted(df["tag"].iloc[top:]))
        # a second tag condition is ANDed with the filters' own, if any
        narrowed = Filters(filters.date_from, filters.date_to,
                           (*filters.where, ("tag", rest)), filters.tz)
        other = run_query(wh, names, filters=narrowed)
        other.insert(0, "tag", f"Other ({len(rest)} more)")
        df = pd.concat([df.iloc[:top], other], ignore_index=True)
    return df


def _has(wh: Warehouse, dim: str) -> bool:
    return dim in wh.nonempty_columns("tickets")
