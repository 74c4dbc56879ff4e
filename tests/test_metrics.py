"""Every metric of the registry against an independent pandas computation of its definition."""

from __future__ import annotations

import dataclasses
import re
from datetime import date

import numpy as np
import pandas as pd
import pytest

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.settings import load_settings
from cs_metrics.metrics import kinds
from cs_metrics.metrics.registry import (
    DIMENSIONS,
    METRICS,
    Filters,
    Metric,
    compile_query,
    query,
)
from tests import reference

# the flows placed in periods by created_at (the oracle's ``compute``); the stock and the
# flows by resolved_at have oracles of their own below
NON_STOCK = [m for m in METRICS
             if METRICS[m].source != "backlog" and METRICS[m].time_dimension == "created_at"]
BY_RESOLUTION = [m for m in METRICS if METRICS[m].time_dimension == "resolved_at"]
STOCKS = [m for m in METRICS if METRICS[m].source == "backlog"]


@pytest.fixture(scope="module")
def prepared(sample_dir):
    return reference.prepare(sample_dir, load_settings())


def _assert_frames_equal(got: pd.DataFrame, want: pd.DataFrame, keys: list[str]) -> None:
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want), (len(got), len(want))
    got = got.reset_index(drop=True)
    want = want.reset_index(drop=True)
    for k in keys:
        g = got[k].astype(object).where(got[k].notna(), None)
        w = want[k].astype(object).where(want[k].notna(), None)
        if k == "period":
            g = pd.to_datetime(g)
            w = pd.to_datetime(w)
        assert g.tolist() == w.tolist(), k
    for col in got.columns:
        if col in keys:
            continue
        g = got[col].to_numpy(dtype=float)
        w = want[col].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(g), np.isnan(w)), col
        np.testing.assert_allclose(g[~np.isnan(g)], w[~np.isnan(w)], rtol=1e-9, atol=1e-9,
                                   err_msg=col)


