"""Performance reports for executives, a manager's teams or one representative.

``build_report`` assembles every figure of a report from the metric registry (``query``, the
leaderboards built on it, the seasonality verdict and the data-quality score) for a period
and an audience; ``render`` turns it into one self-contained HTML file (charts as inline PNG,
styles inline, no external reference), Markdown with its PNG charts, a JSON copy of the
figures and the two reference charts (``executive_kpis_trend.png``,
``business_performance_dashboard.png``), drawn with Altair and rendered to PNG by vl-convert
here, so nothing in a report points at the network.

Periods are read against the data, not the calendar of the machine (see ``resolve_period``).
Notable changes are found, not written: every (metric, group) of the scope is tested against
the previous period, and only significant movements that are large enough are listed, with
the test that found them.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import re
import secrets
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from cs_metrics.analysis.leaderboard import (
    LEADERBOARD_METRICS,
    MIN_EFFECT,
    TESTS,
    leaderboard,
    rep_trend,
)
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.safe_text import escape_markdown, header_text
from cs_metrics.core.settings import PLAUSIBLE_BOUNDS, Settings, load_settings
from cs_metrics.core.warehouse import Warehouse, implausible_note
from cs_metrics.core.zones import UTC_ZONE, to_local, utc_moment
from cs_metrics.ingestion.quality import quality_report
from cs_metrics.metrics.registry import (
    METRICS,
    Filters,
    Metric,
    filter_sql,
    get_metric,
    metric_target,
    missing_inputs,
    query,
    sla_source_caption,
)

__all__ = [
    "AUDIENCES",
    "REFERENCE_CHARTS",
    "Period",
    "RenderedReport",
    "Report",
    "ReportScope",
    "ReportTable",
    "build_report",
    "change_text",
    "chart_pngs",
    "filters_from_json",
    "metric_definitions_version",
    "period_between",
    "render",
    "resolve_period",
    "send_report_email",
    "write_report",
    "year_earlier_day",
    "year_earlier_range",
]

Audience = Literal["executive", "team", "representative"]
AUDIENCES: tuple[str, ...] = ("executive", "team", "representative")
FORMATS: tuple[str, ...] = ("html", "md")
REFERENCE_CHARTS: tuple[str, ...] = (
    "executive_kpis_trend.png", "business_performance_dashboard.png",
)
DATA_FORMAT = "cs-metrics-report/1"  # the version of the JSON block's layout

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

# Notable changes: which groups are compared with the previous period, per audience.
CHANGE_DIMENSIONS: dict[str, tuple[str, ...]] = {
    "executive": ("channel", "priority", "domain", "location", "customer_segment", "team"),
    "team": ("channel", "priority", "domain", "customer_segment", "rep_name"),
    "representative": ("channel", "priority", "domain"),
}
COUNT_METRIC = "ticket_count"
PROPORTION_METRICS: tuple[str, ...] = (
    "sla_first_response_pct", "sla_resolution_pct", "fcr_pct", "reopen_pct", "csat_pct",
)
DURATION_METRICS: tuple[str, ...] = ("avg_first_response_min", "avg_resolution_h")
ALPHA = 0.05
MIN_N = 30  # tickets or responses on each side before a percentage or a time is tested
MIN_COUNT_TOTAL = 30  # tickets in both periods together before a count is tested
MIN_COUNT_CHANGE = 0.10  # a count's rate per day must move by 10 % or more
MAX_CHANGES = 10
TEST_NAMES: dict[str, str] = {
    "count": "Poisson rate test (exact conditional binomial test of the two counts, "
             "per day of data)",
    "proportion": "two-proportion z-test (pooled)",
    "duration": "Welch's t-test on log durations",
}
TEST_SHORT: dict[str, str] = {
    "count": "Poisson rate test", "proportion": "two-proportion z-test",
    "duration": "Welch's t-test on log times",
}

DIMENSION_LABELS: dict[str, str] = {
    "channel": "Channel", "priority": "Priority", "domain": "Domain", "location": "Location",
    "customer_location": "Customer location", "customer_segment": "Customer segment",
    "rep_id": "Rep id", "rep_name": "Representative", "team": "Team", "manager": "Manager",
    "status": "Status",
}


# --- periods -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """A report's period ``[date_from, date_to)`` on ``created_at`` and the one before it."""

    kind: Literal["week", "month", "range"]
    date_from: date
    date_to: date  # exclusive
    previous_from: date
    previous_to: date  # exclusive; equals date_from
    label: str
    spec: str  # as asked: last-week, last-month, YYYY-MM or FROM:TO

    @property
    def days(self) -> int:
        return (self.date_to - self.date_from).days

    @property
    def slug(self) -> str:
        if self.kind == "week":
            return f"{self.date_from:%G-W%V}"
        if self.kind == "month":
            return f"{self.date_from:%Y-%m}"
        return f"{self.date_from.isoformat()}_{(self.date_to - timedelta(days=1)).isoformat()}"


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _complete_end(wh: Warehouse, tz: str = UTC_ZONE) -> date:
    """The day after the last complete day of data: the last creation day counts when the
    data reaches its final hour (like the seasonality page's daily series). Days are local
    days of the reporting zone ``tz``."""
    span = wh.created_range()
    if span is None:
        raise CsMetricsError(
            f"The warehouse {wh.path} holds no tickets yet; run "
            "`python -m cs_metrics ingest SOURCE` first."
        )
    last = to_local(span[1], tz)
    reached = max(to_local(wh.as_of() or span[1], tz), last)
    if reached >= datetime.combine(last.date(), time(23)):
        return last.date() + timedelta(days=1)
    return last.date()


def year_earlier_day(day: date) -> date | None:
    """The same calendar day one year earlier; 29 February becomes 28 February. None in
    year 1 (no year before it)."""
    if day.year <= 1:
        return None
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def year_earlier_range(date_from: date, date_to: date) -> tuple[date, date] | None:
    """``[date_from, date_to)`` moved back one year: its first and last days (inclusive) each
    become the same calendar day a year earlier (29 February -> 28 February), so a whole
    month stays the whole month and a week keeps its dates. None before year 2."""
    start = year_earlier_day(date_from)
    last = year_earlier_day(date_to - timedelta(days=1))
    if start is None or last is None:
        return None
    return start, last + timedelta(days=1)


def year_earlier_in_data(wh: Warehouse, date_from: date, date_to: date,
                         tz: str = UTC_ZONE) -> tuple[date, date] | None:
    """The year-earlier range of ``[date_from, date_to)`` when the warehouse's tickets reach
    back to its first day (local days of ``tz``); None when they do not (a comparison with
    days before the data starts would read as a drop to nothing)."""
    shifted = year_earlier_range(date_from, date_to)
    span = wh.created_range()
    if shifted is None or span is None or to_local(span[0], tz).date() > shifted[0]:
        return None
    return shifted


def _range_label(start: date, end: date) -> str:
    days = (end - start).days
    return (f"{start:%d %b %Y} – {end - timedelta(days=1):%d %b %Y} "
            f"({days} day{'s' if days != 1 else ''})")


def _month_period(start: date, spec: str) -> Period:
    end = _add_months(start, 1)
    return Period("month", start, end, _add_months(start, -1), start, f"{start:%B %Y}", spec)


def period_between(date_from: date, date_to: date, spec: str | None = None) -> Period:
    """Any ``[date_from, date_to)``; the previous period is as long and ends where it starts."""
    if date_to <= date_from:
        raise CsMetricsError(
            f"The report period must end after it starts; got {date_from} to "
            f"{date_to - timedelta(days=1)}."
        )
    _check_bounds(date_from, date_to - timedelta(days=1), spec)
    length = date_to - date_from
    spec = spec or f"{date_from.isoformat()}:{(date_to - timedelta(days=1)).isoformat()}"
    return Period("range", date_from, date_to, date_from - length, date_from,
                  _range_label(date_from, date_to), spec)


