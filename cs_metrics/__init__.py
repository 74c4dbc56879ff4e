"""Customer-service metrics: validated ingestion, a DuckDB warehouse and one metric registry."""

from __future__ import annotations

from cs_metrics.cohorts import cohort_table, cohort_tables
from cs_metrics.compare import (
    Comparison,
    Correlation,
    Group,
    compare_groups,
    hodges_lehmann,
    resolution_csat,
    two_proportion_test,
)
from cs_metrics.drilldown import TicketPage, ticket_page
from cs_metrics.errors import CsMetricsError
from cs_metrics.feedback import (
    CommentPage,
    feedback_breakdown,
    latest_comments,
    mask_comment,
    mask_pii,
    name_mask,
    score_distribution,
    score_distributions,
)
from cs_metrics.flow import resolved_per_period
from cs_metrics.ingest import REJECT_REASONS, IngestReport, TableReport, ingest
from cs_metrics.leaderboard import mix_summary, rep_trend, unusual
from cs_metrics.mapping import Mapping, TableMapping, canonical_folder, read_mapping
from cs_metrics.maps import customer_cells, ticket_density
from cs_metrics.metrics import (
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
from cs_metrics.outages import outage_impact, outage_tickets, severity_rates
from cs_metrics.quality import QualityReport, latest_rejects, quality_report
from cs_metrics.schema import TABLES
from cs_metrics.seasonality import (
    Backtest,
    Decomposition,
    arrival_heatmap,
    backtest,
    daily_series,
    decompose,
    forecast_daily,
    forecast_hourly,
)
from cs_metrics.sentiment import SentimentByScore, score_texts, sentiment_by_csat
from cs_metrics.settings import ServiceLevel, Settings, StaffingSettings, load_settings
from cs_metrics.staffing import (
    StaffingResult,
    current_staffing,
    erlang_c,
    handle_time_s,
    staffing_plan,
    wait_probability,
)

# the function `topics` is exported as comment_topics: the name `topics` is the module's
from cs_metrics.topics import EmergingIssues, TopicModel, emerging_issues
from cs_metrics.topics import topics as comment_topics
from cs_metrics.warehouse import Warehouse, default_db_path, is_default_db

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
