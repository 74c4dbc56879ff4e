"""Mapping expressions: parsed into a syntax tree, checked against what a column mapping
needs, and evaluated on a DuckDB connection that cannot reach anything but the source files.

A mapping file comes from whoever exports the data, so its expressions are untrusted input.
They are never pasted into SQL as written: each one is parsed (sqlglot, DuckDB dialect), every
node is checked against an allowlist, casts and ``strptime`` are made row-safe on the tree, and
the SQL that runs is the tree rendered again. A gap in the allowlist is still contained: the
connection that evaluates the expressions has external access disabled and its configuration
locked, with only the source files readable (``Sandbox``).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from cs_metrics.core.errors import CsMetricsError

# Scalar functions a column mapping may call, by the name DuckDB knows them under (the tree is
# rendered in DuckDB's dialect before it runs, so the rendered name is the one checked).
# Anything not listed is refused: DuckDB has functions that read files (read_text, read_csv,
# glob, ...), list settings or the environment, and more arrive with every release; an
# allowlist stays closed when they do.
_STRING = """
    lower upper lcase ucase trim ltrim rtrim length len strlen left right substring substr
    replace concat concat_ws split_part string_split str_split string_split_regex
    regexp_split_to_array lpad rpad reverse repeat strpos instr position contains starts_with
    ends_with prefix suffix regexp_extract regexp_replace regexp_matches regexp_full_match
    translate ascii chr unicode strip_accents nfc_normalize printf format md5 sha256 hash
    array_to_string list_extract array_extract list_element list_value list_contains
    array_contains list_has_any list_distinct list_sort array_length string_to_array
    json_extract json_extract_string json_extract_path json_extract_path_text json_value
"""
_TIME = """
    strptime try_strptime strftime date_trunc datetrunc date_part datepart extract
    make_timestamp make_date make_time epoch epoch_ms epoch_us epoch_ns to_timestamp timezone
    date_diff datediff date_sub datesub date_add age last_day dayname monthname year month day
    hour minute second millisecond microsecond week weekofyear isodow dayofweek dayofmonth
    dayofyear quarter yearweek to_days to_hours to_minutes to_seconds to_milliseconds
    to_microseconds to_weeks to_months to_years time_bucket current_date current_timestamp now
    today get_current_timestamp
"""
_NUMBER = """
    abs round floor ceil ceiling trunc sign sqrt pow power ln log log10 log2 exp mod
    greatest least isnan isinf isfinite
"""
_LOGIC = "coalesce nullif if ifnull case cast try_cast"
# Aggregates and window functions over the source rows (event logs: the latest status of a
# ticket, its first response): they see the rows of the file being read and nothing else.
_WINDOW = """
    count count_star sum min max avg mean first last any_value arg_max arg_min max_by min_by
    string_agg group_concat listagg list array_agg bool_and bool_or median quantile_cont
    quantile_disc mode count_if row_number rank dense_rank percent_rank cume_dist ntile lag
    lead first_value last_value nth_value
"""
ALLOWED_FUNCTIONS = frozenset(" ".join([_STRING, _TIME, _NUMBER, _LOGIC, _WINDOW]).split())

# Syntax (not function calls) a column mapping may use.
_ALLOWED_NODES: tuple[type[exp.Expression], ...] = (
    exp.Column, exp.Identifier, exp.Literal, exp.Boolean, exp.Null, exp.Paren,
    exp.Binary, exp.Neg, exp.Not, exp.BitwiseNot,
    exp.Case, exp.If, exp.Cast, exp.TryCast, exp.DataType, exp.DataTypeParam,
    exp.Interval, exp.Var, exp.In, exp.Between, exp.Tuple, exp.Array, exp.Bracket,
    exp.AtTimeZone, exp.Window, exp.WindowSpec, exp.Order, exp.Ordered, exp.Filter,
    exp.Where, exp.Distinct, exp.Connector, exp.JSONExtract, exp.JSONExtractScalar,
    exp.JSONPath, exp.JSONPathPart,
)
# Refused outright, whatever their place: they reach beyond the row being mapped.
_REFUSED_NODES: tuple[tuple[type[exp.Expression], str], ...] = (
    (exp.Query, "a query"),
    (exp.Subquery, "a subquery"),
    (exp.Table, "a table reference"),
    (exp.Placeholder, "a parameter"),
    (exp.Lambda, "a lambda"),
)
_NAME = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(")
# The words a date part or interval unit may be (``extract(year from ...)``, ``interval 1
# day``): sqlglot prints such a word back as written, so it must be one of these.
_UNITS = frozenset("""
    year years month months day days hour hours minute minutes second seconds millisecond
    milliseconds microsecond microseconds week weeks quarter quarters decade decades century
    centuries millennium millennia epoch dow doy isodow isoyear yearweek dayofweek dayofyear
    dayofmonth julian era timezone timezone_hour timezone_minute ms us s m h d y
