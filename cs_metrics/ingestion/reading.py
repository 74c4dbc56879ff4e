"""Reading source files for a load: the reader SQL of each mapped table, CSV dialects,
the raw staging tables and the checks of a mapping against its files."""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from pathlib import Path

import duckdb

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.schema import TABLES
from cs_metrics.ingestion._mapping_sql import Sandbox
from cs_metrics.ingestion.mapping import (
    MAX_LINE_SIZE,
    ROW_KEYS,
    Mapping,
    TableMapping,
    make_row_safe,
    quote_ident,
    sql_literal,
)
from cs_metrics.ingestion.text_encodings import (
    _csv_sources,
    read_error,
    read_paths,
)


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


INGEST_MEMORY_ENV = "CS_METRICS_INGEST_MEMORY"


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
