"""Start-up cost: `vmcorekit ps DUMP` (open the dump, read kallsyms and BTF from it, walk the
tasks) against crash's start-up and drgn listing the tasks, both with the -dbg vmlinux.

    python bench/startup_bench.py [--runs N] [--vmlinux PATH] [DUMP ...]

Without DUMP arguments: every corpus case's decompressed ELF (the test cache) and its
makedumpfile -c -d 31 file. The vmlinux is looked for in --vmlinux, $VMCOREKIT_VMLINUX,
/usr/lib/debug/boot and the unpacked -dbg package under /work/scratch/gen/work; without it the
peer runs are skipped (vmcorekit itself never needs it).

Each command runs in its own process, N times (median wall time), output to /dev/null; peak
memory is the child's maximum RSS (getrusage of a fresh wrapper per run). Peers:
  crash   `crash -s VMLINUX DUMP` answering `q` (its start-up: reading the vmlinux's DWARF
          through gdb, then the dump; it prints its banner and exits)
  drgn    `drgn -q -c DUMP -s VMLINUX -e <count for_each_task>` (loads the DWARF index)
Ratios are peer time / vmcorekit time (above 1: vmcorekit is faster). An in-process breakdown
of vmcorekit's own time follows (open, kallsyms, BTF, task walk).

    python bench/startup_bench.py --dmesg [--runs N] [DUMP ...]

`vmcorekit dmesg DUMP` instead (the command whose whole cost is start-up): the import time of
each module it loads (`python -X importtime`, the largest first, and whether click, rich or
numpy are among them), then per dump, interleaved runs of: the bare interpreter (`python -c
pass`: the floor no Python command goes below, site-packages' .pth files included), vmcorekit's
fast path, the same command through the click CLI (VMCOREKIT_FAST=0), vmcore-dmesg (ELF dumps)
and `makedumpfile --dump-dmesg` when installed. Best of N wall time and the CPU time (user +
sys) of that run; output to /dev/null (makedumpfile's to a file, fsynced). Byte code cached as
installed (PYTHONPYCACHEPREFIX in a temporary folder, filled first).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CASES = ("qmp-nokaslr", "qmp-kaslr", "kdump-kaslr")
DRGN_CODE = ("from drgn.helpers.linux.pid import for_each_task; "
             "print(sum(1 for _ in for_each_task(prog)))")
# Runs the command given as arguments and prints its wall time and the child's peak RSS.
_WRAPPER = r"""
import resource, subprocess, sys, time
stdin = open(sys.argv[1], "rb") if sys.argv[1] != "-" else subprocess.DEVNULL
t = time.perf_counter()
rc = subprocess.run(sys.argv[2:], stdin=stdin, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL).returncode
w = time.perf_counter() - t
print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)
"""


def find_vmlinux(given: str | None) -> str | None:
    cands = [given, os.environ.get("VMCOREKIT_VMLINUX"),
             "/usr/lib/debug/boot/vmlinux-6.1.0-56-amd64",
             *glob.glob("/work/scratch/gen/work/**/vmlinux-6.1.0-56-amd64", recursive=True)]
    for c in cands:
        if c and os.path.isfile(c):
            return c
    return None


def corpus_dumps() -> list[Path]:
    root = Path(os.environ.get("VMCOREKIT_CORPUS", REPO.parent / "shared" / "corpus"))
    cache = Path(os.environ.get("VMCOREKIT_CACHE",
                                Path(tempfile.gettempdir()) / "vmcorekit-test-cache"))
    out = []
    for case in CASES:
        for p in (cache / f"{case}.elf", Path("/work/scratch") / case / "dump.elf"):
            if p.exists():
                out.append(p)
                break
        if (root / case / "vmcore.c-d31.kdump").exists():
            out.append(root / case / "vmcore.c-d31.kdump")
    return out


def measure(cmd: list[str], runs: int, stdin: str | None = None) -> dict[str, float] | None:
    """Median wall seconds and max peak RSS (MiB) of `cmd` over `runs` runs; None if it fails."""
    walls, rss = [], []
    with tempfile.NamedTemporaryFile("w", suffix=".in", delete=False) as f:
        if stdin is not None:
            f.write(stdin)
        inp = f.name
    try:
        for _ in range(runs):
            r = subprocess.run([sys.executable, "-c", _WRAPPER, inp if stdin is not None else "-",
                                *cmd], capture_output=True, text=True)
            w, m, rc = r.stdout.split()
            if int(rc) != 0:
                return None
            walls.append(float(w))
            rss.append(int(m) / 1024)
    finally:
        os.unlink(inp)
    return {"wall": statistics.median(walls), "min": min(walls), "peak_mib": max(rss)}


def in_process(path: Path) -> dict[str, float]:
    """vmcorekit's own time by stage, in this process (imports already paid)."""
    import resource

    from vmcorekit.kernel.tasks import task_table
    from vmcorekit.program import Program

    t0 = time.perf_counter()
    prog = Program.open(path)
    t1 = time.perf_counter()
    prog.symbols.address_of("init_task")
    t2 = time.perf_counter()
    prog.types.lookup("struct task_struct")
    t3 = time.perf_counter()
    n = len(task_table(prog))
    t4 = time.perf_counter()
    prog.close()
    return {"open": t1 - t0, "kallsyms": t2 - t1, "btf": t3 - t2, "tasks": t4 - t3,
            "ntasks": n, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def best_run(cmd: list[str], runs: int, env: dict[str, str] | None = None, out: Path | None = None
             ) -> tuple[float, float] | None:
    """(wall, CPU) seconds of the fastest of `runs` runs of `cmd`, output to /dev/null (or to
    `out`, fsynced within the time); None if it fails."""
    best: tuple[float, float] | None = None
    for _ in range(runs):
        if out is not None and out.exists():
            out.unlink()
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        if out is not None and status == 0 and out.exists():
            fd = os.open(out, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        wall = time.perf_counter() - t
        if os.waitstatus_to_exitcode(status) not in (0, 3):
            return None
        if best is None or wall < best[0]:
            best = (wall, usage.ru_utime + usage.ru_stime)
    return best


def import_times(cmd: list[str], env: dict[str, str]) -> list[tuple[int, int, str]]:
    """(self us, cumulative us, module) of every module `cmd` imports (python -X importtime)."""
    r = subprocess.run([sys.executable, "-X", "importtime", *cmd], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, env=env)
    rows = []
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "self [us]" not in line:
            own, cum, name = line[len("import time:"):].split("|", 2)
            rows.append((int(own), int(cum), name.rstrip()))
    return rows


def dmesg_bench(dumps: list[Path], runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="startup-bench-") as d:
        tmp = Path(d)
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src" / "vmcorekit")], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        slow = {**env, "VMCOREKIT_FAST": "0"}
        vk = [sys.executable, "-m", "vmcorekit", "dmesg"]
        print(f"`vmcorekit dmesg {dumps[0].name}`: imports by cumulative time (us; the 15 largest "
              f"top-level ones, and vmcorekit's own)")
        rows = import_times([*vk[1:], str(dumps[0])], env)
        tops = [r for r in rows if not r[2][1:].startswith(" ")]
        for own, cum, name in sorted(tops, key=lambda r: -r[1])[:15]:
            print(f"  {cum:>8} {own:>8}  {name.strip()}")
        mine = [r for r in rows if r[2].strip().startswith("vmcorekit")]
        print(f"  vmcorekit's {len(mine)} modules: {sum(r[0] for r in mine)} us of their own")
        heavy = sorted({r[2].strip().split(".")[0] for r in rows} & {"click", "rich", "numpy"})
        print(f"  click, rich, numpy imported: {', '.join(heavy) or 'none'}\n")
        vd, mdf = shutil.which("vmcore-dmesg"), shutil.which("makedumpfile")
        print(f"best of {runs}, wall ms (CPU ms)")
        print(f"{'dump':<34} {'python':>11} {'vmcorekit':>11} {'via click':>11} {'vmcore-dmesg':>13} "
              f"{'mdf dump-dmesg':>15}  vmcorekit - python")
        for dump in dumps:
            cols = {}
            cols["python"] = best_run([sys.executable, "-c", "pass"], runs, env)
            cols["fast"] = best_run([*vk, str(dump)], runs, env)
            cols["click"] = best_run([*vk, str(dump)], runs, slow)
            cols["vmcore-dmesg"] = best_run([vd, str(dump)], runs) if vd else None
            out = tmp / "mdf.txt"
            cols["mdf"] = best_run([mdf, "--dump-dmesg", str(dump), str(out)], runs, out=out) if mdf else None

            def f(k: str) -> str:
                v = cols.get(k)
                return f"{v[0] * 1e3:.0f} ({v[1] * 1e3:.0f})" if v else "-"
            fast, py = cols["fast"], cols["python"]
            own = f"{(fast[0] - py[0]) * 1e3:.0f} ms" if fast and py else "-"
            name = f"{dump.parent.name}/{dump.name}"[-34:]
            print(f"{name:<34} {f('python'):>11} {f('fast'):>11} {f('click'):>11} {f('vmcore-dmesg'):>13} "
                  f"{f('mdf'):>15}  {own}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dumps", nargs="*")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--vmlinux")
    ap.add_argument("--json", action="store_true", help="Print the results as JSON too.")
    ap.add_argument("--dmesg", action="store_true", help="Time `vmcorekit dmesg` against vmcore-dmesg instead.")
    a = ap.parse_args()
    dumps = [Path(d) for d in a.dumps] or corpus_dumps()
    if not dumps:
        sys.exit("no dump: pass one, or set VMCOREKIT_CORPUS")
    if a.dmesg:
        dmesg_bench(dumps, a.runs)
        return
    vmlinux = find_vmlinux(a.vmlinux)
    vk = shutil.which("vmcorekit")
    vk_cmd = [vk] if vk else [sys.executable, "-m", "vmcorekit"]
    crash = shutil.which("crash")
    drgn = shutil.which("drgn")
    print(f"vmlinux for the peers: {vmlinux or 'not found (peer runs skipped)'}")
    print(f"{args_line(a.runs)}\n")
    results = []
    hdr = (f"{'dump':<42} {'vmcorekit ps':>13} {'crash start':>12} {'ratio':>7} "
           f"{'drgn tasks':>11} {'ratio':>7}   peak MiB (vk / crash / drgn)")
    print(hdr)
    for d in dumps:
        row: dict[str, object] = {"dump": str(d)}
        row["vmcorekit"] = measure([*vk_cmd, "ps", str(d)], a.runs)
        if vmlinux and crash:
            row["crash"] = measure([crash, "-s", vmlinux, str(d)], a.runs, stdin="q\n")
        if vmlinux and drgn:
            row["drgn"] = measure([drgn, "-q", "-c", str(d), "-s", vmlinux, "-e", DRGN_CODE],
                                  a.runs)
        results.append(row)
        print(fmt_row(row))
    print("\nvmcorekit in-process breakdown (seconds):")
    for d in dumps:
        r = in_process(d)
        print(f"  {d.name:<28} open {r['open']:.3f}  kallsyms {r['kallsyms']:.3f}  "
              f"BTF {r['btf']:.3f}  tasks {r['tasks']:.3f} ({r['ntasks']} tasks)")
    if a.json:
        print(json.dumps(results, indent=2))


def args_line(runs: int) -> str:
    return f"median of {runs} runs per command; each in a fresh process; output to /dev/null"


def fmt_row(row: dict) -> str:  # type: ignore[type-arg]
    def t(k: str) -> str:
        m = row.get(k)
        return f"{m['wall']:.2f} s" if m else "-"

    def ratio(k: str) -> str:
        m, v = row.get(k), row.get("vmcorekit")
        return f"{m['wall'] / v['wall']:.1f}x" if m and v else "-"

    def peak(k: str) -> str:
        m = row.get(k)
        return f"{m['peak_mib']:.0f}" if m else "-"
    name = Path(str(row["dump"])).parent.name + "/" + Path(str(row["dump"])).name
    return (f"{name[-42:]:<42} {t('vmcorekit'):>13} {t('crash'):>12} {ratio('crash'):>7} "
            f"{t('drgn'):>11} {ratio('drgn'):>7}   {peak('vmcorekit')} / {peak('crash')} / "
            f"{peak('drgn')}")


if __name__ == "__main__":
    main()