def _check_bounds(first: date, last: date, spec: str | None) -> None:
    """A period and the one before it stay countable: the days of PLAUSIBLE_BOUNDS (year
    0001 has no month before it, and pandas holds 1677-2262 only)."""
    lo, hi = PLAUSIBLE_BOUNDS
    if first < lo or last > hi:
        asked = f"--period {spec!r}" if spec else f"The report period {first} to {last}"
        raise CsMetricsError(f"{asked} must lie between {lo} and {hi}.")


def resolve_period(wh: Warehouse, spec: str, tz: str = UTC_ZONE) -> Period:
    """``last-week``, ``last-month``, ``YYYY-MM`` or ``FROM:TO`` -> a Period.

    Relative periods are read against the data, not today: the last complete day of data is
    the last day a ticket was created, if the data reaches that day's final hour (else the
    day before). ``last-week`` is the latest whole Monday–Sunday week up to that day and is
    compared with the week before; ``last-month`` the latest whole calendar month, compared
    with the month before; ``YYYY-MM`` that calendar month (even if the data covers only part
    of it), compared with the month before; ``FROM:TO`` the days from FROM to TO, both
    included (ISO dates), compared with the same number of days just before. Days are
    local days of the reporting zone ``tz``.
    """
    text = (spec or "").strip()
    if text == "last-week":
        end = _complete_end(wh, tz)
        end -= timedelta(days=end.weekday())
        start = end - timedelta(days=7)
        label = f"Week {start:%G-W%V}, {_range_label(start, end)}"
        return Period("week", start, end, start - timedelta(days=7), start, label, text)
    if text == "last-month":
        end = _complete_end(wh, tz).replace(day=1)
        return _month_period(_add_months(end, -1), text)
    if re.fullmatch(r"\d{4}-\d{2}", text):
        year, month = int(text[:4]), int(text[5:])
        if not 1 <= month <= 12:
            raise CsMetricsError(f"--period {text!r}: the month must be 01 to 12.")
        _check_bounds(date(max(year, 1), month, 1), date(max(year, 1), month, 1), text)
        return _month_period(date(year, month, 1), text)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}:\d{4}-\d{2}-\d{2}", text):
        first, last = text.split(":")
        try:
            start, stop = date.fromisoformat(first), date.fromisoformat(last)
        except ValueError:
            raise CsMetricsError(f"--period {text!r} holds a day that does not exist.") from None
        if stop < start:
            raise CsMetricsError(f"--period {text!r} ends before it starts.")
        _check_bounds(start, stop, text)
        return period_between(start, stop + timedelta(days=1), text)
    raise CsMetricsError(
        f"--period {spec!r} is not a period; use last-week, last-month, a month as YYYY-MM, "
        "or FROM:TO as YYYY-MM-DD:YYYY-MM-DD (both days included)."
    )


# --- the report's data -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportScope:
    """What a report covers and where its figures come from."""

    audience: str
    title: str
    subject: str | None  # the team, manager or representative reported on
    period: Period
    filters: Filters  # the figures' filters without dates: the user's plus the audience's
    user_filters: Filters  # what the user asked for (no dates)
    dataset: str
    sources: tuple[str, ...]
    data_from: datetime | None
    data_to: datetime | None
    data_as_of: datetime | None
    run_id: str
    metric_version: str
    settings_source: str
    generated_at: datetime  # UTC
    # the same period a year earlier, [from, to), when the data reaches back to its start
    year_earlier_range: tuple[date, date] | None = None

    def current(self) -> Filters:
        return replace(self.filters, date_from=self.period.date_from,
                       date_to=self.period.date_to)

    def previous(self) -> Filters:
        return replace(self.filters, date_from=self.period.previous_from,
                       date_to=self.period.previous_to)

    def year_earlier(self) -> Filters | None:
        """The scope's filters on the same period a year earlier (None: no data then)."""
        if self.year_earlier_range is None:
            return None
        start, end = self.year_earlier_range
        return replace(self.filters, date_from=start, date_to=end)


@dataclass(frozen=True)
class ReportTable:
    """One table of a report and the registry queries its figures come from.

    Each source is ``{"metrics", "by", "grain", "filters", "layout", ...}``: ``layout`` "wide"
    means the table has one column per metric (``metric + suffix``), matched to the query's
    rows on ``by`` (and ``period``; ``keys`` renames them); "long" means one row per metric,
    keyed by the column ``metric``, with the value in ``column``.
    """

    key: str
    title: str
    df: pd.DataFrame
    sources: tuple[dict[str, Any], ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Report:
    scope: ReportScope
    kpis: ReportTable
    success: ReportTable
    volume: ReportTable
    seasonality: tuple[str, ...]
    trend: ReportTable
    segments: ReportTable
    representatives: ReportTable | None
    teams: ReportTable | None
    managers: ReportTable | None
    rep_trend: ReportTable | None
    domains: ReportTable
    locations: ReportTable
    changes: ReportTable
    tests_run: int
    quality_score: float | None
    targets: tuple[tuple[str, float], ...] = field(default=())  # by metric, from the settings
    notes: tuple[str, ...] = field(default=())

    def tables(self) -> list[ReportTable]:
        found = [self.kpis, self.success, self.volume, self.trend, self.segments,
                 self.representatives, self.teams, self.managers, self.rep_trend,
                 self.domains, self.locations, self.changes]
        return [t for t in found if t is not None]

    def to_dict(self) -> dict[str, Any]:
        """Every figure of the report, JSON-ready (the block embedded in the HTML)."""
        s = self.scope
        return {
            "format": DATA_FORMAT,
            "scope": {
                "audience": s.audience,
                "title": s.title,
                "subject": s.subject,
                "period": {
                    "spec": s.period.spec, "kind": s.period.kind, "label": s.period.label,
                    "date_from": s.period.date_from.isoformat(),
                    "date_to": s.period.date_to.isoformat(),
                    "previous_from": s.period.previous_from.isoformat(),
                    "previous_to": s.period.previous_to.isoformat(),
                    # null when the data does not reach back to the year-earlier period
                    "year_earlier_from": _json_value(
                        s.year_earlier_range[0] if s.year_earlier_range else None),
                    "year_earlier_to": _json_value(
                        s.year_earlier_range[1] if s.year_earlier_range else None),
                },
                "filters": _filters_json(s.filters),
                "user_filters": _filters_json(s.user_filters),
                "timezone": s.filters.tz,
                "dataset": s.dataset,
                "sources": list(s.sources),
                "data_from": _json_value(s.data_from),
                "data_to": _json_value(s.data_to),
                "data_as_of": _json_value(s.data_as_of),
                "run_id": s.run_id,
                "metric_version": s.metric_version,
                "settings": s.settings_source,
                "generated_at": s.generated_at.isoformat(timespec="seconds"),
            },
            "seasonality": list(self.seasonality),
            "quality_score": self.quality_score,
            "targets": dict(self.targets),
            "tests_run": self.tests_run,
            "notes": list(self.notes),
            "tables": {
                t.key: {"title": t.title, "note": t.note, "sources": list(t.sources),
                        "rows": _records(t.df)}
                for t in self.tables()
            },
        }


def metric_definitions_version() -> str:
    """A short hash of the registry's definitions: it changes when any metric's meaning does."""
    rows = [
        [m.name, m.unit, m.format, m.expression, m.source, m.direction, m.target,
         list(m.requires), m.is_count]
        for m in METRICS.values()
    ]
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    return f"registry-{digest[:12]}"


def _json_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): _json_value(v) for k, v in row.items()}
            for row in df.to_dict(orient="records")]


