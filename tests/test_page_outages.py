"""The Outages page, run headless: the map's layers and the tables are the library's figures."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import cs_metrics
import cs_metrics.analysis.outages
from cs_metrics import Filters, Warehouse
from cs_metrics.analysis.maps import auto_cell_km, ticket_density
from cs_metrics.analysis.outages import outage_impact, outage_tickets, severity_rates
from simulations.generator import generate
from tests.conftest import REPO, ticket, write_csv
from views._charts import NO_BASEMAP

PAGE = str(REPO / "views" / "outages.py")
TIMEOUT = 60

pytestmark = pytest.mark.usefixtures("fresh_caches")


@pytest.fixture(scope="module")
def outage_db(tmp_path_factory) -> Path:
    """Half a year of generated data: enough outages inside the default 90 days."""
    tmp = tmp_path_factory.mktemp("outage_page")
    generate(tmp / "src", tickets=12000, days=180, seed=21,
             end=pd.Timestamp("2025-03-01").to_pydatetime())
    cs_metrics.ingest(tmp / "src", db=tmp / "wh.duckdb")
    return tmp / "wh.duckdb"


def run_page(monkeypatch, db: Path) -> AppTest:
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    monkeypatch.setenv("CS_METRICS_BASEMAP", "off")
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def window(db: Path) -> Filters:
    wh = Warehouse(db)
    try:
        last = min(wh.created_range()[1].date(), wh.as_of().date())
    finally:
        wh.close()
    end = last + timedelta(days=1)
    return Filters(end - timedelta(days=90), end)


def library(db: Path, fn):
    wh = Warehouse(db)
    try:
        return fn(wh)
    finally:
        wh.close()


def deck(at: AppTest) -> dict:
    return json.loads(at.get("deck_gl_json_chart")[0].proto.json)


def layers(at: AppTest) -> dict[str, list]:
    return {layer["id"]: layer["data"] for layer in deck(at)["layers"]}


def test_map_and_tables_show_the_library_figures(outage_db, monkeypatch):
    filters = window(outage_db)
    impact = library(outage_db, lambda wh: outage_impact(wh, filters))
    assert len(impact) >= 2, "the fixture should hold outages in the last 90 days"
    at = run_page(monkeypatch, outage_db)
    shown = {m.label: m.value for m in at.metric}
    assert shown["Outages"] == f"{len(impact):,}"
    assert shown["Extra tickets"] == f"{impact['excess_tickets'].sum():,.0f}"
    assert shown["SLA breaches caused"] == f"{impact['sla_breaches_caused'].sum():,.0f}"

    data = layers(at)
    assert len(data["outages"]) == len(impact)
    assert sorted(o["outage_id"] for o in data["outages"]) == sorted(impact["outage_id"])
    assert all(o["radius_m"] == pytest.approx(o["radius_km"] * 1000) for o in data["outages"])
    # ticket density: the warehouse's cells, not raw tickets
    probe = library(outage_db, lambda wh: ticket_density(wh, filters, 50.0))
    span = 111.0 * max(probe["lat"].max() - probe["lat"].min(),
                       probe["lon"].max() - probe["lon"].min())
    cells = library(outage_db, lambda wh: ticket_density(wh, filters, auto_cell_km(span)))
    assert len(data["tickets"]) == len(cells)
    assert sum(c["tickets"] for c in data["tickets"]) == cells["tickets"].sum()
    # no basemap without a network: Streamlit's marker for "no style", so nothing is fetched
    assert deck(at).get("mapStyle") == NO_BASEMAP

    table = next(d.value for d in at.dataframe if "excess_per_customer_hour" in d.value.columns
                 and "outage_id" in d.value.columns)
    pd.testing.assert_frame_equal(table.reset_index(drop=True), impact.reset_index(drop=True),
                                  check_dtype=False)
    rates = library(outage_db, lambda wh: severity_rates(wh, filters))
    shown_rates = next(d.value for d in at.dataframe if "customer_hours" in d.value.columns)
    assert shown_rates["excess_per_customer_hour"].tolist() == pytest.approx(
        rates["excess_per_customer_hour"].tolist(), nan_ok=True)


def test_every_date_range_is_picked_from_one_computation(outage_db, monkeypatch):
    """Visitors with other date ranges share one computation of the outages' figures (they
    do not depend on the range), and each still sees their range's outages and rates."""
    calls = []
    every = cs_metrics.analysis.outages.impact_of_every_outage
    monkeypatch.setattr(cs_metrics.analysis.outages, "impact_of_every_outage",
                        lambda *a, **k: (calls.append(1), every(*a, **k))[1])
    monkeypatch.setenv("CS_METRICS_DB", str(outage_db))
    monkeypatch.setenv("CS_METRICS_BASEMAP", "off")
    end = window(outage_db).date_to
    page_calls = 0
    for days_back, length in ((0, 90), (20, 60), (45, 30)):
        filters = Filters(end - timedelta(days=days_back + length), end - timedelta(days=days_back))
        at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
        at.query_params.update({"range": "custom", "from": filters.date_from.isoformat(),
                                "to": (filters.date_to - timedelta(days=1)).isoformat()})
        calls.clear()
        at.run()
        page_calls += len(calls)
        assert not at.exception, [e.value for e in at.exception]
        impact = library(outage_db, lambda wh, f=filters: outage_impact(wh, f))
        shown = {m.label: m.value for m in at.metric}
        assert shown["Outages"] == f"{len(impact):,}"
        table = next(d.value for d in at.dataframe
                     if "excess_per_customer_hour" in d.value.columns
                     and "outage_id" in d.value.columns)
        assert table["outage_id"].tolist() == impact["outage_id"].tolist()
        rates = library(outage_db, lambda wh, f=filters: severity_rates(wh, f))
        shown_rates = next(d.value for d in at.dataframe if "customer_hours" in d.value.columns)
        assert shown_rates["outages"].tolist() == rates["outages"].tolist()
    assert page_calls == 1


