"""Where alerts live: the tables ``alerts``, ``alert_mutes`` and ``alert_runs``; reading,
acknowledging and muting them.

Writes go through the process that holds the warehouse read-write; acknowledgements and
mutes are audited in the same transaction (``cs_metrics.core.audit``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import duckdb
import pandas as pd

from cs_metrics.core import audit
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.settings import Settings
from cs_metrics.core.warehouse import Warehouse, catalog_changed
from cs_metrics.ops.alert_model import RULES, Alert, _has
from cs_metrics.ops.alert_rules import _last_run
from cs_metrics.ops.notify import ensure_deliveries_table

__all__ = [
    "acknowledge",
    "active_alerts",
    "alert_history",
    "mark_in_app_shown",
    "mute",
    "mutes",
    "pending_in_app",
    "unmute",
]

# --- storage -----------------------------------------------------------------------------------

_DDL = (
    """create table if not exists alerts (
        occurrence_id varchar, alert_id varchar, seq integer, rule varchar, severity varchar,
        title varchar, message varchar, figures varchar, link varchar,
        created_at timestamp, last_seen_at timestamp, seen_count integer, muted boolean,
        acknowledged_at timestamp, acknowledged_by varchar, resolved_at timestamp)""",
    """create table if not exists alert_mutes (
        target varchar, until timestamp, muted_by varchar, muted_at timestamp,
        reason varchar)""",
    """create table if not exists alert_runs (
        evaluated_at timestamp, ran_at timestamp, raised integer, suppressed integer,
        muted integer, resolved integer, rules varchar)""",
)

_ALERT_COLUMNS = ["occurrence_id", "alert_id", "seq", "rule", "severity", "title", "message",
                  "figures", "link", "created_at", "last_seen_at", "seen_count", "muted",
                  "acknowledged_at", "acknowledged_by", "resolved_at"]


def _writable(wh: Warehouse, what: str) -> duckdb.DuckDBPyConnection:
    if wh.read_only:
        raise CsMetricsError(
            f"Cannot {what}: the warehouse {wh.path} is open read-only; alerts are stored by "
            "the process that refreshes it (the app, or `python -m cs_metrics alerts --once` "
            "while the app is stopped)."
        )
    con = wh.connection()
    try:
        for ddl in _DDL:
            con.execute(ddl)
        ensure_deliveries_table(con)
    except duckdb.Error as exc:
        raise CsMetricsError(f"Cannot create the alert tables in {wh.path}: {exc}") from exc
    finally:
        catalog_changed()
    return con


def _in_scope(wh: Warehouse, alert_id: str) -> Warehouse:
    """The warehouse to write an acknowledgement to, once the alert is one the caller's
    scope sees (``cs_metrics.core.access``); the scope's own connections only read."""
    if wh.scope is None:
        return wh
    seen = wh.has_table("alerts") and wh.scalar(
        "select count(*) from alerts where occurrence_id = ? or alert_id = ?",
        [alert_id, alert_id])
    if not seen:
        raise CsMetricsError(
            f"There is no alert {alert_id!r} among those you can see; the ids are listed by "
            "active_alerts (the Alerts page)."
        )
    return wh.base


def _allowed(wh: Warehouse, permission: str, what: str) -> Warehouse:
    """The unscoped warehouse, if the caller's scope may do ``what``."""
    if wh.scope is None:
        return wh
    if not wh.scope.may(permission):
        raise CsMetricsError(f"Your role ({wh.scope.role}) may not {what}.")
    return wh.base


def _muted(con: duckdb.DuckDBPyConnection, alert: Alert, now: datetime) -> bool:
    rows = con.execute(
        "select 1 from alert_mutes where target in (?, ?) and until > ? limit 1",
        [alert.id, alert.rule, now],
    ).fetchall()
    return bool(rows)


def _cooldowns(settings: Settings) -> dict[str, float]:
    a = settings.alerts
    return {
        "outage": a.outage.cooldown_min, "sla_breached": a.sla.cooldown_min,
        "sla_at_risk": a.sla.cooldown_min, "ticket_reopened": a.watch.cooldown_min,
        "vip_closed_unanswered": a.watch.cooldown_min, "csat_drop": a.csat.cooldown_min,
        "emerging_issue": a.emerging.cooldown_min,
    }


