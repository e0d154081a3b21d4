"""Per-page compression for the writers, on a worker pool.

The codec flags and names are dump/codecs.py's. Levels follow makedumpfile: zlib
Z_BEST_SPEED (1), LZO1X-1, snappy, zstd level 1. A page whose compressed form is not smaller
than the page is stored raw (flags 0). Compressor objects are kept per thread because zstd
contexts and the LZO work memory must not be shared; zlib and zstandard release the GIL while
they compress, so threads give real parallelism.
"""
from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ..dump.codecs import CODEC_FLAGS, CodecUnavailableError

CODECS = ("none", *CODEC_FLAGS)
ZLIB_HEADER_L1 = zlib.compress(b"", 1)[:2]  # CMF/FLG of a 32 KiB window, fastest level

_local = threading.local()


def _need(module: str, pip_name: str, codec: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        raise CodecUnavailableError(f"writing {codec} pages needs the '{pip_name}' package ({e})") from None


def compressor(codec: str) -> Callable[[bytes], bytes] | None:
    """A function compressing one page with `codec` for the calling thread (None for "none")."""
    if codec == "none":
        return None
    cache = getattr(_local, "fns", None)
    if cache is None:
        cache = _local.fns = {}
    fn = cache.get(codec)
    if fn is not None:
        return fn
    if codec == "zlib":
        def fn(data: bytes) -> bytes:
            # A window of twice the page finds every match a 32 KiB one would, so the deflate
            # stream is the one makedumpfile's deflateInit(Z_BEST_SPEED) makes, several times
            # faster (less state to set up). Only the header names the window: write the 32 KiB
            # header so that the bytes are makedumpfile's too.
            out = zlib.compress(data, 1, min(15, max(9, len(data).bit_length() + 1)))
            return ZLIB_HEADER_L1 + out[2:]
    elif codec == "lzo":
        lzo = _need("lzallright", "lzallright", "LZO").LZOCompressor()
        fn = lzo.compress
    elif codec == "snappy":
        fn = _need("cramjam", "cramjam", "snappy").snappy.compress_raw
    elif codec == "zstd":
        zc = _need("zstandard", "zstandard", "zstd").ZstdCompressor(level=1)
        fn = zc.compress
    else:
        raise ValueError(f"unknown codec {codec!r}; expected one of {', '.join(CODECS)}")
    cache[codec] = fn
    return fn


def check_codec(codec: str) -> None:
    """Fail early (before any output) if the codec's package is missing."""
    compressor(codec)


def compress_pages(codec: str, pages: np.ndarray, skip: np.ndarray,
                   zero: np.ndarray | None = None) -> list[tuple[int, bytes]]:
    """(flags, stored bytes) for each row of `pages` (n x page_size uint8); rows where `skip`
    is set (zero pages, unreadable pages) get (0, b""). Rows flagged in `zero` (all zeros)
    reuse one compressed zero page: the bytes are the same, the work is not."""
    fn = compressor(codec)
    flag = CODEC_FLAGS.get(codec, 0)
    ps = pages.shape[1] if pages.ndim == 2 else 0
    out: list[tuple[int, bytes]] = []
    skip_l = skip.tolist()
    zero_l = zero.tolist() if zero is not None else [False] * len(skip_l)
    zero_stored: tuple[int, bytes] | None = None
    for i in range(len(pages)):
        if skip_l[i]:
            out.append((0, b""))
            continue
        if zero_l[i] and zero_stored is not None:
            out.append(zero_stored)
            continue
        raw = pages[i].tobytes()
        stored = (0, raw)
        if fn is not None:
            c = bytes(fn(raw))
            if len(c) < ps:
                stored = (flag, c)
        if zero_l[i]:
            zero_stored = stored
        out.append(stored)
    return out
