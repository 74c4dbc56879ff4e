"""What every page shares: the warehouse, the first-run sample, cached queries, the date filter.

Not a page itself (the leading underscore keeps it out of any page list).
"""

from __future__ import annotations

import io
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import streamlit as st

import cs_metrics
from cs_metrics import CsMetricsError, Filters, Metric, QualityReport, Warehouse
from simulations import generator

QUERY_TTL_S = 600

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



# --- the warehouse ---------------------------------------------------------------------------


def _is_default(path: Path) -> bool:
    return cs_metrics.is_default_db(path)


@st.cache_resource(show_spinner=False)
def _open_warehouse(path: str) -> Warehouse:
    # The app process owns the file: read-write for every thread (one configuration per
    # process), so it can load the first-run sample and later refreshes.
    return Warehouse(path, read_only=False)


def get_warehouse() -> Warehouse:
    """The app's warehouse (one cached object per file); stops the page with a message if
    CS_METRICS_DB names a file that does not exist or the file cannot be opened."""
    path = cs_metrics.default_db_path()
    if not path.exists() and not _is_default(path):
        st.error(
            f"The warehouse {path} named by CS_METRICS_DB does not exist. Load data into it "
            f"with `python -m cs_metrics ingest SOURCE --db {path}`, or unset CS_METRICS_DB to "
            "use the sample dataset."
        )
        st.stop()
    try:
        return _open_warehouse(str(path))
    except CsMetricsError as exc:
        st.error(str(exc))
        st.stop()


@st.cache_resource(show_spinner=False)
def _bootstrap_lock() -> threading.Lock:
    # Sessions opened while the sample is being prepared wait for it instead of starting a
    # second generation.
    return threading.Lock()


def ensure_data() -> Warehouse:
    """The warehouse, with data: on the very first start, generate and load the sample."""
    wh = get_warehouse()
    if wh.has_table("tickets"):
        return wh
    if not _is_default(wh.path):
        st.error(
            f"The warehouse {wh.path} has no tickets yet. Load data into it with "
            f"`python -m cs_metrics ingest SOURCE --db {wh.path}`."
        )
        st.stop()
    lock = _bootstrap_lock()
    if not lock.acquire(blocking=False):
        with st.status("Preparing the sample dataset…", expanded=True) as status:
            st.write("Another browser session started preparing it; waiting for it to finish…")
            lock.acquire()
            status.update(label="Sample dataset ready", state="complete", expanded=False)
    try:
        if not wh.has_table("tickets"):
            _prepare_sample(wh)
    finally:
        lock.release()
    return wh


def _prepare_sample(wh: Warehouse) -> None:
    sample = wh.path.parent / "sample"
    started = time.perf_counter()
    with st.status("Preparing the sample dataset…", expanded=True) as status:
        try:
            st.write(
                f"There is no data in `{wh.path}` yet: generating two years of sample tickets "
                f"for a telecom support team into `{sample}/`…"
            )
            result = generator.generate(sample, end=None)
            st.write(
                f"Generated {result.counts['tickets']:,} tickets, "
                f"{result.counts.get('feedback', 0):,} survey responses and "
                f"{result.counts.get('ticket_events', 0):,} status events "
                f"in {result.seconds:.1f} s."
            )
            st.write(f"Validating and loading them into `{wh.path}`…")
            report = cs_metrics.ingest(sample, warehouse=wh)
            loaded = sum(t.loaded for t in report.tables)
            rejected = sum(t.rejected_total for t in report.tables)
            st.write(
                f"Loaded {loaded:,} rows ({rejected:,} rejected) in {report.seconds:.1f} s; "
                f"the data runs to {report.as_of:%d %b %Y %H:%M}."
            )
        except (CsMetricsError, OSError, ValueError) as exc:
            status.update(label="Preparing the sample dataset failed", state="error")
            st.error(f"The sample dataset could not be prepared: {exc}")
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
    return _query(wh, str(wh.path), tuple(metrics), tuple(by), grain, filters)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _quality(_wh: Warehouse, db: str) -> QualityReport:
    return cs_metrics.quality_report(_wh)


