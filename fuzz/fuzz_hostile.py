"""Files whose headers claim far more than they hold (the "Trust" classes of fuzz/hostile.py):
kdump bitmaps for billions of pages over a sparse file, floods of ELF notes, a million PT_LOADs,
zstd bombs. An input is a class byte, a u32 "claim" (pages, note bytes, headers, inflated
size: scaled below) and the head of the file, which the fuzzer mutates; the file is that head
then a hole up to the size the class implies (a memfd, sparse).

Bounds asserted here, per input, beyond the harness's RLIMIT_AS: 20 s, and resident memory
grown by less than 1 GiB while the dump is open (what a header claims must cost address space
at most, never memory)."""
from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator

from _harness import exercise_dump, fuzz_main

CLASSES = ("kdump", "notes", "loads", "zstd")
MAX_APPARENT = 768 << 20  # within the harness's address-space bound (readers map the file)
MAX_SECONDS = 20
MAX_GROWTH = 1 << 30
NOTES_FLOOD_MAX = 64 << 20
# Bombs are decompressed into a private, bounded cache (the limits a user would set), set
# around each input only: the process's own environment (pytest's) is left as it was.
_CACHE = tempfile.mkdtemp(prefix="vmcorekit-fuzz-cache-")
atexit.register(shutil.rmtree, _CACHE, True)
_ENV = {"VMCOREKIT_CACHE": _CACHE, "VMCOREKIT_MAX_DECOMPRESSED": "256M", "VMCOREKIT_CACHE_MAX": "512M"}


@contextlib.contextmanager
def _private_cache() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in _ENV}
    os.environ.update(_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

def encode(kind: str, claim: int, head: bytes) -> bytes:
    return bytes([CLASSES.index(kind)]) + struct.pack("<I", claim) + head


def _resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _build(kind: str, claim: int, head: bytes) -> tuple[bytes, int]:
    """The file's bytes and apparent size for a class, from the mutated head."""
    if kind == "kdump":
        # The claim is pages: the mutated head keeps its own header fields, the claim sets
        # the bitmap size the file must be (sparse) large enough to hold.
        return head, min(MAX_APPARENT, 3 * 4096 + 2 * ((claim + 7) // 8) + 8192)
    if kind == "zstd":
        return head, len(head)
    if kind == "notes" and len(head) >= 16:
        # A flood is real bytes: the input's last 16 bytes (one note, as the seed has it)
        # repeated up to the claim (at most 64 MiB: the readers' note budget).
        n = min(claim, NOTES_FLOOD_MAX) // 16
        return head + head[-16:] * n, len(head) + 16 * n
    return head, min(MAX_APPARENT, max(len(head), claim))


def test_one_input(data: bytes) -> None:
    if len(data) < 5:
        return
    kind = CLASSES[data[0] % len(CLASSES)]
    claim = struct.unpack_from("<I", data, 1)[0]
    blob, size = _build(kind, claim, data[5:])
    fd = os.memfd_create("hostile", os.MFD_CLOEXEC)
    try:
        os.write(fd, blob)
        os.ftruncate(fd, max(size, len(blob)))
        path = f"/proc/self/fd/{fd}"
        before = _resident()
        t = time.monotonic()
        with _private_cache():
            exercise_dump([path], during=lambda: _check(before, t))
        _check(before, t)
    finally:
        os.close(fd)


def _check(before: int, t: float) -> None:
    grown = _resident() - before
    assert grown < MAX_GROWTH, f"resident memory grew by {grown >> 20} MiB"
    assert time.monotonic() - t < MAX_SECONDS, "over 20 s"


if __name__ == "__main__":
    fuzz_main(test_one_input, __file__, ("vmcorekit.dump", "vmcorekit.vmcoreinfo", "vmcorekit.arch", "vmcorekit.program.summary"))
