"""What every page shares: the warehouse, the first-run sample, cached queries, the filters.

Not a page itself (the leading underscore keeps it out of any page list).
"""

from __future__ import annotations

import functools
import gc
import hashlib
import io
import logging
import os
import re
import sys
import textwrap
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import streamlit as st

import cs_metrics
from cs_metrics import CsMetricsError, Filters, Metric, QualityReport, Warehouse
from cs_metrics.core.access import LOCAL, Scope, ScopedWarehouse
from cs_metrics.core.safe_text import escape_markdown, markdown_code, neutralize_csv
from cs_metrics.core.warehouse import implausible_note
from cs_metrics.core.zones import to_local, zone_names
from cs_metrics.metrics.drilldown import TicketPage, rep_label, ticket_page
from cs_metrics.metrics.flow import resolved_per_period
from cs_metrics.ops.saved_views import MAX_NAME, ViewStore, clean_name, person_key
from simulations import generator
from views._auth import current_scope

_log = logging.getLogger(__name__)

QUERY_TTL_S = 600
# How long a thread holding the GIL runs before a waiting one gets it (Python's default: 5 ms).
GIL_SWITCH_INTERVAL_S = 0.0005
# Modules loaded when the collector's heap was last frozen (see freeze_loaded_code).
_frozen_at_modules = 0
_freeze_lock = threading.Lock()
# Map colours of outage severities, shared by the Outages and What-if pages.
SEVERITY_COLOURS: dict[str, list[int]] = {
    "minor": [255, 193, 7], "major": [255, 112, 67], "critical": [211, 47, 47],
}
BASEMAP_PROBE = "https://basemaps.cartocdn.com/gl/positron-gl-style/style.json"

# How the UI names a missing input ("this dataset has no ..."), by registry requirement.
INPUT_NAMES: dict[str, str] = {
    "first_response_at": "first-response times",
    "resolved_at": "resolution times",
    "contacts": "contact counts",
    "reopened_count": "reopen counts",
    "handle_time_s": "handle times",
    "customer_id": "customer ids",
    "feedback.ticket_id": "survey feedback",
    "feedback.csat": "CSAT scores",
    "feedback.nps": "NPS scores",
    "feedback.ces": "CES scores",
    "feedback.comment": "survey comments",
    "ticket_events.ticket_id": "status history (ticket_events)",
}

DATE_PRESETS: tuple[str, ...] = (
    "Last 7 days",
    "Last 30 days",
    "Last 90 days",
    "Quarter to date",
    "Year to date",
    "All time",
    "Custom range",
)
DEFAULT_PRESET = "Last 90 days"
# How a preset reads in a shared link (?range=last-30-days).
PRESET_SLUGS: dict[str, str] = {
    p: p.lower().replace(" ", "-").replace("custom-range", "custom") for p in DATE_PRESETS
}
# The sidebar's dimension filters, in order: (dimension, label). Each is also a query
# parameter of the same name (?channel=chat&channel=email).
FILTER_DIMENSIONS: tuple[tuple[str, str], ...] = (
    ("channel", "Channel"),
    ("priority", "Priority"),
    ("domain", "Domain"),
    ("location", "Location"),
    ("customer_segment", "Customer segment"),
    ("team", "Team"),
    ("rep_name", "Representative"),
    # a ticket matches when it has any of the chosen tags
    ("tag", "Tag"),
)
DATE_PARAMS: tuple[str, ...] = ("range", "from", "to", "tz")
# How a table or card shows a missing value (see show_table).
MISSING = "–"
# --- the warehouse ---------------------------------------------------------------------------


def _is_default(path: Path) -> bool:
    return cs_metrics.is_default_db(path)


@st.cache_resource(show_spinner=False)
def _open_warehouse(path: str) -> Warehouse:
    # The app process owns the file: read-write for every thread (one configuration per
    # process), so it can load the first-run sample and later refreshes. Streamlit runs
    # every rerun on a new thread: the file stays open between them.
    wh = Warehouse(path, read_only=False)
    wh.hold_open()
    return wh


# The session's chosen dataset (a warehouse path); absent means the app's default warehouse.
DATASET_KEY = "dataset_db"


def is_same(a: Path, b: Path) -> bool:
    """Whether two paths name one warehouse file."""
    return a.resolve() == b.resolve()


def active_db() -> Path:
    """The warehouse this session looks at: the dataset chosen on the "Your data" page, else
    the app's default (``CS_METRICS_DB`` or the sample)."""
    chosen = st.session_state.get(DATASET_KEY)
    return Path(chosen) if chosen else cs_metrics.default_db_path()


def is_active(path: Path) -> bool:
    return is_same(active_db(), Path(path))


def switch_dataset(path: Path | None) -> None:
    """Make ``path`` this session's warehouse (None or the default: back to the default).

    Cached results are keyed by the warehouse file, so other datasets' results stay valid.
    """
    if path is None or is_same(Path(path), cs_metrics.default_db_path()):
        st.session_state.pop(DATASET_KEY, None)
    else:
        st.session_state[DATASET_KEY] = str(path)


def dataset_label(path: Path) -> str:
    """How the UI names a warehouse: the sample, the CS_METRICS_DB file, or a dataset."""
    path = Path(path)
    default = cs_metrics.default_db_path()
    if is_same(path, default):
        return "Sample dataset" if _is_default(default) else f"{path.stem} (CS_METRICS_DB)"
    return path.stem


# What one run of the app works out once (see run_memo); None outside a run.
_run = threading.local()


@contextmanager
def run_memo() -> Iterator[None]:
    """Within the block (app.py wraps each run in it), this thread works out the session's
    warehouse once: a page asks for it for every query and every download button, and
    each answer checks the file on disk and looks up Streamlit's resource cache (about a
    millisecond). A dataset switched mid-run is a new answer. Nested blocks share the
    outer one."""
    if getattr(_run, "memo", None) is not None:
        yield
        return
    _run.memo = {}
    try:
        yield
    finally:
        _run.memo = None


def base_warehouse() -> Warehouse:
    """This session's warehouse (one cached object per file), whole, without a scope: for
    the sign-in gate and for writes (audit log, alert acknowledgements) after the caller
    has checked the scope allows them. Stops the page with a message if CS_METRICS_DB
    names a file that does not exist or the file cannot be opened. A chosen dataset that
    was deleted meanwhile falls back to the default with a warning."""
    memo = getattr(_run, "memo", None)
    if memo is None:
        return _base_warehouse()
    key = ("base_warehouse", st.session_state.get(DATASET_KEY))
    if key not in memo:
        memo[key] = _base_warehouse()
    return memo[key]


def _base_warehouse() -> Warehouse:
    path = active_db()
    default = cs_metrics.default_db_path()
    if not is_same(path, default) and not path.exists():
        switch_dataset(None)
        st.warning(escape_markdown(
            f"The dataset {path.stem} ({path}) no longer exists; showing "
            f"{dataset_label(default)} instead."
        ))
        path = default
    if not path.exists() and not _is_default(path):
        st.error(
            f"The warehouse {escape_markdown(path)} named by CS_METRICS_DB does not exist. "
            "Load data into it with "
            f"{markdown_code(f'python -m cs_metrics ingest SOURCE --db {path}')}, or unset "
            "CS_METRICS_DB to use the sample dataset."
        )
        st.stop()
    try:
        return _open_warehouse(str(path))
    except CsMetricsError as exc:
        st.error(escape_markdown(exc))
        st.stop()


def get_warehouse() -> Warehouse:
    """This session's warehouse as its scope sees it: whole in local mode, else only the
    rows the signed-in person's role covers (``cs_metrics.core.access``)."""
    base = base_warehouse()
    scope = current_scope()
    if scope is None:  # the app's sign-in gate runs first; a page never sees this
        st.error("Sign in to see this page.")
        st.stop()
    if scope.role == "local":
        return base
    try:
        return _scoped_warehouse(str(base.path), scope.key, base, scope)
    except CsMetricsError as exc:
        st.error(escape_markdown(exc))
        st.stop()


