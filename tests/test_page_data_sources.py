"""The "Your data" page, run headless: upload, validate, load, switch; every page follows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import cs_metrics
from cs_metrics import CsMetricsError, Warehouse, get_metric
from cs_metrics import datasets as ds
from tests.conftest import REPO, ticket, write_csv

APP = str(REPO / "app.py")
PAGE = "views/data_sources.py"
OVERVIEW = "views/overview.py"
TIMEOUT = 60
STAGED = "ds_staged"  # the page's (upload fingerprint, staged folder)

GOOD = [
    ticket("U1", "2025-02-10 10:00:00", "closed", resolved_at="2025-02-10 12:00:00"),
    ticket("U2", "2025-02-12 09:30:00", "open"),
    ticket("U3", "2025-02-20 15:00:00", "in_progress"),
]
BAD = [
    ticket("U4", "2025-02-21 08:00:00", "wontfix"),
    ticket("U5", "yesterday", "open"),
]
EXPORT = b"Key,Opened,State\nA1,2025-01-10 10:00:00,Done\nA2,2025-01-11 10:00:00,New\n"
BAD_MAPPING = b"""
[tickets]
source = "export.csv"
[tickets.columns]
ticket_id = "Key"
created_at = "Opened"
status = "Stat"
"""

pytestmark = pytest.mark.usefixtures("fresh_caches")


@pytest.fixture
def env(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """The app's default warehouse (four January tickets) and an empty datasets folder."""
    write_csv(tmp_path / "src", "tickets", [
        ticket(f"T{i}", f"2025-01-{10 + i} 10:00:00", "open") for i in range(4)
    ])
    db = tmp_path / "default.duckdb"
    cs_metrics.ingest(tmp_path / "src", db=db)
    root = tmp_path / "datasets"
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    monkeypatch.setenv(ds.DATASETS_ENV, str(root))
    return db, root


