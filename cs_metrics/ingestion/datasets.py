"""Datasets a user brings: stage uploaded files, validate them, load each into its own warehouse.

A dataset is one DuckDB file ``<root>/<slug>.duckdb``; uploads are staged in
``<root>/_uploads/<id>/`` (the files as uploaded, plus ``mapping.toml`` when there is one).
Validation runs the real ``ingest`` into a throwaway warehouse in a temporary folder, so it
says exactly what ``python -m cs_metrics ingest`` would say, and never touches a dataset.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PureWindowsPath

import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.loader import REJECT_COLUMNS, IngestReport, ingest
from cs_metrics.ingestion.quality import QualityReport, quality_report

DATASETS_ENV = "CS_METRICS_DATASETS"
DEFAULT_ROOT = Path("data") / "datasets"
MAPPING_NAME = "mapping.toml"
UPLOADS = "_uploads"
REJECTS_SHOWN = 500
UPLOAD_MAX_AGE_S = 24 * 3600  # staged uploads older than this are removed on the next upload

__all__ = [
    "MAPPING_NAME",
    "REJECTS_SHOWN",
    "Validation",
    "default_root",
    "discard_upload",
    "list_datasets",
    "load",
    "safe_name",
    "slug",
    "stage_upload",
    "validate",
]


def default_root() -> Path:
    """Where datasets live: $CS_METRICS_DATASETS, else data/datasets (git-ignored)."""
    return Path(os.environ.get(DATASETS_ENV) or DEFAULT_ROOT)


# --- staging -------------------------------------------------------------------------------


def safe_name(name: str) -> str:
    """The plain file name of an uploaded ``name``: directories stripped (``/`` or ``\\``).

    Raises CsMetricsError for a name that is not a plain file (empty, ``.``, ``..``, hidden,
    ending in a separator, with control characters) or that would shadow the mapping file.
    """
    base = PureWindowsPath(name).name  # splits on both / and \ and drops a drive
    if (name.endswith(("/", "\\")) or not base or base != base.strip()
            or base in (".", "..") or base.startswith(".")):
        raise CsMetricsError(
            f"{name!r} is not a plain file name; upload files such as tickets.csv."
        )
    if any(unicodedata.category(ch).startswith("C") for ch in base):
        raise CsMetricsError(f"{name!r} contains control characters; rename the file.")
    if base.lower() == MAPPING_NAME:
        raise CsMetricsError(
            f"{name!r} is a data-file upload named like the mapping file; upload the mapping "
            "as the mapping file instead."
        )
    return base


def stage_upload(files: dict[str, bytes], mapping_toml: str | None, root: Path) -> Path:
    """Write uploaded files (and the mapping TOML, as ``mapping.toml``) into a new folder
    under ``root/_uploads/``; returns the folder.

    Only plain file names are kept (``../x.csv`` becomes ``x.csv``); a name that is not a
    plain file, or two uploads with the same name, is a CsMetricsError and nothing is
    written.
    """
    if not files:
        raise CsMetricsError("No data file was uploaded; add tickets.csv or your export.")
    names: dict[str, str] = {}
    for name in files:
        base = safe_name(name)
        if base in names:
            raise CsMetricsError(
                f"{names[base]!r} and {name!r} would both be saved as {base}; upload files "
                "with different names."
            )
        names[base] = name
    _prune_uploads(Path(root))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(root) / UPLOADS / f"{stamp}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    for base, name in names.items():
        (folder / base).write_bytes(files[name])
    if mapping_toml is not None:
        (folder / MAPPING_NAME).write_text(mapping_toml, encoding="utf-8")
    return folder


def _prune_uploads(root: Path) -> None:
    # a browser session that ends between Validate and Load leaves its upload behind
    uploads = root / UPLOADS
    if not uploads.is_dir():
        return
    cutoff = time.time() - UPLOAD_MAX_AGE_S
    for folder in uploads.iterdir():
        if folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)


def discard_upload(folder: Path, root: Path) -> None:
    """Remove a staged upload folder (only ever a folder under ``root/_uploads/``)."""
    folder, uploads = Path(folder).resolve(), (Path(root) / UPLOADS).resolve()
    if folder.parent == uploads and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)


def _mapping_for(folder: Path, mapping: str | Path | None) -> Path | None:
    """The mapping to use: the one given, else the folder's staged mapping.toml, if any."""
    if mapping is not None:
        return Path(mapping)
    staged = Path(folder) / MAPPING_NAME
    return staged if staged.is_file() else None


