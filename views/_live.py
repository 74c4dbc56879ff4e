"""The app process's background work and tuning: the live refresher of its warehouse from an
inbox (``cs_metrics.ops.refresher``), the server loop (``cs_metrics.ops.server``), the
in-app alert toasts, the GIL switch interval and the freeze of loaded code out of garbage
collection. The library does the work; this module starts it once per process and clears
the pages' cached results when the data changes.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading

import streamlit as st

import cs_metrics
from cs_metrics import CsMetricsError, Warehouse
from cs_metrics.core.safe_text import escape_markdown
from cs_metrics.ops.refresher import LiveRefresher, start_refresher
from views._session import is_same

# How long a thread holding the GIL runs before a waiting one gets it (Python's default: 5 ms).
GIL_SWITCH_INTERVAL_S = 0.0005
# Modules loaded when the collector's heap was last frozen (see freeze_loaded_code).
_frozen_at_modules = 0
_freeze_lock = threading.Lock()


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


INBOX_ENV = "CS_METRICS_INBOX"
INBOX_INTERVAL_ENV = "CS_METRICS_INBOX_INTERVAL"


@st.cache_resource(show_spinner=False)
def _live_refresher(db: str, inbox: str, interval_s: float, _wh: Warehouse) -> LiveRefresher:
    # the library's refresher (as ``ingest --watch``): a refresh that changed the data or the
    # manifest clears the pages' cached results; one that loaded a batch runs the alert rules
    live = start_refresher(_wh, inbox, interval_s, on_change=_data_changed)
    _REFRESHERS.append(live)
    return live


_REFRESHERS: list[LiveRefresher] = []


def stop_live_refreshers(timeout_s: float = 10.0) -> None:
    """Stop every background refresher of this process (tests; a server stops with it)."""
    while _REFRESHERS:
        _REFRESHERS.pop().close(timeout_s)


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


def _data_changed() -> None:
    st.cache_data.clear()  # every page reads the new figures on its next run


SERVER_LOOP_ENV = "CS_METRICS_SERVER_LOOP"


@st.cache_resource(show_spinner=False)
def _server_loop(db: str, _wh: Warehouse) -> object:
    from cs_metrics.cli.main import run_in_app
    from cs_metrics.ops.server import start_server_loop

    loop = start_server_loop(_wh, run_in_app, _data_changed)
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
