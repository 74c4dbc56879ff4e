"""Customer feedback page, the comments: sentiment against the score, topics, emerging issues
and the latest comments, page by page."""

from __future__ import annotations

import altair as alt
import streamlit as st

import cs_metrics
from cs_metrics import CsMetricsError, Filters, Warehouse
from cs_metrics.analysis.feedback import (
    CommentPage,
    latest_comments,
)
from cs_metrics.analysis.sentiment import sentiment_by_csat
from cs_metrics.analysis.topics import (
    DEFAULT_K,
    EmergingIssues,
    emerging_issues,
    topics,
)
from cs_metrics.core.safe_text import escape_markdown, markdown_code
from views._cache import cached, run_query
from views._charts import bar_height, chart_title, show_chart
from views._feedback_scores import (
    _downloads,
)
from views._tables import missing_text, show_table

COMMENTS_PER_PAGE = 10


# rating band -> (min csat, max csat)
BANDS: dict[str, tuple[int | None, int | None]] = {
    "All": (None, None),
    "Negative (CSAT 1–2)": (1, 2),
    "Neutral (CSAT 3)": (3, 3),
    "Positive (CSAT 4–5)": (4, 5),
}


@cached
def _comments(wh: Warehouse, filters: Filters, band: tuple[int | None, int | None],
              offset: int) -> CommentPage:
    return latest_comments(wh, filters, min_csat=band[0], max_csat=band[1],
                           limit=COMMENTS_PER_PAGE, offset=offset)


_sentiment_by_csat = cached(sentiment_by_csat)
_topics = cached(topics, show_spinner="Finding topics in the comments…")


@cached
def _emerging(wh: Warehouse, filters: Filters, recent_days: int) -> EmergingIssues:
    return emerging_issues(wh, filters, recent_days=recent_days,
                           baseline_days=4 * recent_days)


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
    by_score = _sentiment_by_csat(wh, filters)
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
        model = _topics(wh, filters, k=k)
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
        found = _emerging(wh, filters, labels[label])
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
    page = _comments(wh, filters, band, offset)
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
