"""Page compression for the writers, a batch of pages at a time, on a worker pool.

The codec flags and names are dump/codecs.py's. Levels follow makedumpfile: zlib
Z_BEST_SPEED (compress2 with level 1, a 32 KiB window), LZO1X-1, snappy, zstd level 1. A page
whose compressed form is not smaller than the page is stored raw (flags 0).

zlib pages come from one of two engines (zlib_engine()): the system's libz with makedumpfile's
settings, whose output is makedumpfile's, byte for byte (the default); or ISA-L's deflate (the
isal package, level 1, asked for by name), ~4x faster than libz's level 1 (12.6 vs 52 us a page
on the 4 GiB bench dump) for pages a few % larger, which every zlib inflates. ISA-L is not the
default because its bytes are not reproducible: it does not clear its match table for small
inputs, so a page's stream depends on what the same process compressed before, and which pages
a forked worker saw before depends on scheduling (two -c -d 31 runs over the corpus ELF with 2
workers differed in one page). Same input and options must give the same file.

Where the time goes: nearly all of it is the codec itself (libz level 1 costs ~50 us of CPU for
a 4 KiB page, as in makedumpfile). What this module saves is work whose result is known:

- a zero page is compressed once per run;
- with a slow codec (zlib, lzallright), a page equal to one seen before reuses that page's
  compressed bytes. Kernel memory is full of such pages (0xcc and 0xff fills, slab poison
  0x5a, copies of one table): in the corpus kdump dump, an eighth of the non-zero pages at
  -d 31 and 46% at -d 0 (most of them fills, which compress fast: the CPU saved is ~9% at
  -d 0, ~0 at -d 31). Candidates are found with a 64-bit fingerprint per page (one matrix
  product per batch) in a fixed-size table; a candidate is reused only after an exact
  comparison of its bytes (a dict keyed by the page), so the output is the one compressing
  every page would give.

LZO: makedumpfile calls liblzo2's lzo1x_1_compress. When that library is on the system (it
is wherever makedumpfile is), it is called through ctypes: many times faster than the
lzallright package (lzokay's compressor, which also makes other, smaller streams) and with
makedumpfile's very bytes. lzallright stays the fallback.

zlib, zstandard and the ctypes calls release the GIL while they compress, so worker threads
run in parallel; compressor state is kept per thread (zstd contexts, LZO work memory).

The native loop: where the optional C extension `_pagepack` was built (`pip install .` with a
C compiler), LZO and libz pages are compressed a batch per call with the GIL released, by the
same liblzo2 and libz the Python path calls, so the bytes are the same (tests compare both).
It spares LZO its ~2.5 us of ctypes and Python around each page. zstd and snappy stay on the
Python path: their packages bundle their own codec builds (zstandard's libzstd is not the
system's; cramjam's snappy is a Rust port), whose bytes a system library need not match.
VMCOREKIT_NATIVE=0 turns the native loop off (the pure-Python path, for tests and A/B runs).
"""
from __future__ import annotations

import ctypes
import os
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..dump.codecs import CODEC_FLAGS
from ..errors import CodecUnavailableError

CODECS = ("none", *CODEC_FLAGS)
LIBLZO2_NAMES = ("liblzo2.so.2", "liblzo2.so", "liblzo2.dylib")
LIBZ_NAMES = ("libz.so.1", "libz.so", "libz.dylib")
SEEN_SLOTS = 1 << 16  # fingerprints remembered (512 KiB)
CACHE_PAGES = 1024  # distinct repeated pages whose compressed form is kept (at most ~8 MiB)

_local = threading.local()
# (one page as a C-contiguous uint8 array, the address of its first byte) -> compressed bytes
PageFn = Callable[[np.ndarray, int], bytes]
# (addresses of pages) -> (stored size of each, their stored bytes back to back)
ManyFn = Callable[[list[int]], tuple[list[int], bytes]]