def csv_bytes(rows: list[dict]) -> bytes:
    return pd.DataFrame(rows).to_csv(index=False).encode()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_page(page: str = PAGE, state: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in (state or {}).items():
        at.session_state[key] = value
    ok(at.run())
    return ok(at.switch_page(page).run()) if page != OVERVIEW else at


def tickets_card(at: AppTest) -> str:
    return next(m.value for m in at.metric if m.label == get_metric("ticket_count").label)


def ticket_count(db: Path) -> str:
    wh = Warehouse(db)  # read-write, like the app: one configuration per process
    try:
        return get_metric("ticket_count").display(
            cs_metrics.query(wh, ["ticket_count"]).iloc[0]["ticket_count"])
    finally:
        wh.close()


def texts(at: AppTest) -> str:
    return "\n".join(x.value for x in [*at.markdown, *at.caption, *at.info, *at.success])


def validate(at: AppTest, files: list[tuple[str, bytes]]) -> AppTest:
    at.file_uploader(key="ds_files").set_value([(n, b, "text/csv") for n, b in files])
    ok(at.run())
    at.button(key="ds_validate").click()
    return ok(at.run())


def test_empty_states(env):
    db, root = env
    at = open_page()
    assert not at.error
    body = texts(at)
    assert "Upload at least one data file" in body
    assert "No dataset loaded yet" in body
    assert f"**{db.stem} (CS_METRICS_DB)**" in body
    assert "data/mappings/la311_2017.toml" in body  # the committed examples are quoted
    assert not [b for b in at.button if b.key and b.key.startswith("ds_switch")]


def test_validate_shows_what_would_load_before_anything_is_loaded(env):
    _, root = env
    at = validate(open_page(), [("tickets.csv", csv_bytes(GOOD + BAD))])
    assert not at.error
    cards = {m.label: m.value for m in at.metric}
    assert cards["Rows read"] == "5"
    assert cards["Rows that would load"] == "3"
    assert cards["Rows that would be rejected"] == "2"
    want = ds.validate(at.session_state[STAGED][1])
    assert cards["Quality score (0–100)"] == f"{want.quality.score:.1f}"
    frames = [d.value for d in at.dataframe]
    per_table = next(f for f in frames if "would" not in f.columns and "files" in f.columns)
    assert per_table.iloc[0][["table", "read", "loaded", "rejected"]].tolist() == [
        "tickets", 5, 3, 2]
    reasons = next(f for f in frames if "meaning" in f.columns and "reason" in f.columns)
    assert set(reasons["reason"]) == {"unknown_status", "unparseable_timestamp"}
    assert reasons["meaning"].notna().all()
    rejects = next(f for f in frames if "source_row" in f.columns)
    assert rejects["source_row"].tolist() == [4, 5]
    assert rejects["value"].tolist() == ["wontfix", "yesterday"]
    assert any(b.label == "Download rejected rows (CSV)" for b in at.get("download_button"))
    assert ds.list_datasets(root) == []  # validated, not loaded
    assert at.button(key="ds_load").disabled  # no name yet


def test_a_bad_mapping_shows_the_command_line_message(env):
    _, root = env
    at = open_page()
    at.radio(key="ds_how").set_value("An export plus my mapping file")
    ok(at.run())
    at.file_uploader(key="ds_mapping").set_value(("mine.toml", BAD_MAPPING, "text/plain"))
    at = validate(at, [("export.csv", EXPORT)])
    folder = at.session_state[STAGED][1]
    with pytest.raises(CsMetricsError) as exc:
        cs_metrics.ingest(folder, folder / ds.MAPPING_NAME, db=root / "cli.duckdb")
    assert [e.value for e in at.error] == [str(exc.value)]
    assert "table tickets, column status" in at.error[0].value
    assert not [b for b in at.button if b.key == "ds_load"]  # nothing to load
    assert ds.list_datasets(root) == []


def test_load_and_switch_then_every_page_follows(env):
    db, root = env
    at = validate(open_page(), [("tickets.csv", csv_bytes(GOOD + BAD))])
    at.text_input(key="ds_name").input("Uploaded Feb")
    ok(at.run())
    at.button(key="ds_load").click()
    ok(at.run())
    loaded = root / "uploaded-feb.duckdb"
    assert ds.list_datasets(root) == [loaded]
    assert Path(at.session_state["dataset_db"]) == loaded
    assert "Loaded uploaded-feb and switched to it" in texts(at)
    assert not list((root / ds.UPLOADS).iterdir())  # the staged upload is cleaned up
    at.switch_page(OVERVIEW).run()
    assert ok(at) and tickets_card(at) == ticket_count(loaded) == "3"
    assert "Dataset: **uploaded-feb**" in "\n".join(c.value for c in at.sidebar.caption)
    # back to the default with the page's Switch control
    ok(at.switch_page(PAGE).run())
    at.button(key="ds_switch__default").click()
    ok(at.run())
    assert "dataset_db" not in at.session_state
    ok(at.switch_page(OVERVIEW).run())
    assert tickets_card(at) == ticket_count(db) == "4"


def test_switching_the_session_dataset_changes_the_overview(env):
    db, root = env
    folder = ds.stage_upload({"tickets.csv": csv_bytes(GOOD)}, None, root)
    other = ds.load(folder, None, "other", root)
    at = open_page(OVERVIEW)
    assert tickets_card(at) == ticket_count(db) == "4"
    at.session_state["dataset_db"] = str(other)
    ok(at.run())
    assert tickets_card(at) == ticket_count(other) == "3"
    ok(at.switch_page(PAGE).run())
    assert "**other**" in texts(at)
    assert [b.key for b in at.button if b.key and b.key.startswith("ds_switch")] == [
        "ds_switch__default"]  # the active dataset has no Switch button


def test_a_deleted_dataset_falls_back_to_the_default(env):
    db, root = env
    at = open_page(OVERVIEW, {"dataset_db": str(root / "gone.duckdb")})
    assert tickets_card(at) == ticket_count(db)
    assert any("no longer exists" in w.value for w in at.warning)
    assert "dataset_db" not in at.session_state


def test_a_dataset_without_tickets_is_an_error_not_a_sample(env, monkeypatch):
    _, root = env
    monkeypatch.delenv("CS_METRICS_DB")  # the default is the sample warehouse again
    root.mkdir()
    empty = root / "empty.duckdb"
    Warehouse(empty).close()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["dataset_db"] = str(empty)
    ok(at.run())
    assert [e.value for e in at.error] == [
        f"The warehouse {empty} has no tickets yet. Load data into it with the Your data page."
    ]
    # no sample generated (the open database may keep its write-ahead log beside it)
    assert sorted(p.name for p in root.iterdir() if p.suffix != ".wal") == ["empty.duckdb"]
