"""Overview: the tickets unresolved now (by status and age), then the headline KPIs of the
tickets created in the date range against their targets, with weekly sparklines and a change
against the previous period or the same dates a year earlier; weekly volume vs backlog,
customer segments; every figure downloads as CSV and Parquet."""

from __future__ import annotations

from datetime import date, timedelta

import altair as alt
import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

import cs_metrics
from cs_metrics import CsMetricsError, Filters, Metric, Settings, Warehouse
from cs_metrics.analysis.aging import AGE_BANDS, age_bands
from cs_metrics.core.safe_text import escape_markdown, markdown_code
from cs_metrics.core.zones import to_local
from cs_metrics.metrics.live import AT_RISK_SHARE, live_snapshot
from cs_metrics.metrics.registry import sla_source_caption
from cs_metrics.ops.reports import year_earlier_in_data, year_earlier_range
from views._common import (
    alert_toasts,
    as_of_text,
    describe_filters,
    describe_range,
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
    show_table,
    ticket_list_ui,
    with_segment_labels,
)

KPI_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Volume", ("ticket_count", "open_count", "in_progress_count", "closed_count")),
    ("First response", ("avg_first_response_min", "median_first_response_min",
                        "sla_first_response_pct")),
    ("Resolution", ("avg_resolution_h", "fcr_pct")),
    ("Customer feedback", ("csat_pct", "nps")),
)
CARDS_PER_ROW = 3
# The cards of the range name what they count: the tickets created in the range, by the
# status they have now (not what happened in the range).
CARD_LABELS: dict[str, str] = {
    "open_count": "Still open",
    "in_progress_count": "Still in progress",
    "closed_count": "Closed (current status)",
}
CREATED_HELP = (
    "These figures are about the tickets created in the date range. \"Still open\", \"Still in "
    "progress\" and \"Closed (current status)\" split those tickets by the status they have "
    "now. The Ticket trends page's closed tickets per period count tickets by the day they "
    "were resolved, whatever day they were created, so its total over the same range differs: "
    "it leaves out tickets of the range resolved after it ends, and adds tickets created "
    "before the range and resolved in it."
)
# The comparison of the cards' deltas, carried in the URL as ?compare=year.
COMPARE_KEY = "compare"
KEPT_COMPARE = "_kept_compare"  # the widget's state is dropped on another page; this is not
COMPARE_OPTIONS: dict[str, str] = {"previous": "Previous period",
                                   "year": "Same period last year"}
# The unresolved-now cards: label -> what they count.
UNRESOLVED_LABELS = ("Open now", "In progress now", "Unresolved now", "Over 30 days old")
SEGMENT_METRICS = ("customer_count", "ticket_count", "csat_pct")
SPARKLINE_HELP = ("The line shows this figure week by week (weeks start on Monday) over the "
                  "date range; the first and last weeks can be partial.")


def _delta_text(metric: Metric, delta: float) -> str:
    """Signed change in the metric's own format; percentages change in points."""
    spec = metric.format.lstrip("+")
    unit = "pp" if metric.unit == "%" else metric.unit
    if metric.is_count and abs(delta) == 1 and unit.endswith("s"):
        unit = unit[:-1]  # "+1 ticket"
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
    label = CARD_LABELS.get(metric.name, metric.label)
    with st.container(border=True, height="stretch"):
        if missing:
            st.metric(label, "–", help=metric.description)
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
            label,
            metric.display(value),
            delta=delta_text,
            delta_color=color,
            delta_arrow=arrow,
            help=f"{metric.description}\n\n{SPARKLINE_HELP}" if trend else metric.description,
        )
        if trend:
            st.image(sparkline_svg(trend), width="stretch")
        st.caption(_target_line(metric, value, settings))


SPARK_W, SPARK_H, SPARK_PAD = 240, 40, 4


