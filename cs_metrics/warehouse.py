"""The DuckDB warehouse file: connections per thread, derived columns, safe refresh."""

from __future__ import annotations

import os
import re
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from cs_metrics.errors import CsMetricsError
from cs_metrics.schema import DIMENSIONS, PRIORITIES
from cs_metrics.settings import Settings, load_settings

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


class Warehouse:
    """One DuckDB file. Each thread gets its own connection to the one database.

    All connections of a process share one configuration; a process that refreshes the
    warehouse opens it read-write for every thread, and other threads keep reading a
    consistent snapshot while a refresh transaction runs.
    """

    def __init__(self, path: str | Path | None = None, read_only: bool = False) -> None:
        self.path = Path(path) if path is not None else default_db_path()
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
                    raise CsMetricsError(_lock_message(self.path, exc)) from exc
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

    def tables(self) -> set[str]:
        rows = self.connection().execute(
            "select table_name from information_schema.tables where table_schema = 'main'"
        ).fetchall()
        return {r[0] for r in rows}

    def has_table(self, name: str) -> bool:
        return name in self.tables()

    def columns(self, table: str) -> list[str]:
        rows = self.connection().execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'main' and table_name = ? order by ordinal_position",
            [table],
        ).fetchall()
        return [r[0] for r in rows]

    def nonempty_columns(self, table: str) -> set[str]:
        """Columns of ``table`` that hold at least one value (cached in the meta table)."""
        if not self.has_table("column_stats"):
            return set()
        rows = self.connection().execute(
            "select column_name from column_stats where table_name = ? and non_null > 0",
            [table],
        ).fetchall()
        return {r[0] for r in rows}

    def dimension_values(self, dim: str) -> list[str]:
        """The values of ticket dimension ``dim``, most (non-test) tickets first, then by value.

        Read from the small table written at load; a warehouse written before that table
        existed counts them on the fly.
        """
        if dim not in DIMENSIONS:
            raise CsMetricsError(
                f"Unknown dimension {dim!r}; valid dimensions: {', '.join(DIMENSIONS)}."
            )
        if not self.has_table("tickets"):
            return []
        if self.has_table("dimension_values"):
            sql = ("select value from dimension_values where dimension = ? "
                   "order by tickets desc, value")
            return [r[0] for r in self.connection().execute(sql, [dim]).fetchall()]
        # ``dim`` is one of the allow-listed DIMENSIONS
        rows = self.connection().execute(
            f"select cast({dim} as varchar) as value, count(*) as tickets from tickets "
            f"where not is_test and {dim} is not null group by 1 order by 2 desc, 1"
        ).fetchall()
        return [r[0] for r in rows]

    def meta(self, key: str) -> str | None:
        if not self.has_table("meta"):
            return None
        return self.scalar("select value from meta where key = ?", [key])

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