def _filters_json(filters: Filters) -> dict[str, Any]:
    return {
        "date_from": filters.date_from.isoformat() if filters.date_from else None,
        "date_to": filters.date_to.isoformat() if filters.date_to else None,
        "tz": filters.tz,
        "where": {dim: list(values) for dim, values in filters.where},
    }


def filters_from_json(data: dict[str, Any]) -> Filters:
    """The Filters a JSON source names (the inverse of the report's own encoding)."""
    def day(text: str | None) -> date | None:
        return date.fromisoformat(text) if text else None

    return Filters.build(day(data.get("date_from")), day(data.get("date_to")),
                         tz=data.get("tz") or UTC_ZONE, **dict(data.get("where", {})))


def _source(metrics: Sequence[str], filters: Filters, by: Sequence[str] = (),
            grain: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"metrics": list(metrics), "by": list(by), "grain": grain,
            "filters": _filters_json(filters), "layout": "wide", **extra}


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
                f"A team report needs --team: a team ({', '.join(teams) or 'none in the data'})"
                f" or a manager, for all of their teams ({', '.join(managers) or 'none'})."
            )
        if team in teams:
            return team, {"team": team}, f"Team performance report: {team}"
        if team in managers:
            return team, {"manager": team}, f"Team performance report: teams of {team}"
        raise CsMetricsError(
            f"There is no team or manager {team!r} in this dataset; teams: "
            f"{', '.join(teams) or 'none'}; managers: {', '.join(managers) or 'none'}."
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


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def target_status(metric: Metric, value: float | None, target: float | None) -> str:
    """"met", "not met", or "" when there is no target or no value."""
    if target is None or value is None or metric.direction is None:
        return ""
    met = value >= target if metric.direction == "higher" else value <= target
    return "met" if met else "not met"


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
        return f"Year over year: against the same dates a year earlier, {_range_label(start, end)}."
    shifted = year_earlier_range(scope.period.date_from, scope.period.date_to)
    since = (f" (the data starts on {to_local(scope.data_from, scope.filters.tz):%d %b %Y})"
             if scope.data_from is not None else "")
    when = f" ({_range_label(*shifted)})" if shifted else ""
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
    return "month", _add_months(period.date_to - timedelta(days=1), -11)


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


# --- notable changes ---------------------------------------------------------------------------


def _local_span(wh: Warehouse, tz: str) -> tuple[datetime, datetime] | None:
    """The data's first and last creation moments as local times of ``tz``."""
    span = wh.created_range()
    return None if span is None else (to_local(span[0], tz), to_local(span[1], tz))


def _exposure_days(span: tuple[datetime, datetime] | None, start: date, end: date) -> float:
    """Days of data inside ``[start, end)``: a period the data covers in part counts in part."""
    if span is None:
        return 0.0
    lo = max(datetime.combine(start, time(0)), span[0])
    hi = min(datetime.combine(end, time(0)), span[1])
    return max(0.0, (hi - lo).total_seconds() / 86400)


def _test_stats(wh: Warehouse, scope: ReportScope, dim: str | None,
                proportions: list[str], durations: list[str]) -> pd.DataFrame:
    """Per group and period: the successes and trials of every percentage, and the count,
    mean and variance of every log duration (what the tests need beside the figures)."""
    span = replace(scope.filters, date_from=scope.period.previous_from,
                   date_to=scope.period.date_to)
    where, where_params = filter_sql(span)
    cols = ["count(*) as tickets"]
    params: list[Any] = [utc_moment(scope.period.date_from, scope.filters.tz)]
    for name in proportions:
        spec = TESTS[name]
        cols += [f"{spec.successes} as {name}__s", f"{spec.trials} as {name}__n"]
    for name in durations:
        spec = TESTS[name]
        ok = f"{spec.value} is not null and {spec.value} >= 0"
        cols += [f"count(*) filter (where {ok}) as {name}__n",
                 f"avg(ln({spec.value} + ?)) filter (where {ok}) as {name}__mean",
                 f"var_samp(ln({spec.value} + ?)) filter (where {ok}) as {name}__var"]
        params += [spec.offset, spec.offset]
    group = f"t.{dim}" if dim else "cast(null as varchar)"  # dim: one of CHANGE_DIMENSIONS
    sql = f"""
        with final as (
            select {group} as grp, t.created_at >= ? as is_current, {", ".join(cols)}
            from tickets t
            where {where}
            group by 1, 2
        )
        select * from final
    """
    return wh.df(sql, params + where_params)


def _test_one(kind: str, cur: dict[str, Any], prev: dict[str, Any], name: str,
              days: tuple[float, float]) -> tuple[float, float, int, int] | None:
    """(z, p, n current, n previous) of one metric in one group, or None if not testable."""
    if kind == "count":
        n1, n2 = int(cur["tickets"]), int(prev["tickets"])
        d1, d2 = days
        if n1 + n2 < MIN_COUNT_TOTAL or d1 <= 0 or d2 <= 0:
            return None
        p0 = d1 / (d1 + d2)
        total = n1 + n2
        p = stats.binomtest(n1, total, p0).pvalue
        z = (n1 - total * p0) / math.sqrt(total * p0 * (1 - p0))
        return z, float(p), n1, n2
    if kind == "proportion":
        s1, n1 = float(cur[f"{name}__s"]), int(cur[f"{name}__n"])
        s2, n2 = float(prev[f"{name}__s"]), int(prev[f"{name}__n"])
        if n1 < MIN_N or n2 < MIN_N:
            return None
        pooled = (s1 + s2) / (n1 + n2)
        se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        if se == 0:
            return None
        z = (s1 / n1 - s2 / n2) / se
        return z, float(2 * stats.norm.sf(abs(z))), n1, n2
    n1, n2 = int(cur[f"{name}__n"]), int(prev[f"{name}__n"])
    if n1 < MIN_N or n2 < MIN_N:
        return None
    v1, v2 = float(cur[f"{name}__var"]), float(prev[f"{name}__var"])
    if not (v1 > 0 or v2 > 0):
        return None
    res = stats.ttest_ind_from_stats(
        float(cur[f"{name}__mean"]), math.sqrt(max(v1, 0)), n1,
        float(prev[f"{name}__mean"]), math.sqrt(max(v2, 0)), n2, equal_var=False)
    return float(res.statistic), float(res.pvalue), n1, n2


def _large_enough(kind: str, value: float | None, before: float | None,
                  days: tuple[float, float]) -> bool:
    if value is None or before is None:
        return False
    if kind == "count":
        if days[0] <= 0 or days[1] <= 0 or before == 0:
            return False
        return abs((value / days[0]) / (before / days[1]) - 1) >= MIN_COUNT_CHANGE
    if kind == "proportion":
        return abs(value - before) >= MIN_EFFECT["proportion"]
    return before > 0 and abs(value - before) >= MIN_EFFECT["duration"] * before


def _changes(wh: Warehouse, scope: ReportScope, present: list[str]) -> tuple[ReportTable, int]:
    proportions = [m for m in PROPORTION_METRICS if m in present]
    durations = [m for m in DURATION_METRICS if m in present]
    metrics = [COUNT_METRIC, *proportions, *durations]
    kinds = {COUNT_METRIC: "count", **{m: "proportion" for m in proportions},
             **{m: "duration" for m in durations}}
    span = _local_span(wh, scope.filters.tz)
    p = scope.period
    days = (_exposure_days(span, p.date_from, p.date_to),
            _exposure_days(span, p.previous_from, p.previous_to))
    rows = []
    fixed = dict(scope.filters.where)
    everyone: tuple[int, int] | None = None  # the scope's tickets (current, previous)
    for dim in (None, *CHANGE_DIMENSIONS[scope.audience]):
        if dim in fixed and len(fixed[dim]) == 1:
            continue  # one value: the same groups as the whole scope
        by = [dim] if dim else []
        test: dict[tuple[Any, bool], dict[str, Any]] = {
            (None if pd.isna(r["grp"]) else r["grp"], bool(r["is_current"])): r
            for r in _test_stats(wh, scope, dim, proportions, durations).to_dict("records")
        }
        shown = {}
        for is_current, filters in ((True, scope.current()), (False, scope.previous())):
            for r in query(wh, metrics, by=by, filters=filters).to_dict("records"):
                key = r[dim] if dim else None
                shown[(None if pd.isna(key) else key, is_current)] = r
        for (group, is_current), cur in test.items():
            prev = test.get((group, False))
            if not is_current or prev is None or (dim and group is None):
                continue  # tickets without a value of the dimension: no group to name
            fig_cur, fig_prev = shown.get((group, True)), shown.get((group, False))
            if fig_cur is None or fig_prev is None:
                continue
            counts = (int(cur["tickets"]), int(prev["tickets"]))
            if dim is None:
                everyone = counts
            elif counts == everyone:
                continue  # the group holds every ticket of the scope: the overall row says it
            for name in metrics:
                kind = kinds[name]
                result = _test_one(kind, cur, prev, name, days)
                if result is None:
                    continue
                z, p_value, n1, n2 = result
                rows.append({
                    "dimension": dim, "value": group, "metric": name,
                    "label": get_metric(name).label, "kind": kind,
                    "previous": _num(fig_prev[name]), "current": _num(fig_cur[name]),
                    "z": z, "p_value": p_value, "n_current": n1, "n_previous": n2,
                    "test": TEST_SHORT[kind],
                })
    columns = ["dimension", "value", "metric", "label", "kind", "previous", "current",
               "change", "z", "p_value", "q_value", "n_current", "n_previous", "test",
               "sentence"]
    if not rows:
        return ReportTable("changes", "Notable changes", pd.DataFrame(columns=columns), (),
                           _changes_note(0)), 0
    df = pd.DataFrame(rows)
    df["q_value"] = stats.false_discovery_control(df["p_value"].to_numpy(dtype=float))
    df["change"] = df["current"] - df["previous"]
    large = [
        _large_enough(k, c, pr, days)
        for k, c, pr in zip(df["kind"], df["current"], df["previous"], strict=True)
    ]
    tested = len(df)
    df = df[(df["q_value"] < ALPHA) & pd.Series(large, index=df.index)].copy()
    df["strength"] = df["z"].abs()
    df = df.sort_values(["strength", "metric"], ascending=[False, True]).head(MAX_CHANGES)
    for col in ("dimension", "value"):  # the scope's own row has neither
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    df["sentence"] = [_change_sentence(row) for _, row in df.iterrows()]
    return ReportTable("changes", "Notable changes", df[columns].reset_index(drop=True), (),
                       _changes_note(tested)), tested


def _changes_note(tested: int) -> str:
    return (
        f"Every figure of the scope, and of each group below it, was compared with the previous "
        f"period ({tested} tests): counts with a {TEST_NAMES['count']}, percentages with a "
        f"{TEST_NAMES['proportion']}, times with {TEST_NAMES['duration']}. Listed: movements "
        f"whose Benjamini–Hochberg q-value is below {ALPHA:g} over all {tested} tests, at least "
        f"{MIN_N} tickets or responses on each side, and large enough to matter "
        f"(counts ±{MIN_COUNT_CHANGE:.0%} per day, percentages ±{MIN_EFFECT['proportion']:g} "
        f"points, times ±{MIN_EFFECT['duration']:.0%}); the {MAX_CHANGES} strongest (largest "
        "|z|) first."
    )


def _change_sentence(row: pd.Series) -> str:
    metric = get_metric(row["metric"])
    where = ("all tickets in scope" if row["dimension"] is None or pd.isna(row["dimension"])
             else f"{DIMENSION_LABELS.get(row['dimension'], row['dimension']).lower()} "
                  f"{row['value']}")
    p_text = "p < 0.001" if row["p_value"] < 0.001 else f"p = {row['p_value']:.3f}"
    change = change_text(metric, row["current"], row["previous"])
    return (f"{metric.label}, {where}: {metric.display(row['previous'])} → "
            f"{metric.display(row['current'])}, {change}; {row['test']}, "
            f"z = {row['z']:+.1f}, {p_text}.")


def change_text(metric: Metric, value: float | None, before: float | None) -> str:
    """The change from ``before`` to ``value`` in the metric's terms: percentages in points,
    counts with their relative change, times and scores in their unit."""
    value, before = _num(value), _num(before)
    if value is None or before is None:
        return "–"
    delta = value - before
    spec = metric.format.lstrip("+")
    if metric.unit == "%":
        return f"{format(delta, '+' + spec)} pp"
    if metric.is_count:
        rel = f" ({100 * delta / before:+.1f} %)" if before else ""
        return f"{format(delta, '+' + spec)}{rel}"
    return f"{format(delta, '+' + spec)} {metric.unit}".rstrip()


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
    if span and (the_period.date_to > _complete_end(wh, tz)
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


def _describe_where(filters: Filters) -> str:
    return "; ".join(f"{DIMENSION_LABELS.get(d, d)} {', '.join(v)}" for d, v in filters.where)


# --- charts (Altair, rendered to PNG here) ------------------------------------------------------


def _png(chart: Any) -> bytes:
    try:
        import vl_convert as vlc
    except ImportError as exc:  # pragma: no cover - a missing dependency, said plainly
        raise CsMetricsError(
            "Rendering report charts needs the vl-convert-python package; run "
            "`pip install -r requirements.txt`."
        ) from exc
    import altair as alt

    # compile with the Vega-Lite version Altair wrote the spec for, when vl-convert has it
    wanted = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    version = wanted if wanted in vlc.get_vegalite_versions() else None
    raw = vlc.vegalite_to_png(chart.to_dict(), vl_version=version, scale=2)
    return _compact_png(raw)


def _compact_png(raw: bytes) -> bytes:
    """A chart's PNG on white with a 64-colour palette: a tenth of the size, no visible loss
    (charts hold a few flat colours and anti-aliased text), so the HTML stays small."""
    try:
        from PIL import Image  # installed with streamlit; without it the PNG stays as drawn
    except ImportError:  # pragma: no cover
        return raw
    with Image.open(io.BytesIO(raw)) as im:
        rgba = im.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        small = flat.convert("RGB").quantize(colors=64, method=Image.Quantize.FASTOCTREE)
        buf = io.BytesIO()
        small.save(buf, "PNG", compress_level=9)
    return buf.getvalue()


def _alt():
    import altair as alt

    return alt


def _chart_volume(report: Report) -> Any:
    alt = _alt()
    df = report.volume.df[["period", "ticket_count", "previous"]].copy()
    grain = report.volume.sources[0]["grain"]
    # one band per bucket, labelled like the table, in period order
    df["bucket"] = [f"{d:%a %d %b}" if grain == "day" else f"w/c {d:%d %b}"
                    for d in df["period"]]
    df = df.drop(columns="period")
    order = list(df["bucket"])
    x = alt.X("bucket:O", sort=order, title="Day" if grain == "day" else "Week (starting Monday)",
              axis=alt.Axis(labelAngle=-45 if len(order) > 10 else 0))
    bars = alt.Chart(df).mark_bar(color="#4c78a8", opacity=0.85).encode(
        x=x, y=alt.Y("ticket_count:Q", title="Tickets created (count)"))
    layers = [bars]
    if df["previous"].notna().any():
        prev = df[df["previous"].notna()]
        layers.append(alt.Chart(prev).mark_line(color="#f58518", point=True).encode(
            x=alt.X("bucket:O", sort=order), y=alt.Y("previous:Q")))
    subtitle = "Bars: this period · orange line: the previous period at the same offset"
    return alt.layer(*layers).properties(
        width=640, height=220,
        title=alt.Title(f"Tickets created per {grain}", subtitle=subtitle),
    )


def _chart_kpi_trend(report: Report) -> Any:
    alt = _alt()
    df = report.trend.df
    names = [m for m in report.trend.sources[0]["metrics"]]
    grain = report.trend.sources[0]["grain"]
    long = df.melt(id_vars="period", value_vars=names, var_name="metric", value_name="value")
    long["label"] = long["metric"].map(lambda n: f"{get_metric(n).label} "
                                                 f"({get_metric(n).unit or 'points'})")
    long["when"] = pd.to_datetime(long["period"])
    long = long.drop(columns="period")
    targets = dict(zip(report.kpis.df["metric"], report.kpis.df["target"], strict=True))
    long["target"] = long["metric"].map(lambda n: _num(targets.get(n)))
    base = alt.Chart(long).encode(
        x=alt.X("when:T", title=f"{grain.capitalize()} (start)",
                axis=alt.Axis(format="%d %b" if grain == "week" else "%b %Y")),
    )
    line = base.mark_line(point=True, color="#4c78a8").encode(
        y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)))
    rule = base.mark_line(strokeDash=[6, 4], color="#e45756").encode(y=alt.Y("target:Q"))
    return alt.layer(line, rule).properties(width=250, height=140).facet(
        facet=alt.Facet("label:N", title=None, sort=[
            f"{get_metric(n).label} ({get_metric(n).unit or 'points'})" for n in names]),
        columns=3,
        title=alt.Title(f"{_chart_title(report)}: KPI trend by {grain}",
                        subtitle=f"{report.trend.note} Dashed red: target."),
    ).resolve_scale(y="independent")


