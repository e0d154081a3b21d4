"""Benchmark `vmcorekit dmesg` against vmcore-dmesg, and show its cost is that of the log.

    python bench/dmesg_bench.py [--runs N] [DUMP ...]

Without DUMP arguments it uses the corpus (../shared/corpus or $VMCOREKIT_CORPUS): each case's
decompressed ELF (from the test cache, $VMCOREKIT_CACHE) and its makedumpfile -c -d 31 file.

For each dump it reports
  * wall time of `vmcore-dmesg DUMP` and of `vmcorekit dmesg DUMP` (separate processes, median
    of N runs, output to /dev/null) and their ratio; vmcore-dmesg only reads ELF files and fails
    on QEMU paging=false dumps (no virtual addresses in the PT_LOADs): those runs say so;
  * in one process: the time to open the dump, read the log and render it, and how much of the
    dump was touched: physical reads, distinct pages, bytes. Those numbers stay the same from a
    16 MiB kdump file to a 650 MiB ELF: only the log's rings (and the page-table pages that map
    them) are read, each ring with one large read.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def corpus_dumps() -> list[Path]:
    root = Path(os.environ.get("VMCOREKIT_CORPUS", REPO.parent / "shared" / "corpus"))
    cache = Path(os.environ.get("VMCOREKIT_CACHE", Path(tempfile.gettempdir()) / "vmcorekit-test-cache"))
    out = []
    for case in ("qmp-nokaslr", "qmp-kaslr", "kdump-kaslr"):
        for p in (cache / f"{case}.elf", Path("/work/scratch") / case / "dump.elf"):
            if p.exists():
                out.append(p)
                break
        for name in ("vmcore.c-d31.kdump", "vmcore.qemu-kdump-zlib"):
            if (root / case / name).exists():
                out.append(root / case / name)
    return out


def wall(cmd: list[str], runs: int) -> tuple[float | None, int]:
    times, rc = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
        rc = r.returncode
        if rc:
            return None, rc
    return statistics.median(times), rc


def in_process(path: Path) -> dict[str, float]:
    from vmcorekit.kernel.printk import read_log, render
    from vmcorekit.program import Program

    t0 = time.perf_counter()
    prog = Program.open(path)
    t1 = time.perf_counter()
    phys = prog.phys
    counts = {"reads": 0, "bytes": 0}
    pages: set[int] = set()
    real_read = phys.read
    ps = phys.page_size

    def counting_read(paddr: int, size: int) -> bytes:
        counts["reads"] += 1
        counts["bytes"] += size
        pages.update(range(paddr // ps, (paddr + max(size, 1) - 1) // ps + 1))
        return real_read(paddr, size)

    phys.read = counting_read  # type: ignore[method-assign]
    try:
        log = read_log(prog, levels=False)
        out = b"".join(line for _, line in render(log))
    finally:
        del phys.read
    t2 = time.perf_counter()
    prog.close()
    return {"open_s": t1 - t0, "log_s": t2 - t1, "records": len(log.records), "out_bytes": len(out),
            "phys_reads": counts["reads"], "pages": len(pages), "bytes_read": counts["bytes"],
            "log_bytes": log.bytes_read}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dumps", nargs="*", type=Path)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    dumps = args.dumps or corpus_dumps()
    if not dumps:
        print("no dumps given and no corpus found", file=sys.stderr)
        return 2
    vd = shutil.which("vmcore-dmesg") or shutil.which("vmcore-dmesg", path="/usr/sbin:/sbin")
    vk = [sys.executable, "-m", "vmcorekit", "dmesg"]
    rows = []
    for d in dumps:
        size = d.stat().st_size
        t_vd, rc_vd = wall([vd, str(d)], args.runs) if vd else (None, -1)
        t_vk, rc_vk = wall(vk + [str(d)], args.runs)
        ip = in_process(d)
        rows.append((d, size, t_vd, rc_vd, t_vk, rc_vk, ip))

    print(f"{'dump':<44} {'size MiB':>9} {'vmcore-dmesg':>13} {'vmcorekit':>10} {'ratio':>7} "
          f"{'open':>9} {'read+render':>12} {'phys reads':>10} {'pages':>6} {'MiB read':>9} {'records':>8}")
    for d, size, t_vd, rc_vd, t_vk, rc_vk, ip in rows:
        name = f"{d.parent.name}/{d.name}"
        name = name if len(name) <= 44 else d.name[-44:]
        vd_s = f"{t_vd * 1000:.1f} ms" if t_vd is not None else ("absent" if rc_vd == -1 else f"fails rc={rc_vd}")
        vk_s = f"{t_vk * 1000:.0f} ms" if t_vk is not None else f"rc={rc_vk}"
        ratio = f"{t_vk / t_vd:.0f}x" if t_vd and t_vk else "-"
        print(f"{name:<44} {size / 2**20:>9.1f} {vd_s:>13} {vk_s:>10} {ratio:>7} "
              f"{ip['open_s'] * 1000:>6.1f} ms {ip['log_s'] * 1000:>9.1f} ms {ip['phys_reads']:>10} {ip['pages']:>6} "
              f"{ip['bytes_read'] / 2**20:>9.2f} {ip['records']:>8}")
    small = min(rows, key=lambda r: r[1])
    large = max(rows, key=lambda r: r[1])
    print(f"\nlargest/smallest dump: {large[1] / small[1]:.0f}x the size; pages touched "
          f"{large[6]['pages']} vs {small[6]['pages']}, bytes read {large[6]['bytes_read']} vs "
          f"{small[6]['bytes_read']} (the log's rings: {large[6]['log_bytes']} bytes).")
    print("vmcorekit's process time is mostly Python start-up and imports, plus opening the dump (kdump files: "
          "headers and bitmaps); read+render is the log work itself.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
