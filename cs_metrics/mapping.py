"""Mapping files (foreign exports onto canonical tables) and canonical folders."""

from __future__ import annotations

import glob
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cs_metrics.errors import CsMetricsError
from cs_metrics.schema import FILE_EXTENSIONS, TABLES

FORMATS = ("csv", "parquet", "jsonl")


@dataclass(frozen=True)
class TableMapping:
    """How one canonical table is read from one source (a file or a glob)."""

    table: str
    files: tuple[Path, ...]
    fmt: str
    delimiter: str | None
    timezone: str
    # canonical column -> source column name or DuckDB SQL expression
    columns: tuple[tuple[str, str], ...]
    # canonical column -> ((canonical value, (source values...)), ...)
    values: tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...]
    origin: str  # the mapping file, or the canonical file, for messages

    def column_map(self) -> dict[str, str]:
        return dict(self.columns)

    def value_map(self, column: str) -> dict[str, tuple[str, ...]]:
        return dict(dict(self.values).get(column, ()))


@dataclass(frozen=True)
class Mapping:
    tables: tuple[TableMapping, ...]
    path: Path | None  # None for a canonical folder

    def for_table(self, table: str) -> TableMapping | None:
        for t in self.tables:
            if t.table == table:
                return t
        return None


def _format_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".jsonl") or name.endswith(".ndjson") or name.endswith(".json"):
        return "jsonl"
    if name.endswith(".csv") or name.endswith(".csv.gz") or name.endswith(".tsv"):
        return "csv"
    raise CsMetricsError(
        f"Cannot tell the format of {path}; name it .csv, .csv.gz, .parquet or .jsonl, "
        "or set format = \"csv\" | \"parquet\" | \"jsonl\" in the mapping."
    )


