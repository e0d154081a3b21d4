"""Which files under the given paths are dumps.

Formats are recognised by their first bytes through the dump layer (`detect_format`), never
by name: ELF cores, kdump-compressed, flattened, and those inside zstd/xz/gzip (the first bytes
of the decompressed stream are checked too, so a `.log.gz` is not taken for a dump). An ELF
file is a dump only when it is a core (e_type ET_CORE). The files of a makedumpfile `--split`
set (kdump files whose sub-header says split=1, with one utsname, crash time and page count)
become one dump, `part1,part2,...`.

Files that do not probe as dumps are left out when found in a folder, unless their name says
dump (`vmcore`, `vmcore.N`, `*.kdump`, `*.vmcore`, `*.dump`, `dump.N`, ...: DUMP_NAMES,
optionally compressed; not `vmcoreinfo.txt` or `vmcore-dmesg.txt`): those, and
every file named on the command line, become rows with status `error` and the reason, so a
cut or garbage dump is visible in the index rather than silently skipped. Only regular files
are opened here; a special file named on the command line is left to a killable worker.
"""
from __future__ import annotations

import fnmatch
import os
import stat
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..dump import detect_format
from ..errors import VmcorekitError

DUMP_NAMES = ("vmcore", "vmcore.[0-9]*", "vmcore-[0-9]*", "vmcore.elf", "vmcore.flat", "vmcore.incomplete",
              "*.kdump", "*.vmcore", "*.dump", "dump.[0-9]*", "dump-[0-9]*")
WRAP_SUFFIXES = (".zst", ".xz", ".gz")
_INNER_MAGICS = (b"\x7fELF", b"KDUMP   ", b"makedumpfile", b"DISKDUMP")


@dataclass
class Candidate:
    """One dump to index: its files (several for a split set), what the probe said."""

    paths: list[str]
    kind: str | None = None          # the probe's format; None when it did not probe as a dump
    problem: str | None = None       # why it is not a dump (a row with status error)
    stats: list[tuple[int, int]] = field(default_factory=list)  # (size, mtime_ns) per file

    @property
    def path(self) -> str:
        return ",".join(self.paths)


def _looks_like_dump(name: str) -> bool:
    base = name
    for s in WRAP_SUFFIXES:
        if base.endswith(s):
            base = base[:-len(s)]
            break
    return any(fnmatch.fnmatch(base, pat) for pat in DUMP_NAMES)


def _inner_head(path: str, n: int = 64) -> bytes:
    """The first bytes inside a zstd/xz/gzip file."""
    import gzip
    import lzma
    with open(path, "rb") as f:
        magic = f.read(6)
        f.seek(0)
        try:
            if magic.startswith(b"\x28\xb5\x2f\xfd"):
                import zstandard
                r = zstandard.ZstdDecompressor(max_window_size=1 << 31).stream_reader(f)
                return r.read(n)
            opener = gzip.open if magic.startswith(b"\x1f\x8b") else lzma.open
            with opener(f) as z:  # type: ignore[operator]
                return z.read(n)
        except Exception:  # any decompressor's error: not a dump we can read
            return b""


def _is_core(path: str) -> bool:
    with open(path, "rb") as f:
        h = f.read(18)
    if len(h) < 18:
        return True  # a cut ELF: let triage say what is wrong
    return struct.unpack_from("<H" if h[5] != 2 else ">H", h, 16)[0] == 4  # ET_CORE


def probe(path: str) -> tuple[str | None, str | None]:
    """(format, None) for a dump, (None, reason) otherwise."""
    try:
        kind = detect_format(path)
        if kind == "wrapped":
            inner = _inner_head(path)
            if not any(inner.startswith(m) for m in _INNER_MAGICS):
                return None, "compressed file holds no dump (no ELF, KDUMP or makedumpfile signature inside)"
        elif kind == "elf" and not _is_core(path):
            return None, "ELF file is not a core (e_type is not ET_CORE)"
        return kind, None
    except (VmcorekitError, OSError, ValueError, EOFError) as e:
        return None, " ".join(str(e).split())


