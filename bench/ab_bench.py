"""Before/after: the same vmcorekit commands from two source trees, interleaved, best of N.
For refactors that must not cost speed: every bench's vmcorekit side, old tree vs new tree,
on the same dump in one run (so machine load hits both alike).

    git worktree add /tmp/old <rev>
    python bench/ab_bench.py --old /tmp/old/src [--new src] [--runs 5] [DUMP ...]

Prints, per command and dump, the best wall time of each tree and new/old (below 1.05 is
within 5 %). Without DUMP: the largest decompressed corpus ELF and the shipped sample.
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


def run_once(src: str, argv: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=src)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vmcorekit", *argv], env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t


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
    print(f"{'command':18} {'dump':40} {'old s':>8} {'new s':>8} {'new/old':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for dump in dumps:
            for label, argv in COMMANDS:
                if only and label not in only:
                    continue
                best = {"old": float("inf"), "new": float("inf")}
                for i in range(a.runs):
                    for side, src in (("old", a.old), ("new", a.new)):
                        out = Path(tmp) / f"out.{side}.{i}"
                        args = [x.format(dump=dump, out=out) for x in argv]
                        best[side] = min(best[side], run_once(src, args))
                        out.unlink(missing_ok=True)
                r = best["new"] / best["old"]
                worst = max(worst, r)
                print(f"{label:18} {Path(dump).name[-40:]:40} {best['old']:8.3f} {best['new']:8.3f} {r:8.3f}",
                      flush=True)
    print(f"worst new/old: {worst:.3f}")


if __name__ == "__main__":
    main()
