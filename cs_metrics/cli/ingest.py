"""``ingest``: validate and load a dataset, or the new batches of a live inbox."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from cs_metrics.cli._common import _db_help
from cs_metrics.core.errors import CsMetricsError


def _audit_ingest(args: argparse.Namespace, report) -> None:  # noqa: ANN001 (IngestReport)
    """A ``dataset_loaded`` entry in the loaded warehouse's audit log: which files (names
    and sizes; hashing gigabytes would slow every load), the mapping's SHA-256, and the
    login that ran the command. The load has committed: a failure is a warning that says so."""
    import getpass
    import hashlib

    from cs_metrics.core import audit
    from cs_metrics.core.warehouse import Warehouse

    files: dict[str, int | None] = {}
    for t in report.tables:
        for name in t.files:
            try:
                files[str(name)] = Path(name).stat().st_size
            except OSError:
                files[str(name)] = None
    detail: dict = {"via": "command line", "files": [{"name": n, "bytes": b}
                                                     for n, b in files.items()],
                    "replace": bool(args.replace),
                    "loaded": sum(t.loaded for t in report.tables),
                    "rejected": sum(t.rejected_total for t in report.tables)}
    try:
        detail["login"] = getpass.getuser()
    except (OSError, KeyError):  # no login name in this environment
        pass
    try:
        if args.mapping:
            mapping = Path(args.mapping)
            detail["mapping"] = str(mapping.resolve())
            detail["mapping_sha256"] = hashlib.sha256(mapping.read_bytes()).hexdigest()
        wh = Warehouse(report.db)
        try:
            audit.record(wh, audit.LOCAL_ACTOR, "", "dataset_loaded", Path(report.db).name,
                         detail)
        finally:
            wh.close()
    except (CsMetricsError, OSError) as exc:
        print(f"warning: the load committed, but it could not be written to the audit log: "
              f"{exc}", file=sys.stderr)


def cmd_ingest(args: argparse.Namespace) -> int:
    from cs_metrics.core.settings import load_settings
    from cs_metrics.core.warehouse import Warehouse
    from cs_metrics.ingestion.loader import REJECTS_LISTED, ingest
    from cs_metrics.ingestion.quality import quality_report

    settings = load_settings(args.settings) if args.settings else None
    if args.inbox:  # a bad --settings file has stopped above, before any look at the inbox
        return _ingest_inbox(args)
    if not args.source:
        raise CsMetricsError("Name what to load: a SOURCE folder or file, or --inbox DIR.")
    report = ingest(
        args.source, args.mapping, args.db, settings=settings, replace=args.replace,
        rejects_csv=args.rejects, encoding=args.encoding,
    )
    _audit_ingest(args, report)
    print(f"{'table':16s} {'read':>10s} {'loaded':>10s} {'rejected':>10s}")
    for t in report.tables:
        print(f"{t.table:16s} {t.read:>10,d} {t.loaded:>10,d} {t.rejected_total:>10,d}")
        for reason, n in t.rejected:
            print(f"{'':18s}rejected {n:,d}: {reason}")
        for name, n in t.warnings:
            print(f"{'':18s}warning {n:,d}: {name}")
        if t.collapsed:
            print(f"{'':18s}merged {t.collapsed:,d} identical rows")
        if t.skipped_empty:
            print(f"{'':18s}skipped {t.skipped_empty:,d} feedback rows with no score or comment")
        if t.skipped_filter:
            print(f"{'':18s}skipped {t.skipped_filter:,d} rows by the mapping's filter (where)")
        if t.merged:
            print(f"{'':18s}merged {t.merged:,d} rows into the latest row of their key "
                  "(one_row_per)")
    wh = Warehouse(report.db)
    q = quality_report(wh)
    wh.close()
    if q.score is not None:
        print(f"data-quality score {q.score:.1f} / 100")
    total_rejects = sum(t.rejected_total for t in report.tables)
    listed = f"{total_rejects:,d}"
    if report.rejects_capped:
        listed = (f"{report.rejects_listed:,d} of {total_rejects:,d}: the first "
                  f"{REJECTS_LISTED:,d} of each reason in each file are listed, all are counted")
    print(f"rejected rows with their reasons: {report.rejects_csv} ({listed})")
    print(f"warehouse {report.db} (data as of {report.as_of}) in {report.seconds:.1f} s")
    return 0


def _ingest_inbox(args: argparse.Namespace) -> int:
    """``ingest --inbox DIR [--watch]``: load the inbox's new batches, once or every
    ``--interval`` seconds until Ctrl-C, evaluating the alert rules after each load. The same
    refresher as the app's live page (cs_metrics.ops.refresher), so the two decide alike."""
    from cs_metrics.core.warehouse import Warehouse
    if not (math.isfinite(args.interval) and 0.1 <= args.interval <= 86_400):
        raise CsMetricsError(f"--interval {args.interval!r} must be a number of seconds from "
                             "0.1 to 86400.")
    from contextlib import nullcontext

    from cs_metrics.core.settings import handed_settings
    from cs_metrics.ingestion.inbox import refresh_inbox
    from cs_metrics.ops.refresher import LiveRefresher

    live = LiveRefresher(Path(args.inbox), args.interval, alerts=not args.no_alerts)

    def said(report, ran) -> None:  # noqa: ANN001 (a RefreshReport, an AlertRun or None)
        if report.changed:  # loaded or failed (a reloaded batch is one of the two)
            print(report.summary(), flush=True)
        if ran is not None:
            print(ran.summary(), flush=True)
        if live.last_error:  # the alert rules could not run; the loads go on
            print(f"warning: {live.last_error}", file=sys.stderr, flush=True)

    wh = Warehouse(args.db)
    # load_settings() without a path reads --settings on every call, as the app reads its own
    # file on every refresh; without --settings whatever this process would read applies
    reading = handed_settings(args.settings) if args.settings else nullcontext()
    try:
        with reading:
            if not args.watch:
                report = refresh_inbox(args.inbox, warehouse=wh)
                said(report, live.after_refresh(wh, report))
                return 1 if live.last_error else 0
            print(f"watching {args.inbox} every {args.interval:g} s (Ctrl-C stops)", flush=True)
            try:
                live.run(wh, on_report=said)
            except KeyboardInterrupt:
                print("stopped", file=sys.stderr)
            return 0
    finally:
        wh.close()


