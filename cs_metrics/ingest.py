"""Sources + mapping -> validated rows + rejects -> warehouse.

Validation runs inside DuckDB: every source row is mapped, typed and checked in one pass;
rows that fail keep their reason and source row number in the ``rejects`` table and in
``rejects.csv``; good rows load. Mapping mistakes are found before anything is written.
"""

from __future__ import annotations

import csv
import hashlib
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from cs_metrics.errors import CsMetricsError
from cs_metrics.mapping import (
    Mapping,
    TableMapping,
    canonical_folder,
    make_row_safe,
    quote_ident,
    read_mapping,
    sql_literal,
)
from cs_metrics.schema import LOAD_ORDER, SCORE_RANGES, TABLES, Column
from cs_metrics.sentiment import SENTIMENT_TABLE, model_name
from cs_metrics.settings import Settings, load_settings
from cs_metrics.warehouse import Warehouse, catalog_changed, rebuild_derived

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
}

WARNINGS: dict[str, str] = {
    "resolved_at_cleared": "resolved_at on a ticket that is not closed was cleared",
    "resolved_before_first_response": "resolved_at is before first_response_at (kept)",
    "feedback_unknown_ticket": "feedback for a ticket that is not in the warehouse (kept)",
    "event_unknown_ticket": "a status event for a ticket that is not in the warehouse (kept)",
}

# Canonical ticket rows of the current load (old rows kept plus new ones), from which the
# query table ``tickets`` is rebuilt; the warehouse keeps one stored copy of the tickets.
TICKETS_CANON = "tickets_canon"

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

    def table(self, name: str) -> TableReport:
        for t in self.tables:
            if t.table == name:
                return t
        raise KeyError(name)


# --- reading sources ---------------------------------------------------------------------


def _reader_sql(tm: TableMapping, con: duckdb.DuckDBPyConnection | None = None) -> str:
    """DuckDB reader of the source; several files add their path as column __path. With
    ``con``, a single CSV file is read with the dialect sniffed once (``csv_options``)."""
    files = "[" + ", ".join(sql_literal(str(f)) for f in tm.files) + "]"
    path = ", filename='__path'" if len(tm.files) > 1 else ""
    if tm.fmt == "parquet":
        return f"read_parquet({files}, file_row_number=true{path})"
    if tm.fmt == "jsonl":
        return f"read_json({files}, format='newline_delimited'{path})"
    if con is not None and len(tm.files) == 1:
        return f"read_csv({files}, {csv_options(con, tm.files[0], tm.delimiter)})"
    opts = f"header=true, all_varchar=true{path}"
    if tm.delimiter:
        opts += f", delim={sql_literal(tm.delimiter)}"
    return f"read_csv({files}, {opts})"


# Sniffing a CSV file's dialect is most of the cost of reading a small one, and a load reads
# each file several times (its columns, the mapping's check, its rows; an inbox refresh
# looks at each batch first): the options found are kept per file version (resolved path,
# size, modification time) and passed explicitly, which reads exactly as the sniffer would.
_CSV_OPTIONS: dict[tuple, str] = {}
_CSV_GUARD = threading.Lock()


def csv_options(con: duckdb.DuckDBPyConnection, file: str | Path,
                delimiter: str | None = None) -> str:
    """The ``read_csv`` options (after the file list) that read ``file``, all columns as
    text with a header row, as DuckDB's sniffer reads it (``delimiter`` if given)."""
    plain = "header=true, all_varchar=true" + \
        (f", delim={sql_literal(delimiter)}" if delimiter else "")
    try:
        st = os.stat(file)
        key = (os.path.realpath(file), st.st_size, st.st_mtime_ns, delimiter)
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
    files = "[" + ", ".join(sql_literal(str(f)) for f in tm.files) + "]"
    return f"cast(list_position({files}, __path) as integer)"


def _source_columns(con: duckdb.DuckDBPyConnection, tm: TableMapping) -> list[str]:
    try:
        rows = con.execute(f"describe select * from {_reader_sql(tm, con)}").fetchall()
    except duckdb.Error as exc:
        raise CsMetricsError(
            f"{tm.origin}, table {tm.table}: cannot read {tm.files[0]} as {tm.fmt} "
            f"({str(exc).splitlines()[0]}); check the file and the format/delimiter settings."
        ) from exc
    return [r[0] for r in rows if r[0] not in ("__path", "file_row_number")]


