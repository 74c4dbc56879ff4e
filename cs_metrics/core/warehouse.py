"""The DuckDB warehouse file: connections per thread, derived columns, safe refresh."""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.schema import DIMENSIONS, LIST_DIMENSIONS, PRIORITIES
from cs_metrics.core.settings import (
    DEFAULT_CALENDAR,
    PLAUSIBLE_BOUNDS,
    BusinessCalendar,
    Settings,
    load_settings,
)

DB_ENV = "CS_METRICS_DB"
DEFAULT_DB = Path("data") / "warehouse.duckdb"


def default_db_path() -> Path:
    """The warehouse the app uses: $CS_METRICS_DB, else data/warehouse.duckdb."""
    return Path(os.environ.get(DB_ENV) or DEFAULT_DB)


def is_default_db(path: str | Path) -> bool:
    """Whether ``path`` is the app's own warehouse (the one it fills with a sample)."""
    return Path(path).resolve() == DEFAULT_DB.resolve()


def _lock_message(path: Path, exc: Exception) -> str:
    text = str(exc)
    pid = re.search(r"PID (\d+)", text)
    holder = f"process {pid.group(1)}" if pid else "another process"
    return (
        f"The warehouse {path} is held open by {holder} (probably the Streamlit app or another "
        "cs_metrics command); stop that process or pass --db with another file, then try again."
    )


# What a page run has read of the catalog (table list, columns, column statistics, meta
# values), per thread, while a catalog_snapshot() is open; None outside one.
_catalog = threading.local()


@contextmanager
def catalog_snapshot() -> Iterator[None]:
    """Within the block, this thread reads the table list, the columns and column statistics
    of a table and the meta values once per warehouse and reuses them: one page run asks
    ``has_table`` a dozen times, and each answer is a catalog query. Code in the block that
    creates or drops tables calls catalog_changed(); another thread's changes are seen by
    the next block (as they would be mid-run anyway). Nested blocks share the outer one."""
    if getattr(_catalog, "memo", None) is not None:
        yield
        return
    _catalog.memo = {}
    try:
        yield
    finally:
        _catalog.memo = None


def catalog_changed() -> None:
    """Forget this thread's snapshot of the catalog (after creating or dropping a table or
    rewriting meta): its next question reads the warehouse again."""
    memo = getattr(_catalog, "memo", None)
    if memo is not None:
        memo.clear()


