"""``simulate-outage``: the what-if of an outage, hour by hour (cs_metrics.analysis.whatif)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from cs_metrics.cli._common import AS_HELP, _as, _db_help, _split, write_table
from cs_metrics.core.errors import CsMetricsError


def _parse_start(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CsMetricsError(
            f"--start {text!r} is not a date and time; write it as YYYY-MM-DDTHH:MM (UTC)."
        ) from None
    return value


def _parse_staff(text: str | None) -> int | tuple[int, ...]:
    if text is None:
        return 0
    parts = _split(text)
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if not values or any(v < 0 for v in values):
        raise CsMetricsError(
            f"--extra-staff {text!r} must be whole agents: one number for every outage hour, "
            "or a comma-separated number per hour from the outage's first hour."
        )
    return values[0] if len(values) == 1 and "," not in text else tuple(values)


SIMULATE_COLUMNS: tuple[str, ...] = (
    "hour", "expected_extra_tickets", "backlog_p50", "backlog_p90", "sla_breach_pct",
    "extra_agents_needed",
)


def cmd_simulate_outage(args: argparse.Namespace) -> int:
    import pandas as pd

    from cs_metrics.analysis.whatif import OutageScenario, simulate_outage
    from cs_metrics.core.warehouse import Warehouse

    point = args.lat is not None or args.lon is not None
    if args.city is not None and point:
        raise CsMetricsError("Give the outage centre as --city or as --lat and --lon, not both.")
    if args.city is None and (args.lat is None or args.lon is None):
        raise CsMetricsError("Give the outage centre as --city NAME or as both --lat and --lon.")
    scenario = OutageScenario(
        start=_parse_start(args.start),
        hours=args.hours,
        severity=args.severity,
        radius_km=args.radius_km,
        city=args.city,
        lat=args.lat,
        lon=args.lon,
        domain=args.domain,
        extra_staff=_parse_staff(args.extra_staff),
    )
    wh = _as(Warehouse(args.db, read_only=True), args)
    try:
        result = simulate_outage(
            wh, scenario, runs=args.runs, seed=args.seed, sla_minutes=args.sla_minutes,
            tail_hours=args.tail_hours,
        )
    finally:
        wh.close()
    h = result.hours
    df = pd.DataFrame({
        "hour": [t.isoformat() for t in h["hour"]],
        "expected_extra_tickets": h["extra_arrivals"].round(3),
        "backlog_p50": h["backlog_p50"],
        "backlog_p90": h["backlog_p90"],
        "sla_breach_pct": h["sla_breach_pct_p50"].round(2),
        "extra_agents_needed": h["extra_agents_needed"],
    }, columns=list(SIMULATE_COLUMNS))
    write_table(df, args.format, args.out)
    # the projection goes to stdout; what it rests on, and what it says, to stderr
    print(result.rate_note, file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(result.summary, file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    db_help = _db_help()
    so = sub.add_parser(
        "simulate-outage",
        help="project what an outage would do to tickets, backlog and the SLA, hour by hour",
    )
    so.add_argument("--city", help="outage centre: the mean position of this city's customers")
    so.add_argument("--lat", type=float, help="outage centre latitude (WGS84)")
    so.add_argument("--lon", type=float, help="outage centre longitude (WGS84)")
    so.add_argument("--radius-km", type=float, required=True, help="radius of the outage")
    so.add_argument("--start", required=True, help="start, ISO date and time in UTC")
    so.add_argument("--hours", type=float, required=True, help="how long the outage lasts")
    so.add_argument("--severity", required=True, help="none, minor, major or critical")
    so.add_argument("--domain", help="the service that fails: the extra tickets' domain")
    so.add_argument("--runs", type=int, default=200, help="Monte Carlo runs (default 200)")
    so.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    so.add_argument("--extra-staff", metavar="K",
                    help="agents added in every outage hour, or K1,K2,... per hour from the "
                         "outage's first hour")
    so.add_argument("--sla-minutes", type=float,
                    help="first-response target (default: the median SLA target of recent "
                         "tickets)")
    so.add_argument("--tail-hours", type=int, default=24,
                    help="recovery hours reported after the outage (default 24)")
    so.add_argument("--format", choices=("csv", "json"), default="csv")
    so.add_argument("--out", help="write to this file instead of stdout")
    so.add_argument("--db", help=db_help)
    so.add_argument("--as", dest="as_", metavar="IDENTITY",
                   help=AS_HELP)
    so.set_defaults(func=cmd_simulate_outage)
