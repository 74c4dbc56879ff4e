"""Aging & SLA: how many tickets are unresolved now and how old, the oldest of them; per SLA
policy and target the tickets met, breached and at risk, with the breached and at-risk
tickets listed; the breach rate by week."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from cs_metrics import CsMetricsError, Filters, Warehouse
from cs_metrics.analysis.aging import (
    AGE_BANDS,
    AT_RISK_SHARE,
    SPLITS,
    TARGETS,
    age_bands,
    breach_trend,
    oldest_unresolved,
    sla_status,
    sla_tickets,
)
from cs_metrics.core.safe_text import escape_markdown
from cs_metrics.metrics.registry import sla_source_caption
from views._cache import cached
from views._charts import TOP_CATEGORIES, chart_title, fold_other, show_chart
from views._exports import download_buttons
from views._filter_defs import describe_filters
from views._filter_parts import as_of_text
from views._filters import filters_ui
from views._session import ensure_data
from views._tables import show_table

OLDEST_N = 20
STATE_LABELS = {"met": "Met", "breached": "Breached", "at_risk": "At risk",
                "on_track": "On track"}
BAND_ORDER = [label for label, _, _ in AGE_BANDS]
STATUS_LABELS = {"open": "Open", "in_progress": "In progress", "closed": "Closed"}
NUMBER = st.column_config.NumberColumn
TEXT = st.column_config.TextColumn
WHEN = st.column_config.DatetimeColumn


# --- cached library calls (keyed by the warehouse file and scope and the frozen filters) ----


_bands = cached(age_bands)
_status = cached(sla_status)
_tickets = cached(sla_tickets)
_trend = cached(breach_trend)
_source_caption = cached(sla_source_caption)


@cached
def _oldest(wh: Warehouse, filters: Filters) -> pd.DataFrame:
    return oldest_unresolved(wh, filters, OLDEST_N)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _with_dash(df: pd.DataFrame) -> pd.DataFrame:
    """Empty text cells as "–" (never "None")."""
    out = df.copy()
    for col in out.columns:
        if not (pd.api.types.is_numeric_dtype(out[col])
                or pd.api.types.is_datetime64_any_dtype(out[col])):
            out[col] = out[col].astype(object).where(out[col].notna(), "–")
    return out


# --- 1. unresolved tickets by age --------------------------------------------------------------


def _aging(wh: Warehouse, filters: Filters) -> None:
    st.subheader("Unresolved tickets now, by age")
    st.caption("Tickets open or in progress at the data's as-of moment, of any creation date: "
               "the sidebar's date range does not apply here, its other filters do.")
    split = st.selectbox("Split by", list(SPLITS), format_func=lambda s: SPLITS[s][0],
                         key="aging_split")
    label = SPLITS[split][0]
    df = _bands(wh, filters, split)
    if split == "status":
        df = df.assign(group=df["group"].map(STATUS_LABELS).fillna(df["group"]))
    if df.empty:
        st.info("No unresolved tickets match these filters.")
        return
    total = int(df["tickets"].sum())
    cols = st.columns(len(AGE_BANDS) + 1)
    cols[0].metric("Unresolved tickets", f"{total:,}",
                   help="Open or in progress now, whatever their creation date.")
    by_band = df.groupby("band")["tickets"].sum()
    for col, band in zip(cols[1:], BAND_ORDER, strict=True):
        col.metric(band, f"{int(by_band.get(band, 0)):,}", help=f"Unresolved, aged {band}.")
    plot = fold_other(df, "group", ["tickets"], keys=("band",))
    groups = df["group"].nunique()
    shown = (f"; the {TOP_CATEGORIES} largest of {groups:,} {label.lower()} values, the rest "
             "as Other" if groups > TOP_CATEGORIES else "")
    chart = (
        alt.Chart(plot, title=chart_title(f"Unresolved tickets by age and {label.lower()}",
                                          f"Age at the data's as-of moment{shown}"))
        .mark_bar()
        .encode(
            x=alt.X("band:N", title="Age", sort=BAND_ORDER, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("sum(tickets):Q", title="Unresolved tickets (count)"),
            color=alt.Color("group:N", title=label, legend=alt.Legend(orient="right")),
            tooltip=[alt.Tooltip("band:N", title="Age"), alt.Tooltip("group:N", title=label),
                     alt.Tooltip("sum(tickets):Q", title="Tickets", format=",")],
        )
        .properties(height=320)
    )
    show_chart(chart, width="stretch", key="chart_aging")
    table = (df.pivot_table(index="group", columns="band", values="tickets", aggfunc="sum",
                            fill_value=0)
             .reindex(columns=BAND_ORDER, fill_value=0).astype("int64"))
    table["Total"] = table.sum(axis=1)
    table = table.sort_values("Total", ascending=False).reset_index()
    config = {"group": TEXT(label)} | {
        band: NUMBER(f"{band} (tickets)", format="localized") for band in BAND_ORDER}
    config["Total"] = NUMBER("Total (tickets)", format="localized")
    show_table(table, hide_index=True, column_config=config, key="aging_table")
    download_buttons(table, f"unresolved_by_age_{split}", filters)
    st.markdown(f"**The {OLDEST_N} oldest unresolved tickets**")
    oldest = _oldest(wh, filters)
    oldest = oldest.assign(status=oldest["status"].map(STATUS_LABELS).fillna(oldest["status"]))
    show_table(_with_dash(oldest), hide_index=True, key="aging_oldest", column_config={
        "ticket_id": TEXT("Ticket"),
        "created_at": WHEN(f"Created ({filters.tz})", format="YYYY-MM-DD HH:mm"),
        "age_days": NUMBER("Age (days)", format="%.1f"),
        "status": TEXT("Status"), "priority": TEXT("Priority"), "team": TEXT("Team"),
        "representative": TEXT("Representative"),
    })


# --- 2. SLA met / breached / at risk -----------------------------------------------------------


def _sla(wh: Warehouse, filters: Filters) -> None:
    st.subheader("SLA by policy and target")
    st.caption(f"Tickets created in the date range. Met and breached are final verdicts; "
               f"at risk: not yet answered (resolved), not breached, and past "
               f"{AT_RISK_SHARE:.0%} of the time from creation to the deadline; on track: "
               "pending and earlier than that.")
    if caption := _source_caption(wh, filters):
        st.caption(caption)
    df = _status(wh, filters)
    if df.empty:
        st.info("No ticket in these filters has an SLA target, or this dataset has no "
                "first-response or resolution times to judge them by.")
        return
    shown = df.assign(target=df["target"].map(TARGETS))
    show_table(shown, hide_index=True, key="sla_table", column_config={
        "policy": TEXT("SLA policy"), "target": TEXT("Target"),
        "tickets": NUMBER("Tickets (count)", format="localized"),
        "met": NUMBER("Met (tickets)", format="localized"),
        "breached": NUMBER("Breached (tickets)", format="localized"),
        "at_risk": NUMBER("At risk (tickets)", format="localized"),
        "on_track": NUMBER("On track (tickets)", format="localized"),
        "breached_pct": NUMBER("Breached (% of judged)", format="%.1f %%",
                               help="Breached / (met + breached); empty when none is "
                               "judged yet."),
    })
    download_buttons(shown, "sla_by_policy", filters)
    long = shown.melt(id_vars=["policy", "target"], value_vars=list(STATE_LABELS),
                      var_name="state", value_name="count")
    long["state_order"] = long["state"].map(list(STATE_LABELS).index)
    long["state"] = long["state"].map(STATE_LABELS)
    long["policy_target"] = long["policy"] + " · " + long["target"]
    chart = (
        alt.Chart(long, title=chart_title("Tickets by SLA state",
                                          "Per policy and target, created in the range"))
        .mark_bar()
        .encode(
            # one label line for the policy, one for the target
            x=alt.X("policy_target:N", title="SLA policy and target",
                    axis=alt.Axis(labelAngle=0, labelExpr="split(datum.label, ' · ')",
                                  labelLimit=240)),
            y=alt.Y("count:Q", title="Share of tickets (%)", stack="normalize",
                    axis=alt.Axis(format="%")),
            color=alt.Color("state:N", title="State",
                            scale=alt.Scale(domain=list(STATE_LABELS.values()),
                                            range=["#2e7d32", "#d32f2f", "#f9a825", "#9e9e9e"]),
                            legend=alt.Legend(orient="right")),
            order=alt.Order("state_order:Q"),
            tooltip=[alt.Tooltip("policy:N", title="Policy"),
                     alt.Tooltip("target:N", title="Target"),
                     alt.Tooltip("state:N", title="State"),
                     alt.Tooltip("count:Q", title="Tickets", format=",")],
        )
        .properties(height=320)
    )
    show_chart(chart, width="stretch", key="chart_sla")
    st.markdown("**Breached and at-risk tickets**")
    listed = _tickets(wh, filters)
    n = int(df["breached"].sum() + df["at_risk"].sum())
    if listed.empty:
        st.info("No breached or at-risk tickets in these filters.")
        return
    more = f" (the first {len(listed):,} listed)" if n > len(listed) else ""
    st.caption(f"{_plural(n, 'ticket target')} breached or at risk{more}; a ticket that "
               "missed both targets is listed twice. At risk first, then the most recent "
               "deadlines.")
    listed = listed.assign(target=listed["target"].map(TARGETS),
                           state=listed["state"].map(STATE_LABELS),
                           status=listed["status"].map(STATUS_LABELS).fillna(listed["status"]))
    show_table(_with_dash(listed), hide_index=True, key="sla_tickets", column_config={
        "ticket_id": TEXT("Ticket"),
        "created_at": WHEN(f"Created ({filters.tz})", format="YYYY-MM-DD HH:mm"),
        "deadline": WHEN(f"Deadline ({filters.tz})", format="YYYY-MM-DD HH:mm"),
        "policy": TEXT("SLA policy"), "target": TEXT("Target"), "state": TEXT("State"),
        "status": TEXT("Status"), "priority": TEXT("Priority"), "team": TEXT("Team"),
        "representative": TEXT("Representative"),
    })
    download_buttons(listed, "sla_breached_at_risk", filters)


# --- 3. breach trend ---------------------------------------------------------------------------


def _breach_trend(wh: Warehouse, filters: Filters) -> None:
    st.subheader("Breach rate by week")
    df = _trend(wh, filters)
    if df.empty:
        st.info("No judged SLA targets in these filters.")
        return
    plot = df.assign(target=df["target"].map(TARGETS), week=pd.to_datetime(df["week"]))
    chart = (
        alt.Chart(plot, title=chart_title(
            "Breached, % of judged tickets, by week created",
            f"Weeks start on Monday in {filters.tz}; judged = met or breached"))
        .mark_line(point=True)
        .encode(
            x=alt.X("week:T", title="Week (starting Monday)", axis=alt.Axis(format="%d %b %Y")),
            y=alt.Y("breached_pct:Q", title="Breached (% of judged)"),
            color=alt.Color("target:N", title="Target", legend=alt.Legend(orient="right")),
            tooltip=[alt.Tooltip("week:T", title="Week starting", format="%a %d %b %Y"),
                     alt.Tooltip("target:N", title="Target"),
                     alt.Tooltip("breached_pct:Q", title="Breached (%)", format=".1f"),
                     alt.Tooltip("breached:Q", title="Breached", format=","),
                     alt.Tooltip("judged:Q", title="Judged", format=",")],
        )
        .properties(height=300)
    )
    show_chart(chart, width="stretch", key="chart_breach_trend")


def main() -> None:
    st.title("Aging & SLA")
    try:
        wh = ensure_data()
        filters = filters_ui(wh)
        st.caption(f"{as_of_text(wh)} · {escape_markdown(describe_filters(filters))}")
        _aging(wh, filters)
        _sla(wh, filters)
        _breach_trend(wh, filters)
    except CsMetricsError as exc:
        st.error(escape_markdown(exc))


main()
