"""Customer-service metrics: validated ingestion, a DuckDB warehouse and one metric registry.

The public names below are imported on first use (module ``__getattr__``): ``import
cs_metrics`` and the command line's start then load none of the heavy modules (statsmodels,
scikit-learn, altair) that only some analyses need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the same names, eagerly, for type checkers and editors
    from cs_metrics.analysis.cohorts import cohort_table, cohort_tables
    from cs_metrics.analysis.compare import (
        Comparison,
        Correlation,
        Group,
        compare_groups,
        hodges_lehmann,
        resolution_csat,
        two_proportion_test,
    )
    from cs_metrics.analysis.feedback import (
        CommentPage,
        feedback_breakdown,
        latest_comments,
        mask_comment,
        mask_pii,
        name_mask,
        score_distribution,
        score_distributions,
    )
    from cs_metrics.analysis.leaderboard import mix_summary, rep_trend, unusual
    from cs_metrics.analysis.maps import customer_cells, ticket_density
    from cs_metrics.analysis.outages import outage_impact, outage_tickets, severity_rates
    from cs_metrics.analysis.seasonality import (
        Backtest,
        Decomposition,
        arrival_heatmap,
        backtest,
        daily_series,
        decompose,
        forecast_daily,
        forecast_hourly,
    )
    from cs_metrics.analysis.sentiment import SentimentByScore, score_texts, sentiment_by_csat
    from cs_metrics.analysis.staffing import (
        StaffingResult,
        current_staffing,
        erlang_c,
        handle_time_s,
        staffing_plan,
        wait_probability,
    )

    # the function `topics` is exported as comment_topics: the name `topics` is the module's
    from cs_metrics.analysis.topics import EmergingIssues, TopicModel, emerging_issues
    from cs_metrics.analysis.topics import topics as comment_topics
    from cs_metrics.core.errors import CsMetricsError
    from cs_metrics.core.schema import TABLES
    from cs_metrics.core.settings import ServiceLevel, Settings, StaffingSettings, load_settings
    from cs_metrics.core.warehouse import Warehouse, default_db_path, is_default_db
    from cs_metrics.ingestion.loader import REJECT_REASONS, IngestReport, TableReport, ingest
    from cs_metrics.ingestion.mapping import Mapping, TableMapping, canonical_folder, read_mapping
    from cs_metrics.ingestion.quality import QualityReport, latest_rejects, quality_report
    from cs_metrics.metrics.drilldown import TicketPage, ticket_page
    from cs_metrics.metrics.flow import resolved_per_period
    from cs_metrics.metrics.registry import (
        DIMENSIONS,
        GRAINS,
        METRICS,
        Filters,
        Metric,
        available,
        compile_query,
        filter_sql,
        get_metric,
        metric_target,
        missing_inputs,
        query,
    )

__all__ = [
    "Comparison",
    "Correlation",
    "EmergingIssues",
    "Group",
    "SentimentByScore",
    "TopicModel",
    "cohort_table",
    "cohort_tables",
    "compare_groups",
    "emerging_issues",
    "hodges_lehmann",
    "mask_comment",
    "name_mask",
    "resolution_csat",
    "score_texts",
    "sentiment_by_csat",
    "comment_topics",
    "two_proportion_test",
    "customer_cells",
    "outage_impact",
    "outage_tickets",
    "severity_rates",
    "ticket_density",
    "Backtest",
    "Decomposition",
    "arrival_heatmap",
    "backtest",
    "daily_series",
    "decompose",
    "forecast_daily",
    "forecast_hourly",
    "CommentPage",
    "TicketPage",
    "feedback_breakdown",
    "filter_sql",
    "latest_comments",
    "mask_pii",
    "mix_summary",
    "rep_trend",
    "unusual",
    "resolved_per_period",
    "score_distribution",
    "score_distributions",
    "ticket_page",
    "CsMetricsError",
    "DIMENSIONS",
    "Filters",
    "GRAINS",
    "IngestReport",
    "METRICS",
    "Mapping",
    "Metric",
    "QualityReport",
    "REJECT_REASONS",
    "ServiceLevel",
    "Settings",
    "StaffingResult",
    "StaffingSettings",
    "TABLES",
    "TableMapping",
    "TableReport",
    "Warehouse",
    "available",
    "canonical_folder",
    "compile_query",
    "current_staffing",
    "erlang_c",
    "handle_time_s",
    "staffing_plan",
    "wait_probability",
    "default_db_path",
    "get_metric",
    "is_default_db",
    "latest_rejects",
    "ingest",
    "load_settings",
    "metric_target",
    "missing_inputs",
    "query",
    "quality_report",
    "read_mapping",
]

# Where each public name lives: a module path (the attribute has the same name) or
# (module path, attribute) when the public name differs.
_LAZY: dict[str, str | tuple[str, str]] = {
    "cohort_table": "cs_metrics.analysis.cohorts",
    "cohort_tables": "cs_metrics.analysis.cohorts",
    "Comparison": "cs_metrics.analysis.compare",
    "Correlation": "cs_metrics.analysis.compare",
    "Group": "cs_metrics.analysis.compare",
    "compare_groups": "cs_metrics.analysis.compare",
    "hodges_lehmann": "cs_metrics.analysis.compare",
    "resolution_csat": "cs_metrics.analysis.compare",
    "two_proportion_test": "cs_metrics.analysis.compare",
    "CommentPage": "cs_metrics.analysis.feedback",
    "feedback_breakdown": "cs_metrics.analysis.feedback",
    "latest_comments": "cs_metrics.analysis.feedback",
    "mask_comment": "cs_metrics.analysis.feedback",
    "mask_pii": "cs_metrics.analysis.feedback",
    "name_mask": "cs_metrics.analysis.feedback",
    "score_distribution": "cs_metrics.analysis.feedback",
    "score_distributions": "cs_metrics.analysis.feedback",
    "mix_summary": "cs_metrics.analysis.leaderboard",
    "rep_trend": "cs_metrics.analysis.leaderboard",
    "unusual": "cs_metrics.analysis.leaderboard",
    "customer_cells": "cs_metrics.analysis.maps",
    "ticket_density": "cs_metrics.analysis.maps",
    "outage_impact": "cs_metrics.analysis.outages",
    "outage_tickets": "cs_metrics.analysis.outages",
    "severity_rates": "cs_metrics.analysis.outages",
    "Backtest": "cs_metrics.analysis.seasonality",
    "Decomposition": "cs_metrics.analysis.seasonality",
    "arrival_heatmap": "cs_metrics.analysis.seasonality",
    "backtest": "cs_metrics.analysis.seasonality",
    "daily_series": "cs_metrics.analysis.seasonality",
    "decompose": "cs_metrics.analysis.seasonality",
    "forecast_daily": "cs_metrics.analysis.seasonality",
    "forecast_hourly": "cs_metrics.analysis.seasonality",
    "SentimentByScore": "cs_metrics.analysis.sentiment",
    "score_texts": "cs_metrics.analysis.sentiment",
    "sentiment_by_csat": "cs_metrics.analysis.sentiment",
    "StaffingResult": "cs_metrics.analysis.staffing",
    "current_staffing": "cs_metrics.analysis.staffing",
    "erlang_c": "cs_metrics.analysis.staffing",
    "handle_time_s": "cs_metrics.analysis.staffing",
    "staffing_plan": "cs_metrics.analysis.staffing",
    "wait_probability": "cs_metrics.analysis.staffing",
    "EmergingIssues": "cs_metrics.analysis.topics",
    "TopicModel": "cs_metrics.analysis.topics",
    "emerging_issues": "cs_metrics.analysis.topics",
    "comment_topics": ("cs_metrics.analysis.topics", "topics"),
    "CsMetricsError": "cs_metrics.core.errors",
    "TABLES": "cs_metrics.core.schema",
    "ServiceLevel": "cs_metrics.core.settings",
    "Settings": "cs_metrics.core.settings",
    "StaffingSettings": "cs_metrics.core.settings",
    "load_settings": "cs_metrics.core.settings",
    "Warehouse": "cs_metrics.core.warehouse",
    "default_db_path": "cs_metrics.core.warehouse",
    "is_default_db": "cs_metrics.core.warehouse",
    "REJECT_REASONS": "cs_metrics.ingestion.loader",
    "IngestReport": "cs_metrics.ingestion.loader",
    "TableReport": "cs_metrics.ingestion.loader",
    "ingest": "cs_metrics.ingestion.loader",
    "Mapping": "cs_metrics.ingestion.mapping",
    "TableMapping": "cs_metrics.ingestion.mapping",
    "canonical_folder": "cs_metrics.ingestion.mapping",
    "read_mapping": "cs_metrics.ingestion.mapping",
    "QualityReport": "cs_metrics.ingestion.quality",
    "latest_rejects": "cs_metrics.ingestion.quality",
    "quality_report": "cs_metrics.ingestion.quality",
    "TicketPage": "cs_metrics.metrics.drilldown",
    "ticket_page": "cs_metrics.metrics.drilldown",
    "resolved_per_period": "cs_metrics.metrics.flow",
    "DIMENSIONS": "cs_metrics.metrics.registry",
    "GRAINS": "cs_metrics.metrics.registry",
    "METRICS": "cs_metrics.metrics.registry",
    "Filters": "cs_metrics.metrics.registry",
    "Metric": "cs_metrics.metrics.registry",
    "available": "cs_metrics.metrics.registry",
    "compile_query": "cs_metrics.metrics.registry",
    "filter_sql": "cs_metrics.metrics.registry",
    "get_metric": "cs_metrics.metrics.registry",
    "metric_target": "cs_metrics.metrics.registry",
    "missing_inputs": "cs_metrics.metrics.registry",
    "query": "cs_metrics.metrics.registry",
}


def __getattr__(name: str) -> object:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = (target, name) if isinstance(target, str) else target
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # resolved once: later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