_DERIVED_SQL = """
create or replace table tickets as
with src as (
    select t.*,
        coalesce(t.customer_segment, c.segment, 'Unknown') as seg,
        coalesce(t.customer_location, c.city) as cust_loc
    from {source} t
    left join {customers} c on c.customer_id = t.customer_id
),
fb as (
    -- survey sums per ticket, so feedback metrics need no join at query time
    select ticket_id, count(*) as fb_n,
        count(csat) as fb_csat_n, sum(csat) as fb_csat_sum,
        count(*) filter (where csat >= 4) as fb_csat_good,
        count(nps) as fb_nps_n, count(*) filter (where nps >= 9) as fb_nps_promoters,
        count(*) filter (where nps <= 6) as fb_nps_detractors,
        count(ces) as fb_ces_n, sum(ces) as fb_ces_sum
    from {feedback} group by ticket_id
),
final as (
    select
        s.ticket_id, s.created_at, s.status, s.first_response_at, s.resolved_at,
        coalesce(s.priority, 'normal') as priority,
        s.channel, s.domain, s.location, s.location_lat, s.location_lon,
        s.customer_id, s.cust_loc as customer_location, s.seg as customer_segment,
        s.rep_id, r.name as rep_name, r.team, r.manager,
        s.contacts, s.reopened_count, s.handle_time_s, s.subject,
        coalesce(s.is_test, false) as is_test,
        -- as the source gave them, so the canonical rows (view tickets_src) can be rebuilt
        s.customer_location as src_customer_location,
        s.customer_segment as src_customer_segment,
        cast(s.created_at as date) as created_date,
        date_diff('second', s.created_at, s.first_response_at) / 60.0 as first_response_min,
        case when s.status = 'closed'
            then date_diff('second', s.created_at, s.resolved_at) / 3600.0 end as resolution_h,
        -- closed without a close time: resolved at an unknown moment, so never in backlog
        case when s.status = 'closed' then coalesce(s.resolved_at, s.created_at) end
            as effective_resolved_at,
        p.policy as sla_policy,
        p.first_response_target_min as sla_first_response_target_min,
        p.resolution_target_h as sla_resolution_target_h,
        case
            when s.first_response_at is not null
                then date_diff('second', s.created_at, s.first_response_at) / 60.0
                     <= p.first_response_target_min
            when s.created_at + to_microseconds(
                    cast(p.first_response_target_min * 60000000 as bigint)) < ?
                then false
        end as sla_first_response_met,
        case
            when s.status = 'closed' and s.resolved_at is not null
                then date_diff('second', s.created_at, s.resolved_at) / 3600.0
                     <= p.resolution_target_h
            when s.status <> 'closed' and s.created_at + to_microseconds(
                    cast(p.resolution_target_h * 3600000000 as bigint)) < ?
                then false
        end as sla_resolution_met,
        coalesce(fb.fb_n, 0) > 0 as has_feedback,
        fb.fb_n, fb.fb_csat_n, fb.fb_csat_sum, fb.fb_csat_good, fb.fb_nps_n,
        fb.fb_nps_promoters, fb.fb_nps_detractors, fb.fb_ces_n, fb.fb_ces_sum
    from src s
    left join fb on fb.ticket_id = s.ticket_id
    left join {representatives} r on r.rep_id = s.rep_id
    left join sla_targets p on p.priority = coalesce(s.priority, 'normal') and p.segment = s.seg
)
select * from final
"""


def _empty_or(wh_tables: set[str], name: str, columns: str) -> str:
    return name if name in wh_tables else f"(select {columns} where false)"


SRC_VIEW_SQL = """
create or replace view tickets_src as
select ticket_id, created_at, status, first_response_at, resolved_at, priority, channel, domain,
    location, location_lat, location_lon, customer_id,
    src_customer_location as customer_location, src_customer_segment as customer_segment,
    rep_id, contacts, reopened_count, handle_time_s, subject, is_test
from tickets
"""


