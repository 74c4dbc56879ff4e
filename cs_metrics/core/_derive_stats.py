"""The warehouse's catalog statistics: which tables exist, their columns, non-null counts
per column and ticket counts per dimension value."""

from __future__ import annotations

import duckdb
import pandas as pd

from cs_metrics.core.schema import DIMENSIONS, LIST_DIMENSIONS


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        r[0]
        for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'main'"
        ).fetchall()
    }


def dimension_counts(relation: str) -> str:
    """SQL: (dimension, value, tickets) of the non-test rows of ``relation`` (alias-free);
    a list dimension counts a ticket once under each of its values."""
    return " union all ".join(
        [f"select '{dim}' as dimension, cast({dim} as varchar) as value, count(*) as tickets "
         f"from {relation} where not is_test and {dim} is not null group by {dim}"
         for dim in DIMENSIONS]
        + [f"select '{dim}' as dimension, value, count(*) as tickets from (select "
           f"unnest({column}) as value from {relation} where not is_test) group by value"
           for dim, column in LIST_DIMENSIONS.items()]
    )


def _columns_of(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The columns of a table or view, in order (a query of no rows: the information schema
    lists every table's columns first)."""
    return [d[0] for d in con.execute(f"select * from {table} limit 0").description]


def _update_column_stats(con: duckdb.DuckDBPyConnection, before: dict, after: dict,
                         moved: dict[str, tuple[str, str | None]] | None = None) -> None:
    """Column statistics after an incremental refresh: the tickets' moved by the difference
    of the rows replaced, the other tables' by the rows the load added and removed
    (``moved``; without it, every table is counted again); a table without statistics
    yet is counted."""
    from cs_metrics.core.schema import TABLES

    if "column_stats" not in _tables(con):
        _column_stats(con)
        return
    stats = con.execute("select * from column_stats").df()
    for i, row in stats.iterrows():
        key = (row["table_name"], row["column_name"])
        if row["table_name"] in ("tickets", "tickets_src") and key in after:
            total_key = (row["table_name"], "")
            stats.at[i, "total"] = row["total"] + after[total_key] - before[total_key]
            stats.at[i, "non_null"] = row["non_null"] + after[key] - before.get(key, 0)
    present = _tables(con)
    rows = []
    for name in TABLES:
        if name == "tickets" or name not in present:
            continue
        mine = stats["table_name"] == name
        if mine.any() and moved is not None and name not in moved:
            continue  # the load did not touch it
        cols = _columns_of(con, name)
        if mine.any() and moved is not None:
            added, removed = moved[name]
            counts = ", ".join(f'count("{c}")' for c in cols)
            sign = {c: 0 for c in ["", *cols]}
            for relation, factor in ((added, 1), (removed, -1)):
                if relation is None:
                    continue
                values = con.execute(f"select count(*), {counts} from {relation}").fetchall()[0]
                for c, n in zip(["", *cols], values, strict=True):
                    sign[c] += factor * int(n)
            for c in cols:
                at = mine & (stats["column_name"] == c)
                stats.loc[at, "total"] = stats.loc[at, "total"] + sign[""]
                stats.loc[at, "non_null"] = stats.loc[at, "non_null"] + sign[c]
            continue
        # new in this load, or what the load did is not known: counted whole
        values = con.execute(
            f"select count(*), {', '.join(f'count({chr(34)}{c}{chr(34)})' for c in cols)} "
            f"from {name}").fetchall()[0]
        stats = stats[~mine]
        rows += [(name, c, int(values[0]), int(n)) for c, n in zip(cols, values[1:],
                                                                  strict=True)]
    if rows:
        stats = pd.concat([stats, pd.DataFrame(rows, columns=stats.columns)],
                          ignore_index=True)
    con.register("column_stats_df", stats)
    con.execute("create or replace table column_stats as select * from column_stats_df")
    con.unregister("column_stats_df")


def _column_stats(con: duckdb.DuckDBPyConnection) -> None:
    """Non-null counts per column of every table, so pages can tell what a dataset has."""
    from cs_metrics.core.schema import TABLES

    present = {
        r[0]
        for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'main'"
        ).fetchall()
    }
    rows = []
    for name in dict.fromkeys(["tickets", "tickets_src", *TABLES]):
        if name not in present:
            continue
        cols = [
            r[0]
            for r in con.execute(
                "select column_name from information_schema.columns "
                "where table_schema = 'main' and table_name = ? order by ordinal_position",
                [name],
            ).fetchall()
        ]
        counts = ", ".join(f'count("{c}")' for c in cols)
        values = con.execute(f"select count(*), {counts} from {name}").fetchall()[0]
        rows += [(name, c, int(values[0]), int(n)) for c, n in zip(cols, values[1:], strict=True)]
    stats = pd.DataFrame(rows, columns=["table_name", "column_name", "total", "non_null"])
    con.register("column_stats_df", stats)
    con.execute("create or replace table column_stats as select * from column_stats_df")
    con.unregister("column_stats_df")
