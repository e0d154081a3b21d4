"""What every fuzz harness shares: running under atheris (coverage-guided, libFuzzer) or
replaying inputs without it (pytest, quick checks), in-memory files, the memory-image input
format of the kernel-structure harnesses, and the bounds.

A harness is `fuzz/fuzz_<name>.py` defining `test_one_input(data: bytes) -> None` that parses
`data` and uses the result; only VmcorekitError subclasses may escape the parser (the harness
catches those). Anything else — another exception, a hang (libFuzzer -timeout), memory beyond
the bound (RLIMIT_AS, libFuzzer -rss_limit_mb) — is a bug the fuzzer reports.

    python fuzz/fuzz_kdump.py -max_total_time=20      # fuzz (libFuzzer flags)
    python fuzz/fuzz_kdump.py --replay [FILE...]      # run the seeds (or FILEs) once each

Seeds are in fuzz/seeds/<name>/ (cut from the real sample dump by fuzz/make_seeds.py); the
corpus a run grows goes to $FUZZ_WORK/<name> (default: a temporary folder), crashes to
$FUZZ_WORK/crashes/<name>/.
"""
from __future__ import annotations

import os
import resource
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SEEDS = HERE / "seeds"
REGRESSIONS = HERE / "regressions"
sys.path.insert(0, str(REPO / "src"))

# Memory bound of one run: the harness's baseline plus this much address space. The inputs
# are < 1 MiB; any structure that makes a parser allocate beyond this is a bug.
MEMORY_BOUND = 1536 << 20
# verify's whole-array checks: instrumenting their numpy loops only slows every run.
UNINSTRUMENTED = ("vmcorekit.dump.checks", "vmcorekit.dump.elf_checks", "vmcorekit.dump.kdump_checks",
                  "vmcorekit.dump.integrity")
PAGE = 4096


# -- in-memory files -----------------------------------------------------------------------------
@contextmanager
def memfiles(*blobs: bytes) -> Iterator[list[str]]:
    """Paths (/proc/self/fd/N of memfds) holding `blobs`, closed afterwards: the readers open
    and mmap them like real files, with no disk I/O."""
    fds = []
    try:
        for i, b in enumerate(blobs):
            fd = os.memfd_create(f"fuzz{i}", os.MFD_CLOEXEC)
            fds.append(fd)
            if b:
                os.write(fd, b)
        yield [f"/proc/self/fd/{fd}" for fd in fds]
    finally:
        for fd in fds:
            os.close(fd)


# -- the memory-image input format ---------------------------------------------------------------
MAGIC = b"VKIM"
MAX_SEGMENTS = 256


def encode_image(segments: dict[int, bytes], vmcoreinfo: bytes = b"") -> bytes:
    """segments {address: bytes} + VMCOREINFO text -> one fuzz input."""
    items = sorted(segments.items())
    head = MAGIC + struct.pack("<HI", len(items), len(vmcoreinfo))
    head += b"".join(struct.pack("<QI", a, len(b)) for a, b in items)
    return head + vmcoreinfo + b"".join(b for _, b in items)