def _resolve(
    con: duckdb.DuckDBPyConnection, settings: Settings, now: datetime, ran: list[str],
    firing: set[str],
) -> list[str]:
    resolved: list[str] = []
    state = [r for r in ran if RULES[r].kind == "state"]
    if state:
        # only rules that ran can say a condition cleared
        resolved += [r[0] for r in con.execute(
            "update alerts set resolved_at = ? where resolved_at is null "
            "and rule in (select unnest(?::varchar[])) "
            "and alert_id not in (select unnest(?::varchar[])) returning occurrence_id",
            [now, state, sorted(firing)],
        ).fetchall()]
    events = [name for name, info in RULES.items() if info.kind == "event"]
    resolved += [r[0] for r in con.execute(
        "update alerts set resolved_at = ? where resolved_at is null "
        "and rule in (select unnest(?::varchar[])) and created_at <= ? returning occurrence_id",
        [now, events, now - timedelta(hours=settings.alerts.watch.active_h)],
    ).fetchall()]
    return sorted(resolved)
# --- reading, acknowledging, muting ------------------------------------------------------------


def _clock(wh: Warehouse) -> datetime | None:
    """The data's clock for mutes: the last run, else the as-of moment."""
    return _last_run(wh) or wh.as_of()


def _empty_alerts() -> pd.DataFrame:
    return pd.DataFrame(columns=[*_ALERT_COLUMNS, "deliveries"])


_SEVERITY_RANK = "case severity when 'critical' then 3 when 'warning' then 2 else 1 end"

_WITH_DELIVERIES = """
with last as (
    select occurrence_id, channel, status,
        row_number() over (partition by occurrence_id, channel, target
                           order by attempt desc, "at" desc) as rn
    from alert_deliveries
),
summary as (
    select occurrence_id, string_agg(channel || ': ' || status, ', ' order by channel)
        as deliveries
    from last where rn = 1 group by occurrence_id
),
final as (
    select a.*, s.deliveries from alerts a left join summary s using (occurrence_id)
)
"""


def active_alerts(wh: Warehouse) -> pd.DataFrame:
    """Alerts not acknowledged, not resolved and not muted now, most severe and newest first.

    One row per occurrence with the columns of table ``alerts`` (``figures`` as JSON text)
    plus ``deliveries`` ("email: sent, webhook: failed").
    """
    if not _has(wh, "alerts") or not _has(wh, "alert_deliveries"):
        return _empty_alerts()
    now = _clock(wh)
    return wh.df(
        _WITH_DELIVERIES + f"""
        select * from final f
        where acknowledged_at is null and resolved_at is null
            and not exists (select 1 from alert_mutes m
                            where m.target in (f.alert_id, f.rule) and m.until > ?)
        order by {_SEVERITY_RANK} desc, created_at desc, seq desc
        """,
        [now],
    )


def alert_history(wh: Warehouse, limit: int = 200) -> pd.DataFrame:
    """The latest ``limit`` occurrences, acknowledged, resolved and muted ones included."""
    if not _has(wh, "alerts") or not _has(wh, "alert_deliveries"):
        return _empty_alerts()
    return wh.df(
        _WITH_DELIVERIES + "select * from final order by created_at desc, seq desc limit ?",
        [int(limit)],
    )


def acknowledge(wh: Warehouse, alert_id: str, by: str, at: datetime | None = None, *,
                role: str = "") -> int:
    """Acknowledge an occurrence (``id#n``) or every unacknowledged occurrence of an alert id.

    Returns how many were newly acknowledged (0 if they already were). When any were, the
    audit log gets an ``alert_acknowledged`` entry by ``by`` (with ``role``) in the same
    transaction.
    """
    if not by or not by.strip():
        raise CsMetricsError("Say who acknowledges the alert (a name or an email address).")
    who = audit.signed_in(wh)  # the scope's issuer and subject, before it is left behind
    wh = _in_scope(wh, alert_id)
    _writable(wh, "acknowledge an alert")
    with audit.appending(wh, "acknowledge an alert") as log:
        known = log.con.execute(
            "select count(*) from alerts where occurrence_id = ? or alert_id = ?",
            [alert_id, alert_id],
        ).fetchall()[0][0]
        if not known:
            raise CsMetricsError(
                f"There is no alert {alert_id!r}; the ids are listed by active_alerts (the "
                "Alerts page)."
            )
        at = at or datetime.now()
        rows = log.con.execute(
            "update alerts set acknowledged_at = ?, acknowledged_by = ? "
            "where (occurrence_id = ? or alert_id = ?) and acknowledged_at is null "
            "returning occurrence_id",
            [at, by.strip(), alert_id, alert_id],
        ).fetchall()
        if rows:
            log.record(by, role, "alert_acknowledged", alert_id,
                       {"occurrences": sorted(r[0] for r in rows), "acknowledged_at": at},
                       **who)
    return len(rows)


