"""Map layers: grid cells computed in DuckDB against the same binning in pandas."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from cs_metrics import CsMetricsError, Filters, Warehouse
from cs_metrics.analysis.maps import auto_cell_km, customer_cells, ticket_density
from cs_metrics.core.geo import KM_PER_DEGREE_LAT
from cs_metrics.ingestion.loader import ingest
from tests.conftest import ticket, write_csv


def _cells(lat: pd.Series, lon: pd.Series, cell_km: float) -> pd.DataFrame:
    k = np.cos(np.radians(lat.mean()))
    return pd.DataFrame({
        "cx": np.floor(lon * k * KM_PER_DEGREE_LAT / cell_km),
        "cy": np.floor(lat * KM_PER_DEGREE_LAT / cell_km),
        "k": k,
    })


@pytest.mark.parametrize("filters, cell_km", [
    (Filters(), 25.0),
    (Filters.build(date(2025, 1, 1), date(2025, 2, 1), channel="chat"), 10.0),
])
def test_ticket_density_is_the_pandas_binning(sample_wh, filters, cell_km):
    t = sample_wh.df("select created_at, channel, domain, location_lat, location_lon, is_test "
                     "from tickets")
    t = t[~t["is_test"]]
    if filters.date_from:
        t = t[(t["created_at"] >= pd.Timestamp(filters.date_from))
              & (t["created_at"] < pd.Timestamp(filters.date_to))]
    for dim, values in filters.where:
        t = t[t[dim].isin(values)]
    located = t.dropna(subset=["location_lat", "location_lon"])
    cells = _cells(located["location_lat"], located["location_lon"], cell_km)
    want = cells.assign(domain=located["domain"].to_numpy()).groupby(["cx", "cy"]).agg(
        tickets=("k", "size"), k=("k", "first"))
    want["lat"] = (want.index.get_level_values("cy") + 0.5) * cell_km / KM_PER_DEGREE_LAT
    want["lon"] = (want.index.get_level_values("cx") + 0.5) * cell_km / (
        KM_PER_DEGREE_LAT * want["k"])
    got = ticket_density(sample_wh, filters, cell_km)
    assert list(got.columns) == ["lat", "lon", "tickets", "top_domain", "share_pct"]
    assert len(got) == len(want) > 3
    merged = got.round(6).merge(want.round(6), on=["lat", "lon"], suffixes=("", "_pd"))
    assert len(merged) == len(want)
    assert (merged["tickets"] == merged["tickets_pd"]).all()
    assert got["tickets"].sum() == len(located)
    assert got["share_pct"].sum() == pytest.approx(100.0)
    assert got.attrs["unlocated"] == len(t) - len(located)
    # each cell's top domain is one of its most frequent domains
    per = cells.assign(domain=located["domain"].to_numpy()).groupby(
        ["cx", "cy", "domain"]).size().rename("n").reset_index()
    per = per.merge(want[["lat", "lon"]].round(6).reset_index(), on=["cx", "cy"])
    best = per.groupby(["lat", "lon"])["n"].max().rename("best").reset_index()
    chosen = got.round(6).merge(per, left_on=["lat", "lon", "top_domain"],
                                right_on=["lat", "lon", "domain"]).merge(best, on=["lat", "lon"])
    assert len(chosen) == len(got)
    assert (chosen["n"] == chosen["best"]).all()


def test_customer_cells_count_every_located_customer_by_segment(sample_wh):
    c = sample_wh.df("select segment, lat, lon from customers")
    got = customer_cells(sample_wh, 25.0)
    located = c.dropna(subset=["lat", "lon"])
    assert got["customers"].sum() == len(located)
    by_segment = got.groupby("segment")["customers"].sum()
    want = located["segment"].fillna("Unknown").value_counts()
    assert by_segment.sort_index().tolist() == want.sort_index().tolist()


def test_without_coordinates_the_layers_are_empty(tmp_path):
    write_csv(tmp_path / "src", "tickets", [ticket("T1"), ticket("T2")])
    ingest(tmp_path / "src", db=tmp_path / "wh.duckdb")
    wh = Warehouse(tmp_path / "wh.duckdb", read_only=True)
    try:
        assert ticket_density(wh).empty
        assert customer_cells(wh).empty
    finally:
        wh.close()


def test_bad_cells_are_refused(sample_wh, monkeypatch):
    with pytest.raises(CsMetricsError, match="positive number of km"):
        ticket_density(sample_wh, cell_km=0)
    monkeypatch.setattr("cs_metrics.analysis.maps.MAX_CELLS", 3)
    with pytest.raises(CsMetricsError, match="too many to draw; use cells of at least"):
        ticket_density(sample_wh, cell_km=5)


@pytest.mark.parametrize("span, cell", [(10, 1.0), (3000, 50.0), (500, 10.0), (120, 2.0)])
def test_auto_cell_size(span, cell):
    assert auto_cell_km(span) == cell
