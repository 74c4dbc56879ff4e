"""The live feed: batches load cleanly, statuses flow, ids stay apart, runs repeat, outages
surge inside their circle, batches appear whole, and a locked warehouse falls back to state."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.geo import haversine_km
from cs_metrics.core.schema import TABLES
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.loader import ingest
from simulations import feed
from simulations.feed import (
    EVENT_KINDS,
    STATE_FILE,
    FeedOutage,
    FeedSummary,
    parse_outage,
    run_feed,
)
from simulations.generator import generate

END = datetime(2025, 3, 1)
FEED_TABLES = ("tickets", "ticket_events", "feedback")
NAME = re.compile(r"^batch-(\d{8}T\d{12})-(\d{6})$")
FLOW = {("open", "in_progress"), ("in_progress", "closed"), ("closed", "open")}


class FakeClock:
    """A wall clock that moves only when the feed sleeps."""

    def __init__(self, start: datetime) -> None:
        self.t = start
        self.slept = 0.0

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.t += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def pristine_db(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("feed_sample")
    generate(tmp / "sample", tickets=2000, days=30, seed=3, end=END)
    ingest(tmp / "sample", db=tmp / "wh.duckdb")
    return tmp / "wh.duckdb"


@pytest.fixture
def wh_db(pristine_db, tmp_path) -> Path:
    """A copy of the sample warehouse that a test may load batches into."""
    db = tmp_path / "wh.duckdb"
    shutil.copy(pristine_db, db)
    return db


def _run(inbox: Path, db: Path, start: datetime = END, **kw) -> FeedSummary:
    clock = FakeClock(start)
    kw = {"rate": 8, "duration": 60, "seed": 1, **kw}
    return run_feed(inbox, db=db, now=clock.now, sleep=clock.sleep, **kw)


def _batches(inbox: Path) -> list[Path]:
    return sorted(p for p in inbox.iterdir() if p.is_dir() and NAME.match(p.name))


def _frames(inbox: Path) -> dict[str, pd.DataFrame]:
    parts: dict[str, list[pd.DataFrame]] = {t: [] for t in FEED_TABLES}
    for b in _batches(inbox):
        for t in FEED_TABLES:
            path = b / f"{t}.csv"
            if path.exists():
                df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
                df["batch"] = b.name
                parts[t].append(df)
    out = {}
    for t, dfs in parts.items():
        cols = [*TABLES[t].column_names, "batch"]
        out[t] = pd.concat(dfs, ignore_index=True) if dfs else pd.DataFrame(columns=cols)
    return out


def _snapshot(inbox: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(inbox)): p.read_bytes() for p in sorted(inbox.rglob("*")) if p.is_file()
    }


def _statuses(db: Path) -> dict[str, str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return dict(con.execute("select ticket_id, status from tickets").fetchall())
    finally:
        con.close()


def _assert_flow(events: pd.DataFrame, initial: dict[str, str]) -> None:
    """Every ticket's status sequence, from its known status, follows the allowed flow."""
    ev = events.assign(at=pd.to_datetime(events["event_at"]))
    assert not ev.duplicated(["ticket_id", "at"]).any(), "two changes of a ticket at one time"
    for tid, group in ev.sort_values(["ticket_id", "at"]).groupby("ticket_id"):
        seq = list(group["status"])
        if tid in initial:
            seq = [initial[tid], *seq]
        else:
            assert seq[0] == "open", f"{tid} does not start open: {seq}"
        bad = [pair for pair in zip(seq, seq[1:], strict=False) if pair not in FLOW]
        assert not bad, f"{tid}: {seq}"


