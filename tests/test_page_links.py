"""A shared link (URL query parameters) reopens every filtered page with the same figures."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import cs_metrics
from cs_metrics import Filters, Warehouse, get_metric, query
from cs_metrics.analysis.leaderboard import leaderboard
from simulations import generator
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("fresh_caches")


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("links")
    generator.generate(tmp / "sample", tickets=4000, days=90, seed=9, end=datetime(2025, 3, 1))
    cs_metrics.ingest(tmp / "sample", db=tmp / "wh.duckdb")
    return tmp / "wh.duckdb"


def run(monkeypatch, db: Path, page: str, **params: str) -> AppTest:
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    at = AppTest.from_file(str(REPO / "views" / page), default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def library(db: Path, fn, filters: Filters):
    wh = Warehouse(db)  # read-write, like the app process
    try:
        return fn(wh, filters)
    finally:
        wh.close()


def card(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


@pytest.mark.parametrize("channel", ["chat", "email"])
def test_feedback_page_link(monkeypatch, db, channel):
    at = run(monkeypatch, db, "feedback.py", range="all-time", channel=channel)
    assert [m.value for m in at.sidebar.multiselect if m.label == "Channel"] == [[channel]]
    filters = Filters.build(channel=channel)
    csat = library(db, lambda wh, f: query(wh, ["csat_pct"], filters=f), filters)
    assert card(at, "CSAT") == get_metric("csat_pct").display(csat["csat_pct"].iloc[0])
    everyone = library(db, lambda wh, f: query(wh, ["csat_pct"], filters=f), Filters())
    assert csat["csat_pct"].iloc[0] != everyone["csat_pct"].iloc[0]  # the filter matters


def test_representatives_page_link(monkeypatch, db):
    at = run(monkeypatch, db, "representatives.py", range="all-time", channel="phone",
             priority="high")
    filters = Filters.build(channel="phone", priority="high")
    want = library(db, lambda wh, f: leaderboard(wh, f, "rep"), filters)
    shown = at.dataframe[0].value
    assert sorted(shown["ticket_count"].tolist()) == sorted(want["ticket_count"].tolist())
    total = library(db, lambda wh, f: query(wh, ["ticket_count"], ["rep_id"], filters=f),
                    filters)
    assert shown["ticket_count"].sum() == total.dropna(subset=["rep_id"])["ticket_count"].sum()


def test_overview_link(monkeypatch, db):
    at = run(monkeypatch, db, "overview.py", range="all-time", customer_segment="M")
    filters = Filters.build(customer_segment="M")
    n = library(db, lambda wh, f: query(wh, ["ticket_count"], filters=f), filters)
    assert card(at, "Tickets") == get_metric("ticket_count").display(n["ticket_count"].iloc[0])
