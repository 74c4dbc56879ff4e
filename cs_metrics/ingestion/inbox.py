"""Incremental refresh: load new batches from an inbox folder, each exactly once.

A feed (a ticketing system export, ``simulations``' live feed, a cron job) writes into an
inbox folder; ``refresh_inbox`` loads what is new and ``watch_inbox`` does so every few
seconds, for ``python -m cs_metrics ingest --inbox DIR --watch`` and for the app's background
refresher.

The inbox
---------
* ``DIR/batch-<UTC timestamp>-<seq>/`` folders, each a canonical folder (``tickets.csv``,
  ``ticket_events.csv``, ``feedback.csv``, ... or ``.parquet``/``.csv.gz``/``.jsonl``; any
  canonical table, not necessarily ``tickets``), written atomically: under a name starting
  with ``.`` first, then renamed. Every folder not starting with ``.`` is a batch.
* Canonical files dropped directly in ``DIR``, named ``<table>[-_.]<anything>.<ext>`` (for
  example ``tickets-0001.csv``, ``feedback_2025-03-01.parquet``): each is a one-table batch.
  They too must be written under a ``.`` name and renamed.
* Names starting with ``.`` are ignored, so are files that name no canonical table (they are
  listed in ``RefreshReport.ignored``).
* Symbolic links are never followed: a link in the inbox, or a batch's canonical file that
  is a link, is refused unread (one could point at any file the process may read) and marked
  ``failed`` with that reason.
* A settings file that cannot be read or is invalid fails the refresh, not its batches: they
  stay pending and load at the first refresh after the file is fixed.

A ticket update is a full ticket row (an upsert by ``ticket_id``: columns absent from the
file become empty). Status history goes to ``ticket_events``; it does not change a ticket's
``status``, the ticket row does. Survey rows should carry ``feedback_id``; a feedback file
without that column gets an id derived from the row's content (its ticket plus a hash), so
two surveys of one ticket arriving in different refreshes never overwrite each other.

Batches load oldest first, by name. Rows go through ``ingest``, so the rules are those of
any load: bad rows are rejected with their reason (table ``rejects``), good rows load.

The manifest
------------
Table ``inbox_manifest(name, checksum, status, loaded_at, rows, message)`` records every
batch seen: ``status`` is ``loaded`` or ``failed``; ``checksum`` is the sha256 of the batch's
files (their names and bytes). A batch whose name and checksum are in the manifest is
skipped, whatever its status, so a broken batch is not retried every few seconds. A batch
whose files changed under the same name (a new checksum) is loaded again and listed in
``RefreshReport.reloaded``: loads are upserts, so this applies the corrected rows, and the
rejects of its earlier version are replaced; rows the new version no longer has stay.
(Within one process a file's checksum is computed once and reused while its size and
modification time stay the same, so a watcher does not re-read the whole inbox every time.)

Speed
-----
Every load rebuilds the derived ``tickets`` table, which is most of its cost, so all pending
batches load in one ``ingest`` call (batches whose typed files disagree on column types, or
mix text and typed files for one table, start a new call). A temporary folder gets one file
per table: the batch's own file when there is one (a link), else the batches' rows written
one after the other, newest batch first, with every column any of them has. ``ingest`` keeps
the first valid row of an id and rejects later ones as duplicates, so the newest valid
version of a ticket wins, exactly as if the batches had loaded one by one (a test checks the
warehouse and the rejects come out identical). Afterwards, in one transaction, rejects are
pointed back at the inbox's files and rows, the older versions are taken out of the rejects
("superseded": applied, then replaced) and the batches are recorded in the manifest.

Readers in other threads (or processes reading a copy) keep querying throughout: ``ingest``
replaces the tables in one transaction, so they see the warehouse before or after it.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.settings import Settings, load_settings
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion._inbox_batches import (
    _Batch,
    _check_inbox,
    _checksum,
    _Entry,
    _groups,
    _inspect,
    _scan,
)
from cs_metrics.ingestion._inbox_staging import (
    MANIFEST,
    _after_load,
    _manifest,
    _readable,
    _record,
    _stage,
    _utcnow,
)
from cs_metrics.ingestion.loader import IngestReport, ingest
from cs_metrics.ingestion.reading import scratch_connection

__all__ = ["MANIFEST", "RefreshReport", "read_manifest", "refresh_inbox", "watch_inbox"]

logger = logging.getLogger(__name__)


# One refresh at a time per warehouse file in this process: two would conflict on the
# tables every load rewrites.
_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@dataclass(frozen=True)
class RefreshReport:
    """What one refresh did. Row counts are per canonical table, as (table, rows) pairs."""

    inbox: Path
    db: Path
    loaded: tuple[str, ...] = ()  # batch names loaded now, oldest first
    skipped: tuple[str, ...] = ()  # already in the manifest with the same checksum
    failed: tuple[tuple[str, str], ...] = ()  # (batch, the sentence why), marked in the manifest
    reloaded: tuple[str, ...] = ()  # loaded or failed now although seen before: files changed
    pending: tuple[str, ...] = ()  # new, left for the next refresh by max_batches
    ignored: tuple[str, ...] = ()  # entries of the inbox that are neither batch nor table file
    rows_loaded: tuple[tuple[str, int], ...] = ()
    rows_rejected: tuple[tuple[str, int], ...] = ()
    # of rows_loaded: versions of an id replaced by a later batch of the same refresh
    rows_superseded: tuple[tuple[str, int], ...] = ()
    ingest_ids: tuple[str, ...] = ()
    as_of: datetime | None = None
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        """Whether the warehouse or the manifest changed (caches should be cleared)."""
        return bool(self.loaded or self.failed)

    def loaded_rows(self, table: str) -> int:
        return dict(self.rows_loaded).get(table, 0)

    def rejected_rows(self, table: str) -> int:
        return dict(self.rows_rejected).get(table, 0)

    def summary(self) -> str:
        """One line for a log or the command line."""
        parts = [f"{len(self.loaded)} batch(es) loaded"]
        if self.rows_loaded:
            parts.append(", ".join(
                f"{t} {n:,d} rows (+{self.rejected_rows(t):,d} rejected)"
                for t, n in self.rows_loaded))
        if self.failed:
            parts.append(f"{len(self.failed)} failed: " + "; ".join(
                f"{name}: {msg}" for name, msg in self.failed))
        if self.reloaded:
            parts.append(f"reloaded after a change: {', '.join(self.reloaded)}")
        if self.pending:
            parts.append(f"{len(self.pending)} left for the next refresh")
        parts.append(f"{len(self.skipped)} seen before")
        parts.append(f"data as of {self.as_of}" if self.as_of else "no data yet")
        return "; ".join(parts) + f" ({self.seconds:.2f} s)"


# Errors that say nothing about the batch: the load is tried again at the next refresh.
_TRANSIENT = ("conflict", "held open by", "could not set lock", "out of memory",
              "no space left")


class _NotTheBatch(CsMetricsError):
    """A refresh failed for a reason of the warehouse or the machine, not of a batch."""


def _current_settings() -> Settings:
    """The settings this refresh loads with (the file is read now, once for all its groups).

    A settings file that cannot be read or is invalid is no batch's fault: marking the
    batches failed would lose their rows for good (a recorded batch is never retried), so
    nothing is marked and the next refresh tries again, with the file fixed by then."""
    try:
        return load_settings()
    except CsMetricsError as exc:
        raise _NotTheBatch(
            f"{exc} The inbox batches stay pending; the next refresh loads them once the "
            "settings are fixed."
        ) from exc


def _is_transient(message: str) -> bool:
    lowered = message.lower()
    return any(word in lowered for word in _TRANSIENT)


@dataclass
class _Totals:
    loaded: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    superseded: dict[str, int] = field(default_factory=dict)
    ingest_ids: list[str] = field(default_factory=list)
    as_of: datetime | None = None

    def add(self, report: IngestReport, superseded: dict[str, int], placeholder: bool) -> None:
        self.ingest_ids.append(report.ingest_id)
        self.as_of = report.as_of
        for rep in report.tables:
            if rep.table == "tickets" and placeholder:
                continue
            n = superseded.get(rep.table, 0)
            for d, v in ((self.loaded, rep.loaded + n), (self.rejected, rep.rejected_total - n),
                         (self.superseded, n)):
                d[rep.table] = d.get(rep.table, 0) + v


def _load_group(
    wh: Warehouse,
    group: list[_Batch],
    inbox: Path,
    settings: Settings | None,
    totals: _Totals,
) -> None:
    """Load the batches in one ``ingest``; raises CsMetricsError (nothing changed) if not."""
    staged = _stage(group)  # raises CsMetricsError, having cleaned up, if it cannot
    try:
        try:
            # every reject listed: _after_load tells superseded versions from real
            # duplicates, and counts rejects per batch, by the rejects table's rows
            report = ingest(staged.folder, staged.mapping, settings=settings,
                            rejects_csv=staged.folder / "rejects.csv", warehouse=wh,
                            list_rejects=None)
        except CsMetricsError as exc:
            message = _readable(str(exc), staged)
            if _is_transient(message):
                raise _NotTheBatch(message) from exc
            raise CsMetricsError(message) from exc
        except Exception as exc:
            # e.g. a batch's file removed while it loaded (ingest reads it again for its
            # log): ingest leaves its transaction open then, so close it before going on
            _rollback_quietly(wh.connection())
            raise _NotTheBatch(
                f"Loading the inbox batches {', '.join(b.name for b in group)} was "
                f"interrupted ({_readable(str(exc), staged)}); the next refresh tries again."
            ) from exc
        try:
            superseded = _after_load(wh.connection(), report, group, staged, inbox)
        except duckdb.Error as exc:
            # the rows are in; the manifest is not: the next refresh loads them again
            # (an upsert, so nothing doubles)
            raise _NotTheBatch(
                f"Recording the loaded inbox batches in {wh.path} failed "
                f"({str(exc).splitlines()[0]}); the next refresh loads them again."
            ) from exc
        totals.add(report, superseded, staged.placeholder)
    finally:
        shutil.rmtree(staged.folder, ignore_errors=True)


def _rollback_quietly(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("rollback")
    except duckdb.Error:
        pass  # no transaction was open


def _lock_for(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path.resolve(), threading.Lock())


def refresh_inbox(
    inbox: str | Path,
    *,
    warehouse: Warehouse | None = None,
    db: str | Path | None = None,
    settings: Settings | None = None,
    max_batches: int | None = None,
) -> RefreshReport:
    """Load the inbox's new batches (oldest first) into the warehouse, each exactly once.

    ``warehouse`` is the caller's read-write ``Warehouse`` (the app passes its own, so its
    readers keep querying: they see the warehouse before or after the load, never between);
    else ``db`` (default: the app's warehouse) is opened for this call. ``max_batches``
    bounds one refresh's work; the rest waits for the next (``RefreshReport.pending``).
    A batch that cannot load is reported in ``failed`` and marked in the manifest; the others
    still load.
    """
    started = time.perf_counter()
    inbox = _check_inbox(inbox)
    if max_batches is not None and max_batches < 1:
        raise CsMetricsError(f"max_batches must be at least 1, not {max_batches}.")
    if warehouse is not None and warehouse.read_only:
        raise CsMetricsError(
            f"The warehouse {warehouse.path} is open read-only; the process that refreshes "
            "from the inbox must open it read-write (Warehouse(path)) for all its threads."
        )
    wh = warehouse or Warehouse(db)
    try:
        with _lock_for(wh.path):
            return _refresh(inbox, wh, settings, max_batches, started)
    finally:
        if warehouse is None:
            wh.close()


def _refresh(
    inbox: Path,
    wh: Warehouse,
    settings: Settings | None,
    max_batches: int | None,
    started: float,
) -> RefreshReport:
    con = wh.connection()
    try:
        previous = _manifest(con)
    except duckdb.Error as exc:
        raise CsMetricsError(f"Cannot read the inbox manifest of {wh.path}: {exc}") from exc
    entries, ignored = _scan(inbox)
    skipped: list[str] = []
    todo: list[tuple[_Entry, str]] = []
    for entry in entries:
        try:
            checksum = _checksum(entry)
        except OSError:
            continue  # renamed or removed while we looked: the next refresh sees it
        if previous.get(entry.name, ("", ""))[0] == checksum:
            skipped.append(entry.name)
        else:
            todo.append((entry, checksum))
    pending = [e.name for e, _ in todo[max_batches:]] if max_batches else []
    todo = todo[:max_batches] if max_batches else todo

    failed: list[tuple[str, str]] = []
    good: list[_Batch] = []
    probe = scratch_connection()  # in memory: reading files needs no warehouse
    for entry, checksum in todo:
        try:
            good.append(_inspect(probe, entry, checksum))
        except CsMetricsError as exc:
            failed.append((entry.name, str(exc)))
    checksums = {e.name: c for e, c in todo}
    if failed:
        _mark_failed(con, failed, checksums)

    if good and settings is None:
        settings = _current_settings()  # raises _NotTheBatch: nothing marked
    totals = _Totals()
    loaded: list[str] = []
    for group in _groups(good):
        # A batch that spoils its group's load (the checks above found nothing) is found by
        # loading the group's batches one by one. _NotTheBatch propagates: nothing is marked
        # and the next refresh tries again.
        for part in [group] if len(group) == 1 else [group, *([b] for b in group)]:
            try:
                _load_group(wh, part, inbox, settings, totals)
            except _NotTheBatch:
                raise
            except CsMetricsError as exc:
                if len(part) == 1:
                    failed.append((part[0].name, str(exc)))
                    _mark_failed(con, failed[-1:], checksums)
                continue
            loaded += [b.name for b in part]
            if part is group:
                break

    order = {e.name: i for i, e in enumerate(entries)}
    failed.sort(key=lambda f: order[f[0]])
    done = set(loaded) | {n for n, _ in failed}
    return RefreshReport(
        inbox=inbox,
        db=wh.path,
        loaded=tuple(sorted(loaded, key=order.__getitem__)),
        skipped=tuple(skipped),
        failed=tuple(failed),
        reloaded=tuple(n for n in sorted(done, key=order.__getitem__) if n in previous),
        pending=tuple(pending),
        ignored=tuple(ignored),
        rows_loaded=tuple(sorted(totals.loaded.items())),
        rows_rejected=tuple(sorted(totals.rejected.items())),
        rows_superseded=tuple(sorted(totals.superseded.items())),
        ingest_ids=tuple(totals.ingest_ids),
        as_of=totals.as_of if totals.ingest_ids else wh.as_of(),
        seconds=time.perf_counter() - started,
    )


def _mark_failed(
    con: duckdb.DuckDBPyConnection, failed: list[tuple[str, str]], checksums: dict[str, str]
) -> None:
    now = _utcnow()
    try:
        con.execute("begin transaction")
        _record(con, [(name, checksums[name], "failed", now, None, msg) for name, msg in failed])
        con.execute("commit")
    except duckdb.Error as exc:
        con.execute("rollback")
        raise CsMetricsError(f"Cannot write the inbox manifest: {exc}") from exc
    for name, msg in failed:
        logger.warning("inbox batch %s failed: %s", name, msg)


def read_manifest(warehouse: Warehouse) -> pd.DataFrame:
    """The batches seen so far, latest first (empty before the first refresh)."""
    columns = ["name", "checksum", "status", "loaded_at", "rows", "message"]
    if not warehouse.has_table(MANIFEST):
        return pd.DataFrame(columns=columns)
    return warehouse.df(f"select {', '.join(columns)} from {MANIFEST} "
                        "order by loaded_at desc, name desc")


def watch_inbox(
    inbox: str | Path,
    *,
    db: str | Path | None = None,
    warehouse: Warehouse | None = None,
    interval_s: float = 5.0,
    stop: threading.Event | None = None,
    on_refresh: Callable[[RefreshReport], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_error: Callable[[Exception], None] | None = None,
    settings: Settings | None = None,
    max_batches: int | None = None,
) -> None:
    """Refresh from the inbox every ``interval_s`` seconds until ``stop`` is set.

    For the command line (until Ctrl-C) and for the app's background thread (pass the app's
    ``warehouse`` and a ``stop`` event). A bad batch is reported and marked, never fatal; any
    other error of one refresh is logged (and given to ``on_error``) and the next refresh
    tries again. Only a missing inbox at the start raises. ``on_refresh`` gets every report;
    ``report.changed`` says whether caches should be cleared.
    """
    inbox = _check_inbox(inbox)
    if interval_s < 0:
        raise CsMetricsError(f"The interval must be 0 seconds or more, not {interval_s}.")
    stop = stop or threading.Event()
    wh = warehouse or Warehouse(db)
    try:
        while not stop.is_set():
            try:
                report = refresh_inbox(inbox, warehouse=wh, settings=settings,
                                       max_batches=max_batches)
            except Exception as exc:  # noqa: BLE001 - a watcher outlives one bad refresh
                logger.warning("inbox refresh of %s failed: %s", inbox, exc)
                if on_error is not None:
                    on_error(exc)
            else:
                if report.changed:
                    logger.info("inbox %s: %s", inbox, report.summary())
                if on_refresh is not None:
                    try:
                        on_refresh(report)
                    except Exception:  # noqa: BLE001 - a callback's bug must not stop loads
                        logger.exception("on_refresh failed")
            if stop.is_set():
                break
            if sleep is time.sleep:
                stop.wait(interval_s)  # wakes as soon as stop is set
            else:
                sleep(interval_s)
    finally:
        if warehouse is None:
            wh.close()
