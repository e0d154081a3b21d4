"""Before/after: the same vmcorekit commands from two source trees, interleaved, best of N.
For refactors that must not cost speed: every bench's vmcorekit side, old tree vs new tree,
on the same dump in one run (so machine load hits both alike).

    git worktree add /tmp/old <rev>
    python bench/ab_bench.py --old /tmp/old/src [--new src] [--runs 5] [DUMP ...]

Prints, per command and dump, the best wall and CPU time of each tree and new/old (below 1.05
is within 5 %; on a busy machine trust the CPU column). Without DUMP: the largest decompressed corpus ELF and the shipped sample.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, default_dump

COMMANDS = [
    ("info", ["info", "{dump}"]),
    ("dmesg", ["dmesg", "{dump}"]),
    ("ps", ["ps", "{dump}"]),
    ("sys", ["sys", "{dump}"]),
    ("mod", ["mod", "{dump}"]),
    ("kmem -i", ["kmem", "-i", "{dump}"]),
    ("bt -a", ["bt", "-a", "{dump}"]),
    ("bt all tasks", ["bt", "--all-tasks", "{dump}"]),
    ("triage --json", ["triage", "--json", "{dump}"]),
    ("verify", ["verify", "{dump}"]),
    ("filter -c -d 31", ["filter", "-c", "-d", "31", "{dump}", "{out}"]),
    ("filter -l -d 31", ["filter", "-l", "-d", "31", "{dump}", "{out}"]),
]


def run_once(src: str, argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run. CPU time (user + system, from wait4) is what a
    loaded machine disturbs least; both are printed."""
    env = dict(os.environ, PYTHONPATH=src)
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "vmcorekit", *argv], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    _, _, ru = os.wait4(p.pid, 0)
    p.returncode = 0  # reaped above
    return time.perf_counter() - t, ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dumps", nargs="*")
    ap.add_argument("--old", required=True, help="the old tree's src folder")
    ap.add_argument("--new", default=str(REPO / "src"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", help="comma-separated command labels")
    a = ap.parse_args()
    dumps = a.dumps or [default_dump(), *map(str, sorted((REPO / "samples").glob("*.kdump")))]
    only = set(a.only.split(",")) if a.only else None
    worst = 0.0
    print(f"{'command':18} {'dump':40} {'old s':>7} {'new s':>7} {'new/old':>7} "
          f"{'old cpu':>7} {'new cpu':>7} {'new/old':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for dump in dumps:
            for label, argv in COMMANDS:
                if only and label not in only:
                    continue
                wall = {"old": float("inf"), "new": float("inf")}
                cpu = dict(wall)
                for i in range(a.runs):
                    for side, src in (("old", a.old), ("new", a.new)):
                        out = Path(tmp) / f"out.{side}.{i}"
                        args = [x.format(dump=dump, out=out) for x in argv]
                        w, c = run_once(src, args)
                        wall[side], cpu[side] = min(wall[side], w), min(cpu[side], c)
                        out.unlink(missing_ok=True)
                rw, rc = wall["new"] / wall["old"], cpu["new"] / cpu["old"]
                worst = max(worst, rc)
                print(f"{label:18} {Path(dump).name[-40:]:40} {wall['old']:7.3f} {wall['new']:7.3f} {rw:7.3f} "
                      f"{cpu['old']:7.3f} {cpu['new']:7.3f} {rc:7.3f}", flush=True)
    print(f"worst CPU new/old: {worst:.3f}")


if __name__ == "__main__":
    main()