def _sort(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    if not keys:
        return df
    return df.sort_values(keys, na_position="last", kind="stable")


CASES = [
    ([], None, {}),
    (["channel"], None, {}),
    (["customer_segment", "priority"], "week", {}),
    (["team"], "month", {}),
    ([], "day", {"date_from": date(2025, 1, 10), "date_to": date(2025, 2, 3)}),
    (["rep_name"], None, {"where": {"channel": ["email", "chat"], "priority": ["high"]}}),
    (["status", "domain"], None, {"date_to": date(2025, 2, 1)}),
]


@pytest.mark.parametrize("by, grain, flt", CASES)
def test_every_metric_matches_pandas(sample_wh, prepared, by, grain, flt):
    tickets, feedback = prepared
    where = flt.get("where", {})
    filters = Filters.build(flt.get("date_from"), flt.get("date_to"), **where)
    got = query(sample_wh, NON_STOCK, by, grain, filters)
    want = reference.compute(tickets, feedback, NON_STOCK, by, grain, flt.get("date_from"),
                             flt.get("date_to"), where)
    keys = by + (["period"] if grain else [])
    _assert_frames_equal(got, _sort(want, keys), keys)
    assert len(got) > 0


@pytest.mark.parametrize(
    "by, grain, flt",
    [
        ([], None, {}),
        (["channel"], None, {"date_to": date(2025, 1, 15)}),
        ([], "week", {}),
        (["priority"], "day", {"date_from": date(2025, 2, 1), "date_to": date(2025, 2, 20)}),
        (["customer_segment"], "month", {"where": {"domain": ["billing", "network"]}}),
    ],
)
def test_backlog_matches_pandas(sample_wh, prepared, by, grain, flt):
    tickets, _ = prepared
    where = flt.get("where", {})
    filters = Filters.build(flt.get("date_from"), flt.get("date_to"), **where)
    got = query(sample_wh, ["backlog"], by, grain, filters)
    want = reference.backlog(tickets, by, grain, flt.get("date_from"), flt.get("date_to"), where)
    keys = by + (["period"] if grain else [])
    _assert_frames_equal(got, _sort(want, keys), keys)
    assert got["backlog"].sum() > 0


def test_backlog_combines_with_flow_metrics(sample_wh):
    flt = Filters.build(date(2025, 1, 6), date(2025, 2, 3))
    both = query(sample_wh, ["ticket_count", "csat_avg", "backlog"], ["channel"], "week", flt)
    flow = query(sample_wh, ["ticket_count", "csat_avg"], ["channel"], "week", flt)
    stock = query(sample_wh, ["backlog"], ["channel"], "week", flt)
    merged = stock.merge(flow, on=["channel", "period"], how="outer")
    merged["ticket_count"] = merged["ticket_count"].fillna(0).astype("int64")
    merged = merged[["channel", "period", "ticket_count", "csat_avg", "backlog"]]
    _assert_frames_equal(both, _sort(merged, ["channel", "period"]), ["channel", "period"])


RESOLVED_CASES = [
    ([], None, {}),
    (["channel"], None, {"date_from": date(2025, 1, 10), "date_to": date(2025, 2, 3)}),
    ([], "day", {"date_from": date(2025, 1, 10), "date_to": date(2025, 2, 3)}),
    (["priority"], "week", {}),
    (["team"], "month", {"date_to": date(2025, 2, 1), "where": {"channel": ["email", "chat"]}}),
    (["tag"], "week", {"date_from": date(2025, 1, 6)}),
]


@pytest.mark.parametrize("by, grain, flt", RESOLVED_CASES)
def test_resolution_dated_metrics_match_pandas(sample_wh, prepared, by, grain, flt):
    """``resolved_count``: closed tickets in the period of their resolved_at, the date range
    on resolved_at, by dimension and grain."""
    tickets, _ = prepared
    assert BY_RESOLUTION == ["resolved_count"]
    where = flt.get("where", {})
    filters = Filters.build(flt.get("date_from"), flt.get("date_to"), **where)
    got = query(sample_wh, BY_RESOLUTION, by, grain, filters)
    if "tag" in by:  # a list dimension: one row per ticket and tag (pandas: explode)
        tickets = tickets.assign(tag=tickets["tags"]).explode("tag")
        tickets = tickets[tickets["tag"].notna()]
    want = reference.resolved(tickets, by, grain, flt.get("date_from"), flt.get("date_to"),
                              where)
    keys = by + (["period"] if grain else [])
    _assert_frames_equal(got, _sort(want, keys), keys)
    assert got["resolved_count"].sum() > 0
    assert got["resolved_count"].dtype == "int64"


def test_resolution_dated_metrics_in_a_zone(sample_wh, prepared):
    tickets, _ = prepared
    zone = "America/New_York"
    filters = Filters.build(date(2025, 1, 1), date(2025, 2, 1), tz=zone)
    got = query(sample_wh, ["resolved_count"], ["channel"], "week", filters)
    want = reference.resolved(tickets, ["channel"], "week", date(2025, 1, 1), date(2025, 2, 1),
                              tz=zone)
    _assert_frames_equal(got, _sort(want, ["channel", "period"]), ["channel", "period"])


@pytest.mark.parametrize("by, grain", [([], None), (["channel"], "week"), ([], "day")])
def test_a_query_mixing_time_dimensions_joins_them_on_period(sample_wh, prepared, by, grain):
    """Metrics of different time dimensions (and the stock) are computed apart and joined on
    the dimensions and period: a row for every group any has, a count missing there is 0;
    each date range applies to its own metric's timestamp."""
    tickets, feedback = prepared
    lo, hi = date(2025, 1, 6), date(2025, 2, 3)
    names = ["ticket_count", "csat_avg", "resolved_count", "backlog"]
    got = query(sample_wh, names, by, grain, Filters.build(lo, hi))
    keys = by + (["period"] if grain else [])
    created = reference.compute(tickets, feedback, ["ticket_count", "csat_avg"], by, grain,
                                lo, hi)
    closed = reference.resolved(tickets, by, grain, lo, hi)
    stock = reference.backlog(tickets, by, grain, lo, hi)
    if keys:
        want = created.merge(closed, on=keys, how="outer").merge(stock, on=keys, how="outer")
    else:
        want = pd.concat([created, closed, stock], axis=1)
    for count in ("ticket_count", "resolved_count", "backlog"):
        want[count] = want[count].fillna(0).astype("int64")
    want = _sort(want[[*keys, *names]], keys)
    _assert_frames_equal(got, want, keys)
    # resolutions in the range of tickets created before it: the two time dimensions differ
    assert got["resolved_count"].sum() != got["ticket_count"].sum()


def test_the_oracle_covers_every_kind_and_every_metric():
    """Each kind of ``kinds.Kind`` has a metric, and every metric is under one of the pandas
    comparisons above (flows by created_at, flows by resolved_at, stocks)."""
    used = {type(m.kind) for m in METRICS.values()}
    assert used == set(kinds.Kind.__args__)
    covered = set(NON_STOCK) | set(BY_RESOLUTION) | set(STOCKS)
    assert covered == set(METRICS)
    assert {METRICS[m].time_dimension for m in METRICS} == {"created_at", "resolved_at"}


def test_a_metric_declares_a_known_time_dimension():
    with pytest.raises(CsMetricsError, match="time dimension"):
        Metric("x", "X", "x", "tickets", ",.0f", kinds.Count(), time_dimension="closed_at")


def test_long_queries_refer_to_their_parameters_by_name():
    """No ``?`` counted by position: every value is bound once, named after what it is, and
    referred to by ``$name``."""
    flt = Filters.build(date(2025, 1, 6), date(2025, 2, 3), channel=["email", "chat"])
    for grain in (None, "week"):
        sql, params = compile_query(["ticket_count", "resolved_count", "backlog"], ["channel"],
                                    grain, flt)
        assert "?" not in sql
        assert isinstance(params, dict)
        assert {"date_from", "date_to", "channel", "channel_2"} <= set(params)
        assert {params["channel"], params["channel_2"]} == {"email", "chat"}
        for name in params:
            assert re.search(rf"\${name}\b", sql), name
        assert set(re.findall(r"\$(\w+)", sql)) == set(params)


def test_test_tickets_are_excluded(sample_wh, prepared):
    tickets, _ = prepared
    assert tickets["is_test"].sum() > 0
    got = query(sample_wh, ["ticket_count"])["ticket_count"].iloc[0]
    assert got == int((~tickets["is_test"]).sum())


def test_sql_is_parameterised_values_never_in_text():
    value = "x'); drop table tickets; --"
    sql, params = compile_query(["ticket_count"], ["channel"], "day",
                                Filters.build(date(2024, 1, 1), None, channel=value))
    assert value not in sql
    assert value in params.values()


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"metrics": ["nope"]}, "valid metrics"),
        ({"metrics": ["ticket_count"], "by": ["planet"]}, "valid dimensions"),
        ({"metrics": ["ticket_count"], "grain": "hour"}, "day, week, month"),
        ({"metrics": []}, "at least one metric"),
    ],
)
def test_unknown_names_are_errors_with_the_valid_list(kwargs, word):
    with pytest.raises(CsMetricsError, match=word):
        compile_query(**kwargs)


def test_filters_are_frozen_and_hashable():
    f = Filters.build(date(2024, 1, 1), None, channel=["b", "a"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.date_from = None  # type: ignore[misc]
    assert f.where == (("channel", ("a", "b")),)
    assert hash(f) == hash(Filters.build(date(2024, 1, 1), None, channel=["a", "b"]))
    with pytest.raises(CsMetricsError):
        Filters(where=(("planet", ("x",)),))


def test_every_metric_is_fully_described():
    for m in METRICS.values():
        assert m.label and m.description and m.format
        assert m.direction in ("higher", "lower", None)
        format(1.5, m.format)
    assert set(DIMENSIONS) >= {"channel", "rep_name", "team", "manager", "status"}


def test_readme_defines_every_metric():
    from tests.conftest import REPO

    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Metric definitions", 1)[1].split("\n## ", 1)[0]
    for name in METRICS:
        assert f"`{name}`" in section, name
