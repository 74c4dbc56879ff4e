"""Rebuilding the derived tables after a load: in full, or for a small load incrementally
(only the tickets it touches), with the surveys, feedback facts and the data's "now"."""

from __future__ import annotations

from datetime import datetime

import duckdb

from cs_metrics.core._derive import (
    _CANONICAL_SQL,
    _LATEST_PLAUSIBLE,
    FEEDBACK_FACTS_SELECT,
    SRC_VIEW_SQL,
    _derive_params,
    _derived_sql,
    _store_activity,
)
from cs_metrics.core._derive_sla import (
    _business_calendar,
    _business_sla,
    _pass_deadlines,
    _sla_dimensions,
    _sla_targets,
    _split_calendars,
)
from cs_metrics.core._derive_stats import (
    _column_stats,
    _columns_of,
    _tables,
    _update_column_stats,
    dimension_counts,
)
from cs_metrics.core.settings import Settings, load_settings


def add_missing_ticket_columns(con: duckdb.DuckDBPyConnection) -> bool:
    """Give a warehouse written before a canonical ticket column existed (``tags``, the source
    due times) that column, empty, so a load can merge its stored rows with new ones; the
    load then rebuilds the derived columns. Returns whether any column was added."""
    from cs_metrics.core.schema import TABLES

    if "tickets" not in _tables(con):
        return False
    have = set(_columns_of(con, "tickets"))
    missing = [c for c in TABLES["tickets"].columns if c.name not in have]
    for column in missing:  # names and types from the schema, never from data
        con.execute(f'alter table tickets add column "{column.name}" {column.type}')
    if missing:
        con.execute(SRC_VIEW_SQL)
    return bool(missing)


def rebuild_derived(
    con: duckdb.DuckDBPyConnection,
    settings: Settings | None = None,
    source: str | None = None,
    changed: str | None = None,
    moved: dict[str, tuple[str, str | None]] | None = None,
) -> datetime | None:
    """Rebuild the query table ``tickets`` from canonical ticket rows and the other tables.

    ``source`` is a relation of canonical ticket rows (a load passes the merged old and new
    rows); by default the current ones (view ``tickets_src``). There is one stored copy of
    the tickets: the canonical columns plus everything derived at load. Runs inside the
    caller's transaction, so readers switch from the old table to the new one at commit.

    With ``changed`` (a relation with a ``ticket_id`` column: tickets whose surveys changed)
    the refresh is incremental, for small live loads: ``source`` then holds only the new
    and updated canonical rows, only those tickets and the ``changed`` ones are derived
    again, the SLA flags of the other unanswered or unresolved tickets move with the
    data's "now" in place, and the side tables are adjusted, not rebuilt. The result is
    the same as a rebuild. ``moved`` names, per other table the load changed, the
    relations of the rows it added and of the rows it removed (or None): their column
    statistics move by the difference (a table the load changed that is not named is
    counted again), and the surveys added need not be looked up again.
    """
    settings = settings or load_settings()
    tables = _tables(con)
    if changed is not None and {"tickets", "meta", "dimension_values"} <= tables:
        return _refresh_derived(con, settings, tables, source, changed, moved)
    if source is None:
        if "tickets" not in tables:
            return None
        # the query table is about to be replaced: read its canonical rows from a copy
        con.execute("create or replace temp table tickets_src_copy as select * from tickets_src")
        source = "tickets_src_copy"
    window = settings.ingest.window()
    # one pass over the canonical rows: the data's "now" and the segments in use
    latest, segments = con.execute(
        f"select {_LATEST_PLAUSIBLE}, list(distinct customer_segment) from {source}", window
    ).fetchall()[0]
    as_of = _as_of(con, tables, latest, window=window)
    _sla_targets(con, settings, tables, segments)
    if "feedback" in tables:
        from cs_metrics.core.comment_scores import SENTIMENT_TABLE, update_comment_sentiment

        update_comment_sentiment(con)
        tables.add(SENTIMENT_TABLE)
    dims = _sla_dimensions(settings)
    sql = _derived_sql(tables, source, business_sla=_business_sla(settings),
                       split=_split_calendars(con), sla_dims=tuple(dims))
    _business_calendar(con, settings, window)
    con.execute(sql, _derive_params(as_of, window, dims))
    _store_activity(con, "tickets", "ticket_events" if "ticket_events" in tables else None)
    _after_derived(con, settings, tables, as_of, window)
    return as_of


