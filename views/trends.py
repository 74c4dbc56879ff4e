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
from views._common import (
    PICK,
    TOP_CATEGORIES,
    Drill,
    as_of_text,
    bar_height,
    chart_title,
    describe_filters,
    download_buttons,
    ensure_data,
    filters_ui,
    missing_text,
    opened,
    pick_selection,
    picked,
    resolved,
    run_query,
    selected_row,
    show_chart,
    show_table,
    ticket_list_ui,
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
TOP_N = TOP_CATEGORIES
# The tag report: its figures, and how many tags it shows before one "Other" row.
TAG_METRICS: tuple[str, ...] = ("ticket_count", "avg_first_response_min", "avg_resolution_h",
                                "csat_pct")
TOP_TAGS = 10
NO_VALUE = "(not set)"
DRILL_BY = "trends_drill_by"
DRILL_VALUE = "trends_drill_value"
CLICK_HINT = "Click a point or bar, or select a row of its data, to list the tickets below."


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


def _top_title(df: pd.DataFrame, label: str) -> str:
    """"Tickets by <label>", naming how many values a folded chart shows of how many."""
    last = str(df[df.columns[0]].iloc[-1])
    if len(df) > TOP_N and last.startswith("Other ("):
        more = int(last.removeprefix("Other (").split()[0])
        return f"Tickets by {label.lower()} (top {TOP_N} of {TOP_N + more:,})"
    return f"Tickets by {label.lower()}"


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


def by_tag(wh: Warehouse, filters: Filters, top: int = TOP_TAGS) -> pd.DataFrame:
    """tag and the TAG_METRICS the dataset has, most tickets first. A ticket counts once in
    each of its tags; tickets without tags are in no row. Past ``top`` tags one row
    "Other (n more)": the tickets with any of those tags (and the filters), each once."""
    names = tuple(m for m in TAG_METRICS if not missing_text(cs_metrics.get_metric(m), wh))
    df = run_query(wh, names, by=("tag",), filters=filters)
    df = df.sort_values(["ticket_count", "tag"], ascending=[False, True], ignore_index=True)
    if len(df) > top:
        rest = tuple(sorted(df["tag"].iloc[top:]))
        # a second tag condition is ANDed with the filters' own, if any
        narrowed = Filters(filters.date_from, filters.date_to,
                           (*filters.where, ("tag", rest)), filters.tz)
        other = run_query(wh, names, filters=narrowed)
        other.insert(0, "tag", f"Other ({len(rest)} more)")
        df = pd.concat([df.iloc[:top], other], ignore_index=True)
    return df


def _has(wh: Warehouse, dim: str) -> bool:
    return dim in wh.nonempty_columns("tickets")


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
