"""Outages: where the network failed, what each outage cost in tickets, delays and SLA breaches,
and the per-severity rates the what-if simulation is calibrated with."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

import pandas as pd
import pydeck as pdk
import streamlit as st

from cs_metrics import CsMetricsError, Filters, Warehouse
from cs_metrics.analysis.maps import auto_cell_km, ticket_density
from cs_metrics.analysis.outages import (
    impact_of_every_outage,
    outage_tickets,
    pooled_rates,
    select_outages,
)
from cs_metrics.core.safe_text import escape_markdown, markdown_code
from cs_metrics.core.zones import to_local
from views._cache import cached, customer_cells
from views._charts import SEVERITY_COLOURS, basemap, basemap_reachable
from views._drill import drill_columns, selected_row
from views._exports import download_buttons
from views._filter_defs import describe_filters
from views._filter_parts import as_of_text, last_created_day
from views._filters import filters_ui
from views._session import ensure_data
from views._tables import plural, segment_label, show_table

UNKNOWN_COLOUR = [120, 120, 120]
SEGMENT_COLOURS = [[31, 119, 180], [44, 160, 44], [148, 103, 189], [140, 86, 75],
                   [23, 190, 207], [127, 127, 127]]
DENSITY_RAMP = [[255, 255, 204], [161, 218, 180], [65, 182, 196], [44, 127, 184],
                [37, 52, 148]]
TICKETS_PER_PAGE = 25
TABLE_KEY = "outage_table"


# --- cached library calls --------------------------------------------------------------------


_every_impact = cached(impact_of_every_outage)


def _impact(wh: Warehouse, filters: Filters) -> pd.DataFrame:
    """outage_impact: an outage's figures do not depend on the date range, which only picks
    the outages, so every visitor's range is picked from one cached result."""
    return select_outages(_every_impact(wh, replace(filters, date_from=None, date_to=None)),
                          filters)


def _rates(wh: Warehouse, filters: Filters) -> pd.DataFrame:
    return pooled_rates(_impact(wh, filters))


_density = cached(ticket_density)


@cached
def _outage_tickets(wh: Warehouse, outage_id: str, filters: Filters, offset: int):
    return outage_tickets(wh, outage_id, filters, limit=TICKETS_PER_PAGE, offset=offset)


# --- helpers ---------------------------------------------------------------------------------


def _window_ui(wh: Warehouse, filters: Filters) -> Filters:
    """The page's time window: outages overlapping it, tickets created in it."""
    last = last_created_day(wh, filters.tz)
    rng = wh.created_range()
    if last is None or rng is None:
        return filters
    first = to_local(rng[0], filters.tz).date()
    start = max(first, filters.date_from or first)
    stop = min(last, (filters.date_to - timedelta(days=1)) if filters.date_to else last)
    if start > stop:
        start, stop = first, last
    chosen = st.slider("Time window", min_value=first, max_value=last, value=(start, stop),
                       format="YYYY-MM-DD", key="outage_window",
                       help="Outages whose window overlaps these days, and the tickets created "
                       "in them. Starts from the sidebar's date range.")
    return replace(filters, date_from=chosen[0], date_to=chosen[1] + timedelta(days=1))


def _rgba(colour: list[int], alpha: int) -> list[int]:
    return [*colour, alpha]


def _density_layer(df: pd.DataFrame, cell_km: float) -> pdk.Layer:
    ranks = df["tickets"].rank(pct=True).to_numpy() if len(df) else []
    colours = [_rgba(DENSITY_RAMP[min(len(DENSITY_RAMP) - 1, int(r * len(DENSITY_RAMP)))], 170)
               for r in ranks]
    data = df.assign(
        colour=colours,
        tip=[f"{n:,} tickets ({s:.1f} %) in this {cell_km:g} km cell; top domain {d}"
             for n, s, d in zip(df["tickets"], df["share_pct"], df["top_domain"], strict=True)],
    )
    return pdk.Layer(
        "ColumnLayer", data, id="tickets", get_position="[lon, lat]",
        radius=cell_km * 1000 / math.sqrt(2), disk_resolution=4, angle=45, extruded=False,
        get_fill_color="colour", pickable=True,
    )


def _customer_layer(df: pd.DataFrame) -> pdk.Layer:
    segments = sorted(df["segment"].unique())
    colour = {s: SEGMENT_COLOURS[i % len(SEGMENT_COLOURS)] for i, s in enumerate(segments)}
    data = df.assign(
        colour=[_rgba(colour[s], 200) for s in df["segment"]],
        radius=[300 + 120 * math.sqrt(n) for n in df["customers"]],
        tip=[f"{plural(n, 'customer')} of segment {segment_label(s)}" for n, s in
             zip(df["customers"], df["segment"], strict=True)],
    )
    return pdk.Layer(
        "ScatterplotLayer", data, id="customers", get_position="[lon, lat]",
        get_radius="radius", radius_min_pixels=2, get_fill_color="colour", pickable=True,
    )


