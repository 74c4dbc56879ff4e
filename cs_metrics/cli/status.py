"""``status``: the server's state; exit 1 when something needs attention."""

from __future__ import annotations

import argparse
import json
import sys

from cs_metrics.cli._common import _db_help, _existing_db, _utcnow


def cmd_status(args: argparse.Namespace) -> int:
    import os

    from cs_metrics.core.settings import load_settings
    from cs_metrics.core.warehouse import Warehouse
    from cs_metrics.ops.status import server_status

    settings = load_settings(args.settings) if args.settings else load_settings()
    wh = Warehouse(_existing_db(args), read_only=True)
    try:
        state = server_status(wh, settings, _utcnow(),
                              inbox=os.environ.get("CS_METRICS_INBOX", "").strip() or None)
    finally:
        wh.close()
    if args.format == "json":
        sys.stdout.write(json.dumps(state.to_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(state.text())
    # something needs attention: 1, so monitoring can tell it from a usage error (2)
    return 1 if state.attention else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    db_help = _db_help()
    st = sub.add_parser("status", help="the server's state: data, loads, inbox, alerts, "
                                       "schedules, failed deliveries (exit 1: needs attention)")
    st.add_argument("--settings", help="settings TOML")
    st.add_argument("--format", choices=("text", "json"), default="text")
    st.add_argument("--db", help=db_help)
    st.set_defaults(func=cmd_status)
