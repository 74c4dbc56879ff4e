"""The what-if engine's queue: the minute-by-minute first-response queue over Monte Carlo
runs, the p10 / p50 / p90 bands over them, and today's staffing grid that serves it. Split
from ``cs_metrics.analysis.whatif`` to keep each module to one concern; the model is
described there.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from cs_metrics.analysis.staffing import current_staffing
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.metrics.registry import Filters

# --- the queue --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Runs:
    """Per run (rows) and reported hour (columns)."""

    arrivals: np.ndarray
    backlog: np.ndarray
    wait_mean: np.ndarray  # NaN when no ticket arrived
    breach_pct: np.ndarray  # NaN when no ticket arrived
    breach_share: np.ndarray  # per run, over the reported hours (NaN without tickets)


def _simulate(
    base_per_min: np.ndarray,
    extra_per_min: np.ndarray | None,
    agents_per_hour: np.ndarray,
    p_done_per_hour: np.ndarray,
    skip_hours: int,
    sla_minutes: float,
    runs: int,
    seed: int,
) -> _Runs:
    """The minute-by-minute FIFO queue over ``runs`` runs; hours before ``skip_hours`` are
    the warm-up and are not reported."""
    minutes = len(base_per_min)
    hours = minutes // 60
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]
    base_rng, extra_rng, staff_rng, service_rng = streams
    arrivals = base_rng.poisson(base_per_min, size=(runs, minutes))
    if extra_per_min is not None:
        arrivals = arrivals + extra_rng.poisson(extra_per_min, size=(runs, minutes))
    # fractional staffing: floor, plus one with probability of the fraction, per run and hour
    whole = np.floor(agents_per_hour + 1e-9)
    frac = np.clip(agents_per_hour - whole, 0.0, 1.0)
    servers = (whole[None, :] + (staff_rng.random((runs, hours)) < frac[None, :]))
    servers = servers.astype(np.int64)

    queue = np.zeros(runs, dtype=np.int64)
    busy = np.zeros(runs, dtype=np.int64)
    started = np.empty((runs, minutes), dtype=np.int64)
    backlog = np.empty((runs, hours), dtype=np.int64)
    for t in range(minutes):
        h = t // 60
        busy -= service_rng.binomial(busy, p_done_per_hour[h])
        queue += arrivals[:, t]
        start = np.minimum(queue, np.maximum(servers[:, h] - busy, 0))
        queue -= start
        busy += start
        started[:, t] = start
        if t % 60 == 59:
            backlog[:, h] = queue

    # Waits, FIFO: ticket k (1-based, in arrival order) arrives in the first minute whose
    # cumulative arrivals reach k and starts in the first minute whose cumulative starts do.
    cum_arr = np.cumsum(arrivals, axis=1)
    cum_start = np.cumsum(started, axis=1)
    totals = cum_arr[:, -1]
    stride = int(totals.max()) + 1
    offset = (np.arange(runs, dtype=np.int64) * stride)[:, None]
    run_of = np.repeat(np.arange(runs, dtype=np.int64), totals)
    first = np.concatenate([[0], np.cumsum(totals)[:-1]])
    k = np.arange(int(totals.sum()), dtype=np.int64) - np.repeat(first, totals) + 1
    key = run_of * stride + k
    arrive = np.searchsorted((cum_arr + offset).ravel(), key) - run_of * minutes
    # beyond the run's row: not started by the end, its wait counts up to the end
    begin = np.minimum(np.searchsorted((cum_start + offset).ravel(), key) - run_of * minutes,
                       minutes)
    wait = (begin - arrive).astype(np.float64)
    hour = arrive // 60
    keep = hour >= skip_hours
    cell = run_of[keep] * hours + hour[keep]
    size = runs * hours
    count = np.bincount(cell, minlength=size).reshape(runs, hours)
    wait_sum = np.bincount(cell, weights=wait[keep], minlength=size).reshape(runs, hours)
    late = np.bincount(cell, weights=(wait[keep] > sla_minutes).astype(np.float64),
                       minlength=size).reshape(runs, hours)
    with np.errstate(invalid="ignore", divide="ignore"):
        wait_mean = np.where(count > 0, wait_sum / count, np.nan)
        breach_pct = np.where(count > 0, 100.0 * late / count, np.nan)
        n_run = count[:, skip_hours:].sum(axis=1)
        share = np.where(n_run > 0, 100.0 * late[:, skip_hours:].sum(axis=1) / n_run, np.nan)
    per_hour = arrivals.reshape(runs, hours, 60).sum(axis=2)
    return _Runs(
        arrivals=per_hour[:, skip_hours:],
        backlog=backlog[:, skip_hours:],
        wait_mean=wait_mean[:, skip_hours:],
        breach_pct=breach_pct[:, skip_hours:],
        breach_share=share,
    )


def _bands(values: np.ndarray) -> np.ndarray:
    """p10, p50, p90 over runs (rows), ignoring runs where the figure is undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an hour with no ticket in any run
        return np.nanpercentile(values.astype(np.float64), [10, 50, 90], axis=0)


def _median(values: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmedian(values)) if len(values) else math.nan


# --- today's staffing -------------------------------------------------------------------------


def _staffing_grid(wh: Warehouse, since: datetime) -> np.ndarray | None:
    """Active reps by weekday x hour (7 x 24) over the recent weeks; None without reps."""
    table = current_staffing(wh, Filters(date_from=since.date()))
    if table.empty:
        table = current_staffing(wh, Filters())  # recent weeks without reps: use them all
    if table.empty:
        return None
    grid = (table.pivot(index="weekday", columns="hour", values="active_reps")
            .reindex(index=range(7), columns=range(24)))
    # a weekday the range lacks (data shorter than a week) takes that hour's average day
    grid = grid.fillna(grid.mean(axis=0)).fillna(0.0)
    return grid.to_numpy(dtype=np.float64)

