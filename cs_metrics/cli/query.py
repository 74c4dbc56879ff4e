"""``query``: compute registry metrics as CSV, JSON or Parquet."""

from __future__ import annotations

import argparse
import sys

from cs_metrics.cli._common import AS_HELP, TZ_HELP, _as, _db_help, _filters, _split, write_table
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.metrics.registry import DIMENSIONS, GRAINS, METRICS


def cmd_query(args: argparse.Namespace) -> int:
    from cs_metrics.core.warehouse import Warehouse

    # the compiler is imported when a query runs, not for --help or another command
    from cs_metrics.metrics.registry import missing_inputs, query

    metrics = _split(args.metrics)
    by = _split(args.by)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise CsMetricsError(
            f"Unknown metric {unknown[0]!r}; valid metrics: {', '.join(METRICS)}."
        )
    bad = [d for d in by if d not in DIMENSIONS]
    if bad:
        raise CsMetricsError(
            f"Unknown dimension {bad[0]!r}; valid dimensions: {', '.join(DIMENSIONS)}."
        )
    if not metrics:
        raise CsMetricsError(f"--metrics is empty; valid metrics: {', '.join(METRICS)}.")
    filters = _filters(args)
    if args.format == "parquet" and not args.out:
        raise CsMetricsError("--format parquet needs --out FILE (Parquet is not text).")
    wh = _as(Warehouse(args.db, read_only=True), args)
    for m in metrics:
        missing = missing_inputs(METRICS[m], wh)
        if missing:
            print(f"note: this dataset has no {', '.join(missing)} values, so {m} is empty.",
                  file=sys.stderr)
    df = query(wh, metrics, by, args.grain, filters)
    if "period" in df.columns:
        df["period"] = df["period"].map(lambda d: d.isoformat())
    if args.format == "parquet":
        df.to_parquet(args.out, index=False)
        return 0
    write_table(df, args.format, args.out)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    db_help = _db_help()
    q = sub.add_parser("query", help="compute registry metrics")
    q.add_argument("--metrics", required=True, help="comma-separated metric names")
    q.add_argument("--by", help="comma-separated dimensions")
    q.add_argument("--grain", choices=GRAINS)
    q.add_argument("--from", dest="date_from", help="inclusive start date on created_at")
    q.add_argument("--to", dest="date_to", help="exclusive end date on created_at")
    q.add_argument("--where", action="append", metavar="DIM=VALUE",
                   help="filter; repeat it (the same dimension twice means either value)")
    q.add_argument("--tz", metavar="ZONE", help=TZ_HELP)
    q.add_argument("--format", choices=("csv", "json", "parquet"), default="csv")
    q.add_argument("--out", help="write to this file instead of stdout")
    q.add_argument("--db", help=db_help)
    q.add_argument("--as", dest="as_", metavar="IDENTITY",
                   help=AS_HELP)
    q.set_defaults(func=cmd_query)
