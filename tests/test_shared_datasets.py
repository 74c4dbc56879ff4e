"""The committed mappings ingest the real exports in ../shared/datasets, quirks included.

Every expected figure is computed here with pandas straight from the raw file.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.loader import ingest
from cs_metrics.metrics.registry import query
from tests.conftest import REPO, SHARED

MAPPINGS = REPO / "data" / "mappings"


def _need(folder: str):
    path = SHARED / folder
    if not path.is_dir():
        pytest.skip(f"{path} is absent: the shared datasets are only in the full workspace")
    return path


def _load(tmp_path, folder: str, mapping: str):
    src = _need(folder)
    db = tmp_path / f"{folder}.duckdb"
    report = ingest(src, mapping=MAPPINGS / mapping, db=db, rejects_csv=tmp_path / "rj.csv")
    return report, Warehouse(db, read_only=True)


def test_customer_support_tickets(tmp_path):
    report, wh = _load(tmp_path, "customer_support_tickets", "customer_support_tickets.toml")
    raw = pd.read_csv(SHARED / "customer_support_tickets" / "customer_support_tickets.csv")
    assert len(raw) == 8469  # multi-line descriptions parsed as records, not lines
    assert report.table("tickets").loaded == len(raw)
    assert report.table("tickets").rejected == ()
    fr = pd.to_datetime(raw["First Response Time"])
    res = pd.to_datetime(raw["Time to Resolution"])
    # the quirk: resolution stamped before the first response; kept and counted
    quirk = int((res < fr).sum())
    assert quirk == 1365
    assert dict(report.table("tickets").warnings) == {"resolved_before_first_response": quirk}

    created = pd.to_datetime(raw["Date of Purchase"])
    status = raw["Ticket Status"].map(
        {"Open": "open", "Pending Customer Response": "in_progress", "Closed": "closed"})
    got = query(wh, ["ticket_count", "open_count", "in_progress_count", "closed_count",
                     "avg_first_response_min", "avg_resolution_h", "median_resolution_h",
                     "csat_avg", "csat_pct", "response_rate_pct"])
    row = got.iloc[0]
    assert (row.open_count, row.in_progress_count, row.closed_count) == (
        (status == "open").sum(), (status == "in_progress").sum(), (status == "closed").sum())
    assert row.avg_first_response_min == pytest.approx(
        ((fr - created).dt.total_seconds() / 60).mean())
    closed = status == "closed"
    hours = (res - created).dt.total_seconds()[closed] / 3600
    assert row.avg_resolution_h == pytest.approx(hours.mean())
    assert row.median_resolution_h == pytest.approx(np.quantile(hours, 0.5))
    csat = raw["Customer Satisfaction Rating"].dropna()
    assert row.csat_avg == pytest.approx(csat.mean())
    assert row.csat_pct == pytest.approx(100 * (csat >= 4).mean())
    assert row.response_rate_pct == pytest.approx(100 * len(csat) / closed.sum())

    by_priority = query(wh, ["ticket_count"], ["priority"]).set_index("priority")["ticket_count"]
    want = raw["Ticket Priority"].map(
        {"Low": "low", "Medium": "normal", "High": "high", "Critical": "urgent"}).value_counts()
    assert by_priority.to_dict() == want.to_dict()

    # customers keyed by e-mail: the same address under two names is a conflict, rejected
    people = raw[["Customer Email", "Customer Name"]].drop_duplicates()
    conflicts = int(people["Customer Email"].duplicated().sum())
    assert dict(report.table("customers").rejected) == {"duplicate_key": conflicts}


def test_la311_sample(tmp_path):
    report, wh = _load(tmp_path, "la311_2017_sample", "la311_2017.toml")
    raw = pd.read_csv(SHARED / "la311_2017_sample" / "MyLA311_Service_Request_Data_2017_Subset.csv",
                      dtype=str)
    fmt = "%m/%d/%Y %I:%M:%S %p"
    # local Los Angeles time: durations across a daylight-saving change differ by an hour
    created = pd.to_datetime(raw["CreatedDate"], format=fmt).dt.tz_localize(
        "America/Los_Angeles", ambiguous="NaT", nonexistent="NaT")
    closed_at = pd.to_datetime(raw["ClosedDate"], format=fmt).dt.tz_localize(
        "America/Los_Angeles", ambiguous="NaT", nonexistent="NaT")
    is_closed = raw["Status"] != "Open"
    bad = is_closed & (closed_at < created)
    assert int(bad.sum()) == 12
    t = report.table("tickets")
    assert dict(t.rejected) == {"resolved_before_created": 12}
    assert t.loaded == len(raw) - 12
    good = raw[~bad]
    # local Los Angeles time -> UTC
    first = wh.scalar("select created_at from tickets where ticket_id = '1-870704831'")
    assert str(first) == "2018-01-01 07:59:58"
    # missing coordinates load without a position
    got = wh.scalar("select count(location_lat) from tickets")
    assert got == int(good["Latitude"].notna().sum())
    assert wh.scalar("select count(*) from tickets where location_lat is null") == int(
        good["Latitude"].isna().sum())

    by_loc = query(wh, ["ticket_count", "avg_resolution_h", "open_count"], ["location"])
    hours = ((closed_at - created).dt.total_seconds() / 3600)[~bad]
    want = pd.DataFrame({"location": good["APC"], "h": hours.where(is_closed[~bad]),
                         "open": ~is_closed[~bad]})
    agg = want.groupby("location", dropna=False).agg(
        n=("h", "size"), h=("h", "mean"), open=("open", "sum")).reset_index()
    agg = agg.sort_values("location", na_position="last")
    assert by_loc["location"].tolist() == agg["location"].where(agg["location"].notna(), None) \
        .tolist()
    assert by_loc["ticket_count"].tolist() == agg["n"].tolist()
    assert by_loc["open_count"].tolist() == agg["open"].tolist()
    np.testing.assert_allclose(by_loc["avg_resolution_h"], agg["h"], rtol=1e-9)

    teams = query(wh, ["ticket_count"], ["team"])
    want_team = good.assign(team=good["Owner"].where(good["AssignTo"].notna())) \
        .groupby("team", dropna=False).size().reset_index(name="n")
    want_team = want_team.sort_values("team", na_position="last")
    assert teams["team"].isna().tolist() == want_team["team"].isna().tolist()
    assert teams["team"].dropna().tolist() == want_team["team"].dropna().tolist()
    assert teams["ticket_count"].tolist() == want_team["n"].tolist()


def test_call_center_log(tmp_path):
    report, wh = _load(tmp_path, "call_center_pwc", "call_center_pwc.toml")
    raw = pd.read_csv(SHARED / "call_center_pwc" / "Call-Center-Dataset.csv")
    assert report.table("tickets").loaded == len(raw) == 5000
    answered = raw["Answered (Y/N)"] == "Y"
    # zeros on unanswered calls mean "missing": they must not drag the averages down
    speed = raw.loc[answered, "Speed of answer in seconds"]
    talk = pd.to_timedelta(raw["AvgTalkDuration"]).dt.total_seconds()
    rating = raw["Satisfaction rating"].replace(0, np.nan).dropna()
    assert report.table("feedback").loaded == len(rating) == 4054
    assert report.table("feedback").skipped_empty == 946

    got = query(wh, ["ticket_count", "closed_count", "open_count", "avg_first_response_min",
                     "median_first_response_min", "aht_min", "csat_avg", "csat_pct",
                     "avg_resolution_h"]).iloc[0]
    assert got.closed_count == (raw["Resolved"] == "Y").sum()
    assert got.open_count == (raw["Resolved"] == "N").sum()
    assert got.avg_first_response_min == pytest.approx(speed.mean() / 60)
    assert got.median_first_response_min == pytest.approx(np.quantile(speed, 0.5) / 60)
    assert got.aht_min == pytest.approx(talk[answered].mean() / 60)
    assert got.csat_avg == pytest.approx(rating.mean())
    assert got.csat_pct == pytest.approx(100 * (rating >= 4).mean())
    resolved = raw["Resolved"] == "Y"
    res_h = (raw["Speed of answer in seconds"] + talk)[resolved] / 3600
    assert got.avg_resolution_h == pytest.approx(res_h.mean())

    by_rep = query(wh, ["ticket_count", "csat_avg"], ["rep_name"])
    raw["csat"] = raw["Satisfaction rating"].replace(0, np.nan)
    want = raw.groupby("Agent").agg(n=("Call Id", "size"), c=("csat", "mean")).reset_index()
    assert by_rep["rep_name"].tolist() == want["Agent"].tolist()
    assert by_rep["ticket_count"].tolist() == want["n"].tolist()
    np.testing.assert_allclose(by_rep["csat_avg"], want["c"], rtol=1e-9)
