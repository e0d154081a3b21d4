"""`verify`'s checks of kdump-compressed files: plain, flattened and split sets (dump/kdump.py
registers them).

The 2nd bitmap inside the 1st (a page cannot be dumped without existing), the descriptor table
inside the file, each descriptor's data inside the file and inside the page-data area, sizes and
codec flags legal, and — with `read_data` — every compressed page decompresses to exactly one
page (over a thread pool: zlib and zstd release the GIL while they inflate, though for 4 KiB
pages the per-call setup that holds it limits the gain to about 1.5x on two cores). For a
flattened stream, parts of the described file that no record carries count as missing; for a
split set, pfns no given part holds.

Nothing is done per page in Python except the decompression call itself; bitmaps and descriptor
tables are handled as numpy arrays, a window of about a million descriptors at a time, so memory
stays bounded on any dump.
"""
from __future__ import annotations

import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VmcorekitError
from .checks import CORRUPT, GOOD, MISSING, STATE_NAMES, ZERO, Check, Done, Progress, Reasons, VerifyReport, add_runs
from .codecs import CODEC_MASK, DUMP_DH_COMPRESSED_ZLIB, codec_name, decompress_page
from .kdump_layout import DESC_DTYPE

if TYPE_CHECKING:
    from .kdump import KdumpFile
    from .split import KdumpSplitSet

# Work unit of the decompression pool: enough pages that the per-chunk overhead vanishes,
# few enough that the progress bar moves and the pool stays balanced.
CHUNK_PAGES = 2048
DESC_WINDOW = 1 << 20  # descriptors handled at once (24 MiB of table)


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


def check_kdump(rep: VerifyReport, k: KdumpFile, read_data: bool, threads: int, progress: Progress | None,
                pool: ThreadPoolExecutor | None = None) -> None:
    """The self-checks of one kdump-compressed file (plain or flattened, whole or a split part)."""
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
    nstray = _and_not_bits(k, 0, k.max_mapnr, stray=True)
    bm_ok = nstray == 0
    n = k.dumpable_pages
    excluded_in_part = _and_not_bits(k, k.start_pfn, k.end_pfn, stray=False)
    dumped_in_part = sum(_bits_in(b2, max(k.start_pfn, f) - f, min(k.end_pfn, f + 8 * len(b2)) - f)
                         for f, _, b2 in k.bitmap_pieces(k.start_pfn, k.end_pfn))
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
    reasons = Reasons()
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
        for i0, pfns in _dumped_pfn_windows(k, k.start_pfn, k.end_pfn, n):
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
                    results = [Done(_decompress_chunk(src, desc, c, ps, pfns[c])) for c in chunks]
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
        add_runs(rep, np.concatenate(bad_pfn), np.concatenate(bad_code), reasons, ps, np.concatenate(bad_idx))


def _dumped_pfn_windows(k: KdumpFile, start: int, end: int, n: int):  # type: ignore[no-untyped-def]
    """(index of the first descriptor, the dumped pfns) for consecutive runs of the 2nd
    bitmap's set bits in [start, end), about DESC_WINDOW pfns at a time and never more than the
    table's `n` descriptors in all (a bitmap with extra bits must not read past the table)."""
    done = 0
    for first, _, b2 in k.bitmap_pieces(start, end, DESC_WINDOW // 8):
        pfns = np.flatnonzero(np.unpackbits(b2, bitorder="little")).astype(np.int64) + first
        pfns = pfns[(pfns >= start) & (pfns < end)][:max(0, n - done)]
        if len(pfns):
            yield done, pfns
            done += len(pfns)
        if done >= n:
            return


def _compressed_bytes_hint(k: KdumpFile, n: int) -> int:
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


def _and_not_bits(k: KdumpFile, lo: int, hi: int, *, stray: bool) -> int:
    """Set bits among pfns [lo, hi) of `2nd & ~1st` (stray: dumped but not in memory) or of
    `1st & ~2nd` (excluded), a piece of the bitmaps at a time: never a temporary as large as
    the bitmaps, whose size a header chooses."""
    n = 0
    for first, b1, b2 in k.bitmap_pieces(lo, hi):
        x = (b2 & ~b1) if stray else (b1 & ~b2)
        n += _bits_in(x, max(lo, first) - first, min(hi, first + 8 * len(x)) - first)
    return n


def check_split(rep: VerifyReport, s: KdumpSplitSet, read_data: bool, threads: int, progress: Progress | None) -> None:
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
            check_kdump(sub, k, read_data, threads, part_progress(i), pool)
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
    gaps, pos = [], 0
    for k in sorted((k for k in parts if k.end_pfn > k.start_pfn), key=lambda k: k.start_pfn):
        if k.start_pfn > pos:
            gaps.append((pos, k.start_pfn))
        pos = max(pos, k.end_pfn)
    if pos < ref.max_mapnr:
        gaps.append((pos, ref.max_mapnr))
    lost_parts, order_parts, base = [], [], 0
    for a0, b in gaps:
        found = []
        for first, b1, b2 in ref.bitmap_pieces(a0, b, 1 << 20):
            idx = np.flatnonzero(np.unpackbits(b1 & b2, bitorder="little")) + first
            found.append(idx[(idx >= a0) & (idx < b)])
        idx = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
        lost_parts.append(idx)
        order_parts.append(np.arange(len(idx)) + base)  # one run per gap between parts
        base += len(idx) + 1
    lost = np.concatenate(lost_parts) if lost_parts else np.zeros(0, dtype=np.int64)
    if len(lost):
        rep.pages["missing"] += len(lost)
        reasons = Reasons()
        c = reasons.code(MISSING, "in no given file of the split set (a part is missing?)")
        add_runs(rep, lost, np.full(len(lost), c), reasons, ps, np.concatenate(order_parts))
        rep.problems.append(f"{len(lost)} dumped pages lie in no given part of the split set")
    rep.bad_ranges.sort(key=lambda r: r.start)


def damage_hint(parts: list[KdumpFile]) -> str | None:
    """A cheap look for damage in a kdump file or the parts of a split set, reading no page
    data: a file that ends before its descriptors say, a flattened stream without its end
    marker, an incomplete-dump flag."""
    more = "; `vmcorekit info --ranges` lists the missing ranges"
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
