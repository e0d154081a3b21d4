"""x86_64 traces: the stacks a task's trace may cross (its own, the CPU's hardirq stack and IST
exception stacks), where the trace starts (the CPU's registers, the context switch_to() saved,
or a stop function on the stack), then unwind.py's engine: ORC, frame pointers, stack scan, in
the order the platform names them.
"""
from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from ...errors import MemoryReadError, TypeLookupError, VmcorekitError
from ..percpu import per_cpu
from ..tasks import TaskInfo, task_info
from .kinfo import KernelInfo, task_stack
from .model import StackRange, Trace
from .regs import find_stop_frame, note_state, switch_state
from .unwind import MAX_FRAMES, StackMemory, State, Unwinder

if TYPE_CHECKING:
    from . import Stacks

IST_NAMES = ("DF", "NMI", "DB", "MCE", "VC", "VC2")


class X86Kernel:
    """x86_64 stack facts of one dump: THREAD_SIZE, the per-CPU IRQ and IST stacks."""

    def __init__(self, ki: KernelInfo) -> None:
        self.ki = ki
        self.prog = ki.prog

    @cached_property
    def thread_size(self) -> int:
        """`union thread_union`'s size, else `init_stack`'s, else the platform's default."""
        ki = self.ki
        s = ki.sizeof("union thread_union")
        if s:
            return s
        sym = ki.symbols.get("init_stack") if hasattr(ki.symbols, "get") else None
        if sym is not None and sym.size and sym.size & (sym.size - 1) == 0:
            return int(sym.size)
        return self.prog.platform.thread_size

    @cached_property
    def irq_stack_size(self) -> int:
        return self.ki.sizeof("struct irq_stack") or self.thread_size

    def _pcpu_hot_member(self, member: str) -> tuple[str, int] | None:
        """(symbol, extra offset) of a per-CPU field that 6.2+ keeps in `pcpu_hot` and older
        kernels as its own per-CPU variable: chosen by which symbol exists."""
        if self.prog.try_symbol_address("pcpu_hot") is not None:
            off = self.ki.offsetof("struct pcpu_hot", member)
            if off is not None:
                return "pcpu_hot", off
        if self.prog.try_symbol_address(member) is not None:
            return member, 0
        return None

    def _percpu_word(self, name: str, cpu: int, extra: int = 0) -> int | None:
        try:
            return self.prog.read_pointer(per_cpu(self.prog, name, cpu) + extra)
        except (MemoryReadError, VmcorekitError):
            return None

    def irq_stack(self, cpu: int) -> StackRange | None:
        """The hardirq stack: per-CPU `hardirq_stack_ptr` (6.2+: `pcpu_hot.hardirq_stack_ptr`)
        points 8 bytes below its top."""
        where = self._pcpu_hot_member("hardirq_stack_ptr")
        if where is None:
            return None
        sym, extra = where
        ptr = self._percpu_word(sym, cpu, extra)
        if not ptr:
            return None
        top = ptr + 8
        return StackRange("IRQ", top - self.irq_stack_size, top, cpu)

    @cached_property
    def _estack_members(self) -> list[tuple[str, int, int]]:
        """(name, offset, size) of each exception stack in struct cea_exception_stacks."""
        t = self.ki.struct("struct cea_exception_stacks")
        out: list[tuple[str, int, int]] = []
        if t is None or not getattr(t, "members", None):
            return out
        for m in t.members:
            if m.name and m.name.endswith("_stack") and not m.name.endswith("_guard"):
                try:
                    size = m.type.sizeof()
                except (TypeLookupError, VmcorekitError, TypeError):
                    continue
                out.append((m.name[:-len("_stack")], m.bit_offset // 8, size))
        return out

    def exception_stacks(self, cpu: int) -> list[StackRange]:
        """The IST stacks (DF, NMI, DB, MCE, VC, VC2) of `cpu` from the per-CPU pointer
        `cea_exception_stacks` and the layout of struct cea_exception_stacks; without BTF, the
        stack tops in the TSS (`cpu_tss_rw.x86_tss.ist[]`) with 8 KiB stacks assumed."""
        out: list[StackRange] = []
        if self._estack_members and self.prog.try_symbol_address("cea_exception_stacks") is not None:
            base = self._percpu_word("cea_exception_stacks", cpu) or 0
            if base:
                for name, off, size in self._estack_members:
                    out.append(StackRange(name, base + off, base + off + size, cpu))
                return out
        if self.prog.try_symbol_address("cpu_tss_rw") is not None:
            # struct x86_hw_tss is packed and ABI: ist[7] at byte 36 (after u32 + sp0..sp2 + u64)
            ist_off = self.ki.offsetof("struct tss_struct", "x86_tss.ist") or 36
            try:
                tss = per_cpu(self.prog, "cpu_tss_rw", cpu)
                for i, name in enumerate(IST_NAMES):
                    top = self.prog.read_pointer(tss + ist_off + 8 * i)
                    if top:
                        out.append(StackRange(name, top - 8192, top, cpu))
            except (MemoryReadError, VmcorekitError):
                pass
        return out

    def task_stack(self, info: TaskInfo) -> StackRange | None:
        return task_stack(info, self.thread_size)

    def cpu_stacks(self, cpu: int) -> list[StackRange]:
        out = self.exception_stacks(cpu)
        irq = self.irq_stack(cpu)
        if irq is not None:
            out.append(irq)
        return out


# -- tracing -------------------------------------------------------------------------------------
def trace(s: "Stacks", task: int, *, unwinder: str = "auto", max_frames: int = MAX_FRAMES) -> Trace:
    """The trace of `task`: from its CPU's registers if it was running, else from its saved
    context; `unwinder` auto (ORC, then frame pointers, then scanning), or one of them."""
    choices = ("auto", *s.prog.platform.unwinders)
    if unwinder not in choices:
        raise ValueError(f"unwinder must be one of {choices}")
    ki = s.ki
    xk = s.arch
    assert isinstance(xk, X86Kernel)  # platforms.py pairs this tracer with these facts
    cpu = s.cpu_of_active(task)
    try:
        info: TaskInfo | None = task_info(s.prog, task)
    except (TypeLookupError, MemoryReadError) as e:
        # No layout (no BTF), or the task_struct is not in the dump (filtered out, cut off):
        # a running task is still traced from its CPU's registers.
        if cpu is None:
            raise
        info = None
        why = f"task_struct at {task:#x} unreadable ({e})" if isinstance(e, MemoryReadError) else str(e)
    if info is not None:
        tr = Trace(task=task, pid=info.pid, comm=info.comm,
                   cpu=cpu if cpu is not None else info.cpu)
        stacks = s.stacks_for(info, cpu)
    else:
        # No task_struct layout (no BTF): the CPU's registers still give a trace. The task
        # stack is the THREAD_SIZE-aligned block around the stack pointer (vmap'ed and
        # direct-mapped stacks are both aligned so).
        assert cpu is not None
        ctx = s.contexts.get(cpu)
        qemu = ctx is not None and ctx.regs is not None and "cr3" in ctx.regs
        tr = Trace(task=task, pid=ctx.note_pid if ctx and ctx.source == "prstatus" and not qemu else None,
                   cpu=cpu)
        tr.notes.append(f"{why}; tracing CPU {cpu} from its registers, the task stack taken "
                        f"as the {xk.thread_size}-byte block around its stack pointer")
        stacks = xk.cpu_stacks(cpu)
        rsp = (ctx.regs or {}).get("rsp", 0) if ctx else 0
        if rsp and not any(rsp in x for x in stacks):
            lo = rsp & ~(xk.thread_size - 1)
            stacks.insert(0, StackRange("task", lo, lo + xk.thread_size, cpu))
    mem = StackMemory(s.prog.read, stacks)
    orc = s.orc if unwinder in ("auto", "orc") else None
    if unwinder in ("auto", "orc"):
        tr.notes.append(s.orc_layout.describe())
        if orc is not None:
            tr.notes += orc.notes
    if orc is None and unwinder in ("auto", "orc"):
        tr.notes += [n for n in s.notes if n not in tr.notes]
    uw = Unwinder(mem, ki.symbols, orc, max_frames=max_frames,
                  use_fp=True if unwinder == "fp" else None,
                  use_scan=unwinder in ("auto", "scan", "fp") or orc is None)
    if unwinder == "scan":
        uw.use_fp = False
    start = _start_state(s, tr, info, cpu, mem)
    if start is None:
        tr.unwinder = "orc" if uw.orc is not None else ("fp" if uw.use_fp else "scan")
        return tr
    return uw.run(start, tr)


def _start_state(s: "Stacks", tr: Trace, info: TaskInfo | None, cpu: int | None,
                 mem: StackMemory) -> State | None:
    if cpu is None:
        assert info is not None
        tr.start = "saved-context"
        return switch_state(s.ki, info)
    ctx = s.contexts.get(cpu)
    if ctx is None or ctx.regs is None:
        if info is None:
            tr.end_reason = f"no register note for CPU {cpu} and no task_struct layout"
            return None
        tr.start = "saved-context"
        tr.notes.append(f"no register note for CPU {cpu}: starting from the task's last "
                        "saved context, which predates the crash")
        return switch_state(s.ki, info)
    # Only the crashing kernel's own notes come with CRASHTIME (crash_save_vmcoreinfo); others
    # are the hypervisor's snapshot of the vCPU when it took the dump.
    st, exc = note_state(ctx.regs, "prstatus" if s.prog.vmcoreinfo.crashtime else "qemu")
    if st is not None and mem.stack_of(st.sp) is not None:
        tr.start = "cpu-note"
        return st
    # The note holds the registers the CPU was interrupted at (user mode, or a stack we do
    # not know): a CPU stopped by the crash NMI/IPI. Its kernel stack starts in the stop
    # function.
    stop = find_stop_frame(s.ki, mem.stacks, s.ki.symbols)
    if stop is not None:
        tr.start = "stop-function"
        tr.notes.append(f"CPU {cpu}'s note holds interrupted {'user' if exc.user_mode else 'kernel'} "
                        f"registers (rip {exc.regs.get('rip', 0):#x}); the kernel stack was found "
                        "from the stop function on it")
        return stop
    if exc.user_mode:
        tr.start = "cpu-note"
        tr.user_regs = exc
        tr.complete = True
        tr.end_reason = "user mode"
        return None
    tr.start = "cpu-note"
    tr.notes.append(f"CPU {cpu}'s stack pointer {exc.regs.get('rsp', 0):#x} is on no known stack")
    return st
