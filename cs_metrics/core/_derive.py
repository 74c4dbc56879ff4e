"""What the derived tables are: the SQL that derives the query table ``tickets`` (SLA targets
and met flags, business time, representatives, customers, surveys, status activity) from the
canonical rows, and the canonical view of it."""

from __future__ import annotations

from datetime import datetime

import duckdb

from cs_metrics.core._derive_sla import _BH_AT, _BH_HOUR

_DERIVED_SQL = """
create or replace table tickets as
with src as (
    select t.*,
        coalesce(t.customer_segment, c.segment, 'Unknown') as seg,
        coalesce(t.customer_location, c.city) as cust_loc,
        coalesce(t.created_at between $first and $last
                 and coalesce(t.first_response_at between $first and $last, true)
                 and coalesce(t.resolved_at between $first and $last, true), false)
            as plausible{sla_keys}
    from {source} t
    left join {customers} c on c.customer_id = t.customer_id{sla_team_join}
),
fb as (
    -- survey sums per ticket, so feedback metrics need no join at query time
    select ticket_id, count(*) as fb_n,
        count(csat) as fb_csat_n, sum(csat) as fb_csat_sum,
        count(*) filter (where csat >= 4) as fb_csat_good,
        count(nps) as fb_nps_n, count(*) filter (where nps >= 9) as fb_nps_promoters,
        count(*) filter (where nps <= 6) as fb_nps_detractors,
        count(ces) as fb_ces_n, sum(ces) as fb_ces_sum,
        -- comment sentiment (VADER compound, scored once per text at load)
        count(s.sentiment) as fb_sent_n, sum(s.sentiment) as fb_sent_sum,
        count(*) filter (where s.sentiment <= -0.05) as fb_sent_neg
    from {feedback} f left join {sentiment} s on s.comment = f.comment
    group by ticket_id
),{levels}
final as (
    select
        s.ticket_id, s.created_at, s.status, s.first_response_at, s.resolved_at,
        coalesce(s.priority, 'normal') as priority,
        s.channel, s.domain, s.location, s.location_lat, s.location_lon,
        s.customer_id, s.cust_loc as customer_location, s.seg as customer_segment,
        s.rep_id, r.name as rep_name, r.team, r.manager,
        s.contacts, s.reopened_count, s.handle_time_s, s.subject,
        coalesce(s.is_test, false) as is_test, s.tags,
        -- as the source gave them, so the canonical rows (view tickets_src) can be rebuilt
        s.customer_location as src_customer_location,
        s.customer_segment as src_customer_segment,
        cast(s.created_at as date) as created_date,
        -- a duration from or to a moment outside the plausible window is unknown: one ticket
        -- of year 0001 would otherwise move an average resolution by a million hours
        case when s.plausible then date_diff('second', s.created_at, s.first_response_at)
            / 60.0 end as first_response_min,
        case when s.status = 'closed' and s.plausible
            then date_diff('second', s.created_at, s.resolved_at) / 3600.0 end as resolution_h,
        -- the same durations counted only inside the open hours of the calendar of the
        -- policy giving the target (`default` when it names none)
        case when s.plausible then ({bh_first} - {bh_created}) / 60000000.0 end
            as first_response_business_min,
        case when s.status = 'closed' and s.plausible
            then ({bh_resolved} - {bh_created_res}) / 3600000000.0 end as resolution_business_h,
        -- closed without a close time: resolved at an unknown moment, so never in backlog
        case when s.status = 'closed' then coalesce(s.resolved_at, s.created_at) end
            as effective_resolved_at,
        p.policy as sla_policy,
        -- a source due time replaces the policy target, so the live panel and the alerts
        -- that read the target judge waiting tickets by it too
        coalesce(date_diff('microsecond', s.created_at, s.first_response_due_at) / 60000000.0,
                 p.first_response_target_min) as sla_first_response_target_min,
        coalesce(date_diff('microsecond', s.created_at, s.resolution_due_at) / 3600000000.0,
                 p.resolution_target_h) as sla_resolution_target_h,
        -- the last moment a response (resolution) still meets the SLA, read by the
        -- incremental refresh, the live panel and the alerts
        {fr_deadline} as sla_first_response_deadline,
        {res_deadline} as sla_resolution_deadline,
        case
            when not s.plausible then null
            when s.first_response_due_at is not null then case
                when s.first_response_at is not null
                    then s.first_response_at <= s.first_response_due_at
                when s.first_response_due_at < $as_of then false end
            when s.first_response_at is not null and p.first_response_calendar is not null
                then {bh_first} - {bh_created}
                     <= cast(p.first_response_target_min * 60000000 as bigint)
            when s.first_response_at is not null
                then date_diff('second', s.created_at, s.first_response_at) / 60.0
                     <= p.first_response_target_min
            when {fr_deadline} < $as_of then false
        end as sla_first_response_met,
        case
            when not s.plausible then null
            when s.resolution_due_at is not null then case
                when s.status = 'closed' and s.resolved_at is not null
                    then s.resolved_at <= s.resolution_due_at
                when s.status <> 'closed' and s.resolution_due_at < $as_of then false end
            when s.status = 'closed' and s.resolved_at is not null
                    and p.resolution_calendar is not null
                then {bh_resolved} - {bh_created_res}
                     <= cast(p.resolution_target_h * 3600000000 as bigint)
            when s.status = 'closed' and s.resolved_at is not null
                then date_diff('second', s.created_at, s.resolved_at) / 3600.0
                     <= p.resolution_target_h
            when s.status <> 'closed' and {res_deadline} < $as_of then false
        end as sla_resolution_met,
        s.first_response_due_at, s.resolution_due_at,
        -- judged by the source's own due times (either one), said on SLA pages and reports
        (s.first_response_due_at is not null or s.resolution_due_at is not null)
            as sla_from_source,
        coalesce(fb.fb_n, 0) > 0 as has_feedback,
        fb.fb_n, fb.fb_csat_n, fb.fb_csat_sum, fb.fb_csat_good, fb.fb_nps_n,
        fb.fb_nps_promoters, fb.fb_nps_detractors, fb.fb_ces_n, fb.fb_ces_sum,
        fb.fb_sent_n, fb.fb_sent_sum, fb.fb_sent_neg,
        -- activity from the status history: set after the derivation (_store_activity)
        null::bigint as ev_n, null::bigint as ev_reassignments, null::bigint as ev_reopens,
        null::bigint as ev_in_progress_n, null::double as ev_open_h,
        null::double as ev_in_progress_h
    from {rows} s
    left join fb on fb.ticket_id = s.ticket_id
    left join {representatives} r on r.rep_id = s.rep_id
    left join sla_targets p on {sla_join}
    {created_join}left join bh_calendar bf
        on bf.cal = coalesce(p.first_response_calendar, 'default')
        and bf.day = cast(s.first_response_at as date)
    left join bh_calendar br on br.cal = coalesce(p.resolution_calendar, 'default')
        and br.day = cast(s.resolved_at as date){business_joins}
)
select * from final
"""


