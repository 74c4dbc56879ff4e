"""``forecast``: tickets per day ahead, the Seasonality page's model and interval."""

from __future__ import annotations

import argparse
import sys

from cs_metrics.cli._common import AS_HELP, TZ_HELP, _as, _db_help, _filters, write_table
from cs_metrics.core.errors import CsMetricsError


def cmd_forecast(args: argparse.Namespace) -> int:
    import pandas as pd

    from cs_metrics.analysis.seasonality import daily_series, forecast_daily
    from cs_metrics.core.warehouse import Warehouse

    if args.days < 1 or args.days > 366:
        raise CsMetricsError(f"--days {args.days}: forecast 1 to 366 days ahead.")
    filters = _filters(args)
    wh = _as(Warehouse(args.db, read_only=True), args)
    try:
        series = daily_series(wh, filters)
    finally:
        wh.close()
    df = forecast_daily(series, args.days, level=args.level)
    df["date"] = pd.to_datetime(df["date"]).dt.strftime("%Y-%m-%d")
    df["lower"] = df["lower"].astype("int64")  # whole tickets, as the interval is
    df["upper"] = df["upper"].astype("int64")
    write_table(df, args.format, args.out)
    last = series.index[-1].date() if len(series) else None
    print(f"tickets per local day of {filters.tz} after {last}, the last complete day of the "
          f"data; a {args.level:.0%} prediction interval (the Seasonality page's model).",
          file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    db_help = _db_help()
    fc = sub.add_parser("forecast", help="forecast tickets per day (the Seasonality page's "
                                         "model and interval)")
    fc.add_argument("--days", type=int, required=True, help="days ahead, 1 to 366")
    fc.add_argument("--where", action="append", metavar="DIM=VALUE",
                    help="filter; repeat it (the same dimension twice means either value)")
    fc.add_argument("--from", dest="date_from",
                    help="fit on the days from this one (default: all the data)")
    fc.add_argument("--to", dest="date_to",
                    help="fit on the days before this one and forecast from it (a backtest; "
                         "default: up to the last complete day of data)")
    fc.add_argument("--level", type=float, default=0.9,
                    help="prediction interval level, between 0 and 1 (default 0.9)")
    fc.add_argument("--tz", metavar="ZONE", help=TZ_HELP)
    fc.add_argument("--format", choices=("csv", "json"), default="csv")
    fc.add_argument("--out", help="write to this file instead of stdout")
    fc.add_argument("--settings", help="settings TOML (the reporting zone)")
    fc.add_argument("--db", help=db_help)
    fc.add_argument("--as", dest="as_", metavar="IDENTITY", help=AS_HELP)
    fc.set_defaults(func=cmd_forecast)
