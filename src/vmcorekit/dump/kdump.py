"""kdump-compressed dumps ("KDUMP   ", makedumpfile -c/-l/-p/-z, QEMU kdump-*), plain or
flattened, header versions 1 to 6.

Layout (block = header.block_size = page size):
  block 0             disk_dump_header (C struct, natural alignment of a 64-bit host)
  block 1 ..          kdump_sub_header, then the ELF notes and VMCOREINFO it points at
  next bitmap_blocks  1st bitmap (pages that exist), then 2nd bitmap (pages dumped)
  then                page descriptors, one per set bit of the 2nd bitmap, in pfn order
  then                page data (the shared zero page first, as makedumpfile and QEMU write it)

A pfn's descriptor index is its rank among the set bits of the 2nd bitmap. The rank comes from
a prefix sum of popcounts per 512-bit block built once with numpy, so a lookup is one array
index and one popcount of at most 512 bits.
"""
from __future__ import annotations

import struct
from array import array
from collections import OrderedDict

import numpy as np

from ..errors import (
    CorruptPageError,
    DumpFormatError,
    PageExcludedError,
    PageMissingError,
    PageNotInDumpError,
    UnsupportedDumpError,
)
from .base import DumpInfo, MemRange, Note, PageState, PhysicalMemory, parse_notes
from .codecs import (
    CODEC_FLAGS,
    CODEC_MASK,
    DUMP_DH_COMPRESSED_INCOMPLETE,
    DUMP_DH_EXCLUDED_VMEMMAP,
    codec_name,
    codec_names,
    decompress_page,
)
from .flat import FLAT_HEADER_SIZE, ByteSource, is_flattened, open_source

KDUMP_SIGNATURE = b"KDUMP   "
DISKDUMP_SIGNATURE = b"DISKDUMP"
MAX_KNOWN_HEADER_VERSION = 6

# disk_dump_header after signature[8]: header_version, utsname (6x65), pad to 8, timeval
# {tv_sec, tv_usec}, status, block_size, sub_hdr_size, bitmap_blocks, max_mapnr,
# total_ram_blocks, device_blocks, written_blocks, current_cpu, nr_cpus; tasks[] follow.
_HDR_VERSION_OFF = 8
_UTS_OFF = 12
_UTS_FIELDS = ("sysname", "nodename", "release", "version", "machine", "domainname")
_TIMEVAL_OFF = 408
_HDR_TAIL_OFF = 424
_HDR_TAIL = "<IiiIIIIIIi"
DISK_DUMP_HEADER_SIZE = 464
# Where block_size would sit if a 32-bit host wrote the header (4-byte timeval fields).
_BLOCK_SIZE_OFF_32BIT = 416

# kdump_sub_header: phys_base, dump_level, split, start_pfn, end_pfn (v2), offset/size of
# VMCOREINFO (v3), of the ELF notes (v4), of eraseinfo (v5), start/end_pfn_64, max_mapnr_64 (v6).
_SUB = "<QiiQQqQqQqQQQQ"
KDUMP_SUB_HEADER_SIZE = 104

_DESC = "<qIIQ"  # page_desc: offset, size, flags, page_flags
_DESC_HEAD = "<qII"
PAGE_DESC_SIZE = 24

MIN_BLOCK_SIZE = 512
MAX_BLOCK_SIZE = 1 << 18  # 256 KiB pages exist (hexagon, ppc44x); anything larger is corrupt
CODEC_SAMPLE = 512  # descriptors read at open to name the codecs in use
DEFAULT_CACHE_PAGES = 1024
_RANK_BLOCK = 64  # bytes of 2nd bitmap per rank-index entry


def is_kdump(head: bytes) -> bool:
    """True if `head` starts a plain kdump-compressed file."""
    return head[:8] == KDUMP_SIGNATURE