def _empty_or(wh_tables: set[str], name: str, columns: str) -> str:
    return name if name in wh_tables else f"(select {columns} where false)"


# The canonical rows of query-table rows (``{rows}``: tickets or a table of its rows).
_CANONICAL_SQL = """
select ticket_id, created_at, status, first_response_at, resolved_at, priority, channel, domain,
    location, location_lat, location_lon, customer_id,
    src_customer_location as customer_location, src_customer_segment as customer_segment,
    rep_id, contacts, reopened_count, handle_time_s, subject, is_test, tags,
    first_response_due_at, resolution_due_at
from {rows}
"""


SRC_VIEW_SQL = "create or replace view tickets_src as" + _CANONICAL_SQL.format(rows="tickets")


# Survey rows with their ticket's date and dimensions, so feedback figures filter and group on
# one table like the registry does on ``tickets`` (a join per query costs seconds at 10M).
FEEDBACK_FACTS_SELECT = """
select f.feedback_id, f.ticket_id, f.submitted_at, f.csat, f.nps, f.ces, f.comment,
    t.created_at, t.created_date, t.is_test, t.status, t.channel, t.priority, t.domain,
    t.location, t.customer_location, t.customer_segment, t.rep_id, t.rep_name, t.team,
    t.manager, t.tags
from feedback f join tickets t on t.ticket_id = f.ticket_id
"""


