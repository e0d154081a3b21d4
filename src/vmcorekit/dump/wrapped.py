"""Dumps shipped inside a general-purpose compressor (`vmcore.zst`, `.xz`, `.gz`).

Random access needs the plain bytes, so the file is decompressed once into a private cache and
the copy is opened instead. A small compressed file may claim terabytes, so the copy is made
within bounds:

- streamed in bounded pieces (never a whole frame in memory);
- the first piece must start a dump (a known format's signature), else nothing is written;
- at most VMCOREKIT_MAX_DECOMPRESSED bytes (default 64 GiB: above the filtered dumps of most
  machines, and a compressed dump larger than that is better filtered or opened plain; a
  user who needs more raises it), and never into the cache folder's last GiB of free space:
  checked before (against a zstd frame's declared size) and as the copy grows.

The cache: $VMCOREKIT_CACHE when set, else $XDG_CACHE_HOME/vmcorekit (~/.cache/vmcorekit),
mode 0700, copies mode 0600 (dumps hold secrets). A copy is named by a SHA-256 of the
compressed file's content (streamed), so one content has one copy whatever its path or
mtime; `index.json` remembers which (path, device, inode, size, mtime) hashed to which key,
so a second open costs a stat, not a hash, and a changed file's old copy is dropped rather
than left behind. The cache is capped (VMCOREKIT_CACHE_MAX, default 20 GiB): the least
recently used copies go first. `vmcorekit cache` shows and clears it.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import lzma
import os
import re
import stat
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from ..errors import CacheError, DumpFormatError, VmcorekitError
from ..util.fileout import atomic_output
from .base import DumpFormat

MAGICS = {b"\x28\xb5\x2f\xfd": "zstd", b"\xfd7zXZ\x00": "xz", b"\x1f\x8b": "gzip"}
DEFAULT_MAX_DECOMPRESSED = 64 << 30
DEFAULT_CACHE_MAX = 20 << 30
FREE_MARGIN = 1 << 30  # free space the copy leaves in the cache's file system
CHUNK = 4 << 20  # bytes decompressed at a time
SPACE_EVERY = 256 << 20  # free space looked at again after this many bytes written
INDEX = "index.json"
SUFFIX = ".dump"


def wrapper_of(head: bytes) -> str | None:
    for magic, name in MAGICS.items():
        if head.startswith(magic):
            return name
    return None


def parse_size(text: str) -> int:
    """Bytes from '64G', '500M', '1.5T', '4096' (binary units; B optional)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*", text.lower())
    if not m:
        raise ValueError(f"expected a size such as 64G, 500M or 4096, got {text!r}")
    return int(float(m.group(1)) * (1 << (10 * " kmgtp".index(m.group(2) or " "))))


def _env_size(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return parse_size(raw)
    except ValueError as e:
        raise VmcorekitError(f"{name}: {e}") from None


def max_decompressed() -> int:
    return _env_size("VMCOREKIT_MAX_DECOMPRESSED", DEFAULT_MAX_DECOMPRESSED)


def cache_max() -> int:
    return _env_size("VMCOREKIT_CACHE_MAX", DEFAULT_CACHE_MAX)


def cache_dir(create: bool = True) -> str:
    chosen = os.environ.get("VMCOREKIT_CACHE")
    if chosen:
        d = chosen
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "vmcorekit")
    if not create and not os.path.isdir(d):
        return d
    os.makedirs(d, mode=0o700, exist_ok=True)
    # A folder made (or a link planted) there by another user could hand us planted
    # "decompressed copies". Only a folder of ours that no one else can write to will do; a
    # folder the user chose may be a link.
    st = os.stat(d) if chosen else os.lstat(d)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise VmcorekitError(f"{d}: the cache folder for decompressed dumps must be a folder of yours that "
                             f"no one else can write to; fix it or set VMCOREKIT_CACHE")
    if stat.S_IMODE(st.st_mode) != 0o700:
        with contextlib.suppress(OSError):
            os.chmod(d, 0o700)
    return d


# -- the index: which file identity hashed to which copy --------------------------------------
def _load_index(d: str) -> dict[str, Any]:
    try:
        with open(os.path.join(d, INDEX), encoding="utf-8") as f:
            idx = json.load(f)
        if isinstance(idx, dict) and isinstance(idx.get("files"), dict):
            return idx
    except (OSError, ValueError):
        pass
    return {"files": {}}


def _save_index(d: str, idx: dict[str, Any]) -> None:
    with contextlib.suppress(OSError, VmcorekitError), atomic_output(os.path.join(d, INDEX)) as f:
        f.write(json.dumps(idx, indent=1, sort_keys=True).encode())


def _identity(path: str, st: os.stat_result) -> str:
    return f"{os.path.realpath(path)}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}"