class WarehouseLocked(CsMetricsError):
    """The warehouse file is held open by another process (``path``: the file)."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


# Warehouse files this process serves to commands handed over by others (cs_metrics.ops.jobs):
# it holds them read-write, and DuckDB opens a file once per process with one configuration,
# so a handed-over command that asks to read one shares the process's read-write database.
_SERVED: set[str] = set()


def serve_in_process(path: str | Path) -> None:
    """Mark ``path`` as held read-write by this process for handed-over commands."""
    _SERVED.add(str(Path(path).resolve()))


class Warehouse:
    """One DuckDB file. Each thread gets its own connection to the one database.

    All connections of a process share one configuration; a process that refreshes the
    warehouse opens it read-write for every thread, and other threads keep reading a
    consistent snapshot while a refresh transaction runs.
    """

    def __init__(self, path: str | Path | None = None, read_only: bool = False) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        if read_only and _SERVED and str(self.path.resolve()) in _SERVED:
            read_only = False  # the process's own read-write database (see serve_in_process)
        self.read_only = read_only
        self._local = threading.local()
        if read_only and not self.path.exists():
            raise CsMetricsError(
                f"There is no warehouse at {self.path}; run `python -m cs_metrics ingest` first "
                "or pass --db with the right file."
            )
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.connection()  # fail early, with a clear message, if the file is locked

    def connection(self) -> duckdb.DuckDBPyConnection:
        con = getattr(self._local, "con", None)
        if con is None:
            try:
                con = duckdb.connect(str(self.path), read_only=self.read_only)
            except duckdb.IOException as exc:
                if "lock" in str(exc).lower():
                    raise WarehouseLocked(_lock_message(self.path, exc), self.path) from exc
                raise CsMetricsError(f"Cannot open the warehouse {self.path}: {exc}") from exc
            except duckdb.Error as exc:
                raise CsMetricsError(f"Cannot open the warehouse {self.path}: {exc}") from exc
            self._local.con = con
        return con

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    def hold_open(self) -> None:
        """Keep the database open while this object lives, not only while a thread has a
        connection. A server that runs each request on a new thread would otherwise close
        the file whenever no request runs, and a request opening it while another thread's
        last connection closes it fails ("Unique file handle conflict"); every reopening
        also starts with a cold cache."""
        if getattr(self, "_held", None) is None:
            self._held = duckdb.connect(str(self.path), read_only=self.read_only)

    @property
    def scope(self):  # -> cs_metrics.core.access.Scope | None
        """Whose view of the data this is: None for the whole warehouse (local mode)."""
        return None

    @property
    def base(self) -> Warehouse:
        """The unscoped warehouse, where writes go."""
        return self

    @property
    def cache_key(self) -> str:
        """Tells apart cached results of different files and of different scopes."""
        return str(self.path)

    def listing_sql(self, alias: str = "t") -> tuple[str, list[Any]]:
        """The extra condition on ``tickets`` (as ``alias``) for lists of single tickets:
        a representative lists only their own, though their team's figures count all."""
        return "true", []

    def df(self, sql: str, params: list[Any] | tuple[Any, ...] | None = None) -> pd.DataFrame:
        try:
            return self.connection().execute(sql, params or []).df()
        except duckdb.Error as exc:
            raise CsMetricsError(f"Query failed on {self.path}: {exc}") from exc

    def scalar(self, sql: str, params: list[Any] | tuple[Any, ...] | None = None) -> Any:
        try:
            rows = self.connection().execute(sql, params or []).fetchall()
        except duckdb.Error as exc:
            raise CsMetricsError(f"Query failed on {self.path}: {exc}") from exc
        return rows[0][0] if rows else None

    def _memo(self, key: tuple[str, ...], read: Callable[[], Any]) -> Any:
        """``read()``, or what it returned earlier in this thread's catalog_snapshot()."""
        memo = getattr(_catalog, "memo", None)
        if memo is None:
            return read()
        full = (self.cache_key, *key)
        if full not in memo:
            memo[full] = read()
        return memo[full]

    def tables(self) -> set[str]:
        return set(self._memo(("tables",), self._read_tables))

    def _read_tables(self) -> frozenset[str]:
        rows = self.connection().execute(
            "select table_name from information_schema.tables where table_schema = 'main'"
        ).fetchall()
        return frozenset(r[0] for r in rows)

    def has_table(self, name: str) -> bool:
        return name in self._memo(("tables",), self._read_tables)

    def columns(self, table: str) -> list[str]:
        return list(self._memo(("columns", table), lambda: self._read_columns(table)))

    def _read_columns(self, table: str) -> tuple[str, ...]:
        rows = self.connection().execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'main' and table_name = ? order by ordinal_position",
            [table],
        ).fetchall()
        return tuple(r[0] for r in rows)

    def nonempty_columns(self, table: str) -> set[str]:
        """Columns of ``table`` that hold at least one value (cached in the meta table)."""
        return set(self._memo(("nonempty", table), lambda: self._read_nonempty(table)))

    def _read_nonempty(self, table: str) -> frozenset[str]:
        if not self.has_table("column_stats"):
            return frozenset()
        rows = self.connection().execute(
            "select column_name from column_stats where table_name = ? and non_null > 0",
            [table],
        ).fetchall()
        return frozenset(r[0] for r in rows)

    def dimension_values(self, dim: str) -> list[str]:
        """The values of ticket dimension ``dim``, most (non-test) tickets first, then by value.

        Read from the small table written at load; a warehouse written before that table
        existed counts them on the fly.
        """
        if dim not in DIMENSIONS and dim not in LIST_DIMENSIONS:
            known = (*DIMENSIONS, *LIST_DIMENSIONS)
            raise CsMetricsError(
                f"Unknown dimension {dim!r}; valid dimensions: {', '.join(known)}."
            )
        if not self.has_table("tickets"):
            return []
        if self.has_table("dimension_values"):
            sql = ("select value from dimension_values where dimension = ? "
                   "order by tickets desc, value")
            return [r[0] for r in self.connection().execute(sql, [dim]).fetchall()]
        if dim in LIST_DIMENSIONS:  # not counted by a warehouse that old: none listed
            return []
        # ``dim`` is one of the allow-listed DIMENSIONS
        rows = self.connection().execute(
            f"select cast({dim} as varchar) as value, count(*) as tickets from tickets "
            f"where not is_test and {dim} is not null group by 1 order by 2 desc, 1"
        ).fetchall()
        return [r[0] for r in rows]

    def meta(self, key: str) -> str | None:
        return self._memo(("meta",), self._read_meta).get(key)

    def _read_meta(self) -> dict[str, str]:
        if not self.has_table("meta"):
            return {}
        rows = self.connection().execute("select key, value from meta").fetchall()
        return dict(rows)

    def as_of(self) -> datetime | None:
        """The moment the data describes: its latest timestamp."""
        value = self.meta("as_of")
        return datetime.fromisoformat(value) if value else None

    def created_range(self) -> tuple[datetime, datetime] | None:
        """First and last ticket creation time (test tickets excluded).

        Date presets end on the last creation day: for an export closed long after its last
        ticket was opened, the as-of moment is a late close and would give empty windows.
        """
        first, last = self.meta("first_created"), self.meta("last_created")
        if not first or not last:
            return None
        return datetime.fromisoformat(first), datetime.fromisoformat(last)

    def plausible_window(self) -> tuple[datetime, datetime]:
        """[first, last] plausible moment (settings [ingest]) as of the last derive; the
        widest window (PLAUSIBLE_BOUNDS) for a warehouse derived before it was recorded."""
        first, last = self.meta("plausible_from"), self.meta("plausible_to")
        if first and last:
            return datetime.fromisoformat(first), datetime.fromisoformat(last)
        return (datetime.combine(PLAUSIBLE_BOUNDS[0], datetime.min.time()),
                datetime.combine(PLAUSIBLE_BOUNDS[1], datetime.max.time()))

    def implausible(self) -> tuple[int, datetime, datetime] | None:
        """(tickets, first, last): how many tickets (test tickets aside) have a timestamp
        outside the plausible window [first, last], as of the last derive; None when there
        are none. A load refuses such rows, so they were written by other means. The date
        presets and ``as_of`` ignore them, and they get no response or resolution times
        (see rebuild_derived)."""
        count = self.meta("implausible_tickets")
        if not count or int(count) == 0:
            return None
        return (int(count), *self.plausible_window())


