"""The reporting time zone: storage stays UTC, days, weeks, months, hours and date ranges are
local ones. Every figure is checked against pandas computing the same definition in local
wall-clock time (pandas' own zone rules), including the days the clocks change."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cs_metrics.analysis.seasonality import arrival_heatmap, daily_series
from cs_metrics.analysis.staffing import current_staffing
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.settings import load_settings
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.core.zones import check_zone, local_sql, utc_moment
from cs_metrics.ingestion.loader import ingest
from cs_metrics.metrics.registry import METRICS, Filters, compile_query, query
from tests import reference
from tests.test_metrics import NON_STOCK, _assert_frames_equal, _sort

ROOT = Path(__file__).resolve().parents[1]
NY = "America/New_York"


@pytest.fixture(scope="module")
def prepared(sample_dir):
    return reference.prepare(sample_dir, load_settings())


# The sample runs 2024-11-01 .. 2025-03-01: New York's clocks fall back on 3 Nov 2024;
# Kolkata is 5:30 ahead (a half-hour zone); Auckland 13 hours ahead in summer.
ZONE_CASES = [
    ([], "day", NY, {"date_from": date(2024, 11, 1), "date_to": date(2024, 11, 10)}),
    (["channel"], "week", NY, {}),
    (["customer_segment"], "month", "Asia/Kolkata", {"where": {"priority": ["high"]}}),
    ([], "day", "Pacific/Auckland", {"date_from": date(2025, 1, 30), "date_to": date(2025, 2, 4)}),
    (["team"], None, NY, {"date_from": date(2024, 12, 24), "date_to": date(2025, 1, 2)}),
]


@pytest.mark.parametrize("by, grain, tz, flt", ZONE_CASES)
def test_every_metric_in_a_reporting_zone_matches_pandas(sample_wh, prepared, by, grain, tz,
                                                         flt):
    tickets, feedback = prepared
    where = flt.get("where", {})
    filters = Filters.build(flt.get("date_from"), flt.get("date_to"), tz=tz, **where)
    got = query(sample_wh, NON_STOCK, by, grain, filters)
    want = reference.compute(tickets, feedback, NON_STOCK, by, grain, flt.get("date_from"),
                             flt.get("date_to"), where, tz=tz)
    keys = by + (["period"] if grain else [])
    _assert_frames_equal(got, _sort(want, keys), keys)
    assert len(got) > 0
    # the zone changes the figures: the same request in UTC differs (so this test can fail)
    utc = query(sample_wh, ["ticket_count"], by, grain,
                Filters.build(flt.get("date_from"), flt.get("date_to"), **where))
    assert not utc["ticket_count"].reset_index(drop=True).equals(
        got["ticket_count"].reset_index(drop=True))


@pytest.mark.parametrize("by, grain, tz, flt", [
    ([], "day", NY, {"date_from": date(2024, 11, 1), "date_to": date(2024, 11, 8)}),
    (["channel"], "week", "Asia/Kolkata", {}),
    ([], None, NY, {"date_to": date(2025, 1, 15)}),
])
def test_backlog_in_a_reporting_zone_matches_pandas(sample_wh, prepared, by, grain, tz, flt):
    tickets, _ = prepared
    filters = Filters.build(flt.get("date_from"), flt.get("date_to"), tz=tz)
    got = query(sample_wh, ["backlog"], by, grain, filters)
    want = reference.backlog(tickets, by, grain, flt.get("date_from"), flt.get("date_to"),
                             tz=tz)
    keys = by + (["period"] if grain else [])
    _assert_frames_equal(got, _sort(want, keys), keys)


def test_the_day_the_clocks_fall_back_is_25_hours_long(sample_wh, prepared):
    tickets, _ = prepared
    got = query(sample_wh, ["ticket_count"], grain="day",
                filters=Filters.build(date(2024, 11, 3), date(2024, 11, 4), tz=NY))
    t = tickets[~tickets["is_test"]]
    # 04:00 UTC (midnight EDT) to 05:00 UTC the next day (midnight EST): 25 hours
    start, end = pd.Timestamp("2024-11-03 04:00"), pd.Timestamp("2024-11-04 05:00")
    assert (end - start) == pd.Timedelta(hours=25)
    want = int(((t["created_at"] >= start) & (t["created_at"] < end)).sum())
    assert got["ticket_count"].tolist() == [want]
    assert utc_moment(date(2024, 11, 3), NY) == datetime(2024, 11, 3, 4)
    assert utc_moment(date(2024, 11, 4), NY) == datetime(2024, 11, 4, 5)


def test_heatmap_and_daily_series_count_local_hours_and_days(sample_wh, prepared):
    tickets, _ = prepared
    filters = Filters(tz="Asia/Kolkata")
    series = daily_series(sample_wh, filters)
    t = reference.localize(tickets[~tickets["is_test"]], "Asia/Kolkata")
    per_day = t["created_at"].dt.floor("D").value_counts()
    want = per_day.reindex(series.index, fill_value=0)
    assert series.to_numpy().tolist() == want.to_numpy().tolist()
    heat = arrival_heatmap(sample_wh, filters)
    first, end = series.index[0], series.index[-1] + pd.Timedelta(days=1)
    inside = t[(t["created_at"] >= first) & (t["created_at"] < end)]
    counts = inside.groupby([inside["created_at"].dt.day_of_week,
                             inside["created_at"].dt.hour]).size()
    days = pd.Series(pd.date_range(first, end - pd.Timedelta(days=1)).day_of_week
                     ).value_counts()
    full = counts.reindex(pd.MultiIndex.from_product([range(7), range(24)]), fill_value=0)
    assert heat["tickets"].tolist() == full.astype(int).tolist()
    np.testing.assert_allclose(
        heat["tickets_per_day"], [n / days[wd] for (wd, _), n in full.items()], rtol=1e-12)
    # half an hour ahead of a UTC hour boundary: the UTC grid is another one
    utc = arrival_heatmap(sample_wh, Filters())
    assert utc["tickets"].tolist() != heat["tickets"].tolist()


def test_staffing_hours_are_local(sample_wh, prepared):
    tickets, _ = prepared
    utc = current_staffing(sample_wh, Filters())
    tokyo = current_staffing(sample_wh, Filters(tz="Asia/Tokyo"))
    t = tickets[~tickets["is_test"] & tickets["rep_id"].notna()
                & tickets["first_response_at"].notna()]
    local = (pd.to_datetime(t["first_response_at"]).dt.tz_localize("UTC")
             .dt.tz_convert("Asia/Tokyo").dt.tz_localize(None))
    slots = pd.DataFrame({"rep": t["rep_id"].to_numpy(), "slot": local.dt.floor("h")})
    slots = slots.drop_duplicates()
    per = slots.groupby([slots["slot"].dt.day_of_week, slots["slot"].dt.hour]).size()
    wd, hr = per.idxmax()
    row = tokyo[(tokyo["weekday"] == wd) & (tokyo["hour"] == hr)].iloc[0]
    assert row["active_reps"] * row["days"] == pytest.approx(per.max())
    # Tokyo is 9 hours ahead: the busiest UTC hour is 9 hours earlier on the clock
    busiest = utc.groupby("hour")["active_reps"].sum().idxmax()
    assert tokyo.groupby("hour")["active_reps"].sum().idxmax() == (busiest + 9) % 24


def _local_export(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """A helpdesk export in New York wall-clock time across both clock changes of 2025,
    with its mapping; returns the mapping and the export."""
    rng = np.random.default_rng(3)
    base = pd.Timestamp("2025-03-01")
    minutes = np.sort(rng.integers(0, 300 * 24 * 60, 2500))
    local = [base + pd.Timedelta(minutes=int(m)) for m in minutes]
    # a wall-clock time the spring-forward skips does not exist: a helpdesk never writes one
    local = [ts for ts in local
             if not (pd.Timestamp("2025-03-09 02:00") <= ts < pd.Timestamp("2025-03-09 03:00"))]
    # late-evening requests: the ones a UTC day moves to the next day
    local += [pd.Timestamp(f"2025-{m:02d}-{d:02d} 22:30") for m in (3, 7, 11) for d in (8, 9, 2)]
    export = pd.DataFrame({
        "RequestId": [f"SR-{i:05d}" for i in range(len(local))],
        "Opened": [ts.strftime("%m/%d/%Y %H:%M") for ts in local],
        "State": "Closed",
    })
    src = tmp_path / "export"
    src.mkdir()
    export.to_csv(src / "requests.csv", index=False)
    mapping = src / "mapping.toml"
    mapping.write_text(textwrap.dedent("""
        [tickets]
        source = "requests.csv"
        timezone = "America/New_York"
        [tickets.columns]
        ticket_id = "RequestId"
        created_at = "strptime(Opened, '%m/%d/%Y %H:%M')"
        status = "lower(State)"
    """), encoding="utf-8")
    export["local"] = local
    return mapping, export


def test_a_local_time_export_counts_its_own_local_days(tmp_path):
    mapping, export = _local_export(tmp_path)
    db = tmp_path / "wh.duckdb"
    ingest(mapping.parent, db=db, mapping=mapping)
    wh = Warehouse(db, read_only=True)
    try:
        got = query(wh, ["ticket_count"], grain="day", filters=Filters(tz=NY))
        utc = query(wh, ["ticket_count"], grain="day")
        monthly = query(wh, ["ticket_count"], grain="month", filters=Filters(tz=NY))
    finally:
        wh.close()
    # the export's own days: the date part of the wall-clock text
    want = export["local"].dt.floor("D").value_counts().sort_index()
    assert got["ticket_count"].sum() == len(export)
    assert dict(zip(pd.to_datetime(got["period"]), got["ticket_count"], strict=True)) == \
        {k: int(v) for k, v in want.items()}
    want_m = export["local"].dt.to_period("M").dt.start_time.value_counts().sort_index()
    assert monthly["ticket_count"].tolist() == want_m.astype(int).tolist()
    # in UTC the late-evening requests land on the next day: the counts differ
    assert dict(zip(pd.to_datetime(utc["period"]), utc["ticket_count"], strict=True)) != \
        {k: int(v) for k, v in want.items()}


def test_query_command_takes_tz_and_settings_default(tmp_path):
    mapping, export = _local_export(tmp_path)
    db = tmp_path / "wh.duckdb"
    ingest(mapping.parent, db=db, mapping=mapping)
    cmd = [sys.executable, "-m", "cs_metrics", "query", "--db", str(db), "--metrics",
           "ticket_count", "--grain", "day", "--from", "2025-03-08", "--to", "2025-03-11",
           "--format", "json"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    run = subprocess.run([*cmd, "--tz", NY], capture_output=True, text=True, cwd=tmp_path,
                         env=env, check=True)
    rows = json.loads(run.stdout)
    days = export[(export["local"] >= "2025-03-08") & (export["local"] < "2025-03-11")]
    want = days["local"].dt.strftime("%Y-%m-%d").value_counts().sort_index()
    assert {r["period"]: r["ticket_count"] for r in rows} == want.to_dict()
    # the settings' [display] timezone is the default zone of every command
    (tmp_path / "settings.toml").write_text('[display]\ntimezone = "America/New_York"\n')
    run2 = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env,
                          check=True)
    assert json.loads(run2.stdout) == rows
    bad = subprocess.run([*cmd, "--tz", "UTC'); drop table tickets; --"], capture_output=True,
                         text=True, cwd=tmp_path, env=env)
    assert bad.returncode == 2
    assert "not a known time zone" in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "settings.toml").write_text('[display]\ntimezone = "Mars/Olympus"\n')
    bad = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert bad.returncode == 2
    assert "display.timezone" in bad.stderr and "Traceback" not in bad.stderr


def test_forecast_command_counts_local_days(sample_db, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "cs_metrics", "forecast", "--db", str(sample_db), "--days", "7",
         "--tz", "Asia/Tokyo", "--format", "json"],
        capture_output=True, text=True, cwd=tmp_path, env=env, check=True)
    rows = json.loads(run.stdout)
    assert len(rows) == 7 and set(rows[0]) == {"date", "forecast", "lower", "upper"}
    wh = Warehouse(sample_db, read_only=True)
    try:
        series = daily_series(wh, Filters(tz="Asia/Tokyo"))
    finally:
        wh.close()
    from cs_metrics.analysis.seasonality import forecast_daily

    want = forecast_daily(series, 7)
    assert [r["date"] for r in rows] == want["date"].dt.strftime("%Y-%m-%d").tolist()
    np.testing.assert_allclose([r["forecast"] for r in rows], want["forecast"], rtol=1e-9)
    assert [r["upper"] for r in rows] == want["upper"].astype(int).tolist()
    assert "Asia/Tokyo" in run.stderr


def test_report_and_topics_take_tz(sample_db, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    out = tmp_path / "report"
    subprocess.run(
        [sys.executable, "-m", "cs_metrics", "report", "--db", str(sample_db), "--audience",
         "executive", "--period", "2025-01-06:2025-01-12", "--tz", NY, "--format", "md",
         "--out", str(out)], capture_output=True, text=True, cwd=tmp_path, env=env, check=True)
    data = json.loads((out / "report.json").read_text())
    assert data["scope"]["timezone"] == NY
    assert "America/New_York" in (out / "report.md").read_text()
    wh = Warehouse(sample_db, read_only=True)
    try:
        want = query(wh, ["ticket_count"], filters=Filters.build(
            date(2025, 1, 6), date(2025, 1, 13), tz=NY))["ticket_count"].iloc[0]
        utc = query(wh, ["ticket_count"], filters=Filters.build(
            date(2025, 1, 6), date(2025, 1, 13)))["ticket_count"].iloc[0]
    finally:
        wh.close()
    kpi = {r["metric"]: r for r in data["tables"]["kpis"]["rows"]}
    assert kpi["ticket_count"]["value"] == want != utc
    run = subprocess.run(
        [sys.executable, "-m", "cs_metrics", "topics", "--db", str(sample_db), "--k", "3",
         "--tz", "Mars/Olympus"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert run.returncode == 2 and "not a known time zone" in run.stderr


def test_a_zone_is_checked_before_it_reaches_sql():
    for bad in ("UTC'; select 1; --", "../../etc/passwd", "localtime", "", None, 7, "utc"):
        with pytest.raises(CsMetricsError, match="not a known time zone"):
            Filters(tz=bad)  # type: ignore[arg-type]
        with pytest.raises(CsMetricsError):
            local_sql("t.created_at", bad)  # type: ignore[arg-type]
    assert check_zone("Europe/Berlin") == "Europe/Berlin"
    sql, _ = compile_query(["ticket_count"], [], "day", Filters(tz="Asia/Kolkata"))
    assert "timezone('Asia/Kolkata', timezone('UTC', t.created_at))" in sql
    # the default zone compiles to the stored day column, as before
    sql, _ = compile_query(["ticket_count"], [], "day", Filters())
    assert "t.created_date" in sql and "timezone(" not in sql


def test_display_timezone_setting_is_checked(tmp_path):
    from cs_metrics.core.settings import DEFAULT_SETTINGS_FILE, _settings

    defaults = DEFAULT_SETTINGS_FILE.read_text(encoding="utf-8")
    ok = _settings(defaults, (str(tmp_path / "s.toml"), '[display]\ntimezone = "Europe/Paris"\n'))
    assert ok.display_timezone == "Europe/Paris"
    assert _settings(defaults, None).display_timezone == "UTC"
    for bad in ('"Mars/Olympus"', "3", '"localtime"'):
        with pytest.raises(CsMetricsError, match="display.timezone"):
            _settings(defaults, (str(tmp_path / "s.toml"), f"[display]\ntimezone = {bad}\n"))
    with pytest.raises(CsMetricsError, match="unknown keys"):
        _settings(defaults, (str(tmp_path / "s.toml"), '[display]\nzone = "UTC"\n'))


def test_every_registry_metric_compiles_in_a_zone():
    for name in METRICS:
        sql, params = compile_query([name], ["channel"], "week",
                                    Filters.build(date(2025, 1, 1), date(2025, 2, 1), tz=NY))
        assert "America/New_York" in sql
        if METRICS[name].source == "backlog":
            continue  # a stock: its periods are local buckets, checked against pandas above
        # the range's bounds are New York midnights as UTC moments, passed as parameters
        assert {datetime(2025, 1, 1, 5), datetime(2025, 2, 1, 5)} <= set(params.values())


def test_forecast_command_backtest_on_held_out_days(sample_db, tmp_path):
    """Fitted on the days before --to, the forecast of the 14 days after it is close to what
    happened: most days inside the 90 % interval, a small mean absolute percentage error."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "cs_metrics", "forecast", "--db", str(sample_db), "--days", "14",
         "--to", "2025-02-14", "--format", "json"],
        capture_output=True, text=True, cwd=tmp_path, env=env, check=True)
    rows = pd.DataFrame(json.loads(run.stdout))
    assert rows["date"].iloc[0] == "2025-02-14" and len(rows) == 14
    wh = Warehouse(sample_db, read_only=True)
    try:
        actual = query(wh, ["ticket_count"], grain="day", filters=Filters.build(
            date(2025, 2, 14), date(2025, 2, 28)))
    finally:
        wh.close()
    got = rows.set_index("date")
    actual = actual.set_index(actual["period"].map(lambda d: d.isoformat()))["ticket_count"]
    actual = actual.reindex(got.index, fill_value=0)
    inside = ((actual >= got["lower"]) & (actual <= got["upper"])).mean()
    mape = (abs(actual - got["forecast"]) / actual.clip(lower=1)).mean()
    assert inside >= 0.75, (inside, got, actual)
    assert mape < 0.3, mape