""".split())
# Longer expressions are not column mappings; deeper ones would exhaust the parser's stack.
MAX_EXPRESSION_CHARS = 20_000


@dataclass(frozen=True)
class ParsedExpression:
    sql: str  # the expression with casts and strptime made row-safe (try_cast/try_strptime)
    # (input expression, converted expression, kind) for each conversion, so a row whose
    # input is present but does not convert is rejected instead of silently becoming null
    conversions: tuple[tuple[str, str, str], ...]


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    match = _NAME.match(node.sql(dialect="duckdb"))
    return match.group(1).lower() if match else type(node).__name__.lower()


def _refusal(node: exp.Expression) -> str | None:
    """Why ``node`` may not appear in a column mapping, or None."""
    for kind, what in _REFUSED_NODES:
        if isinstance(node, kind):
            return f"{what} ({node.sql(dialect='duckdb')[:60]}) is not allowed"
    if isinstance(node, exp.Column):
        if node.args.get("table") is not None or node.args.get("db") is not None:
            return (f"{node.sql(dialect='duckdb')} names a table; write the source column's "
                    "name alone")
        return None
    if isinstance(node, exp.Star):
        parent = node.parent
        return None if isinstance(parent, exp.Count) else "* is allowed only in count(*)"
    # sqlglot prints a type it does not know, a type's parameter and a unit word back as
    # written: a quoted name there could carry any SQL past the checks
    if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.USERDEFINED:
        return f"the type {node.args.get('kind') or node.sql(dialect='duckdb')!r} is not known"
    if isinstance(node, exp.DataTypeParam) and not isinstance(node.this, exp.Literal):
        return "a type's parameters must be numbers, as in decimal(12, 2)"
    if isinstance(node, exp.Var) and str(node.this).lower() not in _UNITS:
        return f"{str(node.this)[:40]!r} is not a date part or unit"
    if isinstance(node, exp.Tuple) and not isinstance(node.parent, exp.In):
        return f"a row value {node.sql(dialect='duckdb')[:60]} is not allowed"
    if isinstance(node, exp.AggFunc) and node.find_ancestor(exp.Window) is None:
        return (f"the aggregate {_function_name(node)}() needs over (...): a column mapping "
                "gives one value per source row")
    if isinstance(node, _ALLOWED_NODES):
        return None
    if isinstance(node, exp.Func):
        name = _function_name(node)
        if name not in ALLOWED_FUNCTIONS:
            return (f"function {name}() is not allowed in a column mapping (table functions "
                    "and functions that read files, settings or the environment are refused)")
        return None
    return f"{type(node).__name__} syntax ({node.sql(dialect='duckdb')[:60]}) is not allowed"


def parse_expression(text: str, where: str) -> ParsedExpression:
    """Parse and check one mapping expression; the row-safe SQL that may run.

    ``where`` names the mapping file, table and column for the message of a refusal.
    """
    if len(text) > MAX_EXPRESSION_CHARS:
        raise CsMetricsError(
            f"{where}: the expression is {len(text):,} characters long; a column mapping "
            f"is at most {MAX_EXPRESSION_CHARS:,}."
        )
    try:
        with _deeper_stack():
            parsed = _row_safe(_checked(text, where))
            # What runs is the tree printed again: parsed and checked once more, it must
            # print the same, so nothing the checks did not see can reach DuckDB.
            for sql in (parsed.sql, *(part for c in parsed.conversions for part in c[:2])):
                if _render(_checked(sql, where)) != sql:
                    raise CsMetricsError(
                        f"{where}: {text!r} does not read the same once checked; write it "
                        "without quoted type names or units."
                    )
        return parsed
    except RecursionError as exc:
        raise CsMetricsError(
            f"{where}: the expression is nested too deeply to check; split it or simplify it."
        ) from exc


@contextlib.contextmanager
def _deeper_stack(limit: int = 20_000) -> Iterator[None]:
    """sqlglot's parser recurses a dozen frames per nested call: Python's default limit of
    1,000 would refuse a mapping of some 40 nested ``replace(...)``. Python 3.11 runs
    Python-to-Python calls without growing the C stack, so a higher limit is safe here."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _render(tree: exp.Expression) -> str:
    # comments dropped: sqlglot prints a -- comment as /* ... */, which a */ inside would end
    return tree.sql(dialect="duckdb", comments=False)


