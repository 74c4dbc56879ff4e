"""Overview: headline KPIs against their targets with weekly sparklines, weekly volume vs
backlog, customer segments; every figure downloads as CSV and Parquet."""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import pandas as pd
import streamlit as st

import cs_metrics
from cs_metrics import CsMetricsError, Filters, Metric, Settings, Warehouse
from cs_metrics.live import AT_RISK_SHARE, live_snapshot
from cs_metrics.metrics import sla_source_caption
from cs_metrics.safe_text import escape_markdown, markdown_code
from cs_metrics.zones import to_local
from views._common import (
    alert_toasts,
    as_of_text,
    describe_filters,
    download_buttons,
    ensure_data,
    filters_ui,
    live_refresher,
    missing_text,
    opened,
    previous_period,
    row_drill,
    run_query,
    selected_row,
    show_chart,
    ticket_list_ui,
)

KPI_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Volume", ("ticket_count", "open_count", "in_progress_count")),
    ("First response", ("avg_first_response_min", "median_first_response_min",
                        "sla_first_response_pct")),
    ("Resolution", ("closed_count", "avg_resolution_h", "fcr_pct")),
    ("Customer feedback", ("csat_pct", "nps")),
)
CARDS_PER_ROW = 3
SEGMENT_METRICS = ("customer_count", "ticket_count", "csat_pct")
SPARKLINE_HELP = ("The line shows this figure week by week (weeks start on Monday) over the "
                  "date range; the first and last weeks can be partial.")


def _delta_text(metric: Metric, delta: float) -> str:
    """Signed change in the metric's own format; percentages change in points."""
    spec = metric.format.lstrip("+")
    unit = "pp" if metric.unit == "%" else metric.unit
    return f"{format(delta, '+' + spec)} {unit}".rstrip()


def _rounds_to_zero(metric: Metric, delta: float) -> bool:
    return float(format(abs(delta), metric.format.lstrip("+")).replace(",", "")) == 0


def _target_line(metric: Metric, value: float | None, settings: Settings) -> str:
    target = cs_metrics.metric_target(metric, settings)
    if target is None:
        return "No target set"
    if metric.direction is None:
        return f"Target {metric.display(target)}"
    higher = metric.direction == "higher"
    text = f"Target {'≥' if higher else '≤'} {metric.display(target)}"
    if value is None or pd.isna(value):
        return f"{text} · nothing to compare yet"
    met = value >= target if higher else value <= target
    return f"{text} · :green[met]" if met else f"{text} · :red[not met]"


def _card(
    metric: Metric,
    value: float | None,
    previous: float | None,
    missing: str | None,
    settings: Settings,
    trend: list[float] | None = None,
) -> None:
    with st.container(border=True, height="stretch"):
        if missing:
            st.metric(metric.label, "–", help=metric.description)
            st.caption(missing)
            return
        delta_text: str | None = None
        color = "off"
        arrow = "auto"
        if previous is not None and not pd.isna(previous) and not pd.isna(value):
            delta = float(value) - float(previous)
            delta_text = _delta_text(metric, delta)
            if metric.direction is not None:
                color = "normal" if metric.direction == "higher" else "inverse"
            if _rounds_to_zero(metric, delta):
                color, arrow = "off", "off"
        st.metric(
            metric.label,
            metric.display(value),
            delta=delta_text,
            delta_color=color,
            delta_arrow=arrow,
            help=f"{metric.description}\n\n{SPARKLINE_HELP}" if trend else metric.description,
            chart_data=trend,
            chart_type="line",
        )
        st.caption(_target_line(metric, value, settings))


def _sparkline(weekly: pd.DataFrame, name: str) -> list[float] | None:
    """The metric's weekly values in week order (weeks without a value left out), or None
    when fewer than two weeks have one: a single point shows no trend."""
    if name not in weekly.columns:
        return None
    values = weekly.sort_values("period")[name].dropna()
    return [float(v) for v in values] if len(values) >= 2 else None


