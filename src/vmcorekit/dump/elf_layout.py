"""ELF64 core layouts (little-endian): header, program and section headers, notes, and the
machine numbers. Shared by the reader (dump/elf.py), its checks and the filter's ELF writer,
so what is written is what is read."""
from __future__ import annotations

import struct
from collections.abc import Iterable

from .base import Note

ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2LSB = 1
EV_CURRENT = 1
# e_ident of the files written: 64-bit, little-endian, version 1, System V ABI.
ELF64_LE_IDENT = ELF_MAGIC + bytes([ELFCLASS64, ELFDATA2LSB, EV_CURRENT, 0]) + bytes(8)
ET_CORE = 4
PT_LOAD = 1
PT_NOTE = 4
PN_XNUM = 0xFFFF
DUMP_ELF_INCOMPLETE = 1  # e_flags bit makedumpfile sets on a dump it could not finish

EHDR64 = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR64 = struct.Struct("<IIQQQQQQ")
SHDR64 = struct.Struct("<IIQQQQIIQQ")
NOTE_HEADER = struct.Struct("<III")  # namesz, descsz, type; name and descriptor 4-byte aligned

# e_machine <-> the machine names the rest of vmcorekit uses.
MACHINES = {62: "x86_64", 183: "aarch64", 3: "i386", 40: "arm", 21: "ppc64", 22: "s390x", 243: "riscv64"}
MACHINE_NUMBERS = {name: number for number, name in MACHINES.items()}



def _align4(n: int) -> int:
    return (n + 3) & ~3


NOTES_CAP = 1 << 16  # notes a dump may hold (real ones: a few per CPU); readers refuse more
NOTES_BYTES_CAP = 64 << 20  # note bytes parsed in all: far above any real note area


def parse_notes(data: bytes, base_offset: int | None = 0, *, path: str = "<notes>",
                limit: int = NOTES_CAP + 1) -> list[Note]:
    """Parse a run of ELF64 notes (4-byte aligned name and descriptor). A truncated tail stops
    the walk: what parsed before it is kept. At most `limit` notes are parsed: a flood of
    empty notes costs that many, however large the area (the caller says what more means)."""
    notes: list[Note] = []
    pos = 0
    n = len(data)
    while pos + NOTE_HEADER.size <= n and len(notes) < limit:
        namesz, descsz, ntype = NOTE_HEADER.unpack_from(data, pos)
        if namesz == 0 and descsz == 0 and ntype == 0:
            break  # zero padding after the last note
        name_start = pos + NOTE_HEADER.size
        desc_start = name_start + _align4(namesz)
        desc_end = desc_start + descsz
        if desc_end > n:
            break
        owner = bytes(data[name_start:name_start + namesz]).split(b"\0", 1)[0].decode("latin-1")
        off = None if base_offset is None else base_offset + desc_start
        notes.append(Note(owner, ntype, bytes(data[desc_start:desc_end]), off))
        pos = desc_start + _align4(descsz)
    return notes


def walk_notes(data: bytes) -> tuple[int, str | None]:
    """Walk ELF64 notes strictly: (number of notes, problem or None). Zero padding after the
    last note is fine; anything else that does not form a note is a problem."""
    pos, n, count = 0, len(data), 0
    while pos < n:
        if count > NOTES_CAP:
            return count, f"more than {NOTES_CAP} notes; expected at most {NOTES_CAP} (a few per CPU)"
        if pos + NOTE_HEADER.size > n:
            if any(data[pos:]):
                return count, f"{n - pos} stray bytes after note {count} at offset {pos:#x}"
            break
        namesz, descsz, ntype = NOTE_HEADER.unpack_from(data, pos)
        if namesz == 0 and descsz == 0 and ntype == 0:
            if any(data[pos:]):
                return count, f"non-zero bytes after the zero terminator at offset {pos:#x}"
            break
        end = pos + NOTE_HEADER.size + _align4(namesz) + _align4(descsz)
        if end > n and pos + NOTE_HEADER.size + _align4(namesz) + descsz > n:
            return count, (f"note {count} at offset {pos:#x} (name {namesz} bytes, descriptor {descsz} bytes) "
                           f"runs past the end of the {n}-byte note area")
        count += 1
        pos = end
    return count, None


def serialize_notes(notes: Iterable[Note]) -> tuple[bytes, tuple[int, int] | None]:
    """ELF64 notes as a PT_NOTE segment holds them, and where VMCOREINFO's text lies."""
    out = bytearray()
    vmci = None
    for n in notes:
        name = n.owner.encode("latin-1") + b"\0"
        out += NOTE_HEADER.pack(len(name), len(n.desc), n.type)
        out += name + bytes(-len(name) % 4)
        if n.owner == "VMCOREINFO" and vmci is None:
            vmci = (len(out), len(n.desc))
        out += n.desc + bytes(-len(n.desc) % 4)
    return bytes(out), vmci
