"""The package as it installs: the wheel's contents, its metadata, and the `cs-metrics` command
working from a folder that is not the repository.

The wheel is built without build isolation (no network) from a copy of the sources, so that
the build writes nothing into the repository. Installing it with ``--no-deps`` into a venv
that sees this interpreter's packages takes seconds, and the command then runs against the
installed copy only (the test checks where ``cs_metrics`` is imported from).
"""

from __future__ import annotations

import ast
import configparser
import csv
import email.parser
import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("cs_metrics", "simulations", "views")
LAYERS = ("core", "ingestion", "metrics", "analysis", "ops", "cli")


def _can_build_wheels() -> str | None:
    """Why a wheel cannot be built offline here, or None when it can."""
    try:
        import setuptools
    except ImportError:
        return "setuptools is not installed (requirements-dev.txt)"
    major, minor = (int(p) for p in re.findall(r"\d+", setuptools.__version__)[:2])
    if (major, minor) >= (70, 1):
        return None  # bdist_wheel is part of setuptools from 70.1 on
    try:
        import wheel  # noqa: F401
    except ImportError:
        return (f"setuptools {setuptools.__version__} needs the `wheel` package to build a "
                "wheel; install setuptools>=70.1 (requirements-dev.txt)")
    return None


def _sources() -> list[Path]:
    """The files the package ships, relative to the repository."""
    files = [Path("app.py")]
    for top in SOURCES:
        files += [p.relative_to(ROOT) for p in (ROOT / top).rglob("*")
                  if p.is_file() and p.suffix != ".pyc"
                  and not any(part == "__pycache__" or part.startswith(".")
                              for part in p.relative_to(ROOT).parts)]
    return sorted(files)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    reason = _can_build_wheels()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("packaging")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "requirements.txt", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for rel in _sources():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    out = work / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"pip wheel failed:\n{done.stdout}\n{done.stderr}"
    (built,) = out.glob("cs_metrics-*.whl")
    return built


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def _dist_info(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as z:
        (member,) = [n for n in z.namelist() if n.endswith(f".dist-info/{name}")]
        return z.read(member).decode("utf-8")


def test_the_wheel_holds_every_layer_the_app_and_the_package_data(wheel):
    names = _names(wheel)
    for layer in LAYERS:
        assert f"cs_metrics/{layer}/__init__.py" in names, f"layer {layer} missing from the wheel"
    missing = [str(rel) for rel in _sources() if rel.as_posix() not in names]
    assert not missing, f"files of the source tree missing from the wheel: {missing}"
    assert "cs_metrics/core/default_settings.toml" in names
    assert "app.py" in names and "views/overview.py" in names and "simulations/__init__.py" in names
    if (ROOT / "cs_metrics" / "ops" / "reports" / "__init__.py").is_file():
        templates = [n for n in names
                     if re.fullmatch(r"cs_metrics/ops/reports/templates/[^/]+\.html\.j2", n)]
        assert templates, "the report templates (cs_metrics/ops/reports/templates) did not ship"
    # Nothing but the package: no tests, benchmarks, generated data or deploy files.
    tops = {n.split("/")[0] for n in names if not n.startswith("cs_metrics-")}
    assert tops == {"cs_metrics", "simulations", "views", "app.py"}, tops
    record = _dist_info(wheel, "RECORD")
    assert "cs_metrics/core/default_settings.toml," in record


def test_the_wheel_declares_the_command_its_plugins_and_its_dependencies(wheel):
    entry_points = configparser.ConfigParser()
    entry_points.read_string(_dist_info(wheel, "entry_points.txt"))
    assert entry_points["console_scripts"]["cs-metrics"] == "cs_metrics.cli.main:main"
    commands = dict(entry_points["cs_metrics.commands"])
    assert {"generate", "feed"} <= set(commands)
    names = _names(wheel)
    for command, target in commands.items():
        module, _, attr = target.partition(":")
        path = module.replace(".", "/") + ".py"
        assert path in names, f"entry point {command} = {target}: {path} is not in the wheel"
        with zipfile.ZipFile(wheel) as z:
            tree = ast.parse(z.read(path))
        defined = {n.name for n in tree.body
                   if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)}
        defined |= {t.id for n in tree.body if isinstance(n, ast.Assign)
                    for t in n.targets if isinstance(t, ast.Name)}
        assert attr in defined, f"entry point {command} = {target}: {path} defines no {attr}"
    # `main` returns the exit status: the console script passes it to sys.exit.
    main = ast.parse((ROOT / "cs_metrics" / "cli" / "main.py").read_text(encoding="utf-8"))
    (fn,) = [n for n in main.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    assert ast.unparse(fn.returns) == "int"

    metadata = email.parser.Parser().parsestr(_dist_info(wheel, "METADATA"))
    requires = {_dist_name(r) for r in metadata.get_all("Requires-Dist") or []
                if "extra ==" not in r}
    assert requires == set(_requirements()), "METADATA and requirements.txt differ"
    assert metadata["Requires-Python"] == ">=3.11"


def _dist_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _requirements() -> dict[str, str]:
    """requirements.txt: normalised distribution name -> the line."""
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return {_dist_name(line): line for line in lines if line.strip() and not line.startswith("#")}


def test_every_imported_package_is_declared():
    # Every third-party module the library, the app and the plug-in import comes from a
    # distribution named in requirements.txt (not merely installed alongside another one).
    local = {"cs_metrics", "views", "simulations", "app", "tests"}
    provided = importlib.metadata.packages_distributions()
    declared = set(_requirements())
    problems = []
    files = [ROOT / "app.py"] + [p for top in SOURCES for p in (ROOT / top).rglob("*.py")
                                 if "__pycache__" not in p.parts]
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in local or top in sys.stdlib_module_names:
                    continue
                dists = {_dist_name(d) for d in provided.get(top, [])}
                if not dists & declared:
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: `{top}` comes "
                                    f"from {sorted(dists) or 'no installed distribution'}, "
                                    "not declared in requirements.txt")
    assert not problems, "\n".join(problems)


def test_the_installed_command_runs_from_any_folder(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "-q", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    command = venv / "bin" / "cs-metrics"
    assert command.is_file()
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CS_METRICS_") and k != "PYTHONPATH"}

    def run(*args: str) -> str:
        done = subprocess.run([str(command), *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"cs-metrics {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    where = subprocess.run([str(python), "-c", "import cs_metrics; print(cs_metrics.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout

    usage = run("--help")
    for name in ("generate", "ingest", "query"):
        assert name in usage
    run("generate", "--out", "sample", "--tickets", "200", "--days", "20", "--seed", "3")
    assert (work / "sample").is_dir()
    loaded = run("ingest", "sample", "--db", "wh.duckdb")
    assert "data-quality score" in loaded
    rows = list(csv.DictReader(io.StringIO(
        run("query", "--metrics", "ticket_count", "--by", "channel", "--db", "wh.duckdb"))))
    assert rows and {"channel", "ticket_count"} <= set(rows[0])

    import duckdb

    with duckdb.connect(str(work / "wh.duckdb"), read_only=True) as con:
        (stored,) = con.execute("select count(*) from tickets").fetchone()
    (total,) = csv.DictReader(io.StringIO(
        run("query", "--metrics", "ticket_count", "--db", "wh.duckdb")))
    # the registry's count of the loaded tickets, split by channel without losing any
    assert 0 < int(total["ticket_count"]) <= stored
    assert sum(int(r["ticket_count"]) for r in rows) == int(total["ticket_count"])
