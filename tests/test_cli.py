"""The command line as DATA_CONTRACT.md section 3 states it: outputs, sorting, exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from cs_metrics.cli.main import main
from tests import reference
from tests.conftest import REPO, ticket, write_csv


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cs_metrics", *args], cwd=REPO, capture_output=True, text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def cli_db(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli_src")
    write_csv(folder, "tickets", [
        ticket("A", "2024-01-01 09:00:00", "closed", channel="email", priority="high",
               first_response_at="2024-01-01 09:20:00", resolved_at="2024-01-01 13:00:00"),
        ticket("B", "2024-01-03 09:00:00", "closed", channel="chat", priority="low",
               first_response_at="2024-01-03 09:02:00", resolved_at="2024-01-03 10:00:00"),
        ticket("C", "2024-01-09 09:00:00", "open", channel="email", priority="low"),
        ticket("D", "2024-01-10 09:00:00", "in_progress", channel="chat",
               first_response_at="2024-01-10 10:00:00"),
        ticket("E", "2024-02-01 09:00:00", "closed", channel="phone",
               first_response_at="2024-02-01 09:01:00", resolved_at="2024-02-02 09:00:00"),
        ticket("X", "2024-01-01 09:00:00", "open", channel="email", is_test="true"),
    ])
    write_csv(folder, "feedback", [
        {"ticket_id": "A", "csat": 5, "nps": 10}, {"ticket_id": "B", "csat": 2, "nps": 3},
        {"ticket_id": "E", "csat": 4, "nps": 9},
    ])
    db = tmp_path_factory.mktemp("cli_db") / "wh.duckdb"
    res = run("ingest", str(folder), "--db", str(db))
    assert res.returncode == 0, res.stderr
    assert "tickets" in res.stdout and "data-quality score" in res.stdout
    return db


def test_query_csv_columns_sorting_and_period(cli_db):
    res = run("query", "--metrics", "ticket_count,avg_first_response_min", "--by", "channel",
              "--grain", "week", "--db", str(cli_db))
    assert res.returncode == 0, res.stderr
    df = pd.read_csv(io.StringIO(res.stdout), dtype={"period": str})
    assert list(df.columns) == ["channel", "period", "ticket_count", "avg_first_response_min"]
    # weeks start on Monday; 2024-01-01 is a Monday, 2024-02-01 a Thursday
    assert df[["channel", "period", "ticket_count"]].values.tolist() == [
        ["chat", "2024-01-01", 1], ["chat", "2024-01-08", 1],
        ["email", "2024-01-01", 1], ["email", "2024-01-08", 1],
        ["phone", "2024-01-29", 1],
    ]
    assert df["avg_first_response_min"].tolist()[:3] == [2.0, 60.0, 20.0]


def test_query_from_inclusive_to_exclusive_and_where(cli_db):
    res = run("query", "--metrics", "ticket_count,closed_count", "--from", "2024-01-03",
              "--to", "2024-02-01", "--where", "channel=chat", "--where", "channel=email",
              "--db", str(cli_db))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["ticket_count,closed_count", "3,1"]


def test_query_json_and_parquet(cli_db, tmp_path):
    res = run("query", "--metrics", "csat_avg,nps", "--by", "channel", "--format", "json",
              "--db", str(cli_db))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == [
        {"channel": "chat", "csat_avg": 2.0, "nps": -100.0},
        {"channel": "email", "csat_avg": 5.0, "nps": 100.0},
        {"channel": "phone", "csat_avg": 4.0, "nps": 100.0},
    ]
    out = tmp_path / "q.parquet"
    assert main(["query", "--metrics", "ticket_count", "--by", "status", "--format", "parquet",
                 "--out", str(out), "--db", str(cli_db)]) == 0
    df = pd.read_parquet(out)
    assert df.values.tolist() == [["closed", 3], ["in_progress", 1], ["open", 1]]


@pytest.mark.parametrize(
    "args, words",
    [
        (["query", "--metrics", "ticket_count,bogus"], ["Unknown metric 'bogus'", "csat_avg"]),
        (["query", "--metrics", "ticket_count", "--by", "planet"],
         ["Unknown dimension 'planet'", "customer_segment"]),
        (["query", "--metrics", "ticket_count", "--where", "planet=mars"], ["planet", "team"]),
        (["query", "--metrics", "ticket_count", "--from", "yesterday"], ["--from", "YYYY-MM-DD"]),
        (["query", "--metrics", "ticket_count", "--grain", "hour"], ["invalid choice"]),
        (["query", "--metrics", "ticket_count", "--format", "parquet"], ["--out"]),
    ],
)
def test_bad_usage_exits_2_with_one_sentence(cli_db, args, words):
    res = run(*args, "--db", str(cli_db))
    assert res.returncode == 2
    assert res.stdout == ""
    assert "Traceback" not in res.stderr
    for w in words:
        assert w in res.stderr


def test_missing_warehouse_and_missing_source(tmp_path):
    res = run("query", "--metrics", "ticket_count", "--db", str(tmp_path / "none.duckdb"))
    assert res.returncode == 2 and "no warehouse" in res.stderr
    res = run("ingest", str(tmp_path / "nothing"), "--db", str(tmp_path / "w.duckdb"))
    assert res.returncode == 2 and "nothing does not exist" in res.stderr
    assert not (tmp_path / "w.duckdb").exists()


def test_fatal_mapping_error_exits_2_before_writing(tmp_path):
    (tmp_path / "e.csv").write_text("Id,State\n1,open\n")
    (tmp_path / "m.toml").write_text(
        '[tickets]\nsource = "e.csv"\n[tickets.columns]\nticket_id = "Id"\n'
        'created_at = "Opened"\nstatus = "State"\n'
    )
    db = tmp_path / "wh.duckdb"
    res = run("ingest", str(tmp_path), "--mapping", str(tmp_path / "m.toml"), "--db", str(db))
    assert res.returncode == 2
    assert "m.toml" in res.stderr and "tickets" in res.stderr and "created_at" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not db.exists()


def test_debug_shows_traceback(tmp_path):
    res = run("--debug", "query", "--metrics", "x", "--db", str(tmp_path / "none.duckdb"))
    assert res.returncode == 2 and "Traceback" in res.stderr


def test_generate_ingest_query_equals_pandas(tmp_path):
    out = tmp_path / "gen"
    res = run("generate", "--out", str(out), "--tickets", "3000", "--days", "60", "--seed", "3",
              "--end", "2025-06-01", "--format", "csv")
    assert res.returncode == 0, res.stderr
    db = tmp_path / "wh.duckdb"
    assert run("ingest", str(out), "--db", str(db)).returncode == 0
    metrics = ["ticket_count", "median_first_response_min", "sla_first_response_pct", "csat_pct"]
    res = run("query", "--metrics", ",".join(metrics), "--by", "channel", "--db", str(db))
    assert res.returncode == 0, res.stderr
    got = pd.read_csv(io.StringIO(res.stdout))
    from cs_metrics.core.settings import load_settings

    tickets, feedback = reference.prepare(out, load_settings())
    want = reference.compute(tickets, feedback, metrics, ["channel"], None)
    assert got["channel"].tolist() == want["channel"].tolist()
    for m in metrics:
        # CSV carries ten significant digits
        assert got[m].to_numpy() == pytest.approx(want[m].to_numpy(dtype=float), rel=1e-8)


# --- misuse: one sentence and exit 2, never a traceback -------------------------------------

EXPORT = "Id,Opened,State,Who\n1,2024-01-01 10:00:00,Open,José\n2,2024-01-01 11:00:00,Done,Ann\n"
MAPPING_HEAD = ('[tickets]\nsource = "e.csv"\n[tickets.columns]\nticket_id = "Id"\n'
                'created_at = "Opened"\nstatus = "State"\n')


def _one_sentence(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    "values, words",
    [
        ("[tickets.values.status]\nopen = 3\n", ["table tickets, column status", "open = 3",
                                                  "must be a list"]),
        ("[tickets.values.status]\nopen = [[\"a\"]]\n", ["column status", "must be a list"]),
        ("[tickets.values]\nstatus = \"x\"\n", ["column status", "values must map"]),
        ("values = 3\n", ["table tickets", "values must be a [tickets.values.<column>]"]),
    ],
    ids=["number", "nested-list", "string", "not-a-table"],
)
def test_values_that_are_not_lists_are_one_sentence(tmp_path, capsys, values, words):
    (tmp_path / "e.csv").write_text(EXPORT)
    body = MAPPING_HEAD.replace("[tickets.columns]", values + "[tickets.columns]") \
        if values.startswith("values") else MAPPING_HEAD + values
    (tmp_path / "m.toml").write_text(body)
    db = tmp_path / "wh.duckdb"
    assert main(["ingest", str(tmp_path), "--mapping", str(tmp_path / "m.toml"),
                 "--db", str(db)]) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert str(tmp_path / "m.toml") in line
    for w in words:
        assert w in line
    assert not db.exists()


def _canonical(tmp_path: Path, data: bytes | None = None) -> Path:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    (folder / "tickets.csv").write_bytes(data if data is not None else
                                         b"ticket_id,created_at,status\nA,2024-01-01,open\n")
    return folder


def test_misuse_of_ingest_paths_is_one_sentence(tmp_path, capsys):
    src = _canonical(tmp_path)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    cases = [
        (["--mapping", str(tmp_path / "adir")], ["adir is a folder", "--mapping"]),
        (["--rejects", str(tmp_path / "adir")], ["rejects file", "is a folder",
                                                 "Nothing was loaded"]),
        (["--rejects", str(tmp_path / "afile" / "r.csv")], ["afile is a file",
                                                             "Nothing was loaded"]),
        (["--encoding", "klingon"], ["--encoding", "'klingon'", "not a known text encoding"]),
    ]
    for extra, words in cases:
        db = tmp_path / "wh.duckdb"
        assert main(["ingest", str(src), "--db", str(db), *extra]) == 2, extra
        line = _one_sentence(capsys.readouterr().err)
        for w in words:
            assert w in line, (extra, line)
        assert not db.exists(), extra
    # a warehouse path under a file
    assert main(["ingest", str(src), "--db", str(tmp_path / "afile" / "wh.duckdb")]) == 2
    assert "afile" in _one_sentence(capsys.readouterr().err)


@pytest.mark.parametrize(
    "data, words",
    [
        (bytes(range(256)) * 64, ["tickets.csv is not CSV text", "NUL bytes"]),
        (b"", ["tickets.csv is empty"]),
        (b"ticket_id,created_at,status\n", ["Nothing to load", "tickets.csv"]),
        ("ticket_id,created_at,status,subject\nA,2024-01-01,open,Jos\xe9\n".encode("latin-1"),
         ["not UTF-8", "line 2", 'encoding = "latin-1"', "--encoding latin-1"]),
    ],
    ids=["binary", "empty", "header-only", "latin-1"],
)
def test_bad_source_files_are_one_sentence_naming_the_file(tmp_path, capsys, data, words):
    src = _canonical(tmp_path, data)
    assert main(["ingest", str(src), "--db", str(tmp_path / "wh.duckdb")]) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert str(src / "tickets.csv") in line
    for w in words:
        assert w in line


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root reads any file, whatever its mode")
def test_an_unreadable_file_is_one_sentence(tmp_path, capsys):
    src = _canonical(tmp_path)
    (src / "tickets.csv").chmod(0)
    try:
        assert main(["ingest", str(src), "--db", str(tmp_path / "wh.duckdb")]) == 2
    finally:
        (src / "tickets.csv").chmod(0o644)
    line = _one_sentence(capsys.readouterr().err)
    assert "tickets.csv" in line and "permission denied" in line


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_rejects_that_cannot_be_written_after_the_load_say_it_committed(tmp_path):
    src = _canonical(tmp_path, b"ticket_id,created_at,status\nA,2024-01-01,open\n"
                               b"B,2024-01-01,waiting\n")
    db = tmp_path / "wh.duckdb"
    # a folder exists there, but no file can be created in it: the write fails after commit
    res = run("ingest", str(src), "--db", str(db), "--rejects", "/proc/self/rejects.csv")
    assert res.returncode == 2
    line = _one_sentence(res.stderr)
    assert "The load committed (1 rows loaded)" in line
    assert "/proc/self/rejects.csv" in line and "No such file or directory" in line
    assert "--rejects with a writable path" in line
    con = duckdb.connect(str(db), read_only=True)
    try:  # the load did commit: the good row and the listed reject are there
        assert con.execute("select ticket_id from tickets_src").fetchall() == [("A",)]
        assert con.execute("select reason from rejects").fetchall() == [("unknown_status",)]
    finally:
        con.close()


def test_other_commands_misuse_paths_and_dates(cli_db, tmp_path, capsys):
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    cases = [
        (["query", "--metrics", "ticket_count", "--db", str(cli_db),
          "--out", str(tmp_path / "adir")], ["Is a directory", "adir"]),
        (["query", "--metrics", "ticket_count", "--db", str(cli_db),
          "--out", str(tmp_path / "none" / "q.csv")], ["No such file", "q.csv"]),
        (["query", "--metrics", "ticket_count", "--db", str(cli_db), "--format", "parquet",
          "--out", str(tmp_path / "adir")], ["adir"]),
        (["audit", "--db", str(cli_db), "--out", str(tmp_path / "adir")], ["adir"]),
        (["alerts", "--no-notify", "--db", str(cli_db), "--settings", str(tmp_path / "adir")],
         ["Is a directory", "adir"]),
        (["alerts", "--no-notify", "--db", str(tmp_path / "afile" / "wh.duckdb")], ["afile"]),
        (["generate", "--out", str(tmp_path / "g"), "--tickets", "10", "--days", "2",
          "--end", "0001-01-01"], ["Cannot generate", "out of range"]),
        (["generate", "--out", str(tmp_path / "afile"), "--tickets", "10", "--days", "2"],
         ["afile"]),
        (["quality", "--db", str(tmp_path / "adir")], ["Cannot open the warehouse"]),
        (["alerts", "--no-notify", "--db", str(tmp_path / "typo.duckdb")],
         ["There is no warehouse", "typo.duckdb"]),
        (["query", "--metrics", "ticket_count", "--db", str(cli_db), "--as", " "],
         ["--as is empty"]),
    ]
    for args, words in cases:
        assert main(args) == 2, args
        line = _one_sentence(capsys.readouterr().err)
        for w in words:
            assert w in line, (args, line)
    assert not (tmp_path / "typo.duckdb").exists()  # a mistyped --db leaves nothing behind


def test_encoding_flag_reads_a_latin1_folder(tmp_path):
    src = _canonical(tmp_path, "ticket_id,created_at,status,subject\n"
                               "A,2024-01-01,open,José\nB,2024-01-01,open,Müller\n"
                               .encode("latin-1"))
    db = tmp_path / "wh.duckdb"
    res = run("ingest", str(src), "--db", str(db), "--encoding", "latin-1")
    assert res.returncode == 0, res.stderr
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("select subject from tickets_src order by 1").fetchall() == [
            ("José",), ("Müller",)]
    finally:
        con.close()


def test_rejects_of_one_reason_past_the_cap_are_summarised(tmp_path):
    rows = "".join(f"T{i},2024-01-01 10:00:00,waiting\n" for i in range(10_005))
    src = _canonical(tmp_path, ("ticket_id,created_at,status\nG,2024-01-01,open\n" + rows)
                     .encode())
    db, out = tmp_path / "wh.duckdb", tmp_path / "rejects.csv"
    res = run("ingest", str(src), "--db", str(db), "--rejects", str(out))
    assert res.returncode == 0, res.stderr
    assert "rejected 10,005: unknown_status" in res.stdout
    assert (f"{out} (10,000 of 10,005: the first 10,000 of each reason in each file are "
            "listed, all are counted)") in res.stdout
    listed = pd.read_csv(out)
    assert len(listed) == 10_000 and listed["source_row"].tolist()[:2] == [2, 3]
    res = run("quality", "--db", str(db))
    assert res.returncode == 0, res.stderr
    assert "10005" in res.stdout and "10000" in res.stdout and "are listed" in res.stdout
