"""Drill-down pages and resolution flows against pandas over the generated sample."""

from __future__ import annotations

import dataclasses
from datetime import date

import pandas as pd
import pytest

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.settings import load_settings
from cs_metrics.metrics.drilldown import COLUMNS, ORDERS, TicketPage, bucket, ticket_page
from cs_metrics.metrics.flow import resolved_per_period
from cs_metrics.metrics.registry import Filters, query
from tests import reference


@pytest.fixture(scope="module")
def tickets(sample_dir) -> pd.DataFrame:
    t, _ = reference.prepare(sample_dir, load_settings())
    return t[~t["is_test"]]


def _match(t: pd.DataFrame, filters: Filters, column: str = "created_at") -> pd.DataFrame:
    keep = pd.Series(True, index=t.index)
    if filters.date_from:
        keep &= t[column] >= pd.Timestamp(filters.date_from)
    if filters.date_to:
        keep &= t[column] < pd.Timestamp(filters.date_to)
    for dim, values in filters.where:
        keep &= t[dim].isin(values)
    return t[keep]


FILTERS = [
    Filters(),
    Filters.build(date(2025, 1, 10), date(2025, 2, 3)),
    Filters.build(None, date(2025, 2, 1), channel=["email", "chat"], priority="high"),
    Filters.build(date(2024, 12, 1), None, customer_segment="M"),
]


@pytest.mark.parametrize("filters", FILTERS)
def test_first_page_is_the_newest_matching_tickets(sample_wh, tickets, filters):
    page = ticket_page(sample_wh, filters, limit=25)
    want = _match(tickets, filters).sort_values(["created_at", "ticket_id"],
                                                ascending=False)
    assert page.total == len(want) > 25
    assert list(page.rows.columns) == list(COLUMNS)
    assert page.rows["ticket_id"].tolist() == want["ticket_id"].head(25).tolist()
    assert (page.first, page.last, page.has_next) == (1, 25, True)


def test_pages_cover_every_ticket_once(sample_wh, tickets):
    filters = Filters.build(date(2025, 2, 1), date(2025, 2, 8), channel="chat")
    want = set(_match(tickets, filters)["ticket_id"])
    seen: list[str] = []
    offset = 0
    while True:
        page = ticket_page(sample_wh, filters, limit=7, offset=offset, order="created_at asc")
        seen += page.rows["ticket_id"].tolist()
        if not page.has_next:
            break
        offset += 7
    assert len(seen) == len(set(seen)) == len(want)
    assert set(seen) == want


