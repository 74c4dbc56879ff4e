"""Suspicious coordinates: counted as ingest warnings (rows kept) and left off the map, each
figure against a pandas count of the same rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from cs_metrics import Warehouse
from cs_metrics.analysis.maps import ticket_density
from cs_metrics.ingestion.loader import PLACEHOLDER_MIN_ROWS, PLACEHOLDER_MIN_SHARE, ingest
from cs_metrics.ingestion.quality import quality_report
from tests.conftest import REPO, write_csv

PAGE = str(REPO / "views" / "outages.py")


def _tickets(seed: int = 5) -> pd.DataFrame:
    """Tickets around New York with real, scattered coordinates, and the kinds of bad ones an
    open-data export holds: one placeholder many requests share exactly, 0, 0, values out of
    range, an address repeated by a few tickets (a real place, not a placeholder) and tickets
    with no coordinates at all."""
    rng = np.random.default_rng(seed)
    n = 400
    lat = 40.7 + rng.normal(0, 0.08, n)
    lon = -73.95 + rng.normal(0, 0.08, n)
    lat[:35], lon[:35] = 39.0, -77.0          # the placeholder
    lat[35:41], lon[35:41] = 0.0, 0.0         # null island
    lat[41:44], lon[41:44] = 95.0, -74.0      # out of range
    lat[44:46], lon[44:46] = 40.7, 190.0
    lat[46:58], lon[46:58] = 40.75, -73.99    # one building, 12 tickets: below the threshold
    lat[58:70], lon[58:70] = np.nan, np.nan   # unlocated
    lat[360:], lon[360:] = 40.8, -73.8        # a big customer's site: a real place
    created = pd.Timestamp("2025-02-01") + pd.to_timedelta(rng.integers(0, 20 * 24, n), "h")
    return pd.DataFrame({
        "ticket_id": [f"T{i:04d}" for i in range(n)],
        "created_at": created.strftime("%Y-%m-%d %H:%M:%S"),
        "status": "open",
        "domain": rng.choice(["network", "billing"], n),
        "location_lat": lat, "location_lon": lon,
        # a few customers; the big one's 40 tickets all sit at its own site
        "customer_id": np.where(np.arange(n) >= 360, "C-BIG",
                                np.where(np.arange(n) < 35, None,
                                         rng.choice(["C1", "C2", "C3"], n))),
    })


def _suspect(df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(out of range, placeholder) flags per row, by the documented rule, in pandas."""
    located = df.dropna(subset=["location_lat", "location_lon"])
    lat, lon = df["location_lat"], df["location_lon"]
    out = lat.notna() & lon.notna() & (
        ~lat.between(-90, 90) | ~lon.between(-180, 180) | ((lat == 0) & (lon == 0)))
    groups = located.groupby(["location_lat", "location_lon"])
    sizes = groups.size()
    # every ticket of one customer: a real site, not a placeholder
    one_customer = groups["customer_id"].agg(lambda c: c.notna().all() and c.nunique() == 1)
    common = sizes[(sizes >= PLACEHOLDER_MIN_ROWS)
                   & (sizes > PLACEHOLDER_MIN_SHARE * len(located)) & (sizes < len(located))
                   & ~one_customer].index
    pair = pd.MultiIndex.from_arrays([lat, lon])
    placeholder = pd.Series(pair.isin(common), index=df.index) & ~out
    return out, placeholder


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coords")
    df = _tickets()
    write_csv(tmp / "src", "tickets", df)
    write_csv(tmp / "src", "outages", [{
        "outage_id": "O1", "location": "Queens", "lat": 40.72, "lon": -73.9, "radius_km": 15,
        "started_at": "2025-02-05 08:00:00", "ended_at": "2025-02-06 08:00:00",
        "severity": "major", "description": "fibre cut"}])
    report = ingest(tmp / "src", db=tmp / "wh.duckdb")
    return df, report, tmp / "wh.duckdb"


def test_ingest_counts_suspicious_coordinates_and_keeps_the_rows(loaded):
    df, report, db = loaded
    out, placeholder = _suspect(df)
    t = report.table("tickets")
    assert t.loaded == len(df) and t.rejected_total == 0
    assert dict(t.warnings) == {"coordinates_out_of_range": int(out.sum()),
                                "coordinates_repeated": int(placeholder.sum())}
    assert (int(out.sum()), int(placeholder.sum())) == (11, 35)
    assert int(((df["location_lat"] == 40.8) & placeholder).sum()) == 0
    wh = Warehouse(db)
    try:
        assert wh.scalar("select count(*) from tickets where location_lat = 39") == 35
        q = quality_report(wh)
        assert q.warning_free == pytest.approx(1 - (out.sum() + placeholder.sum()) / len(df))
    finally:
        wh.close()


def test_the_map_leaves_warned_points_out_and_counts_them(loaded):
    df, _, db = loaded
    out, placeholder = _suspect(df)
    wh = Warehouse(db)
    try:
        got = ticket_density(wh, cell_km=5.0)
    finally:
        wh.close()
    located = df["location_lat"].notna() & df["location_lon"].notna()
    assert got.attrs["suspect"] == int((out | placeholder).sum())
    assert got.attrs["unlocated"] == int((~located).sum())
    assert got["tickets"].sum() == int((located & ~out & ~placeholder).sum())
    # no cell near the placeholder, at 0, 0 or out of range; the 12-ticket building stays
    assert not ((got["lat"] - 39.0).abs() < 0.1).any()
    assert got["lat"].between(40, 41.5).all() and got["lon"].between(-75, -73).all()


@pytest.mark.usefixtures("fresh_caches")
def test_the_outages_page_says_how_many_points_it_left_out(loaded, monkeypatch):
    df, _, db = loaded
    out, placeholder = _suspect(df)
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    monkeypatch.setenv("CS_METRICS_BASEMAP", "off")
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(c.value for c in at.caption)
    assert f"{int((out | placeholder).sum())} tickets with a suspicious coordinate" in text


def test_a_real_hot_spot_is_not_a_placeholder(tmp_path: Path):
    """Many tickets near one place, at distinct coordinates, warn about nothing."""
    df = _tickets()
    rng = np.random.default_rng(1)
    df.loc[:69, "location_lat"] = 40.7 + rng.normal(0, 1e-4, 70)
    df.loc[:69, "location_lon"] = -73.95 + rng.normal(0, 1e-4, 70)
    write_csv(tmp_path / "src", "tickets", df)
    report = ingest(tmp_path / "src", db=tmp_path / "wh.duckdb")
    assert report.table("tickets").warnings == ()
