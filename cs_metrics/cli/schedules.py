"""``schedules``: list the scheduled reports with their next run, or run one now."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cs_metrics.cli._common import _db_help, _existing_db, _utcnow
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.paths import default_db_path


def cmd_schedules(args: argparse.Namespace) -> int:
    from cs_metrics.core.settings import load_settings
    from cs_metrics.core.warehouse import Warehouse
    from cs_metrics.ops import schedules

    settings = load_settings(args.settings) if args.settings else load_settings()
    now = _utcnow()
    if args.action is not None:
        if args.action != "run" or not args.name:
            raise CsMetricsError(
                f"Unknown schedules action {args.action!r}; use `schedules` to list them or "
                "`schedules run NAME` to run one now."
            )
        schedules.find_schedule(settings, args.name)  # an unknown name before the warehouse
        wh = Warehouse(_existing_db(args))
        try:
            run = schedules.run_now(wh, settings, args.name, now)
        finally:
            wh.close()
        if not run.ok:
            raise CsMetricsError(
                f"The scheduled report {run.name!r} was not delivered: {run.error}")
        print(f"emailed the report {run.name!r} ({run.period}) to {', '.join(run.recipients)}")
        return 0
    if not settings.schedules:
        print(f"No schedules in {settings.source}; add [[schedules]] entries (see the README's "
              "Reports section).")
        return 0
    df = schedules.next_runs(settings, now)
    db = Path(args.db) if args.db else default_db_path()
    if db.exists():
        try:
            wh = Warehouse(db, read_only=True)
            try:
                last = schedules.last_outcomes(wh)
            finally:
                wh.close()
        except CsMetricsError as exc:
            print(f"note: the last outcomes are not shown: {exc}", file=sys.stderr)
        else:
            df["last_outcome"] = [
                f"{r.outcome} {r.started_at:%Y-%m-%d %H:%M}" + (f": {r.error}" if r.error else "")
                if (r := last.get(n)) else "" for n in df["name"]]
    for col in ("next_run_utc", "next_run_local"):
        df[col] = df[col].map(lambda t: f"{t:%Y-%m-%d %H:%M}")
    print(df.to_string(index=False))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    db_help = _db_help()
    sc = sub.add_parser("schedules", help="list the scheduled reports with their next run, "
                                          "or run one now: schedules run NAME")
    sc.add_argument("action", nargs="?", metavar="run", help="run the schedule NAME now")
    sc.add_argument("name", nargs="?", help="with run: the schedule's name")
    sc.add_argument("--settings", help="settings TOML ([[schedules]], SMTP)")
    sc.add_argument("--db", help=db_help)
    sc.set_defaults(func=cmd_schedules)
