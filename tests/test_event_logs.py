"""Event-log sources: ``where``, ``one_row_per`` and ``latest_by`` in a mapping section, on a
small synthetic ServiceNow-style incident log loaded with the committed example mapping."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.loader import ingest
from cs_metrics.ingestion.quality import quality_report

MAPPING = Path(__file__).resolve().parent.parent / "data" / "mappings" / \
    "servicenow_incident_log.toml"
STATUS = {"New": "open", "On Hold": "open", "Awaiting User Info": "open",
          "In Progress": "in_progress", "Active": "in_progress",
          "Resolved": "closed", "Closed": "closed", "Canceled": "closed"}
PRIORITY = {"1 - Critical": "urgent", "2 - High": "high", "3 - Moderate": "normal",
            "4 - Low": "low"}
FMT = "%Y-%m-%d %H:%M:%S"


def _incident_log(seed: int = 7, incidents: int = 80) -> pd.DataFrame:
    """One row per change: New, then some of In Progress / On Hold / Resolved / Closed, a
    few reopened; rows of invalid state "-100" between them, same-second ties, and the file
    not in time order (exports seldom are)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(incidents):
        number = f"INC{i:07d}"
        opened = pd.Timestamp("2024-03-01") + pd.Timedelta(
            minutes=int(rng.integers(0, 60 * 24 * 20)))
        priority = rng.choice(list(PRIORITY))
        contact = rng.choice(["Phone", "Email", "Self service"])
        category = rng.choice(["Network", "Software", "Hardware"])
        path = ["New"]
        steps = int(rng.integers(0, 6))
        for _ in range(steps):
            path.append(rng.choice(["In Progress", "On Hold", "Resolved", "Closed", "Active"]))
        t = opened
        resolved = None
        for k, state in enumerate(path):
            if k:
                # some changes land in the same second as the one before: a tie
                t = t + pd.Timedelta(minutes=int(rng.choice([0, 5, 30, 240, 1500])))
            if state in ("Resolved", "Closed"):
                resolved = resolved if state == "Closed" and resolved is not None else t
            else:
                resolved = None  # reopened or still going: no resolution time
            rows.append({
                "number": number, "state": state, "sys_updated_on": t.strftime(FMT),
                "opened_at": opened.strftime(FMT), "assigned_to": f"agent{int(rng.integers(1, 9))}",
                "priority": priority, "contact_type": contact, "category": category,
                "resolved_at": resolved.strftime(FMT) if resolved is not None else "",
            })
            if rng.random() < 0.1:  # an invalid event the filter must skip
                rows.append({**rows[-1], "state": "-100",
                             "sys_updated_on": (t + pd.Timedelta(days=30)).strftime(FMT)})
    df = pd.DataFrame(rows)
    # shuffled in blocks: the file order is not time order, but ties keep their source order
    order = rng.permutation(len(df))
    return df.iloc[order].reset_index(drop=True)


def _expected(df: pd.DataFrame) -> pd.DataFrame:
    """The last event of each incident (ties: the later source row), with pandas."""
    kept = df[df["state"] != "-100"].copy()
    kept["pos"] = np.arange(len(kept))
    kept["ts"] = pd.to_datetime(kept["sys_updated_on"], format=FMT)
    last = kept.sort_values(["ts", "pos"], kind="stable").groupby("number").tail(1)
    first_response = kept[kept["state"] != "New"].groupby("number")["ts"].min()
    out = last.set_index("number")
    out["status"] = out["state"].map(STATUS)
    out["priority_c"] = out["priority"].map(PRIORITY)
    out["created"] = pd.to_datetime(out["opened_at"], format=FMT)
    out["resolved"] = pd.to_datetime(out["resolved_at"].replace("", None), format=FMT)
    out["first_response"] = first_response.reindex(out.index)
    return out.sort_index()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("servicenow")
    df = _incident_log()
    df.to_csv(folder / "incident_event_log.csv", index=False)
    report = ingest(folder, MAPPING, folder / "wh.duckdb", rejects_csv=folder / "rejects.csv")
    wh = Warehouse(folder / "wh.duckdb")
    yield df, report, wh
    wh.close()


