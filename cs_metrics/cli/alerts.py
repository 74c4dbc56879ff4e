"""``alerts``: evaluate the alert rules once, store and notify."""

from __future__ import annotations

import argparse
from pathlib import Path

from cs_metrics.cli._common import _db_help
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.paths import default_db_path


def cmd_alerts(args: argparse.Namespace) -> int:
    from cs_metrics.core.settings import load_settings
    from cs_metrics.core.warehouse import Warehouse
    from cs_metrics.ops.alerts import run_alerts

    settings = load_settings(args.settings) if args.settings else load_settings()
    db = Path(args.db) if args.db else default_db_path()
    if not db.exists():  # a mistyped --db must not leave an empty warehouse behind
        raise CsMetricsError(
            f"There is no warehouse at {db}; run `python -m cs_metrics ingest` first or pass "
            "--db with the right file."
        )
    wh = Warehouse(db)
    try:
        # the default notifier sends in-app, e-mail and webhooks as the settings say
        run = run_alerts(wh, settings, **({"notifier": None} if args.no_notify else {}))
    finally:
        wh.close()
    print(run.summary())
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    db_help = _db_help()
    al = sub.add_parser("alerts", help="evaluate the alert rules, store and notify")
    al.add_argument("--once", action="store_true",
                    help="evaluate once and exit (the only mode; for cron on a server)")
    al.add_argument("--no-notify", action="store_true",
                    help="store the alerts without sending e-mail or webhooks")
    al.add_argument("--settings", help="settings file (default: $CS_METRICS_SETTINGS or "
                    "./settings.toml over the defaults)")
    al.add_argument("--db", help=db_help)
    al.set_defaults(func=cmd_alerts)
