"""Building a report: every figure of a period and an audience from the metric registry.

``build_report`` resolves the period and the audience's subject, then reads the key figures,
targets, volume, trend, segments, leaderboards, top domains and locations, the seasonality
verdict, the notable changes and the data-quality score, each table with the registry
queries its figures come from.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from cs_metrics.analysis.leaderboard import LEADERBOARD_METRICS, leaderboard, rep_trend
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.periods import (
    Period,
    add_months,
    complete_end,
    range_label,
    resolve_period,
    year_earlier_in_data,
    year_earlier_range,
)
from cs_metrics.core.settings import Settings, load_settings
from cs_metrics.core.warehouse import Warehouse, implausible_note
from cs_metrics.core.zones import to_local
from cs_metrics.ingestion.quality import quality_report
from cs_metrics.metrics.registry import (
    METRICS,
    Filters,
    Metric,
    get_metric,
    metric_target,
    missing_inputs,
    query,
    sla_source_caption,
)
from cs_metrics.ops.reports.changes import _changes
from cs_metrics.ops.reports.model import (
    Report,
    ReportScope,
    ReportTable,
    _describe_where,
    _num,
    _source,
    metric_definitions_version,
    target_status,
)

Audience = Literal["executive", "team", "representative"]
AUDIENCES: tuple[str, ...] = ("executive", "team", "representative")
KPI_METRICS: tuple[str, ...] = (
    "ticket_count", "closed_count", "backlog", "avg_first_response_min",
    "median_first_response_min", "sla_first_response_pct", "avg_resolution_h",
    "sla_resolution_pct", "fcr_pct", "reopen_pct", "aht_min", "csat_pct", "csat_avg", "nps",
    "ces_avg", "response_rate_pct",
)
SEGMENT_METRICS: tuple[str, ...] = (
    "ticket_count", "customer_count", "avg_first_response_min", "sla_first_response_pct",
    "avg_resolution_h", "csat_pct",
)
TOP_METRICS: tuple[str, ...] = (
    "ticket_count", "sla_first_response_pct", "avg_resolution_h", "csat_pct",
)
TREND_METRICS: tuple[str, ...] = (
    "ticket_count", "avg_first_response_min", "sla_first_response_pct", "avg_resolution_h",
    "fcr_pct", "csat_pct",
)
BOARD_METRICS: tuple[str, ...] = tuple(
    m for m in LEADERBOARD_METRICS if m not in ("open_count", "in_progress_count"))
REP_TREND_METRICS: tuple[str, ...] = ("sla_first_response_pct", "avg_resolution_h", "csat_pct")
TOP_N = 10
REPS_SHOWN = 25  # executive reports list the busiest representatives; report.json has all


# --- building ----------------------------------------------------------------------------------


def _with_where(filters: Filters, **dims: str | tuple[str, ...] | None) -> Filters:
    """``filters`` with some dimensions set (replacing the user's choice on them)."""
    where = {dim: values for dim, values in filters.where}
    for dim, value in dims.items():
        if value is None:
            where.pop(dim, None)
        else:
            where[dim] = (value,) if isinstance(value, str) else tuple(value)
    return Filters.build(filters.date_from, filters.date_to, tz=filters.tz, **where)


NAMES_LISTED = 20  # an error lists this many team or manager names, then how many more
NAME_CHARS = 80  # and cuts each name at this many characters


def _names(names: Sequence[str]) -> str:
    """Names from the data as one line of an error message for a terminal: a control
    character is shown as its escape (``\\x1b``), never sent (an ESC sequence would drive the
    terminal, a line break fake a line), and a long list or name is cut."""
    shown = []
    for name in names[:NAMES_LISTED]:
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(name))
        shown.append(text if len(text) <= NAME_CHARS else text[:NAME_CHARS - 1] + "…")
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _resolve_subject(
    wh: Warehouse, audience: str, team: str | None, rep: str | None
) -> tuple[str | None, dict[str, str], str]:
    """(subject shown, the dimensions the audience fixes, the title)."""
    if audience == "executive":
        if team or rep:
            raise CsMetricsError("An executive report covers everyone; drop --team and --rep, "
                                 "or pick the team or representative audience.")
        return None, {}, "Executive performance report"
    if audience == "team":
        if rep:
            raise CsMetricsError("A team report takes --team, not --rep.")
        teams, managers = wh.dimension_values("team"), wh.dimension_values("manager")
        if not team:
            raise CsMetricsError(
                f"A team report needs --team: a team ({_names(teams) or 'none in the data'})"
                f" or a manager, for all of their teams ({_names(managers) or 'none'})."
            )
        if team in teams:
            return team, {"team": team}, f"Team performance report: {team}"
        if team in managers:
            return team, {"manager": team}, f"Team performance report: teams of {team}"
        raise CsMetricsError(
            f"There is no team or manager {team!r} in this dataset; teams: "
            f"{_names(teams) or 'none'}; managers: {_names(managers) or 'none'}."
        )
    if audience == "representative":
        if team:
            raise CsMetricsError("A representative report takes --rep, not --team.")
        if not rep:
            raise CsMetricsError("A representative report needs --rep (a rep id or name).")
        ids = wh.dimension_values("rep_id")
        if rep in ids:
            rep_id = rep
        else:
            found = wh.df(
                "select distinct rep_id from tickets where rep_name = ? and rep_id is not null "
                "order by rep_id", [rep])
            if found.empty:
                raise CsMetricsError(
                    f"There is no representative {rep!r} (id or name) in this dataset."
                )
            if len(found) > 1:
                raise CsMetricsError(
                    f"{len(found)} representatives are named {rep!r} "
                    f"({', '.join(found['rep_id'])}); pass --rep with one of these ids."
                )
            rep_id = str(found["rep_id"].iloc[0])
        name = wh.scalar("select any_value(rep_name) from tickets where rep_id = ?", [rep_id])
        shown = f"{name} ({rep_id})" if name and name != rep_id else rep_id
        return shown, {"rep_id": rep_id}, f"Representative performance report: {shown}"
    raise CsMetricsError(f"Unknown audience {audience!r}; use {', '.join(AUDIENCES)}.")