def _chart_title(report: Report) -> str:
    s = report.scope
    return s.subject or "All teams"


def _chart_dashboard(report: Report) -> Any:
    alt = _alt()
    s = report.scope
    targets = dict(zip(report.kpis.df["metric"], report.kpis.df["target"], strict=True))
    vol = report.volume.df[["period", "ticket_count"]].copy()
    vol["day"] = pd.to_datetime(vol["period"])
    vol = vol.drop(columns="period")
    volume = alt.Chart(vol).mark_area(line=True, opacity=0.3, color="#4c78a8").encode(
        x=alt.X("day:T", title=None, axis=alt.Axis(format="%d %b")),
        y=alt.Y("ticket_count:Q", title="Tickets (count)"),
    ).properties(width=300, height=170, title="Tickets created")

    def bars(df: pd.DataFrame, dim: str, metric: str, title: str) -> Any:
        m = get_metric(metric)
        data = df[[dim, metric]].dropna().copy()
        data[dim] = [_fmt("segment", v) for v in data[dim]] if dim == "customer_segment" \
            else data[dim].astype(str)
        target = _num(targets.get(metric))
        data["status"] = [target_status(m, float(v), target) or "no target"
                          for v in data[metric]]
        chart = alt.Chart(data).mark_bar().encode(
            y=alt.Y(f"{dim}:N", title=None, sort="-x"),
            x=alt.X(f"{metric}:Q", title=f"{m.label} ({m.unit})"),
            color=alt.Color("status:N", title="Target", scale=alt.Scale(
                domain=["met", "not met", "no target"],
                range=["#54a24b", "#e45756", "#4c78a8"]), legend=alt.Legend(orient="bottom")),
        )
        layers = [chart]
        if target is not None:
            layers.append(alt.Chart(pd.DataFrame({"target": [target]})).mark_rule(
                color="#e45756", strokeDash=[6, 4]).encode(x=alt.X("target:Q")))
        return alt.layer(*layers).properties(width=300, height=170, title=title)

    panels = [volume]
    if s.audience == "representative":
        group_df = report.domains.df
        group_dim, group_title = "domain", "SLA first response by domain"
    elif s.audience == "team" and report.representatives is not None:
        group_df = report.representatives.df.head(12)
        group_dim, group_title = "rep_name", "SLA first response by representative"
    else:
        group_df = report.teams.df if report.teams is not None else report.domains.df
        group_dim = "team" if report.teams is not None else "domain"
        group_title = f"SLA first response by {group_dim}"
    if "sla_first_response_pct" in group_df.columns:
        panels.append(bars(group_df, group_dim, "sla_first_response_pct",
                           f"{group_title} (dashed line: target)"))
    if "csat_pct" in report.segments.df.columns:
        panels.append(bars(report.segments.df, "customer_segment", "csat_pct",
                           "CSAT by customer segment (dashed line: target)"))
    dom = report.domains.df[["domain", "ticket_count"]].copy()
    dom["domain"] = dom["domain"].fillna("(none)").astype(str)
    panels.append(alt.Chart(dom).mark_bar(color="#4c78a8").encode(
        y=alt.Y("domain:N", title=None, sort="-x"),
        x=alt.X("ticket_count:Q", title="Tickets (count)"),
    ).properties(width=300, height=170, title="Top domains by tickets"))
    rows = [alt.hconcat(*panels[i:i + 2]) for i in range(0, len(panels), 2)]
    return alt.vconcat(*rows).properties(title=alt.Title(
        f"{_chart_title(report)}: business performance, {s.period.label}",
        subtitle=f"Run {s.run_id} · metric definitions {s.metric_version}"))


