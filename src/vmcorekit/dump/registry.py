"""The dump formats vmcorekit reads, recognised by their first bytes, never by file name.

Each format's file defines a DumpFormat (dump/base.py): its probe, its open and its checks for
`verify`. A new format is its file and one line in REGISTRY. Format files are imported only
when probing reaches them, so opening an ELF core does not load the kdump reader (or numpy).
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Sequence

from ..errors import DumpFormatError
from .base import DumpFormat, PhysicalMemory

# (module in dump/, its DumpFormat), in probe order.
REGISTRY: tuple[tuple[str, str], ...] = (
    ("elf", "FORMAT"),
    ("kdump", "KDUMP"),
    ("kdump", "FLATTENED"),
    ("wrapped", "FORMAT"),
)
PROBE_BYTES = 16  # what a probe sees of the file


def _load(module: str, name: str) -> DumpFormat:
    fmt = getattr(importlib.import_module(f"{__package__}.{module}"), name)
    assert isinstance(fmt, DumpFormat), (module, name)
    return fmt


def formats() -> Iterator[DumpFormat]:
    """Every registered format, in probe order (each file imported as it is reached)."""
    for module, name in REGISTRY:
        yield _load(module, name)


def _signatures() -> str:
    named = [f.signature for f in formats() if f.signature]
    return (", ".join(named[:-1]) + " or " + named[-1]) if len(named) > 1 else named[0]


def probe(path: str) -> DumpFormat:
    """The format of the file at `path`; DumpFormatError when none fits."""
    try:
        with open(path, "rb") as f:
            head = f.read(PROBE_BYTES)
    except IsADirectoryError:
        raise DumpFormatError(path, None, "is a directory, expected a dump file") from None
    if not head:
        raise DumpFormatError(path, 0, "file is empty, expected a crash dump")
    for fmt in formats():
        if fmt.probe(head):
            return fmt
    raise DumpFormatError(path, 0, f"unrecognised file: expected {_signatures()} signature, "
                                   f"found {head[:8]!r}")


def _is_dump_head(head: bytes) -> bool:
    """Whether `head` starts a dump some format reads (containers aside): a compressed file
    is decompressed only when its content is a dump."""
    return any(f.probe(head[:PROBE_BYTES]) for f in formats() if f.unwrap is None)


def detect_format(path: str) -> str:
    """The name of the file's format ('elf', 'kdump', 'flattened', 'wrapped'); DumpFormatError
    when none fits."""
    return probe(path).name


def open_dump(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> PhysicalMemory:
    """Open one dump, or the files of a makedumpfile --split set, read-only."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    names = [os.fspath(p) for p in paths]
    if not names:
        raise ValueError("no dump file given")
    fmts = [probe(p) for p in names]
    if any(f.unwrap for f in fmts):
        originals = names
        names = [f.unwrap(p, _is_dump_head) if f.unwrap else p for p, f in zip(names, fmts)]
        phys = _open(names, [probe(p) for p in names])
        # Report the file the user named; offsets refer to its decompressed bytes.
        phys.info.extra["decompressed_from"] = ",".join(originals)
        phys.info.extra["decompressed_copy"] = ",".join(names)
        phys.path = ",".join(originals)
        return phys
    return _open(names, fmts)


def _open(names: list[str], fmts: list[DumpFormat]) -> PhysicalMemory:
    first = fmts[0]
    if first.open is not None:
        if len(names) == 1:
            return first.open(names)
        if first.split_family and all(f.split_family == first.split_family for f in fmts):
            return first.open(names)
    # A container inside a container (a .gz of a .zst) ends here too.
    raise DumpFormatError(names[min(1, len(names) - 1)], 0,
                          "several files given: expected the kdump files of one --split set")


def format_of(phys: PhysicalMemory) -> DumpFormat | None:
    """The registered format whose reader `phys` is (None for other PhysicalMemory kinds)."""
    for fmt in formats():
        if isinstance(phys, fmt.readers):
            return fmt
    return None
