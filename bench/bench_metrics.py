"""Benchmark: ingest time, warm dashboard queries, and the same figures in plain pandas.

    python bench/bench_metrics.py --tickets 1000000 [--days 730] [--dir bench/out] [--repeat 5]

Generates (or reuses) N canonical tickets, ingests them into a fresh DuckDB warehouse, times
two query sets through ``cs_metrics.query`` and computes the same figures with pandas from
the Parquet files, checking that both agree. Each part runs in its own child process so its
peak memory is its own. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: import the repo's library
    sys.path.insert(0, str(ROOT))

END = date(2025, 1, 1)  # the dataset's "now", fixed so every run sees the same data
SEED = 7
WINDOW_DAYS = 90
REL_TOL = 1e-6

KPI = (
    "ticket_count", "avg_first_response_min", "median_first_response_min", "avg_resolution_h",
    "open_count", "in_progress_count", "closed_count", "sla_first_response_pct", "fcr_pct",
    "csat_pct", "nps",
)
LEADERBOARD = (
    "ticket_count", "avg_first_response_min", "avg_resolution_h", "open_count",
    "in_progress_count", "closed_count", "sla_first_response_pct", "fcr_pct", "csat_avg",
)
SEGMENT = ("customer_count", "ticket_count", "csat_pct")
WEEKLY = ("ticket_count", "backlog")

# name -> (query set, metrics, dimensions, grain, window); window: "cur", "prev" or None (all)
QUERIES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], str | None, str | None]] = {
    "kpi_current": ("overview", KPI, (), None, "cur"),
    "kpi_previous": ("overview", KPI, (), None, "prev"),
    "weekly": ("overview", WEEKLY, (), "week", None),
    "by_segment": ("overview", SEGMENT, ("customer_segment",), None, "cur"),
    "by_rep": ("leaderboard", LEADERBOARD, ("rep_id", "rep_name", "team"), None, "cur"),
    "by_team": ("leaderboard", LEADERBOARD, ("team",), None, "cur"),
    "by_manager": ("leaderboard", LEADERBOARD, ("manager",), None, "cur"),
}
SETS = ("overview", "leaderboard")

GOAL_QUERY_S = 0.5
GOAL_RATIO = 15.0
GOAL_INGEST_10M_S = 60.0
GOAL_PEAK_MIB = 1.5 * 1024


# --- shared helpers -------------------------------------------------------------------------


def windows(end: date = END) -> dict[str, tuple[date, date]]:
    """The last 90 days of data and the 90 days before them, as [from, to)."""
    cur = (end - timedelta(days=WINDOW_DAYS), end)
    prev = (end - timedelta(days=2 * WINDOW_DAYS), end - timedelta(days=WINDOW_DAYS))
    return {"cur": cur, "prev": prev}


def peak_mib() -> float:
    """Peak resident memory of this process: VmHWM (its own image), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 / 1024 if sys.platform == "darwin" else rss / 1024


def frame_to_json(df) -> dict:
    cols = list(df.columns)
    rows = []
    for rec in df.itertuples(index=False, name=None):
        row = []
        for v in rec:
            if isinstance(v, (date, datetime)):
                v = v.isoformat()[:10]
            elif hasattr(v, "item"):  # numpy scalar
                v = v.item()
            if isinstance(v, float) and math.isnan(v):
                v = None
            elif v is not None and not isinstance(v, (str, int, float, bool)):
                v = None if str(v) in ("<NA>", "nan", "NaT", "None") else str(v)
            row.append(v)
        rows.append(row)
    return {"columns": cols, "rows": rows}


def data_dir(args: argparse.Namespace) -> Path:
    return Path(args.dir) / f"data_{args.tickets}"


def db_path(args: argparse.Namespace) -> Path:
    return Path(args.dir) / f"wh_{args.tickets}.duckdb"


def summary(times: list[float]) -> dict[str, float]:
    return {"best": min(times), "median": statistics.median(times)}


