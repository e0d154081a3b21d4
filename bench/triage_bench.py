#!/usr/bin/env python3
"""Triage against crash's start-up: `vmcorekit triage DUMP` (the whole report, from the dump
alone) vs `crash -s VMLINUX DUMP` answering `q` (crash only starting, with debuginfo).

    python bench/triage_bench.py [--runs N] [--vmlinux PATH] [DUMP ...]

Without DUMP arguments: every corpus case's ELF and makedumpfile -c -d 31 file. Without the
-dbg vmlinux, crash's start-up time recorded in the corpus (expected/commands.tsv) is used
and marked as such. Ratio = crash time / vmcorekit time (above 1: vmcorekit is faster).
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from startup_bench import CASES, REPO, corpus_dumps, find_vmlinux, measure  # type: ignore[import-not-found]


def recorded_crash_startup(dump: Path) -> float | None:
    """crash's start-up on this case as the corpus recorded it (commands.tsv: name, wall s, ...)."""
    import os
    root = Path(os.environ.get("VMCOREKIT_CORPUS", REPO.parent / "shared" / "corpus"))
    case = next((c for c in CASES if c in str(dump)), None)
    tsv = root / case / "expected" / "commands.tsv" if case else None
    if tsv is None or not tsv.exists():
        return None
    with open(tsv) as f:
        for row in csv.reader(f, delimiter="\t"):
            if row and row[0] == "crash-startup":
                return float(row[1])
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dumps", nargs="*")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--vmlinux")
    args = ap.parse_args()
    dumps = [Path(d) for d in args.dumps] or corpus_dumps()
    vmlinux = find_vmlinux(args.vmlinux)
    print(f"{'dump':48} {'triage s':>9} {'crash start s':>14}  ratio")
    for d in dumps:
        m = measure([sys.executable, "-m", "vmcorekit", "triage", "--json", str(d)], args.runs)
        if m is None:
            print(f"{str(d)[-48:]:48} triage failed")
            continue
        ours = m["wall"]
        peer = measure(["crash", "-s", vmlinux, str(d)], args.runs, stdin="q\n") if vmlinux else None
        if peer is not None:
            theirs, src = peer["wall"], ""
        else:
            theirs, src = recorded_crash_startup(d), " (recorded)"
        ratio = f"{theirs / ours:.1f}x{src}" if theirs else "n/a"
        print(f"{str(d)[-48:]:48} {ours:9.2f} {theirs or float('nan'):14.2f}  {ratio}")


if __name__ == "__main__":
    main()
