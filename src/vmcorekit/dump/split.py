"""makedumpfile --split sets: several kdump files, each holding the dumped pages of one pfn
range [start_pfn, end_pfn) (its sub-header says split=1), presented as one memory."""
from __future__ import annotations

import bisect

from ..errors import DumpFormatError, PageMissingError
from .base import DumpInfo, PageState, PhysicalMemory
from .kdump import DEFAULT_CACHE_PAGES, KdumpFile


class KdumpSplitSet(PhysicalMemory):
    """The files of one split dump, given in any order; reads dispatch by pfn. Pfns that no
    given file holds (a part was not supplied) read as missing."""

    def __init__(self, paths: list[str], *, cache_pages: int = DEFAULT_CACHE_PAGES) -> None:
        if not paths:
            raise ValueError("no kdump file given")
        parts: list[KdumpFile] = []
        try:
            for p in paths:
                parts.append(KdumpFile(p, cache_pages=cache_pages))
            self._check(parts)
        except BaseException:
            for part in parts:
                part.close()
            raise
        parts.sort(key=lambda k: (k.start_pfn, k.end_pfn))
        first = parts[0]
        super().__init__(", ".join(paths), DumpInfo(
            format="kdump-split",
            codec=",".join(sorted({c for k in parts for c in (k.info.codec or "").split(",") if c})) or None,
            machine=first.info.machine,
            page_size=first.page_size,
            dump_level=first.info.dump_level,
            incomplete=any(k.info.incomplete for k in parts),
            header_version=first.info.header_version,
            extra={k: v for k, v in first.info.extra.items()
                   if k in ("utsname", "timestamp", "timestamp_usec", "nr_cpus", "max_mapnr", "block_size",
                            "phys_base")},
        ))
        self.info.extra["parts"] = [
            {"path": k.path, "start_pfn": k.start_pfn, "end_pfn": k.end_pfn, "dumpable_pages": k.dumpable_pages}
            for k in parts
        ]
        self.info.extra["warnings"] = [f"{k.path}: {w}" for k in parts for w in k.info.extra.get("warnings", [])]
        self.parts = parts
        self.notes = list(first.notes)  # every part carries the same notes
        # Empty parts (start == end, as makedumpfile writes when there are more files than
        # pages to share) hold nothing; dispatch only among the others.
        self._live = [k for k in parts if k.end_pfn > k.start_pfn]
        self._starts = [k.start_pfn for k in self._live]
        self._set_ranges([r for k in parts for r in k.ranges()])

    def _check(self, parts: list[KdumpFile]) -> None:
        ref = parts[0]
        for k in parts:
            if not k.split:
                raise DumpFormatError(k.path, None, "not part of a --split set (sub-header split=0); "
                                                    "expected every file to be a split part")
            for what, a, b in (("block_size", k.page_size, ref.page_size),
                               ("max_mapnr", k.max_mapnr, ref.max_mapnr),
                               ("utsname", k.info.extra["utsname"], ref.info.extra["utsname"]),
                               ("timestamp", k.info.extra["timestamp"], ref.info.extra["timestamp"])):
                if a != b:
                    raise DumpFormatError(k.path, None, f"{what} differs from {ref.path}; expected the files "
                                                        "of one split dump")
        spans = sorted((k.start_pfn, k.end_pfn, k.path) for k in parts if k.end_pfn > k.start_pfn)
        for (s0, e0, p0), (s1, e1, p1) in zip(spans, spans[1:]):
            if s1 < e0:
                raise DumpFormatError(p1, None, f"pfns [{s1:#x}, {e1:#x}) overlap {p0} [{s0:#x}, {e0:#x}); "
                                                "expected disjoint split parts")

    def part_for(self, pfn: int) -> KdumpFile | None:
        """The file holding `pfn`'s range, if it was given."""
        i = bisect.bisect_right(self._starts, pfn) - 1
        if i >= 0 and pfn < self._live[i].end_pfn:
            return self._live[i]
        return None

    def _read_in_range(self, paddr: int, size: int) -> bytes:
        ps = self.page_size
        parts = []
        while size > 0:
            pfn = paddr // ps
            part = self.part_for(pfn)
            if part is None:
                raise PageMissingError(paddr, f"pfn {pfn:#x} is in no given file of the split set "
                                              "(a part is missing?)")
            n = min(size, part.end_pfn * ps - paddr)
            parts.append(part._read_in_range(paddr, n))
            paddr += n
            size -= n
        return b"".join(parts)

    def page_state(self, pfn: int) -> PageState:
        if self._find_range(pfn * self.page_size) is None:
            return PageState.HOLE
        part = self.part_for(pfn)
        return PageState.MISSING if part is None else part.page_state(pfn)

    def close(self) -> None:
        for k in self.parts:
            k.close()
