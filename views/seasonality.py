"""Seasonality & staffing: the daily ticket series decomposed, the arrival heatmap, the forecast
with its backtest, and the agents Erlang C asks for, hour by hour, against today's staffing."""

from __future__ import annotations

from dataclasses import replace

import altair as alt
import pandas as pd
import streamlit as st

import cs_metrics
from cs_metrics import CsMetricsError, Filters, ServiceLevel, Warehouse
from cs_metrics.analysis.seasonality import (
    WEEKDAYS,
    Backtest,
    Decomposition,
    arrival_heatmap,
    backtest,
    daily_series,
    decompose,
    forecast_daily,
    forecast_hourly,
)
from cs_metrics.analysis.staffing import current_staffing, handle_time_s, staffing_plan
from cs_metrics.core.safe_text import escape_markdown, markdown_code
from cs_metrics.core.zones import to_local
from views._common import (
    MIN_PLOT_HEIGHT,
    QUERY_TTL_S,
    as_of_text,
    chart_title,
    describe_filters,
    describe_range,
    download_buttons,
    ensure_data,
    filters_ui,
    opened,
    show_chart,
    show_table,
)

HORIZONS = (1, 2, 4, 6, 8)  # forecast weeks offered
HISTORY_SHOWN_DAYS = 56  # history drawn beside the forecast
BACKTEST_HORIZON = 14
BACKTEST_FOLDS = 4
LEVEL = 0.9
COMPONENT_LABELS = {
    "observed": "Observed", "trend": "Trend", "seasonal_7": "Weekly seasonal",
    "seasonal_365": "Yearly seasonal", "resid": "Residual",
}


# --- cached library calls (small results, keyed by the file and the frozen inputs) -----------


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _series(_wh: Warehouse, db: str, filters: Filters) -> pd.Series:
    return daily_series(_wh, filters)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _decomposition(_wh: Warehouse, db: str, filters: Filters) -> Decomposition:
    return decompose(_series(_wh, db, filters))


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _heatmap(_wh: Warehouse, db: str, filters: Filters) -> pd.DataFrame:
    return arrival_heatmap(_wh, filters)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _forecast(_wh: Warehouse, db: str, filters: Filters, days: int) -> pd.DataFrame:
    return forecast_daily(_series(_wh, db, filters), days, level=LEVEL)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _backtest(_wh: Warehouse, db: str, filters: Filters) -> Backtest:
    return backtest(_series(_wh, db, filters), BACKTEST_HORIZON, BACKTEST_FOLDS, level=LEVEL)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _hourly(_wh: Warehouse, db: str, filters: Filters, days: int) -> pd.DataFrame:
    return forecast_hourly(_wh, filters, _forecast(_wh, db, filters, days))


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _handle_time(_wh: Warehouse, db: str, filters: Filters) -> float | None:
    return handle_time_s(_wh, filters)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _current(_wh: Warehouse, db: str, filters: Filters) -> pd.DataFrame:
    return current_staffing(_wh, filters)


# --- sections --------------------------------------------------------------------------------


def _history_filters(filters: Filters) -> Filters:
    """The filters this page reads history with: by default the whole history (a forecast
    and a yearly cycle need more than the sidebar's 90 days), the dimensions as chosen."""
    whole = st.toggle(
        "Use the whole history", value=True, key="season_whole_history",
        help="On: every day of data, with the sidebar's other filters (two years are needed "
        "for a yearly cycle). Off: only the sidebar's date range.",
    )
    return replace(filters, date_from=None, date_to=None) if whole else filters


def _history_note(wh: Warehouse, filters: Filters, history: Filters) -> str:
    """Which days this page reads, beside the sidebar's date range that other pages use."""
    if history.date_from is not None or history.date_to is not None:
        return "This page uses the sidebar's date range, like the other pages."
    span = wh.created_range()
    whole = "the whole history" if span is None else (
        f"the whole history ({to_local(span[0], filters.tz):%d %b %Y} – "
        f"{to_local(span[1], filters.tz):%d %b %Y})")
    return (f"This page uses {whole}, not the sidebar's date range "
            f"({describe_range(filters).removeprefix('Tickets created ')}): a forecast and "
            "a yearly cycle need more than a few weeks. The sidebar's other filters apply. "
            "Turn off \"Use the whole history\" below to use the range.")


