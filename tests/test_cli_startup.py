"""A fast start (issue 24): ``import cs_metrics``, ``--help`` and ``query`` load none of the
heavy libraries that only some analyses need, and the command line finds its plug-ins."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import cs_metrics
import cs_metrics.cli.main as cli_main
from cs_metrics.cli.main import main
from tests.conftest import REPO, ticket, write_csv

HEAVY = ("statsmodels", "sklearn", "scipy", "altair", "vaderSentiment", "faker")

# Run in a fresh interpreter: the test process has imported everything already.
CHECK = """
import contextlib, io, json, sys
heavy = {heavy!r}
loaded = {{}}
import cs_metrics
loaded["import"] = sorted(m for m in (*heavy, "pandas", "duckdb") if m in sys.modules)
from cs_metrics.cli.main import main
help_out = io.StringIO()
with contextlib.redirect_stdout(help_out):
    try:
        main(["--help"])
    except SystemExit as exc:
        help_code = exc.code
loaded["help"] = sorted(m for m in (*heavy, "pandas", "duckdb", "numpy") if m in sys.modules)
query_out = io.StringIO()
with contextlib.redirect_stdout(query_out):
    query_code = main(["query", "--metrics", "ticket_count", "--by", "channel", "--db",
                       sys.argv[1]])
loaded["query"] = sorted(m for m in heavy if m in sys.modules)
print(json.dumps({{"loaded": loaded, "help_code": help_code, "help": help_out.getvalue(),
                  "query_code": query_code, "query": query_out.getvalue()}}))
"""


def _tiny_db(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    write_csv(folder, "tickets", [
        ticket("A", "2024-01-01 09:00:00", "closed", channel="email",
               first_response_at="2024-01-01 09:20:00", resolved_at="2024-01-01 13:00:00"),
        ticket("B", "2024-01-03 09:00:00", "open", channel="chat"),
        ticket("C", "2024-01-04 09:00:00", "open", channel="chat"),
    ])
    db = tmp_path / "wh.duckdb"
    assert main(["ingest", str(folder), "--db", str(db)]) == 0
    return db


def test_help_and_query_import_no_heavy_library(tmp_path, capsys):
    db = _tiny_db(tmp_path)
    capsys.readouterr()
    res = subprocess.run([sys.executable, "-c", CHECK.format(heavy=HEAVY), str(db)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["loaded"] == {"import": [], "help": [], "query": []}
    assert got["help_code"] == 0
    assert "usage: python -m cs_metrics" in got["help"]
    assert got["query_code"] == 0
    assert got["query"].splitlines() == ["channel,ticket_count", "chat,2", "email,1"]


def test_python_m_help_exits_0_and_lists_every_command():
    res = subprocess.run([sys.executable, "-m", "cs_metrics", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    listed = ("{generate,ingest,query,quality,simulate-outage,report,alerts,feed,topics,"
              "staffing,forecast,schedules,status,audit,metrics,app}")
    assert listed in res.stdout


def test_public_api_is_resolved_lazily_and_completely():
    lazy = cs_metrics._LAZY
    assert sorted(lazy) == sorted(cs_metrics.__all__)
    for name in cs_metrics.__all__:
        assert getattr(cs_metrics, name) is not None, name
    assert set(cs_metrics.__all__) <= set(dir(cs_metrics))
    assert cs_metrics.comment_topics.__name__ == "topics"
    try:
        cs_metrics.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_plugins_come_from_entry_points_or_the_default_modules(monkeypatch):
    # a checkout that is not installed: no entry points, the default plug-in modules
    monkeypatch.setattr(cli_main, "entry_points", lambda group: [])
    monkeypatch.setattr(cli_main, "DEFAULT_PLUGINS", ("no_such_plugin_pkg.cli", "simulations.cli"))
    assert sorted(cli_main.plugin_commands()) == ["feed", "generate"]
    # without any plug-in the library's own commands still work, in their order
    monkeypatch.setattr(cli_main, "DEFAULT_PLUGINS", ())
    parser = cli_main.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == [n for n in cli_main.ORDER if n not in ("generate", "feed")]


def test_the_library_never_imports_simulations():
    found = []
    for path in sorted((REPO / "cs_metrics").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.relative_to(REPO)}: {n}" for n in names
                      if n == "simulations" or n.startswith("simulations.")]
    assert found == []


@pytest.mark.parametrize("body", [
    "",  # no COMMANDS at all
    "COMMANDS = 'generate'",  # not Command objects
    "raise RuntimeError('boom at import')",  # fails as it loads
    "import no_such_dependency_xyz",  # a dependency of its own is missing
])
def test_a_broken_plugin_costs_only_its_own_commands(body, tmp_path, monkeypatch, capsys):
    pkg = tmp_path / "brokenplug"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "cli.py").write_text(body + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli_main, "entry_points", lambda group: [])
    monkeypatch.setattr(cli_main, "DEFAULT_PLUGINS", ("brokenplug.cli", "simulations.cli"))
    try:
        assert sorted(cli_main.plugin_commands()) == ["feed", "generate"]
        err = capsys.readouterr().err
        assert "plug-in brokenplug.cli could not be loaded" in err and "Traceback" not in err
        # every other command still runs
        assert cli_main.main(["metrics"]) == 0
        assert "ticket_count" in capsys.readouterr().out
    finally:
        for name in [m for m in sys.modules if m.startswith("brokenplug")]:
            del sys.modules[name]


def test_a_broken_entry_point_is_named_and_skipped(monkeypatch, capsys):
    class EP:
        name, value, module = "oops", "simulations.cli:no_such_command", "simulations.cli"

        def load(self):
            raise AttributeError("module 'simulations.cli' has no attribute 'no_such_command'")

    monkeypatch.setattr(cli_main, "entry_points", lambda group: [EP()])
    assert sorted(cli_main.plugin_commands()) == ["feed", "generate"]
    err = capsys.readouterr().err
    assert "'oops' (simulations.cli:no_such_command) could not be loaded" in err


def test_a_range_that_ends_before_it_starts_is_refused(tmp_path, capsys):
    write_csv(tmp_path / "src", "tickets", [ticket("T1")])
    cs_metrics.ingest(tmp_path / "src", db=tmp_path / "wh.duckdb")
    code = main(["query", "--metrics", "ticket_count", "--from", "2024-02-01",
                 "--to", "2024-01-01", "--db", str(tmp_path / "wh.duckdb")])
    assert code == 2
    assert "ends before it starts" in capsys.readouterr().err