def _need(module: str, pip_name: str, codec: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        raise CodecUnavailableError(f"writing {codec} pages needs the '{pip_name}' package ({e})") from None


# -- LZO through the system's liblzo2 -----------------------------------------------------------

_lzo_lib: Any = None
_lzo_lock = threading.Lock()


def liblzo2() -> Any | None:
    """liblzo2 loaded and initialised (lzo_init), or None when it is absent or unusable."""
    with _lzo_lock:
        return liblzo2_unlocked()


def liblzo2_unlocked() -> Any | None:
    global _lzo_lib
    if _lzo_lib is None:
        _lzo_lib = _load_liblzo2() or False
    return _lzo_lib or None


def _lzo_candidates() -> Iterator[str]:
    yield from LIBLZO2_NAMES
    import ctypes.util
    found = ctypes.util.find_library("lzo2")  # runs ldconfig: only when the usual names fail
    if found:
        yield found


def _load_liblzo2() -> Any | None:
    for name in _lzo_candidates():
        try:
            lib = ctypes.CDLL(name)  # CDLL: calls release the GIL
            init, fn = getattr(lib, "__lzo_init_v2"), lib.lzo1x_1_compress
        except (OSError, AttributeError):
            continue
        vp, sz = ctypes.c_void_p, ctypes.sizeof
        # lzo_init(): the library checks that our idea of its types is its own (LZO 2.x ABI):
        # short, int, long, lzo_uint32_t, lzo_uint, dict entry, char *, void *, lzo_callback_t.
        init.restype = ctypes.c_int
        init.argtypes = [ctypes.c_uint] + [ctypes.c_int] * 9
        lib.lzo_version.restype = ctypes.c_uint
        if init(lib.lzo_version(), sz(ctypes.c_short), sz(ctypes.c_int), sz(ctypes.c_long), 4, sz(ctypes.c_size_t),
                sz(vp), sz(ctypes.c_char_p), sz(vp), 6 * sz(vp)) != 0:
            continue
        fn.restype = ctypes.c_int
        fn.argtypes = [vp, ctypes.c_size_t, vp, ctypes.POINTER(ctypes.c_size_t), vp]
        return lib
    return None


def _lzo_fn(page_size: int) -> PageFn:
    many = _lzo_many_fn(page_size)
    if many is None:
        lzo = _need("lzallright", "lzallright", "LZO").LZOCompressor().compress
        return lambda page, addr: lzo(page)
    # One page is a batch of one (a page that does not shrink comes back as itself).
    return lambda page, addr: many([addr])[1]


def _lzo_many_fn(page_size: int) -> ManyFn | None:
    """liblzo2 over many pages in one Python loop, straight into one output buffer: the
    per-page cost around the C call is what separates LZO (~6 us a page) from makedumpfile."""
    lib = liblzo2()
    if lib is None:
        return None
    fn = lib.lzo1x_1_compress
    # LZO1X_1_MEM_COMPRESS is 16384 dictionary entries of at most a pointer each; `bound` is
    # LZO's documented worst case for an incompressible page.
    wrkmem = ctypes.create_string_buffer(16384 * ctypes.sizeof(ctypes.c_void_p))
    bound = page_size + page_size // 16 + 64 + 3
    out_len = ctypes.c_size_t()
    out_len_p = ctypes.byref(out_len)
    memmove, string_at = ctypes.memmove, ctypes.string_at
    held: list[Any] = [None]

    def compress_many(addrs: list[int]) -> tuple[list[int], bytes]:
        # Each page advances the cursor by at most page_size and LZO writes at most `bound`
        # bytes past it, so len(addrs) * bound always suffices.
        need = len(addrs) * bound
        buf = held[0]
        if buf is None or len(buf) < need:
            buf = held[0] = ctypes.create_string_buffer(need)
        start = o = ctypes.addressof(buf)
        sizes = []
        for a in addrs:
            if fn(a, page_size, o, out_len_p, wrkmem) != 0 or out_len.value >= page_size:
                memmove(o, a, page_size)  # does not shrink: stored raw
                n = page_size
            else:
                n = out_len.value
            sizes.append(n)
            o += n
        return sizes, string_at(start, o - start)

    return compress_many


def lzo_backend() -> str:
    """Which LZO compressor writing uses: "liblzo2" (makedumpfile's) or "lzallright"."""
    return "liblzo2" if liblzo2() is not None else "lzallright"


# -- the native loop ----------------------------------------------------------------------------

_native_codecs: dict[str, int | None] = {}


def native_module() -> Any | None:
    """The C extension `_pagepack`, or None when it was not built or VMCOREKIT_NATIVE=0."""
    if os.environ.get("VMCOREKIT_NATIVE", "1") == "0":
        return None
    import importlib  # by name: the compiled module has no source for the layer checks to read
    try:
        return importlib.import_module(f"{__package__}._pagepack")
    except ImportError:
        return None


def native_codec(codec: str, engine: str = "zlib") -> int | None:
    """The native loop's id for `codec`, or None when pages of it go the Python way: no
    extension, the codec's library missing, or (libz) not the library Python's zlib runs."""
    pp = native_module()
    if pp is None or codec not in ("lzo", "zlib") or (codec == "zlib" and engine != "zlib"):
        return None
    with _lzo_lock:
        if codec not in _native_codecs:
            if codec == "lzo":
                ok = liblzo2_unlocked() is not None and pp.load(pp.LZO, list(_lzo_candidates())) is not None
                _native_codecs[codec] = pp.LZO if ok else None
            else:
                # byte-identical to zlib.compress only if it is the same zlib
                _native_codecs[codec] = pp.ZLIB if pp.load(pp.ZLIB, LIBZ_NAMES) == zlib.ZLIB_RUNTIME_VERSION else None
        return _native_codecs[codec]


# -- which zlib ---------------------------------------------------------------------------------

ZLIB_ENGINES = ("auto", "isal", "zlib")


def zlib_engine(requested: str = "auto") -> str:
    """The deflate implementation zlib pages are written with: "zlib" (the system's libz at
    makedumpfile's settings: its very bytes, reproducible) or "isal" (Intel ISA-L through the
    isal package: ~4x faster than zlib's level 1 at pages a few % larger, any zlib inflates
    them, but the bytes vary from run to run). "auto" is zlib: output must be reproducible."""
    if requested not in ZLIB_ENGINES:
        raise ValueError(f"unknown zlib engine {requested!r}; expected one of {', '.join(ZLIB_ENGINES)}")
    if requested in ("zlib", "auto"):
        return "zlib"
    try:
        import isal.isal_zlib
        del isal
    except ImportError as e:
        raise CodecUnavailableError(f"the isal zlib engine needs the 'isal' package ({e})") from None
    return "isal"


# -- one page -----------------------------------------------------------------------------------

def compressor(codec: str, page_size: int = 4096, engine: str = "zlib") -> PageFn | None:
    """A function compressing one page with `codec` for the calling thread (None for "none"):
    fn(page, address) with `page` a C-contiguous uint8 array and `address` where its bytes are.
    `engine` is zlib_engine()'s answer, for the zlib codec."""
    if codec == "none":
        return None
    cache = getattr(_local, "fns", None)
    if cache is None:
        cache = _local.fns = {}
    key = (codec, page_size, engine if codec == "zlib" else "")
    fn = cache.get(key)
    if fn is not None:
        return fn
    if codec == "zlib" and engine == "isal":
        isal_compress = _need("isal.isal_zlib", "isal", "zlib (isal engine)").compress

        def fn(page: np.ndarray, addr: int) -> bytes:
            # ISA-L level 1 (its levels are 0-3): as small as zlib's level 1 within ~1%.
            return isal_compress(page, 1)
    elif codec == "zlib":
        def fn(page: np.ndarray, addr: int) -> bytes:
            # compress2(..., Z_BEST_SPEED) as makedumpfile: level 1, 32 KiB window, memLevel 8.
            return zlib.compress(page, 1)
    elif codec == "lzo":
        fn = _lzo_fn(page_size)
    elif codec == "snappy":
        snappy = _need("cramjam", "cramjam", "snappy").snappy.compress_raw

        def fn(page: np.ndarray, addr: int) -> bytes:
            return bytes(snappy(page))
    elif codec == "zstd":
        zstd = _need("zstandard", "zstandard", "zstd").ZstdCompressor(level=1).compress

        def fn(page: np.ndarray, addr: int) -> bytes:
            return zstd(page)
    else:
        raise ValueError(f"unknown codec {codec!r}; expected one of {', '.join(CODECS)}")
    cache[key] = fn
    return fn


def many_compressor(codec: str, page_size: int = 4096) -> ManyFn | None:
    """For the calling thread, a function compressing many pages at once, or None where the
    codec has none (then compressor() page by page): fn(addresses) -> (stored sizes, bytes),
    a page stored raw (its size page_size) when it does not shrink."""
    cache = getattr(_local, "many", None)
    if cache is None:
        cache = _local.many = {}
    key = (codec, page_size)
    if key not in cache:
        cache[key] = _lzo_many_fn(page_size) if codec == "lzo" else None
    return cache[key]


# -- a batch of pages ---------------------------------------------------------------------------

@dataclass
class StoredBatch:
    """What a batch of pages becomes: for each stored row (in row order) its descriptor flags
    and stored size, and the stored bytes of all of them back to back."""

    flags: np.ndarray  # uint32, one per stored row
    sizes: np.ndarray  # uint32, one per stored row
    data: bytes


def _odd_multipliers(n: int) -> np.ndarray:
    """n fixed pseudo-random odd 64-bit numbers: splitmix64 of 1..n (numpy.random costs
    ~20 ms of import for what this does in microseconds)."""
    with np.errstate(over="ignore"):
        z = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))) | np.uint64(1)


