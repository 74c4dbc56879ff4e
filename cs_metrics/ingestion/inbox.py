"""Incremental refresh: load new batches from an inbox folder, each exactly once.

A feed (a ticketing system export, ``simulations``' live feed, a cron job) writes into an
inbox folder; ``refresh_inbox`` loads what is new and ``watch_inbox`` does so every few
seconds, for ``python -m cs_metrics ingest --inbox DIR --watch`` and for the app's background
refresher.

The inbox
---------
* ``DIR/batch-<UTC timestamp>-<seq>/`` folders, each a canonical folder (``tickets.csv``,
  ``ticket_events.csv``, ``feedback.csv``, ... or ``.parquet``/``.csv.gz``/``.jsonl``; any
  canonical table, not necessarily ``tickets``), written atomically: under a name starting
  with ``.`` first, then renamed. Every folder not starting with ``.`` is a batch.
* Canonical files dropped directly in ``DIR``, named ``<table>[-_.]<anything>.<ext>`` (for
  example ``tickets-0001.csv``, ``feedback_2025-03-01.parquet``): each is a one-table batch.
  They too must be written under a ``.`` name and renamed.
* Names starting with ``.`` are ignored, so are files that name no canonical table (they are
  listed in ``RefreshReport.ignored``).

A ticket update is a full ticket row (an upsert by ``ticket_id``: columns absent from the
file become empty). Status history goes to ``ticket_events``; it does not change a ticket's
``status``, the ticket row does. Survey rows should carry ``feedback_id``; a feedback file
without that column gets an id derived from the row's content (its ticket plus a hash), so
two surveys of one ticket arriving in different refreshes never overwrite each other.

Batches load oldest first, by name. Rows go through ``ingest``, so the rules are those of
any load: bad rows are rejected with their reason (table ``rejects``), good rows load.

The manifest
------------
Table ``inbox_manifest(name, checksum, status, loaded_at, rows, message)`` records every
batch seen: ``status`` is ``loaded`` or ``failed``; ``checksum`` is the sha256 of the batch's
files (their names and bytes). A batch whose name and checksum are in the manifest is
skipped, whatever its status, so a broken batch is not retried every few seconds. A batch
whose files changed under the same name (a new checksum) is loaded again and listed in
``RefreshReport.reloaded``: loads are upserts, so this applies the corrected rows, and the
rejects of its earlier version are replaced; rows the new version no longer has stay.
(Within one process a file's checksum is computed once and reused while its size and
modification time stay the same, so a watcher does not re-read the whole inbox every time.)

Speed
-----
Every load rebuilds the derived ``tickets`` table, which is most of its cost, so all pending
batches load in one ``ingest`` call (batches whose typed files disagree on column types, or
mix text and typed files for one table, start a new call). A temporary folder gets one file
per table: the batch's own file when there is one (a link), else the batches' rows written
one after the other, newest batch first, with every column any of them has. ``ingest`` keeps
the first valid row of an id and rejects later ones as duplicates, so the newest valid
version of a ticket wins, exactly as if the batches had loaded one by one (a test checks the
warehouse and the rejects come out identical). Afterwards, in one transaction, rejects are
pointed back at the inbox's files and rows, the older versions are taken out of the rejects
("superseded": applied, then replaced) and the batches are recorded in the manifest.

Readers in other threads (or processes reading a copy) keep querying throughout: ``ingest``
replaces the tables in one transaction, so they see the warehouse before or after it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.schema import FILE_EXTENSIONS, TABLES
from cs_metrics.core.settings import Settings
from cs_metrics.core.warehouse import Warehouse, catalog_changed
from cs_metrics.ingestion.loader import IngestReport, csv_options, ingest, scratch_connection
from cs_metrics.ingestion.mapping import quote_ident, sql_literal

__all__ = ["MANIFEST", "RefreshReport", "read_manifest", "refresh_inbox", "watch_inbox"]

logger = logging.getLogger(__name__)

MANIFEST = "inbox_manifest"

# One refresh at a time per warehouse file in this process: two would conflict on the
# tables every load rewrites.
_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@dataclass(frozen=True)
class RefreshReport:
    """What one refresh did. Row counts are per canonical table, as (table, rows) pairs."""

    inbox: Path
    db: Path
    loaded: tuple[str, ...] = ()  # batch names loaded now, oldest first
    skipped: tuple[str, ...] = ()  # already in the manifest with the same checksum
    failed: tuple[tuple[str, str], ...] = ()  # (batch, the sentence why), marked in the manifest
    reloaded: tuple[str, ...] = ()  # loaded or failed now although seen before: files changed
    pending: tuple[str, ...] = ()  # new, left for the next refresh by max_batches
    ignored: tuple[str, ...] = ()  # entries of the inbox that are neither batch nor table file
    rows_loaded: tuple[tuple[str, int], ...] = ()
    rows_rejected: tuple[tuple[str, int], ...] = ()
    # of rows_loaded: versions of an id replaced by a later batch of the same refresh
    rows_superseded: tuple[tuple[str, int], ...] = ()
    ingest_ids: tuple[str, ...] = ()
    as_of: datetime | None = None
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        """Whether the warehouse or the manifest changed (caches should be cleared)."""
        return bool(self.loaded or self.failed)

    def loaded_rows(self, table: str) -> int:
        return dict(self.rows_loaded).get(table, 0)

    def rejected_rows(self, table: str) -> int:
        return dict(self.rows_rejected).get(table, 0)

    def summary(self) -> str:
        """One line for a log or the command line."""
        parts = [f"{len(self.loaded)} batch(es) loaded"]
        if self.rows_loaded:
            parts.append(", ".join(
                f"{t} {n:,d} rows (+{self.rejected_rows(t):,d} rejected)"
                for t, n in self.rows_loaded))
        if self.failed:
            parts.append(f"{len(self.failed)} failed: " + "; ".join(
                f"{name}: {msg}" for name, msg in self.failed))
        if self.reloaded:
            parts.append(f"reloaded after a change: {', '.join(self.reloaded)}")
        if self.pending:
            parts.append(f"{len(self.pending)} left for the next refresh")
        parts.append(f"{len(self.skipped)} seen before")
        parts.append(f"data as of {self.as_of}" if self.as_of else "no data yet")
        return "; ".join(parts) + f" ({self.seconds:.2f} s)"


# --- the inbox's entries -----------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    name: str
    path: Path
    files: tuple[tuple[str, Path], ...]  # (table, file), sorted by file name


@dataclass(frozen=True)
class _File:
    table: str
    path: Path
    ext: str
    fmt: str
    signature: tuple  # files of one table load together only with the same one
    header: tuple[str, ...]  # the source's columns, in order
    columns: tuple[tuple[str, str], ...]  # canonical column -> source column or expression
    keys: tuple[tuple[int, str | None], ...]  # (source row, normalised id) for keyed tables
    rows: int


@dataclass(frozen=True)
class _Batch:
    name: str
    checksum: str
    files: tuple[_File, ...]

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


def _extension(name: str) -> str | None:
    lowered = name.lower()
    # longest first, so x.csv.gz is not taken for something else
    for ext in sorted(FILE_EXTENSIONS, key=len, reverse=True):
        if lowered.endswith(ext):
            return ext
    return None


def _table_of_file(name: str) -> str | None:
    """The canonical table a file dropped in the inbox is for, from its name."""
    ext = _extension(name)
    if ext is None:
        return None
    stem = name[: -len(ext)].lower()
    for table in sorted(TABLES, key=len, reverse=True):
        if stem == table or (stem.startswith(table) and not stem[len(table)].isalnum()):
            return table
    return None


def _folder_files(folder: Path) -> tuple[tuple[str, Path], ...]:
    """The files a canonical folder loads: one per table, named after it (as ``ingest``)."""
    try:
        names = {e.name for e in os.scandir(folder) if e.is_file()}
    except OSError:
        return ()  # gone while we looked
    out = []
    for table in TABLES:
        for ext in FILE_EXTENSIONS:
            if f"{table}{ext}" in names:
                out.append((table, folder / f"{table}{ext}"))
                break
    return tuple(sorted(out, key=lambda tp: tp[1].name))


def _scan(inbox: Path) -> tuple[list[_Entry], list[str]]:
    entries: list[_Entry] = []
    ignored: list[str] = []
    for path in sorted(inbox.iterdir(), key=lambda p: p.name):
        if path.name.startswith("."):
            continue  # being written, or not ours
        if path.is_dir():
            entries.append(_Entry(path.name, path, _folder_files(path)))
        elif path.is_file() and (table := _table_of_file(path.name)):
            entries.append(_Entry(path.name, path, ((table, path),)))
        else:
            ignored.append(path.name)
    return entries, ignored


# Checksums of files already read, by path, size and modification time: a watcher refreshes
# every few seconds and the inbox keeps every batch, so each file's bytes are read once.
_CHECKSUMS: dict[tuple, str] = {}
_CHECKSUMS_GUARD = threading.Lock()


def _checksum(entry: _Entry) -> str:
    """sha256 over the batch's files: each one's name, size and bytes, by name."""
    stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for _, p in entry.files)
    with _CHECKSUMS_GUARD:
        known = _CHECKSUMS.get(stats)
    if known is not None:
        return known
    h = hashlib.sha256()
    for (_, path), (_, size, _) in zip(entry.files, stats, strict=True):
        h.update(f"{path.name}\0{size}\0".encode())
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    digest = h.hexdigest()
    with _CHECKSUMS_GUARD:
        if len(_CHECKSUMS) > 100_000:
            _CHECKSUMS.clear()
        _CHECKSUMS[stats] = digest
    return digest


def _check_inbox(inbox: str | Path) -> Path:
    path = Path(inbox)
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise CsMetricsError(
            f"The inbox {path} {what}; create that folder (the feed writes batch folders "
            "into it) or pass --inbox with the folder the feed writes to."
        )
    return path.resolve()


# --- reading a batch before it loads ----------------------------------------------------


def _format(ext: str) -> str:
    return {".parquet": "parquet", ".jsonl": "jsonl"}.get(ext, "csv")


def _reader(con: duckdb.DuckDBPyConnection, path: Path, fmt: str) -> str:
    """The reader ``ingest`` uses for a canonical file: same options, rows in file order."""
    files = f"[{sql_literal(str(path))}]"
    if fmt == "parquet":
        return f"read_parquet({files})"
    if fmt == "jsonl":
        return f"read_json({files}, format='newline_delimited')"
    return f"read_csv({files}, {csv_options(con, path)})"


def _mapped_columns(table: str, header: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """Canonical column -> source column (or expression) for a file with these columns.

    A survey row needs an id that is the same on every reload and unique across batches:
    one without (no column, or an empty cell) gets its ticket plus a hash of its content.
    ``ingest``'s own ``ticket_id:n`` is unique only within one load, so a later survey of
    the same ticket would replace an earlier one.
    """
    have = list(header)
    columns = [(c, c) for c in TABLES[table].column_names if c in have]
    if table == "feedback":
        parts = ", ".join(
            f"coalesce({quote_ident(c)}::varchar, '')"
            for c in ("ticket_id", "submitted_at", "csat", "nps", "ces", "comment") if c in have
        )
        derived = f"{quote_ident('ticket_id')} || ':' || left(md5(concat_ws('|', {parts})), 16)"
        if "feedback_id" in have:
            derived = (f"coalesce(nullif(trim({quote_ident('feedback_id')}::varchar), ''), "
                       f"{derived})")
        columns = [("feedback_id", derived), *(c for c in columns if c[0] != "feedback_id")]
    return tuple(columns)


def _unreadable(where: str, fmt: str, exc: Exception) -> CsMetricsError:
    return CsMetricsError(
        f"cannot read {where} as {fmt} ({str(exc).splitlines()[0]}); replace the batch with a "
        "readable one (a changed batch is loaded again)."
    )


def _inspect(con: duckdb.DuckDBPyConnection, entry: _Entry, checksum: str) -> _Batch:
    """Read every file of a batch once; raise CsMetricsError if it cannot load at all."""
    if not entry.files:
        raise CsMetricsError(
            f"{entry.name} holds no canonical file (tickets.csv, ticket_events.csv, "
            "feedback.csv, ..., or .parquet); the feed must write at least one."
        )
    files = []
    for table, path in entry.files:
        ext = _extension(path.name) or ""
        fmt = _format(ext)
        reader = _reader(con, path, fmt)
        where = path.name if entry.path == path else f"{entry.name}/{path.name}"
        try:
            source = {r[0]: r[1] for r in con.execute(
                f"describe select * from {reader}").fetchall()}
        except duckdb.Error as exc:
            raise _unreadable(where, fmt, exc) from exc
        spec = TABLES[table]
        missing = [c for c in spec.required if c not in source]
        if missing:
            raise CsMetricsError(
                f"{where} has no {missing[0]} column (it has {', '.join(list(source)[:12])}); "
                f"a {table} file needs {', '.join(spec.required)} (DATA_CONTRACT.md section 1)."
            )
        columns = _mapped_columns(table, source)
        try:
            if spec.key:
                expr = dict(columns)[spec.key]
                expr = quote_ident(expr) if expr in source else expr
                # normalised as ingest types it: CSV text is trimmed, typed values are cast;
                # a plain scan returns rows in file order, the order ingest numbers them in
                key = f"nullif(trim({expr}), '')" if fmt == "csv" else f"cast({expr} as varchar)"
                values = [r[0] for r in con.execute(f"select {key} from {reader}").fetchall()]
                rows = len(values)
                keys = tuple((i, k) for i, k in enumerate(values, start=1) if k is not None)
            else:
                rows = con.execute(f"select count(*) from {reader}").fetchall()[0][0]
                keys = ()
        except duckdb.Error as exc:
            raise _unreadable(where, fmt, exc) from exc
        files.append(_File(
            table=table, path=path, ext=ext, fmt=fmt,
            # CSV text of any columns concatenates; typed files only with the same types
            signature=("csv",) if fmt == "csv" else ("typed", tuple(sorted(source.items()))),
            header=tuple(source), columns=columns, keys=keys, rows=int(rows),
        ))
    return _Batch(entry.name, checksum, tuple(files))


def _groups(batches: list[_Batch]) -> list[list[_Batch]]:
    """Consecutive batches whose files of each table can be read as one load together; a
    feed that keeps its format loads all its pending batches in one group."""
    groups: list[list[_Batch]] = []
    shapes: dict[str, tuple] = {}
    for batch in batches:
        mine = {f.table: f.signature for f in batch.files}
        if groups and all(shapes.get(t, s) == s for t, s in mine.items()):
            groups[-1].append(batch)
            shapes.update(mine)
        else:
            groups.append([batch])
            shapes = dict(mine)
    return groups


# --- loading a group of batches ----------------------------------------------------------


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


# Errors that say nothing about the batch: the load is tried again at the next refresh.
_TRANSIENT = ("conflict", "held open by", "could not set lock", "out of memory",
              "no space left")


class _NotTheBatch(CsMetricsError):
    """A refresh failed for a reason of the warehouse or the machine, not of a batch."""


def _is_transient(message: str) -> bool:
    lowered = message.lower()
    return any(word in lowered for word in _TRANSIENT)


@dataclass
class _Totals:
    loaded: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    superseded: dict[str, int] = field(default_factory=dict)
    ingest_ids: list[str] = field(default_factory=list)
    as_of: datetime | None = None

    def add(self, report: IngestReport, superseded: dict[str, int], placeholder: bool) -> None:
        self.ingest_ids.append(report.ingest_id)
        self.as_of = report.as_of
        for rep in report.tables:
            if rep.table == "tickets" and placeholder:
                continue
            n = superseded.get(rep.table, 0)
            for d, v in ((self.loaded, rep.loaded + n), (self.rejected, rep.rejected_total - n),
                         (self.superseded, n)):
                d[rep.table] = d.get(rep.table, 0) + v


def _load_group(
    wh: Warehouse,
    group: list[_Batch],
    inbox: Path,
    settings: Settings | None,
    totals: _Totals,
) -> None:
    """Load the batches in one ``ingest``; raises CsMetricsError (nothing changed) if not."""
    staged = _stage(group)  # raises CsMetricsError, having cleaned up, if it cannot
    try:
        try:
            # every reject listed: _after_load tells superseded versions from real
            # duplicates, and counts rejects per batch, by the rejects table's rows
            report = ingest(staged.folder, staged.mapping, settings=settings,
                            rejects_csv=staged.folder / "rejects.csv", warehouse=wh,
                            list_rejects=None)
        except CsMetricsError as exc:
            message = _readable(str(exc), staged)
            if _is_transient(message):
                raise _NotTheBatch(message) from exc
            raise CsMetricsError(message) from exc
        except Exception as exc:
            # e.g. a batch's file removed while it loaded (ingest reads it again for its
            # log): ingest leaves its transaction open then, so close it before going on
            _rollback_quietly(wh.connection())
            raise _NotTheBatch(
                f"Loading the inbox batches {', '.join(b.name for b in group)} was "
                f"interrupted ({_readable(str(exc), staged)}); the next refresh tries again."
            ) from exc
        try:
            superseded = _after_load(wh.connection(), report, group, staged, inbox)
        except duckdb.Error as exc:
            # the rows are in; the manifest is not: the next refresh loads them again
            # (an upsert, so nothing doubles)
            raise _NotTheBatch(
                f"Recording the loaded inbox batches in {wh.path} failed "
                f"({str(exc).splitlines()[0]}); the next refresh loads them again."
            ) from exc
        totals.add(report, superseded, staged.placeholder)
    finally:
        shutil.rmtree(staged.folder, ignore_errors=True)


def _rollback_quietly(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("rollback")
    except duckdb.Error:
        pass  # no transaction was open


def _lock_for(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path.resolve(), threading.Lock())


def refresh_inbox(
    inbox: str | Path,
    *,
    warehouse: Warehouse | None = None,
    db: str | Path | None = None,
    settings: Settings | None = None,
    max_batches: int | None = None,
) -> RefreshReport:
    """Load the inbox's new batches (oldest first) into the warehouse, each exactly once.

    ``warehouse`` is the caller's read-write ``Warehouse`` (the app passes its own, so its
    readers keep querying: they see the warehouse before or after the load, never between);
    else ``db`` (default: the app's warehouse) is opened for this call. ``max_batches``
    bounds one refresh's work; the rest waits for the next (``RefreshReport.pending``).
    A batch that cannot load is reported in ``failed`` and marked in the manifest; the others
    still load.
    """
    started = time.perf_counter()
    inbox = _check_inbox(inbox)
    if max_batches is not None and max_batches < 1:
        raise CsMetricsError(f"max_batches must be at least 1, not {max_batches}.")
    if warehouse is not None and warehouse.read_only:
        raise CsMetricsError(
            f"The warehouse {warehouse.path} is open read-only; the process that refreshes "
            "from the inbox must open it read-write (Warehouse(path)) for all its threads."
        )
    wh = warehouse or Warehouse(db)
    try:
        with _lock_for(wh.path):
            return _refresh(inbox, wh, settings, max_batches, started)
    finally:
        if warehouse is None:
            wh.close()


def _refresh(
    inbox: Path,
    wh: Warehouse,
    settings: Settings | None,
    max_batches: int | None,
    started: float,
) -> RefreshReport:
    con = wh.connection()
    try:
        previous = _manifest(con)
    except duckdb.Error as exc:
        raise CsMetricsError(f"Cannot read the inbox manifest of {wh.path}: {exc}") from exc
    entries, ignored = _scan(inbox)
    skipped: list[str] = []
    todo: list[tuple[_Entry, str]] = []
    for entry in entries:
        try:
            checksum = _checksum(entry)
        except OSError:
            continue  # renamed or removed while we looked: the next refresh sees it
        if previous.get(entry.name, ("", ""))[0] == checksum:
            skipped.append(entry.name)
        else:
            todo.append((entry, checksum))
    pending = [e.name for e, _ in todo[max_batches:]] if max_batches else []
    todo = todo[:max_batches] if max_batches else todo

    failed: list[tuple[str, str]] = []
    good: list[_Batch] = []
    probe = scratch_connection()  # in memory: reading files needs no warehouse
    for entry, checksum in todo:
        try:
            good.append(_inspect(probe, entry, checksum))
        except CsMetricsError as exc:
            failed.append((entry.name, str(exc)))
    checksums = {e.name: c for e, c in todo}
    if failed:
        _mark_failed(con, failed, checksums)

    totals = _Totals()
    loaded: list[str] = []
    for group in _groups(good):
        # A batch that spoils its group's load (the checks above found nothing) is found by
        # loading the group's batches one by one. _NotTheBatch propagates: nothing is marked
        # and the next refresh tries again.
        for part in [group] if len(group) == 1 else [group, *([b] for b in group)]:
            try:
                _load_group(wh, part, inbox, settings, totals)
            except _NotTheBatch:
                raise
            except CsMetricsError as exc:
                if len(part) == 1:
                    failed.append((part[0].name, str(exc)))
                    _mark_failed(con, failed[-1:], checksums)
                continue
            loaded += [b.name for b in part]
            if part is group:
                break

    order = {e.name: i for i, e in enumerate(entries)}
    failed.sort(key=lambda f: order[f[0]])
    done = set(loaded) | {n for n, _ in failed}
    return RefreshReport(
        inbox=inbox,
        db=wh.path,
        loaded=tuple(sorted(loaded, key=order.__getitem__)),
        skipped=tuple(skipped),
        failed=tuple(failed),
        reloaded=tuple(n for n in sorted(done, key=order.__getitem__) if n in previous),
        pending=tuple(pending),
        ignored=tuple(ignored),
        rows_loaded=tuple(sorted(totals.loaded.items())),
        rows_rejected=tuple(sorted(totals.rejected.items())),
        rows_superseded=tuple(sorted(totals.superseded.items())),
        ingest_ids=tuple(totals.ingest_ids),
        as_of=totals.as_of if totals.ingest_ids else wh.as_of(),
        seconds=time.perf_counter() - started,
    )


def _mark_failed(
    con: duckdb.DuckDBPyConnection, failed: list[tuple[str, str]], checksums: dict[str, str]
) -> None:
    now = _utcnow()
    try:
        con.execute("begin transaction")
        _record(con, [(name, checksums[name], "failed", now, None, msg) for name, msg in failed])
        con.execute("commit")
    except duckdb.Error as exc:
        con.execute("rollback")
        raise CsMetricsError(f"Cannot write the inbox manifest: {exc}") from exc
    for name, msg in failed:
        logger.warning("inbox batch %s failed: %s", name, msg)


def read_manifest(warehouse: Warehouse) -> pd.DataFrame:
    """The batches seen so far, latest first (empty before the first refresh)."""
    columns = ["name", "checksum", "status", "loaded_at", "rows", "message"]
    if not warehouse.has_table(MANIFEST):
        return pd.DataFrame(columns=columns)
    return warehouse.df(f"select {', '.join(columns)} from {MANIFEST} "
                        "order by loaded_at desc, name desc")


def watch_inbox(
    inbox: str | Path,
    *,
    db: str | Path | None = None,
    warehouse: Warehouse | None = None,
    interval_s: float = 5.0,
    stop: threading.Event | None = None,
    on_refresh: Callable[[RefreshReport], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_error: Callable[[Exception], None] | None = None,
    settings: Settings | None = None,
    max_batches: int | None = None,
) -> None:
    """Refresh from the inbox every ``interval_s`` seconds until ``stop`` is set.

    For the command line (until Ctrl-C) and for the app's background thread (pass the app's
    ``warehouse`` and a ``stop`` event). A bad batch is reported and marked, never fatal; any
    other error of one refresh is logged (and given to ``on_error``) and the next refresh
    tries again. Only a missing inbox at the start raises. ``on_refresh`` gets every report;
    ``report.changed`` says whether caches should be cleared.
    """
    inbox = _check_inbox(inbox)
    if interval_s < 0:
        raise CsMetricsError(f"The interval must be 0 seconds or more, not {interval_s}.")
    stop = stop or threading.Event()
    wh = warehouse or Warehouse(db)
    try:
        while not stop.is_set():
            try:
                report = refresh_inbox(inbox, warehouse=wh, settings=settings,
                                       max_batches=max_batches)
            except Exception as exc:  # noqa: BLE001 - a watcher outlives one bad refresh
                logger.warning("inbox refresh of %s failed: %s", inbox, exc)
                if on_error is not None:
                    on_error(exc)
            else:
                if report.changed:
                    logger.info("inbox %s: %s", inbox, report.summary())
                if on_refresh is not None:
                    try:
                        on_refresh(report)
                    except Exception:  # noqa: BLE001 - a callback's bug must not stop loads
                        logger.exception("on_refresh failed")
            if stop.is_set():
                break
            if sleep is time.sleep:
                stop.wait(interval_s)  # wakes as soon as stop is set
            else:
                sleep(interval_s)
    finally:
        if warehouse is None:
            wh.close()
