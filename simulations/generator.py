"""Realistic sample data for a telecom / ISP support organisation: every canonical table.

The ticket stream is built from known effects (growth, weekly and yearly seasonality, holidays,
an intraday curve, outage surges, busy-day slowdowns, representative skill and tenure) so the
analytics built on top can be checked against ``truth.json``, which records those effects.

Everything per ticket is vectorised with numpy; Faker only fills the small dimension tables.
Times are handled as integer seconds since the start of the history, which keeps every
timestamp at second precision and makes "before ``end``" a plain integer comparison.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import holidays
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from faker import Faker
from faker.providers.geo import Provider as GeoProvider
from tqdm import tqdm

from cs_metrics.core.geo import haversine_km
from cs_metrics.core.schema import PRIORITIES, SEVERITIES, STATUSES, TABLES
from simulations import _text

__all__ = ["GenerationResult", "generate"]

DAY = 86_400
HOUR = 3_600
# Far beyond any history; marks "never happens" while staying clear of int64 overflow.
NEVER = np.int64(2**62)

TICKETS_PER_DAY = 275
MAX_CUSTOMERS = 150_000
TICKETS_PER_CUSTOMER = 6

# --- arrival process (the true effects written to truth.json) ---------------------------------
GROWTH_PER_YEAR = 0.20
WEEKDAY_RAW = np.array([1.28, 1.16, 1.08, 1.04, 0.97, 0.66, 0.54])
WEEKDAY_FACTORS = WEEKDAY_RAW / WEEKDAY_RAW.mean()
YEARLY_AMPLITUDE = 0.12
YEARLY_PEAK_DAY = 15  # day of year (mid January: winter storms, post-holiday bills)
HOLIDAY_FACTOR = 0.45
DAILY_NOISE_SIGMA = 0.08
HOURLY_WEIGHTS = np.array(
    [0.25, 0.18, 0.14, 0.12, 0.12, 0.18, 0.35, 0.65, 1.00, 1.35, 1.50, 1.45,
     1.25, 1.35, 1.40, 1.30, 1.20, 1.05, 0.95, 0.90, 0.80, 0.65, 0.50, 0.35]
)
HOURLY_SHARE = HOURLY_WEIGHTS / HOURLY_WEIGHTS.sum()
TEST_SHARE = 0.005

# --- outages ---------------------------------------------------------------------------------
OUTAGE_EXCESS = {"minor": 0.003, "major": 0.007, "critical": 0.015}
SEVERITY_P = np.array([0.50, 0.35, 0.15])
SEVERITY_RADIUS = np.array([0.8, 1.0, 1.4])
OUTAGE_DOMAINS = ("internet", "network", "tv", "mobile")
OUTAGE_DOMAIN_P = np.array([0.38, 0.32, 0.15, 0.15])
DAYS_PER_OUTAGE = 20
# Surges are a visible but minor part of the volume; beyond this share they are thinned.
MAX_SURGE_SHARE = 0.25

# --- ticket attributes -----------------------------------------------------------------------
DOMAINS = ("billing", "network", "internet", "tv", "mobile", "account", "technical")
DOMAIN_P = np.array([0.24, 0.12, 0.20, 0.10, 0.14, 0.10, 0.10])
CHANNELS = ("phone", "chat", "email", "web", "social")
# Per domain: billing and account questions lean to email/web, faults to phone.
CHANNEL_P = np.array(
    [
        [0.28, 0.26, 0.26, 0.16, 0.04],  # billing
        [0.42, 0.24, 0.13, 0.13, 0.08],  # network
        [0.38, 0.28, 0.14, 0.13, 0.07],  # internet
        [0.36, 0.28, 0.15, 0.14, 0.07],  # tv
        [0.34, 0.30, 0.14, 0.14, 0.08],  # mobile
        [0.24, 0.26, 0.26, 0.20, 0.04],  # account
        [0.40, 0.24, 0.20, 0.12, 0.04],  # technical
    ]
)
SURGE_CHANNEL_P = np.array([0.45, 0.20, 0.08, 0.12, 0.15])
SEGMENTS = ("M", "S", None)
SEGMENT_P = np.array([0.25, 0.73, 0.02])
# Priority by segment (M, S, unknown): business customers escalate more.
PRIORITY_P = np.array(
    [
        [0.12, 0.50, 0.27, 0.11],
        [0.20, 0.56, 0.18, 0.06],
        [0.22, 0.58, 0.15, 0.05],
    ]
)
SURGE_PRIORITY_P = np.array([0.04, 0.34, 0.40, 0.22])
TEST_CHANNEL_P = np.array([0.0, 0.0, 0.5, 0.5, 0.0])
TEST_PRIORITY_P = np.array([0.5, 0.5, 0.0, 0.0])
CUSTOMER_FIELDS_MISSING = 0.10

TEAMS = (
    "Billing",
    "Accounts & Retention",
    "Network Tier 1",
    "Network Tier 2",
    "Internet Support",
    "TV & Streaming",
    "Mobile",
    "Technical Escalations",
)
AFFINITY = {
    "billing": ("Billing",),
    "network": ("Network Tier 1", "Network Tier 2"),
    "internet": ("Internet Support", "Network Tier 1"),
    "tv": ("TV & Streaming",),
    "mobile": ("Mobile",),
    "account": ("Accounts & Retention", "Billing"),
    "technical": ("Technical Escalations", "Internet Support"),
}
OVERFLOW_SHARE = 0.08  # tickets routed to whoever is free, not to a specialist team

# --- durations -------------------------------------------------------------------------------
FR_MEDIAN_MIN = np.array([2.5, 4.0, 150.0, 100.0, 40.0])  # by channel
FR_PRIORITY_MULT = np.array([1.5, 1.0, 0.6, 0.35])
FR_SIGMA = 0.9
ASYNC_CHANNELS = np.array([False, False, True, True, True])
STAFFED_FROM_HOUR, STAFFED_TO_HOUR = 7, 22
RES_MEDIAN_H = np.array([30.0, 14.0, 5.0, 2.0])  # by priority: the "priority norm"
RES_DOMAIN_MULT = np.array([0.8, 1.4, 1.1, 1.0, 0.9, 0.6, 1.6])
RES_CHANNEL_MULT = np.array([0.6, 0.7, 1.1, 1.0, 1.0])
RES_SIGMA = 1.0
QUICK_FIX_SHARE = 0.35  # phone/chat tickets solved during the first contact
LOAD_ELASTICITY = 1.5
STAFFING_WEEKDAY_MATCH = 0.5  # staffing follows the weekly pattern only half-way
HOLIDAY_STAFFING = 0.6
TENURE_PENALTY = 0.6  # a new hire is 60 % slower, fading with tenure
TENURE_TAU_MONTHS = 3.0
NEVER_RESOLVED_SHARE = 0.003
REOPEN_BASE = 0.06
HANDOVER_SHARE = 0.08  # tickets closed in their first cycle that changed hands once
REOPEN_DOMAIN_MULT = np.array([0.8, 1.5, 1.4, 1.1, 1.0, 0.6, 1.6])
REOPEN_CYCLES_P = np.array([0.80, 0.15, 0.05])
HANDLE_MEDIAN_S = np.array([480.0, 720.0, 360.0, 300.0, 300.0])
HANDLE_DOMAIN_MULT = np.array([0.9, 1.3, 1.2, 1.0, 1.0, 0.8, 1.5])

# --- feedback --------------------------------------------------------------------------------
FEEDBACK_RATE = 0.35
CSAT_CUTS = np.array([-1.1, -0.55, -0.05, 0.7])
NULL_SHARE = {"csat": 0.04, "nps": 0.18, "ces": 0.30}
COMMENT_SHARE = 0.60

STAGES = (
    "dimensions",
    "outages",
    "arrivals",
    "attributes",
    "lifecycle",
    "events",
    "feedback",
    "write",
)

_ARROW_TYPES = {
    "VARCHAR": pa.string(),
    "TIMESTAMP": pa.timestamp("us"),
    "DOUBLE": pa.float64(),
    "INTEGER": pa.int32(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "VARCHAR[]": pa.list_(pa.string()),
}


@dataclass(frozen=True)
class GenerationResult:
    """What ``generate`` wrote: the folder, its files, rows per table and the true effects."""

    out: Path
    files: tuple[Path, ...]
    counts: dict[str, int]
    truth: dict
    seconds: float


def generate(
    out: str | Path,
    tickets: int | None = None,
    days: int = 730,
    seed: int = 7,
    fmt: str = "parquet",
    end: datetime | date | None = None,
    progress: bool = False,
) -> GenerationResult:
    """Write every canonical table plus ``truth.json`` to ``out``; same arguments, same bytes.

    ``tickets`` is the exact number of tickets written (outage surges included); ``None``
    means about 275 a day. The history covers ``[end - days, end)``, ``end`` defaulting to
    today's midnight UTC.
    """
    started = time.perf_counter()
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"format must be 'parquet' or 'csv', not {fmt!r}")
    if int(days) < 1:
        raise ValueError("days must be at least 1")
    days = int(days)
    n_total = round(TICKETS_PER_DAY * days) if tickets is None else int(tickets)
    if n_total < 1:
        raise ValueError("tickets must be at least 1")
    end_dt = _normalise_end(end)
    start_dt = end_dt - timedelta(days=days)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    bar = tqdm(total=len(STAGES), desc="generate", file=sys.stderr, disable=not progress)

    def stage(name: str) -> None:
        bar.set_postfix_str(name)

    def done() -> None:
        bar.update(1)

    end_rel = days * DAY
    start_epoch = int((start_dt - datetime(1970, 1, 1)).total_seconds())

    stage("dimensions")
    cities = _cities(rng)
    n_customers = int(min(MAX_CUSTOMERS, max(50, round(n_total / TICKETS_PER_CUSTOMER))))
    customers = _customers(rng, fake, n_customers, cities)
    reps = _representatives(rng, fake, n_total / days, cities, end_rel)
    done()

    stage("outages")
    outages = _outages(rng, days, cities, end_rel)
    surge = _surge(rng, outages, customers, end_rel, n_total)
    done()

    stage("arrivals")
    cal = _calendar(start_dt, days, rng)
    n_base = n_total - len(surge["created"])
    base_created = _arrivals(rng, cal, n_base)
    done()

    stage("attributes")
    tk = _ticket_attributes(rng, base_created, surge, customers, reps)
    day = tk["created"] // DAY
    daily = np.bincount(day, minlength=days).astype(float)
    capacity = cal["capacity"]
    load = daily / capacity
    load = load / load.mean() if load.mean() > 0 else load
    done()

    stage("lifecycle")
    life = _lifecycle(rng, tk, reps, load[day], start_epoch, end_rel)
    done()

    # labels from a stream of their own: the other tables stay as they were without them
    tk["tags"] = _tags(np.random.default_rng([seed, 21]), tk, life)

    stage("events")
    ticket_ids = _ids("T", len(tk["created"]), 7)
    events, handovers = _events(life, tk, reps, ticket_ids, start_epoch, seed)
    done()

    stage("feedback")
    feedback = _feedback(rng, tk, life, reps, ticket_ids, start_epoch, end_rel)
    done()

    stage("write")
    tables = {
        "tickets": _tickets_table(tk, life, ticket_ids, customers, start_epoch),
        "ticket_events": events,
        "feedback": feedback,
        "representatives": _reps_table(reps, start_dt),
        "customers": _customers_table(customers),
        "outages": _outages_table(outages, start_epoch, end_rel),
    }
    files = []
    counts = {}
    for name in TABLES:
        files.append(_write(tables[name], name, out, fmt))
        counts[name] = tables[name].num_rows
    truth = _truth(seed, end_dt, start_dt, days, tk, cal, outages, surge, customers, reps, counts)
    truth["handed_over_tickets"] = handovers
    truth_path = out / "truth.json"
    truth_path.write_text(json.dumps(truth, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    files.append(truth_path)
    done()
    bar.close()
    return GenerationResult(
        out=out,
        files=tuple(files),
        counts=counts,
        truth=truth,
        seconds=time.perf_counter() - started,
    )


# --- calendar and arrivals ---------------------------------------------------------------------


def _normalise_end(end: datetime | date | None) -> datetime:
    if end is None:
        today = datetime.now(timezone.utc).date()
        return datetime(today.year, today.month, today.day)
    if isinstance(end, datetime):
        if end.tzinfo is not None:
            end = end.astimezone(timezone.utc).replace(tzinfo=None)
        return end.replace(microsecond=0)
    return datetime(end.year, end.month, end.day)


def _calendar(start_dt: datetime, days: int, rng: np.random.Generator) -> dict:
    first = np.datetime64(start_dt.date(), "D")
    dates = first + np.arange(days)
    dow = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    doy = (dates - dates.astype("datetime64[Y]")).astype(np.int64) + 1
    years = range(start_dt.year, start_dt.year + days // 365 + 2)
    us_holidays = holidays.country_holidays("US", years=years)
    is_holiday = np.array([d in us_holidays for d in dates.astype(object)], dtype=bool)
    growth = (1.0 + GROWTH_PER_YEAR) ** (np.arange(days) / 365.25)
    yearly = 1.0 + YEARLY_AMPLITUDE * np.cos(2 * np.pi * (doy - YEARLY_PEAK_DAY) / 365.25)
    weekday = WEEKDAY_FACTORS[dow]
    holiday = np.where(is_holiday, HOLIDAY_FACTOR, 1.0)
    expected = growth * yearly * weekday * holiday
    noise = np.exp(rng.normal(0.0, DAILY_NOISE_SIGMA, days) - DAILY_NOISE_SIGMA**2 / 2)
    capacity = (
        growth
        * yearly
        * weekday**STAFFING_WEEKDAY_MATCH
        * np.where(is_holiday, HOLIDAY_STAFFING, 1.0)
    )
    return {
        "dates": dates,
        "dow": dow,
        "is_holiday": is_holiday,
        "expected": expected,
        "intensity": expected * noise,
        "capacity": capacity,
        "start_tod": (start_dt - datetime(start_dt.year, start_dt.month, start_dt.day)).seconds,
    }


def _arrivals(rng: np.random.Generator, cal: dict, n: int) -> np.ndarray:
    p = cal["intensity"] / cal["intensity"].sum()
    per_day = rng.multinomial(n, p)
    day = np.repeat(np.arange(len(p), dtype=np.int64), per_day)
    hour = rng.choice(24, size=n, p=HOURLY_SHARE)
    second = rng.integers(0, HOUR, size=n)
    # The intraday curve is on the clock; a day bin may start at any clock time.
    offset = (hour * HOUR + second - cal["start_tod"]) % DAY
    return day * DAY + offset


# --- dimensions --------------------------------------------------------------------------------


def _cities(rng: np.random.Generator, n: int = 48) -> dict:
    # Real US places with real coordinates from Faker's geo provider; city sizes follow a
    # Zipf-like law, which is how populations of cities are distributed.
    us = sorted({(c[2], float(c[0]), float(c[1])) for c in GeoProvider.land_coords if c[3] == "US"})
    # Several places share a name in different states; keep one of each so names identify.
    unique = {}
    for name, lat, lon in us:
        unique.setdefault(name, (lat, lon))
    names = sorted(unique)
    pick = rng.choice(len(names), size=min(n, len(names)), replace=False)
    chosen = [names[i] for i in pick]
    weight = 1.0 / np.arange(1, len(chosen) + 1) ** 0.9
    return {
        "name": chosen,
        "lat": np.array([unique[c][0] for c in chosen]),
        "lon": np.array([unique[c][1] for c in chosen]),
        "p": weight / weight.sum(),
    }


def _jitter(rng: np.random.Generator, lat: np.ndarray, lon: np.ndarray, scale_km: float):
    dist = rng.rayleigh(scale_km, size=len(lat))
    angle = rng.uniform(0.0, 2 * np.pi, size=len(lat))
    dlat = dist * np.cos(angle) / 111.32
    dlon = dist * np.sin(angle) / (111.32 * np.cos(np.radians(lat)))
    return np.round(lat + dlat, 5), np.round(lon + dlon, 5)


def _pool(make, n: int) -> list[str]:
    # Faker repeats itself; a pool of distinct values keeps the mix even.
    return list(dict.fromkeys(make() for _ in range(n)))


def _customers(rng: np.random.Generator, fake: Faker, n: int, cities: dict) -> dict:
    firsts = pa.array(_pool(fake.first_name, 400))
    lasts = pa.array(_pool(fake.last_name, 400))
    companies = pa.array(_pool(fake.company, 400))
    segment = rng.choice(len(SEGMENTS), size=n, p=SEGMENT_P)
    city = rng.choice(len(cities["name"]), size=n, p=cities["p"])
    lat, lon = _jitter(rng, cities["lat"][city], cities["lon"][city], 3.0)
    person = pc.binary_join_element_wise(
        firsts.take(pa.array(rng.integers(0, len(firsts), n))),
        lasts.take(pa.array(rng.integers(0, len(lasts), n))),
        " ",
    )
    company = companies.take(pa.array(rng.integers(0, len(companies), n)))
    is_business = segment == 0
    name = pc.if_else(pa.array(is_business), company, person)
    value = np.where(
        is_business,
        rng.lognormal(np.log(9_000.0), 0.9, n),
        rng.lognormal(np.log(720.0), 0.45, n),
    )
    activity = rng.lognormal(0.0, 0.8, n) * np.where(is_business, 1.5, 1.0)
    return {
        "n": n,
        "segment": segment,
        "city": city,
        "city_names": cities["name"],
        "lat": lat,
        "lon": lon,
        "name": name,
        "annual_value": np.round(value, 2),
        "p": activity / activity.sum(),
    }


def _representatives(
    rng: np.random.Generator, fake: Faker, per_day: float, cities: dict, end_rel: int
) -> dict:
    n = int(np.clip(round(20 + per_day / 5), 40, 120))
    n_teams = len(TEAMS)
    # Teams sized by the volume they serve; every team keeps at least three people.
    team_weight = np.zeros(n_teams)
    for d, p in zip(DOMAINS, DOMAIN_P, strict=True):
        for t in AFFINITY[d]:
            team_weight[TEAMS.index(t)] += p / len(AFFINITY[d])
    team = np.concatenate(
        [
            np.repeat(np.arange(n_teams), 3),
            rng.choice(n_teams, size=n - 3 * n_teams, p=team_weight / team_weight.sum()),
        ]
    )
    history_days = end_rel // DAY
    veteran = rng.random(n) < 0.7
    veteran[: 2 * n_teams] = True  # every team is staffed from day one
    before = -rng.integers(30, 2_500, size=n)
    latest = max(1, history_days - 30)
    during = rng.integers(0, latest, size=n)
    hire_day = np.where(veteran, before, during).astype(np.int64)
    order = np.lexsort((np.arange(n), hire_day))
    team, hire_day = team[order], hire_day[order]
    # Contact centres sit in the largest cities.
    hub_p = np.array([0.5, 0.3, 0.2])[: len(cities["name"])]
    location = rng.choice(len(hub_p), size=n, p=hub_p / hub_p.sum())
    names = [fake.name() for _ in range(n)]
    managers = [fake.name() for _ in range(n_teams)]
    return {
        "n": n,
        "team": team,
        "hire_rel": hire_day * DAY,
        "hire_day": hire_day,
        "skill": rng.lognormal(0.0, 0.25, n),
        "capacity": rng.uniform(0.6, 1.2, n),
        "name": names,
        "managers": managers,
        "location": [cities["name"][i] for i in location],
    }


# --- outages -----------------------------------------------------------------------------------


def _outages(rng: np.random.Generator, days: int, cities: dict, end_rel: int) -> dict:
    n = max(2, round(days / DAYS_PER_OUTAGE))
    # Leave a few quiet weeks first so every surge has a baseline to compare with.
    lead = min(21 * DAY, end_rel // 4)
    started = np.sort(rng.integers(lead, max(lead + 1, end_rel - 2 * HOUR), size=n))
    hours = np.clip(rng.lognormal(np.log(8.0), 0.8, n), 2.0, 48.0)
    ended = started + np.round(hours * HOUR).astype(np.int64)
    severity = rng.choice(len(SEVERITIES), size=n, p=SEVERITY_P)
    domain = rng.choice(len(OUTAGE_DOMAINS), size=n, p=OUTAGE_DOMAIN_P)
    # Plant spreads less than population does, so small towns get their share of faults.
    spread = np.sqrt(cities["p"])
    city = rng.choice(len(cities["name"]), size=n, p=spread / spread.sum())
    lat, lon = _jitter(rng, cities["lat"][city], cities["lon"][city], 2.0)
    radius = np.round(
        np.clip(rng.lognormal(np.log(14.0), 0.6, n) * SEVERITY_RADIUS[severity], 5.0, 60.0), 1
    )
    descriptions = []
    for i in range(n):
        d = OUTAGE_DOMAINS[domain[i]]
        causes = _text.OUTAGE_CAUSES[d]
        cause = causes[rng.integers(len(causes))]
        place = cities["name"][city[i]]
        descriptions.append(
            f"{cause} affecting {_text.OUTAGE_SERVICE[d]} service in the {place} area"
        )
    return {
        "n": n,
        "started": started.astype(np.int64),
        "ended": ended,
        "severity": severity,
        "domain": domain,
        "location": [cities["name"][i] for i in city],
        "lat": lat,
        "lon": lon,
        "radius": radius,
        "description": descriptions,
    }


def _surge(
    rng: np.random.Generator, outages: dict, customers: dict, end_rel: int, n_total: int
) -> dict:
    created, cust, domain, outage = [], [], [], []
    affected, expected, window_h = [], [], []
    for i in range(outages["n"]):
        dist = haversine_km(
            outages["lat"][i], outages["lon"][i], customers["lat"], customers["lon"]
        )
        inside = np.flatnonzero(dist <= outages["radius"][i])
        start, stop = outages["started"][i], min(outages["ended"][i], end_rel)
        hours = (stop - start) / HOUR
        rate = OUTAGE_EXCESS[SEVERITIES[outages["severity"][i]]]
        mean = rate * len(inside) * hours
        k = int(rng.poisson(mean)) if len(inside) else 0
        created.append(rng.integers(start, stop, size=k))
        cust.append(inside[rng.integers(0, max(1, len(inside)), size=k)])
        domain.append(np.full(k, DOMAINS.index(OUTAGE_DOMAINS[outages["domain"][i]])))
        outage.append(np.full(k, i))
        affected.append(len(inside))
        expected.append(mean)
        window_h.append(hours)
    counts = np.array([len(c) for c in created])
    thinning = 1.0
    cap = int(MAX_SURGE_SHARE * n_total)
    if counts.sum() > cap:
        thinning = cap / counts.sum()
        for i in range(len(created)):
            keep = rng.random(len(created[i])) < thinning
            created[i], cust[i] = created[i][keep], cust[i][keep]
            domain[i], outage[i] = domain[i][keep], outage[i][keep]
    return {
        "created": np.concatenate(created).astype(np.int64),
        "customer": np.concatenate(cust).astype(np.int64),
        "domain": np.concatenate(domain).astype(np.int64),
        "outage": np.concatenate(outage).astype(np.int64),
        "affected": affected,
        "expected": [e * thinning for e in expected],
        "generated": [len(c) for c in created],
        "hours": window_h,
        "thinning": thinning,
    }


# --- tickets -----------------------------------------------------------------------------------


def _choice_rows(rng: np.random.Generator, probs: np.ndarray, group: np.ndarray) -> np.ndarray:
    """One categorical draw per row, with the row's probabilities ``probs[group]``."""
    cum = np.cumsum(probs, axis=1)[group]
    u = rng.random(len(group))[:, None]
    return np.minimum((u >= cum).sum(axis=1), probs.shape[1] - 1)


