"""End-to-end check of a dump file: `vmcorekit verify`, and the missing/unreadable ranges that
`vmcorekit info --ranges` reports.

What is checked, per format:

* every format: the notes walk cleanly to the end of their area, VMCOREINFO is present, parses
  and carries the keys documented for its release (vmcoreinfo/spec.py);
* ELF: the program header table, every PT_LOAD inside the file (a file cut short loses the
  pages past its end: "missing"), PT_LOAD file ranges that do not overlap, PT_NOTE inside the
  file; with `read_data` every byte of segment data is read (I/O errors, short files);
* kdump-compressed (plain, flattened, split sets): the 2nd bitmap inside the 1st (a page cannot
  be dumped without existing), the descriptor table inside the file, each descriptor's data
  inside the file and inside the page-data area, sizes and codec flags legal, and — with
  `read_data` — every compressed page decompresses to exactly one page (over a thread pool:
  zlib and zstd release the GIL while they inflate, though for 4 KiB pages the per-call setup
  that holds it limits the gain to about 1.5x on two cores). For a flattened stream, parts of
  the described file that no record carries count as missing; for a split set, pfns no given
  part holds.

Nothing is done per page in Python except the decompression call itself; bitmaps and
descriptor tables are handled as numpy arrays, a window of about a million descriptors at a
time, so memory stays bounded on any dump. Bad pages are grouped into runs of consecutive
*dumped* pages with the same state and reason: a run [start, end) may enclose pages that were
excluded by filtering (never in the dump), and `pages` counts only the dumped pages in it.
"""
from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import VmcorekitError
from .base import PageState, PhysicalMemory

# Page states as small ints in numpy arrays.
GOOD, ZERO, EXCLUDED, MISSING, CORRUPT = 0, 1, 2, 3, 4
STATE_NAMES = {GOOD: "good", ZERO: "zero", EXCLUDED: "excluded", MISSING: "missing", CORRUPT: "corrupt"}

DESC_DTYPE = np.dtype([("offset", "<i8"), ("size", "<u4"), ("flags", "<u4"), ("page_flags", "<u8")])
# Work unit of the decompression pool: enough pages that the per-chunk overhead vanishes,
# few enough that the progress bar moves and the pool stays balanced.
CHUNK_PAGES = 2048
# Bytes read at a time from ELF segment data (cat uses 128 KiB; larger costs nothing here).
READ_CHUNK = 4 << 20
# A generic PhysicalMemory (no format-specific checker) is probed page by page: cap the work.
GENERIC_PAGE_LIMIT = 1 << 22

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass(frozen=True)
class BadRange:
    """A run of dumped pages that cannot be read. `start`/`end` are physical addresses; pages
    counts the dumped pages inside (excluded pages in between are not in the dump at all)."""

    state: str  # "missing" or "corrupt"
    start: int
    end: int
    pages: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "start": self.start, "end": self.end, "pages": self.pages,
                "reason": self.reason}


@dataclass
class Check:
    name: str
    ok: bool | None  # None: not run (not applicable, or skipped by --quick)
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": "skip" if self.ok is None else "ok" if self.ok else "fail",
                "detail": self.detail}


@dataclass
class VerifyReport:
    path: str
    format: str
    page_size: int
    pages: dict[str, int] = field(default_factory=lambda: {n: 0 for n in STATE_NAMES.values()})
    bad_ranges: list[BadRange] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # inconsistencies: the dump is damaged
    notes: list[str] = field(default_factory=list)  # observations that do not make it damaged
    bytes_read: int = 0
    seconds: float = 0.0
    data_checked: bool = True

    @property
    def ok(self) -> bool:
        """True when nothing is missing, corrupt or inconsistent."""
        return not (self.problems or self.pages["missing"] or self.pages["corrupt"]
                    or any(c.ok is False for c in self.checks))

    def check(self, name: str, ok: bool | None, detail: str = "") -> None:
        self.checks.append(Check(name, ok, detail))

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "page_size": self.page_size, "ok": self.ok,
                "data_checked": self.data_checked, "pages": dict(self.pages),
                "bad_ranges": [r.to_json() for r in self.bad_ranges],
                "checks": [c.to_json() for c in self.checks], "problems": list(self.problems),
                "notes": list(self.notes), "bytes_read": self.bytes_read, "seconds": round(self.seconds, 3)}


