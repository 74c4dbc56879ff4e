"""Business-hours durations: the derived columns and the registry metrics against a
per-day pandas computation, on tickets across weekends, holidays, a DST change and gaps of
weeks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cs_metrics.core.settings import BusinessCalendar, load_settings
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.loader import ingest
from cs_metrics.metrics.registry import query
from tests import reference
from tests.conftest import ticket, write_csv

NEW_YORK = """
[business_hours.default]
timezone = "America/New_York"
holidays = ["2025-03-12", "2025-12-25", "2026-01-01"]
[business_hours.default.hours]
mon = "09:00-17:00"
tue = "09:00-17:00"
wed = "09:00-17:00"
thu = "09:00-17:00"
fri = "08:30-16:45"
sat = "10:00-12:00"
"""


def day_by_day(start: pd.Timestamp, end: pd.Timestamp, cal: BusinessCalendar) -> float:
    """Open seconds between two naive UTC moments, walking the local days one by one: each
    day's wall-clock open hours placed on the time line by pandas' zone rules."""
    if pd.isna(start) or pd.isna(end):
        return np.nan
    if end < start:
        return -day_by_day(end, start, cal)
    a, b = start.tz_localize("UTC"), end.tz_localize("UTC")
    first = a.tz_convert(cal.timezone).tz_localize(None).normalize()
    last = b.tz_convert(cal.timezone).tz_localize(None).normalize()
    total = 0.0
    for day in pd.date_range(first, last, freq="D"):
        hours = cal.hours[day.weekday()]
        if hours is None or day.date() in cal.holidays:
            continue
        opens, closes = (
            (day + pd.Timedelta(seconds=x)).tz_localize(cal.timezone, ambiguous=False,
                                                        nonexistent=pd.Timedelta(hours=1))
            for x in hours)
        total += max((min(closes, b) - max(opens, a)).total_seconds(), 0.0)
    return total


def local(text: str, tz: str = "America/New_York") -> str:
    """The naive UTC text of a local wall-clock time."""
    ts = pd.Timestamp(text).tz_localize(tz).tz_convert("UTC").tz_localize(None)
    return str(ts)


def _random_tickets(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    base = pd.Timestamp("2025-01-01")
    rows = []
    for i in range(n):
        created = base + pd.Timedelta(seconds=int(rng.integers(0, 360 * 86400)))
        # minutes to several weeks, so spans cover single days, weekends and long gaps
        gap = pd.Timedelta(seconds=int(rng.choice([60, 3600, 86400, 21 * 86400])
                                       * rng.random()))
        first = created + gap
        resolved = first + pd.Timedelta(seconds=int(rng.integers(0, 40 * 86400)))
        status = rng.choice(["closed", "open", "in_progress"])
        rows.append(ticket(
            f"R{i:04d}", str(created), str(status), first_response_at=str(first),
            resolved_at=str(resolved) if status == "closed" else None))
    return rows


FIXED = [
    # Friday 16:30 to Monday 10:15 across the weekend and the March DST change: 15 min
    # Friday (closes 16:45), 2 h Saturday, 75 min Monday
    ticket("DST", local("2025-03-07 16:30"), "closed",
           first_response_at=local("2025-03-10 10:15"),
           resolved_at=local("2025-03-13 09:30")),  # Wednesday 12 March is a holiday
    ticket("SUN", local("2025-03-09 01:00"), "open",
           first_response_at=local("2025-03-09 23:00")),  # a closed Sunday: 0
    ticket("XMAS", local("2025-12-24 15:00"), "closed",
           first_response_at=local("2025-12-24 16:00"),
           resolved_at=local("2025-12-26 10:00")),  # 2 h + holiday + 1.5 h Friday
    ticket("WEEKS", local("2025-02-03 12:00"), "closed",
           first_response_at=local("2025-02-03 18:00"),
           resolved_at=local("2025-03-20 09:00")),
    ticket("EDGES", local("2025-06-02 07:00"), "closed",
           first_response_at=local("2025-06-02 20:00"),  # a whole Monday: 8 h
           resolved_at=local("2025-06-02 20:00")),
    ticket("WAIT", local("2025-06-02 07:00"), "open"),  # no response: no duration
]


@pytest.fixture(scope="module")
def bh(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bh")
    write_csv(folder / "src", "tickets", FIXED + _random_tickets(400, seed=5))
    custom = folder / "settings.toml"
    custom.write_text(NEW_YORK)
    settings = load_settings(custom)
    db = folder / "wh.duckdb"
    ingest(folder / "src", db=db, settings=settings)
    wh = Warehouse(db, read_only=True)
    got = wh.df("select ticket_id, status, created_at, first_response_at, resolved_at, "
                "first_response_business_min, resolution_business_h from tickets "
                "order by ticket_id")
    yield wh, settings, got
    wh.close()


def test_fixed_cases_by_hand(bh):
    _, _, got = bh
    row = got.set_index("ticket_id")
    assert row.loc["DST", "first_response_business_min"] == pytest.approx(15 + 120 + 75)
    # then all of Monday and Tuesday, Wednesday a holiday, Thursday 30 min
    assert row.loc["DST", "resolution_business_h"] == pytest.approx(
        (15 + 120 + 8 * 60 + 8 * 60 + 30) / 60)
    assert row.loc["SUN", "first_response_business_min"] == 0
    assert pd.isna(row.loc["SUN", "resolution_business_h"])  # not closed
    assert row.loc["XMAS", "first_response_business_min"] == pytest.approx(60)
    assert row.loc["XMAS", "resolution_business_h"] == pytest.approx(2 + 1.5)
    assert row.loc["EDGES", "first_response_business_min"] == pytest.approx(8 * 60)
    assert pd.isna(row.loc["WAIT", "first_response_business_min"])


def test_derived_columns_match_a_day_by_day_walk(bh):
    _, settings, got = bh
    cal = settings.calendar()
    want_fr = [day_by_day(a, b, cal) / 60 for a, b in
               zip(got["created_at"], got["first_response_at"], strict=True)]
    closed = got["status"] == "closed"
    want_res = [day_by_day(a, b, cal) / 3600 if c else np.nan for a, b, c in
                zip(got["created_at"], got["resolved_at"], closed, strict=True)]
    np.testing.assert_allclose(got["first_response_business_min"].astype(float), want_fr,
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(got["resolution_business_h"].astype(float), want_res,
                               rtol=0, atol=1e-8)
    # the registry oracle's vectorised computation (tests/reference.py) agrees with the walk
    np.testing.assert_allclose(
        reference.business_seconds(got["created_at"], got["first_response_at"], cal) / 60,
        want_fr, rtol=0, atol=1e-6)
    assert got["resolution_business_h"].notna().sum() > 100


def test_registry_metrics_match_pandas(bh):
    wh, settings, got = bh
    cal = settings.calendar()
    fr = pd.Series([day_by_day(a, b, cal) / 60 for a, b in
                    zip(got["created_at"], got["first_response_at"], strict=True)]).dropna()
    closed = got["status"] == "closed"
    res = pd.Series([day_by_day(a, b, cal) / 3600 for a, b in
                     zip(got["created_at"][closed], got["resolved_at"][closed],
                         strict=True)]).dropna()
    names = ["avg_first_response_business_min", "median_first_response_business_min",
             "p90_first_response_business_min", "avg_resolution_business_h",
             "median_resolution_business_h"]
    row = query(wh, names).iloc[0]
    want = [fr.mean(), np.quantile(fr, 0.5), np.quantile(fr, 0.9), res.mean(),
            np.quantile(res, 0.5)]
    np.testing.assert_allclose(row[names].astype(float).to_numpy(), want, rtol=1e-9)
    # business time never exceeds elapsed time here: every open day is shorter than 24 h
    elapsed = query(wh, ["avg_first_response_min"]).iloc[0, 0]
    assert row["avg_first_response_business_min"] < elapsed


def test_dst_day_counts_the_time_that_passes(tmp_path):
    custom = tmp_path / "settings.toml"
    custom.write_text('[business_hours.default]\ntimezone = "America/New_York"\n'
                      'hours = { sun = "00:00-24:00" }\n')
    write_csv(tmp_path / "src", "tickets", [
        # 00:30 to 03:30 local on 9 March 2025: the clock shows 3 h, 2 h pass (README)
        ticket("A", local("2025-03-09 00:30"), "closed",
               first_response_at=local("2025-03-09 03:30"),
               resolved_at=local("2025-03-10 00:00")),
        ticket("B", local("2025-11-02 00:00"), "closed",  # the clock goes back: 25 h
               first_response_at="2025-11-02 06:30:00",  # the later 01:30 (EST)
               resolved_at=local("2025-11-03 00:00")),
    ])
    ingest(tmp_path / "src", db=tmp_path / "wh.duckdb", settings=load_settings(custom))
    wh = Warehouse(tmp_path / "wh.duckdb", read_only=True)
    got = wh.df("select ticket_id, first_response_business_min, resolution_business_h, "
                "resolution_h from tickets order by ticket_id")
    wh.close()
    fr, res, elapsed = got.iloc[0, 1:]
    assert fr == pytest.approx(120)
    assert res == pytest.approx(22.5) and elapsed == pytest.approx(22.5)  # a 23-hour day
    fr, res, elapsed = got.iloc[1, 1:]
    assert fr == pytest.approx(150)
    assert res == pytest.approx(25) and elapsed == pytest.approx(25)


def test_a_zone_far_ahead_of_utc(tmp_path):
    custom = tmp_path / "settings.toml"
    custom.write_text('[business_hours.default]\ntimezone = "Pacific/Kiritimati"\n'
                      'hours = { sun = "00:00-24:00", mon = "22:00-24:00" }\n')
    settings = load_settings(custom)
    rows = [ticket("K", "2025-11-01 00:00:00", "closed",  # Kiritimati is UTC+14
                   first_response_at="2025-11-02 12:00:00", resolved_at="2025-11-20 00:00:00")]
    write_csv(tmp_path / "src", "tickets", rows)
    ingest(tmp_path / "src", db=tmp_path / "wh.duckdb", settings=settings)
    wh = Warehouse(tmp_path / "wh.duckdb", read_only=True)
    got = wh.df("select created_at, first_response_at, resolved_at, "
                "first_response_business_min, resolution_business_h from tickets").iloc[0]
    wh.close()
    cal = settings.calendar()
    assert got["first_response_business_min"] == pytest.approx(
        day_by_day(got["created_at"], got["first_response_at"], cal) / 60)
    assert got["resolution_business_h"] == pytest.approx(
        day_by_day(got["created_at"], got["resolved_at"], cal) / 3600)
    assert got["resolution_business_h"] == pytest.approx(3 * 26)  # three Sundays + Mondays


def test_default_calendar_is_weekdays_nine_to_five_utc(tmp_path):
    write_csv(tmp_path / "src", "tickets", [
        ticket("A", "2024-01-05 16:00:00", "closed", first_response_at="2024-01-08 10:00:00",
               resolved_at="2024-01-09 10:00:00"),
    ])
    ingest(tmp_path / "src", db=tmp_path / "wh.duckdb")
    wh = Warehouse(tmp_path / "wh.duckdb", read_only=True)
    assert query(wh, ["avg_first_response_business_min", "avg_resolution_business_h"]
                 ).iloc[0].tolist() == [120.0, 10.0]
    wh.close()


def test_small_loads_derive_business_time_like_a_rebuild(tmp_path, monkeypatch):
    from tests.test_warehouse import _incremental_and_rebuild

    custom = tmp_path / "settings.toml"
    custom.write_text(NEW_YORK)
    monkeypatch.setenv("CS_METRICS_SETTINGS", str(custom))
    write_csv(tmp_path / "base", "tickets", FIXED + _random_tickets(300, seed=8))
    write_csv(tmp_path / "batch", "tickets", [
        ticket("WAIT", local("2025-06-02 07:00"), "closed",
               first_response_at=local("2025-06-03 09:30"),
               # Monday to Thursday 8 h each, Friday 8:30-16:45, Saturday 10:00-11:00
               resolved_at=local("2025-06-07 11:00")),
        ticket("NEW", local("2025-12-31 16:00"), "open",
               first_response_at=local("2026-01-02 09:00")),  # 1 h + New Year's Day + 30 min
    ])
    inc, full = _incremental_and_rebuild(tmp_path / "base", [tmp_path / "batch"], tmp_path,
                                         monkeypatch)
    row = inc["tickets"].set_index("ticket_id")
    assert row.loc["WAIT", "first_response_business_min"] == pytest.approx(8 * 60 + 30)
    assert row.loc["WAIT", "resolution_business_h"] == pytest.approx(4 * 8 + 8.25 + 1)
    assert row.loc["NEW", "first_response_business_min"] == pytest.approx(60 + 30)