def flattened_head(head: bytes) -> bytes | None:
    """For the start of a flattened stream, the first bytes of the file it describes (from
    the first record, which writers place at offset 0); None if `head` does not show them."""
    if not is_flattened(head) or len(head) < FLAT_HEADER_SIZE + 16:
        return None
    off, size = struct.unpack_from(">qq", head, FLAT_HEADER_SIZE)
    if off != 0 or size <= 0:
        return None
    return head[FLAT_HEADER_SIZE + 16:FLAT_HEADER_SIZE + 16 + size]


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "replace")


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def bit_runs(bitmap: np.ndarray, nbits: int, chunk_bytes: int = 1 << 20) -> list[tuple[int, int]]:
    """[start, end) runs of set bits among the first `nbits` bits of a little-endian bitmap
    (bit i is bit i%8 of byte i//8). Works chunk by chunk so memory stays bounded, with
    shortcuts for all-clear and all-set chunks."""
    edges: list[np.ndarray] = []
    prev = 0
    nbytes = (nbits + 7) // 8
    for base in range(0, nbytes, chunk_bytes):
        chunk = bitmap[base:base + chunk_bytes]
        first = base * 8
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
    flat = np.concatenate(edges) if edges else np.zeros(0, dtype=np.int64)
    flat = flat[flat < nbits]
    if len(flat) % 2:
        flat = np.append(flat, nbits)
    return list(zip(flat[0::2].tolist(), flat[1::2].tolist()))


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
        sig = head[:8]
        if sig == DISKDUMP_SIGNATURE:
            raise UnsupportedDumpError(self.path, 0, "old 'DISKDUMP' format (diskdump patches); only 'KDUMP   ' is read")
        if sig[:4] == b"\x7fELF" and src.flattened:
            raise UnsupportedDumpError(self.path, 0, "flattened stream holds an ELF core (makedumpfile -E -F), "
                                                     "not a kdump-compressed file; reassemble it with makedumpfile -R")
        if sig != KDUMP_SIGNATURE:
            found = "an ELF core" if sig[:4] == b"\x7fELF" else repr(sig)
            raise self._err(0, f"expected signature 'KDUMP   ', found {found}")
        if len(head) < DISK_DUMP_HEADER_SIZE:
            raise self._err(len(head), f"truncated header: the kdump header needs {DISK_DUMP_HEADER_SIZE} bytes"
                                       f" but the {where} holds {len(head)}")

        version = struct.unpack_from("<i", head, _HDR_VERSION_OFF)[0]
        if not 1 <= version <= 15:
            if 1 <= struct.unpack_from(">i", head, _HDR_VERSION_OFF)[0] <= 15:
                raise UnsupportedDumpError(self.path, _HDR_VERSION_OFF,
                                           "big-endian kdump header; only little-endian dumps are read")
            raise self._err(_HDR_VERSION_OFF, f"header_version {version}; expected 1 to {MAX_KNOWN_HEADER_VERSION}")
        warnings: list[str] = []
        if version > MAX_KNOWN_HEADER_VERSION:
            warnings.append(f"header_version {version} is newer than {MAX_KNOWN_HEADER_VERSION}; read as version 6")

        uts = {name: _cstr(head[_UTS_OFF + 65 * i:_UTS_OFF + 65 * (i + 1)]) for i, name in enumerate(_UTS_FIELDS)}
        tv_sec, tv_usec = struct.unpack_from("<qq", head, _TIMEVAL_OFF)
        (status, block_size, sub_hdr_size, bitmap_blocks, max_mapnr32, total_ram_blocks,
         device_blocks, written_blocks, current_cpu, nr_cpus) = struct.unpack_from(_HDR_TAIL, head, _HDR_TAIL_OFF)

        if not (_pow2(block_size) and MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE):
            bs32 = struct.unpack_from("<i", head, _BLOCK_SIZE_OFF_32BIT)[0]
            if _pow2(bs32) and MIN_BLOCK_SIZE <= bs32 <= MAX_BLOCK_SIZE:
                raise UnsupportedDumpError(self.path, _BLOCK_SIZE_OFF_32BIT,
                                           "header written by a 32-bit host; only the 64-bit layout is read")
            raise self._err(_HDR_TAIL_OFF + 4, f"block_size {block_size}; expected a power of two from "
                                               f"{MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}")
        bs = block_size
        if sub_hdr_size < 1:
            raise self._err(_HDR_TAIL_OFF + 8, f"sub_hdr_size {sub_hdr_size}; expected at least 1 block")
        if bitmap_blocks < 2 or bitmap_blocks % 2:
            raise self._err(_HDR_TAIL_OFF + 12, f"bitmap_blocks {bitmap_blocks}; expected an even number "
                                                "(two bitmaps of equal size), at least 2")
        bitmap_off = (1 + sub_hdr_size) * bs
        if bitmap_off > fsize:
            raise self._err(_HDR_TAIL_OFF + 8, f"header claims {sub_hdr_size} sub-header blocks of {bs} bytes "
                                               f"but the {where} is {fsize} bytes")
        bitmap_len = bitmap_blocks * bs
        if bitmap_off + bitmap_len // 2 > fsize:
            raise self._err(_HDR_TAIL_OFF + 12, f"header claims {bitmap_blocks} bitmap blocks ({bitmap_len} bytes "
                                                f"from offset {bitmap_off:#x}) but the {where} is {fsize} bytes")

        # -- sub-header: fields exist according to header_version
        sub = src.read(bs, KDUMP_SUB_HEADER_SIZE).ljust(KDUMP_SUB_HEADER_SIZE, b"\0")
        (phys_base, dump_level, split, start_pfn, end_pfn, off_vmci, size_vmci, off_note, size_note,
         off_erase, size_erase, start_pfn_64, end_pfn_64, max_mapnr_64) = struct.unpack_from(_SUB, sub, 0)
        v = min(version, MAX_KNOWN_HEADER_VERSION)
        max_mapnr = max_mapnr_64 if v >= 6 and max_mapnr_64 else max_mapnr32
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
            raise self._err(_HDR_TAIL_OFF + 16, "max_mapnr 0; expected at least one page frame")
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
        # check pfn < max_mapnr first and ranks are masked below the pfn.
        bm1 = src.read(bitmap_off, nbytes)
        bm2 = src.read(bitmap_off + half, nbytes)
        if len(bm1) < nbytes or len(bm2) < nbytes:
            raise self._err(bitmap_off, "the bitmaps are not all in the flattened stream")
        # Prefix sums of set bits per 512-bit block: 8 bytes of index per 64 bytes of bitmap.
        nblk = nbytes // _RANK_BLOCK
        counts = np.bitwise_count(np.frombuffer(bm2, dtype="<u8", count=nblk * _RANK_BLOCK // 8))
        prefix = np.zeros(nblk + 2, dtype=np.int64)
        np.cumsum(counts.reshape(nblk, _RANK_BLOCK // 8).sum(axis=1, dtype=np.int64), out=prefix[1:nblk + 1])
        prefix[nblk + 1] = prefix[nblk] + int.from_bytes(bm2[nblk * _RANK_BLOCK:], "little").bit_count()
        self._bm1 = bm1
        self._bm2 = bm2
        self._prefix = array("q")
        self._prefix.frombytes(memoryview(prefix).cast("B"))
        del counts, prefix
        self._rank_base = self._rank(start_pfn)
        self.dumpable_pages = self._rank(end_pfn) - self._rank_base
        self._set_ranges([MemRange(a * bs, b * bs)
                          for a, b in bit_runs(np.frombuffer(bm1, dtype=np.uint8), max_mapnr)])

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
            "total_ram_blocks": total_ram_blocks,
            "device_blocks": device_blocks,
            "written_blocks": written_blocks,
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
            raw = self._src.read(self._pdesc_off + i * PAGE_DESC_SIZE, 16)
            if len(raw) < 16:
                break
            off, size, flags = struct.unpack(_DESC_HEAD, raw)
            if off > 0 and size:
                seen.add(codec_name(flags))
        return seen

    # -- page lookup -------------------------------------------------------------------------
    def _rank(self, pfn: int) -> int:
        """Set bits of the 2nd bitmap below `pfn` (pfn <= max_mapnr)."""
        blk = pfn >> 9
        b = pfn & 511
        r = self._prefix[blk]
        if b:
            chunk = self._bm2[blk * _RANK_BLOCK:blk * _RANK_BLOCK + _RANK_BLOCK]
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
        off, size, flags, _ = struct.unpack(_DESC, raw)
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

    def dumped_pfns(self) -> np.ndarray:
        """Pfns whose data this file holds (set bits of the 2nd bitmap within its pfn range)."""
        bits = np.unpackbits(np.frombuffer(self._bm2, dtype=np.uint8), bitorder="little")[:self.end_pfn]
        return np.flatnonzero(bits[self.start_pfn:]) + self.start_pfn

    def eraseinfo(self) -> bytes | None:
        """The makedumpfile --config erase record, if the dump has one and it is intact."""
        off, size = self._erase
        if not size or off <= 0 or off + size > self._src.size:
            return None
        data = self._src.read(off, size)
        return data if len(data) == size else None

    def close(self) -> None:
        self._cache.clear()
        self._src.close()


def open_kdump(paths: list[str] | str) -> PhysicalMemory:
    """Open a kdump-compressed dump: one file (plain or flattened), or the files of a
    makedumpfile --split set (in any order)."""
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise ValueError("no kdump file given")
    if len(paths) == 1:
        return KdumpFile(paths[0])
    from .split import KdumpSplitSet
    return KdumpSplitSet(list(paths))
