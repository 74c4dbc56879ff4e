"""A report's data: its scope, its tables and the JSON copy of every figure.

``Report`` holds what ``build`` computed; ``Report.to_dict`` is the machine-readable copy
embedded in the HTML and written as ``report.json``. The small helpers here (values made
JSON-ready, a table's registry source, target status) are shared by building, charts and
rendering.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from cs_metrics.core.periods import Period
from cs_metrics.core.zones import UTC_ZONE
from cs_metrics.metrics.registry import METRICS, Filters, Metric

DATA_FORMAT = "cs-metrics-report/1"  # the version of the JSON block's layout

DIMENSION_LABELS: dict[str, str] = {
    "channel": "Channel", "priority": "Priority", "domain": "Domain", "location": "Location",
    "customer_location": "Customer location", "customer_segment": "Customer segment",
    "rep_id": "Rep id", "rep_name": "Representative", "team": "Team", "manager": "Manager",
    "status": "Status",
}


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
         list(m.requires), m.is_count, m.time_dimension]
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


def _describe_where(filters: Filters) -> str:
    return "; ".join(f"{DIMENSION_LABELS.get(d, d)} {', '.join(v)}" for d, v in filters.where)
