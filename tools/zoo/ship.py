#!/usr/bin/env python3
"""Make the zoo's minidumps that live in the repository, then rewrite the manifest.

    python3 tools/zoo/ship.py [DUMPS_DIR]

For each dump chosen below, `vmcorekit filter --level triage` of the full dump (made by
tools/make-zoo.sh under DUMPS_DIR [/work/scratch/zoo/dumps]) goes to
tests/zoo/dumps/<id>.kdump; tools/zoo/manifest.py then records it as the entry's `minidump`,
which tests/test_zoo.py reads in CI. Every other entry keeps only its full dump's recipe.

Why a selection: a minidump is 4-5 MiB (kallsyms, BTF and ORC, read whole by every open, are
~90 % of it), and the zoo's minidumps must stay under BUDGET together. Chosen: every kind of
x86_64 6.1 once, both boots of the kinds whose bucket is hardest to keep stable (a hang, a stall,
an oops in interrupt context), and on 6.12 and arm64 the kinds whose answer differs there.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(REPO, "tests", "zoo", "dumps")
BUDGET = 80 * 1024 * 1024

X86_61 = "x86_64-6.1.0-57-amd64"
X86_612 = "x86_64-6.12.118+deb12-amd64"
ARM64 = "arm64-6.1.0-57-arm64"
SHIP = (
    [f"{X86_61}-{k}-1" for k in ("null", "gpf", "bug", "warn", "list", "double_free", "stack_overflow",
                                 "softlockup", "hung_chain", "abba", "rcu_stall", "oom_slab", "timer_null",
                                 "nmi")]
    + [f"{X86_61}-{k}-2" for k in ("hung_chain", "nmi")]
    + [f"{X86_612}-{k}-1" for k in ("fortify", "oom_user")]
    + [f"{ARM64}-{k}-1" for k in ("rcu_stall", "panic")]
)


def main() -> int:
    dumps = sys.argv[1] if len(sys.argv) > 1 else "/work/scratch/zoo/dumps"
    manifest = os.path.join(REPO, "tests", "zoo", "manifest.toml")
    with open(manifest, "rb") as f:
        by_id = {e["id"]: e for e in tomllib.load(f)["dump"]}
    os.makedirs(OUT, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "src"))
    total = 0
    for i in SHIP:
        e = by_id.get(i)
        if e is None or not os.path.exists(e["dump"]):
            print(f"missing: {i}", file=sys.stderr)
            return 1
        out = os.path.join(OUT, f"{i}.kdump")
        subprocess.run([sys.executable, "-m", "vmcorekit", "filter", "--level", "triage", "-f", e["dump"], out],
                       env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        size = os.path.getsize(out)
        total += size
        print(f"{i}: {size / 2**20:.2f} MiB", file=sys.stderr)
    print(f"{len(SHIP)} minidumps, {total / 2**20:.1f} MiB (budget {BUDGET / 2**20:.0f} MiB)", file=sys.stderr)
    if total > BUDGET:
        return 1
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "zoo", "manifest.py"), dumps, manifest], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
