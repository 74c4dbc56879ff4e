"""Ticket trends page, its charts: created vs closed, the backlog and bars by a dimension,
each clickable to list the tickets behind a point or bar."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

import cs_metrics
from cs_metrics import Filters, Warehouse
from views._cache import run_query
from views._charts import bar_height, chart_title, show_chart
from views._drill import PICK, opened, pick_selection, picked, selected_row
from views._exports import download_buttons
from views._tables import show_table
from views._trends_data import (
    _period_ts,
)

GRAIN_LABELS: dict[str, str] = {"day": "Day", "week": "Week", "month": "Month"}


AXIS_TITLES: dict[str, str] = {
    "day": "Day", "week": "Week (starting Monday)", "month": "Month",
}


AXIS_FORMATS: dict[str, str] = {"day": "%d %b %Y", "week": "%d %b %Y", "month": "%b %Y"}


DRILL_BY = "trends_drill_by"
DRILL_VALUE = "trends_drill_value"


def _data(df: pd.DataFrame, name: str, filters: Filters, by: str | None = None) -> None:
    """The chart's data and its downloads; selecting a row lists its tickets (``by``: the
    drill-down the rows stand for, "period", "backlog" or a dimension)."""
    key = f"data_{name}"
    box = opened("Data", f"open_{key}")
    if box is None:
        return
    with box:
        if by is None:
            show_table(df, hide_index=True, key=key)
        else:
            show_table(df, hide_index=True, key=key, selection_mode="single-row",
                         on_select="rerun")
            row = selected_row(key, df)
            _on_new(key, None if row is None else _drill_key(row.to_frame().T, by).iloc[0], by)
        download_buttons(df, name, filters)


def _drill_key(df: pd.DataFrame, by: str) -> pd.Series:
    """The value each row or point drills to: a period's ISO day, or a dimension value."""
    if by in ("period", "backlog"):
        return pd.to_datetime(df["period"]).dt.strftime("%Y-%m-%d")
    return df[by].astype("object").astype(str)


def _drill_to(by: str, value: str | None) -> None:
    """Point the drill-down section at ``by`` = ``value`` (runs in a widget callback)."""
    if value is None:
        return
    if value.startswith("Other ("):
        st.toast("That bar groups several values; pick one of them to list its tickets.")
        return
    st.session_state[DRILL_BY] = by
    st.session_state[DRILL_VALUE] = value
    st.toast("Tickets listed under *Tickets behind the figures* at the bottom of the page.")


def _on_new(key: str, value: str | None, by: str) -> None:
    """Drill to a point or row when it is newly clicked (the drill-down section is drawn
    after every chart and table, so its widgets can still be set in this run)."""
    if st.session_state.get(f"_seen_{key}") != value:
        st.session_state[f"_seen_{key}"] = value
        _drill_to(by, value)


def _clickable(chart: alt.Chart, key: str, by: str) -> None:
    pick = pick_selection()
    chart = chart.add_params(pick).encode(
        opacity=alt.OpacityValue(**alt.when(pick).then(alt.value(1.0)).otherwise(alt.value(0.45))))
    show_chart(chart, width="stretch", key=key, on_select="rerun", selection_mode=PICK)
    _on_new(key, picked(key), by)


def _flow_chart(df: pd.DataFrame, grain: str, filters: Filters) -> None:
    series = {"created": "Created", "closed": "Closed (by resolution date)"}
    long = df.melt(id_vars="period", value_vars=list(series), var_name="series",
                   value_name="tickets")
    long["series"] = long["series"].map(series)
    long[PICK] = _drill_key(long, "period")
    long["period"] = _period_ts(long)
    chart = (
        alt.Chart(long, title=chart_title(
            f"Created per {grain} vs closed per {grain} (by resolution date)",
            "Created counts tickets by the date they were created; closed counts tickets by "
            "the date they were resolved (the date range applies to that date). Overview's "
            "Closed counts the tickets created in the range whose status is closed now.",
        ))
        .mark_line(point=True)
        .encode(
            x=alt.X("period:T", title=AXIS_TITLES[grain],
                    axis=alt.Axis(format=AXIS_FORMATS[grain])),
            y=alt.Y("tickets:Q", title="Tickets (count)"),
            color=alt.Color("series:N", title=None, legend=alt.Legend(orient="top")),
            tooltip=[
                alt.Tooltip("period:T", title=f"{GRAIN_LABELS[grain]} starting",
                            format="%a %d %b %Y"),
                alt.Tooltip("series:N", title="Series"),
                alt.Tooltip("tickets:Q", title="Tickets", format=","),
            ],
        )
        .properties(height=320)
    )
    _clickable(chart, "chart_flow", "period")
    _data(df, "created_vs_closed", filters, by="period")


def _backlog_chart(wh: Warehouse, filters: Filters, grain: str) -> None:
    df = run_query(wh, ("backlog",), grain=grain, filters=filters)
    if df.empty:
        st.info("No backlog to show: no tickets match these filters.")
        return
    metric = cs_metrics.get_metric("backlog")
    plot = df.assign(period=_period_ts(df),
                     period_end=_period_ts(df) + _step(grain), **{PICK: _drill_key(df, "backlog")})
    chart = (
        alt.Chart(plot, title=chart_title(f"Backlog at the end of each {grain}",
                                          metric.description))
        .mark_area(line=True, opacity=0.3, point=True)
        .encode(
            x=alt.X("period:T", title=AXIS_TITLES[grain],
                    axis=alt.Axis(format=AXIS_FORMATS[grain])),
            y=alt.Y("backlog:Q", title="Open tickets (count)"),
            tooltip=[
                alt.Tooltip("period:T", title=f"{GRAIN_LABELS[grain]} starting",
                            format="%a %d %b %Y"),
                alt.Tooltip("period_end:T", title="Backlog counted at", format="%d %b %Y"),
                alt.Tooltip("backlog:Q", title="Open tickets", format=","),
            ],
        )
        .properties(height=260)
    )
    _clickable(chart, "chart_backlog", "backlog")
    _data(df, "backlog", filters, by="backlog")


def _step(grain: str) -> pd.DateOffset:
    return {"day": pd.DateOffset(days=1), "week": pd.DateOffset(weeks=1),
            "month": pd.DateOffset(months=1)}[grain]


def _bar_chart(df: pd.DataFrame, dim: str, label: str, title: str, columns: int = 1) -> None:
    total = int(df["ticket_count"].sum())
    plot = df.assign(share=df["ticket_count"] / total if total else 0.0,
                     **{PICK: _drill_key(df, dim)})
    chart = (
        alt.Chart(plot, title=chart_title(title, "Tickets created in the range",
                                          columns=columns))
        .mark_bar()
        .encode(
            x=alt.X("ticket_count:Q", title="Tickets (count)"),
            y=alt.Y(f"{dim}:N", title=label, sort=None),
            tooltip=[
                alt.Tooltip(f"{dim}:N", title=label),
                alt.Tooltip("ticket_count:Q", title="Tickets", format=","),
                alt.Tooltip("share:Q", title="Share of tickets", format=".1%"),
            ],
        )
        .properties(height=bar_height(len(plot)))
    )
    _clickable(chart, f"chart_{dim}", dim)
