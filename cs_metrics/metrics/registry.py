"""The metric registry (metrics as data) and the one compiler from a request to SQL.

Expressions are plain SQL aggregates over the query table ``tickets`` (alias ``t``) or
``feedback`` (alias ``f``, joined to its ticket), so the same registry can compile to
another SQL engine; DuckDB-only features stay in the warehouse layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.schema import DIMENSIONS as TICKET_DIMENSIONS
from cs_metrics.core.schema import LIST_DIMENSIONS
from cs_metrics.core.settings import PLAUSIBLE_BOUNDS, Settings, load_settings
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.core.zones import UTC_ZONE, check_zone, local_date_sql, utc_moment

Source = Literal["tickets", "backlog"]

# Every dimension figures group and filter by: the ticket columns, then the list dimensions
# (``tag``: a ticket counts once in each of its tags; tickets without tags are in no group).
DIMENSIONS: tuple[str, ...] = (*TICKET_DIMENSIONS, *LIST_DIMENSIONS)


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    description: str
    unit: str  # "tickets", "min", "h", "%", "score", "customers", ...
    format: str  # Python format spec for display, e.g. ",.0f" or ".1f"
    expression: str  # SQL aggregate over t, the ticket query table
    source: Source = "tickets"
    direction: Literal["higher", "lower"] | None = None  # which way is better
    target: float | None = None  # default target; settings override it
    requires: tuple[str, ...] = ()  # columns that must hold values, "feedback.csat" style
    is_count: bool = False  # a missing group means zero, not unknown

    def display(self, value: float | None) -> str:
        if value is None or pd.isna(value):
            return "–"
        text = format(value, self.format)
        if self.unit == "%":
            return f"{text} %"
        # counts read as plain numbers; the label already says what is counted
        return text if self.is_count or not self.unit else f"{text} {self.unit}"


def _pct(numerator: str, denominator: str) -> str:
    return f"100.0 * count(*) filter (where {numerator}) / nullif(count(*) filter (where " \
           f"{denominator}), 0)"


_CLOSED = "t.status = 'closed'"

_METRICS: tuple[Metric, ...] = (
    Metric("ticket_count", "Tickets", "Number of tickets created in the period.", "tickets",
           ",.0f", "count(*)", is_count=True),
    Metric("open_count", "Open", "Tickets whose current status is open.", "tickets", ",.0f",
           "count(*) filter (where t.status = 'open')", direction="lower", is_count=True),
    Metric("in_progress_count", "In progress", "Tickets whose current status is in progress.",
           "tickets", ",.0f", "count(*) filter (where t.status = 'in_progress')",
           is_count=True),
    Metric("closed_count", "Closed", "Tickets whose current status is closed.", "tickets",
           ",.0f", f"count(*) filter (where {_CLOSED})", direction="higher", is_count=True),
    Metric("avg_first_response_min", "Avg first response",
           "Mean of (first_response_at - created_at) in minutes, over tickets with a first "
           "response.", "min", ",.1f", "avg(t.first_response_min)", direction="lower",
           target=60, requires=("first_response_at",)),
    Metric("median_first_response_min", "Median first response",
           "Median of (first_response_at - created_at) in minutes (continuous quantile).",
           "min", ",.1f", "percentile_cont(0.5) within group (order by t.first_response_min)",
           direction="lower", target=60, requires=("first_response_at",)),
    Metric("p90_first_response_min", "P90 first response",
           "90th percentile of first-response minutes (continuous quantile).", "min", ",.1f",
           "percentile_cont(0.9) within group (order by t.first_response_min)",
           direction="lower", requires=("first_response_at",)),
    Metric("avg_resolution_h", "Avg resolution",
           "Mean of (resolved_at - created_at) in hours, over closed tickets with a resolved_at.",
           "h", ",.1f", "avg(t.resolution_h)", direction="lower", target=24,
           requires=("resolved_at",)),
    Metric("median_resolution_h", "Median resolution",
           "Median resolution hours over closed tickets (continuous quantile).", "h", ",.1f",
           "percentile_cont(0.5) within group (order by t.resolution_h)", direction="lower",
           requires=("resolved_at",)),
    Metric("p90_resolution_h", "P90 resolution",
           "90th percentile of resolution hours over closed tickets (continuous quantile).", "h",
           ",.1f", "percentile_cont(0.9) within group (order by t.resolution_h)",
           direction="lower", requires=("resolved_at",)),
    Metric("avg_first_response_business_min", "Avg first response (business hours)",
           "Mean of the minutes from created_at to first_response_at that fall inside the "
           "open hours of the business-hours calendar.", "min", ",.1f",
           "avg(t.first_response_business_min)", direction="lower",
           requires=("first_response_at",)),
    Metric("median_first_response_business_min", "Median first response (business hours)",
           "Median of first-response business minutes (continuous quantile).", "min", ",.1f",
           "percentile_cont(0.5) within group (order by t.first_response_business_min)",
           direction="lower", requires=("first_response_at",)),
    Metric("p90_first_response_business_min", "P90 first response (business hours)",
           "90th percentile of first-response business minutes (continuous quantile).", "min",
           ",.1f", "percentile_cont(0.9) within group (order by t.first_response_business_min)",
           direction="lower", requires=("first_response_at",)),
    Metric("avg_resolution_business_h", "Avg resolution (business hours)",
           "Mean of the hours from created_at to resolved_at that fall inside the open hours "
           "of the business-hours calendar, over closed tickets with a resolved_at.", "h",
           ",.1f", "avg(t.resolution_business_h)", direction="lower",
           requires=("resolved_at",)),
    Metric("median_resolution_business_h", "Median resolution (business hours)",
           "Median resolution business hours over closed tickets (continuous quantile).", "h",
           ",.1f", "percentile_cont(0.5) within group (order by t.resolution_business_h)",
           direction="lower", requires=("resolved_at",)),
    Metric("sla_first_response_pct", "SLA first response",
           "% of tickets answered within their SLA policy's first-response target; an "
           "unanswered ticket whose target has passed is a breach, one still within it is not "
           "counted yet.", "%", ".1f",
           _pct("t.sla_first_response_met", "t.sla_first_response_met is not null"),
           direction="higher", target=90, requires=("first_response_at",)),
    Metric("sla_resolution_pct", "SLA resolution",
           "% of tickets resolved within their SLA policy's resolution target; an unresolved "
           "ticket whose target has passed is a breach.", "%", ".1f",
           _pct("t.sla_resolution_met", "t.sla_resolution_met is not null"),
           direction="higher", target=90, requires=("resolved_at",)),
    Metric("fcr_pct", "First-contact resolution",
           "% of closed tickets (with a known contact count) closed after one contact and never "
           "reopened.", "%", ".1f",
           _pct(f"{_CLOSED} and t.contacts = 1 and coalesce(t.reopened_count, 0) = 0",
                f"{_CLOSED} and t.contacts is not null"),
           direction="higher", target=95, requires=("contacts",)),
    Metric("reopen_pct", "Reopened",
           "% of closed tickets (with a known reopen count) reopened at least once.", "%", ".1f",
           _pct(f"{_CLOSED} and t.reopened_count > 0",
                f"{_CLOSED} and t.reopened_count is not null"),
           direction="lower", requires=("reopened_count",)),
    Metric("aht_min", "Avg handle time", "Mean agent handle time in minutes.", "min", ",.1f",
           "avg(t.handle_time_s) / 60.0", direction="lower", requires=("handle_time_s",)),
    Metric("customer_count", "Customers", "Distinct customers with a ticket in the period.",
           "customers", ",.0f", "count(distinct t.customer_id)", requires=("customer_id",),
           is_count=True),
    Metric("response_rate_pct", "Survey response rate",
           "% of closed tickets with at least one feedback row.", "%", ".1f",
           _pct(f"{_CLOSED} and t.has_feedback", _CLOSED), direction="higher",
           requires=("feedback.ticket_id",)),
    # Feedback metrics read per-ticket survey sums stored at load (fb_*), so they are plain
    # sums over the ticket table: the same figures as joining every feedback row to its
    # ticket, without a join on every query.
    Metric("feedback_count", "Feedback responses", "Feedback rows for the period's tickets.",
           "responses", ",.0f", "sum(t.fb_n)", requires=("feedback.ticket_id",),
           is_count=True),
    Metric("csat_avg", "CSAT (avg)", "Mean CSAT score (1-5) over feedback rows.", "score",
           ".2f", "sum(t.fb_csat_sum) * 1.0 / nullif(sum(t.fb_csat_n), 0)",
           direction="higher", requires=("feedback.csat",)),
    Metric("csat_pct", "CSAT", "% of CSAT responses that are 4 or 5.", "%", ".1f",
           "100.0 * sum(t.fb_csat_good) / nullif(sum(t.fb_csat_n), 0)",
           direction="higher", target=90, requires=("feedback.csat",)),
    Metric("nps", "NPS", "% of NPS responses 9-10 minus % of responses 0-6.", "", "+.0f",
           "100.0 * (sum(t.fb_nps_promoters) - sum(t.fb_nps_detractors)) "
           "/ nullif(sum(t.fb_nps_n), 0)", direction="higher", requires=("feedback.nps",)),
    Metric("ces_avg", "CES (avg)", "Mean customer effort score (1-7, lower is easier).",
           "score", ".2f", "sum(t.fb_ces_sum) * 1.0 / nullif(sum(t.fb_ces_n), 0)",
           direction="lower", requires=("feedback.ces",)),
    # Comment sentiment: each comment's VADER compound score (-1..1), stored at load
    # (cs_metrics.analysis.sentiment) and summed per ticket like the survey scores.
    Metric("sentiment_avg", "Comment sentiment",
           "Mean VADER compound score of the survey comments, from -1 (most negative) to +1 "
           "(most positive).", "score", "+.2f",
           "sum(t.fb_sent_sum) * 1.0 / nullif(sum(t.fb_sent_n), 0)", direction="higher",
           requires=("feedback.comment",)),
    Metric("negative_comment_pct", "Negative comments",
           "% of survey comments whose VADER compound score is -0.05 or lower.", "%", ".1f",
           "100.0 * sum(t.fb_sent_neg) / nullif(sum(t.fb_sent_n), 0)", direction="lower",
           requires=("feedback.comment",)),
    # Agent activity: per-ticket aggregates of the status history (ticket_events) stored at
    # load (ev_*), over closed tickets with at least one event (README "Agent activity").
    Metric("touches_per_ticket", "Touches per ticket",
           "Mean number of status events per closed ticket with a status history.", "events",
           ".2f", f"avg(t.ev_n) filter (where {_CLOSED})", direction="lower",
           requires=("ticket_events.ticket_id",)),
    Metric("reassignments_per_ticket", "Reassignments per ticket",
           "Mean number of times a closed ticket's status history passes from one named "
           "representative to a different one.", "reassignments", ".2f",
           f"avg(t.ev_reassignments) filter (where {_CLOSED})", direction="lower",
           requires=("ticket_events.ticket_id",)),
    Metric("median_open_h", "Median time open",
           "Median over closed tickets of the hours their status history spent in open "
           "(from each open event to the next event; continuous quantile).", "h", ",.1f",
           "percentile_cont(0.5) within group (order by t.ev_open_h)", direction="lower",
           requires=("ticket_events.ticket_id",)),
    Metric("median_in_progress_h", "Median time in progress",
           "Median over closed tickets of the hours their status history spent in progress "
           "(from each in-progress event to the next event; continuous quantile).", "h",
           ",.1f", "percentile_cont(0.5) within group (order by t.ev_in_progress_h)",
           direction="lower", requires=("ticket_events.ticket_id",)),
    Metric("one_touch_pct", "One-touch resolution",
           "% of closed tickets with a status history closed in one pass by one "
           "representative: no reassignment, never reopened, at most one in-progress event.",
           "%", ".1f",
           _pct(f"{_CLOSED} and t.ev_reassignments = 0 and t.ev_reopens = 0 "
                "and t.ev_in_progress_n <= 1", f"{_CLOSED} and t.ev_n is not null"),
           direction="higher", requires=("ticket_events.ticket_id",)),
    Metric("event_reopen_pct", "Reopened (status history)",
           "% of closed tickets with a status history in which a closed event is followed by "
           "an open or in-progress one.", "%", ".1f",
           _pct(f"{_CLOSED} and t.ev_reopens > 0", f"{_CLOSED} and t.ev_n is not null"),
           direction="lower", requires=("ticket_events.ticket_id",)),
    Metric("backlog", "Backlog",
           "Tickets open at the end of the period: created before its end and not resolved by "
           "then.", "tickets", ",.0f", "", source="backlog", direction="lower", is_count=True),
)

METRICS: dict[str, Metric] = {m.name: m for m in _METRICS}

GRAINS: tuple[str, ...] = ("day", "week", "month")


@dataclass(frozen=True)
class Filters:
    """What every page and command filters on. Frozen, so it can key a cache."""

    date_from: date | None = None  # inclusive, on created_at, a local day of ``tz``
    date_to: date | None = None  # exclusive, on created_at, a local day of ``tz``
    where: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())
    # the reporting zone: local days bound the range and make days, weeks and months
    tz: str = UTC_ZONE

    def __post_init__(self) -> None:
        check_zone(self.tz)
        for dim, _ in self.where:
            if dim not in DIMENSIONS:
                raise CsMetricsError(
                    f"Unknown dimension {dim!r} in a filter; valid dimensions: "
                    f"{', '.join(DIMENSIONS)}."
                )

    @staticmethod
    def build(
        date_from: date | None = None,
        date_to: date | None = None,
        tz: str = UTC_ZONE,
        **where: str | list[str] | tuple[str, ...] | None,
    ) -> Filters:
        items = []
        for dim, values in sorted(where.items()):
            if values is None or values == () or values == []:
                continue
            vals = (values,) if isinstance(values, str) else tuple(values)
            items.append((dim, tuple(sorted(set(vals)))))
        return Filters(date_from, date_to, tuple(items), tz)


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


def _as_ts(d: date | datetime) -> datetime:
    return d if isinstance(d, datetime) else datetime(d.year, d.month, d.day)


def filter_sql(
    filters: Filters,
    date_column: str | None = "created_at",
    extra: dict[str, str | None] | None = None,
) -> tuple[str, list]:
    """The where clause of ``filters`` (plus ``extra`` dimension = value pairs) on alias ``t``.

    ``date_column`` is the timestamp the date range applies to (``created_at`` like the
    registry, ``resolved_at`` for flows, None for none). A ``None`` value in ``extra`` means
    "no value". Values only ever travel as parameters.
    """
    if date_column is not None and date_column not in ("created_at", "resolved_at"):
        raise CsMetricsError(f"Cannot filter dates on {date_column!r}.")
    clauses = ["not t.is_test"]
    params: list = []
    # local days become UTC moments here, so the range stays a plain comparison on the
    # stored column (row groups are skipped on it) whatever the zone
    if date_column and filters.date_from is not None:
        clauses.append(f"t.{date_column} >= ?")
        params.append(utc_moment(filters.date_from, filters.tz))
    if date_column and filters.date_to is not None:
        clauses.append(f"t.{date_column} < ?")
        params.append(utc_moment(filters.date_to, filters.tz))
    for dim, values in filters.where:
        if dim not in DIMENSIONS:  # identifiers only ever come from the dimension list
            raise CsMetricsError(f"Unknown dimension {dim!r}.")
        if dim in LIST_DIMENSIONS:  # a ticket with any of the values
            clauses.append(f"list_has_any(t.{LIST_DIMENSIONS[dim]}, "
                           f"[{', '.join('?' for _ in values)}]::varchar[])")
        else:
            clauses.append(f"t.{dim} in ({', '.join('?' for _ in values)})")
        params.extend(values)
    for dim, value in (extra or {}).items():
        if dim not in DIMENSIONS:
            raise CsMetricsError(
                f"Unknown dimension {dim!r}; valid dimensions: {', '.join(DIMENSIONS)}."
            )
        if dim in LIST_DIMENSIONS:
            if value is None:
                clauses.append(f"t.{LIST_DIMENSIONS[dim]} is null")
            else:
                clauses.append(f"list_contains(t.{LIST_DIMENSIONS[dim]}, ?)")
                params.append(str(value))
        elif value is None:
            clauses.append(f"t.{dim} is null")
        else:
            clauses.append(f"t.{dim} = ?")
            params.append(str(value))
    return " and ".join(clauses), params


def _where(filters: Filters, with_dates: bool = True) -> tuple[str, list]:
    return filter_sql(filters, "created_at" if with_dates else None)


def _tickets_from(by: list[str] | tuple[str, ...]) -> str:
    """The query table as alias ``t``; grouped by a list dimension, one row per ticket and
    value (a ticket without values is in no group)."""
    lists = [d for d in by if d in LIST_DIMENSIONS]
    if not lists:
        return "tickets t"
    # identifiers only ever come from LIST_DIMENSIONS
    unnested = ", ".join(f"unnest({LIST_DIMENSIONS[d]}) as {d}" for d in lists)
    return f"(select *, {unnested} from tickets) t"


def _period(grain: str | None, tz: str = UTC_ZONE, column: str = "t.created_at",
            utc_date: str | None = "t.created_date") -> str | None:
    """The ``grain`` bucket (a local day, week or month of ``tz``) of ``column``."""
    # in UTC, truncating the stored date is cheaper than truncating the timestamp
    return f"date_trunc('{grain}', {local_date_sql(column, tz, utc_date)})" if grain else None


def _same(cols: list[str], left: str, right: str) -> str:
    return " and ".join(f"{left}.{c} is not distinct from {right}.{c}" for c in cols) or "true"


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
    ``plausible`` (the warehouse's plausible window) bounds the backlog's periods when the
    date range is open, so a ticket dated 2100 or 9999 does not make them run on to it.
    Metrics named in ``empty`` (their inputs are missing from the dataset) compile to null in
    every group: a count of unanswered breaches or of absent feedback rows would read as 0.
    """
    filters = filters or Filters()
    if not metrics:
        raise CsMetricsError(f"Name at least one metric; valid metrics: {', '.join(METRICS)}.")
    chosen = [get_metric(m) for m in metrics]
    for d in by:
        if d not in DIMENSIONS:
            raise CsMetricsError(
                f"Unknown dimension {d!r}; valid dimensions: {', '.join(DIMENSIONS)}."
            )
    if len(set(by)) != len(by) or len(set(metrics)) != len(metrics):
        raise CsMetricsError("A metric or dimension is named twice; name each once.")
    if grain is not None and grain not in GRAINS:
        raise CsMetricsError(f"Unknown grain {grain!r}; use {', '.join(GRAINS)}.")

    keys = list(by) + (["period"] if grain else [])
    dim_select = [f"t.{d} as {d}" for d in by]
    period = _period(grain, filters.tz)
    if period:
        dim_select.append(f"{period} as period")
    group = f" group by {', '.join([f't.{d}' for d in by] + ([period] if period else []))}" \
        if keys else ""
    where, where_params = _where(filters)
    ctes: list[tuple[str, str, list[Metric]]] = []
    params: list = []

    ticket_metrics = [m for m in chosen if m.source == "tickets"]
    if ticket_metrics:
        cols = dim_select + [
            f"cast(null as double) as {m.name}" if m.name in empty else
            f"{m.expression} as {m.name}" for m in ticket_metrics
        ]
        ctes.append((
            "ticket_agg",
            f"select {', '.join(cols)} from {_tickets_from(by)} where {where}{group}",
            ticket_metrics,
        ))
        params += where_params
    if any(m.source == "backlog" for m in chosen):
        sql, p = _backlog_sql(list(by), grain, filters, plausible)
        ctes.append(("backlog_agg", sql, [METRICS["backlog"]]))
        params += p

    parts = [f"{name} as ({sql})" for name, sql, _ in ctes]
    order = f" order by {', '.join(f'{k} nulls last' for k in keys)}" if keys else ""
    if len(ctes) == 1:
        name, _, ms = ctes[0]
        select = ", ".join(keys + [m.name for m in ms])
        final = f"select {select} from {name}"
    else:
        key_list = ", ".join(keys)
        if keys:
            union = " union ".join(f"select {key_list} from {name}" for name, _, _ in ctes)
            parts.append(f"keys as ({union})")
            base = "keys k"
        else:
            base = "(select 1 as one) k"
        joins = " ".join(
            f"left join {name} on {_same(keys, 'k', name)}" for name, _, _ in ctes
        )
        cols = [f"k.{k}" for k in keys]
        for m in chosen:
            owner = next(name for name, _, ms in ctes if m in ms)
            expr = f"{owner}.{m.name}"
            cols.append(f"coalesce({expr}, 0) as {m.name}"
                        if m.is_count and m.name not in empty else f"{expr} as {m.name}")
        final = f"select {', '.join(cols)} from {base} {joins}"
    parts.append(f"final as ({final})")
    metric_cols = ", ".join(m.name for m in chosen)
    out_cols = ", ".join(keys + [metric_cols])
    sql = f"with {', '.join(parts)} select {out_cols} from final{order}"
    return sql, params


