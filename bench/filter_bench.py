"""vmcorekit filter vs makedumpfile on the same dump: wall time, output size, peak RSS.

    python bench/filter_bench.py [DUMP] [--levels 31,0] [--codecs zlib,lzo] [--repeat 3]

DUMP defaults to the largest corpus ELF. Each command runs as its own process (so peak RSS
is that process's, from wait4) with 1 worker and with all cores; the best wall time of
--repeat runs is kept. Ratios are makedumpfile / vmcorekit: above 1 means vmcorekit is
faster (or smaller).
"""
from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import dump_arg

FLAG = {"zlib": "-c", "lzo": "-l", "snappy": "-p", "zstd": "-z"}


def run(cmd: list[str], out: Path) -> tuple[float, int, int]:
    """(wall seconds, output bytes, peak RSS KiB) of one process."""
    if out.exists():
        out.unlink()
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if status != 0 or not out.exists():
        raise SystemExit(f"failed ({status}): {' '.join(cmd)}\n{err[-2000:]}")
    return wall, out.stat().st_size, usage.ru_maxrss


def readable_by_makedumpfile(dump: str, tmp: Path) -> str:
    """makedumpfile 1.7.2 needs the program headers right after the ELF header."""
    with open(dump, "rb") as f:
        if struct.unpack_from("<Q", f.read(64), 32)[0] == 64:
            return dump
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_filter_corpus import normalize_elf
    dst = tmp / "input.norm.elf"
    normalize_elf(Path(dump), dst)
    return str(dst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dump", nargs="?")
    ap.add_argument("--levels", default="31,0")
    ap.add_argument("--codecs", default="zlib,lzo")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    dump = args.dump if args.dump else dump_arg()
    mdf = shutil.which("makedumpfile")
    vmk = [sys.executable, "-m", "vmcorekit"]
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="filter-bench-") as d:
        tmp = Path(d)
        src = readable_by_makedumpfile(dump, tmp) if mdf else dump
        print(f"dump: {dump} ({os.path.getsize(dump) >> 20} MiB), {cores} cores, best of {args.repeat}")
        print(f"{'level':>5} {'codec':>6} {'workers':>7} | {'vmk s':>7} {'mdf s':>7} {'speed':>7} | "
              f"{'vmk MiB':>8} {'mdf MiB':>8} {'size':>6} | {'vmk RSS':>8} {'mdf RSS':>8} {'RSS':>6}")
        for level in [int(x) for x in args.levels.split(",")]:
            for codec in args.codecs.split(","):
                for workers in sorted({1, cores}):
                    ours = [run([*vmk, "filter", "-d", str(level), "--codec", codec, "--threads", str(workers),
                                 "--no-progress", src, str(tmp / "vmk")], tmp / "vmk") for _ in range(args.repeat)]
                    best = min(ours)
                    line = (f"{level:>5} {codec:>6} {workers:>7} | {best[0]:>7.2f} ")
                    if mdf:
                        thr = ["--num-threads", str(workers)] if workers > 1 else []
                        theirs = min(run([mdf, FLAG[codec], "-d", str(level), *thr, src, str(tmp / "mdf")],
                                         tmp / "mdf") for _ in range(args.repeat))
                        line += (f"{theirs[0]:>7.2f} {theirs[0] / best[0]:>6.2f}x | {best[1] / 2**20:>8.1f} "
                                 f"{theirs[1] / 2**20:>8.1f} {theirs[1] / best[1]:>5.2f}x | {best[2] / 1024:>8.1f} "
                                 f"{theirs[2] / 1024:>8.1f} {theirs[2] / best[2]:>5.2f}x")
                    else:
                        line += f"{'-':>7} {'-':>7} | {best[1] / 2**20:>8.1f} {'-':>8} {'-':>6} | {best[2] / 1024:>8.1f}"
                    print(line, flush=True)


if __name__ == "__main__":
    main()