def decode_image(data: bytes) -> tuple[dict[int, bytes], bytes]:
    """The inverse of encode_image, tolerant of anything: lengths are cut to what is there."""
    if len(data) < 10 or data[:4] != MAGIC:
        return {}, b""
    n, vlen = struct.unpack_from("<HI", data, 4)
    n = min(n, MAX_SEGMENTS, (len(data) - 10) // 12)
    pos = 10
    table = []
    for _ in range(n):
        table.append(struct.unpack_from("<QI", data, pos))
        pos += 12
    vmci = data[pos:pos + vlen]
    pos += len(vmci)
    segs: dict[int, bytes] = {}
    for addr, ln in table:
        segs[addr] = data[pos:pos + ln]
        pos += len(segs[addr])
    return segs, vmci


class ImageMemory:
    """Reads of a memory image at byte granularity, for the kernel-structure readers (virtual
    addresses). Bytes outside every segment are not in the dump."""

    page_size = PAGE
    byteorder = "little"

    def __init__(self, segments: dict[int, bytes], vmcoreinfo: object = None) -> None:
        import bisect

        self._bisect = bisect.bisect_right
        self.bases = sorted(segments)
        self.segs = [segments[b] for b in self.bases]
        self.vmcoreinfo = vmcoreinfo

    def read(self, address: int, size: int) -> bytes:
        from vmcorekit.errors import PageNotInDumpError

        if size < 0:
            raise ValueError(f"negative read size {size}")
        if size > 1 << 31:
            # the bound a parser must respect itself: reported as a bug, not a miss
            raise MemoryError(f"read of {size} bytes at {address:#x}")
        out = bytearray()
        pos, end = address, address + size
        while pos < end:
            i = self._bisect(self.bases, pos) - 1
            if i < 0 or pos >= self.bases[i] + len(self.segs[i]):
                raise PageNotInDumpError(pos, "not in the fuzz image")
            off = pos - self.bases[i]
            chunk = self.segs[i][off:off + (end - pos)]
            out += chunk
            pos += len(chunk)
        return bytes(out)


# -- bounds --------------------------------------------------------------------------------------
def limit_memory(extra: int = MEMORY_BOUND) -> None:
    """Cap the address space at what the process uses now plus `extra`: a parser that tries a
    huge allocation gets MemoryError, which the harness does not catch."""
    with open("/proc/self/statm") as f:
        vsz = int(f.read().split()[0]) * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    want = vsz + extra
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    resource.setrlimit(resource.RLIMIT_AS, (want, hard))


def import_all(prefixes: tuple[str, ...] = ("vmcorekit",)) -> None:
    """Import the vmcorekit modules under `prefixes` (so atheris instruments them up front),
    and nothing else: walking all of vmcorekit would import every package."""
    import importlib
    import pkgutil

    for prefix in prefixes:
        mod = importlib.import_module(prefix)
        for m in pkgutil.walk_packages(getattr(mod, "__path__", []), prefix + "."):
            if m.name.startswith("vmcorekit.cli") or m.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(m.name)
            except Exception:  # a module another engineer is still writing must not stop fuzzing
                pass


# -- running -------------------------------------------------------------------------------------
def seeds_of(name: str) -> list[Path]:
    d = SEEDS / name
    return sorted(p for p in d.iterdir() if p.is_file()) if d.is_dir() else []


def replay(test_one_input: Callable[[bytes], None], files: list[Path]) -> int:
    for p in files:
        test_one_input(p.read_bytes())
    return len(files)


def fuzz_main(test_one_input: Callable[[bytes], None], harness_file: str,
              instrument: tuple[str, ...] = ("vmcorekit",)) -> None:
    """Fuzz (or with --replay, run inputs once). `instrument`: the modules whose coverage
    guides the fuzzer (instrumenting all of vmcorekit costs seconds at every start)."""
    name = Path(harness_file).stem.removeprefix("fuzz_")
    args = sys.argv[1:]
    if args and args[0] == "--replay":
        files = [Path(a) for a in args[1:]] or seeds_of(name)
        n = replay(test_one_input, files)
        print(f"{name}: replayed {n} inputs without error")
        return
    import atheris

    # Not instrumented: verify's bulk numpy code. atheris keeps the result of every instrumented
    # comparison of numpy arrays alive (a slow leak: ~12 KiB an input through verify), and the
    # parsers' own branches are what should guide the fuzzer.
    with atheris.instrument_imports(include=list(instrument), exclude=list(UNINSTRUMENTED)):
        import_all(instrument)
    work = Path(os.environ.get("FUZZ_WORK") or tempfile.mkdtemp(prefix="vmcorekit-fuzz-"))
    corpus = work / name
    crashes = work / "crashes" / name
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    limit_memory()
    seed_dir = SEEDS / name
    dirs = [str(corpus)] + ([str(seed_dir)] if seed_dir.is_dir() else [])
    flags = [f"-artifact_prefix={crashes}/", "-timeout=20", "-rss_limit_mb=3072", "-print_final_stats=1"]
    if not any(a.startswith("-max_len") for a in args):
        biggest = max((p.stat().st_size for p in seeds_of(name)), default=4096)
        flags.append(f"-max_len={biggest + 4096}")
    atheris.Setup([sys.argv[0], *flags, *args, *dirs], test_one_input)
    atheris.Fuzz()


# -- what the dump-file harnesses do with a parsed dump -----------------------------------------
def exercise_dump(paths: list[str], during: Callable[[], None] | None = None) -> None:
    """Open a dump the way the CLI does and use everything a command would: ranges, reads and
    page states at the edges of each range, the notes, verify, the damage hint, info's summary
    (which builds the address space from the dump's VMCOREINFO). `during` runs while the dump
    is open (a harness's own bounds: what the open dump holds counts)."""
    from vmcorekit.dump import open_dump
    from vmcorekit.dump.integrity import damage_hint
    from vmcorekit.errors import VmcorekitError
    from vmcorekit.program.summary import dump_summary
    from vmcorekit.report.verify import verify

    try:
        phys = open_dump(paths if len(paths) > 1 else paths[0])
    except VmcorekitError:
        return
    with phys:
        ps = phys.page_size
        for r in phys.ranges()[:8]:
            for addr in {r.start, max(r.start, r.end - ps), r.start + (r.size // 2 // ps) * ps}:
                for n in (8, ps, 2 * ps + 3):
                    try:
                        assert len(phys.read(addr, n)) == n
                    except VmcorekitError:
                        pass
                phys.page_state(addr // ps)
        phys.page_state(0)
        phys.page_state(1 << 40)
        for fn in (lambda: verify(phys, threads=1), lambda: damage_hint(phys), lambda: dump_summary(phys)):
            try:
                fn()
            except VmcorekitError:
                pass
        if during is not None:
            during()
