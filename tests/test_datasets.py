"""Uploaded datasets: staging refuses path tricks, validation is the real ingest, load + list."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

import cs_metrics
from cs_metrics import CsMetricsError, Warehouse
from cs_metrics.ingestion import datasets as ds
from tests.conftest import ticket

GOOD = [
    ticket("T1", "2025-01-10 10:00:00", "closed", resolved_at="2025-01-10 12:00:00"),
    ticket("T2", "2025-01-12 09:30:00", "open"),
    ticket("T3", "2025-01-20 15:00:00", "in_progress"),
]
BAD = [
    ticket("T4", "2025-01-21 08:00:00", "wontfix"),
    ticket("T5", "yesterday", "open"),
]


def csv_bytes(rows: list[dict]) -> bytes:
    return pd.DataFrame(rows).to_csv(index=False).encode()


EXPORT = (
    b"Key,Opened,State\n"
    b"A1,2025-01-10 10:00:00,Done\n"
    b"A2,2025-01-11 10:00:00,New\n"
)
MAPPING = """
[tickets]
source = "export.csv"
[tickets.columns]
ticket_id = "Key"
created_at = "Opened"
status = "State"
[tickets.values.status]
open = ["New"]
closed = ["Done"]
"""


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "datasets"


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("name, saved", [
    ("../../etc/tickets.csv", "tickets.csv"),
    ("/abs/path/tickets.csv", "tickets.csv"),
    ("C:\\Users\\me\\tickets.csv", "tickets.csv"),
    ("sub\\..\\feedback.csv", "feedback.csv"),
    ("tickets.csv", "tickets.csv"),
])
def test_staging_keeps_only_the_plain_file_name(root, name, saved):
    folder = ds.stage_upload({name: b"x"}, None, root)
    assert files_in(folder) == {saved}
    assert folder.parent == root / ds.UPLOADS
    assert (folder / saved).read_bytes() == b"x"


@pytest.mark.parametrize("name", ["", ".", "..", "../", "a/..", "dir/", ".hidden.csv",
                                  "tick\x00ets.csv", "bad\nname.csv", "mapping.toml",
                                  " tickets.csv"])
def test_staging_refuses_names_that_are_not_plain_files(root, name):
    with pytest.raises(CsMetricsError):
        ds.stage_upload({name: b"x", "tickets.csv": b"y"}, None, root)
    assert not root.exists()  # nothing written


def test_staging_refuses_two_uploads_with_one_name_and_no_upload(root):
    with pytest.raises(CsMetricsError, match="both be saved as tickets.csv"):
        ds.stage_upload({"a/tickets.csv": b"1", "b/tickets.csv": b"2"}, None, root)
    with pytest.raises(CsMetricsError, match="No data file"):
        ds.stage_upload({}, MAPPING, root)
    assert not root.exists()


def test_staging_writes_the_mapping_and_a_fresh_folder_each_time(root):
    one = ds.stage_upload({"export.csv": EXPORT}, MAPPING, root)
    two = ds.stage_upload({"export.csv": EXPORT}, None, root)
    assert one != two
    assert files_in(one) == {"export.csv", ds.MAPPING_NAME}
    assert (one / ds.MAPPING_NAME).read_text() == MAPPING
    assert files_in(two) == {"export.csv"}
    ds.discard_upload(one, root)
    assert not one.exists() and two.exists()
    ds.discard_upload(root, root)  # never anything but an upload folder
    assert two.exists()


def test_old_staged_uploads_are_pruned(root):
    old = ds.stage_upload({"tickets.csv": b"1"}, None, root)
    recent = ds.stage_upload({"tickets.csv": b"2"}, None, root)
    stale = time.time() - ds.UPLOAD_MAX_AGE_S - 60
    os.utime(old, (stale, stale))
    new = ds.stage_upload({"tickets.csv": b"3"}, None, root)
    assert not old.exists() and recent.exists() and new.exists()


def test_validate_a_good_canonical_folder(root):
    folder = ds.stage_upload({"tickets.csv": csv_bytes(GOOD)}, None, root)
    v = ds.validate(folder)
    assert v.ok and v.error is None
    assert v.report.table("tickets").read == 3 and v.report.table("tickets").loaded == 3
    assert v.loaded == 3 and v.rejected == 0
    assert v.quality.score is not None and v.quality.validity == 1.0
    assert v.rejects.empty
    assert list(ds.list_datasets(root)) == []  # nothing loaded
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.error = "x"  # type: ignore[misc]


def test_validate_a_mapped_export(root):
    folder = ds.stage_upload({"export.csv": EXPORT}, MAPPING, root)
    v = ds.validate(folder)
    assert v.ok, v.error
    assert v.loaded == 2 and v.rejected == 0


def test_validate_counts_and_shows_the_rejected_rows(root):
    folder = ds.stage_upload({"tickets.csv": csv_bytes(GOOD + BAD)}, None, root)
    v = ds.validate(folder)
    assert v.ok
    t = v.report.table("tickets")
    assert (t.read, t.loaded, t.rejected_total) == (5, 3, 2)
    assert dict(t.rejected) == {"unknown_status": 1, "unparseable_timestamp": 1}
    reasons = v.quality.rejects_by_reason.set_index("reason")
    assert reasons.loc["unknown_status", "rows"] == 1
    assert reasons.loc["unknown_status", "meaning"] == cs_metrics.REJECT_REASONS["unknown_status"]
    assert v.rejects["source_row"].tolist() == [4, 5]
    assert v.rejects["reason"].tolist() == ["unknown_status", "unparseable_timestamp"]
    assert v.rejects["value"].tolist() == ["wontfix", "yesterday"]
    assert set(v.rejects["source_file"]) == {"tickets.csv"}  # the uploaded name, no folder
    assert "raw" in v.rejects.columns
    assert v.quality.validity == pytest.approx(3 / 5)


def test_validate_keeps_only_the_first_rejects(root, monkeypatch):
    monkeypatch.setattr(ds, "REJECTS_SHOWN", 1)
    folder = ds.stage_upload({"tickets.csv": csv_bytes(GOOD + BAD)}, None, root)
    v = ds.validate(folder)
    assert v.rejected == 2 and v.rejects["source_row"].tolist() == [4]


def test_a_bad_mapping_is_the_message_and_nothing_is_written(root, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    bad = MAPPING.replace('status = "State"', 'status = "Stat"')
    folder = ds.stage_upload({"export.csv": EXPORT}, bad, root)
    before = files_in(folder)
    v = ds.validate(folder)
    assert not v.ok and v.report is None and v.quality is None and v.rejects.empty
    assert str(folder / ds.MAPPING_NAME) in v.error
    assert "table tickets" in v.error and "column status" in v.error and "'Stat'" in v.error
    # the same sentence the command line prints
    with pytest.raises(CsMetricsError) as exc:
        cs_metrics.ingest(folder, folder / ds.MAPPING_NAME, db=tmp_path / "cli.duckdb")
    assert str(exc.value) == v.error
    assert files_in(folder) == before
    assert list(scratch.iterdir()) == []  # the throwaway warehouse is gone too
    assert ds.list_datasets(root) == []
    with pytest.raises(CsMetricsError):
        ds.load(folder, None, "bad", root)
    assert ds.list_datasets(root) == []


def test_a_folder_without_tickets_is_the_message(root):
    folder = ds.stage_upload({"feedback.csv": b"ticket_id,csat\nT1,5\n"}, None, root)
    v = ds.validate(folder)
    assert not v.ok and "has no tickets file" in v.error


def test_load_and_list_datasets(root):
    first = ds.stage_upload({"tickets.csv": csv_bytes(GOOD + BAD)}, None, root)
    db = ds.load(first, None, "Zendesk 2024!", root)
    assert db == root / "zendesk-2024.duckdb"
    second = ds.stage_upload({"export.csv": EXPORT}, MAPPING, root)
    other = ds.load(second, None, "export", root)
    assert ds.list_datasets(root) == [other, db]
    assert (root / "zendesk-2024.rejects.csv").exists()
    wh = Warehouse(db, read_only=True)
    try:
        assert cs_metrics.query(wh, ["ticket_count"]).iloc[0, 0] == 3
    finally:
        wh.close()
    # loading again under the same name replaces, it does not add
    ds.load(second, None, "zendesk 2024", root)
    wh = Warehouse(db, read_only=True)
    try:
        assert cs_metrics.query(wh, ["ticket_count"]).iloc[0, 0] == 2
    finally:
        wh.close()
    assert len(ds.list_datasets(root)) == 2


def test_list_datasets_of_a_missing_root(tmp_path):
    assert ds.list_datasets(tmp_path / "nowhere") == []


@pytest.mark.parametrize("name", ["", "   ", "!!!", "日本"])
def test_unusable_dataset_names(name):
    with pytest.raises(CsMetricsError, match="not a usable dataset name"):
        ds.slug(name)


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.delenv(ds.DATASETS_ENV, raising=False)
    assert ds.default_root() == Path("data") / "datasets"
    monkeypatch.setenv(ds.DATASETS_ENV, str(tmp_path))
    assert ds.default_root() == tmp_path