def first_response_deadline_sql(wh: Warehouse, alias: str = "t") -> str:
    """SQL for the first-response deadline of ``alias``'s ticket: the stored column (the
    source's due time, else the policy target in elapsed or business time); a warehouse
    derived before that column existed has its elapsed-time equivalent."""
    if "sla_first_response_deadline" in wh.columns("tickets"):
        return f"{alias}.sla_first_response_deadline"
    return (f"({alias}.created_at + to_microseconds(cast("
            f"{alias}.sla_first_response_target_min * 60000000 as bigint)))")


def implausible_note(wh: Warehouse) -> str | None:
    """The sentence pages and reports show about tickets dated outside the plausible window
    (``Warehouse.implausible``), or None when there are none."""
    found = wh.implausible()
    if found is None:
        return None
    n, first, last = found
    return (
        f"{n:,} ticket{'s have' if n != 1 else ' has'} a date outside the plausible window "
        f"{first:%Y-%m-%d} – {last:%Y-%m-%d} (settings ingest.earliest, ingest.latest): no "
        "response or resolution time is computed for them, and those created outside it "
        "show only when the date range includes them"
    )


_DERIVED_SQL = """
create or replace table tickets as
with src as (
    select t.*,
        coalesce(t.customer_segment, c.segment, 'Unknown') as seg,
        coalesce(t.customer_location, c.city) as cust_loc,
        coalesce(t.created_at between $first and $last
                 and coalesce(t.first_response_at between $first and $last, true)
                 and coalesce(t.resolved_at between $first and $last, true), false)
            as plausible{sla_keys}
    from {source} t
    left join {customers} c on c.customer_id = t.customer_id{sla_team_join}
),
fb as (
    -- survey sums per ticket, so feedback metrics need no join at query time
    select ticket_id, count(*) as fb_n,
        count(csat) as fb_csat_n, sum(csat) as fb_csat_sum,
        count(*) filter (where csat >= 4) as fb_csat_good,
        count(nps) as fb_nps_n, count(*) filter (where nps >= 9) as fb_nps_promoters,
        count(*) filter (where nps <= 6) as fb_nps_detractors,
        count(ces) as fb_ces_n, sum(ces) as fb_ces_sum,
        -- comment sentiment (VADER compound, scored once per text at load)
        count(s.sentiment) as fb_sent_n, sum(s.sentiment) as fb_sent_sum,
        count(*) filter (where s.sentiment <= -0.05) as fb_sent_neg
    from {feedback} f left join {sentiment} s on s.comment = f.comment
    group by ticket_id
),{levels}
final as (
    select
        s.ticket_id, s.created_at, s.status, s.first_response_at, s.resolved_at,
        coalesce(s.priority, 'normal') as priority,
        s.channel, s.domain, s.location, s.location_lat, s.location_lon,
        s.customer_id, s.cust_loc as customer_location, s.seg as customer_segment,
        s.rep_id, r.name as rep_name, r.team, r.manager,
        s.contacts, s.reopened_count, s.handle_time_s, s.subject,
        coalesce(s.is_test, false) as is_test, s.tags,
        -- as the source gave them, so the canonical rows (view tickets_src) can be rebuilt
        s.customer_location as src_customer_location,
        s.customer_segment as src_customer_segment,
        cast(s.created_at as date) as created_date,
        -- a duration from or to a moment outside the plausible window is unknown: one ticket
        -- of year 0001 would otherwise move an average resolution by a million hours
        case when s.plausible then date_diff('second', s.created_at, s.first_response_at)
            / 60.0 end as first_response_min,
        case when s.status = 'closed' and s.plausible
            then date_diff('second', s.created_at, s.resolved_at) / 3600.0 end as resolution_h,
        -- the same durations counted only inside the open hours of the calendar of the
        -- policy giving the target (`default` when it names none)
        case when s.plausible then ({bh_first} - {bh_created}) / 60000000.0 end
            as first_response_business_min,
        case when s.status = 'closed' and s.plausible
            then ({bh_resolved} - {bh_created_res}) / 3600000000.0 end as resolution_business_h,
        -- closed without a close time: resolved at an unknown moment, so never in backlog
        case when s.status = 'closed' then coalesce(s.resolved_at, s.created_at) end
            as effective_resolved_at,
        p.policy as sla_policy,
        -- a source due time replaces the policy target, so the live panel and the alerts
        -- that read the target judge waiting tickets by it too
        coalesce(date_diff('microsecond', s.created_at, s.first_response_due_at) / 60000000.0,
                 p.first_response_target_min) as sla_first_response_target_min,
        coalesce(date_diff('microsecond', s.created_at, s.resolution_due_at) / 3600000000.0,
                 p.resolution_target_h) as sla_resolution_target_h,
        -- the last moment a response (resolution) still meets the SLA, read by the
        -- incremental refresh, the live panel and the alerts
        {fr_deadline} as sla_first_response_deadline,
        {res_deadline} as sla_resolution_deadline,
        case
            when not s.plausible then null
            when s.first_response_due_at is not null then case
                when s.first_response_at is not null
                    then s.first_response_at <= s.first_response_due_at
                when s.first_response_due_at < $as_of then false end
            when s.first_response_at is not null and p.first_response_calendar is not null
                then {bh_first} - {bh_created}
                     <= cast(p.first_response_target_min * 60000000 as bigint)
            when s.first_response_at is not null
                then date_diff('second', s.created_at, s.first_response_at) / 60.0
                     <= p.first_response_target_min
            when {fr_deadline} < $as_of then false
        end as sla_first_response_met,
        case
            when not s.plausible then null
            when s.resolution_due_at is not null then case
                when s.status = 'closed' and s.resolved_at is not null
                    then s.resolved_at <= s.resolution_due_at
                when s.status <> 'closed' and s.resolution_due_at < $as_of then false end
            when s.status = 'closed' and s.resolved_at is not null
                    and p.resolution_calendar is not null
                then {bh_resolved} - {bh_created_res}
                     <= cast(p.resolution_target_h * 3600000000 as bigint)
            when s.status = 'closed' and s.resolved_at is not null
                then date_diff('second', s.created_at, s.resolved_at) / 3600.0
                     <= p.resolution_target_h
            when s.status <> 'closed' and {res_deadline} < $as_of then false
        end as sla_resolution_met,
        s.first_response_due_at, s.resolution_due_at,
        -- judged by the source's own due times (either one), said on SLA pages and reports
        (s.first_response_due_at is not null or s.resolution_due_at is not null)
            as sla_from_source,
        coalesce(fb.fb_n, 0) > 0 as has_feedback,
        fb.fb_n, fb.fb_csat_n, fb.fb_csat_sum, fb.fb_csat_good, fb.fb_nps_n,
        fb.fb_nps_promoters, fb.fb_nps_detractors, fb.fb_ces_n, fb.fb_ces_sum,
        fb.fb_sent_n, fb.fb_sent_sum, fb.fb_sent_neg,
        -- activity from the status history: set after the derivation (_store_activity)
        null::bigint as ev_n, null::bigint as ev_reassignments, null::bigint as ev_reopens,
        null::bigint as ev_in_progress_n, null::double as ev_open_h,
        null::double as ev_in_progress_h
    from {rows} s
    left join fb on fb.ticket_id = s.ticket_id
    left join {representatives} r on r.rep_id = s.rep_id
    left join sla_targets p on {sla_join}
    {created_join}left join bh_calendar bf
        on bf.cal = coalesce(p.first_response_calendar, 'default')
        and bf.day = cast(s.first_response_at as date)
    left join bh_calendar br on br.cal = coalesce(p.resolution_calendar, 'default')
        and br.day = cast(s.resolved_at as date){business_joins}
)
select * from final
"""


