"""Dump readers: every supported file becomes a PhysicalMemory.

Formats are recognised by their first bytes, never by file name: ELF (`\\x7fELF`),
kdump-compressed (`KDUMP   `), makedumpfile's flattened stream (`makedumpfile`).
"""
from __future__ import annotations

import os
from collections.abc import Sequence

from ..errors import DumpFormatError
from .base import DumpInfo, MemRange, Note, PageState, PhysicalMemory, VirtualSegment, parse_notes

__all__ = ["DumpInfo", "MemRange", "Note", "PageState", "PhysicalMemory", "VirtualSegment", "open_dump",
           "parse_notes", "detect_format"]


def detect_format(path: str) -> str:
    """'elf', 'kdump', 'flattened'; DumpFormatError when none fits."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except IsADirectoryError:
        raise DumpFormatError(path, None, "is a directory, expected a dump file") from None
    if not head:
        raise DumpFormatError(path, 0, "file is empty, expected a crash dump")
    if head[:4] == b"\x7fELF":
        return "elf"
    if head[:8] == b"KDUMP   ":
        return "kdump"
    if head[:12] == b"makedumpfile":
        return "flattened"
    if head[:8] == b"DISKDUMP":
        return "kdump"
    from .wrapped import wrapper_of
    if wrapper_of(head):
        return "wrapped"
    raise DumpFormatError(path, 0, f"unrecognised file: expected an ELF core, 'KDUMP   ' or 'makedumpfile' "
                                   f"signature, found {head[:8]!r}")


def open_dump(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> PhysicalMemory:
    """Open one dump, or the files of a makedumpfile --split set, read-only."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    names = [os.fspath(p) for p in paths]
    if not names:
        raise ValueError("no dump file given")
    kinds = [detect_format(p) for p in names]
    if "wrapped" in kinds:
        from .wrapped import unwrapped
        originals = names
        names = [unwrapped(p) if k == "wrapped" else p for p, k in zip(names, kinds)]
        kinds = [detect_format(p) for p in names]
        phys = _open(names, kinds)
        # Report the file the user named; offsets refer to its decompressed bytes.
        phys.info.extra["decompressed_from"] = ",".join(originals)
        phys.info.extra["decompressed_copy"] = ",".join(names)
        phys.path = ",".join(originals)
        return phys
    return _open(names, kinds)


def _open(names: list[str], kinds: list[str]) -> PhysicalMemory:
    if len(names) == 1 and kinds[0] == "elf":
        from .elf import ElfDump
        return ElfDump(names[0])
    if all(k in ("kdump", "flattened") for k in kinds):
        from .kdump import open_kdump
        return open_kdump(names)
    raise DumpFormatError(names[1], 0, "several files given: expected the kdump files of one --split set")