def _ticket_attributes(
    rng: np.random.Generator, base_created: np.ndarray, surge: dict, customers: dict, reps: dict
) -> dict:
    nb, ns = len(base_created), len(surge["created"])
    n = nb + ns
    customer = np.concatenate([rng.choice(customers["n"], size=nb, p=customers["p"]),
                               surge["customer"]])
    is_test = np.concatenate([rng.random(nb) < TEST_SHARE, np.zeros(ns, dtype=bool)])
    is_surge = np.concatenate([np.zeros(nb, dtype=bool), np.ones(ns, dtype=bool)])
    domain = np.concatenate([rng.choice(len(DOMAINS), size=nb, p=DOMAIN_P), surge["domain"]])
    seg = customers["segment"][customer]
    channel = _choice_rows(rng, CHANNEL_P, domain)
    priority = _choice_rows(rng, PRIORITY_P, seg)
    channel[is_surge] = rng.choice(len(CHANNELS), size=ns, p=SURGE_CHANNEL_P)
    priority[is_surge] = rng.choice(len(PRIORITIES), size=ns, p=SURGE_PRIORITY_P)
    n_test = int(is_test.sum())
    channel[is_test] = rng.choice(len(CHANNELS), size=n_test, p=TEST_CHANNEL_P)
    priority[is_test] = rng.choice(len(PRIORITIES), size=n_test, p=TEST_PRIORITY_P)

    # One subject vocabulary: per-domain subjects, then outage subjects, then test subjects.
    vocab: list[str] = []
    off_normal, cnt_normal, off_outage, cnt_outage = [], [], [], []
    for d in DOMAINS:
        off_normal.append(len(vocab))
        cnt_normal.append(len(_text.SUBJECTS[d]))
        vocab.extend(_text.SUBJECTS[d])
    for d in DOMAINS:
        outage_subjects = _text.OUTAGE_SUBJECTS.get(d, _text.SUBJECTS[d])
        off_outage.append(len(vocab))
        cnt_outage.append(len(outage_subjects))
        vocab.extend(outage_subjects)
    off_test = len(vocab)
    vocab.extend(_text.TEST_SUBJECTS)
    u = rng.random(n)
    subject = np.where(
        is_surge,
        np.array(off_outage)[domain] + (u * np.array(cnt_outage)[domain]).astype(np.int64),
        np.array(off_normal)[domain] + (u * np.array(cnt_normal)[domain]).astype(np.int64),
    )
    subject[is_test] = off_test + rng.integers(0, len(_text.TEST_SUBJECTS), size=n_test)

    created = np.concatenate([base_created, surge["created"]])
    order = np.argsort(created, kind="stable")
    tk = {
        "created": created,
        "customer": customer,
        "is_test": is_test,
        "is_surge": is_surge,
        "domain": domain,
        "channel": channel,
        "priority": priority,
        "subject": subject,
    }
    tk = {k: v[order] for k, v in tk.items()}
    tk["subject_vocab"] = vocab
    tk["customer_fields_missing"] = rng.random(n) < CUSTOMER_FIELDS_MISSING
    tk["rep"] = _assign_reps(rng, tk["created"], tk["domain"], reps)
    return tk


