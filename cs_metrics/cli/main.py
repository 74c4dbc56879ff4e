"""Command line: ``python -m cs_metrics COMMAND ...`` (see DATA_CONTRACT.md, section 3)."""

# Each command is a module of this package (add_parser + its run function); commands of other
# packages plug in through the entry point group ``cs_metrics.commands``. The command modules
# import pandas and the analysis modules inside their run functions, so building the parser
# (every start, ``--help``) loads neither statsmodels, scikit-learn nor altair.

from __future__ import annotations

import argparse
import contextvars
import importlib
import sys
import traceback
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from cs_metrics.cli import (
    alerts,
    app,
    audit,
    forecast,
    ingest,
    metrics,
    quality,
    query,
    report,
    schedules,
    simulate_outage,
    staffing,
    status,
    topics,
)
from cs_metrics.cli._common import Command, _Parser
from cs_metrics.core.errors import CsMetricsError, WarehouseLocked

AddParser = Callable[[argparse._SubParsersAction], None]

BUILTIN: dict[str, AddParser] = {
    "ingest": ingest.add_parser,
    "query": query.add_parser,
    "quality": quality.add_parser,
    "simulate-outage": simulate_outage.add_parser,
    "report": report.add_parser,
    "alerts": alerts.add_parser,
    "topics": topics.add_parser,
    "staffing": staffing.add_parser,
    "forecast": forecast.add_parser,
    "schedules": schedules.add_parser,
    "status": status.add_parser,
    "audit": audit.add_parser,
    "metrics": metrics.add_parser,
    "app": app.add_parser,
}
# The order `--help` lists the commands in; generate and feed are the sample-data plug-in's
# (simulations.cli) and keep their place when it is there. Other plug-ins come last.
ORDER: tuple[str, ...] = (
    "generate", "ingest", "query", "quality", "simulate-outage", "report", "alerts", "feed",
    "topics", "staffing", "forecast", "schedules", "status", "audit", "metrics", "app",
)
PLUGIN_GROUP = "cs_metrics.commands"
# Plug-in modules tried by name when no entry point names them, as in a checkout that is not
# installed; one that is not importable (the library installed without them) is skipped.
DEFAULT_PLUGINS: tuple[str, ...] = ("simulations.cli",)


def _not_found(exc: ModuleNotFoundError, module: str) -> bool:
    """True when ``module`` itself (or a package above it) is missing, not something it
    imports: a broken plug-in must say so rather than vanish."""
    return exc.name is not None and (module == exc.name or module.startswith(exc.name + "."))


def _broken(source: str, exc: BaseException) -> None:
    """A plug-in that cannot load costs its own commands, never the others: it is named on
    standard error, without a traceback, and skipped."""
    print(f"warning: the command plug-in {source} could not be loaded and its commands are "
          f"not available ({type(exc).__name__}: {exc}); reinstall or remove it.",
          file=sys.stderr)


def _commands_of(source: str, loaded: object) -> list[Command]:
    """The ``Command`` objects a plug-in gives: one, or a ``COMMANDS`` sequence of them."""
    items = getattr(loaded, "COMMANDS", None) if not isinstance(loaded, Command) else [loaded]
    if not isinstance(items, (list, tuple)) or not all(
            isinstance(c, Command) and isinstance(c.name, str) and callable(c.add_parser)
            for c in items):
        raise TypeError(f"{source} gives no cs_metrics.cli Command")
    return list(items)


def plugin_commands() -> dict[str, AddParser]:
    """The commands of the plug-ins, by name: entry points first, then ``DEFAULT_PLUGINS``
    for the names no entry point gave. A plug-in that is not installed is skipped quietly, one
    that fails to load with a warning."""
    found: dict[str, AddParser] = {}
    for ep in entry_points(group=PLUGIN_GROUP):
        source = f"{ep.name!r} ({ep.value})"
        try:
            commands = _commands_of(source, ep.load())
        except ModuleNotFoundError as exc:
            if not _not_found(exc, ep.module):
                _broken(source, exc)
            continue  # declared by an installed distribution whose code is gone
        except Exception as exc:  # a plug-in is someone else's code: any failure is its own
            _broken(source, exc)
            continue
        for command in commands:
            found.setdefault(command.name, command.add_parser)
    for module in DEFAULT_PLUGINS:
        try:
            commands = _commands_of(module, importlib.import_module(module))
        except ModuleNotFoundError as exc:
            if not _not_found(exc, module):
                _broken(module, exc)
            continue
        except Exception as exc:
            _broken(module, exc)
            continue
        for command in commands:
            found.setdefault(command.name, command.add_parser)
    return found


def build_parser() -> argparse.ArgumentParser:
    # named as the user called it: the console command, or the module
    prog = "cs-metrics" if Path(sys.argv[0]).name == "cs-metrics" else "python -m cs_metrics"
    p = _Parser(prog=prog, description=__doc__)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands = {**plugin_commands(), **BUILTIN}  # a plug-in never replaces a built-in command
    for name in ORDER:
        if name in commands:
            commands.pop(name)(sub)
    for add_parser in commands.values():
        add_parser(sub)
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