def _empty_or(wh_tables: set[str], name: str, columns: str) -> str:
    return name if name in wh_tables else f"(select {columns} where false)"


# The canonical rows of query-table rows (``{rows}``: tickets or a table of its rows).
_CANONICAL_SQL = """
select ticket_id, created_at, status, first_response_at, resolved_at, priority, channel, domain,
    location, location_lat, location_lon, customer_id,
    src_customer_location as customer_location, src_customer_segment as customer_segment,
    rep_id, contacts, reopened_count, handle_time_s, subject, is_test, tags,
    first_response_due_at, resolution_due_at
from {rows}
"""

SRC_VIEW_SQL = "create or replace view tickets_src as" + _CANONICAL_SQL.format(rows="tickets")


# Survey rows with their ticket's date and dimensions, so feedback figures filter and group on
# one table like the registry does on ``tickets`` (a join per query costs seconds at 10M).
FEEDBACK_FACTS_SELECT = """
select f.feedback_id, f.ticket_id, f.submitted_at, f.csat, f.nps, f.ces, f.comment,
    t.created_at, t.created_date, t.is_test, t.status, t.channel, t.priority, t.domain,
    t.location, t.customer_location, t.customer_segment, t.rep_id, t.rep_name, t.team,
    t.manager, t.tags
from feedback f join tickets t on t.ticket_id = f.ticket_id
"""


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


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        r[0]
        for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'main'"
        ).fetchall()
    }


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


# The data's "now" is its latest plausible moment (params: the window's first and last): a
# ticket dated 9999 must not make every default view end in 9999.
_LATEST_PLAUSIBLE = " greatest(" + ", ".join(
    f"max({c}) filter (where {c} between $1 and $2)"
    for c in ("created_at", "first_response_at", "resolved_at")) + ")"


def _derive_params(as_of: datetime | None, window: tuple[datetime, datetime],
                   sla_dims: dict[str, list[str]] | None = None) -> dict:
    params = {"as_of": as_of or datetime(1970, 1, 1), "first": window[0], "last": window[1]}
    # the names the SLA policies list, as parameters (never SQL text); only those the SQL
    # reads: DuckDB refuses a parameter it does not use
    for dim, names in (sla_dims or {}).items():
        params[f"sla_{dim}s"] = names
    return params


