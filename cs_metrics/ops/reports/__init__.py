"""Performance reports for executives, a manager's teams or one representative.

``build_report`` (``build``) assembles every figure of a report from the metric registry
(``query``, the leaderboards built on it, the seasonality verdict and the data-quality score)
for a period and an audience; ``render`` (``render``) turns it into one self-contained HTML
file drawn from the jinja2 templates in ``templates/`` (charts as inline PNG, styles inline,
no external reference), Markdown with its PNG charts, a JSON copy of the figures (``model``)
and the two reference charts (``executive_kpis_trend.png``,
``business_performance_dashboard.png``), drawn with Altair and rendered to PNG by vl-convert
(``charts``), so nothing in a report points at the network. ``delivery`` writes the files
and e-mails them.

Periods are read against the data, not the calendar of the machine (see
``cs_metrics.core.periods.resolve_period``). Notable changes are found, not written
(``changes``): every (metric, group) of the scope is tested against the previous period, and
only significant movements that are large enough are listed, with the test that found them.
"""

from __future__ import annotations

# names the tests and pages reach through this package (R.<name>), kept importable here
from dataclasses import replace as replace

from cs_metrics.core.periods import (
    Period,
    period_between,
    resolve_period,
    year_earlier_day,
    year_earlier_in_data,
    year_earlier_range,
)
from cs_metrics.core.settings import load_settings as load_settings
from cs_metrics.metrics.registry import METRICS as METRICS
from cs_metrics.metrics.registry import get_metric as get_metric
from cs_metrics.metrics.registry import metric_target as metric_target
from cs_metrics.ops.reports.build import AUDIENCES, build_report
from cs_metrics.ops.reports.changes import change_text
from cs_metrics.ops.reports.charts import REFERENCE_CHARTS, chart_pngs
from cs_metrics.ops.reports.delivery import FORMATS, send_report_email, write_report
from cs_metrics.ops.reports.model import (
    Report,
    ReportScope,
    ReportTable,
    filters_from_json,
    metric_definitions_version,
    target_status,
)
from cs_metrics.ops.reports.render import RenderedReport, render

__all__ = [
    "AUDIENCES",
    "FORMATS",
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
    "target_status",
    "write_report",
    "year_earlier_day",
    "year_earlier_in_data",
    "year_earlier_range",
]
