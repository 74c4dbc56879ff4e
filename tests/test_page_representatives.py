"""The Representatives page, run headless: it shows the numbers the library computes."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import cs_metrics
from cs_metrics import Filters, Warehouse, get_metric
from cs_metrics.analysis.leaderboard import (
    BOARD_COLUMNS,
    default_columns,
    format_q,
    leaderboard,
    rep_trend,
    unusual,
)
from cs_metrics.core import audit
from cs_metrics.core.safe_text import escape_markdown
from tests.conftest import REPO, ticket, write_csv

PAGE = str(REPO / "views" / "representatives.py")
TIMEOUT = 60
DEFAULT_DAYS = 90  # the sidebar's default range: the last 90 days of data

pytestmark = pytest.mark.usefixtures("fresh_caches")


@pytest.fixture(scope="module")
def page_db(sample_dir, tmp_path_factory) -> Path:
    # Its own file: the app opens it read-write, and one process must open a DuckDB file
    # with one configuration.
    db = tmp_path_factory.mktemp("reps_page") / "wh.duckdb"
    cs_metrics.ingest(sample_dir, db=db)
    return db


def default_filters(wh: Warehouse) -> Filters:
    end = wh.as_of().date() + timedelta(days=1)
    return Filters(end - timedelta(days=DEFAULT_DAYS), end)


def library(db: Path, fn, *args) -> tuple[object, Filters]:
    wh = Warehouse(db)
    try:
        filters = default_filters(wh)
        return fn(wh, filters, *args), filters
    finally:
        wh.close()


def run_page(monkeypatch, db: Path) -> AppTest:
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def board_of(wh, filters, level):
    return leaderboard(wh, filters, level, metrics=BOARD_COLUMNS)


def test_leaderboards_show_the_library_numbers(page_db, monkeypatch):
    want_reps, _ = library(page_db, board_of, "rep")
    want_teams, _ = library(page_db, board_of, "team")
    want_managers, _ = library(page_db, board_of, "manager")
    at = run_page(monkeypatch, page_db)
    assert [t.label for t in at.tabs] == ["Representatives", "Teams", "Managers"]
    for shown, want in zip(at.dataframe[:3], (want_reps, want_teams, want_managers),
                           strict=True):
        pd.testing.assert_frame_equal(shown.value.reset_index(drop=True), want,
                                      check_dtype=False)
    # the default columns: those of the brief the dataset has, "Open" not among them
    wh = Warehouse(page_db)
    defaults = list(default_columns(wh))
    wh.close()
    assert defaults == ["ticket_count", "median_first_response_min", "avg_first_response_min",
                        "median_resolution_h", "sla_first_response_pct", "fcr_pct",
                        "reopen_pct", "aht_min", "csat_pct", "nps"]
    assert at.multiselect(key="board_columns").value == defaults
    order = list(at.dataframe[0].proto.column_order)
    assert order == ["rep_name", "team", *defaults]
    # units in the labels, help from the registry
    config = json.loads(at.dataframe[0].proto.columns)
    med = get_metric("median_first_response_min")
    assert config["median_first_response_min"]["label"] == "FRT med. (min)"
    assert med.description in config["median_first_response_min"]["help"]
    assert config["csat_pct"]["label"] == "CSAT (%)"
    assert config["aht_min"]["type_config"]["format"] == "%.1f"


def test_unusual_table_shows_the_test(page_db, monkeypatch):
    want, _ = library(page_db, unusual, "avg_resolution_h")
    at = run_page(monkeypatch, page_db)
    shown = at.dataframe[3].value.reset_index(drop=True)
    assert shown["q_value"].tolist() == [format_q(q) for q in want["q_value"]]
    pd.testing.assert_frame_equal(shown.drop(columns=["q_value", "p_value"]),
                                  want.drop(columns=["q_value", "p_value"]), check_dtype=False)
    # one sentence per flagged rep, ranked by the size of the difference
    flagged_rows = want[want["flag"]]
    assert len(flagged_rows) > 0
    lines = next(m.value for m in at.markdown if "expected for their mix" in m.value)
    assert len(lines.splitlines()) == len(flagged_rows)
    for line, (_, row) in zip(lines.splitlines(), flagged_rows.iterrows(), strict=True):
        assert line.endswith(f"{escape_markdown(row['sentence'])} "
                             f"(q {format_q(row['q_value'])})"), line
    flagged = int(want["flag"].sum())
    tested = int((want["status"] != "too few tickets").sum())
    captions = [c.value for c in at.caption]
    assert f"{flagged} of {tested} representatives tested are flagged for avg resolution " \
           "(q < 0.05 and a difference large enough to matter; see below)." in captions
    assert any("Benjamini–Hochberg" in m.value for m in at.markdown)

    at.selectbox(key="unusual_metric").select("fcr_pct").run()
    assert not at.exception
    want_fcr, _ = library(page_db, unusual, "fcr_pct")
    shown = at.dataframe[3].value.reset_index(drop=True)
    pd.testing.assert_frame_equal(shown.drop(columns=["q_value", "p_value"]),
                                  want_fcr.drop(columns=["q_value", "p_value"]),
                                  check_dtype=False)


def test_detail_view_renders_the_trend(page_db, monkeypatch):
    board, filters = library(page_db, leaderboard, "rep")
    rep = board.iloc[0]
    trend, _ = library(page_db, rep_trend, rep["rep_id"], "csat_pct")
    at = run_page(monkeypatch, page_db)
    at.selectbox(key="detail_rep").set_value(rep["rep_id"]).run()
    at.selectbox(key="detail_metric").set_value("csat_pct").run()
    assert not at.exception
    csat = get_metric("csat_pct")
    assert (f"Team: {rep['team']} · Manager: {rep['manager']} · CSAT in the range: "
            f"{csat.display(rep['csat_pct'])}") in [c.value for c in at.caption]
    charts = at.get("vega_lite_chart")
    assert len(charts) == 1
    spec = json.loads(charts[0].proto.spec)
    assert spec["title"]["text"] == f"CSAT by week: {rep['rep_name']} vs team median"
    assert spec["encoding"]["y"]["title"] == "CSAT (%)"
    assert {t["title"] for t in spec["encoding"]["tooltip"]} >= {"Week starting", "Series"}
    assert not trend.empty


def test_downloads_are_named_by_the_date_range(page_db, monkeypatch, deferred_downloads):
    want, filters = library(page_db, board_of, "rep")
    run_page(monkeypatch, page_db)
    stem = f"representatives_{filters.date_from}_to_{filters.date_to}"
    assert {f"{stem}.csv", f"{stem}.parquet"} <= set(deferred_downloads)
    assert any(name.startswith("teams_") for name in deferred_downloads)
    assert any(name.startswith("unusual_avg_resolution_h_") for name in deferred_downloads)
    # the files are made on click, and each is written to the audit log then
    saved = {name: deferred_downloads[name]() for name in (f"{stem}.csv", f"{stem}.parquet")}
    wh = Warehouse(page_db)
    exports = audit.entries(wh, action="export")
    wh.close()
    assert sorted(t for t in exports["target"] if t in saved) == sorted(saved)
    parquet = pd.read_parquet(io.BytesIO(saved[f"{stem}.parquet"]))
    pd.testing.assert_frame_equal(parquet, want, check_dtype=False)
    csv = pd.read_csv(io.BytesIO(saved[f"{stem}.csv"]))
    assert csv["ticket_count"].tolist() == want["ticket_count"].tolist()


def test_a_dataset_without_representatives_says_so(tmp_path, monkeypatch):
    write_csv(tmp_path / "src", "tickets", [
        ticket("T1", "2025-01-10 10:00:00", "closed", resolved_at="2025-01-10 12:00:00"),
        ticket("T2", "2025-01-12 09:30:00", "open"),
    ])
    cs_metrics.ingest(tmp_path / "src", db=tmp_path / "wh.duckdb")
    at = run_page(monkeypatch, tmp_path / "wh.duckdb")
    assert [i.value for i in at.info] == [
        "This dataset has no representatives (its tickets have no rep_id)."
    ]
    assert not at.dataframe


def test_reps_without_a_representatives_table(tmp_path, monkeypatch):
    write_csv(tmp_path / "src", "tickets", [
        ticket(f"T{i}", f"2025-01-{10 + i % 9:02d} 10:00:00", "closed", rep_id=f"R{i % 3}",
               resolved_at=f"2025-01-{10 + i % 9:02d} {11 + i % 5}:00:00")
        for i in range(40)
    ])
    cs_metrics.ingest(tmp_path / "src", db=tmp_path / "wh.duckdb")
    at = run_page(monkeypatch, tmp_path / "wh.duckdb")
    infos = [i.value for i in at.info]
    assert any(text.startswith("This dataset has no teams") for text in infos)
    assert any(text.startswith("This dataset has no managers") for text in infos)
    assert sorted(at.dataframe[0].value["rep_id"]) == ["R0", "R1", "R2"]
    assert at.selectbox(key="detail_rep").options == ["R0", "R1", "R2"]
    assert len(at.get("vega_lite_chart")) == 1
    # no names: the id is shown; only the figures this dataset has are in the default set
    board = at.dataframe[0]
    assert list(board.proto.column_order) == ["rep_id", "rep_name", "team", "ticket_count",
                                              "median_resolution_h"]
    # a figure without inputs, chosen, shows "–" for everyone, never a number
    at.multiselect(key="board_columns").select("median_first_response_min").run()
    assert not at.exception, [e.value for e in at.exception]
    board = at.dataframe[0]
    assert "median_first_response_min" in list(board.proto.column_order)
    assert (board.value["median_first_response_min"] == "–").all()
    want, _ = library(tmp_path / "wh.duckdb", board_of, "rep")
    want = want.set_index("rep_id")
    shown = board.value.set_index("rep_id")
    pd.testing.assert_series_equal(shown["median_resolution_h"].astype(float),
                                   want["median_resolution_h"].reindex(shown.index),
                                   check_dtype=False)


@pytest.mark.parametrize("level, key, dim", [("rep", "board_rep", "rep_id"),
                                             ("team", "board_team", "team")])
def test_selecting_a_leaderboard_row_lists_its_tickets(page_db, monkeypatch, level, key, dim):
    board, filters = library(page_db, leaderboard, level)
    at = run_page(monkeypatch, page_db)
    shown = next(d for d in at.dataframe if d.key == key).value
    at.session_state[key] = {"selection": {"rows": [2], "columns": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    value = shown[dim].iloc[2]
    page, _ = library(page_db, lambda wh, f: cs_metrics.ticket_page(wh, f, extra={dim: value}))
    listed = next(d.value for d in at.dataframe if d.value.columns[0] == "ticket_id")
    assert listed["ticket_id"].tolist() == page.rows["ticket_id"].tolist()
    count = board.set_index(dim)["ticket_count"][value]
    assert page.total == count
    assert f"Tickets 1–{len(listed)} of {count:,}, newest first" in [c.value for c in at.caption]
