"""Shared by the bench scripts: locating dumps and timing."""
from __future__ import annotations

import os
import resource
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def default_dump() -> str:
    """The largest decompressed corpus ELF (decompressing it once), else the shipped sample."""
    from conftest import corpus_root, decompressed_elf

    root = corpus_root()
    if root is not None:
        cases = sorted((p for p in root.iterdir() if (p / "vmcore.elf.zst").exists()),
                       key=lambda p: p.joinpath("vmcore.elf.zst").stat().st_size)
        if cases:
            return str(decompressed_elf(cases[-1]))
    samples = sorted((REPO / "samples").glob("*.kdump"))
    if samples:
        return str(samples[0])
    sys.exit("no dump found: pass one as the first argument")


@contextmanager
def timed(label: str, results: dict[str, float]) -> Iterator[None]:
    t = time.perf_counter()
    yield
    results[label] = time.perf_counter() - t


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ratio(ours: float, theirs: float) -> str:
    if ours <= 0:
        return "n/a"
    return f"{theirs / ours:.2f}x" + (" (vmcorekit faster)" if theirs > ours else " (peer faster)")


def dump_arg() -> str:
    return sys.argv[1] if len(sys.argv) > 1 and os.path.exists(sys.argv[1]) else default_dump()
