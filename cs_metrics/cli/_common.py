"""What the commands of the command line share: the parser class, dates, filters, ``--as``,
the warehouse a command opens, and ``Command``, what a plug-in contributes.

Each command module imports pandas and the analysis modules inside its run function, so that
building the parser (every start, ``--help``) stays fast."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.paths import default_db_path
from cs_metrics.metrics.registry import DIMENSIONS, Filters

if TYPE_CHECKING:
    import pandas as pd

    from cs_metrics.core.warehouse import Warehouse


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
    start = _parse_date(date_from, "--from") if date_from else None
    stop = _parse_date(date_to, "--to") if date_to else None
    def moment(d: date | datetime) -> datetime:  # a day and a moment compare as moments
        return d if isinstance(d, datetime) else datetime(d.year, d.month, d.day)

    if start is not None and stop is not None and moment(stop) < moment(start):
        raise CsMetricsError(f"--to {date_to} is before --from {date_from}: the range ends "
                             "before it starts; swap them.")
    return Filters(date_from=start, date_to=stop, where=where.where, tz=_zone(args))


def _split(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


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


def _db_help() -> str:
    """The help of ``--db``, with the default warehouse of this run."""
    return f"warehouse file (default: {default_db_path()}, or $CS_METRICS_DB)"


@dataclass(frozen=True)
class Command:
    """A command contributed by a plug-in (entry point group ``cs_metrics.commands``):
    ``add_parser(sub)`` adds its parser to the command line's sub-parsers and sets
    ``func``, the function that runs it and returns the exit code."""

    name: str
    add_parser: Callable[[argparse._SubParsersAction], None]


def write_table(df: pd.DataFrame, fmt: str, out: str | None) -> None:
    """A command's table as CSV or JSON, to ``out`` or standard output. Numbers keep ten
    significant digits; a spreadsheet must not run a cell of the data, so text cells that
    start a formula get a leading ' in CSV (JSON is written as it is)."""
    import json

    from cs_metrics.core.safe_text import neutralize_csv

    if fmt == "json":
        records = json.loads(df.to_json(orient="records", double_precision=10))
        text = json.dumps(records, indent=2) + "\n"
    else:
        text = neutralize_csv(df).to_csv(index=False, float_format="%.10g", lineterminator="\n")
    if out:
        Path(out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