def canonical_folder(folder: str | Path) -> Mapping:
    """A folder with one file per canonical table, named after it: no mapping needed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CsMetricsError(
            f"{folder} is not a folder; pass a folder of canonical files (tickets.csv, ...) "
            "or add --mapping FILE for an export."
        )
    tables = []
    for name in TABLES:
        for ext in FILE_EXTENSIONS:
            path = folder / f"{name}{ext}"
            if path.is_file():
                tables.append(
                    TableMapping(
                        table=name,
                        files=(path,),
                        fmt=_format_of(path),
                        delimiter=None,
                        timezone="UTC",
                        columns=(),  # identity: filled from the file's header at read time
                        values=(),
                        origin=str(path),
                    )
                )
                break
    if not any(t.table == "tickets" for t in tables):
        found = sorted(p.name for p in folder.iterdir())[:10]
        raise CsMetricsError(
            f"{folder} has no tickets file (tickets.parquet, tickets.csv, tickets.csv.gz or "
            f"tickets.jsonl); it holds {found or 'nothing'}. For an export, add --mapping FILE."
        )
    return Mapping(tables=tuple(tables), path=None)


def _resolve_source(pattern: str, bases: list[Path]) -> tuple[Path, ...]:
    for base in bases:
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        matches = sorted(Path(p) for p in glob.glob(full) if Path(p).is_file())
        if matches:
            return tuple(matches)
    return ()


def read_mapping(path: str | Path, source: str | Path | None = None) -> Mapping:
    """Parse and check a mapping TOML; every problem is one sentence naming file and table.

    ``source`` (the SOURCE argument of ``ingest``): a file is read by every section; a folder
    is where the sections' ``source`` patterns are looked up first, before the mapping's own
    folder.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CsMetricsError(f"Mapping file {path} does not exist.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CsMetricsError(f"Mapping file {path} is not valid TOML: {exc}.") from exc
    if not raw:
        raise CsMetricsError(f"Mapping file {path} maps no table; add a [tickets] section.")
    unknown = sorted(set(raw) - set(TABLES))
    if unknown:
        raise CsMetricsError(
            f"Mapping file {path} has sections {unknown} that are not canonical tables; "
            f"use {', '.join(TABLES)}."
        )
    if "tickets" not in raw:
        raise CsMetricsError(f"Mapping file {path} has no [tickets] section; tickets are required.")
    source_path = Path(source) if source is not None else None
    bases = []
    if source_path is not None and source_path.is_dir():
        bases.append(source_path)
    bases.append(path.parent)
    tables = []
    for name, section in raw.items():
        where = f"Mapping file {path}, table {name}"
        if not isinstance(section, dict):
            raise CsMetricsError(f"{where}: must be a [{name}] section.")
        extra = sorted(set(section) - {"source", "timezone", "format", "delimiter", "columns",
                                       "values"})
        if extra:
            raise CsMetricsError(
                f"{where}: unknown keys {extra}; use source, timezone, format, delimiter, "
                "columns, values."
            )
        if source_path is not None and source_path.is_file():
            files: tuple[Path, ...] = (source_path,)
        else:
            pattern = section.get("source")
            if not pattern:
                raise CsMetricsError(f"{where}: add source = \"file.csv\" (a file or a glob).")
            files = _resolve_source(str(pattern), bases)
            if not files:
                looked = " or ".join(str(b) for b in bases)
                raise CsMetricsError(
                    f"{where}: source {pattern!r} matches no file in {looked}; fix the path "
                    "or pass the folder that holds it as SOURCE."
                )
        fmt = section.get("format") or _format_of(files[0])
        if fmt not in FORMATS:
            raise CsMetricsError(f"{where}: format {fmt!r} is not one of {', '.join(FORMATS)}.")
        tz = section.get("timezone", "UTC")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CsMetricsError(
                f"{where}: timezone {tz!r} is not a known zone; use a name like "
                "\"America/New_York\" or \"UTC\"."
            ) from exc
        columns = section.get("columns")
        if not isinstance(columns, dict) or not columns:
            raise CsMetricsError(f"{where}: add a [{name}.columns] section mapping columns.")
        canon = TABLES[name]
        bad = sorted(set(columns) - set(canon.column_names))
        if bad:
            raise CsMetricsError(
                f"{where}: {bad} are not columns of {name}; use {', '.join(canon.column_names)}."
            )
        for col, value in columns.items():
            if not isinstance(value, str) or not value.strip():
                raise CsMetricsError(
                    f"{where}, column {col}: the value must be a source column name or a SQL "
                    "expression in quotes."
                )
        missing = [c for c in canon.required if c not in columns]
        if missing:
            raise CsMetricsError(
                f"{where}: required column {missing[0]} is not mapped; add {missing[0]} = "
                "\"<source column or expression>\" under columns."
            )
        values = section.get("values", {})
        value_maps = []
        for col, vmap in values.items():
            if col not in canon.column_names:
                raise CsMetricsError(f"{where}: values for {col!r}, which is not a column.")
            if not isinstance(vmap, dict):
                raise CsMetricsError(
                    f"{where}, column {col}: values must map a canonical value to a list of "
                    "source values."
                )
            pairs = []
            for target, sources in vmap.items():
                if isinstance(sources, str):
                    sources = [sources]
                column = canon.column(col)
                if column.enum is not None and target not in column.enum:
                    raise CsMetricsError(
                        f"{where}, column {col}: {target!r} is not a canonical value; use "
                        f"{', '.join(column.enum)}."
                    )
                pairs.append((str(target), tuple(str(s) for s in sources)))
            value_maps.append((col, tuple(pairs)))
        delimiter = section.get("delimiter")
        tables.append(
            TableMapping(
                table=name,
                files=files,
                fmt=fmt,
                delimiter=delimiter,
                timezone=tz,
                columns=tuple((str(k), str(v)) for k, v in columns.items()),
                values=tuple(value_maps),
                origin=str(path),
            )
        )
    return Mapping(tables=tuple(tables), path=path)


# --- expressions -------------------------------------------------------------------------

_CALL = re.compile(r"(?<![\w.])(strptime|cast)\s*\(", re.IGNORECASE)


def _scan_to_close(text: str, start: int) -> int:
    """Index of the parenthesis closing the one opened just before ``start``."""
    depth = 1
    i = start
    quote: str | None = None
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _split_top(text: str, sep: str) -> list[str]:
    parts, depth, quote, last = [], 0, None, 0
    i = 0
    lowered = text.lower()
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and lowered.startswith(sep, i):
            parts.append(text[last:i])
            last = i + len(sep)
            i = last
            continue
        i += 1
    parts.append(text[last:])
    return parts


@dataclass(frozen=True)
class ParsedExpression:
    sql: str  # the expression with strptime/cast made row-safe (try_strptime/try_cast)
    # (input expression, converted expression, kind) for each conversion, so a row whose
    # input is present but does not convert is rejected instead of silently becoming null
    conversions: tuple[tuple[str, str, str], ...]


def make_row_safe(expr: str) -> ParsedExpression:
    """Rewrite conversions so one bad value rejects its row rather than failing the load."""
    conversions: list[tuple[str, str, str]] = []
    out: list[str] = []
    pos = 0
    for match in _CALL.finditer(expr):
        if match.start() < pos:
            continue  # nested inside a call already rewritten
        close = _scan_to_close(expr, match.end())
        if close < 0:
            break
        fn = match.group(1).lower()
        inner = expr[match.end() : close]
        inner_safe = make_row_safe(inner)
        conversions.extend(inner_safe.conversions)
        if fn == "strptime":
            args = _split_top(inner_safe.sql, ",")
            if len(args) >= 2:
                safe = f"try_strptime({inner_safe.sql})"
                conversions.append((args[0].strip(), safe, "timestamp"))
            else:
                safe = f"strptime({inner_safe.sql})"
        else:
            args = _split_top(inner_safe.sql, " as ")
            if len(args) >= 2:
                safe = f"try_cast({inner_safe.sql})"
                conversions.append((" as ".join(args[:-1]).strip(), safe, args[-1].strip()))
            else:
                safe = f"cast({inner_safe.sql})"
        out.append(expr[pos : match.start()])
        out.append(safe)
        pos = close + 1
    out.append(expr[pos:])
    return ParsedExpression(sql="".join(out), conversions=tuple(conversions))


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
