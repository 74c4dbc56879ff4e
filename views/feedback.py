"""Customer feedback: survey KPIs, score distributions, trends, breakdowns, comment sentiment,
topics and emerging issues, cohorts, honest comparisons and the latest comments."""

from __future__ import annotations

from datetime import timedelta

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
    Comparison,
    Correlation,
    Group,
    compare_groups,
    resolution_csat,
)
from cs_metrics.analysis.feedback import (
    FEEDBACK_METRICS,
    FEW_RESPONSES,
    MIN_RESPONSES,
    CommentPage,
    feedback_breakdown,
    latest_comments,
    nps_category,
    score_distributions,
)
from cs_metrics.analysis.sentiment import SentimentByScore, sentiment_by_csat
from cs_metrics.analysis.topics import (
    DEFAULT_K,
    EmergingIssues,
    TopicModel,
    emerging_issues,
    topics,
)
from cs_metrics.core.safe_text import escape_markdown, markdown_code
from views._common import (
    MIN_PLOT_HEIGHT,
    QUERY_TTL_S,
    TOP_CATEGORIES,
    Drill,
    as_of_text,
    bar_height,
    chart_title,
    describe_range,
    dimension_options,
    filters_ui,
    get_warehouse,
    missing_text,
    run_query,
    segment_label,
    selected_row,
    show_chart,
    show_table,
    table_downloads,
    ticket_list_ui,
)

COMMENTS_PER_PAGE = 10
GRAINS = {"Day": "day", "Week": "week", "Month": "month"}
BREAKDOWNS = {
    "Customer segment": "customer_segment",
    "Channel": "channel",
    "Domain": "domain",
    "Team": "team",
    "Representative": "rep_name",
}
# rating band -> (min csat, max csat)
BANDS: dict[str, tuple[int | None, int | None]] = {
    "All": (None, None),
    "Negative (CSAT 1–2)": (1, 2),
    "Neutral (CSAT 3)": (3, 3),
    "Positive (CSAT 4–5)": (4, 5),
}
SCORES = {
    # score -> (name, scale, the registry metric whose inputs it shares)
    "csat": ("CSAT", "Customer satisfaction, 1 (very unhappy) to 5 (very happy)", "csat_avg"),
    "nps": ("NPS", "Likelihood to recommend, 0 (not at all) to 10 (very)", "nps"),
    "ces": ("CES", "Customer effort, 1 (very easy) to 7 (very hard)", "ces_avg"),
}
NPS_COLOURS = alt.Scale(domain=["detractor", "passive", "promoter"],
                        range=["#d62728", "#ff9f1c", "#2ca02c"])


# --- cached library calls (small results, keyed by the file and the frozen filters) ----------


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _distributions_of(_wh: Warehouse, db: str, filters: Filters,
                      scores: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    return score_distributions(_wh, filters, scores)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _breakdown(_wh: Warehouse, db: str, filters: Filters, by: str) -> pd.DataFrame:
    return feedback_breakdown(_wh, filters, by)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _comments(_wh: Warehouse, db: str, filters: Filters, band: tuple[int | None, int | None],
              offset: int) -> CommentPage:
    return latest_comments(_wh, filters, min_csat=band[0], max_csat=band[1],
                           limit=COMMENTS_PER_PAGE, offset=offset)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _sentiment_by_csat(_wh: Warehouse, db: str, filters: Filters) -> SentimentByScore:
    return sentiment_by_csat(_wh, filters)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner="Finding topics in the comments…")
def _topics(_wh: Warehouse, db: str, filters: Filters, k: int) -> TopicModel:
    return topics(_wh, filters, k=k)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _emerging(_wh: Warehouse, db: str, filters: Filters, recent_days: int) -> EmergingIssues:
    return emerging_issues(_wh, filters, recent_days=recent_days,
                           baseline_days=4 * recent_days)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner="Following customers from their first ticket…")
