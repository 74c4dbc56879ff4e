"""Erlang C staffing, hourly plans, handle time and staffing seen in the data."""

from __future__ import annotations

import dataclasses
import math
import time
from datetime import date
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cs_metrics import CsMetricsError, Filters, Warehouse, ingest
from cs_metrics.analysis.staffing import (
    GAP_COLUMNS,
    PLAN_COLUMNS,
    current_staffing,
    erlang_c,
    handle_time_s,
    staffing_gap,
    staffing_plan,
    wait_probability,
)
from cs_metrics.core.settings import ServiceLevel, load_settings
from tests import reference
from tests.conftest import ticket, write_csv

PHONE = ServiceLevel(0.8, 20)


def factorial_wait_probability(agents: int, traffic: float) -> float:
    """Erlang C from the textbook formula, fine for the small agent counts used here."""
    queued = traffic**agents / math.factorial(agents) * agents / (agents - traffic)
    served = sum(traffic**k / math.factorial(k) for k in range(agents))
    return queued / (served + queued)


def service_level(agents: int, traffic: float, aht_s: float, within_s: float) -> float:
    return 1 - factorial_wait_probability(agents, traffic) * math.exp(
        -(agents - traffic) * within_s / aht_s
    )


# --- Erlang C ---------------------------------------------------------------------------------


def test_published_example():
    """100 contacts per 30 minutes, AHT 3 min, 80 % in 20 s, 30 % shrinkage, 85 % occupancy."""
    r = erlang_c(100, 30, 180, PHONE, shrinkage=0.3, max_occupancy=0.85)
    assert r.traffic_erlangs == pytest.approx(10.0)
    assert r.raw_agents == 14
    assert r.scheduled_agents == 20
    assert round(r.service_level, 4) == 0.8884
    assert round(r.occupancy, 4) == 0.7143
    assert round(r.p_wait, 4) == 0.1741
    assert round(r.asa_s, 2) == 7.84


def test_zero_arrivals_need_no_agents():
    r = erlang_c(0, 30, 180, PHONE, shrinkage=0.3, max_occupancy=0.85)
    assert (r.raw_agents, r.scheduled_agents) == (0, 0)
    assert r.service_level == 1.0
    assert (r.occupancy, r.p_wait, r.asa_s) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("level", [PHONE, ServiceLevel(0.8, 60), ServiceLevel(0.95, 10),
                                   ServiceLevel(0.9, 86400)])
@pytest.mark.parametrize("aht_s", [60, 180, 600])
def test_more_arrivals_never_need_fewer_agents(level, aht_s):
    agents = [erlang_c(a, 30, aht_s, level, shrinkage=0.3, max_occupancy=0.85)
              for a in range(0, 401, 7)]
    raw = [r.raw_agents for r in agents]
    scheduled = [r.scheduled_agents for r in agents]
    assert raw == sorted(raw) and raw[-1] > raw[1] > 0
    assert scheduled == sorted(scheduled)


@pytest.mark.parametrize("agents", [1, 2, 3, 5, 8, 13, 20])
@pytest.mark.parametrize("traffic", [0.3, 0.9, 2.5, 4.0, 7.2, 12.0])
def test_wait_probability_matches_the_factorial_formula(agents, traffic):
    if agents <= traffic:
        assert wait_probability(agents, traffic) == 1.0
    else:
        assert wait_probability(agents, traffic) == pytest.approx(
            factorial_wait_probability(agents, traffic), rel=1e-12)


def test_wait_probability_is_stable_for_large_centres():
    # factorials of this size overflow a float; the recursion does not
    p = wait_probability(1100, 1000.0)
    assert 0 < p < 1


