"""Seasonality & staffing: the daily ticket series decomposed, the arrival heatmap, the forecast
with its backtest, and the agents Erlang C asks for, hour by hour, against today's staffing."""

from __future__ import annotations

from dataclasses import replace

import altair as alt
import pandas as pd
import streamlit as st

from cs_metrics import CsMetricsError, Filters, Warehouse
from cs_metrics.analysis.seasonality import (
    WEEKDAYS,
    Decomposition,
)
from cs_metrics.core.safe_text import escape_markdown, markdown_code
from cs_metrics.core.zones import to_local
from views._charts import MIN_PLOT_HEIGHT, chart_title, show_chart
from views._drill import opened
from views._exports import download_buttons
from views._filter_defs import describe_filters, describe_range
from views._filter_parts import as_of_text
from views._filters import filters_ui
from views._seasonality_data import (
    LEVEL,
    _backtest,
    _decomposition,
    _forecast,
    _heatmap,
    _series,
)
from views._seasonality_staffing import _staffing_section
from views._session import ensure_data
from views._tables import show_table

HORIZONS = (1, 2, 4, 6, 8)  # forecast weeks offered
HISTORY_SHOWN_DAYS = 56  # history drawn beside the forecast
COMPONENT_LABELS = {
    "observed": "Observed", "trend": "Trend", "seasonal_7": "Weekly seasonal",
    "seasonal_365": "Yearly seasonal", "resid": "Residual",
}


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
    df = _heatmap(wh, filters)
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
    fc = _forecast(wh, filters, days)
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
    bt = _backtest(wh, filters)
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
        series = _series(wh, history)
        try:
            dec = _decomposition(wh, history)
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
