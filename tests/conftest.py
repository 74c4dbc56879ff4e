from __future__ import annotations

import gc
import os
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st

from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.loader import ingest
from simulations.generator import generate

# The app's work loop (alert rules on a schedule, scheduled reports, commands handed over)
# would evaluate the rules in every app a test starts, on warehouses tests share; the tests
# of the loop turn it on for their own app.
os.environ["CS_METRICS_SERVER_LOOP"] = "off"
# Saved views go to a file of the test run, never to the person's own configuration folder.
if not os.environ.get("CS_METRICS_VIEWS"):
    import tempfile

    os.environ["CS_METRICS_VIEWS"] = os.path.join(
        tempfile.mkdtemp(prefix="cs-metrics-views-"), "saved_views.json")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
SAMPLE_END = datetime(2025, 3, 1)


def open_expanders(at):
    """Open every expander whose content is made only while it is open (the pages'
    ``views._drill.opened``, keys ``open_*``) and rerun, as someone clicking each one."""
    keys = [e.proto.id.split("-", 2)[2] for e in at.expander if "-open_" in e.proto.id]
    for key in keys:
        at.session_state[key] = True
    return at.run()


def write_csv(folder: Path, name: str, rows: list[dict] | pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    path = folder / f"{name}.csv"
    df.to_csv(path, index=False)
    return path


def ticket(ticket_id: str, created_at: str = "2024-01-01 10:00:00", status: str = "open",
           **extra) -> dict:
    return {"ticket_id": ticket_id, "created_at": created_at, "status": status, **extra}


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """A small generated dataset (every canonical table), shared by the session."""
    from simulations.generator import generate

    out = tmp_path_factory.mktemp("sample")
    generate(out, tickets=6000, days=120, seed=11, end=SAMPLE_END)
    return out


@pytest.fixture(scope="session")
def sample_wh(sample_dir, tmp_path_factory) -> Warehouse:
    db = tmp_path_factory.mktemp("wh") / "sample.duckdb"
    ingest(sample_dir, db=db)
    return Warehouse(db, read_only=True)


@pytest.fixture(autouse=True)
def _unfrozen_heap():
    """A run of app.py freezes the test process's heap out of garbage collection (as it does
    the server's, views._live.freeze_loaded_code); tests hand it back afterwards, so a
    cycle among a test's objects (a warehouse and its connection) is still collected."""
    yield
    if gc.get_freeze_count():
        gc.unfreeze()


@pytest.fixture
def fresh_caches():
    """Page tests start and end with empty Streamlit caches (they are process-wide)."""
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory) -> Path:
    """A small generated warehouse of the module's own, as the app would open it."""
    tmp = tmp_path_factory.mktemp("page_sample")
    generate(tmp / "sample", tickets=4000, days=90, seed=5, end=datetime(2025, 3, 1))
    ingest(tmp / "sample", db=tmp / "wh.duckdb")
    return tmp / "wh.duckdb"


@pytest.fixture
def deferred_downloads(monkeypatch) -> dict:
    """The files of download buttons made on click (``st.download_button`` given a callable),
    by file name: calling one does what the click's request does on the server."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    made: dict = {}
    real = MediaFileManager.add_deferred

    def recording(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        made[file_name] = data_callable
        return real(self, data_callable, mimetype, coordinates, file_name=file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", recording)
    return made
