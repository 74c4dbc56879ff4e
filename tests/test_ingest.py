from __future__ import annotations

import json
import textwrap
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.loader import REJECT_REASONS, ingest
from tests.conftest import ticket, write_csv


def _rows(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


GOOD = ticket("G1", "2024-01-01 09:00:00", "closed", first_response_at="2024-01-01 09:30:00",
              resolved_at="2024-01-01 12:00:00", priority="high")

# One bad row per reject reason, each beside a good row that must still load.
REJECT_CASES = {
    "missing_required_value": ("tickets", [ticket("", "2024-01-01 10:00:00")], "ticket_id"),
    "unparseable_timestamp": ("tickets", [ticket("B1", "31/31/2024 99:00")], "created_at"),
    "unparseable_value": ("tickets", [ticket("B1", contacts="two")], "contacts"),
    "unknown_status": ("tickets", [ticket("B1", status="waiting")], "status"),
    "unknown_priority": ("tickets", [ticket("B1", priority="asap")], "priority"),
    "response_before_created": (
        "tickets", [ticket("B1", "2024-01-02 10:00:00", first_response_at="2024-01-01 10:00:00")],
        "first_response_at"),
    "resolved_before_created": (
        "tickets", [ticket("B1", "2024-01-02 10:00:00", "closed",
                           resolved_at="2024-01-01 10:00:00")], "resolved_at"),
    "duplicate_key": ("tickets", [ticket("G1", "2024-01-05 10:00:00")], "ticket_id"),
    "score_out_of_range": ("feedback", [{"ticket_id": "G1", "csat": 6}], "csat"),
    "unknown_severity": (
        "outages", [{"outage_id": "O1", "started_at": "2024-01-01 00:00:00",
                     "severity": "apocalyptic"}], "severity"),
    "ended_before_started": (
        "outages", [{"outage_id": "O1", "started_at": "2024-01-02 00:00:00",
                     "ended_at": "2024-01-01 00:00:00", "severity": "minor"}], "ended_at"),
    "implausible_timestamp": ("tickets", [ticket("B1", "9999-12-31 10:00:00")], "created_at"),
    "negative_value": ("tickets", [ticket("B1", handle_time_s=-60)], "handle_time_s"),
}


def test_every_reject_reason_has_a_case():
    assert set(REJECT_CASES) == set(REJECT_REASONS)


@pytest.mark.parametrize("reason", sorted(REJECT_CASES))
def test_reject_reason_keeps_row_and_loads_good_rows(tmp_path, reason):
    table, bad_rows, column = REJECT_CASES[reason]
    folder = tmp_path / "src"
    if table == "tickets":
        write_csv(folder, "tickets", [GOOD, *bad_rows])
    else:
        write_csv(folder, "tickets", [GOOD])
        good_other = {
            "feedback": {"ticket_id": "G1", "csat": 5},
            "outages": {"outage_id": "O0", "started_at": "2024-01-01 00:00:00",
                        "severity": "major"},
        }[table]
        write_csv(folder, table, [good_other, *bad_rows])
    db = tmp_path / "wh.duckdb"
    report = ingest(folder, db=db)
    rep = report.table(table)
    assert dict(rep.rejected) == {reason: 1}
    assert rep.loaded == 1
    stored = table
    assert _rows(db, f"select count(*) from {stored}") == [(1,)]
    rejects = _rows(db, "select table_name, source_row, reason, column_name, raw from rejects")
    assert len(rejects) == 1
    tname, source_row, got_reason, got_column, raw = rejects[0]
    assert (tname, source_row, got_reason, got_column) == (table, 2, reason, column)
    # the whole source row is kept, so nothing is lost
    raw_row = json.loads(raw)
    for key, value in bad_rows[0].items():
        if value != "":
            assert str(raw_row[key]).removesuffix(".0") == str(value)
    csv_rows = pd.read_csv(report.rejects_csv)
    assert csv_rows[["table_name", "source_row", "reason"]].values.tolist() == [
        [table, 2, reason]
    ]
    assert REJECT_REASONS[reason] in csv_rows["detail"].iloc[0]


def test_resolved_at_on_open_ticket_is_cleared_with_warning(tmp_path):
    folder = tmp_path / "src"
    write_csv(folder, "tickets", [GOOD, ticket("W1", status="open",
                                               resolved_at="2024-01-01 11:00:00")])
    db = tmp_path / "wh.duckdb"
    report = ingest(folder, db=db)
    assert dict(report.table("tickets").warnings) == {"resolved_at_cleared": 1}
    assert report.table("tickets").rejected == ()
    assert _rows(db, "select resolved_at from tickets where ticket_id = 'W1'") == [(None,)]


def test_ingest_twice_is_idempotent_and_updates_by_id(tmp_path):
    folder = tmp_path / "src"
    write_csv(folder, "tickets", [GOOD, ticket("T2"), ticket("B", status="bogus")])
    write_csv(folder, "feedback", [{"ticket_id": "G1", "csat": 4}, {"ticket_id": "G1", "csat": 2}])
    write_csv(folder, "ticket_events", [
        {"ticket_id": "G1", "event_at": "2024-01-01 09:00:00", "status": "open"},
        {"ticket_id": "G1", "event_at": "2024-01-01 12:00:00", "status": "closed"},
    ])
    db = tmp_path / "wh.duckdb"
    ingest(folder, db=db)
    snapshot = [
        _rows(db, f"select * from {t} order by all")
        for t in ("tickets", "feedback", "ticket_events", "rejects")
    ][:3]
    ingest(folder, db=db)
    again = [_rows(db, f"select * from {t} order by all")
             for t in ("tickets", "feedback", "ticket_events")]
    assert again == snapshot
    assert _rows(db, "select count(*) from rejects") == [(1,)]
    # a later export with a changed status replaces the ticket rather than adding one
    write_csv(folder, "tickets", [ticket("T2", status="in_progress",
                                         first_response_at="2024-01-01 10:05:00")])
    (folder / "feedback.csv").unlink()
    (folder / "ticket_events.csv").unlink()
    ingest(folder, db=db)
    assert _rows(db, "select ticket_id, status from tickets order by 1") == [
        ("G1", "closed"), ("T2", "in_progress")
    ]


def test_replace_empties_the_warehouse(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_csv(a, "tickets", [GOOD])
    write_csv(b, "tickets", [ticket("X1")])
    db = tmp_path / "wh.duckdb"
    ingest(a, db=db)
    ingest(b, db=db, replace=True)
    assert _rows(db, "select ticket_id from tickets") == [("X1",)]


def _mapping(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "map.toml"
    path.write_text(textwrap.dedent(text))
    return path


EXPORT = """Case Nr;Opened;State;Prio;Score;Channel Name
1;03/01/2024 01:30 PM;Solved;P1;5;E-Mail
2;03/02/2024 09:00 AM;New;P3;;Phone
3;13/45/2024 09:00 AM;New;P3;;Phone
4;03/03/2024 09:00 AM;Parked;P3;;Phone
"""


def test_mapping_expressions_values_timezone_and_delimiter(tmp_path):
    (tmp_path / "export.txt").write_text(EXPORT)
    mapping = _mapping(tmp_path, """
        [tickets]
        source = "export.txt"
        format = "csv"
        delimiter = ";"
        timezone = "America/New_York"
        [tickets.columns]
        ticket_id = "'CASE-' || \\"Case Nr\\""
        created_at = "strptime(Opened, '%m/%d/%Y %I:%M %p')"
        status = "State"
        priority = "Prio"
        channel = "Channel Name"
        [tickets.values.status]
        open = ["New"]
        closed = ["Solved"]
        [tickets.values.priority]
        urgent = ["P1"]
        normal = ["P3"]
        [tickets.values.channel]
        email = ["E-Mail"]
        [feedback]
        source = "export.txt"
        format = "csv"
        delimiter = ";"
        [feedback.columns]
        ticket_id = "'CASE-' || \\"Case Nr\\""
        csat = "Score"
    """)
    db = tmp_path / "wh.duckdb"
    report = ingest(tmp_path, mapping=mapping, db=db)
    assert dict(report.table("tickets").rejected) == {
        "unparseable_timestamp": 1, "unknown_status": 1
    }
    rows = _rows(db, "select ticket_id, created_at, status, priority, channel from tickets "
                     "order by 1")
    # 1:30 PM in New York (EST, UTC-5) is 18:30 UTC
    assert [(r[0], str(r[1]), r[2], r[3], r[4]) for r in rows] == [
        ("CASE-1", "2024-03-01 18:30:00", "closed", "urgent", "email"),
        ("CASE-2", "2024-03-02 14:00:00", "open", "normal", "Phone"),
    ]
    assert _rows(db, "select source_row, reason, value from rejects order by 1") == [
        (3, "unparseable_timestamp", "13/45/2024 09:00 AM"),
        (4, "unknown_status", "Parked"),
    ]
    assert _rows(db, "select feedback_id, csat from feedback") == [("CASE-1:1", 5)]


@pytest.mark.parametrize(
    "body, words",
    [
        ("""[tickets]\nsource = "e.csv"\n[tickets.columns]\nticket_id = "Id"\n"""
         """created_at = "Nope"\nstatus = "State"\n""", ["table tickets", "created_at", "Nope"]),
        ("""[tickets]\nsource = "e.csv"\n[tickets.columns]\nticket_id = "Id"\n"""
         """status = "State"\n""", ["table tickets", "created_at", "not mapped"]),
        ("""[tickets]\nsource = "e.csv"\n[tickets.columns]\nticket_id = "Id"\n"""
         """created_at = "strptime(Opened, "\nstatus = "State"\n""",
         ["table tickets", "column created_at"]),
        ("""[tickets]\nsource = "missing.csv"\n[tickets.columns]\nticket_id = "Id"\n""",
         ["table tickets", "missing.csv", "matches no file"]),
        ("""[tickets]\nsource = "e.csv"\n[tickets.columns]\nticket_id = "Id"\n"""
         """created_at = "Opened"\nstatus = "State"\nwho = "Agent"\n""",
         ["table tickets", "who", "not columns of tickets"]),
        ("""[ticketz]\nsource = "e.csv"\n""", ["ticketz", "not canonical tables"]),
    ],
)
def test_fatal_mapping_errors_name_file_table_column_and_write_nothing(tmp_path, body, words):
    (tmp_path / "e.csv").write_text("Id,Opened,State\n1,2024-01-01,open\n")
    mapping = _mapping(tmp_path, body)
    db = tmp_path / "wh.duckdb"
    with pytest.raises(CsMetricsError) as err:
        ingest(tmp_path, mapping=mapping, db=db)
    message = str(err.value)
    assert str(mapping) in message
    for word in words:
        assert word in message
    assert not db.exists()


def test_parquet_jsonl_and_glob_sources(tmp_path):
    folder = tmp_path / "canon"
    folder.mkdir()
    pd.DataFrame([{"ticket_id": "P1", "created_at": pd.Timestamp("2024-01-01 10:00"),
                   "status": "open"}]).to_parquet(folder / "tickets.parquet")
    (folder / "feedback.jsonl").write_text('{"ticket_id": "P1", "csat": 3, "comment": "ok"}\n')
    db = tmp_path / "wh.duckdb"
    ingest(folder, db=db)
    assert _rows(db, "select ticket_id, status from tickets") == [("P1", "open")]
    assert _rows(db, "select csat, comment from feedback") == [(3, "ok")]

    parts = tmp_path / "parts"
    write_csv(parts, "a", [{"id": "A1", "at": "2024-01-01 00:00:00", "st": "open"}])
    write_csv(parts, "b", [{"id": "B1", "at": "2024-01-02 00:00:00", "st": "open"},
                           {"id": "B2", "at": "bad", "st": "open"}])
    mapping = _mapping(parts, """
        [tickets]
        source = "*.csv"
        [tickets.columns]
        ticket_id = "id"
        created_at = "at"
        status = "st"
    """)
    db2 = tmp_path / "wh2.duckdb"
    report = ingest(parts, mapping=mapping, db=db2)
    assert report.table("tickets").loaded == 2
    rows = _rows(db2, "select source_file, source_row from rejects")
    assert [(Path(f).name, r) for f, r in rows] == [("b.csv", 2)]


def test_dimension_rows_identical_are_merged_conflicting_are_rejected(tmp_path):
    folder = tmp_path / "src"
    write_csv(folder, "tickets", [GOOD])
    write_csv(folder, "representatives", [
        {"rep_id": "R1", "name": "Ann", "team": "A"},
        {"rep_id": "R1", "name": "Ann", "team": "A"},
        {"rep_id": "R1", "name": "Ann", "team": "B"},
    ])
    report = ingest(folder, db=tmp_path / "wh.duckdb")
    rep = report.table("representatives")
    assert (rep.loaded, rep.collapsed, dict(rep.rejected)) == (1, 1, {"duplicate_key": 1})


def test_lock_held_by_another_process_gives_a_clear_message(tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "src"
    write_csv(folder, "tickets", [GOOD])
    db = tmp_path / "wh.duckdb"
    ingest(folder, db=db)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import duckdb, time; c = duckdb.connect({str(db)!r}); print('ready', flush=True); "
         "time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(CsMetricsError) as err:
            Warehouse(db)
        assert "held open by process" in str(err.value)
        assert str(holder.pid) in str(err.value)
    finally:
        holder.kill()
        holder.wait()


def test_a_row_without_a_key_does_not_empty_the_stored_table(tmp_path):
    """A null id in a new load must not match (and drop) every stored row."""
    db = tmp_path / "wh.duckdb"
    write_csv(tmp_path / "a", "tickets", [ticket("T1"), ticket("T2")])
    write_csv(tmp_path / "a", "feedback", [
        {"feedback_id": "F1", "ticket_id": "T1", "csat": 5},
        {"feedback_id": "F2", "ticket_id": "T2", "csat": 4},
    ])
    ingest(tmp_path / "a", db=db)
    write_csv(tmp_path / "b", "tickets", [ticket("T3")])
    write_csv(tmp_path / "b", "feedback", [{"feedback_id": "", "ticket_id": "T3", "csat": 3}])
    ingest(tmp_path / "b", db=db)
    wh = Warehouse(db, read_only=True)
    try:
        rows = wh.df("select ticket_id from feedback order by ticket_id")
    finally:
        wh.close()
    assert rows["ticket_id"].tolist() == ["T1", "T2", "T3"]


# --- implausible and negative values -------------------------------------------------------

def _soon(days: float) -> str:
    """A moment ``days`` from now, naive UTC like every stored timestamp."""
    from datetime import datetime, timedelta, timezone

    moment = datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(days=days)
    return moment.isoformat(sep=" ", timespec="seconds")


# Outside the default window (1990-01-01 to a day after the load), each one parseable.
IMPLAUSIBLE = ("0001-01-01 00:00:00", "1989-12-31 23:59:59", "9999-12-31 23:59:59",
               "infinity", "10000-01-01 00:00:00")

# (table, column, a good row of the table, its other tables): every timestamp column.
TIMESTAMP_COLUMNS = {
    ("tickets", "created_at"): ticket("T", "2024-01-01 10:00:00"),
    ("tickets", "first_response_at"): ticket("T", "2024-01-01 10:00:00",
                                             first_response_at="2024-01-01 10:30:00"),
    ("tickets", "resolved_at"): ticket("T", "2024-01-01 10:00:00", "closed",
                                       resolved_at="2024-01-01 12:00:00"),
    ("ticket_events", "event_at"): {"ticket_id": "G1", "event_at": "2024-01-01 10:00:00",
                                    "status": "open"},
    ("feedback", "submitted_at"): {"ticket_id": "G1", "submitted_at": "2024-01-02 10:00:00",
                                   "csat": 4},
    ("outages", "started_at"): {"outage_id": "O", "started_at": "2024-01-01 00:00:00",
                                "severity": "minor"},
    ("outages", "ended_at"): {"outage_id": "O", "started_at": "2024-01-01 00:00:00",
                              "ended_at": "2024-01-01 06:00:00", "severity": "minor"},
}


def _id_column(table: str) -> str | None:
    return {"tickets": "ticket_id", "outages": "outage_id", "feedback": "feedback_id"}.get(table)


@pytest.mark.parametrize(("table", "column"), sorted(TIMESTAMP_COLUMNS))
def test_timestamps_outside_the_plausible_window_are_rejected(tmp_path, table, column):
    base = TIMESTAMP_COLUMNS[(table, column)]
    key = _id_column(table)
    bad_values = [*IMPLAUSIBLE, _soon(2)]  # two days ahead: past the default one-day margin
    rows = [{**base, **({key: "GOOD"} if key else {})}]
    for i, value in enumerate(bad_values):
        rows.append({**base, **({key: f"BAD{i}"} if key else {}), column: value})
    folder = tmp_path / "src"
    if table == "tickets":
        write_csv(folder, "tickets", rows)
    else:
        write_csv(folder, "tickets", [GOOD])
        write_csv(folder, table, rows)
    db = tmp_path / "wh.duckdb"
    report = ingest(folder, db=db)
    assert dict(report.table(table).rejected) == {"implausible_timestamp": len(bad_values)}
    assert report.table(table).loaded == 1
    rejects = _rows(db, "select table_name, column_name, value, source_row from rejects "
                        "order by source_row")
    assert rejects == [(table, column, v, i + 2) for i, v in enumerate(bad_values)]
    # nothing implausible is stored: the data's clock stays at the good rows
    stored = _rows(db, f"select min({column}), max({column}) from {table}")[0]
    assert str(stored[0]).startswith("2024-01-0") and str(stored[1]).startswith("2024-01-0")
    assert Warehouse(db, read_only=True).as_of().year == 2024


def test_the_window_edges_load_and_the_sentence_names_the_setting(tmp_path):
    folder = tmp_path / "src"
    write_csv(folder, "tickets", [ticket("EARLY", "1990-01-01 00:00:00"),
                                  ticket("NOW", _soon(-1 / 1440)),
                                  ticket("SOON", _soon(0.5)),  # within the day's margin
                                  ticket("LATE", "1989-12-31 23:59:59")])
    report = ingest(folder, db=tmp_path / "wh.duckdb")
    assert report.table("tickets").loaded == 3
    detail = pd.read_csv(report.rejects_csv)["detail"].iloc[0]
    assert "[ingest]" in detail and "1990-01-01" in detail and "1989-12-31 23:59:59" in detail


def test_hired_at_goes_back_to_earliest_hired_not_past_the_window(tmp_path):
    folder = tmp_path / "src"
    write_csv(folder, "tickets", [GOOD])
    write_csv(folder, "representatives", [
        {"rep_id": "R1", "hired_at": "1950-01-01"},  # before the tickets' window: fine
        {"rep_id": "R2", "hired_at": "1949-12-31"},
        {"rep_id": "R3", "hired_at": _soon(3)[:10]},
        {"rep_id": "R4", "hired_at": "0001-01-01"},
    ])
    db = tmp_path / "wh.duckdb"
    report = ingest(folder, db=db)
    assert dict(report.table("representatives").rejected) == {"implausible_timestamp": 3}
    assert _rows(db, "select rep_id, hired_at from representatives") == [
        ("R1", pd.Timestamp("1950-01-01").date())]


def test_typed_parquet_timestamps_are_checked_too(tmp_path):
    folder = tmp_path / "canon"
    folder.mkdir()
    con = duckdb.connect()
    con.execute(
        f"copy (select * from (values ('P1', timestamp '2024-01-01 10:00', 'open', 5), "
        f"('P2', timestamp '9999-12-31 10:00', 'open', 5), "
        f"('P3', timestamp '0001-01-01 10:00', 'open', 5), "
        f"('P4', timestamp '2024-01-01 10:00', 'open', -5)) "
        f"v(ticket_id, created_at, status, contacts)) to '{folder / 'tickets.parquet'}'")
    con.close()
    db = tmp_path / "wh.duckdb"
    report = ingest(folder, db=db)
    assert dict(report.table("tickets").rejected) == {"implausible_timestamp": 2,
                                                       "negative_value": 1}
    assert _rows(db, "select ticket_id from tickets") == [("P1",)]
    values = _rows(db, "select value from rejects order by source_row")
    assert values == [("9999-12-31 10:00:00",), ("0001-01-01 10:00:00",), ("-5",)]


def test_a_local_time_that_lands_past_year_9999_is_rejected_not_fatal(tmp_path):
    """New York's 23:00 on 9999-12-31 is year 10000 in UTC: one rejected row, not a failed
    load (Python cannot even hold that moment)."""
    folder = tmp_path / "src"
    write_csv(folder, "export", [{"id": "A", "at": "2024-01-01 10:00:00"},
                                 {"id": "B", "at": "9999-12-31 23:00:00"}])
    mapping = _mapping(folder, """
        [tickets]
        source = "export.csv"
        timezone = "America/New_York"
        [tickets.columns]
        ticket_id = "id"
        created_at = "at"
        status = "'open'"
    """)
    db = tmp_path / "wh.duckdb"
    report = ingest(folder, mapping=mapping, db=db)
    assert dict(report.table("tickets").rejected) == {"implausible_timestamp": 1}
    assert _rows(db, "select ticket_id, created_at from tickets") == [
        ("A", pd.Timestamp("2024-01-01 15:00").to_pydatetime())]


@pytest.mark.parametrize(("table", "column"), [
    ("tickets", "contacts"), ("tickets", "reopened_count"), ("tickets", "handle_time_s"),
    ("outages", "radius_km"),
])
def test_negative_counts_durations_and_distances_are_rejected(tmp_path, table, column):
    folder = tmp_path / "src"
    if table == "tickets":
        write_csv(folder, "tickets", [ticket("ZERO", **{column: 0}),
                                      ticket("NEG", **{column: -1})])
    else:
        write_csv(folder, "tickets", [GOOD])
        write_csv(folder, "outages", [
            {"outage_id": "ZERO", "started_at": "2024-01-01", "severity": "minor", column: 0},
            {"outage_id": "NEG", "started_at": "2024-01-01", "severity": "minor",
             column: -0.5}])
    db = tmp_path / "wh.duckdb"
    report = ingest(folder, db=db)
    assert dict(report.table(table).rejected) == {"negative_value": 1}
    key = _id_column(table)
    assert _rows(db, f"select {key}, {column} from {table}") == [("ZERO", 0)]
    assert _rows(db, "select column_name, source_row from rejects") == [(column, 2)]
    # no negative handle time reaches a figure: AHT is the loaded rows' only
    if column == "handle_time_s":
        from cs_metrics.metrics.registry import query

        wh = Warehouse(db, read_only=True)
        try:
            assert query(wh, ["aht_min"])["aht_min"].tolist() == [0.0]
        finally:
            wh.close()


def _settings(tmp_path: Path, body: str):
    from cs_metrics.core.settings import load_settings

    path = tmp_path / "settings.toml"
    path.write_text(textwrap.dedent(body))
    return load_settings(path)


def test_the_window_comes_from_the_settings(tmp_path):
    folder = tmp_path / "src"
    write_csv(folder, "tickets", [ticket("A", "2023-12-31 23:59:59"),
                                  ticket("B", "2024-01-01 00:00:00"),
                                  ticket("C", "2024-06-30 23:59:59"),
                                  ticket("D", "2024-07-01 00:00:00")])
    fixed = _settings(tmp_path, """
        [ingest]
        earliest = 2024-01-01   # a TOML date works as well as a string
        latest = "2024-06-30"
    """)
    db = tmp_path / "wh.duckdb"
    report = ingest(folder, db=db, settings=fixed)
    assert dict(report.table("tickets").rejected) == {"implausible_timestamp": 2}
    assert _rows(db, "select ticket_id from tickets order by 1") == [("B",), ("C",)]
    # latest = 0: nothing after the moment of the load
    write_csv(folder, "tickets", [ticket("P", _soon(-0.01)), ticket("F", _soon(0.01))])
    now_only = _settings(tmp_path, "[ingest]\nlatest = 0\n")
    report = ingest(folder, db=tmp_path / "wh2.duckdb", settings=now_only)
    assert dict(report.table("tickets").rejected) == {"implausible_timestamp": 1}


@pytest.mark.parametrize(("body", "words"), [
    ('earliest = "1990-13-01"', ["ingest.earliest", "YYYY-MM-DD", "'1990-13-01'"]),
    ("earliest = 1990", ["ingest.earliest", "1990"]),
    ('earliest = "0001-01-01"', ["ingest.earliest", "1900-01-01", "2199-12-31"]),
    ("earliest = 1990-01-01T00:00:00", ["ingest.earliest", "YYYY-MM-DD"]),
    ('earliest = "2190-01-01"', ["ingest.earliest", "after today"]),
    ("latest = -1", ["ingest.latest", "0 to 3650"]),
    ("latest = 5000", ["ingest.latest", "0 to 3650"]),
    ("latest = true", ["ingest.latest", "True"]),
    ('latest = "1980-01-01"', ["ingest.latest", "before ingest.earliest"]),
    ('latest = "9999-12-31"', ["ingest.latest", "2199-12-31"]),
    ('earliest_hired = "2000-01-01"', ["ingest.earliest_hired", "on or before"]),
    ('oldest = "2000-01-01"', ["[ingest]", "unknown keys", "oldest"]),
])
def test_bad_ingest_settings_say_which_key_and_why(tmp_path, body, words):
    with pytest.raises(CsMetricsError) as err:
        _settings(tmp_path, f"[ingest]\n{body}\n")
    message = str(err.value)
    assert "settings.toml" in message
    for word in words:
        assert word in message, message
