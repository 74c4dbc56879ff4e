"""The live pipeline end to end: the feed writes batches while the inbox refresh runs, the
warehouse ends up with every event exactly once, and an injected outage raises the alert."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from cs_metrics import Warehouse, load_settings
from cs_metrics.ingestion.inbox import refresh_inbox
from cs_metrics.ingestion.loader import ingest
from cs_metrics.ops.alerts import run_alerts
from simulations.feed import run_feed
from simulations.generator import generate

END = datetime(2025, 3, 4)  # a Tuesday: the feed runs in its busy afternoon


class Clock:
    """The feed's wall clock, advanced by its own sleeps (``pause`` real seconds each, so a
    concurrent refresh gets turns)."""

    def __init__(self, start: datetime, pause: float = 0.0) -> None:
        self.t = start
        self.pause = pause

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)
        if self.pause:
            time.sleep(self.pause)


def batches(inbox: Path, table: str) -> pd.DataFrame:
    """Every row of ``table`` the feed wrote, from its batch folders."""
    frames = [pd.read_csv(f, dtype=str) for f in sorted(inbox.glob(f"batch-*/{table}.csv"))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    """Six weeks of generated history ending at END, as canonical files."""
    out = tmp_path_factory.mktemp("live_history") / "src"
    generate(out, tickets=30000, days=42, seed=3, end=END)
    return out


def fresh_db(history: Path, tmp_path: Path) -> Path:
    db = tmp_path / "wh.duckdb"
    ingest(history, db=db)
    return db


def test_feed_while_refreshing_loads_every_event_once(history, tmp_path):
    db = fresh_db(history, tmp_path)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    clock = Clock(END + timedelta(hours=14), pause=0.1)
    done = threading.Event()
    summary = {}

    def feed() -> None:
        try:
            summary["run"] = run_feed(inbox, rate=2.0, duration=120, seed=5, db=db,
                                      batch_s=2.0, now=clock.now, sleep=clock.sleep)
        finally:
            done.set()

    writer = threading.Thread(target=feed)
    wh = None
    refreshes = 0
    try:
        writer.start()
        time.sleep(0.3)  # the feed reads its starting state before the app holds the file
        wh = Warehouse(db)
        # a feed killed mid-write leaves a temporary folder: never read
        partial = inbox / ".tmp-batch-99990101T000000000000-999999"
        partial.mkdir()
        (partial / "tickets.csv").write_text("ticket_id,created_at,status\nX-1,2025-",
                                             encoding="utf-8")
        while not done.is_set():
            refresh_inbox(inbox, warehouse=wh)  # batches land during refreshes too
            refreshes += 1
        writer.join()
        final = refresh_inbox(inbox, warehouse=wh)
        assert not final.failed
        assert refreshes >= 2
        written = {t: batches(inbox, t) for t in ("tickets", "ticket_events", "feedback")}
        counts = dict(summary["run"].events)
        new = counts["new_ticket"] + counts["outage_ticket"]
        ids = written["tickets"]["ticket_id"]
        assert ids[ids.str.startswith("L-")].nunique() == new > 50
        stored = wh.df("select * from tickets where ticket_id like 'L-%'")
        # nothing lost, nothing twice: each new ticket once; every ticket the feed touched
        # (new ones and the history's open ones) in its latest state
        assert len(stored) == stored["ticket_id"].nunique() == new
        latest = written["tickets"].drop_duplicates("ticket_id", keep="last").set_index(
            "ticket_id")
        got = wh.df("select ticket_id, status from tickets").set_index("ticket_id")
        assert got.loc[latest.index, "status"].tolist() == latest["status"].tolist()
        events = written["ticket_events"].drop_duplicates()
        before = pd.read_parquet(history / "ticket_events.parquet") \
            if (history / "ticket_events.parquet").exists() \
            else pd.read_csv(history / "ticket_events.csv")
        n_events = wh.scalar("select count(*) from ticket_events")
        assert n_events == len(before.drop_duplicates()) + len(events)
        n_feedback = wh.scalar("select count(*) from feedback where feedback_id like 'L-%'")
        assert n_feedback == counts["feedback"] == written["feedback"]["feedback_id"].nunique()
        assert wh.scalar("select count(*) from tickets where ticket_id = 'X-1'") == 0
        manifest = wh.df("select * from inbox_manifest")
        assert len(manifest) == len(list(inbox.glob("batch-*")))
        assert set(manifest["status"]) == {"loaded"}
    finally:
        done.wait(30)
        if wh is not None:
            wh.close()


def _alerts_after_feed(history: Path, tmp_path: Path, outage: str | None) -> list:
    db = fresh_db(history, tmp_path)
    inbox = tmp_path / "inbox"
    clock = Clock(END + timedelta(hours=14))
    # about as many new tickets per hour as the history has on a weekday afternoon
    run_feed(inbox, rate=0.035, duration=3600, seed=11, db=db, outage=outage, batch_s=60.0,
             now=clock.now, sleep=clock.sleep)
    wh = Warehouse(db)
    try:
        report = refresh_inbox(inbox, warehouse=wh)
        assert report.loaded and not report.failed
        run = run_alerts(wh, load_settings(), notifier=None)
    finally:
        wh.close()
    return [a for a in run.raised if a.rule == "outage"]


def test_an_injected_outage_raises_the_outage_alert_within_one_refresh(history, tmp_path):
    customers = pd.read_parquet(history / "customers.parquet") \
        if (history / "customers.parquet").exists() else pd.read_csv(history / "customers.csv")
    city = customers["city"].value_counts().index[5]
    centre = customers[customers["city"] == city][["lat", "lon"]].mean()
    raised = _alerts_after_feed(history, tmp_path / "outage",
                                f"{centre['lat']:.4f},{centre['lon']:.4f},15")
    assert raised, "the surge should raise the outage alert"
    assert any(a.figures.get("value") == city or city in a.message for a in raised), \
        [a.message for a in raised]


def test_a_calm_hour_raises_no_outage_alert(history, tmp_path):
    assert _alerts_after_feed(history, tmp_path / "calm", None) == []
