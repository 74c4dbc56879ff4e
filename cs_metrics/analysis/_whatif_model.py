"""The what-if engine's inputs from the data: where an outage strikes (a city's centre, the
customers within reach), how many excess tickets per affected customer hour each severity
brings (calibrated or default rates), the baseline arrivals forecast, and the default SLA
target. Split from ``cs_metrics.analysis.whatif`` (which re-exports the public names) to keep
each module to one concern; the model itself is described there.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from cs_metrics.analysis.outages import severity_rates
from cs_metrics.analysis.seasonality import daily_series, forecast_daily, forecast_hourly
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.geo import KM_PER_DEGREE_LAT, haversine_sql
from cs_metrics.core.schema import SEVERITIES
from cs_metrics.core.settings import Settings
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.metrics.registry import Filters

# Excess tickets per affected customer per hour when the dataset has no measurable outage of
# a severity: the effects the sample generator plants (simulations.generator.OUTAGE_EXCESS),
# of the order seen in telecom fault surges.
DEFAULT_EXCESS_PER_CUSTOMER_HOUR: dict[str, float] = {
    "minor": 0.003, "major": 0.007, "critical": 0.015,
}
MAX_FORECAST_DAYS = 366  # further ahead the trend is a guess

RATE_COLUMNS: tuple[str, ...] = (
    "severity", "rate", "source", "outages", "calibrated_rate", "low", "high", "default_rate",
)


# --- place and rates --------------------------------------------------------------------------


def _need_customer_coordinates(wh: Warehouse) -> None:
    cols = set(wh.columns("customers")) if wh.has_table("customers") else set()
    has = {"lat", "lon"} <= cols and bool(
        wh.scalar("select exists (select 1 from customers where lat is not null "
                  "and lon is not null)")
    )
    if not has:
        raise CsMetricsError(
            "This dataset has no customer coordinates (customers.lat, customers.lon), so the "
            "customers an outage would affect are unknown; load a customers table with them."
        )


def city_centre(wh: Warehouse, city: str) -> tuple[str, float, float]:
    """(city as stored, lat, lon): the mean position of that city's customers, the name
    matched without regard to case or surrounding spaces."""
    _need_customer_coordinates(wh)
    if "city" not in wh.columns("customers"):
        raise CsMetricsError("This dataset's customers have no city; give lat and lon instead.")
    found = wh.df(
        "select any_value(city) as city, avg(lat) as lat, avg(lon) as lon from customers "
        "where lower(trim(city)) = lower(trim(?)) and lat is not null and lon is not null",
        [city],
    )
    if found.empty or pd.isna(found["lat"].iloc[0]):
        known = wh.df(
            "select city from customers where city is not null and lat is not null "
            "group by city order by count(*) desc, city limit 5"
        )["city"].tolist()
        listed = ", ".join(known) if known else "none with coordinates"
        raise CsMetricsError(
            f"Unknown city {city!r}: no customer with coordinates lives there; the cities "
            f"with the most customers are {listed}."
        )
    row = found.iloc[0]
    return str(row["city"]), float(row["lat"]), float(row["lon"])


def affected_customers(wh: Warehouse, lat: float, lon: float, radius_km: float) -> int:
    """Customers within ``radius_km`` of (``lat``, ``lon``); a zero radius covers nobody."""
    _need_customer_coordinates(wh)
    if radius_km <= 0:
        return 0
    band = radius_km / KM_PER_DEGREE_LAT + 1e-6  # a safe pre-filter at any latitude
    dist = haversine_sql("o.lat", "o.lon", "c.lat", "c.lon")
    return int(wh.scalar(
        "select count(*) from customers c, "
        "(select cast(? as double) as lat, cast(? as double) as lon) o "
        f"where c.lat between ? and ? and c.lon is not null and {dist} <= ?",
        [lat, lon, lat - band, lat + band, radius_km],
    ) or 0)


def excess_rates(wh: Warehouse) -> pd.DataFrame:
    """The excess tickets per affected customer per hour the simulation uses, per severity
    of ``SCENARIO_SEVERITIES``: columns ``RATE_COLUMNS``.

    ``rate`` is the calibrated rate (``severity_rates``, ``calibrated_rate`` with its 95 %
    interval ``low``/``high`` over ``outages`` outages) where the data measured one, else
    ``default_rate``; then made non-decreasing with severity. ``source`` says which:
    ``calibrated``, ``default`` or, for ``none``, ``none``. ``frame.attrs["notes"]`` holds
    the reasons when a default is used.
    """
    notes: list[str] = []
    measured = pd.DataFrame()
    if wh.has_table("outages"):
        measured = severity_rates(wh)
        notes += list(measured.attrs.get("notes", []))
    else:
        notes.append("This dataset has no outages table, so the default rates are used.")
    by_sev = measured.set_index("severity") if not measured.empty else pd.DataFrame()
    rows = [("none", 0.0, "none", 0, math.nan, math.nan, math.nan, 0.0)]
    running = 0.0
    for sev in SEVERITIES:
        default = DEFAULT_EXCESS_PER_CUSTOMER_HOUR[sev]
        got = by_sev.loc[sev] if sev in by_sev.index else None
        n = int(got["outages"]) if got is not None else 0
        value = float(got["excess_per_customer_hour"]) if got is not None else math.nan
        low = float(got["low"]) if got is not None else math.nan
        high = float(got["high"]) if got is not None else math.nan
        if n > 0 and math.isfinite(value):
            rate, source = max(value, 0.0), "calibrated"
        else:
            rate, source = default, "default"
        running = max(running, rate)
        rows.append((sev, running, source, n, value, low, high, default))
    frame = pd.DataFrame(rows, columns=list(RATE_COLUMNS))
    frame["outages"] = frame["outages"].astype("int64")
    frame.attrs["notes"] = notes
    return frame


def _rate_note(row: pd.Series) -> str:
    sev, rate = row["severity"], float(row["rate"])
    if sev == "none":
        return "Severity none: no excess tickets, the baseline on its own."
    if row["source"] == "calibrated":
        n = int(row["outages"])
        text = (f"Rate calibrated on this dataset's {n} {sev} outage{'s' if n != 1 else ''}: "
                f"{float(row['calibrated_rate']):.4f} excess tickets per affected customer "
                "per hour")
        if math.isfinite(row["low"]):
            text += f" (95 % interval {float(row['low']):.4f} to {float(row['high']):.4f})"
        if not math.isclose(rate, float(row["calibrated_rate"])):
            text += f", raised to {rate:.4f} so it is not below a milder severity's"
        return text + "."
    text = (f"This dataset has no measurable {sev} outage, so the default rate of "
            f"{float(row['default_rate']):.4f} excess tickets per affected customer per hour "
            "is used")
    if not math.isclose(rate, float(row["default_rate"])):
        text += f", raised to {rate:.4f} so it is not below a milder severity's"
    return text + "."


# --- inputs from the warehouse ----------------------------------------------------------------


def _floor_hour(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


def _ceil_hour(ts: datetime) -> datetime:
    floor = _floor_hour(ts)
    return floor if floor == ts else floor + timedelta(hours=1)


def _baseline(
    wh: Warehouse, sim_start: datetime, start: datetime, period_end: datetime, notes: list[str]
) -> np.ndarray:
    """Expected arrivals per clock hour of ``[sim_start, period_end)``: the hourly forecast,
    fitted on the days before ``sim_start`` when the data reaches into the period."""
    series = daily_series(wh, Filters())
    if len(series) == 0:
        raise CsMetricsError(
            f"The warehouse {wh.path} has no complete day of tickets to forecast from."
        )
    first_day = sim_start.date()
    last_day = series.index[-1].date()
    if first_day <= last_day:
        series = series[series.index < pd.Timestamp(first_day)]
        if start.date() <= last_day:  # not when only the warm-up reaches into the data
            notes.append(
                f"The scenario starts inside the data's history (which runs to {last_day}); "
                "its baseline is the model's forecast from the days before it, not the "
                "tickets recorded then."
            )
        if len(series) < 28:
            earliest = series.index[0].date() if len(series) else first_day
            raise CsMetricsError(
                f"The scenario starts too early: the baseline forecast needs four weeks of "
                f"data before it; start it on or after "
                f"{earliest + timedelta(days=28 + 1)}."
            )
    origin = series.index[-1].date()
    horizon = ((period_end - timedelta(minutes=1)).date() - origin).days
    if horizon > MAX_FORECAST_DAYS:
        raise CsMetricsError(
            f"The scenario runs {horizon} days past the data's last day ({origin}); start "
            f"it within {MAX_FORECAST_DAYS - 3} days of it, since a forecast further ahead "
            "is a guess."
        )
    daily = forecast_daily(series, max(horizon, 1))
    hourly = forecast_hourly(wh, Filters(), daily)
    hours = pd.date_range(sim_start, period_end, freq="h", inclusive="left")
    found = hourly.set_index("hour")["arrivals"].reindex(hours)
    return np.clip(found.to_numpy(dtype=np.float64), 0.0, None)


def _default_sla_minutes(wh: Warehouse, since: datetime, settings: Settings) -> float:
    if "sla_first_response_target_min" in wh.nonempty_columns("tickets"):
        value = wh.scalar(
            "select median(sla_first_response_target_min) from tickets "
            "where not is_test and created_at >= ?", [since],
        )
        if value is None:
            value = wh.scalar(
                "select median(sla_first_response_target_min) from tickets where not is_test"
            )
        if value is not None and float(value) > 0:
            return float(value)
    target = settings.sla_targets("normal", "Unknown")[0]
    return float(target) if target else 60.0
