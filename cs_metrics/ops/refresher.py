"""The live refresher: loads an inbox's new batches into a warehouse every few seconds and
evaluates the alert rules after a refresh that loaded a batch.

One home for what the app's background thread does (``views/_live.py`` only starts and stops
it) and what ``python -m cs_metrics ingest --inbox DIR [--watch]`` does in the foreground, so
the two behave alike: the alert rules run after every refresh that loaded data (a batch that
only failed leaves the data as it was); a rule that cannot run is kept in ``last_error`` and
the loads go on; the settings are read afresh for each refresh unless fixed by ``settings``.
No Streamlit here: whoever keeps caches passes ``on_change``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse

if TYPE_CHECKING:
    from cs_metrics.core.settings import Settings
    from cs_metrics.ingestion.inbox import RefreshReport
    from cs_metrics.ops.alerts import AlertRun

__all__ = ["LiveRefresher", "start_refresher"]


@dataclass
class LiveRefresher:
    """The loop that loads the inbox's new batches into a warehouse; what it did last, for the
    pages (or the command line) to say."""

    inbox: Path
    interval_s: float
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    last_report: RefreshReport | None = None
    # what went wrong in the latest look (the refresh, or the alert rules after it); None
    # when it went well, so the pages do not keep showing a problem already fixed
    last_error: str | None = None
    refreshes: int = 0
    # the settings of the loads and alert rules; None reads them afresh for each refresh
    # (an edited settings file counts from the next load on, as in the app)
    settings: Settings | None = None
    alerts: bool = True  # evaluate the alert rules after a refresh that loaded a batch

    def after_refresh(self, wh: Warehouse, report: RefreshReport,
                      on_change: Callable[[], None] | None = None) -> AlertRun | None:
        """Note ``report``; when it changed the warehouse or its manifest, call ``on_change``
        (the app clears its cached results); when it loaded a batch, evaluate the alert rules.
        Returns the alert run, if any; a rule error is kept in ``last_error``, not raised."""
        # imported here: the alert rules load the statistics libraries, which a command that
        # never refreshes should not wait for
        from cs_metrics.core.settings import load_settings
        from cs_metrics.ops.alerts import run_alerts

        self.last_report = report
        self.refreshes += 1
        self.last_error = None  # this refresh went well
        if not getattr(report, "changed", False):
            return None
        if on_change is not None:
            on_change()  # every reader sees the new figures on its next look
        # a failed batch is only marked in the manifest: the data, so the rules' answer, is
        # the same as after the previous run
        if not self.alerts or not report.loaded:
            return None
        try:
            return run_alerts(wh, self.settings or load_settings())
        except CsMetricsError as exc:
            self.last_error = f"The alert rules could not run: {exc}"
            return None

    def run(self, wh: Warehouse, *, on_change: Callable[[], None] | None = None,
            on_report: Callable[[RefreshReport, AlertRun | None], None] | None = None) -> None:
        """Refresh ``wh`` from the inbox every ``interval_s`` seconds until ``stop`` is set
        (blocking). ``on_report`` gets every report and the alert run it caused, if any.
        Only a missing inbox at the start raises; a failed refresh is kept in
        ``last_error`` and the next one tries again."""
        from cs_metrics.ingestion.inbox import watch_inbox

        def on_error(exc: Exception) -> None:
            self.last_error = str(exc)

        def refreshed(report: RefreshReport) -> None:
            ran = self.after_refresh(wh, report, on_change)
            if on_report is not None:
                on_report(report, ran)

        watch_inbox(self.inbox, warehouse=wh, interval_s=self.interval_s, stop=self.stop,
                    on_refresh=refreshed, on_error=on_error, settings=self.settings)

    def start(self, wh: Warehouse, *,
              on_change: Callable[[], None] | None = None) -> LiveRefresher:
        """Run the loop in a background (daemon) thread; ``close`` stops it."""

        def run() -> None:
            try:
                self.run(wh, on_change=on_change)
            except CsMetricsError as exc:  # the inbox is missing: the pages say so
                self.last_error = str(exc)

        self.thread = threading.Thread(target=run, name="cs-metrics-inbox", daemon=True)
        self.thread.start()
        return self

    def close(self, timeout_s: float = 10.0) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout_s)


def start_refresher(wh: Warehouse, inbox: str | Path, interval_s: float,
                    on_change: Callable[[], None] | None = None) -> LiveRefresher:
    """Start refreshing ``wh`` (held read-write by this process) from ``inbox`` every
    ``interval_s`` seconds in a background thread."""
    return LiveRefresher(Path(inbox), interval_s).start(wh, on_change=on_change)