def content_key(path: str) -> str:
    """SHA-256 of the file's bytes (streamed), cut to 32 hex digits."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()[:32]


def entries(d: str | None = None) -> list[dict[str, Any]]:
    """The cached copies: key, path, size, last use, the files they came from."""
    d = d or cache_dir(create=False)
    if not os.path.isdir(d):
        return []
    sources: dict[str, list[str]] = {}
    for ident, key in _load_index(d)["files"].items():
        sources.setdefault(key, []).append(ident.split("\0", 1)[0])
    out = []
    for name in sorted(os.listdir(d)):
        if not name.endswith(SUFFIX):
            continue
        p = os.path.join(d, name)
        with contextlib.suppress(OSError):
            st = os.stat(p)
            key = name[:-len(SUFFIX)]
            out.append({"key": key, "path": p, "size": st.st_size, "last_used": st.st_mtime,
                        "sources": sorted(set(sources.get(key, [])))})
    return out


def clear(d: str | None = None) -> tuple[int, int]:
    """Remove every copy (and the index); (copies removed, bytes freed)."""
    d = d or cache_dir(create=False)
    n = freed = 0
    for e in entries(d):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(e["path"])
            n += 1
            freed += e["size"]
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(d, INDEX))
    return n, freed


def _evict(d: str, keep: str, cap: int) -> None:
    """Least recently used copies go until the cache is within `cap` (never `keep`)."""
    es = sorted(entries(d), key=lambda e: e["last_used"])
    total = sum(e["size"] for e in es)
    for e in es:
        if total <= cap:
            break
        if e["path"] == keep:
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(e["path"])
            total -= e["size"]


# -- making the copy -----------------------------------------------------------------------------
def unwrapped(path: str, accept: Callable[[bytes], bool] | None = None) -> str:
    """Path of the decompressed copy of `path` (made now if not cached). `accept` is asked
    about the copy's first bytes: a copy that would not be a dump is never made."""
    st = os.stat(path)
    d = cache_dir()
    idx = _load_index(d)
    files: dict[str, str] = idx["files"]
    ident = _identity(path, st)
    key = files.get(ident) or content_key(path)
    out = os.path.join(d, key + SUFFIX)
    _prune(d, files, keep=key)
    if not os.path.exists(out):
        _decompress(path, out, d, accept)
    os.utime(out)  # last use, for the LRU
    files[ident] = key
    _save_index(d, idx)
    _evict(d, out, cache_max())
    return out


def _live(ident: str) -> bool:
    """Whether the file an index entry was made from is still there, unchanged."""
    path = ident.split("\0", 1)[0]
    try:
        return _identity(path, os.stat(path)) == ident
    except OSError:
        return False


def _prune(d: str, files: dict[str, str], keep: str) -> None:
    """Forget entries whose file changed or went away, and delete the copies no remaining
    file uses (but `keep`): a changed dump's old copy does not pile up in the cache."""
    used_before = set(files.values())
    for ident in [i for i in files if not _live(i)]:
        del files[ident]
    for k in used_before - set(files.values()) - {keep}:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(d, k + SUFFIX))


def _free(d: str) -> int:
    s = os.statvfs(d)
    return s.f_bavail * s.f_frsize


def _declared_size(path: str, kind: str | None) -> int | None:
    """The decompressed size a zstd frame header declares (None when it does not)."""
    if kind != "zstd":
        return None
    import zstandard

    with open(path, "rb") as f:
        head = f.read(32)
    try:
        n = zstandard.frame_content_size(head)
    except Exception:  # zstandard.ZstdError: not a frame header it can read
        return None
    return n if n >= 0 else None


_ZSTD_MAGIC = 0xFD2FB528


def zstd_frames_problem(f: BinaryIO, size: int) -> tuple[int, str] | None:
    """(offset, what is wrong) when the zstd frames of `f` do not run complete to its end
    (a truncated download), else None. Walks frame and block headers only (seeks over the
    data): the decompressor's stream reader stops quietly at a cut."""
    pos = 0
    while pos < size:
        f.seek(pos)
        head = f.read(18)
        if len(head) < 4:
            return pos, "stray bytes after the last frame"
        magic = int.from_bytes(head[:4], "little")
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame: a u32 length, then that many bytes
            if len(head) < 8:
                return pos, "skippable frame header cut off"
            pos += 8 + int.from_bytes(head[4:8], "little")
            if pos > size:
                return size, "skippable frame runs past the end of the file (truncated file)"
            continue
        if magic != _ZSTD_MAGIC:
            return pos, f"expected a zstd frame (magic 28 b5 2f fd), found {head[:4].hex(' ')}"
        if len(head) < 5:
            return size, "frame header cut off (truncated file)"
        fhd = head[4]
        single = fhd >> 5 & 1
        fcs = (0 if not single else 1, 2, 4, 8)[fhd >> 6]
        hdr = 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
        checksum = 4 if fhd >> 2 & 1 else 0
        pos += hdr
        while True:
            f.seek(pos)
            bh = f.read(3)
            if len(bh) < 3:
                return size, "the stream ends in the middle of a frame (truncated file)"
            b = int.from_bytes(bh, "little")
            last, btype, bsize = b & 1, b >> 1 & 3, b >> 3
            if btype == 3:
                return pos, "reserved zstd block type"
            pos += 3 + (1 if btype == 1 else bsize)
            if pos > size:
                return size, "the stream ends in the middle of a frame (truncated file)"
            if last:
                break
        pos += checksum
        if pos > size:
            return size, "the frame's checksum is cut off (truncated file)"
    return None


