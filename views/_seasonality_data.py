"""Seasonality & staffing page, its cached library calls: small results, keyed by the file
and scope of the warehouse and the frozen inputs."""

from __future__ import annotations

import pandas as pd

from cs_metrics import Filters, Warehouse
from cs_metrics.analysis.seasonality import (
    Backtest,
    Decomposition,
    arrival_heatmap,
    backtest,
    daily_series,
    decompose,
    forecast_daily,
    forecast_hourly,
)
from cs_metrics.analysis.staffing import (
    current_staffing,
    handle_time_s,
)
from views._cache import cached

BACKTEST_HORIZON = 14
BACKTEST_FOLDS = 4
LEVEL = 0.9


_series = cached(daily_series)
_heatmap = cached(arrival_heatmap)
_handle_time = cached(handle_time_s)
_current = cached(current_staffing)


@cached
def _decomposition(wh: Warehouse, filters: Filters) -> Decomposition:
    return decompose(_series(wh, filters))


@cached
def _forecast(wh: Warehouse, filters: Filters, days: int) -> pd.DataFrame:
    return forecast_daily(_series(wh, filters), days, level=LEVEL)


@cached
def _backtest(wh: Warehouse, filters: Filters) -> Backtest:
    return backtest(_series(wh, filters), BACKTEST_HORIZON, BACKTEST_FOLDS, level=LEVEL)


@cached
def _hourly(wh: Warehouse, filters: Filters, days: int) -> pd.DataFrame:
    return forecast_hourly(wh, filters, _forecast(wh, filters, days))
