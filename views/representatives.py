"""Representatives: leaderboards per representative, team and manager; representatives whose
figures are unusual for their ticket mix; one representative's trend against their team."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

import cs_metrics
from cs_metrics import CsMetricsError, Filters, Warehouse
from cs_metrics.analysis.leaderboard import (
    ALPHA,
    BOARD_COLUMNS,
    FLAG_MIN_EFFECT,
    LEVELS,
    MIN_TICKETS,
    TEST_EXPLANATION,
    TESTS,
    format_q,
    leaderboard,
    rep_trend,
    unusual,
)
from cs_metrics.core.safe_text import escape_markdown
from views._cache import cached
from views._charts import show_chart
from views._drill import row_drill, selected_row, ticket_list_ui
from views._filter_defs import describe_range
from views._filter_parts import as_of_text
from views._filters import filters_ui
from views._representatives_activity import (
    KEY_LABELS,
    KEY_WIDTHS,
    _activity_section,
)
from views._representatives_format import (
    board_columns,
    board_format,
    columns_ui,
    downloads,
)
from views._session import ensure_data
from views._tables import missing_text, show_table

LEVEL_TABS: tuple[tuple[str, str, str], ...] = (
    ("rep", "Representatives", "representatives"),
    ("team", "Teams", "teams"),
    ("manager", "Managers", "managers"),
)
# the column a selected row's tickets are found by, per level
LEVEL_DRILL = {"rep": "rep_id", "team": "team", "manager": "manager"}
TREND_METRICS: tuple[str, ...] = (
    "avg_resolution_h", "avg_first_response_min", "sla_first_response_pct", "fcr_pct",
    "csat_pct", "ticket_count",
)
NO_REPS = "This dataset has no representatives (its tickets have no rep_id)."


@cached
def _leaderboard(wh: Warehouse, filters: Filters, level: str) -> pd.DataFrame:
    return leaderboard(wh, filters, level, metrics=BOARD_COLUMNS)


_unusual = cached(unusual)


@cached
def _trend(wh: Warehouse, filters: Filters, rep_id: str, metric: str) -> pd.DataFrame:
    return rep_trend(wh, filters, rep_id, metric, grain="week")


def _missing_captions(wh: Warehouse) -> None:
    texts = {missing_text(cs_metrics.get_metric(n), wh) for n in BOARD_COLUMNS}
    for text in sorted(t for t in texts if t):
        st.caption(text)


def _level_table(wh: Warehouse, filters: Filters, level: str, kind: str,
                 chosen: list[str]) -> None:
    df = _leaderboard(wh, filters, level)
    if df.empty:
        # reps are known to have tickets here (main checked): an empty team or manager board
        # means the dataset does not say who is in which team
        st.info(f"This dataset has no {level}s (the representatives table gives each "
                "representative's team and manager).")
        return
    keys = list(LEVELS[level])
    shown_keys = [k for k in keys if k != "manager"]  # the Managers tab has them
    if level == "rep" and df["rep_name"].notna().all():
        shown_keys.remove("rep_id")  # the id is in the row's tickets; a name is known
    # fixed widths, so a long name cannot push the default columns past a 1500 px window
    config = {k: st.column_config.TextColumn(KEY_LABELS[k], width=KEY_WIDTHS.get(k))
              for k in shown_keys}
    # a metric whose inputs this dataset lacks is "–", never a number (nor "None")
    empty = {n for n in chosen if missing_text(cs_metrics.get_metric(n), wh)}
    config.update(board_columns(chosen, empty))
    shown = df.assign(**{n: "–" for n in empty}) if empty else df
    key = f"board_{level}"
    show_table(shown, hide_index=True, column_config=config, on_select="rerun",
                 selection_mode="single-row", column_order=[*shown_keys, *chosen], key=key)
    downloads(df, kind, filters)
    _tickets_of(wh, filters, key, df, LEVEL_DRILL[level])


def _tickets_of(wh: Warehouse, filters: Filters, key: str, df: pd.DataFrame, dim: str) -> None:
    """The tickets of the row selected in table ``key``, or how to get them."""
    row = selected_row(key, df)
    if row is None:
        st.caption("Select a row to list its tickets.")
        return
    value = row[dim]
    from cs_metrics.metrics.drilldown import rep_label  # the rep id when the name is unknown

    name = rep_label(row.get("rep_name"), value) if dim == "rep_id" else value
    who = {"rep_id": "representative", "team": "team", "manager": "manager"}[dim]
    label = f"Tickets of {who} {name if pd.notna(name) else '(none)'}"
    drill = row_drill(row, (dim,), label)
    if drill is not None:
        ticket_list_ui(wh, filters, drill, key=f"{key}_drill")


def _unusual_section(wh: Warehouse, filters: Filters) -> None:
    st.subheader("Unusual for their ticket mix")
    testable = [n for n in TESTS if not missing_text(cs_metrics.get_metric(n), wh)]
    if not testable:
        st.caption("This dataset has none of the figures the test needs (durations, SLA "
                   "verdicts, contact counts or CSAT scores).")
        return
    name = st.selectbox("Metric tested", testable, key="unusual_metric",
                        format_func=lambda n: cs_metrics.get_metric(n).label)
    metric = cs_metrics.get_metric(name)
    df = _unusual(wh, filters, name)
    if df.empty:
        st.info("No representative has a value of this metric in this date range.")
        return
    flagged = int(df["flag"].sum())
    st.caption(f"{flagged} of {int((df['status'] != 'too few tickets').sum())} representatives "
               f"tested are flagged for {metric.label.lower()} (q < {ALPHA:g} and a "
               "difference large enough to matter; see below).")
    _flagged_sentences(df)
    # units in the labels, plain numbers in the cells: the table fits a 1500 px window
    fmt = board_format(metric)
    unit = f" ({metric.unit})" if metric.unit else ""
    config = {
        "status": st.column_config.TextColumn(
            "Flag", width=172, help="Against the figure their ticket mix predicts; "
            f"representatives with fewer than {MIN_TICKETS} tickets with a value are not "
            "tested. The CSV and Parquet downloads also hold the team, z and p-value."),
        "rep_name": st.column_config.TextColumn("Representative", width=125),
        "rep_id": st.column_config.TextColumn("Rep id"),
        "n": st.column_config.NumberColumn("Tested", format="localized",
                                           help="Tickets with a value of this metric."),
        "observed": st.column_config.NumberColumn(f"{metric.label}{unit}", format=fmt,
                                                  help=metric.description),
        "expected_from_mix": st.column_config.NumberColumn(
            f"Expected{unit}", format=fmt,
            help="Everyone's figure per priority x domain, weighted by this rep's tickets."),
        "difference": st.column_config.NumberColumn(
            "Diff." + (" (points)" if metric.unit == "%" else unit), format=fmt,
            help="Observed minus expected."),
        "q_value": st.column_config.TextColumn(
            "q-value", help="p-value corrected for the number of "
            "representatives tested (Benjamini–Hochberg)."),
        "high_urgent_pct": st.column_config.NumberColumn(
            "High/urgent (%)", format="%.1f",
            help="Share of this rep's tickets with high or urgent priority."),
        "top_domain": st.column_config.TextColumn("Top domain", width=95),
        "top_domain_pct": st.column_config.NumberColumn(
            "Top domain (%)", format="%.1f",
            help="Share of this rep's tickets in their most frequent domain."),
    }
    if df["rep_name"].notna().all():
        del config["rep_id"]  # a name is known for everyone; the id is in the downloads
    shown = df.assign(q_value=df["q_value"].map(format_q), p_value=df["p_value"].map(format_q))
    show_table(shown, hide_index=True, column_config=config, column_order=list(config),
                 key="unusual_table", on_select="rerun", selection_mode="single-row")
    downloads(df, f"unusual_{name}", filters)
    _tickets_of(wh, filters, "unusual_table", df, "rep_id")
    with st.expander("How a representative is flagged"):
        st.markdown(TEST_EXPLANATION.format(alpha=ALPHA, min_n=MIN_TICKETS,
                                            min_ratio=FLAG_MIN_EFFECT["duration"],
                                            min_pp=FLAG_MIN_EFFECT["proportion"]))


def _flagged_sentences(df: pd.DataFrame) -> None:
    """One plain line per flagged representative, the largest difference first (the library
    ranks them)."""
    lines = []
    for _, row in df[df["flag"]].iterrows():
        who = row["rep_name"] if pd.notna(row["rep_name"]) else row["rep_id"]
        lines.append(f"- **{escape_markdown(who)}**: {escape_markdown(row['sentence'])} "
                     f"(q {format_q(row['q_value'])})")
    if lines:
        st.markdown("\n".join(lines))


def _detail(wh: Warehouse, filters: Filters, reps: pd.DataFrame) -> None:
    st.subheader("Representative detail")
    names = dict(zip(reps["rep_id"], reps["rep_name"], strict=True))
    left, right = st.columns(2)
    rep_id = left.selectbox(
        "Representative", sorted(names, key=lambda r: (str(names[r]), r)), key="detail_rep",
        format_func=lambda r: f"{names[r]} ({r})" if pd.notna(names[r]) else r,
    )
    options = [n for n in TREND_METRICS if not missing_text(cs_metrics.get_metric(n), wh)]
    name = right.selectbox("Metric", options, key="detail_metric",
                           format_func=lambda n: cs_metrics.get_metric(n).label)
    if rep_id is None or name is None:
        return
    metric = cs_metrics.get_metric(name)
    row = reps[reps["rep_id"] == rep_id].iloc[0]
    team = escape_markdown(row["team"]) if pd.notna(row["team"]) else "–"
    manager = escape_markdown(row["manager"]) if pd.notna(row["manager"]) else "–"
    st.caption(f"Team: {team} · Manager: {manager} · "
               f"{metric.label} in the range: {metric.display(row[name])}")
    df = _trend(wh, filters, rep_id, name)
    if df.empty:
        st.info("No tickets for this representative's team in this date range.")
        return
    who = names[rep_id] if pd.notna(names[rep_id]) else rep_id
    series = {"rep": who, "team_median": "Team median"}
    long = df.melt(id_vars=["period", "team_reps"], value_vars=list(series),
                   var_name="series_key", value_name="value").dropna(subset=["value"])
    long["series"] = long["series_key"].map(series)
    long["week"] = pd.to_datetime(long["period"])
    unit = "%" if metric.unit == "%" else metric.unit
    chart = (
        alt.Chart(long, title=alt.Title(
            f"{metric.label} by week: {who} vs team median",
            subtitle="The team median is the median of the team's representatives' weekly "
            "figures. " + metric.description,
        ))
        .mark_line(point=True)
        .encode(
            x=alt.X("week:T", title="Week (starting Monday)", axis=alt.Axis(format="%d %b %Y")),
            y=alt.Y("value:Q", title=f"{metric.label} ({unit})" if unit else metric.label),
            color=alt.Color("series:N", title=None, legend=alt.Legend(orient="top")),
            tooltip=[
                alt.Tooltip("week:T", title="Week starting", format="%a %d %b %Y"),
                alt.Tooltip("series:N", title="Series"),
                alt.Tooltip("value:Q", title=f"{metric.label} ({unit})".rstrip(" ()"),
                            format=metric.format.replace("+", "")),
                alt.Tooltip("team_reps:Q", title="Reps in the median"),
            ],
        )
        .properties(height=320)
    )
    show_chart(chart, width="stretch")


def main() -> None:
    st.title("Representatives")
    try:
        wh = ensure_data()
        filters = filters_ui(wh)
        st.caption(f"{as_of_text(wh)} · {describe_range(filters)}")
        if "rep_id" not in wh.nonempty_columns("tickets_src"):
            st.info(NO_REPS)
            return
        reps = _leaderboard(wh, filters, "rep")
        if reps.empty:
            st.info("No tickets with a representative were created in this date range.")
            return
        chosen = columns_ui(wh)
        tabs = st.tabs([title for _, title, _ in LEVEL_TABS])
        for tab, (level, _, kind) in zip(tabs, LEVEL_TABS, strict=True):
            with tab:
                _level_table(wh, filters, level, kind, chosen)
        _missing_captions(wh)
        st.divider()
        _unusual_section(wh, filters)
        st.divider()
        _detail(wh, filters, reps)
        st.divider()
        _activity_section(wh, filters)
    except CsMetricsError as exc:
        st.error(escape_markdown(exc))


main()
