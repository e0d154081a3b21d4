#!/usr/bin/env python3
"""Stack traces of every task per second: vmcorekit (ORC from the dump, no debuginfo) vs drgn.

    python bench/bt_bench.py [DUMP] [--rounds N] [--vmlinux PATH]

drgn runs with the -dbg vmlinux when it is installed (its ORC unwinder then has types and
DWARF), else with no debug info at all, where it cannot walk the task list, so only its
startup is timed and no ratio is given. Each tool's startup (open, symbols, types, unwind
tables) is timed separately from the traces; traces are timed over N rounds of all tasks.
"""
from __future__ import annotations

import argparse
import os
import time

from _common import dump_arg, peak_rss_mib, ratio

VMLINUX = "/usr/lib/debug/boot/vmlinux-6.1.0-56-amd64"


def bench_vmcorekit(path: str, rounds: int) -> dict[str, float]:
    from vmcorekit import Program
    from vmcorekit.kernel.stacks import stacks
    from vmcorekit.kernel.tasks import for_each_task_address

    t0 = time.perf_counter()
    prog = Program.open(path)
    s = stacks(prog)
    tasks = [prog.symbol_address("init_task"), *for_each_task_address(prog)]
    _ = s.orc, s.contexts
    startup = time.perf_counter() - t0
    frames = 0
    t1 = time.perf_counter()
    for _ in range(rounds):
        for t in tasks:
            frames += len(s.trace(t).frames)
    dt = time.perf_counter() - t1
    return {"startup": startup, "tasks": len(tasks), "traces_per_s": rounds * len(tasks) / dt,
            "frames_per_trace": frames / (rounds * len(tasks)), "trace_time": dt}


def bench_drgn(path: str, rounds: int, vmlinux: str | None) -> dict[str, float] | None:
    try:
        import drgn
        from drgn.helpers.linux.pid import for_each_task
    except ImportError:
        return None
    t0 = time.perf_counter()
    prog = drgn.Program()
    prog.set_core_dump(path)
    if vmlinux:
        prog.load_debug_info([vmlinux])
    else:
        prog.load_debug_info([], default=False) if hasattr(prog, "load_debug_info") else None
    try:
        tasks = list(for_each_task(prog))
    except (LookupError, drgn.FaultError):
        return {"startup": time.perf_counter() - t0, "tasks": 0, "traces_per_s": 0.0,
                "frames_per_trace": 0.0, "trace_time": 0.0}
    startup = time.perf_counter() - t0
    frames = 0
    t1 = time.perf_counter()
    for _ in range(rounds):
        for t in tasks:
            try:
                frames += len(prog.stack_trace(t))
            except (ValueError, drgn.FaultError):
                pass
    dt = time.perf_counter() - t1
    return {"startup": startup, "tasks": len(tasks), "traces_per_s": rounds * len(tasks) / dt,
            "frames_per_trace": frames / (rounds * len(tasks)), "trace_time": dt}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dump", nargs="?")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--vmlinux", default=VMLINUX)
    args = ap.parse_args()
    path = args.dump or dump_arg()
    vmlinux = args.vmlinux if args.vmlinux and os.path.exists(args.vmlinux) else None

    ours = bench_vmcorekit(path, args.rounds)
    print(f"dump: {path}")
    print(f"vmcorekit (no debuginfo): startup {ours['startup']:.3f} s, {ours['tasks']} tasks, "
          f"{ours['traces_per_s']:.0f} traces/s, {ours['frames_per_trace']:.1f} frames/trace")
    theirs = bench_drgn(path, args.rounds, vmlinux)
    if theirs is None:
        print("drgn: not installed")
        return
    how = f"with debuginfo ({vmlinux})" if vmlinux else "without debuginfo"
    print(f"drgn {how}: startup {theirs['startup']:.3f} s, {theirs['tasks']} tasks, "
          f"{theirs['traces_per_s']:.0f} traces/s, {theirs['frames_per_trace']:.1f} frames/trace")
    if theirs["traces_per_s"] and ours["traces_per_s"]:
        # ratio() takes times: per-trace time is the inverse of the rate
        print("traces/s ratio:", ratio(1 / ours["traces_per_s"], 1 / theirs["traces_per_s"]))
        print("startup ratio:  ", ratio(ours["startup"], theirs["startup"]))
    else:
        print("drgn cannot trace tasks without debug info: no ratio")
    print(f"peak RSS {peak_rss_mib():.0f} MiB (both tools in this process)")


if __name__ == "__main__":
    main()
