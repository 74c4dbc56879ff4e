"""The live refresher (cs_metrics.ops.refresher): ``ingest --inbox DIR --watch`` and the app's
background thread go through the same ``LiveRefresher``, so they load, alert and report
problems alike."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from cs_metrics.cli.main import main
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.inbox import refresh_inbox
from cs_metrics.ops import refresher
from cs_metrics.ops.refresher import LiveRefresher, start_refresher
from tests.conftest import ticket, write_csv


@pytest.fixture
def db(sample_db, tmp_path) -> Path:
    path = tmp_path / "wh.duckdb"
    shutil.copyfile(sample_db, path)
    return path


@pytest.fixture
def inbox(tmp_path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


def write_batch(inbox: Path, name: str, ids: list[str]) -> None:
    """Written as a feed must: under a hidden name, then renamed in one step."""
    tmp = inbox / f".tmp-{name}"
    write_csv(tmp, "tickets", [ticket(i, "2025-02-28 09:00:00") for i in ids])
    tmp.rename(inbox / name)


def alert_runs(db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        exists = con.execute("select count(*) from information_schema.tables "
                             "where table_name = 'alert_runs'").fetchone()[0]
        return con.execute("select count(*) from alert_runs").fetchone()[0] if exists else 0
    finally:
        con.close()


@pytest.fixture
def calls(monkeypatch) -> list[tuple[LiveRefresher, object, object]]:
    """Every ``LiveRefresher.after_refresh`` call as (refresher, report, alert run); the
    refresher stops after its first refresh, so a blocking ``--watch`` returns."""
    seen: list[tuple[LiveRefresher, object, object]] = []
    real = LiveRefresher.after_refresh

    def after_refresh(self, wh, report, on_change=None):  # noqa: ANN001, ANN202
        ran = real(self, wh, report, on_change)
        seen.append((self, report, ran))
        self.stop.set()
        return ran

    monkeypatch.setattr(LiveRefresher, "after_refresh", after_refresh)
    return seen


def test_ingest_watch_and_the_app_go_through_the_same_refresher(db, inbox, calls, capsys):
    write_batch(inbox, "batch-20250301T010000Z-0001", ["RF1", "RF2"])
    assert main(["ingest", "--inbox", str(inbox), "--watch", "--interval", "0.1",
                 "--db", str(db)]) == 0
    (cli, report, ran), = calls
    assert report.loaded == ("batch-20250301T010000Z-0001",)
    assert ran is not None and cli.last_error is None
    out = capsys.readouterr().out
    assert report.summary() in out and ran.summary() in out  # what it printed before
    assert alert_runs(db) == 1  # the alert run is recorded

    # the app's thread (views/_live.py calls start_refresher) runs the very same method
    import views._live

    assert views._live.start_refresher is start_refresher
    write_batch(inbox, "batch-20250301T020000Z-0002", ["RF3"])
    cleared: list[int] = []
    wh = Warehouse(db)
    try:
        live = start_refresher(wh, inbox, 0.1, on_change=lambda: cleared.append(1))
        live.thread.join(30)
        assert not live.thread.is_alive()
    finally:
        live.close()
        wh.close()
    assert len(calls) == 2 and calls[1][0] is live
    assert calls[1][1].loaded == ("batch-20250301T020000Z-0002",) and calls[1][2] is not None
    assert cleared == [1]
    assert alert_runs(db) == 2


def test_a_batch_that_only_failed_clears_caches_but_runs_no_alerts(db, inbox, calls, capsys):
    tmp = inbox / ".tmp-batch-bad"
    write_csv(tmp, "tickets", [{"ticket_id": "X"}])  # no created_at: cannot load
    tmp.rename(inbox / "batch-bad")
    assert main(["ingest", "--inbox", str(inbox), "--watch", "--interval", "0.1",
                 "--db", str(db)]) == 0
    (_, report, ran), = calls
    assert [n for n, _ in report.failed] == ["batch-bad"] and ran is None
    assert report.summary() in capsys.readouterr().out
    assert alert_runs(db) == 0


def test_an_alert_rule_error_is_kept_and_said_and_loads_go_on(db, inbox, monkeypatch, capsys):
    def broken(wh, settings):  # noqa: ANN001, ANN202
        raise CsMetricsError("rule 'sla' names an unknown policy")

    import cs_metrics.ops.alerts

    monkeypatch.setattr(cs_metrics.ops.alerts, "run_alerts", broken)
    write_batch(inbox, "batch-20250301T010000Z-0001", ["RE1"])
    # once: the load committed, the warning says what did not run, the exit status says so
    assert main(["ingest", "--inbox", str(inbox), "--db", str(db)]) == 1
    captured = capsys.readouterr()
    assert "1 batch(es) loaded" in captured.out
    assert "warning: The alert rules could not run: rule 'sla' names an unknown policy" \
        in captured.err

    # the app's refresher keeps it for the page, and a later good refresh clears it
    write_batch(inbox, "batch-20250301T020000Z-0002", ["RE2"])
    wh = Warehouse(db)
    try:
        live = LiveRefresher(inbox, 0.1)
        assert live.after_refresh(wh, refresh_inbox(inbox, warehouse=wh)) is None
        assert live.last_error == ("The alert rules could not run: rule 'sla' names an "
                                   "unknown policy")
        assert live.after_refresh(wh, refresh_inbox(inbox, warehouse=wh)) is None
        assert live.last_error is None  # nothing new: nothing failed this time
    finally:
        wh.close()


def test_the_settings_file_is_read_for_each_refresh(db, inbox, tmp_path, calls, monkeypatch):
    """An edited --settings file counts from the next refresh on, as the app's own file."""
    seen: list[str | None] = []
    real = refresher.LiveRefresher.run

    def run(self, wh, **kwargs):  # noqa: ANN001, ANN202
        from cs_metrics.core import settings

        seen.append(settings._HANDED_SETTINGS.get())
        return real(self, wh, **kwargs)

    monkeypatch.setattr(LiveRefresher, "run", run)
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text("", encoding="utf-8")
    write_batch(inbox, "batch-20250301T010000Z-0001", ["RS1"])
    assert main(["ingest", "--inbox", str(inbox), "--watch", "--interval", "0.1",
                 "--db", str(db), "--settings", str(settings_file)]) == 0
    assert seen == [str(settings_file)]  # load_settings() reads it on every call
    assert len(calls) == 1
