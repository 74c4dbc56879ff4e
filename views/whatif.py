"""What-if simulation: an outage of a chosen place, size and severity, projected hour by hour
onto arrivals, the first-response queue and the SLA, with the staff that would keep the SLA."""

from __future__ import annotations

import math
from datetime import datetime

import altair as alt
import pandas as pd
import pydeck as pdk
import streamlit as st

from cs_metrics import CsMetricsError, Filters, Warehouse
from cs_metrics.analysis.whatif import (
    WhatIfResult,
    city_centre,
    simulate_outage,
)
from cs_metrics.core.safe_text import escape_markdown, markdown_code
from cs_metrics.core.zones import local_columns, to_local
from views._cache import cached, customer_cells
from views._charts import SEVERITY_COLOURS, basemap, chart_title, show_chart
from views._exports import download_buttons, export_button, table_downloads
from views._filter_parts import as_of_text, current_zone
from views._session import ensure_data
from views._tables import plural, segment_label, show_table
from views._whatif_form import scenario_ui

SAVED = "whatif_saved"
BAND = "#4c78a8"
OUTAGE = "#e45756"


_simulate = cached(simulate_outage, show_spinner="Simulating the queue…")


def _area_map(wh: Warehouse, result: WhatIfResult) -> None:
    cells = customer_cells(wh, 5.0)
    radius = result.scenario.radius_km
    lat0, lon0 = result.lat, result.lon
    if len(cells):
        k = math.cos(math.radians(lat0))
        near = cells[((cells["lat"] - lat0) * 111.0) ** 2
                     + ((cells["lon"] - lon0) * 111.0 * k) ** 2 <= (3 * radius + 20) ** 2]
    else:
        near = cells
    colour = SEVERITY_COLOURS.get(result.scenario.severity, [120, 120, 120])
    area = pd.DataFrame({"lat": [lat0], "lon": [lon0], "radius_m": [radius * 1000],
                         "tip": [f"{result.affected_customers:,} customers affected within "
                                 f"{radius:g} km"]})
    layers = [pdk.Layer("ScatterplotLayer", area, id="area", get_position="[lon, lat]",
                        get_radius="radius_m", get_fill_color=[*colour, 60],
                        get_line_color=[*colour, 255], stroked=True, line_width_min_pixels=2,
                        pickable=True)]
    if len(near):
        near = near.assign(radius=[200 + 60 * math.sqrt(n) for n in near["customers"]],
                           tip=[f"{plural(n, 'customer')} ({segment_label(s)})" for n, s in
                                zip(near["customers"], near["segment"], strict=True)])
        layers.append(pdk.Layer("ScatterplotLayer", near, id="customers",
                                get_position="[lon, lat]", get_radius="radius",
                                radius_min_pixels=2, get_fill_color=[31, 119, 180, 180],
                                pickable=True))
    zoom = max(3.0, min(12.0, math.log2(40_000 / max(1.0, 8 * radius))))
    st.pydeck_chart(pdk.Deck(layers=layers, tooltip={"text": "{tip}"},
                             initial_view_state=pdk.ViewState(latitude=lat0, longitude=lon0,
                                                              zoom=zoom),
                             **basemap()),
                    height=320, key="whatif_area")


def _band_chart(hours: pd.DataFrame, stem: str, title: str, unit: str,
                outage: tuple[datetime, datetime], columns: int = 1) -> alt.LayerChart:
    base = alt.Chart(hours).encode(x=alt.X("hour:T", title=f"Hour ({current_zone()})",
                                           axis=alt.Axis(format="%a %H:%M")))
    shade = alt.Chart(pd.DataFrame({"start": [outage[0]], "end": [outage[1]]})).mark_rect(
        color=OUTAGE, opacity=0.08).encode(x=alt.X("start:T"), x2=alt.X2("end:T"))
    band = base.mark_area(opacity=0.25, color=BAND).encode(
        y=alt.Y(f"{stem}_p10:Q", title=unit), y2=alt.Y2(f"{stem}_p90:Q"))
    line = base.mark_line(color=BAND).encode(
        y=alt.Y(f"{stem}_p50:Q"),
        tooltip=[alt.Tooltip("hour:T", title="Hour", format="%a %d %b %H:%M"),
                 alt.Tooltip(f"{stem}_p10:Q", title="p10", format=",.1f"),
                 alt.Tooltip(f"{stem}_p50:Q", title="median", format=",.1f"),
                 alt.Tooltip(f"{stem}_p90:Q", title="p90", format=",.1f"),
                 alt.Tooltip(f"baseline_{stem}_p50:Q", title="without the outage",
                             format=",.1f")])
    baseline = base.mark_line(color="gray", strokeDash=[4, 3]).encode(
        y=alt.Y(f"baseline_{stem}_p50:Q"))
    return (shade + band + baseline + line).properties(
        height=240, title=chart_title(title, "Median and p10–p90 band over the runs; dashed: "
                                      "the same hours without the outage; shaded: the outage.",
                                      columns=columns))


