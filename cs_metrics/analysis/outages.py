"""Outage impact: the tickets, delays and SLA breaches each outage caused, and per-severity rates.

An outage (table ``outages``) is a circle (``lat``, ``lon``, ``radius_km``) and a window
(``started_at`` to ``ended_at``; an ongoing outage runs to the data's as-of moment). Its
*observed* figures come from the tickets whose location lies inside the circle (great-circle
distance) and that were created inside the window. Its *expected* figures come from the same
circle at the same hours of the week when nothing was broken:

* the window shifted by whole weeks, ``k = -N .. -1`` and ``1 .. N`` (``N = baseline_weeks``,
  default 4), so time of day, day of week and the slow trend all match;
* a shifted window counts only if it lies inside the span of ticket creation times and does
  not overlap the window of any outage whose circle meets this one (the outage itself
  included, for outages longer than a week), so surges never leak into a baseline;
* expected = the mean over the weeks kept (``baseline_weeks`` column); with no week kept the
  expected figures are unknown (NaN), never zero.

Excess tickets = observed - expected. Its uncertainty treats the observed count and every
baseline week as Poisson: Var = observed + sum(baseline counts) / weeks**2, giving a 95 %
normal interval; ``excess_z`` tests "no surge" with the pooled rate (observed and baseline
weeks sharing one mean). The baseline is per domain (summed), and the domain with the largest
excess is reported as ``top_domain``: the outages table does not say which service failed.
Dimension filters (channel, domain, ...) narrow the tickets counted, on both sides; the date
range selects the outages whose window overlaps it (the baseline weeks may lie outside it).

Tickets without coordinates cannot be placed in a circle; those created during a window are
counted in ``unlocated_tickets`` and not attributed.

Missing inputs: no ``tickets`` table raises ``CsMetricsError`` (nothing is loaded). Missing
optional inputs never raise and never show as zeros: no ``outages`` table, or no outage in
the date range, gives an empty frame; no customer coordinates leave ``affected_customers``
and the per-customer rates NaN; no ticket coordinates leave every ticket figure NaN. Each
case is explained by a sentence in ``frame.attrs["notes"]`` (a list, empty when all is well).
All heavy work runs in DuckDB: Python receives one row per outage (per severity).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.geo import KM_PER_DEGREE_LAT, haversine_sql
from cs_metrics.core.schema import SEVERITIES
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.core.zones import local_columns, utc_moment
from cs_metrics.metrics.drilldown import COLUMNS as TICKET_COLUMNS
from cs_metrics.metrics.drilldown import MAX_LIMIT, TicketPage
from cs_metrics.metrics.registry import Filters, filter_sql

__all__ = [
    "BASELINE_WEEKS",
    "IMPACT_COLUMNS",
    "SEVERITY_COLUMNS",
    "outage_impact",
    "impact_of_every_outage",
    "outage_tickets",
    "pooled_rates",
    "select_outages",
    "severity_rates",
]

BASELINE_WEEKS = 4
Z95 = 1.959963984540054

IMPACT_COLUMNS: tuple[str, ...] = (
    "outage_id", "location", "description", "severity", "lat", "lon", "radius_km",
    "started_at", "ended_at", "ongoing", "hours", "affected_customers",
    "tickets_in_window", "expected_tickets", "baseline_weeks", "excess_tickets",
    "excess_low", "excess_high", "excess_z", "excess_per_customer_hour", "top_domain",
    "top_domain_excess", "avg_first_response_min", "baseline_first_response_min",
    "extra_first_response_min", "avg_resolution_h", "baseline_resolution_h",
    "extra_resolution_h", "sla_breaches", "expected_sla_breaches", "sla_breaches_caused",
    "sla_first_response_breaches_caused", "sla_resolution_breaches_caused",
    "unlocated_tickets", "excess_var",
)
# What is unknown without located tickets (the rest of a row still holds).
_TICKET_FIGURES: tuple[str, ...] = (
    "tickets_in_window", "expected_tickets", "excess_tickets", "excess_low", "excess_high",
    "excess_z", "excess_per_customer_hour", "top_domain", "top_domain_excess",
    "avg_first_response_min", "baseline_first_response_min", "extra_first_response_min",
    "avg_resolution_h", "baseline_resolution_h", "extra_resolution_h", "sla_breaches",
    "expected_sla_breaches", "sla_breaches_caused", "sla_first_response_breaches_caused",
    "sla_resolution_breaches_caused",
)
SEVERITY_COLUMNS: tuple[str, ...] = (
    "severity", "outages", "customer_hours", "tickets_in_window", "expected_tickets",
    "excess_tickets", "excess_per_customer_hour", "low", "high",
)


def _dist(lat1: str, lon1: str, lat2: str, lon2: str) -> str:
    return haversine_sql(lat1, lon1, lat2, lon2)


# A latitude band is a safe pre-filter anywhere on the globe (longitude boxes break at the
# poles and the antimeridian); the small margin keeps edge points for the exact test.
_BAND = f"(o.radius_km / {KM_PER_DEGREE_LAT!r} + 1e-6)"

_IMPACT_SQL = """
with o_all as (
    select outage_id, location, description, severity, lat, lon, radius_km, started_at,
        ended_at is null as ongoing,
        -- observed up to the as-of moment; an end before the start is an empty window
        greatest(started_at, least(coalesce(ended_at, cast(? as timestamp)),
                                   cast(? as timestamp))) as window_end,
        lat is not null and lon is not null and radius_km is not null as has_area,
        -- one started in year 0001 (written past a load's checks) would be cut into
        -- millions of hours: it is listed, not measured
        started_at between cast(? as timestamp) and cast(? as timestamp) as measured
    from outages
),
o as (
    -- the outages measured: every one (select_outages picks a date range's afterwards)
    select * from o_all
),
shifts as (
    select o.outage_id, w.k,
        o.started_at + to_days(cast(7 * w.k as integer)) as s,
        o.window_end + to_days(cast(7 * w.k as integer)) as e
    from o cross join (select unnest(range(?, ? + 1)) as k) w
    where o.measured
),
windows as (
    select s.* from shifts s join o me on me.outage_id = s.outage_id
    where s.k = 0 or (
        s.s >= cast(? as timestamp) and s.e <= cast(? as timestamp)
        and not exists (
            select 1 from o_all x
            where x.measured and x.started_at < s.e and x.window_end > s.s
              and (x.outage_id = me.outage_id
                   or coalesce({dist_x} < me.radius_km + x.radius_km, true))
        )
    )
),
window_hours as (
    -- windows cut into clock hours: tickets meet them through a hash join on the hour,
    -- far cheaper than a range join over every ticket
    select w.outage_id, w.k, w.s, w.e,
        unnest(generate_series(date_trunc('hour', w.s), w.e, interval 1 hour)) as hr
    from windows w where w.e > w.s
),
located as (
    select date_trunc('hour', t.created_at) as hr,
        t.created_at, t.domain, t.location_lat as lat, t.location_lon as lon,
        t.first_response_min, t.resolution_h,
        t.sla_first_response_met = false as fr_breach,
        t.sla_resolution_met = false as res_breach
    from tickets t
    where {where} and t.location_lat is not null and t.location_lon is not null
),
hits as (
    select w.outage_id, w.k, l.domain, count(*) as n,
        count(l.first_response_min) as fr_n, sum(l.first_response_min) as fr_sum,
        count(l.resolution_h) as res_n, sum(l.resolution_h) as res_sum,
        count(*) filter (where l.fr_breach or l.res_breach) as breaches,
        count(*) filter (where l.fr_breach) as fr_breaches,
        count(*) filter (where l.res_breach) as res_breaches
    from window_hours w
    join located l on l.hr = w.hr
    join o on o.outage_id = w.outage_id
    where l.created_at >= w.s and l.created_at < w.e
        and l.lat between o.lat - {band} and o.lat + {band}
        and {dist_l} <= o.radius_km
    group by w.outage_id, w.k, l.domain
),
weeks as (
    select outage_id, count(*) filter (where k <> 0) as baseline_weeks
    from windows group by outage_id
),
per_outage as (
    select h.outage_id,
        sum(n) filter (where k = 0) as obs_n,
        sum(fr_n) filter (where k = 0) as obs_fr_n,
        sum(fr_sum) filter (where k = 0) as obs_fr_sum,
        sum(res_n) filter (where k = 0) as obs_res_n,
        sum(res_sum) filter (where k = 0) as obs_res_sum,
        sum(breaches) filter (where k = 0) as obs_breaches,
        sum(fr_breaches) filter (where k = 0) as obs_fr_breaches,
        sum(res_breaches) filter (where k = 0) as obs_res_breaches,
        sum(n) filter (where k <> 0) as base_n,
        sum(fr_n) filter (where k <> 0) as base_fr_n,
        sum(fr_sum) filter (where k <> 0) as base_fr_sum,
        sum(res_n) filter (where k <> 0) as base_res_n,
        sum(res_sum) filter (where k <> 0) as base_res_sum,
        sum(breaches) filter (where k <> 0) as base_breaches,
        sum(fr_breaches) filter (where k <> 0) as base_fr_breaches,
        sum(res_breaches) filter (where k <> 0) as base_res_breaches
    from hits h group by h.outage_id
),
per_domain as (
    select h.outage_id, h.domain,
        coalesce(sum(n) filter (where k = 0), 0)
            - coalesce(sum(n) filter (where k <> 0), 0) / nullif(any_value(wk.baseline_weeks), 0)
            as excess
    from hits h join weeks wk on wk.outage_id = h.outage_id
    where h.domain is not null
    group by h.outage_id, h.domain
),
top_domain as (
    select outage_id, arg_max(domain, excess) as top_domain, max(excess) as top_domain_excess
    from per_domain group by outage_id
),
unlocated as (
    select w.outage_id, count(*) as unlocated_tickets
    from window_hours w join tickets t on date_trunc('hour', t.created_at) = w.hr
    where w.k = 0 and t.created_at >= w.s and t.created_at < w.e and {where}
        and (t.location_lat is null or t.location_lon is null)
    group by w.outage_id
),
affected as (
    {affected}
),
counts as (
    select o.*, wk.baseline_weeks,
        case when o.measured
            then date_diff('second', o.started_at, o.window_end) / 3600.0 end as hours,
        case when o.has_area then a.affected_customers end as affected_customers,
        p.* exclude (outage_id),
        case when o.has_area and o.measured then coalesce(p.obs_n, 0) end as n0,
        case when o.has_area and wk.baseline_weeks > 0
            then coalesce(p.base_n, 0) * 1.0 / wk.baseline_weeks end as expected,
        coalesce(u.unlocated_tickets, 0) as unlocated_tickets,
        td.top_domain, td.top_domain_excess
    from o
    left join weeks wk on wk.outage_id = o.outage_id
    left join per_outage p on p.outage_id = o.outage_id
    left join top_domain td on td.outage_id = o.outage_id
    left join unlocated u on u.outage_id = o.outage_id
    left join affected a on a.outage_id = o.outage_id
),
final as (
    select outage_id, location, description, severity, lat, lon, radius_km, started_at,
        window_end as ended_at, ongoing, hours, affected_customers,
        n0 as tickets_in_window,
        expected as expected_tickets,
        baseline_weeks,
        n0 - expected as excess_tickets,
        n0 - expected - {z} * sqrt(n0 + expected / baseline_weeks) as excess_low,
        n0 - expected + {z} * sqrt(n0 + expected / baseline_weeks) as excess_high,
        -- under "no surge" the window and every baseline week share one Poisson mean
        (n0 - expected) / nullif(sqrt(
            (n0 + coalesce(base_n, 0)) / (baseline_weeks + 1.0)
            * (1.0 + 1.0 / baseline_weeks)), 0) as excess_z,
        (n0 - expected) / nullif(affected_customers * hours, 0) as excess_per_customer_hour,
        case when has_area then top_domain end as top_domain,
        case when has_area then top_domain_excess end as top_domain_excess,
        obs_fr_sum / nullif(obs_fr_n, 0) as avg_first_response_min,
        base_fr_sum / nullif(base_fr_n, 0) as baseline_first_response_min,
        obs_fr_sum / nullif(obs_fr_n, 0) - base_fr_sum / nullif(base_fr_n, 0)
            as extra_first_response_min,
        obs_res_sum / nullif(obs_res_n, 0) as avg_resolution_h,
        base_res_sum / nullif(base_res_n, 0) as baseline_resolution_h,
        obs_res_sum / nullif(obs_res_n, 0) - base_res_sum / nullif(base_res_n, 0)
            as extra_resolution_h,
        case when has_area then coalesce(obs_breaches, 0) end as sla_breaches,
        case when expected is not null
            then coalesce(base_breaches, 0) * 1.0 / baseline_weeks end as expected_sla_breaches,
        case when expected is not null then coalesce(obs_breaches, 0)
            - coalesce(base_breaches, 0) * 1.0 / baseline_weeks end as sla_breaches_caused,
        case when expected is not null then coalesce(obs_fr_breaches, 0)
            - coalesce(base_fr_breaches, 0) * 1.0 / baseline_weeks end
            as sla_first_response_breaches_caused,
        case when expected is not null then coalesce(obs_res_breaches, 0)
            - coalesce(base_res_breaches, 0) * 1.0 / baseline_weeks end
            as sla_resolution_breaches_caused,
        unlocated_tickets,
        -- the variance of the excess, for pooling outages of one severity
        n0 + coalesce(base_n, 0) * 1.0 / (baseline_weeks * baseline_weeks) as excess_var
    from counts
)
select * from final order by started_at, outage_id
"""

_AFFECTED_SQL = """
    select o.outage_id, count(c.customer_id) as affected_customers
    from o left join customers c
        on c.lat between o.lat - {band} and o.lat + {band}
        and {dist_c} <= o.radius_km
    group by o.outage_id
"""
_NO_AFFECTED_SQL = "select outage_id, cast(null as bigint) as affected_customers from o"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _need_tickets(wh: Warehouse) -> None:
    if not wh.has_table("tickets"):
        raise CsMetricsError(
            f"The warehouse {wh.path} has no tickets yet; run "
            "`python -m cs_metrics ingest SOURCE` first."
        )


def _check_weeks(baseline_weeks: int) -> None:
    if not isinstance(baseline_weeks, int) or not 1 <= baseline_weeks <= 52:
        raise CsMetricsError(
            f"The baseline spans 1 to 52 weeks on each side, not {baseline_weeks!r}."
        )


def _empty(columns: tuple[str, ...], note: str) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    frame.attrs["notes"] = [note]
    return frame


def _has_values(wh: Warehouse, table: str, *cols: str) -> bool:
    """Whether ``table`` has rows where every one of ``cols`` holds a value."""
    if not wh.has_table(table) or not set(cols) <= set(wh.columns(table)):
        return False
    cond = " and ".join(f"{c} is not null" for c in cols)
    # ``table`` and ``cols`` are fixed names from this module, never user input
    return bool(wh.scalar(f"select exists (select 1 from {table} where {cond})"))


def outage_impact(
    wh: Warehouse,
    filters: Filters | None = None,
    *,
    baseline_weeks: int = BASELINE_WEEKS,
) -> pd.DataFrame:
    """One row per outage: what it cost, measured against the same place in ordinary weeks.

    Columns (``IMPACT_COLUMNS``): the outage (id, location, description, severity, lat, lon,
    radius_km, started_at, ``ended_at`` = its end or, for an ongoing one (``ongoing``), the
    data's as-of moment, ``hours``); ``affected_customers`` (customers within the radius);
    ``tickets_in_window`` (located tickets inside the circle and window), ``expected_tickets``
    (mean of the ``baseline_weeks`` comparable weeks, see the module docstring),
    ``excess_tickets`` with a 95 % interval (``excess_low``, ``excess_high``) and ``excess_z``;
    ``excess_per_customer_hour``; ``top_domain`` (largest excess) and its excess; mean first
    response (min) and resolution (h) in the window, in the baseline weeks, and the ``extra_``
    difference; ``sla_breaches`` (tickets breaching either target) in the window, the
    expected number, and the breaches caused (in total, first response, resolution);
    ``unlocated_tickets`` (created during the window without coordinates, not attributed);
    ``excess_var``, the variance of the excess (so outages can be pooled).

    ``filters``: dimension filters narrow the tickets; the date range picks the outages whose
    window overlaps it. Sorted by ``started_at``. ``frame.attrs["notes"]`` explains missing
    figures.
    """
    filters = filters or Filters()
    return select_outages(
        impact_of_every_outage(wh, filters, baseline_weeks=baseline_weeks), filters
    )


def impact_of_every_outage(
    wh: Warehouse,
    filters: Filters | None = None,
    *,
    baseline_weeks: int = BASELINE_WEEKS,
) -> pd.DataFrame:
    """``outage_impact`` of every outage, whatever the filters' date range.

    An outage's figures do not depend on the date range, which only picks the outages to
    report; so a server works them out once per set of dimension filters and picks each
    visitor's range from them with ``select_outages``. ``frame.attrs`` holds what
    ``select_outages`` needs to write the notes.
    """
    filters = filters or Filters()
    _check_weeks(baseline_weeks)
    _need_tickets(wh)
    if not wh.has_table("outages"):
        return _empty(IMPACT_COLUMNS, "This dataset has no outages table, so there is no "
                                      "outage to measure.")
    as_of = wh.as_of()
    span = wh.created_range()
    if as_of is None or span is None:
        return _empty(IMPACT_COLUMNS, "This dataset has no tickets to measure outages with.")
    notes: list[str] = []
    where, where_params = filter_sql(filters, date_column=None)
    has_customers = _has_values(wh, "customers", "lat", "lon")
    if not has_customers:
        notes.append("This dataset has no customer coordinates, so the customers affected "
                     "and the excess per customer hour are unknown.")
    has_located = _has_values(wh, "tickets", "location_lat", "location_lon")
    if not has_located:
        notes.append("This dataset's tickets have no coordinates (location_lat, "
                     "location_lon), so no ticket can be placed inside an outage's radius.")
    affected = (
        _AFFECTED_SQL.format(band=_BAND, dist_c=_dist("o.lat", "o.lon", "c.lat", "c.lon"))
        if has_customers else _NO_AFFECTED_SQL
    )
    sql = _IMPACT_SQL.format(
        where=where,
        band=_BAND,
        dist_x=_dist("me.lat", "me.lon", "x.lat", "x.lon"),
        dist_l=_dist("o.lat", "o.lon", "l.lat", "l.lon"),
        affected=affected,
        z=repr(Z95),
    )
    plausible = wh.plausible_window()
    params = [
        as_of, as_of, *plausible,
        -baseline_weeks, baseline_weeks,
        span[0], span[1],
        *where_params,  # located
        *where_params,  # unlocated
    ]
    df = wh.df(sql, params)
    outside = int(((df["started_at"] < plausible[0]) | (df["started_at"] > plausible[1]))
                  .sum())
    if outside:
        notes.append(f"{_count(outside, 'outage')} started outside the plausible window "
                     f"{plausible[0]:%Y-%m-%d} – {plausible[1]:%Y-%m-%d} (settings "
                     "ingest.earliest and ingest.latest): their figures are not measured.")
    if not has_located:
        for col in _TICKET_FIGURES:
            df[col] = np.nan if col != "top_domain" else None
    for col in ("affected_customers", "tickets_in_window", "baseline_weeks",
                "unlocated_tickets", "sla_breaches"):
        df[col] = df[col].astype("Int64")
    frame = df[list(IMPACT_COLUMNS)].copy()
    frame.attrs["notes"] = notes
    frame.attrs["has_located"] = has_located
    frame.attrs["every_outage"] = True
    return frame


def select_outages(every: pd.DataFrame, filters: Filters | None = None) -> pd.DataFrame:
    """The outages of ``impact_of_every_outage`` whose window overlaps the filters' date
    range, with their notes: what ``outage_impact`` returns for these filters."""
    filters = filters or Filters()
    notes = list(every.attrs.get("notes", []))
    if not every.attrs.get("every_outage"):  # no outages table or no tickets: as it is
        frame = every.copy()
        frame.attrs["notes"] = notes
        return frame
    # local days of the reporting zone, as UTC moments like the outage windows
    date_from, date_to = (None if d is None else utc_moment(d, filters.tz)
                          for d in (filters.date_from, filters.date_to))
    keep = pd.Series(True, index=every.index)
    if date_from is not None:
        keep &= every["ended_at"] > date_from
    if date_to is not None:
        keep &= every["started_at"] < date_to
    df = every[keep].reset_index(drop=True)
    if df.empty:
        frame = _empty(IMPACT_COLUMNS, "No outage in this dataset overlaps the date range."
                       if filters.date_from or filters.date_to
                       else "This dataset's outages table is empty.")
        frame.attrs["notes"] = notes + frame.attrs["notes"]
        return frame
    unlocated = int(df["unlocated_tickets"].sum())
    if every.attrs.get("has_located") and unlocated:
        notes.append(f"{_count(unlocated, 'ticket')} created during outage windows "
                     f"{'has' if unlocated == 1 else 'have'} no coordinates and "
                     f"{'is' if unlocated == 1 else 'are'} not attributed to any outage.")
    no_area = df["lat"].isna() | df["lon"].isna() | df["radius_km"].isna()
    if no_area.any():
        notes.append("Figures unknown for "
                     f"{_count(int(no_area.sum()), 'outage')} without a centre or radius.")
    no_weeks = ~no_area & (df["baseline_weeks"] == 0)
    if no_weeks.any():
        notes.append("Expected figures unknown for "
                     f"{_count(int(no_weeks.sum()), 'outage')} with no comparable week free "
                     "of outages nearby.")
    df.attrs = {"notes": notes}
    return df


def severity_rates(
    wh: Warehouse,
    filters: Filters | None = None,
    *,
    baseline_weeks: int = BASELINE_WEEKS,
) -> pd.DataFrame:
    """Per severity, pooled excess tickets per affected customer per hour.

    rate = sum(excess_tickets) / sum(affected_customers * hours) over the outages of that
    severity with a known excess and affected customers; ``low``/``high`` is its 95 %
    interval (the outages' Poisson variances add). Columns ``SEVERITY_COLUMNS``; one row per
    severity in ``SEVERITIES`` order, ``outages`` = 0 and NaN figures where none could be
    measured. Pooling weighs each outage by its exposure, so big outages (most information)
    count most. ``frame.attrs["notes"]`` as in ``outage_impact``.
    """
    return pooled_rates(outage_impact(wh, filters, baseline_weeks=baseline_weeks))


def pooled_rates(impact: pd.DataFrame) -> pd.DataFrame:
    """``severity_rates`` of the outages in ``impact`` (a frame of ``outage_impact``)."""
    notes = list(impact.attrs.get("notes", []))
    if impact.empty:
        return _empty(SEVERITY_COLUMNS, notes[-1] if notes else "There are no outages.")
    exposure = impact["affected_customers"].astype("float64") * impact["hours"]
    usable = impact["excess_tickets"].notna() & (exposure > 0)
    rows = []
    for sev in SEVERITIES:
        part = impact[usable & (impact["severity"] == sev)]
        cust_h = float((part["affected_customers"].astype("float64") * part["hours"]).sum())
        if part.empty or cust_h <= 0:
            rows.append((sev, 0, 0.0, 0, 0.0, 0.0, math.nan, math.nan, math.nan))
            continue
        excess = float(part["excess_tickets"].sum())
        half = Z95 * math.sqrt(float(part["excess_var"].sum()))
        rows.append((
            sev, len(part), cust_h, int(part["tickets_in_window"].sum()),
            float(part["expected_tickets"].sum()), excess, excess / cust_h,
            (excess - half) / cust_h, (excess + half) / cust_h,
        ))
    skipped = int((~usable).sum())
    if skipped:
        notes.append(f"Left out of the rates: {_count(skipped, 'outage')} without a "
                     "measurable excess or without affected customers.")
    unknown = int((usable & ~impact["severity"].isin(SEVERITIES)).sum())
    if unknown:
        notes.append(f"Left out of the rates: {_count(unknown, 'outage')} without a "
                     "severity.")
    frame = pd.DataFrame(rows, columns=list(SEVERITY_COLUMNS))
    frame["outages"] = frame["outages"].astype("int64")
    frame["tickets_in_window"] = frame["tickets_in_window"].astype("int64")
    frame.attrs["notes"] = notes
    return frame


def outage_tickets(
    wh: Warehouse,
    outage_id: str,
    filters: Filters | None = None,
    *,
    limit: int = 50,
    offset: int = 0,
) -> TicketPage:
    """One page of the tickets an outage's ``tickets_in_window`` counted, earliest first.

    The drill-down columns plus ``distance_km`` from the outage's centre; the date range of
    ``filters`` does not apply (the window decides), its dimension filters do.
    """
    filters = filters or Filters()
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise CsMetricsError(f"A page holds 1 to {MAX_LIMIT} tickets, not {limit!r}.")
    if not isinstance(offset, int) or offset < 0:
        raise CsMetricsError(f"The offset must be 0 or more, not {offset!r}.")
    _need_tickets(wh)
    if not wh.has_table("outages"):
        raise CsMetricsError("This dataset has no outages table.")
    found = wh.df(
        "select lat, lon, radius_km, started_at, ended_at from outages where outage_id = ?",
        [outage_id],
    )
    if found.empty:
        raise CsMetricsError(f"There is no outage {outage_id!r} in this dataset.")
    o = found.iloc[0]
    if pd.isna(o["lat"]) or pd.isna(o["lon"]) or pd.isna(o["radius_km"]):
        raise CsMetricsError(f"Outage {outage_id!r} has no centre or radius, so no ticket "
                             "can be placed inside it.")
    as_of = wh.as_of()
    end = o["ended_at"] if not pd.isna(o["ended_at"]) else as_of
    if as_of is not None and end is not None:
        end = min(pd.Timestamp(end), pd.Timestamp(as_of))
    where, params = filter_sql(filters, date_column=None)
    own, own_params = wh.listing_sql("t")
    where, params = f"{where} and {own}", [*params, *own_params]
    band = float(o["radius_km"]) / KM_PER_DEGREE_LAT + 1e-6
    # the outage as a one-row relation, so the distance formula names it without parameters
    source = (
        "tickets t, (select cast(? as double) as lat, cast(? as double) as lon, "
        "cast(? as double) as radius_km) o"
    )
    cond = (f"{where} and t.created_at >= ? and t.created_at < ? "
            "and t.location_lat between ? and ? and t.location_lon is not null "
            f"and {_dist('o.lat', 'o.lon', 't.location_lat', 't.location_lon')} <= o.radius_km")
    source_params = [float(o["lat"]), float(o["lon"]), float(o["radius_km"])]
    cond_params = [
        *params,
        pd.Timestamp(o["started_at"]).to_pydatetime(),
        pd.Timestamp(end).to_pydatetime() if end is not None else None,
        float(o["lat"]) - band, float(o["lat"]) + band,
    ]
    total = int(wh.scalar(f"select count(*) from {source} where {cond}",
                          source_params + cond_params) or 0)
    select = ", ".join(
        "t.fb_csat_sum * 1.0 / nullif(t.fb_csat_n, 0) as csat" if c == "csat" else f"t.{c}"
        for c in TICKET_COLUMNS
    )
    distance = _dist("o.lat", "o.lon", "t.location_lat", "t.location_lon")
    rows = wh.df(
        f"select {select}, {distance} as distance_km from {source} where {cond} "
        "order by t.created_at, t.ticket_id limit ? offset ?",
        [*source_params, *cond_params, limit, offset],
    )
    rows = local_columns(rows, ("created_at",), filters.tz)  # in the reporting zone
    return TicketPage(rows=rows, total=total, limit=limit, offset=offset)
