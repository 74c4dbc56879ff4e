"""Outage impact: generated outages recover the generator's true surge; a handcrafted warehouse
with a known baseline and surge gives exact figures; missing inputs are explained."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cs_metrics.analysis.maps import customer_cells, customer_cities, customer_places
from cs_metrics.analysis.outages import (
    IMPACT_COLUMNS,
    SEVERITY_COLUMNS,
    Z95,
    outage_impact,
    outage_tickets,
    severity_rates,
)
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.geo import haversine_km
from cs_metrics.core.schema import SEVERITIES
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.loader import ingest
from cs_metrics.metrics.drilldown import COLUMNS
from cs_metrics.metrics.registry import Filters
from simulations.generator import GenerationResult, generate
from tests.conftest import ticket, write_csv

# Four years at 200k tickets: about 35 minor, 22 major and 12 critical outages, enough for a
# pooled rate within a few per cent; generating and loading take about 5 s.
GEN = {"tickets": 200_000, "days": 1460, "seed": 7, "end": datetime(2025, 3, 1)}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[GenerationResult, Warehouse]:
    tmp = tmp_path_factory.mktemp("outages")
    result = generate(tmp / "data", **GEN)
    ingest(tmp / "data", db=tmp / "wh.duckdb")
    wh = Warehouse(tmp / "wh.duckdb", read_only=True)
    yield result, wh
    wh.close()


@pytest.fixture(scope="module")
def impact(generated) -> pd.DataFrame:
    return outage_impact(generated[1])


def test_severity_rates_recover_the_true_effect(generated):
    result, wh = generated
    truth = result.truth
    assert truth["outage_surge_thinning"] == 1.0  # no thinning: the rates are the truth
    rates = severity_rates(wh).set_index("severity")
    assert list(rates.index) == list(SEVERITIES)
    assert list(rates.reset_index().columns) == list(SEVERITY_COLUMNS)
    print()
    for sev in SEVERITIES:
        true = truth["outage_excess_per_customer_hour"][sev]
        row = rates.loc[sev]
        print(f"{sev:>8}: {row['excess_per_customer_hour']:.5f} "
              f"[{row['low']:.5f}, {row['high']:.5f}] vs true {true:.5f} "
              f"({row['excess_per_customer_hour'] / true - 1:+.1%}) over {int(row['outages'])} "
              "outages")
        assert row["outages"] >= 5
        assert row["excess_per_customer_hour"] == pytest.approx(true, rel=0.15)
        assert row["low"] < row["excess_per_customer_hour"] < row["high"]
    assert rates.attrs["notes"] == []


def test_excess_matches_the_generated_surge(generated, impact):
    truth = {o["outage_id"]: o for o in generated[0].truth["outages"]}
    assert list(impact.columns) == list(IMPACT_COLUMNS)
    assert impact["outage_id"].tolist() == sorted(truth)
    generated_excess = impact["outage_id"].map(lambda i: truth[i]["generated_excess_tickets"])
    # in total, within a few per cent of the surge tickets the generator wrote
    assert impact["excess_tickets"].sum() == pytest.approx(generated_excess.sum(), rel=0.05)
    # per outage, the 95 % interval holds the generated surge nearly always
    covered = (impact["excess_low"] <= generated_excess) & (generated_excess
                                                              <= impact["excess_high"])
    assert covered.mean() >= 0.9, impact.loc[~covered, ["outage_id", "excess_tickets"]]
    # big surges stand out, and the domain with the largest excess is the one that broke
    big = generated_excess >= 30
    assert big.sum() >= 10
    assert (impact.loc[big, "excess_z"] > 5).all()
    assert (impact.loc[big, "top_domain"] == impact.loc[big, "outage_id"].map(
        lambda i: truth[i]["domain"])).all()
    hours = impact["outage_id"].map(lambda i: truth[i]["window_hours"])
    assert np.allclose(impact["hours"], hours, atol=0.01)


def test_affected_customers_and_window_tickets_match_pandas(generated, impact):
    result, wh = generated
    customers = pd.read_parquet(result.out / "customers.parquet")
    tickets = pd.read_parquet(result.out / "tickets.parquet")
    tickets = tickets[~tickets["is_test"]]
    located = tickets.dropna(subset=["location_lat", "location_lon"])
    outages = pd.read_parquet(result.out / "outages.parquet").set_index("outage_id")
    truth = {o["outage_id"]: o for o in result.truth["outages"]}
    as_of = pd.Timestamp(wh.as_of())
    for row in impact.itertuples():
        o = outages.loc[row.outage_id]
        inside = haversine_km(o["lat"], o["lon"], customers["lat"], customers["lon"])
        n_customers = int((inside <= o["radius_km"]).sum())
        assert row.affected_customers == n_customers == truth[row.outage_id][
            "affected_customers"]
        end = as_of if pd.isna(o["ended_at"]) else min(o["ended_at"], as_of)
        assert row.ongoing == pd.isna(o["ended_at"])
        assert row.ended_at == end
        in_window = (located["created_at"] >= o["started_at"]) & (located["created_at"] < end)
        near = haversine_km(o["lat"], o["lon"], located["location_lat"],
                            located["location_lon"]) <= o["radius_km"]
        assert row.tickets_in_window == int((in_window & near).sum()), row.outage_id
        unlocated = tickets[tickets["location_lat"].isna()]
        assert row.unlocated_tickets == int(
            ((unlocated["created_at"] >= o["started_at"]) & (unlocated["created_at"] < end))
            .sum())
    # the generator writes no test-free ticket without coordinates
    assert impact["unlocated_tickets"].sum() == 0


def test_outage_tickets_page_through_the_window(generated, impact):
    wh = generated[1]
    row = impact.sort_values("tickets_in_window").iloc[len(impact) // 2]
    seen: list[str] = []
    offset = 0
    while True:
        page = outage_tickets(wh, row.outage_id, limit=7, offset=offset)
        assert page.total == row.tickets_in_window
        assert list(page.rows.columns) == [*COLUMNS, "distance_km"]
        assert (page.rows["distance_km"] <= row.radius_km).all()
        assert page.rows["created_at"].between(row.started_at, row.ended_at).all()
        seen += page.rows["ticket_id"].tolist()
        if not page.has_next:
            break
        offset += 7
    assert len(seen) == len(set(seen)) == row.tickets_in_window
    with pytest.raises(CsMetricsError, match="no outage 'O9999'"):
        outage_tickets(wh, "O9999")
    with pytest.raises(CsMetricsError, match="1 to"):
        outage_tickets(wh, row.outage_id, limit=0)


def test_date_range_picks_overlapping_outages(generated, impact):
    wh = generated[1]
    mid = impact.iloc[len(impact) // 2]
    day = mid["started_at"].date()
    picked = outage_impact(wh, Filters.build(day, day + timedelta(days=1)))
    overlapping = impact[(impact["ended_at"] > pd.Timestamp(day))
                         & (impact["started_at"] < pd.Timestamp(day + timedelta(days=1)))]
    assert picked["outage_id"].tolist() == overlapping["outage_id"].tolist()
    assert mid["outage_id"] in picked["outage_id"].tolist()
    # the baseline weeks lie outside the range and still count: every figure of an outage is
    # the same whatever range picks it (the app works them out once for every range)
    pd.testing.assert_frame_equal(
        picked.set_index("outage_id"),
        impact.set_index("outage_id").loc[picked["outage_id"]],
    )
    empty = outage_impact(wh, Filters.build(date(1990, 1, 1), date(1990, 2, 1)))
    assert empty.empty and list(empty.columns) == list(IMPACT_COLUMNS)
    assert "overlaps the date range" in empty.attrs["notes"][0]


# --- a handcrafted warehouse -------------------------------------------------------------------
#
# O1: 10 km around (40, -75), Wednesday 2024-03-13 10:00-12:00, major. Four customers live
# inside (one 9.4 km out), two outside (one 10.2 km out). Its eight comparable weeks are the
# same Wednesday hours from Feb 14 to Apr 10; week +1 (Mar 20) is skipped because O2, whose
# circle meets O1's, runs then. Baseline: 2 tickets in week -1, 1 in each other kept week:
# 8 tickets over 7 weeks. Window: 6 located tickets (each breaching both urgent targets), plus
# one 22 km away, one without coordinates and one test ticket, none of which count.
# O2: 5 km around (40.05, -75), Mar 20 09:00-13:00, major, 1 customer inside: 10 surge
# tickets plus O1's week +1 ticket; its baseline is 7 tickets over 7 weeks (week -1 skipped).
# O3: far away (45, -100), Mar 27 09:00-13:00, critical, 1 customer, no ticket: it runs
# during O1's week +2 but its circle does not meet O1's, so that week is kept.
# O4: at O3's place, ongoing since Apr 25 10:00, minor: only its 4 earlier weeks fit in the
# data, which ends on Apr 30.

IN = (40.02, -75.0)  # inside O1 (2.2 km) and O2 (3.3 km)


def _ts(day: str, hh_mm: str) -> str:
    return f"{day} {hh_mm}:00"


def _closed(tid: str, created: str, fr_min: float, res_h: float, lat=IN[0], lon=IN[1],
            domain: str = "billing", **extra) -> dict:
    at = datetime.fromisoformat(created)
    return ticket(
        tid, created, "closed", priority="urgent", domain=domain,
        first_response_at=str(at + timedelta(minutes=fr_min)),
        resolved_at=str(at + timedelta(hours=res_h)),
        location_lat=lat, location_lon=lon, **extra,
    )


def _handcrafted_rows() -> dict[str, list[dict]]:
    tickets: list[dict] = []
    n = 0

    def add(created: str, fr_min=10.0, res_h=1.0, **kw) -> None:
        nonlocal n
        n += 1
        tickets.append(_closed(f"T{n:04d}", created, fr_min, res_h, **kw))

    # a daily ticket at 15:00 inside both circles, outside every window: it spans the data
    day = datetime(2024, 2, 1)
    while day <= datetime(2024, 4, 30):
        add(_ts(day.date().isoformat(), "15:00"))
        day += timedelta(days=1)
    # O1's baseline weeks (10:30); week -1 has a second ticket that breaches first response
    for d in ("2024-02-14", "2024-02-21", "2024-02-28", "2024-03-06", "2024-03-20",
              "2024-03-27", "2024-04-03", "2024-04-10"):
        add(_ts(d, "10:30"))
    add(_ts("2024-03-06", "11:15"), fr_min=28.0)
    # just outside O1's week -4 window (the end is exclusive)
    add(_ts("2024-02-14", "09:59"))
    add(_ts("2024-02-14", "12:00"))
    # O1's window: 6 located tickets breaching both targets (urgent: 15 min, 4 h)
    for minute in range(6):
        add(f"2024-03-13 10:{10 + minute:02d}:00", fr_min=30.0, res_h=5.0, domain="internet")
    add(_ts("2024-03-13", "10:40"), lat=40.2, lon=-75.0)  # 22 km away
    add(_ts("2024-03-13", "10:45"), lat=None, lon=None)  # no coordinates
    add(_ts("2024-03-13", "10:50"), is_test=True)  # internal test ticket
    # O2's surge, inside both circles, during O1's week +1
    for minute in range(10):
        add(f"2024-03-20 09:{10 + minute:02d}:00", fr_min=5.0, lat=40.04, lon=-75.0,
            domain="network")
    customers = [
        {"customer_id": f"C{i}", "segment": "S", "lat": lat, "lon": lon}
        for i, (lat, lon) in enumerate([
            (40.01, -75.0), (40.0, -75.05), (39.95, -75.0), (40.0, -75.11),  # inside O1
            (40.0, -75.12), (40.2, -75.0),  # outside O1
            (45.0, -100.0),  # inside O3
        ])
    ]
    outages = [
        {"outage_id": "O1", "location": "Here", "lat": 40.0, "lon": -75.0, "radius_km": 10.0,
         "started_at": "2024-03-13 10:00:00", "ended_at": "2024-03-13 12:00:00",
         "severity": "major", "description": "fibre cut"},
        {"outage_id": "O2", "location": "North", "lat": 40.05, "lon": -75.0, "radius_km": 5.0,
         "started_at": "2024-03-20 09:00:00", "ended_at": "2024-03-20 13:00:00",
         "severity": "major", "description": "node down"},
        {"outage_id": "O3", "location": "Far", "lat": 45.0, "lon": -100.0, "radius_km": 20.0,
         "started_at": "2024-03-27 09:00:00", "ended_at": "2024-03-27 13:00:00",
         "severity": "critical", "description": "tower fire"},
        {"outage_id": "O4", "location": "Far", "lat": 45.0, "lon": -100.0, "radius_km": 20.0,
         "started_at": "2024-04-25 10:00:00", "ended_at": None,
         "severity": "minor", "description": "power cut"},
    ]
    for t in tickets:
        t.setdefault("is_test", False)
    return {"tickets": tickets, "customers": customers, "outages": outages}


def _warehouse(tmp: Path, rows: dict[str, list[dict] | pd.DataFrame]) -> Warehouse:
    for name, table in rows.items():
        write_csv(tmp / "src", name, table)
    ingest(tmp / "src", db=tmp / "wh.duckdb")
    return Warehouse(tmp / "wh.duckdb", read_only=True)


@pytest.fixture(scope="module")
def handcrafted(tmp_path_factory) -> Warehouse:
    wh = _warehouse(tmp_path_factory.mktemp("hand"), _handcrafted_rows())
    yield wh
    wh.close()


def test_handcrafted_known_baseline_and_surge(handcrafted):
    df = outage_impact(handcrafted).set_index("outage_id")
    assert df.index.tolist() == ["O1", "O2", "O3", "O4"]
    o1 = df.loc["O1"]
    assert (o1["hours"], o1["affected_customers"], o1["tickets_in_window"]) == (2.0, 4, 6)
    assert o1["baseline_weeks"] == 7
    assert o1["expected_tickets"] == pytest.approx(8 / 7)
    assert o1["excess_tickets"] == pytest.approx(6 - 8 / 7)
    half = Z95 * math.sqrt(6 + (8 / 7) / 7)
    assert (o1["excess_low"], o1["excess_high"]) == pytest.approx((6 - 8 / 7 - half,
                                                                   6 - 8 / 7 + half))
    # pooled Poisson mean (6 + 8) / 8 under "no surge", variance 1.75 * (1 + 1/7) = 2
    assert o1["excess_z"] == pytest.approx((6 - 8 / 7) / math.sqrt(2))
    assert o1["excess_per_customer_hour"] == pytest.approx((6 - 8 / 7) / (4 * 2))
    assert (o1["top_domain"], o1["top_domain_excess"]) == ("internet", 6)
    assert o1["avg_first_response_min"] == pytest.approx(30)
    assert o1["baseline_first_response_min"] == pytest.approx((7 * 10 + 28) / 8)
    assert o1["extra_first_response_min"] == pytest.approx(30 - 98 / 8)
    assert o1["extra_resolution_h"] == pytest.approx(4)
    assert o1["sla_breaches"] == 6
    assert o1["expected_sla_breaches"] == pytest.approx(1 / 7)
    assert o1["sla_breaches_caused"] == pytest.approx(6 - 1 / 7)
    assert o1["sla_first_response_breaches_caused"] == pytest.approx(6 - 1 / 7)
    assert o1["sla_resolution_breaches_caused"] == pytest.approx(6)
    assert o1["unlocated_tickets"] == 1 and not o1["ongoing"]

    o2 = df.loc["O2"]
    assert (o2["affected_customers"], o2["tickets_in_window"], o2["baseline_weeks"]) == (1, 11, 7)
    assert o2["expected_tickets"] == pytest.approx(1.0)
    assert o2["excess_per_customer_hour"] == pytest.approx(10 / 4)
    assert o2["top_domain"] == "network"

    o3 = df.loc["O3"]
    assert (o3["affected_customers"], o3["tickets_in_window"], o3["baseline_weeks"]) == (1, 0, 8)
    assert (o3["expected_tickets"], o3["excess_tickets"]) == (0, 0)
    assert math.isnan(o3["excess_z"])  # nothing in the window nor in any week: no test
    o4 = df.loc["O4"]
    as_of = pd.Timestamp(handcrafted.as_of())
    assert as_of == pd.Timestamp("2024-04-30 16:00")  # the last resolution
    assert o4["ongoing"] and o4["ended_at"] == as_of
    assert o4["hours"] == pytest.approx(5 * 24 + 6)
    assert (o4["baseline_weeks"], o4["excess_tickets"]) == (4, 0)

    rates = severity_rates(handcrafted).set_index("severity")
    assert rates.loc["major", "outages"] == 2
    assert rates.loc["major", "customer_hours"] == pytest.approx(4 * 2 + 1 * 4)
    assert rates.loc["major", "excess_per_customer_hour"] == pytest.approx(
        (6 - 8 / 7 + 10) / 12)
    assert rates.loc["critical", "excess_per_customer_hour"] == 0
    assert rates.loc["minor", "outages"] == 1
    march = severity_rates(handcrafted, Filters.build(date(2024, 3, 1), date(2024, 3, 21)))
    march = march.set_index("severity")
    assert march["outages"].tolist() == [0, 2, 0]
    assert march.loc[["minor", "critical"], "excess_per_customer_hour"].isna().all()
    assert df.attrs["notes"] == ["1 ticket created during outage windows has no coordinates "
                                 "and is not attributed to any outage."]


def test_handcrafted_dimension_filter_narrows_both_sides(handcrafted):
    o1 = outage_impact(handcrafted, Filters.build(domain="billing")).set_index(
        "outage_id").loc["O1"]
    assert (o1["tickets_in_window"], o1["expected_tickets"]) == (0, pytest.approx(8 / 7))
    o1 = outage_impact(handcrafted, Filters.build(domain="internet")).set_index(
        "outage_id").loc["O1"]
    assert (o1["tickets_in_window"], o1["expected_tickets"]) == (6, 0)


def test_handcrafted_drill_down_lists_the_window(handcrafted):
    page = outage_tickets(handcrafted, "O1")
    assert page.total == 6
    assert page.rows["created_at"].is_monotonic_increasing
    assert page.rows["domain"].eq("internet").all()
    assert page.rows["distance_km"].tolist() == pytest.approx([haversine_km(40, -75, *IN)] * 6)


@pytest.mark.parametrize("baseline_weeks", [0, 53, 2.5])
def test_bad_baseline_weeks(handcrafted, baseline_weeks):
    with pytest.raises(CsMetricsError, match="1 to 52 weeks"):
        outage_impact(handcrafted, baseline_weeks=baseline_weeks)


def test_one_baseline_week_each_side(handcrafted):
    o1 = outage_impact(handcrafted, baseline_weeks=1).set_index("outage_id").loc["O1"]
    # week +1 is O2's: only week -1 (2 tickets) is left
    assert (o1["baseline_weeks"], o1["expected_tickets"]) == (1, 2)


# --- missing inputs ------------------------------------------------------------------------


def test_no_outages_table_gives_empty_frames_with_a_reason(tmp_path):
    rows = _handcrafted_rows()
    del rows["outages"]
    wh = _warehouse(tmp_path, rows)
    impact = outage_impact(wh)
    assert impact.empty and list(impact.columns) == list(IMPACT_COLUMNS)
    assert impact.attrs["notes"] == [
        "This dataset has no outages table, so there is no outage to measure."
    ]
    rates = severity_rates(wh)
    assert rates.empty and list(rates.columns) == list(SEVERITY_COLUMNS)
    assert "no outages table" in rates.attrs["notes"][0]
    with pytest.raises(CsMetricsError, match="no outages table"):
        outage_tickets(wh, "O1")
    wh.close()


def test_no_customers_leaves_per_customer_figures_unknown(tmp_path):
    rows = _handcrafted_rows()
    del rows["customers"]
    wh = _warehouse(tmp_path, rows)
    df = outage_impact(wh).set_index("outage_id")
    assert df["affected_customers"].isna().all()
    assert df["excess_per_customer_hour"].isna().all()
    assert df.loc["O1", "excess_tickets"] == pytest.approx(6 - 8 / 7)  # the rest still holds
    assert any("no customer coordinates" in n for n in df.attrs["notes"])
    rates = severity_rates(wh)
    assert (rates["outages"] == 0).all() and rates["excess_per_customer_hour"].isna().all()
    wh.close()


def test_no_ticket_coordinates_leaves_ticket_figures_unknown(tmp_path):
    rows = _handcrafted_rows()
    rows["tickets"] = pd.DataFrame(rows["tickets"]).drop(columns=["location_lat",
                                                                  "location_lon"])
    wh = _warehouse(tmp_path, rows)
    df = outage_impact(wh).set_index("outage_id")
    assert df["affected_customers"].tolist() == [4, 1, 1, 1]
    for col in ("tickets_in_window", "expected_tickets", "excess_tickets",
                "sla_breaches_caused", "extra_first_response_min"):
        assert df[col].isna().all(), col
    assert df.loc["O1", "unlocated_tickets"] == 8  # every non-test ticket in the window
    assert any("no coordinates" in n for n in df.attrs["notes"])
    wh.close()


def test_no_tickets_is_an_error(tmp_path):
    wh = Warehouse(tmp_path / "empty.duckdb")
    with pytest.raises(CsMetricsError, match="no tickets yet"):
        outage_impact(wh)
    with pytest.raises(CsMetricsError, match="no tickets yet"):
        severity_rates(wh)
    wh.close()


def test_customer_cities_and_places_match_pandas(sample_wh, tmp_path):
    """The what-if page's city list and pick map: the customers' own rows counted in pandas."""
    c = sample_wh.df("select city, segment, lat, lon from customers")
    located = c[c["city"].notna() & c["lat"].notna()]
    counts = located["city"].value_counts()
    want = sorted(counts.index, key=lambda city: (-counts[city], city))
    assert want and customer_cities(sample_wh) == want

    places = customer_places(sample_wh, 25.0)
    assert list(places.columns) == ["lat", "lon", "customers"]
    cells = customer_cells(sample_wh, 25.0)
    by_place = cells.groupby(["lat", "lon"])["customers"].sum()
    assert len(places) == len(by_place) and not places.duplicated(["lat", "lon"]).any()
    assert dict(zip(zip(places["lat"], places["lon"], strict=True), places["customers"],
                    strict=True)) == by_place.to_dict()
    assert places["customers"].sum() == len(c.dropna(subset=["lat", "lon"]))

    # no customers table: nothing to name or pick
    write_csv(tmp_path / "data", "tickets", [ticket("T1", "2024-01-01 09:00:00", "open")])
    ingest(tmp_path / "data", db=tmp_path / "bare.duckdb")
    bare = Warehouse(tmp_path / "bare.duckdb", read_only=True)
    assert customer_cities(bare) == []
    assert customer_places(bare).empty
    bare.close()
