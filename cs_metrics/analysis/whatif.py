"""What-if outage simulation: what an outage of a given place, size and severity would do to
arrivals, the first-response queue and the SLA, hour by hour, against today's staffing.

The steps, each from the data where the data can say it:

1. **Affected customers**: customers (table ``customers``) within ``radius_km`` of the centre
   (great-circle distance, ``cs_metrics.core.geo``; a zero radius covers nobody). A city as the
   centre is the mean position of that city's customers.
2. **Excess arrivals**: rate x affected customers per hour of the outage window, the rate
   being excess tickets per affected customer per hour of that severity, calibrated from the
   dataset's past outages (``cs_metrics.analysis.outages.severity_rates``), else the stated defaults
   (``DEFAULT_EXCESS_PER_CUSTOMER_HOUR``) when the dataset has no measurable outage of that
   severity. Rates never fall with severity: a cumulative maximum over minor < major <
   critical keeps a noisy estimate from few outages from ranking them wrong. Severity
   ``none`` is a rate of 0 (the baseline). Negative calibrated rates count as 0.
3. **Baseline arrivals**: the hourly forecast of all tickets (``cs_metrics.analysis.seasonality``).
   A scenario normally starts after the data's last day; one that starts earlier still gets
   the model's prediction, fitted on the days before the simulated period (never the tickets
   recorded then, which may hold a real outage).
4. **Queue**: one pool of agents answering the first response of every ticket in arrival
   order (FIFO), simulated minute by minute and vectorised over ``runs`` Monte Carlo runs:
   Poisson arrivals, exponential handle times with the data's average handle time (AHT; an
   agent in service finishes in a minute with probability 1 / AHT in minutes, so the mean is
   the AHT). Agents per hour are today's staffing (``cs_metrics.analysis.staffing.current_staffing``
   over the last ``STAFFING_WEEKS`` weeks: reps active in that weekday x hour) plus the
   scenario's extra staff; a fractional average (3.4 reps) is 3 or 4 agents in that hour
   of a run, 4 with probability 0.4, so the mean capacity matches the data. An agent whose
   shift ends finishes the ticket in hand. Each ticket's wait is known exactly from the
   cumulative arrivals and cumulative service starts (ticket k starts when the k-th start
   happens); a ticket still waiting when the period ends counts with the wait so far.
   With an affected ``domain``, the excess tickets are of that domain and take that domain's
   AHT (the hour's AHT is the arrival-weighted mix); baseline arrivals are all tickets.
5. **Period**: the simulation starts ``WARMUP_HOURS`` before the outage's first hour so the
   queue carries its usual backlog into it (not reported), and reports from that hour to
   ``tail_hours`` (default ``TAIL_HOURS`` = 24) after the outage's last hour, the recovery
   tail; the totals say when the backlog is back to its level without the outage, or that it
   is not yet within the tail.
6. **SLA**: a ticket breaches when its wait exceeds ``sla_minutes``: by default the median
   first-response target the warehouse gave the tickets of the last ``STAFFING_WEEKS`` weeks
   (their SLA policies, as loaded), else the settings' policy target of a normal-priority
   ticket. The extra agents needed per hour are Erlang C
   (``cs_metrics.analysis.staffing.erlang_c``) on
   the expected total arrivals for ``ServiceLevel(sla_first_response_pct / 100,
   sla_minutes x 60)`` within the settings' maximum occupancy, minus today's agents, rounded
   up and never negative.

Every figure is a p10 / p50 / p90 band over the runs. Runs draw baseline arrivals, excess
arrivals, staffing and service from separate random streams of one seed, so the same seed
gives the same result and a scenario with no excess (severity ``none`` or radius 0) gives
exactly the baseline run's arrivals and backlog.

The queue is a model of the first-response queue with one pool of interchangeable agents:
it shows how an outage changes waiting and what staffing brings it back, not the absolute
waits of deferred channels (email), which the data measures in hours for other reasons.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd

from cs_metrics.analysis.outages import severity_rates
from cs_metrics.analysis.seasonality import daily_series, forecast_daily, forecast_hourly
from cs_metrics.analysis.staffing import current_staffing, erlang_c, handle_time_s
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.geo import KM_PER_DEGREE_LAT, haversine_sql
from cs_metrics.core.schema import SEVERITIES
from cs_metrics.core.settings import PLAUSIBLE_BOUNDS, ServiceLevel, Settings, load_settings
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.metrics.registry import Filters

__all__ = [
    "DEFAULT_EXCESS_PER_CUSTOMER_HOUR",
    "HOUR_COLUMNS",
    "RATE_COLUMNS",
    "SCENARIO_SEVERITIES",
    "STAFFING_WEEKS",
    "TAIL_HOURS",
    "WARMUP_HOURS",
    "OutageScenario",
    "WhatIfResult",
    "WhatIfTotals",
    "affected_customers",
    "city_centre",
    "excess_rates",
    "simulate_outage",
]

# Excess tickets per affected customer per hour when the dataset has no measurable outage of
# a severity: the effects the sample generator plants (simulations.generator.OUTAGE_EXCESS),
# of the order seen in telecom fault surges.
DEFAULT_EXCESS_PER_CUSTOMER_HOUR: dict[str, float] = {
    "minor": 0.003, "major": 0.007, "critical": 0.015,
}
SCENARIO_SEVERITIES: tuple[str, ...] = ("none", *SEVERITIES)

TAIL_HOURS = 24
WARMUP_HOURS = 12
STAFFING_WEEKS = 8  # "today's" staffing and AHT: recent weeks, as the hourly profile uses
MAX_HOURS = 14 * 24
MAX_TAIL_HOURS = 7 * 24
MAX_RUNS = 5000
MAX_FORECAST_DAYS = 366  # further ahead the trend is a guess
# Simulation size: a few arrays of runs x minutes, and every ticket of every run, in memory.
MAX_CELLS = 12_000_000
MAX_TICKETS = 20_000_000

HOUR_COLUMNS: tuple[str, ...] = (
    "hour", "in_outage", "baseline_arrivals", "extra_arrivals", "arrivals_p50",
    "backlog_p10", "backlog_p50", "backlog_p90",
    "first_response_min_p10", "first_response_min_p50", "first_response_min_p90",
    "sla_breach_pct_p10", "sla_breach_pct_p50", "sla_breach_pct_p90",
    "baseline_backlog_p50", "baseline_first_response_min_p50", "baseline_sla_breach_pct_p50",
    "current_agents", "extra_staff", "extra_agents_needed",
)
RATE_COLUMNS: tuple[str, ...] = (
    "severity", "rate", "source", "outages", "calibrated_rate", "low", "high", "default_rate",
)
_SCENARIO_KEYS = (
    "city", "lat", "lon", "radius_km", "start", "hours", "severity", "domain", "extra_staff",
)


# --- the scenario -----------------------------------------------------------------------------


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CsMetricsError(f"{what} must be a number, not {value!r}.")
    return float(value)


def _staff_value(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise CsMetricsError(
            f"Extra staff must be whole agents, zero or more, not {value!r}."
        )
    return int(value)


@dataclass(frozen=True)
class OutageScenario:
    """One what-if outage. Frozen: a page or a cache can key on it.

    The centre is a ``city`` (the mean position of its customers) or ``lat``/``lon`` (WGS84),
    not both. ``start`` is naive UTC (an aware datetime is converted); the outage lasts
    ``hours`` (up to two weeks). ``severity`` is one of ``SCENARIO_SEVERITIES`` (``none``: no
    excess, the baseline). ``domain`` (optional) is the service that fails: the excess
    tickets are of that domain. ``extra_staff`` is whole agents added: a number adds that
    many in every hour the outage touches; a sequence gives one number per reported hour from
    the outage's first hour on (into the recovery tail; hours beyond it add none), which is
    what ``WhatIfResult.recommended_scenario`` fills in.
    """

    start: datetime
    hours: float
    severity: str
    radius_km: float
    city: str | None = None
    lat: float | None = None
    lon: float | None = None
    domain: str | None = None
    extra_staff: int | tuple[int, ...] = 0

    def __post_init__(self) -> None:
        # normalisations of an immutable value, done once where it is made
        if not isinstance(self.start, datetime):
            raise CsMetricsError(
                f"The outage start must be a date and time, not {self.start!r}."
            )
        if self.start.tzinfo is not None:
            utc = self.start.astimezone(timezone.utc).replace(tzinfo=None)
            object.__setattr__(self, "start", utc)
        first, last = PLAUSIBLE_BOUNDS
        if not first <= self.start.date() <= last:
            # the simulation's hours (a warm-up before, a tail after) must stay countable
            raise CsMetricsError(
                f"The outage start must lie between {first} and {last}, not "
                f"{self.start.isoformat(sep=' ', timespec='minutes')}."
            )
        hours = _finite(self.hours, "The outage duration in hours")
        if not 1 / 60 <= hours <= MAX_HOURS:
            raise CsMetricsError(
                f"An outage lasts from one minute to {MAX_HOURS} hours (two weeks), not "
                f"{self.hours!r} hours."
            )
        object.__setattr__(self, "hours", hours)
        severity = str(self.severity).strip().lower() if self.severity is not None else ""
        if severity not in SCENARIO_SEVERITIES:
            raise CsMetricsError(
                f"Unknown severity {self.severity!r}; use one of "
                f"{', '.join(SCENARIO_SEVERITIES)}."
            )
        object.__setattr__(self, "severity", severity)
        radius = _finite(self.radius_km, "The radius in km")
        if not 0 <= radius <= 5000:
            raise CsMetricsError(
                f"The radius must be between 0 and 5000 km, not {self.radius_km!r}."
            )
        object.__setattr__(self, "radius_km", radius)
        city = self.city.strip() if isinstance(self.city, str) else self.city
        object.__setattr__(self, "city", city or None)
        has_point = self.lat is not None or self.lon is not None
        if self.city is not None and has_point:
            raise CsMetricsError("Give the outage centre as a city or as lat/lon, not both.")
        if self.city is None:
            if self.lat is None or self.lon is None:
                raise CsMetricsError(
                    "Give the outage centre as a city or as both lat and lon."
                )
            lat = _finite(self.lat, "The latitude")
            lon = _finite(self.lon, "The longitude")
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise CsMetricsError(
                    f"The centre ({lat}, {lon}) is not on Earth: latitude runs from -90 to "
                    "90 and longitude from -180 to 180."
                )
            object.__setattr__(self, "lat", lat)
            object.__setattr__(self, "lon", lon)
        domain = self.domain.strip() if isinstance(self.domain, str) else self.domain
        object.__setattr__(self, "domain", domain or None)
        staff = self.extra_staff
        if isinstance(staff, (list, tuple, np.ndarray)):
            object.__setattr__(self, "extra_staff", tuple(_staff_value(v) for v in staff))
        else:
            object.__setattr__(self, "extra_staff", _staff_value(staff))

    @property
    def end(self) -> datetime:
        """When the outage ends (exclusive)."""
        return self.start + timedelta(hours=self.hours)

    def with_extra_staff(self, extra_staff: int | tuple[int, ...]) -> OutageScenario:
        """The same outage with other extra staff."""
        return replace(self, extra_staff=extra_staff)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: the start as ISO text, extra staff as a number or a list."""
        staff = self.extra_staff
        return {
            "city": self.city,
            "lat": self.lat,
            "lon": self.lon,
            "radius_km": self.radius_km,
            "start": self.start.isoformat(),
            "hours": self.hours,
            "severity": self.severity,
            "domain": self.domain,
            "extra_staff": list(staff) if isinstance(staff, tuple) else staff,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutageScenario:
        """The scenario ``to_dict`` wrote (missing optional keys take their defaults)."""
        if not isinstance(data, dict):
            raise CsMetricsError("A scenario is a JSON object like the one the app downloads.")
        unknown = sorted(set(data) - set(_SCENARIO_KEYS))
        if unknown:
            raise CsMetricsError(
                f"The scenario has unknown keys {unknown}; use {', '.join(_SCENARIO_KEYS)}."
            )
        missing = [k for k in ("start", "hours", "severity", "radius_km") if data.get(k) is None]
        if missing:
            raise CsMetricsError(f"The scenario lacks {', '.join(missing)}.")
        start = data["start"]
        if isinstance(start, str):
            try:
                start = datetime.fromisoformat(start)
            except ValueError:
                raise CsMetricsError(
                    f"The scenario start {start!r} is not an ISO date and time "
                    "(YYYY-MM-DDTHH:MM)."
                ) from None
        return cls(
            start=start,
            hours=data["hours"],
            severity=data["severity"],
            radius_km=data["radius_km"],
            city=data.get("city"),
            lat=data.get("lat"),
            lon=data.get("lon"),
            domain=data.get("domain"),
            extra_staff=data.get("extra_staff") or 0,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> OutageScenario:
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise CsMetricsError(f"The scenario file is not valid JSON: {exc}.") from exc
        return cls.from_dict(data)


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


# --- the queue --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Runs:
    """Per run (rows) and reported hour (columns)."""

    arrivals: np.ndarray
    backlog: np.ndarray
    wait_mean: np.ndarray  # NaN when no ticket arrived
    breach_pct: np.ndarray  # NaN when no ticket arrived
    breach_share: np.ndarray  # per run, over the reported hours (NaN without tickets)


def _simulate(
    base_per_min: np.ndarray,
    extra_per_min: np.ndarray | None,
    agents_per_hour: np.ndarray,
    p_done_per_hour: np.ndarray,
    skip_hours: int,
    sla_minutes: float,
    runs: int,
    seed: int,
) -> _Runs:
    """The minute-by-minute FIFO queue over ``runs`` runs; hours before ``skip_hours`` are
    the warm-up and are not reported."""
    minutes = len(base_per_min)
    hours = minutes // 60
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]
    base_rng, extra_rng, staff_rng, service_rng = streams
    arrivals = base_rng.poisson(base_per_min, size=(runs, minutes))
    if extra_per_min is not None:
        arrivals = arrivals + extra_rng.poisson(extra_per_min, size=(runs, minutes))
    # fractional staffing: floor, plus one with probability of the fraction, per run and hour
    whole = np.floor(agents_per_hour + 1e-9)
    frac = np.clip(agents_per_hour - whole, 0.0, 1.0)
    servers = (whole[None, :] + (staff_rng.random((runs, hours)) < frac[None, :]))
    servers = servers.astype(np.int64)

    queue = np.zeros(runs, dtype=np.int64)
    busy = np.zeros(runs, dtype=np.int64)
    started = np.empty((runs, minutes), dtype=np.int64)
    backlog = np.empty((runs, hours), dtype=np.int64)
    for t in range(minutes):
        h = t // 60
        busy -= service_rng.binomial(busy, p_done_per_hour[h])
        queue += arrivals[:, t]
        start = np.minimum(queue, np.maximum(servers[:, h] - busy, 0))
        queue -= start
        busy += start
        started[:, t] = start
        if t % 60 == 59:
            backlog[:, h] = queue

    # Waits, FIFO: ticket k (1-based, in arrival order) arrives in the first minute whose
    # cumulative arrivals reach k and starts in the first minute whose cumulative starts do.
    cum_arr = np.cumsum(arrivals, axis=1)
    cum_start = np.cumsum(started, axis=1)
    totals = cum_arr[:, -1]
    stride = int(totals.max()) + 1
    offset = (np.arange(runs, dtype=np.int64) * stride)[:, None]
    run_of = np.repeat(np.arange(runs, dtype=np.int64), totals)
    first = np.concatenate([[0], np.cumsum(totals)[:-1]])
    k = np.arange(int(totals.sum()), dtype=np.int64) - np.repeat(first, totals) + 1
    key = run_of * stride + k
    arrive = np.searchsorted((cum_arr + offset).ravel(), key) - run_of * minutes
    # beyond the run's row: not started by the end, its wait counts up to the end
    begin = np.minimum(np.searchsorted((cum_start + offset).ravel(), key) - run_of * minutes,
                       minutes)
    wait = (begin - arrive).astype(np.float64)
    hour = arrive // 60
    keep = hour >= skip_hours
    cell = run_of[keep] * hours + hour[keep]
    size = runs * hours
    count = np.bincount(cell, minlength=size).reshape(runs, hours)
    wait_sum = np.bincount(cell, weights=wait[keep], minlength=size).reshape(runs, hours)
    late = np.bincount(cell, weights=(wait[keep] > sla_minutes).astype(np.float64),
                       minlength=size).reshape(runs, hours)
    with np.errstate(invalid="ignore", divide="ignore"):
        wait_mean = np.where(count > 0, wait_sum / count, np.nan)
        breach_pct = np.where(count > 0, 100.0 * late / count, np.nan)
        n_run = count[:, skip_hours:].sum(axis=1)
        share = np.where(n_run > 0, 100.0 * late[:, skip_hours:].sum(axis=1) / n_run, np.nan)
    per_hour = arrivals.reshape(runs, hours, 60).sum(axis=2)
    return _Runs(
        arrivals=per_hour[:, skip_hours:],
        backlog=backlog[:, skip_hours:],
        wait_mean=wait_mean[:, skip_hours:],
        breach_pct=breach_pct[:, skip_hours:],
        breach_share=share,
    )


def _bands(values: np.ndarray) -> np.ndarray:
    """p10, p50, p90 over runs (rows), ignoring runs where the figure is undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an hour with no ticket in any run
        return np.nanpercentile(values.astype(np.float64), [10, 50, 90], axis=0)


def _median(values: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmedian(values)) if len(values) else math.nan


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


def _staffing_grid(wh: Warehouse, since: datetime) -> np.ndarray | None:
    """Active reps by weekday x hour (7 x 24) over the recent weeks; None without reps."""
    table = current_staffing(wh, Filters(date_from=since.date()))
    if table.empty:
        table = current_staffing(wh, Filters())  # recent weeks without reps: use them all
    if table.empty:
        return None
    grid = (table.pivot(index="weekday", columns="hour", values="active_reps")
            .reindex(index=range(7), columns=range(24)))
    # a weekday the range lacks (data shorter than a week) takes that hour's average day
    grid = grid.fillna(grid.mean(axis=0)).fillna(0.0)
    return grid.to_numpy(dtype=np.float64)


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


# --- the result -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WhatIfTotals:
    """The period's headline figures (p-figures are medians over the runs unless named)."""

    expected_extra_tickets: float
    extra_tickets_p10: float
    extra_tickets_p50: float
    extra_tickets_p90: float
    peak_backlog_p50: float
    peak_backlog_hour: datetime
    baseline_peak_backlog_p50: float
    peak_first_response_min_p50: float  # the worst hour's mean wait
    peak_first_response_hour: datetime
    baseline_first_response_min_p50: float  # at that same hour, without the outage
    sla_breach_pct_p50: float  # share of all tickets of the reported period
    baseline_sla_breach_pct_p50: float
    max_extra_agents_needed: int
    extra_agent_hours: int
    recovered_at: datetime | None  # backlog back to its baseline level (None: not in the tail)


@dataclass(frozen=True)
class WhatIfResult:
    """What ``simulate_outage`` projects for a scenario.

    ``hours``: one row per reported clock hour, columns ``HOUR_COLUMNS``: ``hour`` (start),
    ``in_outage``, ``baseline_arrivals`` and ``extra_arrivals`` (expected),
    ``arrivals_p50`` (simulated), ``backlog_*`` (tickets waiting for a first response at the
    end of the hour), ``first_response_min_*`` (mean wait of the tickets arriving in the hour,
    minutes), ``sla_breach_pct_*`` (% of them waiting longer than ``sla_minutes``), the
    ``baseline_*`` p50 figures of the same runs without the outage, ``current_agents``
    (today's average active reps), ``extra_staff`` (the scenario's) and
    ``extra_agents_needed`` (Erlang C on the expected total arrivals minus today's agents).
    """

    scenario: OutageScenario
    city: str | None
    lat: float
    lon: float
    affected_customers: int
    rate_per_customer_hour: float
    rate_source: str  # "calibrated", "default" or "none"
    rate_note: str
    aht_s: float
    extra_aht_s: float
    sla_minutes: float
    sla_target_pct: float
    runs: int
    seed: int
    tail_hours: int
    hours: pd.DataFrame
    totals: WhatIfTotals
    summary: str
    notes: tuple[str, ...] = field(default=())

    def recommended_scenario(self) -> OutageScenario:
        """The scenario with ``extra_staff`` = the extra agents needed in each hour."""
        needed = self.hours["extra_agents_needed"].to_numpy(dtype=np.int64)
        return self.scenario.with_extra_staff(tuple(int(v) for v in needed))


def _count_text(value: float) -> str:
    n = int(round(value))
    if n >= 100:
        digits = len(str(n)) - 2
        n = int(round(n, -digits))
    return f"{n:,}"


def _tickets(value: float) -> str:
    n = int(round(value))
    return f"{n:,} ticket{'' if n == 1 else 's'}"


def _duration(minutes: float) -> str:
    if not math.isfinite(minutes):
        return "n/a"
    if minutes < 1:
        return "under a minute"
    if minutes < 10:
        return f"{minutes:.1f} min"
    if minutes < 90:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"


def _when(ts: datetime, ref: datetime) -> str:
    if ts.date() == ref.date():
        return f"{ts:%H:%M}"
    return f"{ts:%a %d %b %H:%M}"


def _hours_text(hours: float) -> str:
    whole = abs(hours - round(hours)) < 1e-9
    value = f"{int(round(hours))}" if whole else f"{hours:.1f}"
    return f"{value} hour{'' if value == '1' else 's'}"


def _agents_text(frame: pd.DataFrame, ref: datetime) -> str:
    """The extra agents clause: what the SLA needs beyond today's staffing and the scenario's
    planned extra staff, around the hour that needs most."""
    needed = frame["extra_agents_needed"].to_numpy(dtype=np.int64)
    planned = frame["extra_staff"].to_numpy(dtype=np.int64)
    short = np.maximum(needed - planned, 0)
    if short.max(initial=0) == 0:
        if planned.max(initial=0) == 0:
            return "today's staffing keeps the SLA in every hour"
        most = int(planned.max())
        upto = "" if (planned[planned > 0] == most).all() else "up to "
        return (f"the planned extra staff ({upto}{most} agent{'s' if most != 1 else ''}) "
                "keeps the SLA in every hour")
    peak = int(np.argmax(short))
    lo = peak
    while lo > 0 and short[lo - 1] > 0:
        lo -= 1
    hi = peak
    while hi + 1 < len(short) and short[hi + 1] > 0:
        hi += 1
    k = int(short[peak])
    same = bool((short[lo:hi + 1] == k).all())
    hour = frame["hour"]
    beyond = " beyond the planned extra staff" if planned.max(initial=0) > 0 else ""
    text = (f"{'' if same else 'up to '}{k} more agent{'s' if k != 1 else ''}{beyond} from "
            f"{_when(hour.iloc[lo].to_pydatetime(), ref)} to "
            f"{_when((hour.iloc[hi] + pd.Timedelta(hours=1)).to_pydatetime(), ref)} "
            f"keep{'s' if k == 1 and same else ''} the SLA")
    others = int((short > 0).sum()) - (hi - lo + 1)
    if others:
        text += (f" ({others} other hour{'s need' if others != 1 else ' needs'} "
                 "some too)")
    return text


def _summary(scenario: OutageScenario, place: str, customers: int, frame: pd.DataFrame,
             totals: WhatIfTotals, sla_minutes: float, tail_hours: int) -> str:
    ref = scenario.start
    if totals.expected_extra_tickets < 0.5:
        why = ("severity none adds no tickets" if scenario.severity == "none"
               else f"no customer lives within {scenario.radius_km:g} km of {place}"
               if customers == 0 else "the rate is too small to add a whole ticket")
        parts = [f"No extra tickets are expected ({why}) over {_hours_text(scenario.hours)}"]
    else:
        parts = [
            f"About {_count_text(totals.expected_extra_tickets)} extra tickets over "
            f"{_hours_text(scenario.hours)} from {customers:,} customers within "
            f"{scenario.radius_km:g} km of {place}"
        ]
    if totals.peak_backlog_p50 > totals.baseline_peak_backlog_p50:
        parts.append(
            f"the backlog peaks at {_tickets(totals.peak_backlog_p50)} waiting at "
            f"{_when(totals.peak_backlog_hour, ref)} (usually at most "
            f"{totals.baseline_peak_backlog_p50:.0f})"
        )
    else:
        parts.append(f"the backlog stays at its usual level (at most "
                     f"{_tickets(totals.baseline_peak_backlog_p50)} waiting)")
    peak_fr, usual_fr = totals.peak_first_response_min_p50, totals.baseline_first_response_min_p50
    # compared hour by hour: a thinly staffed hour is slow with or without the outage
    rises = (frame["first_response_min_p50"] - frame["baseline_first_response_min_p50"]
             > 0.5).any()
    if peak_fr > usual_fr + 0.5:
        fr_text = (f"first response rises to {_duration(peak_fr)} at the peak "
                   f"({_duration(usual_fr)} without the outage)")
    elif rises:
        fr_text = (f"first response peaks at {_duration(peak_fr)}, as it would without the "
                   "outage, and rises in quieter hours")
    else:
        fr_text = ("first response stays at or below its usual level (at most "
                   f"{_duration(peak_fr)} in any hour)" if peak_fr >= 1
                   else "first response stays under a minute")
    parts.append(
        f"{fr_text} and {totals.sla_breach_pct_p50:.0f} % of tickets wait longer than "
        f"{_duration(sla_minutes)} ({totals.baseline_sla_breach_pct_p50:.0f} % without it)"
    )
    parts.append(_agents_text(frame, ref))
    backlog = frame["backlog_p50"].to_numpy()
    if (backlog > frame["baseline_backlog_p50"].to_numpy() + 1e-9).any():
        if totals.recovered_at is None:
            parts.append(f"the backlog is still above its usual level {tail_hours} hours "
                         "after the outage ends")
        else:
            parts.append(f"the backlog is back to its usual level by "
                         f"{_when(totals.recovered_at, ref)}")
    return "; ".join(parts) + "."


def _totals(frame: pd.DataFrame, sim: _Runs, base: _Runs, expected: float) -> WhatIfTotals:
    realised = (sim.arrivals - base.arrivals).sum(axis=1)  # same baseline draws in both
    x10, x50, x90 = np.percentile(realised, [10, 50, 90])
    peak_b = int(np.argmax(frame["backlog_p50"].to_numpy()))
    fr = frame["first_response_min_p50"].to_numpy()
    known = bool(np.isfinite(fr).any())
    peak_f = int(np.nanargmax(fr)) if known else 0
    # recovered: the first hour after the outage from which the backlog stays at its level
    # without the outage
    outage = frame["in_outage"].to_numpy()
    after = np.flatnonzero(~outage)
    after = after[after > np.flatnonzero(outage).max(initial=-1)]
    above = frame["backlog_p50"].to_numpy() > frame["baseline_backlog_p50"].to_numpy() + 1e-9
    recovered_at = next(
        (frame["hour"].iloc[i].to_pydatetime() for i in after if not above[i:].any()), None
    )
    needed = frame["extra_agents_needed"].to_numpy(dtype=np.int64)
    return WhatIfTotals(
        expected_extra_tickets=expected,
        extra_tickets_p10=float(x10),
        extra_tickets_p50=float(x50),
        extra_tickets_p90=float(x90),
        peak_backlog_p50=float(frame["backlog_p50"].iloc[peak_b]),
        peak_backlog_hour=frame["hour"].iloc[peak_b].to_pydatetime(),
        baseline_peak_backlog_p50=float(frame["baseline_backlog_p50"].max()),
        peak_first_response_min_p50=float(fr[peak_f]) if known else math.nan,
        peak_first_response_hour=frame["hour"].iloc[peak_f].to_pydatetime(),
        baseline_first_response_min_p50=float(
            frame["baseline_first_response_min_p50"].iloc[peak_f]),
        sla_breach_pct_p50=_median(sim.breach_share),
        baseline_sla_breach_pct_p50=_median(base.breach_share),
        max_extra_agents_needed=int(needed.max(initial=0)),
        extra_agent_hours=int(needed.sum()),
        recovered_at=recovered_at,
    )


def _check_arguments(runs: object, seed: object, tail_hours: object) -> None:
    if isinstance(runs, bool) or not isinstance(runs, int) or not 1 <= runs <= MAX_RUNS:
        raise CsMetricsError(f"Runs must be a whole number from 1 to {MAX_RUNS}, not {runs!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise CsMetricsError(f"The seed must be a whole number, zero or more, not {seed!r}.")
    if (isinstance(tail_hours, bool) or not isinstance(tail_hours, int)
            or not 0 <= tail_hours <= MAX_TAIL_HOURS):
        raise CsMetricsError(
            f"The recovery tail is 0 to {MAX_TAIL_HOURS} whole hours, not {tail_hours!r}."
        )


# --- the simulation ---------------------------------------------------------------------------


def simulate_outage(
    wh: Warehouse,
    scenario: OutageScenario,
    *,
    runs: int = 200,
    seed: int = 7,
    sla_minutes: float | None = None,
    tail_hours: int = TAIL_HOURS,
    settings: Settings | None = None,
) -> WhatIfResult:
    """Project ``scenario`` hour by hour: ``runs`` Monte Carlo runs of the first-response
    queue from ``seed`` (see the module docstring for the model).

    ``sla_minutes`` is the first-response target a ticket breaches beyond (default: the
    median target of the recent tickets' SLA policies); ``tail_hours`` the recovery hours
    reported after the outage; ``settings`` default to ``load_settings()``.
    """
    if not isinstance(scenario, OutageScenario):
        raise CsMetricsError("Pass an OutageScenario (OutageScenario.from_dict reads JSON).")
    _check_arguments(runs, seed, tail_hours)
    if not wh.has_table("tickets"):
        raise CsMetricsError(
            f"The warehouse {wh.path} has no tickets yet; run "
            "`python -m cs_metrics ingest SOURCE` first."
        )
    settings = settings or load_settings()
    notes: list[str] = []

    # where, and who
    if scenario.city is not None:
        city, lat, lon = city_centre(wh, scenario.city)
        place = city
    else:
        city, lat, lon = None, float(scenario.lat), float(scenario.lon)
        place = f"({lat:.4f}, {lon:.4f})"
    customers = affected_customers(wh, lat, lon, scenario.radius_km)
    if scenario.domain is not None:
        domains = wh.dimension_values("domain")
        match = [d for d in domains if d.lower() == scenario.domain.lower()]
        if not match:
            listed = ", ".join(domains[:10]) if domains else "none"
            raise CsMetricsError(
                f"Unknown domain {scenario.domain!r}; this dataset's domains are {listed}."
            )
        domain = match[0]
    else:
        domain = None

    # how many more
    rates = excess_rates(wh)
    row = rates[rates["severity"] == scenario.severity].iloc[0]
    rate, source = float(row["rate"]), str(row["source"])
    rate_note = _rate_note(row)
    if source == "default":
        notes += [n for n in rates.attrs.get("notes", []) if n not in notes]

    # when: whole minutes, the warm-up, the reported hours and the tail
    start = scenario.start.replace(second=0, microsecond=0)
    end = scenario.end.replace(second=0, microsecond=0)
    end = max(end, start + timedelta(minutes=1))
    first_hour = _floor_hour(start)
    sim_start = first_hour - timedelta(hours=WARMUP_HOURS)
    period_end = _ceil_hour(end) + timedelta(hours=tail_hours)
    n_hours = int((period_end - sim_start) / timedelta(hours=1))
    reported = n_hours - WARMUP_HOURS
    hour_index = pd.date_range(sim_start, periods=n_hours, freq="h")

    data_end = wh.created_range()
    since = (data_end[1] if data_end else start) - timedelta(weeks=STAFFING_WEEKS)
    base_hourly = _baseline(wh, sim_start, start, period_end, notes)

    # the outage's minutes, and the expected excess in each
    minute0 = int((start - sim_start) / timedelta(minutes=1))
    minute1 = int((end - sim_start) / timedelta(minutes=1))
    in_window = np.zeros(n_hours * 60, dtype=bool)
    in_window[minute0:minute1] = True
    extra_per_min = in_window * (rate * customers / 60.0)
    extra_hourly = extra_per_min.reshape(n_hours, 60).sum(axis=1)
    touched = in_window.reshape(n_hours, 60).any(axis=1)

    # handle times
    recent = Filters(date_from=since.date())
    aht = handle_time_s(wh, recent) or handle_time_s(wh, Filters())
    if aht is None or not aht > 0:
        aht = settings.staffing.aht_s
        notes.append(f"This dataset has no handle times, so the settings' {aht:.0f} s "
                     "(staffing.aht_s) is the handle time.")
    extra_aht = aht
    if domain is not None:
        dom = Filters(date_from=since.date(), where=(("domain", (domain,)),))
        found = handle_time_s(wh, dom) or handle_time_s(wh, Filters.build(domain=domain))
        extra_aht = found if found and found > 0 else aht
    total_hourly = base_hourly + extra_hourly
    # hours without excess keep the AHT itself (not a mix that rounds differently), so a
    # scenario without excess serves exactly as the baseline does
    with np.errstate(invalid="ignore", divide="ignore"):
        mix = np.where(extra_hourly > 0,
                       (base_hourly * aht + extra_hourly * extra_aht) / total_hourly, aht)

    # the SLA and the agents it needs
    sla_minutes = _default_sla_minutes(wh, since, settings) if sla_minutes is None \
        else _finite(sla_minutes, "The first-response target in minutes")
    if not sla_minutes > 0:
        raise CsMetricsError(
            f"The first-response target must be more than 0 minutes, not {sla_minutes!r}."
        )
    target_pct = settings.target("sla_first_response_pct") or 90.0
    if not 0 < target_pct < 100:
        raise CsMetricsError(
            f"The settings' sla_first_response_pct target must be between 0 and 100, not "
            f"{target_pct!r}."
        )
    level = ServiceLevel(target_pct / 100.0, sla_minutes * 60.0)
    needed_raw = np.array([
        erlang_c(float(a), 60.0, float(h), level, settings=settings).raw_agents
        for a, h in zip(total_hourly, mix, strict=True)
    ], dtype=np.float64)

    grid = _staffing_grid(wh, since)
    if grid is None:
        base_needed = np.array([
            erlang_c(float(a), 60.0, aht, level, settings=settings).raw_agents
            for a in base_hourly
        ], dtype=np.float64)
        current = base_needed
        notes.append("This dataset has no representatives on its tickets (rep_id), so today's "
                     "staffing is taken as the agents Erlang C asks for without the outage.")
    else:
        current = grid[hour_index.day_of_week, hour_index.hour]
    extra_needed = np.maximum(np.ceil(np.round(needed_raw - current, 9)), 0).astype(np.int64)

    staff = np.zeros(n_hours, dtype=np.int64)
    if isinstance(scenario.extra_staff, tuple):
        values = np.asarray(scenario.extra_staff[:reported], dtype=np.int64)
        staff[WARMUP_HOURS:WARMUP_HOURS + len(values)] = values
    else:
        staff[touched] = scenario.extra_staff

    # memory grows with runs x minutes and with the tickets drawn: keep both within reach
    cells = runs * n_hours * 60
    tickets = runs * float(total_hourly.sum())
    if cells > MAX_CELLS or tickets > MAX_TICKETS:
        most = max(1, min(MAX_CELLS // (n_hours * 60),
                          int(MAX_TICKETS / max(float(total_hourly.sum()), 1.0))))
        raise CsMetricsError(
            f"{runs} runs of this {n_hours - WARMUP_HOURS}-hour period are too large a "
            f"simulation; use at most {most} runs or a shorter outage or tail."
        )
    base_per_min = np.repeat(base_hourly / 60.0, 60)
    p_done = np.minimum(60.0 / mix, 1.0)
    p_base = np.minimum(np.full(n_hours, 60.0 / aht), 1.0)
    sim = _simulate(base_per_min, extra_per_min, current + staff, p_done, WARMUP_HOURS,
                    sla_minutes, runs, seed)
    base = _simulate(base_per_min, None, current, p_base, WARMUP_HOURS, sla_minutes, runs,
                     seed)

    backlog = _bands(sim.backlog)
    wait = _bands(sim.wait_mean)
    breach = _bands(sim.breach_pct)
    b_backlog = _bands(base.backlog)[1]
    b_wait = _bands(base.wait_mean)[1]
    b_breach = _bands(base.breach_pct)[1]
    r = slice(WARMUP_HOURS, None)
    frame = pd.DataFrame({
        "hour": hour_index[r],
        "in_outage": touched[r],
        "baseline_arrivals": base_hourly[r],
        "extra_arrivals": extra_hourly[r],
        "arrivals_p50": np.median(sim.arrivals, axis=0),
        "backlog_p10": backlog[0], "backlog_p50": backlog[1], "backlog_p90": backlog[2],
        "first_response_min_p10": wait[0], "first_response_min_p50": wait[1],
        "first_response_min_p90": wait[2],
        "sla_breach_pct_p10": breach[0], "sla_breach_pct_p50": breach[1],
        "sla_breach_pct_p90": breach[2],
        "baseline_backlog_p50": b_backlog,
        "baseline_first_response_min_p50": b_wait,
        "baseline_sla_breach_pct_p50": b_breach,
        "current_agents": current[r],
        "extra_staff": staff[r],
        "extra_agents_needed": extra_needed[r],
    }, columns=list(HOUR_COLUMNS))

    totals = _totals(frame, sim, base, float(extra_hourly.sum()))
    summary = _summary(scenario, place, customers, frame, totals, sla_minutes, tail_hours)
    return WhatIfResult(
        scenario=scenario,
        city=city,
        lat=lat,
        lon=lon,
        affected_customers=customers,
        rate_per_customer_hour=rate,
        rate_source=source,
        rate_note=rate_note,
        aht_s=float(aht),
        extra_aht_s=float(extra_aht),
        sla_minutes=float(sla_minutes),
        sla_target_pct=float(target_pct),
        runs=runs,
        seed=seed,
        tail_hours=tail_hours,
        hours=frame,
        totals=totals,
        summary=summary,
        notes=tuple(notes),
    )
