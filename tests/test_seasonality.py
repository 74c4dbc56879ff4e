"""Seasonality: daily series and heatmap against pandas over the ticket rows, decomposition on
synthetic series with a known answer and on generated data against truth.json, forecasts and
the backtest against the seasonal-naive baseline."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.tsa.seasonal import MSTL

from cs_metrics import CsMetricsError, Filters, Warehouse, ingest
from cs_metrics.analysis import seasonality as seas
from cs_metrics.analysis.seasonality import (
    arrival_heatmap,
    backtest,
    daily_series,
    decompose,
    forecast_daily,
    forecast_hourly,
)
from simulations.generator import generate
from tests.conftest import ticket, write_csv

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _series(values, start: str = "2024-01-01") -> pd.Series:
    values = np.asarray(values, dtype="float64")
    return pd.Series(values, index=pd.date_range(start, periods=len(values), freq="D"))


def _weekly(days: int, seed: int = 1, amplitude: float = 20.0, noise: float = 2.0) -> pd.Series:
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    return _series(100 + amplitude * np.sin(2 * np.pi * t / 7) + rng.normal(0, noise, days))


def _rows(wh: Warehouse) -> pd.DataFrame:
    """Every ticket row the pandas side recomputes from (a few thousand in the sample)."""
    return wh.df("select created_at, channel, is_test from tickets")


def _expected_days(wh: Warehouse, rows: pd.DataFrame) -> pd.DatetimeIndex:
    """The complete days: first creation day to the last, minus it when the data stops
    before its final hour."""
    real = rows[~rows["is_test"]]
    first = real["created_at"].min().normalize()
    last = real["created_at"].max().normalize()
    if wh.as_of() < last + pd.Timedelta(hours=23):
        last -= pd.Timedelta(days=1)
    return pd.date_range(first, last, freq="D")


def _select(rows: pd.DataFrame, channels: list[str] | None, days: pd.DatetimeIndex):
    picked = rows[~rows["is_test"]]
    if channels:
        picked = picked[picked["channel"].isin(channels)]
    day = picked["created_at"].dt.normalize()
    return picked[(day >= days[0]) & (day <= days[-1])]


FILTER_CASES = [
    pytest.param(None, None, None, id="all"),
    pytest.param(["chat"], None, None, id="chat"),
    pytest.param(["phone", "email"], date(2024, 12, 1), date(2025, 1, 15), id="phone-email-dates"),
]


# --- daily series ----------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "date_from", "date_to"), FILTER_CASES)
def test_daily_series_equals_pandas_groupby(sample_wh, channels, date_from, date_to):
    filters = Filters.build(date_from, date_to, channel=channels)
    got = daily_series(sample_wh, filters)

    rows = _rows(sample_wh)
    days = _expected_days(sample_wh, rows)
    if date_from is not None:
        days = days[(days >= pd.Timestamp(date_from)) & (days < pd.Timestamp(date_to))]
    picked = _select(rows, channels, days)
    expected = (
        picked.groupby(picked["created_at"].dt.normalize()).size()
        .reindex(days, fill_value=0)
    )
    assert got.index.equals(pd.DatetimeIndex(days, name="date", freq="D"))
    assert got.to_numpy().tolist() == expected.to_numpy().tolist()
    assert got.dtype == "int64" and got.name == "tickets"
    assert got.sum() > 0 and (got == 0).sum() < len(got)


@pytest.mark.parametrize(("last_time", "last_day"), [
    ("14:00:00", date(2025, 1, 9)),  # the data stops mid-day: the 10th is partial
    ("23:30:00", date(2025, 1, 10)),  # it reaches the final hour: the 10th counts
])
def test_daily_series_drops_a_partial_last_day(tmp_path: Path, last_time, last_day):
    write_csv(tmp_path / "src", "tickets", [
        ticket("T1", "2025-01-02 09:00:00", channel="chat"),
        ticket("T2", "2025-01-02 17:00:00", channel="chat"),
        ticket("T3", "2025-01-05 10:00:00", channel="phone"),
        ticket("T4", "2025-01-09 11:00:00", channel="chat"),
        ticket("T5", f"2025-01-10 {last_time}", channel="chat"),
    ])
    ingest(tmp_path / "src", db=tmp_path / "wh.duckdb")
    wh = Warehouse(tmp_path / "wh.duckdb", read_only=True)

    got = daily_series(wh, Filters.build(channel="chat"))

    assert got.index[0].date() == date(2025, 1, 2)
    assert got.index[-1].date() == last_day
    expected = {date(2025, 1, 2): 2, date(2025, 1, 9): 1, date(2025, 1, 10): 1}
    assert {d.date(): int(n) for d, n in got.items() if n} == {
        d: n for d, n in expected.items() if d <= last_day
    }
    assert got[pd.Timestamp("2025-01-05")] == 0  # a phone ticket, not chat: a zero day


# --- decomposition ---------------------------------------------------------------------------


def test_strength_is_near_one_for_a_pure_weekly_sine():
    result = decompose(_weekly(120))
    assert result.weekly_strength > 0.95
    assert result.weekly_verdict.startswith("Strong weekly seasonality")
    parts = result.components
    assert list(parts.columns) == ["observed", "trend", "seasonal_7", "resid"]
    rebuilt = parts["trend"] + parts["seasonal_7"] + parts["resid"]
    assert np.allclose(rebuilt, parts["observed"])


@pytest.mark.parametrize(("days", "seeds"), [(120, 10), (365, 10), (800, 3)])
def test_strength_is_near_zero_for_white_noise(days, seeds):
    results = [
        decompose(_series(np.random.default_rng(seed).normal(200, 10, days)))
        for seed in range(seeds)
    ]
    weekly = np.array([r.weekly_strength for r in results])
    assert weekly.mean() < 0.12 and weekly.max() < 0.25
    for result in results:
        assert result.weekly_verdict.split(" (")[0] in ("No clear weekly seasonality",
                                                        "Weak weekly seasonality")
    if days >= 730:
        assert max(r.yearly_strength for r in results) < 0.1
        assert all(r.yearly_verdict.startswith("No clear yearly") for r in results)


@pytest.mark.parametrize(("peak", "trough"), [(2, 5), (0, 6), (4, 1)])
def test_verdict_names_the_peak_and_quiet_weekdays(peak, trough):
    rng = np.random.default_rng(peak)
    index = pd.date_range("2024-01-01", periods=84, freq="D")  # 2024-01-01 is a Monday
    values = 100 + rng.normal(0, 3, len(index))
    values[index.day_of_week == peak] += 30
    values[index.day_of_week == trough] -= 40
    series = pd.Series(values, index=index)

    result = decompose(series)

    means = series.groupby(index.day_of_week).mean()
    effect = means / means.mean() - 1
    assert result.weekday_effects.idxmax() == WEEKDAYS[peak]
    assert result.weekday_effects.to_numpy() == pytest.approx(effect.to_numpy(), abs=1e-9)
    assert (f"{WEEKDAYS[peak]}s carry {round(100 * effect[peak])} % more tickets than the "
            f"average day; {WEEKDAYS[trough]}s {round(-100 * effect[trough])} % fewer."
            ) in result.weekly_verdict


@pytest.mark.parametrize(("days", "yearly"), [(729, False), (730, True)])
def test_yearly_component_only_with_two_full_years(days, yearly):
    rng = np.random.default_rng(3)
    t = np.arange(days)
    values = 100 + 15 * np.cos(2 * np.pi * t / 365.25) + 10 * np.sin(2 * np.pi * t / 7)
    result = decompose(_series(values + rng.normal(0, 3, days), start="2023-01-01"))

    assert ("seasonal_365" in result.components.columns) is yearly
    if yearly:
        assert result.yearly_note == ""
        assert result.yearly_strength > 0.64
        # the cosine peaks on 1 January and bottoms out in early July
        assert "January is the busiest month" in result.yearly_verdict
        assert "July the quietest" in result.yearly_verdict
        assert result.verdicts == (result.weekly_verdict, result.yearly_verdict)
    else:
        assert result.yearly_strength is None and result.yearly_verdict is None
        assert f"{days} days" in result.yearly_note and "730" in result.yearly_note
        assert result.verdicts == (result.weekly_verdict, result.yearly_note)


def test_weekly_only_decomposition_is_statsmodels_mstl():
    series = _weekly(200, seed=5, noise=8.0)
    ours = decompose(series).components
    theirs = MSTL(series, periods=7, windows=seas.WEEKLY_WINDOW,
                  stl_kwargs={"robust": True}).fit()
    assert np.allclose(ours["seasonal_7"], theirs.seasonal)
    assert np.allclose(ours["trend"], theirs.trend)
    assert np.allclose(ours["resid"], theirs.resid)


def test_fewer_than_28_days_is_a_clear_error():
    with pytest.raises(CsMetricsError, match="at least 28 days.*has 27 days"):
        decompose(_weekly(27))
    with pytest.raises(CsMetricsError, match="has 27 days"):
        forecast_daily(_weekly(27), 7)
    assert decompose(_weekly(28)).components.shape[0] == 28


@pytest.mark.parametrize(("values", "message"), [
    ([5.0, np.nan, 3.0], "no number for 2024-01-02"),
    ([5.0, -1.0, 3.0], "negative count"),
])
def test_bad_series_values_are_refused(values, message):
    with pytest.raises(CsMetricsError, match=message):
        decompose(_series(values))


def test_a_series_without_dates_is_refused():
    with pytest.raises(CsMetricsError, match="needs dates as its index"):
        decompose(pd.Series(np.ones(40)))


def test_missing_days_count_as_zero():
    series = _weekly(35)
    gappy = series.drop(series.index[10])
    parts = decompose(gappy).components
    assert len(parts) == 35 and parts["observed"].iloc[10] == 0


def test_results_are_frozen():
    result = decompose(_weekly(60))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.weekly_strength = 0.0  # type: ignore[misc]
    run = backtest(_weekly(120))
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.beats_baseline = False  # type: ignore[misc]


# --- heatmap ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "date_from", "date_to"), FILTER_CASES)
def test_arrival_heatmap_equals_pandas(sample_wh, channels, date_from, date_to):
    filters = Filters.build(date_from, date_to, channel=channels)
    got = arrival_heatmap(sample_wh, filters)

    rows = _rows(sample_wh)
    days = _expected_days(sample_wh, rows)
    if date_from is not None:
        days = days[(days >= pd.Timestamp(date_from)) & (days < pd.Timestamp(date_to))]
    picked = _select(rows, channels, days)
    counts = picked.groupby(
        [picked["created_at"].dt.day_of_week, picked["created_at"].dt.hour]
    ).size()
    grid = pd.MultiIndex.from_product([range(7), range(24)])
    counts = counts.reindex(grid, fill_value=0)
    per_weekday = pd.Series(days.day_of_week).value_counts().reindex(range(7), fill_value=0)
    expected = counts.to_numpy() / np.repeat(per_weekday.to_numpy(), 24)

    assert len(got) == 168
    assert got["weekday"].tolist() == [w for w in range(7) for _ in range(24)]
    assert got["hour"].tolist() == list(range(24)) * 7
    assert got["weekday_name"].iloc[0] == "Monday" and got["weekday_name"].iloc[-1] == "Sunday"
    assert got["tickets"].tolist() == counts.tolist()
    assert got["tickets_per_day"].to_numpy() == pytest.approx(expected)
    assert got["tickets"].sum() == len(picked)
    assert got["tickets"].sum() == daily_series(sample_wh, filters).sum()


# --- forecasts -------------------------------------------------------------------------------


@pytest.mark.parametrize("days", [28, 120, 760])
def test_forecast_shape_and_bounds(days):
    rng = np.random.default_rng(days)
    t = np.arange(days)
    mean = 40 * (1 + 0.3 * np.sin(2 * np.pi * t / 7)) * (1 + 0.1 * np.cos(2 * np.pi * t / 365))
    series = _series(rng.poisson(mean))
    result = forecast_daily(series, 30, level=0.8)

    assert list(result.columns) == ["date", "forecast", "lower", "upper"]
    assert len(result) == 30
    assert result["date"].iloc[0] == series.index[-1] + pd.Timedelta(days=1)
    assert result["date"].diff().dropna().eq(pd.Timedelta(days=1)).all()
    assert (result["lower"] >= 0).all()
    assert (result["lower"] <= result["forecast"]).all()
    assert (result["forecast"] <= result["upper"]).all()
    assert result["forecast"].mean() == pytest.approx(series.iloc[-28:].mean(), rel=0.25)


def test_forecast_keeps_a_closed_weekday_at_zero():
    rng = np.random.default_rng(2)
    index = pd.date_range("2024-01-01", periods=140, freq="D")
    series = pd.Series(rng.poisson(50, len(index)), index=index)
    series[index.day_of_week == 6] = 0  # closed on Sundays
    result = forecast_daily(series, 14)
    sundays = result[result["date"].dt.day_of_week == 6]
    others = result[result["date"].dt.day_of_week != 6]
    assert len(sundays) == 2 and (sundays["forecast"] < 0.01).all()
    assert (sundays["upper"] < 0.01).all()
    assert others["forecast"].between(40, 60).all()


def test_forecast_hourly_splits_each_day_by_the_recent_profile(sample_wh):
    series = daily_series(sample_wh, Filters())
    daily = forecast_daily(series, 7)
    hourly = forecast_hourly(sample_wh, Filters(), daily)

    assert list(hourly.columns) == ["hour", "arrivals", "lower", "upper"]
    assert len(hourly) == 7 * 24
    assert hourly["hour"].iloc[0] == daily["date"].iloc[0]
    assert hourly["hour"].diff().dropna().eq(pd.Timedelta(hours=1)).all()
    per_day = hourly.groupby(hourly["hour"].dt.normalize())[["arrivals", "lower", "upper"]].sum()
    assert per_day["arrivals"].to_numpy() == pytest.approx(daily["forecast"].to_numpy())
    assert per_day["lower"].to_numpy() == pytest.approx(daily["lower"].to_numpy())
    assert per_day["upper"].to_numpy() == pytest.approx(daily["upper"].to_numpy())

    # each day's hour shares follow the last 8 weeks of that weekday in the data
    rows = _rows(sample_wh)
    days = _expected_days(sample_wh, rows)[-56:]
    recent = _select(rows, None, days)
    shares = recent.groupby(
        [recent["created_at"].dt.day_of_week, recent["created_at"].dt.hour]
    ).size().unstack(fill_value=0)
    shares = shares.div(shares.sum(axis=1), axis=0)
    for day, forecast in zip(daily["date"], daily["forecast"], strict=True):
        got = hourly.loc[hourly["hour"].dt.normalize() == day, "arrivals"].to_numpy() / forecast
        assert np.abs(got - shares.loc[day.day_of_week].to_numpy()).max() < 0.01
        assert np.corrcoef(got, shares.loc[day.day_of_week].to_numpy())[0, 1] > 0.98


def test_forecast_hourly_needs_a_daily_forecast(sample_wh):
    with pytest.raises(CsMetricsError, match="lacks forecast"):
        forecast_hourly(sample_wh, Filters(), pd.DataFrame({"date": [], "lower": [],
                                                            "upper": []}))


# --- backtest --------------------------------------------------------------------------------


def test_backtest_folds_and_figures():
    rng = np.random.default_rng(4)
    index = pd.date_range("2024-01-01", periods=150, freq="D")
    mean = 60 * np.array([1.3, 1.2, 1.1, 1.0, 1.0, 0.7, 0.5])[index.day_of_week]
    series = pd.Series(rng.poisson(mean), index=index)
    run = backtest(series, horizon_days=14, folds=4)

    folds = run.folds
    assert len(folds) == 4
    assert folds["test_end"].iloc[-1] == series.index[-1].date()
    assert (folds["test_start"].iloc[1:].to_numpy()
            == folds["test_end"].iloc[:-1].to_numpy() + timedelta(days=1)).all()
    assert (folds["train_end"] + timedelta(days=1) == folds["test_start"]).all()
    assert run.model_mase == pytest.approx(folds["model_mase"].mean())
    assert run.baseline_mase == pytest.approx(folds["baseline_mase"].mean())
    # the last fold recomputed by hand
    train, test = series.iloc[:-14], series.iloc[-14:].to_numpy()
    model = forecast_daily(train, 14)["forecast"].to_numpy()
    naive = np.resize(train.to_numpy()[-7:], 14)
    scale = np.mean(np.abs(train.to_numpy()[7:] - train.to_numpy()[:-7]))
    assert folds["model_mase"].iloc[-1] == pytest.approx(np.mean(np.abs(test - model)) / scale)
    assert folds["baseline_mase"].iloc[-1] == pytest.approx(np.mean(np.abs(test - naive)) / scale)
    assert folds["model_mape_pct"].iloc[-1] == pytest.approx(
        100 * np.mean(np.abs(test - model) / test)
    )
    assert run.beats_baseline is (run.model_mase < run.baseline_mase)
    assert f"{run.model_mape_pct:.1f} %" in run.summary
    assert f"{run.baseline_mase:.2f}" in run.summary


def test_backtest_needs_enough_history():
    with pytest.raises(CsMetricsError, match="4 folds of 14 days needs at least 84 days"):
        backtest(_weekly(83))


# --- a generated two-year history ------------------------------------------------------------


@pytest.fixture(scope="module")
def two_years(tmp_path_factory) -> tuple[Warehouse, dict]:
    tmp = tmp_path_factory.mktemp("two_years")
    generate(tmp / "src", tickets=60_000, days=730, seed=3, end=datetime(2025, 3, 1))
    ingest(tmp / "src", db=tmp / "wh.duckdb")
    truth = json.loads((tmp / "src" / "truth.json").read_text(encoding="utf-8"))
    return Warehouse(tmp / "wh.duckdb", read_only=True), truth


def test_generated_history_model_beats_seasonal_naive(two_years):
    wh, _ = two_years
    series = daily_series(wh, Filters())
    assert len(series) == 730

    started = time.perf_counter()
    result = decompose(series)
    daily = forecast_daily(series, 28)
    run = backtest(series, horizon_days=14, folds=4)
    seconds = time.perf_counter() - started

    print(f"\n{run.summary}\n{run.folds.to_string()}\n"
          f"decompose + forecast + backtest: {seconds:.2f} s")
    assert run.beats_baseline
    assert run.model_mase < 0.9 * run.baseline_mase
    assert run.model_mape_pct < run.baseline_mape_pct
    assert 0.75 <= run.coverage <= 1.0
    assert len(daily) == 28 and (daily["forecast"] > 0).all()
    assert "seasonal_365" in result.components.columns
    assert seconds < 3.0


def test_generated_history_seasonality_matches_truth(two_years):
    wh, truth = two_years
    result = decompose(daily_series(wh, Filters()))
    factors = np.asarray(truth["weekday_factors"])

    effects = result.weekday_effects.to_numpy() + 1
    print(f"\nweekday factors: measured {np.round(effects, 3)}, truth {np.round(factors, 3)}")
    print("\n".join(result.verdicts))
    assert np.corrcoef(effects, factors)[0, 1] > 0.95
    assert np.abs(effects - factors).max() < 0.08
    # the weekly amplitude (busiest weekday over quietest, as a share of the average day)
    amplitude, true_amplitude = np.ptp(effects), np.ptp(factors / factors.mean())
    print(f"weekly amplitude: measured {amplitude:.3f}, truth {true_amplitude:.3f}")
    assert amplitude == pytest.approx(true_amplitude, rel=0.10)
    seasonal = result.components["seasonal_7"].groupby(result.components.index.day_of_week)
    assert np.corrcoef(seasonal.mean().to_numpy(), factors)[0, 1] > 0.95
    peak = WEEKDAYS[int(np.argmax(factors))]
    assert result.weekly_verdict.startswith("Strong weekly seasonality")
    assert f"{peak}s carry" in result.weekly_verdict
    # truth: 1 + 0.12 cos(2 pi (day of year - 15) / 365.25), busiest mid-January
    assert result.yearly_verdict is not None
    assert "January is the busiest month" in result.yearly_verdict
    assert "July the quietest" in result.yearly_verdict
    # the holidays are among the days left out as unusual
    holidays = {date.fromisoformat(d) for d in truth["holiday_dates"]}
    assert len(holidays & set(result.unusual_days)) >= len(holidays) // 2
