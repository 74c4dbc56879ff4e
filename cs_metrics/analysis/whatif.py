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
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd

# the engine's parts, one concern a module; this module keeps the public API and re-exports
# the parts' public names
from cs_metrics.analysis._whatif_model import (
    DEFAULT_EXCESS_PER_CUSTOMER_HOUR,
    RATE_COLUMNS,
    _baseline,
    _ceil_hour,
    _default_sla_minutes,
    _floor_hour,
    _rate_note,
    affected_customers,
    city_centre,
    excess_rates,
)
from cs_metrics.analysis._whatif_queue import _bands, _simulate, _staffing_grid
from cs_metrics.analysis._whatif_summary import WhatIfTotals, _summary, _totals
from cs_metrics.analysis.staffing import erlang_c, handle_time_s
from cs_metrics.core.errors import CsMetricsError
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

SCENARIO_SEVERITIES: tuple[str, ...] = ("none", *SEVERITIES)

TAIL_HOURS = 24
WARMUP_HOURS = 12
STAFFING_WEEKS = 8  # "today's" staffing and AHT: recent weeks, as the hourly profile uses
MAX_HOURS = 14 * 24
MAX_TAIL_HOURS = 7 * 24
MAX_RUNS = 5000
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


# --- the result -------------------------------------------------------------------------------


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