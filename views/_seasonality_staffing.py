"""Seasonality & staffing page, the staffing section: the Erlang C agents the forecast asks
for, hour of the week by hour, against the representatives active in the data."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

import cs_metrics
from cs_metrics import Filters, ServiceLevel, Warehouse
from cs_metrics.analysis.seasonality import (
    WEEKDAYS,
)
from cs_metrics.analysis.staffing import (
    staffing_gap,
    staffing_plan,
)
from views._charts import chart_title, show_chart
from views._drill import opened
from views._exports import download_buttons
from views._seasonality_data import (
    _current,
    _handle_time,
    _hourly,
)
from views._tables import show_table


def _staffing_inputs(wh: Warehouse, filters: Filters) -> tuple[float, ServiceLevel, float, float]:
    settings = cs_metrics.load_settings().staffing
    channels = dict(filters.where).get("channel", ())
    levels = dict(settings.service_levels)
    options = list(levels)
    chosen = channels[0].lower() if len(channels) == 1 else "default"
    default_level = settings.service_level(chosen)
    aht_data = _handle_time(wh, filters)
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
    hourly = _hourly(wh, filters, days)
    plan = staffing_plan(hourly[["hour", "arrivals"]], aht, level, shrinkage=shrinkage,
                         max_occupancy=occupancy)
    table = staffing_gap(plan, _current(wh, filters))
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
            show_table(plan, hide_index=True, key="staff_plan")
            download_buttons(plan, f"staffing_plan_{days}d", filters)