# The data's "now" is its latest plausible moment (params: the window's first and last): a
# ticket dated 9999 must not make every default view end in 9999.
_LATEST_PLAUSIBLE = " greatest(" + ", ".join(
    f"max({c}) filter (where {c} between $1 and $2)"
    for c in ("created_at", "first_response_at", "resolved_at")) + ")"


def _derive_params(as_of: datetime | None, window: tuple[datetime, datetime],
                   sla_dims: dict[str, list[str]] | None = None) -> dict:
    params = {"as_of": as_of or datetime(1970, 1, 1), "first": window[0], "last": window[1]}
    # the names the SLA policies list, as parameters (never SQL text); only those the SQL
    # reads: DuckDB refuses a parameter it does not use
    for dim, names in (sla_dims or {}).items():
        params[f"sla_{dim}s"] = names
    return params


# Activity per ticket from its status history (README "Agent activity"): the events in order
# (ties: open, in progress, closed; then by rep), each with the next event and the last
# representative named before it, summed per ticket. Kept out of the derivation's big join:
# joined there, a table as long as the tickets made the join emit rows out of their order,
# and re-sorting the tickets tripled a 10M load; an update keeps the rows where they are.
_ACTIVITY_SQL = """
create or replace temp table derive_activity as
with ev_seq as (
    -- status events in order (ties: open, in progress, closed; then by rep), each with the
    -- next event and the last representative named before it
    select ticket_id, status, rep_id, event_at,
        row_number() over w as seq,
        lead(event_at) over w as next_at,
        lead(status) over w as next_status,
        last_value(rep_id ignore nulls) over (w rows between unbounded preceding
                                              and 1 preceding) as prev_rep
    from {events} e
    window w as (partition by ticket_id order by event_at,
                 case status when 'open' then 0 when 'in_progress' then 1 else 2 end,
                 rep_id nulls first)
),
ev as (
    -- activity per ticket from its status history (README "Agent activity")
    select ticket_id, count(*) as ev_n,
        count(*) filter (where rep_id <> prev_rep) as ev_reassignments,
        count(*) filter (where status = 'closed' and next_status <> 'closed') as ev_reopens,
        count(*) filter (where status = 'in_progress') as ev_in_progress_n,
        arg_max(status, seq) = 'closed' as ev_ended_closed,
        coalesce(sum(date_diff('microsecond', event_at, next_at))
                 filter (where status = 'open'), 0) / 3600000000.0 as ev_open_h,
        coalesce(sum(date_diff('microsecond', event_at, next_at))
                 filter (where status = 'in_progress'), 0) / 3600000000.0
            as ev_in_progress_h
    from ev_seq
    group by ticket_id
)
select * from ev
"""


def _store_activity(con: duckdb.DuckDBPyConnection, table: str, events: str | None) -> None:
    """Set ``table``'s activity columns from the status events ``events`` (none: they stay
    null, missing rather than zero)."""
    if events is None:
        return
    con.execute(_ACTIVITY_SQL.replace("{events}", events))
    con.execute(f"""
        update {table} set ev_n = a.ev_n, ev_reassignments = a.ev_reassignments,
            ev_reopens = a.ev_reopens, ev_in_progress_n = a.ev_in_progress_n,
            -- time in a status is known once the history is over: the ticket is closed and
            -- its last event closed it (an open-ended last interval would move with "now")
            ev_open_h = case when {table}.status = 'closed' and a.ev_ended_closed
                             then a.ev_open_h end,
            ev_in_progress_h = case when {table}.status = 'closed' and a.ev_ended_closed
                                    then a.ev_in_progress_h end
        from derive_activity a where a.ticket_id = {table}.ticket_id""")
    con.execute("drop table if exists temp.main.derive_activity")


