"""``topics``: the topics of the survey comments (TF-IDF + NMF)."""

from __future__ import annotations

import argparse
import sys

from cs_metrics.cli._common import TZ_HELP, _db_help, _filters, write_table

TOPIC_COLUMNS: tuple[str, ...] = (
    "topic", "name", "terms", "comments", "share_pct", "csat_avg", "csat_pct",
    "sentiment_avg", "negative_pct", "main_domain", "main_domain_pct", "examples", "note",
)


def cmd_topics(args: argparse.Namespace) -> int:
    from cs_metrics.analysis.topics import topics
    from cs_metrics.core.warehouse import Warehouse

    filters = _filters(args)
    wh = Warehouse(args.db, read_only=True)
    try:
        model = topics(wh, filters, k=args.k, sample=args.sample, seed=args.seed)
    finally:
        wh.close()
    df = model.topics[list(TOPIC_COLUMNS)]
    write_table(df, args.format, args.out)
    sampled = (f"a sample of {model.modelled:,} of {model.total:,} comments (seed {model.seed}); "
               "volumes scaled to all" if model.sampled else f"all {model.total:,} comments")
    print(f"{model.k} topics (TF-IDF + NMF) of {sampled}; examples are masked.",
          file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    db_help = _db_help()
    tp = sub.add_parser("topics", help="topics of the survey comments (TF-IDF + NMF)")
    tp.add_argument("--k", type=int, default=15, help="number of topics (default 15)")
    tp.add_argument("--from", dest="date_from", help="inclusive start date on created_at")
    tp.add_argument("--to", dest="date_to", help="exclusive end date on created_at")
    tp.add_argument("--where", action="append", metavar="DIM=VALUE",
                    help="filter; repeat it (the same dimension twice means either value)")
    tp.add_argument("--sample", type=int, default=20_000,
                    help="model at most this many comments (default 20000)")
    tp.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    tp.add_argument("--tz", metavar="ZONE", help=TZ_HELP)
    tp.add_argument("--format", choices=("csv", "json"), default="csv")
    tp.add_argument("--out", help="write to this file instead of stdout")
    tp.add_argument("--db", help=db_help)
    tp.set_defaults(func=cmd_topics)
