"""kdump-compressed on-disk structures ("KDUMP   ", as makedumpfile and QEMU write them, with
the natural alignment of a 64-bit little-endian host): disk_dump_header, kdump_sub_header and
page_desc. Shared by the reader (dump/kdump.py), its checks and the filter's kdump writer, so
what is written is what is read.

    block 0             disk_dump_header
    block 1 ..          kdump_sub_header, then the ELF notes and VMCOREINFO it points at
    next bitmap_blocks  1st bitmap (pages that exist), then 2nd bitmap (pages dumped)
    then                page descriptors, one per set bit of the 2nd bitmap, in pfn order
    then                page data
"""
from __future__ import annotations

import struct
from typing import Any, NamedTuple

KDUMP_SIGNATURE = b"KDUMP   "
DISKDUMP_SIGNATURE = b"DISKDUMP"  # the older diskdump format: recognised, not read
MAX_KNOWN_HEADER_VERSION = 6

# disk_dump_header after signature[8]: header_version, utsname (6x65), pad to 8, timeval
# {tv_sec, tv_usec}, status, block_size, sub_hdr_size, bitmap_blocks, max_mapnr,
# total_ram_blocks, device_blocks, written_blocks, current_cpu, nr_cpus; tasks[] follow.
HDR_VERSION = struct.Struct("<i")
HDR_VERSION_OFF = 8
UTS_OFF = 12
UTS_LEN = 65
UTS_FIELDS = ("sysname", "nodename", "release", "version", "machine", "domainname")
TIMEVAL = struct.Struct("<qq")
TIMEVAL_OFF = 408
HDR_TAIL = struct.Struct("<IiiIIIIIIi")
HDR_TAIL_OFF = 424
DISK_DUMP_HEADER_SIZE = 464
# Where block_size would sit if a 32-bit host wrote the header (4-byte timeval fields).
BLOCK_SIZE_OFF_32BIT = 416

# kdump_sub_header: phys_base, dump_level, split, start_pfn, end_pfn (v2), offset/size of
# VMCOREINFO (v3), of the ELF notes (v4), of eraseinfo (v5), start/end_pfn_64, max_mapnr_64 (v6).
SUB_HEADER = struct.Struct("<QiiQQqQqQqQQQQ")
KDUMP_SUB_HEADER_SIZE = SUB_HEADER.size

PAGE_DESC = struct.Struct("<qIIQ")  # page_desc: offset, size, flags, page_flags
PAGE_DESC_HEAD = struct.Struct("<qII")  # its first three fields
PAGE_DESC_SIZE = PAGE_DESC.size
assert KDUMP_SUB_HEADER_SIZE == 104
_DESC_FIELDS = [("offset", "<i8"), ("size", "<u4"), ("flags", "<u4"), ("page_flags", "<u8")]


def __getattr__(name: str) -> Any:
    """DESC_DTYPE, page_desc as a numpy record for whole tables at once, made on first use:
    reading a few pages (`dmesg`) never imports numpy."""
    if name == "DESC_DTYPE":
        import numpy as np
        dtype = np.dtype(_DESC_FIELDS)
        assert dtype.itemsize == PAGE_DESC_SIZE
        globals()["DESC_DTYPE"] = dtype
        return dtype
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "replace")


class DiskDumpHeader(NamedTuple):
    """disk_dump_header (the 64-bit layout), without the tasks[] array that follows it."""

    signature: bytes
    header_version: int
    utsname: dict[str, str]
    tv_sec: int
    tv_usec: int
    status: int
    block_size: int
    sub_hdr_size: int
    bitmap_blocks: int
    max_mapnr: int  # 32-bit; header version 6 has the full value in the sub-header
    total_ram_blocks: int
    device_blocks: int
    written_blocks: int
    current_cpu: int
    nr_cpus: int

    @classmethod
    def unpack(cls, head: bytes) -> DiskDumpHeader:
        """From the first DISK_DUMP_HEADER_SIZE bytes of a file (the caller checks the length)."""
        uts = {name: _cstr(head[UTS_OFF + UTS_LEN * i:UTS_OFF + UTS_LEN * (i + 1)])
               for i, name in enumerate(UTS_FIELDS)}
        return cls(bytes(head[:8]), HDR_VERSION.unpack_from(head, HDR_VERSION_OFF)[0], uts,
                   *TIMEVAL.unpack_from(head, TIMEVAL_OFF), *HDR_TAIL.unpack_from(head, HDR_TAIL_OFF))

    def pack(self) -> bytes:
        """DISK_DUMP_HEADER_SIZE bytes; utsname strings are cut to 64 bytes (NUL-terminated)."""
        buf = bytearray(DISK_DUMP_HEADER_SIZE)
        buf[0:8] = self.signature
        HDR_VERSION.pack_into(buf, HDR_VERSION_OFF, self.header_version)
        for i, name in enumerate(UTS_FIELDS):
            v = self.utsname.get(name, "").encode("utf-8", "replace")[:UTS_LEN - 1]
            buf[UTS_OFF + UTS_LEN * i:UTS_OFF + UTS_LEN * i + len(v)] = v
        TIMEVAL.pack_into(buf, TIMEVAL_OFF, self.tv_sec, self.tv_usec)
        HDR_TAIL.pack_into(buf, HDR_TAIL_OFF, self.status, self.block_size, self.sub_hdr_size, self.bitmap_blocks,
                           self.max_mapnr, self.total_ram_blocks, self.device_blocks, self.written_blocks,
                           self.current_cpu, self.nr_cpus)
        return bytes(buf)


class KdumpSubHeader(NamedTuple):
    """kdump_sub_header as version 6 lays it out; fields a lower header_version does not
    have are whatever the block holds (the reader ignores them)."""

    phys_base: int
    dump_level: int
    split: int
    start_pfn: int
    end_pfn: int
    offset_vmcoreinfo: int
    size_vmcoreinfo: int
    offset_note: int
    size_note: int
    offset_eraseinfo: int
    size_eraseinfo: int
    start_pfn_64: int
    end_pfn_64: int
    max_mapnr_64: int

    @classmethod
    def unpack(cls, data: bytes) -> KdumpSubHeader:
        """From the start of block 1; a short read (a file ending there) reads as zeros."""
        return cls(*SUB_HEADER.unpack_from(bytes(data[:SUB_HEADER.size]).ljust(SUB_HEADER.size, b"\0"), 0))

    def pack(self) -> bytes:
        return SUB_HEADER.pack(*self)
