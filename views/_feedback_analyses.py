"""Customer feedback page, the analyses: cohorts of customers, honest comparisons of two
groups and the resolution-time / satisfaction correlation, one at a time."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

import cs_metrics
from cs_metrics import CsMetricsError, Filters, Warehouse
from cs_metrics.analysis.cohorts import RECONTACT_DAYS, cohort_tables
from cs_metrics.analysis.compare import (
    CAUSATION_CAVEAT,
    COMPARABLE_METRICS,
    MIN_GROUP,
    Group,
    compare_groups,
    resolution_csat,
)
from cs_metrics.analysis.feedback import (
    FEW_RESPONSES,
    MIN_RESPONSES,
)
from cs_metrics.core.safe_text import escape_markdown
from views._cache import cached, dimension_options
from views._charts import MIN_PLOT_HEIGHT, bar_height, chart_title, show_chart
from views._feedback_scores import (
    _downloads,
)
from views._feedback_text import (
    _emerging_section,
    _has_sentiment,
    _sentiment_section,
    _topics_section,
)
from views._tables import missing_text, segment_label, show_table

_cohorts = cached(cohort_tables, show_spinner="Following customers from their first ticket…")
_compare = cached(compare_groups)
_resolution_csat = cached(resolution_csat)


COHORT_GROUPS = {
    "Cohort (month of first ticket)": "cohort",
    "Customer segment": "customer_segment",
    "Customer tenure": "tenure",
}


def _cohorts_section(wh: Warehouse, filters: Filters) -> None:
    st.subheader("Cohorts")
    left, right = st.columns([3, 1])
    label = left.radio("Group customers by", list(COHORT_GROUPS), horizontal=True,
                       key="fbx_cohort_by")
    days = int(right.number_input(
        "Recontact within (days)", min_value=0, max_value=90, value=RECONTACT_DAYS,
        key="fbx_recontact", help="A closed ticket is recontacted when the same customer opens "
        "another ticket before this many days after its resolution."))
    by = COHORT_GROUPS[label]
    try:
        df, grid = _cohorts(wh, filters, by, recontact_days=days)
    except CsMetricsError as exc:
        st.info(escape_markdown(exc))
        return
    if df.empty:
        st.info("No tickets with a customer in this range.")
        return
    shown = df.assign(**{by: [segment_label(v) for v in df[by]] if by == "customer_segment"
                          else df[by].astype(str)})
    if by == "cohort":
        shown["cohort"] = [f"{c} (or before)" if cens else c
                           for c, cens in zip(shown["cohort"], df["left_censored"], strict=True)]
    config = {
        by: st.column_config.TextColumn(label),
        "customers": st.column_config.NumberColumn("Customers", format="localized"),
        "tickets": st.column_config.NumberColumn("Tickets", format="localized"),
        "csat_responses": st.column_config.NumberColumn("CSAT responses", format="localized"),
        "csat_pct": st.column_config.NumberColumn("CSAT", format="%.1f %%"),
        "csat_avg": st.column_config.NumberColumn("CSAT (avg)", format="%.2f"),
        "recontact_base": st.column_config.NumberColumn(
            "Closed tickets", help="Closed tickets whose recontact window has ended"),
        "recontacts": None,
        "recontact_pct": st.column_config.NumberColumn(f"Recontact ≤ {days} d",
                                                       format="%.1f %%"),
        "note": st.column_config.TextColumn("Note"),
        "left_censored": None,
    }
    show_table(shown, hide_index=True, key="fbx_cohort_table", column_config=config)
    st.caption(f"Groups with fewer than {MIN_RESPONSES} CSAT responses are marked “{FEW_RESPONSES}”"
               ": compare them with care. The first month of the data holds every customer "
               "who was already there.")
    _downloads(df, f"cohorts_by_{by}", filters, "fbx_cohorts")
    if by != "cohort":
        return
    grid = grid[grid["csat_responses"] >= 5].assign(
        cohort=lambda d: pd.to_datetime(d["cohort"]).dt.strftime("%Y-%m"),
        period=lambda d: pd.to_datetime(d["period"]).dt.strftime("%Y-%m"))
    if grid.empty:
        return
    heat = (
        alt.Chart(grid, title=chart_title("CSAT % by cohort and month",
                                          "Rows: month of the customer's first ticket; "
                                          "columns: month the ticket was created"))
        .mark_rect()
        .encode(
            x=alt.X("period:O", title="Ticket month"),
            y=alt.Y("cohort:O", title="Cohort (first ticket)"),
            color=alt.Color("csat_pct:Q", title="CSAT (%)",
                            scale=alt.Scale(scheme="redyellowgreen")),
            tooltip=[
                alt.Tooltip("cohort:O", title="Cohort"),
                alt.Tooltip("period:O", title="Ticket month"),
                alt.Tooltip("csat_pct:Q", title="CSAT (%)", format=".1f"),
                alt.Tooltip("csat_responses:Q", title="CSAT responses", format=","),
                alt.Tooltip("recontact_pct:Q", title="Recontact (%)", format=".1f"),
            ],
        )
        .properties(height=bar_height(grid["cohort"].nunique()))
    )
    show_chart(heat, width="stretch")


COMPARE_DIMENSIONS = {
    "Channel": "channel", "Team": "team", "Domain": "domain", "Priority": "priority",
    "Customer segment": "customer_segment", "Service location": "location",
    "Representative": "rep_name",
}


def _compare_section(wh: Warehouse, filters: Filters) -> None:
    st.subheader("Compare two groups")
    metrics = [m for m in COMPARABLE_METRICS if not missing_text(cs_metrics.get_metric(m), wh)
               and (m not in ("sentiment_avg", "negative_comment_pct") or _has_sentiment(wh))]
    if not metrics:
        st.info("This dataset has none of the figures a comparison needs.")
        return
    labels = {cs_metrics.get_metric(m).label: m for m in metrics}
    c1, c2 = st.columns(2)
    metric = labels[c1.selectbox("Figure", list(labels), key="fbx_cmp_metric")]
    mode = c2.radio("Groups", ["Two values", "Before and after a date"], horizontal=True,
                    key="fbx_cmp_mode")
    if mode == "Two values":
        dims = {k: v for k, v in COMPARE_DIMENSIONS.items() if dimension_options(wh, v)}
        if not dims:
            st.info("This dataset has no dimension to compare on.")
            return
        d1, d2, d3 = st.columns(3)
        dim = dims[d1.selectbox("Dimension", list(dims), key="fbx_cmp_dim")]
        values = dimension_options(wh, dim)
        if len(values) < 2:
            st.info("This dimension has a single value in the data.")
            return
        shown = segment_label if dim == "customer_segment" else str
        va = d2.selectbox("Group A", values, index=0, key=f"fbx_cmp_a_{dim}", format_func=shown)
        vb = d3.selectbox("Group B", values, index=1, key=f"fbx_cmp_b_{dim}", format_func=shown)
        if va == vb:
            st.info("Pick two different values.")
            return
        a, b = Group.build(shown(va), **{dim: va}), Group.build(shown(vb), **{dim: vb})
    else:
        lo = filters.date_from or (wh.created_range()[0].date() if wh.created_range() else None)
        hi = filters.date_to
        default = lo + (hi - lo) / 2 if lo and hi else lo
        split = st.date_input("Split at (the after group starts that day)", value=default,
                              key="fbx_cmp_split")
        if split is None:
            st.info("Pick the day the after group starts.")
            return
        a = Group(f"tickets created from {split:%d %b %Y}", date_from=split)
        b = Group(f"tickets created before {split:%d %b %Y}", date_to=split)
    result = _compare(wh, metric, a, b, filters)
    m = cs_metrics.get_metric(metric)
    if result.difference is None:
        st.warning(escape_markdown(result.note))  # the groups are values from the data
    elif result.significant:
        st.success(escape_markdown(result.verdict))
    else:
        st.info(escape_markdown(result.verdict))
    table = pd.DataFrame({
        "group": [result.label_a, result.label_b],
        m.label: [result.value_a, result.value_b],
        result.unit_of_n: [result.n_a, result.n_b],
    })
    show_table(table, hide_index=True, key="fbx_cmp_table")
    if result.difference is not None and np.isfinite(result.ci_low) and \
            np.isfinite(result.ci_high):
        unit = "points" if m.unit == "%" else m.unit
        ci = pd.DataFrame({"difference": [result.difference], "low": [result.ci_low],
                           "high": [result.ci_high], "what": [f"{result.label_a} − "
                                                              f"{result.label_b}"]})
        base = alt.Chart(ci, title=chart_title(
            f"{m.label}: {result.label_a} − {result.label_b}",
            f"{int(result.confidence * 100)} % interval; 0 means no difference"))
        bars = base.mark_rule(strokeWidth=3).encode(
            x=alt.X("low:Q", title=f"Difference ({unit})"), x2=alt.X2("high:Q"),
            y=alt.Y("what:N", title=None))
        point = base.mark_point(filled=True, size=90).encode(
            x=alt.X("difference:Q"), y=alt.Y("what:N"),
            tooltip=[alt.Tooltip("difference:Q", title="Difference", format=".2f"),
                     alt.Tooltip("low:Q", title="Interval from", format=".2f"),
                     alt.Tooltip("high:Q", title="Interval to", format=".2f")])
        zero = alt.Chart(pd.DataFrame({"x": [0]})).mark_rule(strokeDash=[4, 4]).encode(
            x=alt.X("x:Q"))
        show_chart((bars + point + zero).properties(height=MIN_PLOT_HEIGHT), width="stretch")
    st.caption(f"Percentages: pooled two-proportion z-test with Newcombe's interval; times: "
               f"Mann-Whitney rank test with the Hodges-Lehmann shift (the typical difference, "
               f"robust to a few very long tickets); mean scores: Welch's t-test. Groups with "
               f"fewer than {MIN_GROUP} observations are not compared.")


def _correlation_section(wh: Warehouse, filters: Filters) -> None:
    st.subheader("Resolution time and CSAT")
    if missing_text(cs_metrics.get_metric("avg_resolution_h"), wh):
        st.info(missing_text(cs_metrics.get_metric("avg_resolution_h"), wh))
        return
    corr = _resolution_csat(wh, filters)
    data = corr.bands[corr.bands["csat_responses"] > 0]
    if data.empty:
        st.info("No closed tickets with a CSAT answer in this range.")
        return
    st.markdown(escape_markdown(corr.summary))
    chart = (
        alt.Chart(data, title=chart_title("CSAT by resolution time",
                                          "Closed tickets with a CSAT answer"))
        .mark_bar()
        .encode(
            x=alt.X("band:N", title="Resolution time", sort=list(corr.bands["band"]),
                    axis=alt.Axis(labelAngle=0)),
            y=alt.Y("csat_pct:Q", title="CSAT (%)", scale=alt.Scale(domain=[0, 100])),
            opacity=alt.OpacityValue(**alt.condition(alt.datum.note == "", alt.value(1.0),
                                                   alt.value(0.4))),
            tooltip=[
                alt.Tooltip("band:N", title="Resolution time"),
                alt.Tooltip("csat_pct:Q", title="CSAT (%)", format=".1f"),
                alt.Tooltip("csat_responses:Q", title="CSAT responses", format=","),
                alt.Tooltip("tickets:Q", title="Tickets", format=","),
                alt.Tooltip("note:N", title="Note"),
            ],
        )
        .properties(height=260)
    )
    show_chart(chart, width="stretch")
    st.info(CAUSATION_CAVEAT)
    _downloads(corr.bands, "csat_by_resolution_time", filters, "fbx_corr")


ANALYSES = {
    "Sentiment": _sentiment_section,
    "Topics": _topics_section,
    "Emerging issues": _emerging_section,
    "Cohorts": _cohorts_section,
    "Compare groups": _compare_section,
    "Resolution time and CSAT": _correlation_section,
}


def _analysis_section(wh: Warehouse, filters: Filters) -> None:
    # one analysis at a time: each costs a query or a model, computed when it is opened
    choice = st.radio("Analyse", list(ANALYSES), horizontal=True, key="fbx_view",
                      help="Comment sentiment, topics and emerging issues, customer cohorts, "
                           "a comparison of two groups, resolution time against CSAT.")
    ANALYSES[choice](wh, filters)
