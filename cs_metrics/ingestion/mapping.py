"""Mapping files (foreign exports onto canonical tables) and canonical folders."""

from __future__ import annotations

import codecs
import glob
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.schema import FILE_EXTENSIONS, TABLES
from cs_metrics.ingestion._mapping_sql import ParsedExpression, parse_expression

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
    # a CSV source's text encoding (a Python codec name; None: UTF-8, or UTF-16 by its BOM)
    encoding: str | None = None
    # the longest CSV line the reader accepts, in bytes (None: MAX_LINE_SIZE)
    max_line_size: int | None = None
    # event logs: a boolean expression choosing the source rows to map (others are skipped),
    # and the key and order that keep one row (the latest) per key; all untrusted expressions
    where: str | None = None
    one_row_per: str | None = None
    latest_by: str | None = None
    # what separates the labels of ``tags`` in a text value (CSV, or an expression's text)
    tags_delimiter: str = ","

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


MAX_LINE_SIZE = 16_000_000  # bytes: DuckDB's 2 MB refuses a long ticket text (one 5 MB field)
FORMAT_FILE = "_format.toml"  # beside a canonical folder's files: how its CSVs are written


def check_encoding(value: object, where: str) -> str | None:
    """The Python codec name of an ``encoding`` setting, or None when it is not set."""
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise LookupError(value)
        try:
            b"ab".decode(value)  # bytes to text (base64, zlib, rot13 are not)
        except UnicodeError:
            pass  # a text encoding; two bytes may be too few for it
        return codecs.lookup(value).name
    except LookupError:
        raise CsMetricsError(
            f"{where}: encoding {value!r} is not a known text encoding; use \"utf-8\", "
            "\"utf-16\", \"latin-1\", \"cp1252\" or another Python codec name."
        ) from None


def check_max_line_size(value: object, where: str) -> int | None:
    """The ``max_line_size`` setting in bytes, or None when it is not set."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1024 <= value <= 2**31:
        raise CsMetricsError(
            f"{where}: max_line_size {value!r} must be a number of bytes from 1024 to "
            f"{2**31:,d}, like max_line_size = 64000000."
        )
    return value


def read_format_file(folder: Path) -> tuple[str | None, str | None, int | None]:
    """``_format.toml`` of a canonical folder, checked: (encoding, delimiter, max_line_size),
    each None when not set (or when there is no such file)."""
    path = folder / FORMAT_FILE
    if not path.is_file():
        return None, None, None
    where = f"{path}"
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CsMetricsError(
            f"{where} cannot be read as TOML ({exc}); write it like encoding = \"latin-1\"."
        ) from exc
    extra = sorted(set(raw) - {"encoding", "delimiter", "max_line_size"})
    if extra:
        raise CsMetricsError(
            f"{where}: unknown keys {extra}; use encoding, delimiter, max_line_size."
        )
    delimiter = raw.get("delimiter")
    if delimiter is not None and (not isinstance(delimiter, str) or not delimiter):
        raise CsMetricsError(f"{where}: delimiter {delimiter!r} must be text, like \";\".")
    return (check_encoding(raw.get("encoding"), where), delimiter,
            check_max_line_size(raw.get("max_line_size"), where))


def canonical_folder(folder: str | Path) -> Mapping:
    """A folder with one file per canonical table, named after it: no mapping needed.

    A ``_format.toml`` beside the files says how its CSV files are written (``encoding``,
    ``delimiter``, ``max_line_size``)."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise CsMetricsError(
            f"{folder} {what}; pass a folder of canonical files (tickets.csv, ...) "
            "or add --mapping FILE for an export."
        )
    encoding, delimiter, max_line = read_format_file(folder)
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
                        delimiter=delimiter,
                        timezone="UTC",
                        columns=(),  # identity: filled from the file's header at read time
                        values=(),
                        origin=str(path),
                        encoding=encoding,
                        max_line_size=max_line,
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


def _inside(path: Path, base: Path) -> bool:
    """Whether ``path``, with its ``..`` steps taken, lies inside ``base``. Links are not
    followed: one inside the folder was put there by whoever owns the folder (the live inbox
    links its batches), while the mapping file only chooses names."""
    norm = Path(os.path.normpath(os.path.abspath(path)))
    return norm.is_relative_to(Path(os.path.normpath(os.path.abspath(base))))


def _resolve_source(pattern: str, bases: list[Path], where: str) -> tuple[Path, ...]:
    """The files ``pattern`` names inside the first base that has any.

    A mapping file may come from anyone: its sources are confined to the SOURCE folder and
    the mapping's own folder, so ``source = "/etc/passwd"`` or ``"../../secrets.toml"`` never
    reads a file elsewhere.
    """
    folders = " or ".join(str(b) for b in bases)
    if Path(pattern).is_absolute() or Path(pattern).drive or pattern.startswith("~"):
        raise CsMetricsError(
            f"{where}: source {pattern!r} is an absolute path; write it relative to "
            f"{folders} (sources are read only from there)."
        )
    for base in bases:
        found = [Path(p) for p in glob.glob(glob.escape(str(base)) + "/" + pattern)
                 if Path(p).is_file()]
        outside = [p for p in found if not _inside(p, base)]
        if outside:
            raise CsMetricsError(
                f"{where}: source {pattern!r} leads out of {base}; "
                "sources are read only from the SOURCE folder or the mapping file's folder."
            )
        if found:
            return tuple(sorted(found))
    if ".." in Path(pattern).parts:
        raise CsMetricsError(
            f"{where}: source {pattern!r} leads out of {folders}; sources are read only from "
            "the SOURCE folder or the mapping file's folder."
        )
    return ()


