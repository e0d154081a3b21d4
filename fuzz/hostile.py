"""Crafted files whose headers claim far more than the file holds: the classes of "Trust"
(hostile input held). Each is (bytes written, apparent size): the file is the bytes followed by
a hole up to the apparent size, so a file that "describes" gigabytes occupies kilobytes.

Shared by tests/test_hostile.py (subprocesses, measured) and fuzz/fuzz_hostile.py (the same
classes mutated, bounds asserted in the harness). Built from the real sample dump where a real
header helps (the kdump class), from nothing otherwise.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "x86_64-6.1.0-56-amd64-qmp-c-d31.kdump"

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
ELF_IDENT = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)


def kdump_huge_bitmaps(pages: int = 1 << 33, head: bytes | None = None, fill: int = 0) -> tuple[bytes, int]:
    """The sample's kdump header, sub-header and notes, with bitmaps claimed for `pages` page
    frames (2^33: two 1 GiB bitmaps) that are a hole of the file: 16 KiB on disk. `fill`: the
    byte of the one block of the 1st bitmap that is written (0xff: its first pages exist)."""
    head = head if head is not None else SAMPLE.read_bytes()[:4 << 12]
    bs = struct.unpack_from("<i", head, 424 + 4)[0]
    sub = struct.unpack_from("<i", head, 424 + 8)[0]
    half_blocks = -(-(pages + 7) // 8 // bs)
    out = bytearray(head[:(1 + sub) * bs])
    struct.pack_into("<i", out, 424 + 12, 2 * half_blocks)  # bitmap_blocks
    struct.pack_into("<I", out, 424 + 16, min(pages, 0xFFFFFFFF))  # max_mapnr (32-bit)
    struct.pack_into("<Q", out, bs + 96, pages)  # max_mapnr_64 (sub-header, version 6)
    out += bytes([fill]) * bs  # one block of the first bitmap written, the rest a hole
    size = (1 + sub + 2 * half_blocks + 1) * bs
    return bytes(out), size


def elf_note_flood(note_bytes: int = 64 << 20) -> tuple[bytes, int]:
    """An ELF core with one PT_NOTE of `note_bytes` of empty notes (name "", no descriptor:
    16 bytes each, four million in 64 MiB) and one small PT_LOAD."""
    one = struct.pack("<III", 1, 0, 1) + b"\0\0\0\0"
    nnotes = note_bytes // len(one)
    phoff = EHDR.size
    notes_off = phoff + 2 * PHDR.size
    load_off = notes_off + nnotes * len(one)
    load_off += -load_off % 4096
    ehdr = EHDR.pack(ELF_IDENT, 4, 62, 1, 0, phoff, 0, 0, EHDR.size, PHDR.size, 2, 0, 0, 0)
    ph = PHDR.pack(4, 0, notes_off, 0, 0, nnotes * len(one), 0, 4)
    ph += PHDR.pack(1, 7, load_off, 0xFFFF888000000000, 0, 4096, 4096, 4096)
    body = ehdr + ph + one * nnotes
    return body + bytes(load_off - len(body)) + b"\x5a" * 4096, load_off + 4096


def elf_many_loads(count: int = 1 << 20) -> tuple[bytes, int]:
    """An ELF core with `count` PT_LOAD headers (e_phnum PN_XNUM, the count in section header
    0's sh_info), each one disjoint page of memory, all sharing one page of data."""
    phoff = EHDR.size
    shoff = phoff + count * PHDR.size
    data_off = shoff + 64
    data_off += -data_off % 4096
    ehdr = EHDR.pack(ELF_IDENT, 4, 62, 1, 0, phoff, shoff, 0, EHDR.size, PHDR.size, 0xFFFF, 64, 1, 0)
    import numpy as np

    dt = np.dtype([("type", "<u4"), ("flags", "<u4"), ("offset", "<u8"), ("vaddr", "<u8"), ("paddr", "<u8"),
                   ("filesz", "<u8"), ("memsz", "<u8"), ("align", "<u8")])
    ph = np.zeros(count, dtype=dt)
    ph["type"] = 1
    ph["offset"] = data_off
    ph["paddr"] = np.arange(count, dtype=np.uint64) * np.uint64(2 * 4096)
    ph["vaddr"] = ph["paddr"] + np.uint64(0xFFFF888000000000)
    ph["filesz"] = ph["memsz"] = 4096
    sh0 = struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, count, 0, 0)
    body = ehdr + ph.tobytes() + sh0
    return body + bytes(data_off - len(body)) + b"\x5a" * 4096, data_off + 4096


def zstd_bomb(inflated: int = 3 << 30, head: bytes = b"", declare: bool = True) -> tuple[bytes, int]:
    """A .zst of `head` then zeros, `inflated` bytes in all (96 KiB compressed for 3 GiB), its
    content size declared in the frame header (as zstd(1) writes it for a file) or not."""
    import zstandard

    cctx = zstandard.ZstdCompressor(level=3)
    chunk = bytes(1 << 24)
    co = cctx.compressobj(size=inflated if declare else -1)
    body = inflated - len(head)
    parts = [co.compress(head)] + [co.compress(chunk) for _ in range(body // len(chunk))]
    parts.append(co.compress(bytes(body % len(chunk))))
    parts.append(co.flush())
    blob = b"".join(parts)
    return blob, len(blob)


def write(path: str | os.PathLike[str], crafted: tuple[bytes, int]) -> Path:
    """Write a crafted file: its bytes, then a hole up to its apparent size."""
    data, size = crafted
    with open(path, "wb") as f:
        f.write(data)
        f.truncate(max(size, len(data)))
    return Path(path)
