"""SLA targets and business time for the derivation: which policy target each kind of
ticket has, the business-hours calendars as day tables, and the deadlines passed."""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta

import duckdb
import pandas as pd

from cs_metrics.core.schema import PRIORITIES
from cs_metrics.core.settings import (
    DEFAULT_CALENDAR,
    BusinessCalendar,
    Settings,
)


def _sla_dimensions(settings: Settings) -> dict[str, list[str]]:
    """Per ticket dimension some SLA policy restricts (``channel``: ``channels = [...]``,
    ``team``: ``teams = [...]``), every name the policies list. A value no policy lists
    matches the same policies as none (those that do not restrict it), so a ticket's key
    in ``sla_targets`` is its value when listed, else '' (a listed name is never empty):
    the table stays as small as the settings, whatever the data holds. Empty when no
    policy restricts either, the common case, which keeps priority x segment alone."""
    out: dict[str, list[str]] = {}
    for dim in ("channel", "team"):
        lists = [getattr(p, f"{dim}s") for p in settings.sla_policies]
        if any(names is not None for names in lists):
            out[dim] = sorted({name for names in lists for name in names or ()})
    return out


def _business_calendar(con: duckdb.DuckDBPyConnection, settings: Settings,
                       window: tuple[datetime, datetime]) -> None:
    """Temp table ``bh_calendar``: per calendar (``cal``: ``default`` and those the SLA
    policies name) and UTC day of the plausible window (and past its end as far as a
    deadline can reach), the open parts of that day (up to three: from the local days
    before, of and after it) in microseconds from UTC midnight, and the open microseconds
    of all the days before it. With business-time SLA policies, also ``bh_pieces``.

    Open hours are local wall-clock times, turned into UTC moments here, once per day
    (the zone's rules, DST included), so the tickets' naive UTC timestamps need no zone
    conversion: the business time up to a moment is its UTC day's ``cum_us`` plus the open
    parts of that day before it, one join per timestamp, no loop per ticket. Durations are
    differences of two such sums, so they do not depend on the calendar's first day (an
    incremental refresh gets the same values as a rebuild); integer microseconds keep the
    difference exact.
    """
    con.execute("create or replace temp table bh_calendar (cal varchar, day date, a1 bigint, "
                "b1 bigint, a2 bigint, b2 bigint, a3 bigint, b3 bigint, cum_us bigint)")
    # the default calendar and those the SLA policies name, the same days for each
    last = window[1].date() + timedelta(days=_deadline_reach_days(settings, window))
    for name in _calendars_used(settings):
        _insert_calendar(con, name, settings.calendar(name), window[0].date(), last)
    if _business_sla(settings):
        con.execute(_BH_PIECES_SQL)


def _calendars_used(settings: Settings) -> list[str]:
    """``default`` (for durations) and every calendar an SLA policy names."""
    named = {p.business_hours for p in settings.sla_policies if p.business_hours}
    return sorted(named | {DEFAULT_CALENDAR})


def _business_sla(settings: Settings) -> bool:
    """Whether some SLA policy counts its targets in business time."""
    return any(p.business_hours for p in settings.sla_policies)