# --- part: generate -------------------------------------------------------------------------


def data_matches(folder: Path, tickets: int, days: int) -> bool:
    path = folder / "tickets.parquet"
    truth = folder / "truth.json"
    if not path.exists() or not truth.exists():
        return False
    import pyarrow.parquet as pq

    if pq.ParquetFile(path).metadata.num_rows != tickets:
        return False
    t = json.loads(truth.read_text(encoding="utf-8"))
    return t.get("days") == days and str(t.get("end", "")).startswith(END.isoformat())


def part_generate(args: argparse.Namespace) -> dict[str, Any]:
    from simulations.generator import generate

    folder = data_dir(args)
    if data_matches(folder, args.tickets, args.days):
        return {"reused": True, "seconds": 0.0, "peak_mib": peak_mib()}
    started = time.perf_counter()
    result = generate(folder, tickets=args.tickets, days=args.days, seed=SEED, fmt="parquet",
                      end=END)
    return {
        "reused": False,
        "seconds": time.perf_counter() - started,
        "counts": result.counts,
        "peak_mib": peak_mib(),
    }


# --- part: ingest ---------------------------------------------------------------------------


def part_ingest(args: argparse.Namespace) -> dict[str, Any]:
    from cs_metrics import ingest

    db = db_path(args)
    for p in (db, db.with_name(db.name + ".wal")):
        p.unlink(missing_ok=True)
    started = time.perf_counter()
    report = ingest(data_dir(args), db=db, replace=True,
                    rejects_csv=Path(args.dir) / f"rejects_{args.tickets}.csv")
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "peak_mib": peak_mib(),
        "loaded": {t.table: t.loaded for t in report.tables},
        "rejected": {t.table: t.rejected_total for t in report.tables},
        "as_of": report.as_of.isoformat(sep=" ") if report.as_of else None,
        "db_mib": db.stat().st_size / 2**20,
    }


# --- part: DuckDB queries -------------------------------------------------------------------


def part_duckdb(args: argparse.Namespace) -> dict[str, Any]:
    import duckdb

    from cs_metrics import Filters, Warehouse, query

    started = time.perf_counter()
    wh = Warehouse(db_path(args), read_only=True)
    win = windows()

    def run(name: str):
        _, metrics, by, grain, window = QUERIES[name]
        filters = Filters(*win[window]) if window else Filters()
        return query(wh, list(metrics), by=list(by), grain=grain, filters=filters)

    def run_set(which: str) -> tuple[float, dict[str, float], dict]:
        per: dict[str, float] = {}
        out = {}
        t0 = time.perf_counter()
        for name, spec in QUERIES.items():
            if spec[0] != which:
                continue
            q0 = time.perf_counter()
            out[name] = run(name)
            per[name] = time.perf_counter() - q0
        return time.perf_counter() - t0, per, out

    cold: dict[str, float] = {}
    results = {}
    for which in SETS:  # the first run in a fresh process: opens, reads from disk, warms
        cold[which], _, out = run_set(which)
        results.update(out)
    timings: dict[str, list[float]] = {s: [] for s in SETS}
    per_query: dict[str, list[float]] = {q: [] for q in QUERIES}
    for _ in range(args.repeat):
        for which in SETS:
            total, per, _ = run_set(which)
            timings[which].append(total)
            for q, s in per.items():
                per_query[q].append(s)
    settings = dict(
        wh.connection().execute(
            "select name, value from duckdb_settings() "
            "where name in ('threads', 'memory_limit', 'preserve_insertion_order')"
        ).fetchall()
    )
    wh.close()
    return {
        "cold": cold,
        "sets": {s: summary(v) for s, v in timings.items()},
        "queries": {q: summary(v) for q, v in per_query.items()},
        "results": {k: frame_to_json(v) for k, v in results.items()},
        "seconds": time.perf_counter() - started,
        "peak_mib": peak_mib(),
        "duckdb": duckdb.__version__,
        "settings": settings,
    }