class PageCompressor:
    """Compresses batches of pages for one filter run; safe to call from several threads."""

    def __init__(self, codec: str, page_size: int, *, dedupe: bool | None = None,
                 zlib_engine_name: str = "auto") -> None:
        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}; expected one of {', '.join(CODECS)}")
        self.codec = codec
        self.page_size = page_size
        self.flag = CODEC_FLAGS.get(codec, 0)
        self.engine = zlib_engine(zlib_engine_name) if codec == "zlib" else "zlib"
        # Looking a page up costs ~2 us (copy, hash, compare): worth it against libz (~50 us a
        # page) and lzallright, not against ISA-L, liblzo2, zstd or snappy (measured slower
        # with it). dedupe=None: only then (True/False force it, for tests).
        if dedupe is None:
            dedupe = (codec == "zlib" and self.engine == "zlib") or (codec == "lzo" and lzo_backend() == "lzallright")
        self.dedupe = dedupe and codec != "none" and page_size % 8 == 0
        # the C loop: every page of a batch in one call, or with dedupe the pages that are no
        # candidate for reuse (the candidates are looked up one by one)
        self.native = native_codec(codec, self.engine) if codec != "none" else None
        self._pp = native_module() if self.native is not None else None
        self.reused = 0  # pages whose compressed bytes came from an equal page
        self._zero: tuple[int, bytes] | None = None
        self._seen = np.zeros(SEEN_SLOTS, dtype=np.uint64)
        self._shift = np.uint64(64 - (SEEN_SLOTS.bit_length() - 1))
        # Odd random multipliers: fingerprint = sum of the page's 64-bit words times these,
        # modulo 2**64. Only a hint: equal fingerprints are confirmed byte for byte.
        self._mult = _odd_multipliers(page_size // 8)
        self._cache: dict[bytes, tuple[int, bytes]] = {}
        self._lock = threading.Lock()
        if codec != "none":
            compressor(codec, page_size, self.engine)  # a missing package fails here, before any output

    @property
    def prefers_processes(self) -> bool:
        """Whether parallel compression wants forked worker processes rather than threads:
        ISA-L holds the GIL for the whole call; LZO (a ~3 us ctypes call a page) and snappy
        spend the time between calls in Python, so their threads mostly wait for the GIL.
        libz and zstd release it for long enough that threads scale (and cost less). On the
        4 GiB bench dump at -d 0, 2 LZO workers: threads 7.8 s, processes 5.7 s. The native
        loop releases the GIL for a whole batch: threads."""
        if self.native is not None:
            return False
        return (self.codec == "zlib" and self.engine == "isal") or self.codec in ("lzo", "snappy")

    def _one(self, fn: PageFn, page: np.ndarray, addr: int) -> tuple[int, bytes]:
        c = fn(page, addr)
        if len(c) < self.page_size:
            return self.flag, c
        return 0, page.tobytes()

    def zero_page(self) -> tuple[int, bytes]:
        """(flags, stored bytes) of an all-zero page."""
        if self._zero is None:
            z = np.zeros(self.page_size, dtype=np.uint8)
            fn = compressor(self.codec, self.page_size, self.engine)
            self._zero = (0, z.tobytes()) if fn is None else self._one(fn, z, z.ctypes.data)
        return self._zero

    def _candidates(self, pages: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Which of `rows` may equal a page met before (in an earlier batch or this one)."""
        words = pages.view(np.uint64)
        fp = (words if len(rows) == len(pages) else words[rows]) @ self._mult
        slot = (fp >> self._shift).astype(np.intp)
        cand = self._seen[slot] == fp
        _, first = np.unique(fp, return_index=True)
        again = np.ones(len(rows), dtype=bool)
        again[first] = False
        self._seen[slot] = fp  # races between threads only lose hints, never change bytes
        return cand | again

    def _lookup(self, fn: PageFn, page: np.ndarray, addr: int) -> tuple[int, bytes]:
        key = page.tobytes()
        hit = self._cache.get(key)  # dict lookup compares the whole page on a hash match
        if hit is not None:
            self.reused += 1
            return hit
        stored = self._one(fn, page, addr)
        with self._lock:
            if len(self._cache) >= CACHE_PAGES:
                del self._cache[next(iter(self._cache))]  # oldest first
            self._cache[key] = stored
        return stored

    def _pack_fresh(self, pages: np.ndarray, nz_rows: np.ndarray, cand: np.ndarray
                    ) -> dict[int, tuple[int, bytes | memoryview]]:
        """With the C loop: the pages of `nz_rows` that are no reuse candidate, compressed in one
        call, by their index in nz_rows; empty without it."""
        if self._pp is None or self.native is None:
            return {}
        fresh = np.flatnonzero(~cand)
        if not len(fresh):
            return {}
        raw_sizes, blob = self._pp.pack(self.native, pages, nz_rows[fresh].astype(np.int64),
                                        np.zeros(len(fresh), dtype=bool), b"", self.page_size)
        view, off, ps = memoryview(blob), 0, self.page_size
        out: dict[int, tuple[int, bytes | memoryview]] = {}
        for j, size in zip(fresh.tolist(), np.frombuffer(raw_sizes, dtype=np.uint32).tolist()):
            out[j] = (self.flag if size < ps else 0, view[off:off + size])
            off += size
        return out

    def compress(self, pages: np.ndarray, store: np.ndarray, zero: np.ndarray) -> StoredBatch:
        """Compress the rows of `pages` (n x page_size uint8) where `store` is set; `zero`
        marks all-zero rows (they share one compressed zero page)."""
        if not pages.flags.c_contiguous:
            pages = np.ascontiguousarray(pages)
        rows = np.flatnonzero(store)
        n = len(rows)
        fn = compressor(self.codec, self.page_size, self.engine)
        if fn is None:
            data = pages.tobytes() if n == len(pages) else pages[rows].tobytes()
            return StoredBatch(np.zeros(n, np.uint32), np.full(n, self.page_size, np.uint32), data)
        # Zero rows need no work: start from "every row is the zero page", then fill in the rest.
        is_zero = zero[rows]
        if self._pp is not None and self.native is not None and not self.dedupe:
            zf, zd = self.zero_page() if is_zero.any() else (0, b"")
            raw_sizes, data = self._pp.pack(self.native, pages, rows.astype(np.int64), is_zero, zd,
                                                    self.page_size)
            sizes = np.frombuffer(raw_sizes, dtype=np.uint32)
            flags = np.where(is_zero, np.uint32(zf), np.where(sizes < self.page_size, np.uint32(self.flag), np.uint32(0)))
            return StoredBatch(flags.astype(np.uint32), sizes, data)
        nz = np.flatnonzero(~is_zero)
        zf, zd = self.zero_page() if len(nz) < n else (0, b"")
        flags = np.full(n, zf, dtype=np.uint32)
        parts: list[bytes | memoryview] = [zd] * n
        if len(nz):
            nz_rows = rows[nz]
            many = None if self.dedupe else many_compressor(self.codec, self.page_size)
            if many is not None:
                sizes, blob = many((pages.ctypes.data + nz_rows * self.page_size).tolist())
                nz_sizes = np.array(sizes, dtype=np.uint32)
                flags[nz] = np.where(nz_sizes < self.page_size, self.flag, 0)
                if len(nz) == n:
                    return StoredBatch(flags, nz_sizes, blob)  # no zero rows to interleave
                view, off = memoryview(blob), 0
                for k, size in zip(nz.tolist(), sizes):
                    parts[k] = view[off:off + size]
                    off += size
            else:
                cand = self._candidates(pages, nz_rows) if self.dedupe else np.zeros(len(nz), dtype=bool)
                one, lookup = self._one, self._lookup
                base, ps = pages.ctypes.data, self.page_size
                done = self._pack_fresh(pages, nz_rows, cand)
                nz_flags: list[int] = []
                for j, (k, i, c) in enumerate(zip(nz.tolist(), nz_rows.tolist(), cand.tolist())):
                    got = None if c else done.get(j)
                    f, d = got if got is not None else (lookup if c else one)(fn, pages[i], base + i * ps)
                    nz_flags.append(f)
                    parts[k] = d
                flags[nz] = nz_flags
        return StoredBatch(flags, np.fromiter(map(len, parts), dtype=np.uint32, count=n), b"".join(parts))