def _charts(result: WhatIfResult) -> None:
    # the simulation runs in UTC; its hours are drawn on the reporting zone's clock
    tz = current_zone()
    hours = local_columns(result.hours, ("hour",), tz)
    outage = (to_local(result.scenario.start, tz), to_local(result.scenario.end, tz))
    arrivals = hours.melt(id_vars="hour", value_vars=["baseline_arrivals", "extra_arrivals"],
                          var_name="kind", value_name="tickets")
    arrivals["kind"] = arrivals["kind"].map({"baseline_arrivals": "Expected anyway",
                                             "extra_arrivals": "Extra from the outage"})
    show_chart(
        alt.Chart(arrivals, title=chart_title("Arrivals per hour", "Expected tickets: the "
                                              "forecast plus the outage's excess."))
        .mark_bar()
        .encode(x=alt.X("hour:T", title=f"Hour ({tz})", axis=alt.Axis(format="%a %H:%M")),
                y=alt.Y("tickets:Q", title="Tickets per hour", stack=True),
                color=alt.Color("kind:N", title=None, legend=alt.Legend(orient="top"),
                                scale=alt.Scale(range=["#9ecae9", OUTAGE])),
                tooltip=[alt.Tooltip("hour:T", title="Hour", format="%a %d %b %H:%M"),
                         alt.Tooltip("kind:N", title="Kind"),
                         alt.Tooltip("tickets:Q", title="Tickets", format=",.1f")])
        .properties(height=240), width="stretch")
    left, right = st.columns(2)
    with left:
        show_chart(_band_chart(hours, "backlog", "Backlog waiting for a first response",
                               "Tickets waiting", outage, columns=2), width="stretch")
    with right:
        show_chart(_band_chart(hours, "sla_breach_pct",
                                    f"Share missing the {result.sla_minutes:g}-minute target",
                               "% of the hour's tickets", outage, columns=2), width="stretch")
    show_chart(_band_chart(hours, "first_response_min", "Mean first-response wait",
                                "Minutes", outage), width="stretch")
    staff = hours.melt(id_vars="hour", value_vars=["current_agents", "extra_agents_needed"],
                       var_name="kind", value_name="agents")
    staff["kind"] = staff["kind"].map({"current_agents": "Active today (average)",
                                       "extra_agents_needed": "Extra needed for the SLA"})
    show_chart(
        alt.Chart(staff, title=chart_title(
            "Agents per hour", f"Extra needed: Erlang C for {result.sla_target_pct:g} % "
            f"answered within {result.sla_minutes:g} min on the expected arrivals, minus the "
            "agents active in that hour today."))
        .mark_bar()
        .encode(x=alt.X("hour:T", title=f"Hour ({tz})", axis=alt.Axis(format="%a %H:%M")),
                y=alt.Y("agents:Q", title="Agents", stack=True),
                color=alt.Color("kind:N", title=None, legend=alt.Legend(orient="top"),
                                scale=alt.Scale(range=["#bab0ac", "#54a24b"])),
                tooltip=[alt.Tooltip("hour:T", title="Hour", format="%a %d %b %H:%M"),
                         alt.Tooltip("kind:N", title="Kind"),
                         alt.Tooltip("agents:Q", title="Agents", format=",.1f")])
        .properties(height=220), width="stretch")


def _stem(result: WhatIfResult) -> str:
    s = result.scenario
    place = (result.city or f"{result.lat:.2f}_{result.lon:.2f}").replace(" ", "-").lower()
    return f"whatif_{place}_{s.radius_km:g}km_{s.severity}_{s.start:%Y%m%dT%H%M}_{s.hours:g}h"