def _check_target(target: str) -> None:
    rule = target.split(":", 1)[0]
    if rule not in RULES or (":" in target and not target.split(":", 1)[1]):
        raise CsMetricsError(
            f"Cannot mute {target!r}: name a rule ({', '.join(RULES)}) or an alert id such as "
            "'outage:location=Austin'."
        )


def mute(
    wh: Warehouse,
    key_or_rule: str,
    until: datetime | timedelta,
    by: str,
    reason: str = "",
    *,
    role: str = "",
) -> datetime:
    """Mute an alert id or a whole rule until ``until`` on the data's clock.

    A ``timedelta`` counts from the data's clock (the last run, else the as-of moment). Muted
    alerts are still stored, not notified and not listed as active. Returns the end. The
    audit log gets an ``alert_muted`` entry by ``by`` (with ``role``) in the same transaction.
    """
    _check_target(key_or_rule)
    if not by or not by.strip():
        raise CsMetricsError("Say who mutes the alert (a name or an email address).")
    base = _clock(wh)
    if isinstance(until, timedelta):
        if base is None:
            raise CsMetricsError("The warehouse has no data yet; mute until a date instead.")
        until = base + until
    if base is not None and until <= base:
        raise CsMetricsError(
            f"Cannot mute {key_or_rule!r} until {until:%Y-%m-%d %H:%M}: the data's clock is "
            f"already at {base:%Y-%m-%d %H:%M}; pick a later end."
        )
    who = audit.signed_in(wh)
    wh = _allowed(wh, "mute_alerts", "mute alerts")
    _writable(wh, "mute an alert")
    with audit.appending(wh, "mute an alert") as log:
        log.con.execute(
            "insert into alert_mutes values (?, ?, ?, ?, ?)",
            [key_or_rule, until, by.strip(), datetime.now(), reason],
        )
        log.record(by, role, "alert_muted", key_or_rule, {"until": until, "reason": reason},
                   **who)
    return until


def unmute(wh: Warehouse, key_or_rule: str, *, by: str = "", role: str = "") -> int:
    """Lift every mute of an alert id or rule; returns how many were lifted.

    When any were, the audit log gets an ``alert_unmuted`` entry by ``by`` (``unknown`` when
    not given) in the same transaction.
    """
    who = audit.signed_in(wh)
    wh = _allowed(wh, "mute_alerts", "unmute alerts")
    _writable(wh, "unmute an alert")
    with audit.appending(wh, "unmute an alert") as log:
        lifted = len(log.con.execute(
            "delete from alert_mutes where target = ? returning target", [key_or_rule]
        ).fetchall())
        if lifted:
            log.record((by or "").strip() or audit.UNKNOWN_ACTOR, role, "alert_unmuted",
                       key_or_rule, {"lifted": lifted}, **who)
    return lifted


def mutes(wh: Warehouse) -> pd.DataFrame:
    """Mutes in force on the data's clock: target, until, muted_by, muted_at, reason."""
    if not _has(wh, "alert_mutes"):
        return pd.DataFrame(columns=["target", "until", "muted_by", "muted_at", "reason"])
    return wh.df(
        "select * from alert_mutes where until > ? order by until desc", [_clock(wh)]
    )


def pending_in_app(wh: Warehouse, limit: int = 20) -> pd.DataFrame:
    """Alerts whose in-app notification has not been shown yet (the page toasts them, then
    calls ``mark_in_app_shown``)."""
    if not _has(wh, "alerts") or not _has(wh, "alert_deliveries"):
        return _empty_alerts()
    return wh.df(
        _WITH_DELIVERIES + """
        select * from final f
        where acknowledged_at is null
            and exists (select 1 from alert_deliveries d where d.occurrence_id = f.occurrence_id
                        and d.channel = 'in_app' and d.status = 'pending')
        order by created_at desc, seq desc limit ?
        """,
        [int(limit)],
    )


def mark_in_app_shown(wh: Warehouse, occurrence_ids: Sequence[str]) -> int:
    """Record that the app showed these alerts; returns how many were pending."""
    if not occurrence_ids:
        return 0
    wh = wh.base  # the scope saw them; marking them shown changes nothing else
    con = _writable(wh, "mark alerts as shown")
    return len(con.execute(
        "update alert_deliveries set status = 'shown', \"at\" = ? where channel = 'in_app' "
        "and status = 'pending' and occurrence_id in (select unnest(?::varchar[])) "
        "returning occurrence_id",
        [datetime.now(), list(occurrence_ids)],
    ).fetchall())