def _assign_reps(
    rng: np.random.Generator, created: np.ndarray, domain: np.ndarray, reps: dict
) -> np.ndarray:
    """Pick a representative hired before the ticket, from the domain's teams, by capacity."""
    n = len(created)
    rep = np.zeros(n, dtype=np.int64)
    overflow = rng.random(n) < OVERFLOW_SHARE
    u = rng.random(n)
    groups = [(np.flatnonzero(~overflow & (domain == d)), AFFINITY[name])
              for d, name in enumerate(DOMAINS)]
    groups.append((np.flatnonzero(overflow), TEAMS))
    for rows, teams in groups:
        members = np.flatnonzero(np.isin(reps["team"], [TEAMS.index(t) for t in teams]))
        # reps are sorted by hire date, so the eligible ones are a prefix of ``members``.
        hire = reps["hire_rel"][members]
        cum = np.cumsum(reps["capacity"][members])
        k = np.maximum(np.searchsorted(hire, created[rows], side="right"), 1)
        pick = np.searchsorted(cum, u[rows] * cum[k - 1], side="right")
        rep[rows] = members[np.minimum(pick, k - 1)]
    return rep


def _lifecycle(
    rng: np.random.Generator,
    tk: dict,
    reps: dict,
    load: np.ndarray,
    start_epoch: int,
    end_rel: int,
) -> dict:
    n = len(tk["created"])
    created, ch, pri, dom = tk["created"], tk["channel"], tk["priority"], tk["domain"]
    rep = tk["rep"]
    tenure_months = (created - reps["hire_rel"][rep]) / (30.44 * DAY)
    rep_factor = reps["skill"][rep] * (
        1.0 + TENURE_PENALTY * np.exp(-np.maximum(tenure_months, 0.0) / TENURE_TAU_MONTHS)
    )
    busy = np.clip(load, 0.4, 3.0) ** LOAD_ELASTICITY

    fr_norm_s = FR_MEDIAN_MIN[ch] * FR_PRIORITY_MULT[pri] * 60.0
    fr = fr_norm_s * rep_factor * busy * rng.lognormal(0.0, FR_SIGMA, n)
    # Written channels wait for the morning shift when they arrive at night.
    tod = (start_epoch + created) % DAY
    night = (tod < STAFFED_FROM_HOUR * HOUR) | (tod >= STAFFED_TO_HOUR * HOUR)
    wait = (STAFFED_FROM_HOUR * HOUR - tod) % DAY
    fr = np.where(ASYNC_CHANNELS[ch] & night, fr + wait, fr)
    fr = np.maximum(np.ceil(fr), 5).astype(np.int64)

    res_norm_h = RES_MEDIAN_H[pri] * RES_DOMAIN_MULT[dom] * RES_CHANNEL_MULT[ch]
    quick = (ch <= 1) & (rng.random(n) < QUICK_FIX_SHARE)
    work = np.where(
        quick,
        rng.lognormal(np.log(600.0), 0.6, n),
        res_norm_h * HOUR * rep_factor * busy**0.6 * rng.lognormal(0.0, RES_SIGMA, n),
    )
    work = np.maximum(np.ceil(work), 60).astype(np.int64)
    never = rng.random(n) < NEVER_RESOLVED_SHARE

    p_reopen = REOPEN_BASE * REOPEN_DOMAIN_MULT[dom] * rep_factor * np.where(quick, 1.6, 1.0)
    reopen = (rng.random(n) < np.minimum(p_reopen, 0.5)) & ~never & ~tk["is_test"]
    cycles = np.where(reopen, rng.choice(3, size=n, p=REOPEN_CYCLES_P) + 1, 0)

    # Event times: open, in_progress, closed, then (open, in_progress, closed) per reopen.
    times = np.empty((n, 12), dtype=np.int64)
    times[:, 0] = created
    times[:, 1] = created + fr
    times[:, 2] = np.where(never, NEVER, times[:, 1] + work)
    for c in range(1, 4):
        gap = np.maximum(rng.lognormal(np.log(30 * HOUR), 1.0, n), 600).astype(np.int64)
        resp = np.maximum(rng.lognormal(np.log(45 * 60), 1.0, n), 30).astype(np.int64)
        again = res_norm_h * HOUR * 0.5 * rep_factor * rng.lognormal(0.0, RES_SIGMA, n)
        again = np.maximum(again, 120).astype(np.int64)
        times[:, 3 * c] = np.minimum(times[:, 3 * c - 1] + gap, NEVER)
        times[:, 3 * c + 1] = np.minimum(times[:, 3 * c] + resp, NEVER)
        times[:, 3 * c + 2] = np.minimum(times[:, 3 * c + 1] + again, NEVER)
    exists = np.arange(12)[None, :] < 3 * (cycles[:, None] + 1)
    valid = exists & (times < end_rel)
    # Times only grow along a row, so the valid events are a prefix and its length says all.
    n_valid = valid.sum(axis=1)
    last = times[np.arange(n), n_valid - 1]
    status = (n_valid - 1) % 3
    responded = n_valid >= 2
    reopened = (n_valid - 1) // 3

    extra = rng.poisson(
        0.12 + 0.25 * (work > 48 * HOUR) + 0.10 * ASYNC_CHANNELS[ch], size=n
    )
    contacts = np.minimum(1 + reopened + extra, 8)
    handle = (
        HANDLE_MEDIAN_S[ch]
        * HANDLE_DOMAIN_MULT[dom]
        * contacts**0.8
        * np.sqrt(rep_factor)
        * rng.lognormal(0.0, 0.45, n)
    )
    handle = np.maximum(np.round(handle), 30).astype(np.int64)
    return {
        "times": times,
        "valid": valid,
        "status": status,
        "responded": responded,
        "first_response": times[:, 1],
        "resolved": last,
        "closed": status == 2,
        "reopened": reopened,
        "contacts": contacts,
        "handle": handle,
        "fr_norm_s": fr_norm_s,
        "rep_factor": rep_factor,
    }


