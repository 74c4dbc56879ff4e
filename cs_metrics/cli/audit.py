"""``audit``: print or verify the audit log."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cs_metrics.cli._common import _db_help
from cs_metrics.core.errors import CsMetricsError


def cmd_audit(args: argparse.Namespace) -> int:
    from cs_metrics.core import audit
    from cs_metrics.core.warehouse import Warehouse

    if args.verify and (args.limit is not None or args.action is not None):
        raise CsMetricsError("--verify checks the whole audit log; drop --limit and --action.")
    wh = Warehouse(args.db, read_only=True)
    try:
        if args.verify:
            result = audit.verify(wh)
        else:
            df = audit.entries(wh, limit=args.limit, action=args.action)
    finally:
        wh.close()
    if args.verify:
        if args.format == "json":
            fields = ("ok", "checked", "broken_seq", "reason", "head_seq", "head_hash")
            text = json.dumps({f: getattr(result, f) for f in fields}, indent=2) + "\n"
        else:
            text = result.summary() + "\n"
    elif args.format == "json":
        text = json.dumps(audit.to_records(df), indent=2, ensure_ascii=False) + "\n"
    else:
        text = audit.to_csv_bytes(df).decode("utf-8")
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    # a broken chain is a finding, not a usage error: 1, so cron can tell it from 2
    return 0 if not args.verify or result.ok else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    db_help = _db_help()
    au = sub.add_parser("audit", help="print or verify the audit log (sign-ins, exports, "
                                      "reports, setting changes, alert handling)")
    au.add_argument("--limit", type=int, help="only the newest N entries")
    au.add_argument("--action", help="only entries of this action (e.g. export, sign_in)")
    au.add_argument("--verify", action="store_true",
                    help="check the hash chain instead: exit 0 when intact, 1 when broken")
    au.add_argument("--format", choices=("csv", "json"), default="csv")
    au.add_argument("--out", help="write to this file instead of stdout")
    au.add_argument("--db", help=db_help)
    au.set_defaults(func=cmd_audit)