def _cohorts(_wh: Warehouse, db: str, filters: Filters, by: str,
             days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    return cohort_tables(_wh, filters, by, recontact_days=days)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _compare(_wh: Warehouse, db: str, filters: Filters, metric: str, a: Group,
             b: Group) -> Comparison:
    return compare_groups(_wh, metric, a, b, filters)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _resolution_csat(_wh: Warehouse, db: str, filters: Filters) -> Correlation:
    return resolution_csat(_wh, filters)


# --- helpers -----------------------------------------------------------------------------------


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


# --- sections ----------------------------------------------------------------------------------


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
    dists = _distributions_of(wh, wh.cache_key, filters, shown) if shown else {}
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
    df = _breakdown(wh, wh.cache_key, filters, by)
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


def _has_sentiment(wh: Warehouse) -> bool:
    return "fb_sent_n" in wh.columns("tickets")


def _no_comments(wh: Warehouse) -> bool:
    """Says so and returns True when the dataset has no scored comments to analyse."""
    if missing_text(cs_metrics.get_metric("sentiment_avg"), wh):
        st.info("This dataset has no survey comments, so there is no sentiment, topic or "
                "emerging-issue analysis.")
        return True
    if not _has_sentiment(wh):
        st.info(f"This warehouse was loaded before comment sentiment existed; load the data "
                f"again ({markdown_code(f'python -m cs_metrics ingest SOURCE --db {wh.path}')}) "
                "to score it.")
        return True
    return False


def _sentiment_section(wh: Warehouse, filters: Filters) -> None:
    st.subheader("Comment sentiment")
    if _no_comments(wh):
        return
    names = ("sentiment_avg", "negative_comment_pct")
    row = run_query(wh, names, filters=filters).iloc[0]
    # a line, not more KPI cards: the cards above are the survey's own figures
    metrics = [cs_metrics.get_metric(n) for n in names]
    st.markdown(" · ".join(f"{m.label}: **{m.display(row[m.name])}**" for m in metrics),
                help=" ".join(m.description for m in metrics))
    by_score = _sentiment_by_csat(wh, wh.cache_key, filters)
    data = by_score.table[by_score.table["comments"] > 0]
    if data.empty:
        st.info("No comments with a CSAT score for the tickets created in this range.")
        return
    chart = (
        alt.Chart(data, title=chart_title("Comment sentiment by CSAT score",
                                          "Mean VADER compound score, −1 to +1"))
        .mark_bar()
        .encode(
            x=alt.X("csat:O", title="CSAT score", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("sentiment_avg:Q", title="Mean sentiment (−1 to +1)",
                    scale=alt.Scale(domain=[-1, 1])),
            color=alt.ColorValue(**alt.condition(alt.datum.sentiment_avg < 0,
                                                 alt.value("#d62728"), alt.value("#2ca02c"))),
            tooltip=[
                alt.Tooltip("csat:O", title="CSAT score"),
                alt.Tooltip("comments:Q", title="Comments", format=","),
                alt.Tooltip("sentiment_avg:Q", title="Mean sentiment", format="+.2f"),
                alt.Tooltip("negative_pct:Q", title="Negative (%)", format=".1f"),
            ],
        )
        .properties(height=240)
    )
    show_chart(chart, width="stretch")
    if by_score.rho is not None:
        st.caption(f"Sentiment and CSAT agree: Spearman's ρ = {by_score.rho:.2f} over "
                   f"{by_score.n:,} comments with a CSAT score. VADER reads tone from words, "
                   "so sarcasm and domain words (“charge”, “drop”) can fool it.")
    _downloads(data, "sentiment_by_csat", filters, "fbx_sentiment")


def _topics_section(wh: Warehouse, filters: Filters) -> None:
    st.subheader("Topics")
    if _no_comments(wh):
        return
    k = st.slider("Topics", 3, 30, DEFAULT_K, key="fbx_k",
                  help="How many topics to split the comments into (TF-IDF + NMF).")
    try:
        model = _topics(wh, wh.cache_key, filters, k)
    except CsMetricsError as exc:
        st.info(escape_markdown(exc))
        return
    df = model.topics
    sampled = (f"a sample of {model.modelled:,} of {model.total:,} comments, volumes scaled "
               "to all" if model.sampled else f"all {model.total:,} comments")
    st.caption(f"{model.k} topics of {sampled}; each topic is named by its heaviest words, "
               "and each comment belongs to its heaviest topic. Examples are masked.")
    chart_data = df[df["topic"] > 0]
    chart = (
        alt.Chart(chart_data, title=chart_title("Comments per topic",
                                                "Colour: CSAT % of the topic"))
        .mark_bar()
        .encode(
            y=alt.Y("name:N", title="Topic", sort="-x",
                    axis=alt.Axis(labelLimit=260, labelOverlap=False)),
            x=alt.X("comments:Q", title="Comments (count)"),
            color=alt.Color("csat_pct:Q", title="CSAT (%)",
                            scale=alt.Scale(scheme="redyellowgreen", domain=[40, 100])),
            tooltip=[
                alt.Tooltip("name:N", title="Topic"),
                alt.Tooltip("comments:Q", title="Comments", format=","),
                alt.Tooltip("csat_pct:Q", title="CSAT (%)", format=".1f"),
                alt.Tooltip("sentiment_avg:Q", title="Mean sentiment", format="+.2f"),
                alt.Tooltip("main_domain:N", title="Main domain"),
            ],
        )
        .properties(height=bar_height(len(chart_data)))
    )
    show_chart(chart, width="stretch")
    cols = ["name", "comments", "share_pct", "csat_pct", "csat_avg", "sentiment_avg",
            "negative_pct", "main_domain", "main_domain_pct", "examples", "note"]
    show_table(
        df[cols], hide_index=True, key="fbx_topics_table",
        column_config={
            "name": st.column_config.TextColumn("Topic", help="Its heaviest words"),
            "comments": st.column_config.NumberColumn("Comments", format="localized"),
            "share_pct": st.column_config.NumberColumn("Share", format="%.1f %%"),
            "csat_pct": st.column_config.NumberColumn("CSAT", format="%.1f %%"),
            "csat_avg": st.column_config.NumberColumn("CSAT (avg)", format="%.2f"),
            "sentiment_avg": st.column_config.NumberColumn("Sentiment", format="%+.2f"),
            "negative_pct": st.column_config.NumberColumn("Negative", format="%.1f %%"),
            "main_domain": st.column_config.TextColumn("Main domain"),
            "main_domain_pct": st.column_config.NumberColumn("of the topic", format="%.0f %%"),
            "examples": st.column_config.TextColumn("Examples (masked)", width="large"),
            "note": st.column_config.TextColumn("Note"),
        },
    )
    _downloads(df, f"topics_k{model.k}", filters, "fbx_topics")


def _emerging_section(wh: Warehouse, filters: Filters) -> None:
    st.subheader("Emerging issues")
    if _no_comments(wh):
        return
    labels = {"Last 7 days": 7, "Last 14 days": 14, "Last 28 days": 28}
    label = st.radio("Latest period", list(labels), index=1, horizontal=True, key="fbx_recent",
                     help="Compared with the four periods of the same length before it.")
    try:
        found = _emerging(wh, wh.cache_key, filters, labels[label])
    except CsMetricsError as exc:
        st.info(escape_markdown(exc))
        return
    if not found.found:
        st.success(escape_markdown(found.describe()))
    else:
        # the issue is a term from customers' comments
        st.warning(escape_markdown(found.describe()))
        show_table(
            found.issues, hide_index=True, key="fbx_emerging_table",
            column_config={
                "issue": st.column_config.TextColumn("Issue"),
                "terms": st.column_config.TextColumn("Terms"),
                "recent_comments": st.column_config.NumberColumn("Recent comments"),
                "recent_share_pct": st.column_config.NumberColumn("Recent share",
                                                                  format="%.1f %%"),
                "baseline_comments": st.column_config.NumberColumn("Before"),
                "baseline_share_pct": st.column_config.NumberColumn("Share before",
                                                                    format="%.1f %%"),
                "growth": st.column_config.NumberColumn("Growth (×)", format="%.1f"),
                "z": None,
                "p_value": None,
                "q_value": st.column_config.NumberColumn("q (BH)", format="%.2g"),
                "domains": st.column_config.TextColumn("Domains"),
                "locations": st.column_config.TextColumn("Locations"),
                "examples": st.column_config.TextColumn("Examples (masked)", width="large"),
            },
        )
        _downloads(found.issues, "emerging_issues", filters, "fbx_emerging")
    st.caption(f"Test: {escape_markdown(found.test)}. The periods end where the date range "
               "ends; the filters other than dates apply.")


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
        df, grid = _cohorts(wh, wh.cache_key, filters, by, days)
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
    result = _compare(wh, wh.cache_key, filters, metric, a, b)
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
    corr = _resolution_csat(wh, wh.cache_key, filters)
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


def _move(key: str, step: int) -> None:
    st.session_state[key] = max(0, st.session_state.get(key, 0) + step)


def _comments_section(wh: Warehouse, filters: Filters) -> None:
    st.subheader("Latest comments")
    band_label = st.radio("Rating", list(BANDS), horizontal=True, key="fb_band",
                          help="CSAT band of the survey; a band leaves out answers without CSAT.")
    band = BANDS[band_label]
    # a new band or filter starts again at the newest comments
    view = (filters, band)
    if st.session_state.get("_fb_comments_view") != view:
        st.session_state["_fb_comments_view"] = view
        st.session_state["fb_offset"] = 0
    offset = st.session_state.get("fb_offset", 0)
    page = _comments(wh, wh.cache_key, filters, band, offset)
    if page.total == 0:
        st.info("No survey comments match.")
        return
    show_table(
        page.rows,
        hide_index=True,
        column_config={
            "submitted_at": st.column_config.DatetimeColumn("Submitted (UTC)",
                                                            format="YYYY-MM-DD HH:mm"),
            "ticket_id": st.column_config.TextColumn("Ticket"),
            "csat": st.column_config.NumberColumn("CSAT"),
            "nps": st.column_config.NumberColumn("NPS"),
            "ces": st.column_config.NumberColumn("CES"),
            "comment": st.column_config.TextColumn("Comment", width="large"),
            "channel": st.column_config.TextColumn("Channel"),
            "domain": st.column_config.TextColumn("Domain"),
            "rep_name": st.column_config.TextColumn("Representative"),
        },
    )
    first = page.offset + 1
    last = page.offset + len(page.rows)
    prev_col, text_col, next_col = st.columns([1, 4, 1], vertical_alignment="center")
    prev_col.button("Previous", key="fb_prev", disabled=not page.has_previous,
                    on_click=_move, args=("fb_offset", -COMMENTS_PER_PAGE),
                    icon=":material/chevron_left:")
    text_col.caption(f"Comments {first:,}–{last:,} of {page.total:,} · page {page.page:,} of "
                     f"{page.pages:,} · e-mail addresses, phone numbers and customer names "
                     "are masked")
    next_col.button("Next", key="fb_next", disabled=not page.has_next, on_click=_move,
                    args=("fb_offset", COMMENTS_PER_PAGE), icon=":material/chevron_right:")
    _downloads(page.rows, f"feedback_comments_page{page.page}", filters, "comments")


def main() -> None:
    st.title("Customer feedback")
    try:
        wh = get_warehouse()
        if not wh.has_table("tickets"):
            st.error(f"The warehouse {escape_markdown(wh.path)} has no tickets yet. Load data "
                     "into it with "
                     f"{markdown_code(f'python -m cs_metrics ingest SOURCE --db {wh.path}')}.")
            return
        filters = filters_ui(wh)
        st.caption(f"{as_of_text(wh)} · {describe_range(filters)} · surveys count in the "
                   "period their ticket was created")
        no_feedback = missing_text(cs_metrics.get_metric("feedback_count"), wh)
        if no_feedback:
            st.info(f"{no_feedback} Load a feedback table (csat, nps, ces, comment per "
                    "ticket) to see survey results here.")
            return
        row = _kpis(wh, filters)
        if row.get("feedback_count", 0) == 0:
            st.info("No survey responses for the tickets created in this range.")
            return
        st.divider()
        _distributions(wh, filters)
        st.divider()
        _trend(wh, filters)
        st.divider()
        _breakdown_section(wh, filters)
        st.divider()
        _analysis_section(wh, filters)
        st.divider()
        _comments_section(wh, filters)
    except CsMetricsError as exc:
        st.error(escape_markdown(exc))


main()
