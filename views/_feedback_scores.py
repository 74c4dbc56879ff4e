"""Customer feedback page, the survey scores: KPIs, score distributions, the trend and the
breakdown by a dimension, with the helpers the page's other sections share."""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import pandas as pd
import streamlit as st

import cs_metrics
from cs_metrics import Filters, Warehouse
from cs_metrics.analysis.feedback import (
    FEEDBACK_METRICS,
    FEW_RESPONSES,
    MIN_RESPONSES,
    feedback_breakdown,
    nps_category,
    score_distributions,
)
from views._cache import cached, run_query
from views._charts import TOP_CATEGORIES, bar_height, chart_title, show_chart
from views._drill import Drill, selected_row, ticket_list_ui
from views._exports import table_downloads
from views._tables import missing_text, segment_label, show_table

GRAINS = {"Day": "day", "Week": "week", "Month": "month"}
BREAKDOWNS = {
    "Customer segment": "customer_segment",
    "Channel": "channel",
    "Domain": "domain",
    "Team": "team",
    "Representative": "rep_name",
}


SCORES = {
    # score -> (name, scale, the registry metric whose inputs it shares)
    "csat": ("CSAT", "Customer satisfaction, 1 (very unhappy) to 5 (very happy)", "csat_avg"),
    "nps": ("NPS", "Likelihood to recommend, 0 (not at all) to 10 (very)", "nps"),
    "ces": ("CES", "Customer effort, 1 (very easy) to 7 (very hard)", "ces_avg"),
}


NPS_COLOURS = alt.Scale(domain=["detractor", "passive", "promoter"],
                        range=["#d62728", "#ff9f1c", "#2ca02c"])


_distributions_of = cached(score_distributions)
_breakdown = cached(feedback_breakdown)


def _range_slug(filters: Filters) -> str:
    start = f"{filters.date_from:%Y-%m-%d}" if filters.date_from else "start"
    end = f"{filters.date_to - timedelta(days=1):%Y-%m-%d}" if filters.date_to else "end"
    return f"{start}_to_{end}"


def _downloads(df: pd.DataFrame, stem: str, filters: Filters, key: str) -> None:
    with st.container(horizontal=True):
        table_downloads(df, f"{stem}_{_range_slug(filters)}", filters, key)


def _metric_columns(names: tuple[str, ...]) -> dict[str, object]:
    config: dict[str, object] = {}
    for name in names:
        m = cs_metrics.get_metric(name)
        fmt = "localized" if m.is_count else (
            "%.1f %%" if m.unit == "%" else "%+.0f" if name == "nps" else "%.2f")
        config[name] = st.column_config.NumberColumn(m.label, help=m.description, format=fmt)
    return config