def _plausible_meta(con: duckdb.DuckDBPyConnection, window: tuple[datetime, datetime],
                    rows: str = "tickets") -> int:
    """Tickets of ``rows`` (test tickets aside) with a timestamp outside ``window``: written
    by other means than a load (which refuses them). Pages say how many there are."""
    return int(con.execute(
        f"select count(*) from {rows} where not is_test and ("
        + " or ".join(f"{c} not between $1 and $2"
                      for c in ("created_at", "first_response_at", "resolved_at"))
        + ")", list(window)).fetchall()[0][0])


def _after_derived(con: duckdb.DuckDBPyConnection, settings: Settings, tables: set[str],
                   as_of: datetime | None, window: tuple[datetime, datetime]) -> None:
    """A full rebuild's side tables: order, the source view, filter lists, survey facts,
    meta and column statistics."""
    # Sources usually arrive in created_at order. A parallel join keeps each thread's rows in
    # order but may emit the threads' runs in another order: a few sorted runs skip row
    # groups on date filters as well as one does, so only a disordered table (a source in
    # another order) is sorted, which is the slowest step of a big load.
    inversions = con.execute(
        "select count(*) from (select created_at < lag(created_at) over (order by rowid) "
        "as inv from tickets) where inv"
    ).fetchall()[0][0]
    if inversions > SORTED_RUNS_ALLOWED:
        con.execute(
            "create or replace table tickets as select * from tickets "
            "order by created_at, ticket_id"
        )
    con.execute(SRC_VIEW_SQL)
    con.execute("drop table if exists temp.main.tickets_src_copy")
    # the filter lists every page shows: a few hundred rows instead of a scan per dimension
    con.execute("create or replace table dimension_values as "
                + dimension_counts("tickets"))
    if "feedback" in tables:
        # with each comment's sentiment score (cs_metrics.core.comment_scores)
        con.execute(
            "create or replace table feedback_facts as select ff.*, s.sentiment "
            f"from ({FEEDBACK_FACTS_SELECT}) ff "
            "left join comment_sentiment s on s.comment = ff.comment"
        )
    else:
        con.execute("drop table if exists feedback_facts")
    # the span of the date presets: tickets created in the plausible window
    first, last = con.execute(
        "select min(created_at), max(created_at) from tickets where not is_test "
        "and created_at between ? and ?", list(window)
    ).fetchall()[0]
    con.execute(
        "create or replace table meta as select * from (values "
        "('as_of', ?), ('settings', ?), ('derived_at', ?), ('first_created', ?), "
        "('last_created', ?), ('plausible_from', ?), ('plausible_to', ?), "
        "('implausible_tickets', ?)) v(key, value)",
        [
            as_of.isoformat(sep=" ") if as_of else None,
            settings.source,
            datetime.now().isoformat(sep=" ", timespec="seconds"),
            first.isoformat(sep=" ") if first else None,
            last.isoformat(sep=" ") if last else None,
            window[0].isoformat(sep=" "),
            window[1].isoformat(sep=" "),
            str(_plausible_meta(con, window)),
        ],
    )
    _column_stats(con)


SORTED_RUNS_ALLOWED = 64


