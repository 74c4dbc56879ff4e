"""The one compiler from a request (metrics, dimensions, grain, filters) to SQL.

The request's vocabulary is here too: the dimensions, grains and time dimensions, the frozen
``Filters`` and their where clause (``filter_sql``). The registry (``registry.py``) declares
the metrics on top of this module and gives them to ``compile_metrics`` by name
(``registry.compile_query``, ``registry.query``).

Every metric goes the same way: the chosen metrics are grouped by what their kind needs
(flows: one aggregate per ticket group, by their time dimension; a stock: the running sum of
its inflows and outflows), each group is one CTE keyed by the dimensions and the period, and
the CTEs are joined on those keys. Nothing here names a metric: a new one is a declaration
in ``registry.py``.

Values travel as named parameters (``$date_from``, ``$channel``, ``$channel_2``...): each
value is bound once where the SQL is written, under the name of what it is, and referred to
by that name wherever it is needed, so no text has to keep its ``?`` in step with a list's
order, and a reader of the SQL sees which value goes where.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.schema import DIMENSIONS as TICKET_DIMENSIONS
from cs_metrics.core.schema import LIST_DIMENSIONS
from cs_metrics.core.settings import PLAUSIBLE_BOUNDS
from cs_metrics.core.zones import UTC_ZONE, check_zone, local_date_sql, utc_moment
from cs_metrics.metrics.kinds import Cumulative

if TYPE_CHECKING:  # the registry builds on this module; only the type comes back
    from cs_metrics.metrics.registry import Metric

__all__ = ["DIMENSIONS", "GRAINS", "TIME_DIMENSIONS", "Filters", "compile_metrics",
           "filter_sql", "filter_where"]

# Every dimension figures group and filter by: the ticket columns, then the list dimensions
# (``tag``: a ticket counts once in each of its tags; tickets without tags are in no group).
DIMENSIONS: tuple[str, ...] = (*TICKET_DIMENSIONS, *LIST_DIMENSIONS)

# The timestamps a metric can place its tickets in periods by (and the date range applies
# to), with the stored UTC day of the column where the warehouse keeps one (cheaper to
# truncate than the timestamp).
TIME_DIMENSIONS: dict[str, str | None] = {"created_at": "t.created_date", "resolved_at": None}


GRAINS: tuple[str, ...] = ("day", "week", "month")


@dataclass(frozen=True)
class Filters:
    """What every page and command filters on. Frozen, so it can key a cache."""

    # the range, local days of ``tz``, on each metric's time dimension (created_at unless
    # the metric declares another)
    date_from: date | None = None  # inclusive
    date_to: date | None = None  # exclusive
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


def filter_sql(
    filters: Filters,
    date_column: str | None = "created_at",
    extra: dict[str, str | None] | None = None,
) -> tuple[str, list]:
    """The where clause of ``filters`` (plus ``extra`` dimension = value pairs) on alias ``t``.

    ``date_column`` is the timestamp the date range applies to (``created_at`` like the
    registry, ``resolved_at`` for flows, None for none). A ``None`` value in ``extra`` means
    "no value". Values only ever travel as parameters (``?``, in the order of the list).
    """
    params: list = []

    def positional(value: Any, name: str = "") -> str:
        params.append(value)
        return "?"

    return filter_where(filters, positional, date_column, extra), params


def filter_where(
    filters: Filters,
    bind: Callable[[Any, str], str],
    date_column: str | None = "created_at",
    extra: dict[str, str | None] | None = None,
) -> str:
    """``filter_sql``'s where clause, each value handed to ``bind`` with the name of what it
    is, which keeps it and returns the text that refers to it (``?``, or ``$name`` in the
    compiler)."""
    if date_column is not None and date_column not in TIME_DIMENSIONS:
        raise CsMetricsError(f"Cannot filter dates on {date_column!r}.")
    clauses = ["not t.is_test"]
    # local days become UTC moments here, so the range stays a plain comparison on the
    # stored column (row groups are skipped on it) whatever the zone
    if date_column and filters.date_from is not None:
        start = bind(utc_moment(filters.date_from, filters.tz), "date_from")
        clauses.append(f"t.{date_column} >= {start}")
    if date_column and filters.date_to is not None:
        stop = bind(utc_moment(filters.date_to, filters.tz), "date_to")
        clauses.append(f"t.{date_column} < {stop}")
    for dim, values in filters.where:
        if dim not in DIMENSIONS:  # identifiers only ever come from the dimension list
            raise CsMetricsError(f"Unknown dimension {dim!r}.")
        refs = ", ".join(bind(v, dim) for v in values)
        if dim in LIST_DIMENSIONS:  # a ticket with any of the values
            clauses.append(f"list_has_any(t.{LIST_DIMENSIONS[dim]}, [{refs}]::varchar[])")
        else:
            clauses.append(f"t.{dim} in ({refs})")
    for dim, value in (extra or {}).items():
        if dim not in DIMENSIONS:
            raise CsMetricsError(
                f"Unknown dimension {dim!r}; valid dimensions: {', '.join(DIMENSIONS)}."
            )
        if dim in LIST_DIMENSIONS:
            if value is None:
                clauses.append(f"t.{LIST_DIMENSIONS[dim]} is null")
            else:
                clauses.append(f"list_contains(t.{LIST_DIMENSIONS[dim]}, {bind(str(value), dim)})")
        elif value is None:
            clauses.append(f"t.{dim} is null")
        else:
            clauses.append(f"t.{dim} = {bind(str(value), dim)}")
    return " and ".join(clauses)


class _Params:
    """The query's parameter values by name; binding one returns the ``$name`` that refers to
    it. Names come from this module (a filter's date bound, a dimension of the list), never
    from the data; a second value of one name is ``name_2``, and so on."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any, name: str) -> str:
        key, n = name, 1
        while key in self.values:
            n += 1
            key = f"{name}_{n}"
        self.values[key] = value
        return f"${key}"


def _as_ts(d: date | datetime) -> datetime:
    return d if isinstance(d, datetime) else datetime(d.year, d.month, d.day)


def _tickets_from(by: list[str] | tuple[str, ...]) -> str:
    """The query table as alias ``t``; grouped by a list dimension, one row per ticket and
    value (a ticket without values is in no group)."""
    lists = [d for d in by if d in LIST_DIMENSIONS]
    if not lists:
        return "tickets t"
    # identifiers only ever come from LIST_DIMENSIONS
    unnested = ", ".join(f"unnest({LIST_DIMENSIONS[d]}) as {d}" for d in lists)
    return f"(select *, {unnested} from tickets) t"


def _local_day(column: str, tz: str) -> str:
    """The local day of ``column`` (a ticket column name) in ``tz``; in UTC the stored day
    column when the warehouse keeps one (cheaper to truncate than the timestamp)."""
    return local_date_sql(f"t.{column}", tz, TIME_DIMENSIONS.get(column))


def _period(grain: str | None, tz: str = UTC_ZONE, column: str = "created_at") -> str | None:
    """The ``grain`` bucket (a local day, week or month of ``tz``) of ``column``."""
    return f"date_trunc('{grain}', {_local_day(column, tz)})" if grain else None


def _same(cols: list[str], left: str, right: str) -> str:
    return " and ".join(f"{left}.{c} is not distinct from {right}.{c}" for c in cols) or "true"


def _group_of(metric: Metric, empty: frozenset[str] | set[str]) -> tuple:
    """Metrics with the same group compile into one CTE: flows by their time dimension, each
    stock on its own. A metric without its inputs is a null column of its time dimension's
    flows, whatever its kind."""
    if metric.kind.stock and metric.name not in empty:
        return ("stock", metric.name)
    return ("flow", metric.time_dimension)


def _flow_cte(metrics: list[Metric], by: list[str], grain: str | None, filters: Filters,
              empty: frozenset[str] | set[str], bind: _Params) -> str:
    """Flows: each ticket counts in the period of its time dimension, and the date range
    applies to that timestamp; a ticket without one is in no period."""
    column = metrics[0].time_dimension
    dim_select = [f"t.{d} as {d}" for d in by]
    period = _period(grain, filters.tz, column)
    if period:
        dim_select.append(f"{period} as period")
    keys = [f"t.{d}" for d in by] + ([period] if period else [])
    group = f" group by {', '.join(keys)}" if keys else ""
    where = filter_where(filters, bind, column)
    cols = dim_select + [
        f"cast(null as double) as {m.name}" if m.name in empty else
        f"{m.kind.sql()} as {m.name}" for m in metrics
    ]
    return (f"select {', '.join(cols)} from {_tickets_from(by)} "
            f"where {where} and t.{column} is not null{group}")


def _stock_cte(metric: Metric, by: list[str], grain: str | None, filters: Filters,
               plausible: tuple[datetime, datetime] | None, bind: _Params) -> str:
    """A stock at the end of each period: earlier tickets count too, so the date range bounds
    the periods, not the tickets."""
    kind = metric.kind
    assert isinstance(kind, Cumulative)  # the only stock kind
    name = metric.name
    where = filter_where(filters, bind, None)
    tz = filters.tz
    dims = [f"t.{d} as {d}" for d in by]
    if grain is None:
        end = (bind(utc_moment(filters.date_to, tz), "as_of")
               if filters.date_to is not None else None)
        group = f" group by {', '.join(f't.{d}' for d in by)}" if by else ""
        return (f"select {', '.join(dims + [f'{kind.sql(end)} as {name}'])} "
                f"from {_tickets_from(by)} where {where}{group}")
    step = f"interval 1 {grain}"
    with_dims = ", ".join(by) + ", " if by else ""
    dim_select = ", ".join(dims) + ", " if dims else ""
    partition = ", ".join(by) or "1"
    # an open range runs over the data's plausible periods, a given one within the
    # plausible centuries: never from year 1 to 9999
    lo, hi = plausible or (datetime.combine(d, datetime.min.time()) for d in PLAUSIBLE_BOUNDS)
    lo, hi = max(lo.date(), PLAUSIBLE_BOUNDS[0]), min(hi.date(), PLAUSIBLE_BOUNDS[1])
    range_from = bind(_as_ts(filters.date_from) if filters.date_from else None, "range_from")
    range_to = bind(_as_ts(filters.date_to) - timedelta(microseconds=1)
                    if filters.date_to else None, "range_to")
    # One pass over the tickets: counts per (inflow bucket, outflow bucket); the net flow
    # per bucket and its running sum give the stock at each bucket's end.
    return f"""
        with bl_days as (
            select {dim_select}{_local_day(kind.inflow, tz)} as created_d,
                {_local_day(kind.outflow, tz)} as resolved_d, count(*) as n
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
            select date_trunc('{grain}', greatest(coalesce(cast({range_from} as timestamp),
                       min(created_p) filter (where created_p >= date '{lo}')),
                       date '{PLAUSIBLE_BOUNDS[0]}')) as lo,
                   date_trunc('{grain}', least(coalesce(cast({range_to} as timestamp),
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
                                 range between unbounded preceding and current row) as {name}
            from bl_all
        )
        select {with_dims}period, {name} from final where is_spine
    """


def compile_metrics(
    chosen: Sequence[Metric],
    by: list[str] | tuple[str, ...] = (),
    grain: str | None = None,
    filters: Filters | None = None,
    plausible: tuple[datetime, datetime] | None = None,
    empty: frozenset[str] | set[str] = frozenset(),
) -> tuple[str, list]:
    """(metrics, dimensions, grain, filters) -> parameterised SQL and its parameters; the
    registry's ``compile_query`` names the metrics (see it for the result's shape).

    Metrics of different time dimensions (created_at, resolved_at) or kinds (flows, a stock)
    are computed apart and joined on the dimensions and the period: a row for every group any
    of them has, a count missing from a group being 0 there.
    """
    filters = filters or Filters()
    for d in by:
        if d not in DIMENSIONS:
            raise CsMetricsError(
                f"Unknown dimension {d!r}; valid dimensions: {', '.join(DIMENSIONS)}."
            )
    if len(set(by)) != len(by) or len({m.name for m in chosen}) != len(chosen):
        raise CsMetricsError("A metric or dimension is named twice; name each once.")
    if grain is not None and grain not in GRAINS:
        raise CsMetricsError(f"Unknown grain {grain!r}; use {', '.join(GRAINS)}.")

    by = list(by)
    keys = by + (["period"] if grain else [])
    bind = _Params()
    groups: dict[tuple, list[Metric]] = {}
    for m in chosen:
        groups.setdefault(_group_of(m, empty), []).append(m)
    ctes: list[tuple[str, str, list[Metric]]] = []
    for (shape, what), ms in groups.items():
        if shape == "stock":
            sql = _stock_cte(ms[0], by, grain, filters, plausible, bind)
        else:
            sql = _flow_cte(ms, by, grain, filters, empty, bind)
        ctes.append((f"{shape}_{what}", sql, ms))

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
    return sql, bind.values