def test_tickets_are_the_latest_event_of_each_incident(loaded):
    df, report, wh = loaded
    exp = _expected(df)
    got = wh.df("select * from tickets_src order by ticket_id").set_index("ticket_id")
    assert list(got.index) == list(exp.index)
    assert got["status"].tolist() == exp["status"].tolist()
    assert got["priority"].tolist() == exp["priority_c"].tolist()
    assert got["rep_id"].tolist() == exp["assigned_to"].tolist()
    assert got["created_at"].tolist() == exp["created"].tolist()
    pd.testing.assert_series_equal(got["resolved_at"], exp["resolved"], check_names=False)
    pd.testing.assert_series_equal(got["first_response_at"], exp["first_response"],
                                   check_names=False)
    # resolution hours of the closed incidents, as the metric defines them
    closed = exp[exp["status"] == "closed"]
    hours = ((closed["resolved"] - closed["created"]).dt.total_seconds() / 3600).dropna()
    got_h = wh.df("select ticket_id, date_diff('second', created_at, resolved_at) / 3600.0 "
                  "as h from tickets_src where status = 'closed' and resolved_at is not null "
                  "order by ticket_id").set_index("ticket_id")["h"]
    np.testing.assert_allclose(got_h.to_numpy(), hours.to_numpy())
    assert (exp["status"] == "closed").sum() > 5 and (exp["status"] != "closed").sum() > 5


def test_skipped_and_merged_rows_are_counted_not_rejected(loaded):
    df, report, wh = loaded
    t = report.table("tickets")
    invalid = int((df["state"] == "-100").sum())
    kept = len(df) - invalid
    assert invalid > 0
    assert t.skipped_filter == invalid
    assert t.merged == kept - df.loc[df["state"] != "-100", "number"].nunique()
    assert t.read == len(df)
    assert t.loaded == df["number"].nunique()
    assert t.rejected_total == 0 and t.warnings == ()
    log = wh.df("select table_name, skipped_filter, merged, rows_rejected from ingest_log "
                "order by table_name")
    assert log.set_index("table_name").loc["tickets"].tolist() == [invalid, t.merged, 0]
    q = quality_report(wh)
    assert q.validity == 1.0 and q.warning_free == 1.0
    assert q.score == round(100 * (0.8 + 0.2 * q.completeness), 1)
    row = q.tables.set_index("table").loc["tickets"]
    assert (row["skipped_filter"], row["merged"]) == (invalid, t.merged)


def test_quality_score_is_100_when_every_column_is_filled(tmp_path):
    df = _incident_log(seed=3, incidents=30)
    # every incident answered and resolved: nothing empty, so nothing but the counts matter
    extra = []
    for _, g in df.groupby("number"):
        last = pd.to_datetime(g["sys_updated_on"], format=FMT).max()
        for k, state in enumerate(("In Progress", "Resolved")):
            t = (last + pd.Timedelta(hours=1 + k)).strftime(FMT)
            extra.append({**g.iloc[0].to_dict(), "state": state, "sys_updated_on": t,
                          "resolved_at": t if state == "Resolved" else ""})
    df = pd.concat([df, pd.DataFrame(extra)], ignore_index=True)
    df.to_csv(tmp_path / "incident_event_log.csv", index=False)
    report = ingest(tmp_path, MAPPING, tmp_path / "wh.duckdb")
    assert report.table("tickets").merged > 0 and report.table("tickets").skipped_filter > 0
    wh = Warehouse(tmp_path / "wh.duckdb")
    try:
        assert quality_report(wh).score == 100.0
    finally:
        wh.close()


def test_the_same_file_feeds_one_event_per_change(loaded):
    df, report, wh = loaded
    kept = df[df["state"] != "-100"]
    ev = report.table("ticket_events")
    assert ev.skipped_filter == len(df) - len(kept) and ev.merged == 0
    got = wh.df("select ticket_id, event_at, status, rep_id from ticket_events "
                "order by all")
    exp = pd.DataFrame({
        "ticket_id": kept["number"], "event_at": pd.to_datetime(kept["sys_updated_on"]),
        "status": kept["state"].map(STATUS), "rep_id": kept["assigned_to"],
    }).sort_values(["ticket_id", "event_at", "status", "rep_id"])
    assert len(got) == len(exp)
    assert got.values.tolist() == exp.values.tolist()