def _events(life: dict, tk: dict, reps: dict, ticket_ids: pa.Array, start_epoch: int,
            seed: int) -> tuple[pa.Table, int]:
    """The status history, and how many tickets were handed over.

    A share of the tickets closed in their first cycle (``HANDOVER_SHARE``) were first taken
    by another representative of the domain's teams, who handed them part-way through the
    work to the representative who closed them: their first in-progress event names the
    first taker, and a second in-progress event names the closer (one reassignment). The
    handovers come from a stream of their own, so every other table stays as it was."""
    valid, times = life["valid"], life["times"]
    rows, cols = np.nonzero(valid)
    at = times[rows, cols]
    status = cols % 3
    rep = tk["rep"][rows]
    rng = np.random.default_rng([seed, 22])
    n = len(tk["created"])
    taker = _assign_reps(rng, tk["created"], tk["domain"], reps)
    t1, t2 = times[:, 1], times[:, 2]
    handed = (valid[:, 2] & (rng.random(n) < HANDOVER_SHARE) & (taker != tk["rep"])
              & (t2 - t1 >= 2))  # room for the handover strictly inside the work
    rep = np.where((cols == 1) & handed[rows], taker[rows], rep)
    h = np.flatnonzero(handed)
    when = t1[h] + ((t2[h] - t1[h]) * rng.uniform(0.2, 0.8, len(h))).astype(np.int64)
    when = np.clip(when, t1[h] + 1, t2[h] - 1)
    rows = np.concatenate([rows, h])
    at = np.concatenate([at, when])
    status = np.concatenate([status, np.ones(len(h), dtype=status.dtype)])
    rep = np.concatenate([rep, tk["rep"][h]])
    order = np.lexsort((at, rows))  # by ticket, then in time
    rows, at, status, rep = rows[order], at[order], status[order], rep[order]
    table = _table(
        "ticket_events",
        {
            "ticket_id": ticket_ids.take(pa.array(rows)),
            "event_at": _ts(start_epoch, at),
            "status": _take(STATUSES, status),
            "rep_id": _rep_ids(rep, status == 0),
        },
    )
    return table, len(h)