# --- part: pandas ---------------------------------------------------------------------------

TICKET_COLUMNS = [
    "ticket_id", "created_at", "status", "first_response_at", "resolved_at", "priority",
    "customer_id", "customer_segment", "rep_id", "contacts", "reopened_count", "is_test",
]


def pandas_load(folder: Path) -> dict:
    """Read only the columns the figures need (the cheapest honest load for pandas)."""
    import pandas as pd

    return {
        "tickets": pd.read_parquet(folder / "tickets.parquet", columns=TICKET_COLUMNS),
        "customers": pd.read_parquet(folder / "customers.parquet",
                                     columns=["customer_id", "segment"]),
        "representatives": pd.read_parquet(folder / "representatives.parquet",
                                           columns=["rep_id", "name", "team", "manager"]),
        # rows with no score are skipped at ingest; they change no score figure, so the
        # comment column that decides "empty" is not needed here
        "feedback": pd.read_parquet(folder / "feedback.parquet",
                                    columns=["ticket_id", "csat", "nps"]),
        "events": pd.read_parquet(folder / "ticket_events.parquet", columns=["event_at"]),
    }


def _floor_s(ts):
    return ts.dt.floor("s")


def pandas_prepare(frames: dict):
    """The warehouse's derived columns, the same definitions, in pandas."""
    import numpy as np
    import pandas as pd

    from cs_metrics.core.settings import load_settings

    settings = load_settings()
    t = frames["tickets"].copy()
    closed = t["status"].eq("closed")
    t["resolved_at"] = t["resolved_at"].where(closed)  # ingest clears it on open tickets
    t["priority"] = t["priority"].fillna("normal")
    t["is_test"] = t["is_test"].fillna(False).astype(bool)
    customers = frames["customers"].set_index("customer_id")
    t["customer_segment"] = (
        t["customer_segment"].fillna(t["customer_id"].map(customers["segment"]))
        .fillna("Unknown")
    )
    # one merge is about twice as fast as three Series.map calls on 10M string keys
    reps = t[["rep_id"]].merge(frames["representatives"], on="rep_id", how="left")
    t["rep_name"] = reps["name"].to_numpy()
    t["team"] = reps["team"].to_numpy()
    t["manager"] = reps["manager"].to_numpy()

    as_of = max(
        t["created_at"].max(), t["first_response_at"].max(), t["resolved_at"].max(),
        frames["events"]["event_at"].max(),
    )
    # durations count whole-second boundaries, as DuckDB's date_diff('second', ...) does
    created_s = _floor_s(t["created_at"])
    t["fr_min"] = (_floor_s(t["first_response_at"]) - created_s).dt.total_seconds() / 60.0
    t["res_h"] = ((_floor_s(t["resolved_at"]) - created_s).dt.total_seconds() / 3600.0) \
        .where(closed)

    # SLA first-response target per (priority, segment) pair, from the settings
    p_codes, p_values = pd.factorize(t["priority"])
    s_codes, s_values = pd.factorize(t["customer_segment"])
    table = np.full((len(p_values), len(s_values)), np.nan)
    for i, p in enumerate(p_values):
        for j, s in enumerate(s_values):
            fr, _, _ = settings.sla_targets(p, s)
            table[i, j] = np.nan if fr is None else fr
    target = pd.Series(table[p_codes, s_codes], index=t.index)
    answered = t["fr_min"].notna()
    deadline = t["created_at"] + pd.to_timedelta(target * 60.0, unit="s")
    t["fr_ok"] = answered & (t["fr_min"] <= target)
    t["fr_known"] = (answered & target.notna()) | (~answered & (deadline < as_of))

    t["is_open"] = t["status"].eq("open")
    t["is_in_progress"] = t["status"].eq("in_progress")
    t["is_closed"] = closed
    t["fcr_den"] = closed & t["contacts"].notna()
    t["fcr_num"] = closed & t["contacts"].eq(1) & t["reopened_count"].fillna(0).eq(0)

    fb = frames["feedback"].merge(
        t[["ticket_id", "created_at", "is_test", "customer_segment", "rep_id", "rep_name",
           "team", "manager"]],
        on="ticket_id", how="inner",
    )
    return t, fb