def _refresh_derived(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    tables: set[str],
    source: str | None,
    changed: str,
    moved: dict[str, tuple[str, str | None]] | None,
) -> datetime | None:
    """``rebuild_derived`` for a small load: derive again only the tickets it touches.

    No step reads every ticket: the touched tickets' stored rows are found as
    ``_stored_rows`` tells and read by row id, the side tables move by the difference
    between those rows and their new versions, and the SLA flags that move with "now" are
    set in place.
    """
    from cs_metrics.core.schema import TABLES

    cols = ", ".join(TABLES["tickets"].column_names)
    meta = dict(con.execute("select key, value from meta").fetchall())
    previous = datetime.fromisoformat(meta["as_of"]) if meta.get("as_of") else None
    window = settings.ingest.window()
    latest = con.execute(
        f"select {_LATEST_PLAUSIBLE} from {source}", window).fetchall()[0][0] \
        if source else None
    stamps = [s for s in (latest, previous) if s is not None]
    as_of = _as_of(con, tables, max(stamps) if stamps else None, since=previous,
                   window=window)
    # The tickets derived again: the loaded ones and those whose surveys or status events
    # changed (their activity figures are stored per ticket).
    new = f"select ticket_id from {source}" if source else \
        "select null::varchar as ticket_id where false"
    events_added = (moved or {}).get("ticket_events", (None, None))[0]
    evented = f" union select ticket_id from {events_added} where ticket_id is not null" \
        if events_added else ""
    con.execute(
        f"create or replace temp table derive_ids as {new} union "
        f"select ticket_id from {changed} where ticket_id is not null{evented}")
    _stored_rows(con, source)
    # with the stored canonical rows of the tickets derived again for their surveys only
    stored = f"select {cols} from ({_CANONICAL_SQL.format(rows='old_rows')}) o"
    parts = [f"select {cols} from {source}",
             f"{stored} where o.ticket_id not in (select ticket_id from {source})"] \
        if source else [stored]
    con.execute("create or replace temp table derive_src as " + " union all ".join(parts))
    segments = [r[0] for r in con.execute(
        "select value from dimension_values where dimension = 'customer_segment' union "
        "select distinct customer_segment from derive_src"
    ).fetchall()]
    _sla_targets(con, settings, tables, segments)
    surveys = None
    if "feedback" in tables:
        added, removed = (None, None) if moved is None else \
            moved.get("feedback", ("(select * from feedback where false)", None))
        _derive_surveys(con, added)
        surveys = "derive_surveys"
        from cs_metrics.core.comment_scores import SENTIMENT_TABLE, update_comment_sentiment

        # only these surveys' comments can be new: a scan of every comment costs a second;
        # only the replaced surveys' comments can have lost their last survey
        update_comment_sentiment(con, surveys, dropped=removed)
        tables.add(SENTIMENT_TABLE)
    events = None
    if "ticket_events" in tables:
        # only the derived tickets' histories are read again
        con.execute("create or replace temp table derive_events as select * from ticket_events "
                    "where ticket_id in (select ticket_id from derive_ids)")
        events = "derive_events"
    dims = _sla_dimensions(settings)
    sql = _derived_sql(tables, "derive_src", surveys, _business_sla(settings),
                       _split_calendars(con), tuple(dims)).replace(
        "create or replace table tickets as", "create or replace temp table tickets_delta as", 1)
    _business_calendar(con, settings, window)
    con.execute(sql, _derive_params(as_of, window, dims))
    _store_activity(con, "tickets_delta", events)
    columns = {name: _columns_of(con, name) for name in ("tickets", "tickets_src")}
    if _columns_of(con, "tickets_delta") != columns["tickets"]:
        # a warehouse written by an earlier version derives other columns: rebuild it all
        merged = f"select {cols} from tickets_src"
        if source:
            merged = (f"{merged} where ticket_id not in (select ticket_id from {source}) "
                      f"union all select {cols} from {source}")
        con.execute(f"create or replace temp table tickets_src_copy as {merged}")
        return rebuild_derived(con, settings, "tickets_src_copy")
    # The other tickets keep their rows, except the SLA flags that move with "now".
    passed = _pass_deadlines(con, settings, previous, as_of, window)
    stats_before = _ticket_counts(con, "old_rows", columns)
    con.execute("delete from tickets where rowid in (select __rowid from old_rows)")
    con.execute("insert into tickets select * from tickets_delta")
    # the side tables move by what leaves and what comes in
    con.execute(
        "create or replace table dimension_values as select dimension, value, "
        "sum(tickets) as tickets from (select * from dimension_values union all "
        f"select dimension, value, -tickets from ({dimension_counts('old_rows')}) "
        f"union all {dimension_counts('tickets_delta')}) group by dimension, value "
        "having sum(tickets) > 0"
    )
    if "feedback" in tables:
        _refresh_feedback_facts(con, tables)
    first, last = con.execute(
        "select min(created_at), max(created_at) from tickets_delta where not is_test "
        "and created_at between ? and ?", list(window)
    ).fetchall()[0]
    # the rows that leave and those that come in, each counted against this window (the
    # window's end moves with the clock; rows past it come only from direct writes)
    if "implausible_tickets" in meta:
        outside = int(meta["implausible_tickets"]) - _plausible_meta(con, window, "old_rows") \
            + _plausible_meta(con, window, "tickets_delta")
    else:  # derived by a version that did not count them: counted once
        outside = _plausible_meta(con, window)
    meta["implausible_tickets"] = str(max(outside, 0))
    meta["plausible_from"] = window[0].isoformat(sep=" ")
    meta["plausible_to"] = window[1].isoformat(sep=" ")
    if first is not None:
        known = meta.get("first_created")
        first = min(first, datetime.fromisoformat(known)) if known else first
        known = meta.get("last_created")
        last = max(last, datetime.fromisoformat(known)) if known else last
        meta["first_created"] = first.isoformat(sep=" ")
        meta["last_created"] = last.isoformat(sep=" ")
    meta["as_of"] = as_of.isoformat(sep=" ") if as_of else None
    meta["derived_at"] = datetime.now().isoformat(sep=" ", timespec="seconds")
    con.execute("delete from meta")
    con.executemany("insert into meta values (?, ?)", list(meta.items()))
    stats_after = _ticket_counts(con, "tickets_delta", columns)
    for column, n in passed.items():  # null -> false on rows that stayed
        stats_after[("tickets", column)] = stats_after.get(("tickets", column), 0) + n
    _update_column_stats(con, stats_before, stats_after, moved)
    for name in ("old_rows", "derive_ids", "derive_src", "derive_surveys", "derive_events",
                 "tickets_delta"):
        con.execute(f"drop table if exists temp.main.{name}")
    return as_of