def _kpi_table(
    names: list[str],
    current: pd.Series,
    previous: pd.Series | None,
    settings: Settings,
) -> pd.DataFrame:
    rows = []
    for name in names:
        metric = cs_metrics.get_metric(name)
        value = current.get(name)
        before = previous.get(name) if previous is not None else None
        rows.append({
            "metric": name,
            "label": metric.label,
            "unit": metric.unit,
            "value": value,
            "previous_period": before,
            "target": cs_metrics.metric_target(metric, settings),
        })
    df = pd.DataFrame(rows)
    for col in ("value", "previous_period", "target"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def _kpis(wh: Warehouse, filters: Filters) -> None:
    settings = cs_metrics.load_settings()
    names = [name for _, row in KPI_ROWS for name in row]
    missing = {n: missing_text(cs_metrics.get_metric(n), wh) for n in names}
    present = tuple(n for n in names if not missing[n])
    current = run_query(wh, present, filters=filters).iloc[0] if present else pd.Series()
    before = previous_period(filters)
    previous = None
    if before is not None and present:
        row = run_query(wh, present, filters=before).iloc[0]
        # No tickets at all in the previous window (before the data starts): no comparison.
        previous = row if row.get("ticket_count", 1) > 0 else None
    # One weekly query for every card's sparkline (not one per card).
    weekly = run_query(wh, present, grain="week", filters=filters) if present else None
    if previous is not None:
        days = (filters.date_to - filters.date_from).days
        st.caption(f"Changes are against the previous {days} days "
                   f"({before.date_from:%d %b %Y} – "
                   f"{before.date_to - timedelta(days=1):%d %b %Y}).")
    for title, row_names in KPI_ROWS:
        st.subheader(title)
        cols = st.columns(CARDS_PER_ROW)
        for col, name in zip(cols, row_names, strict=False):
            metric = cs_metrics.get_metric(name)
            with col:
                _card(
                    metric,
                    current.get(name) if name in present else None,
                    previous.get(name) if previous is not None and name in present else None,
                    missing[name],
                    settings,
                    _sparkline(weekly, name) if weekly is not None and name in present else None,
                )
        if any(n.startswith("sla_") and n in present for n in row_names) and \
                (note := sla_source_caption(wh, filters)):
            st.caption(note)
    if present:
        if box := opened("Download the KPI figures", "open_overview_kpis"):
            with box:
                st.caption("The cards' values, previous-period values and targets:")
                download_buttons(_kpi_table(list(present), current, previous, settings),
                                 "overview_kpis", filters)
                st.caption("The weekly values behind the sparklines:")
                download_buttons(weekly, "overview_kpis_weekly", filters)


def _weekly_chart(wh: Warehouse, filters: Filters) -> None:
    df = run_query(wh, ("ticket_count", "backlog"), grain="week", filters=filters)
    if df.empty:
        st.info("No tickets were created in this date range.")
        return
    created = cs_metrics.get_metric("ticket_count")
    backlog = cs_metrics.get_metric("backlog")
    series = {"ticket_count": "Tickets created", "backlog": "Backlog at week end"}
    long = df.melt(id_vars="period", value_vars=list(series), var_name="metric",
                   value_name="tickets")
    long["series"] = long["metric"].map(series)
    long["week"] = pd.to_datetime(long["period"])
    # Weeks cut by the date range only count the days inside it.
    start = pd.Timestamp(filters.date_from) if filters.date_from else None
    stop = pd.Timestamp(filters.date_to) if filters.date_to else None
    partial = pd.Series(False, index=long.index)
    if start is not None:
        partial |= long["week"] < start
    if stop is not None:
        partial |= long["week"] + pd.Timedelta(days=7) > stop
    long["note"] = partial.map({True: "partial week (cut by the date range)",
                                False: "every day of the week in range"})
    chart = (
        alt.Chart(long, title=alt.Title(
            "Tickets created vs backlog, by week",
            subtitle=f"{created.description} {backlog.description}",
        ))
        .mark_line(point=True)
        .encode(
            x=alt.X("week:T", title="Week (starting Monday)", axis=alt.Axis(format="%d %b %Y")),
            y=alt.Y("tickets:Q", title="Tickets (count)"),
            color=alt.Color("series:N", title=None, legend=alt.Legend(orient="top")),
            tooltip=[
                alt.Tooltip("week:T", title="Week starting", format="%a %d %b %Y"),
                alt.Tooltip("series:N", title="Series"),
                alt.Tooltip("tickets:Q", title="Tickets", format=","),
                alt.Tooltip("note:N", title="Coverage"),
            ],
        )
        .properties(height=340)
    )
    show_chart(chart, width="stretch")
    download_buttons(df, "overview_weekly_tickets_backlog", filters)
    if partial.any():
        st.caption("The first or last week is partial: it only counts days inside the range.")
    elif filters.date_from is None or filters.date_to is None:
        st.caption("The first and last weeks can be partial when the data starts or ends "
                   "mid-week.")


def _segments(wh: Warehouse, filters: Filters) -> None:
    metrics = [cs_metrics.get_metric(n) for n in SEGMENT_METRICS]
    present = tuple(m.name for m in metrics if not missing_text(m, wh))
    df = run_query(wh, present, by=("customer_segment",), filters=filters)
    if df.empty:
        st.info("No tickets were created in this date range.")
        return
    total = df["ticket_count"].sum()
    df["share_pct"] = 100.0 * df["ticket_count"] / total if total else float("nan")
    df = df.sort_values("ticket_count", ascending=False)
    config = {"customer_segment": st.column_config.TextColumn("Customer segment")}
    for m in metrics:
        if m.name in present:
            fmt = "localized" if m.is_count else "%.1f %%"
            config[m.name] = st.column_config.NumberColumn(m.label, help=m.description,
                                                           format=fmt)
    config["share_pct"] = st.column_config.ProgressColumn(
        "Share of tickets", help="This segment's tickets as a share of all tickets in the range.",
        format="%.1f %%", min_value=0, max_value=100,
    )
    order = ["customer_segment", *[n for n in SEGMENT_METRICS if n in present], "share_pct"]
    st.dataframe(df, hide_index=True, column_order=order, column_config=config,
                 key="segments", on_select="rerun", selection_mode="single-row")
    download_buttons(df[order], "overview_customer_segments", filters)
    row = selected_row("segments", df)
    if row is None:
        st.caption("Select a segment to list its tickets.")
    else:
        segment = row["customer_segment"] if pd.notna(row["customer_segment"]) else "(none)"
        drill = row_drill(row, ("customer_segment",), f"Tickets of customer segment {segment}")
        ticket_list_ui(wh, filters, drill, key="segments_drill")
    gone = [missing_text(m, wh) for m in metrics if m.name not in present]
    for text in gone:
        st.caption(text)


LIVE_EVERY_S = 15


def _minutes(value: float | None) -> str:
    if value is None:
        return "none waiting"
    if value < 120:
        return f"{value:,.0f} min"
    if value < 48 * 60:
        return f"{value / 60:,.1f} h"
    return f"{value / 1440:,.1f} days"


NO_FIRST_RESPONSES = "This dataset has no first-response times."


@st.fragment(run_every=LIVE_EVERY_S)
def _live(wh: Warehouse, filters: Filters) -> None:
    """The last 60 minutes and the queue now; re-drawn on its own every few seconds, so a
    warehouse fed from an inbox shows new tickets without a page reload."""
    alert_toasts(wh)
    snap = live_snapshot(wh, filters, minutes=60)
    if snap.now is None:
        return
    with st.container(border=True):
        now = to_local(snap.now, filters.tz)
        st.markdown(f"**Last 60 minutes** · as of {now:%Y-%m-%d %H:%M:%S} {filters.tz} (the "
                    f"data's latest event) · data refreshed "
                    f"{escape_markdown(snap.refreshed_at or 'never')}")
        live = live_refresher(wh)
        if live is not None:
            last = live.last_report
            # the inbox's path is a setting and the summary and error quote file names
            st.caption(f"Live: loading new batches from {markdown_code(live.inbox)} every "
                       f"{live.interval_s:g} s"
                       + (f"; last look: {escape_markdown(last.summary().splitlines()[0])}"
                          if last else "")
                       + (f" · {escape_markdown(live.last_error)}" if live.last_error else ""))
        cols = st.columns(4)
        cols[0].metric("Arrivals", f"{snap.arrivals:,}",
                       delta=f"{snap.arrivals - snap.arrivals_before:+,} vs a week ago",
                       delta_color="off",
                       help="Tickets created in the last 60 minutes; the change compares the "
                       "same hour one week earlier.")
        if not snap.has_first_responses:
            # every open ticket would read as unanswered and breached: say why there is no
            # figure instead of showing ages and breaches the data cannot give
            cols[1].metric("Open now", f"{snap.open_now:,}", help="Open or in progress.")
            cols[2].metric("Oldest unanswered", "–", help=NO_FIRST_RESPONSES)
            cols[3].metric("SLA at risk", "–", help=NO_FIRST_RESPONSES)
            st.caption(f"{NO_FIRST_RESPONSES} Unanswered, at-risk and breached tickets "
                       "cannot be told apart.")
            return
        cols[1].metric("Open now", f"{snap.open_now:,}",
                       help=f"Open or in progress; {snap.waiting:,} of them not answered yet.")
        cols[2].metric("Oldest unanswered", _minutes(snap.oldest_unanswered_min),
                       help=f"Ticket {escape_markdown(snap.oldest_unanswered_id)}"
                       if snap.oldest_unanswered_id
                       else "Every open ticket has had a first response.")
        cols[3].metric("SLA at risk", f"{snap.at_risk:,}",
                       delta=f"{snap.breached:,} already breached", delta_color="off",
                       help=f"Unanswered tickets past {AT_RISK_SHARE:.0%} of their "
                       "first-response target; breached: past the target.")


def main() -> None:
    st.title("Overview")
    try:
        wh = ensure_data()
        filters = filters_ui(wh)
        st.caption(f"{as_of_text(wh)} · {escape_markdown(describe_filters(filters))}")
        _live(wh, filters)
        _kpis(wh, filters)
        st.divider()
        _weekly_chart(wh, filters)
        st.subheader("Customer segments")
        _segments(wh, filters)
    except CsMetricsError as exc:
        st.error(escape_markdown(exc))


main()
