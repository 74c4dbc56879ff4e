"""Benchmark: deriving the query table with SLA policies on a business-hours calendar
against the same policies in elapsed (24/7) time.

    python bench/bench_sla_business.py --tickets 1000000 [--days 730] [--dir bench/out] [--repeat 3]

Generates (or reuses, with bench_metrics.py) N canonical tickets, then per variant, each in
its own child process: a full ingest into a fresh warehouse with that variant's settings,
and ``rebuild_derived`` (every derived column: durations, SLA targets, deadlines, verdicts,
side tables) timed R times on it. The business variant is the shipped policies with
``business_hours = "ny"``: New York, weekdays 09:00-17:00, ten holidays a year. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import bench_metrics as bm  # noqa: E402 (after the path is set)

VARIANTS = ("elapsed", "business")
GOAL_INGEST_10M_S = bm.GOAL_INGEST_10M_S

HOLIDAYS = [f"{y}-{md}" for y in range(2022, 2026) for md in (
    "01-01", "01-20", "02-17", "05-26", "06-19", "07-04", "09-01", "11-27", "11-28", "12-25")]
BUSINESS = f"""
[business_hours.ny]
timezone = "America/New_York"
hours = {{ mon = "09:00-17:00", tue = "09:00-17:00", wed = "09:00-17:00", thu = "09:00-17:00", fri = "09:00-17:00" }}
holidays = {json.dumps(HOLIDAYS)}
"""  # noqa: E501 (one TOML line)


def settings_file(folder: Path, variant: str) -> Path:
    """The shipped SLA policies, each given ``business_hours = "ny"`` in the business variant."""
    import tomllib

    from cs_metrics.core.settings import DEFAULT_SETTINGS_FILE

    policies = tomllib.loads(DEFAULT_SETTINGS_FILE.read_text(encoding="utf-8"))["sla"]["policies"]
    lines = [BUSINESS]
    for policy in policies:
        lines.append("[[sla.policies]]")
        for key, value in policy.items():
            lines.append(f"{key} = {_toml(value)}")
        if variant == "business":
            lines.append('business_hours = "ny"')
        lines.append("")
    path = folder / f"sla_{variant}.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def part_variant(args: argparse.Namespace) -> dict[str, Any]:
    import duckdb

    from cs_metrics import ingest
    from cs_metrics.core.settings import load_settings
    from cs_metrics.core.warehouse import rebuild_derived

    settings = load_settings(settings_file(Path(args.dir), args.variant))
    db = Path(args.dir) / f"wh_sla_{args.variant}_{args.tickets}.duckdb"
    for p in (db, db.with_name(db.name + ".wal")):
        p.unlink(missing_ok=True)
    started = time.perf_counter()
    ingest(bm.data_dir(args), db=db, replace=True, settings=settings,
           rejects_csv=Path(args.dir) / f"rejects_sla_{args.tickets}.csv")
    ingest_s = time.perf_counter() - started
    ingest_peak = bm.peak_mib()  # the load's own peak, before the derivations below
    con = duckdb.connect(str(db))
    times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        con.execute("begin")
        rebuild_derived(con, settings)
        con.execute("commit")
        times.append(time.perf_counter() - started)
    counts = con.execute(
        "select count(*) filter (where sla_first_response_met), "
        "count(*) filter (where not sla_first_response_met), "
        "count(*) filter (where sla_resolution_met), "
        "count(*) filter (where not sla_resolution_met), "
        "count(sla_first_response_deadline), avg(first_response_business_min) "
        "from tickets where not is_test").fetchall()[0]
    con.close()
    return {
        "ingest_s": ingest_s, "derive_best_s": min(times),
        "derive_median_s": statistics.median(times), "ingest_peak_mib": ingest_peak,
        "peak_mib": bm.peak_mib(),
        "fr_met": counts[0], "fr_breached": counts[1], "res_met": counts[2],
        "res_breached": counts[3], "deadlines": counts[4], "avg_fr_business_min": counts[5],
        "db_mib": db.stat().st_size / 2**20,
    }


def run_child(args: argparse.Namespace, part: str, variant: str = "") -> dict[str, Any]:
    result = Path(args.dir) / f".sla_{part}_{variant}_{args.tickets}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--part", part,
           "--tickets", str(args.tickets), "--days", str(args.days), "--dir", str(args.dir),
           "--repeat", str(args.repeat), "--result", str(result)]
    if variant:
        cmd += ["--variant", variant]
    print(f"  running {part} {variant} ...", file=sys.stderr, flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise SystemExit(f"The {part} {variant} part failed (its error is above).")
    out = json.loads(result.read_text(encoding="utf-8"))
    result.unlink()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickets", type=int, required=True, help="number of tickets (N)")
    ap.add_argument("--days", type=int, default=730, help="days of history (default 730)")
    ap.add_argument("--dir", default=str(ROOT / "bench" / "out"),
                    help="where data, warehouses and results go (default bench/out)")
    ap.add_argument("--repeat", type=int, default=3, help="timed derivations (default 3)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--part", choices=("generate", "variant"), help=argparse.SUPPRESS)
    ap.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.tickets < 1 or args.repeat < 1:
        ap.error("--tickets and --repeat must be at least 1")
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    if args.part:
        out = bm.part_generate(args) if args.part == "generate" else part_variant(args)
        Path(args.result).write_text(json.dumps(out, default=str), encoding="utf-8")
        return 0

    gen = run_child(args, "generate")
    res = {v: run_child(args, "variant", v) for v in VARIANTS}
    import duckdb

    lines = [
        f"SLA on business hours: N = {args.tickets:,} tickets over {args.days} days, "
        f"repeat {args.repeat}, {os.cpu_count()} cores, DuckDB {duckdb.__version__}",
        f"data: {bm.data_dir(args)} ({'reused' if gen.get('reused') else 'generated'})",
        "",
        f"{'variant':<10}{'ingest s':>10}{'peak MiB':>10}{'derive best':>13}{'median':>9}"
        f"{'peak MiB':>10}{'FR met':>12}{'FR breached':>13}{'deadlines':>12}",
    ]
    for v in VARIANTS:
        r = res[v]
        lines.append(f"{v:<10}{r['ingest_s']:>10.1f}{r['ingest_peak_mib']:>10,.0f}"
                     f"{r['derive_best_s']:>13.1f}{r['derive_median_s']:>9.1f}"
                     f"{r['peak_mib']:>10,.0f}{r['fr_met']:>12,}{r['fr_breached']:>13,}"
                     f"{r['deadlines']:>12,}")
    ratio = res["business"]["derive_median_s"] / res["elapsed"]["derive_median_s"]
    lines.append(f"business / elapsed: derive (median) {ratio:.2f}x, ingest "
                 f"{res['business']['ingest_s'] / res['elapsed']['ingest_s']:.2f}x; the second "
                 "peak includes the derivations (a connection without the load's memory limit)")
    if args.tickets >= 10_000_000:
        ok = res["business"]["ingest_s"] < GOAL_INGEST_10M_S
        lines.append(f"goal 10M ingest < {GOAL_INGEST_10M_S:g} s with business-hours SLA: "
                     f"{res['business']['ingest_s']:.1f} s  {'PASS' if ok else 'FAIL'}")
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({"tickets": args.tickets, "days": args.days,
                                               "variants": res, "ratio": ratio}, indent=2,
                                              default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
