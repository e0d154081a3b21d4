"""Typed exceptions. Every error the library raises on bad input derives from VmcorekitError,
so the CLI can print one line and exit nonzero without a traceback."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class VmcorekitError(Exception):
    """Base of all vmcorekit errors."""


class DumpFormatError(VmcorekitError):
    """The dump file is not what it claims to be (bad magic, truncated header, absurd sizes)."""

    def __init__(self, path: str, offset: int | None, message: str) -> None:
        self.path = path
        self.offset = offset
        self.message = message
        where = f"{path}" if offset is None else f"{path} at offset {offset:#x}"
        super().__init__(f"{where}: {message}")


class UnsupportedDumpError(DumpFormatError):
    """A well-formed file of a kind or variant vmcorekit does not read."""


class MemoryReadError(VmcorekitError):
    """Memory at an address cannot be read. Subclasses say why."""

    def __init__(self, address: int, message: str, *, physical: bool = True) -> None:
        self.address = address
        self.physical = physical
        kind = "physical" if physical else "virtual"
        super().__init__(f"{kind} address {address:#x}: {message}")


class PageNotInDumpError(MemoryReadError):
    """The address lies outside every memory range the dump describes (a hole)."""


class PageExcludedError(MemoryReadError):
    """The page existed but was dropped by filtering (makedumpfile dump level)."""


class PageMissingError(MemoryReadError):
    """The dump claims the page but its data is gone (truncated or incomplete file)."""


class CorruptPageError(MemoryReadError):
    """The page's stored data is damaged (decompression failed, wrong size)."""


class TranslationError(MemoryReadError):
    """A virtual address does not translate (page not present, bad page-table entry)."""

    def __init__(self, address: int, message: str) -> None:
        super().__init__(address, message, physical=False)


class VmcoreinfoError(VmcorekitError):
    """VMCOREINFO is missing, or lacks a key a feature needs."""


class SymbolError(VmcorekitError, LookupError):
    """A symbol name or address cannot be resolved."""


class TypeLookupError(VmcorekitError, LookupError):
    """A type or member cannot be found."""


class CorruptKernelDataError(VmcorekitError):
    """Kernel data structures are inconsistent (list cycles, wild pointers)."""


class CodecUnavailableError(VmcorekitError, ImportError):
    """The dump uses a codec whose Python package is not installed."""


class BtfFormatError(VmcorekitError):
    """A BTF blob is malformed (bad magic, out-of-range offsets, unknown kinds, bad ids)."""


class ObjectError(VmcorekitError, ValueError):
    """An operation makes no sense for this object (dereferencing a non-pointer, a value of
    void, a per-CPU access on something that is not per-CPU)."""


class MemberNotFoundError(TypeLookupError, AttributeError):
    """`obj.name` where the type has no member `name` (an AttributeError, so hasattr works)."""


class ObjectNotFoundError(VmcorekitError, KeyError):
    """`prog[name]` where no symbol of that name exists."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class FilterError(VmcorekitError):
    """A filter run cannot go on (bad options, input it cannot filter)."""


class OutputError(FilterError):
    """The output cannot be written: disk full, size limit reached, broken pipe."""


# -- partial results -------------------------------------------------------------------------
class PartialResultWarning(UserWarning):
    """A command printed what the dump allows, but part of the data it needed is unreadable
    (missing, corrupt or excluded pages, a broken kernel list). The CLI turns any of these into
    exit status 3 (EXIT_PARTIAL) after printing each distinct message once on stderr.

    `reported=False` marks a warning whose gap the caller has already printed itself: it only
    sets the exit status."""

    def __init__(self, message: str, *, reported: bool = True) -> None:
        super().__init__(message)
        self.reported = reported


EXIT_PARTIAL = 3


def partial_result(message: str, *, reported: bool = True) -> None:
    """Record that the running command's result is partial, with the reason (one gap)."""
    import warnings

    warnings.warn(PartialResultWarning(message, reported=reported), stacklevel=2)


class LogInputError(VmcorekitError):
    """A file given as a kernel log cannot be read as one (empty, binary, not text, unreadable)."""


# -- notes: non-fatal problems ---------------------------------------------------------------
class Notes:
    """The non-fatal problems of one command run (a fact unknown, a fallback taken), each
    kept once in the order first said. The CLI opens one per command, prints them as
    `vmcorekit: note: ...` on stderr and returns them as `notes` in --json output."""

    def __init__(self) -> None:
        self._items: dict[str, None] = {}

    def add(self, message: str) -> None:
        self._items.setdefault(message)

    def __iter__(self) -> "Iterator[str]":
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)


_COLLECTORS: list[Notes] = []  # innermost last; shared by threads of one command on purpose


def note(message: str) -> None:
    """Say a non-fatal problem to the running command (dropped when nobody collects)."""
    if _COLLECTORS:
        _COLLECTORS[-1].add(message)


def current_notes() -> list[str]:
    """The notes said so far to the innermost collector (for --json output)."""
    return list(_COLLECTORS[-1]) if _COLLECTORS else []


@contextmanager
def collecting_notes() -> "Iterator[Notes]":
    """Collect the notes said inside the block."""
    notes = Notes()
    _COLLECTORS.append(notes)
    try:
        yield notes
    finally:
        _COLLECTORS.remove(notes)


# -- exit status of every command (README "Exit status") -------------------------------------
EXIT_OK = 0
EXIT_ERROR = 1  # bad input, a failed lookup: one `vmcorekit: error:` line
EXIT_USAGE = 2  # bad arguments or options, a missing file
# EXIT_PARTIAL = 3 is defined with partial_result above


# -- fleet: the crash index ------------------------------------------------------------------
class FleetError(VmcorekitError):
    """A fleet command cannot go on (bad options, an index it cannot use)."""


class FleetIndexError(FleetError):
    """The index file is not a vmcorekit fleet index (corrupt, another kind of file, a newer
    schema). It is never overwritten."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


class FleetBusyError(FleetError):
    """Another process holds the index (a second ingest, or a writer while opening read-only)."""


class CacheError(VmcorekitError):
    """The decompressed copy of a compressed dump cannot be made within bounds: it would pass
    VMCOREKIT_MAX_DECOMPRESSED or fill the cache folder's file system."""


class ExpressionError(VmcorekitError, ValueError):
    """A `p` expression that does not parse or cannot be evaluated (a syntax error, a member
    or operation its type does not have)."""


class DrgnUnavailableError(VmcorekitError, ImportError):
    """`vmcorekit.drgn` cannot make a drgn Program: drgn is not installed (the `drgn` extra)
    or the dump lacks what drgn needs."""


# The partial results the running command has said, in order: cli/main.py fills it as they are
# reported, cli/common.emit_json gives them as `partial_reasons` (with `partial: true`).
PARTIAL_SAID: list[str] = []


class DisassemblerUnavailableError(VmcorekitError, ImportError):
    """`dis` cannot disassemble: capstone is not installed, or the dump's architecture has no
    disassembler in its platform record."""