@st.cache_resource(show_spinner=False, max_entries=256)
def _scoped_warehouse(path: str, scope_key: str, _base: Warehouse, _scope: Scope) -> Warehouse:
    # one object per file and scope: its connections carry the scope's views
    return ScopedWarehouse(_base, _scope)




@st.cache_resource(show_spinner=False)
def _bootstrap_lock() -> threading.Lock:
    # Sessions opened while the sample is being prepared wait for it instead of starting a
    # second generation.
    return threading.Lock()


def ensure_data() -> Warehouse:
    """The warehouse, with data: on the very first start, generate and load the sample.
    With an inbox configured, live batches are loaded into it in the background."""
    wh = get_warehouse()
    if wh.has_table("tickets"):
        live_refresher(wh)
        server_loop(wh)
        return wh
    if not _is_default(wh.path):  # only the app's own warehouse gets the sample
        how = (
            markdown_code(f"python -m cs_metrics ingest SOURCE --db {wh.path}")
            if is_same(wh.path, cs_metrics.default_db_path())
            else "the Your data page"
        )
        st.error(f"The warehouse {escape_markdown(wh.path)} has no tickets yet. Load data into "
                 f"it with {how}.")
        st.stop()
    lock = _bootstrap_lock()
    if not lock.acquire(blocking=False):
        with st.status("Preparing the sample dataset…", expanded=True) as status:
            st.write("Another browser session started preparing it; waiting for it to finish…")
            lock.acquire()
            status.update(label="Sample dataset ready", state="complete", expanded=False)
    try:
        if not wh.has_table("tickets"):
            _prepare_sample(wh.base)
    finally:
        lock.release()
    return wh


def _prepare_sample(wh: Warehouse) -> None:
    sample = wh.path.parent / "sample"
    started = time.perf_counter()
    with st.status("Preparing the sample dataset…", expanded=True) as status:
        try:
            st.write(
                f"There is no data in {markdown_code(wh.path)} yet: generating two years of "
                f"sample tickets for a telecom support team into {markdown_code(f'{sample}/')}…"
            )
            result = generator.generate(sample, end=None)
            st.write(
                f"Generated {plural(result.counts['tickets'], 'ticket')}, "
                f"{plural(result.counts.get('feedback', 0), 'survey response')} and "
                f"{plural(result.counts.get('ticket_events', 0), 'status event')} "
                f"in {result.seconds:.1f} s."
            )
            st.write(f"Validating and loading them into {markdown_code(wh.path)}…")
            report = cs_metrics.ingest(sample, warehouse=wh)
            loaded = sum(t.loaded for t in report.tables)
            rejected = sum(t.rejected_total for t in report.tables)
            st.write(
                f"Loaded {plural(loaded, 'row')} ({rejected:,} rejected) in "
                f"{report.seconds:.1f} s; "
                f"the data runs to {report.as_of:%d %b %Y %H:%M}."
            )
        except (CsMetricsError, OSError, ValueError) as exc:
            status.update(label="Preparing the sample dataset failed", state="error")
            st.error(f"The sample dataset could not be prepared: {escape_markdown(exc)}")
            st.stop()
        st.cache_data.clear()  # results computed before the load are stale
        status.update(
            label=f"Sample dataset ready in {time.perf_counter() - started:.1f} s; later starts "
            "reuse it",
            state="complete",
            expanded=False,
        )


# --- cached results ----------------------------------------------------------------------------


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _query(
    _wh: Warehouse,
    db: str,
    metrics: tuple[str, ...],
    by: tuple[str, ...],
    grain: str | None,
    filters: Filters | None,
) -> pd.DataFrame:
    # ``_wh`` is not hashable; ``db`` (its file) keys the cache instead.
    return cs_metrics.query(_wh, list(metrics), list(by), grain, filters)


def run_query(
    wh: Warehouse,
    metrics: tuple[str, ...] | list[str],
    by: tuple[str, ...] | list[str] = (),
    grain: str | None = None,
    filters: Filters | None = None,
) -> pd.DataFrame:
    """``cs_metrics.query``, cached for ten minutes per (file, metrics, by, grain, filters)."""
    return _query(wh, wh.cache_key, tuple(metrics), tuple(by), grain, filters)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _quality(_wh: Warehouse, db: str) -> QualityReport:
    return cs_metrics.quality_report(_wh)


def quality(wh: Warehouse) -> QualityReport:
    """``cs_metrics.quality_report``, cached like the queries."""
    return _quality(wh, wh.cache_key)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _latest_rejects(_wh: Warehouse, db: str, limit: int) -> pd.DataFrame:
    return cs_metrics.latest_rejects(_wh, limit)


def latest_rejects(wh: Warehouse, limit: int = 200) -> pd.DataFrame:
    """The ``limit`` most recently rejected source rows, with their reasons."""
    return _latest_rejects(wh, wh.cache_key, limit)


# Column names that say a column counts things (``tickets``, ``ticket_count``, ``n_reps``,
# ``responses``): written as integers when every value is whole. Not an average or a share.
_COUNT_NAME = re.compile(
    r"(^|_)(count|counts|n|tickets|responses|surveys|events|comments|rows|loaded|rejected|"
    r"merged|collapsed|breached|total)$|^(n|num)_")
_NOT_COUNT = re.compile(r"(^|_)(avg|mean|median|pct|rate|share|per|ratio|min|h|s)(_|$)")


def _is_count_column(name: object) -> bool:
    try:
        return cs_metrics.get_metric(str(name)).is_count
    except (CsMetricsError, KeyError):
        text = str(name).lower()
        return bool(_COUNT_NAME.search(text)) and not _NOT_COUNT.search(text)