def test_batches_load_without_rejects_and_statuses_stay_consistent(wh_db, tmp_path):
    before = _statuses(wh_db)
    inbox = tmp_path / "inbox"
    summary = _run(inbox, wh_db, rate=8, duration=60, batch_s=6)
    assert summary.source == "warehouse" and summary.note is None
    batches = _batches(inbox)
    assert len(batches) == summary.batches == 10
    for b in batches:
        assert (b / "tickets.csv").exists()
        report = ingest(b, db=wh_db)
        for t in report.tables:
            assert t.rejected_total == 0, (b.name, t)
            assert t.warnings == (), (b.name, t)
            assert t.collapsed == 0 and t.skipped_empty == 0, (b.name, t)
    counts = dict(summary.events)
    for kind in ("new_ticket", "first_response", "closed", "reopened", "feedback"):
        assert counts[kind] > 0, kind
    assert counts["outage_ticket"] == 0

    frames = _frames(inbox)
    touched_sample = set(frames["ticket_events"]["ticket_id"]) & set(before)
    assert touched_sample, "the feed moves tickets the warehouse already had"
    _assert_flow(frames["ticket_events"], before)

    con = duckdb.connect(str(wh_db), read_only=True)
    try:
        def one(sql: str) -> int:
            return con.execute(sql).fetchall()[0][0]

        assert one("select count(*) from tickets where status = 'closed' "
                   "and resolved_at is null") == 0
        assert one("select count(*) from tickets where status <> 'closed' "
                   "and resolved_at is not null") == 0
        assert one("select count(*) from tickets where status = 'in_progress' "
                   "and first_response_at is null") == 0
        assert one("select count(*) from tickets where first_response_at < created_at "
                   "or resolved_at < first_response_at or resolved_at < created_at") == 0
        # the ticket row says what its last event says
        assert one("""
            select count(*) from tickets t join (
                select ticket_id, arg_max(status, event_at) as last from ticket_events
                group by ticket_id) e using (ticket_id)
            where t.status <> e.last and (t.ticket_id like 'L-%' or t.ticket_id in (
                select ticket_id from ticket_events where event_at >= '2025-03-01'))
        """) == 0
        # first_response_at is the first response: a reopened ticket answered again keeps it
        assert one("""
            select count(*) from tickets t join (
                select ticket_id, min(event_at) filter (where status = 'in_progress') as first
                from ticket_events group by ticket_id) e using (ticket_id)
            where t.first_response_at is distinct from e.first
        """) == 0
        assert one("""
            select count(*) from ticket_events where event_at >= '2025-03-01'
            and status = 'in_progress' and ticket_id in (select ticket_id from ticket_events
                where status = 'in_progress' and event_at < '2025-03-01')
        """) > 0
        # surveys answer tickets that were closed at that moment, one survey per ticket
        assert one("""
            select count(*) from feedback f where f.feedback_id like 'L-F%' and coalesce((
                select arg_max(e.status, e.event_at) from ticket_events e
                where e.ticket_id = f.ticket_id and e.event_at <= f.submitted_at), '')
                <> 'closed'
        """) == 0
        assert one("select count(*) from (select ticket_id from feedback group by ticket_id "
                   "having count(*) > 1)") == 0
        loaded = one("select count(*) from tickets where ticket_id like 'L-T%'")
        reopened = one("select count(*) from tickets where ticket_id in "
                       "(select ticket_id from ticket_events where event_at >= '2025-03-01' "
                       "and status = 'open' and ticket_id not like 'L-%')")
    finally:
        con.close()
    assert loaded == counts["new_ticket"]
    assert reopened > 0
    # every event is a ticket_events row or a survey
    assert len(frames["ticket_events"]) + len(frames["feedback"]) == summary.total_events


def test_ids_never_collide_with_the_sample_or_each_other(wh_db, tmp_path):
    inbox = tmp_path / "inbox"
    first = _run(inbox, wh_db, duration=40)
    frames1 = _frames(inbox)
    second = _run(inbox, wh_db, start=END + timedelta(minutes=5), duration=40, seed=2)
    frames = _frames(inbox)
    new = frames["ticket_events"].query("status == 'open'")
    created = frames["tickets"].drop_duplicates("ticket_id")
    created = created[created["created_at"] >= "2025-03-01"]["ticket_id"]
    assert created.str.startswith("L-T").all()
    assert created.is_unique
    assert not set(created) & set(_statuses(wh_db))
    ids1 = set(frames1["tickets"]["ticket_id"][frames1["tickets"]["ticket_id"].str[:2] == "L-"])
    assert len(ids1) == first.count("new_ticket")
    assert len(created) == first.count("new_ticket") + second.count("new_ticket")
    assert len(new) >= len(created)
    fids = frames["feedback"]["feedback_id"]
    assert fids.is_unique and fids.str.match(r"^L-F\d{8}$").all()
    seqs = [int(NAME.match(b.name).group(2)) for b in _batches(inbox)]
    assert seqs == list(range(1, len(seqs) + 1))


