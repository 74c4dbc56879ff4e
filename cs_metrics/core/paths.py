"""Where the app's warehouse is: ``$CS_METRICS_DB``, else ``data/warehouse.duckdb`` under the
working folder. A module of its own, light to import (the command line's --help names it)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DB_ENV", "DEFAULT_DB", "default_db_path", "is_default_db"]

DB_ENV = "CS_METRICS_DB"
DEFAULT_DB = Path("data") / "warehouse.duckdb"


def default_db_path() -> Path:
    """The warehouse the app uses: $CS_METRICS_DB, else data/warehouse.duckdb."""
    return Path(os.environ.get(DB_ENV) or DEFAULT_DB)


def is_default_db(path: str | Path) -> bool:
    """Whether ``path`` is the app's own warehouse (the one it fills with a sample)."""
    return Path(path).resolve() == DEFAULT_DB.resolve()
