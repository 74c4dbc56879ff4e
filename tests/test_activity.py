"""Agent activity from the status history: every figure against an independent pandas walk of
the events (tests/reference.py), empty without events, kept right by live loads, and shown on
the Representatives page as the library computes it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import cs_metrics
from cs_metrics import Filters, Warehouse
from cs_metrics.analysis.activity import (
    ACTIVITY_METRICS,
    EVENT_METRICS,
    activity,
    has_status_history,
)
from cs_metrics.core.settings import load_settings
from cs_metrics.metrics.registry import query
from tests import reference
from tests.conftest import REPO

PAGE = str(REPO / "views" / "representatives.py")
TIMEOUT = 60
TABLES = ("tickets", "representatives", "customers", "feedback")


def _copy(sample_dir: Path, out: Path, tables: tuple[str, ...] = TABLES) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for name in tables:
        shutil.copy(sample_dir / f"{name}.parquet", out / f"{name}.parquet")
    return out


def _varied_events(sample_dir: Path) -> pd.DataFrame:
    """The generated history with what the generator does not write: more reassignments (a
    later event by another representative, sometimes back again), a representative named on an
    open event, closed tickets without events, a history that does not end closed, and
    events at the same moment."""
    e = pd.read_parquet(sample_dir / "ticket_events.parquet")
    reps = sorted(e["rep_id"].dropna().unique())
    rng = np.random.default_rng(7)
    ids = e["ticket_id"].unique()
    moved = set(rng.choice(ids, size=len(ids) // 8, replace=False))
    closing = (e["status"] == "closed") & e["ticket_id"].isin(moved)
    e.loc[closing, "rep_id"] = [reps[(reps.index(r) + 1) % len(reps)] if pd.notna(r) else reps[0]
                                for r in e.loc[closing, "rep_id"]]
    back = set(rng.choice(sorted(moved), size=len(moved) // 4, replace=False))
    # an extra in-progress event by the first representative again, at the close's moment
    extra = e[closing & e["ticket_id"].isin(back)].copy()
    extra["status"] = "in_progress"
    extra["rep_id"] = reps[0]
    named_open = (e["status"] == "open") & e["ticket_id"].isin(set(ids[::17]))
    e.loc[named_open, "rep_id"] = reps[1]
    dropped = set(ids[::23])  # closed tickets without a history: missing, not zero
    unfinished = set(ids[5::29])  # a closed ticket whose last event is not closed
    e = e[~e["ticket_id"].isin(dropped)]
    last = e.groupby("ticket_id")["event_at"].transform("max")
    e = e[~(e["ticket_id"].isin(unfinished) & (e["event_at"] == last)
            & (e["status"] == "closed"))]
    return pd.concat([e, extra], ignore_index=True)


@pytest.fixture(scope="module")
def varied_dir(sample_dir, tmp_path_factory) -> Path:
    out = _copy(sample_dir, tmp_path_factory.mktemp("activity") / "data")
    _varied_events(sample_dir).to_parquet(out / "ticket_events.parquet", index=False)
    return out


@pytest.fixture(scope="module")
def varied_db(varied_dir, tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("activity_db") / "wh.duckdb"
    cs_metrics.ingest(varied_dir, db=db)
    return db


@pytest.fixture(scope="module")
def prepared(varied_dir):
    return reference.prepare(varied_dir, load_settings())


def _assert_same(got: pd.DataFrame, want: pd.DataFrame, keys: list[str]) -> None:
    got = got.reset_index(drop=True)
    want = want.sort_values(keys, na_position="last", kind="stable").reset_index(drop=True) \
        if keys else want
    assert len(got) == len(want)
    for k in keys:
        g, w = got[k].astype(object), want[k].astype(object)
        if k == "period":
            g, w = pd.to_datetime(g), pd.to_datetime(w)
        assert g.where(g.notna(), None).tolist() == w.where(w.notna(), None).tolist(), k
    for name in EVENT_METRICS:
        g, w = got[name].to_numpy(dtype=float), want[name].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(g), np.isnan(w)), name
        np.testing.assert_allclose(g[~np.isnan(g)], w[~np.isnan(w)], rtol=1e-9, atol=1e-9,
                                   err_msg=name)


@pytest.mark.parametrize("by, grain", [(["rep_id"], None), (["team"], None), ([], "week"),
                                       (["team"], "week")])
def test_activity_matches_pandas(varied_db, prepared, by, grain):
    tickets, feedback = prepared
    wh = Warehouse(varied_db, read_only=True)
    try:
        got = query(wh, list(EVENT_METRICS), by, grain)
    finally:
        wh.close()
    want = reference.compute(tickets, feedback, list(EVENT_METRICS), by, grain)
    _assert_same(got, want, by + (["period"] if grain else []))
    # the data exercise every figure: none is constant or empty everywhere
    closed = tickets[(tickets["status"] == "closed") & ~tickets["is_test"]]
    assert closed["ev_n"].isna().any() and closed["ev_n"].notna().any()
    assert (closed["ev_reassignments"] > 1).any()
    assert closed["ev_ended_closed"].eq(False).any()
    for name in EVENT_METRICS:
        assert got[name].notna().any(), name
    assert 0 < got["reassignments_per_ticket"].max()
    one_touch = got["one_touch_pct"].dropna()
    assert ((one_touch > 0) & (one_touch < 100)).any()


def test_activity_per_representative_and_team(varied_db, prepared):
    tickets, _ = prepared
    wh = Warehouse(varied_db, read_only=True)
    try:
        reps = activity(wh, Filters(), "rep")
        teams = activity(wh, Filters(), "team")
        assert has_status_history(wh)
    finally:
        wh.close()
    assert list(reps.columns) == ["rep_id", "rep_name", "team", "manager", *ACTIVITY_METRICS]
    assert list(teams.columns) == ["team", *ACTIVITY_METRICS]
    t = tickets[~tickets["is_test"]]
    rep = reps.iloc[0]  # the busiest representative
    mine = t[t["rep_id"] == rep["rep_id"]]
    assert rep["ticket_count"] == len(mine)
    for name in EVENT_METRICS:
        assert rep[name] == pytest.approx(reference.activity_metric(name, mine), rel=1e-9)
    team = teams.iloc[0]
    theirs = t[t["team"] == team["team"]]
    assert team["touches_per_ticket"] == pytest.approx(
        reference.activity_metric("touches_per_ticket", theirs), rel=1e-9)


def test_event_walk_by_hand():
    """The definitions on a history small enough to follow."""
    e = pd.DataFrame({
        "ticket_id": ["A"] * 7 + ["B"] * 3,
        "event_at": pd.to_datetime([
            "2025-01-01 08:00", "2025-01-01 09:00", "2025-01-01 12:00", "2025-01-02 08:00",
            "2025-01-02 10:00", "2025-01-02 10:00", "2025-01-02 11:30",
            "2025-01-01 08:00", "2025-01-01 08:30", "2025-01-01 09:30"]),
        "status": ["open", "in_progress", "closed", "open", "closed", "in_progress", "closed",
                   "open", "in_progress", "closed"],
        "rep_id": [None, "R1", "R1", None, "R2", "R1", "R2", None, "R3", "R3"],
    })
    got = reference.event_activity(e)
    a, b = got.loc["A"], got.loc["B"]
    # A: ties at 10:00 sort in progress before closed; R1, R1, R1, R2, R2 -> one change
    assert a["ev_n"] == 7 and a["ev_reassignments"] == 1 and a["ev_reopens"] == 1
    assert a["ev_open_h"] == pytest.approx(1 + 2)  # 08-09 and 08-10 next day
    assert a["ev_in_progress_h"] == pytest.approx(3 + 0)
    assert b["ev_reassignments"] == 0 and b["ev_reopens"] == 0 and b["ev_in_progress_n"] == 1
    assert b["ev_open_h"] == pytest.approx(0.5) and b["ev_in_progress_h"] == pytest.approx(1)


def test_without_ticket_events_every_activity_figure_is_empty(sample_dir, tmp_path):
    folder = _copy(sample_dir, tmp_path / "data")
    db = tmp_path / "wh.duckdb"
    cs_metrics.ingest(folder, db=db)
    wh = Warehouse(db, read_only=True)
    try:
        assert not has_status_history(wh)
        got = query(wh, ["ticket_count", *EVENT_METRICS], ["team"])
        reps = activity(wh, Filters(), "rep")
    finally:
        wh.close()
    for name in EVENT_METRICS:
        assert got[name].isna().all(), name
        assert reps[name].isna().all(), name
    tickets = pd.read_parquet(folder / "tickets.parquet")
    assert got["ticket_count"].sum() == (~tickets["is_test"]).sum()
    assert reps["reopen_pct"].notna().any()  # from the tickets' counter: still there


def test_live_load_of_events_updates_the_figures(sample_dir, tmp_path):
    """Events held back from the first load arrive in small live batches (events alone, then
    tickets with their events): the stored figures move to what a full load of everything
    gives, and to the pandas walk of all the events."""
    events = pd.read_parquet(sample_dir / "ticket_events.parquet")
    tickets = pd.read_parquet(sample_dir / "tickets.parquet")
    closed = tickets.loc[tickets["status"] == "closed", "ticket_id"]
    late_a = set(closed.iloc[100:140])  # their close events come in the first batch
    late_b = set(closed.iloc[300:320])  # whole tickets come in the second batch
    first = _copy(sample_dir, tmp_path / "first", ("representatives", "customers"))
    tickets[~tickets["ticket_id"].isin(late_b)].to_parquet(first / "tickets.parquet",
                                                           index=False)
    held_a = events["ticket_id"].isin(late_a) & (events["status"] == "closed")
    held_b = events["ticket_id"].isin(late_b)
    events[~held_a & ~held_b].to_parquet(first / "ticket_events.parquet", index=False)
    # a batch always carries tickets; the first one only a few of those whose events it
    # brings, so the others are derived again for their events alone
    batch_a = tmp_path / "batch_a"
    batch_a.mkdir()
    few = sorted(late_a)[:5]
    tickets[tickets["ticket_id"].isin(few)].to_parquet(batch_a / "tickets.parquet", index=False)
    events[held_a].to_parquet(batch_a / "ticket_events.parquet", index=False)
    batch_b = tmp_path / "batch_b"
    batch_b.mkdir()
    tickets[tickets["ticket_id"].isin(late_b)].to_parquet(batch_b / "tickets.parquet",
                                                          index=False)
    events[held_b].to_parquet(batch_b / "ticket_events.parquet", index=False)
    full = _copy(sample_dir, tmp_path / "full", ("tickets", "representatives", "customers",
                                                 "ticket_events"))
    db, full_db = tmp_path / "wh.duckdb", tmp_path / "full.duckdb"
    cs_metrics.ingest(first, db=db)
    cs_metrics.ingest(full, db=full_db)

    def figures(path: Path) -> pd.DataFrame:
        wh = Warehouse(path, read_only=True)
        try:
            return query(wh, ["ticket_count", *EVENT_METRICS], ["rep_id"])
        finally:
            wh.close()

    before = figures(db)
    wh = Warehouse(db)
    try:
        cs_metrics.ingest(batch_a, warehouse=wh)
        stored = wh.df("select ev_n, ev_open_h from tickets where ticket_id = ?",
                       [sorted(late_a)[-1]])
        cs_metrics.ingest(batch_b, warehouse=wh)
        assert wh.meta("derived_at")
    finally:
        wh.close()
    assert stored["ev_open_h"].notna().all()  # its history now ends closed
    after, want_full = figures(db), figures(full_db)
    pd.testing.assert_frame_equal(after, want_full)
    assert not after[EVENT_METRICS[0]].equals(before[EVENT_METRICS[0]])
    prepared, _ = reference.prepare(full, load_settings())
    want = reference.compute(prepared, None, list(EVENT_METRICS), ["rep_id"], None)
    _assert_same(after, want, ["rep_id"])


# --- the page -----------------------------------------------------------------------------


def _activity_tables(at: AppTest) -> dict:
    """The page's activity tables by level: those with the activity figures."""
    out = {}
    for d in at.dataframe:
        cols = list(d.value.columns)
        if "touches_per_ticket" in cols:
            out["rep" if "rep_id" in cols else "team"] = d
    return out


