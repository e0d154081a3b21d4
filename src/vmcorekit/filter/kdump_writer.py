"""Writing kdump-compressed files ("KDUMP   ", header version 6) as makedumpfile does.

    block 0        disk_dump_header
    block 1..      kdump_sub_header, the ELF notes (VMCOREINFO inside them)
    next           1st bitmap (pages that exist), 2nd bitmap (pages dumped), block-aligned
    next           one page descriptor per set bit of the 2nd bitmap within [start, end)
    next           page data: the shared zero page first (dump level with bit 1), then pages
    after data     eraseinfo carried over from a re-filtered input, if any

The struct layouts are the reader's (dump/kdump_layout.py), so what is written is what is read.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..dump.codecs import CODEC_FLAGS
from ..dump.kdump_layout import DESC_DTYPE, KDUMP_SIGNATURE, PAGE_DESC, SUB_HEADER, DiskDumpHeader, KdumpSubHeader
from .bitmaps import PfnBitmap
from .compress import StoredBatch
from .sink import Sink

HEADER_VERSION = 6
UINT_MAX = 0xFFFFFFFF


@dataclass
class KdumpHeaderInfo:
    """What the headers say besides the layout."""

    utsname: dict[str, str]
    timestamp: tuple[int, int] = (0, 0)
    nr_cpus: int = 1
    current_cpu: int = 0
    phys_base: int = 0
    dump_level: int = 0
    notes: bytes = b""
    vmcoreinfo: tuple[int, int] | None = None  # (offset, size) of the VMCOREINFO text within notes
    eraseinfo: bytes = b""
    extra_status: int = 0


def disk_dump_header(info: KdumpHeaderInfo, *, codec: str, block_size: int, sub_hdr_size: int,
                     bitmap_blocks: int, max_mapnr: int) -> bytes:
    status = CODEC_FLAGS.get(codec, 0) | info.extra_status
    return DiskDumpHeader(KDUMP_SIGNATURE, HEADER_VERSION, info.utsname, *info.timestamp, status=status,
                          block_size=block_size, sub_hdr_size=sub_hdr_size, bitmap_blocks=bitmap_blocks,
                          max_mapnr=min(max_mapnr, UINT_MAX), total_ram_blocks=0, device_blocks=0,
                          written_blocks=0, current_cpu=info.current_cpu, nr_cpus=info.nr_cpus).pack()


@dataclass
class KdumpLayout:
    block_size: int
    max_mapnr: int
    sub_hdr_size: int
    bitmap_blocks: int
    start_pfn: int
    end_pfn: int
    ndesc: int
    zero_page: bool
    split: bool
    bitmap_off: int = field(init=False)
    desc_off: int = field(init=False)
    data_off: int = field(init=False)

    def __post_init__(self) -> None:
        bs = self.block_size
        self.bitmap_off = (1 + self.sub_hdr_size) * bs
        self.desc_off = self.bitmap_off + self.bitmap_blocks * bs
        self.data_off = self.desc_off + self.ndesc * PAGE_DESC.size


def plan_layout(info: KdumpHeaderInfo, block_size: int, bm2: PfnBitmap, max_mapnr: int,
                start_pfn: int = 0, end_pfn: int | None = None, split: bool = False) -> KdumpLayout:
    end = max_mapnr if end_pfn is None else end_pfn
    sub = -(-(SUB_HEADER.size + len(info.notes)) // block_size)
    half_blocks = -(-(-(-max_mapnr // 8)) // block_size)
    return KdumpLayout(block_size, max_mapnr, max(1, sub), max(2, 2 * half_blocks), start_pfn, end,
                       bm2.count(start_pfn, end), bool(info.dump_level & 1), split)


class KdumpWriter:
    """One kdump-compressed file. Call `begin()`, then `add_batch()` with the pages of
    [start_pfn, end_pfn) in pfn order, then `end()`."""

    def __init__(self, sink: Sink, info: KdumpHeaderInfo, layout: KdumpLayout, codec: str,
                 bm1: PfnBitmap, bm2: PfnBitmap, *, flush_bytes: int = 1 << 22) -> None:
        self.sink = sink
        self.info = info
        self.layout = layout
        self.codec = codec
        self.bm1 = bm1
        self.bm2 = bm2
        self.flush_bytes = flush_bytes
        self._desc = bytearray()
        self._desc_pos = layout.desc_off
        self._data: list[bytes] = []
        self._data_len = 0
        self._data_pos = layout.data_off
        self._next_data = layout.data_off  # file offset the next stored page gets
        self.pages = 0
        self.zero_off = layout.data_off if layout.zero_page else None

    def _sub_header(self) -> bytes:
        lay, info, bs = self.layout, self.info, self.layout.block_size
        off_note = bs + SUB_HEADER.size if info.notes else 0
        off_vmci, size_vmci = 0, 0
        if info.vmcoreinfo is not None and info.notes:
            off_vmci, size_vmci = off_note + info.vmcoreinfo[0], info.vmcoreinfo[1]
        off_erase = self._erase_off if info.eraseinfo else 0
        start = lay.start_pfn if lay.split else 0
        end = lay.end_pfn if lay.split else 0
        return KdumpSubHeader(info.phys_base & 0xFFFFFFFFFFFFFFFF, info.dump_level, int(lay.split),
                              min(start, UINT_MAX), min(end, UINT_MAX), off_vmci, size_vmci,
                              off_note, len(info.notes), off_erase, len(info.eraseinfo),
                              start, end, lay.max_mapnr).pack()

    def begin(self) -> None:
        lay, bs = self.layout, self.layout.block_size
        self._erase_off = 0
        self.sink.write_at(0, disk_dump_header(self.info, codec=self.codec, block_size=bs,
                                               sub_hdr_size=lay.sub_hdr_size, bitmap_blocks=lay.bitmap_blocks,
                                               max_mapnr=lay.max_mapnr).ljust(bs, b"\0"))
        sub = self._sub_header() + self.info.notes
        self.sink.write_at(bs, sub.ljust(lay.sub_hdr_size * bs, b"\0"))
        half = lay.bitmap_blocks * bs // 2
        self._write_bitmap(lay.bitmap_off, self.bm1, half)
        self._write_bitmap(lay.bitmap_off + half, self.bm2, half)
        if lay.zero_page:
            self._store(bytes(bs))

    def _write_bitmap(self, off: int, bm: PfnBitmap, nbytes: int) -> None:
        step = 1 << 22
        for i, piece in enumerate(bm.chunks(nbytes, step)):
            self.sink.write_at(off + i * step, piece)

    def _store(self, data: bytes) -> int:
        off = self._next_data
        self._data.append(data)
        self._data_len += len(data)
        self._next_data += len(data)
        return off

    def add_batch(self, stored: StoredBatch, zero: np.ndarray, missing: np.ndarray) -> None:
        """Append descriptors (and data) for consecutive dumped pages, in pfn order. Rows set in
        `zero` point at the shared zero page, rows set in `missing` (unreadable in the input)
        get an empty descriptor, which readers report as missing; every other row is stored,
        in order, as `stored` says (its flags, sizes and bytes)."""
        n = len(zero)
        desc = np.zeros(n, dtype=DESC_DTYPE)
        shared = zero & ~missing if self.zero_off is not None else np.zeros(n, dtype=bool)
        own = ~(shared | missing)
        if int(np.count_nonzero(own)) != len(stored.sizes):
            raise AssertionError(f"{len(stored.sizes)} stored pages for {int(np.count_nonzero(own))} descriptors")
        if shared.any():
            desc["offset"][shared] = self.zero_off
            desc["size"][shared] = self.layout.block_size
        if len(stored.sizes):
            sizes = stored.sizes.astype(np.int64)
            desc["offset"][own] = self._next_data + np.cumsum(sizes) - sizes
            desc["size"][own] = stored.sizes
            desc["flags"][own] = stored.flags
            self._store(stored.data)
        self._desc += desc.tobytes()
        self.pages += n
        if len(self._desc) + self._data_len >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        if self._desc:
            self.sink.write_at(self._desc_pos, bytes(self._desc))
            self._desc_pos += len(self._desc)
            self._desc = bytearray()
        if self._data:
            self.sink.write_at(self._data_pos, b"".join(self._data))
            self._data_pos += self._data_len
            self._data, self._data_len = [], 0

    def end(self) -> int:
        """Write what is buffered and the eraseinfo; returns the file size."""
        self.flush()
        if self.pages != self.layout.ndesc:
            raise AssertionError(f"wrote {self.pages} page descriptors, planned {self.layout.ndesc}")
        if self.info.eraseinfo:
            self._erase_off = self._data_pos
            self.sink.write_at(self._erase_off, self.info.eraseinfo)
            # The sub-header learns where eraseinfo went (makedumpfile rewrites it likewise).
            self.sink.write_at(self.layout.block_size, self._sub_header())
        self.sink.finish()
        return self.sink.size
