"""Ticket trends: created vs closed, backlog, volume by dimension, CSAT, and the tickets behind
any period or value (paged)."""

from __future__ import annotations

from datetime import date, timedelta

import altair as alt
import pandas as pd
import streamlit as st

import cs_metrics
from cs_metrics import CsMetricsError, Filters, Warehouse
from cs_metrics.core.safe_text import escape_markdown
from cs_metrics.metrics.drilldown import bucket
from views._cache import run_query
from views._charts import chart_title
from views._drill import PICK, Drill, opened, ticket_list_ui
from views._exports import download_buttons
from views._filter_defs import describe_filters
from views._filter_parts import as_of_text
from views._filters import filters_ui
from views._session import ensure_data
from views._tables import missing_text, show_table
from views._trends_charts import (
    AXIS_FORMATS,
    AXIS_TITLES,
    DRILL_BY,
    DRILL_VALUE,
    GRAIN_LABELS,
    _backlog_chart,
    _bar_chart,
    _clickable,
    _data,
    _drill_key,
    _flow_chart,
)
from views._trends_data import (
    NO_VALUE,
    TOP_N,
    TOP_TAGS,
    _has,
    _period_ts,
    _top_title,
    by_dimension,
    by_tag,
    flow,
)

# Bar charts of ticket volume: (dimension, label), in page order.
VOLUME_DIMENSIONS: tuple[tuple[str, str], ...] = (
    ("domain", "Domain"), ("channel", "Channel"), ("priority", "Priority"),
)
PLACE_DIMENSIONS: tuple[tuple[str, str], ...] = (
    ("location", "Service location"), ("customer_location", "Customer location"),
)
CLICK_HINT = "Click a point or bar, or select a row of its data, to list the tickets below."