def _verdicts(dec: Decomposition) -> None:
    # the library's sentences are text: whatever they quote is shown, not rendered
    st.markdown(f"**Weekly.** {escape_markdown(dec.weekly_verdict)}")
    if dec.yearly_verdict:
        st.markdown(f"**Yearly.** {escape_markdown(dec.yearly_verdict)}")
    else:
        st.caption(escape_markdown(dec.yearly_note))
    if dec.unusual_days:
        days = ", ".join(f"{d:%d %b %Y}" for d in dec.unusual_days[:8])
        more = f" and {len(dec.unusual_days) - 8} more" if len(dec.unusual_days) > 8 else ""
        st.caption(f"Left out of the strengths and weekday effects as unusual (holidays, "
                   f"outage surges): {days}{more}.")


def _decomposition_section(dec: Decomposition, filters: Filters) -> None:
    st.subheader("Seasonality")
    _verdicts(dec)
    comp = dec.components.copy()
    comp.index.name = "date"
    long = comp.reset_index().melt(id_vars="date", var_name="component", value_name="tickets")
    long["component"] = long["component"].map(COMPONENT_LABELS).fillna(long["component"])
    order = [COMPONENT_LABELS[c] for c in COMPONENT_LABELS if c in comp.columns]
    # one chart per component, stacked, each with its own scale: a vertical concatenation
    # (not a facet) fills the page's width
    rows = [
        alt.Chart(title=alt.TitleParams(name, anchor="start", fontSize=12))
        .transform_filter(alt.datum.component == name)
        .mark_line(strokeWidth=1)
        .encode(
            x=alt.X("date:T", title="Day" if name == order[-1] else None),
            y=alt.Y("tickets:Q", title="Tickets per day", scale=alt.Scale(zero=False)),
            tooltip=[alt.Tooltip("date:T", title="Day", format="%a %d %b %Y"),
                     alt.Tooltip("component:N", title="Component"),
                     alt.Tooltip("tickets:Q", title="Tickets", format=",.1f")],
        )
        .properties(height=MIN_PLOT_HEIGHT)
        for name in order
    ]
    chart = alt.vconcat(*rows, data=long, spacing=12).properties(title=chart_title(
        "Daily tickets decomposed (MSTL)",
        "Observed = trend + seasonal components + residual, in tickets per day."))
    show_chart(chart, width="stretch")
    effects = dec.weekday_effects.rename("effect").reset_index()
    effects.columns = ["weekday", "effect"]
    bars = (
        alt.Chart(effects, title=chart_title(
            "Each weekday against the average day",
            f"Weekly strength {dec.weekly_strength:.2f} (0 = none, 1 = pure pattern)"))
        .mark_bar()
        .encode(
            x=alt.X("weekday:N", sort=list(WEEKDAYS), title=None,
                    axis=alt.Axis(labelAngle=0)),
            y=alt.Y("effect:Q", title="Tickets vs the average day (%)", axis=alt.Axis(format="%")),
            color=alt.ColorValue(**alt.condition("datum.effect >= 0", alt.value("#4c78a8"),
                                                 alt.value("#e45756"))),
            tooltip=[alt.Tooltip("weekday:N", title="Weekday"),
                     alt.Tooltip("effect:Q", title="Against the average day", format="+.1%")],
        )
        .properties(height=240)
    )
    show_chart(bars, width="stretch")
    if box := opened("Data", "open_season_components"):
        with box:
            show_table(comp.reset_index(), hide_index=True, key="season_components")
            download_buttons(comp.reset_index(), "seasonal_decomposition", filters)


