"""Page codecs of the kdump-compressed format.

A page descriptor's flags name at most one codec; pages whose compressed form would not be
smaller are stored raw (no codec bit). zlib is always available; LZO, snappy and zstd come
from optional packages that are imported on first use, so a dump that never uses them does
not need them installed.
"""
from __future__ import annotations

import zlib
from types import ModuleType
from typing import Any, Callable

from ..errors import CodecUnavailableError, CorruptPageError

DUMP_DH_COMPRESSED_ZLIB = 0x1
DUMP_DH_COMPRESSED_LZO = 0x2
DUMP_DH_COMPRESSED_SNAPPY = 0x4
DUMP_DH_COMPRESSED_INCOMPLETE = 0x8  # header.status only: the writer stopped early
DUMP_DH_EXCLUDED_VMEMMAP = 0x10  # header.status only
DUMP_DH_COMPRESSED_ZSTD = 0x20

CODEC_FLAGS: dict[str, int] = {
    "zlib": DUMP_DH_COMPRESSED_ZLIB,
    "lzo": DUMP_DH_COMPRESSED_LZO,
    "snappy": DUMP_DH_COMPRESSED_SNAPPY,
    "zstd": DUMP_DH_COMPRESSED_ZSTD,
}
CODEC_MASK = DUMP_DH_COMPRESSED_ZLIB | DUMP_DH_COMPRESSED_LZO | DUMP_DH_COMPRESSED_SNAPPY | DUMP_DH_COMPRESSED_ZSTD
_FLAG_NAMES = {v: k for k, v in CODEC_FLAGS.items()}


def codec_name(flags: int) -> str:
    """Name of the codec a descriptor's flags select: "zlib", "lzo", "snappy", "zstd" or
    "none"; "invalid" when several codec bits are set."""
    bits = flags & CODEC_MASK
    if bits == 0:
        return "none"
    return _FLAG_NAMES.get(bits, "invalid")


def codec_names(flags: int) -> list[str]:
    """Every codec named by a flags word (header.status may announce several)."""
    return [name for name, bit in CODEC_FLAGS.items() if flags & bit]


_modules: dict[str, ModuleType] = {}


def _need(module: str, pip_name: str, codec: str) -> Any:
    mod = _modules.get(module)
    if mod is None:
        try:
            mod = __import__(module, fromlist=["_"])
        except ImportError as e:
            raise CodecUnavailableError(
                f"this dump uses {codec} pages; install the '{pip_name}' package to read them ({e})"
            ) from None
        _modules[module] = mod
    return mod


def _zlib_decompress(data: bytes, page_size: int) -> bytes:
    # Bounded output: a crafted stream cannot inflate past one page plus a byte.
    d = zlib.decompressobj()
    out = d.decompress(data, page_size + 1)
    if not d.eof:
        raise ValueError("zlib stream does not end within one page")
    return out


_lzo: Any = None


def _lzo_codec() -> Any:
    global _lzo
    if _lzo is None:  # one instance: it owns the compressor's work memory
        _lzo = _need("lzallright", "lzallright", "LZO").LZOCompressor()
    return _lzo


def _lzo_decompress(data: bytes, page_size: int) -> bytes:
    # LZO output can exceed the hint; the stored size (<= one page) bounds it to a few MiB.
    return bytes(_lzo_codec().decompress(data, output_size_hint=page_size))


def _snappy_decompress(data: bytes, page_size: int) -> bytes:
    snappy = _need("cramjam", "cramjam", "snappy").snappy
    # The raw format starts with the uncompressed length: refuse before allocating.
    n = snappy.decompress_raw_len(data)
    if n != page_size:
        raise ValueError(f"snappy header announces {n} bytes, expected {page_size}")
    return bytes(snappy.decompress_raw(data))


def _zstd_decompress(data: bytes, page_size: int) -> bytes:
    zstd = _need("zstandard", "zstandard", "zstd")
    n = zstd.frame_content_size(data)
    if n not in (-1, page_size):  # -1: size not recorded in the frame
        raise ValueError(f"zstd frame announces {n} bytes, expected {page_size}")
    return zstd.ZstdDecompressor().decompress(data, max_output_size=page_size + 1)


_DECOMPRESS: dict[int, Callable[[bytes, int], bytes]] = {
    DUMP_DH_COMPRESSED_ZLIB: _zlib_decompress,
    DUMP_DH_COMPRESSED_LZO: _lzo_decompress,
    DUMP_DH_COMPRESSED_SNAPPY: _snappy_decompress,
    DUMP_DH_COMPRESSED_ZSTD: _zstd_decompress,
}


def decompress_page(flags: int, data: bytes, page_size: int, *, paddr: int = 0) -> bytes:
    """Decode one stored page. `flags` is the page descriptor's flags word; the result is
    exactly `page_size` bytes, otherwise CorruptPageError (naming `paddr`) is raised. A
    missing optional codec package raises CodecUnavailableError."""
    bits = flags & CODEC_MASK
    if bits == 0:
        if len(data) != page_size:
            raise CorruptPageError(paddr, f"raw page holds {len(data)} bytes, expected {page_size}")
        return bytes(data)
    fn = _DECOMPRESS.get(bits)
    if fn is None:
        raise CorruptPageError(paddr, f"page descriptor flags {flags:#x} name several codecs")
    try:
        out = fn(data, page_size)
    except CodecUnavailableError:
        raise
    except Exception as e:  # each codec library raises its own exception types
        raise CorruptPageError(paddr, f"{_FLAG_NAMES[bits]} data does not decompress: {e}") from None
    if len(out) != page_size:
        raise CorruptPageError(
            paddr, f"{_FLAG_NAMES[bits]} data decompresses to {len(out)} bytes, expected {page_size}"
        )
    return out


def compress_page(codec: str, data: bytes) -> bytes:
    """Compress one page with a codec named as in CODEC_FLAGS (for writers and tests)."""
    if codec == "zlib":
        return zlib.compress(data)
    if codec == "lzo":
        return bytes(_lzo_codec().compress(data))
    if codec == "snappy":
        return bytes(_need("cramjam", "cramjam", "snappy").snappy.compress_raw(data))
    if codec == "zstd":
        return _need("zstandard", "zstandard", "zstd").ZstdCompressor().compress(data)
    raise ValueError(f"unknown codec {codec!r}; expected one of {', '.join(CODEC_FLAGS)}")