def _checked(text: str, where: str) -> exp.Expression:
    hint = ("a column mapping is a source column's name or one expression over source "
            "columns: column names, literals, operators, case, casts and allowed functions")
    try:
        statements = sqlglot.parse(text, read="duckdb")
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CsMetricsError(
            f"{where}: {text!r} is not a valid expression ({first}); double-quote source "
            "names that contain spaces."
        ) from exc
    statements = [s for s in statements if s is not None]
    if len(statements) != 1:
        raise CsMetricsError(
            f"{where}: {text!r} holds {len(statements)} statements; {hint}."
        )
    tree = statements[0]
    if isinstance(tree, exp.Alias):
        raise CsMetricsError(
            f"{where}: {text!r} reads as a column with an alias; double-quote source names "
            "that contain spaces."
        )
    for node in tree.walk():
        why = _refusal(node)
        if why:
            raise CsMetricsError(f"{where}: {why}; {hint}.")
    return tree


def _row_safe(tree: exp.Expression) -> ParsedExpression:
    """Casts and strptime rewritten to their try_ forms, each noted as a conversion."""
    conversions: list[tuple[str, str, str]] = []
    # innermost first, so an outer conversion's input holds the inner one's try_ form
    nodes = [n for n in tree.walk(bfs=False)
             if (isinstance(n, exp.Cast) and not isinstance(n, exp.TryCast))
             or isinstance(n, exp.StrToTime)]
    for node in reversed(nodes):
        if isinstance(node, exp.StrToTime):
            if node.args.get("safe"):
                continue  # try_strptime as written: the user chose null on failure
            safe: exp.Expression = node.copy()
            safe.set("safe", True)
            fmt = node.args.get("format")
            if isinstance(fmt, exp.Literal) and re.search(r"%[zZ]", str(fmt.this)):
                # sqlglot renders strptime cast to TIMESTAMP, which drops the zone %z reads:
                # the zoned value goes on as it is, and ingest converts it to UTC
                safe = exp.Anonymous(this="TRY_STRPTIME",
                                     expressions=[node.this.copy(), fmt.copy()])
            kind = "timestamp"
            source = node.this
        else:
            safe = exp.TryCast(this=node.this.copy(), to=node.to.copy())
            kind = _render(node.to)
            source = node.this
        source_sql = _render(source)
        if node is tree:
            tree = safe
        else:
            node.replace(safe)
        conversions.append((source_sql, _render(safe), kind))
    return ParsedExpression(sql=_render(tree), conversions=tuple(conversions))


# --- the sandbox -------------------------------------------------------------------------


class Sandbox:
    """An in-memory DuckDB that can read the given files and nothing else: external access
    off, configuration locked. Mapping expressions are evaluated here; their results move to
    the warehouse as Arrow record batches, so they never run on the warehouse's connection.

    Only the files themselves are readable (``allowed_paths``), not their folders: a mapping
    cannot reach a neighbour of its source either. A file reached through a link is allowed
    under its own name and its target's, since DuckDB checks the target."""

    def __init__(self, files: Iterable[Path], memory_limit: str | None = None) -> None:
        self._spill = tempfile.mkdtemp(prefix="cs_metrics_sandbox_")
        allowed = sorted({str(p) for f in files
                          for p in (Path(f).absolute(), Path(f).resolve())})
        self.con = duckdb.connect()
        try:
            self.con.execute("set temp_directory = ?", [self._spill])
            if memory_limit:
                self.con.execute("set memory_limit = ?", [memory_limit])
            self.con.execute("set allowed_paths = ?", [allowed])
            self.con.execute("set enable_external_access = false")
            self.con.execute("set lock_configuration = true")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        try:
            self.con.close()
        finally:
            shutil.rmtree(self._spill, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