def _headline(result: WhatIfResult) -> None:
    t = result.totals
    tz = current_zone()
    st.success(escape_markdown(result.summary))  # it names the city, from the data
    cols = st.columns(4)
    cols[0].metric("Extra tickets", f"{t.extra_tickets_p50:,.0f}",
                   help=f"Median over {result.runs} runs; p10–p90 {t.extra_tickets_p10:,.0f}–"
                   f"{t.extra_tickets_p90:,.0f}; expected {t.expected_extra_tickets:,.1f}.")
    cols[1].metric("Peak backlog", f"{t.peak_backlog_p50:,.0f}",
                   delta=f"{t.peak_backlog_p50 - t.baseline_peak_backlog_p50:+,.0f} vs no outage",
                   delta_color="inverse",
                   help=f"At {to_local(t.peak_backlog_hour, tz):%a %d %b %H:%M} {tz}.")
    worse = t.peak_first_response_min_p50 - t.baseline_first_response_min_p50
    cols[2].metric("Worst first response", f"{t.peak_first_response_min_p50:,.0f} min",
                   delta=f"{worse:+,.0f} min vs no outage", delta_color="inverse",
                   help=f"Mean wait of the tickets arriving at "
                   f"{to_local(t.peak_first_response_hour, tz):%a %d %b %H:%M} {tz}.")
    cols[3].metric("Extra agents needed", f"{t.max_extra_agents_needed:,} at most",
                   help=f"{t.extra_agent_hours:,} agent-hours over the period.")
    place = escape_markdown(result.city or f"{result.lat:.4f}, {result.lon:.4f}")
    st.caption(f"{result.affected_customers:,} customers within {result.scenario.radius_km:g} "
               f"km of {place} · {escape_markdown(result.rate_note)} · AHT "
               f"{result.aht_s:,.0f} s · first-response target {result.sla_minutes:g} min")
    for note in result.notes:
        st.caption(escape_markdown(note))


def _downloads(result: WhatIfResult) -> None:
    stem = _stem(result)
    with st.container(horizontal=True):
        table_downloads(result.hours, stem, None, "wi")
        export_button("Download the scenario (JSON)", lambda: result.scenario.to_json().encode(),
                      f"{stem}.json", "application/json", key="wi_json",
                      help="Load it again above to re-run or share it.")


def _saved_section(result: WhatIfResult, runs: int, seed: int) -> None:
    saved: list[dict] = st.session_state.setdefault(SAVED, [])
    name = st.text_input("Name this scenario", value=_stem(result).removeprefix("whatif_"),
                         key="wi_name")
    left, right = st.columns(2)
    if left.button("Save for comparison", icon=":material/bookmark_add:", key="wi_save"):
        t = result.totals
        saved.append({
            "scenario": name, "start": result.scenario.start, "hours": result.scenario.hours,
            "severity": result.scenario.severity, "radius_km": result.scenario.radius_km,
            "affected_customers": result.affected_customers,
            "extra_staff": str(result.scenario.extra_staff), "runs": runs, "seed": seed,
            "extra_tickets_p50": t.extra_tickets_p50, "peak_backlog_p50": t.peak_backlog_p50,
            "worst_first_response_min": t.peak_first_response_min_p50,
            "sla_breach_pct_p50": t.sla_breach_pct_p50,
            "max_extra_agents_needed": t.max_extra_agents_needed,
            "extra_agent_hours": t.extra_agent_hours,
            "json": result.scenario.to_json(),
        })
    if saved and right.button("Clear the comparison", key="wi_clear"):
        saved.clear()
        st.rerun()
    if saved:
        table = pd.DataFrame(saved)
        st.subheader("Saved scenarios side by side")
        show_table(table.drop(columns=["json"]).set_index("scenario").T, key="wi_compare",
                   hide_index=False, labels=False)
        download_buttons(table, "whatif_comparison", Filters())


def main() -> None:
    st.title("What-if simulation")
    try:
        wh = ensure_data()
        if not wh.has_table("tickets"):
            st.error(f"The warehouse {escape_markdown(wh.path)} has no tickets yet. Load data "
                     "into it with "
                     f"{markdown_code(f'python -m cs_metrics ingest SOURCE --db {wh.path}')}.")
            return
        st.caption(f"{as_of_text(wh)} · An outage you describe, projected onto the queue "
                   "with today's staffing. The sidebar's filters do not apply here.")
        chosen = scenario_ui(wh)
        if chosen is None:
            st.info("Describe an outage and run the simulation.")
            return
        scenario, runs, seed = chosen
        if isinstance(scenario.city, str):
            city_centre(wh, scenario.city)  # an unknown city: the library's sentence
        result = _simulate(wh, scenario, runs=runs, seed=seed)
        _headline(result)
        if result.totals.max_extra_agents_needed > 0 and st.toggle(
                "Add the recommended extra agents", key="wi_recommended",
                help="Re-run with the extra agents Erlang C asks for in each hour."):
            result = _simulate(wh, result.recommended_scenario(), runs=runs, seed=seed)
            st.info(f"With the recommended staff: {escape_markdown(result.summary)}")
        _area_map(wh, result)
        _charts(result)
        with st.expander("Hour by hour"):
            show_table(result.hours, hide_index=True, key="wi_hours_table")
        _downloads(result)
        _saved_section(result, runs, seed)
    except CsMetricsError as exc:
        st.error(escape_markdown(exc))


main()
