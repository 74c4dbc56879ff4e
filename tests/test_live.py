"""The live panel's numbers on a handcrafted queue and against pandas on the sample."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from cs_metrics import CsMetricsError, Filters, Warehouse
from cs_metrics.ingestion.loader import ingest
from cs_metrics.metrics.live import AT_RISK_SHARE, at_risk_tickets, live_snapshot
from tests.conftest import ticket, write_csv

NOW = datetime(2025, 1, 10, 12, 0)


def _at(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture(scope="module")
def queue(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    rows = [
        # answered and closed right at "now": sets the as-of moment
        ticket("DONE", _at(20), "closed", first_response_at=_at(10), resolved_at=_at(0),
               priority="normal", channel="chat"),
        # urgent: first-response target 15 min
        ticket("U30", _at(30), "open", priority="urgent", channel="phone"),  # breached
        ticket("U13", _at(13), "open", priority="urgent", channel="phone"),  # at risk (0.87)
        ticket("U10", _at(10), "open", priority="urgent", channel="chat"),  # fine (0.67)
        # normal, segment L: standard policy, 240 min
        ticket("N240", _at(240), "in_progress", priority="normal", customer_segment="L",
               channel="email"),  # breached (exactly at target)
        ticket("N210", _at(210), "open", priority="normal", customer_segment="L",
               channel="email"),  # at risk (0.875)
        ticket("N180", _at(180), "open", priority="normal", customer_segment="L",
               channel="email"),  # fine (0.75)
        # answered, still open: not waiting
        ticket("ANS", _at(300), "in_progress", first_response_at=_at(290), priority="normal",
               customer_segment="L", channel="email"),
        # a week earlier, inside the same hour
        ticket("OLD", (NOW - timedelta(days=7, minutes=45)).strftime("%Y-%m-%d %H:%M:%S"),
               "closed", first_response_at=_at(7 * 24 * 60 + 40),
               resolved_at=_at(7 * 24 * 60 + 30), channel="chat"),
    ]
    write_csv(tmp / "src", "tickets", rows)
    ingest(tmp / "src", db=tmp / "wh.duckdb")
    wh = Warehouse(tmp / "wh.duckdb", read_only=True)
    yield wh
    wh.close()


def test_snapshot_of_a_known_queue(queue):
    snap = live_snapshot(queue)
    assert snap.now == NOW
    assert snap.arrivals == 4  # DONE, U30, U13, U10 within the last 60 minutes
    assert snap.arrivals_before == 1
    assert snap.open_now == 7
    assert snap.waiting == 6
    assert snap.oldest_unanswered_id == "N240"
    assert snap.oldest_unanswered_min == pytest.approx(240)
    assert snap.at_risk == 2  # U13 and N210
    assert snap.breached == 2  # U30 and N240
    assert snap.refreshed_at is not None


def test_dimension_filters_apply_and_the_date_range_does_not(queue):
    phone = live_snapshot(queue, Filters.build(NOW - timedelta(days=1), NOW,
                                               channel="phone"))
    assert (phone.arrivals, phone.waiting, phone.at_risk, phone.breached) == (2, 2, 1, 1)
    # a date range far in the past still shows today's queue
    old_range = live_snapshot(queue, Filters.build(datetime(2020, 1, 1), datetime(2020, 2, 1)))
    assert old_range.open_now == 7


def test_at_risk_list_most_urgent_first(queue):
    df = at_risk_tickets(queue)
    assert df["ticket_id"].tolist() == ["U30", "N240", "N210", "U13"]
    assert df["share_of_target"].tolist() == pytest.approx([2.0, 1.0, 0.875, 13 / 15])
    assert (df["share_of_target"] >= AT_RISK_SHARE).all()


def test_snapshot_matches_pandas_on_the_sample(sample_wh):
    t = sample_wh.df("select ticket_id, created_at, status, first_response_at, is_test, "
                     "sla_first_response_target_min from tickets")
    t = t[~t["is_test"]]
    now = sample_wh.as_of()
    snap = live_snapshot(sample_wh, minutes=180)
    assert snap.arrivals == int(((t["created_at"] > now - timedelta(minutes=180))
                                 & (t["created_at"] <= now)).sum())
    waiting = t[t["status"].isin(["open", "in_progress"]) & t["first_response_at"].isna()]
    age = (pd.Timestamp(now) - waiting["created_at"]).dt.total_seconds() / 60
    share = age / waiting["sla_first_response_target_min"]
    assert snap.waiting == len(waiting)
    assert snap.oldest_unanswered_min == pytest.approx(age.max())
    assert snap.at_risk == int(((share >= AT_RISK_SHARE) & (share < 1)).sum())
    assert snap.breached == int((share >= 1).sum())


def test_bad_window(queue):
    with pytest.raises(CsMetricsError, match="at least one minute"):
        live_snapshot(queue, minutes=0)