def read_mapping(path: str | Path, source: str | Path | None = None) -> Mapping:
    """Parse and check a mapping TOML; every problem is one sentence naming file and table.

    ``source`` (the SOURCE argument of ``ingest``): a file is read by every section; a folder
    is where the sections' ``source`` patterns are looked up first, before the mapping's own
    folder.
    """
    path = Path(path)
    if path.is_dir():
        raise CsMetricsError(
            f"Mapping file {path} is a folder; pass the mapping's .toml file with --mapping "
            "(the folder that holds the export is SOURCE)."
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CsMetricsError(f"Mapping file {path} does not exist.") from exc
    except UnicodeDecodeError as exc:
        raise CsMetricsError(
            f"Mapping file {path} is not UTF-8 text (byte {exc.start + 1}); a mapping is a "
            "TOML text file saved as UTF-8."
        ) from exc
    except OSError as exc:
        raise CsMetricsError(
            f"Mapping file {path} cannot be read ({exc.strerror or exc}); check its "
            "permissions."
        ) from exc
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
                                       "values", "encoding", "max_line_size", "tags_delimiter",
                                       *ROW_KEYS})
        if extra:
            raise CsMetricsError(
                f"{where}: unknown keys {extra}; use source, timezone, format, delimiter, "
                "encoding, max_line_size, tags_delimiter, where, one_row_per, latest_by, "
                "columns, values."
            )
        row_keys = _row_keys(section, where)
        if source_path is not None and source_path.is_file():
            files: tuple[Path, ...] = (source_path,)
        else:
            pattern = section.get("source")
            if not pattern:
                raise CsMetricsError(f"{where}: add source = \"file.csv\" (a file or a glob).")
            files = _resolve_source(str(pattern), bases, where)
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
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
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
        if not isinstance(values, dict):
            raise CsMetricsError(
                f"{where}: values must be a [{name}.values.<column>] section mapping each "
                "canonical value to a list of source values."
            )
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
                if not isinstance(sources, list) or not all(
                        isinstance(s, str | int | float) for s in sources):
                    raise CsMetricsError(
                        f"{where}, column {col}: {target} = {sources!r} must be a list of "
                        f"source values, like {target} = [\"A\", \"B\"]."
                    )
                column = canon.column(col)
                if column.enum is not None and target not in column.enum:
                    raise CsMetricsError(
                        f"{where}, column {col}: {target!r} is not a canonical value; use "
                        f"{', '.join(column.enum)}."
                    )
                pairs.append((str(target), tuple(str(s) for s in sources)))
            value_maps.append((col, tuple(pairs)))
        delimiter = section.get("delimiter")
        if delimiter is not None and (not isinstance(delimiter, str) or not delimiter):
            raise CsMetricsError(
                f"{where}: delimiter {delimiter!r} must be text, like delimiter = \";\"."
            )
        encoding = check_encoding(section.get("encoding"), where)
        max_line = check_max_line_size(section.get("max_line_size"), where)
        tags_delimiter = section.get("tags_delimiter", ",")
        if not isinstance(tags_delimiter, str) or not tags_delimiter:
            raise CsMetricsError(
                f"{where}: tags_delimiter {tags_delimiter!r} must be text, like "
                "tags_delimiter = \";\"."
            )
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
                encoding=encoding,
                max_line_size=max_line,
                **row_keys,
                tags_delimiter=tags_delimiter,
            )
        )
    return Mapping(tables=tuple(tables), path=path)


ROW_KEYS = ("where", "one_row_per", "latest_by")


def _row_keys(section: dict, where: str) -> dict[str, str | None]:
    """A section's ``where``, ``one_row_per`` and ``latest_by``, checked for shape (their
    expressions are parsed with the columns' in ``check_mapping``)."""
    out: dict[str, str | None] = {}
    for key in ROW_KEYS:
        value = section.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise CsMetricsError(
                f"{where}: {key} must be a source column name or a SQL expression in quotes, "
                f"like {key} = \"number\"."
            )
        out[key] = value
    if (out["one_row_per"] is None) != (out["latest_by"] is None):
        given, other = ("one_row_per", "latest_by") if out["one_row_per"] else \
            ("latest_by", "one_row_per")
        raise CsMetricsError(
            f"{where}: {given} needs {other} as well; an event log keeps the latest row "
            "(by latest_by) of each key (one_row_per)."
        )
    return out


# --- expressions -------------------------------------------------------------------------


def make_row_safe(expr: str, where: str = "Mapping expression") -> ParsedExpression:
    """Parse and check ``expr`` (refused unless it is a plain column mapping), with casts and
    strptime rewritten so one bad value rejects its row rather than failing the load."""
    return parse_expression(expr, where)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
