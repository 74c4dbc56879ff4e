"""Staging a group of inbox batches as one load (a folder with one file per table and its
mapping) and, after the load, its bookkeeping in terms of the inbox's files and the manifest."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.schema import TABLES
from cs_metrics.core.warehouse import catalog_changed
from cs_metrics.ingestion._inbox_batches import (
    _Batch,
    _File,
    _mapped_columns,
    _reader,
)
from cs_metrics.ingestion.loader import IngestReport
from cs_metrics.ingestion.mapping import quote_ident, sql_literal
from cs_metrics.ingestion.reading import scratch_connection

MANIFEST = "inbox_manifest"


@dataclass(frozen=True)
class _Segment:
    """Rows ``offset + 1 .. offset + file.rows`` of a staged file are ``file``'s rows."""

    staged: str
    file: _File
    batch: str
    pos: int  # 0 is the newest batch of the group
    offset: int


@dataclass
class _Staged:
    folder: Path
    mapping: Path
    placeholder: bool = False  # an empty tickets file: a mapping needs one, the batches had none
    segments: list[_Segment] = field(default_factory=list)
    staged_files: dict[str, str] = field(default_factory=dict)  # table -> its staged file

    def originals(self, table: str) -> list[str]:
        return [str(s.file.path) for s in self.segments if s.file.table == table]


def _link(src: Path, dst: Path) -> None:
    try:
        os.symlink(src, dst)
    except OSError:  # no symlinks here (some Windows setups): a copy reads the same
        shutil.copyfile(src, dst)


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _stage(group: list[_Batch]) -> _Staged:
    """One file per table holding the group's rows, newest batch first, and a mapping."""
    folder = Path(tempfile.mkdtemp(prefix="cs_inbox_")).resolve()
    try:
        return _fill_stage(_Staged(folder, folder / "inbox.toml"), group)
    except BaseException as exc:
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, (duckdb.Error, OSError)):
            raise CsMetricsError(
                f"Cannot stage the inbox batches {', '.join(b.name for b in group)} for "
                f"loading ({str(exc).splitlines()[0]})."
            ) from exc
        raise


def _fill_stage(staged: _Staged, group: list[_Batch]) -> _Staged:
    by_table: dict[str, list[tuple[int, str, _File]]] = {}
    for pos, batch in enumerate(reversed(group)):  # newest first: ingest keeps the first
        for f in batch.files:
            by_table.setdefault(f.table, []).append((pos, batch.name, f))
    sections: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {}
    for table, files in by_table.items():
        first = files[0][2]
        if len(files) == 1:  # the file itself
            fmt, header = first.fmt, list(first.header)
            dst = staged.folder / f"{table}{first.ext}"
            _link(first.path, dst)
        else:
            # One file, not several: ingest's checks bind its reader once per column,
            # which costs per file, and DuckDB reads several CSV files only when they
            # have the same columns. Text stays text, typed files stay typed.
            fmt = "csv" if first.fmt == "csv" else "parquet"
            header = list(dict.fromkeys(c for _, _, f in reversed(files) for c in f.header))
            dst = staged.folder / f"{table}.{fmt}"
            _concatenate(scratch_connection(), [f for _, _, f in files], header, dst, fmt)
        offset = 0
        for pos, name, f in files:
            staged.segments.append(_Segment(str(dst), f, name, pos, offset))
            offset += f.rows
        staged.staged_files[table] = str(dst)
        sections[table] = (fmt, _mapped_columns(table, header))
    if "tickets" not in by_table:
        # ingest needs a tickets source; an empty one keeps every ticket as it is
        (staged.folder / "tickets.csv").write_text("ticket_id,created_at,status\n")
        staged.placeholder = True
        sections["tickets"] = ("csv", _mapped_columns("tickets", ("ticket_id", "created_at",
                                                                   "status")))
    lines = []
    for table in TABLES:
        if table in sections:
            fmt, columns = sections[table]
            name = Path(staged.staged_files.get(table, "tickets.csv")).name
            lines += [f"[{table}]", f"source = {_toml(name)}", f"format = {_toml(fmt)}",
                      f"[{table}.columns]"]
            lines += [f"{canon} = {_toml(expr)}" for canon, expr in columns]
            lines.append("")
    staged.mapping.write_text("\n".join(lines), encoding="utf-8")
    return staged


