"""Command line: ``python -m cs_metrics COMMAND ...`` (see DATA_CONTRACT.md, section 3)."""

from __future__ import annotations

import argparse
import contextvars
import json
import math
import sys
import traceback
from datetime import date, datetime
from pathlib import Path

import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.safe_text import neutralize_csv
from cs_metrics.core.warehouse import Warehouse, WarehouseLocked, default_db_path
from cs_metrics.metrics.registry import DIMENSIONS, GRAINS, METRICS, Filters, missing_inputs, query


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one sentence and exit 2, like every bad input
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parse_date(text: str, flag: str) -> date | datetime:
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text)
    except ValueError:
        raise CsMetricsError(
            f"{flag} {text!r} is not a date; write it as YYYY-MM-DD (or YYYY-MM-DD HH:MM:SS)."
        ) from None


def _parse_where(items: list[str]) -> Filters:
    where: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise CsMetricsError(f"--where {item!r} must look like DIMENSION=VALUE.")
        dim, value = item.split("=", 1)
        dim = dim.strip()
        if dim not in DIMENSIONS:
            raise CsMetricsError(
                f"Unknown dimension {dim!r} in --where; valid dimensions: {', '.join(DIMENSIONS)}."
            )
        where.setdefault(dim, []).append(value)
    return Filters.build(**where)


def _zone(args: argparse.Namespace) -> str:
    """The reporting zone of a run: ``--tz``, else the settings' ``[display] timezone``."""
    from cs_metrics.core.zones import check_zone

    if getattr(args, "tz", None) is not None:
        return check_zone(args.tz.strip(), "--tz")
    from cs_metrics.core.settings import load_settings

    return load_settings(getattr(args, "settings", None) or None).display_timezone


def _filters(args: argparse.Namespace) -> Filters:
    """``--from``, ``--to`` (local days of the zone), ``--where`` and the zone of a run."""
    where = _parse_where(getattr(args, "where", None) or [])
    date_from, date_to = getattr(args, "date_from", None), getattr(args, "date_to", None)
    return Filters(
        date_from=_parse_date(date_from, "--from") if date_from else None,
        date_to=_parse_date(date_to, "--to") if date_to else None,
        where=where.where, tz=_zone(args),
    )


