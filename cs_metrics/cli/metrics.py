"""``metrics``: list the metrics of the registry."""

from __future__ import annotations

import argparse

from cs_metrics.metrics.registry import METRICS


def cmd_metrics(args: argparse.Namespace) -> int:
    for m in METRICS.values():
        print(f"{m.name:28s} {m.unit:9s} {m.description}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("metrics", help="list the metrics of the registry")
    m.set_defaults(func=cmd_metrics)
