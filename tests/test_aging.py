"""Ticket aging and SLA status (cs_metrics.analysis.aging) against pandas; the Aging & SLA page."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import cs_metrics
from cs_metrics import Filters, Warehouse
from cs_metrics.analysis.aging import (
    AGE_BANDS,
    AT_RISK_SHARE,
    age_bands,
    breach_trend,
    oldest_unresolved,
    sla_status,
    sla_tickets,
    unresolved_now,
)
from tests.conftest import REPO, ticket, write_csv

PAGE = str(REPO / "views" / "aging.py")
BAND_LABELS = [label for label, _, _ in AGE_BANDS]


def _tickets(wh: Warehouse) -> pd.DataFrame:
    return wh.df("select * from tickets where not is_test")


def _band(age_days: float) -> str:
    for label, lo, hi in AGE_BANDS:
        if age_days >= lo and (hi is None or age_days < hi):
            return label
    return BAND_LABELS[0]  # created after the as-of moment: not possible in loaded data


def _expected_bands(df: pd.DataFrame, as_of, group: pd.Series) -> pd.DataFrame:
    open_ = df[df["status"].isin(["open", "in_progress"])].copy()
    age = (pd.Timestamp(as_of) - pd.to_datetime(open_["created_at"])).dt.total_seconds() / 86400
    open_["band"] = age.map(_band)
    open_["group"] = group.loc[open_.index]
    out = open_.groupby(["group", "band"]).size().rename("tickets").reset_index()
    out["band_order"] = out["band"].map(BAND_LABELS.index)
    return out.sort_values(["group", "band_order"], ignore_index=True)


@pytest.mark.parametrize("split", ["status", "priority", "team", "rep"])
def test_age_bands_match_pandas(sample_wh, split):
    df = _tickets(sample_wh)
    group = {
        "status": df["status"],
        "priority": df["priority"].fillna("normal"),
        "team": df["team"].fillna("(no team)"),
        "rep": df["rep_name"].fillna(df["rep_id"]).fillna("(unassigned)"),
    }[split]
    want = _expected_bands(df, sample_wh.as_of(), group)
    got = age_bands(sample_wh, Filters(), split)
    assert int(got["tickets"].sum()) == int(df["status"].isin(["open", "in_progress"]).sum())
    pd.testing.assert_frame_equal(got[["group", "band", "band_order", "tickets"]],
                                  want[["group", "band", "band_order", "tickets"]],
                                  check_dtype=False)


def test_age_bands_ignore_the_date_range_but_apply_dimensions(sample_wh):
    df = _tickets(sample_wh)
    channel = df["channel"].value_counts().index[0]
    end = sample_wh.as_of().date() + timedelta(days=1)
    narrow = Filters.build(end - timedelta(days=3), end, channel=[channel])
    got = age_bands(sample_wh, narrow, "status")
    sub = df[df["channel"] == channel]
    want = _expected_bands(sub, sample_wh.as_of(), sub["status"])
    pd.testing.assert_frame_equal(got, want[got.columns.tolist()], check_dtype=False)
    # older tickets than the range are counted: the range does not apply to a stock
    assert "Over 30 days" in set(got["band"])


def test_unresolved_now_matches_pandas(sample_wh):
    """Overview's unresolved-now cards: open, in progress and over 30 days old, counted in
    pandas; the date range does not apply, the dimensions do."""
    df = _tickets(sample_wh)
    channel = df["channel"].value_counts().index[0]
    end = sample_wh.as_of().date() + timedelta(days=1)
    for filters, sub in ((None, df),
                         (Filters.build(end - timedelta(days=3), end, channel=[channel]),
                          df[df["channel"] == channel])):
        got = unresolved_now(sample_wh, filters)
        age = (pd.Timestamp(sample_wh.as_of())
               - pd.to_datetime(sub["created_at"])).dt.total_seconds() / 86400
        unresolved = sub["status"].isin(["open", "in_progress"])
        assert got.open == int((sub["status"] == "open").sum())
        assert got.in_progress == int((sub["status"] == "in_progress").sum())
        assert got.total == int(unresolved.sum()) > 0
        assert got.old == int((unresolved & (age >= AGE_BANDS[-1][1])).sum())


def test_oldest_unresolved(sample_wh):
    df = _tickets(sample_wh)
    open_ = df[df["status"].isin(["open", "in_progress"])].sort_values(
        ["created_at", "ticket_id"])
    got = oldest_unresolved(sample_wh, Filters(), 5)
    assert got["ticket_id"].tolist() == open_["ticket_id"].head(5).tolist()
    want_age = ((pd.Timestamp(sample_wh.as_of()) - open_["created_at"].head(5))
                .dt.total_seconds() / 86400).to_numpy()
    np.testing.assert_allclose(got["age_days"].to_numpy(), want_age, rtol=1e-9)
    # local creation times in the filters' zone
    berlin = oldest_unresolved(sample_wh, Filters(tz="Europe/Berlin"), 5)
    shifted = (pd.to_datetime(got["created_at"]).dt.tz_localize("UTC")
               .dt.tz_convert("Europe/Berlin").dt.tz_localize(None))
    assert berlin["created_at"].tolist() == shifted.tolist()


def test_age_band_boundaries(tmp_path):
    """A ticket exactly one day (three, seven, thirty days) old is in 1–3 days (3–7, 7–30,
    over 30 days): lower bounds are inclusive. Closed and test tickets are not unresolved."""
    src = tmp_path / "src"
    write_csv(src, "tickets", [
        ticket("NOW", "2024-01-11 00:00:00", "open"),
        ticket("ONE", "2024-01-10 00:00:00", "open"),
        ticket("JUST", "2024-01-10 00:00:01", "in_progress"),
        ticket("THREE", "2024-01-08 00:00:00", "in_progress"),
        ticket("WEEK", "2024-01-04 00:00:00", "open"),
        ticket("THIRTY", "2023-12-12 00:00:00", "open"),
        ticket("OLDER", "2023-12-11 23:59:59", "open"),
        ticket("DONE", "2023-12-01 00:00:00", "closed", resolved_at="2023-12-02 00:00:00"),
        ticket("TEST", "2023-12-01 00:00:00", "open", is_test=True),
    ])
    cs_metrics.ingest(src, db=tmp_path / "wh.duckdb")
    wh = Warehouse(tmp_path / "wh.duckdb", read_only=True)
    try:
        assert str(wh.as_of()) == "2024-01-11 00:00:00"
        got = age_bands(wh, Filters(), "status").groupby("band")["tickets"].sum().to_dict()
        assert got == {"Under 1 day": 2, "1–3 days": 1, "3–7 days": 1, "7–30 days": 1,
                       "Over 30 days": 2}
        oldest = oldest_unresolved(wh, Filters(), 2)
        assert oldest["ticket_id"].tolist() == ["OLDER", "THIRTY"]
        assert oldest["age_days"].iloc[1] == pytest.approx(30.0)
    finally:
        wh.close()


# --- SLA ---------------------------------------------------------------------------------------


def _expected_states(wh: Warehouse, filters: Filters) -> pd.DataFrame:
    df = _tickets(wh)
    start = pd.Timestamp(filters.date_from)
    end = pd.Timestamp(filters.date_to)
    df = df[(df["created_at"] >= start) & (df["created_at"] < end)]
    for dim, values in filters.where:
        df = df[df[dim].isin(values)]
    as_of = pd.Timestamp(wh.as_of())
    rows = []
    for kind, pending in (("first_response", df["first_response_at"].isna()),
                          ("resolution", df["status"] != "closed")):
        met = df[f"sla_{kind}_met"]
        deadline = pd.to_datetime(df[f"sla_{kind}_deadline"])
        keep = met.notna() | deadline.notna()
        elapsed = as_of - df["created_at"]
        span = deadline - df["created_at"]
        risky = (pending & deadline.notna() & (elapsed >= span * AT_RISK_SHARE)).to_numpy(bool)
        state = np.select([met.eq(True).fillna(False).to_numpy(bool),
                           met.eq(False).fillna(False).to_numpy(bool), risky],
                          ["met", "breached", "at_risk"], "on_track")
        part = pd.DataFrame({"ticket_id": df["ticket_id"], "target": kind,
                             "policy": df["sla_policy"].fillna("(no policy)"),
                             "state": state, "created_at": df["created_at"]})[keep]
        rows.append(part)
    return pd.concat(rows, ignore_index=True)


def _range(wh: Warehouse, days: int = 60) -> tuple[date, date]:
    end = wh.as_of().date() + timedelta(days=1)
    return end - timedelta(days=days), end


@pytest.mark.parametrize("dims", [{}, {"priority": ["high", "urgent"]}])
def test_sla_status_matches_pandas(sample_wh, dims):
    start, end = _range(sample_wh)
    filters = Filters.build(start, end, **dims)
    states = _expected_states(sample_wh, filters)
    want = (states.assign(n=1).pivot_table(index=["policy", "target"], columns="state",
                                           values="n", aggfunc="sum", fill_value=0)
            .reindex(columns=["met", "breached", "at_risk", "on_track"], fill_value=0))
    got = sla_status(sample_wh, filters).set_index(["policy", "target"])
    assert set(got.index) == set(want.index)
    for col in ("met", "breached", "at_risk", "on_track"):
        assert got[col].to_dict() == want[col].astype("int64").to_dict(), col
    assert (got["tickets"] == got[["met", "breached", "at_risk", "on_track"]].sum(axis=1)).all()
    # the breach rate is the registry's SLA % seen from the other side
    judged = got["met"] + got["breached"]
    np.testing.assert_allclose(got["breached_pct"], 100 * got["breached"] / judged)
    registry = cs_metrics.query(sample_wh, ["sla_first_response_pct"], [], None, filters)
    fr = got.xs("first_response", level="target")
    assert 100 * fr["breached"].sum() / (fr["met"] + fr["breached"]).sum() == pytest.approx(
        100 - registry["sla_first_response_pct"].iloc[0])
    assert got["at_risk"].sum() > 0 or dims  # the sample has tickets close to a deadline


def test_sla_tickets_lists_breached_and_at_risk(sample_wh):
    start, end = _range(sample_wh, 14)
    filters = Filters(start, end)
    states = _expected_states(sample_wh, filters)
    want = states[states["state"].isin(["breached", "at_risk"])]
    got = sla_tickets(sample_wh, filters)
    assert len(want) <= 1000  # the window keeps the list under the cap
    assert sorted(zip(got["ticket_id"], got["target"], got["state"], strict=True)) == sorted(
        zip(want["ticket_id"], want["target"], want["state"], strict=True))
    # at risk first
    risky = (got["state"] == "at_risk").tolist()
    assert risky == sorted(risky, reverse=True)
    only_risk = sla_tickets(sample_wh, filters, states=("at_risk",))
    assert set(only_risk["state"]) <= {"at_risk"}
    assert len(only_risk) == int((want["state"] == "at_risk").sum())


@pytest.mark.parametrize("tz", ["UTC", "America/Los_Angeles"])
def test_breach_trend_by_local_week(sample_wh, tz):
    start, end = _range(sample_wh)
    filters = Filters(start, end, tz=tz)
    df = _expected_local(sample_wh, filters)
    local = df["created_at"].dt.tz_localize("UTC").dt.tz_convert(tz).dt.tz_localize(None)
    df = df.assign(week=(local.dt.normalize()
                         - pd.to_timedelta(local.dt.day_of_week, unit="D")))
    judged = df[df["state"].isin(["met", "breached"])]
    want = judged.groupby(["week", "target"]).agg(
        judged=("state", "size"), breached=("state", lambda s: int((s == "breached").sum()))
    ).reset_index()
    got = breach_trend(sample_wh, filters)
    got["week"] = pd.to_datetime(got["week"])
    want["week"] = want["week"].astype(got["week"].dtype)
    assert (got["week"].dt.day_of_week == 0).all()
    merged = got.merge(want, on=["week", "target"], suffixes=("", "_want"))
    assert len(merged) == len(got) == len(want)
    assert (merged["judged"] == merged["judged_want"]).all()
    assert (merged["breached"] == merged["breached_want"]).all()
    np.testing.assert_allclose(merged["breached_pct"],
                               100 * merged["breached_want"] / merged["judged_want"])


def _expected_local(wh: Warehouse, filters: Filters) -> pd.DataFrame:
    """The states of the tickets created in the filters' local days."""
    from cs_metrics.core.zones import utc_moment

    wide = Filters(filters.date_from - timedelta(days=2), filters.date_to + timedelta(days=2))
    states = _expected_states(wh, wide)
    lo, hi = (utc_moment(filters.date_from, filters.tz), utc_moment(filters.date_to, filters.tz))
    return states[(states["created_at"] >= lo) & (states["created_at"] < hi)]


