"""Overview: the tickets unresolved now (by status and age), then the headline KPIs of the
tickets created in the date range against their targets, with weekly sparklines and a change
against the previous period or the same dates a year earlier; weekly volume vs backlog,
customer segments; every figure downloads as CSV and Parquet."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

import cs_metrics
from cs_metrics import CsMetricsError, Filters, Warehouse
from cs_metrics.analysis.aging import AGE_BANDS, unresolved_now
from cs_metrics.core.safe_text import escape_markdown, markdown_code
from cs_metrics.core.zones import to_local
from cs_metrics.metrics.live import AT_RISK_SHARE, live_snapshot
from views._cache import run_query
from views._charts import show_chart
from views._drill import row_drill, selected_row, ticket_list_ui
from views._exports import download_buttons
from views._filter_defs import describe_filters
from views._filter_parts import as_of_text
from views._filters import filters_ui
from views._live import alert_toasts, live_refresher
from views._overview_cards import _kpis
from views._session import ensure_data
from views._tables import missing_text, show_table, with_segment_labels

# The unresolved-now cards: label -> what they count.
UNRESOLVED_LABELS = ("Open now", "In progress now", "Unresolved now", "Over 30 days old")
SEGMENT_METRICS = ("customer_count", "ticket_count", "csat_pct")


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
    now = unresolved_now(wh, filters)
    open_now, in_progress, old = now.open, now.in_progress, now.old
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