def _resolved_columns(tm: TableMapping, source_cols: list[str]) -> dict[str, str]:
    """canonical column -> SQL expression over the source."""
    if not tm.columns:  # canonical file: identity on the columns it has
        return {c: quote_ident(c) for c in TABLES[tm.table].column_names if c in source_cols}
    out = {}
    for canon, value in tm.columns:
        out[canon] = quote_ident(value) if value in source_cols else value
    return out


def check_mapping(mapping: Mapping) -> dict[str, dict[str, str]]:
    """Fatal checks, run before anything is written: columns exist, expressions bind.

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
        safe_all = [make_row_safe(expr).sql for expr in exprs.values()]
        try:  # every expression binds in one query (each reads the file's header again)
            con.execute(f"select {', '.join(safe_all) or '1'} from {_reader_sql(tm, con)} "
                        "limit 0").fetchall()
            resolved[tm.table] = exprs
            continue
        except duckdb.Error:
            pass  # find which one does not, for the message
        for canon, expr in exprs.items():
            safe = make_row_safe(expr).sql
            try:
                con.execute(f"select {safe} from {_reader_sql(tm, con)} limit 0"
                            ).fetchall()
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


# --- typing and checking -----------------------------------------------------------------

_ENUM_REASON = {"status": "unknown_status", "priority": "unknown_priority",
                "severity": "unknown_severity"}


def _typed(col: Column, v: str, src_type: str, tz: str, vmap: dict[str, tuple[str, ...]]) -> str:
    """SQL giving the canonical value of column ``col`` from mapped value ``v``."""
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
            ts = f"try_cast(trim(cast({v} as varchar)) as timestamp)"
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


def _build_checked(
    con: duckdb.DuckDBPyConnection, tm: TableMapping, exprs: dict[str, str], raw: str, tag: str
) -> None:
    """Create temp table checked_<tag>: typed canonical columns plus the reject reason."""
    table = TABLES[tm.table]
    mapped_parts = ["__file", "__row"]
    conv_checks: list[tuple[str, str, str, str]] = []  # (flag col, value col, canon col, kind)
    for i, (canon, expr) in enumerate(exprs.items()):
        parsed = make_row_safe(expr)
        mapped_parts.append(f"({parsed.sql}) as {quote_ident('v_' + canon)}")
        for k, (inp, converted, kind) in enumerate(parsed.conversions):
            flag, val = f"__conv_{i}_{k}", f"__convin_{i}_{k}"
            mapped_parts.append(f"(({inp}) is not null and ({converted}) is null) as {flag}")
            mapped_parts.append(f"cast(({inp}) as varchar) as {val}")
            conv_checks.append((flag, val, canon, kind))
    con.execute(
        f"create or replace temp view mapped_{tag} as select {', '.join(mapped_parts)} from {raw}"
    )
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
                and (col.type != "TIMESTAMP" or tm.timezone == "UTC")):
            # already the canonical type (typed Parquet): nothing to convert or check
            as_is.add(col.name)
            typed_parts.append(f"{v} as {quote_ident(col.name)}")
            continue
        typed = _typed(col, v, src_type, tm.timezone, vmaps[col.name])
        typed_parts.append(f"{typed} as {quote_ident(col.name)}")
        typed_parts.append(f"cast({v} as varchar) as {quote_ident('raw_' + col.name)}")
    typed_parts += [c[0] for c in conv_checks] + [c[1] for c in conv_checks]
    con.execute(
        f"create or replace temp view typed_{tag} as select {', '.join(typed_parts)} "
        f"from mapped_{tag}"
    )
    for col in table.columns:
        if col.name not in exprs:
            continue
        q, raw_q = quote_ident(col.name), quote_ident("raw_" + col.name)
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
        elif col.type != "VARCHAR":
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
    """The first row of an id loads; every later row with the same id is rejected."""
    key = quote_ident(TABLES[table].key)
    _replace_checked(
        con, tag,
        f"""
        select * exclude (__n) replace (
            case when __reason is null and __n > 1 then 'duplicate_key' else __reason end
                as __reason,
            case when __reason is null and __n > 1 then {sql_literal(TABLES[table].key)}
                 else __column end as __column,
            case when __reason is null and __n > 1 then cast({key} as varchar)
                 else __value end as __value
        ) from (
            select *, row_number() over (partition by {key}, __reason is null
                                         order by __file, __row) as __n
            from checked_{tag})
        """,
    )


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


def ingest(
    source: str | Path,
    mapping: str | Path | None = None,
    db: str | Path | None = None,
    *,
    settings: Settings | None = None,
    replace: bool = False,
    rejects_csv: str | Path | None = None,
    warehouse: Warehouse | None = None,
) -> IngestReport:
    """Validate and load a canonical folder, or the sources a mapping file names.

    Loading is an upsert by id (ticket_id, feedback_id, rep_id, customer_id, outage_id):
    ingesting the same source twice leaves the warehouse as it was. ``replace`` empties the
    warehouse first.
    """
    started = time.perf_counter()
    m = read_mapping(mapping, source) if mapping else canonical_folder(source)
    exprs = check_mapping(m)  # fatal problems stop here, before the warehouse is touched
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
        if replace:
            con.execute("drop view if exists tickets_src")
            for name in [*TABLES, "column_stats", "meta"]:
                con.execute(f"drop table if exists {name}")
            con.execute("delete from rejects")
            con.execute("delete from ingest_log")
        live = _incremental(con, m, settings, replace)
        for i, name in enumerate(LOAD_ORDER):
            tm = m.for_table(name)
            if tm is None:
                continue
            tag = f"{name}_{i}"
            key = (tm.files, tm.fmt, tm.delimiter)
            raw = raw_cache.get(key)
            if raw is None:
                raw = f"raw_{tag}"
                drop = "__path" if len(tm.files) > 1 else ""
                if tm.fmt == "parquet":
                    con.execute(
                        f"create or replace temp view {raw} as select * exclude "
                        f"(file_row_number{', ' + drop if drop else ''}), "
                        f"{_file_index(tm)} as __file, file_row_number + 1 as __row "
                        f"from {_reader_sql(tm)}"
                    )
                else:
                    # a materialised table keeps file order in its rowid: the source row
                    cols = f"* exclude (__path), {_file_index(tm)} as __file" if drop \
                        else f"*, {_file_index(tm)} as __file"
                    con.execute(
                        f"create or replace temp table {raw}_t as select {cols} "
                        f"from {_reader_sql(tm, con)}"
                    )
                    con.execute(
                        f"create or replace temp view {raw} as select *, "
                        f"rowid - min(rowid) over (partition by __file) + 1 as __row "
                        f"from {raw}_t"
                    )
                raw_cache[key] = raw
            reports.append(_load_table(con, tm, exprs[name], raw, tag, ingest_id, live))
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
                "insert into ingest_log values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    ingest_id, datetime.now(), rep.table, rep.origin, ";".join(rep.files),
                    _checksum(tm.files), rep.read, rep.loaded, rep.rejected_total,
                    _fmt_counts(rep.rejected), _fmt_counts(rep.warnings), rep.collapsed,
                    rep.skipped_empty,
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
        if warehouse is None and sys.exc_info()[0] is not None:
            wh.close()
    out_csv = Path(rejects_csv) if rejects_csv else wh.path.parent / "rejects.csv"
    try:
        _write_rejects_csv(con, ingest_id, out_csv)
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
    from cs_metrics.schema import TABLES as _T

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
) -> TableReport:
    table = TABLES[tm.table]
    _build_checked(con, tm, exprs, raw, tag)
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
        return _report(tm, files, read, loaded, counts, warnings, collapsed, skipped)
    sentence = "case c.__reason " + " ".join(
        f"when {sql_literal(k)} then {sql_literal(v)}" for k, v in REJECT_REASONS.items()
    ) + " end"
    con.execute(
        f"""
        insert into rejects
        select ?, ?, list_extract(?::varchar[], c.__file), c.__row, c.__reason, c.__column,
            c.__value,
            {sentence} || ' (' || c.__column || ' = '
                || coalesce('"' || c.__value || '"', 'empty') || ')',
            to_json(r)
        from checked_{tag} c
        join {raw} r on r.__file = c.__file and r.__row = c.__row
        where c.__reason is not null and not starts_with(c.__reason, '__')
        """,
        [ingest_id, tm.table, files],
    )
    if tm.table != "tickets":
        _drop_staging(con, tag)
    return _report(tm, files, read, loaded, counts, warnings, collapsed, skipped)


def _drop_staging(con: duckdb.DuckDBPyConnection, tag: str) -> None:
    """Free a table's staging as soon as it has loaded, so big loads stay within memory."""
    _drop_relation(con, f"checked_{tag}")
    for view in (f"typed_{tag}", f"mapped_{tag}"):
        con.execute(f"drop view if exists {view}")


def _report(tm, files, read, loaded, counts, warnings, collapsed, skipped) -> TableReport:
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


def _write_rejects_csv(con: duckdb.DuckDBPyConnection, ingest_id: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = con.execute(
        f"select {', '.join(REJECT_COLUMNS)} from rejects where ingest_id = ? "
        "order by table_name, source_file, source_row",
        [ingest_id],
    ).fetchall()
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(REJECT_COLUMNS)
        writer.writerows(rows)
