"""Benchmark: each page's full script run, cold and warm, headless with Streamlit's AppTest.

    python bench/bench_pages.py [--tickets 200000] [--repeat 3] [--days 730] [--dir bench/out]

Uses the data and warehouse layout of bench_metrics.py (``DIR/data_N``, ``DIR/wh_N.duckdb``):
an existing warehouse is reused, otherwise the sample is generated (or reused) and ingested.
Every page listed in app.py's navigation is run from its own file with CS_METRICS_DB set.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
for folder in (ROOT, BENCH):  # run as a script from anywhere: the repo's library and pages
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

DEFAULT_TICKETS = 200_000  # the app's own sample size
GOAL_SAMPLE_S = 1.0
GOAL_10M_S = 2.0
BIG = 10_000_000
TIMEOUT_S = 600
SLOW_CALLS = 5  # library calls listed per page, slowest first


def app_pages(app: Path = ROOT / "app.py") -> list[tuple[str, str]]:
    """(title, file) of every st.Page in app.py's navigation, in order."""
    text = app.read_text(encoding="utf-8")
    found = re.findall(r"st\.Page\(\s*[\"']([^\"']+)[\"'][^)]*?title=[\"']([^\"']+)[\"']", text)
    return [(title, path) for path, title in found]


def prepare_warehouse(args: argparse.Namespace) -> tuple[Path, str]:
    """The bench warehouse for N tickets: reused when it exists, else generated + ingested."""
    import bench_metrics

    db = bench_metrics.db_path(args)
    if db.exists():
        return db, "reused"
    folder = bench_metrics.data_dir(args)
    note = "data reused"
    if not bench_metrics.data_matches(folder, args.tickets, args.days):
        from simulations.generator import generate

        generate(folder, tickets=args.tickets, days=args.days, seed=bench_metrics.SEED,
                 fmt="parquet", end=bench_metrics.END)
        note = "data generated"
    import cs_metrics

    started = time.perf_counter()
    cs_metrics.ingest(folder, db=db, replace=True,
                      rejects_csv=Path(args.dir) / f"rejects_{args.tickets}.csv")
    return db, f"{note}, ingested in {time.perf_counter() - started:.1f} s"


class CallTimer:
    """Times the outermost calls into cs_metrics (queries, reports) during a page run."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []
        self._depth = 0
        self._wrapped: dict[int, Callable[..., Any]] = {}

    def _wrap(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        if id(func) in self._wrapped:
            return self._wrapped[id(func)]

        def timed(*a: Any, **k: Any) -> Any:
            self._depth += 1
            started = time.perf_counter()
            try:
                return func(*a, **k)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.calls.append((time.perf_counter() - started, describe(name, a, k)))

        timed.__wrapped__ = func  # type: ignore[attr-defined]
        if hasattr(func, "clear"):  # a cached helper stays clearable
            timed.clear = func.clear  # type: ignore[attr-defined]
        self._wrapped[id(func)] = timed
        return timed

    def install(self) -> None:
        import cs_metrics  # noqa: F401  (loads the package's modules)

        # the library's modules, and the pages' helper modules (views._cache, views._session,
        # ...) that hold library functions imported by name or the shared cached helpers
        targets = [m for n, m in sys.modules.items()
                   if n == "cs_metrics" or n.startswith(("cs_metrics.", "views."))]
        for module in targets:
            for name, obj in list(vars(module).items()):
                # a cached helper of views._cache (``run_query``, ``resolved``, ...): the cold
                # run misses every cache, so its time is the library call it makes
                if (isinstance(obj, types.FunctionType) and not name.startswith("_")
                        and (obj.__module__.startswith("cs_metrics")
                             or hasattr(obj, "clear"))):
                    setattr(module, name, self._wrap(name, obj))


def track_connections() -> Callable[[], None]:
    """Make the app's warehouse record every DuckDB connection it opens (one per thread);
    returns a function that closes them all, so the next run starts a fresh DuckDB."""
    import views._session as common

    opened: list[Any] = []
    base = common.Warehouse

    class TrackedWarehouse(base):  # type: ignore[misc, valid-type]
        def connection(self):  # noqa: ANN202
            con = super().connection()
            if not any(c is con for c in opened):
                opened.append(con)
            return con

    common.Warehouse = TrackedWarehouse
    # the pages' cache keys a warehouse by its cache_key, looked up by exact type: the tracked
    # class must be keyed like the one it stands in for
    import views._cache

    views._cache.HASH_FUNCS[TrackedWarehouse] = views._cache._warehouse_key

    def close_all() -> None:
        for con in opened:
            con.close()
        opened.clear()

    return close_all


def describe(name: str, args: tuple, kwargs: dict) -> str:
    """A short, readable form of a library call, for the slow-call list."""
    parts = []
    for value in (*args[1:], *kwargs.values()):
        text = repr(value)
        if type(value).__name__ == "Filters":
            text = (f"Filters({value.date_from}..{value.date_to}"
                    f"{', ' + str(value.where) if value.where else ''})")
        parts.append(text if len(text) <= 90 else text[:87] + "...")
    return f"{name}({', '.join(parts)})"


def empty_caches(close_all: Callable[[], None]) -> None:
    """As for the first visitor of a freshly started app: no cached result, no open warehouse
    (every DuckDB connection closed, so its buffer pool starts empty too)."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    close_all()
    gc.collect()


