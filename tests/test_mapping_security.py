"""A mapping file is untrusted input: its expressions are parsed and checked, never run as
written, and evaluated where no file but the source can be read; its sources stay in their
folder. Each test attacks and asserts that nothing leaked and nothing was written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pytest

from cs_metrics import ingest
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.ingestion import _mapping_sql
from cs_metrics.ingestion._mapping_sql import ParsedExpression, Sandbox, parse_expression
from tests.conftest import ticket, write_csv

SECRET = "TOP-SECRET-VALUE-4242"


@pytest.fixture
def export(tmp_path) -> Path:
    """An export folder with three tickets, and a secret file beside (not inside) it."""
    folder = tmp_path / "export"
    write_csv(folder, "tickets", [
        ticket("T1", subject="hello", n="1"),
        ticket("T2", subject="world", n="x"),
        ticket("T3", subject="again", n="3"),
    ])
    (tmp_path / "secret.txt").write_text(SECRET + "\n")
    return folder


def mapping(folder: Path, columns: dict[str, str], source: str = "tickets.csv") -> Path:
    # a JSON string is a TOML basic string, whatever quotes the value holds
    lines = ["[tickets]", f"source = {json.dumps(source)}", "[tickets.columns]",
             'ticket_id = "ticket_id"', 'created_at = "created_at"', 'status = "status"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in columns.items()]
    path = folder / "map.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def everything_in(db: Path) -> str:
    """Every value of every table of the warehouse, as one text."""
    if not db.exists():
        return ""
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = []
        for (name,) in con.execute("select table_name from information_schema.tables "
                                   "where table_type = 'BASE TABLE'").fetchall():
            out.append(str(con.execute(f'select * from "{name}"').fetchall()))
        return "\n".join(out)
    finally:
        con.close()


HOSTILE = [
    "(select content from read_text('{secret}'))",
    "read_text('{secret}')",
    "(select content from read_text('/etc/passwd'))",
    "(select string_agg(content, ',') from read_text('/proc/self/environ'))",
    "(select count(*) from read_csv('{secret}'))",
    "(select string_agg(file, ',') from glob('/etc/*'))",
    "getenv('HOME')",
    "current_setting('memory_limit')",
    "1; COPY (select 'x') TO '{written}'; select 1",
    "1; ATTACH '{written}' AS evil; select 1",
    "subject; install httpfs",
    "subject; load httpfs",
    "subject; pragma version",
    "subject; set enable_external_access = true",
    "subject IN (select content from read_text('{secret}'))",
    "to_json((select content from read_text('{secret}')))",
    "list_transform([1], x -> (select content from read_text('{secret}')))",
    "query('select 1')",
    "$1",
]


@pytest.mark.parametrize("expression", HOSTILE)
def test_a_hostile_expression_is_refused_before_anything_is_written(export, tmp_path,
                                                                     expression):
    written = tmp_path / "written.out"
    expr = expression.format(secret=tmp_path / "secret.txt", written=written)
    path = mapping(export, {"subject": expr})
    db = tmp_path / "wh.duckdb"
    with pytest.raises(CsMetricsError) as err:
        ingest(export, mapping=path, db=db)
    message = str(err.value)
    assert str(path) in message and "table tickets" in message and "column subject" in message
    assert SECRET not in message and "root:" not in message
    assert not written.exists()
    assert not db.exists()  # refused before the warehouse was opened


def test_a_pth_file_cannot_be_written_into_site_packages(export, tmp_path):
    import site

    target = Path(site.getsitepackages()[0]) / "cs_metrics_attack.pth"
    path = mapping(export, {
        "subject": f"1; COPY (select 'import os') TO '{target}' (header false); select 1"})
    with pytest.raises(CsMetricsError, match="statements"):
        ingest(export, mapping=path, db=tmp_path / "wh.duckdb")
    assert not target.exists()


def test_a_cast_written_with_colons_rejects_one_row_instead_of_the_load(export, tmp_path):
    path = mapping(export, {"contacts": '"n"::integer'})
    db = tmp_path / "wh.duckdb"
    report = ingest(export, mapping=path, db=db)
    t = report.table("tickets")
    assert (t.read, t.loaded) == (3, 2)
    assert dict(t.rejected) == {"unparseable_value": 1}
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("select source_row, column_name, value from rejects").fetchall()
        stored = con.execute("select ticket_id, contacts from tickets_src order by 1").fetchall()
    finally:
        con.close()
    assert rows == [(2, "contacts", "x")]
    assert stored == [("T1", 1), ("T3", 3)]


@pytest.mark.parametrize("expression, expected", [
    ("upper(subject)", ["HELLO", "WORLD", "AGAIN"]),
    ("subject || '-' || ticket_id", ["hello-T1", "world-T2", "again-T3"]),
    ("case when n = 'x' then 'bad' else coalesce(nullif(subject, ''), 'none') end",
     ["hello", "bad", "again"]),
    ("regexp_replace(subject, '[aeiou]', '', 'g')", ["hll", "wrld", "gn"]),
    ("max(subject) over ()", ["world", "world", "world"]),
    ("cast(row_number() over (order by ticket_id desc) as varchar)", ["3", "2", "1"]),
])
def test_what_a_column_mapping_needs_still_works(export, tmp_path, expression, expected):
    path = mapping(export, {"subject": expression})
    db = tmp_path / "wh.duckdb"
    ingest(export, mapping=path, db=db)
    con = duckdb.connect(str(db), read_only=True)
    try:
        got = [r[0] for r in con.execute(
            "select subject from tickets_src order by ticket_id").fetchall()]
    finally:
        con.close()
    assert got == expected


@pytest.mark.parametrize("source", [
    "/etc/passwd",
    "../../../../../../../../etc/passwd",
    "../secret.txt",
    "../*.txt",
    "~/.bashrc",
])
def test_a_source_outside_its_folder_is_refused(export, tmp_path, source):
    path = mapping(export, {}, source=source)
    db = tmp_path / "wh.duckdb"
    with pytest.raises(CsMetricsError) as err:
        ingest(export, mapping=path, db=db)
    message = str(err.value)
    assert str(path) in message and "table tickets" in message and repr(source) in message
    assert SECRET not in message and "root:" not in message
    assert not db.exists()


def test_a_source_in_a_subfolder_or_going_out_and_back_in_is_read(export, tmp_path):
    sub = export / "2024"
    sub.mkdir()
    (export / "tickets.csv").rename(sub / "tickets.csv")
    for source in ("2024/tickets.csv", "2024/../2024/*.csv"):
        report = ingest(export, mapping=mapping(export, {}, source=source),
                        db=tmp_path / f"wh{len(source)}.duckdb")
        assert report.table("tickets").loaded == 3


def test_the_sandbox_holds_even_when_the_allowlist_has_a_gap(export, tmp_path, monkeypatch):
    """Defence in depth: with the parser let through everything, the expression still runs
    where no file outside the source folder can be read."""

    def let_through(text: str, where: str) -> ParsedExpression:
        return ParsedExpression(sql=text, conversions=())

    monkeypatch.setattr("cs_metrics.ingestion.mapping.parse_expression", let_through)
    secret = tmp_path / "secret.txt"
    for expr in (f"(select content from read_text('{secret}'))",
                 "(select content from read_text('/etc/passwd'))",
                 "(select string_agg(file, ',') from glob('/etc/*'))"):
        db = tmp_path / "wh.duckdb"
        with pytest.raises(CsMetricsError) as err:
            ingest(export, mapping=mapping(export, {"subject": expr}), db=db)
        assert "column subject" in str(err.value)
        assert "Permission" in str(err.value) or "disabled" in str(err.value)
        assert SECRET not in everything_in(db) and "root:" not in everything_in(db)


def test_the_sandbox_reads_its_files_and_nothing_else(export, tmp_path):
    (export / "neighbour.csv").write_text("a\n1\n")
    with Sandbox([export / "tickets.csv"]) as box:
        rows = box.con.execute(
            f"select count(*) from read_csv('{export / 'tickets.csv'}')").fetchall()
        assert rows == [(3,)]
        for sql in (f"select content from read_text('{tmp_path / 'secret.txt'}')",
                    f"select * from read_csv('{export}/../secret.txt')",
                    f"select * from read_csv('{export / 'neighbour.csv'}')",
                    "select * from glob('/etc/*')",
                    "set enable_external_access = true",
                    "set allowed_directories = ['/']",
                    "load httpfs"):
            with pytest.raises(duckdb.Error):
                box.con.execute(sql).fetchall()


@pytest.mark.parametrize("text", ["sum(subject)", "(a, b)", "t.subject", "main.t.subject",
                                  "Unique Key", "*"])
def test_what_is_not_a_column_mapping_gets_a_sentence(text):
    with pytest.raises(CsMetricsError) as err:
        parse_expression(text, "Mapping file m.toml, table tickets, column subject")
    assert str(err.value).startswith("Mapping file m.toml, table tickets, column subject: ")


def test_every_allowed_function_exists_in_duckdb():
    """The allowlist names real DuckDB functions (a typo would silently refuse a good
    mapping), and none of them is a table function."""
    con = duckdb.connect()
    known = {r[0]: set(r[1]) for r in con.execute(
        "select function_name, list(distinct function_type) from duckdb_functions() "
        "group by 1").fetchall()}
    # syntax rather than catalogue functions in DuckDB
    structural = {"case", "cast", "try_cast", "extract", "if", "coalesce", "ifnull",
                  "current_timestamp"}
    missing = sorted(f for f in _mapping_sql.ALLOWED_FUNCTIONS - structural if f not in known)
    assert not missing
    # a name that is only a table function could never be a column's value
    tables = sorted(f for f in _mapping_sql.ALLOWED_FUNCTIONS if known.get(f) == {"table"})
    assert not tables


def test_no_mapping_reaches_the_environment(export, tmp_path, monkeypatch):
    monkeypatch.setenv("CS_METRICS_SMTP_PASSWORD", SECRET)
    for expr in ("getenv('CS_METRICS_SMTP_PASSWORD')",
                 "(select content from read_text('/proc/self/environ'))"):
        db = tmp_path / "wh.duckdb"
        with pytest.raises(CsMetricsError):
            ingest(export, mapping=mapping(export, {"subject": expr}), db=db)
        assert SECRET not in everything_in(db)
    assert os.environ["CS_METRICS_SMTP_PASSWORD"] == SECRET


@pytest.mark.parametrize("expression", [
    # sqlglot prints an unknown type, a type's parameter and a unit word back as written
    'cast(subject as "varint) || (select content from read_text(\'/etc/passwd\')) || (subject")',
    'extract("year from created_at) || (select 1) || extract(year" from created_at)',
    'subject::decimal("a), (select 1) --")',
    # a -- comment is printed as /* ... */, which a */ inside it would end
    "subject -- */ || (select content from read_text('/etc/passwd')) /*",
])
def test_what_sqlglot_would_print_differently_is_refused_or_dropped(export, tmp_path,
                                                                    expression):
    db = tmp_path / "wh.duckdb"
    try:
        ingest(export, mapping=mapping(export, {"subject": expression}), db=db)
    except CsMetricsError as exc:
        assert "column subject" in str(exc)
    assert "root:" not in everything_in(db)
    parsed = None
    try:
        parsed = parse_expression(expression, "m.toml, table tickets, column subject")
    except CsMetricsError:
        return
    assert "select" not in parsed.sql.lower() and "/*" not in parsed.sql


def test_deep_nesting_gets_a_sentence_and_a_real_mapping_depth_works():
    where = "m.toml, table tickets, column subject"
    deep = "replace(" * 60 + "subject" + ", 'a', 'b')" * 60
    assert parse_expression(deep, where).sql.count("REPLACE(") == 60
    with pytest.raises(CsMetricsError, match="nested too deeply"):
        parse_expression("lower(" * 2000 + "subject" + ")" * 2000, where)
    with pytest.raises(CsMetricsError, match="characters long"):
        parse_expression("subject || " * 3000 + "subject", where)


def test_every_committed_mapping_passes_the_checks():
    import tomllib

    from tests.conftest import REPO

    seen = 0
    for path in sorted((REPO / "data" / "mappings").glob("*.toml")):
        for table, section in tomllib.loads(path.read_text()).items():
            for column, expr in section["columns"].items():
                if " " in expr and not any(c in expr for c in "(\"'|"):
                    continue  # a source column's name with spaces, not an expression
                parse_expression(expr, f"{path.name}, table {table}, column {column}")
                seen += 1
    assert seen >= 20
