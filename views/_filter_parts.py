"""The parts of the sidebar's filters: the reporting zone, the date range, and the filters'
mirror in the URL (read once per session, written on every run); ``views._filters`` puts
them together.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import streamlit as st

import cs_metrics
from cs_metrics import CsMetricsError, Filters, Warehouse
from cs_metrics.core.warehouse import implausible_note
from cs_metrics.core.zones import to_local, zone_names
from views._filter_defs import (
    DATE_PARAMS,
    DATE_PRESETS,
    DEFAULT_PRESET,
    FILTER_DIMENSIONS,
    PRESET_SLUGS,
    _preset_window,
    describe_range,
)


def first_created_day(wh: Warehouse, tz: str = "UTC") -> date | None:
    """The first local day of ``tz`` a ticket was created (presets start no earlier)."""
    span = wh.created_range()
    return to_local(span[0], tz).date() if span else None


def last_created_day(wh: Warehouse, tz: str = "UTC") -> date | None:
    """The last local day of ``tz`` a ticket was created (presets end there, see
    Warehouse.created_range)."""
    span = wh.created_range()
    return to_local(span[1], tz).date() if span else None


def default_zone() -> str:
    """The settings' reporting zone (``[display] timezone``); UTC when the settings do not
    load (the page that reads them says why)."""
    try:
        return cs_metrics.load_settings().display_timezone
    except CsMetricsError:
        return "UTC"


def current_zone() -> str:
    """The session's reporting zone (the sidebar's choice, kept across pages), else the
    settings' zone: for pages without the sidebar's filters."""
    tz = st.session_state.get("report_tz")
    return tz if tz in zone_names() else default_zone()


def zone_ui() -> str:
    """The sidebar's reporting zone: local days, weeks, months and hours everywhere."""
    default = default_zone()
    if st.session_state.get("report_tz") not in zone_names():
        st.session_state["report_tz"] = default  # none yet, or a zone no longer listed
    return st.sidebar.selectbox(
        "Time zone", zone_names(), key="report_tz", persist_state="session",
        help="Days, weeks, months, hours of the week and the date range are read in this "
        f"zone; timestamps are stored in UTC. The settings' default is {default}.")


def _init_state(key: str, default: object) -> None:
    # The filter widgets keep their value across pages without them (persist_state=
    # "session"); the value set before the widget is drawn is its start value, and the
    # URL, a saved view or "Clear filters" set it the same way.
    if key not in st.session_state:
        st.session_state[key] = default


def date_range_ui(wh: Warehouse, tz: str = "UTC") -> Filters:
    """Sidebar date range (presets relative to the data's as-of date, in local days of the
    reporting zone ``tz``) -> frozen Filters."""
    window = _date_window(wh, tz)
    if window is None:
        return Filters(tz=tz)
    last, end = window
    with st.sidebar:
        if st.session_state.get("date_preset") not in DATE_PRESETS:
            st.session_state["date_preset"] = DEFAULT_PRESET
        preset = st.selectbox(
            "Date range",
            DATE_PRESETS,
            key="date_preset",
            persist_state="session",
            help="Tickets are counted in the period they were created. Presets end on the "
            f"last day a ticket was created ({last:%d %b %Y}), not today, and start no "
            "earlier than the first.",
        )
        if preset == "Custom range":
            current = st.session_state.get("date_custom")
            days = () if current is None else tuple(current)
            if (current is None or any(d > last for d in days)
                    or (len(days) == 2 and days[0] > days[1])):
                st.session_state["date_custom"] = (end - timedelta(days=30), last)
            picked = st.date_input(
                "From – to (inclusive)",
                max_value=last,
                key="date_custom",
                persist_state="session",
                    format="YYYY-MM-DD",
            )
            days = tuple(picked) if isinstance(picked, (tuple, list)) else (picked,)
            if len(days) == 2:
                start, stop = days[0], days[1] + timedelta(days=1)
            elif len(days) == 1:
                st.caption("Pick an end date; showing the start day only.")
                start, stop = days[0], days[0] + timedelta(days=1)
            else:
                start, stop = None, None
        else:
            start, stop = _preset_window(preset, end, first_created_day(wh, tz))
        st.caption(describe_range(Filters(start, stop, tz=tz)))
    return Filters(date_from=start, date_to=stop, tz=tz)


