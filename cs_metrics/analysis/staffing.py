"""Staffing: Erlang C agents per interval, hourly staffing plans, and staffing seen in the data.

Erlang C models one queue: contacts arrive at random (Poisson), wait for the first free agent
and never abandon; handle times are exponential. It suits phone and chat. Email and other
deferred channels, whose targets run to hours, break the "every interval on its own"
assumption: there the figures are an approximation that tends to overstate the agents an
interval needs (see ``[staffing.service_levels]`` in the default settings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.settings import ServiceLevel, Settings, load_settings
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.core.zones import local_sql, to_local, utc_moment
from cs_metrics.metrics.registry import Filters, filter_sql

__all__ = [
    "GAP_COLUMNS",
    "PLAN_COLUMNS",
    "StaffingResult",
    "current_staffing",
    "erlang_c",
    "handle_time_s",
    "staffing_gap",
    "staffing_plan",
    "wait_probability",
]

PLAN_COLUMNS: tuple[str, ...] = (
    "hour", "arrivals", "aht_s", "raw_agents", "scheduled_agents", "service_level",
    "occupancy", "p_wait", "asa_s",
)
GAP_COLUMNS: tuple[str, ...] = (
    "weekday", "hour_of_day", "arrivals", "scheduled_agents", "peak_agents", "service_level",
    "active_reps", "gap",
)

# Targets are compared with a little slack: an occupancy of exactly 0.85 computed as 8.5 / 10
# must count as meeting a 0.85 cap, whatever the last bit of the division says.
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class StaffingResult:
    """Erlang C staffing of one interval.

    ``raw_agents`` are the agents handling contacts at once; ``scheduled_agents`` also cover
    shrinkage. ``service_level``, ``occupancy``, ``p_wait`` (probability that a contact waits)
    and ``asa_s`` (average speed of answer, seconds) are what ``raw_agents`` achieve.
    """

    arrivals: float
    interval_min: float
    aht_s: float
    traffic_erlangs: float
    raw_agents: int
    scheduled_agents: int
    service_level: float
    occupancy: float
    p_wait: float
    asa_s: float


def wait_probability(agents: int, traffic: float) -> float:
    """Erlang C: the probability that a contact has to wait, with ``agents`` agents and
    ``traffic`` Erlangs (arrivals x handle time / interval). 1.0 when agents <= traffic: the
    queue grows without bound.

    Computed through the Erlang B recursion, which stays within [0, 1] at every step, where
    the textbook formula's powers and factorials overflow beyond a few hundred agents.
    """
    if traffic < 0:
        raise CsMetricsError(f"Traffic must be zero or more Erlangs, not {traffic!r}.")
    if traffic == 0:
        return 0.0
    if agents <= traffic:
        return 1.0
    blocking = 1.0
    for n in range(1, agents + 1):
        blocking = traffic * blocking / (n + traffic * blocking)
    return agents * blocking / (agents - traffic * (1 - blocking))


def _required_agents(
    traffic: np.ndarray, aht_s: float, level: ServiceLevel, max_occupancy: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the smallest agent count meeting the service level and the occupancy cap,
    and its wait probability.

    All rows step through the Erlang B recursion together, one agent count at a time, so a
    plan costs as many numpy steps as its busiest hour needs agents, not rows x agents
    Python steps.
    """
    agents = np.zeros(len(traffic), dtype=np.int64)
    p_wait = np.zeros(len(traffic))
    blocking = np.ones(len(traffic))
    done = traffic <= 0
    n = 0
    while not done.all():
        n += 1
        blocking = traffic * blocking / (n + traffic * blocking)
        rows = np.flatnonzero(~done & (n > traffic))
        if not len(rows):
            continue
        a, b = traffic[rows], blocking[rows]
        c = n * b / (n - a * (1 - b))
        level_met = 1 - c * np.exp(-(n - a) * level.within_s / aht_s)
        ok = (level_met >= level.target - _TOLERANCE) & (a / n <= max_occupancy + _TOLERANCE)
        agents[rows[ok]] = n
        p_wait[rows[ok]] = c[ok]
        done[rows[ok]] = True
    return agents, p_wait


