#!/usr/bin/env python3
"""How fast `vmcorekit verify` checks a dump, against plain `cat DUMP > /dev/null` (the floor:
reading every byte once), both from the page cache (each is run once to warm it first).

    python bench/verify_bench.py [DUMP ...] [--threads N] [--repeat R]

Default dumps: every corpus case's vmcore.c-d31.kdump and the kdump-kaslr ELF
(/work/scratch/kdump-kaslr/dump.elf if present, else the corpus one decompressed once).
For each dump: size, cat time, verify time (full: every compressed page decompressed;
--quick: headers, bitmaps and descriptors only), throughput in MiB/s of file, and the ratio
verify / cat (how many times longer than reading the file).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

from _common import REPO

from vmcorekit.dump import open_dump
from vmcorekit.report.verify import verify


def default_dumps() -> list[str]:
    from conftest import corpus_root, decompressed_elf

    out: list[str] = []
    root = corpus_root()
    if root is not None:
        out += [str(p) for p in sorted(root.glob("*/vmcore.c-d31.kdump"))]
    scratch = REPO.parent / "scratch" / "kdump-kaslr" / "dump.elf"
    if scratch.exists():
        out.append(str(scratch))
    elif root is not None and (root / "kdump-kaslr" / "vmcore.elf.zst").exists():
        out.append(str(decompressed_elf(root / "kdump-kaslr")))
    if not out:
        out = [str(p) for p in sorted((REPO / "samples").glob("*.kdump"))]
    return out


def best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def cat(path: str) -> None:
    subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)


def run_verify(path: str, threads: int | None, quick: bool) -> dict:  # type: ignore[type-arg]
    with open_dump(path) as phys:
        rep = verify(phys, read_data=not quick, threads=threads)
    return {"ok": rep.ok, "pages": rep.pages, "bytes_read": rep.bytes_read}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dumps", nargs="*")
    ap.add_argument("--threads", type=int, default=None, help="decompression threads (default: CPUs)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    dumps = args.dumps or default_dumps()
    threads = args.threads or os.cpu_count() or 1
    print(f"{os.cpu_count()} CPUs, verify threads {threads}, best of {args.repeat}, warm page cache")
    print(f"{'dump':44} {'MiB':>7} {'cat s':>7} {'verify s':>9} {'cpu s':>6} {'MiB/s':>7} {'ratio':>7} "
          f"{'quick s':>8}  pages good/zero/excl/missing/corrupt")
    for path in dumps:
        size = os.path.getsize(path)
        cat(path)  # warm the page cache
        info = run_verify(path, threads, False)
        t_cat = best(lambda: cat(path), args.repeat)
        t_ver = best(lambda: run_verify(path, threads, False), args.repeat)
        c0 = time.process_time()  # CPU of all threads: what verify costs on a busy machine
        run_verify(path, threads, False)
        c_ver = time.process_time() - c0
        t_quick = best(lambda: run_verify(path, threads, True), args.repeat)
        p = info["pages"]
        name = "/".join(Path(path).parts[-2:])
        print(f"{name:44} {size / 2**20:7.1f} {t_cat:7.3f} {t_ver:9.3f} {c_ver:6.2f} {size / 2**20 / t_ver:7.1f} "
              f"{t_ver / t_cat:6.1f}x {t_quick:8.3f}  {p['good']}/{p['zero']}/{p['excluded']}/"
              f"{p['missing']}/{p['corrupt']}{'' if info['ok'] else '  DAMAGED'}")
    print("ratio = verify time / cat time (1.0x: as fast as reading the file); cpu s = verify's CPU time, "
          "all threads")


if __name__ == "__main__":
    main()
