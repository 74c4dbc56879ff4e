"""Customer feedback: survey KPIs, score distributions, trends, breakdowns and latest comments."""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import pandas as pd
import streamlit as st

import cs_metrics
from cs_metrics import CsMetricsError, Filters, Warehouse
from cs_metrics.feedback import (
    FEEDBACK_METRICS,
    FEW_RESPONSES,
    MIN_RESPONSES,
    CommentPage,
    feedback_breakdown,
    latest_comments,
    nps_category,
    score_distributions,
)
from pages._common import (
    QUERY_TTL_S,
    Drill,
    as_of_text,
    describe_range,
    filters_ui,
    get_warehouse,
    missing_text,
    parquet_bytes,
    run_query,
    selected_row,
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


# --- helpers -----------------------------------------------------------------------------------


def _range_slug(filters: Filters) -> str:
    start = f"{filters.date_from:%Y-%m-%d}" if filters.date_from else "start"
    end = f"{filters.date_to - timedelta(days=1):%Y-%m-%d}" if filters.date_to else "end"
    return f"{start}_to_{end}"


def _downloads(df: pd.DataFrame, stem: str, filters: Filters, key: str) -> None:
    name = f"{stem}_{_range_slug(filters)}"
    with st.container(horizontal=True):
        st.download_button("Download CSV", df.to_csv(index=False).encode(), f"{name}.csv",
                           "text/csv", key=f"{key}_csv", on_click="ignore",
                           icon=":material/download:")
        st.download_button("Download Parquet", parquet_bytes(df), f"{name}.parquet",
                           "application/octet-stream", key=f"{key}_parquet", on_click="ignore",
                           icon=":material/download:")


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
        if score == "nps" else alt.value("#4c78a8")
    )
    tooltip = [
        alt.Tooltip("score:O", title=f"{name} score"),
        alt.Tooltip("responses:Q", title="Responses", format=","),
        alt.Tooltip("share_pct:Q", title="Share (%)", format=".1f"),
    ]
    if score == "nps":
        tooltip.append(alt.Tooltip("group:N", title="NPS group"))
    return (
        alt.Chart(data, title=alt.Title(f"{name} scores", subtitle=meaning))
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
    dists = _distributions_of(wh, str(wh.path), filters, shown) if shown else {}
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
            st.altair_chart(_distribution_chart(df, score), width="stretch")
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
            alt.Chart(data, title=alt.Title(f"{metric.label} by {grain}",
                                            subtitle=metric.description))
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
        col.altair_chart(chart, width="stretch")
    _downloads(df, f"feedback_by_{grain}", filters, "trend")


def _breakdown_section(wh: Warehouse, filters: Filters) -> None:
    st.subheader("Breakdown")
    label = st.selectbox("Break down by", list(BREAKDOWNS), key="fb_breakdown")
    by = BREAKDOWNS[label]
    df = _breakdown(wh, str(wh.path), filters, by)
    df = df[df["feedback_count"] > 0]
    if df.empty:
        st.info("No survey responses for the tickets created in this range.")
        return
    df = df.assign(**{by: df[by].fillna("(none)")})
    present = tuple(n for n in FEEDBACK_METRICS if not missing_text(cs_metrics.get_metric(n), wh))
    config = {
        by: st.column_config.TextColumn(label),
        "rank": st.column_config.NumberColumn(
            "Rank", help=f"By CSAT %, best first; only groups with at least {MIN_RESPONSES} "
            "responses are ranked."),
        "note": st.column_config.TextColumn("Note"),
        **_metric_columns(present),
    }
    st.dataframe(df, hide_index=True, column_order=[by, "rank", *present, "note"],
                 column_config=config, key="fb_breakdown_table", on_select="rerun",
                 selection_mode="single-row")
    row = selected_row("fb_breakdown_table", df)
    if row is None:
        st.caption("Select a row to list the tickets of that group.")
    else:
        value = None if row[by] == "(none)" else str(row[by])
        drill = Drill(f"Tickets of {label.lower()} {row[by]} (with or without a survey)",
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
    chart = (
        alt.Chart(data, title=alt.Title(f"{csat.label} by {label.lower()}",
                                        subtitle=csat.description))
        .mark_bar()
        .encode(
            y=alt.Y(f"{by}:N", title=label, sort="-x",
                    axis=alt.Axis(labelLimit=220, labelOverlap=False)),
            x=alt.X("csat_pct:Q", title=f"{csat.label} (%)", scale=alt.Scale(domain=[0, 100])),
            color=alt.Color("reliability:N", title=None, legend=alt.Legend(orient="top"),
                            scale=alt.Scale(range=["#4c78a8", "#bab0ac"])),
            tooltip=[
                alt.Tooltip(f"{by}:N", title=label),
                alt.Tooltip("csat_pct:Q", title=f"{csat.label} (%)", format=".1f"),
                alt.Tooltip("feedback_count:Q", title="Responses", format=","),
                alt.Tooltip("reliability:N", title="Responses"),
            ],
        )
        .properties(height=alt.Step(22))
    )
    st.altair_chart(chart, width="stretch")


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
    page = _comments(wh, str(wh.path), filters, band, offset)
    if page.total == 0:
        st.info("No survey comments match.")
        return
    st.dataframe(
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
                     f"{page.pages:,} · e-mail addresses and phone numbers are masked")
    next_col.button("Next", key="fb_next", disabled=not page.has_next, on_click=_move,
                    args=("fb_offset", COMMENTS_PER_PAGE), icon=":material/chevron_right:")
    _downloads(page.rows, f"feedback_comments_page{page.page}", filters, "comments")


def main() -> None:
    st.title("Customer feedback")
    try:
        wh = get_warehouse()
        if not wh.has_table("tickets"):
            st.error(f"The warehouse {wh.path} has no tickets yet. Load data into it with "
                     f"`python -m cs_metrics ingest SOURCE --db {wh.path}`.")
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
        _comments_section(wh, filters)
    except CsMetricsError as exc:
        st.error(str(exc))


main()