def _outage_layers(df: pd.DataFrame, selected: str | None) -> list[pdk.Layer]:
    data = df.assign(
        fill=[_rgba(SEVERITY_COLOURS.get(s, UNKNOWN_COLOUR), 70 if o != selected else 130)
              for s, o in zip(df["severity"], df["outage_id"], strict=True)],
        line=[[0, 0, 0, 255] if o == selected else
              _rgba(SEVERITY_COLOURS.get(s, UNKNOWN_COLOUR), 255)
              for s, o in zip(df["severity"], df["outage_id"], strict=True)],
        width=[4 if ongoing else 1.5 for ongoing in df["ongoing"]],
        radius_m=df["radius_km"] * 1000,
        label=[f"{loc or oid}{' (ongoing)' if ongoing else ''}" for loc, oid, ongoing in
               zip(df["location"], df["outage_id"], df["ongoing"], strict=True)],
        tip=[_outage_tip(r) for r in df.itertuples()],
    )
    circles = pdk.Layer(
        "ScatterplotLayer", data, id="outages", get_position="[lon, lat]",
        get_radius="radius_m", get_fill_color="fill", get_line_color="line",
        get_line_width="width", line_width_units="pixels", stroked=True, filled=True,
        pickable=True,
    )
    labels = pdk.Layer(
        "TextLayer", data, id="outage_labels", get_position="[lon, lat]", get_text="label",
        get_size=13, get_color=[30, 30, 30, 255], get_alignment_baseline="'bottom'",
    )
    return [circles, labels]


def _fmt(value: object, spec: str, unit: str = "") -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:{spec}}{unit}"


def _outage_tip(r) -> str:  # noqa: ANN001 (an itertuples row)
    end = "ongoing" if r.ongoing else f"{r.ended_at:%d %b %H:%M}"
    return (f"{r.location or r.outage_id} · {r.severity} · {r.started_at:%d %b %Y %H:%M} – {end} "
            "UTC "
            f"· {_fmt(r.affected_customers, ',')} customers · "
            f"{_fmt(r.excess_tickets, ',.0f')} extra tickets · "
            f"{_fmt(r.sla_breaches_caused, ',.0f')} SLA breaches caused")


def _view(df: pd.DataFrame, focus: pd.Series | None, density: pd.DataFrame) -> pdk.ViewState:
    if focus is not None:
        # a zoom that shows the circle with some room around it
        zoom = max(3.0, min(13.0, math.log2(40_000 / max(0.5, 6 * focus["radius_km"]))))
        return pdk.ViewState(latitude=focus["lat"], longitude=focus["lon"], zoom=zoom)
    points = density if len(density) else df
    if len(points) == 0:
        return pdk.ViewState(latitude=39.5, longitude=-98.35, zoom=3)
    lat, lon = points["lat"], points["lon"]
    span = max(lat.max() - lat.min(), (lon.max() - lon.min()) * 0.7, 0.05)
    zoom = max(1.5, min(12.0, math.log2(360 / span) - 0.3))
    return pdk.ViewState(latitude=float((lat.max() + lat.min()) / 2),
                         longitude=float((lon.max() + lon.min()) / 2), zoom=zoom)