def test_same_seed_and_clock_write_the_same_bytes(pristine_db, tmp_path):
    a = _run(tmp_path / "a", pristine_db, duration=30)
    b = _run(tmp_path / "b", pristine_db, duration=30)
    c = _run(tmp_path / "c", pristine_db, duration=30, seed=2)
    snap_a, snap_b = _snapshot(tmp_path / "a"), _snapshot(tmp_path / "b")
    assert snap_a == snap_b
    assert len(snap_a) > a.batches > 5
    assert a.events == b.events
    assert _snapshot(tmp_path / "c") != snap_a
    assert c.events != a.events
    names = [p.name for p in _batches(tmp_path / "a")]
    stamps = [NAME.match(n).group(1) for n in names]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_feed_time_never_precedes_the_warehouse_as_of(pristine_db, tmp_path):
    wh = Warehouse(pristine_db, read_only=True)
    as_of = wh.as_of()
    wh.close()
    summary = _run(tmp_path / "inbox", pristine_db, start=datetime(2024, 6, 1), duration=20)
    assert summary.started_at >= as_of
    assert summary.started_at - as_of < timedelta(seconds=1)
    frames = _frames(tmp_path / "inbox")
    for table, col in (("ticket_events", "event_at"), ("feedback", "submitted_at")):
        assert (pd.to_datetime(frames[table][col]) >= as_of).all()
    for name in (b.name for b in _batches(tmp_path / "inbox")):
        assert datetime.strptime(NAME.match(name).group(1), "%Y%m%dT%H%M%S%f") > as_of
    # a wall clock after the data is used as it is
    later = END + timedelta(days=3, hours=2)
    assert _run(tmp_path / "later", pristine_db, start=later, duration=4).started_at == later


def _inside_net(frames: dict[str, pd.DataFrame], outage: FeedOutage) -> pd.DataFrame:
    t = frames["tickets"].drop_duplicates("ticket_id")
    t = t[t["ticket_id"].str.startswith("L-T")].dropna(subset=["location_lat"])
    dist = haversine_km(outage.lat, outage.lon, t["location_lat"].astype(float),
                        t["location_lon"].astype(float))
    return t[(dist <= outage.radius_km) & t["domain"].isin(["network", "internet"])]


def test_outage_surges_network_tickets_inside_its_circle(pristine_db, tmp_path):
    con = duckdb.connect(str(pristine_db), read_only=True)
    lat, lon = con.execute(
        "select avg(lat), avg(lon) from customers where city = "
        "(select city from customers group by city order by count(*) desc, city limit 1)"
    ).fetchall()[0]
    con.close()
    outage = FeedOutage(lat, lon, 12.0)
    base = _run(tmp_path / "base", pristine_db, rate=4, duration=120)
    surge = _run(tmp_path / "surge", pristine_db, rate=4, duration=120,
                 outage=f"{lat},{lon},12")
    assert base.count("outage_ticket") == 0
    n = surge.count("outage_ticket")
    assert n > surge.count("new_ticket")  # a clearly higher rate than the usual arrivals
    assert 0.7 * 4 * 120 < n < 1.3 * 4 * 120
    inside_base = _inside_net(_frames(tmp_path / "base"), outage)
    inside_surge = _inside_net(_frames(tmp_path / "surge"), outage)
    assert len(inside_surge) >= n
    assert len(inside_surge) >= 3 * len(inside_base) + 20


def test_outage_without_known_customers_still_lands_inside(tmp_path):
    outage = parse_outage("61.2,-149.9,8")  # Anchorage: none of the built-in places
    summary = _run(tmp_path / "inbox", tmp_path / "none.duckdb", rate=5, duration=60,
                   outage=outage)
    assert summary.source == "fresh"
    n = summary.count("outage_ticket")
    assert n > 100
    frames = _frames(tmp_path / "inbox")
    inside = _inside_net(frames, outage)
    assert len(inside) == n
    assert inside["customer_id"].isna().all()


def test_batches_appear_only_when_complete(monkeypatch, tmp_path):
    inbox = tmp_path / "inbox"
    real_rename = os.rename
    renamed = []

    def checked_rename(src, dst):
        src, dst = Path(src), Path(dst)
        assert src.parent == dst.parent == inbox
        assert src.name == ".tmp-" + dst.name and NAME.match(dst.name)
        assert not dst.exists()
        assert sorted(p.name for p in inbox.iterdir() if NAME.match(p.name)) == renamed
        files = {p.name for p in src.iterdir()}
        assert "tickets.csv" in files and files <= {f"{t}.csv" for t in FEED_TABLES}
        for name in files:
            text = (src / name).read_text(encoding="utf-8")
            table = name.removesuffix(".csv")
            assert text.endswith("\n")
            assert text.splitlines()[0] == ",".join(TABLES[table].column_names)
            assert len(text.splitlines()) > 1
        # the state already names the batch, so a crash now is finished at the next start
        state = json.loads((inbox / STATE_FILE).read_text(encoding="utf-8"))
        assert state["pending"] == dst.name
        real_rename(src, dst)
        renamed.append(dst.name)

    monkeypatch.setattr(os, "rename", checked_rename)
    summary = _run(inbox, tmp_path / "none.duckdb", duration=30)
    assert len(renamed) == summary.batches > 5
    assert not [p for p in inbox.iterdir() if p.name.startswith(".tmp-")]
    assert {p.name for p in inbox.iterdir()} == {*renamed, STATE_FILE}


