from __future__ import annotations

import shutil
import threading
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse, catalog_changed, catalog_snapshot
from cs_metrics.ingestion.loader import ingest
from cs_metrics.metrics.registry import query
from tests.conftest import ticket, write_csv


def _folder(tmp_path, name, n, start=0):
    rows = [ticket(f"T{i}", f"2024-01-{1 + i % 28:02d} 10:00:00") for i in range(start, start + n)]
    return write_csv(tmp_path / name, "tickets", rows).parent


def test_each_thread_gets_its_own_connection(tmp_path):
    db = tmp_path / "wh.duckdb"
    ingest(_folder(tmp_path, "a", 5), db=db)
    wh = Warehouse(db, read_only=True)
    seen = {}

    def grab(key):
        seen[key] = wh.connection()

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in seen.values()}) == 3
    assert wh.connection() is wh.connection()


def test_refresh_is_atomic_for_readers(tmp_path):
    """Readers keep querying during a reload and only ever see the old or the new state."""
    db = tmp_path / "wh.duckdb"
    ingest(_folder(tmp_path, "a", 2000), db=db)
    wh = Warehouse(db)
    counts: list[int] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                counts.append(int(query(wh, ["ticket_count"])["ticket_count"].iloc[0]))
            except Exception as exc:  # noqa: BLE001 - any failure fails the test below
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for k in range(3):
            ingest(_folder(tmp_path, f"b{k}", 1000, start=2000 + 1000 * k), warehouse=wh)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert set(counts) <= {2000, 3000, 4000, 5000}
    assert len(counts) > 3
    assert counts == sorted(counts)
    assert int(query(wh, ["ticket_count"])["ticket_count"].iloc[0]) == 5000


def test_a_catalog_snapshot_reads_the_catalog_once_per_run(tmp_path):
    db = tmp_path / "wh.duckdb"
    ingest(_folder(tmp_path, "a", 5), db=db)
    wh = Warehouse(db)
    con = wh.connection()
    with catalog_snapshot():
        assert wh.has_table("tickets") and not wh.has_table("extra")
        columns, as_of = wh.columns("tickets"), wh.meta("as_of")
        con.execute("create table extra (a int)")  # behind the snapshot's back
        con.execute("update meta set value = '2030-01-01 00:00:00' where key = 'as_of'")
        assert not wh.has_table("extra") and "extra" not in wh.tables()
        assert wh.meta("as_of") == as_of
        wh.columns("tickets").append("mutated")  # callers get copies
        assert wh.columns("tickets") == columns
        with catalog_snapshot():  # a nested block shares the outer snapshot
            assert not wh.has_table("extra")
        catalog_changed()  # what code that creates tables says
        assert wh.has_table("extra") and wh.meta("as_of") == "2030-01-01 00:00:00"
        con.execute("drop table extra")
    assert not wh.has_table("extra")  # outside a snapshot every answer is read afresh
    con.execute("create table extra (a int)")
    assert wh.has_table("extra")


def test_loads_and_new_tables_in_a_snapshot_are_seen_at_once(tmp_path):
    from cs_metrics.core import audit
    from cs_metrics.ops import alerts

    db = tmp_path / "wh.duckdb"
    ingest(_folder(tmp_path, "a", 5), db=db)
    wh = Warehouse(db)
    with catalog_snapshot():
        assert wh.scalar("select count(*) from tickets") == 5
        assert not wh.has_table("audit_log") and not wh.has_table("alerts")
        before = wh.meta("last_created")
        ingest(_folder(tmp_path, "b", 3, start=40), db=db, warehouse=wh)
        assert wh.meta("last_created") != before
        assert wh.meta("last_created") == str(wh.scalar(
            "select max(created_at) from tickets where not is_test"))
        audit.record(wh, "ana@example.com", "admin", "export", "x.csv", {})
        assert wh.has_table(audit.TABLE)
        alerts.mute(wh, "sla_breached", timedelta(hours=1), "ana@example.com")
        assert wh.has_table("alert_mutes")
        assert alerts.mutes(wh)["target"].tolist() == ["sla_breached"]