def _map(wh: Warehouse, filters: Filters, impact: pd.DataFrame, focus: pd.Series | None
         ) -> None:
    show = st.pills("Layers", ["Ticket density", "Customers", "Outages"],
                    selection_mode="multi", default=["Ticket density", "Outages"],
                    key="outage_layers")
    left, right = st.columns([3, 1])
    density_filters = filters
    if focus is not None:  # the figures of the selected outage: its window only
        end = focus["ended_at"] if not focus["ongoing"] else wh.as_of()
        # the window's UTC moments as the reporting zone's wall-clock times, as filters are
        density_filters = replace(
            filters, date_from=to_local(focus["started_at"].to_pydatetime(), filters.tz),
            date_to=to_local(pd.Timestamp(end).to_pydatetime(), filters.tz)
            + timedelta(seconds=1))
    probe = _density(wh, density_filters, 50.0)
    span_km = 111.0 * max(probe["lat"].max() - probe["lat"].min(),
                          probe["lon"].max() - probe["lon"].min()) if len(probe) else 500.0
    cell = auto_cell_km(span_km if focus is None else 4 * float(focus["radius_km"]))
    when = "the selected outage's window" if focus is not None else "the time window"
    with right:
        st.caption(f"Tickets created in {when}, counted in cells of {cell:g} km in the "
                   "warehouse.")
    density = _density(wh, density_filters, cell)
    layers: list[pdk.Layer] = []
    if "Ticket density" in (show or []) and len(density):
        layers.append(_density_layer(density, cell))
    if "Customers" in (show or []):
        customers = customer_cells(wh, max(cell, 5.0))
        if len(customers):
            layers.append(_customer_layer(customers))
    if "Outages" in (show or []) and len(impact):
        layers += _outage_layers(impact, None if focus is None else focus["outage_id"])
    deck = pdk.Deck(
        layers=layers, initial_view_state=_view(impact, focus, density),
        **basemap(),
        tooltip={"text": "{tip}"},
    )
    with left:
        st.pydeck_chart(deck, height=520, key="outage_map")
        unlocated = density.attrs.get("unlocated")
        notes = []
        if unlocated:
            notes.append(f"{unlocated:,} tickets without coordinates are not on the map.")
        suspect = density.attrs.get("suspect")
        if suspect:
            notes.append(f"{suspect:,} tickets with a suspicious coordinate (out of range, "
                         "0, 0, or a placeholder many tickets share exactly) are left off.")
        if not basemap_reachable():
            notes.append("No basemap: the map tiles are not reachable from here, so the layers "
                         "are drawn on a blank background.")
        if notes:
            st.caption(" ".join(notes))
    with right:
        legend = " · ".join(f":{c}[●] {s}" for s, c in
                            (("minor", "orange"), ("major", "red"), ("critical", "violet")))
        st.markdown(f"Outages by severity: {legend}; a thick ring is an ongoing outage.")


IMPACT_CONFIG = {
    "location": st.column_config.TextColumn("Location"),
    "severity": st.column_config.TextColumn("Severity"),
    "started_at": st.column_config.DatetimeColumn("Started (UTC)", format="YYYY-MM-DD HH:mm"),
    "ended_at": st.column_config.DatetimeColumn("Ended (UTC)", format="YYYY-MM-DD HH:mm"),
    "ongoing": st.column_config.CheckboxColumn("Ongoing"),
    "hours": st.column_config.NumberColumn("Hours", format="%.1f"),
    "radius_km": st.column_config.NumberColumn("Radius (km)", format="%.0f"),
    "affected_customers": st.column_config.NumberColumn("Customers affected",
                                                        format="localized"),
    "tickets_in_window": st.column_config.NumberColumn("Tickets in the area",
                                                       format="localized"),
    "expected_tickets": st.column_config.NumberColumn(
        "Expected", format="%.1f", help="The same area and hours in ordinary weeks."),
    "excess_tickets": st.column_config.NumberColumn("Extra tickets", format="%.1f"),
    "excess_per_customer_hour": st.column_config.NumberColumn(
        "Extra per customer-hour", format="%.4f"),
    "extra_first_response_min": st.column_config.NumberColumn("Extra first response (min)",
                                                              format="%+.1f"),
    "extra_resolution_h": st.column_config.NumberColumn("Extra resolution (h)", format="%+.1f"),
    "sla_breaches_caused": st.column_config.NumberColumn("SLA breaches caused", format="%.1f"),
    "top_domain": st.column_config.TextColumn("Domain most affected"),
}


def _impact_table(impact: pd.DataFrame, filters: Filters) -> pd.Series | None:
    st.subheader("Outages and their cost")
    st.caption("Select an outage to focus the map on it and list its tickets. Extra = in the "
               "circle during the outage minus the same circle at the same hours of nearby "
               "weeks without an outage.")
    show_table(impact, hide_index=True, key=TABLE_KEY, on_select="rerun",
                 selection_mode="single-row", column_order=list(IMPACT_CONFIG),
                 column_config=IMPACT_CONFIG)
    download_buttons(impact, "outage_impact", filters)
    return selected_row(TABLE_KEY, impact)


