"""kdump-compressed dumps ("KDUMP   ", makedumpfile -c/-l/-p/-z, QEMU kdump-*), plain or
flattened, header versions 1 to 6, one file or the files of a makedumpfile --split set; the
format's registry entries (probe, open, checks).

Layout: dump/kdump_layout.py (block = header.block_size = page size). The page data starts with
the shared zero page, as makedumpfile and QEMU write it.

A pfn's descriptor index is its rank among the set bits of the 2nd bitmap. The rank comes from
a prefix sum of popcounts per 512-bit block built once with numpy, so a lookup is one array
index and one popcount of at most 512 bits. Bitmaps up to PURE_BITMAP_BYTES (16 GiB of 4 KiB
pages) are indexed without numpy (its import costs more than the work: `dmesg` of such a dump
never imports it); larger ones with it. Both give the same index and ranges (tests compare).

A --split set is several kdump files, each holding the dumped pages of one pfn range
[start_pfn, end_pfn) (its sub-header says split=1), presented as one memory.
"""
from __future__ import annotations

import bisect
import contextlib
import re
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import (
    CorruptPageError,
    DumpFormatError,
    PageExcludedError,
    PageMissingError,
    PageNotInDumpError,
    UnsupportedDumpError,
)
from .base import DumpFormat, DumpInfo, MemRange, Note, PageState, PhysicalMemory
from .codecs import (
    CODEC_FLAGS,
    CODEC_MASK,
    DUMP_DH_COMPRESSED_INCOMPLETE,
    DUMP_DH_EXCLUDED_VMEMMAP,
    codec_name,
    codec_names,
    decompress_page,
)
from .elf_layout import ELF_MAGIC, parse_notes
from .flat import ByteSource, open_source
from .flat_layout import FLAT_HEADER_SIZE, FLAT_SIGNATURE, RECORD, is_flattened
from .kdump_layout import (
    BLOCK_SIZE_OFF_32BIT,
    DISK_DUMP_HEADER_SIZE,
    DISKDUMP_SIGNATURE,
    HDR_TAIL_OFF,
    HDR_VERSION_OFF,
    KDUMP_SIGNATURE,
    KDUMP_SUB_HEADER_SIZE,
    MAX_KNOWN_HEADER_VERSION,
    PAGE_DESC,
    PAGE_DESC_HEAD,
    PAGE_DESC_SIZE,
    DiskDumpHeader,
    KdumpSubHeader,
)

if TYPE_CHECKING:
    import numpy as np

    from .checks import Progress, VerifyReport

MIN_BLOCK_SIZE = 512
MAX_BLOCK_SIZE = 1 << 18  # 256 KiB pages exist (hexagon, ppc44x); anything larger is corrupt
CODEC_SAMPLE = 512  # descriptors read at open to name the codecs in use
DEFAULT_CACHE_PAGES = 1024
PURE_BITMAP_BYTES = 512 << 10  # at most this much 2nd bitmap is indexed without numpy
_RANK_BLOCK = 64  # bytes of 2nd bitmap per rank-index entry (at least; see rank_block_bytes)
RANK_INDEX_MAX = 32 << 20  # bytes of rank index at most (64 bytes of bitmap an entry up to 256 MiB of bitmap)


def is_kdump(head: bytes) -> bool:
    """True if `head` starts a plain kdump-compressed file."""
    return head[:8] == KDUMP_SIGNATURE


def flattened_head(head: bytes) -> bytes | None:
    """For the start of a flattened stream, the first bytes of the file it describes (from
    the first record, which writers place at offset 0); None if `head` does not show them."""
    if not is_flattened(head) or len(head) < FLAT_HEADER_SIZE + RECORD.size:
        return None
    off, size = RECORD.unpack_from(head, FLAT_HEADER_SIZE)
    if off != 0 or size <= 0:
        return None
    return head[FLAT_HEADER_SIZE + RECORD.size:FLAT_HEADER_SIZE + RECORD.size + size]


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _np() -> Any:
    import numpy  # here: only large bitmaps and the filter's page iteration need it
    return numpy


def _use_numpy(nbytes: int) -> bool:
    return nbytes > PURE_BITMAP_BYTES


_SET_BYTES = re.compile(rb"\xff+|[^\x00\xff]")  # runs of all-set bytes, and single partial bytes


