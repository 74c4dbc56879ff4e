"""Drill-down: from a clicked chart point or a selected table row to its tickets, a page at a
time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from cs_metrics import Filters, Warehouse
from cs_metrics.core.safe_text import escape_markdown
from cs_metrics.metrics.drilldown import TicketPage, rep_label
from views._cache import tickets
from views._tables import segment_label, show_table

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