@pytest.mark.parametrize("arrivals", [1, 12, 55, 100, 240])
@pytest.mark.parametrize("level", [PHONE, ServiceLevel(0.9, 15), ServiceLevel(0.7, 120)])
@pytest.mark.parametrize("max_occupancy", [0.85, 1.0])
def test_the_smallest_staff_that_meets_the_targets(arrivals, level, max_occupancy):
    aht_s, interval_min = 240, 30
    r = erlang_c(arrivals, interval_min, aht_s, level, shrinkage=0.25,
                 max_occupancy=max_occupancy)
    traffic = arrivals * aht_s / (interval_min * 60)
    n = r.raw_agents
    assert n > traffic
    assert r.p_wait == pytest.approx(factorial_wait_probability(n, traffic), rel=1e-9)
    assert r.service_level == pytest.approx(service_level(n, traffic, aht_s, level.within_s))
    assert r.service_level >= level.target
    assert r.occupancy == pytest.approx(traffic / n) and r.occupancy <= max_occupancy
    assert r.asa_s == pytest.approx(r.p_wait * aht_s / (n - traffic))
    fewer = n - 1
    assert (fewer <= traffic or traffic / fewer > max_occupancy
            or service_level(fewer, traffic, aht_s, level.within_s) < level.target)


def test_occupancy_cap_can_decide_the_staff():
    # with a day to answer, the service level is met at once and only occupancy binds
    r = erlang_c(100, 60, 180, ServiceLevel(0.9, 86400), shrinkage=0.3, max_occupancy=0.6)
    assert r.traffic_erlangs == pytest.approx(5.0)
    assert r.raw_agents == 9  # 5 / 9 = 0.556 <= 0.6 < 5 / 8
    assert r.service_level == pytest.approx(1.0)


def test_scheduled_agents_round_up_exactly():
    """21 / 0.7 is 30.000000000000004 in floating point; 30 agents cover it."""
    plan = staffing_plan(_forecast(np.arange(0, 1500, 3.0)), 180, PHONE, interval_min=30,
                         shrinkage=0.3, max_occupancy=0.85)
    assert 21 in set(plan["raw_agents"])
    want = [math.ceil(Fraction(int(n)) / (1 - Fraction(3, 10))) for n in plan["raw_agents"]]
    assert plan["scheduled_agents"].tolist() == want


def test_channel_names_use_the_settings():
    settings = load_settings()
    by_name = erlang_c(100, 30, 180, "Call", settings=settings)
    explicit = erlang_c(100, 30, 180, PHONE, shrinkage=0.3, max_occupancy=0.85)
    assert by_name == explicit
    chat = erlang_c(100, 30, 180, "chat", settings=settings)
    assert chat.raw_agents <= explicit.raw_agents  # 60 s to answer is easier than 20 s


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"arrivals": -1}, "Arrivals must be zero or more"),
    ({"arrivals": float("nan")}, "Arrivals must be zero or more"),
    ({"interval_min": 0}, "interval length"),
    ({"aht_s": -5}, "average handle time"),
    ({"shrinkage": 1.0}, r"Shrinkage must be a fraction in \[0, 1\)"),
    ({"max_occupancy": 0}, r"Maximum occupancy must be a fraction in \(0, 1\]"),
])
def test_bad_inputs_are_clear(kwargs, message):
    args = {"arrivals": 100, "interval_min": 30, "aht_s": 180, "target": PHONE,
            "shrinkage": 0.3, "max_occupancy": 0.85, **kwargs}
    with pytest.raises(CsMetricsError, match=message):
        erlang_c(**args)


def test_value_objects_are_frozen():
    r = erlang_c(100, 30, 180, PHONE, shrinkage=0.3, max_occupancy=0.85)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.raw_agents = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        PHONE.target = 0.5  # type: ignore[misc]
    assert PHONE == ServiceLevel(0.8, 20)
    with pytest.raises(CsMetricsError, match="between 0 and 1"):
        ServiceLevel(1.0, 20)


# --- hourly plans -----------------------------------------------------------------------------


def _forecast(arrivals) -> pd.DataFrame:
    arrivals = np.asarray(arrivals, dtype=float)
    hours = pd.date_range("2025-03-03", periods=len(arrivals), freq="h")
    return pd.DataFrame({"hour": hours, "arrivals": arrivals})


