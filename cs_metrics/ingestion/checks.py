"""Typing and checking the rows of a load inside DuckDB: each value cast to its canonical
type or rejected with a reason, duplicates collapsed or rejected, coordinates checked."""

from __future__ import annotations

from datetime import datetime

import duckdb

from cs_metrics.core.schema import SCORE_RANGES, TABLES, Column
from cs_metrics.core.settings import Settings, load_settings
from cs_metrics.ingestion.mapping import (
    TableMapping,
    make_row_safe,
    quote_ident,
    sql_literal,
)
from cs_metrics.ingestion.reading import (
    _evaluate_in_sandbox,
    _mapped,
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