# -- run-length grouping -------------------------------------------------------------------------
def runs_of(pfns: np.ndarray, codes: np.ndarray, index: np.ndarray | None = None
            ) -> list[tuple[int, int, int, int]]:
    """(first pfn, last pfn + 1, count, code) for each run of equal codes among the bad pages
    `pfns` (sorted). `index` gives each page's position among the dumped pages (its descriptor
    number): a run also ends where a good dumped page comes between two bad ones. Without it,
    pfns must be consecutive to share a run."""
    if len(pfns) == 0:
        return []
    pos = pfns if index is None else index
    brk = np.flatnonzero((codes[1:] != codes[:-1]) | (pos[1:] != pos[:-1] + 1)) + 1
    starts = np.concatenate([[0], brk])
    ends = np.concatenate([brk, [len(pfns)]])
    return [(int(pfns[s]), int(pfns[e - 1]) + 1, int(e - s), int(codes[s])) for s, e in zip(starts, ends)]


class _Reasons:
    """Reason texts for bad pages, numbered so that runs can be grouped by reason."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.state: list[int] = []
        self._ids: dict[tuple[int, str], int] = {}

    def code(self, state: int, text: str) -> int:
        key = (state, text)
        c = self._ids.get(key)
        if c is None:
            c = self._ids[key] = len(self.text)
            self.text.append(text)
            self.state.append(state)
        return c


def _add_runs(rep: VerifyReport, pfns: np.ndarray, codes: np.ndarray, reasons: _Reasons, ps: int,
              index: np.ndarray | None = None) -> None:
    for a, b, n, c in runs_of(pfns, codes, index):
        rep.bad_ranges.append(BadRange(STATE_NAMES[reasons.state[c]], a * ps, b * ps, n, reasons.text[c]))


# -- shared checks -------------------------------------------------------------------------------
def walk_notes(data: bytes) -> tuple[int, str | None]:
    """Walk ELF64 notes strictly: (number of notes, problem or None). Zero padding after the
    last note is fine; anything else that does not form a note is a problem."""
    pos, n, count = 0, len(data), 0
    while pos < n:
        if pos + 12 > n:
            if any(data[pos:]):
                return count, f"{n - pos} stray bytes after note {count} at offset {pos:#x}"
            break
        namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
        if namesz == 0 and descsz == 0 and ntype == 0:
            if any(data[pos:]):
                return count, f"non-zero bytes after the zero terminator at offset {pos:#x}"
            break
        end = pos + 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
        if end > n and pos + 12 + ((namesz + 3) & ~3) + descsz > n:
            return count, (f"note {count} at offset {pos:#x} (name {namesz} bytes, descriptor {descsz} bytes) "
                           f"runs past the end of the {n}-byte note area")
        count += 1
        pos = end
    return count, None


def _check_vmcoreinfo(rep: VerifyReport, phys: PhysicalMemory) -> None:
    from ..vmcoreinfo import VmcoreInfo
    from ..vmcoreinfo.spec import check

    raw = phys.vmcoreinfo_raw
    if raw is None:
        rep.check("vmcoreinfo", False, "no VMCOREINFO note (kernel facts unknown; give one with --vmcoreinfo)")
        return
    vi = VmcoreInfo.parse(raw, source=phys.path)
    res = check(vi, phys.machine if phys.machine and phys.machine.lower() != "unknown" else None)
    detail = [f"{len(vi.entries)} keys, release {vi.osrelease or 'unknown'}"]
    if res.missing:
        detail.append(f"missing {len(res.missing)} documented keys: {', '.join(res.missing[:8])}"
                      + (" ..." if len(res.missing) > 8 else ""))
    if res.malformed:
        detail.append(f"{len(res.malformed)} malformed lines: {res.malformed[0]}")
    if res.unknown:
        rep.notes.append(f"VMCOREINFO: {len(res.unknown)} keys not in the documented list "
                         f"({', '.join(res.unknown[:5])}{' ...' if len(res.unknown) > 5 else ''})")
    rep.notes.extend(f"VMCOREINFO: {n}" for n in res.notes)
    rep.check("vmcoreinfo", res.ok, "; ".join(detail))


def _check_prstatus(rep: VerifyReport, phys: PhysicalMemory) -> None:
    prs = phys.notes_named("CORE", 1)
    if phys.machine in ("x86_64", "aarch64"):
        want = 336 if phys.machine == "x86_64" else 392
        bad = [len(n.desc) for n in prs if len(n.desc) != want]
        if bad:
            rep.problems.append(f"{len(bad)} NT_PRSTATUS notes of {bad[0]} bytes; expected {want} on {phys.machine}")
    if not prs:
        rep.notes.append("no NT_PRSTATUS notes: CPU registers at the crash are unknown")


# -- ELF -----------------------------------------------------------------------------------------
def _verify_elf(rep: VerifyReport, d: Any, read_data: bool, threads: int, progress: Progress | None) -> None:
    from .elf import EHDR64, PHDR64, PT_LOAD, PT_NOTE

    size = d.file_size
    m = d._map
    ehdr = EHDR64.unpack(bytes(m[0:EHDR64.size]))
    e_phoff, e_phentsize = ehdr[5], ehdr[9]
    phnum = int(d.info.extra.get("phnum", ehdr[10]))
    table = bytes(m[e_phoff:e_phoff + phnum * e_phentsize])
    loads: list[tuple[int, int, int, int, int]] = []  # (index, offset, paddr, filesz, memsz)
    note_problems: list[str] = []
    nnotes = 0
    for i in range(phnum):
        p_type, _, off, _, paddr, filesz, memsz, _ = PHDR64.unpack_from(table, i * e_phentsize)
        if p_type == PT_LOAD:
            loads.append((i, off, paddr, filesz, memsz))
        elif p_type == PT_NOTE:
            if off + filesz > size:
                note_problems.append(f"PT_NOTE {i} at [{off:#x}, {off + filesz:#x}) runs past the end of the file "
                                     f"({size} bytes)")
            data = bytes(m[off:min(off + filesz, size)]) if off < size else b""
            c, prob = walk_notes(data)
            nnotes += c
            if prob:
                note_problems.append(f"PT_NOTE {i}: {prob}")
    rep.check("headers", True, f"ELF64 core, {phnum} program headers, {len(loads)} PT_LOAD")
    rep.check("notes", not note_problems, "; ".join(note_problems) or f"{nnotes} notes")
    rep.problems.extend(note_problems)

    # PT_LOAD file ranges must not overlap one another (memory ranges may: kexec-tools maps the
    # kernel text twice, and the reader keeps one copy).
    spans = sorted((off, off + filesz, i) for i, off, _, filesz, _ in loads if filesz)
    for (a0, a1, i0), (b0, b1, i1) in zip(spans, spans[1:]):
        if b0 < a1:
            rep.problems.append(f"PT_LOAD {i1} file data [{b0:#x}, {b1:#x}) overlaps PT_LOAD {i0} [{a0:#x}, {a1:#x})")
    unaligned = [i for i, _, paddr, _, _ in loads if paddr % rep.page_size and paddr != 0xFFFFFFFFFFFFFFFF]
    if unaligned:
        rep.notes.append(f"{len(unaligned)} PT_LOAD(s) not page-aligned in physical memory (first: {unaligned[0]})")

    ps = rep.page_size
    truncated_at = size
    for s in d._segs:
        in_file = max(0, min(s.filesz, size - s.offset)) if s.offset < size else 0
        all_pages = -(-s.filesz // ps)
        if in_file >= s.filesz:
            rep.pages["good"] += all_pages
        else:
            full_pages = in_file // ps  # the page the file ends in is incomplete: missing
            rep.pages["good"] += full_pages
            rep.pages["missing"] += all_pages - full_pages
            rep.bad_ranges.append(BadRange("missing", s.paddr + full_pages * ps, s.paddr + s.filesz,
                                           all_pages - full_pages,
                                           f"segment data past the end of the file (truncated at {truncated_at:#x})"))
        rep.pages["excluded"] += -(-(s.memsz - s.filesz) // ps) if s.memsz > s.filesz else 0
    rep.check("segments", not any(r.state == "missing" for r in rep.bad_ranges),
              "every PT_LOAD inside the file" if not rep.bad_ranges else
              f"file ends at {size:#x}: {rep.pages['missing']} pages of segment data past its end")

    if not read_data:
        rep.data_checked = False
        rep.check("page data", None, "not read (--quick)")
        return
    # Read every byte of segment data once, in file order, like cat: the kernel does the work
    # (os.preadv releases the GIL), so a second thread overlaps the next read with this one.
    extents = sorted((off, min(off + filesz, size)) for _, off, _, filesz, _ in loads if off < size and filesz)
    merged: list[list[int]] = []
    for a, b in extents:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    total = sum(b - a for a, b in merged)
    pieces = [(p, min(p + READ_CHUNK, b)) for a, b in merged for p in range(a, b, READ_CHUNK)]
    done = 0
    errors: list[str] = []

    fd = d._fd

    def read_piece(ab: tuple[int, int], buf: bytearray) -> int:
        a, b = ab
        mv = memoryview(buf)[:b - a]
        got = 0
        while got < b - a:
            n = os.preadv(fd, [mv[got:]], a + got)
            if n <= 0:
                break
            got += n
        return got

    workers = max(1, min(threads, 4, len(pieces)))
    bufs = [bytearray(min(READ_CHUNK, max(total, 1))) for _ in range(workers)]
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        for start in range(0, len(pieces), workers):
            batch = pieces[start:start + workers]
            futs = [pool.submit(read_piece, ab, bufs[k]) if pool else _Done.of(read_piece, ab, bufs[k])
                    for k, ab in enumerate(batch)]
            for ab, fu in zip(batch, futs):
                try:
                    got = fu.result()
                except OSError as e:
                    errors.append(f"read error at file offset {ab[0]:#x}: {e.strerror or e}")
                    got = 0
                if got < ab[1] - ab[0] and not errors:
                    errors.append(f"short read at file offset {ab[0] + got:#x}")
                done += got
            if progress:
                progress(done, total)
    finally:
        if pool is not None:
            pool.shutdown()
    rep.bytes_read += done
    rep.problems.extend(errors)
    rep.check("page data", not errors, f"{done} bytes of segment data read" + (f"; {errors[0]}" if errors else ""))


# -- kdump ---------------------------------------------------------------------------------------
def _coverage(src: Any) -> np.ndarray:
    """[start, end) ranges of the described file that the source holds, as an (n, 2) array."""
    segs = src.segments() if hasattr(src, "segments") else [(0, src.size)]
    return np.array(segs if segs else np.zeros((0, 2)), dtype=np.int64).reshape(-1, 2)


def _covered(cov: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """For each [start, end): whether one covered range holds all of it."""
    if len(cov) == 0:
        return np.zeros(len(start), dtype=bool)
    i = np.searchsorted(cov[:, 0], start, side="right") - 1
    ok = i >= 0
    ic = np.clip(i, 0, None)
    return ok & (end <= cov[ic, 1]) & (start >= cov[ic, 0])


def _read_table(src: Any, cov: np.ndarray, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The descriptor table (n entries from file offset `start`) and a mask of the entries that
    are wholly in the file; absent entries are zero."""
    raw = np.zeros(n * DESC_DTYPE.itemsize, dtype=np.uint8)
    end = start + n * DESC_DTYPE.itemsize
    first = max(0, int(np.searchsorted(cov[:, 0], start, side="right")) - 1) if len(cov) else 0
    for a, b in cov[first:]:
        if a >= end:
            break
        lo, hi = max(int(a), start), min(int(b), end)
        if lo < hi:
            chunk = src.read(lo, hi - lo)
            raw[lo - start:lo - start + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
    pos = start + np.arange(n, dtype=np.int64) * DESC_DTYPE.itemsize
    present = _covered(cov, pos, pos + DESC_DTYPE.itemsize)
    return raw.view(DESC_DTYPE), present


def _decompress_chunk(src: Any, desc: np.ndarray, idx: np.ndarray, ps: int, pfns: np.ndarray
                      ) -> tuple[list[int], list[str], int]:
    """Decompress the pages `idx` (indices into desc); (bad indices, their messages, bytes read).
    The chunk's data is read with one call when it is contiguous, as makedumpfile writes it.
    zlib pages (the common case) take a direct path; any page that fails it, and every other
    codec, goes through codecs.decompress_page, which defines what a good page is."""
    import zlib

    from .codecs import DUMP_DH_COMPRESSED_ZLIB, decompress_page

    bad: list[int] = []
    msgs: list[str] = []
    if len(idx) == 0:
        return bad, msgs, 0
    offs = desc["offset"][idx].tolist()
    sizes = desc["size"][idx].tolist()
    flags = desc["flags"][idx].tolist()
    lo, hi = min(offs), max(o + s for o, s in zip(offs, sizes))
    span: bytes | None = None
    if hi - lo <= 4 * CHUNK_PAGES * ps:
        span = src.read(lo, hi - lo)
        if len(span) < hi - lo:
            span = None
    mv = memoryview(span) if span is not None else None
    nread = hi - lo if span is not None else 0
    inflate = zlib.decompress
    for k, (o, sz, fl) in enumerate(zip(offs, sizes, flags)):
        data = mv[o - lo:o - lo + sz] if mv is not None else src.read(o, sz)
        if mv is None:
            nread += len(data)
        if fl == DUMP_DH_COMPRESSED_ZLIB:
            # sz <= ps (checked before), so zlib's 1032:1 bound keeps this to a few MiB.
            try:
                if len(inflate(data, 15, ps)) == ps:
                    continue
            except zlib.error:
                pass
        try:
            decompress_page(fl, data, ps, paddr=int(pfns[k]) * ps)
        except VmcorekitError as e:
            bad.append(int(idx[k]))
            msgs.append(str(e).split(": ", 1)[-1])
    return bad, msgs, nread


def _verify_kdump(rep: VerifyReport, k: Any, read_data: bool, threads: int, progress: Progress | None,
                  pool: ThreadPoolExecutor | None = None) -> None:
    from .codecs import CODEC_MASK, codec_name

    src = k._src
    ps = k.page_size
    extra = k.info.extra
    rep.check("headers", True, f"kdump-compressed v{k.info.header_version}, block size {ps}, "
                               f"max_mapnr {k.max_mapnr:#x}" + (", flattened" if src.flattened else ""))
    for w in extra.get("warnings", []):
        rep.notes.append(w)
    if k.info.incomplete:
        rep.problems.append("header status says the dump is incomplete (the writer stopped early)")
    if src.flattened and getattr(src, "truncated", False):
        rep.problems.append("flattened stream has no end marker (cut off while it was written)")

    # -- bitmaps
    bm1 = np.frombuffer(k._bm1, dtype=np.uint8)
    bm2 = np.frombuffer(k._bm2, dtype=np.uint8)
    nstray = _bits_in(bm2 & ~bm1, 0, k.max_mapnr)
    bm_ok = nstray == 0
    n = k.dumpable_pages
    excluded_in_part = _bits_in(bm1 & ~bm2, k.start_pfn, k.end_pfn)
    dumped_in_part = _bits_in(bm2, k.start_pfn, k.end_pfn)
    if dumped_in_part != n:
        rep.problems.append(f"2nd bitmap has {dumped_in_part} pages in [{k.start_pfn:#x}, {k.end_pfn:#x}) but the "
                            f"descriptor count is {n}")
        bm_ok = False
    if nstray:
        rep.problems.append(f"{nstray} pages are marked dumped (2nd bitmap) but not in memory (1st bitmap)")
    rep.pages["excluded"] += excluded_in_part
    rep.check("bitmaps", bm_ok, f"{n} pages dumped, {excluded_in_part} excluded")

    # -- descriptors and page data, one window of the table at a time (memory stays bounded
    # however large the dump): the checks are numpy over the window, then the window's
    # compressed pages go to the decompression pool.
    cov = _coverage(src)
    eof = int(cov[:, 1].max()) if len(cov) else 0
    where = "flattened stream" if src.flattened else "file"
    data_off = k._pdesc_off + n * DESC_DTYPE.itemsize
    reasons = _Reasons()
    counts = dict.fromkeys((GOOD, ZERO, MISSING, CORRUPT), 0)
    bad_pfn: list[np.ndarray] = []
    bad_idx: list[np.ndarray] = []
    bad_code: list[np.ndarray] = []
    codecs_used: set[str] = set()
    overlaps = bad_desc = ncompressed = 0
    total = _compressed_bytes_hint(k, n)
    done_bytes = 0
    own = pool is None and read_data and threads > 1
    ex = pool or (ThreadPoolExecutor(max_workers=threads) if own else None)
    try:
        for i0, pfns in _dumped_pfn_windows(bm2, k.start_pfn, k.end_pfn, n):
            m = len(pfns)
            desc, present = _read_table(src, cov, k._pdesc_off + i0 * DESC_DTYPE.itemsize, m)
            state = np.full(m, GOOD, dtype=np.uint8)
            code = np.full(m, -1, dtype=np.int32)

            def mark(mask: np.ndarray, st: int, text: str) -> None:
                sel = mask & (code < 0)
                if sel.any():
                    state[sel] = st
                    code[sel] = reasons.code(st, text)

            mark(~present, MISSING, f"page descriptor not in the {where} (truncated at {eof:#x})")
            off = desc["offset"]
            size = desc["size"].astype(np.int64)
            codec_bits = desc["flags"] & CODEC_MASK
            mark((off == 0) | (size == 0), MISSING,
                 "page data never written (dump marked incomplete)" if k.info.incomplete else "descriptor is empty")
            mark((codec_bits & (codec_bits - 1)) != 0, CORRUPT, "descriptor flags name several codecs")
            mark(off < 0, CORRUPT, "descriptor has a negative data offset")
            mark((codec_bits == 0) & (size != ps), CORRUPT, f"raw page whose size is not {ps}")
            mark(size > ps, CORRUPT, f"compressed size larger than a page ({ps} bytes)")
            mark(off < data_off, CORRUPT, "data offset points into the headers or descriptor table")
            in_file = _covered(cov, off, off + size)
            mark(~in_file & (off + size > eof), MISSING,
                 f"page data past the end of the {where} (truncated at {eof:#x})")
            mark(~in_file, MISSING, "page data not in the flattened stream")
            pending = code < 0
            is_zero = (pending & (off == k._zero_off) & (size == ps) & (codec_bits == 0)
                       if k._zero_off is not None else np.zeros(m, dtype=bool))
            state[is_zero] = ZERO
            raw_ok = pending & ~is_zero & (codec_bits == 0)
            compressed = np.flatnonzero(pending & (codec_bits != 0))
            codecs_used.update(codec_name(int(f)) for f in np.unique(codec_bits[compressed]))
            ncompressed += len(compressed)
            # Data shared between descriptors (other than the zero page) means a damaged table.
            live = np.flatnonzero(pending & ~is_zero)
            if len(live) > 1:
                order = live[np.argsort(off[live], kind="stable")]
                o_sorted, e_sorted = off[order], off[order] + size[order]
                same = (o_sorted[1:] == o_sorted[:-1]) & (e_sorted[1:] == e_sorted[:-1])
                overlaps += int(((o_sorted[1:] < e_sorted[:-1]) & ~same).sum())
            bad_desc += int((state >= MISSING).sum())

            if read_data and len(compressed):
                chunks = [compressed[j:j + CHUNK_PAGES] for j in range(0, len(compressed), CHUNK_PAGES)]
                if ex is not None:
                    results = [ex.submit(_decompress_chunk, src, desc, c, ps, pfns[c]) for c in chunks]
                else:  # one thread: no pool (a thread per call costs a malloc arena)
                    results = [_Done(_decompress_chunk(src, desc, c, ps, pfns[c])) for c in chunks]
                for c, fu in zip(chunks, results):
                    bad, msgs, nread = fu.result()
                    for j, msg in zip(bad, msgs):
                        state[j] = CORRUPT
                        code[j] = reasons.code(CORRUPT, _generalise(msg))
                    done_bytes += int(size[c].sum())
                    rep.bytes_read += nread
                    if progress:
                        progress(done_bytes, max(total, done_bytes))
            if read_data:
                rep.bytes_read += int(size[raw_ok].sum())
            for st in counts:
                counts[st] += int((state == st).sum())
            bad = np.flatnonzero(state >= MISSING)
            if len(bad):
                bad_pfn.append(pfns[bad])
                bad_idx.append(bad + i0)
                bad_code.append(code[bad])
    finally:
        if own and ex is not None:
            ex.shutdown()
    if progress and read_data:
        progress(max(total, done_bytes), max(total, done_bytes))  # the bar ends full
    if overlaps:
        rep.problems.append(f"{overlaps} page descriptors point at data overlapping another page's")
    rep.check("descriptors", bad_desc == 0,
              f"{n} descriptors" + (f", {bad_desc} unusable" if bad_desc else "")
              + (f"; codecs: {', '.join(sorted(codecs_used))}" if codecs_used else ""))
    ncorrupt = counts[CORRUPT]
    if not read_data:
        rep.data_checked = False
        rep.check("page data", None, "not decompressed (--quick)")
    elif ncompressed:
        rep.check("page data", ncorrupt == 0, f"{ncompressed} compressed pages decompressed"
                                              + (f", {ncorrupt} corrupt" if ncorrupt else ""))
    else:
        rep.check("page data", ncorrupt == 0, "no compressed pages")
    for st, c in counts.items():
        rep.pages[STATE_NAMES[st]] += c
    if bad_pfn:
        _add_runs(rep, np.concatenate(bad_pfn), np.concatenate(bad_code), reasons, ps, np.concatenate(bad_idx))


DESC_WINDOW = 1 << 20  # descriptors handled at once (24 MiB of table)


class _Done:
    """A result computed in this thread, with a future's result() (which re-raises)."""

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error

    @classmethod
    def of(cls, fn: Callable[..., Any], *args: Any) -> "_Done":
        try:
            return cls(fn(*args))
        except Exception as e:  # handed to result(), as a future would
            return cls(error=e)

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def _dumped_pfn_windows(bm2: np.ndarray, start: int, end: int, n: int):  # type: ignore[no-untyped-def]
    """(index of the first descriptor, the dumped pfns) for consecutive runs of the 2nd
    bitmap's set bits in [start, end), about DESC_WINDOW pfns at a time and never more than the
    table's `n` descriptors in all (a bitmap with extra bits must not read past the table)."""
    step = DESC_WINDOW  # bits of bitmap per slice: at most that many pfns per window
    done = 0
    for a in range(start - start % 8, end, step):
        lo = max(a, start)
        hi = min(a + step, end)
        bits = np.unpackbits(bm2[a >> 3:(hi + 7) >> 3], bitorder="little")
        pfns = np.flatnonzero(bits).astype(np.int64) + a
        pfns = pfns[(pfns >= lo) & (pfns < hi)][:max(0, n - done)]
        if len(pfns):
            yield done, pfns
            done += len(pfns)
        if done >= n:
            return


def _compressed_bytes_hint(k: Any, n: int) -> int:
    """Total stored bytes of the page data, for the progress bar (the data area's extent)."""
    return max(1, k._src.size - (k._pdesc_off + n * DESC_DTYPE.itemsize))


def _generalise(msg: str) -> str:
    """Decompressor messages carry per-page detail; keep their kind so runs group by it."""
    for sep, kind in ((" does not decompress", " does not decompress"),
                      (" decompresses to ", " does not decompress to exactly one page")):
        if sep in msg:
            return msg.split(sep, 1)[0] + kind
    return msg


def _bits_in(bitmap: np.ndarray, a: int, b: int) -> int:
    """Set bits of a little-endian bitmap among bits [a, b), without unpacking it."""
    if b <= a:
        return 0
    ba, bb = a >> 3, b >> 3
    if ba == bb:
        return bin((int(bitmap[ba]) >> (a & 7)) & ((1 << (b - a)) - 1)).count("1")
    n = bin(int(bitmap[ba]) >> (a & 7)).count("1")
    n += int(np.bitwise_count(bitmap[ba + 1:bb]).sum(dtype=np.int64))
    if b & 7:
        n += bin(int(bitmap[bb]) & ((1 << (b & 7)) - 1)).count("1")
    return n


def _verify_split(rep: VerifyReport, s: Any, read_data: bool, threads: int, progress: Progress | None) -> None:
    parts = s.parts
    totals = [0] * len(parts)
    done = [0] * len(parts)

    def part_progress(i: int) -> Progress:
        def cb(d: int, t: int) -> None:
            done[i], totals[i] = d, t
            if progress:
                progress(sum(done), max(sum(totals), 1))
        return cb

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for i, k in enumerate(parts):
            sub = VerifyReport(k.path, "kdump", k.page_size)
            _verify_kdump(sub, k, read_data, threads, part_progress(i), pool)
            for key, v in sub.pages.items():
                rep.pages[key] += v
            rep.bad_ranges.extend(sub.bad_ranges)
            rep.checks.extend(Check(f"{c.name} [{os.path.basename(k.path)}]", c.ok, c.detail) for c in sub.checks)
            rep.problems.extend(f"{k.path}: {p}" for p in sub.problems)
            rep.notes.extend(f"{k.path}: {p}" for p in sub.notes)
            rep.bytes_read += sub.bytes_read
            rep.data_checked = rep.data_checked and sub.data_checked
    # pfns that no given part holds: every dumped page there is missing.
    ref = parts[0]
    ps = ref.page_size
    both = np.frombuffer(ref._bm1, dtype=np.uint8) & np.frombuffer(ref._bm2, dtype=np.uint8)
    gaps, pos = [], 0
    for k in sorted((k for k in parts if k.end_pfn > k.start_pfn), key=lambda k: k.start_pfn):
        if k.start_pfn > pos:
            gaps.append((pos, k.start_pfn))
        pos = max(pos, k.end_pfn)
    if pos < ref.max_mapnr:
        gaps.append((pos, ref.max_mapnr))
    lost_parts, order_parts, base = [], [], 0
    for a, b in gaps:
        lo = a >> 3
        bits = np.unpackbits(both[lo:(b + 7) >> 3], bitorder="little")
        idx = np.flatnonzero(bits) + lo * 8
        idx = idx[(idx >= a) & (idx < b)]
        lost_parts.append(idx)
        order_parts.append(np.arange(len(idx)) + base)  # one run per gap between parts
        base += len(idx) + 1
    lost = np.concatenate(lost_parts) if lost_parts else np.zeros(0, dtype=np.int64)
    if len(lost):
        rep.pages["missing"] += len(lost)
        reasons = _Reasons()
        c = reasons.code(MISSING, "in no given file of the split set (a part is missing?)")
        _add_runs(rep, lost, np.full(len(lost), c), reasons, ps, np.concatenate(order_parts))
        rep.problems.append(f"{len(lost)} dumped pages lie in no given part of the split set")
    rep.bad_ranges.sort(key=lambda r: r.start)


# -- generic -------------------------------------------------------------------------------------
def _verify_generic(rep: VerifyReport, phys: PhysicalMemory) -> None:
    ps = phys.page_size
    budget = GENERIC_PAGE_LIMIT
    states = {PageState.PRESENT: GOOD, PageState.ZERO: ZERO, PageState.EXCLUDED: EXCLUDED,
              PageState.MISSING: MISSING, PageState.CORRUPT: CORRUPT}
    pf: list[int] = []
    cd: list[int] = []
    reasons = _Reasons()
    for r in phys.ranges():
        for pfn in range(r.start // ps, -(-r.end // ps)):
            st = states.get(phys.page_state(pfn))
            budget -= 1
            if st is None:
                continue
            rep.pages[STATE_NAMES[st]] += 1
            if st >= MISSING:
                pf.append(pfn)
                cd.append(reasons.code(st, STATE_NAMES[st]))
            if budget <= 0:
                rep.notes.append(f"stopped after {GENERIC_PAGE_LIMIT} pages")
                break
    _add_runs(rep, np.array(pf, dtype=np.int64), np.array(cd, dtype=np.int32), reasons, ps)


# -- entry points --------------------------------------------------------------------------------
def verify(phys: PhysicalMemory, *, read_data: bool = True, threads: int | None = None,
           progress: Progress | None = None) -> VerifyReport:
    """Check an open dump end to end; see the module docstring for what is checked. With
    read_data=False only headers, notes, bitmaps and descriptors are checked (no page data is
    read or decompressed). `progress(done, total)` is called as page data is processed."""
    from .elf import ElfDump
    from .kdump import KdumpFile
    from .split import KdumpSplitSet

    t0 = time.perf_counter()
    threads = threads or os.cpu_count() or 1
    rep = VerifyReport(phys.path, phys.info.format, phys.page_size)
    if isinstance(phys, ElfDump):
        _verify_elf(rep, phys, read_data, threads, progress)
    elif isinstance(phys, KdumpSplitSet):
        _verify_split(rep, phys, read_data, threads, progress)
    elif isinstance(phys, KdumpFile):
        _verify_kdump(rep, phys, read_data, threads, progress)
        if phys.split:
            rep.notes.append("this file is one part of a --split set: pfns outside "
                             f"[{phys.start_pfn:#x}, {phys.end_pfn:#x}) are in the other parts")
    else:
        _verify_generic(rep, phys)
    if not isinstance(phys, ElfDump):
        # ELF checks its PT_NOTE areas itself; others carry notes the reader already walked.
        rep.check("notes", True, f"{len(phys.notes)} notes")
    _check_prstatus(rep, phys)
    _check_vmcoreinfo(rep, phys)
    rep.bad_ranges.sort(key=lambda r: r.start)
    rep.seconds = time.perf_counter() - t0
    return rep


def damage_hint(phys: PhysicalMemory) -> str | None:
    """A cheap look for damage, reading no page data: a file that ends before its segment data
    or descriptors say, a flattened stream without its end marker, an incomplete-dump flag."""
    from .elf import ElfDump
    from .kdump import KdumpFile
    from .split import KdumpSplitSet

    more = "; `vmcorekit info --ranges` lists the missing ranges"
    if isinstance(phys, ElfDump):
        if phys.info.incomplete:
            return f"the file ends at {phys.file_size:#x}, inside the segment data: pages are missing{more}"
        return None
    parts = phys.parts if isinstance(phys, KdumpSplitSet) else [phys] if isinstance(phys, KdumpFile) else []
    for k in parts:
        src = k._src
        name = f"{k.path}: " if len(parts) > 1 else ""
        if k.info.incomplete:
            return f"{name}the dump is marked incomplete: the writer stopped early{more}"
        if src.flattened and getattr(src, "truncated", False):
            return f"{name}the flattened stream has no end marker (cut off){more}"
        n = k.dumpable_pages
        if n:
            # Page data follows pfn order, so the end of the data is among the last descriptors
            # (the last few may all point at the shared zero page near the start).
            m = min(n, 4096)
            tail = src.read(k._pdesc_off + (n - m) * DESC_DTYPE.itemsize, m * DESC_DTYPE.itemsize)
            if len(tail) < m * DESC_DTYPE.itemsize:
                return f"{name}the file ends inside the page descriptor table{more}"
            d = np.frombuffer(tail, dtype=DESC_DTYPE)
            end = int((d["offset"] + d["size"].astype(np.int64)).max())
            if end > src.size:
                return f"{name}the file ends at {src.size:#x}, inside the page data{more}"
    return None


def unreadable_ranges(phys: PhysicalMemory, *, read_data: bool = True) -> list[BadRange]:
    """The physical ranges whose dumped pages are missing or corrupt (for `info --ranges`)."""
    return verify(phys, read_data=read_data).bad_ranges


def verify_path(paths: str | list[str], **kw: Any) -> VerifyReport:
    """Open a dump (one file or the files of a split set) and verify it."""
    from . import open_dump

    with open_dump(paths) as phys:
        return verify(phys, **kw)
