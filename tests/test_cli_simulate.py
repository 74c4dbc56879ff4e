"""`python -m cs_metrics simulate-outage`: per-hour projections as CSV or JSON, the same
numbers as the library, and one-sentence errors with exit code 2."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cs_metrics.analysis.whatif import TAIL_HOURS, OutageScenario, simulate_outage
from cs_metrics.cli.main import main
from cs_metrics.cli.simulate_outage import SIMULATE_COLUMNS
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.loader import ingest
from tests.conftest import REPO

START = "2025-03-03T14:00"  # the sample ends on 2025-03-01


@pytest.fixture(scope="module")
def db(sample_dir, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli_simulate") / "wh.duckdb"
    ingest(sample_dir, db=path)
    return path


@pytest.fixture(scope="module")
def city(db) -> str:
    wh = Warehouse(db, read_only=True)
    name = wh.df("select city from customers group by city order by count(*) desc, city "
                 "limit 1")["city"].iloc[0]
    wh.close()
    return name


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cs_metrics", *args], cwd=REPO, capture_output=True, text=True,
        timeout=300,
    )


def call(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_csv_projection_by_city(db, city):
    res = run("simulate-outage", "--city", city, "--radius-km", "30", "--start", START,
              "--hours", "6", "--severity", "critical", "--runs", "50", "--seed", "3",
              "--db", str(db))
    assert res.returncode == 0, res.stderr
    df = pd.read_csv(io.StringIO(res.stdout))
    assert tuple(df.columns) == SIMULATE_COLUMNS
    assert len(df) == 6 + TAIL_HOURS
    assert df["hour"].iloc[0] == "2025-03-03T14:00:00"
    assert (df["expected_extra_tickets"].iloc[:6] > 0).all()
    assert (df["expected_extra_tickets"].iloc[6:] == 0).all()
    assert (df["backlog_p90"] >= df["backlog_p50"]).all()
    assert df["sla_breach_pct"].between(0, 100).all()
    assert (df["extra_agents_needed"] >= 0).all()
    # what the projection rests on and what it says go to stderr, not into the table
    assert "Rate calibrated on this dataset's" in res.stderr or "default rate" in res.stderr
    assert "extra tickets over 6 hours" in res.stderr


def test_cli_matches_the_library(capsys, db, city):
    code, out, err = call(capsys, "simulate-outage", "--city", city, "--radius-km", "30",
                          "--start", START, "--hours", "4", "--severity", "major", "--runs",
                          "40", "--seed", "9", "--extra-staff", "1", "--db", str(db))
    assert code == 0, err
    df = pd.read_csv(io.StringIO(out))
    wh = Warehouse(db, read_only=True)
    scenario = OutageScenario(start=datetime(2025, 3, 3, 14), hours=4, severity="major",
                              radius_km=30, city=city, extra_staff=1)
    h = simulate_outage(wh, scenario, runs=40, seed=9).hours
    wh.close()
    assert df["expected_extra_tickets"].tolist() == pytest.approx(
        h["extra_arrivals"].round(3).tolist())
    assert df["backlog_p50"].tolist() == pytest.approx(h["backlog_p50"].tolist())
    assert df["backlog_p90"].tolist() == pytest.approx(h["backlog_p90"].tolist())
    np.testing.assert_allclose(df["sla_breach_pct"], h["sla_breach_pct_p50"].round(2))
    assert df["extra_agents_needed"].tolist() == h["extra_agents_needed"].tolist()


def test_json_to_a_file_by_lat_lon(capsys, db, tmp_path):
    out_file = tmp_path / "projection.json"
    code, out, err = call(capsys, "simulate-outage", "--lat", "34.95", "--lon", "-120.43",
                          "--radius-km", "25", "--start", START, "--hours", "3",
                          "--severity", "minor", "--runs", "20", "--format", "json",
                          "--out", str(out_file), "--tail-hours", "2", "--db", str(db))
    assert code == 0, err
    assert out == ""
    records = json.loads(out_file.read_text(encoding="utf-8"))
    assert len(records) == 3 + 2
    assert all(tuple(r) == SIMULATE_COLUMNS for r in records)
    assert records[0]["hour"] == "2025-03-03T14:00:00"


def test_per_hour_extra_staff(capsys, db, city):
    code, out, err = call(capsys, "simulate-outage", "--city", city, "--radius-km", "30",
                          "--start", START, "--hours", "2", "--severity", "none",
                          "--runs", "10", "--extra-staff", "2,0,1", "--tail-hours", "1",
                          "--db", str(db))
    assert code == 0, err
    assert "No extra tickets are expected (severity none adds no tickets)" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--severity", "huge"], "Unknown severity 'huge'; use one of none, minor, major, critical."),
    (["--city", "Atlantis"], "Unknown city 'Atlantis'"),
    (["--lat", "10"], "Give the outage centre as --city or as --lat and --lon, not both."),
    (["--city", None], "Give the outage centre as --city NAME or as both --lat and --lon."),
    (["--start", "next monday"], "--start 'next monday' is not a date and time"),
    (["--extra-staff", "two"], "--extra-staff 'two' must be whole agents"),
    (["--hours", "0"], "An outage lasts from one minute"),
    (["--runs", "0"], "Runs must be a whole number from 1 to"),
    (["--db", "MISSING"], "There is no warehouse at"),
])
def test_errors_are_one_sentence_and_exit_2(capsys, db, city, tmp_path, args, message):
    opts = {"--city": city, "--radius-km": "30", "--start": START, "--hours": "2",
            "--severity": "minor", "--runs": "5", "--db": str(db)}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if value == "MISSING":
            value = str(tmp_path / "missing.duckdb")
        opts[flag] = value
    argv = ["simulate-outage"]
    for flag, value in opts.items():
        if value is not None:
            argv += [flag, value]
    code, out, err = call(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert message in lines[0]


def test_missing_warehouse_exits_2_from_the_shell(tmp_path):
    res = run("simulate-outage", "--lat", "34.9", "--lon", "-120.4", "--radius-km", "10",
              "--start", START, "--hours", "2", "--severity", "major",
              "--db", str(tmp_path / "none.duckdb"))
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.strip().startswith("error: There is no warehouse at")
    assert "Traceback" not in res.stderr


def test_required_options_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["simulate-outage", "--city", "X"])
    assert exc.value.code == 2
    assert "required" in capsys.readouterr().err