def _sla_dimensions(settings: Settings) -> dict[str, list[str]]:
    """Per ticket dimension some SLA policy restricts (``channel``: ``channels = [...]``,
    ``team``: ``teams = [...]``), every name the policies list. A value no policy lists
    matches the same policies as none (those that do not restrict it), so a ticket's key
    in ``sla_targets`` is its value when listed, else '' (a listed name is never empty):
    the table stays as small as the settings, whatever the data holds. Empty when no
    policy restricts either, the common case, which keeps priority x segment alone."""
    out: dict[str, list[str]] = {}
    for dim in ("channel", "team"):
        lists = [getattr(p, f"{dim}s") for p in settings.sla_policies]
        if any(names is not None for names in lists):
            out[dim] = sorted({name for names in lists for name in names or ()})
    return out


def _business_calendar(con: duckdb.DuckDBPyConnection, settings: Settings,
                       window: tuple[datetime, datetime]) -> None:
    """Temp table ``bh_calendar``: per calendar (``cal``: ``default`` and those the SLA
    policies name) and UTC day of the plausible window (and past its end as far as a
    deadline can reach), the open parts of that day (up to three: from the local days
    before, of and after it) in microseconds from UTC midnight, and the open microseconds
    of all the days before it. With business-time SLA policies, also ``bh_pieces``.

    Open hours are local wall-clock times, turned into UTC moments here, once per day
    (the zone's rules, DST included), so the tickets' naive UTC timestamps need no zone
    conversion: the business time up to a moment is its UTC day's ``cum_us`` plus the open
    parts of that day before it, one join per timestamp, no loop per ticket. Durations are
    differences of two such sums, so they do not depend on the calendar's first day (an
    incremental refresh gets the same values as a rebuild); integer microseconds keep the
    difference exact.
    """
    con.execute("create or replace temp table bh_calendar (cal varchar, day date, a1 bigint, "
                "b1 bigint, a2 bigint, b2 bigint, a3 bigint, b3 bigint, cum_us bigint)")
    # the default calendar and those the SLA policies name, the same days for each
    last = window[1].date() + timedelta(days=_deadline_reach_days(settings, window))
    for name in _calendars_used(settings):
        _insert_calendar(con, name, settings.calendar(name), window[0].date(), last)
    if _business_sla(settings):
        con.execute(_BH_PIECES_SQL)


def _calendars_used(settings: Settings) -> list[str]:
    """``default`` (for durations) and every calendar an SLA policy names."""
    named = {p.business_hours for p in settings.sla_policies if p.business_hours}
    return sorted(named | {DEFAULT_CALENDAR})


def _business_sla(settings: Settings) -> bool:
    """Whether some SLA policy counts its targets in business time."""
    return any(p.business_hours for p in settings.sla_policies)