def test_a_batch_written_but_not_renamed_is_finished_at_the_next_start(monkeypatch, tmp_path):
    inbox = tmp_path / "inbox"
    db = tmp_path / "none.duckdb"
    real_rename = os.rename
    calls = []

    def failing_rename(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(CsMetricsError, match="No space left"):
        _run(inbox, db, duration=30)
    monkeypatch.setattr(os, "rename", real_rename)
    stuck = [p for p in inbox.iterdir() if p.name.startswith(".tmp-")]
    assert [p.name for p in stuck] == [".tmp-" + Path(calls[2]).name]
    assert len(_batches(inbox)) == 2
    (inbox / ".tmp-batch-20250101T000000000000-999999").mkdir()  # a stray leftover
    first_ids = set(_frames(inbox)["tickets"]["ticket_id"]) | set(
        pd.read_csv(stuck[0] / "tickets.csv")["ticket_id"]
    )

    summary = _run(inbox, db, start=END + timedelta(minutes=2), duration=20, seed=4)
    names = [b.name for b in _batches(inbox)]
    assert Path(calls[2]).name in names
    assert [int(NAME.match(n).group(2)) for n in names] == list(range(1, len(names) + 1))
    assert len(names) == 3 + summary.batches
    assert not [p for p in inbox.iterdir() if p.name.startswith(".tmp-")]
    later = _frames(inbox)["tickets"]
    later = later[later["batch"].isin(names[3:])]
    created = later[pd.to_datetime(later["created_at"]) >= summary.started_at]["ticket_id"]
    assert len(created) and not set(created) & first_ids


def test_locked_warehouse_falls_back_to_the_state_file(monkeypatch, pristine_db, tmp_path):
    inbox = tmp_path / "inbox"
    first = _run(inbox, pristine_db, duration=60)
    assert first.source == "warehouse"
    frames1 = _frames(inbox)
    state = json.loads((inbox / STATE_FILE).read_text(encoding="utf-8"))
    assert state["next_ticket"] == first.count("new_ticket") + 1
    assert {r["status"] for r in state["tickets"]} <= {"open", "in_progress", "closed"}

    def locked(path=None, read_only=False):
        raise CsMetricsError(
            f"The warehouse {path} is held open by process 4242 (probably the Streamlit app "
            "or another cs_metrics command); stop that process or pass --db with another "
            "file, then try again."
        )

    monkeypatch.setattr(feed, "Warehouse", locked)
    logged = []
    clock = FakeClock(END + timedelta(minutes=10))
    second = run_feed(inbox, rate=8, duration=60, seed=2, db=pristine_db, now=clock.now,
                      sleep=clock.sleep, log=logged.append)
    assert second.source == "state"
    assert "held open by process 4242" in second.note
    assert "held open" in "\n".join(logged)
    frames = _frames(inbox)
    ev2 = frames["ticket_events"][~frames["ticket_events"]["batch"].isin(frames1["tickets"]
                                                                         ["batch"])]
    # tickets of the first run move on in the second, and only tickets the state knows
    assert set(ev2["ticket_id"]) & set(frames1["tickets"]["ticket_id"])
    sample = {t for t in ev2["ticket_id"] if not t.startswith("L-")}
    assert sample <= set(frames1["tickets"]["ticket_id"])  # changed or surveyed in run 1
    new1 = set(frames1["ticket_events"].query("status == 'open'")["ticket_id"])
    new2 = ev2[(ev2["status"] == "open") & ev2["ticket_id"].str.startswith("L-")
               & ~ev2["ticket_id"].isin(new1)]["ticket_id"]
    assert len(new2) >= second.count("new_ticket")
    assert min(new2) > max(t for t in new1 if t.startswith("L-"))
    _assert_flow(frames["ticket_events"], _statuses(pristine_db))


def test_fresh_start_loads_into_an_empty_warehouse(tmp_path):
    inbox = tmp_path / "inbox"
    summary = _run(inbox, tmp_path / "missing.duckdb", duration=40, batch_s=10)
    assert summary.source == "fresh"
    assert "no warehouse" in summary.note.lower()
    frames = _frames(inbox)
    assert frames["tickets"]["ticket_id"].iloc[0] == "L-T00000001"
    assert set(frames["tickets"]["rep_id"].dropna()) <= {f"R{i:04d}" for i in range(1, 17)}
    db = tmp_path / "new.duckdb"
    for b in _batches(inbox):
        report = ingest(b, db=db)
        assert all(t.rejected_total == 0 and not t.warnings for t in report.tables)
    con = duckdb.connect(str(db), read_only=True)
    n, closed_ok = con.execute(
        "select count(*), bool_and(status <> 'closed' or resolved_at >= first_response_at) "
        "from tickets"
    ).fetchall()[0]
    con.close()
    assert n == summary.count("new_ticket") and closed_ok


def test_rate_is_poisson_and_batches_follow_the_interval(tmp_path):
    clock = FakeClock(END)
    summary = run_feed(tmp_path / "inbox", rate=10, duration=300, seed=5,
                       db=tmp_path / "none.duckdb", now=clock.now, sleep=clock.sleep)
    total = summary.total_events
    assert abs(total - 3000) < 5 * np.sqrt(3000)
    assert clock.slept == pytest.approx(300)
    assert summary.ended_at - summary.started_at == timedelta(seconds=300)
    stamps = [datetime.strptime(NAME.match(b.name).group(1), "%Y%m%dT%H%M%S%f")
              for b in _batches(tmp_path / "inbox")]
    assert len(stamps) == summary.batches <= 150
    assert all((s - summary.started_at).total_seconds() % 2 == 0 for s in stamps)
    frames = _frames(tmp_path / "inbox")
    assert len(frames["ticket_events"]) + len(frames["feedback"]) == total
    for frame, col in ((frames["ticket_events"], "event_at"), (frames["feedback"],
                                                               "submitted_at")):
        at = pd.to_datetime(frame[col])
        close = pd.to_datetime(frame["batch"].str[6:21], format="%Y%m%dT%H%M%S")
        assert (at <= close).all() and (at >= close - timedelta(seconds=2)).all()


def test_interrupt_stops_after_the_last_complete_batch(tmp_path):
    clock = FakeClock(END)
    calls = []

    def sleep(seconds):
        calls.append(seconds)
        if len(calls) == 6:
            raise KeyboardInterrupt
        clock.sleep(seconds)

    summary = run_feed(tmp_path / "inbox", rate=8, duration=None, seed=1,
                       db=tmp_path / "none.duckdb", now=clock.now, sleep=sleep)
    assert summary.interrupted
    assert summary.batches == len(_batches(tmp_path / "inbox")) == 5
    assert summary.ended_at == summary.started_at + timedelta(seconds=10)
    assert not [p for p in (tmp_path / "inbox").iterdir() if p.name.startswith(".tmp-")]
    assert "interrupted" in summary.text()


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"rate": 0}, "--rate"),
        ({"rate": -2}, "--rate"),
        ({"rate": float("nan")}, "--rate"),
        ({"rate": 1e9}, "at most 1,000"),
        ({"batch_s": 0}, "batch interval"),
        ({"duration": -1}, "--duration"),
        ({"outage": "40.7,-74"}, "LAT,LON,RADIUS_KM"),
        ({"outage": "north,-74,5"}, "LAT,LON,RADIUS_KM"),
        ({"outage": "95,-74,5"}, "latitude"),
        ({"outage": "40,-74,0"}, "radius"),
    ],
)
def test_bad_arguments_are_one_clear_sentence(tmp_path, kwargs, words):
    kwargs = {"rate": 1, "duration": 2, **kwargs}
    with pytest.raises(CsMetricsError, match=re.escape(words)):
        _run(tmp_path / "inbox", tmp_path / "none.duckdb", **kwargs)


def test_an_unreadable_state_file_is_named(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / STATE_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(CsMetricsError, match=re.escape(STATE_FILE)):
        _run(inbox, tmp_path / "none.duckdb", duration=2)


def test_value_objects_are_frozen(tmp_path):
    outage = parse_outage(" 40.7, -74.0, 15 ")
    assert outage == FeedOutage(40.7, -74.0, 15.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        outage.radius_km = 1.0
    summary = _run(tmp_path / "inbox", tmp_path / "none.duckdb", duration=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.batches = 0
    assert [k for k, _ in summary.events] == list(EVENT_KINDS)