def test_read_only_warehouse_must_exist(tmp_path):
    with pytest.raises(CsMetricsError, match="no warehouse"):
        Warehouse(tmp_path / "missing.duckdb", read_only=True)


def test_as_of_and_column_stats(tmp_path):
    folder = tmp_path / "src"
    write_csv(folder, "tickets", [
        ticket("A", "2024-01-01 10:00:00", "closed", resolved_at="2024-01-03 08:00:00"),
        ticket("B", "2024-01-02 10:00:00"),
    ])
    db = tmp_path / "wh.duckdb"
    ingest(folder, db=db)
    wh = Warehouse(db, read_only=True)
    assert str(wh.as_of()) == "2024-01-03 08:00:00"
    assert "resolved_at" in wh.nonempty_columns("tickets_src")
    assert "first_response_at" not in wh.nonempty_columns("tickets_src")
    # created_at sorted storage lets date filters skip data
    ids = [r[0] for r in wh.connection().execute("select ticket_id from tickets").fetchall()]
    assert ids == ["A", "B"]


@pytest.mark.parametrize("dim", ["channel", "location", "customer_segment", "team", "rep_name"])
def test_dimension_values_are_the_dimension_most_tickets_first(sample_wh, dim):
    counts = sample_wh.df(f"select {dim} as v, is_test from tickets")
    counts = counts[~counts["is_test"] & counts["v"].notna()]["v"].value_counts().reset_index()
    counts.columns = ["v", "n"]
    want = counts.sort_values(["n", "v"], ascending=[False, True])["v"].tolist()
    assert sample_wh.dimension_values(dim) == want
    assert query(sample_wh, ["ticket_count"], [dim]).dropna()[dim].nunique() == len(want)


def test_dimension_values_of_an_older_warehouse_are_counted(tmp_path):
    db = tmp_path / "wh.duckdb"
    rows = [ticket(f"T{i}", "2024-01-02 10:00:00", channel=("chat" if i % 3 else "email"))
            for i in range(9)]
    ingest(write_csv(tmp_path / "a", "tickets", rows).parent, db=db)
    wh = Warehouse(db)
    try:
        stored = wh.dimension_values("channel")
        wh.connection().execute("drop table dimension_values")
        assert wh.dimension_values("channel") == stored == ["chat", "email"]
        with pytest.raises(CsMetricsError, match="Unknown dimension"):
            wh.dimension_values("comment")
    finally:
        wh.close()


def _canonical(row) -> dict:
    """A tickets_src row as a canonical CSV row."""
    out = {}
    for key, value in row.items():
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            out[key] = ""
        elif isinstance(value, pd.Timestamp):
            out[key] = value.strftime("%Y-%m-%d %H:%M:%S")
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, float) and value.is_integer() and key != "location_lat" \
                and key != "location_lon":
            out[key] = str(int(value))
        else:
            out[key] = str(value)
    return out


