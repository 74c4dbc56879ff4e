"""``report``: write a performance report, and e-mail it on request."""

from __future__ import annotations

import argparse
import sys

from cs_metrics.cli._common import AS_HELP, TZ_HELP, _as, _db_help, _filters, _split
from cs_metrics.core.errors import CsMetricsError


def cmd_report(args: argparse.Namespace) -> int:
    from cs_metrics.core.settings import load_settings
    from cs_metrics.core.warehouse import Warehouse
    from cs_metrics.ops import reports

    settings = load_settings(args.settings) if args.settings else load_settings()
    filters = _filters(args)
    wh = _as(Warehouse(args.db, read_only=True), args)
    try:
        report = reports.build_report(wh, args.audience, args.period, team=args.team,
                                      rep=args.rep, filters=filters, settings=settings)
    finally:
        wh.close()
    rendered = reports.render(report)
    for path in reports.write_report(rendered, args.out, args.format):
        print(path)
    if args.email is not None:
        try:
            sent_to = reports.send_report_email(rendered, _split(args.email), settings)
        except CsMetricsError as exc:
            raise CsMetricsError(
                f"The report was written to {args.out} but not emailed: {exc}") from exc
        print(f"emailed the report to {', '.join(sent_to)}", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    db_help = _db_help()
    r = sub.add_parser("report", help="write a performance report (HTML or Markdown, PNG charts)")
    r.add_argument("--audience", required=True, choices=("executive", "team", "representative"))
    r.add_argument("--team", help="team audience: a team, or a manager for all of their teams")
    r.add_argument("--rep", help="representative audience: a rep id or name")
    r.add_argument("--period", required=True,
                   help="last-week, last-month, YYYY-MM or FROM:TO (ISO days, both included); "
                        "relative to the data's last complete day")
    r.add_argument("--where", action="append", metavar="DIM=VALUE",
                   help="narrow every figure; repeat it (the same dimension twice: either)")
    r.add_argument("--tz", metavar="ZONE", help=TZ_HELP)
    r.add_argument("--format", choices=("html", "md"), default="html")
    r.add_argument("--out", required=True, help="folder to write the report into")
    r.add_argument("--email", nargs="?", const="", metavar="TO,...",
                   help="also email the HTML over the SMTP of [notifications.email]; without "
                        "addresses, to its recipients")
    r.add_argument("--settings", help="settings TOML (targets, SMTP)")
    r.add_argument("--db", help=db_help)
    r.add_argument("--as", dest="as_", metavar="IDENTITY",
                   help=AS_HELP)
    r.set_defaults(func=cmd_report)