def _chart_rep_trend(report: Report) -> Any:
    alt = _alt()
    df = report.rep_trend.df
    long = df.melt(id_vars=["metric", "period"], value_vars=["rep", "team_median"],
                   var_name="series", value_name="value")
    long["series"] = long["series"].map({"rep": report.scope.subject or "Representative",
                                         "team_median": "Team median"})
    long["label"] = long["metric"].map(
        lambda n: f"{get_metric(n).label} ({get_metric(n).unit})")
    long["when"] = pd.to_datetime(long["period"])
    long = long.drop(columns="period")
    return alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("when:T", title="Period (start)", axis=alt.Axis(format="%d %b")),
        y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="top")),
    ).properties(width=250, height=150).facet(
        facet=alt.Facet("label:N", title=None), columns=3,
        title=alt.Title("Against the team median", subtitle=report.rep_trend.note),
    ).resolve_scale(y="independent")


def chart_pngs(report: Report) -> dict[str, bytes]:
    """Every chart of the report as PNG bytes, by file name (the two reference charts too)."""
    charts = {
        "volume_trend.png": _chart_volume(report),
        "executive_kpis_trend.png": _chart_kpi_trend(report),
        "business_performance_dashboard.png": _chart_dashboard(report),
    }
    if report.rep_trend is not None and len(report.rep_trend.df):
        charts["rep_vs_team.png"] = _chart_rep_trend(report)
    return {name: _png(chart) for name, chart in charts.items()}


# --- rendering ---------------------------------------------------------------------------------