def _kpis(wh: Warehouse, filters: Filters) -> pd.Series:
    missing = {n: missing_text(cs_metrics.get_metric(n), wh) for n in FEEDBACK_METRICS}
    present = tuple(n for n in FEEDBACK_METRICS if not missing[n])
    row = run_query(wh, present, filters=filters).iloc[0] if present else pd.Series()
    # three cards a row, so values and labels fit without being cut
    columns = [c for _ in range(-(-len(FEEDBACK_METRICS) // 3)) for c in st.columns(3)]
    for col, name in zip(columns, FEEDBACK_METRICS, strict=False):
        metric = cs_metrics.get_metric(name)
        with col:
            value = row.get(name) if name in present else None
            st.metric(metric.label, metric.display(value), help=metric.description, border=True)
            if missing[name]:
                st.caption(missing[name])
    return row


def _distribution_chart(df: pd.DataFrame, score: str) -> alt.Chart:
    name, meaning, _ = SCORES[score]
    data = df.assign(group=df["score"].map(nps_category)) if score == "nps" else df
    colour = (
        # no legend: it would squeeze the plot; a caption under the chart names the colours
        alt.Color("group:N", title=None, scale=NPS_COLOURS, legend=None)
        if score == "nps" else alt.ColorValue("#4c78a8")
    )
    tooltip = [
        alt.Tooltip("score:O", title=f"{name} score"),
        alt.Tooltip("responses:Q", title="Responses", format=","),
        alt.Tooltip("share_pct:Q", title="Share (%)", format=".1f"),
    ]
    if score == "nps":
        tooltip.append(alt.Tooltip("group:N", title="NPS group"))
    return (
        alt.Chart(data, title=chart_title(f"{name} scores", meaning, columns=len(SCORES)))
        .mark_bar()
        .encode(
            x=alt.X("score:O", title=f"{name} score", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("responses:Q", title="Responses (count)"),
            color=colour,
            tooltip=tooltip,
        )
        .properties(height=260)
    )


def _distributions(wh: Warehouse, filters: Filters) -> None:
    st.subheader("Score distributions")
    st.caption("Survey answers for the tickets created in the range, by score.")
    shown = tuple(s for s in SCORES
                  if not missing_text(cs_metrics.get_metric(SCORES[s][2]), wh))
    dists = _distributions_of(wh, filters, shown) if shown else {}
    for col, score in zip(st.columns(len(SCORES)), SCORES, strict=True):
        name, _, metric_name = SCORES[score]
        with col:
            gone = missing_text(cs_metrics.get_metric(metric_name), wh)
            if gone:
                st.info(gone)
                continue
            df = dists[score]
            if df["responses"].sum() == 0:
                st.info(f"No {name} scores for the tickets created in this range.")
                continue
            show_chart(_distribution_chart(df, score), width="stretch")
            if score == "nps":
                st.caption(":red[Detractors 0–6] · :orange[passives 7–8] · "
                           ":green[promoters 9–10]")
            _downloads(df, f"{score}_distribution", filters, f"dist_{score}")


def _trend(wh: Warehouse, filters: Filters) -> None:
    st.subheader("Trend")
    label = st.radio("Grain", list(GRAINS), index=1, horizontal=True, key="fb_grain",
                     help="Tickets count in the period they were created.")
    grain = GRAINS[label]
    shown = tuple(n for n in ("csat_pct", "nps") if not missing_text(cs_metrics.get_metric(n), wh))
    if not shown:
        st.info(missing_text(cs_metrics.get_metric("csat_pct"), wh))
        return
    df = run_query(wh, (*shown, "feedback_count"), grain=grain, filters=filters)
    df = df[df["feedback_count"] > 0]
    if df.empty:
        st.info("No survey responses for the tickets created in this range.")
        return
    data = df.assign(period=pd.to_datetime(df["period"]))
    cols = st.columns(len(shown))
    for col, name in zip(cols, shown, strict=True):
        metric = cs_metrics.get_metric(name)
        unit = "%" if metric.unit == "%" else "points, −100 to 100"
        chart = (
            alt.Chart(data, title=chart_title(f"{metric.label} by {grain}",
                                              metric.description, columns=len(shown)))
            .mark_line(point=True)
            .encode(
                x=alt.X("period:T", title=f"{label} (ticket created)"),
                y=alt.Y(f"{name}:Q", title=f"{metric.label} ({unit})"),
                tooltip=[
                    alt.Tooltip("period:T", title=f"{label} starting", format="%d %b %Y"),
                    alt.Tooltip(f"{name}:Q", title=metric.label,
                                format=metric.format.replace(",", "")),
                    alt.Tooltip("feedback_count:Q", title="Responses", format=","),
                ],
            )
            .properties(height=280)
        )
        show_chart(chart, where=col, width="stretch")
    _downloads(df, f"feedback_by_{grain}", filters, "trend")


def _breakdown_section(wh: Warehouse, filters: Filters) -> None:
    st.subheader("Breakdown")
    label = st.selectbox("Break down by", list(BREAKDOWNS), key="fb_breakdown")
    by = BREAKDOWNS[label]
    df = _breakdown(wh, filters, by)
    df = df[df["feedback_count"] > 0]
    if df.empty:
        st.info("No survey responses for the tickets created in this range.")
        return
    df = df.assign(**{by: df[by].fillna("(none)")})
    # a segment reads by its name from the settings; the code stays for the drill-down
    shown_by = "segment_label" if by == "customer_segment" else by
    if shown_by != by:
        df = df.assign(segment_label=[v if v == "(none)" else segment_label(v)
                                      for v in df[by]])
    present = tuple(n for n in FEEDBACK_METRICS if not missing_text(cs_metrics.get_metric(n), wh))
    config = {
        shown_by: st.column_config.TextColumn(label),
        "rank": st.column_config.NumberColumn(
            "Rank", help=f"By CSAT %, best first; only groups with at least {MIN_RESPONSES} "
            "responses are ranked."),
        "note": st.column_config.TextColumn("Note"),
        **_metric_columns(present),
    }
    show_table(df, hide_index=True, column_order=[shown_by, "rank", *present, "note"],
                 column_config=config, key="fb_breakdown_table", on_select="rerun",
                 selection_mode="single-row")
    row = selected_row("fb_breakdown_table", df)
    if row is None:
        st.caption("Select a row to list the tickets of that group.")
    else:
        value = None if row[by] == "(none)" else str(row[by])
        drill = Drill(f"Tickets of {label.lower()} {row[shown_by]} (with or without a survey)",
                      extra=((by, value),))
        ticket_list_ui(wh, filters, drill, key="fb_breakdown_drill")
    st.caption(f"Groups with fewer than {MIN_RESPONSES} responses are marked "
               f"“{FEW_RESPONSES}” and not ranked: their scores swing too much to compare.")
    _downloads(df[[by, "rank", *present, "note"]], f"feedback_by_{by}", filters, "breakdown")
    if "csat_pct" not in present:
        return
    csat = cs_metrics.get_metric("csat_pct")
    data = df.assign(
        reliability=df["note"].map({FEW_RESPONSES: FEW_RESPONSES}).fillna(
            f"{MIN_RESPONSES}+ responses"))
    # a rate per group: the groups with the most responses, never an "Other" averaged
    # from rates
    subtitle = csat.description
    if len(data) > TOP_CATEGORIES:
        data = data.nlargest(TOP_CATEGORIES, "feedback_count")
        subtitle = (f"The {TOP_CATEGORIES} of {len(df):,} with the most responses (the table "
                    f"lists all). {subtitle}")
    chart = (
        alt.Chart(data, title=chart_title(f"{csat.label} by {label.lower()}", subtitle))
        .mark_bar()
        .encode(
            y=alt.Y(f"{shown_by}:N", title=label, sort="-x",
                    axis=alt.Axis(labelLimit=220, labelOverlap=False)),
            x=alt.X("csat_pct:Q", title=f"{csat.label} (%)", scale=alt.Scale(domain=[0, 100])),
            color=alt.Color("reliability:N", title=None, legend=alt.Legend(orient="top"),
                            scale=alt.Scale(range=["#4c78a8", "#bab0ac"])),
            tooltip=[
                alt.Tooltip(f"{shown_by}:N", title=label),
                alt.Tooltip("csat_pct:Q", title=f"{csat.label} (%)", format=".1f"),
                alt.Tooltip("feedback_count:Q", title="Responses", format=","),
                alt.Tooltip("reliability:N", title="Responses"),
            ],
        )
        .properties(height=bar_height(len(data)))
    )
    show_chart(chart, width="stretch")