def _heatmap_section(wh: Warehouse, filters: Filters) -> None:
    st.subheader("When tickets arrive")
    df = _heatmap(wh, wh.cache_key, filters)
    chart = (
        alt.Chart(df, title=chart_title(
            "Average tickets per hour, by weekday",
            "Tickets created in each hour of the day (data time zone), averaged over the days "
            "of that weekday in the history."))
        .mark_rect()
        .encode(
            x=alt.X("hour:O", title="Hour of day"),
            y=alt.Y("weekday_name:N", sort=list(WEEKDAYS), title=None),
            color=alt.Color("tickets_per_day:Q", title="Tickets / hour",
                            scale=alt.Scale(scheme="blues")),
            tooltip=[alt.Tooltip("weekday_name:N", title="Weekday"),
                     alt.Tooltip("hour:O", title="Hour"),
                     alt.Tooltip("tickets_per_day:Q", title="Average tickets", format=",.1f"),
                     alt.Tooltip("days:Q", title="Days averaged")],
        )
        .properties(height=230)
    )
    show_chart(chart, width="stretch")
    if box := opened("Data", "open_season_heatmap"):
        with box:
            show_table(df, hide_index=True, key="season_heatmap")
            download_buttons(df, "arrival_heatmap", filters)


def _forecast_section(wh: Warehouse, filters: Filters, series: pd.Series, days: int) -> None:
    st.subheader("Forecast")
    fc = _forecast(wh, wh.cache_key, filters, days)
    history = series.tail(HISTORY_SHOWN_DAYS).rename("tickets").reset_index()
    history.columns = ["date", "tickets"]
    history["series"] = "Actual"
    band = (
        alt.Chart(fc).mark_area(opacity=0.25, color="#f58518")
        .encode(x=alt.X("date:T", title="Day"), y=alt.Y("lower:Q", title="Tickets per day"),
                y2=alt.Y2("upper:Q"),
                tooltip=[alt.Tooltip("date:T", title="Day", format="%a %d %b %Y"),
                         alt.Tooltip("lower:Q", title=f"Lower ({LEVEL:.0%})", format=",.0f"),
                         alt.Tooltip("upper:Q", title=f"Upper ({LEVEL:.0%})", format=",.0f")])
    )
    line = (
        alt.Chart(fc.assign(series="Forecast")).mark_line(color="#f58518", point=True)
        .encode(x=alt.X("date:T"), y=alt.Y("forecast:Q"),
                tooltip=[alt.Tooltip("date:T", title="Day", format="%a %d %b %Y"),
                         alt.Tooltip("forecast:Q", title="Forecast", format=",.0f")])
    )
    actual = (
        alt.Chart(history).mark_line(color="#4c78a8")
        .encode(x=alt.X("date:T"), y=alt.Y("tickets:Q"),
                tooltip=[alt.Tooltip("date:T", title="Day", format="%a %d %b %Y"),
                         alt.Tooltip("tickets:Q", title="Tickets", format=",")])
    )
    show_chart(
        (band + actual + line).properties(
            height=320,
            title=chart_title(f"Tickets per day: the last {HISTORY_SHOWN_DAYS} days and the next "
                              f"{days} days",
                              f"Forecast with its {LEVEL:.0%} prediction interval (Poisson "
                              "regression on trend, weekday and yearly terms).")),
        width="stretch",
    )
    if box := opened("Data", "open_season_forecast"):
        with box:
            show_table(fc, hide_index=True, key="season_forecast")
            download_buttons(fc, f"forecast_{days}d", filters)
    bt = _backtest(wh, wh.cache_key, filters)
    cols = st.columns(4)
    cols[0].metric("MAPE, model", f"{bt.model_mape_pct:.1f} %",
                   help="Mean absolute percentage error over the backtest days.")
    cols[1].metric("MAPE, last week repeated", f"{bt.baseline_mape_pct:.1f} %",
                   help="The seasonal-naive baseline: each day gets the same weekday of the "
                   "last training week.")
    cols[2].metric("MASE, model", f"{bt.model_mase:.2f}",
                   delta=f"{bt.model_mase - bt.baseline_mase:+.2f} vs baseline",
                   delta_color="inverse",
                   help="Mean absolute error scaled by the in-sample error of repeating last "
                   "week; below 1 beats that naive forecast in-sample.")
    cols[3].metric(f"Days inside the {LEVEL:.0%} interval", f"{bt.coverage:.0%}")
    (st.success if bt.beats_baseline else st.warning)(escape_markdown(bt.summary))
    if box := opened("Backtest folds", "open_season_backtest"):
        with box:
            show_table(bt.folds, hide_index=True, key="season_backtest")
            download_buttons(bt.folds, "forecast_backtest", filters)


