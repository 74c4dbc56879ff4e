"""The architecture, checked rather than only written down (ARCHITECTURE.md, DESIGN.md).

Every import of every module counts, at module level and inside functions alike (an import
inside a function is a dependency that only waits for its first call); the bodies of
``if TYPE_CHECKING:`` blocks do not, as they never run. ``importlib.import_module`` with a
literal name counts as an import too.

- Layers: core < ingestion < metrics < analysis < ops < cli. A module imports only its own
  layer or lower ones. ``cs_metrics/__init__.py`` and ``cs_metrics/__main__.py`` are the
  façade over every layer and exempt; nothing inside the layers imports the façade.
- The library never imports ``streamlit``, ``views`` or ``simulations``: the app and the
  sample-data plug-in build on it, never the reverse.
- ``simulations`` never imports ``views``.
- No import cycle among the library's modules. Importing a package counts as importing its
  ``__init__``; ``from package import submodule`` counts as importing that submodule.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "cs_metrics"
LAYERS = ("core", "ingestion", "metrics", "analysis", "ops", "cli")
FACADE = {"cs_metrics", "cs_metrics.__main__"}
FORBIDDEN_IN_LIBRARY = ("streamlit", "views", "simulations")


@dataclass(frozen=True)
class Import:
    path: Path  # the importing file
    line: int
    text: str  # the statement as written, for the failure message
    target: str  # the dotted name of the module imported

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: `{self.text}`"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    """Whether ``dotted`` names a module or package of the repository (not a name in one)."""
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve_relative(path: Path, module: str | None, level: int) -> str:
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (level - 1)] if level > 1 else package
    return ".".join(base + ([module] if module else []))


def _imports(path: Path) -> list[Import]:
    """Every import that runs in ``path``: module level, functions, classes; not TYPE_CHECKING."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    found: list[Import] = []

    def text(node: ast.AST) -> str:
        return (ast.get_source_segment(source, node) or ast.unparse(node)).split("\n")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:  # only the `else:` of `if TYPE_CHECKING:` runs
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(path, node.lineno, text(node), alias.name))
        elif isinstance(node, ast.ImportFrom):
            module = (_resolve_relative(path, node.module, node.level) if node.level
                      else node.module or "")
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                target = sub if alias.name != "*" and _is_module(sub) else module
                found.append(Import(path, node.lineno, text(node), target))
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id == "import_module"))):
            found.append(Import(path, node.lineno, text(node), node.args[0].value))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _top(name: str) -> str:
    return name.split(".")[0]


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_the_checker_sees_every_kind_of_import(tmp_path, monkeypatch):
    # The test is only as good as its reading of imports: function-level ones and relative
    # ones count, the body of `if TYPE_CHECKING:` does not.
    pkg = tmp_path / "cs_metrics" / "core"
    pkg.mkdir(parents=True)
    (tmp_path / "cs_metrics" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("")
    probe = pkg / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import cs_metrics.ops.alerts\n"
        "else:\n"
        "    import json\n"
        "def f():\n"
        "    from cs_metrics.cli.main import main\n"
        "    from . import a\n"
        "    from .a import thing\n"
        "    importlib.import_module('streamlit')\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert [(i.line, i.target) for i in _imports(probe)] == [
        (1, "typing"), (5, "json"), (7, "cs_metrics.cli.main"), (8, "cs_metrics.core.a"),
        (9, "cs_metrics.core.a"), (10, "streamlit"),
    ]


def test_every_library_module_belongs_to_a_layer():
    stray = [str(p.relative_to(ROOT)) for p in _files(LIBRARY)
             if _module_name(p) not in FACADE and _layer(_module_name(p)) is None]
    assert not stray, (
        "modules outside the layer packages " + ", ".join(LAYERS) + " (move each into the "
        "layer it belongs to): " + ", ".join(stray)
    )


def test_a_module_imports_only_its_own_layer_or_lower_ones():
    problems = []
    for path in _files(LIBRARY):
        module = _module_name(path)
        if module in FACADE:
            continue
        own = _layer(module)
        for imp in _imports(path):
            if _top(imp.target) != "cs_metrics":
                continue
            if imp.target in FACADE:
                problems.append(f"{imp.where()}: imports the façade `{imp.target}`; import the "
                                "module the name comes from")
                continue
            theirs = _layer(imp.target)
            if theirs is None:
                problems.append(f"{imp.where()}: `{imp.target}` is in no layer")
            elif own is not None and LAYERS.index(theirs) > LAYERS.index(own):
                problems.append(f"{imp.where()}: {own} imports {theirs}, a higher layer "
                                f"({' < '.join(LAYERS)})")
    assert not problems, "layer contract broken:\n" + "\n".join(problems)


def test_the_library_never_imports_the_app_or_the_sample_data():
    problems = [
        f"{imp.where()}: the library imports `{_top(imp.target)}`"
        for path in _files(LIBRARY) for imp in _imports(path)
        if _top(imp.target) in FORBIDDEN_IN_LIBRARY
    ]
    assert not problems, "\n".join(problems)


def test_simulations_never_import_the_app():
    problems = [
        f"{imp.where()}: simulations imports `{imp.target}`"
        for path in _files(ROOT / "simulations") for imp in _imports(path)
        if _top(imp.target) == "views"
    ]
    assert not problems, "\n".join(problems)


def _cycles(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself
    (Tarjan's algorithm, iterative: the graph is small but recursion depth is not ours)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for succ in edges:
                if succ not in graph:
                    continue
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph[node]:
                        found.append(sorted(component))
    return found


def _one_cycle(graph: dict[str, dict[str, Import]], component: list[str]) -> list[Import]:
    """The imports of one shortest cycle through the component's first module."""
    members = set(component)
    start = component[0]
    paths: dict[str, list[Import]] = {start: []}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for succ, imp in sorted(graph[node].items()):
                if succ == start:
                    return paths[node] + [imp]
                if succ in members and succ not in paths:
                    paths[succ] = paths[node] + [imp]
                    nxt.append(succ)
        frontier = nxt
    return []


def test_no_import_cycle_in_the_library():
    graph: dict[str, dict[str, Import]] = {}
    for path in _files(LIBRARY):
        module = _module_name(path)
        edges = graph.setdefault(module, {})
        for imp in _imports(path):
            if _top(imp.target) == "cs_metrics" and _is_module(imp.target):
                edges.setdefault(imp.target, imp)
                # Importing cs_metrics.ops.reports.build first runs cs_metrics/ops/reports/
                # __init__.py: an edge to every package above the target that is not above
                # the importer already (the façade, cs_metrics itself, imports lazily).
                parts = imp.target.split(".")
                for n in range(2, len(parts)):
                    package = ".".join(parts[:n])
                    if not (module == package or module.startswith(package + ".")):
                        edges.setdefault(package, imp)
    messages = []
    for component in _cycles(graph):
        steps = "\n".join(f"    {imp.where()}" for imp in _one_cycle(graph, component))
        messages.append(f"cycle among {', '.join(component)}:\n{steps}")
    assert not messages, "import cycles:\n" + "\n".join(messages)


def test_the_cycle_finder_finds_cycles():
    step = Import(ROOT / "x.py", 1, "import y", "y")
    graph = {"a": {"b": step}, "b": {"c": step}, "c": {"a": step}, "d": {"a": step},
             "e": {"e": step}, "f": {}}
    assert _cycles(graph) == [["a", "b", "c"], ["e"]]
    assert len(_one_cycle(graph, ["a", "b", "c"])) == 3
