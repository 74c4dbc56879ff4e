"""Seasonality & staffing page, its cached library calls: small results, keyed by the file
and the frozen inputs."""

from __future__ import annotations

import pandas as pd
import streamlit as st

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
from views._cache import QUERY_TTL_S

BACKTEST_HORIZON = 14
BACKTEST_FOLDS = 4
LEVEL = 0.9


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _series(_wh: Warehouse, db: str, filters: Filters) -> pd.Series:
    return daily_series(_wh, filters)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _decomposition(_wh: Warehouse, db: str, filters: Filters) -> Decomposition:
    return decompose(_series(_wh, db, filters))


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _heatmap(_wh: Warehouse, db: str, filters: Filters) -> pd.DataFrame:
    return arrival_heatmap(_wh, filters)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _forecast(_wh: Warehouse, db: str, filters: Filters, days: int) -> pd.DataFrame:
    return forecast_daily(_series(_wh, db, filters), days, level=LEVEL)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _backtest(_wh: Warehouse, db: str, filters: Filters) -> Backtest:
    return backtest(_series(_wh, db, filters), BACKTEST_HORIZON, BACKTEST_FOLDS, level=LEVEL)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _hourly(_wh: Warehouse, db: str, filters: Filters, days: int) -> pd.DataFrame:
    return forecast_hourly(_wh, filters, _forecast(_wh, db, filters, days))


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _handle_time(_wh: Warehouse, db: str, filters: Filters) -> float | None:
    return handle_time_s(_wh, filters)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _current(_wh: Warehouse, db: str, filters: Filters) -> pd.DataFrame:
    return current_staffing(_wh, filters)
