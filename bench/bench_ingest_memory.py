"""Benchmark: peak memory of ``python -m cs_metrics ingest`` on pathological CSV input, and the
size of the rejects file it writes.

    python bench/bench_ingest_memory.py [--rows 2000000] [--dir bench/out] [--variant ...]

Two canonical ticket CSVs of ``--rows`` rows each are written once into ``DIR``:

- ``dup``: every row good, except that the last row repeats the first row's ``ticket_id``
  (one ``duplicate_key`` reject);
- ``allbad``: every row carries the status ``waiting``, so every row is rejected for the same
  reason (``unknown_status``);
- ``mapped``: the ``dup`` file read through a mapping file (column names and expressions), as
  a foreign export is.

Each variant is loaded by a child process (``python -m cs_metrics ingest DIR/... --db ...
--replace --rejects ...``) into a fresh warehouse; its peak resident memory comes from the
kernel's accounting of that child alone (``os.wait4``). See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOAL_PEAK_MIB = 1536.0  # 1.5 GiB
VARIANTS = ("dup", "allbad", "mapped")

MAPPING = """\
[tickets]
source = "tickets.csv"
timezone = "America/New_York"
[tickets.columns]
ticket_id = "ticket_id"
created_at = "strptime(created_at, '%Y-%m-%d %H:%M:%S')"
status = "status"
first_response_at = "first_response_at"
resolved_at = "resolved_at"
priority = "priority"
channel = "upper(channel)"
domain = "domain"
location = "location"
customer_id = "customer_id"
rep_id = "rep_id"
contacts = "cast(contacts as integer)"
handle_time_s = "handle_time_s"
subject = "subject"
"""


def write_tickets(path: Path, rows: int, variant: str) -> None:
    """A canonical tickets.csv of ``rows`` rows, written by DuckDB (a few seconds for 2M)."""
    import duckdb

    path.parent.mkdir(parents=True, exist_ok=True)
    status = "'waiting'" if variant == "allbad" else \
        "case i % 3 when 0 then 'open' when 1 then 'in_progress' else 'closed' end"
    # the last row repeats the first row's id: one duplicate among good rows
    ticket_id = f"'T' || lpad(cast(case when i = {rows - 1} then 0 else i end as varchar), 9, '0')"
    tmp = path.with_suffix(".part")
    con = duckdb.connect()
    try:
        con.execute(
            f"""
            copy (
                select {ticket_id} as ticket_id,
                    timestamp '2023-01-01' + to_seconds(i * 15) as created_at,
                    {status} as status,
                    timestamp '2023-01-01' + to_seconds(i * 15 + 600) as first_response_at,
                    case when i % 3 = 2 then timestamp '2023-01-01' + to_seconds(i * 15 + 7200)
                    end as resolved_at,
                    (['low', 'normal', 'high', 'urgent'])[i % 4 + 1] as priority,
                    (['email', 'phone', 'chat'])[i % 3 + 1] as channel,
                    (['billing', 'network', 'mobile', 'tv'])[i % 4 + 1] as domain,
                    'City ' || (i % 48) as location,
                    'C' || (i % 200000) as customer_id,
                    'R' || (i % 300) as rep_id,
                    1 + i % 3 as contacts,
                    120 + i % 900 as handle_time_s,
                    'Subject of ticket number ' || i || ' about the ' ||
                        (['bill', 'router', 'phone', 'box'])[i % 4 + 1] as subject
                from range({rows}) t(i)
            ) to '{tmp}' (header, delimiter ',')
            """
        )
    finally:
        con.close()
    tmp.replace(path)


def _source(base: Path, rows: int, variant: str) -> Path:
    if variant == "mapped":
        folder = _source(base, rows, "dup")
        (folder / "mapping.toml").write_text(MAPPING)
        return folder
    folder = base / f"ingest_mem_{variant}_{rows}"
    csv = folder / "tickets.csv"
    marker = folder / "rows.txt"
    if not (csv.exists() and marker.exists() and marker.read_text() == str(rows)):
        started = time.perf_counter()
        write_tickets(csv, rows, variant)
        marker.write_text(str(rows))
        print(f"wrote {csv} ({csv.stat().st_size / 2**20:,.0f} MiB) in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
    return folder


def run_ingest(source: Path, db: Path, rejects: Path, mapping: Path | None = None
               ) -> tuple[int, float, float, str]:
    """Run the CLI ingest in a child; (exit code, peak RSS MiB, seconds, its summary)."""
    for f in (db, db.with_name(db.name + ".wal"), rejects):
        f.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "cs_metrics", "ingest", str(source), "--db", str(db),
           "--replace", "--rejects", str(rejects)]
    if mapping is not None:
        cmd += ["--mapping", str(mapping)]
    started = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    out = child.stdout.read() if child.stdout else ""
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    peak_mib = usage.ru_maxrss / 1024  # kilobytes on Linux
    # DuckDB draws a progress bar on long queries; the summary is what matters here
    lines = [line for line in out.splitlines() if line.strip() and "▕" not in line]
    return child.returncode, peak_mib, seconds, "\n".join(lines[-12:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000, help="ticket rows (default 2M)")
    ap.add_argument("--dir", default=str(ROOT / "bench" / "out"),
                    help="where the CSVs, warehouses and rejects go (default bench/out)")
    ap.add_argument("--variant", choices=VARIANTS, action="append",
                    help="run only this variant (repeatable; default both)")
    args = ap.parse_args(argv)
    base = Path(args.dir)
    failed = False
    for variant in args.variant or VARIANTS:
        source = _source(base, args.rows, variant)
        db = base / f"ingest_mem_{variant}.duckdb"
        rejects = base / f"ingest_mem_{variant}_rejects.csv"
        mapping = source / "mapping.toml" if variant == "mapped" else None
        code, peak, seconds, tail = run_ingest(source, db, rejects, mapping)
        src_mib = (source / "tickets.csv").stat().st_size / 2**20
        rej_mib = rejects.stat().st_size / 2**20 if rejects.exists() else float("nan")
        ok = code == 0 and peak < GOAL_PEAK_MIB and rej_mib <= src_mib
        failed |= not ok
        print(f"\n== {variant}: {args.rows:,d} rows, source {src_mib:,.0f} MiB")
        print(tail)
        print(f"exit code          {code}")
        print(f"peak RSS           {peak:,.0f} MiB (goal < {GOAL_PEAK_MIB:,.0f} MiB) "
              f"{'ok' if peak < GOAL_PEAK_MIB else 'FAIL'}")
        print(f"rejects.csv        {rej_mib:,.1f} MiB (goal <= the source) "
              f"{'ok' if rej_mib <= src_mib else 'FAIL'}")
        print(f"time               {seconds:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
