#!/usr/bin/env python3
"""Fleet ingest throughput: N distinct dumps (copies of a sample, each made distinct by one
byte of kdump header padding, in a temporary folder) ingested into a fresh index with 1 and
with 2 local workers.

    python bench/fleet_bench.py [--dumps 200] [--workers 1,2] [--dump PATH] [--scheduler tcp://H:P]

Prints dumps/minute, the projection to dumps/day against the goal of 100,000 a day (and the
workers that goal needs at the measured rate per worker), and peak RSS per worker process
(goal < 300 MB; measured by each triage process itself, ru_maxrss) and of the ingest process.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "x86_64-6.1.0-56-amd64-qmp-c-d31.kdump"
PAD = 3000  # inside block 0 of a kdump file, after its 464-byte header: padding
GOAL_PER_DAY = 100_000
RSS_GOAL_MB = 300


def make_fleet(src: Path, folder: Path, n: int) -> None:
    data = bytearray(src.read_bytes())
    if data[:8] != b"KDUMP   ":
        sys.exit(f"{src}: the bench varies kdump header padding; give a kdump-compressed file")
    for i in range(n):
        data[PAD:PAD + 4] = (i + 1).to_bytes(4, "little")
        d = folder / f"host{i:05}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "vmcore").write_bytes(data)


def run(folder: Path, index: Path, args: list[str]) -> tuple[dict, float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    r = subprocess.run([sys.executable, "-m", "vmcorekit", "fleet", "ingest", str(folder), "--index", str(index),
                        "--json", *args], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stderr)
    return json.loads(r.stdout), max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024


def worker_rss(index: Path) -> tuple[float, float]:
    import duckdb
    con = duckdb.connect(str(index), read_only=True)
    try:
        peak, mean = con.execute("SELECT max(worker_rss_kb), avg(worker_rss_kb) FROM dumps").fetchone()
    finally:
        con.close()
    return (peak or 0) / 1024, (mean or 0) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dumps", type=int, default=200)
    ap.add_argument("--workers", default="1,2", help="comma-separated local worker counts")
    ap.add_argument("--dump", type=Path, default=SAMPLE, help="the kdump file to copy")
    ap.add_argument("--scheduler", help="also run on this Dask cluster (its workers must see the temp folder)")
    ap.add_argument("--tmp", help="folder for the copies (default: the system temp dir)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vmcorekit-fleet-bench-", dir=a.tmp))
    try:
        t = time.perf_counter()
        make_fleet(a.dump, tmp / "dumps", a.dumps)
        size = a.dump.stat().st_size
        print(f"{a.dumps} distinct dumps of {size / 2**20:.1f} MiB ({a.dump.name}) made in "
              f"{time.perf_counter() - t:.1f} s under {tmp}")
        configs = [(f"{w} local worker{'s' if w > 1 else ''}", w, ["--workers", str(w)])
                   for w in (int(x) for x in a.workers.split(","))]
        if a.scheduler:
            configs.append((f"dask {a.scheduler}", None, ["--scheduler", a.scheduler]))
        print(f"{'executor':22} {'dumps':>6} {'seconds':>8} {'dumps/min':>10} {'per day':>10} "
              f"{'workers for 100k/day':>21} {'worker RSS peak/mean MB':>24} {'ingest RSS MB':>14}")
        for label, w, args in configs:
            index = tmp / f"index-{len(label)}-{label.replace(' ', '_').replace('/', '_')}.duckdb"
            s, ingest_rss = run(tmp / "dumps", index, args)
            if s["triaged"] != a.dumps or s["failed"]:
                print(f"  warning: {s}")
            per_min = s["triaged"] / s["seconds"] * 60
            per_day = per_min * 1440
            need = "-" if not w else str(math.ceil(GOAL_PER_DAY / (per_day / w)))
            peak, mean = worker_rss(index)
            flag = "" if peak < RSS_GOAL_MB else " (over goal)"
            print(f"{label:22} {s['triaged']:>6} {s['seconds']:>8.1f} {per_min:>10.1f} {per_day:>10,.0f} "
                  f"{need:>21} {f'{peak:.0f} / {mean:.0f}{flag}':>24} {ingest_rss:>14.0f}")
        print(f"goal: {GOAL_PER_DAY:,} dumps/day = {GOAL_PER_DAY / 1440:.1f} dumps/min; worker RSS < {RSS_GOAL_MB} MB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
