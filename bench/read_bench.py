#!/usr/bin/env python3
"""Random and sequential page reads: vmcorekit vs drgn's prog.read, same dump, same addresses.

    python bench/read_bench.py [DUMP] [--pages N]

Reads N pages at random physical addresses and N pages sequentially through the direct map
(virtual), in both tools, and prints the times and ratios.
"""
from __future__ import annotations

import argparse
import random
import time

from _common import dump_arg, ratio

from vmcorekit import Program
from vmcorekit.errors import MemoryReadError


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dump", nargs="?")
    ap.add_argument("--pages", type=int, default=20000)
    args = ap.parse_args()
    path = args.dump or dump_arg()
    prog = Program.open(path)
    ps = prog.page_size
    present = [r for r in prog.phys.ranges() if r.size >= ps]
    rnd = random.Random(1)
    pfns: list[int] = []
    while len(pfns) < args.pages:
        r = rnd.choice(present)
        pfns.append(rnd.randrange(r.start // ps, r.end // ps))
    base = getattr(prog.space, "page_offset", None)
    big = max(present, key=lambda r: r.size)
    seq = [big.start // ps + i for i in range(min(args.pages, big.size // ps))]

    def ours(physical: bool, pfn_list: list[int]) -> float:
        t = time.perf_counter()
        for pfn in pfn_list:
            try:
                if physical:
                    prog.read(pfn * ps, ps, physical=True)
                else:
                    prog.read(base + pfn * ps, ps)
            except MemoryReadError:
                pass
        return time.perf_counter() - t

    try:
        import drgn
    except ImportError:
        drgn = None
    def theirs(physical: bool, pfn_list: list[int]) -> float | None:
        if drgn is None:
            return None
        t = time.perf_counter()
        for pfn in pfn_list:
            try:
                if physical:
                    dp.read(pfn * ps, ps, True)
                else:
                    dp.read(base + pfn * ps, ps)
            except drgn.FaultError:
                pass
        return time.perf_counter() - t

    if drgn is not None:
        dp = drgn.Program()
        dp.set_core_dump(path)
    print(f"dump: {path}")
    print(f"{'test':32} {'vmcorekit s':>12} {'drgn s':>10}  ratio (drgn/vmcorekit)")
    for label, phys, lst in [("random physical pages", True, pfns), ("sequential virtual pages", False, seq),
                             ("random virtual (direct map)", False, pfns)]:
        a = ours(phys, lst)
        b = theirs(phys, lst)
        print(f"{label + f' x{len(lst)}':32} {a:12.3f} {b if b is not None else float('nan'):10.3f}  "
              f"{ratio(a, b) if b is not None else 'drgn not installed'}")


if __name__ == "__main__":
    main()