PURE_PARTIAL_BYTES = 1 << 14  # partial bytes runs_of_chunks_pure() looks at before giving up


def runs_of_chunks_pure(chunks: "Iterable[tuple[int, bytes | memoryview]]", nbits: int
                        ) -> list[tuple[int, int]] | None:
    """runs_of_chunks() without numpy: zero bytes are skipped by the regex engine, runs of
    0xff bytes taken whole, only partial bytes looked at bit by bit. None when there are more
    than PURE_PARTIAL_BYTES of those (a fragmented bitmap: numpy's turn)."""
    runs: list[list[int]] = []
    partial = 0
    for base, raw in chunks:
        for m in _SET_BYTES.finditer(raw):
            i, j = m.span()
            if j - i > 1 or raw[i] == 0xFF:
                spans = [((base + i) * 8, (base + j) * 8)]
            else:
                partial += 1
                if partial > PURE_PARTIAL_BYTES:
                    return None
                byte, first = raw[i], (base + i) * 8
                spans = []
                k = 0
                while k < 8:
                    if byte >> k & 1:
                        e = k
                        while e < 8 and byte >> e & 1:
                            e += 1
                        spans.append((first + k, first + e))
                        k = e
                    else:
                        k += 1
            for a, b in spans:
                if a >= nbits:
                    break
                b = min(b, nbits)
                if runs and runs[-1][1] == a:
                    runs[-1][1] = b
                else:
                    runs.append([a, b])
    return [(a, b) for a, b in runs]


