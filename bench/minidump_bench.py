"""Minidumps (`filter --level triage`) against `filter -d 31` on the same dumps: output size,
wall time and CPU time, and the minidump's size under each kdump codec.

    python bench/minidump_bench.py [DUMP...] [--codecs zlib,zstd,lzo,snappy] [--repeat 1]

DUMP defaults to the shipped samples (x86_64 kdump, arm64 zstd-wrapped ELF). Each command runs
as its own process, so Python's start (~0.3 s) is included, as a user would see it; CPU time is
user + sys of the process (from wait4). The time of a minidump is recording (triage, dmesg, ps,
bt and mod run over a recording view) plus writing; `--json` splits it (shown as rec / write).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLAG = {"zlib": "-c", "lzo": "-l", "snappy": "-p", "zstd": "-z"}


def run_usage(cmd: list[str], out: Path) -> tuple[float, float, int, str]:
    """(wall s, CPU s, output bytes, stdout) of one process, the output removed first."""
    if out.exists():
        out.unlink()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=so, stderr=se, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        so.seek(0)
        se.seek(0)
        if p.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{se.read().decode(errors='replace')}")
        return wall, usage.ru_utime + usage.ru_stime, out.stat().st_size, so.read().decode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dumps", nargs="*")
    ap.add_argument("--codecs", default="zlib,zstd,lzo,snappy")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    dumps = a.dumps or [str(p) for p in (REPO / "samples" / "x86_64-6.1.0-56-amd64-qmp-c-d31.kdump",
                                         REPO / "samples" / "arm64" / "vmcore.elf.zst") if p.exists()]
    codecs = [c for c in a.codecs.split(",") if c]
    vk = [sys.executable, "-m", "vmcorekit", "filter"]
    print(f"{'DUMP':44} {'INPUT MiB':>9} {'-d31 MiB':>8} {'-d31 s':>7} {'MINI MiB':>8} {'MINI s':>7} "
          f"{'cpu s':>6} {'rec/write s':>12} {'pages':>6}  " + "  ".join(f"{c:>8}" for c in codecs[1:]))
    with tempfile.TemporaryDirectory(prefix="vmk-minibench-") as tmp:
        for d in dumps:
            out = Path(tmp) / "out.kdump"
            d31 = [run_usage([*vk, "-d", "31", "-c", d, str(out)], out) for _ in range(a.repeat)]
            mini = [run_usage([*vk, "--level", "triage", "--json", FLAG[codecs[0]], d, str(out)], out)
                    for _ in range(a.repeat)]
            info = json.loads(mini[-1][3])
            others = []
            for c in codecs[1:]:
                try:
                    others.append(f"{run_usage([*vk, '--level', 'triage', FLAG[c], d, str(out)], out)[2] / 2**20:8.2f}")
                except SystemExit:
                    others.append(f"{'-':>8}")  # codec not installed
            med = lambda runs, i: statistics.median(r[i] for r in runs)  # noqa: E731
            sec = info["seconds"]
            name = d if len(d) <= 44 else "..." + d[-41:]
            print(f"{name:44} {os.path.getsize(d) / 2**20:9.1f} {med(d31, 2) / 2**20:8.2f} {med(d31, 0):7.2f} "
                  f"{med(mini, 2) / 2**20:8.2f} {med(mini, 0):7.2f} {med(mini, 1):6.2f} "
                  f"{sec['record']:5.2f}/{sec['write']:<5.2f} {info['dumped_pages']:>6}  " + "  ".join(others),
                  flush=True)
    print(f"(MINI: --level triage with {codecs[0]}; the last columns: the minidump's size in MiB with each other codec)")


if __name__ == "__main__":
    main()
