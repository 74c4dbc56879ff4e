"""Reports: the executive, team or representative report for a period, previewed in the page
and downloaded as one HTML file, Markdown with its charts (zip), the reference charts (PNG)
and the figures (JSON)."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import streamlit as st

from cs_metrics import CsMetricsError, Filters, Warehouse, get_metric
from cs_metrics.core.access import LOCAL
from cs_metrics.core.safe_text import escape_markdown
from cs_metrics.core.zones import to_local
from cs_metrics.ops import reports
from views._auth import audit
from views._cache import cached, dimension_options, run_query
from views._exports import export_button
from views._filter_defs import describe_filters
from views._filter_parts import as_of_text
from views._filters import filters_ui
from views._session import ensure_data
from views._tables import show_table

AUDIENCE_LABELS: dict[str, str] = {
    "executive": "Executive (whole organisation)",
    "team": "Team (a team, or a manager's teams)",
    "representative": "Representative (against their team's median)",
}
PERIODS: dict[str, str] = {
    "last-week": "Last complete week",
    "last-month": "Last complete month",
    "month": "A calendar month",
    "sidebar": "The sidebar's date range",
}
# the figures shown as cards above the preview (the preview holds them all)
HEADLINE: tuple[str, ...] = (
    "ticket_count", "sla_first_response_pct", "avg_resolution_h", "csat_pct",
)
PREVIEW_HEIGHT = 900


@cached(max_entries=16)
def _rendered(
    wh: Warehouse,
    audience: str,
    subject: str | None,
    period: str | reports.Period,
    filters: Filters,
) -> reports.RenderedReport:
    report = reports.build_report(
        wh, audience, period, filters=filters,
        team=subject if audience == "team" else None,
        rep=subject if audience == "representative" else None,
    )
    return reports.render(report)


def _months(wh: Warehouse) -> list[str]:
    span = wh.created_range()
    if span is None:
        return []
    first, last = span[0].date().replace(day=1), span[1].date().replace(day=1)
    out = []
    while last >= first:
        out.append(f"{last:%Y-%m}")
        last = (last - timedelta(days=1)).replace(day=1)
    return out


def _subject_ui(wh: Warehouse, audience: str) -> str | None:
    if audience == "team":
        teams = dimension_options(wh, "team")
        # a manager's report covers all of their teams: not offered to a scope of some teams
        whole = wh.scope is None or wh.scope.full
        managers = [m for m in dimension_options(wh, "manager") if m not in teams] \
            if whole else []
        if not teams and not managers:
            st.info("This dataset has no teams or managers (its representatives have none).")
            st.stop()
        labels = {t: f"{t} (team)" for t in teams}
        labels.update({m: f"{m} (manager: all of their teams)" for m in managers})
        return st.selectbox("Team or manager", list(labels), format_func=labels.get,
                            key="report_team",
                            help="A team's report lists only its representatives; a manager's "
                            "covers every team they manage.")
    if audience == "representative":
        reps = run_query(wh, ("ticket_count",), by=("rep_id", "rep_name"))
        reps = reps[reps["rep_id"].notna()].sort_values(["rep_name", "rep_id"])
        if reps.empty:
            st.info("This dataset has no representatives (its tickets have no rep_id).")
            st.stop()
        names = {r.rep_id: f"{r.rep_name} ({r.rep_id})" if pd.notna(r.rep_name) else r.rep_id
                 for r in reps.itertuples()}
        return st.selectbox("Representative", list(names), format_func=names.get,
                            key="report_rep",
                            help="The representative's figures beside their team's median.")
    return None


def _period_ui(wh: Warehouse, filters: Filters) -> str | reports.Period:
    choice = st.selectbox("Period", list(PERIODS), format_func=PERIODS.get, key="report_period",
                          help="Weeks run Monday to Sunday. \"Last complete\" is counted from "
                          "the last complete day of data, not today. Each period is compared "
                          "with the one before it and, where the data reaches back that far, "
                          "with the same dates a year earlier.")
    if choice == "month":
        months = _months(wh)
        return st.selectbox("Month", months, key="report_month",
                            format_func=lambda m: f"{date.fromisoformat(m + '-01'):%B %Y}")
    if choice == "sidebar":
        start, stop = filters.date_from, filters.date_to
        span = wh.created_range()
        if span is not None:
            start = start or to_local(span[0], filters.tz).date()
            stop = stop or to_local(span[1], filters.tz).date() + timedelta(days=1)
        if start is None or stop is None:
            raise CsMetricsError("There are no tickets to report on.")
        return reports.period_between(start, stop)
    return choice


def _headline(rendered: reports.RenderedReport) -> None:
    kpis = rendered.report.kpis.df.set_index("metric")
    shown = [m for m in HEADLINE if m in kpis.index]
    cols = st.columns(len(shown))
    for col, name in zip(cols, shown, strict=True):
        metric = get_metric(name)
        row = kpis.loc[name]
        change = reports.change_text(metric, row["value"], row["previous"])
        col.metric(metric.label, metric.display(row["value"]),
                   delta=None if change == "–" else change,
                   delta_color="off",
                   help=f"{metric.description}\n\nThe change is against the previous period.")
    year = rendered.report.scope.year_earlier_range
    if year is None or "year_earlier" not in kpis.columns:
        st.caption("Year over year: no data a year earlier, so there is no comparison with "
                   "the same dates a year before.")
        return
    parts = []
    for name in shown:
        metric, row = get_metric(name), kpis.loc[name]
        parts.append(f"{metric.label} {metric.display(row['year_earlier'])} "
                     f"({reports.change_text(metric, row['value'], row['year_earlier'])})")
    last = year[1] - timedelta(days=1)
    st.caption(f"Year over year, against {year[0]:%d %b %Y} – {last:%d %b %Y}: "
               + " · ".join(parts) + ".")


def _downloads(rendered: reports.RenderedReport) -> None:
    stem = rendered.stem
    with st.container(horizontal=True):
        export_button(
            "Download HTML", rendered.html.encode("utf-8"), f"{stem}.html", "text/html",
            key="report_dl_html",
            help="One self-contained file: opens offline, prints cleanly.")
        export_button(
            "Download Markdown (zip)", rendered.markdown_zip, f"{stem}_md.zip",
            "application/zip", key="report_dl_md",
            help="report.md with its PNG charts and report.json.")
        for name in reports.REFERENCE_CHARTS:
            export_button(name, rendered.images[name], f"{stem}_{name}", "image/png",
                          key=f"report_dl_{name}", icon=":material/image:")
        export_button(
            "Download JSON", rendered.json_text.encode("utf-8"), f"{stem}.json",
            "application/json", key="report_dl_json", icon=":material/data_object:",
            help="Every figure of the report, machine-readable.")


def main() -> None:
    st.title("Reports")
    try:
        wh = ensure_data()
        filters = filters_ui(wh)
        st.caption(f"{as_of_text(wh)} · the sidebar's filters narrow the report; its date "
                   "range counts only when chosen as the period below.")
        cols = st.columns(3)
        with cols[0]:
            audience = st.selectbox("Audience", list(AUDIENCE_LABELS),
                                    format_func=AUDIENCE_LABELS.get, key="report_audience")
        with cols[1]:
            subject = _subject_ui(wh, audience)
        with cols[2]:
            period = _period_ui(wh, filters)
        narrowing = Filters(where=filters.where, tz=filters.tz)
        # building renders every chart (a second or two): only when asked for
        wanted = (audience, subject, period, narrowing)
        if st.button("Build the report", type="primary", key="report_build",
                     icon=":material/summarize:"):
            st.session_state["_report_wanted"] = wanted
            audit(wh, wh.scope or LOCAL, "report", f"{audience} report",
                  {"audience": audience, "subject": subject, "period": str(period),
                   "filters": describe_filters(narrowing)})
        if st.session_state.get("_report_wanted") != wanted:
            st.info("Choose the audience and the period, then build the report to preview "
                    "and download it.")
            return
        with st.spinner("Building the report…"):
            rendered = _rendered(wh, audience, subject, period, narrowing)
        report = rendered.report
        st.subheader(escape_markdown(report.scope.title))  # it names the team or rep
        st.caption(escape_markdown(describe_filters(Filters(
            report.scope.period.date_from, report.scope.period.date_to, narrowing.where,
            narrowing.tz))))
        _headline(rendered)
        _downloads(rendered)
        if st.button("Rebuild", key="report_rebuild", icon=":material/refresh:",
                     help="Build the report again (a new run id and generation time)."):
            _rendered.clear()
            st.rerun()
        with st.container(height=PREVIEW_HEIGHT, border=True):
            st.html(rendered.preview_html)
    except CsMetricsError as exc:
        st.error(escape_markdown(exc))


# The delivery log's columns as a reader names them.
LOG_COLUMNS = {
    "name": "Schedule", "slot": st.column_config.DatetimeColumn("Slot (UTC)",
                                                                format="YYYY-MM-DD HH:mm"),
    "attempt": "Try", "started_at": st.column_config.DatetimeColumn(
        "Started (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "finished_at": st.column_config.DatetimeColumn("Finished (UTC)",
                                                   format="YYYY-MM-DD HH:mm:ss"),
    "outcome": "Outcome", "error": "Error", "recipients": "Recipients",
    "retry_at": st.column_config.DatetimeColumn("Next try (UTC)", format="YYYY-MM-DD HH:mm"),
    "via": "Run by", "period": "Period",
}


def scheduled_section() -> None:
    """The ``[[schedules]]`` with their next run, and the delivery log, latest first. Cells
    of a dataframe are shown as text; captions naming settings values are escaped."""
    from datetime import datetime, timezone

    from cs_metrics import load_settings
    from cs_metrics.ops import schedules

    st.subheader("Scheduled reports")
    try:
        wh = ensure_data()
        if wh.scope is not None and not wh.scope.full:
            # recipients and every team's reports: for those who see every team
            st.caption("Scheduled reports are listed for people who see every team.")
            return
        settings = load_settings()
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        if not settings.schedules:
            st.info(f"No scheduled reports in {escape_markdown(settings.source)}: add "
                    "`[[schedules]]` entries to the settings and the server e-mails each "
                    "report on its cron schedule (see the README's Reports section).")
        else:
            st.caption("The running server builds and e-mails each report at its next run "
                       "(times in UTC and in the schedule's zone); after downtime it catches "
                       "up once.")
            show_table(schedules.next_runs(settings, now), hide_index=True,
                         key="schedules_next", column_config={
                             "name": "Schedule", "timezone": "Zone", "cron": "Cron",
                             "audience": "Audience", "subject": "Team or representative",
                             "period": "Period", "format": "Format",
                             "recipients": "Recipients",
                             "next_run_utc": st.column_config.DatetimeColumn(
                                 "Next run (UTC)", format="YYYY-MM-DD HH:mm"),
                             "next_run_local": st.column_config.DatetimeColumn(
                                 "Next run (its zone)", format="YYYY-MM-DD HH:mm")})
        log = schedules.deliveries(wh.base)
        if log.empty:
            st.caption("No scheduled report has been delivered yet.")
            return
        failed = int((log["outcome"] == "failed").sum())
        st.caption(f"Delivery log, latest first: {len(log)} tries, {failed} failed (a failed "
                   "try with a retry time is tried again then).")
        show_table(log, hide_index=True, key="schedules_log", column_config=LOG_COLUMNS)
    except CsMetricsError as exc:
        st.error(escape_markdown(exc))


main()
scheduled_section()