def rank_counts_pure(pieces: "Iterable[tuple[int, bytes | memoryview]]", nbytes: int, blk: int) -> list[int]:
    """Prefix sums of set bits per `blk`-byte block of a bitmap given as (offset, bytes)
    pieces (bytes no piece covers are zero): entry k counts the bits before block k."""
    counts = [0] * (nbytes // blk + 1)
    for rel, raw in pieces:
        mv = memoryview(raw)
        pos, end = 0, len(mv)
        while pos < end:
            k = (rel + pos) // blk
            stop = min(end, (k + 1) * blk - rel)
            counts[k] += int.from_bytes(mv[pos:stop], "little").bit_count()
            pos = stop
    prefix = [0] * (len(counts) + 1)
    total = 0
    for k, c in enumerate(counts):
        total += c
        prefix[k + 1] = total
    return prefix


def bit_runs(bitmap: np.ndarray, nbits: int, chunk_bytes: int = 1 << 20) -> list[tuple[int, int]]:
    """[start, end) runs of set bits among the first `nbits` bits of a little-endian bitmap
    (bit i is bit i%8 of byte i//8). Works chunk by chunk so memory stays bounded."""
    nbytes = (nbits + 7) // 8
    return runs_of_chunks(((b, bitmap[b:b + chunk_bytes]) for b in range(0, nbytes, chunk_bytes)), nbits)


def runs_of_chunks(chunks: "Iterable[tuple[int, np.ndarray | bytes]]", nbits: int) -> list[tuple[int, int]]:
    """bit_runs() over (byte offset, bytes) pieces of a bitmap in ascending order; bytes no
    piece covers are zero (the holes ByteSource.scan skips). Shortcuts for all-clear and
    all-set pieces."""
    np = _np()
    edges: list[np.ndarray] = []
    prev = 0
    at = 0  # the first byte not yet covered
    for base, raw in chunks:
        chunk = np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw
        if base > at and prev:  # a gap of zero bytes ends the open run
            edges.append(np.array([at * 8], dtype=np.int64))
            prev = 0
        first = base * 8
        at = base + len(chunk)
        if not chunk.any():
            if prev:
                edges.append(np.array([first], dtype=np.int64))
            prev = 0
            continue
        if (chunk == 0xFF).all():
            if not prev:
                edges.append(np.array([first], dtype=np.int64))
            prev = 1
            continue
        bits = np.unpackbits(chunk, bitorder="little").astype(np.int8)
        change = np.flatnonzero(np.diff(bits, prepend=np.int8(prev)))
        if len(change):
            edges.append(change.astype(np.int64) + first)
        prev = int(bits[-1])
    if prev and at * 8 < nbits:  # zero bytes after the last piece (a trailing hole) end the run
        edges.append(np.array([at * 8], dtype=np.int64))
    flat = np.concatenate(edges) if edges else np.zeros(0, dtype=np.int64)
    flat = flat[flat < nbits]
    if len(flat) % 2:
        flat = np.append(flat, nbits)
    return list(zip(flat[0::2].tolist(), flat[1::2].tolist()))


def rank_block_bytes(nbytes: int) -> int:
    """Bytes of 2nd bitmap per rank-index entry: 64, or more for bitmaps so large that the
    index (8 bytes an entry) would pass RANK_INDEX_MAX — however many pages a header claims."""
    blk = _RANK_BLOCK
    while nbytes // blk * 8 > RANK_INDEX_MAX:
        blk *= 2
    return blk


class KdumpFile(PhysicalMemory):
    """One kdump-compressed file (plain or flattened) as physical memory.

    `source` lets a caller supply the bytes (any ByteSource); by default the file is opened
    and a flattened stream is recognised by its signature. For one file of a --split set,
    pages outside its [start_pfn, end_pfn) read as missing (they live in another file).

    Attributes: `max_mapnr` (pfns the bitmaps describe), `start_pfn`/`end_pfn` (the pfns this
    file holds data for), `split`, `dumpable_pages` (descriptors in this file).
    """

    def __init__(self, path: str, source: ByteSource | None = None, *,
                 cache_pages: int = DEFAULT_CACHE_PAGES) -> None:
        super().__init__(path, DumpInfo(format="kdump"))
        self._src = source if source is not None else open_source(path)
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_pages = max(1, cache_pages)
        try:
            self._parse()
        except BaseException:
            if source is None:
                self._src.close()
            raise

    # -- parsing -----------------------------------------------------------------------------
    def _err(self, offset: int | None, msg: str) -> DumpFormatError:
        return DumpFormatError(self.path, offset, msg)

    def _parse(self) -> None:
        src = self._src
        fsize = src.size
        where = "reassembled flattened file" if src.flattened else "file"
        if fsize == 0:
            raise self._err(None, f"{where} is empty; expected a kdump-compressed header")
        head = src.read(0, DISK_DUMP_HEADER_SIZE)
        sig = head[:len(KDUMP_SIGNATURE)]
        if sig == DISKDUMP_SIGNATURE:
            raise UnsupportedDumpError(self.path, 0, "old 'DISKDUMP' format (diskdump patches); only 'KDUMP   ' is read")
        if sig[:4] == ELF_MAGIC and src.flattened:
            raise UnsupportedDumpError(self.path, 0, "flattened stream holds an ELF core (makedumpfile -E -F), "
                                                     "not a kdump-compressed file; reassemble it with makedumpfile -R")
        if sig != KDUMP_SIGNATURE:
            found = "an ELF core" if sig[:4] == ELF_MAGIC else repr(sig)
            raise self._err(0, f"expected signature 'KDUMP   ', found {found}")
        if len(head) < DISK_DUMP_HEADER_SIZE:
            raise self._err(len(head), f"truncated header: the kdump header needs {DISK_DUMP_HEADER_SIZE} bytes"
                                       f" but the {where} holds {len(head)}")

        hdr = DiskDumpHeader.unpack(head)
        version = hdr.header_version
        if not 1 <= version <= 15:
            if 1 <= int.from_bytes(head[HDR_VERSION_OFF:HDR_VERSION_OFF + 4], "big", signed=True) <= 15:
                raise UnsupportedDumpError(self.path, HDR_VERSION_OFF,
                                           "big-endian kdump header; only little-endian dumps are read")
            raise self._err(HDR_VERSION_OFF, f"header_version {version}; expected 1 to {MAX_KNOWN_HEADER_VERSION}")
        warnings: list[str] = []
        if version > MAX_KNOWN_HEADER_VERSION:
            warnings.append(f"header_version {version} is newer than {MAX_KNOWN_HEADER_VERSION}; read as version 6")

        uts = hdr.utsname
        tv_sec, tv_usec = hdr.tv_sec, hdr.tv_usec
        status, block_size, sub_hdr_size, bitmap_blocks = hdr.status, hdr.block_size, hdr.sub_hdr_size, hdr.bitmap_blocks
        current_cpu, nr_cpus = hdr.current_cpu, hdr.nr_cpus

        if not (_pow2(block_size) and MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE):
            bs32 = int.from_bytes(head[BLOCK_SIZE_OFF_32BIT:BLOCK_SIZE_OFF_32BIT + 4], "little", signed=True)
            if _pow2(bs32) and MIN_BLOCK_SIZE <= bs32 <= MAX_BLOCK_SIZE:
                raise UnsupportedDumpError(self.path, BLOCK_SIZE_OFF_32BIT,
                                           "header written by a 32-bit host; only the 64-bit layout is read")
            raise self._err(HDR_TAIL_OFF + 4, f"block_size {block_size}; expected a power of two from "
                                              f"{MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}")
        bs = block_size
        if sub_hdr_size < 1:
            raise self._err(HDR_TAIL_OFF + 8, f"sub_hdr_size {sub_hdr_size}; expected at least 1 block")
        if bitmap_blocks < 2 or bitmap_blocks % 2:
            raise self._err(HDR_TAIL_OFF + 12, f"bitmap_blocks {bitmap_blocks}; expected an even number "
                                               "(two bitmaps of equal size), at least 2")
        bitmap_off = (1 + sub_hdr_size) * bs
        if bitmap_off > fsize:
            raise self._err(HDR_TAIL_OFF + 8, f"header claims {sub_hdr_size} sub-header blocks of {bs} bytes "
                                              f"but the {where} is {fsize} bytes")
        bitmap_len = bitmap_blocks * bs
        if bitmap_off + bitmap_len // 2 > fsize:
            raise self._err(HDR_TAIL_OFF + 12, f"header claims {bitmap_blocks} bitmap blocks ({bitmap_len} bytes "
                                               f"from offset {bitmap_off:#x}) but the {where} is {fsize} bytes")

        # -- sub-header: fields exist according to header_version
        (phys_base, dump_level, split, start_pfn, end_pfn, off_vmci, size_vmci, off_note, size_note,
         off_erase, size_erase, start_pfn_64, end_pfn_64,
         max_mapnr_64) = KdumpSubHeader.unpack(src.read(bs, KDUMP_SUB_HEADER_SIZE))
        v = min(version, MAX_KNOWN_HEADER_VERSION)
        max_mapnr = max_mapnr_64 if v >= 6 and max_mapnr_64 else hdr.max_mapnr
        if v < 2:
            split = 0
        if v >= 6 and split:
            start_pfn, end_pfn = start_pfn_64, end_pfn_64
        if v < 3:
            off_vmci = size_vmci = 0
        if v < 4:
            off_note = size_note = 0
        if v < 5:
            off_erase = size_erase = 0

        if max_mapnr == 0:
            raise self._err(HDR_TAIL_OFF + 16, "max_mapnr 0; expected at least one page frame")
        bitmap_bits = bitmap_len // 2 * 8
        if max_mapnr > bitmap_bits:
            warnings.append(f"max_mapnr {max_mapnr} exceeds the {bitmap_bits} pages the bitmaps cover; "
                            "pages above are treated as holes")
            max_mapnr = bitmap_bits
        # The 2nd bitmap is needed up to max_mapnr only: makedumpfile leaves the padding at the
        # end of the bitmap blocks unwritten, so a file may end a few bytes early.
        half = bitmap_len // 2
        nbytes = (max_mapnr + 7) // 8
        if bitmap_off + half + nbytes > fsize:
            raise self._err(bitmap_off + half, f"truncated 2nd bitmap: {max_mapnr} pages need {nbytes} bytes from "
                                               f"offset {bitmap_off + half:#x} but the {where} is {fsize} bytes")
        if split:
            if not start_pfn <= end_pfn <= max_mapnr:
                raise self._err(bs + 16, f"split part claims pfns [{start_pfn:#x}, {end_pfn:#x}); expected "
                                         f"start <= end <= max_mapnr {max_mapnr:#x}")
        else:
            start_pfn, end_pfn = 0, max_mapnr
        self.max_mapnr = max_mapnr
        self.start_pfn, self.end_pfn = start_pfn, end_pfn
        self.split = bool(split)

        # -- notes and VMCOREINFO
        if size_note:
            note_data = self._region(off_note, size_note, "ELF notes", bs + 48)
            self.notes.extend(parse_notes(note_data, off_note, path=self.path))
        if size_vmci and not self.notes_named("VMCOREINFO"):
            self.notes.append(Note("VMCOREINFO", 0, self._region(off_vmci, size_vmci, "VMCOREINFO", bs + 32)))
        if size_erase:
            self._region_check(off_erase, size_erase, "eraseinfo", bs + 64, fatal=False, warnings=warnings)
        self._erase = (off_erase, size_erase)

        # -- bitmaps and the rank index. Bits past max_mapnr are never consulted: bit tests
        # check pfn < max_mapnr first and ranks are masked below the pfn. The bitmaps are
        # looked at where they lie (a view of the file's mapping, no copy) and scanned once
        # each in bounded pieces (holes of a sparse file skipped): what a header claims
        # costs address space, never memory.
        bm1 = src.view(bitmap_off, nbytes)
        bm2 = src.view(bitmap_off + half, nbytes)
        if len(bm1) < nbytes or len(bm2) < nbytes:
            raise self._err(bitmap_off, "the bitmaps are not all in the flattened stream")
        blk = self._rank_blk = rank_block_bytes(nbytes)
        nblk = nbytes // blk
        # Prefix sums of set bits per block; a block never scanned (a hole) holds none.
        step = max(blk, (8 << 20) // blk * blk)
        self._bm1 = bm1
        self._bm2 = bm2
        self._bm_off = (bitmap_off, bitmap_off + half)
        self._prefix = array("q")
        if not _use_numpy(nbytes):
            self._prefix.extend(rank_counts_pure(((pos - (bitmap_off + half), raw)
                                                  for pos, raw in src.scan(bitmap_off + half, nbytes, step)),
                                                 nbytes, blk))
        else:
            np = _np()
            counts = np.zeros(nblk + 1, dtype=np.int64)
            for pos, raw in src.scan(bitmap_off + half, nbytes, step):
                rel = pos - (bitmap_off + half)
                a = np.frombuffer(raw, dtype=np.uint8)
                # Pieces start at any byte (SEEK_DATA): split at block edges before counting.
                cut = min(len(a), -rel % blk)
                if cut:
                    counts[rel // blk] += int(np.bitwise_count(a[:cut]).sum(dtype=np.int64))
                body = a[cut:]
                whole = len(body) // blk
                b0 = (rel + cut) // blk
                if whole:
                    counts[b0:b0 + whole] += np.bitwise_count(body[:whole * blk]).reshape(whole, blk).sum(
                        axis=1, dtype=np.int64)
                tail = body[whole * blk:]
                if len(tail):
                    counts[b0 + whole] += int(np.bitwise_count(tail).sum(dtype=np.int64))
            prefix = np.zeros(nblk + 2, dtype=np.int64)
            np.cumsum(counts, out=prefix[1:])
            self._prefix.frombytes(memoryview(prefix).cast("B"))
            del counts, prefix
        self._rank_base = self._rank(start_pfn)
        self.dumpable_pages = self._rank(end_pfn) - self._rank_base
        ranges = None if _use_numpy(nbytes) else runs_of_chunks_pure(
            ((pos - bitmap_off, raw) for pos, raw in src.scan(bitmap_off, nbytes)), max_mapnr)
        if ranges is None:
            ranges = runs_of_chunks(((pos - bitmap_off, raw) for pos, raw in src.scan(bitmap_off, nbytes)), max_mapnr)
        if not ranges:
            # A header may claim any number of pages over a sparse file; a dump whose 1st
            # bitmap marks none describes no memory at all: nothing to read, nothing to check.
            raise self._err(bitmap_off, f"the 1st bitmap ({nbytes} bytes from offset {bitmap_off:#x}, "
                                        f"{max_mapnr} pages) marks no page: the dump describes no memory")
        self._set_ranges([MemRange(a * bs, b * bs) for a, b in ranges])

        self._pdesc_off = (1 + sub_hdr_size + bitmap_blocks) * bs
        data_off = self._pdesc_off + self.dumpable_pages * PAGE_DESC_SIZE
        # makedumpfile and QEMU store one zero page at the start of the data area and point
        # every all-zero page's descriptor at it.
        self._zero_off = data_off if src.read(data_off, bs) == bytes(bs) else None
        self._zero_page = bytes(bs)
        self._incomplete = bool(status & DUMP_DH_COMPRESSED_INCOMPLETE)
        if self.dumpable_pages and self._pdesc_off + self.dumpable_pages * PAGE_DESC_SIZE > fsize:
            warnings.append("page descriptor table runs past the end of the file (truncated dump)")

        seen = self._sample_codecs()
        compressed = sorted(c for c in seen if c in CODEC_FLAGS) or sorted(
            codec_names(status)) or ["none"]
        info = self.info
        info.format = "kdump"
        info.codec = ",".join(compressed)
        info.machine = uts["machine"] or None
        info.page_size = bs
        info.dump_level = dump_level
        info.incomplete = self._incomplete
        info.header_version = version
        info.extra.update({
            "utsname": uts,
            "timestamp": tv_sec,
            "timestamp_usec": tv_usec,
            "status": status,
            "excluded_vmemmap": bool(status & DUMP_DH_EXCLUDED_VMEMMAP),
            "nr_cpus": nr_cpus,
            "current_cpu": current_cpu,
            "max_mapnr": max_mapnr,
            "block_size": bs,
            "sub_hdr_size": sub_hdr_size,
            "bitmap_blocks": bitmap_blocks,
            "total_ram_blocks": hdr.total_ram_blocks,
            "device_blocks": hdr.device_blocks,
            "written_blocks": hdr.written_blocks,
            "phys_base": phys_base,
            "split": self.split,
            "start_pfn": start_pfn,
            "end_pfn": end_pfn,
            "dumpable_pages": self.dumpable_pages,
            "page_codecs": sorted(seen),
            "flattened": src.flattened,
            "eraseinfo_size": size_erase,
            "warnings": warnings,
        })

    def _region_check(self, off: int, size: int, what: str, field_off: int, *, fatal: bool = True,
                      warnings: list[str] | None = None) -> bool:
        if off <= 0 or off + size > self._src.size:
            msg = (f"sub-header places {what} at [{off:#x}, {off + size:#x}) but the file is "
                   f"{self._src.size} bytes")
            if fatal:
                raise self._err(field_off, msg)
            if warnings is not None:
                warnings.append(msg)
            return False
        return True

    def _region(self, off: int, size: int, what: str, field_off: int) -> bytes:
        self._region_check(off, size, what, field_off)
        data = self._src.read(off, size)
        if len(data) != size:  # a flattened stream without this part
            raise self._err(off, f"{what} at [{off:#x}, {off + size:#x}) is not in the flattened stream")
        return data

    def _sample_codecs(self) -> set[str]:
        """Codecs named by an evenly spaced sample of descriptors (all of them in small dumps)."""
        n = self.dumpable_pages
        if n == 0:
            return set()
        step = max(1, n // CODEC_SAMPLE)
        seen: set[str] = set()
        for i in range(0, n, step):
            raw = self._src.read(self._pdesc_off + i * PAGE_DESC_SIZE, PAGE_DESC_HEAD.size)
            if len(raw) < PAGE_DESC_HEAD.size:
                break
            off, size, flags = PAGE_DESC_HEAD.unpack(raw)
            if off > 0 and size:
                seen.add(codec_name(flags))
        return seen

    # -- page lookup -------------------------------------------------------------------------
    def _rank(self, pfn: int) -> int:
        """Set bits of the 2nd bitmap below `pfn` (pfn <= max_mapnr)."""
        bits = self._rank_blk * 8
        blk, b = divmod(pfn, bits)
        r = self._prefix[blk]
        if b:
            chunk = self._bm2[blk * self._rank_blk:blk * self._rank_blk + (b + 7) // 8]
            r += (int.from_bytes(chunk, "little") & ((1 << b) - 1)).bit_count()
        return r

    def _in_bm1(self, pfn: int) -> bool:
        return 0 <= pfn < self.max_mapnr and (self._bm1[pfn >> 3] >> (pfn & 7)) & 1 == 1

    def _in_bm2(self, pfn: int) -> bool:
        return (self._bm2[pfn >> 3] >> (pfn & 7)) & 1 == 1

    def _descriptor(self, pfn: int, paddr: int) -> tuple[int, int, int]:
        """(offset, size, flags) of a dumped page's descriptor; raises, naming `paddr` (the
        first requested address in the page), for a page the file does not hold."""
        if not self._in_bm1(pfn):
            raise PageNotInDumpError(paddr, "not in the dump's memory bitmap")
        if not self.start_pfn <= pfn < self.end_pfn:
            raise PageMissingError(paddr, f"pfn {pfn:#x} belongs to another file of the split set "
                                          f"(this one holds [{self.start_pfn:#x}, {self.end_pfn:#x}))")
        if not self._in_bm2(pfn):
            raise PageExcludedError(paddr, f"excluded by makedumpfile (dump level {self.info.dump_level})")
        pos = self._pdesc_off + (self._rank(pfn) - self._rank_base) * PAGE_DESC_SIZE
        raw = self._src.read(pos, PAGE_DESC_SIZE)
        if len(raw) < PAGE_DESC_SIZE:
            raise PageMissingError(paddr, f"page descriptor at file offset {pos:#x} is beyond the end of the file")
        off, size, flags, _ = PAGE_DESC.unpack(raw)
        if off == 0 or size == 0:
            why = "the dump is marked incomplete" if self._incomplete else "descriptor is empty"
            raise PageMissingError(paddr, f"page data was never written ({why})")
        if off < 0 or size > 2 * self.page_size:
            raise CorruptPageError(paddr, f"page descriptor at {pos:#x} claims offset {off:#x} size {size}")
        return off, size, flags

    def _page(self, pfn: int, paddr: int) -> bytes:
        """The decoded page `pfn`; errors name `paddr`, an address inside it."""
        cache = self._cache
        data = cache.get(pfn)
        if data is not None:
            cache.move_to_end(pfn)
            return data
        off, size, flags = self._descriptor(pfn, paddr)
        ps = self.page_size
        if off == self._zero_off and size == ps and not flags & CODEC_MASK:
            data = self._zero_page
        else:
            raw = self._src.read(off, size)
            if len(raw) < size:
                raise PageMissingError(paddr, f"page data at file offset {off:#x} (+{size}) is beyond the "
                                                 "end of the file" if off + size > self._src.size else
                                       f"page data at file offset {off:#x} is not in the flattened stream")
            data = decompress_page(flags, raw, ps, paddr=paddr)
        cache[pfn] = data
        if len(cache) > self._cache_pages:
            cache.popitem(last=False)
        return data

    def _read_in_range(self, paddr: int, size: int) -> bytes:
        ps = self.page_size
        pfn, off = divmod(paddr, ps)
        if off + size <= ps:
            page = self._page(pfn, paddr)
            return page if size == ps else page[off:off + size]
        parts = []
        while size > 0:
            n = min(ps - off, size)
            page = self._page(pfn, paddr)
            parts.append(page if n == ps else page[off:off + n])
            size -= n
            paddr += n
            pfn += 1
            off = 0
        return b"".join(parts)

    def page_state(self, pfn: int) -> PageState:
        if not self._in_bm1(pfn):
            return PageState.HOLE
        paddr = pfn * self.page_size
        try:
            off, size, flags = self._descriptor(pfn, paddr)
            if off == self._zero_off and size == self.page_size and not flags & CODEC_MASK:
                return PageState.ZERO
            self._page(pfn, paddr)
        except PageExcludedError:
            return PageState.EXCLUDED
        except PageMissingError:
            return PageState.MISSING
        except CorruptPageError:
            return PageState.CORRUPT
        return PageState.PRESENT

    def bitmap_pieces(self, lo: int = 0, hi: int | None = None, step: int = 8 << 20
                      ) -> "Iterator[tuple[int, np.ndarray, np.ndarray]]":
        """(first pfn, 1st bitmap bytes, 2nd bitmap bytes) for the parts of pfns [lo, hi)
        where either bitmap may have a set bit, `step` bytes at most at a time, in order:
        pfns not covered are clear in both (a hole of a sparse file). Each piece is a view of
        the file, dropped from memory once the caller moves on — a pass over bitmaps however
        large costs `step`, not the bitmaps."""
        hi = self.max_mapnr if hi is None else min(hi, self.max_mapnr)
        if hi <= lo:
            return
        a0, b0 = lo >> 3, (hi + 7) >> 3
        spans = sorted([(a - self._bm_off[0], b - self._bm_off[0]) for a, b in self._src.extents(self._bm_off[0] + a0, b0 - a0)]
                       + [(a - self._bm_off[1], b - self._bm_off[1]) for a, b in self._src.extents(self._bm_off[1] + a0, b0 - a0)])
        np = _np()
        bm1 = np.frombuffer(self._bm1, dtype=np.uint8)
        bm2 = np.frombuffer(self._bm2, dtype=np.uint8)
        at = a0
        for a, b in spans:
            a = max(a, at)
            while a < b:
                e = min(b, a + step)
                yield a * 8, bm1[a:e], bm2[a:e]
                for k in (0, 1):
                    self._src.forget(self._bm_off[k] + a, e - a)
                a = at = e

    def dumped_pfns(self) -> np.ndarray:
        """Pfns whose data this file holds (set bits of the 2nd bitmap within its pfn range)."""
        np = _np()
        out = []
        for first, _, b2 in self.bitmap_pieces(self.start_pfn, self.end_pfn, 1 << 20):
            p = np.flatnonzero(np.unpackbits(b2, bitorder="little")) + first
            out.append(p[(p >= self.start_pfn) & (p < self.end_pfn)])
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def eraseinfo(self) -> bytes | None:
        """The makedumpfile --config erase record, if the dump has one and it is intact."""
        off, size = self._erase
        if not size or off <= 0 or off + size > self._src.size:
            return None
        data = self._src.read(off, size)
        return data if len(data) == size else None

    def close(self) -> None:
        self._cache.clear()
        # The bitmap views go first: the file's mapping cannot close while they are held.
        for name in ("_bm1", "_bm2"):
            v = getattr(self, name, None)
            if isinstance(v, memoryview):
                with contextlib.suppress(BufferError):
                    v.release()
            setattr(self, name, b"")
        self._src.close()


# -- --split sets ---------------------------------------------------------------------------
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


def open_kdump(paths: list[str] | str) -> PhysicalMemory:
    """Open a kdump-compressed dump: one file (plain or flattened), or the files of a
    makedumpfile --split set (in any order)."""
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise ValueError("no kdump file given")
    if len(paths) == 1:
        return KdumpFile(paths[0])
    return KdumpSplitSet(list(paths))


# -- the registry's entries ----------------------------------------------------------------------
# The checks load only when used, as for the other formats.
def _check(rep: VerifyReport, phys: PhysicalMemory, read_data: bool, threads: int,
           progress: Progress | None) -> None:
    from . import kdump_checks
    from .checks import count_notes

    if isinstance(phys, KdumpSplitSet):
        kdump_checks.check_split(rep, phys, read_data, threads, progress)
    elif isinstance(phys, KdumpFile):
        kdump_checks.check_kdump(rep, phys, read_data, threads, progress)
        if phys.split:
            rep.notes.append("this file is one part of a --split set: pfns outside "
                             f"[{phys.start_pfn:#x}, {phys.end_pfn:#x}) are in the other parts")
    count_notes(rep, phys)


def _damage_hint(phys: PhysicalMemory) -> str | None:
    from . import kdump_checks

    if isinstance(phys, KdumpSplitSet):
        return kdump_checks.damage_hint(phys.parts)
    return kdump_checks.damage_hint([phys]) if isinstance(phys, KdumpFile) else None


def _probe(head: bytes) -> bool:
    # The old diskdump signature opens too, to be refused with UnsupportedDumpError.
    return head[:8] in (KDUMP_SIGNATURE, DISKDUMP_SIGNATURE)


def _probe_flattened(head: bytes) -> bool:
    # The signature alone: FlatFile explains what is wrong with the rest of the header.
    return head[:len(FLAT_SIGNATURE)] == FLAT_SIGNATURE


KDUMP = DumpFormat("kdump", "'KDUMP   '", _probe, open_kdump, split_family="kdump",
                   readers=(KdumpFile, KdumpSplitSet), check=_check, damage_hint=_damage_hint)
# A kdump file written as a flattened stream (makedumpfile -F) is read in place.
FLATTENED = DumpFormat("flattened", "'makedumpfile'", _probe_flattened, open_kdump, split_family="kdump",
                       readers=(KdumpFile, KdumpSplitSet), check=_check, damage_hint=_damage_hint)