def _derive_surveys(con: duckdb.DuckDBPyConnection, added: str | None) -> None:
    """Temp table ``derive_surveys``: every survey of the tickets in ``derive_ids``, read
    once for their sums, the comments' sentiment and the survey facts.

    The surveys table is stored in the order surveys came, so a survey's ticket id says
    little about where it is: a look-up by id skips only the row groups whose id range
    misses every id asked for. So the look-ups are kept few. A stored ticket's surveys were
    counted at its last derive (``fb_n``), and any change to them since is in this load: a
    stored ticket without surveys then has exactly the surveys the load ``added`` for it.
    Only the tickets that had surveys, and the new ones (a survey can arrive before its
    ticket; new ids usually sort apart from the stored ones), are looked up.
    """
    if added is None or "fb_n" not in _columns_of(con, "old_rows"):
        # what the load added is not known: every derived ticket is looked up
        con.execute("create or replace temp table derive_surveys as select * from feedback "
                    "where ticket_id in (select ticket_id from derive_ids)")
        return
    had = [r[0] for r in con.execute(
        "select ticket_id from old_rows where fb_n > 0").fetchall()]
    new = [r[0] for r in con.execute(
        "select ticket_id from derive_ids anti join old_rows using (ticket_id)").fetchall()]
    # A few ids are looked up one by one (each reads a few row groups): a list is looked
    # for between its first and last id, which for ids spread out is the whole table.
    few = len(had) <= 4
    parts = ["select * from feedback where ticket_id = ?"] * len(had) if few \
        else ["select * from feedback where ticket_id = any(?)"]
    params: list = list(had) if few else [had]
    parts += [
        "select * from feedback where ticket_id = any(?)",
        f"select * from {added} where ticket_id in "
        "(select ticket_id from old_rows where coalesce(fb_n, 0) = 0)",
    ]
    params.append(new)
    con.execute("create or replace temp table derive_surveys as "
                + " union all ".join(parts), params)