def _staffing_inputs(wh: Warehouse, filters: Filters) -> tuple[float, ServiceLevel, float, float]:
    settings = cs_metrics.load_settings().staffing
    channels = dict(filters.where).get("channel", ())
    levels = dict(settings.service_levels)
    options = list(levels)
    chosen = channels[0].lower() if len(channels) == 1 else "default"
    default_level = settings.service_level(chosen)
    aht_data = _handle_time(wh, wh.cache_key, filters)
    cols = st.columns(5)
    queue = cols[0].selectbox(
        "Service-level target of", options,
        index=options.index(chosen) if chosen in options else options.index("default"),
        key="staff_channel", help="The channel whose target (from the settings) applies; "
        "the sidebar's channel filter picks it when it holds one channel.",
    )
    level = levels.get(queue, default_level)
    target = cols[1].number_input("Answered within target (%)", 1, 99,
                                  min(99, max(1, round(level.target * 100))), step=1,
                                  format="%d", key=f"staff_sl_{queue}")
    within = cols[2].number_input("Target time (s)", 0, 86_400, round(level.within_s),
                                  step=5, format="%d", key=f"staff_within_{queue}")
    aht = cols[3].number_input(
        "Average handle time (s)", 1, 36_000,
        round(aht_data if aht_data else settings.aht_s), step=10, format="%d", key="staff_aht",
        help="From the tickets' handle times in the history" if aht_data else
        "This dataset has no handle times: the settings' default (staffing.aht_s).",
    )
    shrinkage = cols[4].number_input("Shrinkage (%)", 0, 95, round(settings.shrinkage * 100),
                                     step=1, format="%d", key="staff_shrinkage",
                                     help="Paid time not spent on contacts.") / 100
    occupancy = settings.max_occupancy
    st.caption(f"Maximum occupancy {occupancy:.0%} (staffing.max_occupancy in the settings). "
               "Erlang C assumes contacts wait in one queue and never give up; for email and "
               "other deferred channels it overstates the agents needed.")
    return float(aht), ServiceLevel(target / 100, float(within)), shrinkage, occupancy