def _concatenate(
    con: duckdb.DuckDBPyConnection, files: list[_File], header: list[str], dst: Path, fmt: str
) -> None:
    """Write ``files``' rows, in this order and each in its own order, with every column of
    ``header`` (empty where a file has none) to ``dst``."""
    try:
        for i, f in enumerate(files):
            have = set(f.header)
            cols = ", ".join(quote_ident(c) if c in have else
                             f"null::varchar as {quote_ident(c)}" for c in header)
            verb = "create or replace temp table inbox_cat as" if i == 0 else \
                "insert into inbox_cat"
            con.execute(f"{verb} select {cols} from {_reader(con, f.path, f.fmt)}")
        # a table keeps its insertion order in rowid
        con.execute(f"copy (select * from inbox_cat order by rowid) to "
                    f"{sql_literal(str(dst))} "
                    f"(format {fmt}{', header true' if fmt == 'csv' else ''})")
    finally:
        con.execute("drop table if exists inbox_cat")


def _readable(message: str, staged: _Staged) -> str:
    """An error of the staged load, in terms of the inbox's own files."""
    for table, dst in staged.staged_files.items():
        message = message.replace(dst, " + ".join(staged.originals(table)))
    message = message.replace(f"Mapping file {staged.mapping}, ", "")
    return message.replace(str(staged.mapping), "the inbox batch").replace(
        str(staged.folder), "the inbox batch")


def _fmt_counts(pairs: Iterable[tuple[str, int]]) -> str:
    return ";".join(f"{k}={v}" for k, v in pairs)


