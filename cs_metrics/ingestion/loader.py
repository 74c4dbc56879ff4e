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
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from cs_metrics.core.comment_scores import SENTIMENT_TABLE, model_name
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.schema import LOAD_ORDER, TABLES
from cs_metrics.core.settings import Settings, load_settings
from cs_metrics.core.warehouse import (
    Warehouse,
    add_missing_ticket_columns,
    catalog_changed,
    rebuild_derived,
)
from cs_metrics.ingestion.checks import (
    PLACEHOLDER_MIN_ROWS,  # noqa: F401  (imported from here by tests)
    PLACEHOLDER_MIN_SHARE,  # noqa: F401
    REJECT_REASONS,
    WARNINGS,  # noqa: F401  (imported from here by cs_metrics.ingestion.quality)
    _build_checked,
    _collapse_identical,
    _drop_relation,
    _reject_duplicates,
    coordinate_checks,
    plausible_bounds,
)
from cs_metrics.ingestion.mapping import (
    TableMapping,
    canonical_folder,
    check_encoding,
    quote_ident,
    read_mapping,
    sql_literal,
)
from cs_metrics.ingestion.reading import (
    INGEST_MEMORY_ENV,
    _ensure_raw,
    _mapped,
    check_mapping,
    create_raw,
    refuse_empty_load,
    with_encoding,
)
from cs_metrics.ingestion.text_encodings import release_copies

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
