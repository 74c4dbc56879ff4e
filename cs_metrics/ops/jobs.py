"""Commands handed to the running app: every command works while the app holds the warehouse.

DuckDB lets one process write a file or several read it, never both, and the app is the
writer. A command that finds the warehouse held by a running app (its heartbeat in the job
folder is fresh) writes its command line into the job folder beside the warehouse
(``WAREHOUSE.jobs/``); the app's server loop (cs_metrics.ops.server) runs it in-process on its
own connection and writes back the output and the exit code, which the command prints and
returns. What the user sees is the same as on a warehouse no one holds: the same output,
the same exit code, the same files written; loads go through the same code, audited, and
the pages read them at their next refresh.

The job folder is made for the warehouse's owner only (mode 0700); the app runs a job only
when its file belongs to the user the app runs as, and only the commands listed in
``HANDED`` (a job is a command line for this program's own parser, never a shell).
Relative paths of the command line are made absolute by the caller, since the app's working
directory is another.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cs_metrics.core.errors import CsMetricsError

__all__ = ["HANDED", "JobRunner", "JobServer", "hand_over", "job_dir", "server_alive",
           "absolute_argv", "JOB_TIMEOUT_ENV"]

# The commands the app runs for others (the ones that open the warehouse).
HANDED = frozenset({"query", "report", "alerts", "audit", "quality", "topics", "forecast",
                    "simulate-outage", "ingest", "schedules", "status"})
# Options whose value is a path, made absolute before a command line is handed over.
PATH_OPTIONS = ("--out", "--mapping", "--rejects", "--settings", "--db", "--inbox")
HEARTBEAT = "server.json"
HEARTBEAT_FRESH_S = 15.0  # the loop writes it every second or so
BUSY_NOTICE_S = 2.0
JOB_TIMEOUT_ENV = "CS_METRICS_JOB_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
MAX_JOB_BYTES = 1_000_000


def job_dir(db: str | Path) -> Path:
    """The job folder of the warehouse file ``db``."""
    path = Path(db).resolve()
    return path.parent / f"{path.name}.jobs"


def _private(folder: Path) -> bool:
    """Whether ``folder`` is a real folder (not a link) of this user that nobody else may
    write or read: only then are the commands and results in it this user's own."""
    try:
        st = folder.lstat()
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
            and not st.st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def server_alive(db: str | Path) -> bool:
    """Whether an app serving ``db`` wrote its heartbeat recently, in a job folder that is
    this user's own (a folder or heartbeat someone else made is not an app to trust)."""
    folder = job_dir(db)
    if not _private(folder):
        return False
    try:
        beat = (folder / HEARTBEAT).lstat()
    except OSError:
        return False
    return (stat.S_ISREG(beat.st_mode) and beat.st_uid == os.getuid()
            and time.time() - beat.st_mtime < HEARTBEAT_FRESH_S)


def absolute_argv(argv: list[str], cwd: Path, flags: frozenset[str] = frozenset()) -> list[str]:
    """``argv`` with the values of PATH_OPTIONS and the ``ingest`` SOURCE made absolute
    against ``cwd``. ``flags``: the options that take no value."""
    def absolute(value: str) -> str:
        return str((cwd / value).resolve()) if value else value

    out: list[str] = []
    command: str | None = None
    source_seen = False
    value_of: str | None = None  # the option whose value the next token is
    for token in argv:
        if value_of is not None and not token.startswith("--"):
            out.append(absolute(token) if value_of in PATH_OPTIONS else token)
            value_of = None
            continue
        value_of = None
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            if eq:
                out.append(f"{name}={absolute(value)}" if name in PATH_OPTIONS else token)
            else:
                out.append(token)
                if token not in flags:
                    value_of = token
            continue
        if command is None:
            command = token
            out.append(token)
        elif command == "ingest" and not source_seen:
            source_seen = True
            out.append(absolute(token))
        else:
            out.append(token)
    return out