def quality(wh: Warehouse) -> QualityReport:
    """``cs_metrics.quality_report``, cached like the queries."""
    return _quality(wh, str(wh.path))


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _latest_rejects(_wh: Warehouse, db: str, limit: int) -> pd.DataFrame:
    return cs_metrics.latest_rejects(_wh, limit)


def latest_rejects(wh: Warehouse, limit: int = 200) -> pd.DataFrame:
    """The ``limit`` most recently rejected source rows, with their reasons."""
    return _latest_rejects(wh, str(wh.path), limit)


def parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def missing_text(metric: Metric, wh: Warehouse) -> str | None:
    """"this dataset has no ..." when the metric's inputs are absent, else None."""
    missing = cs_metrics.missing_inputs(metric, wh)
    if not missing:
        return None
    names = [INPUT_NAMES.get(m, m.replace("feedback.", "feedback ")) for m in missing]
    return f"This dataset has no {' or '.join(names)}."


# --- filters -----------------------------------------------------------------------------------


def _preset_window(preset: str, end: date) -> tuple[date | None, date | None]:
    """[from, to) for a preset; ``end`` is the exclusive end (the day after the data ends)."""
    last = end - timedelta(days=1)
    if preset == "Last 7 days":
        return end - timedelta(days=7), end
    if preset == "Last 30 days":
        return end - timedelta(days=30), end
    if preset == "Last 90 days":
        return end - timedelta(days=90), end
    if preset == "Quarter to date":
        return date(last.year, 3 * ((last.month - 1) // 3) + 1, 1), end
    if preset == "Year to date":
        return date(last.year, 1, 1), end
    return None, None  # all time


def last_created_day(wh: Warehouse) -> date | None:
    """The last day a ticket was created (presets end there, see Warehouse.created_range)."""
    span = wh.created_range()
    return span[1].date() if span else None


def date_range_ui(wh: Warehouse) -> Filters:
    """Sidebar date range (presets relative to the data's as-of date) -> frozen Filters."""
    as_of = wh.as_of()
    if as_of is None:
        return Filters()
    last = last_created_day(wh) or as_of.date()
    last = min(last, as_of.date())
    end = last + timedelta(days=1)
    with st.sidebar:
        # Widget state is dropped on pages without the widget; the kept copy brings the
        # choice back when the user returns.
        kept = st.session_state.get("_kept_date_preset", DEFAULT_PRESET)
        preset = st.selectbox(
            "Date range",
            DATE_PRESETS,
            index=DATE_PRESETS.index(kept) if kept in DATE_PRESETS else 0,
            key="date_preset",
            help="Tickets are counted in the period they were created. Presets end on the "
            f"last day a ticket was created ({last:%d %b %Y}), not today.",
        )
        st.session_state["_kept_date_preset"] = preset
        if preset == "Custom range":
            chosen = st.session_state.get("_kept_date_custom")
            if not chosen or chosen[1] > last:
                chosen = (end - timedelta(days=30), last)
            picked = st.date_input(
                "From – to (inclusive)",
                value=chosen,
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
            start, stop = _preset_window(preset, end)
        st.caption(describe_range(Filters(start, stop)))
    return Filters(date_from=start, date_to=stop)


def previous_period(filters: Filters) -> Filters | None:
    """The window of the same length just before ``filters`` (None for an open range)."""
    if filters.date_from is None or filters.date_to is None:
        return None
    length = filters.date_to - filters.date_from
    return Filters(filters.date_from - length, filters.date_from, filters.where)


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


def as_of_text(wh: Warehouse) -> str:
    as_of: datetime | None = wh.as_of()
    return f"Data as of {as_of:%Y-%m-%d %H:%M} UTC" if as_of else "No data loaded yet"


def filters_ui(wh: Warehouse) -> Filters:
    """The sidebar's global filters -> one frozen Filters (pages call this, not the parts)."""
    return date_range_ui(wh)
