"""Ticket trends: created vs closed, backlog, volume by dimension, CSAT, and the tickets behind
any period or value (paged)."""

from __future__ import annotations

from datetime import date, timedelta

import altair as alt
import pandas as pd
import streamlit as st

import cs_metrics
from cs_metrics import CsMetricsError, Filters, Warehouse
from pages._common import (
    as_of_text,
    describe_filters,
    download_buttons,
    ensure_data,
    filters_ui,
    missing_text,
    resolved,
    run_query,
    tickets,
)

GRAIN_LABELS: dict[str, str] = {"day": "Day", "week": "Week", "month": "Month"}
AXIS_TITLES: dict[str, str] = {
    "day": "Day", "week": "Week (starting Monday)", "month": "Month",
}
AXIS_FORMATS: dict[str, str] = {"day": "%d %b %Y", "week": "%d %b %Y", "month": "%b %Y"}
# Bar charts of ticket volume: (dimension, label), in page order.
VOLUME_DIMENSIONS: tuple[tuple[str, str], ...] = (
    ("domain", "Domain"), ("channel", "Channel"), ("priority", "Priority"),
)
PLACE_DIMENSIONS: tuple[tuple[str, str], ...] = (
    ("location", "Service location"), ("customer_location", "Customer location"),
)
TOP_N = 20
PAGE_SIZE = 50
NO_VALUE = "(not set)"


