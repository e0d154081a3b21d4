"""Which pages the first questions read: triage, dmesg, ps, bt and mod run in-process over a
recording view of the dump (dump/recording.py), and the frames their reads touched are the
minidump's pages.

Each question gets a fresh Program over the one recording view, as each command opens its own:
a value one question memoised (Program.memo) must not spare another question the reads it
would make on its own, since the minidump is read by each command afresh. No cache outlives a
Program (stacks, task layouts, the log are all per-Program), so nothing hides a read; only the
symbol table and the types, which every Program builds by the same whole-table reads, are
handed on (see _SHARED).
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..dump import open_dump
from ..dump.recording import RecordingMemory
from ..errors import PartialResultWarning, VmcorekitError, collecting_notes
from ..program import Program
from ..vmcoreinfo import VmcoreInfo

if TYPE_CHECKING:
    from ..kernel.stacks import Stacks

# What a question may raise on a damaged dump: it then fails the same way on the minidump,
# which holds every page it read before failing.
_EXPECTED = (VmcorekitError, LookupError, ValueError, ArithmeticError, OSError, AttributeError)


def _triage(prog: Program, path: str) -> None:
    from ..report.triage import collect
    collect(prog, path)


def _dmesg(prog: Program, path: str) -> None:
    # Both ways the command reads the log: plain text, and with levels (--json, --level, color).
    from ..kernel import printk
    for levels in (False, True):
        log = printk.read_log(_fresh(prog), levels=levels)
        list(printk.render(log, None))


def _ps(prog: Program, path: str) -> None:
    from ..kernel.meminfo import totalram_pages
    from ..kernel.tasks import task_table
    task_table(prog, warnings=[])
    try:
        totalram_pages(prog)
    except VmcorekitError:
        pass


def _bt(prog: Program, path: str) -> None:
    """The panicking task (bt), the task on each CPU (bt -a) and every task (bt --all-tasks),
    each rendered with its stack words (bt -f reads them)."""
    from ..kernel.stacks import stacks
    from ..kernel.stacks.render import render_trace
    s = stacks(prog)
    targets: list[int] = []
    crashed = s.crashed.task
    if crashed:
        targets.append(crashed)
    targets += [ctx.task for _, ctx in sorted(s.contexts.items()) if ctx.task]
    targets += _all_tasks(s)
    seen: set[int] = set()
    for t in targets:
        if t in seen:
            continue
        seen.add(t)
        try:
            tr = s.trace(t)
            tr.to_json()
            render_trace(tr, full=True, read=prog.read)
        except _EXPECTED:
            continue


def _all_tasks(s: "Stacks") -> list[int]:
    """Every task `bt --all-tasks` traces: the idle task of each present CPU, then the task list."""
    from ..kernel.cpus import idle_task_address, present_cpus
    from ..kernel.tasks import for_each_task_address, task_info
    out: list[int] = []
    try:
        for cpu in present_cpus(s.prog):
            t = idle_task_address(s.prog, cpu)
            if t:
                out.append(t)
        for t in for_each_task_address(s.prog):
            try:
                task_info(s.prog, t)
            except _EXPECTED:
                continue
            out.append(t)
    except _EXPECTED:
        pass  # a broken list: the tasks found before the break
    return out


def _mod(prog: Program, path: str) -> None:
    from ..kernel.modules import module_table
    module_table(prog, warnings=[])


# name -> the reads of that command; each gets its own Program.
COMMANDS: dict[str, Callable[[Program, str], None]] = {
    "triage": _triage, "dmesg": _dmesg, "ps": _ps, "bt": _bt, "mod": _mod}


# Built once from whole-table reads (kallsyms, BTF) that every Program makes alike, with no
# argument that could change what they read: sharing them hides no read a fresh Program would
# make, and spares each question ~0.4 s of parsing.
_SHARED = ("symbols", "types", "has_btf")


def _fresh(prog: Program) -> Program:
    new = Program(prog.phys, prog.vmcoreinfo)
    for name in _SHARED:
        if name in prog.__dict__:
            new.__dict__[name] = prog.__dict__[name]
    return new


@dataclass
class Recording:
    """The frames the questions read, and what each question cost."""

    pfns: np.ndarray  # sorted
    seconds: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # question -> why it stopped early
    gaps: list[str] = field(default_factory=list)  # the questions' own partial results and notes


def record_pages(inputs: str | Sequence[str], vmcoreinfo_file: str | None = None,
                 commands: Sequence[str] | None = None) -> Recording:
    """Run the questions over a recording view of `inputs` (a file, or a --split set)."""
    names = list(COMMANDS) if commands is None else list(commands)
    unknown = [n for n in names if n not in COMMANDS]
    if unknown:
        raise ValueError(f"unknown question(s): {', '.join(unknown)}")
    paths = [inputs] if isinstance(inputs, str) else list(inputs)
    vi = VmcoreInfo.from_file(vmcoreinfo_file) if vmcoreinfo_file is not None else None
    rec = RecordingMemory(open_dump(paths))
    seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    gaps: list[str] = []
    # The questions' partial results and notes are theirs, not the writer's: kept aside, they
    # neither print nor set this command's exit status.
    with warnings.catch_warnings(record=True) as caught, collecting_notes() as said:
        warnings.simplefilter("always", PartialResultWarning)
        try:
            _run(rec, vi, names, paths, seconds, errors)
        finally:
            rec.close()
    gaps += [str(w.message) for w in caught if issubclass(w.category, PartialResultWarning)]
    gaps += list(said)
    return Recording(pfns=rec.read_pfns(), seconds=seconds, errors=errors,
                     gaps=list(dict.fromkeys(gaps)))


def _run(rec: RecordingMemory, vi: VmcoreInfo | None, names: list[str], paths: list[str],
         seconds: dict[str, float], errors: dict[str, str]) -> None:
    try:
        base = Program(rec, vi)
    except _EXPECTED as e:
        # No Program (no VMCOREINFO, unknown machine): every command stops here too, after the
        # reads the attempt made.
        errors["open"] = " ".join(str(e).split()) or type(e).__name__
        return
    for attr in _SHARED:
        try:
            getattr(base, attr)
        except _EXPECTED + (ImportError,):
            pass  # each question then fails (or falls back) on its own, as its command does
    for name in names:
        t = time.perf_counter()
        try:
            COMMANDS[name](_fresh(base), ",".join(paths))
        except _EXPECTED as e:
            errors[name] = " ".join(str(e).split()) or type(e).__name__
        seconds[name] = time.perf_counter() - t
    t = time.perf_counter()
    _page_tables(base, rec)
    seconds["page_tables"] = time.perf_counter() - t


PAGE_TABLE_STEP = 2 << 20  # one last-level table maps 2 MiB (4 KiB pages; larger pages: fewer levels)


def _page_tables(prog: Program, rec: RecordingMemory) -> None:
    """The kernel page-table entries mapping what was read through a linear region (the kernel
    image, the direct map). vmcorekit translates those by arithmetic, but other readers walk
    the tables for them (makedumpfile --dump-dmesg does, for the kernel image): one walk for
    each 2 MiB of those regions holding a page read touches every table entry involved."""
    ps = rec.inner.page_size
    pfns = rec.read_pfns()
    if not len(pfns):
        return
    paddrs = pfns.astype(np.uint64) * np.uint64(ps)
    for r in list(getattr(prog.space, "regions", [])):
        if r.offset is None:
            continue
        vaddrs = (paddrs + np.uint64(r.offset)) & np.uint64(0xFFFFFFFFFFFFFFFF)  # vaddr = paddr + offset
        inside = vaddrs[(vaddrs >= np.uint64(r.start)) & (vaddrs < np.uint64(r.end))]
        for v in np.unique(inside // np.uint64(PAGE_TABLE_STEP)).tolist():
            try:
                prog.space.walk(max(int(v) * PAGE_TABLE_STEP, r.start))
            except _EXPECTED:
                continue
