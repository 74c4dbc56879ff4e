"""Empty is not zero: on an export without first responses, feedback or customers, no query
output, leaderboard, live panel, alert, report or page shows a zero (or any figure) for a metric
it cannot compute, while counts of what the dataset has stay real numbers."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import cs_metrics
from cs_metrics import Warehouse, get_metric, load_settings
from cs_metrics.analysis.leaderboard import LEADERBOARD_METRICS, leaderboard, unusual
from cs_metrics.metrics.live import at_risk_tickets, live_snapshot
from cs_metrics.ops.alerts import evaluate, rules_without_inputs
from tests.conftest import REPO

# what the export lacks, and the metrics that need it
EMPTY = ("sla_first_response_pct", "avg_first_response_min", "customer_count",
         "response_rate_pct", "feedback_count", "csat_avg", "csat_pct", "nps", "fcr_pct",
         "aht_min", "reopen_pct")
HAS = ("ticket_count", "open_count", "closed_count", "avg_resolution_h")
KEEP = ["ticket_id", "created_at", "status", "resolved_at", "priority", "channel", "domain",
        "location", "customer_segment", "rep_id", "is_test"]
TIMEOUT = 60


@pytest.fixture(scope="module")
def bare_dir(sample_dir, tmp_path_factory) -> Path:
    """The generated sample cut down to tickets without first responses, contact or handle
    data, customer ids, feedback or customers (representatives kept for the leaderboards)."""
    out = tmp_path_factory.mktemp("bare")
    tickets = pd.read_parquet(sample_dir / "tickets.parquet")[KEEP]
    tickets.to_parquet(out / "tickets.parquet", index=False)
    shutil.copy(sample_dir / "representatives.parquet", out / "representatives.parquet")
    return out


@pytest.fixture(scope="module")
def bare_db(bare_dir, tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("bare_db") / "wh.duckdb"
    cs_metrics.ingest(bare_dir, db=db)
    return db


@pytest.fixture(scope="module")
def tickets(bare_dir) -> pd.DataFrame:
    df = pd.read_parquet(bare_dir / "tickets.parquet")
    return df[~df["is_test"]]


def _wh(db: Path) -> Warehouse:
    return Warehouse(db, read_only=True)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cs_metrics", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_query_is_empty_for_missing_inputs_and_counts_what_it_has(bare_db, tickets):
    wh = _wh(bare_db)
    try:
        df = cs_metrics.query(wh, [*EMPTY, *HAS], by=["status"])
    finally:
        wh.close()
    want = tickets.groupby("status").size()
    assert df.set_index("status")["ticket_count"].to_dict() == want.to_dict()
    # a count of what the dataset has is 0 where there is none: no closed open tickets
    assert df.set_index("status").loc["open", "closed_count"] == 0
    assert df.set_index("status").loc["closed", "closed_count"] == want["closed"]
    for name in EMPTY:
        assert df[name].isna().all(), name


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_query_command_prints_empty_not_zero(bare_db, tickets, fmt):
    names = ",".join(("sla_first_response_pct", "customer_count", "response_rate_pct",
                      "feedback_count", "csat_avg", "fcr_pct", "aht_min", "ticket_count",
                      "closed_count"))
    done = cli("query", "--metrics", names, "--by", "channel", "--format", fmt,
               "--db", str(bare_db))
    assert done.returncode == 0, done.stderr
    assert "so sla_first_response_pct is empty" in done.stderr
    if fmt == "json":
        rows = pd.DataFrame(json.loads(done.stdout))
        for name in names.split(",")[:7]:
            assert rows[name].map(lambda v: v is None).all(), name
    else:
        lines = done.stdout.splitlines()
        assert lines[0] == "channel," + names
        for line in lines[1:]:
            cells = line.split(",")
            assert cells[1:8] == [""] * 7, line
        rows = pd.read_csv(io.StringIO(done.stdout))
    want = tickets.groupby("channel").size()
    assert rows.set_index("channel")["ticket_count"].to_dict() == want.to_dict()
    closed = tickets[tickets["status"] == "closed"].groupby("channel").size()
    assert rows.set_index("channel")["closed_count"].to_dict() == closed.to_dict()


def test_leaderboard_and_unusual_leave_missing_metrics_empty(bare_db, tickets):
    wh = _wh(bare_db)
    try:
        board = leaderboard(wh)
        tested = unusual(wh, metric="sla_first_response_pct")
        resolution = unusual(wh, metric="avg_resolution_h")
    finally:
        wh.close()
    want = tickets.dropna(subset=["rep_id"]).groupby("rep_id").size()
    assert board.set_index("rep_id")["ticket_count"].to_dict() == want.to_dict()
    for name in LEADERBOARD_METRICS:
        if name in EMPTY:
            assert board[name].isna().all(), name
    assert tested.empty  # nothing to test without first responses
    assert not resolution.empty  # a metric with inputs is still tested


def test_live_snapshot_says_nothing_about_answers(bare_db, tickets):
    wh = _wh(bare_db)
    try:
        snap = live_snapshot(wh)
        risky = at_risk_tickets(wh)
        now = wh.as_of()
    finally:
        wh.close()
    assert not snap.has_first_responses
    assert (snap.waiting, snap.oldest_unanswered_min, snap.oldest_unanswered_id,
            snap.at_risk, snap.breached) == (None, None, None, None, None)
    queue = tickets[tickets["status"].isin(["open", "in_progress"])
                    & (tickets["created_at"] <= now)]
    assert snap.open_now == len(queue) > 0
    assert risky.empty


def test_rules_without_inputs_do_not_fire(bare_db, tickets):
    # the queue holds old high/urgent unanswered-looking tickets: without the check every one
    # of them would be "breached"
    assert tickets["status"].isin(["open", "in_progress"]).any()
    assert tickets["priority"].isin(["high", "urgent"]).any()
    wh = _wh(bare_db)
    try:
        missing = rules_without_inputs(wh)
        fired = evaluate(wh, load_settings())
    finally:
        wh.close()
    assert missing == {
        "sla_breached": ("first_response_at",), "sla_at_risk": ("first_response_at",),
        "vip_closed_unanswered": ("first_response_at",), "csat_drop": ("feedback.csat",),
        "emerging_issue": ("feedback.comment",),
    }
    assert not {a.rule for a in fired} & set(missing)


def test_rules_with_inputs_still_run(sample_wh):
    assert rules_without_inputs(sample_wh) == {}


@pytest.mark.parametrize("audience", [("executive",), ("team", "--team", "Team 0")])
def test_reports_leave_missing_metrics_out(bare_db, tmp_path, audience):
    wh = _wh(bare_db)
    try:
        if audience[0] == "team":
            team = leaderboard(wh, level="team")["team"].iloc[0]
            audience = ("team", "--team", str(team))
    finally:
        wh.close()
    out = tmp_path / "report"
    done = cli("report", "--audience", *audience, "--period", "last-month", "--format", "md",
               "--out", str(out), "--db", str(bare_db))
    assert done.returncode == 0, done.stderr
    text = (out / "report.md").read_text(encoding="utf-8")
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    for name in EMPTY:
        label = get_metric(name).label
        assert f"| {label} |" not in text, label  # no row of figures
    notes = " ".join(data["notes"])
    assert "so SLA first response is left out" in notes

    def numbers_of(obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k in EMPTY:
                    yield k, v
                yield from numbers_of(v)
        elif isinstance(obj, list):
            for v in obj:
                yield from numbers_of(v)

    assert [(k, v) for k, v in numbers_of(data["tables"]) if v is not None] == []


# --- pages -------------------------------------------------------------------------------------


def run_page(monkeypatch, db: Path, page: str) -> AppTest:
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    monkeypatch.delenv("CS_METRICS_SETTINGS", raising=False)
    at = AppTest.from_file(str(REPO / "views" / page), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


@pytest.fixture
def page_db(bare_db, tmp_path) -> Path:
    # the app opens its warehouse read-write: each page test gets its own copy
    db = tmp_path / "wh.duckdb"
    shutil.copy(bare_db, db)
    return db


@pytest.mark.usefixtures("fresh_caches")
def test_overview_says_there_are_no_first_responses(page_db, monkeypatch):
    at = run_page(monkeypatch, page_db, "overview.py")
    metrics = {m.label: m for m in at.metric}
    assert metrics["Oldest unanswered"].value == "–"
    assert metrics["SLA at risk"].value == "–"
    assert not metrics["SLA at risk"].delta  # no "N already breached"
    texts = [c.value for c in at.caption]
    assert any(t.startswith("This dataset has no first-response times.") for t in texts)
    for name in EMPTY:  # every KPI card of a metric without inputs says so instead of a figure
        card = metrics.get(get_metric(name).label)
        if card is not None:
            assert card.value == "–", name
    wh = Warehouse(page_db)  # as the app opened it: one configuration per file
    try:
        open_now = live_snapshot(wh).open_now
    finally:
        wh.close()
    assert metrics["Unresolved now"].value == f"{open_now:,}"
    assert metrics["Awaiting a first answer"].value == "–"


@pytest.mark.usefixtures("fresh_caches")
def test_representatives_board_has_no_figures_for_missing_metrics(page_db, monkeypatch):
    at = run_page(monkeypatch, page_db, "representatives.py")
    boards = [d.value for d in at.dataframe if "rep_name" in d.value.columns
              and "sla_first_response_pct" in d.value.columns]
    assert boards
    for board in boards:
        for name in LEADERBOARD_METRICS:
            if name in EMPTY:
                assert board[name].isna().all(), name
        assert (board["ticket_count"] > 0).all()
    captions = [c.value for c in at.caption]
    assert "This dataset has no first-response times." in captions


@pytest.mark.usefixtures("fresh_caches")
def test_alerts_page_names_the_rules_that_cannot_run(page_db, monkeypatch):
    at = run_page(monkeypatch, page_db, "alerts.py")
    info = " ".join(i.value for i in at.info)
    assert "do not run and never fire on this dataset" in info
    assert "- SLA breached: this dataset has no first-response times." in info
    assert "- CSAT drop: this dataset has no CSAT scores." in info
    at.button(key="alerts_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    wh = Warehouse(page_db)
    try:
        fired = set(cs_metrics.ops.alerts.active_alerts(wh)["rule"])
    finally:
        wh.close()
    assert not fired & set(rules_without_inputs_of(page_db))


def rules_without_inputs_of(db: Path) -> dict[str, tuple[str, ...]]:
    wh = Warehouse(db)
    try:
        return rules_without_inputs(wh)
    finally:
        wh.close()