def _pct(num: float, den: float) -> float:
    return float("nan") if den == 0 else 100.0 * num / den


def _window(df, window: tuple[date, date] | None):
    import pandas as pd

    mask = ~df["is_test"]
    if window is not None:
        lo, hi = pd.Timestamp(window[0]), pd.Timestamp(window[1])
        mask &= (df["created_at"] >= lo) & (df["created_at"] < hi)
    return df[mask]


def _kpi(t, fb, window) -> dict[str, float]:
    w = _window(t, window)
    f = _window(fb, window)
    csat = f["csat"].dropna()
    nps = f["nps"].dropna()
    return {
        "ticket_count": len(w),
        "avg_first_response_min": w["fr_min"].mean(),
        "median_first_response_min": w["fr_min"].median(),
        "avg_resolution_h": w["res_h"].mean(),
        "open_count": int(w["is_open"].sum()),
        "in_progress_count": int(w["is_in_progress"].sum()),
        "closed_count": int(w["is_closed"].sum()),
        "sla_first_response_pct": _pct(w["fr_ok"].sum(), w["fr_known"].sum()),
        "fcr_pct": _pct(w["fcr_num"].sum(), w["fcr_den"].sum()),
        "csat_pct": _pct((csat >= 4).sum(), len(csat)),
        "nps": _pct((nps >= 9).sum() - (nps <= 6).sum(), len(nps)),
    }


def _leaderboard(t, fb, by: list[str], window):
    import numpy as np

    w = _window(t, window)
    f = _window(fb, window)
    g = w.groupby(by, dropna=False, sort=False).agg(
        ticket_count=("ticket_id", "size"),
        avg_first_response_min=("fr_min", "mean"),
        avg_resolution_h=("res_h", "mean"),
        open_count=("is_open", "sum"),
        in_progress_count=("is_in_progress", "sum"),
        closed_count=("is_closed", "sum"),
        fr_ok=("fr_ok", "sum"),
        fr_known=("fr_known", "sum"),
        fcr_num=("fcr_num", "sum"),
        fcr_den=("fcr_den", "sum"),
    )
    g["sla_first_response_pct"] = 100.0 * g["fr_ok"] / g["fr_known"].replace(0, np.nan)
    g["fcr_pct"] = 100.0 * g["fcr_num"] / g["fcr_den"].replace(0, np.nan)
    g["csat_avg"] = f.groupby(by, dropna=False, sort=False)["csat"].mean()
    return g.reset_index()[[*by, *LEADERBOARD]]


def _segments(t, fb, window):
    import numpy as np

    w = _window(t, window)
    f = _window(fb, window)
    g = w.groupby("customer_segment", dropna=False).agg(
        customer_count=("customer_id", "nunique"), ticket_count=("ticket_id", "size")
    )
    c = f.assign(good=f["csat"] >= 4, scored=f["csat"].notna()) \
        .groupby("customer_segment", dropna=False)[["good", "scored"]].sum()
    g["csat_pct"] = 100.0 * c["good"] / c["scored"].replace(0, np.nan)
    return g.reset_index()[["customer_segment", *SEGMENT]]