def _feedback(
    rng: np.random.Generator,
    tk: dict,
    life: dict,
    reps: dict,
    ticket_ids: pa.Array,
    start_epoch: int,
    end_rel: int,
) -> pa.Table:
    eligible = life["closed"] & ~tk["is_test"]
    respond = eligible & (rng.random(len(eligible)) < FEEDBACK_RATE)
    idx = np.flatnonzero(respond)
    delay = np.maximum(rng.lognormal(np.log(5 * HOUR), 1.2, len(idx)), 120).astype(np.int64)
    submitted = life["resolved"][idx] + delay
    keep = submitted < end_rel
    idx, submitted = idx[keep], submitted[keep]
    order = np.lexsort((idx, submitted))
    idx, submitted = idx[order], submitted[order]
    m = len(idx)

    pri, dom = tk["priority"][idx], tk["domain"][idx]
    res_h = (life["resolved"][idx] - tk["created"][idx]) / HOUR
    slow = np.clip(np.log(np.maximum(res_h, 1 / 60) / RES_MEDIAN_H[pri]), -2.0, 4.0)
    fr_slow = np.clip(np.log(life["first_response"][idx] - tk["created"][idx])
                      - np.log(life["fr_norm_s"][idx]), -2.0, 3.0)
    reopened = life["reopened"][idx]
    extra_contacts = life["contacts"][idx] - 1 - reopened
    z = (
        1.0
        - 0.45 * slow
        - 0.9 * np.minimum(reopened, 2)
        - 0.3 * extra_contacts
        - 0.15 * fr_slow
        - 0.6 * np.log(reps["skill"][tk["rep"][idx]])
    )
    z_csat = z + rng.normal(0.0, 0.8, m)
    csat = 1 + np.searchsorted(CSAT_CUTS, z_csat)
    nps = np.clip(np.round(6.7 + 2.0 * (z + rng.normal(0.0, 0.9, m))), 0, 10).astype(np.int64)
    # CES is effort (1 easy .. 7 hard), as the metric registry reads it: it rises when csat falls.
    ces = np.clip(np.round(3.1 - 1.1 * (z + rng.normal(0.0, 0.9, m))), 1, 7).astype(np.int64)
    nps_null = rng.random(m) < NULL_SHARE["nps"]
    ces_null = rng.random(m) < NULL_SHARE["ces"]
    has_comment = rng.random(m) < COMMENT_SHARE
    # A survey row always carries something: an all-empty answer is no response at all.
    csat_null = (rng.random(m) < NULL_SHARE["csat"]) & ~(nps_null & ces_null & ~has_comment)

    tone = np.where(csat <= 2, 0, np.where(csat == 3, 1, 2))
    comments = _comments(rng, tone, dom, slow, reopened)
    return _table(
        "feedback",
        {
            "feedback_id": _ids("F", m, 7),
            "ticket_id": ticket_ids.take(pa.array(idx)),
            "submitted_at": _ts(start_epoch, submitted),
            "csat": pa.array(csat.astype(np.int32), mask=csat_null),
            "nps": pa.array(nps.astype(np.int32), mask=nps_null),
            "ces": pa.array(ces.astype(np.int32), mask=ces_null),
            "comment": pa.array(comments, pa.string(), mask=~has_comment),
        },
    )


