"""Data-quality report: what loaded, what was rejected and why, how complete each column is.

Quality score (0-100) = 100 x (0.6 x validity + 0.2 x warning-free share + 0.2 x completeness)
- validity: rows loaded / rows that should load (rows read, minus identical dimension rows
  merged, empty feedback rows skipped, rows the mapping's ``where`` skipped and event-log rows
  merged into the latest row of their key), over every table of the latest load of each
  source;
- warning-free share: 1 - (ticket warnings / tickets loaded), floored at 0;
- completeness: mean share of non-empty values over the optional ticket columns the dataset
  provides (a column the source does not have at all is not held against it).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from cs_metrics.core.schema import TABLES
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.loader import REJECT_REASONS, REJECTS_LISTED, WARNINGS


@dataclass(frozen=True)
class QualityReport:
    score: float | None
    validity: float | None
    warning_free: float | None
    completeness: float | None
    # table, origin, read, loaded, rejected, collapsed, skipped_empty, skipped_filter, merged
    tables: pd.DataFrame
    rejects_by_reason: pd.DataFrame  # table, reason, rows, listed, meaning
    warnings: pd.DataFrame  # table, warning, rows, meaning
    columns: pd.DataFrame  # table, column, required, non_null, total, filled_pct


def _counts(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in (text or "").split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = out.get(k, 0) + int(v)
    return out


def quality_report(wh: Warehouse) -> QualityReport:
    empty = pd.DataFrame()
    if not wh.has_table("ingest_log") or (wh.scope is not None
                                          and not wh.scope.may("view_quality")):
        # the report counts the whole load: none for a scope that sees part of it
        return QualityReport(None, None, None, None, empty, empty, empty, empty)
    log = wh.df(
        """
        with ranked as (
            select *, row_number() over (partition by table_name, origin
                                         order by ingested_at desc) as n
            from ingest_log),
        final as (select * exclude (n) from ranked where n = 1)
        select * from final order by table_name, origin
        """
    )
    for column in ("skipped_filter", "merged"):  # a warehouse from before these counts
        if column not in log.columns:
            log[column] = 0
        log[column] = log[column].fillna(0).astype("int64")
    tables = log[["table_name", "origin", "rows_read", "rows_loaded", "rows_rejected",
                  "collapsed", "skipped_empty", "skipped_filter", "merged",
                  "ingested_at"]].rename(
        columns={"table_name": "table", "rows_read": "read", "rows_loaded": "loaded",
                 "rows_rejected": "rejected"})
    warn_rows = []
    reject_counts: dict[tuple[str, str], int] = {}
    for _, row in log.iterrows():
        for name, n in _counts(row["warnings"]).items():
            warn_rows.append((row["table_name"], name, n, WARNINGS.get(name, name)))
        for name, n in _counts(row["rejected_by_reason"]).items():
            key = (row["table_name"], name)
            reject_counts[key] = reject_counts.get(key, 0) + n
    warnings = pd.DataFrame(warn_rows, columns=["table", "warning", "rows", "meaning"])
    # Rows are counted from the load log: the rejects table lists at most REJECTS_LISTED of
    # one reason in one file (a file whose every row fails would otherwise be stored twice).
    listed = dict(((t, r), int(n)) for t, r, n in wh.df(
        "select table_name, reason, count(*) from rejects group by all").itertuples(index=False))
    rejects = pd.DataFrame(
        [(t, r, n, min(listed.get((t, r), 0), n)) for (t, r), n in sorted(reject_counts.items())],
        columns=["table", "reason", "rows", "listed"],
    ).astype({"rows": "int64", "listed": "int64"})
    rejects["meaning"] = [
        REJECT_REASONS.get(r, r) + (
            f" (the first {REJECTS_LISTED:,d} of each source file are listed, with their "
            "rows; all are counted)" if n > k else "")
        for r, n, k in zip(rejects["reason"], rejects["rows"], rejects["listed"], strict=True)
    ]

    stats = wh.df("select * from column_stats") if wh.has_table("column_stats") else empty
    col_rows = []
    for name, table in TABLES.items():
        stored = "tickets_src" if name == "tickets" else name
        if stats.empty or stored not in set(stats["table_name"]):
            continue
        sub = stats[stats["table_name"] == stored].set_index("column_name")
        for col in table.columns:
            if col.name not in sub.index:
                continue
            total, non_null = int(sub.at[col.name, "total"]), int(sub.at[col.name, "non_null"])
            col_rows.append((name, col.name, col.required, non_null, total,
                             100.0 * non_null / total if total else None))
    columns = pd.DataFrame(
        col_rows, columns=["table", "column", "required", "non_null", "total", "filled_pct"]
    )

    should_load = (tables["read"] - tables["collapsed"] - tables["skipped_empty"]
                   - tables["skipped_filter"] - tables["merged"]).sum()
    validity = float(tables["loaded"].sum() / should_load) if should_load else None
    tickets_loaded = int(tables.loc[tables["table"] == "tickets", "loaded"].sum())
    ticket_warnings = int(warnings.loc[warnings["table"] == "tickets", "rows"].sum())
    warning_free = max(0.0, 1 - ticket_warnings / tickets_loaded) if tickets_loaded else None
    is_ticket = columns["table"] == "tickets"
    opt = columns[is_ticket & ~columns["required"].astype(bool) & (columns["non_null"] > 0)]
    completeness = float(opt["filled_pct"].mean() / 100) if len(opt) else 1.0
    score = None
    if validity is not None and warning_free is not None:
        score = round(100 * (0.6 * validity + 0.2 * warning_free + 0.2 * completeness), 1)
    return QualityReport(score, validity, warning_free, completeness, tables, rejects, warnings,
                         columns)


def latest_rejects(wh: Warehouse, limit: int = 200) -> pd.DataFrame:
    """The ``limit`` most recently rejected source rows: latest load first, then source order."""
    columns = ["table_name", "source_file", "source_row", "reason", "column_name", "value",
               "detail"]
    if not wh.has_table("rejects"):
        return pd.DataFrame(columns=columns)
    return wh.df(
        f"""
        with loads as (
            select ingest_id, max(ingested_at) as ingested_at from ingest_log group by 1
        ),
        final as (
            select r.*, l.ingested_at
            from rejects r left join loads l on l.ingest_id = r.ingest_id
        )
        select {", ".join(columns)}
        from final
        order by ingested_at desc nulls last, table_name, source_file, source_row
        limit ?
        """,
        [limit],
    )