def _timeout() -> float:
    try:
        value = float(os.environ.get(JOB_TIMEOUT_ENV, "") or DEFAULT_TIMEOUT_S)
    except ValueError:
        value = DEFAULT_TIMEOUT_S
    return max(1.0, value)


def hand_over(db: str | Path, argv: list[str], settings: str | None,
              stdout: Any = None, stderr: Any = None) -> int:
    """Run ``argv`` in the app serving ``db``; print its output; return its exit code.

    ``settings``: the settings file this command would read (absolute), or None. Waits up
    to ``$CS_METRICS_JOB_TIMEOUT`` seconds (default 600); says so on stderr when the app
    has not taken the job within two seconds; after the timeout, a job not yet taken is
    withdrawn and the exit code is 2.
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    folder = job_dir(db)
    job_id = f"{time.time():.6f}-{uuid.uuid4().hex[:8]}"
    waiting = folder / f"{job_id}.json"
    taken = folder / f"{job_id}.running"
    done = folder / f"{job_id}.done"
    tmp = folder / f".{job_id}.tmp"
    try:
        tmp.write_text(json.dumps({"argv": argv, "settings": settings}), encoding="utf-8")
        os.chmod(tmp, 0o600)
        os.replace(tmp, waiting)
    except OSError as exc:
        raise CsMetricsError(
            f"The warehouse {db} is held by the running app, and the command could not be "
            f"handed to it through {folder}: {exc.strerror or exc}."
        ) from exc
    limit = _timeout()
    started = time.monotonic()
    noticed = False
    while True:
        if done.exists():
            try:
                result = json.loads(done.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                time.sleep(0.05)  # being written
                continue
            with contextlib.suppress(OSError):
                done.unlink()
            stdout.write(result.get("stdout", ""))
            stderr.write(result.get("stderr", ""))
            stdout.flush()
            return int(result.get("code", 2))
        elapsed = time.monotonic() - started
        if not noticed and elapsed > BUSY_NOTICE_S and waiting.exists():
            print(f"The app holding {db} is busy; the command waits for it (up to "
                  f"{limit:.0f} s).", file=stderr, flush=True)
            noticed = True
        if elapsed > limit:
            try:
                waiting.unlink()  # not taken yet: withdrawn
                what = "did not take the command"
            except OSError:
                what = "took the command but did not finish it"
            print(f"error: the app holding {db} {what} within {limit:.0f} s "
                  f"(${JOB_TIMEOUT_ENV}); try again when it is less busy.", file=stderr)
            if not waiting.exists() and taken.exists():
                pass  # the app writes its result later and removes it on its next pass
            return 2
        time.sleep(0.1)


# Runs a handed command line in the app process: (argv, settings file) -> (exit code, stdout,
# stderr). The command line's run_in_app; passed in, since ops sits below the command line.
JobRunner = Callable[[list[str], str | None], tuple[int, str, str]]


@dataclass
class JobServer:
    """The app's side: a heartbeat, and the waiting jobs run one at a time.

    ``runner(argv, settings)`` runs a command line in the app process and returns (exit
    code, stdout, stderr); ``on_change()`` runs after a job that may have written (a load,
    the alert rules), so the pages read the new figures.
    """

    db: Path
    runner: JobRunner
    on_change: Callable[[], None] | None = None
    ran: int = 0
    last_error: str | None = None

    def __post_init__(self) -> None:
        self.folder = job_dir(self.db)
        self._lock = threading.Lock()
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.folder.is_symlink():
            with contextlib.suppress(OSError):
                os.chmod(self.folder, 0o700)
        if not _private(self.folder):
            raise CsMetricsError(
                f"The job folder {self.folder} is a link, or belongs to or is open to another "
                "user: commands are not taken from it. Remove it; the app makes it again."
            )

    def _check(self) -> None:
        """The folder is still the app's own (someone may have moved it and put theirs)."""
        if not _private(self.folder):
            raise CsMetricsError(
                f"The job folder {self.folder} is no longer the app's own private folder: "
                "commands are not taken from it. Remove it; the app makes it again."
            )

    def _write(self, name: str, text: str) -> Path:
        """A new file ``name`` in the folder, made for this user only, never through a link
        (O_EXCL and O_NOFOLLOW: a name planted by someone else fails instead)."""
        path = self.folder / name
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        return path

    def heartbeat(self) -> None:
        self._check()
        tmp = self._write(f".{HEARTBEAT}.{os.getpid()}", json.dumps(
            {"pid": os.getpid(), "db": str(self.db), "at": time.time()}))
        os.replace(tmp, self.folder / HEARTBEAT)

    def pending(self) -> list[Path]:
        jobs = [p for p in self.folder.glob("*.json") if p.name != HEARTBEAT]
        return sorted(jobs, key=lambda p: p.name)

    def serve_pending(self) -> int:
        """Run every waiting job; returns how many ran."""
        n = 0
        with self._lock:
            self._check()
            self._sweep()
            for job in self.pending():
                running = job.with_suffix(".running")
                try:
                    os.replace(job, running)  # claimed: the caller can no longer withdraw it
                except OSError:
                    continue
                code, out, err = self._run(running)
                done = job.with_suffix(".done")
                tmp = self._write(f".{job.stem}.result",
                                  json.dumps({"code": code, "stdout": out, "stderr": err}))
                os.replace(tmp, done)
                with contextlib.suppress(OSError):
                    running.unlink()
                n += 1
                self.ran += 1
        return n

    def _run(self, path: Path) -> tuple[int, str, str]:
        try:
            if path.lstat().st_uid != os.getuid() or not stat.S_ISREG(path.lstat().st_mode):
                return 2, "", (f"error: the job {path.name} does not belong to the user the "
                               "app runs as; it was not run.\n")
            if path.lstat().st_size > MAX_JOB_BYTES:
                return 2, "", "error: the job is too large to be a command line.\n"
            job = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(job, dict):
                return 2, "", "error: the job is not a command line.\n"
            argv = job.get("argv")
            settings = job.get("settings")
            if (not isinstance(argv, list) or not argv
                    or not all(isinstance(a, str) for a in argv)
                    or not (settings is None or isinstance(settings, str))):
                return 2, "", "error: the job is not a command line.\n"
        except (OSError, ValueError, RecursionError) as exc:  # RecursionError: deep nesting
            return 2, "", f"error: the job could not be read: {type(exc).__name__}.\n"
        command = next((a for a in argv if not a.startswith("-")), "")
        if command not in HANDED or "--watch" in argv:
            return 2, "", (f"error: the app does not run `{command}` for other processes; "
                           "stop the app to run it.\n")
        try:
            code, out, err = self.runner(argv, settings)
        except Exception as exc:  # noqa: BLE001 - the loop must survive any command
            self.last_error = f"{command}: {exc}"
            return 2, "", f"error: the app could not run the command: {exc}\n"
        if self.on_change is not None and command in ("ingest", "alerts", "schedules",
                                                       "report"):
            try:
                self.on_change()
            except Exception as exc:  # noqa: BLE001
                self.last_error = f"after {command}: {exc}"
        return code, out, err

    def _sweep(self) -> None:
        """Results nobody collected within an hour (their command gave up) are removed."""
        for old in self.folder.glob("*.done"):
            with contextlib.suppress(OSError):
                if time.time() - old.stat().st_mtime > 3600:
                    old.unlink()


_RUN_LOCK = threading.Lock()


def run_captured(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` with its stdout and stderr captured (one command at a time: the
    redirection is the process's)."""
    out, err = io.StringIO(), io.StringIO()
    with _RUN_LOCK, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own exits
            code = exc.code if isinstance(exc.code, int) else 2
    return int(code or 0), out.getvalue(), err.getvalue()