def _after_load(
    con: duckdb.DuckDBPyConnection,
    report: IngestReport,
    group: list[_Batch],
    staged: _Staged,
    inbox: Path,
) -> dict[str, int]:
    """Put the load's bookkeeping in terms of the inbox's files and record the batches in the
    manifest, in one transaction. Returns the superseded rows per table."""
    segments = pd.DataFrame(
        [(s.file.table, s.staged, s.offset, s.offset + s.file.rows, str(s.file.path), s.batch,
          s.pos) for s in staged.segments],
        columns=["table_name", "staged", "first_row", "last_row", "original", "batch", "pos"],
    ).astype({"first_row": "int64", "last_row": "int64", "pos": "int64"})
    keys = pd.DataFrame(
        [(s.file.table, str(s.file.path), s.pos, row, key)
         for s in staged.segments for row, key in s.file.keys],
        columns=["table_name", "original", "pos", "row", "key"],
    ).astype({"pos": "int64", "row": "int64", "key": "object"})
    con.register("inbox_segments_df", segments)
    con.register("inbox_keys_df", keys)
    iid = report.ingest_id
    try:
        con.execute("begin transaction")
        # rows of the staged file -> rows of the inbox's files
        con.execute(
            """
            update rejects set source_file = s.original, source_row = source_row - s.first_row
            from inbox_segments_df s
            where rejects.ingest_id = ? and rejects.table_name = s.table_name
                and rejects.source_file = s.staged
                and rejects.source_row > s.first_row and rejects.source_row <= s.last_row
            """,
            [iid],
        )
        # An older batch's version of an id that a newer batch of this load replaces was
        # rejected as a duplicate; loading batch by batch would have applied it, then
        # replaced it: it is not an error. Per id: the newest batch with a valid row wins;
        # each older batch's first valid row of it was superseded (later ones in the same
        # file are duplicates within that file, errors as in any load).
        con.execute(
            """
            create or replace temp table inbox_superseded as
            with bad as (
                select table_name, source_file as original, source_row as row
                from rejects where ingest_id = ? and reason <> 'duplicate_key'
            ),
            valid as (
                select * from inbox_keys_df anti join bad using (table_name, original, row)
            ),
            firsts as (
                select table_name, key, pos, original, min(row) as row from valid group by all
            ),
            winners as (select table_name, key, min(pos) as pos from valid group by all),
            final as (
                select f.table_name, f.original, f.row
                from firsts f join winners w using (table_name, key)
                where f.pos > w.pos
            )
            select * from final
            """,
            [iid],
        )
        superseded = dict(con.execute(
            """
            select table_name, count(*) from rejects r
            where ingest_id = ? and reason = 'duplicate_key' and exists (
                select 1 from inbox_superseded s where s.table_name = r.table_name
                    and s.original = r.source_file and s.row = r.source_row)
            group by 1
            """,
            [iid],
        ).fetchall())
        con.execute(
            """
            delete from rejects r
            where ingest_id = ? and reason = 'duplicate_key' and exists (
                select 1 from inbox_superseded s where s.table_name = r.table_name
                    and s.original = r.source_file and s.row = r.source_row)
            """,
            [iid],
        )
        # a batch loaded again replaces the rejects of its earlier version
        con.execute(
            "delete from rejects where ingest_id <> ? and source_file in "
            "(select original from inbox_segments_df)",
            [iid],
        )
        for rep in report.tables:
            if rep.table == "tickets" and staged.placeholder:
                con.execute("delete from ingest_log where ingest_id = ? and table_name = ?",
                            [iid, rep.table])
                continue
            counts = con.execute(
                "select reason, count(*) from rejects where ingest_id = ? and table_name = ? "
                "group by 1 order by 1",
                [iid, rep.table],
            ).fetchall()
            n = superseded.get(rep.table, 0)
            con.execute(
                "update ingest_log set origin = ?, source_files = ?, "
                "rows_loaded = rows_loaded + ?, rows_rejected = rows_rejected - ?, "
                "rejected_by_reason = ? where ingest_id = ? and table_name = ?",
                [f"inbox {inbox}", ";".join(staged.originals(rep.table)), n, n,
                 _fmt_counts(counts), iid, rep.table],
            )
        per_batch = dict(con.execute(
            "select s.batch, count(*) from rejects r join inbox_segments_df s "
            "on s.original = r.source_file and s.table_name = r.table_name "
            "where r.ingest_id = ? group by 1",
            [iid],
        ).fetchall())
        now = _utcnow()
        _record(con, [
            (b.name, b.checksum, "loaded", now, b.rows,
             f"{per_batch[b.name]} row(s) rejected; see the rejects table"
             if per_batch.get(b.name) else None)
            for b in group
        ])
        con.execute("drop table if exists temp.main.inbox_superseded")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    finally:
        con.unregister("inbox_segments_df")
        con.unregister("inbox_keys_df")
    return superseded


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # naive UTC, like every timestamp


def _ensure_manifest(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"create table if not exists {MANIFEST} (name varchar, checksum varchar, "
        "status varchar, loaded_at timestamp, rows bigint, message varchar)"
    )
    catalog_changed()


def _record(con: duckdb.DuckDBPyConnection, rows: list[tuple]) -> None:
    """Upsert manifest rows (the caller holds a transaction)."""
    if not rows:
        return
    _ensure_manifest(con)
    names = [r[0] for r in rows]
    con.execute(
        f"delete from {MANIFEST} where name in ({', '.join('?' for _ in names)})", names
    )
    con.executemany(f"insert into {MANIFEST} values (?, ?, ?, ?, ?, ?)", rows)


def _manifest(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, str]]:
    exists = con.execute(
        "select count(*) from information_schema.tables where table_schema = 'main' "
        "and table_name = ?", [MANIFEST]
    ).fetchall()[0][0]
    if not exists:
        return {}
    return {n: (c, s) for n, c, s in con.execute(
        f"select name, checksum, status from {MANIFEST}").fetchall()}
