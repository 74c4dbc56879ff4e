"""The sample-data generator and the live feed as commands of ``python -m cs_metrics``.

A plug-in of the command line (entry point group ``cs_metrics.commands`` in pyproject.toml):
the library never imports ``simulations``; the command line finds these commands."""

from __future__ import annotations

import argparse
import sys

from cs_metrics.cli._common import Command, _db_help, _parse_date
from cs_metrics.core.errors import CsMetricsError


def cmd_generate(args: argparse.Namespace) -> int:
    # imported when the command runs: building the parser (every command, --help) stays fast
    from simulations import generator

    end = _parse_date(args.end, "--end") if args.end else None
    try:
        res = generator.generate(
            args.out, tickets=args.tickets, days=args.days, seed=args.seed, fmt=args.format,
            end=end, progress=sys.stderr.isatty(),
        )
    except (ValueError, OverflowError) as exc:  # OverflowError: a date past year 1 or 9999
        raise CsMetricsError(f"Cannot generate: {exc}") from exc
    for table, n in res.counts.items():
        print(f"{table:16s} {n:>10,d} rows")
    print(f"wrote {len(res.files)} files to {res.out} in {res.seconds:.1f} s")
    return 0


def add_generate(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("generate", help="write a realistic sample dataset")
    g.add_argument("--out", required=True, help="folder to write the canonical files to")
    g.add_argument("--tickets", type=int, help="number of tickets (default about 275 a day)")
    g.add_argument("--days", type=int, default=730, help="days of history (default 730)")
    g.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    g.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    g.add_argument("--end", help="the dataset's 'now' (default: today 00:00 UTC)")
    g.set_defaults(func=cmd_generate)


def cmd_feed(args: argparse.Namespace) -> int:
    # imported when the command runs: building the parser (every command, --help) stays fast
    from simulations.feed import run_feed

    summary = run_feed(
        args.inbox, rate=args.rate, duration=args.duration, seed=args.seed,
        outage=args.outage, db=args.db, batch_s=args.batch_seconds,
        log=lambda msg: print(msg, file=sys.stderr),
    )
    print(summary.text())
    return 0  # Ctrl-C is the normal way to stop a feed without --duration


def add_feed(sub: argparse._SubParsersAction) -> None:
    db_help = _db_help()
    fd = sub.add_parser("feed", help="write live events (tickets, status changes, surveys) "
                                     "into an inbox folder")
    fd.add_argument("--inbox", required=True, help="folder that receives the batch folders")
    fd.add_argument("--rate", type=float, required=True,
                    help="events per second on average (Poisson)")
    fd.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
    fd.add_argument("--seed", type=int, help="random seed (default: a new one each run)")
    fd.add_argument("--outage", metavar="LAT,LON,RADIUS_KM",
                    help="add an outage surge inside this circle; write "
                    "--outage=-33.9,151.2,10 when the latitude is negative")
    fd.add_argument("--batch-seconds", type=float, default=2.0,
                    help="seconds between batches (default 2)")
    fd.add_argument("--db", help=db_help)
    fd.set_defaults(func=cmd_feed)


generate = Command("generate", add_generate)
feed = Command("feed", add_feed)

# What the command line loads from this module when it runs from a checkout that is not
# installed (no entry points).
COMMANDS: tuple[Command, ...] = (generate, feed)