def _split_calendars(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether some ticket kind in ``sla_targets`` counts its resolution on another calendar
    than its first response: only then is a ticket's creation looked up on two calendars."""
    return bool(con.execute(
        "select count(*) from sla_targets where coalesce(first_response_calendar, 'default') "
        "<> coalesce(resolution_calendar, 'default')").fetchall()[0][0])


def _deadline_reach_days(settings: Settings, window: tuple[datetime, datetime]) -> int:
    """Days past the window's end that bh_calendar covers, so the business-time deadline of
    any ticket created in the window lies inside it: at least twice the weeks the longest
    target of a calendar needs at its weekly open hours (a daylight-saving change takes an
    hour from a week), plus a week for every holiday after the window's end."""
    days = 0
    for policy in settings.sla_policies:
        if not policy.business_hours:
            continue
        cal = settings.calendar(policy.business_hours)
        weekly = sum(h[1] - h[0] for h in cal.hours if h is not None)  # seconds, > 0
        longest = max([v * 60 for _, v in policy.first_response_min]
                      + [v * 3600 for _, v in policy.resolution_h] + [0.0])
        holidays = sum(1 for d in cal.holidays if d >= window[1].date())
        days = max(days, 7 * (2 * math.ceil(max(longest, 0) / weekly) + 2 + holidays))
    return days


# Open pieces of every SLA calendar's days, each with the business microseconds before it
# (``cum_start``), listed under every business hour (``k``, from the calendar's start) that
# it overlaps: a ticket finds the piece where its deadline's business time falls by an
# equality join on that hour, which keeps the tickets in their order (no sort, no loop).
_BH_HOUR = 3_600_000_000


_BH_PIECES_SQL = f"""
create or replace temp table bh_pieces as
with pieces as (
    select cal, day, a1 as a, b1 - a1 as len, cum_us as cum_start from bh_calendar
    union all select cal, day, a2, b2 - a2, cum_us + (b1 - a1) from bh_calendar
    union all select cal, day, a3, b3 - a3, cum_us + (b1 - a1) + (b2 - a2) from bh_calendar
)
select cal, unnest(range(cum_start // {_BH_HOUR}, (cum_start + len - 1) // {_BH_HOUR} + 1))
        as k,
    day::timestamp + to_microseconds(a) as start_at, cum_start, len
from pieces where len > 0
"""


def _insert_calendar(con: duckdb.DuckDBPyConnection, name: str, cal: BusinessCalendar,
                     first: date, last: date) -> None:
    """Add calendar ``cal``'s days from ``first`` to ``last`` (UTC) to bh_calendar."""
    opens = [None if h is None else h[0] * 1_000_000 for h in cal.hours]
    closes = [None if h is None else h[1] * 1_000_000 for h in cal.hours]
    con.execute(
        """
        insert into bh_calendar
        with days as (
            select cast(d as date) as day
            from range($first::timestamp, $last::timestamp, interval 1 day) r(d)
        ),
        open_local as (
            select day, list_extract($opens::bigint[], isodow(day)) as o,
                list_extract($closes::bigint[], isodow(day)) as c
            from days where not list_contains($holidays::date[], day)
        ),
        open_utc as (  -- each local day's open interval as UTC epoch microseconds
            select day,
                epoch_us(timezone('UTC', timezone($tz, day::timestamp + to_microseconds(o))))
                    as s,
                epoch_us(timezone('UTC', timezone($tz, day::timestamp + to_microseconds(c))))
                    as e
            from open_local where o is not null
        ),
        pieces as (  -- clipped to each UTC day it touches (offsets are under a day)
            select day, greatest(s - epoch_us(day), 0) as a,
                least(e - epoch_us(day), 86400000000) as b
            from (select u.day + cast(k as integer) as day, s, e
                  from open_utc u, range(-1, 2) r(k))
        ),
        per_day as (
            select day, list(a order by a) as a, list(b order by a) as b, sum(b - a) as open_us
            from pieces where b > a group by day
        )
        select $name, d.day,
            coalesce(p.a[1], 0)::bigint as a1, coalesce(p.b[1], 0)::bigint as b1,
            coalesce(p.a[2], 0)::bigint as a2, coalesce(p.b[2], 0)::bigint as b2,
            coalesce(p.a[3], 0)::bigint as a3, coalesce(p.b[3], 0)::bigint as b3,
            coalesce(sum(p.open_us) over (
                order by d.day rows between unbounded preceding and 1 preceding), 0)::bigint
                as cum_us
        from days d left join per_day p on p.day = d.day
        """,
        {
            "holidays": list(cal.holidays), "opens": opens, "closes": closes,
            "tz": cal.timezone, "name": name,
            # local days a day either side of the window's UTC ones
            "first": datetime.combine(first - timedelta(days=2), time()),
            "last": datetime.combine(last + timedelta(days=3), time()),
        },
    )


# Business microseconds up to the naive UTC moment {ts}, by its UTC calendar day {b}.
_BH_AT = "({b}.cum_us" + "".join(
    f" + greatest(0, least({{b}}.b{k}, epoch_us({{ts}}) - epoch_us(cast({{ts}} as date)))"
    f" - {{b}}.a{k})" for k in (1, 2, 3)) + ")"


def _sla_targets(con: duckdb.DuckDBPyConnection, settings: Settings, tables: set[str],
                 segments: list | None) -> None:
    """Temp table ``sla_targets``: the policy targets of every priority x segment in use (x
    channel and x team, keyed as ``_sla_dimensions`` says, when a policy restricts them),
    and the business-hours calendar of each target's policy (null: elapsed time)."""
    segment_set = {seg for seg in (segments or []) if seg is not None} | {"Unknown"}
    if "customers" in tables:
        segment_set |= {
            r[0] for r in con.execute(
                "select distinct segment from customers where segment is not null"
            ).fetchall()
        }
    # every priority x segment the tickets can have; a few rows, so policies stay in Python
    dims = _sla_dimensions(settings)
    channels = [""] + dims["channel"] if "channel" in dims else [""]
    teams = [""] + dims["team"] if "team" in dims else [""]
    kinds = [(p, seg, ch, team) for p in PRIORITIES for seg in sorted(segment_set)
             for ch in channels for team in teams]
    rows = []
    for priority, segment, ch, team in kinds:
        kind = (priority, segment, ch or None, team or None)  # '': not listed, as no value
        fr, res, name = settings.sla_targets(*kind)
        rows.append((priority, segment, ch, team, name or None, fr, res,
                     *settings.sla_calendars(*kind)))
    targets = pd.DataFrame(
        rows,
        columns=[
            "priority", "segment", "channel", "team", "policy", "first_response_target_min",
            "resolution_target_h", "first_response_calendar", "resolution_calendar",
        ],
    ).drop(columns=[d for d in ("channel", "team") if d not in dims]).astype(
        {"first_response_target_min": "float64", "resolution_target_h": "float64",
         "first_response_calendar": "object", "resolution_calendar": "object"})
    con.register("sla_targets_df", targets)
    # typed, for a list of calendars that is all null
    con.execute("create or replace temp table sla_targets as select * replace ("
                "cast(first_response_calendar as varchar) as first_response_calendar, "
                "cast(resolution_calendar as varchar) as resolution_calendar) "
                "from sla_targets_df")
    con.unregister("sla_targets_df")


# When a ticket's SLA flag turns: its stored deadline (the source's due time, else the
# policy target counted in elapsed or business time), as the derivation judges it.
_DEADLINES = (
    ("sla_first_response_met", "t.first_response_at is null", "sla_first_response_deadline"),
    ("sla_resolution_met", "t.status <> 'closed'", "sla_resolution_deadline"),
)


def _pass_deadlines(con: duckdb.DuckDBPyConnection, settings: Settings,
                    previous: datetime | None, as_of: datetime | None,
                    window: tuple[datetime, datetime] | None = None) -> dict[str, int]:
    """Set the SLA flags of the unanswered (unresolved) tickets whose deadline is now past
    to false, in place: the rest of such a ticket's row does not depend on "now", so it
    need not be derived again. The tickets about to be replaced (``old_rows``) are left
    alone. Returns the flags turned, per column (each was null).

    A deadline passed by the previous "now" turned its flag then, so only deadlines from
    the previous "now" on are read; deadlines follow creation times, so the row groups of
    the older tickets are skipped on the deadline column's own statistics.
    """
    out: dict[str, int] = {}
    if as_of is None or (previous is not None and as_of <= previous):
        return out  # "now" did not move
    for column, waiting, deadline in _DEADLINES:
        sql = (f"update tickets t set {column} = false where {waiting} "
               f"and {column} is null and t.{deadline} < ? "
               "and t.rowid not in (select __rowid from old_rows)")
        params: list = [as_of]
        if window is not None:  # a ticket with an implausible moment has no SLA verdict
            sql += "".join(f" and coalesce(t.{c} between ? and ?, true)"
                           for c in ("created_at", "first_response_at", "resolved_at"))
            params += [*window, *window, *window]
        if previous is not None:
            sql += f" and t.{deadline} >= ?"
            params.append(previous)
        n = con.execute(sql, params).fetchall()[0][0]
        if n:
            out[column] = int(n)
    return out