def _stored_rows(con: duckdb.DuckDBPyConnection, source: str | None) -> None:
    """Temp table ``old_rows``: the stored rows (with ``__rowid``) of the tickets in
    ``derive_ids``.

    Finding a few hundred ids among millions by ``ticket_id`` decodes every stored id. A
    loaded ticket row carries its creation time, which rarely changes, so the rows created
    at those moments are found first (a cheap scan of one timestamp column) and kept where
    the id matches. Only the ids not found that way (new tickets, tickets whose creation
    time changed, tickets touched only through their surveys) are looked for by id: a
    scan for a list of ids skips the row groups outside the list's first and last id, and
    new ids usually sort apart from the stored ones.
    """
    con.execute("create or replace temp table located (__rowid bigint, ticket_id varchar)")
    if source:
        moments = [r[0] for r in con.execute(
            f"select distinct created_at from {source} where created_at is not null"
        ).fetchall()]
        if moments:
            # materialised first: a filter on the id in the same scan would decode every id
            con.execute("create or replace temp table located_at as select rowid as __rowid, "
                        "ticket_id from tickets where created_at = any(?)", [moments])
            con.execute("insert into located select * from located_at "
                        "where ticket_id in (select ticket_id from derive_ids)")
            con.execute("drop table located_at")
    missing = [r[0] for r in con.execute(
        "select ticket_id from derive_ids except select ticket_id from located").fetchall()]
    if missing:
        con.execute("insert into located select rowid, ticket_id from tickets "
                    "where ticket_id = any(?)", [missing])
    rowids = [r[0] for r in con.execute("select __rowid from located").fetchall()]
    con.execute("create or replace temp table old_rows as select rowid as __rowid, * "
                "from tickets where rowid = any(?::bigint[])", [rowids])
    con.execute("drop table located")


def _refresh_feedback_facts(con: duckdb.DuckDBPyConnection, tables: set[str]) -> None:
    """The survey facts of the derived tickets: the rows of their stored versions leave, the
    rows of their surveys joined to the new versions come in."""
    facts = FEEDBACK_FACTS_SELECT.replace("join tickets t on", "join tickets_delta t on", 1) \
        .replace("from feedback f", "from derive_surveys f", 1)
    insert = ("select ff.*, s.sentiment from (" + facts + ") ff "
              "left join comment_sentiment s on s.comment = ff.comment")
    if "feedback_facts" not in tables:
        con.execute(
            "create or replace table feedback_facts as select ff.*, s.sentiment "
            f"from ({FEEDBACK_FACTS_SELECT}) ff "
            "left join comment_sentiment s on s.comment = ff.comment"
        )
        return
    # a stored ticket has survey facts exactly when it had surveys (fb_n) at its last derive
    had = [r[0] for r in con.execute(
        "select ticket_id from old_rows where fb_n > 0").fetchall()]
    if had:
        con.execute("delete from feedback_facts where ticket_id = any(?)", [had])
    if con.execute("select count(*) from derive_surveys").fetchall()[0][0]:
        con.execute(f"insert into feedback_facts {insert}")


def _ticket_counts(con: duckdb.DuckDBPyConnection, rows: str,
                   columns: dict[str, list[str]]) -> dict[tuple[str, str], int]:
    """(relation, column) -> non-null count over ``rows`` (a table of query-table rows) as
    the query table and as its canonical view; (relation, "") is the row count.
    ``columns``: the columns of ``tickets`` and ``tickets_src``."""
    out: dict[tuple[str, str], int] = {}
    con.execute("create or replace temp view counted_src as"
                + _CANONICAL_SQL.format(rows=rows))
    for name, relation in (("tickets", rows), ("tickets_src", "counted_src")):
        cols = columns[name]
        counts = ", ".join(f'count("{c}")' for c in cols)
        values = con.execute(f"select count(*), {counts} from {relation}").fetchall()[0]
        out[(name, "")] = int(values[0])
        out.update({(name, c): int(n) for c, n in zip(cols, values[1:], strict=True)})
    return out


def _as_of(
    con: duckdb.DuckDBPyConnection, tables: set[str], latest: datetime | None,
    since: datetime | None = None, window: tuple[datetime, datetime] | None = None,
) -> datetime | None:
    """The latest of ``latest`` and the status events (those in the plausible ``window``);
    ``since`` (at most ``latest``) lets the events before it go unread."""
    stamps = [latest]
    if "ticket_events" in tables:
        first, last = window or (datetime.min, datetime.max)
        where = " and event_at >= ?" if since is not None else ""
        stamps.append(con.execute(
            f"select max(event_at) from ticket_events where event_at between ? and ?{where}",
            [first, last, *([since] if since is not None else [])]).fetchall()[0][0])
    stamps = [s for s in stamps if s is not None]
    return max(stamps) if stamps else None
