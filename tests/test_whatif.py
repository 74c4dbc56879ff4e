"""What-if outage simulation: calibrated or default rates, the baseline as a special case,
monotone excess, reproducible runs, the recommended staffing keeping the SLA, the queue's
waits on hand-checkable cases, the scenario's JSON round trip and the speed of 48 h x 200 runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from cs_metrics.analysis import _whatif_model, whatif
from cs_metrics.analysis.outages import severity_rates
from cs_metrics.analysis.staffing import handle_time_s, staffing_plan
from cs_metrics.analysis.whatif import (
    DEFAULT_EXCESS_PER_CUSTOMER_HOUR,
    HOUR_COLUMNS,
    RATE_COLUMNS,
    SCENARIO_SEVERITIES,
    TAIL_HOURS,
    OutageScenario,
    affected_customers,
    city_centre,
    excess_rates,
    simulate_outage,
)
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.schema import SEVERITIES
from cs_metrics.core.settings import ServiceLevel, load_settings
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.loader import ingest
from cs_metrics.metrics.registry import Filters
from simulations.generator import OUTAGE_EXCESS, GenerationResult, generate

END = datetime(2025, 3, 1)
# A year at 40k tickets: 18 outages (10 minor, 7 major, 1 critical), enough for calibrated
# rates; generating and loading take about 2 s.
GEN = {"tickets": 40_000, "days": 365, "seed": 3, "end": END}
MONDAY = datetime(2025, 3, 3, 14)  # the Monday after the data ends, 14:00
SATURDAY = datetime(2025, 3, 8, 20)  # a thinly staffed weekend night follows


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[GenerationResult, Warehouse]:
    tmp = tmp_path_factory.mktemp("whatif")
    result = generate(tmp / "data", **GEN)
    ingest(tmp / "data", db=tmp / "wh.duckdb")
    wh = Warehouse(tmp / "wh.duckdb", read_only=True)
    yield result, wh
    wh.close()


@pytest.fixture(scope="module")
def wh(generated) -> Warehouse:
    return generated[1]


@pytest.fixture(scope="module")
def quiet_wh(sample_dir, tmp_path_factory) -> Warehouse:
    """The session sample without its outages table: nothing to calibrate on."""
    tmp = tmp_path_factory.mktemp("quiet")
    for path in sample_dir.iterdir():
        if not path.name.startswith("outages."):
            shutil.copy(path, tmp / path.name)
    ingest(tmp, db=tmp / "wh.duckdb")
    wh = Warehouse(tmp / "wh.duckdb", read_only=True)
    yield wh
    wh.close()


def scenario(**kw) -> OutageScenario:
    base = {"start": MONDAY, "hours": 12.0, "severity": "critical", "radius_km": 40.0,
            "city": "Carlsbad"}
    base.update(kw)
    if "lat" in kw:
        base.pop("city")
    return OutageScenario(**base)


SIMULATED = [c for c in HOUR_COLUMNS if c not in ("extra_arrivals", "extra_agents_needed")]


# --- the scenario value --------------------------------------------------------------------


def test_scenario_is_frozen_and_not_mutated_by_a_simulation(wh):
    s = scenario(extra_staff=[1, 2])
    assert s.extra_staff == (1, 2)  # a list becomes a tuple: hashable, immutable
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.radius_km = 10.0  # type: ignore[misc]
    before = s.to_dict()
    hash(s)
    simulate_outage(wh, s, runs=5, tail_hours=2)
    assert s.to_dict() == before


@pytest.mark.parametrize(("kw", "message"), [
    ({"severity": "huge"}, "Unknown severity 'huge'; use one of none, minor, major, critical"),
    ({"hours": 0}, "An outage lasts from one minute"),
    ({"hours": 400}, "An outage lasts from one minute"),
    ({"radius_km": -1}, "The radius must be between 0 and 5000 km"),
    ({"radius_km": float("nan")}, "The radius in km must be a number"),
    ({"lat": 32.4, "lon": -104.2, "city": "Carlsbad"}, "as a city or as lat/lon, not both"),
    ({"lat": 32.4, "lon": None}, "as a city or as both lat and lon"),
    ({"lat": 132.4, "lon": 0.0}, "is not on Earth"),
    ({"extra_staff": -1}, "Extra staff must be whole agents"),
    ({"extra_staff": (1, 2.5)}, "Extra staff must be whole agents"),
    ({"start": "2025-03-03"}, "The outage start must be a date and time"),
])
def test_scenario_rejects_bad_input_with_a_sentence(kw, message):
    with pytest.raises(CsMetricsError, match=message.replace("(", r"\(")):
        if "city" in kw:
            OutageScenario(start=MONDAY, hours=2, severity="minor", radius_km=5, **kw)
        else:
            scenario(**kw)


def test_scenario_normalises_severity_and_time_zone():
    aware = datetime(2025, 3, 3, 16, tzinfo=timezone(timedelta(hours=2)))
    s = scenario(severity=" Major ", start=aware)
    assert s.severity == "major"
    assert s.start == datetime(2025, 3, 3, 14) and s.start.tzinfo is None
    assert s.end == datetime(2025, 3, 4, 2)


@pytest.mark.parametrize("s", [
    scenario(),
    scenario(lat=40.72, lon=-73.95, radius_km=0.0, severity="none", domain="network",
             extra_staff=(0, 3, 3, 1), hours=2.5, start=datetime(2025, 3, 3, 14, 30)),
])
def test_scenario_json_round_trip(s):
    text = s.to_json()
    data = json.loads(text)  # plain JSON types, as a page downloads them
    assert data["start"] == s.start.isoformat()
    assert OutageScenario.from_json(text) == s
    assert OutageScenario.from_dict(s.to_dict()) == s
    assert OutageScenario.from_json(text.encode()) == s


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "A scenario is a JSON object"),
    ('{"start": "2025-03-03T14:00", "hours": 2, "severity": "minor", "radius_km": 5, '
     '"city": "X", "colour": "red"}', r"unknown keys \['colour'\]"),
    ('{"hours": 2, "severity": "minor", "radius_km": 5, "city": "X"}', "lacks start"),
    ('{"start": "Monday", "hours": 2, "severity": "minor", "radius_km": 5, "city": "X"}',
     "is not an ISO date and time"),
])
def test_scenario_from_bad_json(text, message):
    with pytest.raises(CsMetricsError, match=message):
        OutageScenario.from_json(text)


# --- place and rates -------------------------------------------------------------------------


def test_city_centre_and_unknown_city(wh):
    name, lat, lon = city_centre(wh, "  carlsbad ")
    assert name == "Carlsbad"
    mean = wh.df("select avg(lat) as lat, avg(lon) as lon from customers where city = ?",
                 ["Carlsbad"]).iloc[0]
    assert (lat, lon) == pytest.approx((mean["lat"], mean["lon"]))
    with pytest.raises(CsMetricsError) as err:
        simulate_outage(wh, scenario(city="Atlantis"), runs=5)
    text = str(err.value)
    assert text.startswith("Unknown city 'Atlantis'")
    top = wh.df("select city from customers group by city order by count(*) desc limit 3")
    assert all(c in text for c in top["city"])


def test_affected_customers_counts_the_circle(wh):
    customers = wh.df("select lat, lon from customers")
    from cs_metrics.core.geo import haversine_km

    lat, lon = 40.72, -73.95
    dist = haversine_km(lat, lon, customers["lat"].to_numpy(), customers["lon"].to_numpy())
    for radius in (1.0, 10.0, 50.0):
        assert affected_customers(wh, lat, lon, radius) == int((dist <= radius).sum())
    assert affected_customers(wh, lat, lon, 0.0) == 0


def test_default_rates_equal_the_generator_effects():
    assert DEFAULT_EXCESS_PER_CUSTOMER_HOUR == OUTAGE_EXCESS


def test_calibrated_rates_come_from_severity_rates(generated, wh):
    truth = generated[0].truth["outage_excess_per_customer_hour"]
    measured = severity_rates(wh).set_index("severity")
    rates = excess_rates(wh)
    assert list(rates.columns) == list(RATE_COLUMNS)
    assert rates["severity"].tolist() == list(SCENARIO_SEVERITIES)
    table = rates.set_index("severity")
    assert table.loc["none", "rate"] == 0.0
    running = 0.0
    for sev in SEVERITIES:
        value = measured.loc[sev, "excess_per_customer_hour"]
        assert measured.loc[sev, "outages"] > 0
        assert table.loc[sev, "source"] == "calibrated"
        assert table.loc[sev, "calibrated_rate"] == value
        running = max(running, value)
        assert table.loc[sev, "rate"] == running
    # the generator's planted effect comes back for the well-observed severities
    for sev in ("minor", "major"):
        assert table.loc[sev, "rate"] == pytest.approx(truth[sev], rel=0.2)

    res = simulate_outage(wh, scenario(severity="major", hours=6), runs=20, tail_hours=2)
    assert res.rate_source == "calibrated"
    assert res.rate_per_customer_hour == table.loc["major", "rate"]
    assert res.rate_note.startswith(
        f"Rate calibrated on this dataset's {measured.loc['major', 'outages']} major outages"
    )
    assert res.totals.expected_extra_tickets == pytest.approx(
        res.rate_per_customer_hour * res.affected_customers * 6)


def test_defaults_are_used_and_said_without_outages(quiet_wh):
    rates = excess_rates(quiet_wh).set_index("severity")
    assert (rates.loc[list(SEVERITIES), "source"] == "default").all()
    assert rates.loc[list(SEVERITIES), "rate"].tolist() == [
        DEFAULT_EXCESS_PER_CUSTOMER_HOUR[s] for s in SEVERITIES]
    city = quiet_wh.df("select city from customers group by city order by count(*) desc")
    s = OutageScenario(start=MONDAY, hours=6, severity="major", radius_km=30,
                       city=city["city"].iloc[0])
    res = simulate_outage(quiet_wh, s, runs=20, tail_hours=2)
    assert res.rate_source == "default"
    assert res.rate_per_customer_hour == 0.007
    assert res.rate_note.startswith("This dataset has no measurable major outage, so the "
                                    "default rate of 0.0070")
    assert any("no outages table" in n for n in res.notes)
    assert res.totals.expected_extra_tickets == pytest.approx(
        0.007 * res.affected_customers * 6)


def test_rates_never_fall_with_severity(wh, monkeypatch):
    noisy = pd.DataFrame({
        "severity": list(SEVERITIES), "outages": [3, 2, 0],
        "excess_per_customer_hour": [0.010, 0.004, math.nan],
        "low": [0.002, -0.001, math.nan], "high": [0.02, 0.01, math.nan],
    })
    noisy.attrs["notes"] = []
    monkeypatch.setattr(_whatif_model, "severity_rates", lambda _wh: noisy)
    rates = excess_rates(wh).set_index("severity")
    assert rates["rate"].tolist() == [0.0, 0.010, 0.010, 0.015]
    assert rates["source"].tolist() == ["none", "calibrated", "calibrated", "default"]
    res = simulate_outage(wh, scenario(severity="major", hours=2), runs=5, tail_hours=1)
    assert "raised to 0.0100 so it is not below a milder severity's" in res.rate_note


# --- the simulation ------------------------------------------------------------------------


def test_zero_severity_or_radius_is_the_baseline(wh):
    none = simulate_outage(wh, scenario(severity="none"), runs=50, seed=4)
    point = simulate_outage(wh, scenario(radius_km=0.0), runs=50, seed=4)
    real = simulate_outage(wh, scenario(), runs=50, seed=4)
    for res in (none, point):
        h = res.hours
        assert (h["extra_arrivals"] == 0).all()
        assert res.totals.expected_extra_tickets == 0
        assert res.totals.extra_tickets_p90 == 0
        # the scenario's runs are exactly the baseline-only runs
        assert h["backlog_p50"].tolist() == h["baseline_backlog_p50"].tolist()
        np.testing.assert_array_equal(h["first_response_min_p50"],
                                      h["baseline_first_response_min_p50"])
        np.testing.assert_array_equal(h["sla_breach_pct_p50"], h["baseline_sla_breach_pct_p50"])
        assert res.totals.sla_breach_pct_p50 == res.totals.baseline_sla_breach_pct_p50
        assert res.summary.startswith("No extra tickets are expected")
    assert none.affected_customers > 0 and point.affected_customers == 0
    pd.testing.assert_frame_equal(none.hours[SIMULATED], point.hours[SIMULATED])
    # a real outage draws the same baseline arrivals and adds its own on top
    h = real.hours
    assert (h["arrivals_p50"] >= none.hours["arrivals_p50"]).all()
    assert (h["arrivals_p50"] > none.hours["arrivals_p50"])[h["in_outage"]].all()
    assert (h["backlog_p50"] > h["baseline_backlog_p50"]).any()
    assert real.totals.expected_extra_tickets > 100


def test_bigger_radius_or_higher_severity_never_fewer_extra_tickets(wh):
    def extra(**kw) -> tuple[int, float, float]:
        res = simulate_outage(wh, scenario(lat=40.72, lon=-73.95, hours=3, **kw), runs=10,
                              tail_hours=0)
        return (res.affected_customers, res.totals.expected_extra_tickets,
                float(res.hours["extra_arrivals"].sum()))

    by_radius = [extra(radius_km=r) for r in (0.0, 2.0, 10.0, 30.0, 80.0, 300.0)]
    by_severity = [extra(radius_km=30.0, severity=s) for s in SCENARIO_SEVERITIES]
    for series in (by_radius, by_severity):
        customers, expected, hourly = zip(*series, strict=True)
        assert list(customers) == sorted(customers)
        assert list(expected) == sorted(expected)
        assert hourly == pytest.approx(expected)
    assert by_radius[0][1] == 0 and by_radius[-1][1] > by_radius[2][1] > 0
    assert by_severity[0][1] == 0 and by_severity[-1][1] > by_severity[1][1] > 0


def test_same_seed_same_result(wh):
    s = scenario(hours=6)
    a = simulate_outage(wh, s, runs=40, seed=11)
    b = simulate_outage(wh, s, runs=40, seed=11)
    c = simulate_outage(wh, s, runs=40, seed=12)
    pd.testing.assert_frame_equal(a.hours, b.hours)
    assert a.totals == b.totals and a.summary == b.summary
    assert not a.hours[SIMULATED].equals(c.hours[SIMULATED])
    assert a.totals.expected_extra_tickets == c.totals.expected_extra_tickets


def test_frame_shape_and_summary_built_from_the_numbers(wh):
    s = scenario(start=datetime(2025, 3, 3, 14, 30), hours=5.0)
    res = simulate_outage(wh, s, runs=50)
    h = res.hours
    assert list(h.columns) == list(HOUR_COLUMNS)
    # 14:00 .. 19:00 touched by 14:30-19:30, then the tail from 20:00
    assert h["hour"].iloc[0] == pd.Timestamp("2025-03-03 14:00")
    assert len(h) == 6 + TAIL_HOURS
    assert h["in_outage"].tolist() == [True] * 6 + [False] * TAIL_HOURS
    per_hour = res.rate_per_customer_hour * res.affected_customers
    assert h["extra_arrivals"].iloc[0] == pytest.approx(per_hour / 2)  # from 14:30
    assert h["extra_arrivals"].iloc[1:5].tolist() == pytest.approx([per_hour] * 4)
    assert h["extra_arrivals"].iloc[5] == pytest.approx(per_hour / 2)  # to 19:30
    assert h["extra_arrivals"].sum() == pytest.approx(per_hour * 5)
    assert (h["baseline_arrivals"] > 0).all()
    for band in ("backlog", "first_response_min", "sla_breach_pct"):
        lo, mid, hi = (h[f"{band}_p{p}"] for p in (10, 50, 90))
        assert ((lo <= mid) & (mid <= hi)).all()
    assert (h["extra_agents_needed"] >= 0).all()
    assert h["extra_agents_needed"].dtype.kind == "i"
    assert (h["extra_staff"] == 0).all()
    # extra agents: Erlang C on the expected total arrivals for 90 % within the target,
    # minus today's agents, rounded up, never negative
    plan = staffing_plan(
        pd.DataFrame({"hour": h["hour"], "arrivals": h["baseline_arrivals"] + h["extra_arrivals"]}),
        res.aht_s, ServiceLevel(0.9, 60 * 60.0),
    )
    gap = np.ceil(np.round(plan["raw_agents"] - h["current_agents"], 9)).clip(lower=0)
    assert h["extra_agents_needed"].tolist() == gap.astype(int).tolist()
    t = res.totals
    assert t.peak_backlog_p50 == h["backlog_p50"].max()
    assert t.max_extra_agents_needed == h["extra_agents_needed"].max()
    assert t.extra_agent_hours == h["extra_agents_needed"].sum()
    assert res.sla_minutes == 60.0  # the median SLA target of the generated tickets
    assert res.sla_target_pct == 90.0
    assert res.aht_s == pytest.approx(
        handle_time_s(wh, Filters(date_from=(wh.created_range()[1]
                                             - timedelta(weeks=8)).date())))
    about = round(t.expected_extra_tickets)
    about = round(about, -(len(str(about)) - 2)) if about >= 100 else about
    assert res.summary.startswith(
        f"About {about:,} extra tickets over 5 hours from {res.affected_customers:,} "
        "customers within 40 km of Carlsbad; ")
    assert f"{t.sla_breach_pct_p50:.0f} % of tickets wait longer than 60 min" in res.summary
    print("\n" + res.summary)


def test_recommended_extra_staff_brings_the_sla_back(wh):
    s = scenario(start=SATURDAY, hours=24)
    res = simulate_outage(wh, s, runs=200, seed=5)
    allowed = 100 - res.sla_target_pct
    assert res.totals.sla_breach_pct_p50 > 3 * allowed  # the outage breaks the SLA
    assert res.hours["sla_breach_pct_p50"].max() > allowed
    assert res.totals.max_extra_agents_needed > 0
    assert "more agents from" in res.summary

    plan = res.recommended_scenario()
    assert plan.extra_staff == tuple(res.hours["extra_agents_needed"])
    fixed = simulate_outage(wh, plan, runs=200, seed=5)
    h = fixed.hours
    assert h["extra_staff"].tolist() == list(plan.extra_staff)
    assert h["extra_agents_needed"].tolist() == res.hours["extra_agents_needed"].tolist()
    assert h["sla_breach_pct_p50"].max() <= allowed
    assert fixed.totals.sla_breach_pct_p50 <= allowed
    assert fixed.totals.peak_backlog_p50 < res.totals.peak_backlog_p50
    assert "the planned extra staff" in fixed.summary and "keeps the SLA" in fixed.summary
    print(f"\nwithout: {res.summary}\nwith:    {fixed.summary}")


def test_extra_staff_number_covers_the_outage_hours(wh):
    s = scenario(start=SATURDAY, hours=6)
    without = simulate_outage(wh, s, runs=50, seed=2)
    with_staff = simulate_outage(wh, s.with_extra_staff(3), runs=50, seed=2)
    h = with_staff.hours
    assert (h["extra_staff"] == np.where(h["in_outage"], 3, 0)).all()
    assert (h["backlog_p50"] <= without.hours["backlog_p50"]).all()
    assert with_staff.totals.sla_breach_pct_p50 <= without.totals.sla_breach_pct_p50


def test_domain_tickets_take_the_domain_handle_time(wh):
    since = (wh.created_range()[1] - timedelta(weeks=8)).date()
    res = simulate_outage(wh, scenario(domain="NETWORK", hours=3), runs=10, tail_hours=1)
    expected = handle_time_s(wh, Filters(date_from=since, where=(("domain", ("network",)),)))
    assert res.extra_aht_s == pytest.approx(expected)
    assert res.extra_aht_s != pytest.approx(res.aht_s)
    with pytest.raises(CsMetricsError, match="Unknown domain 'plumbing'; this dataset's "
                                             "domains are "):
        simulate_outage(wh, scenario(domain="plumbing"), runs=5)


def test_start_inside_the_history_uses_the_forecast(wh):
    res = simulate_outage(wh, scenario(start=datetime(2024, 12, 2, 10), hours=4), runs=10,
                          tail_hours=2)
    assert any("inside the data's history" in n for n in res.notes)
    assert (res.hours["baseline_arrivals"] > 0).all()
    with pytest.raises(CsMetricsError, match="starts too early"):
        simulate_outage(wh, scenario(start=datetime(2024, 3, 10, 10)), runs=5)
    with pytest.raises(CsMetricsError, match="past the data's last day"):
        simulate_outage(wh, scenario(start=datetime(2027, 1, 1)), runs=5)


@pytest.mark.parametrize(("kw", "message"), [
    ({"runs": 0}, "Runs must be a whole number from 1 to"),
    ({"seed": -1}, "The seed must be a whole number"),
    ({"tail_hours": -1}, "The recovery tail is 0 to"),
    ({"sla_minutes": 0}, "more than 0 minutes"),
    ({"runs": 5000}, "5000 runs of this 36-hour period are too large a simulation; use at "
                     "most 4166 runs"),
])
def test_simulation_arguments_are_checked(wh, kw, message):
    with pytest.raises(CsMetricsError, match=message):
        simulate_outage(wh, scenario(), **kw)


def test_missing_inputs_are_explained(tmp_path):
    from tests.conftest import ticket, write_csv

    tickets = [ticket(f"T{i}", f"2025-01-{1 + i % 28:02d} {8 + i % 12:02d}:00:00")
               for i in range(300)] + [
               ticket(f"U{i}", f"2025-02-{1 + i % 20:02d} {8 + i % 12:02d}:00:00")
               for i in range(200)]
    write_csv(tmp_path / "bare", "tickets", tickets)
    ingest(tmp_path / "bare", db=tmp_path / "bare.duckdb")
    wh = Warehouse(tmp_path / "bare.duckdb", read_only=True)
    with pytest.raises(CsMetricsError, match="no customer coordinates"):
        simulate_outage(wh, scenario(lat=1.0, lon=1.0), runs=5)
    wh.close()

    # customers but no outages, reps or handle times: defaults, each said
    write_csv(tmp_path / "customers", "tickets", tickets)
    write_csv(tmp_path / "customers", "customers", [
        {"customer_id": f"C{i}", "city": "Springfield", "lat": 40 + i / 1000, "lon": -89.0}
        for i in range(500)])
    ingest(tmp_path / "customers", db=tmp_path / "customers.duckdb")
    wh = Warehouse(tmp_path / "customers.duckdb", read_only=True)
    s = scenario(city="springfield", radius_km=100, start=datetime(2025, 2, 24, 9), hours=4)
    res = simulate_outage(wh, s, runs=20, tail_hours=2)
    wh.close()
    assert (res.city, res.affected_customers) == ("Springfield", 500)
    assert res.rate_source == "default"
    assert res.totals.expected_extra_tickets == pytest.approx(500 * 0.015 * 4)
    assert res.aht_s == load_settings().staffing.aht_s
    text = " ".join(res.notes)
    assert "no outages table" in text
    assert "no handle times" in text
    assert "no representatives on its tickets" in text
    # without reps, today's staffing is what Erlang C asks for without the outage
    assert (res.hours["current_agents"] > 0).any()
    assert (res.hours.loc[~res.hours["in_outage"], "extra_agents_needed"] == 0).all()
    assert res.sla_minutes == 240.0  # no segments: the Standard policy, normal priority


# --- the queue on hand-checkable cases -----------------------------------------------------


def _burst(runs: int, agents: list[float], p_done: float, at_minute: int, size: float):
    hours = len(agents)
    rate = np.zeros(hours * 60)
    rate[at_minute] = size  # every ticket arrives in one minute
    return whatif._simulate(rate, None, np.array(agents), np.full(hours, p_done), 0,
                            sla_minutes=45.0, runs=runs, seed=1)


def test_queue_waits_until_the_first_agent_arrives():
    # nobody works the first hour; a crowd works the second: the burst of 10:00 waits 50 min
    sim = _burst(30, [0.0, 1000.0, 1000.0], 1.0, 10, 40.0)
    n = sim.arrivals[:, 0]
    assert (n > 0).all() and (sim.arrivals[:, 1:] == 0).all()
    assert (sim.backlog[:, 0] == n).all() and (sim.backlog[:, 1:] == 0).all()
    assert (sim.wait_mean[:, 0] == 50.0).all()
    assert (sim.breach_pct[:, 0] == 100.0).all()  # 50 min > 45 min
    assert np.isnan(sim.wait_mean[:, 1:]).all()


def test_queue_one_agent_serves_in_arrival_order():
    # one agent who finishes every ticket within the minute: ticket j of the burst waits
    # j - 1 minutes, so the mean wait is (n - 1) / 2 and those past 45 minutes breach
    sim = _burst(30, [1.0, 1.0, 1.0], 1.0, 0, 60.0)
    n = sim.arrivals[:, 0]
    assert sim.wait_mean[:, 0] == pytest.approx((n - 1) / 2)
    late = np.maximum(n - 46, 0)
    assert sim.breach_pct[:, 0] == pytest.approx(100 * late / n)
    assert (sim.backlog[:, 0] == np.maximum(n - 60, 0)).all()


def test_queue_fractional_staff_is_the_average_capacity():
    # 0.3 agents on average: a third of the runs have the agent, the others nobody
    sim = _burst(2000, [0.3, 0.0], 1.0, 0, 5.0)
    served = sim.backlog[:, 0] == 0
    assert served.mean() == pytest.approx(0.3, abs=0.04)


# --- speed ------------------------------------------------------------------------------------


def test_48_hours_200_runs_is_fast(wh):
    s = scenario(start=SATURDAY, hours=48)
    simulate_outage(wh, s, runs=5, tail_hours=1)  # warm imports and DuckDB caches
    started = time.perf_counter()
    res = simulate_outage(wh, s, runs=200, seed=1)
    seconds = time.perf_counter() - started
    print(f"\n48 h outage + {TAIL_HOURS} h tail, 200 runs: {seconds:.2f} s "
          f"({len(res.hours)} hours, {res.totals.expected_extra_tickets:.0f} extra tickets)")
    assert len(res.hours) == 48 + TAIL_HOURS
    assert seconds < 15


def test_result_is_frozen(wh):
    res = simulate_outage(wh, scenario(hours=2), runs=5, tail_hours=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.summary = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.totals.peak_backlog_p50 = 0.0  # type: ignore[misc]
    assert isinstance(res.hours, pd.DataFrame)