def test_plan_rows_equal_erlang_c():
    forecast = _forecast([0, 3.5, 40, 120, 0.2, 260, 75.25])
    plan = staffing_plan(forecast, 300, ServiceLevel(0.8, 60), shrinkage=0.3,
                         max_occupancy=0.85)
    assert list(plan.columns) == list(PLAN_COLUMNS)
    assert len(plan) == len(forecast)
    assert plan["hour"].tolist() == forecast["hour"].tolist()
    assert plan["raw_agents"].dtype == "int64" and plan["scheduled_agents"].dtype == "int64"
    for row in plan.itertuples():
        one = erlang_c(row.arrivals, 60, 300, ServiceLevel(0.8, 60), shrinkage=0.3,
                       max_occupancy=0.85)
        assert (row.raw_agents, row.scheduled_agents) == (one.raw_agents, one.scheduled_agents)
        assert row.aht_s == 300
        for field in ("service_level", "occupancy", "p_wait", "asa_s"):
            assert getattr(row, field) == pytest.approx(getattr(one, field), rel=1e-12), field


def test_plan_defaults_and_cleaning():
    settings = load_settings()
    forecast = _forecast([-0.4, 10.0, 30.0])
    plan = staffing_plan(forecast, None, "email", settings=settings)
    assert plan["aht_s"].tolist() == [settings.staffing.aht_s] * 3
    assert plan["arrivals"].tolist() == [0.0, 10.0, 30.0]  # a negative forecast is no contacts
    assert plan["raw_agents"].iloc[0] == 0
    one = erlang_c(30.0, 60, settings.staffing.aht_s, ServiceLevel(0.9, 86400),
                   shrinkage=0.3, max_occupancy=0.85)
    assert plan["raw_agents"].iloc[2] == one.raw_agents
    empty = staffing_plan(_forecast([]), 300, PHONE, settings=settings)
    assert list(empty.columns) == list(PLAN_COLUMNS) and empty.empty


def test_plan_bad_forecast_is_clear():
    with pytest.raises(CsMetricsError, match="needs columns hour and arrivals"):
        staffing_plan(pd.DataFrame({"hour": []}), 300, PHONE)
    with pytest.raises(CsMetricsError, match="missing or not numbers"):
        staffing_plan(_forecast([1.0, np.nan]), 300, PHONE, shrinkage=0.3, max_occupancy=0.85)


def test_eight_weeks_of_hours_plan_quickly():
    rng = np.random.default_rng(3)
    hours = 8 * 7 * 24
    daily = 150 + 140 * np.sin(np.arange(hours) / 24 * 2 * np.pi)  # a busy contact centre
    forecast = _forecast(rng.poisson(np.clip(daily, 0, None)))
    started = time.perf_counter()
    plan = staffing_plan(forecast, 360, PHONE, shrinkage=0.3, max_occupancy=0.85)
    assert time.perf_counter() - started < 1.0
    assert len(plan) == 1344 and plan["raw_agents"].max() > 20


def test_staffing_gap_matches_pandas():
    """Two weeks and a day of hours: each weekday-hour averages its rows (Monday's first three
    hours have three), against staffing counted by hand; cells the data lacks are zero."""
    rng = np.random.default_rng(5)
    forecast = _forecast(rng.uniform(0, 90, 15 * 24).round(2))
    plan = staffing_plan(forecast, 300, PHONE, shrinkage=0.3, max_occupancy=0.85)
    columns = list(plan.columns)
    current = pd.DataFrame({"weekday": [0, 0, 3, 6], "hour": [0, 1, 12, 23],
                            "active_reps": [2.5, 4.0, 7.0, 1.0], "days": [2, 2, 2, 2]})
    got = staffing_gap(plan, current)
    assert list(got.columns) == list(GAP_COLUMNS) and len(got) == 168
    assert list(plan.columns) == columns  # the plan is left as it was

    active = {(0, 0): 2.5, (0, 1): 4.0, (3, 12): 7.0, (6, 23): 1.0}
    rows: dict[tuple[int, int], list] = {}
    for r in plan.itertuples():
        rows.setdefault((r.hour.day_of_week, r.hour.hour), []).append(r)
    assert len(rows[(0, 0)]) == 3 and len(rows[(1, 0)]) == 2
    for r in got.itertuples():
        cell = rows[(r.weekday, r.hour_of_day)]
        need = sum(c.scheduled_agents for c in cell) / len(cell)
        assert r.arrivals == pytest.approx(sum(c.arrivals for c in cell) / len(cell))
        assert r.scheduled_agents == pytest.approx(need)
        assert r.peak_agents == max(c.scheduled_agents for c in cell)
        assert r.service_level == pytest.approx(sum(c.service_level for c in cell) / len(cell))
        have = active.get((r.weekday, r.hour_of_day), 0.0)
        assert r.active_reps == have and r.gap == pytest.approx(need - have)
    assert list(zip(got["weekday"], got["hour_of_day"], strict=True)) == sorted(rows)