def test_ties_keep_the_later_source_row(tmp_path):
    rows = [("INC1", "New", "2024-03-01 09:00:00", ""),
            ("INC1", "Closed", "2024-03-01 10:00:00", "2024-03-01 10:00:00"),
            ("INC1", "In Progress", "2024-03-01 10:00:00", ""),
            ("INC2", "In Progress", "2024-03-01 10:00:00", ""),
            ("INC2", "Closed", "2024-03-01 10:00:00", "2024-03-01 10:00:00")]
    df = pd.DataFrame(rows, columns=["number", "state", "sys_updated_on", "resolved_at"])
    df["opened_at"] = "2024-03-01 09:00:00"
    for col, value in (("assigned_to", "a"), ("priority", "2 - High"),
                       ("contact_type", "Phone"), ("category", "Network")):
        df[col] = value
    df.to_csv(tmp_path / "incident_event_log.csv", index=False)
    ingest(tmp_path, MAPPING, tmp_path / "wh.duckdb")
    wh = Warehouse(tmp_path / "wh.duckdb")
    try:
        got = dict(wh.df("select ticket_id, status from tickets_src").values.tolist())
    finally:
        wh.close()
    assert got == {"INC1": "in_progress", "INC2": "closed"}


def _write_mapping(folder: Path, extra: str) -> Path:
    shutil.copy(MAPPING, folder / "m.toml")
    text = (folder / "m.toml").read_text()
    text = text.replace('where = "state <> \'-100\'"\none_row_per', extra + "\none_row_per", 1)
    (folder / "m.toml").write_text(text)
    return folder / "m.toml"


@pytest.mark.parametrize("extra, message", [
    ("where = \"read_text('/etc/passwd') is not null\"", "read_text() is not allowed"),
    ("where = \"state in (select 1)\"", "is not allowed"),
    ("where = \"number\"", "not true or false"),
    ("where = \"nosuchcolumn = 1\"", "where = 'nosuchcolumn = 1' is not a valid expression"),
])
def test_refused_or_broken_filters_are_fatal(tmp_path, extra, message):
    _incident_log(incidents=3).to_csv(tmp_path / "incident_event_log.csv", index=False)
    mapping = _write_mapping(tmp_path, extra)
    with pytest.raises(CsMetricsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ingest(tmp_path, mapping, tmp_path / "wh.duckdb")


def test_one_row_per_needs_latest_by(tmp_path):
    _incident_log(incidents=3).to_csv(tmp_path / "incident_event_log.csv", index=False)
    text = MAPPING.read_text().replace(
        "latest_by = \"strptime(sys_updated_on, '%Y-%m-%d %H:%M:%S')\"\n", "")
    (tmp_path / "m.toml").write_text(text)
    with pytest.raises(CsMetricsError, match="one_row_per needs latest_by"):
        ingest(tmp_path, tmp_path / "m.toml", tmp_path / "wh.duckdb")


@pytest.mark.parametrize("key, value", [
    ("latest_by", "getenv('HOME')"),
    ("one_row_per", "(select 1)"),
])
def test_refused_keys_and_orders_are_fatal(tmp_path, key, value):
    _incident_log(incidents=3).to_csv(tmp_path / "incident_event_log.csv", index=False)
    lines = [f'{key} = "{value}"' if line.startswith(f"{key} =") else line
             for line in MAPPING.read_text().splitlines()]
    (tmp_path / "m.toml").write_text("\n".join(lines) + "\n")
    with pytest.raises(CsMetricsError, match=f"table tickets, {key}: .* not allowed"):
        ingest(tmp_path, tmp_path / "m.toml", tmp_path / "wh.duckdb")
    assert not (tmp_path / "wh.duckdb").exists()


def test_the_data_quality_page_shows_skipped_and_merged_rows(loaded, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    df, report, wh = loaded
    db = tmp_path / "copy.duckdb"
    shutil.copy(wh.path, db)
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    at = AppTest.from_file(str(MAPPING.parents[2] / "app.py"), default_timeout=120).run()
    at.switch_page("views/data_quality.py").run()
    assert not at.exception, [e.value for e in at.exception]
    tables = at.dataframe[0].value.set_index("table")
    t = report.table("tickets")
    assert tables.loc["tickets", "skipped_filter"] == t.skipped_filter > 0
    assert tables.loc["tickets", "merged"] == t.merged > 0