def _period_ts(df: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(df["period"])


def flow(wh: Warehouse, filters: Filters, grain: str) -> pd.DataFrame:
    """period, created (registry ticket_count), closed (by resolution period)."""
    created = run_query(wh, ("ticket_count",), grain=grain, filters=filters)
    closed = resolved(wh, filters, grain)
    df = created.rename(columns={"ticket_count": "created"}).merge(
        closed.rename(columns={"resolved_count": "closed"}), on="period", how="outer"
    )
    df[["created", "closed"]] = df[["created", "closed"]].fillna(0).astype("int64")
    return df.sort_values("period", ignore_index=True)


def by_dimension(wh: Warehouse, filters: Filters, dim: str, top: int | None = None
                 ) -> pd.DataFrame:
    """dim, ticket_count: most tickets first; past ``top`` values one "Other (n)" row."""
    df = run_query(wh, ("ticket_count",), by=(dim,), filters=filters)
    df[dim] = df[dim].astype("object").where(df[dim].notna(), NO_VALUE)
    df = df.sort_values(["ticket_count", dim], ascending=[False, True], ignore_index=True)
    if top is not None and len(df) > top:
        rest = df.iloc[top:]
        other = pd.DataFrame({dim: [f"Other ({len(rest)} more)"],
                              "ticket_count": [int(rest["ticket_count"].sum())]})
        df = pd.concat([df.iloc[:top], other], ignore_index=True)
    return df


def _has(wh: Warehouse, dim: str) -> bool:
    return dim in wh.nonempty_columns("tickets")


def _data(df: pd.DataFrame, name: str, filters: Filters) -> None:
    with st.expander("Data"):
        st.dataframe(df, hide_index=True, key=f"data_{name}")
        download_buttons(df, name, filters)


def _flow_chart(df: pd.DataFrame, grain: str, filters: Filters) -> None:
    series = {"created": "Created", "closed": "Closed (by resolution date)"}
    long = df.melt(id_vars="period", value_vars=list(series), var_name="series",
                   value_name="tickets")
    long["series"] = long["series"].map(series)
    long["period"] = _period_ts(long)
    chart = (
        alt.Chart(long, title=alt.Title(
            f"Tickets created vs closed, by {grain}",
            subtitle="Created counts tickets by creation date; closed counts tickets by the "
            "date they were resolved, so the date range applies to resolved_at there.",
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
    st.altair_chart(chart, width="stretch")
    _data(df, "created_vs_closed", filters)


def _backlog_chart(wh: Warehouse, filters: Filters, grain: str) -> None:
    df = run_query(wh, ("backlog",), grain=grain, filters=filters)
    if df.empty:
        st.info("No backlog to show: no tickets match these filters.")
        return
    metric = cs_metrics.get_metric("backlog")
    plot = df.assign(period=_period_ts(df),
                     period_end=_period_ts(df) + _step(grain))
    chart = (
        alt.Chart(plot, title=alt.Title(f"Backlog at the end of each {grain}",
                                        subtitle=metric.description))
        .mark_area(line=True, opacity=0.3)
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
    st.altair_chart(chart, width="stretch")
    _data(df, "backlog", filters)


def _step(grain: str) -> pd.DateOffset:
    return {"day": pd.DateOffset(days=1), "week": pd.DateOffset(weeks=1),
            "month": pd.DateOffset(months=1)}[grain]


def _bar_chart(df: pd.DataFrame, dim: str, label: str, title: str) -> None:
    total = int(df["ticket_count"].sum())
    plot = df.assign(share=df["ticket_count"] / total if total else 0.0)
    chart = (
        alt.Chart(plot, title=alt.Title(title, subtitle="Tickets created in the range"))
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
        .properties(height=alt.Step(20))
    )
    st.altair_chart(chart, width="stretch")


def _volume(wh: Warehouse, filters: Filters) -> dict[str, pd.DataFrame]:
    frames: dict[str, pd.DataFrame] = {}
    cols = st.columns(len(VOLUME_DIMENSIONS))
    for col, (dim, label) in zip(cols, VOLUME_DIMENSIONS, strict=True):
        with col:
            if not _has(wh, dim):
                st.info(f"This dataset has no {label.lower()}, so there is no volume by "
                        f"{label.lower()}.")
                continue
            df = by_dimension(wh, filters, dim)
            if df.empty:
                st.info("No tickets match these filters.")
                continue
            frames[dim] = df
            _bar_chart(df, dim, label, f"Tickets by {label.lower()}")
            _data(df, f"tickets_by_{dim}", filters)
    return frames


def _places(wh: Warehouse, filters: Filters) -> dict[str, pd.DataFrame]:
    frames: dict[str, pd.DataFrame] = {}
    cols = st.columns(len(PLACE_DIMENSIONS))
    for col, (dim, label) in zip(cols, PLACE_DIMENSIONS, strict=True):
        with col:
            if not _has(wh, dim):
                st.info(f"This dataset has no {label.lower()}.")
                continue
            df = by_dimension(wh, filters, dim, top=TOP_N)
            if df.empty:
                st.info("No tickets match these filters.")
                continue
            frames[dim] = df
            _bar_chart(df, dim, label, f"Tickets by {label.lower()} (top {TOP_N})")
            _data(df, f"tickets_by_{dim}", filters)
    return frames


def _csat(wh: Warehouse, filters: Filters, grain: str) -> None:
    metric = cs_metrics.get_metric("csat_pct")
    missing = missing_text(metric, wh)
    if missing:
        st.info(f"{missing} There is no CSAT trend to show.")
        return
    df = run_query(wh, ("csat_pct",), grain=grain, filters=filters).dropna(subset=["csat_pct"])
    if df.empty:
        st.info("No CSAT responses for the tickets matching these filters.")
        return
    plot = df.assign(period=_period_ts(df))
    chart = (
        alt.Chart(plot, title=alt.Title(f"CSAT by {grain}", subtitle=metric.description +
                                        " Surveys count in the period their ticket was created."))
        .mark_line(point=True)
        .encode(
            x=alt.X("period:T", title=AXIS_TITLES[grain],
                    axis=alt.Axis(format=AXIS_FORMATS[grain])),
            y=alt.Y("csat_pct:Q", title="CSAT (% of responses 4-5)",
                    scale=alt.Scale(domain=[0, 100])),
            tooltip=[
                alt.Tooltip("period:T", title=f"{GRAIN_LABELS[grain]} starting",
                            format="%a %d %b %Y"),
                alt.Tooltip("csat_pct:Q", title="CSAT (%)", format=".1f"),
            ],
        )
        .properties(height=260)
    )
    st.altair_chart(chart, width="stretch")
    _data(df, "csat", filters)


def _turn_page(step: int) -> None:
    st.session_state["trends_drill_page"] = max(0, st.session_state.get(
        "trends_drill_page", 0) + step)


def _drilldown(wh: Warehouse, filters: Filters, grain: str, periods: list[date],
               frames: dict[str, pd.DataFrame]) -> None:
    labels = {"period": f"{GRAIN_LABELS[grain]} created",
              **dict(VOLUME_DIMENSIONS), **dict(PLACE_DIMENSIONS)}
    values: dict[str, list] = {"period": sorted(periods, reverse=True)} if periods else {}
    for dim, df in frames.items():
        # "Other" and unset rows are summaries, not values to list tickets for
        values[dim] = [v for v in df[dim] if v != NO_VALUE and not str(v).startswith("Other (")]
    values = {k: v for k, v in values.items() if v}
    if not values:
        st.info("No tickets match these filters, so there is nothing to list.")
        return
    left, right = st.columns(2)
    with left:
        by = st.selectbox("Drill into", list(values), format_func=labels.get,
                          key="trends_drill_by")
    with right:
        fmt = (lambda d: f"{d:%a %d %b %Y}") if by == "period" else str
        value = st.selectbox("Value", values[by], format_func=fmt, key="trends_drill_value",
                             help="Periods newest first; other values by ticket volume.")
    signature = (filters, grain, by, value)
    if st.session_state.get("_trends_drill_for") != signature:
        st.session_state["_trends_drill_for"] = signature
        st.session_state["trends_drill_page"] = 0
    page_no = st.session_state.get("trends_drill_page", 0)
    if by == "period":
        page = tickets(wh, filters, period=value, grain=grain, limit=PAGE_SIZE,
                       offset=page_no * PAGE_SIZE)
    else:
        page = tickets(wh, filters, extra={by: value}, limit=PAGE_SIZE,
                       offset=page_no * PAGE_SIZE)
    if page.total == 0:
        st.info("No tickets match this choice.")
        return
    if not len(page.rows) and page_no:  # past the end after the data shrank
        st.session_state["trends_drill_page"] = 0
        st.rerun()
    st.caption(f"Tickets {page.first:,}–{page.last:,} of {page.total:,}, newest first")
    st.dataframe(
        page.rows,
        hide_index=True,
        key="trends_drill_rows",
        column_config={
            "created_at": st.column_config.DatetimeColumn("Created", format="YYYY-MM-DD HH:mm"),
            "first_response_min": st.column_config.NumberColumn("First response (min)",
                                                                format="%.1f"),
            "resolution_h": st.column_config.NumberColumn("Resolution (h)", format="%.1f"),
            "sla_first_response_met": st.column_config.CheckboxColumn("First response SLA met"),
            "csat": st.column_config.NumberColumn("CSAT (avg 1-5)", format="%.1f"),
            "rep_name": st.column_config.TextColumn("Representative"),
        },
    )
    with st.container(horizontal=True):
        st.button("Previous", key="trends_prev", disabled=page_no == 0,
                  on_click=_turn_page, args=(-1,), icon=":material/chevron_left:")
        st.button("Next", key="trends_next", disabled=not page.has_next,
                  on_click=_turn_page, args=(1,), icon=":material/chevron_right:")
        pages = (page.total + PAGE_SIZE - 1) // PAGE_SIZE
        st.caption(f"Page {page_no + 1} of {pages}")


def _summary(wh: Warehouse, filters: Filters, flows: pd.DataFrame) -> None:
    cols = st.columns(3)
    created = cs_metrics.get_metric("ticket_count")
    backlog = cs_metrics.get_metric("backlog")
    end = run_query(wh, ("backlog",), filters=filters).iloc[0]["backlog"]
    cols[0].metric("Tickets created", created.display(flows["created"].sum()),
                   help=created.description)
    cols[1].metric("Tickets closed", created.display(flows["closed"].sum()),
                   help="Tickets resolved in the date range (by resolved_at), with the same "
                   "other filters.")
    when = "now" if filters.date_to is None else \
        f"{filters.date_to - timedelta(days=1):%d %b %Y} end of day"
    cols[2].metric("Backlog", backlog.display(end), help=f"{backlog.description} At {when}.")


def main() -> None:
    st.title("Ticket trends")
    try:
        wh = ensure_data()
        filters = filters_ui(wh)
        st.caption(f"{as_of_text(wh)} · {describe_filters(filters)}")
        grain = st.radio("Grain", list(GRAIN_LABELS), index=1, format_func=GRAIN_LABELS.get,
                         horizontal=True, key="trends_grain")
        flows = flow(wh, filters, grain)
        if flows.empty:
            st.info("No tickets were created or closed with these filters; widen the date "
                    "range or clear a filter.")
            return
        _summary(wh, filters, flows)
        _flow_chart(flows, grain, filters)
        _backlog_chart(wh, filters, grain)
        st.subheader("Volume")
        frames = _volume(wh, filters)
        st.subheader("Where tickets come from")
        frames |= _places(wh, filters)
        st.subheader("Customer satisfaction")
        _csat(wh, filters, grain)
        st.subheader("Tickets behind the figures")
        periods = [p for p, n in zip(flows["period"], flows["created"], strict=True) if n]
        _drilldown(wh, filters, grain, periods, frames)
    except CsMetricsError as exc:
        st.error(str(exc))


main()