def test_selecting_an_outage_focuses_the_map_and_lists_its_tickets(outage_db, monkeypatch):
    filters = window(outage_db)
    impact = library(outage_db, lambda wh: outage_impact(wh, filters))
    at = run_page(monkeypatch, outage_db)
    row = int(impact["excess_tickets"].fillna(-1).to_numpy().argmax())
    at.session_state["outage_table"] = {"selection": {"rows": [row], "columns": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    chosen = impact.iloc[row]
    view = deck(at)["initialViewState"]
    assert view["latitude"] == pytest.approx(chosen["lat"])
    assert view["longitude"] == pytest.approx(chosen["lon"])
    shown = {m.label: m.value for m in at.metric}
    assert shown["Customers affected"] == f"{chosen['affected_customers']:,}"
    assert shown["Extra tickets"] in (f"{chosen['excess_tickets']:,.0f}",
                                      f"{impact['excess_tickets'].sum():,.0f}")
    page = library(outage_db, lambda wh: outage_tickets(wh, chosen["outage_id"], filters,
                                                        limit=25))
    listed = next(d.value for d in at.dataframe if "distance_km" in d.value.columns)
    assert listed["ticket_id"].tolist() == page.rows["ticket_id"].tolist()
    assert f"of {page.total:,} inside the circle" in " ".join(c.value for c in at.caption)


def test_a_dataset_without_outages_says_so(tmp_path, monkeypatch):
    write_csv(tmp_path / "src", "tickets", [
        ticket(f"T{i}", f"2025-01-{1 + i % 20:02d} 10:00:00", location_lat=40.7,
               location_lon=-74.0) for i in range(30)])
    cs_metrics.ingest(tmp_path / "src", db=tmp_path / "wh.duckdb")
    at = run_page(monkeypatch, tmp_path / "wh.duckdb")
    assert any("no outages table" in i.value for i in at.info)
    assert "tickets" in layers(at)  # the ticket density still draws
