"""Customer feedback: survey KPIs, score distributions, trends, breakdowns, comment sentiment,
topics and emerging issues, cohorts, honest comparisons and the latest comments."""

from __future__ import annotations

import streamlit as st

import cs_metrics
from cs_metrics import CsMetricsError
from cs_metrics.core.safe_text import escape_markdown, markdown_code
from views._feedback_analyses import (
    _analysis_section,
)
from views._feedback_scores import (
    _breakdown_section,
    _distributions,
    _kpis,
    _trend,
)
from views._feedback_text import (
    _comments_section,
)
from views._filter_defs import describe_range
from views._filter_parts import as_of_text
from views._filters import filters_ui
from views._session import get_warehouse
from views._tables import missing_text


def main() -> None:
    st.title("Customer feedback")
    try:
        wh = get_warehouse()
        if not wh.has_table("tickets"):
            st.error(f"The warehouse {escape_markdown(wh.path)} has no tickets yet. Load data "
                     "into it with "
                     f"{markdown_code(f'python -m cs_metrics ingest SOURCE --db {wh.path}')}.")
            return
        filters = filters_ui(wh)
        st.caption(f"{as_of_text(wh)} · {describe_range(filters)} · surveys count in the "
                   "period their ticket was created")
        no_feedback = missing_text(cs_metrics.get_metric("feedback_count"), wh)
        if no_feedback:
            st.info(f"{no_feedback} Load a feedback table (csat, nps, ces, comment per "
                    "ticket) to see survey results here.")
            return
        row = _kpis(wh, filters)
        if row.get("feedback_count", 0) == 0:
            st.info("No survey responses for the tickets created in this range.")
            return
        st.divider()
        _distributions(wh, filters)
        st.divider()
        _trend(wh, filters)
        st.divider()
        _breakdown_section(wh, filters)
        st.divider()
        _analysis_section(wh, filters)
        st.divider()
        _comments_section(wh, filters)
    except CsMetricsError as exc:
        st.error(escape_markdown(exc))


main()
