"""Who crashed: the CPU that went through panic(), and the task running there.

    panic_cpu(prog)              # (1, "panic_cpu"): the CPU, and how it was found
    crash_context(prog)          # CrashContext: cpu, task, how, cross-checks with CPU notes
    panic_task(prog)             # struct task_struct * of the panicking task, or None
    panic_message(prog)          # PanicMessage("Kernel panic - not syncing: ...", cause, ...)

The CPU comes from `panic_cpu` (set by panic(), and by the oops path before crash_kexec),
else x86's `crashing_cpu` (the kdump shutdown path); a kernel whose symbol table has no data
symbols (no CONFIG_KALLSYMS_ALL) has neither, and there the CPU is the one whose stack holds
a return into panic(). The panic message is the last panicking report the log's one crash-report
recogniser (printk/events.py) finds, cross-checked with that CPU and task.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import MemoryReadError, VmcorekitError
from ..program.objects import Object
from .cpus import cpu_curr
from .percpu import nr_cpu_ids

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["panic_cpu", "panic_cpu_from_stacks", "crash_context", "CrashContext", "panic_task",
           "panic_message", "PanicMessage", "PANIC_FUNCTIONS"]

# What a panicking CPU's stack returns into.
PANIC_FUNCTIONS = ("panic", "vpanic", "nmi_panic")


def panic_cpu(prog: "Program", *, strict: bool = True,
              task_stack: "Callable[[int], int | None] | None" = None) -> tuple[int | None, str]:
    """(CPU that panicked, how it was found). `strict` is nr_cpu_ids'(a corrupt one raises,
    or is replaced by the CPU-note count). `task_stack(cpu)`, for the stack search, names the
    base of the stack of the task running on `cpu`; by default it is read from the task
    the scheduler ran there."""
    n = nr_cpu_ids(prog, strict=strict)
    found = False
    for name in ("panic_cpu", "crashing_cpu"):
        addr = prog.try_symbol_address(name)
        if addr is None:
            continue
        found = True
        try:
            v = struct.unpack(prog.platform.unpack("i"), prog.read(addr, 4))[0]
        except MemoryReadError:
            continue
        if 0 <= v < n:
            return v, name
    if found:
        return None, "panic_cpu and crashing_cpu are unset (-1): no CPU went through panic()"
    cpu, how = panic_cpu_from_stacks(prog, task_stack if task_stack is not None
                                     else lambda c: _task_stack_base(prog, c))
    if cpu is not None:
        return cpu, how
    return None, f"no panic_cpu or crashing_cpu symbol; {how}"


def _task_stack_base(prog: "Program", cpu: int) -> int | None:
    t = cpu_curr(prog, cpu)  # typed: kernel/tasks.py, which sits above this module, has the raw one
    return int(t.stack) if t is not None else None


def panic_cpu_from_stacks(prog: Any, task_stack: Any = None) -> tuple[int | None, str]:
    """(CPU, how) whose stack holds a return address into panic(): for kernels whose symbol
    table lacks `panic_cpu`. Architecture-neutral: each CPU note's sp names a stack, scanned
    from sp to the end of its aligned block; `task_stack(cpu)`, when given, names the base of
    the stack of the task running there, scanned whole (panic() re-enables interrupts while it
    waits, so its CPU may be caught on the IRQ stack)."""
    try:
        notes = prog.cpus
        symbols = prog.symbols
    except (VmcorekitError, ImportError, ValueError):
        return None, "no CPU notes or no symbols"
    strip = getattr(prog.space, "strip_pac", None) or (lambda a: a)
    block = max(16384, prog.page_size)
    reg, mask, user = prog.platform.user_mode
    hits: list[int] = []
    for n in notes:
        regs = n.regs or {}
        sp = regs.get(prog.platform.sp) or 0
        if reg in regs and regs[reg] & mask == user:  # a user stack: no panic() there
            sp = 0
        spans = [(sp & ~7, (sp | (block - 1)) + 1)] if sp else []
        if task_stack is not None:
            try:
                base = task_stack(n.cpu)
            except (VmcorekitError, LookupError):
                base = None
            if base:
                spans.append((base, base + block))
        for lo, hi in spans:
            if _holds_panic(prog, symbols, strip, lo, hi):
                hits.append(n.cpu)
                break
    if len(hits) == 1:
        return hits[0], "the only CPU whose stack holds a return into panic()"
    if hits:
        return None, f"several CPUs' stacks hold returns into panic(): {hits}"
    return None, "no CPU's stack holds a return into panic()"


def _holds_panic(prog: Any, symbols: Any, strip: Any, lo: int, hi: int) -> bool:
    for w in _stack_words(prog, lo, hi):
        if not w >> 55 & 1:  # kernel pointers have bit 55 set, PAC or not
            continue
        a = strip(w)
        s = symbols.lookup(a - 1)
        if s is not None and s.module is None and s.name in PANIC_FUNCTIONS and a != s.address:
            return True
    return False


def _stack_words(prog: Any, lo: int, hi: int) -> tuple[int, ...]:
    """The words of [lo, hi), up to the first unreadable page."""
    page = prog.page_size
    out = bytearray()
    pos = lo
    while pos < hi:
        n = min(page - pos % page, hi - pos)
        try:
            out += prog.read(pos, n)
        except (MemoryReadError, VmcorekitError):
            break
        pos += n
    return struct.unpack(prog.platform.unpack(f"{len(out) // 8}Q"), bytes(out[: len(out) // 8 * 8]))


@dataclass
class CrashContext:
    """Where the crash happened, and how sure we are."""

    cpu: int | None
    task: Object | None
    how: str
    notes: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        if self.task is None:
            return None
        try:
            return int(self.task.pid)
        except (VmcorekitError, LookupError):
            return None


def crash_context(prog: "Program") -> CrashContext:
    """The panicking CPU and the task running there, cross-checked with the CPU register
    notes: a kdump PRSTATUS note carries the pid of the task that was current."""
    cpu, how = panic_cpu(prog)
    ctx = CrashContext(cpu, None, how)
    if cpu is None:
        return ctx
    ctx.task = cpu_curr(prog, cpu)
    if ctx.task is None:
        ctx.notes.append(f"no current task known for CPU {cpu}")
        return ctx
    try:
        notes = {c.cpu: c for c in prog.cpus}
    except (VmcorekitError, ValueError, struct.error):
        notes = {}
    note = notes.get(cpu)
    # QEMU's dump-guest-memory writes PRSTATUS notes too, with the vCPU number as the pid (it
    # knows no guest tasks). Only the crashing kernel's own notes name a task; that kernel
    # also stamps CRASHTIME into VMCOREINFO at the same moment (crash_save_vmcoreinfo).
    own_notes = bool(prog.vmcoreinfo.crashtime)
    if note is not None and note.source == "prstatus" and note.pid and own_notes:
        pid = ctx.pid
        if pid is not None and pid != note.pid:
            ctx.notes.append(f"CPU {cpu}'s PRSTATUS note names pid {note.pid}, but the "
                             f"scheduler's current task there has pid {pid}")
    return ctx


def panic_task(prog: "Program") -> Object | None:
    """The task that was running on the panicking CPU (struct task_struct *), or None."""
    return crash_context(prog).task


# -- the panic message --------------------------------------------------------------------------------
@dataclass
class PanicMessage:
    message: str  # the panic line ("Kernel panic - not syncing: ...") or the oops line
    cause: str | None = None  # the first BUG/Oops line of the sequence that led to it
    seq: int | None = None
    timestamp_ns: int | None = None
    caller: str | None = None  # 'T<pid>' or 'C<cpu>' of the printk
    notes: list[str] = field(default_factory=list)


def panic_message(prog: "Program", log: Any = None) -> PanicMessage | None:
    """Why the kernel died, from the one crash-report recogniser (printk/events.py): the panic
    line ("Kernel panic - not syncing: ...") of the last report that panicked, else the last
    header line (e.g. "Oops: ...") of the last oops/BUG report; its cause is the line that
    started that report. The line's printk caller (task or CPU) is cross-checked with
    panic_cpu and the task running there; a mismatch becomes a note."""
    from .printk.events import find_reports
    if log is None:
        from .printk import read_log
        log = read_log(prog)
    recs = log.records
    rec_of: list[int] = []   # line index -> record index (records may hold several lines)

    def lines() -> Any:
        for i, r in enumerate(recs):
            for part in r.text.decode("utf-8", "replace").split("\n"):
                rec_of.append(i)
                yield part

    reps = sorted(find_reports(lines()), key=lambda r: r.start)
    hit = next((r for r in reversed(reps) if r.panic is not None), None)
    if hit is None:
        hit = next((r for r in reversed(reps) if r.kind in ("oops", "bug")), None)
        if hit is None:
            return None
    if hit.panic is not None and hit.panic_line is not None:
        at = hit.panic_line
        message = "Kernel panic - not syncing: " + hit.panic.strip()
    else:
        message = hit.followers[-1] if hit.followers else hit.header
        at = next((hit.start + k for k, ln in enumerate(hit.lines) if ln.strip() == message), hit.start)
    rec = recs[rec_of[min(at, len(rec_of) - 1)]]
    pm = PanicMessage(message, seq=rec.seq, timestamp_ns=rec.ts_nsec, caller=rec.caller)
    if hit.header != message:
        pm.cause = hit.header
    ctx = crash_context(prog)
    if rec.caller and ctx.cpu is not None:
        if rec.caller.startswith("C") and int(rec.caller[1:]) != ctx.cpu:
            pm.notes.append(f"the panic line was printed by CPU {rec.caller[1:]}, but "
                            f"panic_cpu is {ctx.cpu}")
        elif rec.caller.startswith("T") and ctx.pid is not None and \
                int(rec.caller[1:]) != ctx.pid:
            pm.notes.append(f"the panic line was printed by pid {rec.caller[1:]}, but the "
                            f"task on panic_cpu {ctx.cpu} is pid {ctx.pid}")
    return pm
