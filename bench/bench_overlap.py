"""Benchmark: the light pages' run times alone and beside sessions that keep heavy pages busy.

    python bench/bench_overlap.py [--busy 1] [--seconds 60] [--tickets 200000]

Serves a copy of the bench warehouse (``DIR/wh_N.duckdb``, as bench_sessions.py does) and
speaks Streamlit's websocket protocol (bench_sessions.WsClient). One session visits the light
pages (What-if simulation, Reports, Alerts, Data quality, Your data, Audit log) in turn, a
short pause between visits, for ``--seconds``: first alone, then while ``--busy`` other
sessions visit the heavy pages without pause, each landing with a range of its own so their
queries miss the cache. Per light page: runs, median, p90 and slowest run time (Streamlit's
page profile), and over all light visits the ratio of each run to its page's median alone.

This is the tail the sessions bench reports: every session's script runs on a thread of one
Python process, so a light page that overlaps a heavy run shares the interpreter with it.
See bench/README.md, section "Sessions", "The goal".
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sessions as bs  # noqa: E402

LIGHT = ("What-if simulation", "Reports", "Alerts", "Data quality", "Your data", "Audit log")
HEAVY = ("Ticket trends", "Representatives", "Customer feedback", "Seasonality & staffing")


def link(last_day: date, days_before: int) -> str:
    end = last_day - timedelta(days=days_before)
    return f"range=custom&from={end - timedelta(days=89)}&to={end}"


class Bench:
    def __init__(self, server: bs.Server, pages: list[bs.AppPage], last_day: date) -> None:
        self.server, self.last_day = server, last_day
        self.home, self.by_title = pages[0], {p.title: p for p in pages}
        self.ranges = 0

    async def visit(self, client: bs.WsClient, title: str, query: str | None) -> bs.Visit:
        page = self.by_title[title]
        visit = await client.visit(bs.Visit("overlap", 0, title, query is not None), title,
                                   page.path, query, 60)
        if visit.error:
            raise SystemExit(f"{title}: {visit.error}")
        return visit

    async def light(self, until: float, times: dict[str, list[float]]) -> None:
        client = bs.WsClient(self.server.url)
        await self.visit(client, self.home.title, link(self.last_day, 400))
        rng, turn = random.Random(1), 0
        while time.monotonic() < until:
            title = LIGHT[turn % len(LIGHT)]
            turn += 1
            times.setdefault(title, []).append((await self.visit(client, title, None)).script_s)
            await asyncio.sleep(rng.uniform(0.05, 0.4))
        await client.close()

    async def busy(self, until: float) -> None:
        client = bs.WsClient(self.server.url)
        while time.monotonic() < until:
            self.ranges += 1  # a new range each round: the heavy pages' queries miss the cache
            await self.visit(client, self.home.title, link(self.last_day, self.ranges % 300))
            for title in HEAVY:
                if time.monotonic() >= until:
                    break
                await self.visit(client, title, None)
        await client.close()

    async def phase(self, busy: int, seconds: float) -> tuple[dict[str, list[float]], float]:
        times: dict[str, list[float]] = {}
        until = time.monotonic() + seconds
        cpu0 = bs.cpu_seconds(self.server.pid)
        await asyncio.gather(self.light(until, times), *(self.busy(until) for _ in range(busy)))
        return times, (bs.cpu_seconds(self.server.pid) - cpu0) / seconds

    async def warm_up(self) -> None:
        client = bs.WsClient(self.server.url)
        for title in self.by_title:
            await self.visit(client, title, link(self.last_day, 500)
                             if title == self.home.title else None)
        await client.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickets", type=int, default=bs.DEFAULT_TICKETS)
    ap.add_argument("--dir", default=str(bs.ROOT / "bench" / "out"))
    ap.add_argument("--busy", type=int, default=1, help="sessions keeping heavy pages busy")
    ap.add_argument("--seconds", type=float, default=60.0, help="of each phase (default 60)")
    args = ap.parse_args(argv)
    source = Path(args.dir) / f"wh_{args.tickets}.duckdb"
    if not source.exists():
        raise SystemExit(f"{source} does not exist; build it with bench/bench_pages.py first")
    import duckdb

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        db = Path(tmp) / "wh.duckdb"
        shutil.copy(source, db)
        with duckdb.connect(str(db), read_only=True) as con:
            last_day = con.execute("select max(created_at)::date from tickets").fetchone()[0]
        server = bs.Server(db, Path(tmp) / "server.log", [])
        try:
            server.wait_healthy()
            pages = bs.app_pages(bs.ROOT / "app.py")
            bench = Bench(server, pages, last_day)
            asyncio.run(bench.warm_up())
            alone, busy_alone = asyncio.run(bench.phase(0, args.seconds))
            beside, busy_beside = asyncio.run(bench.phase(args.busy, args.seconds))
        finally:
            server.stop()
    print(f"{args.tickets:,} tickets; light pages visited for {args.seconds:g} s alone, then "
          f"beside {args.busy} session(s) visiting heavy pages without pause")
    print(f"server cores busy: alone {busy_alone:.2f}, beside {busy_beside:.2f}")
    print(f"{'run ms':<22}{'alone: runs':>12}{'median':>8}{'p90':>8}{'max':>8}"
          f"{'beside: runs':>14}{'median':>8}{'p90':>8}{'max':>8}")
    ratios: dict[str, list[float]] = {"alone": [], "beside": []}
    for title in LIGHT:
        base = statistics.median(alone[title])
        row = f"{title:<22}"
        for name, times in (("alone", alone[title]), ("beside", beside.get(title, []))):
            ratios[name] += [t / base for t in times]
            row += (f"{len(times):>{12 if name == 'alone' else 14}}"
                    f"{statistics.median(times) * 1000:>8.1f}"
                    f"{bs.percentile(times, 0.9) * 1000:>8.1f}{max(times) * 1000:>8.1f}")
        print(row)
    for name, values in ratios.items():
        print(f"run / its page's median alone, {name:<7} median "
              f"{statistics.median(values):.2f}x, p90 {bs.percentile(values, 0.9):.2f}x, "
              f"p95 {bs.percentile(values, 0.95):.2f}x, over 2x "
              f"{sum(v > 2 for v in values) / len(values):.0%} of {len(values)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