def _maybe_split(path: str) -> bool:
    """A cheap look (two small reads) before opening: does this plain kdump file's sub-header
    say split=1? (disk_dump_header: header_version at 8, block_size at 428; kdump_sub_header
    at block_size: split at +12, from header version 2.) A flattened stream is never taken
    for a split part."""
    try:
        with open(path, "rb") as f:
            head = f.read(464)
            if head[:8] != b"KDUMP   " or len(head) < 464:
                return False
            version, block_size = struct.unpack_from("<i", head, 8)[0], struct.unpack_from("<i", head, 428)[0]
            if version < 2 or not 512 <= block_size <= 1 << 18:
                return False
            f.seek(block_size + 12)
            sub = f.read(4)
            return len(sub) == 4 and struct.unpack("<i", sub)[0] != 0
    except OSError:
        return False


def _split_key(path: str) -> tuple[object, ...] | None:
    """For a kdump file of a --split set: what its set shares (folder, utsname, crash time,
    pages, block size); None for any other file."""
    if not _maybe_split(path):
        return None
    try:
        from ..dump import open_dump
        with open_dump(path) as phys:
            if not getattr(phys, "split", False):
                return None
            extra = phys.info.extra
            uts = extra.get("utsname")
            return (os.path.dirname(os.path.abspath(path)), repr(uts), repr(extra.get("timestamp")),
                    getattr(phys, "max_mapnr", None), phys.page_size)
    except (VmcorekitError, OSError, ValueError, LookupError, AttributeError):
        return None


def _walk(paths: Iterable[str]) -> Iterable[tuple[str, bool]]:
    """(file, named on the command line) for every file under `paths`, sorted, each once."""
    seen: set[str] = set()
    for top in paths:
        if os.path.isdir(top):
            for root, dirs, files in os.walk(top):
                dirs.sort()
                for name in sorted(files):
                    p = os.path.join(root, name)
                    if p not in seen:
                        seen.add(p)
                        yield p, False
        elif top not in seen:
            seen.add(top)
            yield top, True


def discover(paths: Iterable[str], known: dict[str, tuple[int, int]] | None = None) -> list[Candidate]:
    """The dumps under `paths`. Files in `known` (path → (size, mtime_ns)) whose size and mtime
    have not changed are skipped without being opened."""
    known = known or {}
    singles: list[Candidate] = []
    splits: dict[tuple[object, ...], list[str]] = {}
    for p, named in _walk(paths):
        try:
            st = os.stat(p)
        except OSError as e:
            singles.append(Candidate([p], None, " ".join(str(e).split()) if named else None))
            if not named:
                singles.pop()
            continue
        sig = (st.st_size, st.st_mtime_ns)
        if known.get(p) == sig:
            continue
        if not stat.S_ISREG(st.st_mode):
            if named:  # a FIFO or device: a worker tries it, under the timeout
                singles.append(Candidate([p], "special", None, [sig]))
            continue
        if not (named or _looks_like_dump(os.path.basename(p))):
            # Cheap pre-check before probing: most files in a dump folder are logs and notes.
            try:
                with open(p, "rb") as f:
                    head = f.read(16)
            except OSError:
                continue
            if not (head[:4] == b"\x7fELF" or head[:8] in (b"KDUMP   ", b"DISKDUMP") or head.startswith(b"makedumpfile")
                    or head[:4] == b"\x28\xb5\x2f\xfd" or head[:6] == b"\xfd7zXZ\x00" or head[:2] == b"\x1f\x8b"):
                continue
        kind, problem = probe(p)
        if kind is None and not (named or _looks_like_dump(os.path.basename(p))):
            continue
        if kind == "kdump" and (key := _split_key(p)) is not None:
            splits.setdefault(key, []).append(p)
            continue
        singles.append(Candidate([p], kind, problem, [sig]))
    for parts in splits.values():
        parts.sort()
        stats = []
        for p in parts:
            st = os.stat(p)
            stats.append((st.st_size, st.st_mtime_ns))
        singles.append(Candidate(parts, "kdump-split", None, stats))
    singles.sort(key=lambda c: c.path)
    return singles
