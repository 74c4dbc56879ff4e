"""What-if page, the scenario form: the place (a city, a point or a click on the customers'
map), the start, length and severity of the outage, and scenarios saved as JSON."""

from __future__ import annotations

import json
import math
from datetime import datetime, time, timedelta

import pydeck as pdk
import streamlit as st

from cs_metrics import CsMetricsError, Warehouse
from cs_metrics.analysis.maps import customer_cities, customer_places
from cs_metrics.analysis.whatif import (
    SCENARIO_SEVERITIES,
    OutageScenario,
)
from cs_metrics.core.safe_text import escape_markdown
from cs_metrics.core.zones import to_local, utc_moment
from views._cache import cached
from views._charts import basemap
from views._filter_parts import current_zone, last_created_day

CITY, POINT = "City", "Latitude / longitude"
NO_DOMAIN = "(any: excess tickets keep the usual domain mix)"
PICK_KEY = "whatif_pick_map"


_cities = cached(customer_cities)
_customer_places = cached(customer_places)


def _defaults(wh: Warehouse, cities: list[str]) -> dict[str, object]:
    last = last_created_day(wh, current_zone()) or datetime.now().date()
    return {
        "wi_mode": CITY if cities else POINT,
        "wi_city": cities[0] if cities else None,
        "wi_lat": 40.71, "wi_lon": -74.01, "wi_radius": 25.0,
        "wi_day": last + timedelta(days=1), "wi_time": time(14, 0), "wi_hours": 12.0,
        "wi_severity": "major", "wi_domain": NO_DOMAIN, "wi_extra": 0, "wi_runs": 200,
        "wi_seed": 7,
    }


def _load(scenario: OutageScenario, cities: list[str]) -> None:
    """Put a scenario into the form's widgets (before they are drawn); its start (UTC) is
    shown in the reporting zone."""
    start = to_local(scenario.start, current_zone())
    st.session_state.update({
        "wi_mode": CITY if scenario.city else POINT,
        "wi_radius": float(scenario.radius_km), "wi_day": start.date(),
        "wi_time": start.time().replace(second=0, microsecond=0),
        "wi_hours": float(scenario.hours), "wi_severity": scenario.severity,
        "wi_domain": scenario.domain or NO_DOMAIN,
        "wi_extra": int(scenario.extra_staff) if isinstance(scenario.extra_staff, int)
        else max(scenario.extra_staff, default=0),
    })
    if scenario.city:
        st.session_state["wi_city"] = scenario.city if scenario.city in cities else None
    else:
        st.session_state["wi_lat"], st.session_state["wi_lon"] = scenario.lat, scenario.lon


def _upload_ui(cities: list[str]) -> None:
    with st.expander("Load a saved scenario (JSON)"):
        upload = st.file_uploader("Scenario file", type=["json"], key="wi_upload",
                                  help="A file downloaded from this page.")
        if upload is not None and st.session_state.get("_wi_loaded") != upload.file_id:
            st.session_state["_wi_loaded"] = upload.file_id
            try:
                _load(OutageScenario.from_json(upload.getvalue()), cities)
                st.session_state["wi_run"] = True
                st.rerun()
            except (CsMetricsError, ValueError, json.JSONDecodeError) as exc:
                st.error(f"{escape_markdown(upload.name)} is not a scenario this page can "
                         f"load: {escape_markdown(exc)}")