def _incremental_and_rebuild(base: Path, batches: list[Path], tmp_path: Path,
                             monkeypatch) -> tuple[dict, dict]:
    """The warehouse's tables after loading ``base`` and then each batch, once refreshed
    incrementally and once rebuilt at every load; asserts they are the same."""
    import importlib

    ingest_module = importlib.import_module("cs_metrics.ingestion.loader")
    warehouse_module = importlib.import_module("cs_metrics.core._refresh")
    calls: list[str] = []
    real = warehouse_module._refresh_derived

    def spy(*args, **kwargs):
        calls.append(mode)
        return real(*args, **kwargs)

    monkeypatch.setattr(warehouse_module, "_refresh_derived", spy)
    results = {}
    for mode, share in (("incremental", 0.05), ("rebuild", 0.0)):
        monkeypatch.setattr(ingest_module, "INCREMENTAL_SHARE", share)
        db = tmp_path / f"{mode}.duckdb"
        ingest(base, db=db)
        for batch in batches:
            ingest(batch, db=db)
        wh = Warehouse(db, read_only=True)
        try:
            tables = wh.tables()
            results[mode] = {
                name: wh.df(f"select * from {name} order by all")
                for name in ("tickets", "feedback_facts", "dimension_values", "column_stats",
                             "comment_sentiment", "feedback", "ticket_events")
                if name in tables
            }
            # the moment of the derive, and the plausible window's end that moves with it
            results[mode]["meta"] = wh.df("select * from meta where key not in "
                                          "('derived_at', 'plausible_to') order by key")
        finally:
            wh.close()
    # the batches took the incremental path, and only there
    assert calls == ["incremental"] * len(batches)
    inc, full = results["incremental"], results["rebuild"]
    assert inc.keys() == full.keys()
    for name in inc:
        pd.testing.assert_frame_equal(inc[name].reset_index(drop=True),
                                      full[name].reset_index(drop=True),
                                      check_dtype=False, obj=name)
    return inc, full