CSS = """
.csm-report { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue",
  Arial, sans-serif; color: #1f2933; background: #fff; max-width: 1080px; margin: 0 auto;
  padding: 24px; line-height: 1.45; font-size: 14px; }
.csm-report h1 { font-size: 1.6em; margin: 0 0 .2em; }
.csm-report h2 { font-size: 1.2em; margin: 1.6em 0 .4em; border-bottom: 2px solid #1f2933;
  padding-bottom: .15em; }
.csm-report h3 { font-size: 1.0em; margin: 1.1em 0 .3em; }
.csm-report p.lead { color: #52606d; margin: 0 0 1em; }
.csm-report .note { color: #52606d; font-size: .9em; margin: .2em 0 .8em; }
.csm-report table { border-collapse: collapse; width: 100%; margin: .3em 0 .8em;
  font-size: .92em; }
.csm-report th, .csm-report td { border-bottom: 1px solid #d9dee3; padding: 4px 8px;
  text-align: left; vertical-align: top; }
.csm-report th { background: #f1f4f7; font-weight: 600; }
.csm-report td.num, .csm-report th.num { text-align: right;
  font-variant-numeric: tabular-nums; white-space: nowrap; }
.csm-report .met, .csm-report .better { color: #17663a; }
.csm-report .not-met, .csm-report .worse { color: #b42318; }
.csm-report .not-met, .csm-report .met { font-weight: 600; }
.csm-report table.scope th { width: 28%; background: none; }
.csm-report div.wide { overflow-x: auto; }
.csm-report figure { margin: .6em 0 1em; }
.csm-report figure img { max-width: 100%; height: auto; border: 1px solid #e4e7eb; }
.csm-report ul.verdicts { margin: .2em 0 .8em 1.2em; padding: 0; }
.csm-report .score { font-size: 1.8em; font-weight: 700; }
@media print {
  @page { size: A4; margin: 14mm; }
  .csm-report { max-width: none; padding: 0; font-size: 10pt; }
  .csm-report section { break-inside: avoid-page; }
  .csm-report h2, .csm-report h3 { break-after: avoid; }
  .csm-report tr, .csm-report figure { break-inside: avoid; }
  .csm-report div.wide { overflow: visible; }
  .csm-report th { background: #eee !important; -webkit-print-color-adjust: exact;
    print-color-adjust: exact; }
}
"""

# (df column, header, kind): "text" is a value of the data (escaped as such in Markdown),
# "label" the report's own words (metric labels, statuses), "metric:<name>", "int", ...
Column = tuple[str, str, str]
TEXT_KINDS: tuple[str, ...] = ("text", "label", "date", "segment")