# Survey rows with their ticket's date and dimensions, so feedback figures filter and group on
# one table like the registry does on ``tickets`` (a join per query costs seconds at 10M).
FEEDBACK_FACTS_SELECT = """
select f.feedback_id, f.ticket_id, f.submitted_at, f.csat, f.nps, f.ces, f.comment,
    t.created_at, t.created_date, t.is_test, t.status, t.channel, t.priority, t.domain,
    t.location, t.customer_location, t.customer_segment, t.rep_id, t.rep_name, t.team,
    t.manager
from feedback f join tickets t on t.ticket_id = f.ticket_id
"""


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
) -> datetime | None:
    """Rebuild the query table ``tickets`` from canonical ticket rows and the other tables.

    ``source`` is a relation of canonical ticket rows (a load passes the merged old and new
    rows); by default the current ones (view ``tickets_src``). There is one stored copy of
    the tickets: the canonical columns plus everything derived at load. Runs inside the
    caller's transaction, so readers switch from the old table to the new one at commit.
    """
    settings = settings or load_settings()
    tables = _tables(con)
    if source is None:
        if "tickets" not in tables:
            return None
        # the query table is about to be replaced: read its canonical rows from a copy
        con.execute("create or replace temp table tickets_src_copy as select * from tickets_src")
        source = "tickets_src_copy"
    # one pass over the canonical rows: the data's "now" and the segments in use
    latest, segments = con.execute(
        f"select greatest(max(created_at), max(first_response_at), max(resolved_at)), "
        f"list(distinct customer_segment) from {source}"
    ).fetchall()[0]
    as_of = _as_of(con, tables, latest)
    segment_set = {seg for seg in (segments or []) if seg is not None} | {"Unknown"}
    if "customers" in tables:
        segment_set |= {
            r[0] for r in con.execute(
                "select distinct segment from customers where segment is not null"
            ).fetchall()
        }
    # every priority x segment the tickets can have; a few rows, so policies stay in Python
    kinds = [(p, seg) for p in PRIORITIES for seg in sorted(segment_set)]
    rows = []
    for priority, segment in kinds:
        fr, res, name = settings.sla_targets(priority, segment)
        rows.append((priority, segment, name or None, fr, res))
    targets = pd.DataFrame(
        rows,
        columns=[
            "priority", "segment", "policy", "first_response_target_min", "resolution_target_h"
        ],
    ).astype({"first_response_target_min": "float64", "resolution_target_h": "float64"})
    con.register("sla_targets_df", targets)
    con.execute("create or replace temp table sla_targets as select * from sla_targets_df")
    con.unregister("sla_targets_df")
    sql = _DERIVED_SQL.format(
        source=source,
        customers=_empty_or(
            tables, "customers", "null::varchar as customer_id, null::varchar as segment, "
            "null::varchar as city"
        ),
        representatives=_empty_or(
            tables, "representatives", "null::varchar as rep_id, null::varchar as name, "
            "null::varchar as team, null::varchar as manager"
        ),
        feedback=_empty_or(
            tables, "feedback", "null::varchar as ticket_id, null::integer as csat, "
            "null::integer as nps, null::integer as ces"
        ),
    )
    as_of_param = as_of or datetime(1970, 1, 1)
    con.execute(sql, [as_of_param, as_of_param])
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
    con.execute(
        "create or replace table dimension_values as "
        + " union all ".join(
            f"select '{dim}' as dimension, cast({dim} as varchar) as value, "
            f"count(*) as tickets from tickets where not is_test and {dim} is not null "
            f"group by {dim}"
            for dim in DIMENSIONS
        )
    )
    if "feedback" in tables:
        con.execute(f"create or replace table feedback_facts as {FEEDBACK_FACTS_SELECT}")
    else:
        con.execute("drop table if exists feedback_facts")
    first, last = con.execute(
        "select min(created_at), max(created_at) from tickets where not is_test"
    ).fetchall()[0]
    con.execute(
        "create or replace table meta as select * from (values "
        "('as_of', ?), ('settings', ?), ('derived_at', ?), ('first_created', ?), "
        "('last_created', ?)) v(key, value)",
        [
            as_of.isoformat(sep=" ") if as_of else None,
            settings.source,
            datetime.now().isoformat(sep=" ", timespec="seconds"),
            first.isoformat(sep=" ") if first else None,
            last.isoformat(sep=" ") if last else None,
        ],
    )
    _column_stats(con)
    return as_of


SORTED_RUNS_ALLOWED = 64


def _as_of(
    con: duckdb.DuckDBPyConnection, tables: set[str], latest: datetime | None
) -> datetime | None:
    stamps = [latest]
    if "ticket_events" in tables:
        stamps.append(con.execute("select max(event_at) from ticket_events").fetchall()[0][0])
    stamps = [s for s in stamps if s is not None]
    return max(stamps) if stamps else None


def _column_stats(con: duckdb.DuckDBPyConnection) -> None:
    """Non-null counts per column of every table, so pages can tell what a dataset has."""
    from cs_metrics.schema import TABLES

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
