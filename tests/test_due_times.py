"""Source SLA due times: a ticket's own first_response_due_at / resolution_due_at decide its
SLA verdicts instead of the policy targets (checked against a pandas computation)."""

from __future__ import annotations

import textwrap
from datetime import datetime

import pandas as pd

from cs_metrics.core.settings import load_settings
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.loader import ingest
from cs_metrics.metrics.registry import Filters, query, sla_source_count
from tests.conftest import ticket, write_csv

ROWS = [
    # answered after its own due time, though well within any policy target
    ticket("A", "2024-01-02 10:00:00", "closed", first_response_at="2024-01-02 10:20:00",
           resolved_at="2024-01-02 12:00:00", priority="normal",
           first_response_due_at="2024-01-02 10:15:00",
           resolution_due_at="2024-01-02 12:00:00"),
    # answered late for the policy, but before the source's generous due time
    ticket("B", "2024-01-02 10:00:00", "closed", first_response_at="2024-01-05 10:00:00",
           resolved_at="2024-01-20 10:00:00", priority="urgent",
           first_response_due_at="2024-01-06 00:00:00",
           resolution_due_at="2024-01-25 00:00:00"),
    # unanswered, due time passed at the data's "now": a breach
    ticket("C", "2024-01-10 10:00:00", "open", priority="low",
           first_response_due_at="2024-01-11 10:00:00",
           resolution_due_at="2024-01-12 10:00:00"),
    # unanswered, due only after "now": no verdict yet
    ticket("D", "2024-01-29 10:00:00", "open", priority="low",
           first_response_due_at="2024-03-01 10:00:00",
           resolution_due_at="2024-03-05 10:00:00"),
    # only a resolution due time: first response judged by the policy
    ticket("E", "2024-01-15 10:00:00", "in_progress", first_response_at="2024-01-15 10:05:00",
           priority="high", resolution_due_at="2024-01-16 10:00:00"),
    # no due times: the policy decides
    ticket("F", "2024-01-20 10:00:00", "closed", first_response_at="2024-01-20 11:00:00",
           resolved_at="2024-01-30 10:00:00", priority="normal"),
    ticket("G", "2024-01-01 10:00:00", "open", priority="urgent"),
]