def _fmt(kind: str, value: Any, row: pd.Series | dict | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    if kind.startswith("metric:"):
        return get_metric(kind.split(":", 1)[1]).display(value)
    if kind == "row_metric":  # the row's own metric (long tables)
        return get_metric(row["metric"]).display(value)
    if kind == "row_change":
        return change_text(get_metric(row["metric"]), row["value"], row["previous"])
    if kind == "row_year_change":
        return change_text(get_metric(row["metric"]), row["value"], row["year_earlier"])
    if kind == "row_gap":
        m = get_metric(row["metric"])
        spec = m.format.lstrip("+")
        unit = "pp" if m.unit == "%" else m.unit
        return f"{format(value, '+' + spec)} {unit}".rstrip()
    if kind == "target":
        m = get_metric(row["metric"])
        sign = {"higher": "≥ ", "lower": "≤ "}.get(m.direction or "", "")
        return f"{sign}{m.display(value)}"
    if kind == "pct":
        return f"{value:.1f} %"
    if kind == "int":
        return f"{int(value):,d}"
    if kind == "date":
        return value.isoformat() if hasattr(value, "isoformat") else str(value)
    if kind == "segment":  # named as the settings' [display.segments] name it
        try:
            return load_settings().segment_label(value) or "–"
        except CsMetricsError:
            return str(value)
    if kind == "p":
        return "< 0.001" if value < 0.001 else f"{value:.3f}"
    if kind == "z":
        return f"{value:+.1f}"
    return str(value)


def _cell_class(kind: str, value: Any, row: Any, column: str,
                targets: dict[str, float]) -> str:
    classes = []
    if kind not in TEXT_KINDS:
        classes.append("num")
    if column == "status" and value in ("met", "not met"):
        classes.append(value.replace(" ", "-"))
    if column in ("change", "year_change") and isinstance(row, (pd.Series, dict)):
        verdict = row.get(f"{column}_verdict")
        if verdict in ("better", "worse"):
            classes.append(verdict)
    if kind.startswith("metric:") and value is not None and not pd.isna(value):
        metric = get_metric(kind.split(":", 1)[1])
        status = target_status(metric, float(value), targets.get(metric.name))
        if status:
            classes.append(status.replace(" ", "-"))
    return " ".join(classes)


def _html_table(df: pd.DataFrame, columns: Sequence[Column], targets: dict[str, float],
                limit: int | None = None) -> str:
    cols = [c for c in columns if c[0] in df.columns]
    head = "".join(
        f'<th class="{"" if kind in TEXT_KINDS else "num"}">{html.escape(header)}</th>'
        for _, header, kind in cols)
    body = []
    rows = df if limit is None else df.head(limit)
    for _, row in rows.iterrows():
        cells = []
        for col, _, kind in cols:
            value = row[col]
            text = _fmt(kind, value, row)
            cls = _cell_class(kind, value, row, col, targets)
            cells.append(f'<td class="{cls}">{html.escape(text)}</td>' if cls
                         else f"<td>{html.escape(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<div class="wide"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _md_cell(kind: str, value: Any, row: pd.Series) -> str:
    text = _fmt(kind, value, row)
    if kind in ("text", "segment") or isinstance(value, str) and kind != "label":
        # a value of the data: Markdown, HTML and a table's "|" in it are shown as text
        return escape_markdown(text)
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(df: pd.DataFrame, columns: Sequence[Column], limit: int | None = None) -> str:
    cols = [c for c in columns if c[0] in df.columns]
    lines = ["| " + " | ".join(h.replace("|", "\\|") for _, h, _ in cols) + " |",
             "|" + "|".join("---" if k in TEXT_KINDS else "---:" for _, _, k in cols)
             + "|"]
    rows = df if limit is None else df.head(limit)
    for _, row in rows.iterrows():
        lines.append("| " + " | ".join(_md_cell(k, row[c], row) for c, _, k in cols) + " |")
    return "\n".join(lines)


def _kpi_columns(report: Report) -> list[Column]:
    cols: list[Column] = [("label", "Metric", "label"), ("value", "This period", "row_metric")]
    if "team_median" in report.kpis.df.columns:
        cols += [("team_median", "Team median", "row_metric"),
                 ("team", "Whole team", "row_metric")]
    cols += [("previous", "Previous period", "row_metric"), ("change", "Change", "row_change")]
    # present only when the data reaches back a year (the columns exist only then)
    cols += [("year_earlier", "A year earlier", "row_metric"),
             ("year_change", "Change over the year", "row_year_change")]
    cols += [("target", "Target", "target"), ("status", "Status", "label")]
    return cols


def _metric_columns(names: Sequence[str]) -> list[Column]:
    return [(n, get_metric(n).label, f"metric:{n}") for n in names]


def _group_columns(dim: str, table: ReportTable) -> list[Column]:
    names = table.sources[0]["metrics"]
    kind = "segment" if dim == "customer_segment" else "text"
    return [(dim, DIMENSION_LABELS.get(dim, dim), kind), *_metric_columns(names),
            ("ticket_count__previous", "Tickets, previous period", "int"),
            ("share_pct", "Share of tickets", "pct")]


def _board_columns(table: ReportTable) -> list[Column]:
    keys = table.sources[0]["by"]
    key_cols = [(k, DIMENSION_LABELS.get(k, k), "text") for k in keys if k != "manager"
                or table.key == "managers"]
    return [*key_cols, *_metric_columns(table.sources[0]["metrics"])]


SUCCESS_COLUMNS: list[Column] = [
    ("label", "Metric", "label"), ("target", "Target", "target"),
    ("value", "This period", "row_metric"), ("gap", "Against target", "row_gap"),
    ("status", "Status", "label"), ("previous", "Previous period", "row_metric"),
]
CHANGE_COLUMNS: list[Column] = [("sentence", "Change", "text"), ("q_value", "q", "p")]
VOLUME_COLUMNS: list[Column] = [
    ("period", "Day", "date"), ("ticket_count", "Tickets", "int"),
    ("previous_period", "Previous period", "date"), ("previous", "Tickets then", "int"),
]


def _scope_rows(report: Report, esc: Callable[[Any], str] = str) -> list[tuple[str, str]]:
    """The scope table's rows; ``esc`` makes each value of the data or the settings (names,
    filters, file names) Markdown text, leaving the report's own dates and ids readable."""
    s = report.scope
    p = s.period
    rows = [
        ("Audience", {"executive": "Executive (whole organisation)",
                      "team": f"Team: {esc(s.subject)}",
                      "representative": f"Representative: {esc(s.subject)}"}[s.audience]),
        ("Period", p.label),
        ("Time zone", f"{s.filters.tz}: days, weeks and months are local days of this zone"),
        ("Compared with", _range_label(p.previous_from, p.previous_to)),
        ("Year over year", _range_label(*s.year_earlier_range) if s.year_earlier_range
         else "no data a year earlier"),
        ("Filters", esc(_describe_where(s.user_filters)) or "none"),
        ("Dataset", f"{esc(Path(s.dataset).name)}" + (
            f" (from {', '.join(esc(n) for n in s.sources)})" if s.sources else "")),
        ("Data", (f"tickets created {s.data_from:%Y-%m-%d %H:%M} – {s.data_to:%Y-%m-%d %H:%M}"
                  f", as of {s.data_as_of:%Y-%m-%d %H:%M} UTC")
         if s.data_from and s.data_to and s.data_as_of else "–"),
        ("Run id", s.run_id),
        ("Metric definitions", s.metric_version),
        ("Settings (targets)", esc(s.settings_source)),
        ("Generated", f"{s.generated_at:%Y-%m-%d %H:%M:%S} UTC"),
    ]
    return rows


def _safe_text(text: str) -> str:
    """No text of a report reads as a web address a viewer would follow (values come from
    the data): the colon of ``http://`` becomes an entity in HTML."""
    return re.sub(r"(?i)\b(https?):(//)", r"\1&#58;\2", text)


def _json_block(data: dict[str, Any]) -> str:
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    # Inside <script> nothing may close the element or open a comment (``<!--<script>``
    # keeps the element open past its end tag), and no text may read as an address. JSON
    # reads the \\u escapes back as the same characters.
    for char, code in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, code)
    return re.sub(r"(?i)\b(https?):(//)", r"\1\\u003a\2", text)


@dataclass(frozen=True)
class RenderedReport:
    """A report in every format: the HTML document, the in-page preview (a fragment with its
    style scoped to ``.csm-report``), Markdown, the PNG charts by file name, and the JSON."""

    report: Report
    html: str
    preview_html: str
    markdown: str
    images: dict[str, bytes]
    json_text: str

    @property
    def stem(self) -> str:
        s = self.report.scope
        subject = re.sub(r"[^A-Za-z0-9]+", "-", s.subject or "").strip("-")
        parts = ["report", s.audience, subject, s.period.slug]
        return "_".join(p for p in parts if p)

    def markdown_zip(self) -> bytes:
        """report.md, its PNG charts and report.json, in one zip."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("report.md", self.markdown)
            zf.writestr("report.json", self.json_text)
            for name, data in self.images.items():
                zf.writestr(name, data)
        return buf.getvalue()


def _sections(report: Report, images: dict[str, bytes], fmt: str) -> list[str]:
    """The report's body, section by section, as HTML or Markdown."""
    s = report.scope
    is_html = fmt == "html"
    targets = dict(report.targets)
    out: list[str] = []

    def h2(text: str) -> str:
        return f"<h2>{html.escape(text)}</h2>" if is_html else f"## {text}"

    def h3(text: str) -> str:
        return f"<h3>{html.escape(text)}</h3>" if is_html else f"### {text}"

    def para(text: str, cls: str = "note") -> str:
        # notes carry values of the data and the settings (names, paths): text, never markup
        if not text:
            return ""
        return f'<p class="{cls}">{html.escape(text)}</p>' if is_html else escape_markdown(text)

    def table(df: pd.DataFrame, cols: Sequence[Column], limit: int | None = None) -> str:
        return _html_table(df, cols, targets, limit) if is_html else _md_table(df, cols, limit)

    def image(name: str, alt: str) -> str:
        if name not in images:
            return ""
        if is_html:
            data = base64.b64encode(images[name]).decode()
            return (f'<figure><img alt="{html.escape(alt)}" '
                    f'src="data:image/png;base64,{data}"></figure>')
        return f"![{escape_markdown(alt)}]({name})"

    def section(key: str, *parts: str) -> None:
        body = [p for p in parts if p]
        if is_html:
            out.append(f'<section id="{key}">{"".join(body)}</section>')
        else:
            out.append("\n\n".join(body))

    scope_rows = _scope_rows(report)
    if is_html:
        scope_html = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                             for k, v in scope_rows)
        section("scope", h2("Scope"), f'<table class="scope">{scope_html}</table>')
    else:
        # escape_markdown turns a "|" of the data into "\|": the row keeps its two cells
        lines = "\n".join(f"| {k} | {v} |" for k, v in _scope_rows(report, escape_markdown))
        section("scope", h2("Scope"), f"| | |\n|---|---|\n{lines}")
    if report.notes:
        notes = report.notes
        section("notes", *(para(n) for n in notes))
    section("kpis", h2("Key figures"), table(report.kpis.df, _kpi_columns(report)),
            para(report.kpis.note))
    section("success", h2("Success metrics against targets"), para(report.success.note, "lead"),
            table(report.success.df, SUCCESS_COLUMNS),
            para(f"Targets come from the settings ({s.settings_source})."))
    verdicts = report.seasonality
    verdict_text = ("<ul class=\"verdicts\">" + "".join(
        f"<li>{html.escape(v)}</li>" for v in verdicts) + "</ul>") if is_html else \
        "\n".join(f"- {escape_markdown(v)}" for v in verdicts)
    section("volume", h2("Volume trend"), image("volume_trend.png", "Tickets created"),
            h3("Seasonality"), verdict_text, para(report.volume.note))
    section("charts", h2("KPI trend and business performance"),
            image("executive_kpis_trend.png", "KPI trend"),
            image("business_performance_dashboard.png", "Business performance dashboard"))
    if report.rep_trend is not None:
        section("rep_trend", h2("Against the team"), image("rep_vs_team.png",
                                                           "Against the team median"),
                para(report.rep_trend.note))
    section("segments", h2("Customer segments"),
            table(report.segments.df, _group_columns("customer_segment", report.segments)))
    people = []
    if report.managers is not None:
        people += [h3("Managers"), table(report.managers.df, _board_columns(report.managers))]
    if report.teams is not None:
        people += [h3("Teams"), table(report.teams.df, _board_columns(report.teams))]
    if report.representatives is not None:
        limit = REPS_SHOWN if s.audience == "executive" else None
        people += [h3("Representatives"),
                   table(report.representatives.df, _board_columns(report.representatives),
                         limit), para(report.representatives.note)]
    if people:
        section("people", h2("Managers, teams and representatives"), *people)
    section("top", h2("Top domains and locations"), h3("Domains"),
            table(report.domains.df, _group_columns("domain", report.domains)),
            para(report.domains.note), h3("Service locations"),
            table(report.locations.df, _group_columns("location", report.locations)),
            para(report.locations.note))
    if len(report.changes.df):
        changes = table(report.changes.df, CHANGE_COLUMNS)
    else:
        changes = para("No significant change of the size listed here against the previous "
                       "period.", "lead")
    section("changes", h2("Notable changes"), changes, para(report.changes.note))
    score = report.quality_score
    score_text = f"{score:.1f} / 100" if score is not None else "not available"
    section("quality", h2("Data quality"),
            f'<p><span class="score">{score_text}</span></p>' if is_html
            else f"**{score_text}**",
            para("The warehouse's data-quality score: 100 × (0.6 × validity + 0.2 × "
                 "warning-free share + 0.2 × completeness), over the latest load of each "
                 "source (see the Data quality page)."))
    return out