def _resolve(
    target: ServiceLevel | str,
    shrinkage: float | None,
    max_occupancy: float | None,
    settings: Settings | None,
) -> tuple[ServiceLevel, float, float]:
    if isinstance(target, str) or shrinkage is None or max_occupancy is None:
        staffing = (settings or load_settings()).staffing
        if isinstance(target, str):
            target = staffing.service_level(target)
        shrinkage = staffing.shrinkage if shrinkage is None else shrinkage
        max_occupancy = staffing.max_occupancy if max_occupancy is None else max_occupancy
    if not 0 <= shrinkage < 1:
        raise CsMetricsError(
            f"Shrinkage must be a fraction in [0, 1), e.g. 0.3, not {shrinkage!r}."
        )
    if not 0 < max_occupancy <= 1:
        raise CsMetricsError(
            f"Maximum occupancy must be a fraction in (0, 1], e.g. 0.85, not {max_occupancy!r}."
        )
    return target, shrinkage, max_occupancy


def _check_positive(value: float, what: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise CsMetricsError(f"{what} must be a positive number, not {value!r}.")


def _figures(
    arrivals: np.ndarray,
    interval_min: float,
    aht_s: float,
    level: ServiceLevel,
    shrinkage: float,
    max_occupancy: float,
) -> dict[str, np.ndarray]:
    traffic = arrivals * aht_s / (interval_min * 60.0)
    agents, p_wait = _required_agents(traffic, aht_s, level, max_occupancy)
    staffed = agents > 0
    # with no contacts there is nothing to answer late and nobody to keep busy
    spare = np.where(staffed, agents - traffic, 1.0)
    n = np.where(staffed, agents, 1)
    service = np.where(staffed, 1 - p_wait * np.exp(-spare * level.within_s / aht_s), 1.0)
    # rounded before ceil so that 21 / 0.7 = 30.000000000000004 schedules 30, not 31
    scheduled = np.ceil(np.round(agents / (1 - shrinkage), 9)).astype(np.int64)
    return {
        "traffic": traffic,
        "raw_agents": agents,
        "scheduled_agents": scheduled,
        "service_level": service,
        "occupancy": np.where(staffed, traffic / n, 0.0),
        "p_wait": p_wait,
        "asa_s": np.where(staffed, p_wait * aht_s / spare, 0.0),
    }


def erlang_c(
    arrivals: float,
    interval_min: float,
    aht_s: float,
    target: ServiceLevel | str,
    *,
    shrinkage: float | None = None,
    max_occupancy: float | None = None,
    settings: Settings | None = None,
) -> StaffingResult:
    """Erlang C staffing for one interval of ``interval_min`` minutes with ``arrivals``
    contacts of ``aht_s`` seconds average handle time.

    ``target`` is a ``ServiceLevel`` or a channel name looked up in the settings. Raw agents
    are the smallest number above the traffic that reaches the service level without
    exceeding ``max_occupancy``; scheduled agents are raw / (1 - ``shrinkage``), rounded up.
    ``shrinkage`` and ``max_occupancy`` default to the settings (``settings``, else
    ``load_settings()``). For a deferred channel (email, a target of hours) the result is an
    approximation: see the module docstring.
    """
    if not (math.isfinite(arrivals) and arrivals >= 0):
        raise CsMetricsError(f"Arrivals must be zero or more contacts, not {arrivals!r}.")
    _check_positive(interval_min, "The interval length in minutes")
    _check_positive(aht_s, "The average handle time in seconds")
    level, shrinkage, max_occupancy = _resolve(target, shrinkage, max_occupancy, settings)
    out = _figures(np.array([float(arrivals)]), interval_min, aht_s, level, shrinkage,
                   max_occupancy)
    return StaffingResult(
        arrivals=float(arrivals),
        interval_min=float(interval_min),
        aht_s=float(aht_s),
        traffic_erlangs=float(out["traffic"][0]),
        raw_agents=int(out["raw_agents"][0]),
        scheduled_agents=int(out["scheduled_agents"][0]),
        service_level=float(out["service_level"][0]),
        occupancy=float(out["occupancy"][0]),
        p_wait=float(out["p_wait"][0]),
        asa_s=float(out["asa_s"][0]),
    )


def staffing_plan(
    forecast: pd.DataFrame,
    aht_s: float | None,
    target: ServiceLevel | str,
    *,
    interval_min: float = 60.0,
    shrinkage: float | None = None,
    max_occupancy: float | None = None,
    settings: Settings | None = None,
) -> pd.DataFrame:
    """Erlang C staffing for every row of an hourly forecast (columns ``hour``, a timestamp,
    and ``arrivals``), the same figures ``erlang_c`` gives each row on its own.

    Returns ``PLAN_COLUMNS``: hour, arrivals, aht_s, raw_agents, scheduled_agents,
    service_level, occupancy, p_wait, asa_s. ``aht_s`` None means the settings' ``aht_s``
    (for data without handle times); negative forecast arrivals count as zero.
    """
    missing = [c for c in ("hour", "arrivals") if c not in forecast.columns]
    if missing:
        raise CsMetricsError(
            f"A staffing forecast needs columns hour and arrivals; it lacks {missing}."
        )
    if aht_s is None:
        aht_s = (settings or load_settings()).staffing.aht_s
    _check_positive(aht_s, "The average handle time in seconds")
    _check_positive(interval_min, "The interval length in minutes")
    level, shrinkage, max_occupancy = _resolve(target, shrinkage, max_occupancy, settings)
    arrivals = pd.to_numeric(forecast["arrivals"], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(arrivals).all():
        raise CsMetricsError(
            "Every forecast hour needs a number of arrivals; some are missing or not numbers."
        )
    # a forecast model can dip below zero in quiet hours: no contacts need no agents
    arrivals = np.clip(arrivals, 0.0, None)
    out = _figures(arrivals, interval_min, aht_s, level, shrinkage, max_occupancy)
    return pd.DataFrame({
        "hour": forecast["hour"].reset_index(drop=True),
        "arrivals": arrivals,
        "aht_s": np.full(len(arrivals), float(aht_s)),
        "raw_agents": out["raw_agents"],
        "scheduled_agents": out["scheduled_agents"],
        "service_level": out["service_level"],
        "occupancy": out["occupancy"],
        "p_wait": out["p_wait"],
        "asa_s": out["asa_s"],
    }, columns=list(PLAN_COLUMNS))


def handle_time_s(wh: Warehouse, filters: Filters) -> float | None:
    """Average ``handle_time_s`` of the tickets matching ``filters``; None when the data has
    no handle times (or no matching ticket has one), so callers fall back to the settings'
    ``aht_s``."""
    if "handle_time_s" not in wh.nonempty_columns("tickets"):
        return None
    where, params = filter_sql(filters)
    value = wh.scalar(f"select avg(t.handle_time_s) from tickets t where {where}", params)
    return None if value is None else float(value)


def _day(d: date | datetime) -> date:
    return d.date() if isinstance(d, datetime) else d


def _start(d: date | datetime) -> datetime:
    return d if isinstance(d, datetime) else datetime(d.year, d.month, d.day)


def current_staffing(wh: Warehouse, filters: Filters) -> pd.DataFrame:
    """Representatives at work by weekday (0 = Monday) and hour of day, as the data shows it.

    A representative counts as working in an hour when they sent a first response in it:
    first_response_at marks a moment the representative acted, while created_at is when the
    customer wrote. Data without first responses falls back to created_at. Each cell is the
    number of distinct rep_id working in that hour, averaged over the days of that weekday in
    the range; a day nobody worked counts as zero.

    The range is the date range of ``filters``, applied to that working timestamp and clipped
    to the days the data covers (any ticket's working timestamp, ignoring the dimension
    filters, so a quiet team still averages over the days it could have worked). The
    dimension filters choose the tickets. Columns: weekday, hour, active_reps, days (how
    many such weekdays the average is over); up to 168 rows, without weekdays the range
    does not contain.
    """
    columns = ["weekday", "hour", "active_reps", "days"]
    if not wh.has_table("tickets"):
        raise CsMetricsError(
            f"The warehouse {wh.path} has no tickets yet; run "
            "`python -m cs_metrics ingest SOURCE` first."
        )
    nonempty = wh.nonempty_columns("tickets")
    if "rep_id" not in nonempty:
        return pd.DataFrame(columns=columns)
    # identifiers from this fixed pair only
    at = "t.first_response_at" if "first_response_at" in nonempty else "t.created_at"
    dims, dim_params = filter_sql(filters, date_column=None)
    # only plausible moments: one ticket of year 9999 (written past a load's checks) would
    # stretch the days averaged over to millennia
    dates, date_params = [f"{at} between ? and ?"], list(wh.plausible_window())
    if filters.date_from is not None:
        dates.append(f"{at} >= ?")
        date_params.append(utc_moment(filters.date_from, filters.tz))
    if filters.date_to is not None:
        dates.append(f"{at} < ?")
        date_params.append(utc_moment(filters.date_to, filters.tz))
    in_range = " and ".join(dates)
    sql = f"""
        with activity as (
            -- hours of the reporting zone's local week
            select distinct t.rep_id, date_trunc('hour', {local_sql(at, filters.tz)}) as slot
            from tickets t
            where {dims} and {in_range} and t.rep_id is not null
        ),
        per_slot as (
            select slot, count(*) as reps from activity group by slot
        ),
        span as (
            select min({at}) as first_at, max({at}) as last_at
            from tickets t where not t.is_test and {in_range}
        ),
        final as (
            select cast(extract(isodow from slot) as integer) - 1 as weekday,
                cast(extract(hour from slot) as integer) as hour,
                sum(reps) as rep_hours,
                min(span.first_at) as first_at, min(span.last_at) as last_at
            from per_slot cross join span
            group by 1, 2
        )
        select * from final order by weekday, hour
    """
    found = wh.df(sql, dim_params + date_params + date_params)
    if found.empty:
        return pd.DataFrame(columns=columns)
    first = _day(to_local(pd.Timestamp(found["first_at"].iloc[0]).to_pydatetime(), filters.tz))
    end = _day(to_local(pd.Timestamp(found["last_at"].iloc[0]).to_pydatetime(), filters.tz)) \
        + timedelta(days=1)
    if filters.date_from is not None:
        first = max(first, _day(filters.date_from))
    if filters.date_to is not None:
        end = min(end, _day(filters.date_to))
    weekdays = pd.Series(pd.date_range(first, end - timedelta(days=1), freq="D").day_of_week)
    days = weekdays.value_counts().sort_index()
    grid = pd.MultiIndex.from_product([days.index, range(24)], names=["weekday", "hour"])
    rep_hours = (found.set_index(["weekday", "hour"])["rep_hours"].astype(float)
                 .reindex(grid, fill_value=0.0))
    out = rep_hours.reset_index()
    out["days"] = out["weekday"].map(days).astype("int64")
    out["active_reps"] = out["rep_hours"] / out["days"]
    out["weekday"] = out["weekday"].astype("int64")
    out["hour"] = out["hour"].astype("int64")
    return out[columns]


def staffing_gap(plan: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """The agents a plan needs against the representatives the data shows at work, by weekday
    (0 = Monday) and hour of day: the Seasonality & staffing page's table.

    ``plan`` is a ``staffing_plan`` (its hours are already in the reporting zone), ``current``
    a ``current_staffing``. Each weekday-hour averages the plan's rows falling in it
    (arrivals, scheduled_agents, service_level) and keeps their largest scheduled_agents
    (peak_agents); active_reps is the current staffing of that cell, zero where the data has
    none; gap is scheduled_agents minus active_reps (above 0: short of staff). Columns
    ``GAP_COLUMNS``, one row per weekday-hour the plan covers, in weekday-hour order.
    """
    hours = pd.to_datetime(plan["hour"])
    # a copy: the caller's plan keeps its columns
    slots = plan.assign(weekday=hours.dt.day_of_week, hour_of_day=hours.dt.hour)
    need = (slots.groupby(["weekday", "hour_of_day"], as_index=False)
            .agg(arrivals=("arrivals", "mean"), scheduled_agents=("scheduled_agents", "mean"),
                 peak_agents=("scheduled_agents", "max"), service_level=("service_level", "mean")))
    now = current.rename(columns={"hour": "hour_of_day"})
    table = need.merge(now[["weekday", "hour_of_day", "active_reps"]],
                       on=["weekday", "hour_of_day"], how="left")
    table["active_reps"] = table["active_reps"].fillna(0.0)
    table["gap"] = table["scheduled_agents"] - table["active_reps"]
    return table[list(GAP_COLUMNS)]