def _outage_detail(wh: Warehouse, filters: Filters, focus: pd.Series) -> None:
    name = focus["location"] or focus["outage_id"]
    st.subheader(f"Outage: {escape_markdown(name)}")  # a location from the data
    cols = st.columns(4)
    cols[0].metric("Extra tickets", _fmt(focus["excess_tickets"], ",.0f"),
                   help=f"95 % interval {_fmt(focus['excess_low'], ',.0f')} to "
                   f"{_fmt(focus['excess_high'], ',.0f')}; expected "
                   f"{_fmt(focus['expected_tickets'], ',.1f')} from ordinary weeks.")
    cols[1].metric("Customers affected", _fmt(focus["affected_customers"], ","))
    cols[2].metric("Extra first response", _fmt(focus["extra_first_response_min"], "+,.1f",
                                                 " min"))
    cols[3].metric("SLA breaches caused", _fmt(focus["sla_breaches_caused"], ",.0f"))
    key = f"outage_page_{focus['outage_id']}"
    offset = st.session_state.get(key, 0)
    page = _outage_tickets(wh, str(focus["outage_id"]), filters, offset)
    if page.total == 0:
        st.info("No located tickets inside this outage's circle and window.")
        return
    st.caption(f"Tickets {page.first:,}–{page.last:,} of {page.total:,} inside the circle "
               "during the outage, earliest first")
    show_table(page.rows, hide_index=True, column_config={
        **drill_columns(filters.tz), "distance_km": st.column_config.NumberColumn("Distance (km)",
                                                                      format="%.1f")})
    with st.container(horizontal=True):
        st.button("Previous", key="outage_prev", disabled=offset == 0,
                  on_click=lambda: st.session_state.update(
                      {key: max(0, offset - TICKETS_PER_PAGE)}),
                  icon=":material/chevron_left:")
        st.button("Next", key="outage_next", disabled=not page.has_next,
                  on_click=lambda: st.session_state.update({key: offset + TICKETS_PER_PAGE}),
                  icon=":material/chevron_right:")


def _rates_section(wh: Warehouse, filters: Filters) -> None:
    st.subheader("Extra tickets per affected customer and hour, by severity")
    rates = _rates(wh, filters)
    if rates.empty:
        st.info(escape_markdown(rates.attrs.get("notes", ["No outages to measure."])[-1]))
        return
    st.caption("Pooled over the outages of each severity in the window: extra tickets divided "
               "by affected customers × hours, with a 95 % interval. The what-if simulation "
               "uses these rates.")
    show_table(rates, hide_index=True, column_config={
        "severity": st.column_config.TextColumn("Severity"),
        "outages": st.column_config.NumberColumn("Outages measured"),
        "customer_hours": st.column_config.NumberColumn("Customer-hours", format="localized"),
        "tickets_in_window": st.column_config.NumberColumn("Tickets in the areas",
                                                           format="localized"),
        "expected_tickets": st.column_config.NumberColumn("Expected", format="%.1f"),
        "excess_tickets": st.column_config.NumberColumn("Extra tickets", format="%.1f"),
        "excess_per_customer_hour": st.column_config.NumberColumn(
            "Extra per customer-hour", format="%.4f"),
        "low": st.column_config.NumberColumn("Low (95 %)", format="%.4f"),
        "high": st.column_config.NumberColumn("High (95 %)", format="%.4f"),
    })
    download_buttons(rates, "outage_rates_by_severity", filters)


def main() -> None:
    st.title("Outages")
    try:
        wh = ensure_data()
        filters = filters_ui(wh)
        if not wh.has_table("tickets"):
            st.error(f"The warehouse {escape_markdown(wh.path)} has no tickets yet. Load data "
                     "into it with "
                     f"{markdown_code(f'python -m cs_metrics ingest SOURCE --db {wh.path}')}.")
            return
        window = _window_ui(wh, filters)
        st.caption(f"{as_of_text(wh)} · {escape_markdown(describe_filters(window))}")
        if not wh.has_table("outages"):
            st.info("This dataset has no outages table, so there is no outage to map. Load "
                    "one (outage_id, lat, lon, radius_km, started_at, ended_at, severity) "
                    "with `python -m cs_metrics ingest`.")
            impact = pd.DataFrame()
        else:
            impact = _impact(wh, window)
            for note in impact.attrs.get("notes", []):
                st.caption(escape_markdown(note))
        if len(impact):
            cols = st.columns(4)
            cols[0].metric("Outages", f"{len(impact):,}")
            cols[1].metric("Ongoing", f"{int(impact['ongoing'].sum()):,}")
            cols[2].metric("Extra tickets", _fmt(impact["excess_tickets"].sum(), ",.0f"),
                           help="Summed over the outages with a baseline.")
            cols[3].metric("SLA breaches caused",
                           _fmt(impact["sla_breaches_caused"].sum(), ",.0f"))
        focus = selected_row(TABLE_KEY, impact) if len(impact) else None
        _map(wh, window, impact, focus)
        if len(impact):
            _impact_table(impact, window)
            if focus is not None:
                _outage_detail(wh, window, focus)
            _rates_section(wh, window)
        elif wh.has_table("outages"):
            st.info("No outage overlaps this time window; widen it to see earlier ones.")
    except CsMetricsError as exc:
        st.error(escape_markdown(exc))


main()