# --- the page ----------------------------------------------------------------------------------


@pytest.fixture
def page_db(sample_db, fresh_caches) -> Path:
    return sample_db


def test_page_shows_the_library_figures(page_db, monkeypatch):
    monkeypatch.setenv("CS_METRICS_DB", str(page_db))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value == "Aging & SLA"
    wh = Warehouse(page_db)
    try:
        bands = age_bands(wh, Filters(), "status")
        end = wh.as_of().date() + timedelta(days=1)
        filters = Filters(end - timedelta(days=90), end)
        status = sla_status(wh, filters)
        oldest = oldest_unresolved(wh, filters, 20)
    finally:
        wh.close()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Unresolved tickets"] == f"{int(bands['tickets'].sum()):,}"
    for label in BAND_LABELS:
        n = int(bands.loc[bands["band"] == label, "tickets"].sum())
        assert metrics[label] == f"{n:,}"
    assert any("date range does not apply" in c.value for c in at.caption)
    # in page order: age table, oldest tickets, SLA by policy, breached and at-risk tickets
    tables = dict(zip(("aging_table", "aging_oldest", "sla_table", "sla_tickets"),
                      (d.value for d in at.dataframe), strict=True))
    shown = tables["sla_table"].reset_index(drop=True)
    assert shown["breached"].tolist() == status["breached"].tolist()
    assert shown["at_risk"].tolist() == status["at_risk"].tolist()
    assert tables["aging_oldest"]["ticket_id"].tolist() == oldest["ticket_id"].tolist()
    # another split redraws the table by that dimension
    at.selectbox(key="aging_split").set_value("priority").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert int(table["Total"].sum()) == int(bands["tickets"].sum())