def _comments(
    rng: np.random.Generator,
    tone: np.ndarray,
    domain: np.ndarray,
    slow: np.ndarray,
    reopened: np.ndarray,
) -> list[str]:
    m = len(tone)
    u_open, u_topic, u_detail, u_close, u_use = (rng.random(m) for _ in range(5))
    fact = np.where(
        (tone == 0) & (reopened > 0),
        1,
        np.where((tone <= 1) & (slow > 1.0), 2, np.where((tone == 2) & (slow < -0.5), 3, 0)),
    )
    fact = np.where(u_use < 0.65, fact, 0)
    details = ((), _text.REOPEN_DETAILS, _text.SLOW_DETAILS, _text.FAST_DETAILS)
    topics = {d: tuple(tuple(s[0].upper() + s[1:] + "." for s in t) for t in _text.TOPICS[d])
              for d in DOMAINS}
    out = []
    for i in range(m):
        t = tone[i]
        openers, closers = _text.OPENERS[t], _text.CLOSERS[t]
        topic = topics[DOMAINS[domain[i]]][t]
        parts = [
            openers[int(u_open[i] * len(openers))],
            topic[int(u_topic[i] * len(topic))],
        ]
        f = fact[i]
        if f:
            parts.append(details[f][int(u_detail[i] * len(details[f]))])
        parts.append(closers[int(u_close[i] * len(closers))])
        out.append(" ".join(p for p in parts if p))
    return out