def integer_counts(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its count columns as integers (pandas' nullable ``Int64``, a missing
    value stays missing) where pandas made them float because of a missing value: a
    registry metric with ``is_count``, or a column named as a count, whose values are all
    whole. Exports write ``7852``, never ``7852.0``. Other columns are left as they are."""
    out = None
    for col in df.columns:
        series = df[col]
        if not pd.api.types.is_float_dtype(series) or not _is_count_column(col):
            continue
        values = series.dropna()
        if len(values) and not ((values % 1 == 0).all() and values.abs().max() < 2**53):
            continue
        out = df.copy() if out is None else out
        out[col] = series.astype("Int64")
    return df if out is None else out


def plural(n: int | float, word: str, many: str | None = None) -> str:
    """``n`` with its noun, singular for exactly one: ``1 ticket``, ``2,345 tickets``,
    ``1 entry``/``3 entries`` (``many`` for an irregular plural; ``y`` after a consonant
    becomes ``ies``). Every count in a message goes through this."""
    if many is None:
        many = (word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou"
                else word + "s")
    return f"{n:,} {word if n == 1 else many}"


def show_table(df: pd.DataFrame, *, column_config: dict[str, Any] | None = None,
               hide_index: bool = True, where: object = st, labels: bool = True,
               **kwargs: Any) -> Any:
    """``where.dataframe(df, ...)`` the way every page shows a table: a missing value
    (None, NaN, NaT) reads "–" instead of "None" or an empty cell, and the index is
    hidden. Give columns their labels with ``column_config`` (never show raw column
    names); any other ``st.dataframe`` argument (``key``, ``on_select``,
    ``column_order``, ...) passes through. Columns the caller gives no label get
    ``column_label``'s, unless ``labels`` is false (columns named by the data, such as a
    transposed table's). Returns what ``st.dataframe`` returns (the selection with
    ``on_select``)."""
    kwargs.setdefault("placeholder", MISSING)
    config = {str(c): column_label(str(c)) for c in df.columns
              if not isinstance(c, tuple)} if labels and isinstance(df, pd.DataFrame) else {}
    config.update(column_config or {})
    return where.dataframe(  # type: ignore[attr-defined]
        df, hide_index=hide_index, column_config=config, **kwargs)


def segment_label(code: object) -> str:
    """What a customer segment is called on pages (``[display.segments]``, ``M`` ->
    "Mid-market"); the code as the data writes it when not named; "–" when missing."""
    try:
        label = cs_metrics.load_settings().segment_label(code)
    except CsMetricsError:  # the settings page says why; show the data's own code
        label = None if code is None or pd.isna(code) else str(code)
    return MISSING if label is None else label


def with_segment_labels(df: pd.DataFrame, column: str = "customer_segment",
                        into: str = "segment_label") -> pd.DataFrame:
    """``df`` with ``into`` holding ``column``'s segment labels (``column`` keeps the code
    a drill-down filters on); unchanged without ``column``."""
    if column not in df.columns:
        return df
    out = df.copy()
    out[into] = [segment_label(v) for v in out[column]]
    return out


# Labels of columns the pages' tables share, beside the registry's metrics and dimensions.
COLUMN_LABELS: dict[str, str] = {
    "period": "Period", "ticket_id": "Ticket", "created_at": "Created", "rep_id": "Rep id",
    "status": "Status", "subject": "Subject", "share_pct": "Share (%)", "count": "Count",
    "tickets": "Tickets", "customers": "Customers", "responses": "Responses",
    "created": "Created", "closed": "Closed", "rows": "Rows", "reason": "Reason",
    "table": "Table", "column": "Column", "value": "Value", "note": "Note",
    "rank": "Rank", "hour": "Hour", "weekday": "Weekday", "date": "Date", "day": "Day",
    "week": "Week", "month": "Month", "scenario": "Scenario", "rule": "Rule",
    "severity": "Severity", "title": "Title", "message": "Message", "fired_at": "Fired at",
}
# Unit suffixes of column names (first_response_min) and how a label writes them.
_UNIT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_pct", "%"), ("_min", "min"), ("_h", "h"), ("_s", "s"), ("_km", "km"),
)


def column_label(name: str) -> str:
    """How a table heads column ``name``: a registry metric's label with its unit, a
    dimension's label, a shared column's label, else the name in words with its unit
    (``first_response_min`` -> "First response (min)"). Pages give their own labels with
    ``column_config`` where these do not fit."""
    metric = cs_metrics.METRICS.get(name)
    if metric is not None:
        unit = metric.unit if metric.unit and metric.unit not in (
            "tickets", "customers", "responses", "score") else ""
        return f"{metric.label} ({unit})" if unit else metric.label
    dims = dict(FILTER_DIMENSIONS)
    if name in dims:
        return dims[name]
    if name in COLUMN_LABELS:
        return COLUMN_LABELS[name]
    words, unit = name, ""
    for suffix, shown in _UNIT_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            words, unit = name[: -len(suffix)], shown
            break
    text = words.replace("_", " ").strip().capitalize() or name
    return f"{text} ({unit})" if unit else text


def parquet_bytes(df: pd.DataFrame, scope: Scope | None = None) -> bytes:
    """``df`` as Parquet, with who made the file and when in its key-value metadata
    (``exported_by``, ``exported_role``, ``exported_at``). ``scope``: who, when the file is
    made outside a page run (a deferred download); else the signed-in person. Count
    columns are written as integers (``integer_counts``)."""
    table = pa.Table.from_pandas(integer_counts(df), preserve_index=False)
    scope = scope or current_scope() or LOCAL
    meta = dict(table.schema.metadata or {})
    meta.update({b"exported_by": scope.actor.encode(), b"exported_role": scope.role.encode(),
                 b"exported_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()})
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), buf)
    return buf.getvalue()


def _export_detail(data: bytes, rows: int | None, filters: Filters | None) -> dict:
    detail: dict = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if rows is not None:
        detail["rows"] = int(rows)
    if filters is not None:
        detail["filters"] = describe_filters(filters)
    return detail


def _record_export(file_name: str, detail: dict) -> None:
    from views._auth import audit

    audit(base_warehouse(), current_scope() or LOCAL, "export", file_name, detail)


def _made_on_click(make: Callable[[], bytes], wh: Warehouse, scope: Scope, file_name: str,
                   rows: int | None, filters: Filters | None) -> Callable[[], bytes]:
    """``make``, writing the export to the audit log when it has made the file. It runs when
    the button is clicked, outside any page run: who and where are those of the run that
    showed the button."""
    from cs_metrics.core import audit as audit_log

    def made() -> bytes:
        data = make()
        try:
            audit_log.record(wh.base, scope.actor, scope.role, "export", file_name,
                             _export_detail(data, rows, filters), issuer=scope.issuer,
                             subject=scope.subject)
        except CsMetricsError as exc:  # as a page's audit(): the file still goes out
            _log.warning("Could not write the export of %s to the audit log: %s",
                         file_name, exc)
        return data

    return made


def export_button(
    label: str,
    data: bytes | Callable[[], bytes],
    file_name: str,
    mime: str,
    *,
    key: str | None = None,
    rows: int | None = None,
    filters: Filters | None = None,
    icon: str = ":material/download:",
    help: str | None = None,  # noqa: A002 (Streamlit's name)
    where: object = st,
    scope: Scope | None = None,
) -> None:
    """A download button whose download is written to the audit log: who (``scope``, else
    the signed-in person), which file, its size and SHA-256 (to trace a file back to its
    export), rows and filters.

    ``data`` as a callable makes the file when the button is clicked, not on every run of
    the page (a page's CSV and Parquet of every chart cost more than its charts); the
    click then neither reruns the page nor waits for it."""
    if callable(data):
        scope = scope or current_scope() or LOCAL
        where.download_button(  # type: ignore[attr-defined]
            label, _made_on_click(data, base_warehouse(), scope, file_name, rows, filters),
            file_name=file_name, mime=mime, key=key, icon=icon, help=help, on_click="ignore",
        )
        return
    where.download_button(  # type: ignore[attr-defined]
        label, data, file_name=file_name, mime=mime, key=key, icon=icon, help=help,
        on_click=_record_export, args=(file_name, _export_detail(data, rows, filters)),
    )


def csv_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as CSV, with the text cells a spreadsheet would run as a formula (``=``, ``+``,
    ``-``, ``@``, tab, CR first) prefixed with ``'``: every CSV download of the pages is made
    here. Numbers and timestamps are written as they are, counts as integers
    (``integer_counts``); Parquet keeps every value."""
    return neutralize_csv(integer_counts(df)).to_csv(index=False).encode()


def table_downloads(df: pd.DataFrame, stem: str, filters: Filters | None, key: str, *,
                    labels: tuple[str, str] = ("Download CSV", "Download Parquet"),
                    where: object = st, help_text: str | None = None) -> None:
    """CSV and Parquet of ``df`` as ``STEM.csv`` and ``STEM.parquet``, made on click and
    written to the audit log."""
    scope = current_scope() or LOCAL
    for label, kind, ext, mime, make in (
        (labels[0], "CSV", "csv", "text/csv", lambda: csv_bytes(df)),
        (labels[1], "Parquet", "parquet", "application/vnd.apache.parquet",
         lambda: parquet_bytes(df, scope)),
    ):
        export_button(label, make, f"{stem}.{ext}", mime, key=f"{key}_{ext}", rows=len(df),
                      filters=filters, where=where, scope=scope,
                      help=f"{help_text} {kind}: {stem}.{ext}" if help_text else None)


def download_buttons(df: pd.DataFrame, name: str, filters: Filters) -> None:
    """CSV and Parquet downloads of ``df``; the file name carries the active filters."""
    with st.container(horizontal=True):
        table_downloads(df, f"{name}_{filters_slug(filters)}", filters, f"dl_{name}",
                        help_text="This chart's data as")


def filters_slug(filters: Filters) -> str:
    """The active filters as a file-name part: ``2024-12-01_2025-02-28_channel-chat+email``."""
    parts = [
        filters.date_from.isoformat() if filters.date_from else "start",
        (filters.date_to - timedelta(days=1)).isoformat() if filters.date_to else "end",
    ]
    parts += [f"{dim}-{'+'.join(values)}" for dim, values in filters.where]
    if filters.tz != "UTC":  # the file's days are local days of this zone
        parts.append(f"tz-{filters.tz}")
    slug = "_".join(re.sub(r"[^A-Za-z0-9+.-]+", "-", part).strip("-") for part in parts)
    return slug[:150]


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _resolved(_wh: Warehouse, db: str, filters: Filters, grain: str) -> pd.DataFrame:
    return resolved_per_period(_wh, filters, grain)


def resolved(wh: Warehouse, filters: Filters, grain: str) -> pd.DataFrame:
    """``cs_metrics.metrics.flow.resolved_per_period``, cached like the queries."""
    return _resolved(wh, wh.cache_key, filters, grain)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _tickets(
    _wh: Warehouse,
    db: str,
    filters: Filters,
    period: date | None,
    grain: str | None,
    extra: tuple[tuple[str, str | None], ...],
    open_at: datetime | None,
    limit: int,
    offset: int,
) -> TicketPage:
    return ticket_page(_wh, filters, period=period, grain=grain, extra=dict(extra),
                       open_at=open_at, limit=limit, offset=offset)


def tickets(
    wh: Warehouse,
    filters: Filters,
    *,
    period: date | None = None,
    grain: str | None = None,
    extra: dict[str, str | None] | None = None,
    open_at: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> TicketPage:
    """``cs_metrics.metrics.drilldown.ticket_page`` (one page of rows), cached like the queries."""
    return _tickets(wh, wh.cache_key, filters, period, grain, tuple((extra or {}).items()),
                    open_at, limit, offset)


# --- drill-down: from a clicked chart point or a selected table row to its tickets ------------

DRILL_PAGE_SIZE = 50
# every chart that can be clicked names its point selection this and selects on this field
PICK = "pick"
DRILL_COLUMNS = {
    "ticket_id": st.column_config.TextColumn("Ticket"),
    "status": st.column_config.TextColumn("Status"),
    "priority": st.column_config.TextColumn("Priority"),
    "channel": st.column_config.TextColumn("Channel"),
    "domain": st.column_config.TextColumn("Domain"),
    "location": st.column_config.TextColumn("Location"),
    "customer_segment": st.column_config.TextColumn("Customer segment"),
    "team": st.column_config.TextColumn("Team"),
    "created_at": st.column_config.DatetimeColumn("Created (UTC)", format="YYYY-MM-DD HH:mm"),
    "first_response_min": st.column_config.NumberColumn("First response (min)", format="%.1f"),
    "resolution_h": st.column_config.NumberColumn("Resolution (h)", format="%.1f"),
    "sla_first_response_met": st.column_config.CheckboxColumn("First response SLA met"),
    "csat": st.column_config.NumberColumn("CSAT (avg 1-5)", format="%.1f"),
    "rep_name": st.column_config.TextColumn(
        "Representative", help="The name, or the rep id when the dataset has no name for it."),
}


def drill_columns(tz: str) -> dict:
    """The ticket lists' columns; times are shown in the reporting zone ``tz``."""
    return {**DRILL_COLUMNS, "created_at": st.column_config.DatetimeColumn(
        f"Created ({tz})", format="YYYY-MM-DD HH:mm")}


@dataclass(frozen=True)
class Drill:
    """The tickets behind one figure: created in a period, in the backlog at a moment, and/or
    with some dimension values (None: without a value)."""

    label: str
    period: date | None = None
    grain: str | None = None
    open_at: datetime | None = None
    extra: tuple[tuple[str, str | None], ...] = ()


def opened(label: str, key: str) -> Any:
    """An expander whose content is made only while it is open: the container, or None
    while it is closed. Opening or closing it reruns the page (from the cache). For the
    tables and downloads behind a chart: made on every run, they cost about as much as
    the chart, for the few runs in which someone looks at them. ``key`` keeps it open
    across runs while the page is shown; by convention it starts with ``open_`` (the tests
    open every such expander by that prefix)."""
    box = st.expander(label, key=key, on_change="rerun")
    return box if box.open else None


def show_chart(chart: alt.TopLevelMixin, *, where: object = st, **kwargs: Any) -> Any:
    """``where.altair_chart(chart, **kwargs)``, without Altair's check of the whole spec
    against Vega-Lite's JSON schema on every run: with the checks of parts as they are
    made (Altair's debug mode, off in app.py) it was an eighth of the interpreter's time
    over a visit of every page, and Streamlit runs it under a lock every session shares.
    The test suite checks every page's charts against the schema instead
    (tests/test_app.py::test_charts_build_cheaply_and_are_valid_vega_lite)."""
    chart = _fit_width(chart)
    # Streamlit calls chart.to_dict() with no arguments; Altair's own __setattr__ would
    # make "to_dict" a property of the spec, so the method is replaced on the instance.
    object.__setattr__(chart, "to_dict", functools.partial(chart.to_dict, validate=False))
    return where.altair_chart(chart, **kwargs)  # type: ignore[attr-defined]


def _fit_width(chart: alt.TopLevelMixin) -> alt.TopLevelMixin:
    """A single or layered chart fits the container's width and keeps its own height as the
    plot's height. Streamlit's default, "fit" in both directions, squeezes the plot into
    the height given to the whole chart (a title, subtitle and legend can leave it a few
    pixels) and makes Vega-Lite warn for a height in steps (``Dropping "fit-y"``). Facets
    and concatenations keep Streamlit's own choice (they cannot fit)."""
    if not isinstance(chart, alt.Chart | alt.LayerChart):
        return chart
    if chart.autosize is not alt.Undefined:
        return chart
    if isinstance(chart, alt.Chart) and isinstance(chart.encoding, alt.FacetedEncoding) and any(
            getattr(chart.encoding, channel, alt.Undefined) is not alt.Undefined
            for channel in ("row", "column", "facet")):
        return chart
    return chart.properties(autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))


# The width a full-width chart has at least on a laptop's screen (px), and the average width
# of a character of a title and of a subtitle in the charts' theme: how long a title's line
# may be before it is wrapped (a line wider than its chart is cut off).
CHART_WIDTH_PX = 900
TITLE_CHAR_PX = 9.0
SUBTITLE_CHAR_PX = 6.6


def chart_title(text: str, subtitle: str | None = None, *, columns: int = 1) -> alt.TitleParams:
    """A chart's title and subtitle, anchored left and wrapped into lines that fit a chart
    in one of ``columns`` side-by-side columns."""
    width = CHART_WIDTH_PX / max(1, columns)
    lines = textwrap.wrap(text, max(16, int(width / TITLE_CHAR_PX)))
    params: dict[str, Any] = {"anchor": "start"}
    if subtitle:
        params["subtitle"] = textwrap.wrap(subtitle, max(24, int(width / SUBTITLE_CHAR_PX)))
    return alt.TitleParams(lines if len(lines) > 1 else text, **params)


# The least height of a chart's plot (px): lower, its marks and axis labels crowd together.
MIN_PLOT_HEIGHT = 140


def bar_height(bars: int, step: int = 22, minimum: int = 160) -> int:
    """The plot's height for ``bars`` bars side by side down the page: a step each, and at
    least ``minimum`` (an explicit height: a height in steps cannot fit Streamlit's chart)."""
    return max(minimum, step * bars)


# How many categories a chart shows before the rest are folded into one "Other" bar: a
# real export has a hundred or more domains or topics, too many bars to read.
TOP_CATEGORIES = 12


def fold_other(df: pd.DataFrame, by: str, counts: list[str], n: int = TOP_CATEGORIES,
               keys: tuple[str, ...] = ()) -> pd.DataFrame:
    """An aggregated frame with its ``n`` largest values of ``by`` (by the sum of
    ``counts[0]``) and the rest as one value "Other (k more)", their ``counts`` summed per
    ``keys`` (the other columns of a long frame). Only for counts: the rate of "Other"
    would come from its numerators and denominators, never from the rates."""
    totals = df.groupby(by, dropna=False, sort=False)[counts[0]].sum().sort_values(
        ascending=False, kind="stable")
    if len(totals) <= n:
        return df
    keep = set(totals.index[:n])
    label = f"Other ({len(totals) - n} more)"
    folded = df.assign(**{by: df[by].where(df[by].isin(keep), label)})
    return folded.groupby([by, *keys], as_index=False, sort=False, dropna=False)[counts].sum()


# The map style Streamlit's frontend reads as "no basemap" (pydeck's own "no style given",
# when no map provider is named): the layers on a blank background and nothing fetched.
# Without it the frontend fetches Carto's style, which fails without a network (an error in
# the browser's console on every map).
NO_BASEMAP = "__MAP_STYLE__"


def basemap() -> dict[str, Any]:
    """The basemap arguments of a ``pydeck.Deck``: Carto's light tiles when they can be
    fetched, else none."""
    if basemap_reachable():
        return {"map_style": "light"}
    return {"map_style": NO_BASEMAP, "map_provider": None}


def pick_selection(fields: str = PICK) -> alt.Parameter:
    """A click selection for an Altair chart; the data carries the drill key in ``fields``."""
    return alt.selection_point(name=PICK, fields=[fields], on="click")


def picked(key: str) -> str | None:
    """The drill key of the point clicked in the chart ``key`` (None when none is)."""
    state = st.session_state.get(key)
    try:
        chosen = state["selection"][PICK]
    except (KeyError, TypeError):
        return None
    if isinstance(chosen, list) and chosen and isinstance(chosen[0], dict):
        value = chosen[0].get(PICK)
    elif isinstance(chosen, dict) and chosen.get(PICK):
        value = chosen[PICK][0] if isinstance(chosen[PICK], list) else chosen[PICK]
    else:
        return None
    return None if value is None else str(value)


def selected_row(key: str, df: pd.DataFrame) -> pd.Series | None:
    """The row selected in the dataframe ``key`` (shown from ``df``), or None."""
    state = st.session_state.get(key)
    try:
        rows = list(state["selection"]["rows"])
    except (KeyError, TypeError):
        return None
    if not rows or not 0 <= rows[0] < len(df):
        return None
    return df.iloc[rows[0]]


def row_drill(row: pd.Series | None, dims: tuple[str, ...], label: str) -> Drill | None:
    """A drill to the tickets with ``row``'s values of ``dims`` (a missing value: none)."""
    if row is None:
        return None
    extra = tuple((d, None if pd.isna(row[d]) else str(row[d])) for d in dims)
    return Drill(label=label, extra=extra)


def shown_tickets(rows: pd.DataFrame) -> pd.DataFrame:
    """A ticket list as shown: the representative's rep id where the dataset has no name
    for it (``cs_metrics.metrics.drilldown.rep_label``), in one "Representative" column."""
    if "customer_segment" in rows.columns:  # named as the settings name it
        rows = rows.assign(customer_segment=[
            None if v is None or pd.isna(v) else segment_label(v)
            for v in rows["customer_segment"]])
    if "rep_id" not in rows.columns:
        return rows
    out = rows.drop(columns="rep_id")
    if "rep_name" in out.columns:
        out["rep_name"] = [rep_label(n, r, none="") or None  # unassigned: "–"
                           for n, r in zip(rows["rep_name"], rows["rep_id"], strict=True)]
    return out


def _drill_turn(key: str, step: int) -> None:
    st.session_state[f"{key}_page"] = max(0, st.session_state.get(f"{key}_page", 0) + step)


def ticket_list_ui(wh: Warehouse, filters: Filters, drill: Drill, key: str) -> TicketPage | None:
    """The tickets behind ``drill``, newest first, a page at a time with Previous/Next."""
    signature = (filters, drill)
    if st.session_state.get(f"_{key}_for") != signature:
        st.session_state[f"_{key}_for"] = signature
        st.session_state[f"{key}_page"] = 0
    page_no = st.session_state.get(f"{key}_page", 0)
    page = tickets(wh, filters, period=drill.period, grain=drill.grain,
                   extra=dict(drill.extra), open_at=drill.open_at, limit=DRILL_PAGE_SIZE,
                   offset=page_no * DRILL_PAGE_SIZE)
    if page.total == 0:
        # a drill's label quotes a value from the data: shown as text, never as Markdown
        st.info(f"No tickets match: {escape_markdown(drill.label)}.")
        return page
    if not len(page.rows) and page_no:  # past the end after the data shrank
        st.session_state[f"{key}_page"] = 0
        st.rerun()
    st.markdown(f"**{escape_markdown(drill.label)}**")
    if page.total == 1:
        st.caption("1 ticket")
    else:
        st.caption(f"Tickets {page.first:,}–{page.last:,} of {page.total:,}, newest first")
    show_table(shown_tickets(page.rows), key=f"{key}_rows",
               column_config=drill_columns(filters.tz))
    with st.container(horizontal=True):
        st.button("Previous", key=f"{key}_prev", disabled=page_no == 0,
                  on_click=_drill_turn, args=(key, -1), icon=":material/chevron_left:")
        st.button("Next", key=f"{key}_next", disabled=not page.has_next,
                  on_click=_drill_turn, args=(key, 1), icon=":material/chevron_right:")
        pages = (page.total + DRILL_PAGE_SIZE - 1) // DRILL_PAGE_SIZE
        st.caption(f"Page {page_no + 1} of {pages}")
    return page


def missing_text(metric: Metric, wh: Warehouse) -> str | None:
    """"this dataset has no ..." when the metric's inputs are absent, else None."""
    missing = cs_metrics.missing_inputs(metric, wh)
    if not missing:
        return None
    names = [INPUT_NAMES.get(m, m.replace("feedback.", "feedback ")) for m in missing]
    return f"This dataset has no {' or '.join(names)}."


# --- filters -----------------------------------------------------------------------------------


def _preset_window(preset: str, end: date,
                   first: date | None = None) -> tuple[date | None, date | None]:
    """[from, to) for a preset; ``end`` is the exclusive end (the day after the data ends).
    ``first``, the data's first day: a window reaching before it starts there instead (a
    90-day window on a 3-day export is those 3 days, not 87 days of nothing first)."""
    last = end - timedelta(days=1)
    if preset == "Last 7 days":
        start = end - timedelta(days=7)
    elif preset == "Last 30 days":
        start = end - timedelta(days=30)
    elif preset == "Last 90 days":
        start = end - timedelta(days=90)
    elif preset == "Quarter to date":
        start = date(last.year, 3 * ((last.month - 1) // 3) + 1, 1)
    elif preset == "Year to date":
        start = date(last.year, 1, 1)
    else:
        return None, None  # all time
    if first is not None and start < first <= last:
        start = first
    return start, end


def first_created_day(wh: Warehouse, tz: str = "UTC") -> date | None:
    """The first local day of ``tz`` a ticket was created (presets start no earlier)."""
    span = wh.created_range()
    return to_local(span[0], tz).date() if span else None


def last_created_day(wh: Warehouse, tz: str = "UTC") -> date | None:
    """The last local day of ``tz`` a ticket was created (presets end there, see
    Warehouse.created_range)."""
    span = wh.created_range()
    return to_local(span[1], tz).date() if span else None


def default_zone() -> str:
    """The settings' reporting zone (``[display] timezone``); UTC when the settings do not
    load (the page that reads them says why)."""
    try:
        return cs_metrics.load_settings().display_timezone
    except CsMetricsError:
        return "UTC"


def current_zone() -> str:
    """The session's reporting zone (the sidebar's choice, kept across pages), else the
    settings' zone: for pages without the sidebar's filters."""
    tz = st.session_state.get("_kept_report_tz")
    return tz if tz in zone_names() else default_zone()


def zone_ui() -> str:
    """The sidebar's reporting zone: local days, weeks, months and hours everywhere."""
    default = default_zone()
    if st.session_state.get("_kept_report_tz") not in zone_names():
        st.session_state["_kept_report_tz"] = default
    if st.session_state.get("report_tz") not in (None, *zone_names()):
        del st.session_state["report_tz"]
    _init_state("report_tz", "_kept_report_tz", default)
    tz = st.sidebar.selectbox(
        "Time zone", zone_names(), key="report_tz",
        help="Days, weeks, months, hours of the week and the date range are read in this "
        f"zone; timestamps are stored in UTC. The settings' default is {default}.")
    st.session_state["_kept_report_tz"] = tz
    return tz


def _init_state(key: str, kept_key: str, default: object) -> None:
    # Widget state is dropped on pages without the widget, and a widget on another page is
    # another widget: assigning the value before the widget exists carries it over, and the
    # kept copy brings the choice back after a page without the widget.
    st.session_state[key] = st.session_state.get(key, st.session_state.get(kept_key, default))


def date_range_ui(wh: Warehouse, tz: str = "UTC") -> Filters:
    """Sidebar date range (presets relative to the data's as-of date, in local days of the
    reporting zone ``tz``) -> frozen Filters."""
    window = _date_window(wh, tz)
    if window is None:
        return Filters(tz=tz)
    last, end = window
    with st.sidebar:
        if st.session_state.get("_kept_date_preset") not in DATE_PRESETS:
            st.session_state["_kept_date_preset"] = DEFAULT_PRESET
        if st.session_state.get("date_preset") not in (None, *DATE_PRESETS):
            del st.session_state["date_preset"]
        _init_state("date_preset", "_kept_date_preset", DEFAULT_PRESET)
        preset = st.selectbox(
            "Date range",
            DATE_PRESETS,
            key="date_preset",
            help="Tickets are counted in the period they were created. Presets end on the "
            f"last day a ticket was created ({last:%d %b %Y}), not today, and start no "
            "earlier than the first.",
        )
        st.session_state["_kept_date_preset"] = preset
        if preset == "Custom range":
            chosen = st.session_state.get("_kept_date_custom")
            if not chosen or chosen[1] > last or chosen[0] > chosen[1]:
                chosen = (end - timedelta(days=30), last)
                st.session_state["_kept_date_custom"] = chosen
            current = st.session_state.get("date_custom")
            if current is not None and any(d > last for d in tuple(current)):
                del st.session_state["date_custom"]
            _init_state("date_custom", "_kept_date_custom", chosen)
            picked = st.date_input(
                "From – to (inclusive)",
                max_value=last,
                key="date_custom",
                    format="YYYY-MM-DD",
            )
            days = tuple(picked) if isinstance(picked, (tuple, list)) else (picked,)
            if len(days) == 2:
                st.session_state["_kept_date_custom"] = days
                start, stop = days[0], days[1] + timedelta(days=1)
            elif len(days) == 1:
                st.caption("Pick an end date; showing the start day only.")
                start, stop = days[0], days[0] + timedelta(days=1)
            else:
                start, stop = None, None
        else:
            start, stop = _preset_window(preset, end, first_created_day(wh, tz))
        st.caption(describe_range(Filters(start, stop, tz=tz)))
    return Filters(date_from=start, date_to=stop, tz=tz)


def _date_window(wh: Warehouse, tz: str = "UTC") -> tuple[date, date] | None:
    """(last local day of ``tz`` with tickets, the exclusive end presets use), or None
    without data."""
    as_of = wh.as_of()
    if as_of is None:
        return None
    today = to_local(as_of, tz).date()
    last = min(last_created_day(wh, tz) or today, today)
    return last, last + timedelta(days=1)

def previous_period(filters: Filters) -> Filters | None:
    """The window of the same length just before ``filters`` (None for an open range)."""
    if filters.date_from is None or filters.date_to is None:
        return None
    length = filters.date_to - filters.date_from
    if filters.date_from - date.min < length:
        return None  # a range from the first centuries has no window before it
    return Filters(filters.date_from - length, filters.date_from, filters.where, filters.tz)


def describe_range(filters: Filters) -> str:
    if filters.date_from is None and filters.date_to is None:
        return "All tickets"
    if filters.date_from is None:
        return f"Tickets created before {filters.date_to:%d %b %Y}"
    if filters.date_to is None:
        return f"Tickets created from {filters.date_from:%d %b %Y}"
    last = filters.date_to - timedelta(days=1)
    days = (filters.date_to - filters.date_from).days
    return (
        f"Tickets created {filters.date_from:%d %b %Y} – {last:%d %b %Y} "
        f"({days} day{'s' if days != 1 else ''})"
    )


def describe_filters(filters: Filters) -> str:
    """The date range plus any dimension filters, for a page's caption."""
    labels = dict(FILTER_DIMENSIONS)
    parts = [describe_range(filters)]
    parts += [f"{labels.get(dim, dim)}: {', '.join(values)}" for dim, values in filters.where]
    return " · ".join(parts)


def as_of_text(wh: Warehouse) -> str:
    as_of: datetime | None = wh.as_of()
    # tickets dated outside the plausible window (written past a load's checks) are counted
    note = implausible_note(wh)
    if as_of is None:
        return "No ticket has a plausible date" if note else "No data loaded yet"
    tz = current_zone()
    text = f"Data as of {to_local(as_of, tz):%Y-%m-%d %H:%M} {tz}"
    return f"{text} · {note}" if note else text


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _dimension_options(_wh: Warehouse, db: str, dim: str) -> list[str]:
    return _wh.dimension_values(dim)


def dimension_options(wh: Warehouse, dim: str) -> list[str]:
    """The values of ``dim`` in the data, most tickets first (empty if the dataset lacks it)."""
    return _dimension_options(wh, wh.cache_key, dim)


def _read_url(options: dict[str, list[str]], last: date) -> list[str]:
    """Query parameters -> the kept filter choices; returns what was ignored, for a note."""
    params = st.query_params
    ignored: list[str] = []
    if "tz" in params:
        if params.get("tz") in zone_names():
            st.session_state["_kept_report_tz"] = params.get("tz")
            st.session_state.pop("report_tz", None)
        else:
            ignored.append(f"tz={str(params.get('tz'))[:60]}")
    by_slug = {slug: preset for preset, slug in PRESET_SLUGS.items()}
    preset: str | None = None
    if "range" in params:
        preset = by_slug.get(params.get("range", ""))
        if preset is None:
            ignored.append(f"range={params.get('range')}")
    raw_from, raw_to = params.get("from"), params.get("to")
    if (raw_from or raw_to) and preset in (None, "Custom range"):
        try:
            start = date.fromisoformat(raw_from or "")
            stop = date.fromisoformat(raw_to) if raw_to else last
            if start > stop or start > last:
                raise ValueError
            st.session_state["_kept_date_custom"] = (start, min(stop, last))
            preset = "Custom range"
        except ValueError:
            ignored.append(f"from={raw_from or ''}&to={raw_to or ''}")
            if preset == "Custom range":
                preset = None
    if preset is not None:
        st.session_state["_kept_date_preset"] = preset
    for dim, _ in FILTER_DIMENSIONS:
        values = params.get_all(dim)
        if not values:
            continue
        known = set(options.get(dim, ()))
        ignored += [f"{dim}={v}" for v in values if v not in known]
        st.session_state[f"_kept_filter_{dim}"] = [v for v in dict.fromkeys(values) if v in known]
    return ignored


def _url_params(filters: Filters, preset: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"range": [PRESET_SLUGS[preset]]}
    if filters.tz != default_zone():  # the settings' zone needs no parameter
        out["tz"] = [filters.tz]
    if preset == "Custom range" and filters.date_from and filters.date_to:
        out["from"] = [filters.date_from.isoformat()]
        out["to"] = [(filters.date_to - timedelta(days=1)).isoformat()]
    for dim, values in filters.where:
        out[dim] = list(values)
    return out


def _write_url(wanted: dict[str, list[str]]) -> None:
    """Mirror the filters in the URL (only the keys that differ, so others stay)."""
    for key in (*DATE_PARAMS, *(dim for dim, _ in FILTER_DIMENSIONS)):
        values = wanted.get(key, [])
        if st.query_params.get_all(key) == values:
            continue
        if values:
            st.query_params[key] = values
        else:
            del st.query_params[key]


def _clear_filters() -> None:
    st.session_state["date_preset"] = DEFAULT_PRESET
    st.session_state["_kept_date_preset"] = DEFAULT_PRESET
    st.session_state.pop("_kept_date_custom", None)
    st.session_state.pop("date_custom", None)
    for dim, _ in FILTER_DIMENSIONS:
        st.session_state[f"filter_{dim}"] = []
        st.session_state[f"_kept_filter_{dim}"] = []
    st.session_state["_filters_url_notes"] = []


# --- saved views: the filters under a name, per person (cs_metrics.ops.saved_views) ------------

VIEW_PICK = "saved_view"


def _view_person() -> str:
    scope = current_scope() or LOCAL
    if scope.role == "local":
        return person_key("local")
    return person_key(scope.actor, scope.issuer, scope.subject)


def _view_store() -> ViewStore:
    return ViewStore(keys=(*DATE_PARAMS, *(dim for dim, _ in FILTER_DIMENSIONS)))


def _apply_view() -> None:
    """Open the chosen view as its link would open: its parameters in the URL, read back
    through the same checks as a shared link's (``_read_url``) on this run."""
    name = st.session_state.get(VIEW_PICK)
    view = _view_store().views(_view_person()).get(name) if name else None
    if view is None:
        return
    _clear_filters()
    for key in ("date_preset", "date_custom", "report_tz", "_kept_report_tz",
                *(f"filter_{dim}" for dim, _ in FILTER_DIMENSIONS)):
        st.session_state.pop(key, None)
    for key in (*DATE_PARAMS, *(dim for dim, _ in FILTER_DIMENSIONS)):
        if key in st.query_params:
            del st.query_params[key]
    for key, values in view.query.items():
        st.query_params[key] = values
    st.session_state.pop("_filters_url_read", None)  # filters_ui reads the URL again
    st.session_state.pop("_filters_url_wanted", None)  # and keeps the note on what it ignored
    st.session_state["_views_message"] = ("info", f"Showing the saved view {name}.")


def _save_view(replace: bool) -> None:
    wanted = st.session_state.get("_filters_url_wanted")
    name = st.session_state.get("view_name", "")
    if not wanted:
        return
    try:
        view = _view_store().save(_view_person(), name, wanted, replace=replace)
    except CsMetricsError as exc:
        taken = not replace and "exists already" in str(exc)
        st.session_state["_views_replace"] = clean_name(name) if taken else None
        st.session_state["_views_message"] = ("error", str(exc))
        return
    st.session_state["_views_replace"] = None
    st.session_state["_views_message"] = ("success", f"Saved the view {view.name}.")
    st.session_state[VIEW_PICK] = view.name
    st.session_state["view_name"] = ""


def _delete_view() -> None:
    name = st.session_state.get(VIEW_PICK)
    if not name:
        return
    try:
        _view_store().delete(_view_person(), name)
    except CsMetricsError as exc:
        st.session_state["_views_message"] = ("error", str(exc))
        return
    st.session_state[VIEW_PICK] = None
    st.session_state["_views_message"] = ("success", f"Deleted the view {name}.")


def saved_views_ui(wanted: dict[str, list[str]] | None) -> str | None:
    """The sidebar's saved views (under the filters): choose one to open it, save the
    current filters (``wanted``, the link's parameters) under a name, delete the chosen
    one, copy its link. Names and notes are the user's or the file's text: shown only
    as widget options and plain text (``st.text``, ``st.code``), never as Markdown.
    Returns the name of the view chosen, if any."""
    listed = _view_store().views(_view_person())
    shown = listed.get(st.session_state.get(VIEW_PICK) or "")
    if shown is None or shown.query != wanted:
        # deleted elsewhere, or the filters changed since: choosing it again reopens it
        st.session_state[VIEW_PICK] = None
    chosen = st.selectbox(
        "Saved views", listed.names, index=None, key=VIEW_PICK, on_change=_apply_view,
        placeholder="Choose a view" if listed.views else "No saved views yet",
        disabled=not listed.views,
        help="Filters saved under a name, kept for you on this app's server (on this "
        "machine in local mode). Choosing one sets the filters as its link would.")
    with st.expander("Save, share or delete a view"):
        st.text_input("Name of the view", key="view_name", max_chars=MAX_NAME,
                      placeholder="e.g. Chat, last 30 days")
        st.button("Save current view", key="view_save", on_click=_save_view, args=(False,),
                  disabled=not wanted, icon=":material/bookmark_add:")
        if st.session_state.get("_views_replace"):
            st.text(f"Replace the view {st.session_state['_views_replace']}?")
            st.button("Replace it", key="view_replace", on_click=_save_view, args=(True,))
        if chosen:
            view = listed.get(chosen)
            if view is not None:
                path = urllib.parse.urlsplit(st.context.url or "").path
                st.caption("Its link (add it to the app's address to share the view):")
                st.code(view.link(path), language=None, wrap_lines=True)
            st.button("Delete the chosen view", key="view_delete", on_click=_delete_view,
                      icon=":material/delete:")
    message = st.session_state.pop("_views_message", None)
    if message:
        getattr(st, message[0])(escape_markdown(message[1]))
    for note in listed.notes:
        st.text(note)
    return chosen


def filters_ui(wh: Warehouse) -> Filters:
    """The sidebar's global filters -> one frozen Filters (pages call this, not the parts).

    The choices are mirrored in the URL (``?range=last-30-days&channel=chat&channel=email``,
    ``from``/``to`` as inclusive ISO days for a custom range), so a copied link opens the same
    view; the first run of a session reads them, unknown values are ignored with a note.
    """
    options = {dim: dimension_options(wh, dim) for dim, _ in FILTER_DIMENSIONS}
    if "_filters_url_read" not in st.session_state and wh.as_of() is not None:
        st.session_state["_filters_url_read"] = True
        # the link's zone first: it decides which local day the data's last one is
        url_tz = st.query_params.get("tz")
        zone = url_tz if url_tz in zone_names() else st.session_state.get(
            "_kept_report_tz", default_zone())
        window = _date_window(wh, zone if zone in zone_names() else default_zone())
        if window is not None:
            st.session_state["_filters_url_notes"] = _read_url(options, window[0])
    if DATASET_KEY in st.session_state:
        st.sidebar.caption(
            f"Dataset: **{escape_markdown(dataset_label(wh.path))}** (change it on the Your "
            "data page)"
        )
    tz = zone_ui()
    window = _date_window(wh, tz)
    dates = date_range_ui(wh, tz)
    chosen: dict[str, list[str]] = {}
    with st.sidebar:
        for dim, label in FILTER_DIMENSIONS:
            if not options[dim]:
                continue  # the dataset has no values for it
            key = f"filter_{dim}"
            known = set(options[dim])
            for state in (key, f"_kept_filter_{dim}"):
                if state in st.session_state:  # values gone after a reload are dropped
                    st.session_state[state] = [
                        v for v in st.session_state[state] if v in known
                    ]
            _init_state(key, f"_kept_filter_{dim}", [])
            picked = st.multiselect(
                label,
                options[dim],
                key=key,
                format_func=segment_label if dim == "customer_segment" else str,
                placeholder="All",
                help=f"Only tickets with these {label.lower()} values; empty means all. "
                "Listed by ticket volume.",
            )
            st.session_state[f"_kept_filter_{dim}"] = list(picked)
            chosen[dim] = list(picked)
        filters = Filters.build(dates.date_from, dates.date_to, tz=tz, **chosen)
        active = len(filters.where)
        st.button(
            "Clear filters",
            key="filters_clear",
            on_click=_clear_filters,
            disabled=not active and st.session_state.get("date_preset") == DEFAULT_PRESET,
            help="Back to the last 90 days with no other filter.",
        )
        if window is not None:
            preset = st.session_state.get("_kept_date_preset", DEFAULT_PRESET)
            wanted = _url_params(filters, preset)
            _write_url(wanted)
            before = st.session_state.get("_filters_url_wanted")
            if before is not None and before != wanted:  # the user changed a filter
                st.session_state["_filters_url_notes"] = []
            st.session_state["_filters_url_wanted"] = wanted
        notes = st.session_state.get("_filters_url_notes") or []
        if notes:
            # the values come from the link as typed: shown as text, never as Markdown
            st.caption(f"Ignored in the link (not in this dataset or not valid): "
                       f"{escape_markdown(', '.join(notes))}.")
        saved_views_ui(st.session_state.get("_filters_url_wanted"))
    return filters


@st.cache_resource(ttl=3600, show_spinner=False)
def basemap_reachable() -> bool:
    """Whether the basemap tiles can be fetched (CS_METRICS_BASEMAP=on/off decides outright).

    Without a network the layers are drawn on a blank background instead of broken tiles."""
    forced = os.environ.get("CS_METRICS_BASEMAP", "").strip().lower()
    if forced in ("on", "off"):
        return forced == "on"
    try:
        with urllib.request.urlopen(BASEMAP_PROBE, timeout=1.5) as resp:
            return resp.status == 200
    except (OSError, ValueError):
        return False


def no_filters() -> Filters:
    """The empty filter, for file names of tables the sidebar does not filter."""
    return Filters()


def who() -> str:
    """Who is using the app, for acknowledgements and audit: the signed-in user's e-mail in
    hosted mode, else "local user"."""
    scope = current_scope()
    if scope is None or scope.role == "local":
        return "local user"
    return scope.actor


def alert_toasts(wh: Warehouse) -> None:
    """Pop up the alerts raised since they were last shown (the in-app channel)."""
    from cs_metrics.ops.alerts import mark_in_app_shown, pending_in_app

    try:
        pending = pending_in_app(wh)
    except CsMetricsError:
        return
    if pending.empty:
        return
    shown = st.session_state.setdefault("_toasted", set())
    fresh = pending[~pending["occurrence_id"].isin(shown)]
    icons = {"critical": ":material/error:", "warning": ":material/warning:"}
    for row in fresh.itertuples():
        # an alert's title and message quote the data (a location, a segment, a term)
        st.toast(f"**{escape_markdown(row.title)}** — {escape_markdown(row.message)}",
                 icon=icons.get(row.severity, ":material/info:"))
        shown.add(row.occurrence_id)
    try:
        mark_in_app_shown(wh.base, fresh["occurrence_id"].tolist())
    except CsMetricsError:
        pass  # a read-only warehouse: the session remembers what it showed


# --- live data: a background refresher of the app's warehouse from an inbox folder ----------

INBOX_ENV = "CS_METRICS_INBOX"
INBOX_INTERVAL_ENV = "CS_METRICS_INBOX_INTERVAL"


@dataclass
class LiveRefresher:
    """The thread that loads the inbox's new batches into the app's warehouse; what it did
    last, for the pages to say."""

    inbox: Path
    interval_s: float
    stop: threading.Event
    thread: threading.Thread | None = None
    last_report: object | None = None  # cs_metrics.ingestion.inbox.RefreshReport
    last_error: str | None = None
    refreshes: int = 0


def _after_refresh(live: LiveRefresher, wh: Warehouse, report: object) -> None:
    from cs_metrics.ops.alerts import run_alerts

    live.last_report = report
    live.refreshes += 1
    if getattr(report, "changed", False):
        st.cache_data.clear()  # every page reads the new figures on its next run
        try:
            run_alerts(wh, cs_metrics.load_settings())
        except CsMetricsError as exc:
            live.last_error = f"The alert rules could not run: {exc}"


@st.cache_resource(show_spinner=False)
def _live_refresher(db: str, inbox: str, interval_s: float, _wh: Warehouse) -> LiveRefresher:
    from cs_metrics.ingestion.inbox import watch_inbox

    live = LiveRefresher(Path(inbox), interval_s, threading.Event())

    def on_error(exc: Exception) -> None:
        live.last_error = str(exc)

    def run() -> None:
        try:
            watch_inbox(inbox, warehouse=_wh, interval_s=interval_s, stop=live.stop,
                        on_refresh=lambda r: _after_refresh(live, _wh, r), on_error=on_error)
        except CsMetricsError as exc:
            live.last_error = str(exc)

    live.thread = threading.Thread(target=run, name="cs-metrics-inbox", daemon=True)
    live.thread.start()
    _REFRESHERS.append(live)
    return live


_REFRESHERS: list[LiveRefresher] = []


def stop_live_refreshers(timeout_s: float = 10.0) -> None:
    """Stop every background refresher of this process (tests; a server stops with it)."""
    while _REFRESHERS:
        live = _REFRESHERS.pop()
        live.stop.set()
        if live.thread is not None:
            live.thread.join(timeout_s)


def live_refresher(wh: Warehouse) -> LiveRefresher | None:
    """Start (once per process) loading ``$CS_METRICS_INBOX`` into the app's own warehouse
    every ``$CS_METRICS_INBOX_INTERVAL`` seconds (default 5); None without an inbox, for a
    read-only warehouse or for another dataset than the app's."""
    inbox = os.environ.get(INBOX_ENV, "").strip()
    if not inbox or wh.read_only or not is_same(wh.path, cs_metrics.default_db_path()):
        return None
    try:
        interval = float(os.environ.get(INBOX_INTERVAL_ENV, "") or 5.0)
    except ValueError:
        interval = 5.0
    return _live_refresher(str(wh.path), inbox, max(0.5, interval), wh.base)


# --- the server loop: commands handed over, alert rules and scheduled reports on time -------


def _data_changed() -> None:
    st.cache_data.clear()  # every page reads the new figures on its next run


SERVER_LOOP_ENV = "CS_METRICS_SERVER_LOOP"


@st.cache_resource(show_spinner=False)
def _server_loop(db: str, _wh: Warehouse) -> object:
    from cs_metrics.ops.server import start_server_loop

    loop = start_server_loop(_wh, _data_changed)
    _LOOPS.append(loop)
    return loop


_LOOPS: list = []


def server_loop(wh: Warehouse) -> object | None:
    """Start (once per process) the app's work loop on its own warehouse (see
    cs_metrics.ops.server): commands other processes hand over, the alert rules every
    ``[alerts] every`` minutes, scheduled reports. None for a read-only warehouse or
    another dataset than the app's."""
    base = wh.base
    if base.read_only or not is_same(base.path, cs_metrics.default_db_path()):
        return None
    if os.environ.get(SERVER_LOOP_ENV, "").strip().lower() == "off":
        return None  # the operator runs the app without it (and the tests, but their own)
    try:
        return _server_loop(str(base.path), base)
    except CsMetricsError as exc:  # a job folder not the app's own: the pages still serve
        logging.getLogger("cs_metrics.ops.server").warning("no work loop: %s", exc)
        return None


def stop_server_loops(timeout_s: float = 10.0) -> None:
    """Stop every server loop of this process (tests; a server stops with it)."""
    while _LOOPS:
        _LOOPS.pop().close(timeout_s)


def freeze_loaded_code() -> None:
    """After a run that loaded modules, collect once and freeze what the process then holds.

    Every session's runs share one interpreter, and Python's full garbage collection walks
    every object it tracks while holding the GIL. After the pages' libraries are loaded that is
    about 250,000 objects (pandas, Altair's schema classes, statsmodels, Streamlit): a full
    collection took 0.2-0.3 s, every 15-60 s under 25 sessions, and every run in flight
    waited for it. ``gc.freeze()`` moves the objects alive now out of the collector's reach,
    so later collections walk only what runs create (a few ms to tens of ms).

    The loaded code changes only when a module is imported, mostly on the first visits to
    each page after a start, so this collects and freezes only when ``sys.modules`` has
    grown: a few times per server process. A frozen object is still freed when its last
    reference goes; only one that later ends up in a reference cycle stays. The cyclic
    garbage there is at the moment of freezing is collected first.
    """
    global _frozen_at_modules
    if len(sys.modules) == _frozen_at_modules:
        return
    with _freeze_lock:
        loaded = len(sys.modules)
        if loaded == _frozen_at_modules:
            return
        gc.collect()
        gc.freeze()
        _frozen_at_modules = loaded


def load_count_columns() -> dict[str, Any]:
    """Column settings of the counts a load reports beside read/loaded/rejected: rows
    merged, skipped or folded into their key's latest row (Data quality and Your data)."""
    number = st.column_config.NumberColumn
    return {
        "collapsed": number("Merged duplicates", format="localized",
                            help="Identical dimension rows merged into one."),
        "skipped_empty": number("Empty feedback skipped", format="localized",
                                help="Feedback rows with no score and no comment."),
        "skipped_filter": number(
            "Skipped by the filter", format="localized",
            help="Rows the mapping's `where` left out: not rejected, not scored."),
        "merged": number(
            "Merged into the latest row", format="localized",
            help="Earlier rows of a key the mapping's `one_row_per` keeps once (its latest "
                 "row by `latest_by`)."),
    }
