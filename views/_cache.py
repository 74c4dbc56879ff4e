"""The pages' cache of query results: one helper, ``cached``, around the library's functions.

A warehouse argument is keyed by its ``cache_key``: the file for a whole warehouse, the file
and the scope for a scoped one (``cs_metrics.core.access.ScopedWarehouse``), so two people's
scopes never share a result and a dataset's results stay apart from another's. Every other
argument is hashed by value (a frozen ``Filters``, dates, strings). Results are small
aggregated frames, kept ``QUERY_TTL_S`` seconds and cleared when the warehouse refreshes
(``st.cache_data.clear()``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import pandas as pd
import streamlit as st

import cs_metrics
from cs_metrics import Filters, QualityReport, Warehouse
from cs_metrics.analysis import maps
from cs_metrics.core.access import ScopedWarehouse
from cs_metrics.metrics.drilldown import ticket_page
from cs_metrics.metrics.flow import resolved_per_period

QUERY_TTL_S = 600

F = TypeVar("F", bound=Callable[..., Any])


def _warehouse_key(wh: Warehouse) -> str:
    return wh.cache_key


def _warehouse_types() -> list[type]:
    # Streamlit looks a hash function up by the argument's exact type, not its base classes:
    # every warehouse class the library defines is named (a whole one, a scoped one).
    found: list[type] = []
    todo: list[type] = [Warehouse]
    while todo:
        cls = todo.pop()
        if cls not in found:
            found.append(cls)
            todo.extend(cls.__subclasses__())
    assert ScopedWarehouse in found  # a scope must never be keyed like the whole file
    return found


HASH_FUNCS: dict[Any, Callable[[Any], Any]] = {cls: _warehouse_key for cls in _warehouse_types()}


def cached(func: F | None = None, *, show_spinner: bool | str = False,
           max_entries: int | None = None) -> Any:
    """``func`` cached for ``QUERY_TTL_S`` seconds per (warehouse file and scope, arguments);
    as ``cached(f)`` or as a decorator, ``@cached`` / ``@cached(show_spinner="…")``."""

    def wrap(f: F) -> F:
        inner = st.cache_data(f, ttl=QUERY_TTL_S, show_spinner=show_spinner,
                              max_entries=max_entries, hash_funcs=HASH_FUNCS)
        signature = inspect.signature(f)

        @functools.wraps(f)
        def call(*args: Any, **kwargs: Any) -> Any:
            # Streamlit keys a call by its arguments as written: ``f(wh, m, filters=x)`` and
            # ``f(wh, m, (), None, x)`` would be two entries and two queries. Every argument
            # is passed in the signature's order, defaults filled in, so they are one.
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return inner(*bound.args, **bound.kwargs)

        call.clear = inner.clear  # type: ignore[attr-defined]
        return call  # type: ignore[return-value]

    return wrap if func is None else wrap(func)


@cached
def run_query(
    wh: Warehouse,
    metrics: tuple[str, ...] | list[str],
    by: tuple[str, ...] | list[str] = (),
    grain: str | None = None,
    filters: Filters | None = None,
) -> pd.DataFrame:
    """``cs_metrics.query``, cached per (file and scope, metrics, by, grain, filters)."""
    # ``cs_metrics.query`` is looked up on each miss, not bound once: a stand-in put there
    # (a test counting queries) is the one called
    return cs_metrics.query(wh, list(metrics), list(by), grain, filters)


@cached
def quality(wh: Warehouse) -> QualityReport:
    """``cs_metrics.quality_report``, cached like the queries."""
    return cs_metrics.quality_report(wh)


@cached
def latest_rejects(wh: Warehouse, limit: int = 200) -> pd.DataFrame:
    """The ``limit`` most recently rejected source rows, with their reasons."""
    return cs_metrics.latest_rejects(wh, limit)


#: ``cs_metrics.metrics.flow.resolved_per_period(wh, filters, grain)``, cached.
resolved = cached(resolved_per_period)
#: ``cs_metrics.metrics.drilldown.ticket_page`` (one page of rows), cached.
tickets = cached(ticket_page)
#: ``cs_metrics.analysis.maps.customer_cells(wh, cell_km)``, cached: the outage map and the
#: what-if map draw the same customers, so they share one entry per cell size.
customer_cells = cached(maps.customer_cells)


@cached
def dimension_options(wh: Warehouse, dim: str) -> list[str]:
    """The values of ``dim`` in the data, most tickets first (empty if the dataset lacks it)."""
    # the warehouse's own method: a scoped warehouse lists only the values its scope sees
    return wh.dimension_values(dim)