def _reader(kind: str | None, src: BinaryIO) -> Any:
    """A file-like object whose read(n) returns at most n decompressed bytes."""
    if kind == "zstd":
        import zstandard

        # --long=31 archives need a window of up to 2 GiB; frames one after another are one
        # stream (zstd -c a b > c.zst), as zstd(1) reads them.
        return zstandard.ZstdDecompressor(max_window_size=1 << 31).stream_reader(src, read_across_frames=True)
    return gzip.GzipFile(fileobj=src) if kind == "gzip" else lzma.LZMAFile(src)


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _decompress(path: str, out: str, d: str, accept: Callable[[bytes], bool] | None) -> None:
    with open(path, "rb") as f:
        kind = wrapper_of(f.read(8))
    limit = max_decompressed()
    declared = _declared_size(path, kind)
    if declared is not None:
        if declared > limit:
            raise CacheError(f"{path} at offset 0x0: the {kind} frame declares {declared} bytes decompressed, more than the "
                             f"limit of {limit} (VMCOREKIT_MAX_DECOMPRESSED; raise it to open this file)")
        if declared + FREE_MARGIN > _free(d):
            raise CacheError(f"{path} at offset 0x0: the {kind} frame declares {_human(declared)} decompressed "
                             f"but the cache folder {d} has "
                             f"{_human(_free(d))} free (keeping {_human(FREE_MARGIN)}); free space or set "
                             "VMCOREKIT_CACHE elsewhere")
    written = 0
    if kind == "zstd":
        with open(path, "rb") as f:
            bad = zstd_frames_problem(f, os.fstat(f.fileno()).st_size)
        if bad is not None:
            raise DumpFormatError(path, bad[0], f"cannot decompress this zstd file: {bad[1]}")
    try:
        with open(path, "rb") as src, _progress(path, os.fstat(src.fileno()).st_size) as advance, \
                _reader(kind, src) as z, atomic_output(out) as dst:
            next_space = SPACE_EVERY
            while chunk := z.read(CHUNK):
                if written == 0 and accept is not None and not accept(chunk[:16]):
                    raise DumpFormatError(path, 0, f"the {kind} file holds no crash dump: its content starts "
                                                   f"with {bytes(chunk[:8])!r}, no dump format's signature")
                written += len(chunk)
                if written > limit:
                    raise CacheError(f"{path} at offset {src.tell():#x}: decompresses to more than {limit} bytes "
                                     "(VMCOREKIT_MAX_DECOMPRESSED; raise it to open this file)")
                if written >= next_space:
                    next_space += SPACE_EVERY
                    if _free(d) < FREE_MARGIN + CHUNK:
                        raise CacheError(f"{path} at offset {src.tell():#x}: the cache folder {d} is nearly full "
                                         f"after {_human(written)} of "
                                         "the copy; free space or set VMCOREKIT_CACHE elsewhere")
                dst.write(chunk)
                advance(src.tell())
    except (OSError, EOFError, lzma.LZMAError, ValueError) as e:
        if isinstance(e, VmcorekitError):
            raise
        raise DumpFormatError(path, None, f"cannot decompress this {kind} file: {e}") from None
    except VmcorekitError:
        raise
    except Exception as e:  # zstandard.ZstdError has no common base with the above
        if type(e).__module__.startswith("zstandard") or "Zstd" in type(e).__name__:
            raise DumpFormatError(path, None, f"cannot decompress this {kind} file: {e}") from None
        raise


@contextlib.contextmanager
def _progress(path: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (rich) while decompressing, when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield lambda done: None
        return
    try:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
    except ImportError:
        yield lambda done: None
        return
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"decompressing {os.path.basename(path)}", total=total)
        last = [0.0]

        def advance(done: int) -> None:
            now = time.monotonic()
            if now - last[0] > 0.1:
                last[0] = now
                bar.update(task, completed=done)

        yield advance


# A container, not a dump format: the registry probes the decompressed copy again.
FORMAT = DumpFormat("wrapped", None, lambda head: wrapper_of(head) is not None, unwrap=unwrapped)
