#!/usr/bin/env python3
"""Crash titles: time to title N kernel logs in one process (default 1,000), cycling the 373
real console logs of ../shared/reports/syzkaller-linux. Goal: under 10 s on one core.

    python bench/titles_bench.py [--logs N] [--reports DIR]

Each log is titled from its bytes exactly as `vmcorekit triage --log` does (recogniser, rules,
title, signature, every report); the rules are loaded once, as in a long-running process.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from vmcorekit.report.titles import load_rules  # noqa: E402
from vmcorekit.report.titles_log import triage_lines  # noqa: E402


def reports_dir() -> Path:
    if os.environ.get("VMCOREKIT_REPORTS"):
        return Path(os.environ["VMCOREKIT_REPORTS"]) / "syzkaller-linux"
    for base in (REPO.parent, REPO.parent.parent):
        if (base / "shared" / "reports" / "syzkaller-linux").is_dir():
            return base / "shared" / "reports" / "syzkaller-linux"
    sys.exit("syzkaller-linux logs not found: set VMCOREKIT_REPORTS or pass --reports")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", type=int, default=1000)
    ap.add_argument("--reports", type=Path, default=None)
    args = ap.parse_args()
    folder = args.reports or reports_dir()
    logs = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name != "README.md":
            logs.append((p.name, p.read_bytes().partition(b"\n\n")[2]))
    t0 = time.perf_counter()
    load_rules()
    t_rules = time.perf_counter() - t0
    titled = 0
    nbytes = 0
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    for name, body in itertools.islice(itertools.cycle(logs), args.logs):
        r = triage_lines(body.splitlines(), name)
        titled += r["title"] is not None
        nbytes += len(body)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    print(f"titles: {args.logs} logs ({nbytes / 1e6:.1f} MB, {len(logs)} distinct, {titled} titled) in "
          f"{wall:.2f} s wall, {cpu:.2f} s CPU ({1000 * wall / args.logs:.2f} ms a log); rules loaded in "
          f"{1000 * t_rules:.0f} ms; goal < 10 s for 1000")


if __name__ == "__main__":
    main()
