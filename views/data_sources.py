"""Your data: upload files, see what would load and what would be rejected, load, switch.

Uploads are untrusted: each file is saved under its plain base name in a staging folder of
its own (``cs_metrics.ingestion.datasets.stage_upload``), and the staged mapping is read with that
folder as SOURCE, so its ``source`` lines can name nothing outside it. Validating and
loading are written to the audit log with each file's name, size and SHA-256 and the
mapping's SHA-256. A bad upload is one sentence on the page, never a traceback.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import streamlit as st

import cs_metrics
from cs_metrics import TABLES, CsMetricsError
from cs_metrics.core.access import LOCAL
from cs_metrics.core.safe_text import escape_markdown
from cs_metrics.ingestion import datasets as ds
from views._auth import audit, current_scope, require
from views._common import (
    active_db,
    base_warehouse,
    dataset_label,
    is_active,
    is_same,
    load_count_columns,
    show_table,
    switch_dataset,
    table_downloads,
)

_log = logging.getLogger(__name__)

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "mappings"
DATA_TYPES = ["csv", "gz", "parquet", "jsonl", "ndjson", "json", "tsv", "txt"]

HOW_CANONICAL = "Canonical files (no mapping)"
HOW_UPLOAD = "An export plus my mapping file"
HOW_EXAMPLE = "An export plus an example mapping"
HOWS = (HOW_CANONICAL, HOW_UPLOAD, HOW_EXAMPLE)

# session state of this page
STAGED = "ds_staged"  # (fingerprint of the upload, staged folder)
VALIDATION = "ds_validation"  # (fingerprint, Validation)
FLASH = "ds_flash"  # a message to show once after a rerun


def _examples() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(EXAMPLES.glob("*.toml"))}


def _tables_help() -> pd.DataFrame:
    rows = [
        {
            "file": f"{name}.csv / .csv.gz / .parquet / .jsonl",
            "required columns": ", ".join(table.required) or "–",
            "optional columns": ", ".join(c for c in table.column_names
                                          if c not in table.required),
        }
        for name, table in TABLES.items()
    ]
    return pd.DataFrame(rows)


def _intro() -> None:
    st.markdown(
        "Bring your own tickets in one of two ways, then **validate** them (nothing is loaded "
        "yet: you see what would load and what would be rejected, and why) and **load** them "
        "into a dataset of their own. Every page then shows that dataset until you switch."
    )
    left, right = st.columns(2)
    with left.container(border=True):
        st.markdown(
            "**1. Canonical files.** One file per table, named after it — `tickets.csv` "
            "(or `.csv.gz`, `.parquet`, `.jsonl`), optionally `feedback.csv`, "
            "`representatives.csv`, `customers.csv`, `outages.csv`, `ticket_events.csv` — "
            "with the canonical column names. Only `tickets` is required."
        )
        with st.expander("Tables and columns"):
            show_table(_tables_help(), hide_index=True)
    with right.container(border=True):
        st.markdown(
            "**2. Any export plus a mapping file (TOML).** One section per table naming its "
            "`source` file, optional `timezone`, `format` and `delimiter`, a `columns` table "
            "(canonical column = source column name or a DuckDB SQL expression) and optional "
            "`values` tables (canonical value = list of source values). See *Bringing your own "
            "data* in the README; the examples below come from `data/mappings/`."
        )
        examples = _examples()
        if examples:
            with st.expander("Example mappings"):
                for name, text in examples.items():
                    st.caption(f"`data/mappings/{name}`")
                    st.code(text, language="toml")


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


def _load_ui(folder: Path, mapping_name: str | None) -> None:
    st.subheader("3. Load")
    root = ds.default_root()
    name = st.text_input("Dataset name", key="ds_name", placeholder="e.g. zendesk-2024",
                         help="The dataset is stored as data/datasets/<name>.duckdb.")
    target: Path | None = None
    problem: str | None = None
    if name.strip():
        try:
            target = root / f"{ds.slug(name)}.duckdb"
        except CsMetricsError as exc:
            problem = str(exc)
    if problem:
        st.error(escape_markdown(problem))
    elif target is not None and target.exists():
        st.warning(f"A dataset {escape_markdown(target.stem)} exists already: loading "
                   "replaces what it holds.")
    if not st.button("Load and switch", key="ds_load", type="primary",
                     disabled=target is None,
                     help="Loads the validated files into their own warehouse and makes it "
                          "this session's dataset on every page."):
        if target is None and not problem:
            st.caption("Name the dataset to load it.")
        return
    try:
        with st.spinner(f"Loading into {target}…"):
            detail = upload_detail(folder, mapping_name)
            db = ds.load(folder, None, name, root)
    except CsMetricsError as exc:
        st.error(escape_markdown(_as_uploaded(str(exc), folder, mapping_name)))
        return
    except Exception as exc:  # noqa: BLE001 (one sentence, never a traceback; logged)
        st.error(escape_markdown(_unexpected("load the files", exc) + " Check the Datasets "
                                 "list above: the dataset may have been written."))
        return
    st.cache_data.clear()  # a reloaded dataset keeps its file name, so its results are stale
    scope = current_scope() or LOCAL
    audit(base_warehouse(), scope, "dataset_loaded", db.stem, {"file": str(db), **detail})
    switch_dataset(db)
    ds.discard_upload(folder, root)
    for key in (STAGED, VALIDATION):
        st.session_state.pop(key, None)
    st.session_state[FLASH] = (f"Loaded {escape_markdown(db.stem)} and switched to it: every "
                             "page now shows it.")
    st.rerun()


def _add_ui() -> None:
    st.header("Add a dataset")
    _intro()
    st.subheader("1. Upload")
    upload = upload_ui()
    files, mapping_text = upload.files, upload.mapping_text
    sig = _fingerprint(files, mapping_text)
    staged = st.session_state.get(STAGED)
    if staged is not None and staged[0] != sig:  # the upload changed: forget the old one
        ds.discard_upload(staged[1], ds.default_root())
        st.session_state.pop(STAGED, None)
        st.session_state.pop(VALIDATION, None)
    st.subheader("2. Validate")
    if not files:
        st.info("Upload at least one data file to validate it.")
        return
    if upload.error:
        st.error(escape_markdown(upload.error))
        return
    if upload.todo:
        st.warning(upload.todo)
        return
    if st.button("Validate", key="ds_validate",
                 help="Runs the real load into a throwaway warehouse: nothing is loaded yet."):
        if not _validate(upload, sig):
            return
    result = st.session_state.get(VALIDATION)
    if result is None or result[0] != sig:
        st.caption("Validate to see what would load before anything is written.")
        return
    validation: ds.Validation = result[1]
    _show_validation(validation)
    if validation.ok:
        _load_ui(st.session_state[STAGED][1], upload.mapping_name)


def _validate(upload: Upload, sig: str) -> bool:
    """Stage the upload, validate it, keep the result for the page and log it; False (with
    the reason shown) when the upload could not even be staged."""
    try:
        folder = _stage(upload.files, upload.mapping_text, sig)
    except CsMetricsError as exc:
        st.error(escape_markdown(str(exc)))
        return False
    try:
        with st.spinner("Validating…"):
            detail = upload_detail(folder, upload.mapping_name)
            validation = ds.validate(folder)
    except Exception as exc:  # noqa: BLE001 (one sentence, never a traceback; logged)
        validation = ds.Validation(None, None, pd.DataFrame(),
                                   _unexpected("validate the files", exc))
        detail = {"files": [], "mapping": upload.mapping_name}
    if validation.error:
        validation = ds.Validation(
            None, None, validation.rejects,
            _as_uploaded(validation.error, folder, upload.mapping_name))
    st.session_state[VALIDATION] = (sig, validation)
    detail.update(ok=validation.ok, loaded=validation.loaded, rejected=validation.rejected)
    if validation.error:
        detail["error"] = validation.error[:1000]
    audit(base_warehouse(), current_scope() or LOCAL, "dataset_validated",
          upload.mapping_name or "canonical files", detail)
    return True


def _mb(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:,.1f} MB"


def datasets_ui() -> None:
    """Every dataset with the active one marked, and a Switch button for the others."""
    st.header("Datasets")
    default = cs_metrics.default_db_path()
    loaded = [p for p in ds.list_datasets(ds.default_root()) if not is_same(p, default)]
    rows = [(default, "the app's default warehouse"), *((p, "loaded here") for p in loaded)]
    for path, kind in rows:
        with st.container(border=True, horizontal=True, vertical_alignment="center"):
            when = ""
            if path.exists():
                stamp = datetime.fromtimestamp(path.stat().st_mtime)
                when = f" · {_mb(path)} · written {stamp:%Y-%m-%d %H:%M}"
            st.markdown(f"**{escape_markdown(dataset_label(path))}** — {kind}{when}")
            if is_active(path):
                st.badge("Active", icon=":material/check:", color="green")
            else:
                key = "ds_switch__default" if path == default else f"ds_switch_{path.stem}"
                if st.button("Switch", key=key,
                             help=f"Show {escape_markdown(dataset_label(path))} on every page."):
                    switch_dataset(path)
                    st.session_state[FLASH] = f"Switched to {escape_markdown(dataset_label(path))}."
                    st.rerun()
    if not loaded:
        st.caption("No dataset loaded yet: add one below.")


def main() -> None:
    st.title("Your data")
    require(current_scope() or LOCAL, "manage_data", "load data or switch datasets")
    st.caption(f"Every page shows **{escape_markdown(dataset_label(active_db()))}** "
               f"({escape_markdown(active_db())}).")
    flash = st.session_state.pop(FLASH, None)
    if flash:
        st.success(flash)  # our sentence; the names in it are escaped
    datasets_ui()
    _add_ui()


main()