def _doc_head(report: Report) -> str:
    s = report.scope
    return (f"<h1>{html.escape(s.title)}</h1>"
            f'<p class="lead">{html.escape(s.period.label)} · run {html.escape(s.run_id)} · '
            f"generated {s.generated_at:%Y-%m-%d %H:%M} UTC</p>")


def render(report: Report) -> RenderedReport:
    """The report as HTML, preview HTML, Markdown, PNG charts and JSON."""
    images = chart_pngs(report)
    data = report.to_dict()
    json_text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    body = _safe_text(_doc_head(report) + "".join(_sections(report, images, "html")))
    inner = f'<div class="csm-report">{body}</div>'
    script = (f'<script type="application/json" id="cs-metrics-report-data">'
              f"{_json_block(data)}</script>")
    doc = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<meta name=\"generator\" content=\"cs-metrics {report.scope.metric_version}\">"
        f"<title>{html.escape(report.scope.title)} · {html.escape(report.scope.period.label)}"
        f"</title><style>{CSS}</style></head><body>{inner}{script}</body></html>\n"
    )
    # st.html sanitises its HTML and drops a leading <style>: the style goes inside the div
    preview = f'<div class="csm-report"><style>{CSS}</style>{body}</div>'
    s = report.scope
    md_head = (f"# {escape_markdown(s.title)}\n\n{s.period.label} · run {s.run_id} · "
               f"generated {s.generated_at:%Y-%m-%d %H:%M} UTC\n")
    markdown = md_head + "\n\n" + "\n\n".join(p for p in _sections(report, images, "md") if p)
    markdown += "\n\nThe figures of this report, machine-readable: report.json.\n"
    return RenderedReport(report, doc, preview, markdown, images, json_text)


# --- files and email ---------------------------------------------------------------------------


def write_report(rendered: RenderedReport, out: str | Path, fmt: str = "html") -> list[Path]:
    """Write the report into the folder ``out``: ``report.html`` (or ``report.md``),
    ``report.json`` and the PNG charts. Returns the files written."""
    if fmt not in FORMATS:
        raise CsMetricsError(f"Unknown report format {fmt!r}; use {', '.join(FORMATS)}.")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise CsMetricsError(f"--out {folder} is a file; name a folder for the report.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        main = folder / f"report.{fmt}"
        main.write_text(rendered.html if fmt == "html" else rendered.markdown, encoding="utf-8")
        written.append(main)
        data = folder / "report.json"
        data.write_text(rendered.json_text, encoding="utf-8")
        written.append(data)
        names = rendered.images if fmt == "md" else {
            n: b for n, b in rendered.images.items() if n in REFERENCE_CHARTS}
        for name, content in names.items():
            path = folder / name
            path.write_bytes(content)
            written.append(path)
    except OSError as exc:
        raise CsMetricsError(f"Cannot write the report to {folder}: {exc}") from exc
    return written


def _plain_summary(report: Report) -> str:
    s = report.scope
    lines = [s.title, s.period.label, ""]
    for _, row in report.kpis.df.iterrows():
        m = get_metric(row["metric"])
        status = f" (target {row['status']})" if row["status"] else ""
        year = (f", a year earlier {m.display(row['year_earlier'])}"
                if "year_earlier" in row.index else "")
        lines.append(f"- {m.label}: {m.display(row['value'])}, previous "
                     f"{m.display(row['previous'])}{year}{status}")
    if len(report.changes.df):
        lines += ["", "Notable changes:"] + [f"- {t}" for t in report.changes.df["sentence"]]
    lines += ["", f"Run {s.run_id}; the full report is attached (report.html)."]
    return "\n".join(lines)


def send_report_email(
    rendered: RenderedReport,
    recipients: Sequence[str],
    settings: Settings | None = None,
    *,
    timeout: float | None = None,
    fmt: str = "html",
) -> tuple[str, ...]:
    """Email the report: a plain-text summary, the HTML as the message's HTML part and as the
    attachment ``report.html``, to ``recipients`` (default: the settings' recipients) through
    the SMTP server of ``[notifications.email]``. With ``fmt`` "md" the attachments are
    ``report.md`` and its PNG charts instead. Returns the recipients; raises CsMetricsError
    on failure."""
    settings = settings or load_settings()
    email = settings.notifications.email
    to = tuple(r.strip() for r in recipients if r and r.strip()) or email.recipients
    # a line break or space in an address would add a header or a recipient of its own
    bad = [r for r in to if "@" not in r or any(c.isspace() for c in r)]
    if bad:
        raise CsMetricsError(
            f"--email {', '.join(repr(b) for b in bad)}: not an email address.")
    if not email.host or not email.sender or not to:
        raise CsMetricsError(
            "Emailing a report needs notifications.email.host and sender in the settings "
            "(and recipients, in the settings or after --email)."
        )
    report = rendered.report
    msg = EmailMessage()
    # the title names a team or a representative of the data: one line, so it cannot add
    # a header (the HTML part and the attachment are escaped by ``render``)
    msg["Subject"] = header_text(f"{email.subject_prefix} {report.scope.title} · "
                                 f"{report.scope.period.label}")
    try:
        msg["From"] = email.sender
        msg["To"] = ", ".join(to)
    except ValueError as exc:  # the email package refuses a header that spans lines
        raise CsMetricsError(
            f"notifications.email.sender or the recipients are not plain addresses: {exc}."
        ) from None
    msg.set_content(_plain_summary(report))
    if fmt == "md":
        msg.add_attachment(rendered.markdown.encode("utf-8"), maintype="text",
                           subtype="markdown", filename=f"{rendered.stem}.md")
        for name, content in rendered.images.items():
            msg.add_attachment(content, maintype="image", subtype="png", filename=name)
    else:
        msg.add_alternative(rendered.html, subtype="html")
        msg.add_attachment(rendered.html.encode("utf-8"), maintype="text", subtype="html",
                           filename=f"{rendered.stem}.html")
    from cs_metrics.ops.notify import send_message

    wait = timeout if timeout is not None else settings.notifications.timeout_s
    send_message(email, msg, timeout=wait)  # a DeliveryError is a CsMetricsError
    return to
