"""Benchmark: a light page's DuckDB queries beside busy runs, per GIL switch interval.

    python bench/bench_gil.py [--queries 30] [--busy 1 2] [--repeat 7]

Every session of the served app runs its script in one Python process. A DuckDB query
releases the GIL while it runs and takes it back after; when another thread is busy in Python
(building a page's charts and tables), the query's thread waits for it to hand the GIL over,
up to the switch interval (``sys.setswitchinterval``, 5 ms by default), after every query.
This prints, per interval, the time of ``--queries`` small queries alone and beside 1 and 2
busy threads, and how much Python work the busy threads got done in the meantime (their
throughput, against the default interval's). The app sets ``GIL_SWITCH_INTERVAL_S`` from
views/_live.py. See bench/README.md, section "GIL switch interval".
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
import threading
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

INTERVALS_MS = (5.0, 2.0, 1.0, 0.5, 0.2)


def app_interval_s(common: Path = ROOT / "views" / "_live.py") -> float:
    """``GIL_SWITCH_INTERVAL_S`` as views/_live.py sets it (read, not imported: importing
    the pages' module needs a Streamlit runtime)."""
    for node in ast.parse(common.read_text(encoding="utf-8")).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and getattr(node.targets[0], "id", None) == "GIL_SWITCH_INTERVAL_S"):
            return float(ast.literal_eval(node.value))
    raise SystemExit(f"GIL_SWITCH_INTERVAL_S is not set in {common}")


def light_page(con: duckdb.DuckDBPyConnection, queries: int) -> float:
    """Seconds for ``queries`` small queries, as a light page makes (catalog, meta, counts)."""
    cur = con.cursor()
    started = time.perf_counter()
    for i in range(queries):
        cur.execute("select count(*), max(n) from t where n > ?", [i]).fetchall()
    return time.perf_counter() - started


class Busy:
    """Threads busy in Python until stopped; ``work`` counts their loops."""

    def __init__(self, threads: int) -> None:
        self.work = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        done = 0
        while not self._stop.is_set():
            x = 0
            for i in range(2_000):
                x += i * i
            done += 1
        self.work += done

    def __enter__(self) -> Busy:
        for t in self._threads:
            t.start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def measure(interval_ms: float, busy: int, queries: int, repeat: int) -> tuple[float, float]:
    """(median seconds of the light page, busy loops per second)."""
    sys.setswitchinterval(interval_ms / 1000)
    con = duckdb.connect()
    con.execute("create table t as select range as n from range(10000)")
    times = []
    if busy == 0:
        times = [light_page(con, queries) for _ in range(repeat)]
        return statistics.median(times), 0.0
    with Busy(busy) as load:
        started = time.perf_counter()
        times = [light_page(con, queries) for _ in range(repeat)]
        elapsed = time.perf_counter() - started
    return statistics.median(times), load.work / elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=30, help="queries of the light page")
    ap.add_argument("--busy", type=int, nargs="+", default=[1, 2],
                    help="busy threads beside it (default: 1 and 2)")
    ap.add_argument("--repeat", type=int, default=7, help="light pages per measurement")
    args = ap.parse_args(argv)

    app_ms = app_interval_s() * 1000
    intervals = sorted({*INTERVALS_MS, app_ms}, reverse=True)
    before = sys.getswitchinterval()
    print(f"{args.queries} small DuckDB queries; median of {args.repeat}; "
          f"the app's interval: {app_ms:g} ms")
    head = f"{'interval':>10}{'alone':>10}"
    for b in args.busy:
        head += f"{f'+{b} busy':>12}{'ratio':>8}{'busy work':>11}"
    print(head)
    base: dict[int, float] = {}
    try:
        for ms in intervals:
            alone, _ = measure(ms, 0, args.queries, args.repeat)
            line = f"{ms:>8g}ms{alone * 1000:>8.1f}ms"
            for b in args.busy:
                t, work = measure(ms, b, args.queries, args.repeat)
                base.setdefault(b, work)  # the first (longest, the default) interval's
                line += f"{t * 1000:>10.1f}ms{t / alone:>7.1f}x{work / base[b]:>10.2f}x"
            print(line + ("   <- the app" if ms == app_ms else ""))
    finally:
        sys.setswitchinterval(before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