def new_session(path: str, components: Any) -> Any:
    """A fresh AppTest of one page file. A served app scans the installed packages for
    custom components once per process; AppTest does it on each new session's first run
    (about 0.4 s here), so the scan of the untimed first pass is handed on."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / path), default_timeout=TIMEOUT_S)
    if components is not None:
        at._bidi_component_manager = components
    return at


def time_page(path: str, repeat: int, timer: CallTimer,
              close_all: Callable[[], None], components: Any) -> dict[str, Any]:
    import streamlit as st

    empty_caches(close_all)
    timer.calls.clear()
    at = new_session(path, components)
    started = time.perf_counter()
    at.run()
    cold = time.perf_counter() - started
    cold_calls = sorted(timer.calls, reverse=True)
    problems = [e.value for e in at.exception] + [e.value for e in at.error]
    warm: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        at.run()
        warm.append(time.perf_counter() - started)
        problems += [e.value for e in at.exception]
    # Results uncached but DuckDB warm: what a visitor meets on a server that has been up.
    st.cache_data.clear()
    started = time.perf_counter()
    at.run()
    uncached = time.perf_counter() - started
    return {"cold": cold, "warm": statistics.median(warm), "uncached": uncached,
            "calls": cold_calls, "problems": problems}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickets", type=int, default=DEFAULT_TICKETS,
                    help=f"number of tickets (default {DEFAULT_TICKETS:,}, the app's sample)")
    ap.add_argument("--days", type=int, default=730, help="days of history (default 730)")
    ap.add_argument("--dir", default=str(ROOT / "bench" / "out"),
                    help="where data and warehouses are (default bench/out)")
    ap.add_argument("--repeat", type=int, default=3, help="warm runs per page (default 3)")
    args = ap.parse_args(argv)
    if args.tickets < 1 or args.repeat < 1:
        ap.error("--tickets and --repeat must be at least 1")
    Path(args.dir).mkdir(parents=True, exist_ok=True)

    db, note = prepare_warehouse(args)
    os.environ["CS_METRICS_DB"] = str(db)
    import duckdb
    import streamlit
    import streamlit.logger
    import streamlit.testing.v1  # noqa: F401

    import views._session  # noqa: F401  (so its imported library names get timed too)

    # AppTest outside `streamlit run` warns about the missing runtime on every cached call.
    streamlit.logger.set_log_level("error")
    page_files = app_pages()
    goal = GOAL_10M_S if args.tickets >= BIG else GOAL_SAMPLE_S
    print(f"cs_metrics page benchmark: N = {args.tickets:,} tickets, {len(page_files)} pages, "
          f"warm = median of {args.repeat}, {os.cpu_count()} cores")
    print(f"Streamlit {streamlit.__version__}, DuckDB {duckdb.__version__}, "
          f"Python {sys.version.split()[0]}; warehouse {db} ({note})")
    print("cold: a new session, st.cache_data and st.cache_resource emptied, every DuckDB "
          "connection closed (the warehouse is reopened with an empty buffer pool; the OS "
          "file cache is not dropped; Python imports and AppTest's component scan were done "
          "by an untimed first pass)")
    print("uncached: st.cache_data emptied again, DuckDB warm (the warehouse stays open)")
    print("warm: the same session run again, every cache warm")
    print()
    close_all = track_connections()
    # Untimed: one run of every page first, so Python's first imports (Altair, pyarrow, ...),
    # which a served app pays once per process, are charged to no page.
    components = None
    for _, path in page_files:
        first = new_session(path, components).run()
        components = getattr(first, "_bidi_component_manager", None)
    timer = CallTimer()
    timer.install()
    results: dict[str, dict[str, Any]] = {}
    for title, path in page_files:
        results[title] = time_page(path, args.repeat, timer, close_all, components)
    width = max(len(t) for t in results) + 2
    print(f"{'page':<{width}}{'cold s':>9}{'uncached s':>12}{'warm s':>9}  "
          f"goal: cold < {goal:g} s")
    failed = []
    for title, r in results.items():
        ok = r["cold"] < goal and not r["problems"]
        if not ok:
            failed.append(title)
        print(f"{title:<{width}}{r['cold']:>9.3f}{r['uncached']:>12.3f}{r['warm']:>9.3f}  "
              f"{'PASS' if ok else 'FAIL'}")
    print()
    for title, r in results.items():
        total = sum(s for s, _ in r["calls"])
        print(f"{title}: {len(r['calls'])} library calls, {total:.3f} s of the cold run; "
              "slowest:")
        for seconds, call in r["calls"][:SLOW_CALLS]:
            print(f"  {seconds:7.3f} s  {call}")
        for problem in r["problems"]:
            print(f"  ERROR on the page: {problem}")
    print()
    verdict = "every page PASS" if not failed else f"FAIL: {', '.join(failed)}"
    print(f"goal (cold, uncached run of each page < {goal:g} s at N = {args.tickets:,}): "
          f"{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