def _derived_sql(tables: set[str], source: str, feedback: str | None = None,
                 business_sla: bool = False, split: bool = False,
                 sla_dims: tuple[str, ...] = ()) -> str:
    """The derivation of ``source``'s tickets; ``feedback`` narrows the surveys read;
    ``business_sla`` when some SLA policy counts business time (see _business_sla),
    ``split`` when a ticket kind's resolution calendar differs from its first-response one
    (see _split_calendars), and ``sla_dims`` the dimensions some policy restricts
    (``channel``, ``team``: see _sla_dimensions; the derivation's parameters then carry
    their names)."""
    representatives = _empty_or(
        tables, "representatives", "null::varchar as rep_id, null::varchar as name, "
        "null::varchar as team, null::varchar as manager"
    )
    # a ticket's SLA kind: priority x segment, and its channel / its representative's team
    # (the listed name, else '') where a policy restricts them; every sla_targets join
    # uses these keys, so the rebuild and the incremental refresh pick the same targets
    sla_join = "p.priority = coalesce(s.priority, 'normal') and p.segment = s.seg"
    sla_keys, sla_team_join = "", ""
    for dim in sla_dims:
        value = "t.channel" if dim == "channel" else "rt.team"
        sla_keys += (f",\n        case when list_contains($sla_{dim}s::varchar[], {value}) "
                     f"then {value} else '' end as sla_{dim}")
        sla_join += f" and p.{dim} = s.sla_{dim}"
        if dim == "team":
            sla_team_join = f"\n    left join {representatives} rt on rt.rep_id = t.rep_id"
    bh_created = _BH_AT.format(b="bc", ts="s.created_at")
    created_join = ("left join bh_calendar bc on bc.cal = "
                    "coalesce(p.first_response_calendar, 'default')\n"
                    "        and bc.day = cast(s.created_at as date)\n    ")
    rows, levels = "src", ""
    if business_sla:
        # the business time at creation is read many times below (durations, deadlines,
        # verdicts, the joins that find the deadlines): computed once per ticket, before
        levels = ("\nlv as (\n    select s.*, " + bh_created + " as bh_c"
                  + (", " + _BH_AT.format(b="bd", ts="s.created_at") + " as bh_cr"
                     if split else "")
                  + "\n    from src s\n    left join sla_targets p on " + sla_join + "\n    "
                  + created_join
                  + ("left join bh_calendar bd on bd.cal = coalesce(p.resolution_calendar, "
                     "'default')\n        and bd.day = cast(s.created_at as date)\n"
                     if split else "")
                  + "),")
        rows, created_join, bh_created = "lv", "", "s.bh_c"
    bh_created_res = "s.bh_cr" if split else bh_created
    deadlines, joins = {}, ""
    for name, target, scale, cal, due, alias, created in (
            ("fr_deadline", "first_response_target_min", 60000000, "first_response_calendar",
             "first_response_due_at", "qf", bh_created),
            ("res_deadline", "resolution_target_h", 3600000000, "resolution_calendar",
             "resolution_due_at", "qr", bh_created_res)):
        elapsed = f"s.created_at + to_microseconds(cast(p.{target} * {scale} as bigint))"
        business = ""
        if business_sla:
            # the business microseconds at the deadline, and the open piece they fall in
            level = f"({created} + cast(p.{target} * {scale} as bigint))"
            business = (f" else {alias}.start_at + "
                        f"to_microseconds({level} - {alias}.cum_start)")
            joins += (f"\n    left join bh_pieces {alias} on {alias}.cal = p.{cal}"
                      f"\n        and {alias}.k = {level} // {_BH_HOUR}"
                      f"\n        and {level} >= {alias}.cum_start"
                      f" and {level} < {alias}.cum_start + {alias}.len")
        deadlines[name] = (f"coalesce(s.{due}, case when p.{cal} is null "
                           f"then {elapsed}{business} end)")
    sql = _DERIVED_SQL.format(
        source=source,
        bh_created=bh_created,
        bh_created_res=bh_created_res,
        bh_first=_BH_AT.format(b="bf", ts="s.first_response_at"),
        bh_resolved=_BH_AT.format(b="br", ts="s.resolved_at"),
        business_joins=joins,
        levels=levels,
        rows=rows,
        created_join=created_join,
        sla_keys=sla_keys,
        sla_team_join=sla_team_join,
        sla_join=sla_join,
        **deadlines,
        customers=_empty_or(
            tables, "customers", "null::varchar as customer_id, null::varchar as segment, "
            "null::varchar as city"
        ),
        representatives=representatives,
        feedback=_empty_or(
            tables, "feedback", "null::varchar as ticket_id, null::integer as csat, "
            "null::integer as nps, null::integer as ces, null::varchar as comment"
        ),
        sentiment=_empty_or(
            tables, "comment_sentiment", "null::varchar as comment, null::double as sentiment"
        ),
    )
    return sql if feedback is None else sql.replace(
        "from feedback f left join", f"from {feedback} f left join", 1)