def _present(wh: Warehouse, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(metrics the dataset can compute, notes on those it cannot)."""
    ok, notes = [], []
    for name in names:
        missing = missing_inputs(get_metric(name), wh)
        if missing:
            notes.append(f"This dataset has no {', '.join(missing)} values, so "
                         f"{get_metric(name).label} is left out.")
        else:
            ok.append(name)
    return ok, notes


def _one_row(df: pd.DataFrame) -> pd.Series:
    return df.iloc[0] if len(df) else pd.Series(dtype="float64")


def _change_verdict(metric: Metric, delta: float | None) -> str:
    if delta is None or metric.direction is None:
        return ""
    if float(format(abs(delta), metric.format.lstrip("+")).replace(",", "")) == 0:
        return "same"
    return "better" if (delta > 0) == (metric.direction == "higher") else "worse"


def _kpi_table(
    wh: Warehouse, scope: ReportScope, names: list[str], settings: Settings,
    team_scope: Filters | None,
) -> ReportTable:
    current = _one_row(query(wh, names, filters=scope.current()))
    previous_df = query(wh, names, filters=scope.previous())
    previous = _one_row(previous_df)
    has_previous = len(previous_df) and previous.get("ticket_count", 0) > 0
    rows = []
    team_median = team_value = None
    sources: list[dict[str, Any]] = [
        _source(names, scope.current(), layout="long", column="value"),
    ]
    if has_previous:
        sources.append(_source(names, scope.previous(), layout="long", column="previous"))
    year_filters = scope.year_earlier()
    year = None
    if year_filters is not None:
        year = _one_row(query(wh, names, filters=year_filters))
        sources.append(_source(names, year_filters, layout="long", column="year_earlier"))
    if team_scope is not None:
        cur_team = replace(team_scope, date_from=scope.period.date_from,
                           date_to=scope.period.date_to)
        per_rep = query(wh, names, by=["rep_id"], filters=cur_team)
        team_median = per_rep[per_rep["rep_id"].notna()][names].median(numeric_only=True)
        team_value = _one_row(query(wh, names, filters=cur_team))
        sources.append(_source(names, cur_team, layout="long", column="team"))
    for name in names:
        metric = get_metric(name)
        value = _num(current.get(name))
        before = _num(previous.get(name)) if has_previous else None
        delta = value - before if value is not None and before is not None else None
        target = metric_target(metric, settings)
        row = {
            "metric": name, "label": metric.label, "unit": metric.unit, "value": value,
            "previous": before, "change": delta,
            "change_pct": 100.0 * delta / before if delta is not None and before else None,
            "change_verdict": _change_verdict(metric, delta), "target": target,
            "direction": metric.direction, "status": target_status(metric, value, target),
        }
        if year is not None:
            then = _num(year.get(name))
            change = value - then if value is not None and then is not None else None
            row["year_earlier"] = then
            row["year_change"] = change
            row["year_change_pct"] = 100.0 * change / then if change is not None and then \
                else None
            row["year_change_verdict"] = _change_verdict(metric, change)
        if team_median is not None:
            row["team_median"] = _num(team_median.get(name))
            row["team"] = _num(team_value.get(name))
        rows.append(row)
    notes = []
    if not has_previous:
        notes.append("There are no tickets in the previous period, so nothing is compared.")
    notes.append(_year_note(scope))
    note = " ".join(notes)
    return ReportTable("kpis", "Key figures", pd.DataFrame(rows), tuple(sources), note)


def _year_note(scope: ReportScope) -> str:
    """Which days the year-over-year column compares with, or why there is none."""
    if scope.year_earlier_range is not None:
        start, end = scope.year_earlier_range
        return f"Year over year: against the same dates a year earlier, {range_label(start, end)}."
    shifted = year_earlier_range(scope.period.date_from, scope.period.date_to)
    since = (f" (the data starts on {to_local(scope.data_from, scope.filters.tz):%d %b %Y})"
             if scope.data_from is not None else "")
    when = f" ({range_label(*shifted)})" if shifted else ""
    return f"No data a year earlier{when}{since}, so there is no year-over-year comparison."


def _success_table(kpis: ReportTable) -> ReportTable:
    df = kpis.df[kpis.df["target"].notna() & kpis.df["direction"].notna()].copy()
    df = df[["metric", "label", "unit", "target", "direction", "value", "previous", "status"]]
    met = int((df["status"] == "met").sum())
    known = int(df["status"].isin(["met", "not met"]).sum())
    gap = []
    for _, row in df.iterrows():
        if row["value"] is None or pd.isna(row["value"]):
            gap.append(None)
        else:
            gap.append(float(row["value"]) - float(row["target"]))
    df["gap"] = gap
    note = f"{met} of {known} targets met." if known else "No target could be checked."
    names = list(df["metric"])
    sources = tuple({**s, "metrics": names} for s in kpis.sources
                    if s.get("column") in ("value", "previous"))
    return ReportTable("success", "Success metrics against targets", df.reset_index(drop=True),
                       sources, note)


def _volume_table(wh: Warehouse, scope: ReportScope) -> ReportTable:
    period = scope.period
    grain = "day" if period.days <= 92 else "week"
    cur = query(wh, ["ticket_count"], grain=grain, filters=scope.current())
    prev = query(wh, ["ticket_count"], grain=grain, filters=scope.previous())
    step = timedelta(days=1) if grain == "day" else timedelta(days=7)
    if grain == "day":
        days = [period.date_from + timedelta(days=i) for i in range(period.days)]
    else:
        monday = period.date_from - timedelta(days=period.date_from.weekday())
        days = []
        while monday < period.date_to:
            days.append(monday)
            monday += step
    df = pd.DataFrame({"period": days})
    df = df.merge(cur, on="period", how="left")
    df["ticket_count"] = df["ticket_count"].fillna(0).astype("int64")
    # the previous period's bucket at the same offset from its start
    shift = period.date_from - period.previous_from
    if grain == "week":
        shift = timedelta(days=7 * round(shift.days / 7))
    df["previous_period"] = [d - shift for d in df["period"]]
    prev = prev.rename(columns={"period": "previous_period", "ticket_count": "previous"})
    df = df.merge(prev, on="previous_period", how="left")
    in_previous = df["previous_period"] < period.previous_to
    df["previous"] = df["previous"].where(in_previous, None)
    df.loc[in_previous, "previous"] = df.loc[in_previous, "previous"].fillna(0)
    sources = (
        _source(["ticket_count"], scope.current(), grain=grain),
        _source(["ticket_count"], scope.previous(), grain=grain,
                keys={"period": "previous_period"}, rename={"ticket_count": "previous"}),
    )
    note = f"Tickets created per {grain}; the previous period at the same offset from its start."
    return ReportTable("volume", "Volume", df, sources, note)


def _seasonality(wh: Warehouse, scope: ReportScope) -> tuple[str, ...]:
    from cs_metrics.analysis.seasonality import daily_series, decompose  # statsmodels: load on use

    end = scope.period.date_to
    history = replace(scope.filters, date_from=end - timedelta(days=3 * 365), date_to=end)
    try:
        series = daily_series(wh, history)
        result = decompose(series)
    except CsMetricsError as exc:
        return (f"Seasonality is not assessed: {exc}",)
    first, last = series.index[0].date(), series.index[-1].date()
    basis = (f"From {len(series)} days of tickets in this report's scope "
             f"({first:%d %b %Y} – {last:%d %b %Y}).")
    return (*result.verdicts, basis)


def _trend_window(period: Period) -> tuple[str, date]:
    if period.days <= 62:
        last = period.date_to - timedelta(days=1)
        return "week", last - timedelta(days=last.weekday()) - timedelta(weeks=12)
    return "month", add_months(period.date_to - timedelta(days=1), -11)


def _trend_table(wh: Warehouse, scope: ReportScope, names: list[str]) -> ReportTable:
    grain, start = _trend_window(scope.period)
    filters = replace(scope.filters, date_from=start, date_to=scope.period.date_to)
    df = query(wh, names, grain=grain, filters=filters)
    note = (f"By {grain}, the {'13 weeks' if grain == 'week' else '12 months'} up to the end "
            "of the period; a first or last bucket cut by the data or the period is partial.")
    return ReportTable("trend", "KPI trend", df, (_source(names, filters, grain=grain),), note)


def _group_table(wh: Warehouse, scope: ReportScope, key: str, title: str, dim: str,
                 names: list[str], limit: int | None = TOP_N) -> ReportTable:
    cur = query(wh, names, by=[dim], filters=scope.current())
    prev = query(wh, ["ticket_count"], by=[dim], filters=scope.previous())
    total = cur["ticket_count"].sum()
    df = cur.merge(prev.rename(columns={"ticket_count": "ticket_count__previous"}), on=dim,
                   how="left")
    df["ticket_count__previous"] = df["ticket_count__previous"].fillna(0).astype("int64")
    df["share_pct"] = 100.0 * df["ticket_count"] / total if total else np.nan
    df = df.sort_values(["ticket_count", dim], ascending=[False, True], na_position="last")
    shown = len(df)
    if limit is not None:
        df = df.head(limit)
    note = f"The {len(df)} with the most tickets, of {shown}." if len(df) < shown else ""
    sources = (
        _source(names, scope.current(), by=[dim]),
        _source(["ticket_count"], scope.previous(), by=[dim], suffix="__previous"),
    )
    return ReportTable(key, title, df.reset_index(drop=True), sources, note)


def _board(wh: Warehouse, scope: ReportScope, level: str, key: str, title: str,
           names: list[str], note: str = "") -> ReportTable:
    df = leaderboard(wh, scope.current(), level, metrics=names)
    by = {"rep": ["rep_id", "rep_name", "team", "manager"], "team": ["team"],
          "manager": ["manager"]}[level]
    return ReportTable(key, title, df, (_source(names, scope.current(), by=by),), note)


# --- the builder -------------------------------------------------------------------------------


def build_report(
    wh: Warehouse,
    audience: str = "executive",
    period: str | Period = "last-week",
    *,
    team: str | None = None,
    rep: str | None = None,
    filters: Filters | None = None,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> Report:
    """The report of ``audience`` for ``period`` (a Period or a ``resolve_period`` spec).

    ``team`` (a team, or a manager for all of their teams) goes with the team audience,
    ``rep`` (a rep id or name) with the representative audience. ``filters``' dimensions
    narrow every figure; its dates are ignored (the period decides). Raises CsMetricsError
    when the period holds no tickets in the scope.
    """
    if not wh.has_table("tickets"):
        raise CsMetricsError(
            f"The warehouse {wh.path} has no tickets yet; run "
            "`python -m cs_metrics ingest SOURCE` first."
        )
    if audience not in AUDIENCES:
        raise CsMetricsError(f"Unknown audience {audience!r}; use {', '.join(AUDIENCES)}.")
    settings = settings or load_settings()
    tz = (filters or Filters()).tz  # the reporting zone: local days make the periods
    the_period = period if isinstance(period, Period) else resolve_period(wh, period, tz)
    user = Filters(where=(filters or Filters()).where, tz=tz)
    subject, fixed, title = _resolve_subject(wh, audience, team, rep)
    scoped = _with_where(user, **fixed)
    generated = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    span = wh.created_range()
    sources = wh.df(
        "select distinct origin from ingest_log where table_name = 'tickets' order by 1"
    )["origin"].tolist() if wh.has_table("ingest_log") else []
    scope = ReportScope(
        audience=audience, title=title, subject=subject, period=the_period, filters=scoped,
        user_filters=user, dataset=str(wh.path), sources=tuple(Path(s).name for s in sources),
        data_from=span[0] if span else None, data_to=span[1] if span else None,
        data_as_of=wh.as_of(),
        run_id=f"{generated:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}",
        metric_version=metric_definitions_version(), settings_source=settings.source,
        generated_at=generated.replace(microsecond=0, tzinfo=None),
        year_earlier_range=year_earlier_in_data(wh, the_period.date_from, the_period.date_to,
                                                tz),
    )
    count = int(_one_row(query(wh, ["ticket_count"], filters=scope.current())).get(
        "ticket_count", 0))
    if count == 0:
        where = f" for {subject}" if subject else ""
        narrowed = f" with the filters {_describe_where(user)}" if user.where else ""
        data = (f"the data runs from {span[0]:%d %b %Y} to {span[1]:%d %b %Y}" if span
                else "the warehouse holds no tickets")
        raise CsMetricsError(
            f"No tickets were created in {the_period.label}{where}{narrowed}; {data}. "
            "Pick another period or widen the filters: an empty report is not written."
        )

    kpi_names, notes = _present(wh, KPI_METRICS)
    team_scope = None
    if audience == "representative":
        rep_id = fixed["rep_id"]
        teams = query(wh, ["ticket_count"], by=["team"], filters=Filters.build(rep_id=rep_id))
        teams = teams[teams["team"].notna()].sort_values("ticket_count", ascending=False)
        team_name = str(teams["team"].iloc[0]) if len(teams) else None
        team_scope = _with_where(user, team=team_name, rep_id=None)
        if team_name is None:
            notes.append("This representative has no team; the median is over every "
                         "representative.")
    kpis = _kpi_table(wh, scope, kpi_names, settings, team_scope)
    if any(n.startswith("sla_") for n in kpi_names) and \
            (judged := sla_source_caption(wh, scope.current())):
        kpis = replace(kpis, note=" ".join(p for p in (kpis.note, judged) if p))
    success = _success_table(kpis)
    volume = _volume_table(wh, scope)
    trend_names = [m for m in TREND_METRICS if m in kpi_names]
    trend = _trend_table(wh, scope, trend_names)
    seg_names = _present(wh, SEGMENT_METRICS)[0]
    segments = _group_table(wh, scope, "segments", "Customer segments", "customer_segment",
                            seg_names, limit=None)
    top_names = _present(wh, TOP_METRICS)[0]
    domains = _group_table(wh, scope, "domains", "Top domains", "domain", top_names)
    locations = _group_table(wh, scope, "locations", "Top service locations", "location",
                             top_names)
    board_names = _present(wh, BOARD_METRICS)[0]
    reps = teams_t = managers = rep_trend_t = None
    if audience in ("executive", "team"):
        reps = _board(wh, scope, "rep", "representatives", "Representatives", board_names)
        if audience == "executive" and len(reps.df) > REPS_SHOWN:
            reps = replace(reps, note=f"The {REPS_SHOWN} representatives with the most tickets "
                                      f"are shown, of {len(reps.df)}; report.json lists all.")
        teams_t = _board(wh, scope, "team", "teams", "Teams", board_names)
        managers = _board(wh, scope, "manager", "managers", "Managers", board_names)
    else:
        rep_trend_t = _rep_trend(wh, scope, fixed["rep_id"], kpi_names)
    changes, tests_run = _changes(wh, scope, kpi_names)
    quality = quality_report(wh).score
    if span and (the_period.date_to > complete_end(wh, tz)
                 or the_period.date_from < to_local(span[0], tz).date()):
        notes.append("The data covers only part of this period; counts cover the days with "
                     "data (the tests of counts compare tickets per day of data).")
    if (outside := implausible_note(wh)) is not None:
        notes.append(outside + ".")
    return Report(
        scope=scope, kpis=kpis, success=success, volume=volume,
        seasonality=_seasonality(wh, scope), trend=trend, segments=segments,
        representatives=reps, teams=teams_t, managers=managers, rep_trend=rep_trend_t,
        domains=domains, locations=locations, changes=changes, tests_run=tests_run,
        quality_score=quality, notes=tuple(notes),
        targets=tuple(sorted(
            (m.name, t) for m in METRICS.values()
            if (t := metric_target(m, settings)) is not None)),
    )


def _rep_trend(wh: Warehouse, scope: ReportScope, rep_id: str, present: list[str]
               ) -> ReportTable:
    grain, start = _trend_window(scope.period)
    filters = Filters(start, scope.period.date_to, scope.user_filters.where,
                      scope.user_filters.tz)
    parts = []
    for name in (m for m in REP_TREND_METRICS if m in present):
        df = rep_trend(wh, filters, rep_id, name, grain=grain)
        df.insert(0, "metric", name)
        parts.append(df)
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["metric", "period", "rep", "team_median", "team_reps"])
    note = (f"By {grain}: the representative's figure beside the median of their team's "
            "representatives' figures.")
    return ReportTable("rep_trend", "Against the team", df, (), note)

