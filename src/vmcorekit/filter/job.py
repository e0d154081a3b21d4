"""`vmcorekit filter`: makedumpfile's job as a streaming pipeline.

    open the dump -> 1st bitmap (pages that exist) and the pages whose data is present
    -> classify struct pages chunk by chunk, clearing excluded pages from the 2nd bitmap
    -> batches of dumped pages: read + zero test + compression on a thread pool (order kept;
       --threads 1 does it all on the calling thread)
    -> kdump-compressed file(s), ELF, or a flattened stream

Memory stays bounded: the two bitmaps grow with RAM (2 bits a page); everything else is one
chunk of struct pages and a window of page batches in flight. Outputs go through
util.fileout.atomic_output, so a failed run (disk full, --max-size, error) leaves nothing
under the output name.
"""
from __future__ import annotations

import contextlib
import mmap
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from ..dump import open_dump
from ..dump.base import NT_PRSTATUS, Note, PhysicalMemory
from ..dump.elf_layout import serialize_notes
from ..errors import FilterError, MemoryReadError, VmcoreinfoError, VmcorekitError
from ..util.fileout import atomic_output, check_output_path
from ..vmcoreinfo import VmcoreInfo
from .bitmaps import PfnBitmap, input_bitmaps
from .classify import (CACHE, CACHE_PRIVATE, CLASS_KEYS, CLASS_NAMES, DL_EXCLUDE_FREE, DL_EXCLUDE_ZERO, FREE,
                       HWPOISON, KEEP, MAX_DUMP_LEVEL, OFFLINE, USER, ZERO, PageClassifier)
from .compress import CODECS, ZLIB_ENGINES, PageCompressor
from .elf_writer import ElfWriter, InputSegment, OutputLoad, plan_loads
from .flat_writer import FlatSink
from .kdump_writer import KdumpHeaderInfo, KdumpWriter, plan_layout
from .pages import PageSource, Runs, batch_plans, run_pfns, zero_rows
from .sink import FileSink, NullSink, Sink

Progress = Callable[[str, int, int], None]  # (phase, done, total)
BATCH_PAGES = 256  # pages per compression task (1 MiB of 4 KiB pages)
READ_PAGES = 1024  # pages per read from the input when only zero pages are looked for
FORK_BATCH_FACTOR = 4  # batches this many times larger for forked workers (see write_kdump)


@dataclass
class FilterOptions:
    level: int = 31
    codec: str = "zlib"  # kdump page codec; "none" stores pages raw
    zlib_engine: str = "auto"  # compress.zlib_engine(): "isal" (fast) or "zlib" (makedumpfile's bytes)
    elf: bool = False
    split: int = 1
    threads: int | None = None  # None: all cores
    dry_run: bool = False
    max_size: int | None = None
    vmcoreinfo_file: str | None = None
    batch_pages: int = BATCH_PAGES
    progress: Progress | None = None
    # Only these pfns (sorted, e.g. the pages some commands read): the page classes are then
    # not looked at and `level` is only what the header records.
    keep_pfns: np.ndarray | None = None

    def check(self) -> None:
        if not 0 <= self.level <= MAX_DUMP_LEVEL:
            raise FilterError(f"dump level {self.level}: expected 0 to {MAX_DUMP_LEVEL}")
        if self.codec not in CODECS:
            raise FilterError(f"codec {self.codec!r}: expected one of {', '.join(CODECS)}")
        if self.zlib_engine not in ZLIB_ENGINES:
            raise FilterError(f"zlib engine {self.zlib_engine!r}: expected one of {', '.join(ZLIB_ENGINES)}")
        if self.split < 1:
            raise FilterError(f"--split {self.split}: expected at least 1 file")
        if self.elf and self.split > 1:
            raise FilterError("--split writes kdump-compressed files; it cannot be combined with -E")
        if self.threads is not None and self.threads < 1:
            raise FilterError(f"--threads {self.threads}: expected at least 1")
        if self.max_size is not None and self.max_size <= 0:
            raise FilterError(f"--max-size {self.max_size}: expected a positive size")


