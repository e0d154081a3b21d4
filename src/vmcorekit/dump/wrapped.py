"""Dumps shipped inside a general-purpose compressor (`vmcore.zst`, `.xz`, `.gz`).

Random access needs the plain bytes, so the file is decompressed once into a private cache
(mode 0600: dumps hold secrets) keyed by the source's identity, and the copy is opened instead.
"""
from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import stat
import tempfile

from ..errors import DumpFormatError, VmcorekitError
from ..util.fileout import atomic_output
from .base import DumpFormat

MAGICS = {b"\x28\xb5\x2f\xfd": "zstd", b"\xfd7zXZ\x00": "xz", b"\x1f\x8b": "gzip"}


def wrapper_of(head: bytes) -> str | None:
    for magic, name in MAGICS.items():
        if head.startswith(magic):
            return name
    return None


def cache_dir() -> str:
    chosen = os.environ.get("VMCOREKIT_CACHE")
    d = chosen or os.path.join(tempfile.gettempdir(), f"vmcorekit-{os.getuid()}")
    os.makedirs(d, mode=0o700, exist_ok=True)
    # The default name is predictable: a folder made (or a link planted) there by another user
    # could hand us planted "decompressed copies". Only a folder of ours that no one else can
    # write to will do (the copies themselves are mode 0600); a chosen folder may be a link.
    st = os.stat(d) if chosen else os.lstat(d)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise VmcorekitError(f"{d}: the cache folder for decompressed dumps must be a folder of yours that "
                             f"no one else can write to; fix it or set VMCOREKIT_CACHE")
    return d


def unwrapped(path: str) -> str:
    """Path of the decompressed copy of `path` (made now if not cached)."""
    st = os.stat(path)
    key = hashlib.sha256(f"{os.path.realpath(path)}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:24]
    out = os.path.join(cache_dir(), f"{key}.dump")
    if os.path.exists(out):
        return out
    with open(path, "rb") as f:
        kind = wrapper_of(f.read(8))
    try:
        with open(path, "rb") as src, atomic_output(out) as dst:
            if kind == "zstd":
                _unzstd(src, dst)
            else:
                opener = gzip.open if kind == "gzip" else lzma.open
                with opener(src) as z:  # type: ignore[operator]
                    while chunk := z.read(1 << 22):
                        dst.write(chunk)
    except (OSError, EOFError, lzma.LZMAError, ValueError) as e:
        raise DumpFormatError(path, None, f"cannot decompress this {kind} file: {e}") from None
    except Exception as e:  # zstandard.ZstdError has no common base with the above
        if type(e).__module__.startswith("zstandard") or "Zstd" in type(e).__name__:
            raise DumpFormatError(path, None, f"cannot decompress this {kind} file: {e}") from None
        raise
    return out


def _unzstd(src: "object", dst: "object") -> None:
    """Frame by frame, so a truncated archive is an error rather than a short copy."""
    import zstandard

    # --long=31 archives need a window of up to 2 GiB.
    dctx = zstandard.ZstdDecompressor(max_window_size=1 << 31)
    dobj = dctx.decompressobj()
    pending = b""
    while True:
        chunk = pending or src.read(1 << 22)  # type: ignore[attr-defined]
        pending = b""
        if not chunk:
            break
        dst.write(dobj.decompress(chunk))  # type: ignore[attr-defined]
        if dobj.eof:
            pending = dobj.unused_data
            dobj = dctx.decompressobj()
            if not pending:
                pending = src.read(1 << 22)  # type: ignore[attr-defined]
                if not pending:
                    return
    if not dobj.eof:
        raise EOFError("the compressed stream ends in the middle of a frame (truncated file)")


# A container, not a dump format: the registry probes the decompressed copy again.
FORMAT = DumpFormat("wrapped", None, lambda head: wrapper_of(head) is not None, unwrap=unwrapped)
