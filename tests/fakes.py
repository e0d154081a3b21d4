"""In-memory stand-ins for dumps, for unit tests that build their own memory images."""
from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

from vmcorekit.dump.base import DumpInfo, MemRange, Note, PageState, PhysicalMemory
from vmcorekit.errors import PageNotInDumpError


class PagedBytes:
    """Sparse test memory in 4 KiB pages {page number: bytearray}, written byte by byte;
    reading a page never written raises PageNotInDumpError. The class using it sets
    `self.pages = {}`."""

    pages: dict[int, bytearray]

    def page(self, n: int) -> bytearray:
        return self.pages.setdefault(n, bytearray(4096))

    def write(self, addr: int, data: bytes) -> None:
        for i, b in enumerate(data):
            a = addr + i
            self.page(a >> 12)[a & 4095] = b

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, (value & (2**64 - 1)).to_bytes(8, "little"))

    def read_pages(self, addr: int, size: int) -> bytes:
        out = bytearray()
        while size:
            n = min(size, 4096 - (addr & 4095))
            pg = self.pages.get(addr >> 12)
            if pg is None:
                raise PageNotInDumpError(addr, "not in test memory")
            out += pg[addr & 4095:(addr & 4095) + n]
            addr += n
            size -= n
        return bytes(out)


class DictMemory(PagedBytes, PhysicalMemory):
    """Physical memory made of 4 KiB pages held in a dict {pfn: bytearray}."""

    def __init__(self, machine: str = "x86_64", size: int = 1 << 32, notes: list[Note] | None = None) -> None:
        super().__init__("<memory>", DumpInfo(format="test", machine=machine))
        self.pages = {}
        self.notes = list(notes or [])
        self._set_ranges([MemRange(0, size)])

    def _read_in_range(self, paddr: int, size: int) -> bytes:
        return self.read_pages(paddr, size)

    def page_state(self, pfn: int) -> PageState:
        return PageState.PRESENT if pfn in self.pages else PageState.HOLE


class Hang(BaseException):
    """Raised by time_limit. A BaseException, so no `except Exception` in the code under test
    can swallow it and turn a hang into a pass."""


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail the block (Hang) if it runs longer than `seconds`: a hang is a bug, not a slow test."""
    def fire(*_: object) -> None:
        raise Hang(f"no result after {seconds} s (hang?)")
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