def add_parser(sub: argparse._SubParsersAction) -> None:
    db_help = _db_help()
    i = sub.add_parser("ingest", help="validate and load a dataset into the warehouse")
    i.add_argument("source", nargs="?",
                   help="canonical folder, or the export a mapping reads (file/folder)")
    i.add_argument("--inbox", help="load the new batches of this live inbox folder instead "
                   "(each once: a manifest in the warehouse remembers them)")
    i.add_argument("--watch", action="store_true",
                   help="with --inbox: keep loading new batches until Ctrl-C")
    i.add_argument("--interval", type=float, default=5.0,
                   help="with --watch: seconds between looks at the inbox (default 5)")
    i.add_argument("--no-alerts", action="store_true",
                   help="with --inbox: do not evaluate the alert rules after a load")
    i.add_argument("--mapping", help="mapping TOML for a foreign export")
    i.add_argument("--db", help=db_help)
    i.add_argument("--replace", action="store_true", help="empty the warehouse first")
    i.add_argument("--rejects", help="where to write rejects.csv (default: beside the warehouse)")
    i.add_argument("--encoding", help="text encoding of CSV sources that do not name one in "
                   "their mapping section or _format.toml (default utf-8; e.g. latin-1, "
                   "cp1252, utf-16)")
    i.add_argument("--settings", help="settings TOML (SLA policies, targets)")
    i.set_defaults(func=cmd_ingest)