def _expected(df: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """The verdicts by their definitions, computed in pandas."""
    settings = load_settings()
    out = df.copy()
    for c in ("created_at", "first_response_at", "resolved_at", "first_response_due_at",
              "resolution_due_at"):
        out[c] = pd.to_datetime(out[c])
    fr_met, res_met = [], []
    for r in out.itertuples():
        fr_target, res_target, _ = settings.sla_targets(r.priority, "Unknown")
        fr_due = r.first_response_due_at if pd.notna(r.first_response_due_at) else \
            r.created_at + pd.Timedelta(minutes=fr_target)
        res_due = r.resolution_due_at if pd.notna(r.resolution_due_at) else \
            r.created_at + pd.Timedelta(hours=res_target)
        if pd.notna(r.first_response_at):
            fr_met.append(r.first_response_at <= fr_due)
        else:
            fr_met.append(False if fr_due < as_of else None)
        if r.status == "closed":
            res_met.append(r.resolved_at <= res_due)
        else:
            res_met.append(False if res_due < as_of else None)
    out["fr_met"], out["res_met"] = fr_met, res_met
    out["from_source"] = out["first_response_due_at"].notna() | out["resolution_due_at"].notna()
    return out.set_index("ticket_id")


def test_due_times_decide_the_verdicts(tmp_path):
    folder = tmp_path / "src"
    write_csv(folder, "tickets", ROWS)
    db = tmp_path / "wh.duckdb"
    report = ingest(folder, db=db)
    assert report.table("tickets").loaded == len(ROWS)
    wh = Warehouse(db, read_only=True)
    try:
        got = wh.df("select ticket_id, sla_first_response_met, sla_resolution_met, "
                    "sla_from_source from tickets").set_index("ticket_id")
        as_of = wh.as_of()
        pct = query(wh, ["sla_first_response_pct", "sla_resolution_pct"], by=["priority"])
    finally:
        wh.close()
    assert as_of == datetime(2024, 1, 30, 10, 0)
    want = _expected(pd.DataFrame(ROWS), as_of)
    for tid in want.index:
        for col, exp in (("sla_first_response_met", "fr_met"), ("sla_resolution_met", "res_met")):
            value = got.loc[tid, col]
            assert (None if pd.isna(value) else bool(value)) == want.loc[tid, exp], (tid, col)
        assert bool(got.loc[tid, "sla_from_source"]) == bool(want.loc[tid, "from_source"])
    # the hand-made cases say what they were made for
    assert got.loc["A", "sla_first_response_met"] == False  # noqa: E712
    assert got.loc["B", "sla_first_response_met"] == True  # noqa: E712
    assert got.loc["C", "sla_resolution_met"] == False  # noqa: E712
    assert pd.isna(got.loc["D", "sla_first_response_met"])
    # the registry's SLA percentages follow the verdicts
    for p, g in want.groupby("priority"):
        row = pct.set_index("priority").loc[p]
        for metric, exp in (("sla_first_response_pct", "fr_met"),
                            ("sla_resolution_pct", "res_met")):
            judged = g[exp].dropna()
            if judged.empty:
                assert pd.isna(row[metric])
            else:
                assert abs(row[metric] - 100.0 * judged.astype(bool).mean()) < 1e-9


def test_due_times_follow_the_zone_and_the_plausible_window(tmp_path):
    (tmp_path / "export.csv").write_text(textwrap.dedent("""\
        id,opened,state,answered,due
        1,2024-03-01 09:00,open,2024-03-01 09:30,2024-03-01 09:45
        2,2024-03-01 09:00,open,,1850-01-01 00:00
        3,2024-03-01 09:00,open,,not a time
        """))
    mapping = tmp_path / "map.toml"
    mapping.write_text(textwrap.dedent("""\
        [tickets]
        source = "export.csv"
        timezone = "America/New_York"
        [tickets.columns]
        ticket_id = "id"
        created_at = "opened"
        status = "state"
        first_response_at = "answered"
        first_response_due_at = "due"
        """))
    db = tmp_path / "wh.duckdb"
    report = ingest(tmp_path, mapping=mapping, db=db)
    assert dict(report.table("tickets").rejected) == {
        "implausible_timestamp": 1, "unparseable_timestamp": 1}
    wh = Warehouse(db, read_only=True)
    try:
        row = wh.df("select * from tickets").iloc[0]
    finally:
        wh.close()
    # 09:45 in New York (EST, UTC-5) is 14:45 UTC; answered at 14:30 UTC: met
    assert str(row["first_response_due_at"]) == "2024-03-01 14:45:00"
    assert bool(row["sla_first_response_met"]) and bool(row["sla_from_source"])
    assert row["sla_first_response_target_min"] == 45


def test_judged_by_source_count_respects_filters(tmp_path):
    folder = tmp_path / "src"
    write_csv(folder, "tickets", ROWS)
    db = tmp_path / "wh.duckdb"
    ingest(folder, db=db)
    wh = Warehouse(db, read_only=True)
    try:
        assert sla_source_count(wh, Filters()) == 5
        assert sla_source_count(wh, Filters.build(priority="low")) == 2
        assert sla_source_count(wh, Filters.build(priority="normal")) == 1
    finally:
        wh.close()


def _loaded(tmp_path):
    folder = tmp_path / "src"
    write_csv(folder, "tickets", ROWS)
    db = tmp_path / "wh.duckdb"
    ingest(folder, db=db)
    return db


def test_reports_say_how_many_tickets_the_source_judged(tmp_path):
    from cs_metrics.ops import reports as R

    wh = Warehouse(_loaded(tmp_path), read_only=True)
    try:
        report = R.build_report(wh, "executive", "2024-01")
        text = R.render(report)
    finally:
        wh.close()
    assert "5 tickets judged by the source's own due times" in report.kpis.note
    assert "5 tickets judged by the source" in str(text)


def test_overview_says_how_many_tickets_the_source_judged(tmp_path, monkeypatch, fresh_caches):
    from streamlit.testing.v1 import AppTest

    from tests.test_app import APP, TIMEOUT, default_filters

    db = _loaded(tmp_path)
    wh = Warehouse(db, read_only=True)
    try:
        n = sla_source_count(wh, default_filters(wh))
    finally:
        wh.close()
    assert n > 0
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert any(c.startswith(f"{n} ticket") and "judged by the source's own due times" in c
               for c in captions), captions
