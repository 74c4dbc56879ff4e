"""Your data page, the upload: the files and mapping someone picks, staged in a private folder,
and what validating them found."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from cs_metrics import CsMetricsError
from cs_metrics.core.safe_text import escape_markdown
from cs_metrics.ingestion import datasets as ds
from views._exports import table_downloads
from views._tables import load_count_columns, show_table

_log = logging.getLogger(__name__)

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "mappings"
DATA_TYPES = ["csv", "gz", "parquet", "jsonl", "ndjson", "json", "tsv", "txt"]

HOW_CANONICAL = "Canonical files (no mapping)"
HOW_UPLOAD = "An export plus my mapping file"
HOW_EXAMPLE = "An export plus an example mapping"
HOWS = (HOW_CANONICAL, HOW_UPLOAD, HOW_EXAMPLE)

# session state of this page
STAGED = "ds_staged"  # (fingerprint of the upload, staged folder)


def _examples() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(EXAMPLES.glob("*.toml"))}


def _fingerprint(files: list, mapping_text: str | None) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.file_id}|{f.name}|{f.size}\n".encode())
    h.update(b"\x00" if mapping_text is None else mapping_text.encode("utf-8"))
    return h.hexdigest()


@dataclass(frozen=True)
class Upload:
    """What the upload widgets hold."""

    files: list  # Streamlit's UploadedFile objects
    mapping_text: str | None  # the mapping TOML, or None for canonical files
    mapping_name: str | None  # how the user knows the mapping: its file name or example
    todo: str | None = None  # what is still missing, e.g. the mapping file
    error: str | None = None  # why the upload cannot be validated, one sentence


def _empty_files(files: list) -> str | None:
    empty = [f.name for f in files if not f.size]
    if not empty:
        return None
    names = ", ".join(empty)
    return (f"{names} {'is' if len(empty) == 1 else 'are'} empty (0 bytes); upload the "
            "file with its rows.")


def upload_ui() -> Upload:
    """The upload widgets -> the files, the mapping, and what is missing or wrong."""
    files = st.file_uploader(
        "Data files", accept_multiple_files=True, type=DATA_TYPES, key="ds_files",
        help="Canonical files (tickets.csv, feedback.csv, ...) or your export's files.",
    ) or []
    how = st.radio("How are the files laid out?", HOWS, key="ds_how", horizontal=True)
    mapping_text: str | None = None
    mapping_name: str | None = None
    todo: str | None = None
    error = _empty_files(files)
    if how == HOW_UPLOAD:
        up = st.file_uploader("Mapping file (TOML)", type=["toml"], key="ds_mapping")
        if up is None:
            todo = "Upload the mapping file that goes with the export."
        else:
            mapping_name = up.name
            raw = up.getvalue()
            try:
                mapping_text = raw.decode("utf-8")
            except UnicodeDecodeError:
                error = error or (f"{up.name} is not UTF-8 text; save the mapping file as "
                                  "UTF-8 and upload it again.")
            else:
                if not mapping_text.strip():
                    error = error or (f"{up.name} is empty; upload the mapping file with its "
                                      "[tickets] section.")
    elif how == HOW_EXAMPLE:
        examples = _examples()
        name = st.selectbox("Example mapping", list(examples), key="ds_example",
                            help="From data/mappings/; its source names the file to upload.")
        mapping_text = examples.get(name) if name else None
        mapping_name = f"data/mappings/{name}" if name else None
    return Upload(files, mapping_text, mapping_name, todo, error)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def upload_detail(folder: Path, mapping_name: str | None) -> dict:
    """The audit log's record of a staged upload: each data file's name, size and SHA-256,
    and the mapping's name and SHA-256 (as staged, the bytes ingest reads)."""
    mapping = folder / ds.MAPPING_NAME
    files = [{"name": p.name, "bytes": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(folder.iterdir()) if p.is_file() and p != mapping]
    detail: dict = {"files": files, "mapping": mapping_name}
    if mapping.is_file():
        detail["mapping_sha256"] = _sha256(mapping)
    return detail


def _as_uploaded(message: str, folder: Path, mapping_name: str | None) -> str:
    """``message`` with the staging folder's paths written as the names the user uploaded:
    the server's folders are nobody's business, and mean nothing to them."""
    for base in dict.fromkeys((str(folder.resolve()), str(folder))):
        message = message.replace(os.path.join(base, ds.MAPPING_NAME),
                                  mapping_name or ds.MAPPING_NAME)
        # SOURCE and the mapping's folder are both the staging folder: name it once
        message = message.replace(f"{base} or {base}", base)
        message = message.replace(base + os.sep, "").replace(base, "the uploaded files")
    return message


def _unexpected(what: str, exc: Exception) -> str:
    # hostile or broken input can trip a library below in ways it does not name; the page
    # still says one sentence, and the server's log keeps the traceback
    _log.exception("The Your data page could not %s", what)
    return (f"Could not {what}: the files or the mapping hit a problem that has no message "
            f"of its own ({type(exc).__name__}). Check them; the server's log has the details.")


def _stage(files: list, mapping_text: str | None, sig: str) -> Path:
    """Save the upload in a new staging folder (file names reduced to their plain base
    name by ``stage_upload``); a file system refusal, such as a name too long, is a
    CsMetricsError like the others."""
    root = ds.default_root()
    old = st.session_state.pop(STAGED, None)
    if old is not None:
        ds.discard_upload(old[1], root)
    try:
        folder = ds.stage_upload({f.name: f.getvalue() for f in files}, mapping_text, root)
    except OSError as exc:
        raise CsMetricsError(
            f"Could not save the upload ({exc.strerror or exc}); rename the files with "
            "short plain names and try again."
        ) from exc
    st.session_state[STAGED] = (sig, folder)
    return folder


def _show_validation(v: ds.Validation) -> None:
    if not v.ok:
        st.error(escape_markdown(v.error))
        st.caption("Nothing was loaded. This is the message `python -m cs_metrics ingest` "
                   "gives for the same files; fix the files or the mapping and validate again.")
        return
    assert v.report is not None and v.quality is not None
    read = sum(t.read for t in v.report.tables)
    cols = st.columns(4)
    cols[0].metric("Rows read", f"{read:,}", border=True)
    cols[1].metric("Rows that would load", f"{v.loaded:,}", border=True)
    cols[2].metric("Rows that would be rejected", f"{v.rejected:,}", border=True)
    score = "–" if v.quality.score is None else f"{v.quality.score:.1f}"
    cols[3].metric("Quality score (0–100)", score, border=True,
                   help="The score the Data quality page would show after loading.")
    st.markdown("**Per table**")
    show_table(
        pd.DataFrame([
            {"table": t.table, "files": ", ".join(Path(f).name for f in t.files),
             "read": t.read, "loaded": t.loaded, "rejected": t.rejected_total,
             "warnings": sum(n for _, n in t.warnings), "collapsed": t.collapsed,
             "skipped_empty": t.skipped_empty, "skipped_filter": t.skipped_filter,
             "merged": t.merged}
            for t in v.report.tables
        ]),
        hide_index=True,
        column_config={
            "table": "Table", "files": "Source",
            "read": st.column_config.NumberColumn("Read", format="localized"),
            "loaded": st.column_config.NumberColumn("Would load", format="localized"),
            "rejected": st.column_config.NumberColumn("Rejected", format="localized"),
            "warnings": st.column_config.NumberColumn("Warnings", format="localized"),
            **load_count_columns(),
        },
    )
    reasons, warnings = v.quality.rejects_by_reason, v.quality.warnings
    st.markdown("**Rejected rows by reason**")
    if reasons.empty:
        st.success("No row would be rejected.")
    else:
        show_table(reasons, hide_index=True, column_order=["table", "reason", "rows", "meaning"],
                     column_config={"table": "Table", "reason": "Reason", "rows": "Rows",
                                    "meaning": "Meaning"})
    st.markdown("**Warnings** (the row loads; a value is changed or flagged)")
    if warnings.empty:
        st.success("No warnings.")
    else:
        show_table(warnings, hide_index=True,
                     column_order=["table", "warning", "rows", "meaning"],
                     column_config={"table": "Table", "warning": "Warning", "rows": "Rows",
                                    "meaning": "Meaning"})
    if not v.rejects.empty:
        shown = len(v.rejects)
        st.markdown(f"**First rejected rows** ({shown:,} of {v.rejected:,}, in source order)")
        st.caption("Source row 1 is the first data row after the header; raw is the whole "
                   "source row.")
        show_table(v.rejects, hide_index=True, column_config={
            "table_name": "Table", "source_file": "Source file",
            "source_row": st.column_config.NumberColumn("Source row", format="%d"),
            "reason": "Reason", "column_name": "Column", "value": "Value",
            "detail": st.column_config.TextColumn("Detail", width="large"),
            "raw": st.column_config.TextColumn("Raw", width="large"),
        })
        with st.container(horizontal=True):
            table_downloads(v.rejects, "rejects", None, "ds_rejects",
                            labels=("Download rejected rows (CSV)",
                                    "Download rejected rows (Parquet)"))