def _backlog_sql(by: list[str], grain: str | None, filters: Filters,
                 plausible: tuple[datetime, datetime] | None = None) -> tuple[str, list]:
    """Tickets open at the end of each period: a stock, so earlier tickets count too."""
    where, params = _where(filters, with_dates=False)
    tz = filters.tz
    dims = [f"t.{d} as {d}" for d in by]
    if grain is None:
        if filters.date_to is None:
            cond = "t.effective_resolved_at is null"
            p: list = []
        else:
            end = utc_moment(filters.date_to, filters.tz)
            cond = "t.created_at < ? and (t.effective_resolved_at is null or " \
                   "t.effective_resolved_at >= ?)"
            p = [end, end]
        group = f" group by {', '.join(f't.{d}' for d in by)}" if by else ""
        sql = (
            f"select {', '.join(dims + ['count(*) filter (where ' + cond + ') as backlog'])} "
            f"from {_tickets_from(by)} where {where}{group}"
        )
        return sql, p + params
    step = f"interval 1 {grain}"
    with_dims = ", ".join(by) + ", " if by else ""
    dim_select = ", ".join(dims) + ", " if dims else ""
    partition = ", ".join(by) or "1"
    # an open range runs over the data's plausible periods, a given one within the
    # plausible centuries: never from year 1 to 9999
    lo, hi = plausible or (datetime.combine(d, datetime.min.time()) for d in PLAUSIBLE_BOUNDS)
    lo, hi = max(lo.date(), PLAUSIBLE_BOUNDS[0]), min(hi.date(), PLAUSIBLE_BOUNDS[1])
    date_from = _as_ts(filters.date_from) if filters.date_from else None
    date_to = _as_ts(filters.date_to) - timedelta(microseconds=1) if filters.date_to else None
    # One pass over the tickets: counts per (created bucket, resolved bucket); the net flow
    # per bucket and its running sum give the backlog at each bucket's end.
    sql = f"""
        with bl_days as (
            select {dim_select}{local_date_sql('t.created_at', tz, 't.created_date')}
                    as created_d,
                {local_date_sql('t.effective_resolved_at', tz)} as resolved_d, count(*) as n
            from {_tickets_from(by)} where {where}
            group by {with_dims}created_d, resolved_d
        ),
        bl_pairs as (
            select {with_dims}date_trunc('{grain}', created_d) as created_p,
                date_trunc('{grain}', resolved_d) as resolved_p, sum(n) as n
            from bl_days
            group by {with_dims}created_p, resolved_p
        ),
        bl_flow as (
            select {with_dims}created_p as period, n as delta from bl_pairs
            union all
            select {with_dims}resolved_p, -n from bl_pairs where resolved_p is not null
        ),
        bl_bounds as (
            -- the spine stays within the plausible centuries: a ticket of year 0001 or 9999
            -- (written past a load's checks) still counts, but does not make it millions long
            select date_trunc('{grain}', greatest(coalesce(cast(? as timestamp),
                       min(created_p) filter (where created_p >= date '{lo}')),
                       date '{PLAUSIBLE_BOUNDS[0]}')) as lo,
                   date_trunc('{grain}', least(coalesce(cast(? as timestamp),
                       max(created_p) filter (where created_p <= date '{hi}')),
                       date '{PLAUSIBLE_BOUNDS[1]}')) as hi
            from bl_pairs
        ),
        bl_spine as (
            select {with_dims}p.period
            from (select distinct {", ".join(by) or "1 as one"} from bl_pairs) g
            cross join (select unnest(generate_series(lo, hi, {step})) as period
                        from bl_bounds) p
        ),
        bl_all as (
            select {with_dims}period, delta, false as is_spine from bl_flow
            union all
            select {with_dims}period, 0, true from bl_spine
        ),
        final as (
            select {with_dims}period, is_spine,
                sum(delta) over (partition by {partition} order by period
                                 range between unbounded preceding and current row) as backlog
            from bl_all
        )
        select {with_dims}period, backlog from final where is_spine
    """
    return sql, [*params, date_from, date_to]


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