def _weekly(t):
    """Tickets created per Monday-based week and the backlog open at each week's end."""
    import numpy as np
    import pandas as pd

    w = t[~t["is_test"]]

    def week(ts) -> np.ndarray:  # days since 1970-01-01 (a Thursday) -> Monday-based week
        return (ts.to_numpy().astype("datetime64[D]").astype("int64") + 3) // 7

    created = week(w["created_at"])
    resolved_ts = w["resolved_at"].where(w["is_closed"])
    resolved_ts = resolved_ts.fillna(w["created_at"].where(w["is_closed"]))
    resolved = week(resolved_ts[resolved_ts.notna()])
    lo, hi = int(created.min()), int(created.max())
    n = hi - lo + 1
    opened = np.bincount(created - lo, minlength=n)
    resolved = resolved[resolved <= hi]
    closed = np.bincount(resolved - lo, minlength=n)[:n]
    period = pd.to_datetime((np.arange(lo, hi + 1) * 7 - 3).astype("datetime64[D]")).date
    return pd.DataFrame({
        "period": period,
        "ticket_count": opened,
        "backlog": np.cumsum(opened) - np.cumsum(closed),
    })


def pandas_set(which: str, t, fb):
    win = windows()
    out = {}
    if which == "overview":
        import pandas as pd

        out["kpi_current"] = pd.DataFrame([_kpi(t, fb, win["cur"])])
        out["kpi_previous"] = pd.DataFrame([_kpi(t, fb, win["prev"])])
        out["weekly"] = _weekly(t)
        out["by_segment"] = _segments(t, fb, win["cur"])
    else:
        out["by_rep"] = _leaderboard(t, fb, ["rep_id", "rep_name", "team"], win["cur"])
        out["by_team"] = _leaderboard(t, fb, ["team"], win["cur"])
        out["by_manager"] = _leaderboard(t, fb, ["manager"], win["cur"])
    return out


def part_pandas(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd

    started = time.perf_counter()
    t0 = time.perf_counter()
    frames = pandas_load(data_dir(args))
    load_s = time.perf_counter() - t0
    prepare: list[float] = []
    agg: dict[str, list[float]] = {s: [] for s in SETS}
    results = {}
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        t, fb = pandas_prepare(frames)
        prepare.append(time.perf_counter() - t0)
        for which in SETS:
            t0 = time.perf_counter()
            results.update(pandas_set(which, t, fb))
            agg[which].append(time.perf_counter() - t0)
        del t, fb
    return {
        "load": load_s,
        "prepare": summary(prepare),
        "agg": {s: summary(v) for s, v in agg.items()},
        "results": {k: frame_to_json(v) for k, v in results.items()},
        "rows": len(frames["tickets"]),
        "seconds": time.perf_counter() - started,
        "peak_mib": peak_mib(),
        "pandas": pd.__version__,
    }


PARTS = {
    "generate": part_generate,
    "ingest": part_ingest,
    "duckdb": part_duckdb,
    "pandas": part_pandas,
}


# --- orchestration --------------------------------------------------------------------------


def run_part(args: argparse.Namespace, part: str) -> dict[str, Any]:
    """Run one part in a fresh interpreter so its peak memory is its own."""
    result = Path(args.dir) / f".part_{part}_{args.tickets}.json"
    result.unlink(missing_ok=True)
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--part", part,
        "--tickets", str(args.tickets), "--days", str(args.days), "--dir", str(args.dir),
        "--repeat", str(args.repeat), "--result", str(result),
    ]
    print(f"  running {part} ...", file=sys.stderr, flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise SystemExit(f"The {part} part failed (its error is above); nothing was reported.")
    out = json.loads(result.read_text(encoding="utf-8"))
    result.unlink()
    return out


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b)) or abs(a - b) < 1e-12


def compare(duck: dict, pand: dict) -> tuple[int, list[str]]:
    """Align every result on its keys and compare each figure; returns (count, problems)."""
    checked = 0
    problems: list[str] = []
    for name, (_, metrics, by, grain, _) in QUERIES.items():
        keys = list(by) + (["period"] if grain else [])
        d, p = duck[name], pand[name]

        def index(res: dict, keys: list[str] = keys) -> dict[tuple, dict]:
            cols = res["columns"]
            return {
                tuple(r[cols.index(k)] for k in keys): dict(zip(cols, r, strict=True))
                for r in res["rows"]
            }

        di, pi = index(d), index(p)
        if set(di) != set(pi):
            missing = sorted(map(str, set(di) ^ set(pi)))[:5]
            problems.append(f"{name}: groups differ ({len(di)} vs {len(pi)}; e.g. {missing})")
            continue
        for key, row in di.items():
            for m in metrics:
                checked += 1
                if not _close(row[m], pi[key][m]):
                    problems.append(f"{name} {key} {m}: DuckDB {row[m]!r} pandas {pi[key][m]!r}")
    return checked, problems