@dataclass
class FilterStats:
    """Page counts of one run, for --show-stats (makedumpfile's report) and --json."""

    level: int = 0
    max_mapnr: int = 0
    page_size: int = 4096
    existing: int = 0  # pages in the 1st bitmap
    present: int = 0  # pages whose data the input holds
    excluded: dict[str, int] = field(default_factory=dict)  # class key -> pages
    dumped: int = 0  # pages in the 2nd bitmap (zero pages included)
    memory_model: str | None = None
    free_method: str | None = None
    written: int = 0
    outputs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    reused_pages: int = 0  # pages stored with the compressed bytes of an equal page met before
    engine: str | None = None  # the zlib implementation used, for zlib output

    @property
    def remaining(self) -> int:
        return self.dumped - self.excluded.get("zero", 0)

    def report(self) -> str:
        """The page report makedumpfile prints with --message-level 16."""
        rows = [("zero", "Pages filled with zero"), ("cache", "Non-private cache pages"),
                ("cache_private", "Private cache pages"), ("user", "User process data pages"),
                ("free", "Free pages"), ("hwpoison", "Hwpoison pages"), ("offline", "Offline pages")]
        total_excl = sum(self.excluded.get(k, 0) for k, _ in rows) + (self.existing - self.present)
        pct = 100 * self.remaining // self.existing if self.existing else 0
        lines = [f"Original pages  : 0x{self.existing:016x}",
                 f"  Excluded pages   : 0x{total_excl:016x}"]
        if self.existing != self.present:
            lines.append(f"    Pages not in the input   : 0x{self.existing - self.present:016x}")
        lines += [f"    {name:<24}: 0x{self.excluded.get(k, 0):016x}" for k, name in rows]
        if "unselected" in self.excluded:  # a page selection (--level triage) dropped these
            total_excl += self.excluded["unselected"]
            lines[1] = f"  Excluded pages   : 0x{total_excl:016x}"
            lines.append(f"    {'Pages not selected':<24}: 0x{self.excluded['unselected']:016x}")
        lines += [f"  Remaining pages  : 0x{self.remaining:016x}",
                  f"  (The number of pages is reduced to {pct}%.)",
                  f"Memory Hole     : 0x{self.max_mapnr - self.existing:016x}",
                  "--------------------------------------------------",
                  f"Total pages     : 0x{self.max_mapnr:016x}",
                  f"Write bytes     : {self.written}"]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, object]:
        return {"dump_level": self.level, "page_size": self.page_size, "max_mapnr": self.max_mapnr,
                "existing_pages": self.existing, "present_pages": self.present, "excluded": dict(self.excluded),
                "dumped_pages": self.dumped, "remaining_pages": self.remaining,
                "memory_model": self.memory_model, "free_page_method": self.free_method,
                "written_bytes": self.written, "outputs": self.outputs, "warnings": self.warnings,
                "zlib_engine": self.engine, "reused_pages": self.reused_pages,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


# -- forked workers -----------------------------------------------------------------------------

_FORKED_WORK: Callable[[Any], Any] | None = None  # set in the parent just before its workers fork


@dataclass
class _WorkerFailure:
    """An exception of a forked worker, as text (not every exception pickles)."""

    kind: str
    message: str


def _run_forked(item: Any) -> Any:
    assert _FORKED_WORK is not None, "worker was not forked from a filter job"
    try:
        return _FORKED_WORK(item)
    except Exception as e:  # noqa: BLE001 - reported in the parent by _result
        return _WorkerFailure(type(e).__name__, str(e))


class _ResultSlots:
    """Shared memory through which forked workers hand back their stored bytes: a ring of
    slots, one per batch in flight, in an anonymous shared mapping made before the fork.
    Through the result pipe instead, every byte would be pickled, piped and unpickled, and the
    parent's result thread would compete with its writer for the GIL.

    Batch i uses slot i mod n. The pipeline keeps at most n - 1 batches in flight and the
    parent copies a batch's bytes out before it asks for the next result, so a slot is free
    again by the time it is reused."""

    def __init__(self, n: int, slot_bytes: int) -> None:
        self.n, self.slot_bytes = n, slot_bytes
        self.mem = mmap.mmap(-1, n * slot_bytes)  # MAP_SHARED | MAP_ANONYMOUS

    def items(self, plans: Iterator[Any]) -> Iterator[tuple[Any, int]]:
        return ((plan, i % self.n) for i, plan in enumerate(plans))

    def wrap(self, work: Callable[[Any], Any]) -> Callable[[tuple[Any, int]], Any]:
        def in_slot(item: tuple[Any, int]) -> Any:
            plan, slot = item
            stored, *rest = work(plan)
            data = stored.data
            if len(data) > self.slot_bytes:  # stored pages are never larger than pages
                raise FilterError(f"a batch stored {len(data)} bytes, more than its {self.slot_bytes}")
            off = slot * self.slot_bytes
            self.mem[off:off + len(data)] = data
            stored.data = b""
            return stored, slot, len(data), *rest
        return in_slot

    def unwrap(self, result: Any) -> Any:
        stored, slot, n, *rest = result
        off = slot * self.slot_bytes
        stored.data = self.mem[off:off + n]
        return stored, *rest


def _can_fork() -> bool:
    import multiprocessing
    return "fork" in multiprocessing.get_all_start_methods()


def _result(f: Future[Any]) -> Any:
    from concurrent.futures.process import BrokenProcessPool
    try:
        r = f.result()
    except BrokenProcessPool as e:
        raise FilterError(f"a compression worker process died ({e})") from None
    if isinstance(r, _WorkerFailure):
        raise FilterError(f"compression worker: {r.kind}: {r.message}")
    return r


# -- the job ------------------------------------------------------------------------------------

class FilterJob:
    """One filter run over one input dump (a file or a --split set)."""

    def __init__(self, inputs: str | Sequence[str], options: FilterOptions | None = None) -> None:
        self.options = options or FilterOptions()
        self.options.check()
        self.inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        self.phys: PhysicalMemory | None = None
        self.vi: VmcoreInfo | None = None
        self.prog: Any = None
        self.stats = FilterStats(level=self.options.level)
        self.bm1: PfnBitmap | None = None
        self.bm2: PfnBitmap | None = None
        self.present: PfnBitmap | None = None
        self.page_size = 4096
        self._classifier: PageClassifier | None = None

    # -- setup -------------------------------------------------------------------------------
    def __enter__(self) -> "FilterJob":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.phys is not None:
            self.phys.close()
            self.phys = None

    def _progress(self, phase: str, done: int, total: int) -> None:
        if self.options.progress is not None:
            self.options.progress(phase, done, total)

    def open(self) -> None:
        if self.phys is not None:
            return
        self.phys = open_dump(self.inputs)
        opts = self.options
        if opts.vmcoreinfo_file:
            self.vi = VmcoreInfo.from_file(opts.vmcoreinfo_file)
        elif self.phys.vmcoreinfo_raw is not None:
            self.vi = VmcoreInfo.parse(self.phys.vmcoreinfo_raw, source=self.phys.path)
        in_level = self.phys.info.dump_level if self.phys.info.format.startswith("kdump") else None
        if in_level:
            # Re-filtering keeps what the input already dropped dropped (makedumpfile ORs them).
            opts.level |= in_level
            self.stats.level = opts.level
        if opts.elf and self.phys.info.format.startswith("kdump") and self.vi is None:
            raise FilterError("-E from a kdump-compressed input needs its VMCOREINFO")
        self.page_size = (self.vi.page_size if self.vi is not None and self.vi.page_size else None) \
            or self.phys.page_size
        if self.vi is not None:
            from ..program import Program
            try:
                self.prog = Program(self.phys, self.vi)
            except VmcorekitError:
                if opts.level & ~DL_EXCLUDE_ZERO:
                    raise
                self.prog = None

    def prepare(self) -> FilterStats:
        """Build both bitmaps: what exists, and what the dump level keeps."""
        if self.bm2 is not None:
            return self.stats
        self.open()
        assert self.phys is not None
        t0 = time.perf_counter()
        opts, st = self.options, self.stats
        bm1, present = input_bitmaps(self.phys, self.page_size)
        if present is not bm1 and present.equals(bm1):
            present = bm1  # the usual ELF input: one bitmap serves both (32 MiB a TiB of RAM)
        if opts.keep_pfns is not None:
            return self._prepare_selected(bm1, present, t0)
        needs_pages = bool(opts.level & ~DL_EXCLUDE_ZERO)
        counts = np.zeros(8, dtype=np.int64)
        classifier = None
        if self.prog is not None:
            try:
                classifier = PageClassifier(self.prog.space, self.vi, bm1.nbits)
            except VmcorekitError as e:
                if needs_pages:
                    raise
                st.warnings.append(f"pages not classified ({e}); only zero pages are looked at")
        elif needs_pages:
            raise VmcoreinfoError(f"dump level {opts.level} needs the dump's VMCOREINFO to classify pages; "
                                  "the input has none (give --vmcoreinfo FILE)")
        if classifier is not None:
            # makedumpfile's max_mapnr ends with the last mem_map (QEMU's VGA and BIOS ROM ranges
            # beyond RAM are not dumped).
            mm = classifier.max_mapnr
            same = present is bm1
            bm1 = PfnBitmap(mm, bm1.data)
            present = bm1 if same else PfnBitmap(mm, present.data)
        bm2 = present.copy()
        st.max_mapnr, st.page_size = bm1.nbits, self.page_size
        st.existing, st.present = bm1.count(), present.count()
        if classifier is not None:
            self._classifier = classifier
            st.memory_model = classifier.model.kind
            st.free_method = classifier.layout.buddy_method if opts.level & DL_EXCLUDE_FREE else None
            total = max(1, len(classifier.model.chunks))
            done = 0
            for a, (cls,) in classifier.run([opts.level], lambda a, b: bm1.get(a, b)):
                cur = bm2.get(a, a + len(cls))
                hit = cur & (cls != KEEP)
                if hit.any():
                    counts += np.bincount(cls[hit], minlength=8)
                    bm2.put(a, cur & ~hit)
                done += 1
                if done % 8 == 0:
                    self._release_all()
                self._progress("Excluding unnecessary pages", min(done, total), total)
            if opts.level & DL_EXCLUDE_FREE and classifier.layout.buddy_method == "freelist":
                free = classifier.free_list_pfns()
                free = free[free < bm2.nbits]
                mask_pf = np.zeros(0, dtype=bool)
                for lo in range(0, len(free), 1 << 20):
                    part = free[lo:lo + (1 << 20)]
                    a, b = int(part[0]), int(part[-1]) + 1
                    mask_pf = np.zeros(b - a, dtype=bool)
                    mask_pf[part - a] = True
                    counts[FREE] += bm2.clear_where(a, mask_pf)
            st.warnings.extend(classifier.warnings)
        for c in (CACHE, CACHE_PRIVATE, USER, FREE, HWPOISON, OFFLINE):
            st.excluded[CLASS_KEYS[c]] = int(counts[c])
        self.bm1, self.bm2, self.present = bm1, bm2, present
        st.dumped = bm2.count()
        self._release_all()
        st.seconds["classify"] = time.perf_counter() - t0
        return st

    def _prepare_selected(self, bm1: PfnBitmap, present: PfnBitmap, t0: float) -> FilterStats:
        """The 2nd bitmap for an explicit page selection: present pages among `keep_pfns`. The
        1st bitmap is the input's own, so a hole stays a hole and an unselected page reads as
        excluded, as a page of any filtered dump does."""
        assert self.options.keep_pfns is not None
        st = self.stats
        keep = np.asarray(self.options.keep_pfns, dtype=np.int64)
        keep = keep[(keep >= 0) & (keep < present.nbits)]
        sel = np.zeros(len(present.data), dtype=np.uint8)
        np.bitwise_or.at(sel, keep >> 3, (np.int64(1) << (keep & 7)).astype(np.uint8))
        bm2 = PfnBitmap(present.nbits, present.data & sel)
        st.max_mapnr, st.page_size = bm1.nbits, self.page_size
        st.existing, st.present = bm1.count(), present.count()
        st.dumped = bm2.count()
        st.excluded["unselected"] = st.present - st.dumped
        self.bm1, self.bm2, self.present = bm1, bm2, present
        st.seconds["classify"] = time.perf_counter() - t0
        return st

    # -- reading pages -----------------------------------------------------------------------
    def _release(self, paddr: int, size: int) -> None:
        """Drop the input's memory mapping of bytes already copied out, so that the resident
        set stays bounded however big the dump (the data stays in the page cache). Only for
        readers that map an ELF file; a no-op elsewhere."""
        mm = getattr(self.phys, "_map", None)
        off_of = getattr(self.phys, "file_offset", None)
        if not isinstance(mm, mmap.mmap) or off_of is None or not hasattr(mm, "madvise"):
            return
        start, end = off_of(paddr), off_of(paddr + size - 1)
        if start is None or end is None or end - start != size - 1:
            return
        lo = start - start % mmap.PAGESIZE
        hi = end + 1 - (end + 1) % mmap.PAGESIZE
        if hi > lo:
            with contextlib.suppress(OSError, ValueError):
                mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def _release_all(self) -> None:
        """Drop every page of the input's mapping from this process: the small reads of
        classification (page tables, struct page tails) fault in 64 KiB around each byte read."""
        mm = getattr(self.phys, "_map", None)
        if isinstance(mm, mmap.mmap) and hasattr(mm, "madvise") and len(mm):
            with contextlib.suppress(OSError, ValueError):
                mm.madvise(mmap.MADV_DONTNEED, 0, len(mm))

    def _zero_scan(self, bm: PfnBitmap) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(pfns, all-zero) for the set bits of `bm`, batch by batch, on the worker pool."""
        assert self.phys is not None
        src = PageSource(self.phys, self.page_size, READ_PAGES)

        def work(plan: tuple[Runs, int]) -> tuple[np.ndarray, np.ndarray]:
            pages, missing = src.read(*plan)
            return run_pfns(plan[0]), zero_rows(pages) & ~missing

        return self._pipeline(batch_plans(bm, 0, bm.nbits, READ_PAGES), work)

    def _threads(self) -> int:
        return self.options.threads or os.cpu_count() or 1

    def _pipeline(self, work: Iterator[Any], fn: Callable[[Any], Any], *, processes: bool = False) -> Iterator[Any]:
        """fn over work items on the worker pool, results in order, a bounded window in flight.
        processes=True: forked worker processes instead of threads, for work that holds the
        GIL (ISA-L's compress does not release it; LZO's few-microsecond ctypes calls hand it
        over so often that threads mostly wait). Every input reader reads by offset (pread,
        mmap), so forked children share its descriptors safely."""
        threads = self._threads()
        if threads == 1:
            for w in work:
                yield fn(w)
            return
        global _FORKED_WORK
        window: deque[Future[Any]] = deque()
        if processes and _can_fork():
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            _FORKED_WORK = fn  # the children are forked at the first submit and inherit it
            pool: Any = ProcessPoolExecutor(max_workers=threads, mp_context=multiprocessing.get_context("fork"))
            submit: Callable[[Any], Future[Any]] = lambda w: pool.submit(_run_forked, w)
        else:
            pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vmk-filter")
            submit = lambda w: pool.submit(fn, w)
        with pool:
            try:
                for w in work:
                    window.append(submit(w))
                    while len(window) > 2 * threads:
                        yield _result(window.popleft())
                while window:
                    yield _result(window.popleft())
            finally:
                for f in window:
                    f.cancel()
                _FORKED_WORK = None  # the job's reader and compressor need not outlive it here

    # -- headers -----------------------------------------------------------------------------
    def header_info(self) -> KdumpHeaderInfo:
        assert self.phys is not None
        phys, vi, extra = self.phys, self.vi, self.phys.info.extra
        notes = list(phys.notes)
        if vi is not None and not any(n.owner == "VMCOREINFO" for n in notes):
            notes.append(Note("VMCOREINFO", 0, vi.raw.encode()))
        raw_notes, vmci = serialize_notes(notes)
        uts = extra.get("utsname") if isinstance(extra.get("utsname"), dict) else None
        if uts is None:
            uts = self._utsname()
        if "timestamp" in extra:
            ts = (int(extra.get("timestamp") or 0), int(extra.get("timestamp_usec") or 0))
        else:
            ts = (vi.crashtime or 0, 0) if vi is not None else (0, 0)
        nr_cpus = extra.get("nr_cpus")
        if not isinstance(nr_cpus, int):
            nr_cpus = len(phys.notes_named("CORE", NT_PRSTATUS))
        phys_base = extra.get("phys_base")
        if not isinstance(phys_base, int):
            phys_base = getattr(getattr(self.prog, "space", None), "phys_base", None)
            if phys_base is None:
                phys_base = vi.numbers.get("phys_base", 0) if vi is not None else 0
        erase = b""
        er = getattr(phys, "eraseinfo", None)
        if callable(er):
            erase = er() or b""
        return KdumpHeaderInfo(utsname=uts, timestamp=ts, nr_cpus=nr_cpus, phys_base=phys_base,
                               dump_level=self.options.level, notes=raw_notes, vmcoreinfo=vmci, eraseinfo=erase)

    def _utsname(self) -> dict[str, str]:
        vi = self.vi
        out = {"sysname": "Linux", "nodename": "", "release": (vi.osrelease or "") if vi else "",
               "version": "", "machine": self.phys.machine or "" if self.phys else "", "domainname": ""}
        if vi is None or self.prog is None or "init_uts_ns" not in vi.symbols:
            return out
        # struct new_utsname: six 65-byte strings. Old kernels put a kref (an int) first.
        off = vi.offsets.get("uts_namespace.name", 4)
        try:
            raw = self.prog.read(vi.symbols["init_uts_ns"] + off, 6 * 65)
        except MemoryReadError:
            return out
        names = ("sysname", "nodename", "release", "version", "machine", "domainname")
        return {k: raw[i * 65:(i + 1) * 65].split(b"\0", 1)[0].decode("utf-8", "replace") for i, k in enumerate(names)}

    # -- writing -----------------------------------------------------------------------------
    def split_ranges(self) -> list[tuple[int, int]]:
        """[start, end) pfn ranges of the --split files, sharing the dumped pages evenly."""
        assert self.bm2 is not None
        n, mm = self.options.split, self.bm2.nbits
        if n == 1:
            return [(0, mm)]
        total = self.bm2.count()
        ranks = np.array([total * k // n for k in range(1, n)], dtype=np.int64)
        valid = ranks < total
        bounds = np.full(n - 1, mm, dtype=np.int64)
        if valid.any():
            bounds[valid] = self.bm2.nth_set(ranks[valid])
        edges = [0, *bounds.tolist(), mm]
        return [(edges[i], max(edges[i], edges[i + 1])) for i in range(n)]

    def write_kdump(self, sinks: Sequence[Sink]) -> int:
        """The kdump-compressed file(s); one sink per --split part."""
        self.prepare()
        assert self.bm1 is not None and self.bm2 is not None
        opts = self.options
        info = self.header_info()
        ranges = self.split_ranges()
        if len(sinks) != len(ranges):
            raise FilterError(f"{len(ranges)} output files needed, {len(sinks)} given")
        zero_level = bool(opts.level & DL_EXCLUDE_ZERO)
        total_pages = self.bm2.count()
        done = zeros = missing_total = 0
        t0 = time.perf_counter()
        packer = PageCompressor(opts.codec, self.page_size, zlib_engine_name=opts.zlib_engine)
        if opts.codec == "zlib":
            self.stats.engine = packer.engine
        forked = packer.prefers_processes and self._threads() > 1 and _can_fork()
        # Forked workers get 4x larger batches: each task crosses two pipes and the parent's
        # result thread (~0.3 ms), which at 1 MiB batches kept 2 LZO workers a third idle. The
        # result slots (2 per worker) then take 8 MiB a worker: beyond 8 workers, where the
        # fixed cost is shared more ways anyway, batches stay 1 MiB.
        factor = FORK_BATCH_FACTOR if forked and self._threads() <= 8 else 1
        batch = opts.batch_pages * factor
        src = PageSource(self.phys, self.page_size, batch)

        def work(plan: tuple[Runs, int]) -> tuple[Any, np.ndarray, np.ndarray, int]:
            # read, zero test and compression all happen on the worker: the main thread only
            # lays out descriptors and writes. The reuse count travels back from forked workers.
            pages, missing = src.read(*plan)
            is_zero = zero_rows(pages) & ~missing
            zero = is_zero if zero_level else np.zeros(len(pages), dtype=bool)
            before = packer.reused
            stored = packer.compress(pages, ~(zero | missing), is_zero)
            return stored, zero, missing, packer.reused - before

        slots = _ResultSlots(2 * self._threads() + 2, batch * self.page_size) if forked else None

        reused = 0
        for sink, (start, end) in zip(sinks, ranges):
            layout = plan_layout(info, self.page_size, self.bm2, self.bm2.nbits, start, end, split=len(sinks) > 1)
            w = KdumpWriter(sink, info, layout, opts.codec, self.bm1, self.bm2)
            w.begin()
            plans: Iterator[Any] = batch_plans(self.bm2, start, end, batch)
            fn: Callable[[Any], Any] = work
            if slots is not None:
                plans, fn = slots.items(plans), slots.wrap(work)
            for result in self._pipeline(plans, fn, processes=forked):
                stored, zero, missing, again = result if slots is None else slots.unwrap(result)
                reused += again
                w.add_batch(stored, zero, missing)
                done += len(zero)
                zeros += int(np.count_nonzero(zero))
                missing_total += int(np.count_nonzero(missing))
                self._progress("Copying data", done, total_pages)
            w.end()
            self.stats.written += sink.written
        self.stats.reused_pages = reused
        if missing_total:
            self.stats.warnings.append(f"{missing_total} pages could not be read from the input; their "
                                       "descriptors are empty (readers report them as missing)")
        self.stats.excluded["zero"] = zeros
        self.stats.seconds["write"] = time.perf_counter() - t0
        return self.stats.written

    def _exclude_zero_pages(self) -> None:
        """ELF output drops zero pages from the 2nd bitmap before its headers are laid out."""
        assert self.bm2 is not None
        total, done, zeros = self.bm2.count(), 0, 0
        found: list[np.ndarray] = []
        for pfns, zero in self._zero_scan(self.bm2):
            if zero.any():
                found.append(pfns[zero])
            done += len(pfns)
            self._progress("Excluding zero pages", done, total)
        for z in found:
            a = int(z[0])
            mask = np.zeros(int(z[-1]) + 1 - a, dtype=bool)
            mask[z - a] = True
            zeros += self.bm2.clear_where(a, mask)
        self.stats.excluded["zero"] = zeros

    def input_segments(self) -> list[InputSegment]:
        """The input's PT_LOADs (ELF), or one per run of existing pages (kdump input, with
        direct-map virtual addresses when the architecture has a direct map)."""
        assert self.phys is not None and self.bm1 is not None
        segs = [InputSegment(s.paddr, s.size, s.vaddr) for s in self.phys.virtual_segments if s.paddr is not None]
        if segs:
            return segs
        base = getattr(getattr(self.prog, "space", None), "page_offset", None)
        ps = self.page_size
        return [InputSegment(a * ps, (b - a) * ps, (base + a * ps) if base is not None else a * ps)
                for a, b in self.bm1.runs()]

    def write_elf(self, sink: Sink) -> int:
        self.prepare()
        assert self.bm2 is not None and self.phys is not None
        t0 = time.perf_counter()
        if self.options.level & DL_EXCLUDE_ZERO:
            self._exclude_zero_pages()
        else:
            self.stats.excluded["zero"] = 0
        self.stats.dumped = self.bm2.count()
        loads = plan_loads(self.input_segments(), self.bm2, self.page_size)
        info = self.header_info()
        w = ElfWriter(sink, loads, info.notes, self.phys.machine)
        w.begin()
        total = sum(ld.filesz for ld in loads)
        done = 0
        for ld in loads:
            for chunk in self._span_bytes(ld):
                w.add(chunk)
                done += len(chunk)
                self._progress("Copying data", done, total)
        w.end()
        self.stats.written += sink.written
        self.stats.seconds["write"] = time.perf_counter() - t0
        return self.stats.written

    def _span_bytes(self, ld: OutputLoad) -> Iterator[bytes]:
        """The bytes of [paddr, paddr + filesz) for an ELF segment; pages the input lacks (short
        excluded runs makedumpfile keeps in the file) are zeros."""
        assert self.phys is not None and self.present is not None
        ps, pos, end = self.page_size, ld.paddr, ld.paddr + ld.filesz
        step = READ_PAGES * ps
        while pos < end:
            n = min(end - pos, step - (pos % step) if pos % step else step)
            try:
                data = self.phys.read(pos, n)
                self._release(pos, n)
                yield data
            except MemoryReadError:
                parts, p = [], pos
                while p < pos + n:
                    m = min(pos + n, (p // ps + 1) * ps) - p
                    try:
                        parts.append(self.phys.read(p, m))
                    except MemoryReadError:
                        parts.append(bytes(m))
                    p += m
                yield b"".join(parts)
            pos += n


# -- running a job against files ----------------------------------------------------------------

def split_output_names(output: str, n: int) -> list[str]:
    """OUTPUT.1 ... OUTPUT.n beside OUTPUT (util.fileout's checked names)."""
    from ..util.fileout import safe_split_names
    try:
        return safe_split_names(output, n)
    except ValueError as e:
        raise FilterError(str(e)) from None


def run_filter(inputs: str | Sequence[str], outputs: Sequence[str] | None, options: FilterOptions, *,
               stream: BinaryIO | None = None) -> FilterStats:
    """Filter `inputs` into `outputs` (one per --split part; through atomic_output), or into
    `stream` as a flattened dump (-F), or nowhere (dry run)."""
    with FilterJob(inputs, options) as job:
        job.prepare()
        opts = job.options
        with contextlib.ExitStack() as stack:
            sinks: list[Sink]
            if opts.dry_run:
                sinks = [NullSink(opts.max_size) for _ in range(opts.split)]
            elif stream is not None:
                if opts.split > 1:
                    raise FilterError("a flattened stream (-F) is one file; it cannot be --split")
                sinks = [FlatSink(stream, max_size=opts.max_size)]
            else:
                names = list(outputs or [])
                if len(names) != opts.split:
                    raise FilterError(f"--split {opts.split} needs {opts.split} output files, {len(names)} given")
                # Every name is checked before any is created: a refusal leaves nothing behind.
                for name in names:
                    check_output_path(name, job.inputs)
                sinks = []
                for name in names:
                    f = stack.enter_context(atomic_output(name, inputs=job.inputs))
                    sinks.append(FileSink(f, name, opts.max_size))
                job.stats.outputs = names
            if opts.elf:
                job.write_elf(sinks[0])
            else:
                job.write_kdump(sinks)
        return job.stats


def reassemble_stream(stream: BinaryIO, output: str, max_size: int | None = None) -> int:
    """makedumpfile -R: a flattened stream on `stream` becomes the file `output`."""
    from .flat_writer import reassemble
    with atomic_output(output) as f:
        sink = FileSink(f, output, max_size)
        records = reassemble(stream, sink)
    return records


# -- what each dump level would keep (--mem-usage) ----------------------------------------------

@dataclass
class MemUsage:
    page_size: int
    max_mapnr: int
    existing: int
    present: int
    zero: int  # present pages that are all zeros
    by_class: dict[str, int]  # level-31 classes (zero counted among pages kept otherwise)
    kept: dict[int, int]  # dump level -> pages kept (zero pages excluded when the level says so)

    def to_dict(self) -> dict[str, object]:
        return {"page_size": self.page_size, "max_mapnr": self.max_mapnr, "existing_pages": self.existing,
                "present_pages": self.present, "zero_pages": self.zero, "classes": self.by_class,
                "kept_by_level": {str(k): v for k, v in self.kept.items()}}


def memory_usage(inputs: str | Sequence[str], options: FilterOptions | None = None) -> MemUsage:
    """Pages each dump level 0..31 would keep, from one read of the struct pages and one of the
    page data (for zero pages)."""
    opts = options or FilterOptions()
    opts.level = 0
    with FilterJob(inputs, opts) as job:
        job.prepare()
        assert job.present is not None and job.bm1 is not None
        present = job.present
        # zero pages among the present ones
        zero_bm = PfnBitmap(present.nbits)
        total, done = present.count(), 0
        for pfns, zero in job._zero_scan(present):
            if zero.any():
                z = pfns[zero]
                a = int(z[0])
                mask = np.zeros(int(z[-1]) + 1 - a, dtype=bool)
                mask[z - a] = True
                zero_bm.put(a, zero_bm.get(a, a + len(mask)) | mask)
            done += len(pfns)
            job._progress("Looking for zero pages", done, total)
        levels = list(range(MAX_DUMP_LEVEL + 1))
        excl = np.zeros(len(levels), dtype=np.int64)
        excl_zero = np.zeros(len(levels), dtype=np.int64)
        by_class = np.zeros(8, dtype=np.int64)
        if job._classifier is not None:
            # the same classification run, once more, for all levels at once
            clf = PageClassifier(job.prog.space, job.vi, present.nbits)
            for a, outs in clf.run(levels, lambda a, b: job.bm1.get(a, b)):
                n = len(outs[0])
                pres = present.get(a, a + n)
                zer = zero_bm.get(a, a + n)
                for i, cls in enumerate(outs):
                    hit = pres & (cls != KEEP)
                    excl[i] += int(np.count_nonzero(hit))
                    excl_zero[i] += int(np.count_nonzero(hit & zer))
                    if levels[i] == MAX_DUMP_LEVEL:
                        by_class += np.bincount(cls[hit], minlength=8)
        total_present, total_zero = present.count(), zero_bm.count()
        kept = {}
        for i, level in enumerate(levels):
            k = total_present - int(excl[i])
            if level & DL_EXCLUDE_ZERO:
                k -= total_zero - int(excl_zero[i])
            kept[level] = k
        classes = {CLASS_KEYS[c]: int(by_class[c]) for c in (CACHE, CACHE_PRIVATE, USER, FREE, HWPOISON, OFFLINE)}
        # makedumpfile's ZERO row: zero pages that survive every other exclusion
        classes["zero"] = total_zero - int(excl_zero[levels.index(MAX_DUMP_LEVEL - DL_EXCLUDE_ZERO)])
        classes["kernel"] = kept[MAX_DUMP_LEVEL]
        return MemUsage(job.page_size, present.nbits, job.stats.existing, total_present, total_zero, classes, kept)


__all__ = ["FilterOptions", "FilterStats", "FilterJob", "run_filter", "reassemble_stream", "memory_usage", "MemUsage",
           "split_output_names", "serialize_notes", "FilterError", "CLASS_NAMES", "ZERO"]
