"""Sources + mapping -> validated rows + rejects -> warehouse.

Validation runs inside DuckDB: every source row is mapped, typed and checked in one pass;
rows that fail keep their reason and source row number in the ``rejects`` table and in
``rejects.csv``; good rows load. Mapping mistakes are found before anything is written.
"""

from __future__ import annotations

import atexit
import codecs
import csv
import dataclasses
import gzip
import hashlib
import io
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

import duckdb

from cs_metrics.core.comment_scores import SENTIMENT_TABLE, model_name
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.schema import LOAD_ORDER, SCORE_RANGES, TABLES, Column
from cs_metrics.core.settings import Settings, load_settings
from cs_metrics.core.warehouse import (
    Warehouse,
    add_missing_ticket_columns,
    catalog_changed,
    rebuild_derived,
)
from cs_metrics.ingestion._mapping_sql import Sandbox
from cs_metrics.ingestion.mapping import (
    FORMAT_FILE,
    MAX_LINE_SIZE,
    ROW_KEYS,
    Mapping,
    TableMapping,
    canonical_folder,
    check_encoding,
    make_row_safe,
    quote_ident,
    read_mapping,
    sql_literal,
)

# Every reason a row can be rejected for, with the sentence shown to users.
REJECT_REASONS: dict[str, str] = {
    "missing_required_value": "a required value is empty",
    "unparseable_timestamp": "a timestamp could not be read",
    "unparseable_value": "a number, date or true/false value could not be read",
    "unknown_status": "the status is not one of the listed values",
    "unknown_priority": "the priority is not one of the listed values",
    "unknown_severity": "the severity is not one of the listed values",
    "score_out_of_range": "a csat (1-5), nps (0-10) or ces (1-7) score is out of range",
    "response_before_created": "first_response_at is before created_at",
    "resolved_before_created": "resolved_at is before created_at",
    "ended_before_started": "an outage's ended_at is before its started_at",
    "duplicate_key": "the id repeats an earlier row of the same load",
    "implausible_timestamp": "a timestamp is outside the plausible window set in [ingest] "
                             "(by default from 1990-01-01 to one day after the load; hired_at "
                             "from earliest_hired)",
    "negative_value": "a count, duration or distance (contacts, reopened_count, "
                      "handle_time_s, radius_km) is negative",
}

WARNINGS: dict[str, str] = {
    "resolved_at_cleared": "resolved_at on a ticket that is not closed was cleared",
    "resolved_before_first_response": "resolved_at is before first_response_at (kept)",
    "feedback_unknown_ticket": "feedback for a ticket that is not in the warehouse (kept)",
    "event_unknown_ticket": "a status event for a ticket that is not in the warehouse (kept)",
    "coordinates_out_of_range": "location_lat outside -90..90 or location_lon outside "
                                "-180..180, or exactly 0, 0 (kept, left off the map)",
    "coordinates_repeated": "the exact coordinate of at least 20 tickets and more than 1 % of "
                            "the located tickets (not all of them), not all of one customer: "
                            "a placeholder, not a place (kept, left off the map)",
}

# A coordinate is a placeholder (a default a system writes, such as a city hall's) when at
# least this many tickets, and more than this share of the located tickets, sit exactly on
# it, unless they all belong to one customer (a big customer's site is a real place) or it
# is the only place there is (a single-site helpdesk): a real hot spot spreads over nearby
# coordinates, a placeholder repeats one exactly.
PLACEHOLDER_MIN_ROWS = 20
PLACEHOLDER_MIN_SHARE = 0.01


def coordinate_checks(lat: str, lon: str, located: str) -> tuple[str, str]:
    """SQL conditions (out of range, placeholder) on a row's ``lat``/``lon``, both not null,
    the placeholders judged among the tickets of the relation ``located`` (trusted names of
    this package; the thresholds are this module's constants). A row is one or the other:
    an out-of-range coordinate is never also counted as a placeholder."""
    out = (f"(not ({lat} between -90 and 90 and {lon} between -180 and 180) "
           f"or ({lat} = 0 and {lon} = 0))")
    pairs = ("location_lat is not null and location_lon is not null")
    placeholder = (
        f"(not {out} and exists (select 1 from (select location_lat as __plat, "
        f"location_lon as __plon from {located} where {pairs} group by all "
        f"having count(*) >= {int(PLACEHOLDER_MIN_ROWS)} and count(*) > "
        f"{float(PLACEHOLDER_MIN_SHARE)!r} * (select count(*) from {located} where {pairs}) "
        f"and count(*) < (select count(*) from {located} where {pairs}) "
        "and not (count(customer_id) = count(*) and count(distinct customer_id) = 1)) "
        f"__p where __p.__plat = {lat} and __p.__plon = {lon}))")
    return out, placeholder

# Canonical ticket rows of the current load (old rows kept plus new ones), from which the
# query table ``tickets`` is rebuilt; the warehouse keeps one stored copy of the tickets.
TICKETS_CANON = "tickets_canon"

# Rejected rows listed (in the rejects table and rejects.csv) per table, source file and
# reason; the ones past it are counted in the report but not listed.
REJECTS_LISTED = 10_000

REJECT_COLUMNS = (
    "table_name", "source_file", "source_row", "reason", "column_name", "value", "detail", "raw",
)


@dataclass(frozen=True)
class TableReport:
    table: str
    origin: str
    files: tuple[str, ...]
    read: int
    loaded: int
    rejected: tuple[tuple[str, int], ...]
    warnings: tuple[tuple[str, int], ...] = ()
    collapsed: int = 0  # identical dimension rows merged into one
    skipped_empty: int = 0  # feedback rows with no score and no comment
    skipped_filter: int = 0  # source rows the mapping's ``where`` leaves out
    merged: int = 0  # event-log rows merged into the latest row of their key (one_row_per)

    @property
    def rejected_total(self) -> int:
        return sum(n for _, n in self.rejected)


@dataclass(frozen=True)
class IngestReport:
    ingest_id: str
    db: Path
    tables: tuple[TableReport, ...]
    rejects_csv: Path
    seconds: float
    as_of: datetime | None
    extra: dict = field(default_factory=dict, compare=False)
    # rejected rows listed in rejects.csv: all of them, or REJECTS_LISTED of each reason in
    # each file when there are more
    rejects_listed: int = 0

    @property
    def rejects_capped(self) -> bool:
        return self.rejects_listed < sum(t.rejected_total for t in self.tables)

    def table(self, name: str) -> TableReport:
        for t in self.tables:
            if t.table == name:
                return t
        raise KeyError(name)


# --- reading sources ---------------------------------------------------------------------


def _reader_sql(tm: TableMapping, con: duckdb.DuckDBPyConnection | None = None) -> str:
    """DuckDB reader of the source; several files add their path as column __path. With
    ``con``, a single CSV file is read with the dialect sniffed once (``csv_options``)."""
    read, encoding = _csv_sources(tm) if tm.fmt == "csv" else (read_paths(tm), None)
    files = "[" + ", ".join(sql_literal(f) for f in read) + "]"
    path = ", filename='__path'" if len(tm.files) > 1 else ""
    if tm.fmt == "parquet":
        return f"read_parquet({files}, file_row_number=true{path})"
    if tm.fmt == "jsonl":
        return f"read_json({files}, format='newline_delimited'{path})"
    if con is not None and len(tm.files) == 1:
        return f"read_csv({files}, " \
            f"{csv_options(con, read[0], tm.delimiter, encoding, tm.max_line_size)})"
    opts = f"header=true, all_varchar=true{path}{_read_limits(encoding, tm.max_line_size)}"
    if tm.delimiter:
        opts += f", delim={sql_literal(tm.delimiter)}"
    return f"read_csv({files}, {opts})"


def _read_limits(encoding: str | None, max_line_size: int | None) -> str:
    """The reader options for a CSV file's encoding (DuckDB's name) and longest line."""
    opts = f", max_line_size={int(max_line_size or MAX_LINE_SIZE)}"
    if encoding:
        opts += f", encoding={sql_literal(encoding)}"
    return opts


# --- encodings -----------------------------------------------------------------------------

# Encodings DuckDB's CSV reader decodes itself, by Python codec name: DuckDB's own name
# (None: UTF-8, its default, which skips a UTF-8 byte order mark). DuckDB reads UTF-16 as
# little-endian when there is no byte order mark. Every other text encoding Python knows is
# decoded into a UTF-8 copy first (``_utf8_copy``).
_NATIVE_ENCODINGS: dict[str, str | None] = {
    "utf-8": None, "utf-8-sig": None, "iso8859-1": "latin-1", "utf-16": "utf-16",
    "utf-16-le": "utf-16",
}