def _volume(wh: Warehouse, filters: Filters) -> dict[str, pd.DataFrame]:
    frames: dict[str, pd.DataFrame] = {}
    cols = st.columns(len(VOLUME_DIMENSIONS))
    for col, (dim, label) in zip(cols, VOLUME_DIMENSIONS, strict=True):
        with col:
            if not _has(wh, dim):
                st.info(f"This dataset has no {label.lower()}, so there is no volume by "
                        f"{label.lower()}.")
                continue
            df = by_dimension(wh, filters, dim, top=TOP_N)
            if df.empty:
                st.info("No tickets match these filters.")
                continue
            frames[dim] = df
            _bar_chart(df, dim, label, _top_title(df, label), columns=len(cols))
            _data(df, f"tickets_by_{dim}", filters, by=dim)
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
            _bar_chart(df, dim, label, _top_title(df, label), columns=len(cols))
            _data(df, f"tickets_by_{dim}", filters, by=dim)
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
    plot = df.assign(period=_period_ts(df), **{PICK: _drill_key(df, "period")})
    chart = (
        alt.Chart(plot, title=chart_title(f"CSAT by {grain}", metric.description +
                                          " Surveys count in the period their ticket was "
                                          "created."))
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
    _clickable(chart, "chart_csat", "period")
    _data(df, "csat", filters, by="period")


def _tags(wh: Warehouse, filters: Filters) -> pd.DataFrame | None:
    """Volume, first response, resolution and CSAT by tag (top TOP_TAGS, then "Other")."""
    if not _has(wh, "tags"):
        st.info("This dataset has no tags, so there is no report by tag.")
        return None
    df = by_tag(wh, filters)
    if df.empty:
        st.info("No tagged tickets match these filters.")
        return None
    _bar_chart(df[["tag", "ticket_count"]], "tag", "Tag", f"Tickets by tag (top {TOP_TAGS})")
    config = {"tag": st.column_config.TextColumn("Tag")}
    for name in df.columns[1:]:
        m = cs_metrics.get_metric(name)
        config[name] = st.column_config.NumberColumn(
            f"{m.label} ({m.unit})" if m.unit and not m.is_count else m.label,
            help=m.description, format="localized" if m.is_count else "%.1f")
    show_table(df, hide_index=True, column_config=config, key="tags_table")
    st.caption("A ticket with several tags counts once in each of them; tickets without tags "
               "are in no row. \"Other\" is the tickets with any of the remaining tags, each "
               "counted once.")
    if box := opened("Download the figures by tag", "open_tags_download"):
        with box:
            download_buttons(df, "tickets_by_tag", filters)
    return df


def _drill(by: str, value: str, grain: str, labels: dict[str, str]) -> Drill:
    if by in ("period", "backlog"):
        start, end = bucket(date.fromisoformat(value), grain)
        if by == "backlog":
            return Drill(f"Backlog at the end of the {grain} starting {start:%a %d %b %Y} "
                         f"(open at {end:%d %b %Y %H:%M})", open_at=end)
        return Drill(f"Tickets created in the {grain} starting {start:%a %d %b %Y}",
                     period=start.date(), grain=grain)
    return Drill(f"{labels[by]}: {value}", extra=((by, None if value == NO_VALUE else value),))


def _drilldown(wh: Warehouse, filters: Filters, grain: str, periods: list[str],
               frames: dict[str, pd.DataFrame]) -> None:
    labels = {"period": f"{GRAIN_LABELS[grain]} created",
              "backlog": f"Backlog at the end of a {grain}",
              **dict(VOLUME_DIMENSIONS), **dict(PLACE_DIMENSIONS), "tag": "Tag"}
    newest_first = sorted(periods, reverse=True)
    values: dict[str, list[str]] = {"period": newest_first, "backlog": newest_first}
    for dim, df in frames.items():
        # an "Other" row sums several values: not one value to list tickets for
        values[dim] = [v for v in _drill_key(df, dim) if not v.startswith("Other (")]
    values = {k: v for k, v in values.items() if v}
    if not values:
        st.info("No tickets match these filters, so there is nothing to list.")
        return
    if st.session_state.get(DRILL_BY) not in values:
        st.session_state.pop(DRILL_BY, None)
    left, right = st.columns(2)
    with left:
        by = st.selectbox("Drill into", list(values), format_func=labels.get, key=DRILL_BY)
    if st.session_state.get(DRILL_VALUE) not in values[by]:
        st.session_state.pop(DRILL_VALUE, None)
    with right:
        fmt = (lambda d: f"{date.fromisoformat(d):%a %d %b %Y}") \
            if by in ("period", "backlog") else str
        value = st.selectbox("Value", values[by], format_func=fmt, key=DRILL_VALUE,
                             help="Periods newest first; other values by ticket volume.")
    ticket_list_ui(wh, filters, _drill(by, value, grain, labels), key="trends_drill")


def _summary(wh: Warehouse, filters: Filters, flows: pd.DataFrame) -> None:
    cols = st.columns(3)
    created = cs_metrics.get_metric("ticket_count")
    backlog = cs_metrics.get_metric("backlog")
    end = run_query(wh, ("backlog",), filters=filters).iloc[0]["backlog"]
    cols[0].metric("Tickets created", created.display(flows["created"].sum()),
                   help=created.description)
    cols[1].metric("Tickets closed", created.display(flows["closed"].sum()),
                   help="Tickets resolved in the date range (by their resolution date), with "
                   "the same other filters. Overview's Closed counts the tickets created in the "
                   "range whose current status is closed, so the two can differ.")
    when = "now" if filters.date_to is None else \
        f"{filters.date_to - timedelta(days=1):%d %b %Y} end of day"
    cols[2].metric("Backlog", backlog.display(end), help=f"{backlog.description} At {when}.")


def main() -> None:
    st.title("Ticket trends")
    try:
        wh = ensure_data()
        filters = filters_ui(wh)
        st.caption(f"{as_of_text(wh)} · {escape_markdown(describe_filters(filters))}")
        grain = st.radio("Grain", list(GRAIN_LABELS), index=1, format_func=GRAIN_LABELS.get,
                         horizontal=True, key="trends_grain")
        flows = flow(wh, filters, grain)
        if flows.empty:
            st.info("No tickets were created or closed with these filters; widen the date "
                    "range or clear a filter.")
            return
        _summary(wh, filters, flows)
        st.caption(CLICK_HINT)
        _flow_chart(flows, grain, filters)
        _backlog_chart(wh, filters, grain)
        st.subheader("Volume")
        frames = _volume(wh, filters)
        st.subheader("Where tickets come from")
        frames |= _places(wh, filters)
        st.subheader("Customer satisfaction")
        _csat(wh, filters, grain)
        st.subheader("Tags")
        if (tags := _tags(wh, filters)) is not None:
            frames["tag"] = tags
        st.subheader("Tickets behind the figures")
        st.caption(CLICK_HINT)
        periods = _drill_key(flows[flows["created"] > 0], "period").tolist()
        _drilldown(wh, filters, grain, periods, frames)
    except CsMetricsError as exc:
        st.error(escape_markdown(exc))


main()