# --- validation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Validation:
    """What loading a folder would do, found by loading it into a throwaway warehouse.

    ``report`` and ``quality`` are None when ``error`` holds a fatal message (a bad mapping,
    no tickets file, an unreadable file): the same sentence the command line prints.
    ``rejects`` holds the first rejected rows in source order (at most REJECTS_SHOWN).
    ``report.db`` and ``report.rejects_csv`` name the throwaway files, already deleted.
    """

    report: IngestReport | None
    quality: QualityReport | None
    rejects: pd.DataFrame
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def rejected(self) -> int:
        return 0 if self.report is None else sum(t.rejected_total for t in self.report.tables)

    @property
    def loaded(self) -> int:
        return 0 if self.report is None else sum(t.loaded for t in self.report.tables)


def _empty_rejects() -> pd.DataFrame:
    return pd.DataFrame(columns=list(REJECT_COLUMNS))


def validate(folder: str | Path, mapping: str | Path | None = None) -> Validation:
    """Run the real ingest of ``folder`` (with ``mapping``, else the folder's mapping.toml,
    else as a canonical folder) into a temporary warehouse; nothing else is written.

    A fatal problem comes back as ``Validation.error``, not as an exception.
    """
    folder = Path(folder)
    with tempfile.TemporaryDirectory(prefix="cs_metrics_validate_") as tmp:
        db = Path(tmp) / "validate.duckdb"
        try:
            report = ingest(folder, _mapping_for(folder, mapping), db=db,
                            rejects_csv=Path(tmp) / "rejects.csv")
        except CsMetricsError as exc:
            return Validation(None, None, _empty_rejects(), str(exc))
        wh = Warehouse(db, read_only=True)
        try:
            quality = quality_report(wh)
            rejects = wh.df(
                f"select {', '.join(REJECT_COLUMNS)} from rejects "
                "order by table_name, source_file, source_row limit ?",
                [REJECTS_SHOWN],
            )
        finally:
            wh.close()
    # the staged folder is an implementation detail: show the file name the user uploaded
    rejects["source_file"] = rejects["source_file"].map(lambda p: Path(str(p)).name)
    return Validation(report, quality, rejects)


# --- datasets ------------------------------------------------------------------------------


def slug(name: str) -> str:
    """A dataset name as a file name: lowercase ASCII letters, digits, ``-`` and ``_``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    out = re.sub(r"[^a-z0-9_]+", "-", ascii_name.lower()).strip("-_")[:60].strip("-_")
    if not out:
        raise CsMetricsError(
            f"{name!r} is not a usable dataset name; use letters or digits, e.g. 'zendesk-2024'."
        )
    return out


def load(folder: str | Path, mapping: str | Path | None, name: str, root: Path) -> Path:
    """Ingest ``folder`` into ``root/<slug(name)>.duckdb``, replacing what that dataset held;
    returns the warehouse path. Rejected rows go to ``root/<slug>.rejects.csv``.

    Raises CsMetricsError (the command line's message) on a fatal problem; then nothing is
    written, not even an empty warehouse file.
    """
    folder, root = Path(folder), Path(root)
    db = root / f"{slug(name)}.duckdb"
    existed = db.exists()
    root.mkdir(parents=True, exist_ok=True)
    try:
        ingest(folder, _mapping_for(folder, mapping), db=db, replace=True,
               rejects_csv=root / f"{slug(name)}.rejects.csv")
    except CsMetricsError:
        if not existed:  # the mapping is checked before the file opens; belt and braces
            for leftover in (db, db.with_name(db.name + ".wal")):
                leftover.unlink(missing_ok=True)
        raise
    return db


def list_datasets(root: Path | None = None) -> list[Path]:
    """The dataset warehouses under ``root`` (default ``default_root()``), by name."""
    root = Path(root) if root is not None else default_root()
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("*.duckdb") if p.is_file())
