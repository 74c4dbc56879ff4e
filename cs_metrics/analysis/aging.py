"""Ticket aging and SLA status: how old the unresolved tickets are, and per SLA policy and
target which tickets met, breached or are at risk of breaching their deadline.

Every figure is computed in DuckDB over the derived ``tickets`` table (test tickets
excluded, the filters' dimension constraints as ``?`` parameters); only small aggregates
and capped ticket lists reach Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse, first_response_deadline_sql
from cs_metrics.core.zones import local_columns, local_sql
from cs_metrics.metrics.registry import Filters, filter_sql, get_metric, missing_inputs

__all__ = [
    "AGE_BANDS",
    "AT_RISK_SHARE",
    "SPLITS",
    "TARGETS",
    "UnresolvedNow",
    "age_bands",
    "breach_trend",
    "oldest_unresolved",
    "sla_status",
    "sla_tickets",
    "unresolved_now",
]

# (label, lower bound in days inclusive, upper bound exclusive; None = no bound)
AGE_BANDS: tuple[tuple[str, float, float | None], ...] = (
    ("Under 1 day", 0, 1),
    ("1–3 days", 1, 3),
    ("3–7 days", 3, 7),
    ("7–30 days", 7, 30),
    ("Over 30 days", 30, None),
)
# How unresolved tickets may be split: name -> (label, SQL over alias t).
SPLITS: dict[str, tuple[str, str]] = {
    "status": ("Status", "t.status"),
    "priority": ("Priority", "coalesce(t.priority, 'normal')"),
    "team": ("Team", "coalesce(t.team, '(no team)')"),
    # the rep id when the dataset has no name for them
    "rep": ("Representative", "coalesce(t.rep_name, t.rep_id, '(unassigned)')"),
}
# SLA target kinds: name -> label.
TARGETS: dict[str, str] = {"first_response": "First response", "resolution": "Resolution"}
# A pending ticket is at risk once this share of the time from creation to its deadline
# has passed (the "within 20 % of the target").
AT_RISK_SHARE = 0.8
UNRESOLVED = "t.status in ('open', 'in_progress')"
NO_POLICY = "(no policy)"
MAX_LIST = 1000


def _as_of(wh: Warehouse) -> datetime:
    as_of = wh.as_of()
    if as_of is None:
        raise CsMetricsError("The warehouse has no data yet; load tickets first.")
    return as_of


def _age_days(moment: str = "?") -> str:
    return f"date_diff('microsecond', t.created_at, {moment}::timestamp) / 86400000000.0"


def _band_sql() -> str:
    whens = []
    for i, (_, _lo, hi) in enumerate(AGE_BANDS):
        if hi is None:
            whens.append(f"else {i}")
        else:
            whens.append(f"when age_days < {float(hi)!r} then {i}")
    return "case " + " ".join(whens) + " end"


def age_bands(wh: Warehouse, filters: Filters | None = None, split: str = "status"
              ) -> pd.DataFrame:
    """Unresolved tickets (open or in progress) now, by age band at ``wh.as_of()`` and by
    ``split`` (a key of SPLITS). The filters' dimensions apply, their date range does not
    (a stock holds tickets of any age). Columns: group, band, band_order, tickets; only
    non-empty cells, ordered by group then band."""
    if split not in SPLITS:
        raise CsMetricsError(f"Unknown split {split!r}; use {', '.join(SPLITS)}.")
    where, params = filter_sql(filters or Filters(), date_column=None)
    labels = ", ".join(f"'{label}'" for label, _, _ in AGE_BANDS)
    sql = f"""
    with ages as (
        select {SPLITS[split][1]} as grp, {_age_days()} as age_days
        from tickets t
        where {where} and {UNRESOLVED}
    ), final as (
        select grp as "group", {_band_sql()} as band_order, count(*) as tickets
        from ages group by all
    )
    select "group", ([{labels}])[band_order + 1] as band, band_order, tickets
    from final order by "group", band_order
    """
    df = wh.df(sql, [_as_of(wh), *params])
    df["tickets"] = df["tickets"].astype("int64")
    df["band_order"] = df["band_order"].astype("int64")
    return df


@dataclass(frozen=True)
class UnresolvedNow:
    """Tickets unresolved now (open or in progress at ``wh.as_of()``), created on any day."""

    open: int
    in_progress: int
    old: int  # in the last of AGE_BANDS (over 30 days old)

    @property
    def total(self) -> int:
        return self.open + self.in_progress


def unresolved_now(wh: Warehouse, filters: Filters | None = None) -> UnresolvedNow:
    """The unresolved tickets by status and those in the oldest age band: ``age_bands`` by
    status, summed (Overview's cards). The filters' dimensions apply, their date range does
    not."""
    bands = age_bands(wh, filters, split="status")
    by_status = bands.groupby("group")["tickets"].sum()
    old = bands.loc[bands["band_order"] == len(AGE_BANDS) - 1, "tickets"].sum()
    return UnresolvedNow(open=int(by_status.get("open", 0)),
                         in_progress=int(by_status.get("in_progress", 0)), old=int(old))


def oldest_unresolved(wh: Warehouse, filters: Filters | None = None, limit: int = 20
                      ) -> pd.DataFrame:
    """The ``limit`` oldest unresolved tickets: ticket_id, created_at (local time of the
    filters' zone), age_days, status, priority, team, representative."""
    if not 1 <= limit <= MAX_LIST:
        raise CsMetricsError(f"List between 1 and {MAX_LIST} tickets.")
    filters = filters or Filters()
    where, params = filter_sql(filters, date_column=None)
    df = wh.df(
        f"""select t.ticket_id, t.created_at, {_age_days()} as age_days, t.status,
            t.priority, t.team, {SPLITS['rep'][1]} as representative
        from tickets t where {where} and {UNRESOLVED}
        order by t.created_at, t.ticket_id limit {int(limit)}""",
        [_as_of(wh), *params])
    return local_columns(df, ("created_at",), filters.tz)


def _kinds(wh: Warehouse) -> list[str]:
    """The target kinds the dataset can judge (their registry metric's inputs present)."""
    return [k for k in TARGETS if not missing_inputs(get_metric(f"sla_{k}_pct"), wh)]


def _deadline(wh: Warehouse, kind: str) -> str:
    if kind == "first_response":
        return first_response_deadline_sql(wh)
    if "sla_resolution_deadline" in wh.columns("tickets"):
        return "t.sla_resolution_deadline"
    return ("(t.created_at + to_microseconds(cast("
            "t.sla_resolution_target_h * 3600000000 as bigint)))")


def _states_sql(wh: Warehouse, kinds: list[str]) -> str:
    """One row per ticket and target kind with a deadline or a verdict: state is met,
    breached, at_risk or on_track. Parameters: as_of, then the filters'."""
    parts = []
    for kind in kinds:
        pending = "t.first_response_at is null" if kind == "first_response" \
            else "t.status <> 'closed'"
        deadline = _deadline(wh, kind)
        parts.append(f"""
        select t.ticket_id, t.created_at, '{kind}' as target,
            coalesce(t.sla_policy, '{NO_POLICY}') as policy, {deadline} as deadline,
            case
                when t.sla_{kind}_met then 'met'
                when not t.sla_{kind}_met then 'breached'
                when {pending} and {deadline} is not null
                    and date_diff('microsecond', t.created_at, $as_of)
                        >= {AT_RISK_SHARE!r} * date_diff('microsecond', t.created_at, {deadline})
                    then 'at_risk'
                else 'on_track'
            end as state,
            t.status, t.priority, t.team, {SPLITS['rep'][1]} as representative
        from tickets t
        where {{where}} and (t.sla_{kind}_met is not null or {deadline} is not null)""")
    return " union all ".join(parts)


def _states(wh: Warehouse, filters: Filters | None) -> tuple[str, list] | None:
    kinds = _kinds(wh)
    if not kinds:
        return None
    where, params = filter_sql(filters or Filters())
    # $as_of is a named parameter: the filters' ? parameters are turned into named ones
    names = [f"p{i}" for i in range(len(params))]
    for name in names:
        where = where.replace("?", f"${name}", 1)
    sql = _states_sql(wh, kinds).replace("{where}", where)
    return sql, {"as_of": _as_of(wh), **dict(zip(names, params, strict=True))}


def sla_status(wh: Warehouse, filters: Filters | None = None) -> pd.DataFrame:
    """Per SLA policy and target kind, over the tickets created in the filters' range: policy,
    target, tickets, met, breached, at_risk, on_track, breached_pct (% of the judged, i.e.
    met or breached; empty when none is judged). A kind whose inputs the dataset lacks has
    no rows."""
    states = _states(wh, filters)
    cols = ["policy", "target", "tickets", "met", "breached", "at_risk", "on_track",
            "breached_pct"]
    if states is None:
        return pd.DataFrame(columns=cols)
    sql, params = states
    df = _df(wh, f"""
    with states as ({sql}), final as (
        select policy, target, count(*) as tickets,
            count(*) filter (where state = 'met') as met,
            count(*) filter (where state = 'breached') as breached,
            count(*) filter (where state = 'at_risk') as at_risk,
            count(*) filter (where state = 'on_track') as on_track
        from states group by all
    )
    select *, 100.0 * breached / nullif(met + breached, 0) as breached_pct
    from final order by policy, target = 'resolution', target
    """, params)
    for col in ("tickets", "met", "breached", "at_risk", "on_track"):
        df[col] = df[col].astype("int64")
    df["breached_pct"] = df["breached_pct"].astype("float64")
    return df[cols]


def sla_tickets(wh: Warehouse, filters: Filters | None = None,
                states: tuple[str, ...] = ("breached", "at_risk"), limit: int = MAX_LIST
                ) -> pd.DataFrame:
    """The tickets in ``states`` (one row per ticket and target kind), at risk first, then
    the most recently due: ticket_id, created_at, deadline (local times), policy, target,
    state, status, priority, team, representative. At most ``limit`` rows."""
    if not 1 <= limit <= MAX_LIST:
        raise CsMetricsError(f"List between 1 and {MAX_LIST} tickets.")
    bad = set(states) - {"met", "breached", "at_risk", "on_track"}
    if bad:
        raise CsMetricsError(f"Unknown SLA state {sorted(bad)[0]!r}.")
    filters = filters or Filters()
    found = _states(wh, filters)
    cols = ["ticket_id", "created_at", "deadline", "policy", "target", "state", "status",
            "priority", "team", "representative"]
    if found is None:
        return pd.DataFrame(columns=cols)
    sql, params = found
    df = _df(wh, f"""
    select {', '.join(cols)} from ({sql})
    where list_contains($states::varchar[], state)
    order by state <> 'at_risk', deadline desc nulls last, ticket_id, target limit {int(limit)}
    """, {**params, "states": list(states)})
    return local_columns(df, ("created_at", "deadline"), filters.tz)


def breach_trend(wh: Warehouse, filters: Filters | None = None) -> pd.DataFrame:
    """Per local week (Monday start, filters' zone) of creation and target kind: week,
    target, judged (met or breached), breached, breached_pct."""
    filters = filters or Filters()
    found = _states(wh, filters)
    cols = ["week", "target", "judged", "breached", "breached_pct"]
    if found is None:
        return pd.DataFrame(columns=cols)
    sql, params = found
    week = f"cast(date_trunc('week', {local_sql('created_at', filters.tz)}) as date)"
    df = _df(wh, f"""
    with states as ({sql}), final as (
        select {week} as week, target,
            count(*) filter (where state in ('met', 'breached')) as judged,
            count(*) filter (where state = 'breached') as breached
        from states group by all
    )
    select *, 100.0 * breached / nullif(judged, 0) as breached_pct
    from final where judged > 0 order by week, target = 'resolution'
    """, params)
    df["judged"] = df["judged"].astype("int64")
    df["breached"] = df["breached"].astype("int64")
    df["breached_pct"] = df["breached_pct"].astype("float64")
    return df[cols]


def _df(wh: Warehouse, sql: str, params: dict) -> pd.DataFrame:
    # named parameters: $as_of is read several times per ticket
    return wh.df(sql, params)  # type: ignore[arg-type]
