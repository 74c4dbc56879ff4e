"""This session's warehouse: the app's own or a chosen dataset, whole or as the signed-in
person's scope sees it, worked out once per run; the first-run sample dataset.

Not a page itself (the leading underscore keeps it out of any page list).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

import cs_metrics
from cs_metrics import CsMetricsError, Warehouse
from cs_metrics.core.access import Scope, ScopedWarehouse
from cs_metrics.core.safe_text import escape_markdown, markdown_code
from simulations import generator
from views._auth import current_scope
from views._tables import plural


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


def run_values() -> dict | None:
    """What this run has worked out so far (keyed by its kind), to share with the rest of
    the run: the warehouse, the filters app.py rendered for the page. None outside
    ``run_memo`` (a page run alone)."""
    return getattr(_run, "memo", None)


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
    # imported here: the background work starts from the warehouse this module works out
    from views._live import live_refresher, server_loop

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


def who() -> str:
    """Who is using the app, for acknowledgements and audit: the signed-in user's e-mail in
    hosted mode, else "local user"."""
    scope = current_scope()
    if scope is None or scope.role == "local":
        return "local user"
    return scope.actor