@pytest.mark.usefixtures("fresh_caches")
def test_page_shows_the_library_activity(varied_db, tmp_path, monkeypatch):
    from tests.test_page_representatives import default_filters

    db = tmp_path / "wh.duckdb"  # the app opens its warehouse read-write: its own copy
    shutil.copy(varied_db, db)
    wh = Warehouse(db)
    try:
        filters = default_filters(wh)
        want_reps = activity(wh, filters, "rep")
        want_teams = activity(wh, filters, "team")
    finally:
        wh.close()
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert "Agent activity" in [h.value for h in at.subheader]
    tables = _activity_tables(at)
    shown = tables["rep"].value.reset_index(drop=True)
    pd.testing.assert_frame_equal(shown, want_reps, check_dtype=False)
    pd.testing.assert_frame_equal(tables["team"].value.reset_index(drop=True),
                                  want_teams, check_dtype=False)
    # one representative's figures, as a lead reads the row
    rep = want_reps.iloc[0]
    row = shown[shown["rep_id"] == rep["rep_id"]].iloc[0]
    assert row["one_touch_pct"] == pytest.approx(rep["one_touch_pct"])
    assert row["median_open_h"] == pytest.approx(rep["median_open_h"])
    # labels with units, never the column names
    config = json.loads(tables["rep"].proto.columns)
    assert config["median_open_h"]["label"] == "Open med. (h)"
    assert config["one_touch_pct"]["label"] == "One-touch (%)"
    assert tables["rep"].proto.placeholder == "–"


