"""The server's state for an operator (``python -m cs_metrics status``): the warehouse and its
as-of, the last load and its outcome, the inbox's waiting batches, the last alert evaluation,
the next scheduled reports and the deliveries that failed in the last day.

Everything is read from the warehouse (opened read-only) and the settings; ``attention``
lists what an operator should look at (a failed last load, deliveries given up on in the last
day), and the command exits 1 when it is not empty, for monitoring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from cs_metrics.core.settings import Settings
from cs_metrics.core.warehouse import Warehouse

__all__ = ["ServerStatus", "server_status"]

FAILURE_WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class ServerStatus:
    """What ``server_status`` found; times naive UTC (as stored)."""

    warehouse: dict[str, Any]
    last_load: dict[str, Any] | None
    inbox: dict[str, Any] | None
    alerts: dict[str, Any]
    schedules: list[dict[str, Any]]
    failed_deliveries: list[dict[str, Any]]
    attention: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable({
            "warehouse": self.warehouse, "last_load": self.last_load, "inbox": self.inbox,
            "alerts": self.alerts, "schedules": self.schedules,
            "failed_deliveries": self.failed_deliveries, "attention": self.attention,
            "ok": not self.attention,
        })

    def text(self) -> str:
        """Plain lines for a terminal."""
        w = self.warehouse
        lines = [f"warehouse      {w['path']}",
                 f"data as of     {_t(w['as_of'])} ({w['tickets']:,d} tickets)"]
        if self.last_load is None:
            lines.append("last load      none yet")
        else:
            ld = self.last_load
            lines.append(f"last load      {ld['outcome']} at {_t(ld['at'])}: {ld['what']}")
        if self.inbox is not None:
            waiting = self.inbox["waiting"]
            names = ", ".join(self.inbox["batches"][:5])
            more = " …" if len(self.inbox["batches"]) > 5 else ""
            lines.append(f"inbox          {self.inbox['path']}: {waiting} batch(es) waiting"
                         + (f" ({names}{more})" if waiting else ""))
        a = self.alerts
        lines.append(f"alerts         last evaluated {_t(a['last_run'])}"
                     + (f", next {_t(a['next_run'])}" if a.get("next_run") else "")
                     + (f", {a['raised']} raised then" if a.get("raised") is not None else ""))
        if not self.schedules:
            lines.append("schedules      none")
        for s in self.schedules:
            last = f", last {s['last_outcome']}" if s.get("last_outcome") else ""
            lines.append(f"schedule       {s['name']}: next {_t(s['next_run_utc'])} UTC "
                         f"({_t(s['next_run_local'])} {s['timezone']}){last}")
        lines.append(f"failed deliveries in the last day: {len(self.failed_deliveries)}")
        for f in self.failed_deliveries[:10]:
            lines.append(f"  {_t(f['at'])} {f['kind']} {f['what']}: {f['error']}")
        lines.append("status         " + ("OK" if not self.attention else
                                          "NEEDS ATTENTION: " + "; ".join(self.attention)))
        return "\n".join(lines) + "\n"


def _t(value: Any) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "never"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if value is not None and not isinstance(value, str) and pd.isna(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _last_load(wh: Warehouse) -> dict[str, Any] | None:
    """The latest load: an ``ingest_log`` load, or a batch the inbox failed to load after it."""
    load = None
    if wh.has_table("ingest_log"):
        df = wh.df(
            "select ingest_id, max(ingested_at) as loaded_at, sum(rows_loaded) as loaded, "
            "sum(rows_rejected) as rejected, string_agg(distinct table_name, ', ') as tables "
            "from ingest_log group by ingest_id order by loaded_at desc limit 1")
        if len(df):
            r = df.iloc[0]
            load = {"at": r["loaded_at"], "outcome": "ok",
                    "what": f"{int(r['loaded']):,d} rows loaded, {int(r['rejected']):,d} "
                            f"rejected ({r['tables']})", "error": ""}
    if wh.has_table("inbox_manifest"):
        df = wh.df("select name, loaded_at, message from inbox_manifest where status = 'failed' "
                   "order by loaded_at desc limit 1")
        if len(df) and (load is None or df.iloc[0]["loaded_at"] > load["at"]):
            r = df.iloc[0]
            load = {"at": r["loaded_at"], "outcome": "failed",
                    "what": f"inbox batch {r['name']}: {r['message']}", "error": r["message"]}
    return load


def _inbox(wh: Warehouse, inbox: str | Path) -> dict[str, Any]:
    from cs_metrics.ingestion.inbox import _scan, read_manifest

    path = Path(inbox)
    if not path.is_dir():
        return {"path": str(path), "waiting": 0, "batches": [],
                "error": "the inbox folder does not exist"}
    entries, _ = _scan(path)
    seen = set(read_manifest(wh)["name"])
    # new names only: a batch rewritten under a seen name shows when it loads
    waiting = [e.name for e in entries if e.name not in seen]
    return {"path": str(path), "waiting": len(waiting), "batches": waiting}


def _alerts(wh: Warehouse, settings: Settings) -> dict[str, Any]:
    """The server's scheduled evaluations (last, next, the last one's error), and what the
    latest evaluation of any kind raised."""
    from cs_metrics.ops.alerts import alert_schedule, alert_schedule_error

    last, nxt = alert_schedule(wh, settings)
    out: dict[str, Any] = {"last_run": last, "next_run": nxt,
                           "error": alert_schedule_error(wh), "raised": None}
    if wh.has_table("alert_runs"):
        df = wh.df("select ran_at, raised from alert_runs order by ran_at desc limit 1")
        if len(df):
            out["raised"] = int(df.iloc[0]["raised"])
            if last is None:  # evaluated by `alerts --once` or after a load, not on schedule
                out["last_run"] = df.iloc[0]["ran_at"]
    return out


def _failures(wh: Warehouse, since: datetime) -> list[dict[str, Any]]:
    """Deliveries given up on since ``since``: scheduled reports (no retry left) and alert
    notifications (status failed; "retrying" tries are still under way)."""
    out: list[dict[str, Any]] = []
    if wh.has_table("schedule_runs"):
        df = wh.df("select name, slot, started_at, error, recipients from schedule_runs "
                   "where outcome = 'failed' and retry_at is null and started_at >= ? "
                   "order by started_at desc", [since])
        out += [{"at": r.started_at, "kind": "report", "what": f"{r.name} ({r.recipients})",
                 "error": r.error} for r in df.itertuples()]
    if wh.has_table("alert_deliveries"):
        df = wh.df('select distinct "at", channel, target, error from alert_deliveries '
                   "where status = 'failed' and \"at\" >= ? order by \"at\" desc", [since])
        out += [{"at": r.at, "kind": f"alert {r.channel}", "what": r.target,
                 "error": r.error} for r in df.itertuples()]
    return sorted(out, key=lambda f: f["at"], reverse=True)


def server_status(wh: Warehouse, settings: Settings, now: datetime,
                  inbox: str | Path | None = None) -> ServerStatus:
    """The state of the server behind ``wh`` at ``now`` (naive UTC)."""
    from cs_metrics.ops.schedules import last_outcomes, next_runs

    span = wh.created_range() if wh.has_table("tickets") else None
    tickets = int(wh.scalar("select count(*) from tickets")) if span else 0
    warehouse = {"path": str(wh.path), "as_of": wh.as_of() if span else None,
                 "tickets": tickets, "data_from": span[0] if span else None,
                 "data_to": span[1] if span else None}
    load = _last_load(wh)
    box = _inbox(wh, inbox) if inbox else None
    outcomes = last_outcomes(wh)
    schedules = []
    for row in next_runs(settings, now).to_dict("records"):
        last = outcomes.get(row["name"])
        row["last_outcome"] = (f"{last.outcome} at {_t(last.started_at)}" if last else None)
        schedules.append(row)
    failures = _failures(wh, now - FAILURE_WINDOW)
    attention = []
    if load is not None and load["outcome"] == "failed":
        attention.append(f"the last load failed: {load['what']}")
    if failures:
        attention.append(f"{len(failures)} deliveries failed in the last day")
    alerts = _alerts(wh, settings)
    if alerts["error"]:
        attention.append(f"the last scheduled alert evaluation failed: {alerts['error']}")
    if box is not None and box.get("error"):
        attention.append(f"the inbox {box['path']} does not exist")
    return ServerStatus(warehouse, load, box, alerts, schedules, failures, attention)
