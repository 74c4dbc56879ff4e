"""Overview page, the KPI cards: each figure with its change against a chosen earlier period,
its target and a weekly sparkline."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import streamlit as st

import cs_metrics
from cs_metrics import Filters, Metric, Settings, Warehouse
from cs_metrics.core.zones import to_local
from cs_metrics.metrics.registry import sla_source_caption
from cs_metrics.ops.reports import year_earlier_in_data, year_earlier_range
from views._cache import run_query
from views._drill import opened
from views._exports import download_buttons
from views._filter_defs import describe_range, previous_period
from views._tables import missing_text

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


COMPARE_OPTIONS: dict[str, str] = {"previous": "Previous period",
                                   "year": "Same period last year"}


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
        st.session_state[COMPARE_KEY] = asked if asked in COMPARE_OPTIONS else "previous"
    choice = st.segmented_control(
        "Compare with", list(COMPARE_OPTIONS), format_func=COMPARE_OPTIONS.get,
        key=COMPARE_KEY, required=True, persist_state="session",  # kept on other pages
        help="What the cards' changes are against: the same number of days just before the "
        "range, or the same dates one year earlier (29 February counts as 28 February). A "
        "year-earlier comparison is shown only where the data reaches back that far.")
    choice = choice if choice in COMPARE_OPTIONS else "previous"
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