def _staffing_section(wh: Warehouse, filters: Filters, days: int) -> None:
    st.subheader("Staffing")
    aht, level, shrinkage, occupancy = _staffing_inputs(wh, filters)
    hourly = _hourly(wh, wh.cache_key, filters, days)
    plan = staffing_plan(hourly[["hour", "arrivals"]], aht, level, shrinkage=shrinkage,
                         max_occupancy=occupancy)
    plan["weekday"] = pd.to_datetime(plan["hour"]).dt.day_of_week
    plan["hour_of_day"] = pd.to_datetime(plan["hour"]).dt.hour
    need = (plan.groupby(["weekday", "hour_of_day"], as_index=False)
            .agg(arrivals=("arrivals", "mean"), scheduled_agents=("scheduled_agents", "mean"),
                 peak_agents=("scheduled_agents", "max"), service_level=("service_level", "mean")))
    now = _current(wh, wh.cache_key, filters).rename(columns={"hour": "hour_of_day"})
    table = need.merge(now[["weekday", "hour_of_day", "active_reps"]],
                       on=["weekday", "hour_of_day"], how="left")
    table["active_reps"] = table["active_reps"].fillna(0.0)
    table["gap"] = table["scheduled_agents"] - table["active_reps"]
    table.insert(1, "weekday_name", [WEEKDAYS[w] for w in table["weekday"]])

    total_need = float(plan["scheduled_agents"].sum())
    cols = st.columns(3)
    cols[0].metric("Agent-hours scheduled (forecast)", f"{total_need:,.0f}",
                   help=f"Scheduled agents summed over every hour of the next {days} days.")
    cols[1].metric("Peak agents in an hour", f"{int(plan['scheduled_agents'].max()):,}")
    short = int((table["gap"] > 0.5).sum())
    cols[2].metric("Weekday-hours short of staff", f"{short} of 168",
                   help="Hours where the average scheduled agents the forecast needs exceed "
                   "the representatives active in that hour in the history.")

    long = pd.concat([
        table.assign(series="Needed (scheduled)", agents=table["scheduled_agents"]),
        table.assign(series="Active in the data", agents=table["active_reps"]),
    ])
    long["slot"] = long["weekday"] * 24 + long["hour_of_day"]
    chart = (
        alt.Chart(long, title=chart_title(
            "Agents per hour of the week: needed vs active today",
            f"Needed: Erlang C for {level.target:.0%} within {level.within_s:g} s, "
            f"AHT {aht:,.0f} s, shrinkage {shrinkage:.0%}, averaged over the forecast weeks. "
            "Active: distinct representatives answering in that hour, averaged over the "
            "history's days."))
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X("slot:Q", title="Hour of the week (Monday 00:00 = 0)",
                    scale=alt.Scale(domain=[0, 168]),
                    axis=alt.Axis(values=list(range(0, 169, 24)))),
            y=alt.Y("agents:Q", title="Agents"),
            color=alt.Color("series:N", title=None, legend=alt.Legend(orient="top")),
            tooltip=[alt.Tooltip("weekday_name:N", title="Weekday"),
                     alt.Tooltip("hour_of_day:Q", title="Hour"),
                     alt.Tooltip("series:N", title="Series"),
                     alt.Tooltip("agents:Q", title="Agents", format=",.1f"),
                     alt.Tooltip("arrivals:Q", title="Forecast arrivals / hour", format=",.1f")],
        )
        .properties(height=300)
    )
    show_chart(chart, width="stretch")
    show_table(
        table, hide_index=True, key="staff_table",
        column_order=["weekday_name", "hour_of_day", "arrivals", "scheduled_agents",
                      "peak_agents", "active_reps", "gap", "service_level"],
        column_config={
            "weekday_name": st.column_config.TextColumn("Weekday"),
            "hour_of_day": st.column_config.NumberColumn("Hour"),
            "arrivals": st.column_config.NumberColumn("Forecast arrivals / hour", format="%.1f"),
            "scheduled_agents": st.column_config.NumberColumn("Agents needed (avg)",
                                                              format="%.1f"),
            "peak_agents": st.column_config.NumberColumn("Agents needed (peak)"),
            "active_reps": st.column_config.NumberColumn("Active in the data", format="%.1f"),
            "gap": st.column_config.NumberColumn("Gap", format="%+.1f",
                                                 help="Needed minus active: above 0 is short."),
            "service_level": st.column_config.NumberColumn("Expected service level",
                                                           format="percent"),
        },
    )
    download_buttons(table.drop(columns=["weekday"]), "staffing_by_weekday_hour", filters)
    if box := opened("Hour-by-hour plan", "open_staff_plan"):
        with box:
            show_table(plan.drop(columns=["weekday", "hour_of_day"]), hide_index=True,
                         key="staff_plan")
            download_buttons(plan.drop(columns=["weekday", "hour_of_day"]),
                             f"staffing_plan_{days}d", filters)


def main() -> None:
    st.title("Seasonality & staffing")
    note = st.empty()  # which dates the page reads, under the title: filled once known
    try:
        wh = ensure_data()
        filters = filters_ui(wh)
        if not wh.has_table("tickets"):
            st.error(f"The warehouse {escape_markdown(wh.path)} has no tickets yet. Load data "
                     "into it with "
                     f"{markdown_code(f'python -m cs_metrics ingest SOURCE --db {wh.path}')}.")
            return
        left, right = st.columns([2, 1])
        with left:
            history = _history_filters(filters)
        with right:
            weeks = st.select_slider("Forecast horizon (weeks)", HORIZONS, value=4,
                                     key="season_weeks")
        note.caption(_history_note(wh, filters, history))
        st.caption(f"{as_of_text(wh)} · {escape_markdown(describe_filters(history))}")
        series = _series(wh, wh.cache_key, history)
        try:
            dec = _decomposition(wh, wh.cache_key, history)
        except CsMetricsError as exc:
            st.info(f"{escape_markdown(exc)} Widen the date range or clear a filter.")
            return
        _decomposition_section(dec, history)
        _heatmap_section(wh, history)
        _forecast_section(wh, history, series, weeks * 7)
        _staffing_section(wh, history, weeks * 7)
    except CsMetricsError as exc:
        st.error(escape_markdown(exc))


main()
