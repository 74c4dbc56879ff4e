"""Data quality: what loaded, what was rejected and why, how complete each column is."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from cs_metrics import CsMetricsError, QualityReport
from cs_metrics.core.access import LOCAL
from cs_metrics.core.safe_text import escape_markdown, markdown_code
from views._auth import require
from views._cache import latest_rejects, quality
from views._charts import bar_height, chart_title, show_chart
from views._exports import table_downloads
from views._filter_parts import as_of_text
from views._session import ensure_data
from views._tables import load_count_columns, show_table

LATEST_REJECTS = 200

SCORE_HELP = (
    "Quality score = 100 × (0.6 × validity + 0.2 × warning-free share + 0.2 × completeness). "
    "Validity is the share of rows that loaded out of the rows that should load; the "
    "warning-free share is 1 − ticket warnings / tickets loaded; completeness is the mean "
    "fill rate of the optional ticket columns the dataset provides."
)
VALIDITY_HELP = (
    "Rows loaded / rows that should load (rows read, minus identical dimension rows merged and "
    "empty feedback rows skipped), over every table of the latest load of each source. "
    "Weight 0.6."
)
WARNING_FREE_HELP = (
    "1 − (ticket warnings / tickets loaded), floored at 0. A warning keeps the row but changes "
    "or flags a value, e.g. a resolved_at cleared on a ticket that is not closed. Weight 0.2."
)
COMPLETENESS_HELP = (
    "Mean share of non-empty values over the optional ticket columns the dataset provides; a "
    "column the source does not have at all is not held against it. Weight 0.2."
)


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.1f} %"


def _score(report: QualityReport) -> None:
    cols = st.columns(4)
    cols[0].metric("Quality score (0–100)", f"{report.score:.1f}", help=SCORE_HELP, border=True)
    cols[1].metric("Validity", _pct(report.validity), help=VALIDITY_HELP, border=True)
    cols[2].metric("Warning-free", _pct(report.warning_free), help=WARNING_FREE_HELP,
                   border=True)
    cols[3].metric("Completeness", _pct(report.completeness), help=COMPLETENESS_HELP,
                   border=True)


def _tables(report: QualityReport) -> None:
    st.subheader("Rows per table")
    st.caption("The latest load of each source.")
    show_table(
        report.tables,
        hide_index=True,
        column_config={
            "table": st.column_config.TextColumn("Table"),
            "origin": st.column_config.TextColumn("Source", help="File or mapping it came from."),
            "read": st.column_config.NumberColumn("Read", format="localized"),
            "loaded": st.column_config.NumberColumn("Loaded", format="localized"),
            "rejected": st.column_config.NumberColumn("Rejected", format="localized"),
            **load_count_columns(),
            "ingested_at": st.column_config.DatetimeColumn("Loaded at",
                                                           format="YYYY-MM-DD HH:mm"),
        },
    )


def _issues(report: QualityReport) -> None:
    st.subheader("Rejected rows by reason")
    if report.rejects_by_reason.empty:
        st.success("No rows were rejected.")
    else:
        show_table(
            report.rejects_by_reason,
            hide_index=True,
            column_config={
                "table": "Table", "reason": "Reason", "meaning": "Meaning",
                "rows": st.column_config.NumberColumn("Rows", format="localized"),
            },
            column_order=["table", "reason", "rows", "meaning"],
        )
    st.subheader("Warnings")
    if report.warnings.empty:
        st.success("No warnings: no value was changed or flagged on load.")
    else:
        show_table(
            report.warnings,
            hide_index=True,
            column_config={
                "table": "Table", "warning": "Warning", "meaning": "Meaning",
                "rows": st.column_config.NumberColumn("Rows", format="localized"),
            },
            column_order=["table", "warning", "rows", "meaning"],
        )


def _completeness(report: QualityReport) -> None:
    st.subheader("Column completeness")
    cols = report.columns
    if cols.empty:
        st.info("No column statistics yet.")
        return
    tickets = cols[cols["table"] == "tickets"].assign(
        kind=lambda d: d["required"].map({True: "required", False: "optional"})
    )
    if not tickets.empty:
        chart = (
            alt.Chart(tickets, title=chart_title(
                "Tickets: share of rows with a value, per column",
                "Required columns are always filled; an optional column at 0 % is one the "
                "source does not provide.",
            ))
            .mark_bar()
            .encode(
                x=alt.X("filled_pct:Q", title="Rows with a value (%)",
                        scale=alt.Scale(domain=[0, 100]), axis=alt.Axis(tickCount=10)),
                y=alt.Y("column:N", title="Column", sort=None),
                color=alt.Color("kind:N", title="Column", legend=alt.Legend(orient="top"),
                                scale=alt.Scale(domain=["required", "optional"])),
                tooltip=[
                    alt.Tooltip("column:N", title="Column"),
                    alt.Tooltip("kind:N", title="Kind"),
                    alt.Tooltip("filled_pct:Q", title="Filled (%)", format=".1f"),
                    alt.Tooltip("non_null:Q", title="Rows with a value", format=","),
                    alt.Tooltip("total:Q", title="Rows", format=","),
                ],
            )
            .properties(height=bar_height(len(tickets)))
        )
        show_chart(chart, width="stretch")
    with st.expander("Every table's columns"):
        show_table(
            cols,
            hide_index=True,
            column_config={
                "table": "Table", "column": "Column",
                "required": st.column_config.CheckboxColumn("Required"),
                "non_null": st.column_config.NumberColumn("With a value", format="localized"),
                "total": st.column_config.NumberColumn("Rows", format="localized"),
                "filled_pct": st.column_config.ProgressColumn(
                    "Filled", format="%.1f %%", min_value=0, max_value=100),
            },
        )


def _rejected_rows(rows: pd.DataFrame) -> None:
    st.subheader("Latest rejected rows")
    if rows.empty:
        st.success("No rejected rows to show.")
        return
    st.caption(f"Up to {LATEST_REJECTS} rows, newest load first, in source order. The source "
               "row is the row's number in its file (1 = the first data row).")
    show_table(
        rows,
        hide_index=True,
        column_config={
            "table_name": "Table",
            "source_file": st.column_config.TextColumn("Source file", width="medium"),
            "source_row": st.column_config.NumberColumn("Source row", format="%d"),
            "reason": "Reason",
            "column_name": "Column",
            "value": "Value",
            "detail": st.column_config.TextColumn("Detail", width="large"),
        },
    )
    with st.container(horizontal=True):
        table_downloads(rows, "rejects", None, "dq_rejects",
                        labels=("Download these rows (CSV)", "Download these rows (Parquet)"))


def main() -> None:
    st.title("Data quality")
    try:
        wh = ensure_data()
        require(wh.scope or LOCAL, "view_quality", "see the data-quality report")
        st.caption(f"{as_of_text(wh)} · warehouse {markdown_code(wh.path)}")
        report = quality(wh)
        if report.score is None:
            st.info("Nothing has been loaded into this warehouse yet, so there is no report.")
            return
        _score(report)
        _tables(report)
        _issues(report)
        _completeness(report)
        _rejected_rows(latest_rejects(wh, LATEST_REJECTS))
    except CsMetricsError as exc:
        st.error(escape_markdown(exc))


main()