def sparkline_svg(values: list[float], colour: str = "#5f7896") -> str:
    """A card's week-by-week line as a small SVG, the last week marked.

    Hand-written rather than st.metric's own sparkline (``chart_data``): Streamlit draws
    that with Vega before its data arrives, which logs "Infinite extent" warnings in the
    browser console on every page run. The SVG holds numbers this function formats and
    nothing from the data (no text), so it needs no escaping."""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    step = SPARK_W / max(len(values) - 1, 1)

    def y(v: float) -> float:
        return SPARK_PAD + (SPARK_H - 2 * SPARK_PAD) * (1 - (v - lo) / span if hi > lo else 0.5)

    points = " ".join(f"{i * step:.1f},{y(v):.1f}" for i, v in enumerate(values))
    last_x, last_y = (len(values) - 1) * step, y(values[-1])
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {SPARK_W} {SPARK_H}" '
            f'width="{SPARK_W}" height="{SPARK_H}" preserveAspectRatio="none">'
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
            f'vector-effect="non-scaling-stroke" stroke-linejoin="round" points="{points}"/>'
            f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="2.5" fill="{colour}"/></svg>')


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
            "label": CARD_LABELS.get(name, metric.label),
            "unit": metric.unit,
            "value": value,
            "compared_with": before,
            "target": cs_metrics.metric_target(metric, settings),
        })
    df = pd.DataFrame(rows)
    for col in ("value", "compared_with", "target"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def _span(start: date, end: date) -> str:
    """``[start, end)`` as its first and last day."""
    return f"{start:%d %b %Y} – {end - timedelta(days=1):%d %b %Y}"


def _compare_ui() -> str:
    """The comparison chosen: from the link's ``?compare=year`` on a session's first view,
    then kept across pages; mirrored in the URL so a copied link opens the same view."""
    if COMPARE_KEY not in st.session_state:
        asked = st.query_params.get(COMPARE_KEY)
        st.session_state[COMPARE_KEY] = asked if asked in COMPARE_OPTIONS else \
            st.session_state.get(KEPT_COMPARE, "previous")
    choice = st.segmented_control(
        "Compare with", list(COMPARE_OPTIONS), format_func=COMPARE_OPTIONS.get,
        key=COMPARE_KEY, required=True,
        help="What the cards' changes are against: the same number of days just before the "
        "range, or the same dates one year earlier (29 February counts as 28 February). A "
        "year-earlier comparison is shown only where the data reaches back that far.")
    choice = choice if choice in COMPARE_OPTIONS else "previous"
    st.session_state[KEPT_COMPARE] = choice
    if choice == "year":
        if st.query_params.get(COMPARE_KEY) != choice:
            st.query_params[COMPARE_KEY] = choice
    elif COMPARE_KEY in st.query_params:
        del st.query_params[COMPARE_KEY]
    return choice


def _comparison(wh: Warehouse, filters: Filters, present: tuple[str, ...], mode: str
                ) -> pd.Series | None:
    """The figures the cards' changes are against, or None (with a caption saying why)."""
    if not present:
        return None
    if mode == "year":
        if filters.date_from is None or filters.date_to is None:
            st.caption("No data a year earlier to compare with: the date range has no start "
                       "or no end.")
            return None
        shifted = year_earlier_in_data(wh, filters.date_from, filters.date_to, filters.tz)
        if shifted is None:
            asked = year_earlier_range(filters.date_from, filters.date_to)
            span = wh.created_range()
            since = (f"; the data starts on {to_local(span[0], filters.tz):%d %b %Y}"
                     if span else "")
            dates = f" ({_span(*asked)})" if asked else ""
            st.caption(f"No data a year earlier{dates}{since}: the cards show no change.")
            return None
        year = Filters(shifted[0], shifted[1], filters.where, filters.tz)
        st.caption(f"Changes are against the same dates a year earlier ({_span(*shifted)}).")
        return run_query(wh, present, filters=year).iloc[0]
    before = previous_period(filters)
    if before is None:
        return None
    row = run_query(wh, present, filters=before).iloc[0]
    # No tickets at all in the previous window (before the data starts): no comparison.
    if row.get("ticket_count", 1) <= 0:
        return None
    days = (filters.date_to - filters.date_from).days  # type: ignore[operator]
    st.caption(f"Changes are against the previous {days} days "
               f"({_span(before.date_from, before.date_to)}).")
    return row


def _kpis(wh: Warehouse, filters: Filters) -> None:
    settings = cs_metrics.load_settings()
    names = [name for _, row in KPI_ROWS for name in row]
    missing = {n: missing_text(cs_metrics.get_metric(n), wh) for n in names}
    present = tuple(n for n in names if not missing[n])
    current = run_query(wh, present, filters=filters).iloc[0] if present else pd.Series()
    st.subheader(f"Created in the range: {describe_range(filters)}", help=CREATED_HELP)
    st.caption("Every figure below is about the tickets created in the date range; open, in "
               "progress and closed are the status those tickets have now.")
    mode = _compare_ui()
    previous = _comparison(wh, filters, present, mode)
    # One weekly query for every card's sparkline (not one per card).
    weekly = run_query(wh, present, grain="week", filters=filters) if present else None
    for title, row_names in KPI_ROWS:
        st.markdown(f"**{title}**")
        cols = st.columns(max(CARDS_PER_ROW, len(row_names)))
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
                st.caption(f"The cards' values, the values they are compared with "
                           f"({COMPARE_OPTIONS[mode].lower()}) and targets:")
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
    df = with_segment_labels(df.sort_values("ticket_count", ascending=False))
    config = {"segment_label": st.column_config.TextColumn(
        "Customer segment", help="Named in the settings' [display.segments]; the code "
        "the data holds is in the downloads.")}
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
    show_table(df, hide_index=True, column_order=["segment_label", *order[1:]],
               column_config=config, key="segments", on_select="rerun",
               selection_mode="single-row")
    download_buttons(df[order], "overview_customer_segments", filters)
    row = selected_row("segments", df)
    if row is None:
        st.caption("Select a segment to list its tickets.")
    else:
        segment = row["segment_label"] if pd.notna(row["customer_segment"]) else "(none)"
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
OLD_BAND = len(AGE_BANDS) - 1  # "Over 30 days"


@st.fragment(run_every=LIVE_EVERY_S)
def _unresolved(wh: Warehouse, filters: Filters) -> None:
    """The tickets unresolved now (open or in progress at the data's latest moment) by
    status, whatever day they were created: the aging library's counts."""
    as_of = wh.as_of()
    if as_of is None:
        return
    bands = age_bands(wh, filters, split="status")
    by_status = bands.groupby("group")["tickets"].sum()
    open_now = int(by_status.get("open", 0))
    in_progress = int(by_status.get("in_progress", 0))
    old = int(bands.loc[bands["band_order"] == OLD_BAND, "tickets"].sum())
    old_label = AGE_BANDS[OLD_BAND][0].lower()
    with st.container(border=True):
        st.subheader(f"Unresolved now · as of {to_local(as_of, filters.tz):%Y-%m-%d %H:%M} "
                     f"{filters.tz}")
        st.caption("Tickets open or in progress at the data's latest moment, whatever day they "
                   "were created: the sidebar's other filters apply, its date range does not.")
        cols = st.columns(4)
        labels = dict(zip(("open", "in_progress", "total", "old"), UNRESOLVED_LABELS,
                          strict=True))
        cols[0].metric(labels["open"], f"{open_now:,}",
                       help="Unresolved tickets whose status is open now.")
        cols[1].metric(labels["in_progress"], f"{in_progress:,}",
                       help="Unresolved tickets whose status is in progress now.")
        cols[2].metric(labels["total"], f"{open_now + in_progress:,}",
                       help="Open or in progress now, created on any day.")
        cols[3].metric(labels["old"], f"{old:,}",
                       help=f"Unresolved tickets created {old_label} before the data's latest "
                       "moment.")
        try:
            st.page_link("views/aging.py", label="How old, by priority, team and "
                         "representative, and SLA status: Aging & SLA",
                         icon=":material/hourglass_bottom:")
        except StreamlitAPIException:  # the page is not in this app's navigation
            pass


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
            cols[1].metric("Awaiting a first answer", "–", help=NO_FIRST_RESPONSES)
            cols[2].metric("Oldest unanswered", "–", help=NO_FIRST_RESPONSES)
            cols[3].metric("SLA at risk", "–", help=NO_FIRST_RESPONSES)
            st.caption(f"{NO_FIRST_RESPONSES} Unanswered, at-risk and breached tickets "
                       "cannot be told apart.")
            return
        cols[1].metric("Awaiting a first answer", f"{snap.waiting:,}",
                       help=f"Unresolved tickets not answered yet, of {snap.open_now:,} "
                       "unresolved (open or in progress).")
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
        _unresolved(wh, filters)
        _kpis(wh, filters)
        st.divider()
        _weekly_chart(wh, filters)
        st.subheader("Customer segments")
        _segments(wh, filters)
    except CsMetricsError as exc:
        st.error(escape_markdown(exc))


main()
