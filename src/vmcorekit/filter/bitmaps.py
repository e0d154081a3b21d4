"""Page bitmaps: one bit per pfn, little-endian within each byte (bit i is bit i%8 of byte
i//8), the layout of the kdump-compressed format's two bitmaps. They are the only state of a
filter run that grows with the machine's memory (2 bits per page: 64 MiB for 1 TiB).

Also here: what an input dump holds, as bitmaps. The 1st bitmap has every page a memory range
of the dump touches; the "present" bitmap every page whose whole data is in the file (an ELF
segment's p_filesz, a kdump file's 2nd bitmap), which is where a filter run starts from.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..dump.base import PhysicalMemory

_CHUNK_BITS = 1 << 23  # bits handled at once when scanning a whole bitmap


def _copy_sparse(dst: np.ndarray, src: np.ndarray, step: int = 1 << 20) -> None:
    """dst[:len(src)] = src for a zeroed `dst`, skipping all-zero pieces: the pages of a fresh
    np.zeros that are never written take no memory, so a bitmap a header made huge but that
    is mostly clear costs what is set, not what is claimed."""
    for a in range(0, len(src), step):
        piece = src[a:a + step]
        if piece.any():
            dst[a:a + len(piece)] = piece


class PfnBitmap:
    """A packed bitmap of `nbits` pfns."""

    def __init__(self, nbits: int, data: np.ndarray | None = None) -> None:
        self.nbits = nbits
        nbytes = (nbits + 7) // 8
        if data is None:
            self.data = np.zeros(nbytes, dtype=np.uint8)
        else:
            d = np.asarray(data, dtype=np.uint8)
            self.data = np.zeros(nbytes, dtype=np.uint8)
            _copy_sparse(self.data, d[:nbytes])
            if nbits % 8 and nbytes:
                self.data[-1] &= np.uint8((1 << (nbits % 8)) - 1)

    def copy(self) -> "PfnBitmap":
        return PfnBitmap(self.nbits, self.data)

    # -- ranges of bits ----------------------------------------------------------------------
    def get(self, a: int, b: int) -> np.ndarray:
        """Bits [a, b) as a bool array (bits past nbits read as 0)."""
        b = max(a, b)
        out = np.zeros(b - a, dtype=bool)
        hi = min(b, self.nbits)
        if a >= hi:
            return out
        lo_byte, hi_byte = a >> 3, (hi + 7) >> 3
        bits = np.unpackbits(self.data[lo_byte:hi_byte], bitorder="little")
        skip = a - (lo_byte << 3)
        out[:hi - a] = bits[skip:skip + hi - a].astype(bool)
        return out

    def put(self, a: int, bits: np.ndarray) -> None:
        """Overwrite bits [a, a+len(bits))."""
        b = min(a + len(bits), self.nbits)
        if a >= b:
            return
        bits = bits[:b - a]
        lo_byte, hi_byte = a >> 3, (b + 7) >> 3
        cur = np.unpackbits(self.data[lo_byte:hi_byte], bitorder="little").astype(bool)
        skip = a - (lo_byte << 3)
        cur[skip:skip + (b - a)] = bits
        self.data[lo_byte:hi_byte] = np.packbits(cur, bitorder="little")

    def set_range(self, a: int, b: int, value: bool = True) -> None:
        a, b = max(0, a), min(b, self.nbits)
        if a >= b:
            return
        # Whole bytes in one numpy assignment, the ragged ends bit by bit.
        first_full, last_full = (a + 7) >> 3, b >> 3
        if first_full < last_full:
            self.data[first_full:last_full] = 0xFF if value else 0
            if a < first_full << 3:
                self.put(a, np.full((first_full << 3) - a, value))
            if last_full << 3 < b:
                self.put(last_full << 3, np.full(b - (last_full << 3), value))
        else:
            self.put(a, np.full(b - a, value))

    def clear_where(self, a: int, mask: np.ndarray) -> int:
        """Clear bits [a, a+len(mask)) where mask is true; returns how many were set."""
        cur = self.get(a, a + len(mask))
        hit = cur & mask
        n = int(np.count_nonzero(hit))
        if n:
            self.put(a, cur & ~mask)
        return n

    def __and__(self, other: "PfnBitmap") -> "PfnBitmap":
        n = min(self.nbits, other.nbits)
        nb = (n + 7) // 8
        return PfnBitmap(n, self.data[:nb] & other.data[:nb])

    # -- whole-bitmap facts ------------------------------------------------------------------
    def equals(self, other: "PfnBitmap") -> bool:
        """Same bits (by pieces: no temporary as large as the bitmap)."""
        if self.nbits != other.nbits:
            return False
        step = 1 << 22
        return all(np.array_equal(self.data[i:i + step], other.data[i:i + step])
                   for i in range(0, len(self.data), step))

    def count(self, a: int = 0, b: int | None = None) -> int:
        b = self.nbits if b is None else min(b, self.nbits)
        if a == 0 and b == self.nbits:  # by pieces: no temporary as large as the bitmap
            step = 1 << 22
            return sum(int(np.bitwise_count(self.data[i:i + step]).sum(dtype=np.int64))
                       for i in range(0, len(self.data), step))
        return int(np.count_nonzero(self.get(a, b)))

    def runs(self, a: int = 0, b: int | None = None) -> list[tuple[int, int]]:
        """[start, end) runs of set bits within [a, b), chunk by chunk (bounded memory)."""
        b = self.nbits if b is None else min(b, self.nbits)
        out: list[tuple[int, int]] = []
        pos = a
        open_start: int | None = None
        while pos < b:
            stop = min(b, pos + _CHUNK_BITS)
            bits = self.get(pos, stop).astype(np.int8)
            d = np.diff(bits, prepend=np.int8(0 if open_start is None else 1))
            ups = (np.flatnonzero(d == 1) + pos).tolist()
            downs = (np.flatnonzero(d == -1) + pos).tolist()
            if open_start is not None:
                ups.insert(0, open_start)
            out.extend(zip(ups, downs))
            open_start = ups[len(downs)] if len(ups) > len(downs) else None
            pos = stop
        if open_start is not None:
            out.append((open_start, b))
        return out

    def pfns(self, a: int, b: int) -> np.ndarray:
        """Set pfns within [a, b), ascending."""
        return np.flatnonzero(self.get(a, b)).astype(np.int64) + a

    def nth_set(self, ranks: np.ndarray) -> np.ndarray:
        """The pfn of the k-th set bit (0-based) for each k in `ranks` (sorted)."""
        counts = np.bitwise_count(self.data).astype(np.int64)
        prefix = np.cumsum(counts)
        byte = np.searchsorted(prefix, ranks, side="right")
        out = np.empty(len(ranks), dtype=np.int64)
        for i, (r, by) in enumerate(zip(ranks.tolist(), byte.tolist())):
            before = int(prefix[by - 1]) if by else 0
            bits = np.flatnonzero(np.unpackbits(self.data[by:by + 1], bitorder="little"))
            out[i] = by * 8 + int(bits[r - before])
        return out

    def tobytes(self, nbytes: int) -> bytes:
        """The bitmap padded with zeros to `nbytes` (a whole number of blocks in a file)."""
        return b"".join(self.chunks(nbytes, max(nbytes, 1)))

    def chunks(self, nbytes: int, step: int) -> Iterator[bytes | memoryview]:
        """tobytes(nbytes) in pieces of at most `step` bytes, without a whole copy of the
        bitmap (32 MiB a TiB of RAM)."""
        view = memoryview(self.data).cast("B")
        for i in range(0, nbytes, step):
            piece = view[i:min(nbytes, i + step)]
            want = min(step, nbytes - i)
            yield piece if len(piece) == want else bytes(piece) + bytes(want - len(piece))


# -- what an input dump holds -----------------------------------------------------------------

def input_bitmaps(phys: PhysicalMemory, page_size: int) -> tuple[PfnBitmap, PfnBitmap]:
    """(1st bitmap, present bitmap) of an input dump over pfns [0, max_mapnr).

    ELF cores: a page is in the 1st bitmap when a PT_LOAD's p_memsz touches it, present when
    p_filesz covers all of it (makedumpfile 1.7.2 likewise drops the partial page at the end
    of a segment such as kexec's 0x1000-0x9fc00). kdump files: their own two bitmaps."""
    kd = _kdump_parts(phys)
    if kd is not None:
        return kd
    ranges = phys.ranges()
    max_mapnr = max((-(-r.end // page_size) for r in ranges), default=0)
    bm1 = PfnBitmap(max_mapnr)
    for r in ranges:
        bm1.set_range(r.start // page_size, -(-r.end // page_size))
    present = PfnBitmap(max_mapnr)
    for start, end in _data_extents(phys):
        present.set_range(-(-start // page_size), end // page_size)
    return bm1, present


def _data_extents(phys: PhysicalMemory) -> list[tuple[int, int]]:
    """Physical [start, end) stretches whose bytes the file holds."""
    segs = getattr(phys, "_segs", None)  # ElfDump: PT_LOADs with p_filesz
    if segs is not None and all(hasattr(s, "filesz") for s in segs):
        size = getattr(phys, "file_size", None)
        out = []
        for s in segs:
            filesz = s.filesz
            if size is not None:
                filesz = max(0, min(filesz, size - s.offset))
            if filesz:
                out.append((s.paddr, s.paddr + filesz))
        return out
    return [(r.start, r.end) for r in phys.ranges()]


def _kdump_parts(phys: PhysicalMemory) -> tuple[PfnBitmap, PfnBitmap] | None:
    """The bitmaps of a kdump-compressed input (one file, or the union of a --split set)."""
    files = getattr(phys, "files", None) or getattr(phys, "parts", None)
    members = list(files) if files else [phys]
    got: list[tuple[PfnBitmap, PfnBitmap]] = []
    for m in members:
        bm1_raw = getattr(m, "_bm1", None)
        bm2_raw = getattr(m, "_bm2", None)
        max_mapnr = getattr(m, "max_mapnr", None)
        if bm1_raw is None or bm2_raw is None or max_mapnr is None:
            return None
        pieces = getattr(m, "bitmap_pieces", None)
        if pieces is not None:
            # Only the parts of the file's bitmaps that hold data are copied: np.zeros is
            # untouched (no memory) elsewhere, however many pages the header claims.
            bm1, bm2 = PfnBitmap(max_mapnr), PfnBitmap(max_mapnr)
            for first, b1, b2 in pieces():
                at = first >> 3
                n = min(len(b1), len(bm1.data) - at)
                bm1.data[at:at + n] = b1[:n]
                bm2.data[at:at + n] = b2[:n]
            for b in (bm1, bm2):
                if max_mapnr % 8 and len(b.data):
                    b.data[-1] &= np.uint8((1 << (max_mapnr % 8)) - 1)
        else:
            bm1 = PfnBitmap(max_mapnr, np.frombuffer(bm1_raw, dtype=np.uint8))
            bm2 = PfnBitmap(max_mapnr, np.frombuffer(bm2_raw, dtype=np.uint8))
        start, end = getattr(m, "start_pfn", 0), getattr(m, "end_pfn", max_mapnr)
        if start or end < max_mapnr:  # one file of a split set holds only its pfn range
            keep = PfnBitmap(max_mapnr)
            keep.set_range(start, end)
            bm2 = bm2 & keep
        got.append((bm1, bm2))
    bm1, bm2 = got[0]
    for b1, b2 in got[1:]:
        bm1 = PfnBitmap(bm1.nbits, bm1.data | b1.data[:len(bm1.data)])
        bm2 = PfnBitmap(bm2.nbits, bm2.data | b2.data[:len(bm2.data)])
    return bm1, bm2
