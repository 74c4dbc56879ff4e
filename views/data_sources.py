"""Your data: upload files, see what would load and what would be rejected, load, switch.

Uploads are untrusted: each file is saved under its plain base name in a staging folder of
its own (``cs_metrics.ingestion.datasets.stage_upload``), and the staged mapping is read with that
folder as SOURCE, so its ``source`` lines can name nothing outside it. Validating and
loading are written to the audit log with each file's name, size and SHA-256 and the
mapping's SHA-256. A bad upload is one sentence on the page, never a traceback.
"""

from __future__ import annotations

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
from views._data_sources_upload import (
    STAGED,
    Upload,
    _as_uploaded,
    _examples,
    _fingerprint,
    _show_validation,
    _stage,
    _unexpected,
    upload_detail,
    upload_ui,
)
from views._session import (
    active_db,
    base_warehouse,
    dataset_label,
    is_active,
    is_same,
    switch_dataset,
)
from views._tables import show_table

# session state of this page (STAGED is the upload's)
VALIDATION = "ds_validation"  # (fingerprint, Validation)
FLASH = "ds_flash"  # a message to show once after a rerun


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
