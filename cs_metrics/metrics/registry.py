"""The metric registry: metrics as data, looked up by name, and computed by name.

Each metric is one declaration: a name, how it reads, its *kind* (``kinds.py``: a count with
a filter, a ratio, a mean, a quantile, a cumulative stock...) and the timestamp that places a
ticket in a period and that the date range applies to, its ``time_dimension`` (``created_at``
unless declared). The kinds render plain SQL aggregates over the query table ``tickets``
(alias ``t``), so the same registry can compile to another SQL engine; DuckDB-only features
stay in the warehouse layer. ``compiler.py`` (below this module) turns the chosen metrics into
one SQL query; ``compile_query`` and ``query`` here name them. Adding a metric is adding a
declaration to ``_METRICS`` (and its line to the README's metric definitions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.settings import Settings, load_settings
from cs_metrics.metrics.compiler import (
    DIMENSIONS,
    GRAINS,
    TIME_DIMENSIONS,
    Filters,
    compile_metrics,
    filter_sql,
    filter_where,
)
from cs_metrics.metrics.kinds import (
    Count,
    CountDistinct,
    Cumulative,
    Difference,
    Kind,
    Mean,
    Quantile,
    Ratio,
    Sum,
)

if TYPE_CHECKING:  # the registry's declarations load without DuckDB and pandas (--help)
    import pandas as pd

    from cs_metrics.core.warehouse import Warehouse

# The request's vocabulary (dimensions, grains, time dimensions, filters) lives with the
# compiler, which this module builds on; it is re-exported here, where callers look for it.
__all__ = [
    "DIMENSIONS", "GRAINS", "METRICS", "TIME_DIMENSIONS", "Filters", "Metric", "Source",
    "available", "compile_query", "empty_metrics", "filter_sql", "filter_where", "get_metric",
    "metric_target", "missing_inputs", "query", "sla_source_caption", "sla_source_count",
]

Source = Literal["tickets", "backlog"]


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    description: str
    unit: str  # "tickets", "min", "h", "%", "score", "customers", ...
    format: str  # Python format spec for display, e.g. ",.0f" or ".1f"
    kind: Kind  # what is aggregated, and how (cs_metrics.metrics.kinds)
    # the timestamp that puts a ticket in a period and that the date range applies to
    time_dimension: str = "created_at"
    direction: Literal["higher", "lower"] | None = None  # which way is better
    target: float | None = None  # default target; settings override it
    requires: tuple[str, ...] = ()  # columns that must hold values, "feedback.csat" style
    is_count: bool = False  # a missing group means zero, not unknown

    def __post_init__(self) -> None:
        if self.time_dimension not in TIME_DIMENSIONS:
            raise CsMetricsError(
                f"Metric {self.name!r}: unknown time dimension {self.time_dimension!r}; use "
                f"{', '.join(TIME_DIMENSIONS)}."
            )

    @property
    def expression(self) -> str:
        """The SQL aggregate the kind renders (a stock's: the count open now)."""
        return self.kind.sql()

    @property
    def source(self) -> Source:
        """``backlog`` for a stock (open at each period's end), ``tickets`` for a flow."""
        return "backlog" if self.kind.stock else "tickets"

    def display(self, value: float | None) -> str:
        import pandas as pd  # only once figures are shown

        if value is None or pd.isna(value):
            return "–"
        text = format(value, self.format)
        if self.unit == "%":
            return f"{text} %"
        # counts read as plain numbers; the label already says what is counted
        return text if self.is_count or not self.unit else f"{text} {self.unit}"


_CLOSED = "t.status = 'closed'"

_METRICS: tuple[Metric, ...] = (
    Metric("ticket_count", "Tickets", "Number of tickets created in the period.", "tickets",
           ",.0f", Count(), is_count=True),
    Metric("open_count", "Open", "Tickets whose current status is open.", "tickets", ",.0f",
           Count("t.status = 'open'"), direction="lower", is_count=True),
    Metric("in_progress_count", "In progress", "Tickets whose current status is in progress.",
           "tickets", ",.0f", Count("t.status = 'in_progress'"),
           is_count=True),
    Metric("closed_count", "Closed", "Tickets whose current status is closed.", "tickets",
           ",.0f", Count(_CLOSED), direction="higher", is_count=True),
    # attributed to the period of its resolution, not of its creation: "closed per period"
    Metric("resolved_count", "Closed (by resolution date)",
           "Closed tickets counted in the period of their resolved_at; the date range applies "
           "to resolved_at. A closed ticket without a resolved_at is in no period.", "tickets",
           ",.0f", Count("t.status = 'closed' and t.resolved_at is not null"),
           time_dimension="resolved_at", direction="higher", requires=("resolved_at",),
           is_count=True),
    Metric("avg_first_response_min", "Avg first response",
           "Mean of (first_response_at - created_at) in minutes, over tickets with a first "
           "response.", "min", ",.1f", Mean("t.first_response_min"), direction="lower",
           target=60, requires=("first_response_at",)),
    Metric("median_first_response_min", "Median first response",
           "Median of (first_response_at - created_at) in minutes (continuous quantile).",
           "min", ",.1f", Quantile("t.first_response_min", 0.5),
           direction="lower", target=60, requires=("first_response_at",)),
    Metric("p90_first_response_min", "P90 first response",
           "90th percentile of first-response minutes (continuous quantile).", "min", ",.1f",
           Quantile("t.first_response_min", 0.9),
           direction="lower", requires=("first_response_at",)),
    Metric("avg_resolution_h", "Avg resolution",
           "Mean of (resolved_at - created_at) in hours, over closed tickets with a resolved_at.",
           "h", ",.1f", Mean("t.resolution_h"), direction="lower", target=24,
           requires=("resolved_at",)),
    Metric("median_resolution_h", "Median resolution",
           "Median resolution hours over closed tickets (continuous quantile).", "h", ",.1f",
           Quantile("t.resolution_h", 0.5), direction="lower",
           requires=("resolved_at",)),
    Metric("p90_resolution_h", "P90 resolution",
           "90th percentile of resolution hours over closed tickets (continuous quantile).", "h",
           ",.1f", Quantile("t.resolution_h", 0.9),
           direction="lower", requires=("resolved_at",)),
    Metric("avg_first_response_business_min", "Avg first response (business hours)",
           "Mean of the minutes from created_at to first_response_at that fall inside the "
           "open hours of the business-hours calendar.", "min", ",.1f",
           Mean("t.first_response_business_min"), direction="lower",
           requires=("first_response_at",)),
    Metric("median_first_response_business_min", "Median first response (business hours)",
           "Median of first-response business minutes (continuous quantile).", "min", ",.1f",
           Quantile("t.first_response_business_min", 0.5),
           direction="lower", requires=("first_response_at",)),
    Metric("p90_first_response_business_min", "P90 first response (business hours)",
           "90th percentile of first-response business minutes (continuous quantile).", "min",
           ",.1f", Quantile("t.first_response_business_min", 0.9),
           direction="lower", requires=("first_response_at",)),
    Metric("avg_resolution_business_h", "Avg resolution (business hours)",
           "Mean of the hours from created_at to resolved_at that fall inside the open hours "
           "of the business-hours calendar, over closed tickets with a resolved_at.", "h",
           ",.1f", Mean("t.resolution_business_h"), direction="lower",
           requires=("resolved_at",)),
    Metric("median_resolution_business_h", "Median resolution (business hours)",
           "Median resolution business hours over closed tickets (continuous quantile).", "h",
           ",.1f", Quantile("t.resolution_business_h", 0.5),
           direction="lower", requires=("resolved_at",)),
    Metric("sla_first_response_pct", "SLA first response",
           "% of tickets answered within their SLA policy's first-response target; an "
           "unanswered ticket whose target has passed is a breach, one still within it is not "
           "counted yet.", "%", ".1f",
           Ratio(Count("t.sla_first_response_met"),
                 Count("t.sla_first_response_met is not null")),
           direction="higher", target=90, requires=("first_response_at",)),
    Metric("sla_resolution_pct", "SLA resolution",
           "% of tickets resolved within their SLA policy's resolution target; an unresolved "
           "ticket whose target has passed is a breach.", "%", ".1f",
           Ratio(Count("t.sla_resolution_met"), Count("t.sla_resolution_met is not null")),
           direction="higher", target=90, requires=("resolved_at",)),
    Metric("fcr_pct", "First-contact resolution",
           "% of closed tickets (with a known contact count) closed after one contact and never "
           "reopened.", "%", ".1f",
           Ratio(Count(f"{_CLOSED} and t.contacts = 1 and coalesce(t.reopened_count, 0) = 0"),
                 Count(f"{_CLOSED} and t.contacts is not null")),
           direction="higher", target=95, requires=("contacts",)),
    Metric("reopen_pct", "Reopened",
           "% of closed tickets (with a known reopen count) reopened at least once.", "%", ".1f",
           Ratio(Count(f"{_CLOSED} and t.reopened_count > 0"),
                 Count(f"{_CLOSED} and t.reopened_count is not null")),
           direction="lower", requires=("reopened_count",)),
    Metric("aht_min", "Avg handle time", "Mean agent handle time in minutes.", "min", ",.1f",
           Mean("t.handle_time_s", divisor=60.0), direction="lower", requires=("handle_time_s",)),
    Metric("customer_count", "Customers", "Distinct customers with a ticket in the period.",
           "customers", ",.0f", CountDistinct("t.customer_id"), requires=("customer_id",),
           is_count=True),
    Metric("response_rate_pct", "Survey response rate",
           "% of closed tickets with at least one feedback row.", "%", ".1f",
           Ratio(Count(f"{_CLOSED} and t.has_feedback"), Count(_CLOSED)), direction="higher",
           requires=("feedback.ticket_id",)),
    # Feedback metrics read per-ticket survey sums stored at load (fb_*), so they are plain
    # sums over the ticket table: the same figures as joining every feedback row to its
    # ticket, without a join on every query.
    Metric("feedback_count", "Feedback responses", "Feedback rows for the period's tickets.",
           "responses", ",.0f", Sum("t.fb_n"), requires=("feedback.ticket_id",),
           is_count=True),
    Metric("csat_avg", "CSAT (avg)", "Mean CSAT score (1-5) over feedback rows.", "score",
           ".2f", Ratio(Sum("t.fb_csat_sum"), Sum("t.fb_csat_n"), scale=1.0),
           direction="higher", requires=("feedback.csat",)),
    Metric("csat_pct", "CSAT", "% of CSAT responses that are 4 or 5.", "%", ".1f",
           Ratio(Sum("t.fb_csat_good"), Sum("t.fb_csat_n")),
           direction="higher", target=90, requires=("feedback.csat",)),
    Metric("nps", "NPS", "% of NPS responses 9-10 minus % of responses 0-6.", "", "+.0f",
           Ratio(Difference(Sum("t.fb_nps_promoters"), Sum("t.fb_nps_detractors")),
                 Sum("t.fb_nps_n")), direction="higher", requires=("feedback.nps",)),
    Metric("ces_avg", "CES (avg)", "Mean customer effort score (1-7, lower is easier).",
           "score", ".2f", Ratio(Sum("t.fb_ces_sum"), Sum("t.fb_ces_n"), scale=1.0),
           direction="lower", requires=("feedback.ces",)),
    # Comment sentiment: each comment's VADER compound score (-1..1), stored at load
    # (cs_metrics.analysis.sentiment) and summed per ticket like the survey scores.
    Metric("sentiment_avg", "Comment sentiment",
           "Mean VADER compound score of the survey comments, from -1 (most negative) to +1 "
           "(most positive).", "score", "+.2f",
           Ratio(Sum("t.fb_sent_sum"), Sum("t.fb_sent_n"), scale=1.0), direction="higher",
           requires=("feedback.comment",)),
    Metric("negative_comment_pct", "Negative comments",
           "% of survey comments whose VADER compound score is -0.05 or lower.", "%", ".1f",
           Ratio(Sum("t.fb_sent_neg"), Sum("t.fb_sent_n")), direction="lower",
           requires=("feedback.comment",)),
    # Agent activity: per-ticket aggregates of the status history (ticket_events) stored at
    # load (ev_*), over closed tickets with at least one event (README "Agent activity").
    Metric("touches_per_ticket", "Touches per ticket",
           "Mean number of status events per closed ticket with a status history.", "events",
           ".2f", Mean("t.ev_n", _CLOSED), direction="lower",
           requires=("ticket_events.ticket_id",)),
    Metric("reassignments_per_ticket", "Reassignments per ticket",
           "Mean number of times a closed ticket's status history passes from one named "
           "representative to a different one.", "reassignments", ".2f",
           Mean("t.ev_reassignments", _CLOSED), direction="lower",
           requires=("ticket_events.ticket_id",)),
    Metric("median_open_h", "Median time open",
           "Median over closed tickets of the hours their status history spent in open "
           "(from each open event to the next event; continuous quantile).", "h", ",.1f",
           Quantile("t.ev_open_h", 0.5), direction="lower",
           requires=("ticket_events.ticket_id",)),
    Metric("median_in_progress_h", "Median time in progress",
           "Median over closed tickets of the hours their status history spent in progress "
           "(from each in-progress event to the next event; continuous quantile).", "h",
           ",.1f", Quantile("t.ev_in_progress_h", 0.5),
           direction="lower", requires=("ticket_events.ticket_id",)),
    Metric("one_touch_pct", "One-touch resolution",
           "% of closed tickets with a status history closed in one pass by one "
           "representative: no reassignment, never reopened, at most one in-progress event.",
           "%", ".1f",
           Ratio(Count(f"{_CLOSED} and t.ev_reassignments = 0 and t.ev_reopens = 0 "
                       "and t.ev_in_progress_n <= 1"),
                 Count(f"{_CLOSED} and t.ev_n is not null")),
           direction="higher", requires=("ticket_events.ticket_id",)),
    Metric("event_reopen_pct", "Reopened (status history)",
           "% of closed tickets with a status history in which a closed event is followed by "
           "an open or in-progress one.", "%", ".1f",
           Ratio(Count(f"{_CLOSED} and t.ev_reopens > 0"),
                 Count(f"{_CLOSED} and t.ev_n is not null")),
           direction="lower", requires=("ticket_events.ticket_id",)),
    Metric("backlog", "Backlog",
           "Tickets open at the end of the period: created before its end and not resolved by "
           "then.", "tickets", ",.0f", Cumulative("created_at", "effective_resolved_at"),
           direction="lower", is_count=True),
)

METRICS: dict[str, Metric] = {m.name: m for m in _METRICS}


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise CsMetricsError(
            f"Unknown metric {name!r}; valid metrics: {', '.join(METRICS)}."
        ) from None


def metric_target(metric: Metric, settings: Settings | None = None) -> float | None:
    settings = settings or load_settings()
    value = settings.target(metric.name)
    return value if value is not None else metric.target


# Tables whose figures are stored on the query table at load, with the column that holds
# them: a warehouse derived before that column existed has no such figures until a load.
_STORED_FROM: dict[str, str] = {"ticket_events": "ev_n"}


def available(metric: Metric, warehouse: Warehouse) -> bool:
    """Whether the dataset holds what the metric needs (pages say so when it does not)."""
    return not missing_inputs(metric, warehouse)


def missing_inputs(metric: Metric, warehouse: Warehouse) -> list[str]:
    """The metric's inputs (``column`` of the tickets, ``table.column`` of another table)
    that the dataset lacks."""
    out = []
    for need in metric.requires:
        table, column = need.split(".", 1) if "." in need else ("tickets_src", need)
        if column not in warehouse.nonempty_columns(table):
            out.append(need)
        elif table in _STORED_FROM and _STORED_FROM[table] not in warehouse.columns("tickets"):
            out.append(need)
    return out


def empty_metrics(metrics: list[str] | tuple[str, ...], warehouse: Warehouse) -> set[str]:
    """The names among ``metrics`` whose inputs this dataset lacks (they are empty)."""
    return {m for m in metrics if missing_inputs(get_metric(m), warehouse)}



def sla_source_count(warehouse: Warehouse, filters: Filters | None = None) -> int:
    """Tickets in ``filters`` whose SLA verdicts the source's own due times decided
    (``first_response_due_at`` / ``resolution_due_at``); pages and reports say how many."""
    if "sla_from_source" not in warehouse.columns("tickets"):
        return 0  # derived by a version without source due times
    where, params = filter_sql(filters or Filters())
    return int(warehouse.scalar(
        f"select count(*) from tickets t where {where} and t.sla_from_source", params) or 0)


def sla_source_caption(warehouse: Warehouse, filters: Filters | None = None) -> str | None:
    """The sentence SLA figures carry when some tickets were judged by the source's own due
    times; None when none were."""
    n = sla_source_count(warehouse, filters)
    if not n:
        return None
    return (f"{n:,} ticket{'s' if n != 1 else ''} judged by the source's own due times "
            "(first_response_due_at, resolution_due_at) instead of the SLA policy targets.")


def compile_query(
    metrics: list[str] | tuple[str, ...],
    by: list[str] | tuple[str, ...] = (),
    grain: str | None = None,
    filters: Filters | None = None,
    plausible: tuple[datetime, datetime] | None = None,
    empty: frozenset[str] | set[str] = frozenset(),
) -> tuple[str, list]:
    """(metrics, dimensions, grain, filters) -> parameterised SQL and its parameters.

    One row per group (dimensions, then period), sorted by them; columns named as asked.
    ``plausible`` (the warehouse's plausible window) bounds a stock's periods when the
    date range is open, so a ticket dated 2100 or 9999 does not make them run on to it.
    Metrics named in ``empty`` (their inputs are missing from the dataset) compile to null in
    every group: a count of unanswered breaches or of absent feedback rows would read as 0.
    """
    if not metrics:
        raise CsMetricsError(f"Name at least one metric; valid metrics: {', '.join(METRICS)}.")
    chosen = [get_metric(m) for m in metrics]
    return compile_metrics(chosen, by, grain, filters, plausible, empty)


def query(
    warehouse: Warehouse,
    metrics: list[str] | tuple[str, ...],
    by: list[str] | tuple[str, ...] = (),
    grain: str | None = None,
    filters: Filters | None = None,
) -> pd.DataFrame:
    """Compute registry metrics; ``period`` comes back as a date (bucket start).

    A metric whose inputs the dataset lacks (``missing_inputs``) is null (NaN) in every row,
    counts included: empty, never zero.
    """
    if not warehouse.has_table("tickets"):
        raise CsMetricsError(
            f"The warehouse {warehouse.path} has no tickets yet; run "
            "`python -m cs_metrics ingest SOURCE` first."
        )
    empty = empty_metrics(metrics, warehouse)
    sql, params = compile_query(metrics, by, grain, filters, warehouse.plausible_window(),
                                empty=empty)
    df = warehouse.df(sql, params)
    if "period" in df.columns:
        import pandas as pd  # the query's frame is pandas already: this costs nothing more

        df["period"] = pd.to_datetime(df["period"]).dt.date
    for m in metrics:  # a column DuckDB already gave its dtype is kept as it is
        if m in empty:
            df[m] = df[m].astype("float64")  # all null: CSV writes an empty field, JSON null
        elif get_metric(m).is_count:
            if df[m].dtype != "int64":  # nulls (none counted) made it float
                df[m] = df[m].fillna(0).astype("int64")
        elif df[m].dtype != "float64":
            df[m] = df[m].astype("float64")
    return df
