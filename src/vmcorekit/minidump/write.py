"""Write a minidump: record the pages the questions read (record.py), then have the filter's
kdump writer keep exactly those (FilterOptions.keep_pfns).

The file is an ordinary kdump-compressed dump: the input's 1st bitmap (so a hole stays a hole
and every unkept page reads as excluded, as in any filtered dump), the input's notes
(VMCOREINFO, every CPU's PRSTATUS) and header facts, dump level 31 in the header (every page
class -d 31 drops may be absent, and more: only the recorded pages are there). Pages a read
stopped at because the input lacks their data are written with empty descriptors, so they
stay missing, not excluded. One thread and the system's libz: the same input always gives the
same bytes.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..filter import FilterOptions
from ..filter.job import FilterStats, run_filter
from .record import Recording, record_pages

# By measurement over the repository's samples and the zoo (README "Minidumps"): zlib at
# makedumpfile's level 1 page by page is the smallest of the four kdump codecs on these
# pages (kernel text, page tables, slab: lzo and snappy are 25-40 % larger), zstd within a
# few percent but unknown to older crash builds.
DEFAULT_CODEC = "zlib"
MINIDUMP_LEVEL = 31


@dataclass
class MinidumpResult:
    """What a minidump run read and wrote."""

    output: str
    pages: int  # pages in the file (zero pages included)
    written: int  # bytes
    recording: Recording
    stats: FilterStats
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        d = self.stats.to_dict()
        d["level"] = "triage"
        d["recorded_pages"] = int(len(self.recording.pfns))
        d["seconds"] = {**d["seconds"], **{k: round(v, 3) for k, v in self.seconds.items()},  # type: ignore[dict-item]
                        **{f"record_{k}": round(v, 3) for k, v in self.recording.seconds.items()}}
        d["questions_stopped"] = dict(self.recording.errors)
        return d


def write_minidump(inputs: str | Sequence[str], output: str, *, vmcoreinfo_file: str | None = None,
                   codec: str = DEFAULT_CODEC, max_size: int | None = None) -> MinidumpResult:
    """Record, then write `output` (through a temporary name; the caller refuses an existing
    output it must not replace)."""
    paths = [inputs] if isinstance(inputs, str) else list(inputs)
    t0 = time.perf_counter()
    rec = record_pages(paths, vmcoreinfo_file)
    t1 = time.perf_counter()
    opts = FilterOptions(level=MINIDUMP_LEVEL, codec=codec, zlib_engine="zlib", threads=1,
                         max_size=max_size, vmcoreinfo_file=vmcoreinfo_file, keep_pfns=rec.pfns)
    stats = run_filter(paths, [output], opts)
    t2 = time.perf_counter()
    return MinidumpResult(output=output, pages=stats.dumped, written=stats.written, recording=rec, stats=stats,
                          seconds={"record": t1 - t0, "total": t2 - t0})
