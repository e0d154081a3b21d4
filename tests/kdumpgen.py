"""Synthetic kdump-compressed and flattened files for tests.

`build_kdump` lays a file out the way makedumpfile does (header block, sub-header block(s) with
notes and VMCOREINFO, two bitmaps, descriptors, the shared zero page, page data) and returns
the bytes together with the offsets of every part, so a test can damage exactly one of them.
"""
from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from typing import Iterable

from vmcorekit.dump.codecs import CODEC_FLAGS, DUMP_DH_COMPRESSED_INCOMPLETE, compress_page

PAGE_DESC = struct.Struct("<qIIQ")
SUB_HEADER = struct.Struct("<QiiQQqQqQqQQQQ")
HEADER_TAIL = struct.Struct("<IiiIIIIIIi")

DEFAULT_VMCOREINFO = b"OSRELEASE=6.1.0-test\nPAGESIZE=4096\nSYMBOL(init_uts_ns)=ffffffff82bfb000\n"


def elf_note(owner: str, ntype: int, desc: bytes) -> bytes:
    """One ELF64 note with 4-byte aligned name and descriptor."""
    name = owner.encode() + b"\0"
    pad = lambda b: b + bytes((-len(b)) % 4)  # noqa: E731
    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def page_pattern(pfn: int, page_size: int = 4096) -> bytes:
    """A compressible but pfn-specific page."""
    line = f"pfn {pfn:#010x} ".encode()
    return (line * (page_size // len(line) + 1))[:page_size]


@dataclass
class KdumpImage:
    data: bytes
    page_size: int
    bitmap_off: int
    pdesc_off: int
    data_off: int  # the shared zero page
    desc_off: dict[int, int] = field(default_factory=dict)  # pfn -> descriptor offset
    page_off: dict[int, tuple[int, int]] = field(default_factory=dict)  # pfn -> (data offset, size)
    sub_off: int = 0
    note_off: int = 0


def build_kdump(
    pages: dict[int, bytes],
    *,
    max_mapnr: int,
    excluded: Iterable[int] = (),
    codec: str | dict[int, str] = "zlib",
    page_size: int = 4096,
    header_version: int = 6,
    dump_level: int = 31,
    vmcoreinfo: bytes | None = DEFAULT_VMCOREINFO,
    vmcoreinfo_in_notes: bool = True,
    prstatus_cpus: int = 2,
    split: tuple[int, int] | None = None,
    incomplete: bool = False,
    machine: str = "x86_64",
    timestamp: int = 1_700_000_000,
) -> KdumpImage:
    """A kdump-compressed file holding `pages` (pfn -> content). `excluded` pfns are in the 1st
    bitmap only. `codec` is one name or a per-pfn map ("none" stores raw). All-zero pages
    point at the shared zero page. With `split=(start, end)` the file is one part of a split
    set: its 2nd bitmap holds every dumped pfn (as makedumpfile writes it) but only pfns in
    [start, end) get descriptors."""
    bs = page_size
    valid = set(pages) | set(excluded)
    assert all(0 <= p < max_mapnr for p in valid)

    # -- notes area (in the sub-header blocks, after the 104-byte sub-header)
    notes = b"".join(elf_note("CORE", 1, struct.pack("<I", cpu) + bytes(332)) for cpu in range(prstatus_cpus))
    vmci_off_in_area = None
    if vmcoreinfo is not None and vmcoreinfo_in_notes:
        vnote = elf_note("VMCOREINFO", 0, vmcoreinfo)
        vmci_off_in_area = len(notes) + 12 + 12  # header + "VMCOREINFO\0" padded to 12
        notes += vnote
    extra = b""
    if vmcoreinfo is not None and not vmcoreinfo_in_notes:
        extra = vmcoreinfo
    sub_off = bs
    note_off = sub_off + SUB_HEADER.size
    vmci_off = (note_off + vmci_off_in_area) if vmci_off_in_area is not None else note_off + len(notes)
    sub_area = SUB_HEADER.size + len(notes) + len(extra)
    sub_hdr_size = -(-sub_area // bs)

    bitmap_bytes = -(-max_mapnr // 8)
    bitmap_blocks = 2 * -(-bitmap_bytes // bs)
    bitmap_off = (1 + sub_hdr_size) * bs
    bm1 = bytearray(bitmap_blocks // 2 * bs)
    bm2 = bytearray(bitmap_blocks // 2 * bs)
    for p in valid:
        bm1[p >> 3] |= 1 << (p & 7)
    for p in pages:
        bm2[p >> 3] |= 1 << (p & 7)

    lo, hi = split if split else (0, max_mapnr)
    dumped = sorted(p for p in pages if lo <= p < hi)
    pdesc_off = bitmap_off + bitmap_blocks * bs
    data_off = pdesc_off + len(dumped) * PAGE_DESC.size
    zero = bytes(bs)
    descs = bytearray()
    body = bytearray(zero)  # the shared zero page comes first
    img = KdumpImage(b"", bs, bitmap_off, pdesc_off, data_off, sub_off=sub_off, note_off=note_off)
    flags_seen = 0
    for i, p in enumerate(dumped):
        content = pages[p]
        assert len(content) == bs
        img.desc_off[p] = pdesc_off + i * PAGE_DESC.size
        if content == zero:
            descs += PAGE_DESC.pack(data_off, bs, 0, 0)
            img.page_off[p] = (data_off, bs)
            continue
        name = codec if isinstance(codec, str) else codec.get(p, "zlib")
        if name == "none":
            stored, flags = content, 0
        else:
            stored, flags = compress_page(name, content), CODEC_FLAGS[name]
            flags_seen |= flags
        off = data_off + len(body)
        descs += PAGE_DESC.pack(off, len(stored), flags, 0)
        img.page_off[p] = (off, len(stored))
        body += stored

    uts = b"".join(s.encode().ljust(65, b"\0") for s in
                   ("Linux", "testhost", "6.1.0-test", "#1 SMP test", machine, "(none)"))
    status = flags_seen | (DUMP_DH_COMPRESSED_INCOMPLETE if incomplete else 0)
    max32 = min(max_mapnr, 0xFFFFFFFF)
    header = (b"KDUMP   " + struct.pack("<i", header_version) + uts + bytes(6)
              + struct.pack("<qq", timestamp, 0)
              + HEADER_TAIL.pack(status, bs, sub_hdr_size, bitmap_blocks, max32, len(dumped), 0, 0, 0,
                                 prstatus_cpus))
    assert len(header) == 464
    sub = SUB_HEADER.pack(
        0, dump_level,
        1 if split else 0, lo if split else 0, hi if split else 0,
        vmci_off if vmcoreinfo is not None else 0, len(vmcoreinfo) if vmcoreinfo is not None else 0,
        note_off, len(notes), 0, 0,
        lo if split else 0, hi if split else 0, max_mapnr)
    out = bytearray(header.ljust(bs, b"\0"))
    out += (sub + notes + extra).ljust(sub_hdr_size * bs, b"\0")
    out += bm1 + bm2 + descs + body
    img.data = bytes(out)
    return img


def flatten(data: bytes, *, chunk: int = 5000, seed: int = 1, rewrite_header: bool = True,
            drop: tuple[int, int] | None = None, end_marker: bool = True) -> bytes:
    """Wrap a file in makedumpfile's flattened format: records of up to `chunk` bytes in a
    shuffled order. With `rewrite_header`, a zeroed first block is written first and the real
    one last, as makedumpfile does (the later record must win). `drop=(start, end)` leaves out
    the records' bytes in that range of the described file."""
    pieces = [(off, data[off:off + chunk]) for off in range(0, len(data), chunk)]
    random.Random(seed).shuffle(pieces)
    if rewrite_header:
        pieces.insert(0, (0, bytes(min(len(data), 4096))))
        pieces.append((0, data[:min(len(data), 4096)]))
    out = bytearray(b"makedumpfile".ljust(16, b"\0") + struct.pack(">QQ", 1, 1))
    out = out.ljust(4096, b"\0")
    for off, piece in pieces:
        if drop:
            a, b = max(off, drop[0]), min(off + len(piece), drop[1])
            if a < b:  # split the record around the dropped range
                for o, p in ((off, piece[:a - off]), (b, piece[b - off:])):
                    if p:
                        out += struct.pack(">qq", o, len(p)) + p
                continue
        out += struct.pack(">qq", off, len(piece)) + piece
    if end_marker:
        out += struct.pack(">qq", -1, -1)
    return bytes(out)
