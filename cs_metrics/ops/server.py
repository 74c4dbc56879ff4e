"""The app's own work loop: what a server does by itself, beside the pages.

One loop per warehouse the app holds read-write, in a background thread of the app process.
Every second it
- serves the commands other processes hand over while the app holds the warehouse
  (cs_metrics.ops.jobs), one at a time;
- evaluates the alert rules at start and every ``[alerts] every`` minutes, whether or not
  a live inbox is configured (cs_metrics.ops.alerts.run_alerts_on_schedule);
- builds and e-mails the scheduled reports that are due (cs_metrics.ops.schedules.run_due).
A failure of one step is recorded and logged and never stops the loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse, serve_in_process
from cs_metrics.ops.jobs import JobRunner, JobServer

__all__ = ["ServerLoop", "start_server_loop"]

log = logging.getLogger("cs_metrics.ops.server")
TICK_S = 1.0


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class ServerLoop:
    """The loop of one warehouse; ``errors`` holds the last failure of each step.
    ``run_job`` runs the command lines other processes hand over (cs_metrics.cli.main's
    run_in_app, given by the caller: ops does not import the command line)."""

    wh: Warehouse
    run_job: JobRunner
    on_change: Callable[[], None] | None = None
    tick_s: float = TICK_S
    stop: threading.Event = field(default_factory=threading.Event)
    errors: dict[str, str] = field(default_factory=dict)
    ticks: int = 0
    thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        serve_in_process(self.wh.path)
        self.jobs = JobServer(self.wh.path, self.run_job, self.on_change)

    def _step(self, name: str, work: Callable[[], object]) -> object:
        try:
            result = work()
        except (CsMetricsError, OSError) as exc:
            self.errors[name] = str(exc)
            log.warning("%s: %s", name, exc)
            return None
        except Exception as exc:  # noqa: BLE001 - the loop outlives any one failure
            self.errors[name] = f"{type(exc).__name__}: {exc}"
            log.exception("%s failed", name)
            return None
        self.errors.pop(name, None)
        return result

    def tick(self, now: datetime | None = None) -> None:
        """One pass: heartbeat, waiting commands, the alert rules and reports when due."""
        from cs_metrics.core.settings import load_settings

        now = now or _utcnow()
        self._step("heartbeat", self.jobs.heartbeat)
        self._step("commands", self.jobs.serve_pending)
        settings = self._step("settings", load_settings)
        if settings is not None and self._step("tables", lambda: self.wh.has_table("tickets")):
            ran = self._step("alerts", lambda: self._alerts(settings, now))
            if ran is not None and self.on_change is not None:
                self._step("refresh", self.on_change)
            self._step("schedules", lambda: self._schedules(settings, now))
        self.ticks += 1

    def _alerts(self, settings: object, now: datetime) -> object:
        from cs_metrics.ops.alerts import run_alerts_on_schedule

        return run_alerts_on_schedule(self.wh, settings, now)

    def _schedules(self, settings: object, now: datetime) -> object:
        from cs_metrics.ops.schedules import run_due

        return run_due(self.wh, settings, now)

    def run(self) -> None:
        while not self.stop.is_set():
            self.tick()
            self.stop.wait(self.tick_s)

    def start(self) -> ServerLoop:
        self.thread = threading.Thread(target=self.run, name="cs-metrics-server", daemon=True)
        self.thread.start()
        return self

    def close(self, timeout_s: float = 10.0) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout_s)


def start_server_loop(wh: Warehouse, run_job: JobRunner,
                      on_change: Callable[[], None] | None = None) -> ServerLoop:
    """Start the loop of ``wh`` (held read-write by this process); ``run_job`` runs the
    handed commands (cs_metrics.cli.main.run_in_app)."""
    if wh.read_only:
        raise CsMetricsError(f"The warehouse {wh.path} is open read-only: a server loop needs "
                             "it read-write.")
    return ServerLoop(wh, run_job, on_change).start()