# --- arrow tables and files --------------------------------------------------------------------


def _ids(prefix: str, n: int, width: int) -> pa.Array:
    nums = pa.array(np.arange(1, n + 1, dtype=np.int64)).cast(pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(nums, width=width, padding="0"), "")


def _take(vocab, codes: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return pa.array(list(vocab), pa.string()).take(pa.array(codes, mask=null))


def _ts(start_epoch: int, rel: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    if null is not None:
        rel = np.where(null, 0, rel)  # NEVER would overflow once turned into microseconds
    micros = (np.int64(start_epoch) + rel.astype(np.int64)) * 1_000_000
    return pa.array(micros, type=pa.timestamp("us"), mask=null)


def _rep_ids(rep: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return _take([f"R{i + 1:04d}" for i in range(int(rep.max(initial=0)) + 1)], rep, null)


def _table(name: str, columns: dict[str, pa.Array]) -> pa.Table:
    spec = TABLES[name]
    schema = pa.schema([pa.field(c.name, _ARROW_TYPES[c.type]) for c in spec.columns])
    arrays = [columns[c].cast(schema.field(c).type) for c in spec.column_names]
    return pa.Table.from_arrays(arrays, schema=schema)


def _tickets_table(
    tk: dict, life: dict, ticket_ids: pa.Array, customers: dict, start_epoch: int
) -> pa.Table:
    cust = tk["customer"]
    no_customer = tk["is_test"]
    missing = no_customer | tk["customer_fields_missing"]
    city = customers["city"][cust]
    segment = customers["segment"][cust]
    unknown_segment = segment == SEGMENTS.index(None)
    not_responded = ~life["responded"]
    return _table(
        "tickets",
        {
            "ticket_id": ticket_ids,
            "created_at": _ts(start_epoch, tk["created"]),
            "status": _take(STATUSES, life["status"]),
            "first_response_at": _ts(start_epoch, life["first_response"], not_responded),
            "resolved_at": _ts(start_epoch, life["resolved"], ~life["closed"]),
            "priority": _take(PRIORITIES, tk["priority"]),
            "channel": _take(CHANNELS, tk["channel"]),
            "domain": _take(DOMAINS, tk["domain"]),
            "location": _take(customers["city_names"], city, no_customer),
            "location_lat": pa.array(customers["lat"][cust], mask=no_customer),
            "location_lon": pa.array(customers["lon"][cust], mask=no_customer),
            "customer_id": _customer_ids(cust, no_customer),
            "customer_location": _take(customers["city_names"], city, missing),
            "customer_segment": _take(
                [s or "" for s in SEGMENTS], segment, missing | unknown_segment
            ),
            "rep_id": _rep_ids(tk["rep"], not_responded),
            "contacts": pa.array(life["contacts"].astype(np.int32), mask=not_responded),
            "reopened_count": pa.array(life["reopened"].astype(np.int32)),
            "handle_time_s": pa.array(life["handle"].astype(np.int32), mask=not_responded),
            "subject": _take(tk["subject_vocab"], tk["subject"]),
            "is_test": pa.array(tk["is_test"]),
            "tags": tk["tags"],
            # the sample's SLA is judged by the settings' policies, not by source due times
            "first_response_due_at": pa.nulls(len(ticket_ids), pa.timestamp("us")),
            "resolution_due_at": pa.nulls(len(ticket_ids), pa.timestamp("us")),
        },
    )


# Helpdesk labels: (label, domain it belongs to or None for any, share of those tickets).
TAG_RULES: tuple[tuple[str, str | None, float], ...] = (
    ("refund", "billing", 0.35),
    ("invoice", "billing", 0.25),
    ("outage", "network", 0.30),
    ("slow-speed", "internet", 0.35),
    ("router", "internet", 0.20),
    ("channel-missing", "tv", 0.30),
    ("roaming", "mobile", 0.25),
    ("password-reset", "account", 0.40),
    ("bug", "technical", 0.35),
    ("follow-up", None, 0.10),
    ("feature-request", None, 0.04),
)


def _tags(rng: np.random.Generator, tk: dict, life: dict) -> pa.Array:
    """Each ticket's labels (a list, sorted; null when it has none): domain labels, a
    `vip` label on urgent tickets, `escalated` on reopened ones, a few general labels."""
    n = len(tk["created"])
    draws = rng.random((n, len(TAG_RULES)))
    domain = tk["domain"]
    chosen: list[np.ndarray] = []
    for k, (_label, dom, share) in enumerate(TAG_RULES):
        ok = draws[:, k] < share
        if dom is not None:
            ok &= domain == DOMAINS.index(dom)
        chosen.append(ok)
    vip = (tk["priority"] == PRIORITIES.index("urgent")) & (rng.random(n) < 0.5)
    escalated = life["reopened"] > 0
    labels = [label for label, _, _ in TAG_RULES] + ["vip", "escalated"]
    flags = np.column_stack([*chosen, vip, escalated]) & ~tk["is_test"][:, None]
    order = np.argsort(labels)  # stored sorted, as ingest stores them
    flags, names = flags[:, order], [labels[i] for i in order]
    counts = flags.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    values = pa.array(np.array(names, dtype=object)[np.nonzero(flags)[1]], pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets), values,
                                    mask=pa.array(counts == 0))


def _customer_ids(cust: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    ids = _ids("C", int(cust.max(initial=0)) + 1, 6)
    return ids.take(pa.array(cust, mask=null))


def _customers_table(customers: dict) -> pa.Table:
    n = customers["n"]
    segment = customers["segment"]
    return _table(
        "customers",
        {
            "customer_id": _ids("C", n, 6),
            "name": customers["name"],
            "segment": _take([s or "" for s in SEGMENTS], segment,
                             segment == SEGMENTS.index(None)),
            "city": _take(customers["city_names"], customers["city"]),
            "lat": pa.array(customers["lat"]),
            "lon": pa.array(customers["lon"]),
            "annual_value": pa.array(customers["annual_value"]),
        },
    )


def _reps_table(reps: dict, start_dt: datetime) -> pa.Table:
    start_day = np.datetime64(start_dt.date(), "D").astype(np.int64)
    return _table(
        "representatives",
        {
            "rep_id": _rep_ids(np.arange(reps["n"])),
            "name": pa.array(reps["name"], pa.string()),
            "team": _take(TEAMS, reps["team"]),
            "manager": _take(reps["managers"], reps["team"]),
            "hired_at": pa.array((start_day + reps["hire_day"]).astype(np.int32), pa.date32()),
            "location": pa.array(reps["location"], pa.string()),
        },
    )


def _outages_table(outages: dict, start_epoch: int, end_rel: int) -> pa.Table:
    return _table(
        "outages",
        {
            "outage_id": _ids("O", outages["n"], 4),
            "location": pa.array(outages["location"], pa.string()),
            "lat": pa.array(outages["lat"]),
            "lon": pa.array(outages["lon"]),
            "radius_km": pa.array(outages["radius"]),
            "started_at": _ts(start_epoch, outages["started"]),
            "ended_at": _ts(start_epoch, outages["ended"], outages["ended"] >= end_rel),
            "severity": _take(SEVERITIES, outages["severity"]),
            "description": pa.array(outages["description"], pa.string()),
        },
    )


def _write(table: pa.Table, name: str, out: Path, fmt: str) -> Path:
    path = out / f"{name}.{fmt}"
    if fmt == "parquet":
        pq.write_table(table, path, compression="zstd")
        return path
    # Second-precision timestamps print as "YYYY-MM-DD HH:MM:SS", without fractions.
    cast = pa.schema(
        [
            pa.field(f.name, pa.timestamp("s") if pa.types.is_timestamp(f.type) else f.type)
            for f in table.schema
        ]
    )
    for i, f in enumerate(table.schema):
        if pa.types.is_list(f.type):  # CSV holds a list as text separated by commas
            table = table.set_column(i, f.name, pc.binary_join(table.column(i), ","))
            cast = cast.set(i, pa.field(f.name, pa.string()))
    with open(path, "wb") as fh:
        fh.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(
            table.cast(cast),
            fh,
            pacsv.WriteOptions(include_header=False, quoting_style="needed"),
        )
    return path


# --- truth -------------------------------------------------------------------------------------


def _truth(
    seed: int,
    end_dt: datetime,
    start_dt: datetime,
    days: int,
    tk: dict,
    cal: dict,
    outages: dict,
    surge: dict,
    customers: dict,
    reps: dict,
    counts: dict[str, int],
) -> dict:
    weekday = [round(float(x), 6) for x in WEEKDAY_FACTORS]
    outage_rows = []
    for i in range(outages["n"]):
        outage_rows.append(
            {
                "outage_id": f"O{i + 1:04d}",
                "domain": OUTAGE_DOMAINS[outages["domain"][i]],
                "severity": SEVERITIES[outages["severity"][i]],
                "location": outages["location"][i],
                "radius_km": float(outages["radius"][i]),
                "window_hours": round(float(surge["hours"][i]), 4),
                "affected_customers": int(surge["affected"][i]),
                "expected_excess_tickets": round(float(surge["expected"][i]), 3),
                "generated_excess_tickets": int(surge["generated"][i]),
            }
        )
    n = len(tk["created"])
    return {
        "seed": int(seed),
        "start": start_dt.isoformat(sep=" "),
        "end": end_dt.isoformat(sep=" "),
        "days": int(days),
        "tickets": int(n),
        "baseline_tickets": int(n - tk["is_surge"].sum()),
        "surge_tickets": int(tk["is_surge"].sum()),
        "counts": {k: int(v) for k, v in counts.items()},
        "customers": int(customers["n"]),
        "representatives": int(reps["n"]),
        "growth_per_year": GROWTH_PER_YEAR,
        "weekday_factors": weekday,
        "weekly_amplitude": round(float(WEEKDAY_FACTORS.max() / WEEKDAY_FACTORS.min()), 6),
        "yearly_amplitude": YEARLY_AMPLITUDE,
        "yearly_peak_day_of_year": YEARLY_PEAK_DAY,
        "holiday_factor": HOLIDAY_FACTOR,
        "holidays": "US federal holidays (python-holidays, observed days included)",
        "holiday_dates": [str(d) for d in cal["dates"][cal["is_holiday"]]],
        "daily_noise_sigma": DAILY_NOISE_SIGMA,
        "hourly_share": [round(float(x), 6) for x in HOURLY_SHARE],
        "outage_excess_per_customer_hour": dict(OUTAGE_EXCESS),
        "outage_surge_thinning": round(float(surge["thinning"]), 6),
        "outages": outage_rows,
        "test_ticket_share": round(float(tk["is_test"].mean()) if n else 0.0, 6),
        "test_ticket_share_target": TEST_SHARE,
        "load_elasticity": LOAD_ELASTICITY,
        "tenure_penalty": TENURE_PENALTY,
        "tenure_tau_months": TENURE_TAU_MONTHS,
        "feedback_rate": FEEDBACK_RATE,
        "resolution_median_hours_by_priority": dict(
            zip(PRIORITIES, RES_MEDIAN_H.tolist(), strict=True)
        ),
        "first_response_median_min_by_channel": dict(
            zip(CHANNELS, FR_MEDIAN_MIN.tolist(), strict=True)
        ),
        "definitions": {
            "weekday_factors": "expected daily volume multiplier Monday..Sunday, mean 1",
            "weekly_amplitude": "largest / smallest weekday factor",
            "yearly_amplitude": (
                "A in 1 + A*cos(2*pi*(day_of_year - yearly_peak_day_of_year)/365.25); "
                "peak/trough ratio is (1+A)/(1-A)"
            ),
            "growth_per_year": "volume multiplier (1+g)**(years since start) minus 1",
            "holiday_factor": "volume multiplier on a US holiday",
            "hourly_share": "share of a day's tickets created in each hour (UTC clock)",
            "outage_excess_per_customer_hour": (
                "Poisson rate of extra tickets per affected customer (within radius_km of "
                "the outage, haversine) per hour of the outage window, in the outage domain"
            ),
            "expected_excess_tickets": (
                "rate * affected_customers * window_hours (window clipped at end), "
                "times outage_surge_thinning"
            ),
            "load_elasticity": (
                "first response time scales with (daily volume / staffed capacity) "
                "** load_elasticity"
            ),
            "tenure_penalty": (
                "durations multiplied by 1 + penalty * exp(-tenure_months / tenure_tau_months)"
            ),
            "test_ticket_share": "share of tickets with is_test = true",
        },
    }
