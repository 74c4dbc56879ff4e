from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from cs_metrics.ingest import ingest
from cs_metrics.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
SAMPLE_END = datetime(2025, 3, 1)


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
