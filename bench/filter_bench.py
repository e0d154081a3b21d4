"""vmcorekit filter vs makedumpfile on the same dump: wall time, CPU time, output size, peak RSS.

    python bench/filter_bench.py [DUMP] [--levels 31,0] [--codecs zlib,lzo,zstd,snappy] [--repeat 3]

DUMP defaults to the largest corpus ELF. Each command runs as its own process (wall time from
the parent; CPU time = user + sys and peak RSS from wait4), with 1 worker and with all cores;
the runs of both tools alternate and the MEDIAN of --repeat runs is shown. Ratios are
makedumpfile / vmcorekit: above 1 means vmcorekit is faster (or smaller). "same" says whether
the two outputs are byte-identical. zlib runs once per --zlib-engines entry: z-libz
(vmcorekit's default: the system libz at makedumpfile's settings, its exact bytes, reproducible)
and z-isal (--zlib-engine isal: ISA-L streams, faster, bytes that vary from run to run, ~4%
larger at -d 31).

Durability: vmcorekit fsyncs its output before renaming it into place (a capture kernel may
reboot right after); makedumpfile writes the final name and never fsyncs, leaving write-back for
later. So that both times mean "the dump is on disk", makedumpfile's wall time here includes an
fsync of its output (about 0.8 s for 1.5 GiB here); CPU times are the processes' own.

Both rows compare against makedumpfile's single-threaded run, its fastest: makedumpfile 1.7's
--num-threads busy-waits (on 2 cores -c -d 31 takes ~20 s with --num-threads 2 instead of
~1.5 s). --mdf-threads also runs it with --num-threads N for the all-cores row.

Python startup: a pip-installed vmcorekit has its modules byte-compiled; an environment with
PYTHONDONTWRITEBYTECODE=1 compiles all of them (~0.1-0.2 s) at every start. Unless
--no-bytecode-cache, the vmcorekit processes get a byte-code cache outside the source tree
(PYTHONPYCACHEPREFIX in the temporary folder, filled by compileall first), as installed.
Codecs the installed makedumpfile lacks (`makedumpfile -v`) get '-' in its columns.

--python-too: each vmcorekit row is followed by one with VMCOREKIT_NATIVE=0 (label ending in
"/py"): the filter's pure-Python page loop, where the native one (the _pagepack extension)
was built, for an A/B of the two in the same interleaved run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import dump_arg

FLAG = {"zlib": "-c", "lzo": "-l", "snappy": "-p", "zstd": "-z"}


class Run:
    def __init__(self, wall: float, cpu: float, size: int, rss_kib: int) -> None:
        self.wall, self.cpu, self.size, self.rss = wall, cpu, size, rss_kib


def run(cmd: list[str], out: Path, env: dict[str, str] | None = None, fsync: bool = False) -> Run:
    """One process: wall seconds, CPU seconds (user + sys), output bytes, peak RSS KiB.
    fsync: the wall time also covers an fsync of the output (see the module docstring)."""
    if out.exists():
        out.unlink()
    os.sync()  # the previous run's write-back is not charged to this one
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(p.pid, 0)
    if fsync and status == 0 and out.exists():
        fd = os.open(out, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if status != 0 or not out.exists():
        raise SystemExit(f"failed ({status}): {' '.join(cmd)}\n{err[-2000:]}")
    return Run(wall, usage.ru_utime + usage.ru_stime, out.stat().st_size, usage.ru_maxrss)


def median(runs: list[Run]) -> Run:
    return Run(statistics.median(r.wall for r in runs), statistics.median(r.cpu for r in runs),
               runs[-1].size, int(statistics.median(r.rss for r in runs)))


def readable_by_makedumpfile(dump: str, tmp: Path) -> str:
    """makedumpfile 1.7.2 needs the program headers right after the ELF header."""
    with open(dump, "rb") as f:
        if struct.unpack_from("<Q", f.read(64), 32)[0] == 64:
            return dump
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_filter_corpus import normalize_elf
    dst = tmp / "input.norm.elf"
    normalize_elf(Path(dump), dst)
    return str(dst)


def mdf_codecs(mdf: str) -> set[str]:
    """Codecs the installed makedumpfile was built with (zlib always)."""
    out = subprocess.run([mdf, "-v"], capture_output=True, text=True).stdout
    have = {"zlib"}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == "enabled":
            have.add(parts[0])
    return have


def same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dump", nargs="?")
    ap.add_argument("--levels", default="31,0")
    ap.add_argument("--codecs", default="zlib,lzo,zstd,snappy")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--zlib-engines", default="isal,zlib",
                    help="vmcorekit zlib engines to time (isal: ISA-L, zlib: makedumpfile's libz bytes)")
    ap.add_argument("--mdf-threads", action="store_true", help="also time makedumpfile --num-threads N")
    ap.add_argument("--no-bytecode-cache", action="store_true", help="run vmcorekit with the environment as is")
    ap.add_argument("--python-too", action="store_true", help="also time the pure-Python page loop (VMCOREKIT_NATIVE=0)")
    args = ap.parse_args()
    dump = args.dump if args.dump else dump_arg()
    mdf = shutil.which("makedumpfile")
    vmk = [sys.executable, "-m", "vmcorekit"]
    cores = os.cpu_count() or 1
    have = mdf_codecs(mdf) if mdf else set()
    with tempfile.TemporaryDirectory(prefix="filter-bench-") as d:
        tmp = Path(d)
        env = None
        if not args.no_bytecode_cache:
            env = dict(os.environ)
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        src = readable_by_makedumpfile(dump, tmp) if mdf else dump
        if env is not None:  # byte-compile the package once, as pip install does
            import vmcorekit
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(vmcorekit.__file__).parent)],
                           env=env, check=True, stdout=subprocess.DEVNULL)
        print(f"dump: {dump} ({os.path.getsize(dump) >> 20} MiB), {cores} cores, median of {args.repeat}"
              f"{'' if args.no_bytecode_cache else ', byte-code cached'}; load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"{'level':>5} {'codec':>9} {'wk':>2} | {'vmk s':>6} {'mdf s':>6} {'speed':>6} | {'vmk cpu':>7} "
              f"{'mdf cpu':>7} {'cpu':>6} | {'vmk MiB':>7} {'mdf MiB':>7} {'size':>5} {'same':>4} | "
              f"{'vmk RSS':>7} {'mdf RSS':>7}")
        rows = [(c, e, n) for c in args.codecs.split(",")
                for e in (args.zlib_engines.split(",") if c == "zlib" else ["auto"])
                for n in ((True, False) if args.python_too else (True,))]
        for level in [int(x) for x in args.levels.split(",")]:
            for codec, engine, native in rows:
                theirs_1: Run | None = None
                label = {"isal": "z-isal", "zlib": "z-libz"}.get(engine, codec) if codec == "zlib" else codec
                venv = env
                if not native:
                    label += "/py"
                    venv = {**(env if env is not None else os.environ), "VMCOREKIT_NATIVE": "0"}
                for workers in sorted({1, cores}):
                    vcmd = [*vmk, "filter", "-d", str(level), "--codec", codec, "--zlib-engine", engine,
                            "--threads", str(workers), "--no-progress", src, str(tmp / "vmk")]
                    use_mdf = mdf is not None and codec in have
                    mthreads = ["--num-threads", str(workers)] if workers > 1 and args.mdf_threads else []
                    mcmd = [mdf or "", FLAG[codec], "-d", str(level), *mthreads, src, str(tmp / "mdf")]
                    ours, theirs = [], []
                    for _ in range(args.repeat):
                        ours.append(run(vcmd, tmp / "vmk", venv))
                        if use_mdf and (workers == 1 or mthreads or theirs_1 is None):
                            theirs.append(run(mcmd, tmp / "mdf", fsync=True))
                    o = median(ours)
                    t = median(theirs) if theirs else theirs_1
                    if workers == 1 and theirs:
                        theirs_1 = t
                    line = f"{level:>5} {label:>9} {workers:>2} | {o.wall:>6.2f} "
                    if t is not None:
                        same = "yes" if (tmp / "mdf").exists() and same_bytes(tmp / "vmk", tmp / "mdf") else "no"
                        line += (f"{t.wall:>6.2f} {t.wall / o.wall:>5.2f}x | {o.cpu:>7.2f} {t.cpu:>7.2f} "
                                 f"{t.cpu / o.cpu:>5.2f}x | {o.size / 2**20:>7.1f} {t.size / 2**20:>7.1f} "
                                 f"{t.size / o.size:>4.2f}x {same:>4} | {o.rss / 1024:>7.1f} {t.rss / 1024:>7.1f}")
                        if workers > 1 and not mthreads:
                            line += "  (mdf: 1 thread)"
                    else:
                        line += (f"{'-':>6} {'-':>6} | {o.cpu:>7.2f} {'-':>7} {'-':>6} | {o.size / 2**20:>7.1f} "
                                 f"{'-':>7} {'-':>5} {'-':>4} | {o.rss / 1024:>7.1f} {'-':>7}")
                    print(line, flush=True)


if __name__ == "__main__":
    main()
