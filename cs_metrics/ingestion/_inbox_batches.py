"""An inbox's entries (batch folders and loose files), their checksums, and reading each
batch before it loads: its tables, columns and row keys, and which batches load together."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.schema import FILE_EXTENSIONS, TABLES
from cs_metrics.ingestion.mapping import quote_ident, sql_literal
from cs_metrics.ingestion.reading import csv_options


@dataclass(frozen=True)
class _Entry:
    name: str
    path: Path
    files: tuple[tuple[str, Path], ...]  # (table, file), sorted by file name
    # why the entry is refused unread (a symbolic link, or a path outside the inbox), or ""
    refused: str = ""


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


_LINK_REFUSED = (
    "is a symbolic link; the inbox never follows links (one could point at any file this "
    "process may read, and its rejected rows would be stored whole): the feed must write "
    "its files into the inbox itself."
)


def _is_link(path: Path) -> bool:
    # lstat, not is_dir()/is_file(), which follow links; a link on Windows (a junction) too
    st = path.lstat()
    return stat.S_ISLNK(st.st_mode) or bool(
        getattr(st, "st_file_attributes", 0) & getattr(stat, "FILE_ATTRIBUTE_REPARSE_POINT", 0))


def _outside(path: Path, root: Path) -> bool:
    return not path.resolve().is_relative_to(root)


def _folder_files(folder: Path, root: Path) -> tuple[tuple[tuple[str, Path], ...], str]:
    """The files a canonical folder loads: one per table, named after it (as ``ingest``),
    and why the folder is refused ("" if it is not): a canonical file that is a link."""
    try:
        with os.scandir(folder) as scan:
            found = {e.name: e for e in scan}
        out = []
        for table in TABLES:
            for ext in FILE_EXTENSIONS:
                entry = found.get(f"{table}{ext}")
                if entry is None:
                    continue
                path = folder / entry.name
                if entry.is_symlink() or _is_link(path):
                    return (), f"{folder.name}/{entry.name} {_LINK_REFUSED}"
                if not entry.is_file(follow_symlinks=False):
                    continue  # a folder of that name: no file of that table
                if _outside(path, root):
                    return (), f"{folder.name}/{entry.name} is outside the inbox {root}."
                out.append((table, path))
                break
    except OSError:
        return (), ""  # gone while we looked
    return tuple(sorted(out, key=lambda tp: tp[1].name)), ""


def _scan(inbox: Path) -> tuple[list[_Entry], list[str]]:
    entries: list[_Entry] = []
    ignored: list[str] = []
    root = inbox.resolve()
    for path in sorted(inbox.iterdir(), key=lambda p: p.name):
        if path.name.startswith("."):
            continue  # being written, or not ours
        try:
            if _is_link(path):
                # refused unread, and said (a failed batch in the manifest): a link in the
                # inbox is a mistake of the feed or an attempt to read elsewhere
                entries.append(_Entry(path.name, path, (), f"{path.name} {_LINK_REFUSED}"))
                continue
            st = path.lstat()
        except OSError:
            continue  # renamed or removed while we looked: the next refresh sees it
        if _outside(path, root):
            entries.append(_Entry(path.name, path, (), f"{path.name} is outside the inbox {root}."))
        elif stat.S_ISDIR(st.st_mode):
            files, refused = _folder_files(path, root)
            entries.append(_Entry(path.name, path, files, refused))
        elif stat.S_ISREG(st.st_mode) and (table := _table_of_file(path.name)):
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
    if entry.refused:
        # never read: the reason stands for the content, so a refused entry is recorded once
        # and is loaded when replaced by a real folder or file (a new checksum)
        return hashlib.sha256(f"refused\0{entry.refused}".encode()).hexdigest()
    stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for _, p in entry.files)
    with _CHECKSUMS_GUARD:
        known = _CHECKSUMS.get(stats)
    if known is not None:
        return known
    h = hashlib.sha256()
    for (_, path), (_, size, _) in zip(entry.files, stats, strict=True):
        h.update(f"{path.name}\0{size}\0".encode())
        # O_NOFOLLOW: a file swapped for a link since the scan is not read through it
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
        with open(fd, "rb") as fh:
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
    if entry.refused:
        raise CsMetricsError(entry.refused)
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