def _split(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def cmd_generate(args: argparse.Namespace) -> int:
    # The command line is the one place that reaches into simulations: the library does not.
    from simulations.generator import generate

    end = _parse_date(args.end, "--end") if args.end else None
    try:
        res = generate(
            args.out, tickets=args.tickets, days=args.days, seed=args.seed, fmt=args.format,
            end=end, progress=sys.stderr.isatty(),
        )
    except (ValueError, OverflowError) as exc:  # OverflowError: a date past year 1 or 9999
        raise CsMetricsError(f"Cannot generate: {exc}") from exc
    for table, n in res.counts.items():
        print(f"{table:16s} {n:>10,d} rows")
    print(f"wrote {len(res.files)} files to {res.out} in {res.seconds:.1f} s")
    return 0


def _audit_ingest(args: argparse.Namespace, report) -> None:  # noqa: ANN001 (IngestReport)
    """A ``dataset_loaded`` entry in the loaded warehouse's audit log: which files (names
    and sizes; hashing gigabytes would slow every load), the mapping's SHA-256, and the
    login that ran the command. The load has committed: a failure is a warning that says so."""
    import getpass
    import hashlib

    from cs_metrics.core import audit

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
    from cs_metrics.ingestion.loader import REJECTS_LISTED, ingest
    from cs_metrics.ingestion.quality import quality_report

    settings = load_settings(args.settings) if args.settings else None
    if args.inbox:
        return _ingest_inbox(args, settings)
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


def _ingest_inbox(args: argparse.Namespace, settings) -> int:  # noqa: ANN001 (Settings | None)
    """``ingest --inbox DIR [--watch]``: load the inbox's new batches, once or every
    ``--interval`` seconds until Ctrl-C, evaluating the alert rules after each load."""
    if not (math.isfinite(args.interval) and 0.1 <= args.interval <= 86_400):
        raise CsMetricsError(f"--interval {args.interval!r} must be a number of seconds from "
                             "0.1 to 86400.")
    from cs_metrics.core.settings import load_settings
    from cs_metrics.ingestion.inbox import refresh_inbox, watch_inbox
    from cs_metrics.ops.alerts import run_alerts

    wh = Warehouse(args.db)
    rules = settings or load_settings()

    def after(report) -> None:  # noqa: ANN001 (a RefreshReport)
        if report.loaded or report.failed or report.reloaded:
            print(report.summary(), flush=True)
        if report.loaded or report.reloaded:
            if not args.no_alerts:
                print(run_alerts(wh, rules).summary(), flush=True)

    try:
        if not args.watch:
            after(refresh_inbox(args.inbox, warehouse=wh, settings=settings))
            return 0
        print(f"watching {args.inbox} every {args.interval:g} s (Ctrl-C stops)", flush=True)
        try:
            watch_inbox(args.inbox, warehouse=wh, interval_s=args.interval, on_refresh=after,
                        settings=settings)
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
        return 0
    finally:
        wh.close()


AS_HELP = ("see only what IDENTITY (an e-mail, or group:NAME) sees when signed in to the "
           "hosted app: their role's scope in the settings' [access]")
TZ_HELP = ("reporting time zone, an IANA name such as America/New_York: local days, weeks and "
           "months, and --from/--to as local days (default: the settings' [display] timezone)")


def _as(wh: Warehouse, args: argparse.Namespace) -> Warehouse:
    """``wh`` as the person named by ``--as`` sees it in the hosted app (their role's scope
    from the settings' ``[access]``), or whole without ``--as``."""
    ident = getattr(args, "as_", None)
    if ident is None:
        return wh
    if not ident.strip():  # an unset variable in a script must not mean "everything"
        raise CsMetricsError(
            "--as is empty; give an e-mail address or group:NAME, or leave --as out for the "
            "whole warehouse."
        )
    from cs_metrics.core.access import resolve_scope, scoped
    from cs_metrics.core.settings import load_settings

    settings = load_settings(getattr(args, "settings", None) or None)
    ident = ident.strip()
    if ident.lower().startswith("group:"):
        scope = resolve_scope(None, (ident[6:].strip(),), settings)
    else:
        scope = resolve_scope(ident, (), settings)
    if scope is None:
        raise CsMetricsError(
            f"{ident} has no role in the [access] section of the settings ({settings.source}); "
            "add them there, or leave out --as."
        )
    return scoped(wh, scope)


def cmd_query(args: argparse.Namespace) -> int:
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
    if args.format == "json":
        records = json.loads(df.to_json(orient="records", double_precision=10))
        text = json.dumps(records, indent=2) + "\n"
    else:
        # a spreadsheet must not run a cell of the data: text cells that start a formula
        # get a leading ' (numbers, Parquet and JSON are written as they are)
        text = neutralize_csv(df).to_csv(index=False, float_format="%.10g", lineterminator="\n")
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_quality(args: argparse.Namespace) -> int:
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


def cmd_metrics(args: argparse.Namespace) -> int:
    for m in METRICS.values():
        print(f"{m.name:28s} {m.unit:9s} {m.description}")
    return 0


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
    # The command line is the one place that reaches into simulations: the library does not.
    from cs_metrics.analysis.whatif import OutageScenario, simulate_outage

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
    if args.format == "json":
        records = json.loads(df.to_json(orient="records", double_precision=10))
        text = json.dumps(records, indent=2) + "\n"
    else:
        text = neutralize_csv(df).to_csv(index=False, float_format="%.10g", lineterminator="\n")
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    # the projection goes to stdout; what it rests on, and what it says, to stderr
    print(result.rate_note, file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(result.summary, file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cs_metrics.core.settings import load_settings
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


def cmd_alerts(args: argparse.Namespace) -> int:
    from cs_metrics.core.settings import load_settings
    from cs_metrics.ops.alerts import run_alerts

    settings = load_settings(args.settings) if args.settings else load_settings()
    db = Path(args.db) if args.db else default_db_path()
    if not db.exists():  # a mistyped --db must not leave an empty warehouse behind
        raise CsMetricsError(
            f"There is no warehouse at {db}; run `python -m cs_metrics ingest` first or pass "
            "--db with the right file."
        )
    wh = Warehouse(db)
    try:
        # the default notifier sends in-app, e-mail and webhooks as the settings say
        run = run_alerts(wh, settings, **({"notifier": None} if args.no_notify else {}))
    finally:
        wh.close()
    print(run.summary())
    return 0


def cmd_feed(args: argparse.Namespace) -> int:
    # The command line is the one place that reaches into simulations: the library does not.
    from simulations.feed import run_feed

    summary = run_feed(
        args.inbox, rate=args.rate, duration=args.duration, seed=args.seed,
        outage=args.outage, db=args.db, batch_s=args.batch_seconds,
        log=lambda msg: print(msg, file=sys.stderr),
    )
    print(summary.text())
    return 0  # Ctrl-C is the normal way to stop a feed without --duration


TOPIC_COLUMNS: tuple[str, ...] = (
    "topic", "name", "terms", "comments", "share_pct", "csat_avg", "csat_pct",
    "sentiment_avg", "negative_pct", "main_domain", "main_domain_pct", "examples", "note",
)


def cmd_topics(args: argparse.Namespace) -> int:
    from cs_metrics.analysis.topics import topics

    filters = _filters(args)
    wh = Warehouse(args.db, read_only=True)
    try:
        model = topics(wh, filters, k=args.k, sample=args.sample, seed=args.seed)
    finally:
        wh.close()
    df = model.topics[list(TOPIC_COLUMNS)]
    if args.format == "json":
        records = json.loads(df.to_json(orient="records", double_precision=10))
        text = json.dumps(records, indent=2) + "\n"
    else:
        text = neutralize_csv(df).to_csv(index=False, float_format="%.10g", lineterminator="\n")
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    sampled = (f"a sample of {model.modelled:,} of {model.total:,} comments (seed {model.seed}); "
               "volumes scaled to all" if model.sampled else f"all {model.total:,} comments")
    print(f"{model.k} topics (TF-IDF + NMF) of {sampled}; examples are masked.",
          file=sys.stderr)
    return 0


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


def cmd_forecast(args: argparse.Namespace) -> int:
    from cs_metrics.analysis.seasonality import daily_series, forecast_daily

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
    if args.format == "json":
        records = json.loads(df.to_json(orient="records", double_precision=10))
        text = json.dumps(records, indent=2) + "\n"
    else:
        text = df.to_csv(index=False, float_format="%.10g", lineterminator="\n")
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    last = series.index[-1].date() if len(series) else None
    print(f"tickets per local day of {filters.tz} after {last}, the last complete day of the "
          f"data; a {args.level:.0%} prediction interval (the Seasonality page's model).",
          file=sys.stderr)
    return 0


def _existing_db(args: argparse.Namespace) -> Path:
    db = Path(args.db) if args.db else default_db_path()
    if not db.exists():  # a mistyped --db must not leave an empty warehouse behind
        raise CsMetricsError(
            f"There is no warehouse at {db}; run `python -m cs_metrics ingest` first or pass "
            "--db with the right file."
        )
    return db


def _utcnow() -> datetime:
    from datetime import timezone

    return datetime.now(timezone.utc).replace(tzinfo=None)


def cmd_schedules(args: argparse.Namespace) -> int:
    from cs_metrics.core.settings import load_settings
    from cs_metrics.ops import schedules

    settings = load_settings(args.settings) if args.settings else load_settings()
    now = _utcnow()
    if args.action is not None:
        if args.action != "run" or not args.name:
            raise CsMetricsError(
                f"Unknown schedules action {args.action!r}; use `schedules` to list them or "
                "`schedules run NAME` to run one now."
            )
        schedules.find_schedule(settings, args.name)  # an unknown name before the warehouse
        wh = Warehouse(_existing_db(args))
        try:
            run = schedules.run_now(wh, settings, args.name, now)
        finally:
            wh.close()
        if not run.ok:
            raise CsMetricsError(
                f"The scheduled report {run.name!r} was not delivered: {run.error}")
        print(f"emailed the report {run.name!r} ({run.period}) to {', '.join(run.recipients)}")
        return 0
    if not settings.schedules:
        print(f"No schedules in {settings.source}; add [[schedules]] entries (see the README's "
              "Reports section).")
        return 0
    df = schedules.next_runs(settings, now)
    db = Path(args.db) if args.db else default_db_path()
    if db.exists():
        try:
            wh = Warehouse(db, read_only=True)
            try:
                last = schedules.last_outcomes(wh)
            finally:
                wh.close()
        except CsMetricsError as exc:
            print(f"note: the last outcomes are not shown: {exc}", file=sys.stderr)
        else:
            df["last_outcome"] = [
                f"{r.outcome} {r.started_at:%Y-%m-%d %H:%M}" + (f": {r.error}" if r.error else "")
                if (r := last.get(n)) else "" for n in df["name"]]
    for col in ("next_run_utc", "next_run_local"):
        df[col] = df[col].map(lambda t: f"{t:%Y-%m-%d %H:%M}")
    print(df.to_string(index=False))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import os

    from cs_metrics.core.settings import load_settings
    from cs_metrics.ops.status import server_status

    settings = load_settings(args.settings) if args.settings else load_settings()
    wh = Warehouse(_existing_db(args), read_only=True)
    try:
        state = server_status(wh, settings, _utcnow(),
                              inbox=os.environ.get("CS_METRICS_INBOX", "").strip() or None)
    finally:
        wh.close()
    if args.format == "json":
        sys.stdout.write(json.dumps(state.to_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(state.text())
    # something needs attention: 1, so monitoring can tell it from a usage error (2)
    return 1 if state.attention else 0


def cmd_audit(args: argparse.Namespace) -> int:
    from cs_metrics.core import audit

    if args.verify and (args.limit is not None or args.action is not None):
        raise CsMetricsError("--verify checks the whole audit log; drop --limit and --action.")
    wh = Warehouse(args.db, read_only=True)
    try:
        if args.verify:
            result = audit.verify(wh)
        else:
            df = audit.entries(wh, limit=args.limit, action=args.action)
    finally:
        wh.close()
    if args.verify:
        if args.format == "json":
            fields = ("ok", "checked", "broken_seq", "reason", "head_seq", "head_hash")
            text = json.dumps({f: getattr(result, f) for f in fields}, indent=2) + "\n"
        else:
            text = result.summary() + "\n"
    elif args.format == "json":
        text = json.dumps(audit.to_records(df), indent=2, ensure_ascii=False) + "\n"
    else:
        text = audit.to_csv_bytes(df).decode("utf-8")
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    # a broken chain is a finding, not a usage error: 1, so cron can tell it from 2
    return 0 if not args.verify or result.ok else 1


def build_parser() -> argparse.ArgumentParser:
    db_help = f"warehouse file (default: {default_db_path()}, or $CS_METRICS_DB)"
    p = _Parser(prog="python -m cs_metrics", description=__doc__)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    g = sub.add_parser("generate", help="write a realistic sample dataset")
    g.add_argument("--out", required=True, help="folder to write the canonical files to")
    g.add_argument("--tickets", type=int, help="number of tickets (default about 275 a day)")
    g.add_argument("--days", type=int, default=730, help="days of history (default 730)")
    g.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    g.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    g.add_argument("--end", help="the dataset's 'now' (default: today 00:00 UTC)")
    g.set_defaults(func=cmd_generate)

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

    qa = sub.add_parser("quality", help="print the data-quality report")
    qa.add_argument("--db", help=db_help)
    qa.set_defaults(func=cmd_quality)

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

    al = sub.add_parser("alerts", help="evaluate the alert rules, store and notify")
    al.add_argument("--once", action="store_true",
                    help="evaluate once and exit (the only mode; for cron on a server)")
    al.add_argument("--no-notify", action="store_true",
                    help="store the alerts without sending e-mail or webhooks")
    al.add_argument("--settings", help="settings file (default: $CS_METRICS_SETTINGS or "
                    "./settings.toml over the defaults)")
    al.add_argument("--db", help=db_help)
    al.set_defaults(func=cmd_alerts)

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

    sc = sub.add_parser("schedules", help="list the scheduled reports with their next run, "
                                          "or run one now: schedules run NAME")
    sc.add_argument("action", nargs="?", metavar="run", help="run the schedule NAME now")
    sc.add_argument("name", nargs="?", help="with run: the schedule's name")
    sc.add_argument("--settings", help="settings TOML ([[schedules]], SMTP)")
    sc.add_argument("--db", help=db_help)
    sc.set_defaults(func=cmd_schedules)

    st = sub.add_parser("status", help="the server's state: data, loads, inbox, alerts, "
                                       "schedules, failed deliveries (exit 1: needs attention)")
    st.add_argument("--settings", help="settings TOML")
    st.add_argument("--format", choices=("text", "json"), default="text")
    st.add_argument("--db", help=db_help)
    st.set_defaults(func=cmd_status)

    au = sub.add_parser("audit", help="print or verify the audit log (sign-ins, exports, "
                                      "reports, setting changes, alert handling)")
    au.add_argument("--limit", type=int, help="only the newest N entries")
    au.add_argument("--action", help="only entries of this action (e.g. export, sign_in)")
    au.add_argument("--verify", action="store_true",
                    help="check the hash chain instead: exit 0 when intact, 1 when broken")
    au.add_argument("--format", choices=("csv", "json"), default="csv")
    au.add_argument("--out", help="write to this file instead of stdout")
    au.add_argument("--db", help=db_help)
    au.set_defaults(func=cmd_audit)

    m = sub.add_parser("metrics", help="list the metrics of the registry")
    m.set_defaults(func=cmd_metrics)
    return p


# Set while the running app runs a command handed over to it: it never hands one on.
_IN_APP: contextvars.ContextVar[bool] = contextvars.ContextVar("in_app", default=False)


def _flags(parser: argparse.ArgumentParser) -> frozenset[str]:
    """The options of ``parser`` and its commands that take no value."""
    found: set[str] = set()
    for action in parser._actions:  # argparse keeps no public list of them
        if action.nargs == 0:
            found.update(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _flags(sub)
    return frozenset(found)


def _hand_over(parser: argparse.ArgumentParser, args: argparse.Namespace, raw: list[str],
               exc: WarehouseLocked) -> int | None:
    """Run the command in the app that holds the warehouse (cs_metrics.ops.jobs); None when no
    app serves it (the lock's own message then stands)."""
    from cs_metrics.core.settings import effective_settings_path
    from cs_metrics.ops.jobs import HANDED, absolute_argv, hand_over, server_alive

    if _IN_APP.get() or args.command not in HANDED or not server_alive(exc.path):
        return None
    if getattr(args, "watch", False):
        return None  # a watch runs for ever: the app loads its own inbox instead
    argv = absolute_argv(raw, Path.cwd(), _flags(parser))
    if not any(a == "--db" or a.startswith("--db=") for a in argv):
        argv += ["--db", str(Path(exc.path).resolve())]
    settings = effective_settings_path(getattr(args, "settings", None) or None)
    return hand_over(exc.path, argv, settings)


def run_in_app(argv: list[str], settings: str | None) -> tuple[int, str, str]:
    """Run a command line handed over by another process, in this (the app's) process:
    (exit code, stdout, stderr). ``settings``: the file that process would have read."""
    from cs_metrics.core.settings import handed_settings
    from cs_metrics.ops.jobs import HANDED, run_captured

    try:  # read as the command would be (options may be abbreviated: --wat is --watch)
        args = build_parser().parse_args(argv)
    except SystemExit:
        return 2, "", "error: the job is not a valid command line.\n"
    if args.command not in HANDED or getattr(args, "watch", False):
        return 2, "", (f"error: the app does not run `{args.command}` with these options for "
                       "other processes; stop the app to run it.\n")
    token = _IN_APP.set(True)
    try:
        with handed_settings(settings):
            return run_captured(main, argv)
    finally:
        _IN_APP.reset(token)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw)
    try:
        try:
            return args.func(args)
        except WarehouseLocked as exc:
            handed = _hand_over(parser, args, raw, exc)
            if handed is None:
                raise
            return handed
    except CsMetricsError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except OSError as exc:  # a path given on the command line that cannot be used
        if args.debug:
            traceback.print_exc()
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}; check the paths given (a file where a "
              "folder is expected, a folder that does not exist, or permissions).",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