def _date_window(wh: Warehouse, tz: str = "UTC") -> tuple[date, date] | None:
    """(last local day of ``tz`` with tickets, the exclusive end presets use), or None
    without data."""
    as_of = wh.as_of()
    if as_of is None:
        return None
    today = to_local(as_of, tz).date()
    last = min(last_created_day(wh, tz) or today, today)
    return last, last + timedelta(days=1)


def as_of_text(wh: Warehouse) -> str:
    as_of: datetime | None = wh.as_of()
    # tickets dated outside the plausible window (written past a load's checks) are counted
    note = implausible_note(wh)
    if as_of is None:
        return "No ticket has a plausible date" if note else "No data loaded yet"
    tz = current_zone()
    text = f"Data as of {to_local(as_of, tz):%Y-%m-%d %H:%M} {tz}"
    return f"{text} · {note}" if note else text


def _read_url(options: dict[str, list[str]], last: date) -> list[str]:
    """Query parameters -> the filter widgets' values; returns what was ignored, for a note."""
    params = st.query_params
    ignored: list[str] = []
    if "tz" in params:
        if params.get("tz") in zone_names():
            st.session_state["report_tz"] = params.get("tz")
        else:
            ignored.append(f"tz={str(params.get('tz'))[:60]}")
    by_slug = {slug: preset for preset, slug in PRESET_SLUGS.items()}
    preset: str | None = None
    if "range" in params:
        preset = by_slug.get(params.get("range", ""))
        if preset is None:
            ignored.append(f"range={params.get('range')}")
    raw_from, raw_to = params.get("from"), params.get("to")
    if (raw_from or raw_to) and preset in (None, "Custom range"):
        try:
            start = date.fromisoformat(raw_from or "")
            stop = date.fromisoformat(raw_to) if raw_to else last
            if start > stop or start > last:
                raise ValueError
            st.session_state["date_custom"] = (start, min(stop, last))
            preset = "Custom range"
        except ValueError:
            ignored.append(f"from={raw_from or ''}&to={raw_to or ''}")
            if preset == "Custom range":
                preset = None
    if preset is not None:
        st.session_state["date_preset"] = preset
    for dim, _ in FILTER_DIMENSIONS:
        values = params.get_all(dim)
        if not values:
            continue
        known = set(options.get(dim, ()))
        ignored += [f"{dim}={v}" for v in values if v not in known]
        st.session_state[f"filter_{dim}"] = [v for v in dict.fromkeys(values) if v in known]
    return ignored


def _url_params(filters: Filters, preset: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"range": [PRESET_SLUGS[preset]]}
    if filters.tz != default_zone():  # the settings' zone needs no parameter
        out["tz"] = [filters.tz]
    if preset == "Custom range" and filters.date_from and filters.date_to:
        out["from"] = [filters.date_from.isoformat()]
        out["to"] = [(filters.date_to - timedelta(days=1)).isoformat()]
    for dim, values in filters.where:
        out[dim] = list(values)
    return out


def _write_url(wanted: dict[str, list[str]]) -> None:
    """Mirror the filters in the URL (only the keys that differ, so others stay)."""
    for key in (*DATE_PARAMS, *(dim for dim, _ in FILTER_DIMENSIONS)):
        values = wanted.get(key, [])
        if st.query_params.get_all(key) == values:
            continue
        if values:
            st.query_params[key] = values
        else:
            del st.query_params[key]


def _clear_filters() -> None:
    st.session_state["date_preset"] = DEFAULT_PRESET
    st.session_state.pop("date_custom", None)
    for dim, _ in FILTER_DIMENSIONS:
        st.session_state[f"filter_{dim}"] = []
    st.session_state["_filters_url_notes"] = []