# --- from the warehouse -----------------------------------------------------------------------

# 2024-01-01 is a Monday; the range below holds two of every weekday.
RANGE = Filters(date(2024, 1, 1), date(2024, 1, 15))
ROWS = [
    ticket("A", "2024-01-01 09:10:00", "closed", first_response_at="2024-01-01 09:20:00",
           rep_id="r1", channel="phone", handle_time_s=300),
    ticket("B", "2024-01-01 09:30:00", "closed", first_response_at="2024-01-01 09:40:00",
           rep_id="r1", channel="phone", handle_time_s=420),  # same rep, same hour: one
    ticket("C", "2024-01-01 09:50:00", "closed", first_response_at="2024-01-01 10:05:00",
           rep_id="r2", channel="phone"),  # answered in the next hour
    ticket("D", "2024-01-08 09:00:00", "closed", first_response_at="2024-01-08 09:15:00",
           rep_id="r2", channel="phone", handle_time_s=510),
    ticket("E", "2024-01-02 14:00:00", "closed", first_response_at="2024-01-02 14:30:00",
           rep_id="r3", channel="chat", handle_time_s=600),
    ticket("F", "2024-01-02 14:00:00", "closed", first_response_at="2024-01-02 14:10:00",
           channel="chat", handle_time_s=90),  # nobody to count
    ticket("G", "2024-01-01 09:00:00", "closed", first_response_at="2024-01-01 09:05:00",
           rep_id="r9", channel="phone", handle_time_s=9999, is_test=True),
    ticket("H", "2024-01-14 22:00:00", "closed", first_response_at="2024-01-14 22:30:00",
           rep_id="r5", channel="email", handle_time_s=1200),
    ticket("I", "2024-01-14 23:50:00", "open", first_response_at="2024-01-15 00:10:00",
           rep_id="r5", channel="email"),  # answered after the range ends
    ticket("J", "2024-01-03 11:00:00", "open", rep_id="r4", channel="phone"),  # unanswered
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Warehouse:
    tmp = tmp_path_factory.mktemp("staffing_tiny")
    write_csv(tmp / "src", "tickets", ROWS)
    ingest(tmp / "src", db=tmp / "wh.duckdb")
    return Warehouse(tmp / "wh.duckdb", read_only=True)


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> Warehouse:
    """No first responses and no handle times."""
    tmp = tmp_path_factory.mktemp("staffing_bare")
    write_csv(tmp / "src", "tickets", [
        ticket("A", "2024-01-03 10:00:00", rep_id="r1"),  # a Wednesday
        ticket("B", "2024-01-03 10:30:00", rep_id="r1"),
        ticket("C", "2024-01-03 10:45:00", rep_id="r2"),
        ticket("D", "2024-01-03 17:45:00", rep_id="r2"),
    ])
    ingest(tmp / "src", db=tmp / "wh.duckdb")
    return Warehouse(tmp / "wh.duckdb", read_only=True)


def _rows() -> pd.DataFrame:
    t = pd.DataFrame(ROWS)
    t["is_test"] = t["is_test"].fillna(False).astype(bool)
    return t


@pytest.mark.parametrize("channel", [None, "phone", "chat"])
def test_handle_time_is_the_mean_of_matching_tickets(tiny, channel):
    t = _rows()
    t = t[~t["is_test"] & (t["created_at"] >= "2024-01-01") & (t["created_at"] < "2024-01-15")]
    if channel:
        t = t[t["channel"] == channel]
    got = handle_time_s(tiny, Filters.build(RANGE.date_from, RANGE.date_to, channel=channel))
    assert got == pytest.approx(t["handle_time_s"].mean())


def test_handle_time_is_none_without_the_column(tiny, bare):
    assert handle_time_s(bare, Filters()) is None
    assert handle_time_s(tiny, Filters.build(channel="social")) is None  # nothing matches


def _cells(frame: pd.DataFrame) -> dict[tuple[int, int], float]:
    nonzero = frame[frame["active_reps"] > 0]
    return {(int(r.weekday), int(r.hour)): r.active_reps for r in nonzero.itertuples()}


def test_current_staffing_by_hand(tiny):
    got = current_staffing(tiny, RANGE)
    assert list(got.columns) == ["weekday", "hour", "active_reps", "days"]
    assert len(got) == 168 and (got["days"] == 2).all()
    # Monday 9-10h: r1 (twice) on the 1st, r2 on the 8th; r2 answered C at 10:05, so it
    # counts at 10h; F has no representative, G is a test ticket
    assert _cells(got) == {(0, 9): 1.0, (0, 10): 0.5, (1, 14): 0.5, (6, 22): 0.5}
    phone = current_staffing(tiny, Filters.build(RANGE.date_from, RANGE.date_to,
                                                 channel="phone"))
    assert _cells(phone) == {(0, 9): 1.0, (0, 10): 0.5}
    assert (phone["days"] == 2).all()  # a quiet channel still averages over every day


def test_current_staffing_without_a_range_uses_the_data_span(tiny):
    got = current_staffing(tiny, Filters())
    # first responses run from Monday the 1st to Monday the 15th: three Mondays
    days = got.groupby("weekday")["days"].first().to_dict()
    assert days == {0: 3, 1: 2, 2: 2, 3: 2, 4: 2, 5: 2, 6: 2}
    cells = _cells(got)
    assert cells[(0, 9)] == pytest.approx(2 / 3) and cells[(0, 0)] == pytest.approx(1 / 3)


def test_current_staffing_falls_back_to_created_at(bare):
    got = current_staffing(bare, Filters())
    assert len(got) == 24 and set(got["weekday"]) == {2}  # one Wednesday in the data
    assert _cells(got) == {(2, 10): 2.0, (2, 17): 1.0}
    assert current_staffing(bare, Filters(date(2030, 1, 1), date(2030, 2, 1))).empty


def test_current_staffing_matches_pandas(sample_wh, sample_dir):
    tickets, _ = reference.prepare(sample_dir, load_settings())
    start, end = date(2024, 12, 2), date(2025, 2, 17)
    filters = Filters.build(start, end, channel=["phone", "chat"])
    got = current_staffing(sample_wh, filters)

    t = tickets[~tickets["is_test"]]
    at = t["first_response_at"]
    t = t[at.notna() & (at >= pd.Timestamp(start)) & (at < pd.Timestamp(end))]
    first, last = t["first_response_at"].min().date(), t["first_response_at"].max().date()
    days = pd.Series(pd.date_range(max(first, start), min(last, end - pd.Timedelta(days=1)),
                                   freq="D").day_of_week).value_counts()
    t = t[t["channel"].isin(["phone", "chat"]) & t["rep_id"].notna()]
    slots = t.assign(slot=t["first_response_at"].dt.floor("h"))[["rep_id", "slot"]]
    reps = slots.drop_duplicates().groupby("slot").size()
    per_cell = reps.groupby([reps.index.day_of_week, reps.index.hour]).sum()
    want = {(int(w), int(h)): n / days[w] for (w, h), n in per_cell.items()}

    assert len(got) == 168
    assert got["days"].tolist() == [int(days[w]) for w in got["weekday"]]
    assert _cells(got) == pytest.approx(want)


def test_handle_time_matches_pandas(sample_wh, sample_dir):
    tickets, _ = reference.prepare(sample_dir, load_settings())
    t = tickets[~tickets["is_test"] & (tickets["channel"] == "chat")]
    assert handle_time_s(sample_wh, Filters.build(channel="chat")) == pytest.approx(
        t["handle_time_s"].mean())


# --- settings ---------------------------------------------------------------------------------


def test_default_staffing_settings():
    s = load_settings().staffing
    assert (s.shrinkage, s.max_occupancy, s.aht_s) == (0.3, 0.85, 360)
    assert s.service_level("phone") == ServiceLevel(0.8, 20)
    assert s.service_level("Call") == s.service_level("phone")
    assert s.service_level("chat") == ServiceLevel(0.8, 60)
    assert s.service_level("email") == ServiceLevel(0.9, 86400)
    assert s.service_level("pigeon") == s.service_level(None) == ServiceLevel(0.8, 20)
    hash(load_settings())  # settings key caches


def test_user_staffing_settings_merge_over_defaults(tmp_path):
    custom = tmp_path / "settings.toml"
    custom.write_text(
        "[staffing]\nshrinkage = 0.25\n"
        "[staffing.service_levels]\nchat = { within_s = 30 }\n"
        "Social = { target = 0.7, within_s = 3600 }\n"
    )
    s = load_settings(custom)
    assert s.staffing.shrinkage == 0.25 and s.staffing.max_occupancy == 0.85
    assert s.staffing.service_level("chat") == ServiceLevel(0.8, 30)
    assert s.staffing.service_level("social") == ServiceLevel(0.7, 3600)
    assert s.staffing.service_level("phone") == ServiceLevel(0.8, 20)
    assert s != load_settings() and hash(s) != hash(load_settings())


@pytest.mark.parametrize(("toml", "message"), [
    ("[staffing]\nshrinkage = 1.0\n", r"staffing\.shrinkage in .*s\.toml must be a fraction "
                                       r"from 0 to 0\.9"),
    # a sliver of occupancy would ask for millions of agents, one loop step each
    ("[staffing]\nmax_occupancy = 1e-9\n", r"staffing\.max_occupancy .* from 0\.05 to 1"),
    ("[staffing]\nshrinkage = -0.1\n", r"staffing\.shrinkage"),
    ("[staffing]\nshrinkage = true\n", r"staffing\.shrinkage .* not True"),
    ("[staffing]\nmax_occupancy = 1.2\n", r"staffing\.max_occupancy .* from 0\.05 to 1"),
    ("[staffing]\naht_s = 0\n", r"staffing\.aht_s .* positive number of seconds"),
    ("[staffing]\nshrinkge = 0.2\n", r"unknown keys \['shrinkge'\]"),
    ("[staffing.service_levels]\nchat = { target = 80 }\n",
     r"staffing\.service_levels\.chat\.target .* between 0 and 1"),
    ("[staffing.service_levels]\nchat = { within = 30 }\n", r"unknown keys \['within'\]"),
    ("[staffing.service_levels]\nchat = 0.8\n", r"staffing\.service_levels\.chat in .* a table"),
    ("[staffing.service_levels]\nchat = { within_s = nan }\n", r"chat\.within_s in .* not nan"),
    # a new channel merges over nothing, so it needs both keys
    ("[staffing.service_levels]\nsocial = { within_s = 30 }\n", r"social\.target .* not None"),
    ("staffing = 3\n", r"\[staffing\] in .*s\.toml must be a table"),
])
def test_bad_staffing_settings_are_clear(tmp_path, toml, message):
    bad = tmp_path / "s.toml"
    bad.write_text(toml)
    with pytest.raises(CsMetricsError, match=message):
        load_settings(bad)


def test_settings_path_is_named(tmp_path: Path):
    bad = tmp_path / "mine.toml"
    bad.write_text("[staffing]\nshrinkage = 1.5\n")
    with pytest.raises(CsMetricsError) as info:
        load_settings(bad)
    assert str(bad) in str(info.value) and "staffing.shrinkage" in str(info.value)

