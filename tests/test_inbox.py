"""Incremental refresh from an inbox: validation, the manifest, failures, the watcher, readers."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import threading
import time
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.inbox import RefreshReport, read_manifest, refresh_inbox, watch_inbox
from cs_metrics.ingestion.loader import ingest
from cs_metrics.metrics.registry import query
from simulations.generator import generate
from tests.conftest import ticket, write_csv

B1, B2, B3 = (f"batch-20250301T0{i}0000Z-000{i}" for i in (1, 2, 3))


@pytest.fixture(scope="module")
def base_db(tmp_path_factory) -> Path:
    """A generated warehouse (2000 tickets, 30 days); each test works on a copy."""
    tmp = tmp_path_factory.mktemp("inbox_base")
    generate(tmp / "src", tickets=2000, days=30, seed=21, end=datetime(2025, 3, 1), fmt="csv")
    ingest(tmp / "src", db=tmp / "wh.duckdb", rejects_csv=tmp / "rejects.csv")
    return tmp / "wh.duckdb"


@pytest.fixture
def db(base_db, tmp_path) -> Path:
    path = tmp_path / "wh.duckdb"
    shutil.copyfile(base_db, path)
    return path


@pytest.fixture
def inbox(tmp_path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


def rows(db: Path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def write_batch(inbox: Path, name: str, **tables: list[dict] | pd.DataFrame) -> Path:
    """Written as a feed must: under a hidden name, then renamed in one step."""
    tmp = inbox / f".tmp-{name}"
    for table, data in tables.items():
        write_csv(tmp, table, data)
    return tmp.rename(inbox / name)


def full_row(base: pd.DataFrame, ticket_id: str, **changes) -> dict:
    """A ticket update is a full row: the stored one with the changes."""
    row = base.loc[base["ticket_id"] == ticket_id].iloc[0].to_dict()
    row.update(changes)
    return row


def status_of(db: Path, ids: list[str]) -> dict[str, tuple[str, object]]:
    df = rows(db, "select ticket_id, status, resolved_at from tickets")
    df = df[df["ticket_id"].isin(ids)]
    return {r.ticket_id: (r.status, None if pd.isna(r.resolved_at) else r.resolved_at)
            for r in df.itertuples()}


def test_refresh_loads_new_batches_like_pandas(db, inbox):
    base = rows(db, "select * from tickets_src")
    n_events = int(rows(db, "select count(*) as n from ticket_events")["n"].iloc[0])
    n_feedback = int(rows(db, "select count(*) as n from feedback")["n"].iloc[0])
    open_ids = base.loc[base["status"] != "closed", "ticket_id"].tolist()
    assert len(open_ids) >= 2
    closing, later = open_ids[0], open_ids[1]
    created = base.loc[base["ticket_id"] == closing, "created_at"].iloc[0]
    resolved = str(created + pd.Timedelta(hours=5))
    b1 = write_batch(
        inbox, B1,
        tickets=[
            ticket("NEW1", "2025-03-01 08:00:00", "open", channel="chat", priority="high"),
            ticket("NEW2", "2025-03-01 08:05:00", "in_progress",
                   first_response_at="2025-03-01 08:10:00"),
            full_row(base, closing, status="closed", resolved_at=resolved),
            ticket("BAD1", "2025-03-01 08:20:00", "waiting"),  # not a status
            ticket("NEW2", "2025-03-01 09:00:00", "closed"),  # the same id twice in one batch
        ],
        ticket_events=[
            {"ticket_id": "NEW1", "event_at": "2025-03-01 08:00:00", "status": "open"},
            {"ticket_id": closing, "event_at": resolved, "status": "closed", "rep_id": "R0001"},
        ],
        feedback=[
            {"feedback_id": "FNEW1", "ticket_id": closing, "submitted_at": resolved, "csat": 5,
             "nps": 10},
            {"feedback_id": "FBAD1", "ticket_id": closing, "submitted_at": resolved, "csat": 9},
        ],
    )
    # a later batch changes NEW1 again: the newer version wins although both load at once
    write_batch(
        inbox, B2,
        tickets=[
            ticket("NEW1", "2025-03-01 08:00:00", "closed", channel="chat", priority="high",
                   first_response_at="2025-03-01 08:30:00", resolved_at="2025-03-01 10:00:00"),
            full_row(base, later, status="in_progress"),
        ],
        feedback=[{"feedback_id": "FNEW2", "ticket_id": "NEW1", "csat": 4}],
    )
    report = refresh_inbox(inbox, db=db)

    assert report.loaded == (B1, B2)
    assert report.failed == () and report.skipped == () and report.reloaded == ()
    # one load for both batches, although their files have different columns
    assert len(report.ingest_ids) == 1
    # pandas: apply each batch's valid rows in order, by ticket_id
    want = base.set_index("ticket_id")[["status", "resolved_at"]].copy()
    for tid, status, res in [
        ("NEW1", "open", None), ("NEW2", "in_progress", None), (closing, "closed", resolved),
        ("NEW1", "closed", "2025-03-01 10:00:00"), (later, "in_progress", None),
    ]:
        want.loc[tid] = [status, pd.Timestamp(res) if res else pd.NaT]
    got = rows(db, "select ticket_id, status, resolved_at from tickets").set_index("ticket_id")
    assert len(got) == len(want) == len(base) + 2
    pd.testing.assert_frame_equal(got.sort_index(), want.sort_index(), check_dtype=False)
    assert (rows(db, "select status, count(*) as n from tickets group by 1")
            .set_index("status")["n"].to_dict() == want["status"].value_counts().to_dict())
    counts = rows(db, "select (select count(*) from ticket_events) as e, "
                      "(select count(*) from feedback) as f").iloc[0]
    assert (counts["e"], counts["f"]) == (n_events + 2, n_feedback + 2)
    assert report.loaded_rows("tickets") == 5 and report.rejected_rows("tickets") == 2
    assert dict(report.rows_superseded)["tickets"] == 1
    assert report.loaded_rows("feedback") == 2 and report.rejected_rows("feedback") == 1
    assert report.as_of == datetime(2025, 3, 1, 10, 0)

    rejects = rows(db, "select table_name, source_file, source_row, reason, detail "
                       "from rejects order by table_name, source_row")
    assert rejects[["table_name", "source_file", "source_row", "reason"]].values.tolist() == [
        ["feedback", str(b1.resolve() / "feedback.csv"), 2, "score_out_of_range"],
        ["tickets", str(b1.resolve() / "tickets.csv"), 4, "unknown_status"],
        ["tickets", str(b1.resolve() / "tickets.csv"), 5, "duplicate_key"],
    ]
    assert "status" in rejects["detail"].iloc[1] and "waiting" in rejects["detail"].iloc[1]

    manifest = read_manifest(Warehouse(db, read_only=True)).set_index("name")
    assert manifest.loc[[B1, B2], "status"].tolist() == ["loaded", "loaded"]
    assert manifest.loc[B1, "rows"] == 5 + 2 + 2 and manifest.loc[B2, "rows"] == 3
    assert "3 row(s) rejected" in manifest.loc[B1, "message"]
    assert pd.isna(manifest.loc[B2, "message"])
    digest = hashlib.sha256()
    for name in ("feedback.csv", "ticket_events.csv", "tickets.csv"):
        data = (b1 / name).read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode() + data)
    assert manifest.loc[B1, "checksum"] == digest.hexdigest()
    # the quality log names the inbox's files, not the temporary folder they were read from
    log = rows(db, "select origin, source_files from ingest_log where ingest_id = "
                   f"'{report.ingest_ids[0]}' and table_name = 'tickets'").iloc[0]
    assert log["origin"] == f"inbox {inbox.resolve()}"
    assert str(b1.resolve() / "tickets.csv") in log["source_files"]


def _random_batches(inbox: Path, seed: int, fmt: str) -> list[Path]:
    """Batches of new tickets, full-row updates of tickets of the base and of earlier batches,
    bad rows, repeated ids within a batch, events and surveys, each batch with its own subset
    of the optional columns."""
    rng = np.random.default_rng(seed)
    created = {f"T{i}": pd.Timestamp("2024-01-01 10:00:00") + pd.Timedelta(hours=i)
               for i in range(40)}
    out = []
    for b in range(6):
        # typed files load together when their columns and types agree
        optional = [c for c in ("priority", "channel", "first_response_at", "resolved_at")
                    if fmt == "parquet" or rng.random() < 0.6]
        tickets, events, feedback = [], [], []
        for _ in range(int(rng.integers(4, 9))):
            kind = rng.choice(["new", "update", "update", "bad_status", "bad_time", "repeat"])
            if kind == "bad_time" and fmt == "parquet":
                kind = "update"
            if kind == "new" or (kind == "repeat" and not tickets):
                tid = f"B{b}_{len(tickets)}"
                created[tid] = pd.Timestamp("2024-02-01 08:00:00") + pd.Timedelta(hours=b)
            elif kind == "repeat":
                tid = tickets[int(rng.integers(len(tickets)))]["ticket_id"]
            else:
                tid = str(rng.choice(sorted(created)))
            status = str(rng.choice(["open", "in_progress", "closed"]))
            row = {"ticket_id": tid, "created_at": created[tid], "status": status,
                   "priority": str(rng.choice(["low", "normal", "high"])),
                   "channel": str(rng.choice(["chat", "email"])),
                   "first_response_at": created[tid] + pd.Timedelta(minutes=30),
                   "resolved_at": created[tid] + pd.Timedelta(hours=4) if status == "closed"
                   else None}
            if kind == "bad_status":
                row["status"] = "waiting"
            if kind == "bad_time":
                row["created_at"] = "not a time"
            tickets.append({c: row[c] for c in ("ticket_id", "created_at", "status", *optional)})
        for _ in range(int(rng.integers(0, 4))):
            events.append({"ticket_id": str(rng.choice(sorted(created))),
                           "event_at": pd.Timestamp("2024-03-01") + pd.Timedelta(hours=b),
                           "status": str(rng.choice(["open", "closed", "lost"]))})
        for _ in range(int(rng.integers(0, 4))):
            feedback.append({"feedback_id": f"F{int(rng.integers(5))}",
                             "ticket_id": str(rng.choice(sorted(created))),
                             "csat": int(rng.integers(0, 7))})  # 0 and 6 are out of range
        tables = {"tickets": tickets, "ticket_events": events, "feedback": feedback}
        name = f"batch-20240301T{b:02d}0000Z-{b:04d}"
        if fmt == "csv":
            out.append(write_batch(inbox, name, **{k: v for k, v in tables.items() if v}))
            continue
        tmp = inbox / f".tmp-{name}"
        tmp.mkdir()
        for table, data in tables.items():
            if data:
                df = pd.DataFrame(data)
                for col in ("created_at", "first_response_at", "resolved_at", "event_at"):
                    if col in df:
                        df[col] = pd.to_datetime(df[col])
                df.to_parquet(tmp / f"{table}.parquet", index=False)
        out.append(tmp.rename(inbox / name))
    return out


@pytest.mark.parametrize("fmt, seed", [("csv", 1), ("parquet", 3)])
def test_one_refresh_equals_loading_batch_by_batch(tmp_path, inbox, fmt, seed):
    """Loading the pending batches together leaves the warehouse (and the rejects) exactly
    as ingesting each batch in order would: the newest valid version of an id wins."""
    base = [ticket(f"T{i}", str(pd.Timestamp("2024-01-01 10:00:00") + pd.Timedelta(hours=i)),
                   "open") for i in range(40)]
    src = write_csv(tmp_path / "src", "tickets", base).parent
    together, one_by_one = tmp_path / "together.duckdb", tmp_path / "one_by_one.duckdb"
    ingest(src, db=together, rejects_csv=tmp_path / "r0.csv")
    shutil.copyfile(together, one_by_one)
    batches = _random_batches(inbox, seed, fmt)

    report = refresh_inbox(inbox, db=together)
    assert report.loaded == tuple(b.name for b in batches)
    assert len(report.ingest_ids) == 1
    for batch in batches:
        ingest(batch.resolve(), db=one_by_one, rejects_csv=tmp_path / "r1.csv")

    for sql in ("select * from tickets_src", "select * from ticket_events",
                "select * from feedback", "select * from tickets",
                "select table_name, source_file, source_row, reason, value from rejects"):
        got, want = (rows(path, sql) for path in (together, one_by_one))
        got, want = (df.sort_values(list(df.columns)).reset_index(drop=True)
                     for df in (got, want))
        pd.testing.assert_frame_equal(got, want, obj=sql)
    assert report.rejected_rows("tickets") == len(
        rows(one_by_one, "select * from rejects where table_name = 'tickets'"))


def test_second_refresh_loads_nothing(db, inbox):
    write_batch(inbox, B1, tickets=[ticket("NEW1", "2025-03-01 08:00:00")])
    first = refresh_inbox(inbox, db=db)
    assert first.loaded == (B1,)
    logged = len(rows(db, "select * from ingest_log"))
    again = refresh_inbox(inbox, db=db)
    assert again.loaded == () and again.skipped == (B1,) and not again.changed
    assert again.rows_loaded == () and again.ingest_ids == ()
    assert len(rows(db, "select * from ingest_log")) == logged  # no load at all
    assert again.as_of == first.as_of


def test_a_changed_batch_is_loaded_again(db, inbox):
    b1 = write_batch(inbox, B1, tickets=[ticket("NEW1", "2025-03-01 08:00:00", "open"),
                                         ticket("NEW2", "2025-03-01 08:00:00", "later")])
    refresh_inbox(inbox, db=db)
    assert rows(db, "select count(*) as n from rejects")["n"].iloc[0] == 1
    old = read_manifest(Warehouse(db, read_only=True)).set_index("name").loc[B1, "checksum"]
    # the feed rewrites the batch: NEW1 closed, NEW2 fixed
    write_csv(b1, "tickets", [
        ticket("NEW1", "2025-03-01 08:00:00", "closed", resolved_at="2025-03-01 09:00:00"),
        ticket("NEW2", "2025-03-01 08:00:00", "open"),
    ])
    report = refresh_inbox(inbox, db=db)
    assert report.loaded == (B1,) and report.reloaded == (B1,)
    assert status_of(db, ["NEW1", "NEW2"]) == {
        "NEW1": ("closed", pd.Timestamp("2025-03-01 09:00:00")), "NEW2": ("open", None)}
    # the rejects of the earlier version are replaced by the (no) rejects of this one
    assert rows(db, "select count(*) as n from rejects")["n"].iloc[0] == 0
    new = read_manifest(Warehouse(db, read_only=True)).set_index("name").loc[B1, "checksum"]
    assert new != old
    assert refresh_inbox(inbox, db=db).skipped == (B1,)


def test_hidden_entries_are_ignored_and_plain_files_are_batches(db, inbox):
    tmp = inbox / ".tmp-batch-20250301T090000Z-0009"  # still being written
    write_csv(tmp, "tickets", [ticket("HIDDEN", "2025-03-01 08:00:00")])
    write_csv(inbox, "tickets-0001", [ticket("PLAIN1", "2025-03-01 08:00:00")])
    write_csv(inbox, "ticket_events-0001", [
        {"ticket_id": "PLAIN1", "event_at": "2025-03-01 08:30:00", "status": "in_progress"}])
    (inbox / "notes.txt").write_text("not data")
    (inbox / ".hidden.csv").write_text("ticket_id\n")
    n_before = rows(db, "select count(*) as n from tickets")["n"].iloc[0]
    report = refresh_inbox(inbox, db=db)
    assert report.loaded == ("ticket_events-0001.csv", "tickets-0001.csv")
    assert report.ignored == ("notes.txt",)
    ids = set(rows(db, "select ticket_id from tickets")["ticket_id"])
    assert "PLAIN1" in ids and "HIDDEN" not in ids
    assert len(ids) == n_before + 1
    events = rows(db, "select status from ticket_events where ticket_id = 'PLAIN1'")
    assert events["status"].tolist() == ["in_progress"]
    # an events-only batch loads alone too (no tickets file in it)
    write_csv(inbox, "ticket_events-0002", [
        {"ticket_id": "PLAIN1", "event_at": "2025-03-01 09:30:00", "status": "closed"}])
    again = refresh_inbox(inbox, db=db)
    assert again.loaded == ("ticket_events-0002.csv",)
    assert again.rows_loaded == (("ticket_events", 1),)
    assert rows(db, "select count(*) as n from tickets")["n"].iloc[0] == n_before + 1
    assert "tickets" not in set(rows(db, "select table_name from ingest_log where ingest_id = "
                                         f"'{again.ingest_ids[0]}'")["table_name"])


def test_bad_batches_fail_and_good_ones_still_load(db, inbox):
    write_batch(inbox, "batch-a", tickets=[ticket("GOOD1", "2025-03-01 08:00:00")])
    corrupt = inbox / "batch-b"
    corrupt.mkdir()
    (corrupt / "tickets.parquet").write_bytes(b"PAR1 this is not parquet")
    write_batch(inbox, "batch-c", tickets=[{"ticket_id": "X", "status": "open"}])
    (inbox / "batch-d").mkdir()  # nothing in it
    write_batch(inbox, "batch-e", tickets=[ticket("GOOD2", "2025-03-01 08:00:00")])
    report = refresh_inbox(inbox, db=db)
    assert report.loaded == ("batch-a", "batch-e")
    failed = dict(report.failed)
    assert list(failed) == ["batch-b", "batch-c", "batch-d"]
    assert "cannot read batch-b/tickets.parquet as parquet" in failed["batch-b"]
    assert "batch-c/tickets.csv has no created_at column" in failed["batch-c"]
    assert "holds no canonical file" in failed["batch-d"]
    assert {"GOOD1", "GOOD2"} <= set(rows(db, "select ticket_id from tickets")["ticket_id"])
    manifest = read_manifest(Warehouse(db, read_only=True)).set_index("name")
    assert manifest.loc["batch-b", "status"] == "failed"
    assert manifest.loc["batch-b", "message"] == failed["batch-b"]
    # not retried while unchanged
    again = refresh_inbox(inbox, db=db)
    assert again.loaded == () and again.failed == ()
    assert set(again.skipped) == {"batch-a", "batch-b", "batch-c", "batch-d", "batch-e"}
    # retried once fixed (a new checksum)
    (corrupt / "tickets.parquet").unlink()
    write_csv(corrupt, "tickets", [ticket("FIXED", "2025-03-01 08:00:00")])
    fixed = refresh_inbox(inbox, db=db)
    assert fixed.loaded == ("batch-b",) and fixed.reloaded == ("batch-b",)
    assert "FIXED" in set(rows(db, "select ticket_id from tickets")["ticket_id"])


def test_a_batch_that_spoils_a_combined_load_is_found(db, inbox, monkeypatch):
    """Checks before the load pass, the load fails: batches are then loaded one by one."""
    import cs_metrics.ingestion.inbox as inbox_module

    real = inbox_module.ingest

    def ingest_failing_on_poison(source, mapping, **kw):
        if any("POISON" in p.read_text() for p in Path(source).glob("tickets.*")):
            raise CsMetricsError(f"Loading {source} failed and nothing was changed: boom.")
        return real(source, mapping, **kw)

    monkeypatch.setattr(inbox_module, "ingest", ingest_failing_on_poison)
    write_batch(inbox, B1, tickets=[ticket("OK1", "2025-03-01 08:00:00")])
    write_batch(inbox, B2, tickets=[ticket("POISON", "2025-03-01 08:00:00")])
    write_batch(inbox, B3, tickets=[ticket("OK3", "2025-03-01 08:00:00")])
    report = refresh_inbox(inbox, db=db)
    assert report.loaded == (B1, B3)
    assert [n for n, _ in report.failed] == [B2]
    assert "boom" in report.failed[0][1]
    ids = set(rows(db, "select ticket_id from tickets")["ticket_id"])
    assert {"OK1", "OK3"} <= ids and "POISON" not in ids


@pytest.mark.parametrize("kind", ["locked", "file_vanished"])
def test_a_machine_error_marks_nothing_and_is_retried(db, inbox, monkeypatch, kind):
    import cs_metrics.ingestion.inbox as inbox_module

    write_batch(inbox, B1, tickets=[ticket("OK1", "2025-03-01 08:00:00")])

    def broken(source, mapping, *, warehouse, **kw):
        if kind == "locked":
            raise CsMetricsError("The warehouse x is held open by process 1; stop it.")
        warehouse.connection().execute("begin transaction")  # left open, as ingest does
        raise FileNotFoundError(f"{source}/tickets.csv")

    monkeypatch.setattr(inbox_module, "ingest", broken)
    wh = Warehouse(db)  # one connection for both refreshes, as in the app
    with pytest.raises(CsMetricsError, match="held open" if kind == "locked" else "tries again"):
        refresh_inbox(inbox, warehouse=wh)
    monkeypatch.undo()
    assert read_manifest(wh).empty  # nothing marked
    report = refresh_inbox(inbox, warehouse=wh)
    assert report.loaded == (B1,) and report.failed == ()
    wh.close()


def test_batches_of_another_format_load_too(db, inbox):
    write_batch(inbox, B1, tickets=[ticket("CSV1", "2025-03-01 08:00:00")])
    tmp = inbox / ".tmp-b2"
    tmp.mkdir()
    pd.DataFrame([{"ticket_id": "PQ1", "created_at": pd.Timestamp("2025-03-01 08:00:00"),
                   "status": "open", "contacts": 2}]).to_parquet(tmp / "tickets.parquet")
    tmp.rename(inbox / B2)
    write_batch(inbox, B3, tickets=[ticket("CSV1", "2025-03-01 08:00:00", "in_progress")])
    report = refresh_inbox(inbox, db=db)
    assert report.loaded == (B1, B2, B3) and len(report.ingest_ids) == 3
    assert status_of(db, ["CSV1", "PQ1"]) == {"CSV1": ("in_progress", None), "PQ1": ("open", None)}


def test_feedback_without_ids_is_never_overwritten(db, inbox):
    n_before = rows(db, "select count(*) as n from feedback")["n"].iloc[0]
    write_batch(inbox, B1, feedback=[{"ticket_id": "T0000001", "csat": 3, "comment": "slow"}])
    refresh_inbox(inbox, db=db)
    # a later survey of the same ticket; and one with an empty id cell
    write_batch(inbox, B2, feedback=[
        {"feedback_id": "", "ticket_id": "T0000001", "csat": 5, "comment": "great"},
        {"feedback_id": "FX", "ticket_id": "T0000002", "csat": 4},
    ])
    report = refresh_inbox(inbox, db=db)
    assert report.loaded_rows("feedback") == 2 and report.rejected_rows("feedback") == 0
    got = rows(db, "select feedback_id, csat from feedback where feedback_id like 'T0000001:%' "
                   "order by csat")
    assert got["csat"].tolist() == [3, 5]
    assert got["feedback_id"].nunique() == 2
    # every earlier survey is still there
    assert rows(db, "select count(*) as n from feedback")["n"].iloc[0] == n_before + 3
    # the same rows again (a changed name, same content) do not duplicate anything
    shutil.copytree(inbox / B1, inbox / B3)
    refresh_inbox(inbox, db=db)
    assert rows(db, "select count(*) as n from feedback")["n"].iloc[0] == n_before + 3


def test_max_batches_leaves_the_rest_for_later(db, inbox):
    for i, name in enumerate((B1, B2, B3)):
        write_batch(inbox, name, tickets=[ticket(f"M{i}", "2025-03-01 08:00:00")])
    first = refresh_inbox(inbox, db=db, max_batches=2)
    assert first.loaded == (B1, B2) and first.pending == (B3,)
    second = refresh_inbox(inbox, db=db, max_batches=2)
    assert second.loaded == (B3,) and second.pending == () and second.skipped == (B1, B2)


def test_missing_inbox_is_a_clear_error(db, tmp_path):
    with pytest.raises(CsMetricsError, match=r"inbox .*nowhere does not exist; create"):
        refresh_inbox(tmp_path / "nowhere", db=db)
    with pytest.raises(CsMetricsError, match="does not exist"):
        watch_inbox(tmp_path / "nowhere", db=db, stop=threading.Event())
    (tmp_path / "file").write_text("")
    with pytest.raises(CsMetricsError, match="is a file, not a folder"):
        refresh_inbox(tmp_path / "file", db=db)


def test_a_read_only_warehouse_is_refused(db, inbox):
    with pytest.raises(CsMetricsError, match="read-only.*read-write"):
        refresh_inbox(inbox, warehouse=Warehouse(db, read_only=True))


def test_report_is_frozen(db, inbox):
    report = refresh_inbox(inbox, db=db)
    assert isinstance(report, RefreshReport)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.loaded = ("x",)  # type: ignore[misc]
    assert "0 batch(es) loaded" in report.summary()


def test_watch_picks_up_batches_that_appear_between_refreshes(db, inbox):
    stop = threading.Event()
    reports: list[RefreshReport] = []
    sleeps: list[float] = []
    arrivals = [
        lambda: write_batch(inbox, B2, tickets=[ticket("W2", "2025-03-01 09:00:00")]),
        lambda: write_batch(inbox, "batch-bad", tickets=[{"ticket_id": "X"}]),
        lambda: write_batch(inbox, B3, tickets=[ticket("W2", "2025-03-01 09:00:00", "closed",
                                                       resolved_at="2025-03-01 11:00:00")]),
    ]

    def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if arrivals:
            arrivals.pop(0)()
        else:
            stop.set()

    def on_refresh(report: RefreshReport) -> None:
        reports.append(report)
        if len(reports) == 2:
            raise RuntimeError("a bug in the callback does not stop the watcher")

    write_batch(inbox, B1, tickets=[ticket("W1", "2025-03-01 08:00:00")])
    watch_inbox(inbox, db=db, interval_s=0.5, stop=stop, on_refresh=on_refresh,
                sleep=fake_sleep)
    assert sleeps == [0.5] * 4
    assert [r.loaded for r in reports] == [(B1,), (B2,), (), (B3,)]
    assert [n for n, _ in reports[2].failed] == ["batch-bad"]
    assert status_of(db, ["W1", "W2"]) == {
        "W1": ("open", None), "W2": ("closed", pd.Timestamp("2025-03-01 11:00:00"))}


def test_watch_stops_promptly_with_the_real_sleep(db, inbox):
    stop = threading.Event()
    seen: list[RefreshReport] = []

    def on_refresh(report: RefreshReport) -> None:
        seen.append(report)
        stop.set()

    thread = threading.Thread(target=watch_inbox, args=(inbox,),
                              kwargs={"db": db, "interval_s": 60, "stop": stop,
                                      "on_refresh": on_refresh})
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive() and len(seen) == 1


def test_readers_see_only_whole_refreshes(tmp_path, inbox):
    """A reader thread keeps querying while refreshes run in another thread of the same
    process (the app's shape) and only ever sees a state before or after a whole batch."""
    db = tmp_path / "wh.duckdb"
    base = [ticket(f"T{i}", f"2024-01-{1 + i % 28:02d} 10:00:00") for i in range(1000)]
    ingest(write_csv(tmp_path / "src", "tickets", base).parent, db=db,
           rejects_csv=tmp_path / "rejects.csv")
    states = {(1000, 0)}
    for k in range(3):
        new = [ticket(f"N{k}_{i}", "2024-02-01 10:00:00") for i in range(500)]
        # each batch also closes 100 of the original tickets
        closed = [ticket(f"T{i}", f"2024-01-{1 + i % 28:02d} 10:00:00", "closed",
                         resolved_at="2024-03-01 10:00:00") for i in range(100 * k, 100 * k + 100)]
        write_batch(inbox, f"batch-2024020{k}T000000Z-000{k}", tickets=new + closed)
        states.add((1000 + 500 * (k + 1), 100 * (k + 1)))
    wh = Warehouse(db)
    seen: list[tuple[int, int]] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                df = query(wh, ["ticket_count", "closed_count"])
                seen.append((int(df["ticket_count"].iloc[0]), int(df["closed_count"].iloc[0])))
            except Exception as exc:  # noqa: BLE001 - any failure fails the test below
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        reports = [refresh_inbox(inbox, warehouse=wh, max_batches=1) for _ in range(3)]
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert [len(r.loaded) for r in reports] == [1, 1, 1]
    assert set(seen) <= states
    assert len(seen) > 3
    assert seen == sorted(seen)
    final = query(wh, ["ticket_count", "closed_count"]).iloc[0]
    assert (final["ticket_count"], final["closed_count"]) == (2500, 300)
    wh.close()


def test_bad_settings_leave_the_batches_pending_until_fixed(db, inbox, tmp_path, monkeypatch):
    """A settings file broken while a watcher runs is no batch's fault: nothing is marked
    failed (a marked batch is never retried), the refresher says why, and once the file is
    fixed the batch loads."""
    from cs_metrics.ops.refresher import LiveRefresher

    settings = tmp_path / "settings.toml"
    settings.write_text("this is = not toml =\n")
    monkeypatch.setenv("CS_METRICS_SETTINGS", str(settings))
    write_batch(inbox, B1, tickets=[ticket("PENDING1", "2025-03-01 08:00:00")])
    wh = Warehouse(db)
    try:
        with pytest.raises(CsMetricsError, match="not valid TOML") as caught:
            refresh_inbox(inbox, warehouse=wh)
        assert str(settings) in str(caught.value) and "stay pending" in str(caught.value)
        assert read_manifest(wh).empty  # nothing marked, the batch waits
        # the refresher (the app's thread, the command line's --watch) keeps the reason
        live = LiveRefresher(inbox, 0.05, alerts=False).start(wh)
        deadline = time.monotonic() + 30
        while live.last_error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        live.close()
        assert live.last_error is not None and "not valid TOML" in live.last_error
        assert read_manifest(wh).empty
        assert "PENDING1" not in set(wh.df("select ticket_id from tickets")["ticket_id"])
        settings.write_text("[targets]\ncsat_pct = 80\n")  # fixed
        report = refresh_inbox(inbox, warehouse=wh)
        assert report.loaded == (B1,) and report.failed == ()
        assert "PENDING1" in set(wh.df("select ticket_id from tickets")["ticket_id"])
        assert read_manifest(wh).set_index("name").loc[B1, "status"] == "loaded"
    finally:
        wh.close()


def test_symbolic_links_in_the_inbox_are_refused_unread(db, inbox, tmp_path):
    """A batch folder linked to a folder elsewhere, a canonical file linked to any file, a
    loose file that is a link: none is read (its rows would land in the warehouse, its
    rejected rows whole in rejects.raw); each is marked failed saying why."""
    secret = "ticket_id,created_at,status\nLEAK1,2025-03-01 08:00:00,open\nLEAK2,SECRET-LINE,open\n"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "tickets.csv").write_text(secret)
    (tmp_path / "secret.txt").write_text(secret)
    (inbox / "batch-linked-dir").symlink_to(elsewhere, target_is_directory=True)
    batch = inbox / "batch-linked-file"
    batch.mkdir()
    (batch / "tickets.csv").symlink_to(tmp_path / "secret.txt")
    (inbox / "tickets-0001.csv").symlink_to(tmp_path / "secret.txt")
    write_batch(inbox, "batch-real", tickets=[ticket("REAL1", "2025-03-01 08:00:00")])
    report = refresh_inbox(inbox, db=db)
    assert report.loaded == ("batch-real",)
    failed = dict(report.failed)
    assert set(failed) == {"batch-linked-dir", "batch-linked-file", "tickets-0001.csv"}
    assert failed["batch-linked-dir"].startswith("batch-linked-dir is a symbolic link")
    assert failed["batch-linked-file"].startswith(
        "batch-linked-file/tickets.csv is a symbolic link")
    assert failed["tickets-0001.csv"].startswith("tickets-0001.csv is a symbolic link")
    assert all("never follows links" in m for m in failed.values())
    manifest = read_manifest(Warehouse(db, read_only=True)).set_index("name")
    for name, message in failed.items():
        assert manifest.loc[name, "status"] == "failed"
        assert manifest.loc[name, "message"] == message
    ids = set(rows(db, "select ticket_id from tickets")["ticket_id"])
    assert "REAL1" in ids and not {"LEAK1", "LEAK2"} & ids
    stored = rows(db, "select * from rejects").astype(str)
    assert not stored.apply(lambda col: col.str.contains("SECRET-LINE|LEAK")).any().any()
    # recorded once: not retried while the links stay
    again = refresh_inbox(inbox, db=db)
    assert again.failed == () and again.loaded == ()
    # replaced by a real folder, the batch loads
    (batch / "tickets.csv").unlink()
    write_csv(batch, "tickets", [ticket("REAL2", "2025-03-01 08:00:00")])
    fixed = refresh_inbox(inbox, db=db)
    assert fixed.loaded == ("batch-linked-file",) and fixed.reloaded == ("batch-linked-file",)
    assert "REAL2" in set(rows(db, "select ticket_id from tickets")["ticket_id"])
