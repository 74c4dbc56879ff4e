"""``staffing``: Erlang C agents for one interval (no warehouse needed)."""

from __future__ import annotations

import argparse
import json
import math
import sys

from cs_metrics.core.errors import CsMetricsError


def _fraction(text: str, flag: str, ok, rule: str) -> float:
    """A fraction written as 0.8 or as 80%."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = math.nan
    if not raw.endswith("%") and value > 1:  # "80" is likely 80 %, but say so, not guess
        raise CsMetricsError(f"{flag} {text!r} must be {rule}; write 80 % as 0.8 or 80%.")
    if not (math.isfinite(value) and ok(value)):
        raise CsMetricsError(f"{flag} {text!r} must be {rule}, e.g. 0.8 or 80%.")
    return value


_MAX_ERLANGS = 100_000


def cmd_staffing(args: argparse.Namespace) -> int:
    import pandas as pd

    from cs_metrics.analysis.staffing import erlang_c
    from cs_metrics.core.settings import ServiceLevel, load_settings

    for flag, value, ok, rule in (
        ("--contacts", args.contacts, lambda x: x >= 0, "zero or more contacts"),
        ("--interval-min", args.interval_min, lambda x: x > 0, "a positive number of minutes"),
        ("--aht-s", args.aht_s, lambda x: x > 0, "a positive number of seconds"),
        ("--target-answer-s", args.target_answer_s, lambda x: x >= 0,
         "zero or more seconds"),
    ):
        if not (math.isfinite(value) and ok(value)):
            raise CsMetricsError(f"{flag} {value!r} must be {rule}.")
    traffic = args.contacts * args.aht_s / (args.interval_min * 60)
    if traffic > _MAX_ERLANGS:  # each agent is one step of the recursion: keep it bounded
        raise CsMetricsError(
            f"{args.contacts:g} contacts of {args.aht_s:g} s in {args.interval_min:g} min are "
            f"{traffic:,.0f} Erlangs, more than the {_MAX_ERLANGS:,} this command sizes; "
            "check the units (--interval-min in minutes, --aht-s in seconds)."
        )
    level = _fraction(args.service_level, "--service-level", lambda x: 0 < x < 1,
                      "a share of contacts between 0 and 1 (exclusive)")
    shrinkage = None if args.shrinkage is None else _fraction(
        args.shrinkage, "--shrinkage", lambda x: 0 <= x <= 0.9,
        "a share of paid time from 0 to 0.9")
    occupancy = None if args.max_occupancy is None else _fraction(
        args.max_occupancy, "--max-occupancy", lambda x: 0.05 <= x <= 1,
        "a share of logged-in time from 0.05 to 1")
    settings = None
    if shrinkage is None or occupancy is None:  # the defaults come from the settings
        settings = load_settings(args.settings or None)
    r = erlang_c(args.contacts, args.interval_min, args.aht_s,
                 ServiceLevel(level, args.target_answer_s), shrinkage=shrinkage,
                 max_occupancy=occupancy, settings=settings)
    row = {"raw_agents": r.raw_agents, "agents": r.scheduled_agents,
           "service_level": r.service_level, "occupancy": r.occupancy,
           "waiting_probability": r.p_wait, "asa_s": r.asa_s}
    if args.format == "json":
        text = json.dumps([{k: round(v, 10) if isinstance(v, float) else v
                            for k, v in row.items()}], indent=2) + "\n"
    else:
        text = pd.DataFrame([row]).to_csv(index=False, float_format="%.10g",
                                          lineterminator="\n")
    sys.stdout.write(text)
    used_shrinkage = shrinkage if shrinkage is not None else settings.staffing.shrinkage
    used_occupancy = occupancy if occupancy is not None else settings.staffing.max_occupancy
    print(f"Erlang C for {args.contacts:g} contacts in {args.interval_min:g} min of "
          f"{args.aht_s:g} s ({r.traffic_erlangs:.4g} Erlangs), {level:.0%} answered within "
          f"{args.target_answer_s:g} s; agents cover {used_shrinkage:.0%} shrinkage; occupancy "
          f"at most {used_occupancy:.0%}.", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    sf = sub.add_parser("staffing", help="Erlang C agents for one interval (no warehouse "
                                         "needed)")
    sf.add_argument("--contacts", type=float, required=True,
                    help="contacts arriving in the interval")
    sf.add_argument("--interval-min", type=float, required=True,
                    help="length of the interval in minutes, e.g. 30")
    sf.add_argument("--aht-s", type=float, required=True,
                    help="average handle time in seconds")
    sf.add_argument("--target-answer-s", type=float, required=True,
                    help="answer within this many seconds (the service-level time)")
    sf.add_argument("--service-level", required=True, metavar="L",
                    help="share of contacts answered in time: 0.8 or 80%%")
    sf.add_argument("--shrinkage", metavar="X",
                    help="share of paid time away from contacts, from 0 to 0.9 (default: the "
                         "settings' [staffing] shrinkage)")
    sf.add_argument("--max-occupancy", metavar="Y",
                    help="busiest share of logged-in time, from 0.05 to 1 (default: the settings' "
                         "[staffing] max_occupancy)")
    sf.add_argument("--format", choices=("csv", "json"), default="csv")
    sf.add_argument("--settings", help="settings TOML (default shrinkage and occupancy)")
    sf.set_defaults(func=cmd_staffing)