@pytest.mark.usefixtures("fresh_caches")
def test_page_without_history_shows_activity_empty(sample_dir, tmp_path, monkeypatch):
    folder = _copy(sample_dir, tmp_path / "data")
    db = tmp_path / "wh.duckdb"
    cs_metrics.ingest(folder, db=db)
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert any(c.value.startswith("This dataset has no status history") for c in at.caption)
    shown = _activity_tables(at)["rep"].value
    assert len(shown) > 0
    for name in EVENT_METRICS:
        assert shown[name].isna().all(), name  # shown as "–" (the table's placeholder)
    assert (shown["ticket_count"] > 0).all()


def test_a_warehouse_derived_before_the_activity_columns_shows_them_empty(varied_db,
                                                                          tmp_path):
    """Until a load derives the stored sums again, the figures are empty, not an error."""
    db = tmp_path / "old.duckdb"
    shutil.copy(varied_db, db)
    wh = Warehouse(db)
    try:
        wh.connection().execute("alter table tickets drop column ev_n")
        got = query(wh, ["ticket_count", *EVENT_METRICS], ["team"])
        assert not has_status_history(wh)
    finally:
        wh.close()
    for name in EVENT_METRICS:
        assert got[name].isna().all(), name
    assert got["ticket_count"].sum() > 0


def test_the_generators_handovers_are_counted(sample_dir, sample_wh):
    """The sample hands a share of its tickets over once (truth.json says how many): each is
    one reassignment, and never a one-touch ticket."""
    truth = json.loads((sample_dir / "truth.json").read_text(encoding="utf-8"))
    handed = truth["handed_over_tickets"]
    assert handed > 0
    got = sample_wh.df("select count(*) filter (where ev_reassignments = 1) as one, "
                       "count(*) filter (where ev_reassignments > 1) as more "
                       "from tickets").iloc[0]
    assert (got["one"], got["more"]) == (handed, 0)
    # about HANDOVER_SHARE of the closed tickets (the figures' match with pandas is tested
    # above on a history with more kinds of change)
    row = query(sample_wh, ["reassignments_per_ticket", "one_touch_pct"]).iloc[0]
    assert 0.04 < row["reassignments_per_ticket"] < 0.1
    assert 0 < row["one_touch_pct"] < 100
