"""Customer-service metrics: the app's pages. Run with `streamlit run app.py`."""

from __future__ import annotations

import sys

import streamlit as st
from altair.utils import schemapi

from cs_metrics import CsMetricsError
from cs_metrics.core.warehouse import catalog_snapshot
from views._auth import account_sidebar, gate, settings_audit
from views._filters import filters_ui
from views._live import GIL_SWITCH_INTERVAL_S, freeze_loaded_code, live_refresher, server_loop
from views._session import base_warehouse, ensure_data, run_memo

st.set_page_config(page_title="Customer service metrics", page_icon="📞", layout="wide")

# Every session's runs share this one interpreter. A run that waits on DuckDB gives up the GIL
# and then waits for a busy run to hand it back: by default up to 5 ms, on every query, so a
# light page of small queries beside one busy run took many times its time alone (see
# bench/bench_gil.py). A shorter interval hands the GIL back sooner.
sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
# Altair checks every part of a chart (a title, an axis, a selection) against Vega-Lite's JSON
# schema as it is made, for the sake of tracebacks; in a page view that is Python time every
# other session waits for. The charts are checked whole against the schema by the test suite.
schemapi.disable_debug_mode()

# One run reads the warehouse's catalog (its tables, columns, meta) once, not per question,
# and works out the session's warehouse once.
with catalog_snapshot(), run_memo():
    # Live data loads from the first run of the server, signed in or not.
    if (_base := base_warehouse()).has_table("tickets"):
        live_refresher(_base)
        server_loop(_base)  # commands handed over, alert rules and reports on schedule
    # In hosted mode (an [auth] section in the secrets) nobody gets past here without signing
    # in and having a role; the scope then applies to every query the pages make.
    scope = gate(base_warehouse)
    settings_audit(base_warehouse)  # a changed settings file is written to the audit log

    # The pages that read the sidebar's global filters: drawn here once per run and handed
    # to the page (its own filters_ui call gets them).
    filtered = [
        st.Page("views/overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page("views/trends.py", title="Ticket trends", icon=":material/trending_up:"),
        st.Page("views/aging.py", title="Aging & SLA", icon=":material/hourglass_bottom:"),
        st.Page("views/representatives.py", title="Representatives", icon=":material/groups:"),
        st.Page("views/feedback.py", title="Customer feedback", icon=":material/reviews:"),
        st.Page("views/seasonality.py", title="Seasonality & staffing",
                icon=":material/calendar_month:"),
        st.Page("views/outages.py", title="Outages", icon=":material/map:"),
        st.Page("views/reports.py", title="Reports", icon=":material/summarize:"),
    ]
    pages = [
        *filtered[:-1],
        st.Page("views/whatif.py", title="What-if simulation", icon=":material/science:"),
        filtered[-1],  # Reports
        st.Page("views/alerts.py", title="Alerts", icon=":material/notifications:"),
    ]
    if scope.may("view_quality"):  # load-wide counts and raw rejected source rows
        pages.append(st.Page("views/data_quality.py", title="Data quality",
                             icon=":material/fact_check:"))
    if scope.may("manage_data"):
        pages.append(st.Page("views/data_sources.py", title="Your data",
                             icon=":material/upload_file:"))
    if scope.may("view_audit"):
        pages.append(st.Page("views/audit.py", title="Audit log", icon=":material/policy:"))
    page = st.navigation(pages, expanded=True)  # every page listed, none behind "View more"
    account_sidebar(base_warehouse, scope)
    wh = ensure_data()  # the first start generates and loads the sample dataset
    if any(page is p for p in filtered) and wh.has_table("tickets"):
        try:
            filters_ui(wh)
        except CsMetricsError:
            pass  # the page's own call raises it again and shows it where it always has
    page.run()
# Full garbage collections stop every session's run; the loaded code is frozen out of them.
freeze_loaded_code()