def test_small_loads_refreshed_incrementally_equal_a_rebuild(sample_dir, tmp_path,
                                                              monkeypatch):
    """Live batches derive only the tickets they touch; the warehouse must end up exactly as
    a full rebuild leaves it, batch after batch."""
    base = Warehouse(tmp_path / "probe.duckdb")
    ingest(sample_dir, warehouse=base)
    open_rows = base.df("select * from tickets_src where status <> 'closed' "
                        "order by ticket_id limit 5")
    closed = base.df("select ticket_id from tickets where status = 'closed' and not "
                     "has_feedback order by ticket_id limit 3")
    moved_in = base.df("select * from tickets_src where status = 'closed' "
                       "order by ticket_id desc limit 1")
    survey = base.df("select f.* from feedback f join tickets t using (ticket_id) "
                     "where f.comment is not null and t.fb_n = 1 order by f.feedback_id "
                     "limit 1").iloc[0]
    event = base.df("select * from ticket_events order by ticket_id, event_at limit 1").iloc[0]
    waiting = base.scalar("select count(*) from tickets where status <> 'closed' "
                          "and sla_resolution_met is null")
    as_of = base.as_of()
    base.close()
    assert waiting > 0
    # a day later: deadlines of tickets nobody touches pass, so their SLA flags move
    stamp = (as_of + timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    later = (as_of + timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S")
    updates = [
        ticket(r.ticket_id, r.created_at.strftime("%Y-%m-%d %H:%M:%S"), "closed",
               first_response_at=stamp, resolved_at=stamp, priority=r.priority,
               channel=r.channel, domain=r.domain, rep_id=r.rep_id, customer_id=r.customer_id,
               contacts=1)
        for r in open_rows.itertuples()
    ]
    # a ticket whose creation time changes is found by its id
    shifted = _canonical(moved_in.iloc[0])
    shifted["created_at"] = (moved_in.iloc[0]["created_at"] - timedelta(hours=1)).strftime(
        "%Y-%m-%d %H:%M:%S")
    new = [ticket(f"NEW{i}", stamp, "open", priority="urgent", channel="chat",
                  domain="billing", location="Nowhere Town") for i in range(10)]
    first = tmp_path / "batch1"
    write_csv(first, "tickets", pd.DataFrame(updates + [shifted] + new).astype(str)
              .replace("nan", ""))
    write_csv(first, "feedback", [
        *({"feedback_id": f"FNEW{i}", "ticket_id": t, "submitted_at": stamp, "csat": 1,
           "comment": "Terrible, nobody called back."}
          for i, t in enumerate(closed["ticket_id"])),
        # a survey moved to another ticket, with another comment
        {"feedback_id": survey["feedback_id"], "ticket_id": shifted["ticket_id"],
         "submitted_at": stamp, "csat": 5, "comment": "Moved here, and all good."},
        # a survey that arrives before its ticket
        {"feedback_id": "FEARLY", "ticket_id": "LATE1", "submitted_at": stamp, "csat": 4,
         "comment": "Quick and kind."},
    ])
    write_csv(first, "ticket_events", [
        {"ticket_id": "NEW0", "event_at": stamp, "status": "open", "rep_id": ""},
        # already stored: not added twice
        {"ticket_id": event["ticket_id"], "event_at": event["event_at"].strftime(
            "%Y-%m-%d %H:%M:%S"), "status": event["status"], "rep_id": event["rep_id"] or ""},
    ])
    second = tmp_path / "batch2"
    write_csv(second, "tickets", [
        ticket("LATE1", stamp, "closed", first_response_at=stamp, resolved_at=later,
               priority="high", channel="email", domain="billing"),
        ticket("NEW0", stamp, "in_progress", first_response_at=later, priority="urgent",
               channel="chat", domain="billing", location="Nowhere Town"),
    ])
    write_csv(second, "feedback", [
        # a new version of a survey: its old comment is held by no survey any more
        {"feedback_id": "FNEW0", "ticket_id": closed["ticket_id"][0], "submitted_at": later,
         "csat": 2, "comment": "Still waiting for the refund."},
    ])

    third = tmp_path / "batch3"
    # tickets only: a ticket with surveys moves on, its survey facts follow
    write_csv(third, "tickets", [
        ticket("LATE1", stamp, "open", first_response_at=stamp, priority="high",
               channel="phone", domain="billing", reopened_count=1),
    ])
    inc, full = _incremental_and_rebuild(sample_dir, [first, second, third], tmp_path,
                                         monkeypatch)
    assert len(inc["tickets"]) == len(full["tickets"]) == 6000 + len(new) + 1
    tickets = inc["tickets"].set_index("ticket_id")
    # what the batches were made to exercise did happen
    assert "Nowhere Town" in set(inc["dimension_values"]["value"])
    assert tickets.loc["LATE1", "fb_n"] == 1  # the early survey found its ticket
    facts = inc["feedback_facts"].set_index("feedback_id")
    assert facts.loc["FEARLY", "channel"] == "phone"
    assert not tickets.loc[survey["ticket_id"], "has_feedback"]  # the moved survey left
    assert str(tickets.loc[shifted["ticket_id"], "created_at"]) == shifted["created_at"]
    comments = set(inc["comment_sentiment"]["comment"])
    assert "Still waiting for the refund." in comments
    assert "Terrible, nobody called back." in comments  # FNEW1 and FNEW2 still hold it
    assert survey["comment"] not in comments or \
        survey["comment"] in set(inc["feedback"]["comment"])
    assert tickets["sla_resolution_met"].isna().sum() < waiting  # deadlines passed


def test_the_first_surveys_and_events_of_a_warehouse_load_incrementally(sample_dir, tmp_path,
                                                                         monkeypatch):
    """A small load that brings the first surveys and status events creates their tables;
    the refresh must still equal a rebuild."""
    base = tmp_path / "base"
    base.mkdir()
    for name in ("tickets", "customers", "representatives"):
        shutil.copy(sample_dir / f"{name}.parquet", base / f"{name}.parquet")
    probe = Warehouse(tmp_path / "probe.duckdb")
    ingest(base, warehouse=probe)
    closed = probe.df("select ticket_id from tickets where status = 'closed' "
                      "order by ticket_id limit 2")["ticket_id"].tolist()
    stamp = probe.as_of().strftime("%Y-%m-%d %H:%M:%S")
    probe.close()
    batch = tmp_path / "batch"
    write_csv(batch, "tickets", [ticket("NEW1", stamp, "open", priority="high")])
    write_csv(batch, "feedback", [
        {"feedback_id": f"F{i}", "ticket_id": t, "submitted_at": stamp, "csat": 5,
         "comment": "Lovely."} for i, t in enumerate(closed)])
    write_csv(batch, "ticket_events", [
        {"ticket_id": "NEW1", "event_at": stamp, "status": "open", "rep_id": ""}])
    inc, _ = _incremental_and_rebuild(base, [batch], tmp_path, monkeypatch)
    assert len(inc["feedback_facts"]) == 2
    assert set(inc["column_stats"]["table_name"]) >= {"feedback", "ticket_events"}


def test_source_due_times_refreshed_incrementally_equal_a_rebuild(tmp_path, monkeypatch):
    """Tickets judged by the source's own due times: a small load that moves the data's
    "now" past a due time far beyond every policy target turns the flag as a rebuild does."""
    base = tmp_path / "base"
    rows = [ticket(f"T{i}", f"2024-01-{1 + i % 20:02d} 10:00:00", "closed",
                   first_response_at=f"2024-01-{1 + i % 20:02d} 11:00:00",
                   resolved_at=f"2024-01-{2 + i % 20:02d} 10:00:00", priority="normal")
            for i in range(40)]
    rows += [
        # old and unanswered, due long after any policy target: turns at the second load
        ticket("DUE1", "2024-01-01 10:00:00", "open", first_response_due_at="2024-02-10 00:00",
               resolution_due_at="2024-02-12 00:00"),
        # due after the second load's "now": stays without a verdict
        ticket("DUE2", "2024-01-01 10:00:00", "open", first_response_due_at="2024-06-01 00:00",
               resolution_due_at="2024-06-02 00:00"),
        ticket("DUE3", "2024-01-03 10:00:00", "in_progress",
               first_response_at="2024-01-03 10:30:00",
               first_response_due_at="2024-01-03 10:10:00"),
    ]
    write_csv(base, "tickets", rows)
    batch = tmp_path / "batch"
    write_csv(batch, "tickets", [ticket("NEW1", "2024-03-01 10:00:00", "open", priority="low",
                                        first_response_due_at="2024-03-01 12:00")])
    inc, full = _incremental_and_rebuild(base, [batch], tmp_path, monkeypatch)
    tickets = inc["tickets"].set_index("ticket_id")
    assert tickets.loc["DUE1", "sla_first_response_met"] == False  # noqa: E712
    assert tickets.loc["DUE1", "sla_resolution_met"] == False  # noqa: E712
    assert pd.isna(tickets.loc["DUE2", "sla_first_response_met"])
    assert tickets.loc["DUE3", "sla_first_response_met"] == False  # noqa: E712
    assert tickets["sla_from_source"].sum() == 4


def test_a_warehouse_without_the_newer_ticket_columns_still_loads(tmp_path):
    """A warehouse written before ``tags`` and the source due times existed takes a new
    load: the columns are added empty and the derived ones rebuilt."""
    import duckdb

    from cs_metrics.core.warehouse import SRC_VIEW_SQL

    db = tmp_path / "wh.duckdb"
    ingest(_folder(tmp_path, "a", 30), db=db)
    con = duckdb.connect(str(db))
    con.execute("drop view tickets_src")
    for column in ("tags", "first_response_due_at", "resolution_due_at", "sla_from_source"):
        con.execute(f"alter table tickets drop column {column}")
    # the source view as that version wrote it
    con.execute(SRC_VIEW_SQL.replace(" tags,", "").replace(
        ",\n    first_response_due_at, resolution_due_at", ""))
    con.close()
    batch = tmp_path / "b"
    write_csv(batch, "tickets", [ticket("N1", "2024-01-03 10:00:00", tags="vip, refund",
                                        first_response_due_at="2024-01-03 11:00:00")])
    ingest(batch, db=db)
    wh = Warehouse(db, read_only=True)
    try:
        rows = wh.df("select ticket_id, tags, sla_from_source from tickets order by ticket_id")
    finally:
        wh.close()
    assert len(rows) == 31
    new = rows.set_index("ticket_id").loc["N1"]
    assert list(new["tags"]) == ["refund", "vip"] and bool(new["sla_from_source"])
    assert rows["sla_from_source"].sum() == 1