def _split_calendars(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether some ticket kind in ``sla_targets`` counts its resolution on another calendar
    than its first response: only then is a ticket's creation looked up on two calendars."""
    return bool(con.execute(
        "select count(*) from sla_targets where coalesce(first_response_calendar, 'default') "
        "<> coalesce(resolution_calendar, 'default')").fetchall()[0][0])


def _deadline_reach_days(settings: Settings, window: tuple[datetime, datetime]) -> int:
    """Days past the window's end that bh_calendar covers, so the business-time deadline of
    any ticket created in the window lies inside it: at least twice the weeks the longest
    target of a calendar needs at its weekly open hours (a daylight-saving change takes an
    hour from a week), plus a week for every holiday after the window's end."""
    days = 0
    for policy in settings.sla_policies:
        if not policy.business_hours:
            continue
        cal = settings.calendar(policy.business_hours)
        weekly = sum(h[1] - h[0] for h in cal.hours if h is not None)  # seconds, > 0
        longest = max([v * 60 for _, v in policy.first_response_min]
                      + [v * 3600 for _, v in policy.resolution_h] + [0.0])
        holidays = sum(1 for d in cal.holidays if d >= window[1].date())
        days = max(days, 7 * (2 * math.ceil(max(longest, 0) / weekly) + 2 + holidays))
    return days


# Open pieces of every SLA calendar's days, each with the business microseconds before it
# (``cum_start``), listed under every business hour (``k``, from the calendar's start) that
# it overlaps: a ticket finds the piece where its deadline's business time falls by an
# equality join on that hour, which keeps the tickets in their order (no sort, no loop).
_BH_HOUR = 3_600_000_000
_BH_PIECES_SQL = f"""
create or replace temp table bh_pieces as
with pieces as (
    select cal, day, a1 as a, b1 - a1 as len, cum_us as cum_start from bh_calendar
    union all select cal, day, a2, b2 - a2, cum_us + (b1 - a1) from bh_calendar
    union all select cal, day, a3, b3 - a3, cum_us + (b1 - a1) + (b2 - a2) from bh_calendar
)
select cal, unnest(range(cum_start // {_BH_HOUR}, (cum_start + len - 1) // {_BH_HOUR} + 1))
        as k,
    day::timestamp + to_microseconds(a) as start_at, cum_start, len
from pieces where len > 0
"""


def _insert_calendar(con: duckdb.DuckDBPyConnection, name: str, cal: BusinessCalendar,
                     first: date, last: date) -> None:
    """Add calendar ``cal``'s days from ``first`` to ``last`` (UTC) to bh_calendar."""
    opens = [None if h is None else h[0] * 1_000_000 for h in cal.hours]
    closes = [None if h is None else h[1] * 1_000_000 for h in cal.hours]
    con.execute(
        """
        insert into bh_calendar
        with days as (
            select cast(d as date) as day
            from range($first::timestamp, $last::timestamp, interval 1 day) r(d)
        ),
        open_local as (
            select day, list_extract($opens::bigint[], isodow(day)) as o,
                list_extract($closes::bigint[], isodow(day)) as c
            from days where not list_contains($holidays::date[], day)
        ),
        open_utc as (  -- each local day's open interval as UTC epoch microseconds
            select day,
                epoch_us(timezone('UTC', timezone($tz, day::timestamp + to_microseconds(o))))
                    as s,
                epoch_us(timezone('UTC', timezone($tz, day::timestamp + to_microseconds(c))))
                    as e
            from open_local where o is not null
        ),
        pieces as (  -- clipped to each UTC day it touches (offsets are under a day)
            select day, greatest(s - epoch_us(day), 0) as a,
                least(e - epoch_us(day), 86400000000) as b
            from (select u.day + cast(k as integer) as day, s, e
                  from open_utc u, range(-1, 2) r(k))
        ),
        per_day as (
            select day, list(a order by a) as a, list(b order by a) as b, sum(b - a) as open_us
            from pieces where b > a group by day
        )
        select $name, d.day,
            coalesce(p.a[1], 0)::bigint as a1, coalesce(p.b[1], 0)::bigint as b1,
            coalesce(p.a[2], 0)::bigint as a2, coalesce(p.b[2], 0)::bigint as b2,
            coalesce(p.a[3], 0)::bigint as a3, coalesce(p.b[3], 0)::bigint as b3,
            coalesce(sum(p.open_us) over (
                order by d.day rows between unbounded preceding and 1 preceding), 0)::bigint
                as cum_us
        from days d left join per_day p on p.day = d.day
        """,
        {
            "holidays": list(cal.holidays), "opens": opens, "closes": closes,
            "tz": cal.timezone, "name": name,
            # local days a day either side of the window's UTC ones
            "first": datetime.combine(first - timedelta(days=2), time()),
            "last": datetime.combine(last + timedelta(days=3), time()),
        },
    )


# Business microseconds up to the naive UTC moment {ts}, by its UTC calendar day {b}.
_BH_AT = "({b}.cum_us" + "".join(
    f" + greatest(0, least({{b}}.b{k}, epoch_us({{ts}}) - epoch_us(cast({{ts}} as date)))"
    f" - {{b}}.a{k})" for k in (1, 2, 3)) + ")"


def _plausible_meta(con: duckdb.DuckDBPyConnection, window: tuple[datetime, datetime],
                    rows: str = "tickets") -> int:
    """Tickets of ``rows`` (test tickets aside) with a timestamp outside ``window``: written
    by other means than a load (which refuses them). Pages say how many there are."""
    return int(con.execute(
        f"select count(*) from {rows} where not is_test and ("
        + " or ".join(f"{c} not between $1 and $2"
                      for c in ("created_at", "first_response_at", "resolved_at"))
        + ")", list(window)).fetchall()[0][0])


def _sla_targets(con: duckdb.DuckDBPyConnection, settings: Settings, tables: set[str],
                 segments: list | None) -> None:
    """Temp table ``sla_targets``: the policy targets of every priority x segment in use (x
    channel and x team, keyed as ``_sla_dimensions`` says, when a policy restricts them),
    and the business-hours calendar of each target's policy (null: elapsed time)."""
    segment_set = {seg for seg in (segments or []) if seg is not None} | {"Unknown"}
    if "customers" in tables:
        segment_set |= {
            r[0] for r in con.execute(
                "select distinct segment from customers where segment is not null"
            ).fetchall()
        }
    # every priority x segment the tickets can have; a few rows, so policies stay in Python
    dims = _sla_dimensions(settings)
    channels = [""] + dims["channel"] if "channel" in dims else [""]
    teams = [""] + dims["team"] if "team" in dims else [""]
    kinds = [(p, seg, ch, team) for p in PRIORITIES for seg in sorted(segment_set)
             for ch in channels for team in teams]
    rows = []
    for priority, segment, ch, team in kinds:
        kind = (priority, segment, ch or None, team or None)  # '': not listed, as no value
        fr, res, name = settings.sla_targets(*kind)
        rows.append((priority, segment, ch, team, name or None, fr, res,
                     *settings.sla_calendars(*kind)))
    targets = pd.DataFrame(
        rows,
        columns=[
            "priority", "segment", "channel", "team", "policy", "first_response_target_min",
            "resolution_target_h", "first_response_calendar", "resolution_calendar",
        ],
    ).drop(columns=[d for d in ("channel", "team") if d not in dims]).astype(
        {"first_response_target_min": "float64", "resolution_target_h": "float64",
         "first_response_calendar": "object", "resolution_calendar": "object"})
    con.register("sla_targets_df", targets)
    # typed, for a list of calendars that is all null
    con.execute("create or replace temp table sla_targets as select * replace ("
                "cast(first_response_calendar as varchar) as first_response_calendar, "
                "cast(resolution_calendar as varchar) as resolution_calendar) "
                "from sla_targets_df")
    con.unregister("sla_targets_df")


# Activity per ticket from its status history (README "Agent activity"): the events in order
# (ties: open, in progress, closed; then by rep), each with the next event and the last
# representative named before it, summed per ticket. Kept out of the derivation's big join:
# joined there, a table as long as the tickets made the join emit rows out of their order,
# and re-sorting the tickets tripled a 10M load; an update keeps the rows where they are.
_ACTIVITY_SQL = """
create or replace temp table derive_activity as
with ev_seq as (
    -- status events in order (ties: open, in progress, closed; then by rep), each with the
    -- next event and the last representative named before it
    select ticket_id, status, rep_id, event_at,
        row_number() over w as seq,
        lead(event_at) over w as next_at,
        lead(status) over w as next_status,
        last_value(rep_id ignore nulls) over (w rows between unbounded preceding
                                              and 1 preceding) as prev_rep
    from {events} e
    window w as (partition by ticket_id order by event_at,
                 case status when 'open' then 0 when 'in_progress' then 1 else 2 end,
                 rep_id nulls first)
),
ev as (
    -- activity per ticket from its status history (README "Agent activity")
    select ticket_id, count(*) as ev_n,
        count(*) filter (where rep_id <> prev_rep) as ev_reassignments,
        count(*) filter (where status = 'closed' and next_status <> 'closed') as ev_reopens,
        count(*) filter (where status = 'in_progress') as ev_in_progress_n,
        arg_max(status, seq) = 'closed' as ev_ended_closed,
        coalesce(sum(date_diff('microsecond', event_at, next_at))
                 filter (where status = 'open'), 0) / 3600000000.0 as ev_open_h,
        coalesce(sum(date_diff('microsecond', event_at, next_at))
                 filter (where status = 'in_progress'), 0) / 3600000000.0
            as ev_in_progress_h
    from ev_seq
    group by ticket_id
)
select * from ev
"""


def _store_activity(con: duckdb.DuckDBPyConnection, table: str, events: str | None) -> None:
    """Set ``table``'s activity columns from the status events ``events`` (none: they stay
    null, missing rather than zero)."""
    if events is None:
        return
    con.execute(_ACTIVITY_SQL.replace("{events}", events))
    con.execute(f"""
        update {table} set ev_n = a.ev_n, ev_reassignments = a.ev_reassignments,
            ev_reopens = a.ev_reopens, ev_in_progress_n = a.ev_in_progress_n,
            -- time in a status is known once the history is over: the ticket is closed and
            -- its last event closed it (an open-ended last interval would move with "now")
            ev_open_h = case when {table}.status = 'closed' and a.ev_ended_closed
                             then a.ev_open_h end,
            ev_in_progress_h = case when {table}.status = 'closed' and a.ev_ended_closed
                                    then a.ev_in_progress_h end
        from derive_activity a where a.ticket_id = {table}.ticket_id""")
    con.execute("drop table if exists temp.main.derive_activity")


def _derived_sql(tables: set[str], source: str, feedback: str | None = None,
                 business_sla: bool = False, split: bool = False,
                 sla_dims: tuple[str, ...] = ()) -> str:
    """The derivation of ``source``'s tickets; ``feedback`` narrows the surveys read;
    ``business_sla`` when some SLA policy counts business time (see _business_sla),
    ``split`` when a ticket kind's resolution calendar differs from its first-response one
    (see _split_calendars), and ``sla_dims`` the dimensions some policy restricts
    (``channel``, ``team``: see _sla_dimensions; the derivation's parameters then carry
    their names)."""
    representatives = _empty_or(
        tables, "representatives", "null::varchar as rep_id, null::varchar as name, "
        "null::varchar as team, null::varchar as manager"
    )
    # a ticket's SLA kind: priority x segment, and its channel / its representative's team
    # (the listed name, else '') where a policy restricts them; every sla_targets join
    # uses these keys, so the rebuild and the incremental refresh pick the same targets
    sla_join = "p.priority = coalesce(s.priority, 'normal') and p.segment = s.seg"
    sla_keys, sla_team_join = "", ""
    for dim in sla_dims:
        value = "t.channel" if dim == "channel" else "rt.team"
        sla_keys += (f",\n        case when list_contains($sla_{dim}s::varchar[], {value}) "
                     f"then {value} else '' end as sla_{dim}")
        sla_join += f" and p.{dim} = s.sla_{dim}"
        if dim == "team":
            sla_team_join = f"\n    left join {representatives} rt on rt.rep_id = t.rep_id"
    bh_created = _BH_AT.format(b="bc", ts="s.created_at")
    created_join = ("left join bh_calendar bc on bc.cal = "
                    "coalesce(p.first_response_calendar, 'default')\n"
                    "        and bc.day = cast(s.created_at as date)\n    ")
    rows, levels = "src", ""
    if business_sla:
        # the business time at creation is read many times below (durations, deadlines,
        # verdicts, the joins that find the deadlines): computed once per ticket, before
        levels = ("\nlv as (\n    select s.*, " + bh_created + " as bh_c"
                  + (", " + _BH_AT.format(b="bd", ts="s.created_at") + " as bh_cr"
                     if split else "")
                  + "\n    from src s\n    left join sla_targets p on " + sla_join + "\n    "
                  + created_join
                  + ("left join bh_calendar bd on bd.cal = coalesce(p.resolution_calendar, "
                     "'default')\n        and bd.day = cast(s.created_at as date)\n"
                     if split else "")
                  + "),")
        rows, created_join, bh_created = "lv", "", "s.bh_c"
    bh_created_res = "s.bh_cr" if split else bh_created
    deadlines, joins = {}, ""
    for name, target, scale, cal, due, alias, created in (
            ("fr_deadline", "first_response_target_min", 60000000, "first_response_calendar",
             "first_response_due_at", "qf", bh_created),
            ("res_deadline", "resolution_target_h", 3600000000, "resolution_calendar",
             "resolution_due_at", "qr", bh_created_res)):
        elapsed = f"s.created_at + to_microseconds(cast(p.{target} * {scale} as bigint))"
        business = ""
        if business_sla:
            # the business microseconds at the deadline, and the open piece they fall in
            level = f"({created} + cast(p.{target} * {scale} as bigint))"
            business = (f" else {alias}.start_at + "
                        f"to_microseconds({level} - {alias}.cum_start)")
            joins += (f"\n    left join bh_pieces {alias} on {alias}.cal = p.{cal}"
                      f"\n        and {alias}.k = {level} // {_BH_HOUR}"
                      f"\n        and {level} >= {alias}.cum_start"
                      f" and {level} < {alias}.cum_start + {alias}.len")
        deadlines[name] = (f"coalesce(s.{due}, case when p.{cal} is null "
                           f"then {elapsed}{business} end)")
    sql = _DERIVED_SQL.format(
        source=source,
        bh_created=bh_created,
        bh_created_res=bh_created_res,
        bh_first=_BH_AT.format(b="bf", ts="s.first_response_at"),
        bh_resolved=_BH_AT.format(b="br", ts="s.resolved_at"),
        business_joins=joins,
        levels=levels,
        rows=rows,
        created_join=created_join,
        sla_keys=sla_keys,
        sla_team_join=sla_team_join,
        sla_join=sla_join,
        **deadlines,
        customers=_empty_or(
            tables, "customers", "null::varchar as customer_id, null::varchar as segment, "
            "null::varchar as city"
        ),
        representatives=representatives,
        feedback=_empty_or(
            tables, "feedback", "null::varchar as ticket_id, null::integer as csat, "
            "null::integer as nps, null::integer as ces, null::varchar as comment"
        ),
        sentiment=_empty_or(
            tables, "comment_sentiment", "null::varchar as comment, null::double as sentiment"
        ),
    )
    return sql if feedback is None else sql.replace(
        "from feedback f left join", f"from {feedback} f left join", 1)


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


# When a ticket's SLA flag turns: its stored deadline (the source's due time, else the
# policy target counted in elapsed or business time), as the derivation judges it.
_DEADLINES = (
    ("sla_first_response_met", "t.first_response_at is null", "sla_first_response_deadline"),
    ("sla_resolution_met", "t.status <> 'closed'", "sla_resolution_deadline"),
)


def _pass_deadlines(con: duckdb.DuckDBPyConnection, settings: Settings,
                    previous: datetime | None, as_of: datetime | None,
                    window: tuple[datetime, datetime] | None = None) -> dict[str, int]:
    """Set the SLA flags of the unanswered (unresolved) tickets whose deadline is now past
    to false, in place: the rest of such a ticket's row does not depend on "now", so it
    need not be derived again. The tickets about to be replaced (``old_rows``) are left
    alone. Returns the flags turned, per column (each was null).

    A deadline passed by the previous "now" turned its flag then, so only deadlines from
    the previous "now" on are read; deadlines follow creation times, so the row groups of
    the older tickets are skipped on the deadline column's own statistics.
    """
    out: dict[str, int] = {}
    if as_of is None or (previous is not None and as_of <= previous):
        return out  # "now" did not move
    for column, waiting, deadline in _DEADLINES:
        sql = (f"update tickets t set {column} = false where {waiting} "
               f"and {column} is null and t.{deadline} < ? "
               "and t.rowid not in (select __rowid from old_rows)")
        params: list = [as_of]
        if window is not None:  # a ticket with an implausible moment has no SLA verdict
            sql += "".join(f" and coalesce(t.{c} between ? and ?, true)"
                           for c in ("created_at", "first_response_at", "resolved_at"))
            params += [*window, *window, *window]
        if previous is not None:
            sql += f" and t.{deadline} >= ?"
            params.append(previous)
        n = con.execute(sql, params).fetchall()[0][0]
        if n:
            out[column] = int(n)
    return out


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


def _columns_of(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The columns of a table or view, in order (a query of no rows: the information schema
    lists every table's columns first)."""
    return [d[0] for d in con.execute(f"select * from {table} limit 0").description]


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