def _open_bytes(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _sniff_bom(path: Path) -> str | None:
    """The encoding a file's byte order mark declares (UTF-16 only: UTF-8 is the default)."""
    try:
        with _open_bytes(path) as fh:
            head = fh.read(2)
    except (OSError, EOFError):
        return None  # the read reports what is wrong
    return "utf-16" if head in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else None


def _csv_source(file: Path, encoding: str | None, native: bool = True
                ) -> tuple[str, str | None]:
    """(path DuckDB reads, DuckDB's encoding option) for a CSV file in ``encoding`` (a
    Python codec name; None: UTF-8, or UTF-16 when its byte order mark says so). Not
    ``native``: a UTF-8 copy unless the file is UTF-8 already."""
    encoding = encoding or _sniff_bom(file) or "utf-8"
    if not native and encoding not in ("utf-8", "utf-8-sig"):
        return str(_utf8_copy(file, encoding)), None
    if encoding in ("utf-16", "utf-16-le"):
        try:
            with _open_bytes(file) as fh:
                big_endian = fh.read(2) == codecs.BOM_UTF16_BE  # DuckDB reads LE only
        except (OSError, EOFError):
            big_endian = False
        if not big_endian:
            return str(file), "utf-16"
    elif encoding in _NATIVE_ENCODINGS:
        return str(file), _NATIVE_ENCODINGS[encoding]
    return str(_utf8_copy(file, encoding)), None


def _csv_sources(tm: TableMapping) -> tuple[tuple[str, ...], str | None]:
    """(paths DuckDB reads, the encoding option they share) for ``tm``'s CSV files. One
    reader has one encoding: files whose byte order marks disagree are all read from UTF-8
    copies."""
    sources = [_csv_source(f, tm.encoding) for f in tm.files]
    if len({enc for _, enc in sources}) > 1:
        sources = [_csv_source(f, tm.encoding, native=False) for f in tm.files]
    return tuple(path for path, _ in sources), sources[0][1]


def read_paths(tm: TableMapping) -> tuple[str, ...]:
    """The files DuckDB reads for ``tm``: its own, or UTF-8 copies of CSV files in another
    encoding (made once per file version)."""
    if tm.fmt != "csv":
        return tuple(str(f) for f in tm.files)
    return _csv_sources(tm)[0]


# UTF-8 copies of CSV files in other encodings: (real path, size, mtime, encoding) -> copy.
# They live in one folder of this process, removed at exit; a changed file gets a new copy.
_COPIES: dict[tuple, Path] = {}
_COPIES_GUARD = threading.Lock()
_COPIES_DIR: list[Path] = []


def _copies_dir() -> Path:
    if not _COPIES_DIR:
        folder = Path(tempfile.mkdtemp(prefix="cs_metrics_utf8_"))
        atexit.register(shutil.rmtree, folder, True)
        _COPIES_DIR.append(folder)
    return _COPIES_DIR[0]


def _utf8_copy(file: Path, encoding: str) -> Path:
    """A UTF-8 copy of ``file`` decoded from ``encoding``, written in a streaming way (the
    file is never held whole in memory)."""
    try:
        st = os.stat(file)
    except OSError:
        return file  # the read reports what is wrong
    key = (os.path.realpath(file), st.st_size, st.st_mtime_ns, encoding)
    with _COPIES_GUARD:
        known = _COPIES.get(key)
        if known is not None and known.exists():
            return known
        for old in [k for k in _COPIES if k[0] == key[0] and k[3] == encoding]:
            shutil.rmtree(_COPIES.pop(old).parent, ignore_errors=True)  # an older version
        # a folder of its own keeps the file's name (messages) and is all a sandbox may read
        folder = Path(tempfile.mkdtemp(dir=_copies_dir()))
        name = file.name[:-3] if file.name.lower().endswith(".gz") else file.name
        copy = folder / name
        try:
            with _open_bytes(file) as raw, \
                    io.TextIOWrapper(raw, encoding=encoding, newline="") as src, \
                    open(copy, "w", encoding="utf-8", newline="") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
        except UnicodeDecodeError:
            shutil.rmtree(folder, ignore_errors=True)
            line = _first_bad_line(file, encoding)
            raise CsMetricsError(
                f"{file} is not {encoding} text{f' (line {line})' if line else ''}; set the "
                "encoding it was saved in (a Windows export is often cp1252)."
            ) from None
        except (OSError, EOFError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise CsMetricsError(f"Cannot read {file} ({exc}); check the file.") from exc
        _COPIES[key] = copy
        return copy


def release_copies(mapping: Mapping) -> None:
    """Remove the UTF-8 copies made for ``mapping``'s files (made again if read again)."""
    wanted = {os.path.realpath(f) for tm in mapping.tables for f in tm.files}
    with _COPIES_GUARD:
        for key in [k for k in _COPIES if k[0] in wanted]:
            shutil.rmtree(_COPIES.pop(key).parent, ignore_errors=True)


def _first_bad_line(file: Path, encoding: str) -> int | None:
    """The first line (1 = the header) of ``file`` that does not decode in ``encoding``;
    read as a stream, on the error path only."""
    try:
        with _open_bytes(file) as raw, io.TextIOWrapper(
                raw, encoding=encoding, errors="surrogateescape", newline="") as fh:
            for number, line in enumerate(fh, start=1):
                # undecodable bytes come back as lone surrogates, which valid text never has
                if any("\udc80" <= ch <= "\udcff" for ch in line):
                    return number
    except (OSError, EOFError, UnicodeError):
        return None
    return None


def _first_long_line(path: str, limit: int) -> tuple[int, int] | None:
    """(line, length in bytes) of the first line of ``path`` longer than ``limit`` bytes,
    scanned in chunks (a 1 GB line is never held whole)."""
    number, length = 1, 0
    try:
        with _open_bytes(Path(path)) as fh:
            while chunk := fh.read(1 << 20):
                start = 0
                while (end := chunk.find(b"\n", start)) >= 0:
                    length += end - start
                    if length > limit:
                        return number, length
                    number, length, start = number + 1, 0, end + 1
                length += len(chunk) - start
        return (number, length) if length > limit else None
    except (OSError, EOFError):
        return None


def _setting_hint(tm: TableMapping, key: str, value: str | int) -> str:
    """Where ``key`` is set for ``tm``'s source: its mapping section, or _format.toml (or,
    for the encoding, the --encoding flag)."""
    toml = f'"{value}"' if isinstance(value, str) else str(value)
    if tm.columns:
        return f"set {key} = {toml} in the [{tm.table}] section of {tm.origin}"
    folder = tm.files[0].parent
    also = f" (or pass --encoding {value})" if key == "encoding" else ""
    return f"add {key} = {toml} to {folder / FORMAT_FILE}{also}"


def _looks_binary(file: Path) -> bool:
    """NUL bytes in the first 8 KB and no UTF-16 byte order mark: not text."""
    try:
        with _open_bytes(file) as fh:
            head = fh.read(8192)
    except (OSError, EOFError):
        return False
    return b"\x00" in head and head[:2] not in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def read_error(tm: TableMapping, exc: duckdb.Error) -> CsMetricsError:
    """The sentence for a source DuckDB could not read: which file and line, and what to set
    (an encoding, a longer line limit), never the reader's own dump of the line."""
    text = str(exc)
    where = f"{tm.origin}, table {tm.table}"
    read = read_paths(tm) if tm.fmt == "csv" else tuple(str(f) for f in tm.files)
    named = re.search(r"^\s*file = (.+)$", text, re.MULTILINE)
    index = read.index(named.group(1).strip()) if named and named.group(1).strip() in read \
        else 0
    file = tm.files[index]
    first = text.splitlines()[0] if text else type(exc).__name__
    if not os.access(file, os.R_OK):
        reason = "it does not exist" if not file.exists() else "permission denied"
        return CsMetricsError(f"{where}: cannot read {file} ({reason}); check the file.")
    if tm.fmt == "csv" and not tm.encoding and _looks_binary(file):
        return CsMetricsError(
            f"{where}: {file} is not CSV text (it holds NUL bytes: a binary file, or UTF-16 "
            f"without a byte order mark); export it as CSV, or if it is UTF-16, "
            f"{_setting_hint(tm, 'encoding', 'utf-16')}."
        )
    if tm.fmt == "csv" and ("not utf-8 encoded" in text or "Invalid unicode" in text):
        line = _first_bad_line(file, tm.encoding or "utf-8")
        at = f"line {line} holds" if line else "it holds"
        return CsMetricsError(
            f"{where}: {file} is not UTF-8 text ({at} bytes that are not UTF-8); if it was "
            "saved in another encoding (latin-1, cp1252 or utf-16, say), "
            f"{_setting_hint(tm, 'encoding', 'latin-1')}, naming the file's own encoding."
        )
    if tm.fmt == "csv" and "is not" in first and "encoded" in first:
        return CsMetricsError(
            f"{where}: {file} is not {tm.encoding or 'UTF-8'} text ({first}); a Windows export "
            f"is often cp1252: {_setting_hint(tm, 'encoding', 'cp1252')}, or name the file's "
            "own encoding."
        )
    limit = int(tm.max_line_size or MAX_LINE_SIZE)
    too_long = "Maximum line size" in text
    # a long line within the rows DuckDB samples fails the sniffing, which does not say why
    found = _first_long_line(read[index], limit) if tm.fmt == "csv" and (
        too_long or "sniffing" in text) else None
    if found or too_long:
        reported = re.search(r"CSV Error on Line: (\d+)", text)
        if found:
            at = f"line {found[0]} is {found[1]:,d} bytes long"
        else:  # a quoted value over several lines: DuckDB's count of records
            at = f"record {reported.group(1) if reported else '?'} is longer than that"
        # twice the longest line seen, in whole megabytes
        need = -(-2 * max(found[1] if found else 0, limit) // 1_000_000) * 1_000_000
        return CsMetricsError(
            f"{where}: {file} has a line over the reader's limit of {limit:,d} bytes ({at}); "
            f"to read it, {_setting_hint(tm, 'max_line_size', need)}."
        )
    return CsMetricsError(
        f"{where}: cannot read {file} as {tm.fmt} ({first}); check the file and the "
        "format/delimiter settings."
    )


# Sniffing a CSV file's dialect is most of the cost of reading a small one, and a load reads
# each file several times (its columns, the mapping's check, its rows; an inbox refresh
# looks at each batch first): the options found are kept per file version (resolved path,
# size, modification time) and passed explicitly, which reads exactly as the sniffer would.
_CSV_OPTIONS: dict[tuple, str] = {}
_CSV_GUARD = threading.Lock()


def csv_options(con: duckdb.DuckDBPyConnection, file: str | Path,
                delimiter: str | None = None, encoding: str | None = None,
                max_line_size: int | None = None) -> str:
    """The ``read_csv`` options (after the file list) that read ``file``, all columns as
    text with a header row, as DuckDB's sniffer reads it (``delimiter`` if given; DuckDB's
    ``encoding`` name and the longest line in bytes, ``MAX_LINE_SIZE`` by default)."""
    plain = "header=true, all_varchar=true" + \
        (f", delim={sql_literal(delimiter)}" if delimiter else "") + \
        _read_limits(encoding, max_line_size)
    try:
        st = os.stat(file)
        key = (os.path.realpath(file), st.st_size, st.st_mtime_ns, delimiter, encoding,
               max_line_size)
    except OSError:
        return plain  # the read reports what is wrong
    with _CSV_GUARD:
        known = _CSV_OPTIONS.get(key)
    if known is not None:
        return known
    try:
        # every column is read as text: the sniffer need not guess types (most of its time)
        prompt = con.execute(
            f"select Prompt from sniff_csv({sql_literal(str(file))}, {plain}, "
            "auto_type_candidates=['VARCHAR'])"
        ).fetchall()[0][0]
    except duckdb.Error:
        return plain
    # FROM read_csv('<file>', <options>);
    head, end = f"FROM read_csv({sql_literal(str(file))}, ", prompt.rfind(")")
    if not prompt.startswith(head) or end < len(head):
        return plain
    options = prompt[len(head):end]
    try:  # the options as DuckDB wrote them must read back (odd column names, say)
        con.execute(f"describe select * from read_csv([{sql_literal(str(file))}], {options})")
    except duckdb.Error:
        return plain
    with _CSV_GUARD:
        if len(_CSV_OPTIONS) > 10_000:
            _CSV_OPTIONS.clear()
        _CSV_OPTIONS[key] = options
    return options


_SCRATCH = threading.local()


def scratch_connection() -> duckdb.DuckDBPyConnection:
    """This thread's connection to an in-memory database of its own, for reading files; it
    stays open (opening one costs 20 ms) and holds nothing between uses."""
    con = getattr(_SCRATCH, "con", None)
    if con is None:
        con = _SCRATCH.con = duckdb.connect()
    return con


def _file_index(tm: TableMapping) -> str:
    """Rows carry their file as a small number (1-based index into tm.files), not a path:
    a path string on each of millions of rows costs memory and time."""
    if len(tm.files) == 1:
        return "cast(1 as integer)"
    files = "[" + ", ".join(sql_literal(f) for f in read_paths(tm)) + "]"
    return f"cast(list_position({files}, __path) as integer)"


def _source_columns(con: duckdb.DuckDBPyConnection, tm: TableMapping) -> list[str]:
    for file in tm.files:
        try:
            empty = os.path.getsize(file) == 0
        except OSError:
            empty = False  # the read says what is wrong
        if empty:
            raise CsMetricsError(
                f"{tm.origin}, table {tm.table}: {file} is empty (0 bytes, not even a header "
                "row); export it again, or leave the file out."
            )
    try:
        reader = _reader_sql(tm, con)
        rows = con.execute(f"describe select * from {reader}").fetchall()
    except duckdb.Error as exc:
        raise read_error(tm, exc) from exc
    columns = [r[0] for r in rows if r[0] not in ("__path", "file_row_number")]
    # a canonical file names its columns itself (a mapping's are checked with its expressions)
    required = [] if tm.columns else [c for c in TABLES[tm.table].required if c not in columns]
    if required and not _has_rows(con, reader):
        # a header alone (or a file DuckDB finds no rows in) lacks columns because it is
        # empty: say that, not which column is missing
        raise CsMetricsError(
            f"{tm.origin}, table {tm.table}: {', '.join(str(f) for f in tm.files)} "
            f"{'has' if len(tm.files) == 1 else 'have'} no rows (at most a header line, with "
            f"no {required[0]} column); export it again, or leave the file out."
        )
    return columns


def _has_rows(con: duckdb.DuckDBPyConnection, reader: str) -> bool:
    try:
        return bool(con.execute(f"select 1 from {reader} limit 1").fetchall())
    except duckdb.Error:
        return True  # a reading error is reported where the rows are read


def with_encoding(mapping: Mapping, encoding: str | None) -> Mapping:
    """``mapping`` with ``encoding`` for the CSV sources that do not name their own."""
    return dataclasses.replace(mapping, tables=tuple(
        dataclasses.replace(tm, encoding=encoding)
        if tm.fmt == "csv" and tm.encoding is None else tm
        for tm in mapping.tables))


def refuse_empty_load(mapping: Mapping) -> None:
    """A load whose every source has no rows (header lines at most) is refused: it would
    change nothing, or with ``replace`` empty the warehouse, and is most likely a failed
    export."""
    con = scratch_connection()
    for tm in mapping.tables:
        if _has_rows(con, _reader_sql(tm, con)):
            return
    files = ", ".join(str(f) for tm in mapping.tables for f in tm.files)
    raise CsMetricsError(
        f"Nothing to load: every source is empty (no rows after the header) in {files}; "
        "export the data again."
    )


def _resolved_columns(tm: TableMapping, source_cols: list[str]) -> dict[str, str]:
    """canonical column -> SQL expression over the source."""
    if not tm.columns:  # canonical file: identity on the columns it has
        return {c: quote_ident(c) for c in TABLES[tm.table].column_names if c in source_cols}
    out = {}
    for canon, value in tm.columns:
        out[canon] = quote_ident(value) if value in source_cols else value
    return out


def _mapped(tm: TableMapping) -> bool:
    """Whether the table's columns come from a mapping file (untrusted expressions), not
    from a canonical file's own column names."""
    return bool(tm.columns)


def sandbox_for(tm: TableMapping) -> Sandbox:
    """A connection for the mapping expressions of ``tm``: it reads the source's files (or
    their UTF-8 copies) and nothing else. It runs beside the warehouse's connection during a
    load, so it gets half of the load's memory bound (and spills the rest to disk)."""
    limit = os.environ.get(INGEST_MEMORY_ENV, "1GB").strip()
    return Sandbox([Path(f) for f in read_paths(tm)],
                   memory_limit=None if limit.lower() == "none" else _half(limit))


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b)\s*$", re.IGNORECASE)


def _half(size: str) -> str:
    """Half of a DuckDB memory size such as "1GB" or "2GiB", in MiB; as given if unread."""
    match = _SIZE.match(size)
    if not match:
        return size  # DuckDB says what is wrong with it
    unit = match.group(2).lower()
    power = {"b": 0, "k": 1, "m": 2, "g": 3, "t": 4}[unit[0]]
    base = 1024 if "i" in unit or unit == "b" else 1000
    return f"{max(1, int(float(match.group(1)) * base ** power / 2 / 2**20))}MiB"


def check_mapping(mapping: Mapping) -> dict[str, dict[str, str]]:
    """Fatal checks, run before anything is written: columns exist, every expression is a
    column mapping (parsed and checked, never run as written), and they bind to the source.

    Returns, per table, the canonical column -> SQL expression map.
    """
    con = scratch_connection()
    resolved: dict[str, dict[str, str]] = {}
    for tm in mapping.tables:
        cols = _source_columns(con, tm)
        exprs = _resolved_columns(tm, cols)
        where = f"{tm.origin}, table {tm.table}"
        missing = [c for c in TABLES[tm.table].required if c not in exprs]
        if missing:
            raise CsMetricsError(
                f"{where}: required column {missing[0]} is missing from {tm.files[0].name}"
                f" (it has {', '.join(cols[:12])}{' ...' if len(cols) > 12 else ''})."
            )
        # parsed and checked first: nothing of a refused expression is ever run
        safe = {canon: make_row_safe(expr, f"{where}, column {canon}").sql
                for canon, expr in exprs.items()}
        keys = _row_key_sql(tm, cols)
        with sandbox_for(tm) if _mapped(tm) else _nullcontext(con) as box:
            check_con = box.con
            reader = _reader_sql(tm, check_con)
            _check_row_keys(check_con, tm, reader, keys)
            try:  # every expression binds in one query (each reads the file's header again)
                check_con.execute(f"select {', '.join(safe.values()) or '1'} from {reader} "
                                  "limit 0").fetchall()
                resolved[tm.table] = exprs
                continue
            except duckdb.Error:
                pass  # find which one does not, for the message
            for canon, sql in safe.items():
                try:
                    check_con.execute(f"select {sql} from {reader} limit 0").fetchall()
                except duckdb.Error as exc:
                    value = tm.column_map().get(canon, canon)
                    first = str(exc).splitlines()[0]
                    raise CsMetricsError(
                        f"{where}, column {canon}: {value!r} is neither a column of "
                        f"{tm.files[0].name} nor a valid DuckDB expression ({first}); "
                        "double-quote source names that contain spaces."
                    ) from exc
        resolved[tm.table] = exprs
    return resolved


def _row_key_sql(tm: TableMapping, source_cols: list[str]) -> dict[str, str]:
    """The parsed, row-safe SQL of the section's ``where``, ``one_row_per`` and
    ``latest_by`` (those it sets); a value naming a source column is that column."""
    out = {}
    for key in ROW_KEYS:
        value = getattr(tm, key)
        if value is None:
            continue
        expr = quote_ident(value) if value in source_cols else value
        out[key] = make_row_safe(expr, f"{tm.origin}, table {tm.table}, {key}").sql
    return out


def _check_row_keys(con: duckdb.DuckDBPyConnection, tm: TableMapping, reader: str,
                    keys: dict[str, str]) -> None:
    """``where`` must be a boolean and the key and order must bind, before anything runs
    for real (checked in the sandbox, like the columns)."""
    checks = []
    if "where" in keys:
        checks.append(("where", f"select ({keys['where']}) from {reader} limit 0"))
    if "one_row_per" in keys:
        checks.append(("one_row_per", f"select {_rank_sql(keys)} from (select *, 1 as "
                                      f"__file, 1 as __row from {reader}) limit 0"))
    for key, sql in checks:
        try:
            kind = con.execute(f"describe {sql}").fetchall()[0][1]
        except duckdb.Error as exc:
            raise CsMetricsError(
                f"{tm.origin}, table {tm.table}: {key} = {getattr(tm, key)!r} (or latest_by "
                f"= {tm.latest_by!r}) is not a valid expression over the columns of "
                f"{tm.files[0].name} ({str(exc).splitlines()[0]})."
            ) if key == "one_row_per" else CsMetricsError(
                f"{tm.origin}, table {tm.table}: where = {tm.where!r} is not a valid "
                f"expression over the columns of {tm.files[0].name} "
                f"({str(exc).splitlines()[0]})."
            ) from exc
        if key == "where" and kind != "BOOLEAN":
            raise CsMetricsError(
                f"{tm.origin}, table {tm.table}: where = {tm.where!r} gives {kind}, not true or "
                "false; write a condition such as where = \"state <> 'Draft'\"."
            )


def _rank_sql(keys: dict[str, str]) -> str:
    """1 for the row an event log keeps of its key: the latest by ``latest_by``, the later
    source row on a tie. A row whose key is null keeps its own rank 1, so its own checks
    (a null ticket_id is rejected) decide it rather than a merge into other rows."""
    key, order = keys["one_row_per"], keys["latest_by"]
    return (f"(case when ({key}) is null then 1 else row_number() over (partition by ({key}) "
            f"order by ({order}) desc nulls last, __file desc, __row desc) end)")


def _filtered(keys: dict[str, str], raw: str) -> str:
    """The rows of ``raw`` the section's ``where`` keeps (null is not kept), as a from
    clause. The condition is computed in an inner select, so it may use window functions
    over every source row; the columns' windows then see only the kept rows."""
    if "where" not in keys:
        return raw
    return (f"(select * exclude (__where_keep) from (select *, ({keys['where']}) as "
            f"__where_keep from {raw}) where coalesce(__where_keep, false)) as {raw}")


class _nullcontext:
    """A connection in the shape of a ``Sandbox`` (``.con``), closed by nobody."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def __enter__(self) -> _nullcontext:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def create_raw(con: duckdb.DuckDBPyConnection, tm: TableMapping, raw: str) -> None:
    """Temp relation ``raw``: the source's rows as read, with their file (``__file``, 1-based
    index into ``tm.files``) and row in it (``__row``). The warehouse and the sandbox that
    evaluates mapping expressions build it alike, so their rows pair up."""
    drop = "__path" if len(tm.files) > 1 else ""
    if tm.fmt == "parquet":
        con.execute(
            f"create or replace temp view {raw} as select * exclude "
            f"(file_row_number{', ' + drop if drop else ''}), "
            f"{_file_index(tm)} as __file, file_row_number + 1 as __row "
            f"from {_reader_sql(tm)}"
        )
        return
    # a materialised table keeps file order in its rowid: the source row
    cols = f"* exclude (__path), {_file_index(tm)} as __file" if drop \
        else f"*, {_file_index(tm)} as __file"
    try:
        con.execute(
            f"create or replace temp table {raw}_t as select {cols} "
            f"from {_reader_sql(tm, con)}"
        )
    except duckdb.Error as exc:  # a bad byte or a long line past what was sniffed
        raise read_error(tm, exc) from exc
    con.execute(
        f"create or replace temp view {raw} as select *, "
        f"rowid - min(rowid) over (partition by __file) + 1 as __row "
        f"from {raw}_t"
    )


def _ensure_raw(con: duckdb.DuckDBPyConnection, tm: TableMapping, raw: str) -> None:
    """Create ``raw`` (``create_raw``) unless this load has made it already."""
    if not con.execute(
            "select count(*) from information_schema.tables "
            "where table_catalog = 'temp' and table_name = ?", [raw]).fetchall()[0][0]:
        create_raw(con, tm, raw)


def _evaluate_in_sandbox(con: duckdb.DuckDBPyConnection, tm: TableMapping, select: str,
                         into: str) -> int:
    """Temp table ``into`` of the warehouse connection ``con``: ``select`` (the mapping's
    expressions) evaluated over the source's rows in a sandbox, streamed over as Arrow
    record batches. The expressions never run where the warehouse or the file system is
    within reach.

    A section's ``where`` leaves rows out first (returns how many), then the expressions
    and their windows see the kept rows; with ``one_row_per`` the table gets ``__rank``
    (1 for the row kept of each key)."""
    stream = f"__stream_{into}"
    with sandbox_for(tm) as box:
        create_raw(box.con, tm, "raw")
        skipped = 0
        try:
            keys = _row_key_sql(tm, [r[0] for r in box.con.execute("describe raw").fetchall()])
            if "one_row_per" in keys:
                select += f", {_rank_sql(keys)} as __rank"
            if "where" in keys:
                skipped = box.con.execute(
                    f"select count(*) from (select ({keys['where']}) as __w from raw) "
                    "where not coalesce(__w, false)").fetchall()[0][0]
            batches = box.con.sql(f"select {select} from {_filtered(keys, 'raw')}"
                                  ).to_arrow_reader(100_000)
        except duckdb.Error as exc:
            raise CsMetricsError(
                f"{tm.origin}, table {tm.table}: the mapping's expressions could not be "
                f"evaluated ({str(exc).splitlines()[0]}); nothing was changed."
            ) from exc
        con.register(stream, batches)
        try:
            con.execute(f"create or replace temp table {into} as select * from {stream}")
        finally:
            con.unregister(stream)
    return int(skipped)


# --- typing and checking -----------------------------------------------------------------

_ENUM_REASON = {"status": "unknown_status", "priority": "unknown_priority",
                "severity": "unknown_severity"}


# A time followed by a zone: Z, a numeric offset (+02, +0200, +02:00, after a space or not),
# or a zone name (UTC, PST, Europe/Berlin, Etc/GMT+5).
_ZONED = r"\d:\d\d(:\d\d([.,]\d+)?)?\s*([zZ]|[+-]\d\d(:?\d\d)?|[A-Za-z][A-Za-z0-9_/+-]*)$"
_SPACED_OFFSET = r"\s+([+-]\d\d(:?\d\d)?)$"  # "10:00 +02:00": DuckDB wants "10:00+02:00"
_SMALL_Z = r"(\d)z$"  # "10:00z": DuckDB wants "10:00Z"


def _text_timestamp(text: str, tz: str) -> str:
    """SQL for the naive UTC timestamp written in the text ``text``.

    An explicit offset or zone in the text wins, as it does in Parquet and JSON; text
    without one is a time in the section's ``tz``. A zone DuckDB does not know (EDT, CEST)
    or trailing words make the value unparseable rather than silently read without them.
    """
    naive = f"try_cast({text} as timestamp)"
    if tz != "UTC":
        naive = f"timezone('UTC', timezone({sql_literal(tz)}, {naive}))"
    # DuckDB reads an offset only when it follows the time directly, and Z in capitals
    offset = f"regexp_replace(regexp_replace({text}, {sql_literal(_SPACED_OFFSET)}, '\\1'), " \
        f"{sql_literal(_SMALL_Z)}, '\\1Z')"
    zoned = f"cast(timezone('UTC', try_cast({offset} as timestamptz)) as timestamp)"
    return f"(case when regexp_matches({text}, {sql_literal(_ZONED)}) then {zoned} " \
        f"else {naive} end)"


def _label_list(v: str, src_type: str, delimiter: str) -> str:
    """SQL for a list of labels (``tags``) from mapped value ``v``: a list (Parquet, JSONL)
    or text split on ``delimiter``; labels trimmed, empty ones dropped, each kept once, in
    sorted order so a reload of the same labels in another order changes nothing. No labels
    at all is null."""
    st = src_type.upper()
    trim = "lambda x: trim(cast(x as varchar))"
    split = f"string_split(cast({v} as varchar), {sql_literal(delimiter)})"
    if st.endswith("[]") or st.startswith("LIST"):
        items = f"list_transform({v}, {trim})"
    elif st == "JSON":  # JSONL of mixed shapes: an array in one row, text in another
        items = (f"list_transform(case when json_type({v}) = 'ARRAY' then from_json({v}, "
                 f"'[\"VARCHAR\"]') else string_split({v} ->> '$', {sql_literal(delimiter)}) "
                 f"end, {trim})")
    else:
        items = f"list_transform({split}, {trim})"
    kept = f"list_sort(list_distinct(list_filter({items}, lambda x: coalesce(x, '') <> '')))"
    return f"(case when len({kept}) > 0 then {kept} end)"


def _typed(col: Column, v: str, src_type: str, tz: str, vmap: dict[str, tuple[str, ...]],
           list_delimiter: str = ",") -> str:
    """SQL giving the canonical value of column ``col`` from mapped value ``v``."""
    if col.type == "VARCHAR[]":
        return _label_list(v, src_type, list_delimiter)
    if src_type.upper() == "JSON":
        # JSONL with mixed types (an id that is 1 in one row, "A-2" in the next) reads as
        # JSON: the value's own text, never its JSON spelling with quotes
        v, src_type = f"({v} ->> '$')", "VARCHAR"
    if vmap:
        whens = " ".join(
            f"when cast({v} as varchar) in ({', '.join(sql_literal(s) for s in srcs)}) "
            f"then {sql_literal(target)}"
            for target, srcs in vmap.items()
        )
        fallback = "null" if col.enum is not None else f"cast({v} as varchar)"
        if col.enum is not None:
            # a value already canonical passes, so a map need not list the identity
            fallback = (
                f"case when cast({v} as varchar) in "
                f"({', '.join(sql_literal(e) for e in col.enum)}) then cast({v} as varchar) end"
            )
        v = f"(case {whens} else {fallback} end)"
        src_type = "VARCHAR"
    if col.enum is not None:
        norm = f"replace(replace(lower(trim(cast({v} as varchar))), ' ', '_'), '-', '_')"
        allowed = ", ".join(sql_literal(e) for e in col.enum)
        return f"(case when {norm} in ({allowed}) then {norm} end)"
    t = col.type
    st = src_type.upper()
    if t == "VARCHAR":
        return f"nullif(trim(cast({v} as varchar)), '')" if st == "VARCHAR" else \
            f"cast({v} as varchar)"
    if t == "TIMESTAMP":
        if st.startswith("TIMESTAMP WITH TIME ZONE") or st == "TIMESTAMPTZ":
            return f"cast(timezone('UTC', {v}) as timestamp)"
        if st.startswith("TIMESTAMP") or st == "DATE":
            ts = f"cast({v} as timestamp)"
        else:
            return _text_timestamp(f"trim(cast({v} as varchar))", tz)
        if tz != "UTC":
            ts = f"timezone('UTC', timezone({sql_literal(tz)}, {ts}))"
        return ts
    if t == "DATE":
        return f"try_cast({v} as date)" if st != "VARCHAR" else \
            f"try_cast(try_cast(trim({v}) as timestamp) as date)"
    if t == "DOUBLE":
        return f"try_cast({v} as double)"
    if t == "INTEGER":
        d = f"try_cast({v} as double)"
        return f"(case when {d} = trunc({d}) then try_cast({d} as integer) end)"
    if t == "BOOLEAN":
        if st == "BOOLEAN":
            return v
        s = f"lower(trim(cast({v} as varchar)))"
        return (
            f"(case when {s} in ('true', 't', 'yes', 'y', '1') then true "
            f"when {s} in ('false', 'f', 'no', 'n', '0') then false end)"
        )
    raise AssertionError(t)


def plausible_bounds(settings: Settings, now: datetime | None = None
                     ) -> dict[str, tuple[datetime, datetime]]:
    """(first, last) plausible moment of every timestamp and date column, by column name,
    for a load at ``now`` (settings [ingest]); one moment serves the whole load."""
    first, last = settings.ingest.window(now)
    hired = datetime.combine(settings.ingest.earliest_hired, datetime.min.time())
    return {col.name: (hired if col.type == "DATE" else first, last)
            for table in TABLES.values() for col in table.columns
            if col.type in ("TIMESTAMP", "DATE")}


def _build_checked(
    con: duckdb.DuckDBPyConnection, tm: TableMapping, exprs: dict[str, str], raw: str, tag: str,
    plausible: dict[str, tuple[datetime, datetime]] | None = None,
) -> tuple[int, int]:
    """Create temp table checked_<tag>: typed canonical columns plus the reject reason.

    Returns (rows the mapping's ``where`` skipped, rows merged into the latest row of their
    key by ``one_row_per``); neither kind reaches checked_<tag>."""
    table = TABLES[tm.table]
    plausible = plausible or plausible_bounds(load_settings())
    mapped_parts = ["__file", "__row"]
    conv_checks: list[tuple[str, str, str, str]] = []  # (flag col, value col, canon col, kind)
    for i, (canon, expr) in enumerate(exprs.items()):
        parsed = make_row_safe(expr, f"{tm.origin}, table {tm.table}, column {canon}")
        mapped_parts.append(f"({parsed.sql}) as {quote_ident('v_' + canon)}")
        for k, (inp, converted, kind) in enumerate(parsed.conversions):
            flag, val = f"__conv_{i}_{k}", f"__convin_{i}_{k}"
            mapped_parts.append(f"(({inp}) is not null and ({converted}) is null) as {flag}")
            mapped_parts.append(f"cast(({inp}) as varchar) as {val}")
            conv_checks.append((flag, val, canon, kind))
    skipped_filter = merged = 0
    reduce = ""
    if _mapped(tm):
        skipped_filter = _evaluate_in_sandbox(con, tm, ", ".join(mapped_parts),
                                              f"mapped_{tag}")
        if tm.one_row_per is not None:
            merged = int(con.execute(
                f"select count(*) from mapped_{tag} where __rank > 1").fetchall()[0][0])
            reduce = " where __rank = 1"
    else:  # a canonical file's own column names: nothing from outside is evaluated
        con.execute(f"create or replace temp view mapped_{tag} as "
                    f"select {', '.join(mapped_parts)} from {raw}")
    types = {
        r[0]: r[1] for r in con.execute(f"describe select * from mapped_{tag}").fetchall()
    }
    typed_parts = ["__file", "__row"]
    checks: list[tuple[str, str, str, str]] = []  # (condition, reason, column, value sql)
    for flag, val, canon, kind in conv_checks:
        reason = "unparseable_timestamp" if kind == "timestamp" or "timestamp" in kind.lower() \
            else "unparseable_value"
        checks.append((flag, reason, canon, val))
    vmaps = {c: tm.value_map(c) for c in exprs}
    as_is: set[str] = set()
    for col in table.columns:
        if col.name not in exprs:
            if col.name == "feedback_id" and tm.table == "feedback":
                continue  # derived below
            typed_parts.append(f"cast(null as {col.type}) as {quote_ident(col.name)}")
            continue
        v = quote_ident("v_" + col.name)
        src_type = types["v_" + col.name]
        if (tm.fmt != "csv" and src_type == col.type and not vmaps[col.name]
                and col.enum is None and col.name not in SCORE_RANGES
                and col.type != "VARCHAR[]"  # labels are trimmed and deduplicated
                and (col.type != "TIMESTAMP" or tm.timezone == "UTC")):
            # already the canonical type (typed Parquet): nothing to convert or check
            as_is.add(col.name)
            typed_parts.append(f"{v} as {quote_ident(col.name)}")
            continue
        typed = _typed(col, v, src_type, tm.timezone, vmaps[col.name], tm.tags_delimiter)
        typed_parts.append(f"{typed} as {quote_ident(col.name)}")
        typed_parts.append(f"cast({v} as varchar) as {quote_ident('raw_' + col.name)}")
    typed_parts += [c[0] for c in conv_checks] + [c[1] for c in conv_checks]
    con.execute(
        f"create or replace temp view typed_{tag} as select {', '.join(typed_parts)} "
        f"from mapped_{tag}{reduce}"
    )
    for col in table.columns:
        if col.name not in exprs:
            continue
        q, raw_q = quote_ident(col.name), quote_ident("raw_" + col.name)
        shown = f"cast({q} as varchar)" if col.name in as_is else raw_q
        if col.name in plausible:
            # years 0001-9999 (and 'infinity') parse, but one of them takes pages down
            lo, hi = (sql_literal(t.isoformat(sep=" ")) for t in plausible[col.name])
            checks.append((f"{q} < cast({lo} as timestamp) or {q} > cast({hi} as timestamp)",
                           "implausible_timestamp", col.name, shown))
        if col.non_negative:
            checks.append((f"{q} < 0", "negative_value", col.name, shown))
        if col.name in as_is:
            if col.required:
                checks.append((f"{q} is null", "missing_required_value", col.name,
                               f"cast({q} as varchar)"))
            continue
        if col.enum is not None:
            checks.append((f"{raw_q} is not null and {q} is null", _ENUM_REASON[col.name],
                           col.name, raw_q))
        elif col.type in ("TIMESTAMP", "DATE"):
            checks.append((f"{raw_q} is not null and {q} is null", "unparseable_timestamp",
                           col.name, raw_q))
        elif col.type not in ("VARCHAR", "VARCHAR[]"):  # a list of no labels is no tags
            checks.append((f"{raw_q} is not null and {q} is null", "unparseable_value",
                           col.name, raw_q))
        if col.required:
            checks.append((f"{q} is null", "missing_required_value", col.name, raw_q))
        if col.name in SCORE_RANGES:
            lo, hi = SCORE_RANGES[col.name]
            checks.append((f"{q} is not null and ({q} < {lo} or {q} > {hi})",
                           "score_out_of_range", col.name, raw_q))
    if tm.table == "tickets":
        if "first_response_at" in exprs:
            checks.append(("first_response_at < created_at", "response_before_created",
                           "first_response_at", "cast(first_response_at as varchar)"))
        if "resolved_at" in exprs:
            checks.append(("status = 'closed' and resolved_at < created_at",
                           "resolved_before_created", "resolved_at",
                           "cast(resolved_at as varchar)"))
    if tm.table == "outages" and "ended_at" in exprs:
        checks.append(("ended_at < started_at", "ended_before_started", "ended_at",
                       "cast(ended_at as varchar)"))
    if tm.table == "feedback":
        # not an error: a survey row with nothing in it is skipped and counted
        checks.append(("csat is null and nps is null and ces is null and comment is null",
                       "__empty", "comment", "null"))

    def case(idx: int) -> str:
        if not checks:
            return "null"
        return "case " + " ".join(
            f"when {c[0]} then {c[idx] if idx == 3 else sql_literal(c[idx])}" for c in checks
        ) + " end"

    canon_cols = [c.name for c in table.columns]
    select_cols = ", ".join(quote_ident(c) for c in canon_cols if c != "feedback_id" or
                            "feedback_id" in exprs)
    extra = ""
    if tm.table == "tickets" and "resolved_at" in exprs:
        # the current status wins: a resolved_at on a ticket that is not closed is cleared
        select_cols = select_cols.replace(
            '"resolved_at"', "case when status = 'closed' then resolved_at end as resolved_at")
        extra += ", status <> 'closed' and resolved_at is not null as __cleared"
    if tm.table == "feedback" and "feedback_id" not in exprs:
        # no id in the source: one derived from the ticket and the row, stable across loads
        extra += (", ticket_id || ':' || row_number() over (partition by ticket_id "
                  "order by __file, __row) as feedback_id")
    # A view, not a table: a big load reads its source a few times rather than writing every
    # row to a staging table first. It becomes a table only when duplicates need a window.
    con.execute(
        f"""
        create or replace temp view checked_{tag} as
        select __file, __row, {select_cols}{extra},
            {case(1)} as __reason, {case(2)} as __column, {case(3)} as __value
        from typed_{tag}
        """
    )
    return skipped_filter, merged


def _replace_checked(con: duckdb.DuckDBPyConnection, tag: str, select: str) -> None:
    """Materialise ``select`` (which reads checked_<tag>) as the new checked_<tag> table."""
    con.execute(f"create or replace temp table checked_next_{tag} as {select}")
    _drop_relation(con, f"checked_{tag}")
    con.execute(f"alter table checked_next_{tag} rename to checked_{tag}")


def _drop_relation(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop a temp view or table, whichever ``name`` is."""
    kind = con.execute(
        "select table_type from information_schema.tables "
        "where table_catalog = 'temp' and table_name = ?", [name]
    ).fetchall()
    if kind:
        con.execute(f"drop {'view' if kind[0][0] == 'VIEW' else 'table'} temp.main.{name}")


def _collapse_identical(con: duckdb.DuckDBPyConnection, table: str, tag: str) -> int:
    """Dimension tables often come from the ticket export itself, one row per ticket:
    identical rows merge into one (returns how many merged); conflicting ones are rejected
    as duplicates afterwards."""
    if table not in ("representatives", "customers", "outages"):
        return 0
    cols = ", ".join(quote_ident(c) for c in TABLES[table].column_names)
    _replace_checked(
        con, tag,
        f"""
        select * exclude (__exact) replace (
            case when __reason is null and __exact > 1 then '__collapsed'
                 else __reason end as __reason)
        from (select *, row_number() over (partition by {cols} order by __file, __row)
                  as __exact
              from checked_{tag})
        """,
    )
    return int(con.execute(
        f"select count(*) from checked_{tag} where __reason = '__collapsed'"
    ).fetchall()[0][0])


def _reject_duplicates(con: duckdb.DuckDBPyConnection, table: str, tag: str) -> None:
    """The first good row of an id loads; every later good row with the same id is rejected.

    Only the repeats are stored (their file and row): a window over every column of every
    checked row held a whole load in memory (3.6 GB for 2 million tickets with one repeated
    id). The window sees the id and the row's position, and checked_<tag> becomes a view
    that marks the stored repeats."""
    key = quote_ident(TABLES[table].key)
    con.execute(
        f"""
        create or replace temp table dups_{tag} as
        select __file, __row from (
            select __file, __row,
                row_number() over (partition by {key} order by __file, __row) as __n
            from checked_{tag} where __reason is null)
        where __n > 1
        """
    )
    base = f"checked_base_{tag}"
    _rename_relation(con, f"checked_{tag}", base)
    repeat = "d.__row is not null"
    con.execute(
        f"""
        create temp view checked_{tag} as
        select c.* replace (
            case when {repeat} then 'duplicate_key' else c.__reason end as __reason,
            case when {repeat} then {sql_literal(TABLES[table].key)} else c.__column end
                as __column,
            case when {repeat} then cast(c.{key} as varchar) else c.__value end as __value)
        from {base} c left join dups_{tag} d on d.__file = c.__file and d.__row = c.__row
        """
    )


def _rename_relation(con: duckdb.DuckDBPyConnection, name: str, new: str) -> None:
    """Rename a temp view or table, whichever ``name`` is."""
    kind = con.execute(
        "select table_type from information_schema.tables "
        "where table_catalog = 'temp' and table_name = ?", [name]
    ).fetchall()[0][0]
    con.execute(f"alter {'view' if kind == 'VIEW' else 'table'} temp.main.{name} "
                f"rename to {new}")


# --- the load ----------------------------------------------------------------------------


def _checksum(files: tuple[Path, ...]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.name).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _ensure_rejects(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        create table if not exists rejects (
            ingest_id varchar, table_name varchar, source_file varchar, source_row bigint,
            reason varchar, column_name varchar, value varchar, detail varchar, raw varchar)
        """
    )
    con.execute(
        """
        create table if not exists ingest_log (
            ingest_id varchar, ingested_at timestamp, table_name varchar, origin varchar,
            source_files varchar, checksum varchar, rows_read bigint, rows_loaded bigint,
            rows_rejected bigint, rejected_by_reason varchar, warnings varchar,
            collapsed bigint, skipped_empty bigint)
        """
    )
    # added later: a warehouse made before them gets them (null on its earlier loads)
    for column in ("skipped_filter", "merged"):
        con.execute(f"alter table ingest_log add column if not exists {column} bigint")


def ingest(
    source: str | Path,
    mapping: str | Path | None = None,
    db: str | Path | None = None,
    *,
    settings: Settings | None = None,
    replace: bool = False,
    rejects_csv: str | Path | None = None,
    warehouse: Warehouse | None = None,
    encoding: str | None = None,
    list_rejects: int | None = REJECTS_LISTED,
) -> IngestReport:
    """Validate and load a canonical folder, or the sources a mapping file names.

    Loading is an upsert by id (ticket_id, feedback_id, rep_id, customer_id, outage_id):
    ingesting the same source twice leaves the warehouse as it was. ``replace`` empties the
    warehouse first. ``encoding`` is the text encoding of CSV sources whose mapping section
    (or ``_format.toml``) does not name one. Every rejected row is counted; ``list_rejects``
    of each reason in each source file are listed with their raw row in the rejects table
    and ``rejects_csv`` (None: all of them).
    """
    started = time.perf_counter()
    m = read_mapping(mapping, source) if mapping else canonical_folder(source)
    if encoding:
        m = with_encoding(m, check_encoding(encoding, "--encoding"))
    exprs = check_mapping(m)  # fatal problems stop here, before the warehouse is touched
    refuse_empty_load(m)
    if rejects_csv:
        _check_rejects_path(Path(rejects_csv))
    settings = settings or load_settings()
    wh = warehouse or Warehouse(db)
    con = wh.connection()
    ingest_id = uuid.uuid4().hex[:12]
    memory = _limit_memory(con)
    reports: list[TableReport] = []
    raw_cache: dict[tuple, str] = {}
    try:
        con.execute("begin transaction")
        _ensure_rejects(con)
        if not replace:  # a warehouse of an earlier version: its missing columns, empty
            add_missing_ticket_columns(con)
        if replace:
            con.execute("drop view if exists tickets_src")
            for name in [*TABLES, "column_stats", "meta"]:
                con.execute(f"drop table if exists {name}")
            con.execute("delete from rejects")
            con.execute("delete from ingest_log")
        live = _incremental(con, m, settings, replace)
        plausible = plausible_bounds(settings)  # one "now" for the whole load
        for i, name in enumerate(LOAD_ORDER):
            tm = m.for_table(name)
            if tm is None:
                continue
            tag = f"{name}_{i}"
            key = (tm.files, tm.fmt, tm.delimiter, tm.encoding, tm.max_line_size)
            raw = raw_cache.get(key)
            if raw is None:
                raw = f"raw_{tag}"
                if not _mapped(tm):
                    create_raw(con, tm, raw)
                # else made when a reject needs its raw row (_ensure_raw): mapped rows are
                # evaluated in a sandbox with a copy of their own, and two copies at once
                # took 1.7 GB for 2 million rows
                raw_cache[key] = raw
            reports.append(_load_table(con, tm, exprs[name], raw, tag, ingest_id, live,
                                       plausible, list_rejects))
        loads_tickets = m.for_table("tickets") is not None
        if live and live["small"]:
            # a small load into a big warehouse: derive only the tickets it touches
            as_of = rebuild_derived(con, settings, DELTA if loads_tickets else None,
                                    changed=CHANGED, moved=live["moved"])
        else:
            if live and loads_tickets:
                _canonical_merge(con)
            as_of = rebuild_derived(con, settings, TICKETS_CANON if loads_tickets else None)
        _orphan_warnings(con, reports, only_loaded=live is not None,
                         loaded_tickets=DELTA if live and loads_tickets else None)
        for rep in reports:
            tm = m.for_table(rep.table)
            con.execute(
                "insert into ingest_log (ingest_id, ingested_at, table_name, origin, "
                "source_files, checksum, rows_read, rows_loaded, rows_rejected, "
                "rejected_by_reason, warnings, collapsed, skipped_empty, skipped_filter, "
                "merged) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    ingest_id, datetime.now(), rep.table, rep.origin, ";".join(rep.files),
                    _checksum(tm.files), rep.read, rep.loaded, rep.rejected_total,
                    _fmt_counts(rep.rejected), _fmt_counts(rep.warnings), rep.collapsed,
                    rep.skipped_empty, rep.skipped_filter, rep.merged,
                ],
            )
        con.execute("commit")
    except CsMetricsError:
        con.execute("rollback")
        raise
    except duckdb.Error as exc:
        con.execute("rollback")
        raise CsMetricsError(
            f"Loading {source} failed and nothing was changed: {str(exc).splitlines()[0]}"
        ) from exc
    except BaseException:
        con.execute("rollback")  # never leave the caller's connection inside a transaction
        raise
    finally:
        catalog_changed()  # tables, columns and meta as this load left them
        _drop_temp(con)
        con.execute(f"set memory_limit = {sql_literal(memory)}")
        release_copies(m)  # a long-running app must not keep a copy of every upload
        if warehouse is None and sys.exc_info()[0] is not None:
            wh.close()
    out_csv = Path(rejects_csv) if rejects_csv else wh.path.parent / "rejects.csv"
    try:
        listed = _write_rejects_csv(con, ingest_id, out_csv)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.filename and str(exc.filename) != str(out_csv):
            reason += f" ({exc.filename})"
        raise CsMetricsError(
            f"The load committed ({sum(r.loaded for r in reports):,d} rows loaded), but the "
            f"rejected rows could not be written to {out_csv}: {reason}; they are kept in the "
            "warehouse's rejects table. Pass --rejects with a writable path next time."
        ) from exc
    finally:
        if warehouse is None:
            wh.close()
    return IngestReport(
        ingest_id=ingest_id,
        db=wh.path,
        tables=tuple(reports),
        rejects_csv=out_csv,
        seconds=time.perf_counter() - started,
        as_of=as_of,
        rejects_listed=listed,
    )


INGEST_MEMORY_ENV = "CS_METRICS_INGEST_MEMORY"


def _limit_memory(con: duckdb.DuckDBPyConnection) -> str:
    """Bound the memory of a load (DuckDB spills the rest to disk); returns the old limit.

    $CS_METRICS_INGEST_MEMORY sets it (default 1GB); "none" leaves DuckDB's own limit.
    """
    old = con.execute("select current_setting('memory_limit')").fetchall()[0][0]
    limit = os.environ.get(INGEST_MEMORY_ENV, "1GB").strip()
    if limit.lower() != "none":
        try:
            con.execute(f"set memory_limit = {sql_literal(limit)}")
        except duckdb.Error as exc:
            raise CsMetricsError(
                f"${INGEST_MEMORY_ENV} = {limit!r} is not a memory size; use e.g. 2GB."
            ) from exc
    return old


def _drop_temp(con: duckdb.DuckDBPyConnection) -> None:
    """Staging lives in temp tables; a long-lived app connection must not keep them."""
    rows = con.execute(
        "select table_name, table_type from information_schema.tables "
        "where table_catalog = 'temp' order by table_type = 'VIEW' desc"
    ).fetchall()
    for name, kind in rows:
        what = "view" if kind == "VIEW" else "table"
        con.execute(f"drop {what} if exists temp.main.{quote_ident(name)}")


def _fmt_counts(pairs: tuple[tuple[str, int], ...]) -> str:
    return ";".join(f"{k}={v}" for k, v in pairs)


# A load this small, against the tickets already stored, refreshes the derived tables
# incrementally (a live inbox batch); larger ones rebuild them.
INCREMENTAL_SHARE = 0.05
DELTA = "tickets_delta_src"  # temp: the loaded canonical ticket rows of an incremental load
CHANGED = "changed_ticket_ids"  # temp: tickets whose surveys changed in it
ADDED = "loaded_rows_"  # temp, + table: the rows an incremental load added to it
REMOVED = "replaced_rows_"  # temp, + table: the stored rows it replaced


def _incremental(con: duckdb.DuckDBPyConnection, m, settings: Settings,  # noqa: ANN001
                 replace: bool) -> dict | None:
    """Whether this load can refresh the derived tables incrementally: the warehouse has its
    tickets, the load brings only tickets, events and surveys (representatives, customers
    and outages change many tickets at once), under the same settings and the same
    sentiment model (a new one scores every comment again). None: rebuild."""
    if replace or any(m.for_table(t) is not None
                      for t in ("representatives", "customers", "outages")):
        return None
    present = {r[0] for r in con.execute(
        "select table_name from information_schema.tables where table_schema = 'main'"
    ).fetchall()}
    if not {"tickets", "meta", "dimension_values"} <= present:
        return None
    stored = dict(con.execute("select key, value from meta").fetchall())
    if stored.get("settings") != settings.source:
        return None
    if SENTIMENT_TABLE in present and con.execute(
            f"select count(*) from {SENTIMENT_TABLE} where model is distinct from ?",
            [model_name()]).fetchall()[0][0]:
        return None
    size = con.execute("select count(*) from tickets").fetchall()[0][0]
    con.execute(f"create or replace temp table {CHANGED} (ticket_id varchar)")
    # moved: table -> (relation of the rows the load added, of the rows it removed or None)
    return {"size": int(size), "small": True, "moved": {}}


def _canonical_merge(con: duckdb.DuckDBPyConnection) -> None:
    """The full rebuild's source after all: every stored ticket with the loaded ones."""
    from cs_metrics.core.schema import TABLES as _T

    cols = ", ".join(quote_ident(c) for c in _T["tickets"].column_names)
    con.execute(
        f"create or replace temp table {TICKETS_CANON} as select {cols} from tickets_src "
        f"where ticket_id not in (select ticket_id from {DELTA}) "
        f"union all select {cols} from {DELTA}"
    )


def _load_table(
    con: duckdb.DuckDBPyConnection,
    tm: TableMapping,
    exprs: dict[str, str],
    raw: str,
    tag: str,
    ingest_id: str,
    live: dict | None = None,
    plausible: dict[str, tuple[datetime, datetime]] | None = None,
    listed: int | None = REJECTS_LISTED,
) -> TableReport:
    table = TABLES[tm.table]
    skipped_filter, merged = _build_checked(con, tm, exprs, raw, tag, plausible)
    collapsed = _collapse_identical(con, tm.table, tag)
    cleared = "count(*) filter (where __reason is null and __cleared)" \
        if tm.table == "tickets" and "resolved_at" in exprs else "0"
    early = "count(*) filter (where __reason is null and resolved_at < first_response_at)" \
        if tm.table == "tickets" and {"resolved_at", "first_response_at"} <= set(exprs) else "0"
    distinct = f"count(distinct {quote_ident(table.key)}) filter (where __reason is null)" \
        if table.key else "count(*) filter (where __reason is null)"
    # one pass over the checked rows for every figure of the report
    stats_sql = (
        f"select count(*), count(*) filter (where __reason is null), "
        f"count(*) filter (where __reason = '__empty'), {cleared}, {early}, {distinct}, "
        f"histogram(__reason) filter (where __reason is not null "
        f"and not starts_with(__reason, '__')) from checked_{tag}"
    )
    stats = con.execute(stats_sql).fetchall()[0]
    if stats[5] != stats[1]:  # repeated ids: mark every repeat, then count again
        _reject_duplicates(con, tm.table, tag)
        stats = con.execute(stats_sql).fetchall()[0]
    read, loaded, skipped, n_cleared, n_early, _, histogram = stats
    read += skipped_filter + merged  # every source row is read, whether mapped or not
    warnings: list[tuple[str, int]] = []
    if n_cleared:
        warnings.append(("resolved_at_cleared", int(n_cleared)))
    if n_early:
        warnings.append(("resolved_before_first_response", int(n_early)))
    counts = sorted((histogram or {}).items())
    cols = ", ".join(quote_ident(c) for c in table.column_names)
    stored = tm.table
    rows = f"select {cols} from checked_{tag} where __reason is null"
    good = f"({rows})"
    exists = con.execute(
        "select count(*) from information_schema.tables where table_schema = 'main' "
        "and table_name = ?",
        [stored],
    ).fetchall()[0][0]
    if live is not None and tm.table in ("feedback", "ticket_events"):
        # a live batch is small: its good rows are typed once into a table, not at every use
        con.execute(f"create or replace temp table {ADDED}{tm.table} as {rows}")
        good = f"{ADDED}{tm.table}"
    if live is not None and tm.table == "feedback":
        con.execute(f"insert into {CHANGED} select distinct ticket_id from {good}")
    if live is not None and tm.table in ("feedback", "ticket_events"):
        con.execute(f"create or replace temp table loaded_ids_{tm.table} as "
                    f"select distinct ticket_id from {good}")
    if tm.table == "tickets" and {"location_lat", "location_lon"} <= set(exprs):
        # suspicious coordinates are kept and counted; the map leaves them out
        located = "located_tickets_"
        con.execute(f"create or replace temp table {located} as select location_lat, "
                    f"location_lon, customer_id from {good} where location_lat is not null "
                    "and location_lon is not null")
        out, placeholder = coordinate_checks("location_lat", "location_lon", located)
        n_out, n_placeholder = con.execute(
            f"select count(*) filter (where {out}), count(*) filter (where {placeholder}) "
            f"from {located}").fetchall()[0]
        con.execute(f"drop table {located}")
        if n_out:
            warnings.append(("coordinates_out_of_range", int(n_out)))
        if n_placeholder:
            warnings.append(("coordinates_repeated", int(n_placeholder)))
    if tm.table == "tickets" and live is not None:
        # only the loaded rows: the derived tables are refreshed from them
        con.execute(f"create or replace temp table {DELTA} as select * from {good}")
        n = con.execute(f"select count(*) from {DELTA}").fetchall()[0][0]
        live["small"] = n <= INCREMENTAL_SHARE * live["size"]
    elif tm.table == "tickets":
        # the query table is rebuilt from these rows once every table of the load is in
        if not exists:
            con.execute(f"create temp view {TICKETS_CANON} as select * from {good}")
        else:
            con.execute(
                f"create temp table {TICKETS_CANON} as select {cols} from tickets_src "
                f"where ticket_id not in (select ticket_id from {good}) "
                f"union all select * from {good}"
            )
    elif not exists:
        con.execute(f"create table {stored} as select * from {good}")
        if live is not None and stored in ("feedback", "ticket_events"):
            live["moved"][stored] = (good, None)
    elif table.key:
        # an upsert by id: the stored rows of the loaded ids make way for the loaded ones
        # ("in" a set holding a null is never true: a null key must not empty the table)
        k = quote_ident(table.key)
        replaced = f"{stored} where {k} in (select {k} from {good} where {k} is not null)"
        if live is not None and tm.table == "feedback":
            # the stored rows that make way, read once: for the refresh of the derived
            # tables (a survey moved to another ticket leaves its old ticket changed too)
            con.execute(f"create or replace temp table {REMOVED}{stored} as "
                        f"select rowid as __rowid, * from {replaced}")
            con.execute(f"insert into {CHANGED} select ticket_id from {REMOVED}{stored}")
            con.execute(f"delete from {stored} where rowid in "
                        f"(select __rowid from {REMOVED}{stored})")
            live["moved"][stored] = (good, f"{REMOVED}{stored}")
        else:
            con.execute(f"delete from {replaced}")
        con.execute(f"insert into {stored} ({cols}) select {cols} from {good}")
    else:
        # Rows without an id (status events): the loaded ones not stored yet, each once. A
        # stored copy of a loaded event has its time, so only the stored rows of the loaded
        # span are compared and the table's other row groups are skipped.
        span = con.execute(f"select min(event_at), max(event_at) from {good}").fetchall()[0]
        new = (f"select distinct {cols} from {good} except select {cols} from {stored} "
               f"where event_at >= ? and event_at <= ? "
               f"and ticket_id in (select ticket_id from {good})")
        if live is not None:
            # the rows added, kept for the refresh of the column statistics
            con.execute(f"create or replace temp table {ADDED}new_{stored} as {new}",
                        list(span))
            con.execute(f"insert into {stored} ({cols}) select * from {ADDED}new_{stored}")
            live["moved"][stored] = (f"{ADDED}new_{stored}", None)
        elif span[0] is not None:
            con.execute(f"insert into {stored} ({cols}) {new}", list(span))
    # a reload of the same files replaces their earlier rejects instead of adding to them
    files = [str(f) for f in tm.files]
    con.execute(
        f"delete from rejects where table_name = ? and source_file in "
        f"({', '.join('?' for _ in files)})",
        [tm.table, *files],
    )
    if not counts:
        if tm.table != "tickets":  # the tickets' rows are still needed for the rebuild
            _drop_staging(con, tag)
        return _report(tm, files, read, loaded, counts, warnings, collapsed, skipped,
                       skipped_filter, merged)
    sentence = "case c.__reason " + " ".join(
        f"when {sql_literal(k)} then {sql_literal(v)}" for k, v in REJECT_REASONS.items()
    ) + " end"
    # Every reject is counted; the first ``listed`` of each reason in each file are listed
    # with their raw row. A file whose every row fails for one reason would otherwise give a
    # rejects table and rejects.csv larger than the source itself.
    cap = "" if listed is None else \
        f"qualify row_number() over (partition by __file, __reason order by __row) <= {int(listed)}"
    _ensure_raw(con, tm, raw)
    con.execute(
        f"""
        insert into rejects
        select ?, ?, list_extract(?::varchar[], c.__file), c.__row, c.__reason, c.__column,
            c.__value,
            {sentence} || ' (' || c.__column || ' = '
                || coalesce('"' || c.__value || '"', 'empty') || ')',
            to_json(r)
        from (select __file, __row, __reason, __column, __value from checked_{tag}
              where __reason is not null and not starts_with(__reason, '__')
              {cap}) c
        join {raw} r on r.__file = c.__file and r.__row = c.__row
        """,
        [ingest_id, tm.table, files],
    )
    if tm.table != "tickets":
        _drop_staging(con, tag)
    return _report(tm, files, read, loaded, counts, warnings, collapsed, skipped,
                   skipped_filter, merged)


def _drop_staging(con: duckdb.DuckDBPyConnection, tag: str) -> None:
    """Free a table's staging as soon as it has loaded, so big loads stay within memory."""
    _drop_relation(con, f"checked_{tag}")
    for relation in (f"checked_base_{tag}", f"dups_{tag}", f"typed_{tag}", f"mapped_{tag}"):
        _drop_relation(con, relation)


def _report(tm, files, read, loaded, counts, warnings, collapsed, skipped,
            skipped_filter: int = 0, merged: int = 0) -> TableReport:
    return TableReport(
        table=tm.table,
        origin=tm.origin,
        files=tuple(files),
        read=int(read),
        loaded=int(loaded),
        rejected=tuple((r, int(n)) for r, n in counts),
        warnings=tuple(warnings),
        collapsed=collapsed,
        skipped_empty=int(skipped),
        skipped_filter=int(skipped_filter),
        merged=int(merged),
    )


def _orphan_warnings(con: duckdb.DuckDBPyConnection, reports: list[TableReport],
                     only_loaded: bool = False, loaded_tickets: str | None = None) -> None:
    """Rows whose ticket the warehouse does not have: in the whole table, or (a live load
    into a big warehouse) among the tickets of this load's rows. ``loaded_tickets`` holds
    tickets this load stored, which need no look-up."""
    for i, rep in enumerate(reports):
        if rep.table not in ("feedback", "ticket_events"):
            continue
        if only_loaded:  # the loaded ids without a ticket first: usually none, then no scan
            # a live batch carries the ticket row of each of its events and surveys: only
            # the other ids are looked up, by a list that skips row groups without them
            others = f" except select ticket_id from {loaded_tickets}" if loaded_tickets \
                else ""
            ids = [r[0] for r in con.execute(
                f"select ticket_id from loaded_ids_{rep.table} where ticket_id is not null"
                f"{others}").fetchall()]
            found = {r[0] for r in con.execute(
                "select ticket_id from tickets where ticket_id = any(?)", [ids]
            ).fetchall()} if ids else set()
            orphans = [t for t in ids if t not in found]
            n = con.execute(
                f"select count(*) from {rep.table} where ticket_id in "
                f"(select unnest(?::varchar[]))", [orphans]
            ).fetchall()[0][0] if orphans else 0
        else:
            n = con.execute(
                f"select count(*) from {rep.table} x where not exists "
                "(select 1 from tickets t where t.ticket_id = x.ticket_id)"
            ).fetchall()[0][0]
        if n:
            name = "feedback_unknown_ticket" if rep.table == "feedback" else \
                "event_unknown_ticket"
            reports[i] = TableReport(
                **{**rep.__dict__, "warnings": (*rep.warnings, (name, int(n)))}
            )


def _write_rejects_csv(con: duckdb.DuckDBPyConnection, ingest_id: str, path: Path) -> int:
    """Write the load's listed rejects to ``path``, streamed in batches; returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    result = con.execute(
        f"select {', '.join(REJECT_COLUMNS)} from rejects where ingest_id = ? "
        "order by table_name, source_file, source_row",
        [ingest_id],
    )
    from cs_metrics.core.safe_text import csv_cell

    written = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(REJECT_COLUMNS)
        while rows := result.fetchmany(5_000):  # a batch at a time, never all in memory
            # analysts open this file in a spreadsheet, and ``value`` and ``raw`` are the
            # source's own text: a cell that would run as a formula gets a leading '
            writer.writerows([csv_cell(v) for v in row] for row in rows)
            written += len(rows)
    return written


def _check_rejects_path(path: Path) -> None:
    """Refuse, before anything loads, a rejects path that can never be written."""
    if path.is_dir():
        raise CsMetricsError(
            f"The rejects file {path} is a folder; pass --rejects with a file name, such as "
            f"{path / 'rejects.csv'}. Nothing was loaded."
        )
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CsMetricsError(
                    f"The rejects file {path} cannot be written: {parent} is a file, not a "
                    "folder; pass --rejects with a writable path. Nothing was loaded."
                )
            break
