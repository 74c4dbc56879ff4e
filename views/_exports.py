"""Download buttons: CSV and Parquet of the pages' tables, each download written to the audit
log (``cs_metrics.ops.exports`` decides what the record holds)."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import streamlit as st

from cs_metrics import CsMetricsError, Filters, Warehouse
from cs_metrics.core.access import LOCAL, Scope
from cs_metrics.core.safe_text import escape_markdown, neutralize_csv
from cs_metrics.ops.exports import export_detail, record_export
from views._auth import current_scope
from views._filter_defs import describe_filters, filters_slug
from views._session import base_warehouse
from views._tables import integer_counts

_log = logging.getLogger(__name__)


def parquet_bytes(df: pd.DataFrame, scope: Scope | None = None) -> bytes:
    """``df`` as Parquet, with who made the file and when in its key-value metadata
    (``exported_by``, ``exported_role``, ``exported_at``). ``scope``: who, when the file is
    made outside a page run (a deferred download); else the signed-in person. Count
    columns are written as integers (``integer_counts``)."""
    table = pa.Table.from_pandas(integer_counts(df), preserve_index=False)
    scope = scope or current_scope() or LOCAL
    meta = dict(table.schema.metadata or {})
    meta.update({b"exported_by": scope.actor.encode(), b"exported_role": scope.role.encode(),
                 b"exported_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()})
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), buf)
    return buf.getvalue()


def _export_detail(data: bytes, rows: int | None, filters: Filters | None) -> dict:
    return export_detail(data, rows, None if filters is None else describe_filters(filters))


def _record_export(file_name: str, detail: dict) -> None:
    # run by the click's rerun: a failure is shown on the page, the file still goes out
    try:
        record_export(base_warehouse(), current_scope() or LOCAL, file_name, detail)
    except CsMetricsError as exc:
        _log.warning("Could not write the audit log: %s", exc)
        st.warning("This action could not be written to the audit log: "
                   f"{escape_markdown(exc)}")


def _made_on_click(make: Callable[[], bytes], wh: Warehouse, scope: Scope, file_name: str,
                   rows: int | None, filters: Filters | None) -> Callable[[], bytes]:
    """``make``, writing the export to the audit log when it has made the file. It runs when
    the button is clicked, outside any page run: who and where are those of the run that
    showed the button."""
    def made() -> bytes:
        data = make()
        try:
            record_export(wh, scope, file_name, _export_detail(data, rows, filters))
        except CsMetricsError as exc:  # as a page's audit(): the file still goes out
            _log.warning("Could not write the export of %s to the audit log: %s",
                         file_name, exc)
        return data

    return made


def export_button(
    label: str,
    data: bytes | Callable[[], bytes],
    file_name: str,
    mime: str,
    *,
    key: str | None = None,
    rows: int | None = None,
    filters: Filters | None = None,
    icon: str = ":material/download:",
    help: str | None = None,  # noqa: A002 (Streamlit's name)
    where: object = st,
    scope: Scope | None = None,
) -> None:
    """A download button whose download is written to the audit log: who (``scope``, else
    the signed-in person), which file, its size and SHA-256 (to trace a file back to its
    export), rows and filters.

    ``data`` as a callable makes the file when the button is clicked, not on every run of
    the page (a page's CSV and Parquet of every chart cost more than its charts); the
    click then neither reruns the page nor waits for it."""
    if callable(data):
        scope = scope or current_scope() or LOCAL
        where.download_button(  # type: ignore[attr-defined]
            label, _made_on_click(data, base_warehouse(), scope, file_name, rows, filters),
            file_name=file_name, mime=mime, key=key, icon=icon, help=help, on_click="ignore",
        )
        return
    where.download_button(  # type: ignore[attr-defined]
        label, data, file_name=file_name, mime=mime, key=key, icon=icon, help=help,
        on_click=_record_export, args=(file_name, _export_detail(data, rows, filters)),
    )


def csv_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as CSV, with the text cells a spreadsheet would run as a formula (``=``, ``+``,
    ``-``, ``@``, tab, CR first) prefixed with ``'``: every CSV download of the pages is made
    here. Numbers and timestamps are written as they are, counts as integers
    (``integer_counts``); Parquet keeps every value."""
    return neutralize_csv(integer_counts(df)).to_csv(index=False).encode()


def table_downloads(df: pd.DataFrame, stem: str, filters: Filters | None, key: str, *,
                    labels: tuple[str, str] = ("Download CSV", "Download Parquet"),
                    where: object = st, help_text: str | None = None) -> None:
    """CSV and Parquet of ``df`` as ``STEM.csv`` and ``STEM.parquet``, made on click and
    written to the audit log."""
    scope = current_scope() or LOCAL
    for label, kind, ext, mime, make in (
        (labels[0], "CSV", "csv", "text/csv", lambda: csv_bytes(df)),
        (labels[1], "Parquet", "parquet", "application/vnd.apache.parquet",
         lambda: parquet_bytes(df, scope)),
    ):
        export_button(label, make, f"{stem}.{ext}", mime, key=f"{key}_{ext}", rows=len(df),
                      filters=filters, where=where, scope=scope,
                      help=f"{help_text} {kind}: {stem}.{ext}" if help_text else None)


def download_buttons(df: pd.DataFrame, name: str, filters: Filters) -> None:
    """CSV and Parquet downloads of ``df``; the file name carries the active filters."""
    with st.container(horizontal=True):
        table_downloads(df, f"{name}_{filters_slug(filters)}", filters, f"dl_{name}",
                        help_text="This chart's data as")
