"""The DuckDB warehouse file: connections per thread, its catalog and plausible window (the
derived tables are built in _derive and _refresh)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

# the derived tables are built in _derive, _refresh and _derive_stats; callers import these
# names from here
from cs_metrics.core._derive import FEEDBACK_FACTS_SELECT, SRC_VIEW_SQL  # noqa: F401
from cs_metrics.core._derive_stats import dimension_counts  # noqa: F401
from cs_metrics.core._refresh import add_missing_ticket_columns, rebuild_derived  # noqa: F401
from cs_metrics.core.errors import CsMetricsError, WarehouseLocked  # noqa: F401

# where the warehouse is, in a module light enough for the command line's --help; and the
# lock error, in errors for the same reason: both are imported from here too
from cs_metrics.core.paths import DB_ENV, DEFAULT_DB, default_db_path, is_default_db  # noqa: F401
from cs_metrics.core.schema import DIMENSIONS, LIST_DIMENSIONS
from cs_metrics.core.settings import PLAUSIBLE_BOUNDS

if TYPE_CHECKING:  # duckdb's .df() builds the frames; pandas is not needed to import this
    import pandas as pd


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

    def df(self, sql: str, params: list[Any] | tuple[Any, ...] | dict[str, Any] | None = None
           ) -> pd.DataFrame:
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