def _pick_point_ui(wh: Warehouse) -> None:
    """A map of where the customers are: clicking a cell makes it the outage's centre."""
    grouped = _customer_places(wh, 25.0)
    if grouped.empty:
        return
    grouped["radius"] = [800 + 150 * math.sqrt(n) for n in grouped["customers"]]
    grouped["tip"] = [f"{n:,} customers · click to centre the outage here"
                      for n in grouped["customers"]]
    layer = pdk.Layer("ScatterplotLayer", grouped, id="places", get_position="[lon, lat]",
                      get_radius="radius", radius_min_pixels=3, get_fill_color=[76, 120, 168,
                                                                                160],
                      pickable=True)
    view = pdk.ViewState(latitude=float(grouped["lat"].median()),
                         longitude=float(grouped["lon"].median()), zoom=3)
    event = st.pydeck_chart(
        pdk.Deck(layers=[layer], initial_view_state=view, tooltip={"text": "{tip}"},
                 **basemap()),
        height=300, key=PICK_KEY, on_select="rerun", selection_mode="single-object")
    picked = (event.selection.get("objects", {}) or {}).get("places") if event else None
    if picked:
        point = picked[0]
        if st.session_state.get("_wi_point") != (point["lat"], point["lon"]):
            st.session_state["_wi_point"] = (point["lat"], point["lon"])
            st.session_state.update({"wi_mode": POINT, "wi_lat": round(point["lat"], 4),
                                     "wi_lon": round(point["lon"], 4)})
            st.rerun()


def scenario_ui(wh: Warehouse) -> tuple[OutageScenario, int, int] | None:
    """The scenario form -> (scenario, runs, seed) once the user runs it, else None."""
    cities = _cities(wh)
    for key, value in _defaults(wh, cities).items():
        st.session_state.setdefault(key, value)
    _upload_ui(cities)
    with st.expander("Pick the centre on a map of the customers"):
        _pick_point_ui(wh)
    domains = [NO_DOMAIN, *wh.dimension_values("domain")]
    with st.form("whatif_form"):
        left, mid, right = st.columns(3)
        with left:
            mode = st.radio("Centre", [CITY, POINT], key="wi_mode", horizontal=True,
                            disabled=not cities)
            if mode == CITY and cities:
                st.selectbox("City", cities, key="wi_city",
                             help="The centre of the city's customers. Listed by customers.")
            else:
                st.number_input("Latitude", -90.0, 90.0, key="wi_lat", format="%.4f")
                st.number_input("Longitude", -180.0, 180.0, key="wi_lon", format="%.4f")
            st.slider("Radius (km)", 0.0, 200.0, key="wi_radius", step=1.0, format="%.0f")
        with mid:
            st.date_input("Start day", key="wi_day")
            st.time_input(f"Start time ({current_zone()})", key="wi_time",
                          step=timedelta(minutes=30),
                          help="In the reporting zone (the sidebar's Time zone on the other "
                          "pages, else the settings' [display] timezone).")
            st.number_input("Duration (hours)", 0.5, 14 * 24.0, key="wi_hours", step=1.0,
                            format="%.1f")
            st.selectbox("Severity", SCENARIO_SEVERITIES, key="wi_severity",
                         help="How many extra tickets each affected customer sends per hour: "
                         "measured on this dataset's outages where it has them.")
        with right:
            st.selectbox("Service that fails", domains, key="wi_domain")
            st.number_input("Extra agents during the outage", 0, 500, key="wi_extra", step=1,
                            format="%d")
            st.number_input("Simulation runs", 20, 2000, key="wi_runs", step=20, format="%d")
            st.number_input("Seed", 0, 2**31 - 1, key="wi_seed", step=1, format="%d")
        submitted = st.form_submit_button("Run the simulation", type="primary",
                                          icon=":material/play_arrow:")
    if submitted:
        st.session_state["wi_run"] = True
    if not st.session_state.get("wi_run"):
        return None
    ss = st.session_state
    centre = ({"city": ss["wi_city"]} if ss["wi_mode"] == CITY and cities
              else {"lat": float(ss["wi_lat"]), "lon": float(ss["wi_lon"])})
    scenario = OutageScenario(
        start=utc_moment(datetime.combine(ss["wi_day"], ss["wi_time"]), current_zone()),
        hours=float(ss["wi_hours"]),
        severity=ss["wi_severity"], radius_km=float(ss["wi_radius"]),
        domain=None if ss["wi_domain"] == NO_DOMAIN else ss["wi_domain"],
        extra_staff=int(ss["wi_extra"]), **centre,
    )
    return scenario, int(ss["wi_runs"]), int(ss["wi_seed"])
