"""``quality``: print the data-quality report of the warehouse."""

from __future__ import annotations

import argparse

from cs_metrics.cli._common import _db_help
from cs_metrics.core.errors import CsMetricsError


def cmd_quality(args: argparse.Namespace) -> int:
    from cs_metrics.core.warehouse import Warehouse
    from cs_metrics.ingestion.quality import quality_report

    q = quality_report(Warehouse(args.db, read_only=True))
    if q.score is None:
        raise CsMetricsError("Nothing has been ingested into this warehouse yet.")
    print(f"data-quality score {q.score:.1f} / 100 (validity {q.validity:.1%}, "
          f"warning-free {q.warning_free:.1%}, completeness {q.completeness:.1%})")
    print(q.tables.to_string(index=False))
    if len(q.rejects_by_reason):
        print("\nrejected rows by reason")
        print(q.rejects_by_reason.to_string(index=False))
    if len(q.warnings):
        print("\nwarnings")
        print(q.warnings.to_string(index=False))
    print("\ncompleteness of ticket columns (% filled)")
    cols = q.columns[q.columns["table"] == "tickets"]
    print(cols[["column", "filled_pct"]].to_string(index=False, float_format="%.1f"))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    db_help = _db_help()
    qa = sub.add_parser("quality", help="print the data-quality report")
    qa.add_argument("--db", help=db_help)
    qa.set_defaults(func=cmd_quality)
