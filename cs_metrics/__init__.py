"""Customer-service metrics: validated ingestion, a DuckDB warehouse and one metric registry."""

from __future__ import annotations

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