def _s(x: float) -> str:
    return f"{x:.3f} s" if x < 10 else f"{x:.1f} s"


def _x(ratio: float) -> str:
    return f"{ratio:.0f}x" if ratio >= 100 else f"{ratio:.1f}x"


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def report(args, gen, ing, duck, pand) -> tuple[str, dict[str, Any]]:
    checked, problems = compare(duck["results"], pand["results"])
    n_sets = {s: sum(1 for q in QUERIES.values() if q[0] == s) for s in SETS}
    rows = []
    figures: dict[str, Any] = {
        "tickets": args.tickets, "days": args.days, "repeat": args.repeat,
        "ingest_s": ing["seconds"], "generate_s": gen["seconds"], "data_reused": gen["reused"],
        "peak_mib": {"ingest": ing["peak_mib"], "duckdb_queries": duck["peak_mib"],
                     "pandas": pand["peak_mib"]},
        "pandas_load_s": pand["load"], "pandas_prepare_s": pand["prepare"],
        "duckdb_settings": duck["settings"], "sets": {}, "queries": duck["queries"],
        "agreement": {"figures": checked, "problems": problems},
    }
    for s in SETS:
        dm = duck["sets"][s]["median"]
        compute = pand["prepare"]["median"] + pand["agg"][s]["median"]
        total = pand["load"] + compute
        figures["sets"][s] = {
            "queries": n_sets[s],
            "duckdb_cold_s": duck["cold"][s],
            "duckdb_best_s": duck["sets"][s]["best"],
            "duckdb_median_s": dm,
            "pandas_total_s": total,
            "pandas_compute_s": compute,
            "pandas_agg_only_s": pand["agg"][s]["median"],
            "ratio_total": total / dm,
            "ratio_compute": compute / dm,
            "ratio_agg_only": pand["agg"][s]["median"] / dm,
        }
        f = figures["sets"][s]
        rows.append(
            f"{s + f' ({n_sets[s]} queries)':<24}{f['duckdb_best_s']:>10.3f}"
            f"{f['duckdb_median_s']:>10.3f}{f['duckdb_cold_s']:>8.3f} "
            f"{f['pandas_total_s']:>12.2f}{f['pandas_compute_s']:>9.2f}"
            f"{f['pandas_agg_only_s']:>10.2f} "
            f"{_x(f['ratio_total']):>12}{_x(f['ratio_compute']):>9}{_x(f['ratio_agg_only']):>10}"
        )
    lines = [
        f"cs_metrics benchmark: N = {args.tickets:,} tickets over {args.days} days "
        f"(end {END}), repeat {args.repeat}, {os.cpu_count()} cores",
        f"DuckDB {duck['duckdb']} ({', '.join(f'{k}={v}' for k, v in duck['settings'].items())})"
        f", pandas {pand['pandas']}, Python {sys.version.split()[0]}",
        f"data: {data_dir(args)} "
        + ("(reused)" if gen["reused"] else f"(generated in {_s(gen['seconds'])})"),
        "",
        f"ingest (canonical Parquet -> {db_path(args).name}): {_s(ing['seconds'])}, "
        f"{ing['loaded'].get('tickets', 0):,} tickets loaded, "
        f"{sum(ing['rejected'].values()):,} rows rejected, file {ing['db_mib']:,.0f} MiB",
        "",
        f"{'seconds':<24}{'DuckDB (cs_metrics.query)':>28} {'pandas (median)':>30} "
        f"{'pandas / DuckDB warm median':>31}",
        f"{'query set':<24}{'warm best':>10}{'median':>10}{'cold':>8} {'load+compute':>12}"
        f"{'compute':>9}{'agg only':>10} {'load+compute':>12}{'compute':>9}{'agg only':>10}",
        *rows,
        f"pandas: load {pand['load']:.2f} s (Parquet, needed columns, once for both sets) + "
        f"derived columns {pand['prepare']['median']:.2f} s (shared) + the set's aggregates; "
        "compute = derived + aggregates",
        "",
        "DuckDB per query (warm median): " + ", ".join(
            f"{q} {v['median']:.3f}" for q, v in duck["queries"].items()
        ),
        "",
        f"peak memory (MiB, own process): ingest {ing['peak_mib']:,.0f}, "
        f"DuckDB queries {duck['peak_mib']:,.0f}, pandas {pand['peak_mib']:,.0f}",
        f"agreement: {checked:,} figures compared, "
        + ("all within 1e-6 relative" if not problems else f"{len(problems)} DISAGREE"),
        *[f"  {p}" for p in problems[:20]],
        "",
        "goals",
    ]
    goals: list[tuple[str, str, bool | None]] = []
    for s in SETS:
        f = figures["sets"][s]
        goals.append((f"{s} < {GOAL_QUERY_S} s warm (median)", f"{f['duckdb_median_s']:.3f} s",
                      f["duckdb_median_s"] < GOAL_QUERY_S))
    for s in SETS:
        f = figures["sets"][s]
        goals.append((f"{s} >= {GOAL_RATIO:.0f}x faster than pandas (load+compute)",
                      _x(f["ratio_total"]), f["ratio_total"] >= GOAL_RATIO))
        goals.append((f"{s} >= {GOAL_RATIO:.0f}x faster than pandas (compute only)",
                      _x(f["ratio_compute"]), f["ratio_compute"] >= GOAL_RATIO))
    at_goal_size = args.tickets >= 10_000_000
    goals.append((f"10M ingest < {GOAL_INGEST_10M_S:.0f} s", _s(ing["seconds"]) +
                  ("" if at_goal_size else " (measured at N < 10M)"),
                  ing["seconds"] < GOAL_INGEST_10M_S if at_goal_size else None))
    for label, key in (("ingest", "ingest"), ("DuckDB queries", "duckdb_queries")):
        mib = figures["peak_mib"][key]
        goals.append((f"peak memory < 1.5 GiB: {label}", f"{mib:,.0f} MiB", mib < GOAL_PEAK_MIB))
    goals.append(("pandas and DuckDB agree (1e-6 relative)", f"{checked:,} figures",
                  not problems))
    for label, value, ok in goals:
        lines.append(f"  {label:<52}{value:>30}  {_mark(ok)}")
    figures["goals"] = [{"goal": g, "value": v, "pass": ok} for g, v, ok in goals]
    return "\n".join(lines), figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickets", type=int, required=True, help="number of tickets (N)")
    ap.add_argument("--days", type=int, default=730, help="days of history (default 730)")
    ap.add_argument("--dir", default=str(ROOT / "bench" / "out"),
                    help="where data, warehouse and results go (default bench/out)")
    ap.add_argument("--repeat", type=int, default=5, help="timed repeats (default 5)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.tickets < 1 or args.repeat < 1:
        ap.error("--tickets and --repeat must be at least 1")
    Path(args.dir).mkdir(parents=True, exist_ok=True)

    if args.part:
        out = PARTS[args.part](args)
        Path(args.result).write_text(json.dumps(out), encoding="utf-8")
        return 0

    gen = run_part(args, "generate")
    ing = run_part(args, "ingest")
    duck = run_part(args, "duckdb")
    pand = run_part(args, "pandas")
    text, figures = report(args, gen, ing, duck, pand)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n",
                                   encoding="utf-8")
    return 0 if not figures["agreement"]["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
