"""The command line as DATA_CONTRACT.md section 3 states it: outputs, sorting, exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cs_metrics.__main__ import main
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
    assert res.returncode == 2 and "not a folder" in res.stderr
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
    from cs_metrics.settings import load_settings

    tickets, feedback = reference.prepare(out, load_settings())
    want = reference.compute(tickets, feedback, metrics, ["channel"], None)
    assert got["channel"].tolist() == want["channel"].tolist()
    for m in metrics:
        # CSV carries ten significant digits
        assert got[m].to_numpy() == pytest.approx(want[m].to_numpy(dtype=float), rel=1e-8)
