"""The sidebar's global filters -> one frozen Filters, rendered once per run.

app.py renders them for the pages that take them and the page's own call gets the same
Filters; a page run alone (``AppTest.from_file("views/x.py")``) renders them itself.

The URL mirror is kept by hand (``views._filter_parts``), not with Streamlit's widget binding
(``bind="query-params"``): a bound widget names its parameter after its key and writes its
option as shown ("Last 30 days", not ``range=last-30-days``), drops a value it does not know
without a word (the sidebar says which values of a link it ignored), cannot be set through
``st.query_params`` (opening a saved view does that), and a custom range is two parameters
(``from``/``to``) of one date input. Shared links, saved views and alert links keep working as
they are.
"""

from __future__ import annotations

import streamlit as st

from cs_metrics import CsMetricsError, Filters, Warehouse
from cs_metrics.core.safe_text import escape_markdown
from cs_metrics.core.zones import zone_names
from views._cache import dimension_options
from views._filter_defs import DEFAULT_PRESET, FILTER_DIMENSIONS
from views._filter_parts import (
    _clear_filters,
    _date_window,
    _init_state,
    _read_url,
    _url_params,
    _write_url,
    date_range_ui,
    default_zone,
    zone_ui,
)
from views._saved_views import saved_views_ui
from views._session import DATASET_KEY, dataset_label, run_values
from views._tables import segment_label


def filters_ui(wh: Warehouse) -> Filters:
    """The sidebar's global filters -> one frozen Filters, drawn once per run: app.py draws
    them for a page that takes them, and the page's own call then gets those (a second
    drawing would repeat every widget). A page run alone draws them here. An error while
    drawing them is raised again to the page, which shows it as before."""
    memo = run_values()
    key = ("filters", wh.cache_key)
    if memo is not None and key in memo:
        done = memo[key]
        if isinstance(done, CsMetricsError):
            raise done
        return done
    try:
        filters = _draw_filters(wh)
    except CsMetricsError as exc:
        if memo is not None:
            memo[key] = exc
        raise
    if memo is not None:
        memo[key] = filters
    return filters


def _draw_filters(wh: Warehouse) -> Filters:
    """The sidebar's widgets of the global filters (``filters_ui`` draws them once per run).

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
            "report_tz", default_zone())
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
            if key in st.session_state:  # values gone after a reload are dropped
                st.session_state[key] = [v for v in st.session_state[key] if v in known]
            _init_state(key, [])
            picked = st.multiselect(
                label,
                options[dim],
                key=key,
                persist_state="session",
                format_func=segment_label if dim == "customer_segment" else str,
                placeholder="All",
                help=f"Only tickets with these {label.lower()} values; empty means all. "
                "Listed by ticket volume.",
            )
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
            preset = st.session_state.get("date_preset", DEFAULT_PRESET)
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