@pytest.mark.parametrize("grain", ["day", "week", "month"])
def test_a_period_lists_the_tickets_its_figure_counts(sample_wh, tickets, grain):
    filters = Filters.build(date(2025, 1, 1), date(2025, 3, 1), priority=["high", "urgent"])
    counts = query(sample_wh, ["ticket_count"], grain=grain, filters=filters)
    row = counts.iloc[len(counts) // 2]
    page = ticket_page(sample_wh, filters, period=row["period"], grain=grain, limit=1000)
    assert page.total == row["ticket_count"] == len(page.rows)
    start, end = bucket(row["period"], grain)
    t = _match(tickets, filters)
    want = t[(t["created_at"] >= start) & (t["created_at"] < end)]
    assert set(page.rows["ticket_id"]) == set(want["ticket_id"])


@pytest.mark.parametrize("grain", ["week", "month"])
def test_the_backlog_at_a_period_end_lists_the_tickets_its_figure_counts(sample_wh, tickets,
                                                                          grain):
    filters = Filters.build(date(2025, 1, 1), date(2025, 3, 1), channel=["chat", "email"])
    backlog = query(sample_wh, ["backlog"], grain=grain, filters=filters)
    row = backlog.iloc[len(backlog) // 2]
    _, end = bucket(row["period"], grain)
    page = ticket_page(sample_wh, filters, open_at=end, limit=1000)
    assert page.total == row["backlog"] == len(page.rows) > 0
    t = _match(tickets, Filters(where=filters.where))  # a stock: older tickets count too
    want = t[(t["created_at"] < end) & (t["eff_resolved"].isna() | (t["eff_resolved"] >= end))]
    assert set(page.rows["ticket_id"]) == set(want["ticket_id"])
    with pytest.raises(CsMetricsError, match="not both"):
        ticket_page(sample_wh, filters, open_at=end, period=row["period"], grain=grain)


def test_extra_constraints_and_columns(sample_wh, tickets):
    filters = Filters.build(date(2025, 1, 1), date(2025, 2, 1))
    page = ticket_page(sample_wh, filters, extra={"domain": "billing"}, limit=1000)
    t = _match(tickets, filters)
    want = t[t["domain"] == "billing"].set_index("ticket_id")
    assert page.total == len(want) == len(page.rows) > 0
    got = page.rows.set_index("ticket_id").loc[want.index]
    assert got["rep_name"].fillna("").tolist() == want["rep_name"].fillna("").tolist()
    pd.testing.assert_series_equal(got["first_response_min"], want["fr_min"],
                                   check_names=False, check_dtype=False)
    pd.testing.assert_series_equal(got["resolution_h"], want["res_h"], check_names=False,
                                   check_dtype=False)
    assert got["csat"].dropna().between(1, 5).all()
    # None asks for tickets without a value
    unassigned = ticket_page(sample_wh, filters, extra={"rep_name": None}, limit=1000)
    assert unassigned.total == int(t["rep_name"].isna().sum())
    nothing = ticket_page(sample_wh, filters, extra={"domain": "no such domain"})
    assert nothing.total == 0 and nothing.rows.empty and nothing.first == 0


def test_csat_is_the_mean_survey_score(sample_dir, sample_wh):
    _, feedback = reference.prepare(sample_dir, load_settings())
    page = ticket_page(sample_wh, Filters(), limit=1000, offset=0)
    means = feedback.dropna(subset=["csat"]).groupby("ticket_id")["csat"].mean()
    rows = page.rows.set_index("ticket_id")["csat"]
    both = rows.dropna().index.intersection(means.index)
    assert len(both) > 50
    pd.testing.assert_series_equal(rows.loc[both], means.loc[both], check_names=False,
                                   check_dtype=False)
    assert rows.loc[rows.index.difference(means.index)].isna().all()


def test_only_one_page_reaches_python(sample_wh, monkeypatch):
    sizes: list[int] = []
    real = sample_wh.df

    def spy(sql, params=None):
        df = real(sql, params)
        sizes.append(len(df))
        return df

    monkeypatch.setattr(sample_wh, "df", spy)
    page = ticket_page(sample_wh, Filters(), limit=10, offset=30)
    assert page.total > 1000
    assert sizes == [10]


@pytest.mark.parametrize("order", list(ORDERS))
def test_every_order_is_allowed(sample_wh, order):
    assert len(ticket_page(sample_wh, Filters(), limit=5, order=order).rows) == 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"order": "created_at; drop table tickets"},
        {"extra": {"subject": "x"}},
        {"extra": {"channel = 'x' or 1=1 --": "x"}},
        {"limit": 0},
        {"limit": 5000},
        {"offset": -1},
        {"period": date(2025, 1, 1)},
        {"period": date(2025, 1, 1), "grain": "year"},
    ],
)
def test_bad_requests_are_refused(sample_wh, kwargs):
    with pytest.raises(CsMetricsError):
        ticket_page(sample_wh, Filters(), **kwargs)


def test_values_never_reach_the_sql_text(sample_wh, monkeypatch):
    seen: list[str] = []
    real = sample_wh.df

    def spy(sql, params=None):
        seen.append(sql)
        return real(sql, params)

    monkeypatch.setattr(sample_wh, "df", spy)
    sneaky = "x' or '1'='1"
    page = ticket_page(sample_wh, Filters.build(channel=sneaky), extra={"domain": sneaky})
    assert page.total == 0
    assert sneaky not in seen[0]


def test_page_is_frozen(sample_wh):
    page = ticket_page(sample_wh, Filters(), limit=1)
    assert isinstance(page, TicketPage)
    with pytest.raises(dataclasses.FrozenInstanceError):
        page.total = 0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("day", "grain", "start", "end"),
    [
        (date(2025, 2, 5), "day", date(2025, 2, 5), date(2025, 2, 6)),
        (date(2025, 2, 5), "week", date(2025, 2, 3), date(2025, 2, 10)),
        (date(2024, 12, 19), "month", date(2024, 12, 1), date(2025, 1, 1)),
    ],
)
def test_bucket(day, grain, start, end):
    got = bucket(day, grain)
    assert (got[0].date(), got[1].date()) == (start, end)


@pytest.mark.parametrize("grain", ["day", "week", "month"])
@pytest.mark.parametrize("filters", FILTERS)
def test_resolved_per_period_matches_pandas(sample_wh, tickets, grain, filters):
    got = resolved_per_period(sample_wh, filters, grain)
    t = _match(tickets[tickets["status"] == "closed"].dropna(subset=["resolved_at"]),
               filters, column="resolved_at")
    freq = {"day": "D", "week": "W", "month": "M"}[grain]
    periods = t["resolved_at"].dt.to_period(freq).dt.start_time.dt.date
    want = periods.value_counts().sort_index()
    assert list(got.columns) == ["period", "resolved_count"]
    assert got["period"].tolist() == want.index.tolist()
    assert got["resolved_count"].tolist() == want.tolist()
    assert got["resolved_count"].sum() > 0
