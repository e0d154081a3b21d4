"""Interrupt context of each CPU at the crash: NMI, hard IRQ, softirq or task, and which.

    preempt_count(prog, cpu)          # the CPU's preempt_count (None: unknown)
    softirq_vectors(prog)             # ["HI", "TIMER", ...] with each vector's handler
    softirq_pending(prog, cpu)        # ["TIMER", "RCU"]: raised, not yet run
    interrupt_context(prog, cpu, fns) # IrqContext: levels, the softirq and IRQ handler

preempt_count's bytes say the nesting (include/linux/preempt.h, the same since 5.x):
bits 0-7 preemption depth, 8-15 softirq (an odd count: a softirq is being served; +2 per
local_bh_disable), 16-19 hard IRQ depth, 20-23 NMI depth. Where it lives is found by symbol,
not by architecture: the per-CPU `pcpu_hot.preempt_count` (x86 6.2+), the per-CPU
`__preempt_count` (x86 before), else the running task's `thread_info.preempt_count` (arm64,
...). x86 keeps PREEMPT_NEED_RESCHED inverted in bit 31: masked off.

Which softirq ran is read from the stack: its handler is a frame (run_timer_softirq, ...), and
the kernel's own tables `softirq_vec[]` (handlers) and `softirq_to_name[]` (names) map it to
the vector; a kernel whose symbol table lacks them (arm64 Debian) uses the handler names the
kernel has given the vectors since 2.6.x. A hard IRQ is named by the handler called from
`__handle_irq_event_percpu` (a device's, e.g. vp_interrupt) or, for a system vector with no
irq_desc (the local timer), the outermost frame on the IRQ stack.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import MemoryReadError, TypeLookupError, VmcorekitError
from ..program.objects import Object
from . import cpus as _cpus
from .percpu import per_cpu

if TYPE_CHECKING:
    from ..program.core import Program
    from .stacks.model import Trace

__all__ = ["IrqContext", "preempt_count", "softirq_vectors", "softirq_pending",
           "interrupt_context", "decode_preempt_count", "SOFTIRQ_HANDLERS"]

PREEMPT_MASK = 0x000000FF
SOFTIRQ_MASK = 0x0000FF00
HARDIRQ_MASK = 0x000F0000
NMI_MASK = 0x00F00000
SOFTIRQ_OFFSET = 0x100
_NEED_RESCHED = 0x80000000
# include/linux/interrupt.h's vectors and the handler open_softirq() gives each (the names
# change rarely: SCHED's was run_rebalance_domains until 6.9).
SOFTIRQ_HANDLERS: dict[str, str] = {
    "tasklet_hi_action": "HI", "run_timer_softirq": "TIMER", "net_tx_action": "NET_TX",
    "net_rx_action": "NET_RX", "blk_done_softirq": "BLOCK", "irq_poll_softirq": "IRQ_POLL",
    "tasklet_action": "TASKLET", "run_rebalance_domains": "SCHED",
    "sched_balance_softirq": "SCHED", "hrtimer_run_softirq": "HRTIMER", "rcu_core_si": "RCU",
    "rcu_process_callbacks": "RCU"}
_DEFAULT_VECTORS = ("HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED",
                    "HRTIMER", "RCU")
_MAX_VECTORS = 32  # __softirq_pending is 32 bits wide
# Frames that run every IRQ's handler: the one called from the first is the device's.
_IRQ_DISPATCH = ("__handle_irq_event_percpu", "handle_irq_event_percpu", "handle_percpu_devid_irq",
                 "handle_percpu_irq")


def decode_preempt_count(pc: int) -> dict[str, int | bool]:
    pc &= ~_NEED_RESCHED & 0xFFFFFFFF
    soft = (pc & SOFTIRQ_MASK) >> 8
    return {"preempt": pc & PREEMPT_MASK, "softirq_serving": bool(soft & 1),
            "bh_disabled": soft >> 1, "hardirq": (pc & HARDIRQ_MASK) >> 16,
            "nmi": (pc & NMI_MASK) >> 20}


def preempt_count(prog: "Program", cpu: int) -> tuple[int | None, str]:
    """(preempt_count of `cpu`, where it was read); None when it cannot be found."""
    try:
        if prog.try_symbol_address("pcpu_hot") is not None:
            off = prog.offsetof("struct pcpu_hot", "preempt_count")
            return prog.read_u32(per_cpu(prog, "pcpu_hot", cpu) + off), "pcpu_hot.preempt_count"
        if prog.try_symbol_address("__preempt_count") is not None:
            return prog.read_u32(per_cpu(prog, "__preempt_count", cpu)), "__preempt_count"
        task = _cpus.current_task_address(prog, cpu)
        if task is None:
            return None, "no current task"
        off = prog.offsetof("struct task_struct", "thread_info.preempt_count")
        return prog.read_u32(task + off), "current->thread_info.preempt_count"
    except (VmcorekitError, LookupError) as e:
        return None, str(e)


def softirq_vectors(prog: "Program") -> list[tuple[str, str | None]]:
    """[(vector name, handler function)] by vector number, from the kernel's tables."""
    return list(prog.memo(softirq_vectors, lambda: tuple(_read_vectors(prog))))


def _read_vectors(prog: "Program") -> list[tuple[str, str | None]]:
    try:
        n = prog.types.constant("NR_SOFTIRQS")
    except (TypeLookupError, VmcorekitError, LookupError):
        n = len(_DEFAULT_VECTORS)
    n = max(0, min(n, _MAX_VECTORS))
    names_at, vec_at = prog.try_symbol_address("softirq_to_name"), prog.try_symbol_address("softirq_vec")
    ps = prog.platform.pointer_size
    try:
        step = prog.types.sizeof("struct softirq_action")
    except (TypeLookupError, VmcorekitError, LookupError):
        step = ps
    out: list[tuple[str, str | None]] = []
    for i in range(n):
        name = _DEFAULT_VECTORS[i] if i < len(_DEFAULT_VECTORS) else str(i)
        handler = None
        try:
            if names_at is not None:
                s = prog.read_cstring(prog.read_pointer(names_at + i * ps), 16)
                if s and s.isascii() and s.replace(b"_", b"").isalnum():
                    name = s.decode()
            if vec_at is not None:
                fn = prog.read_pointer(vec_at + i * step)
                handler = prog.symbols.symbolize(fn) if fn else None
                if handler:
                    handler = handler.split("+", 1)[0]
        except MemoryReadError:
            pass
        out.append((name, handler))
    return out


def softirq_pending(prog: "Program", cpu: int) -> list[str] | None:
    """Names of the softirqs raised on `cpu` and not yet run (None: unknown)."""
    try:
        if prog.try_symbol_address("pcpu_hot") is not None and \
                prog.types.has_member("struct pcpu_hot", "softirq_pending"):
            bits = int(Object(prog, "struct pcpu_hot",
                              address=per_cpu(prog, "pcpu_hot", cpu)).softirq_pending)
        elif prog.try_symbol_address("irq_stat") is not None:
            bits = int(Object(prog, "irq_cpustat_t",
                              address=per_cpu(prog, "irq_stat", cpu)).__softirq_pending)
        else:
            return None
    except (VmcorekitError, LookupError):
        return None
    vecs = softirq_vectors(prog)
    return [vecs[i][0] if i < len(vecs) else str(i) for i in range(_MAX_VECTORS) if bits >> i & 1]


@dataclass
class IrqContext:
    """What `cpu` was doing: `levels` outermost first ("task", "softirq", "hardirq", "NMI"),
    from preempt_count where known, else from the stack alone."""

    cpu: int
    preempt_count: int | None
    source: str
    levels: list[str] = field(default_factory=list)
    softirq: str | None = None  # vector name, e.g. TIMER
    softirq_handler: str | None = None
    irq_handler: str | None = None  # the innermost IRQ's or NMI's handler (or entry)
    bh_disabled: int = 0
    preempt_depth: int = 0
    pending: list[str] | None = None

    @property
    def in_interrupt(self) -> bool:
        return any(lv != "task" for lv in self.levels)

    def summary(self) -> str:
        parts = []
        for lv in self.levels:
            if lv == "softirq" and self.softirq:
                parts.append(f"softirq {self.softirq} ({self.softirq_handler})")
            elif lv in ("hardirq", "NMI") and self.irq_handler and lv is self.levels[-1]:
                parts.append(f"{lv} ({self.irq_handler})")
            else:
                parts.append(lv)
        return " > ".join(parts) or "unknown"

    def as_dict(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "preempt_count": None if self.preempt_count is None else f"{self.preempt_count:#x}",
                "source": self.source, "levels": self.levels, "softirq": self.softirq,
                "softirq_handler": self.softirq_handler, "irq_handler": self.irq_handler,
                "bh_disabled": self.bh_disabled, "preempt_depth": self.preempt_depth,
                "pending_softirqs": self.pending, "in_interrupt": self.in_interrupt,
                "summary": self.summary()}


def _from_stack(prog: "Program", trace: "Trace | None") -> tuple[str | None, str | None, str | None, bool]:
    """(softirq vector, its handler, IRQ handler, on an NMI stack) read from the frames."""
    if trace is None:
        return None, None, None, False
    handlers = dict(SOFTIRQ_HANDLERS)
    for name, fn in softirq_vectors(prog):
        if fn:
            handlers[fn] = name
    vec = handler = irq = None
    frames = trace.frames
    nmi = any((f.stack or "").upper() == "NMI" for f in frames)
    for f in frames:
        if f.function in handlers:
            vec, handler = handlers[f.function], f.function
            break
    # the innermost interrupt's frames: those above the first frame it interrupted
    cut = next((i for i, f in enumerate(frames) if i and f.exception is not None
                and f.exception.source == "pt_regs"), len(frames))
    inner = frames[:cut]
    for i, f in enumerate(inner):
        if f.function in _IRQ_DISPATCH and i > 0 and inner[i - 1].function:
            irq = inner[i - 1].function
            break
    if irq is None:
        on_irq = [f for f in inner if (f.stack or "").lower() == "irq" and f.function]
        named = on_irq or [f for f in inner if f.function]
        if named:
            irq = named[-1].function
    return vec, handler, irq, nmi


def interrupt_context(prog: "Program", cpu: int, trace: "Trace | None" = None) -> IrqContext:
    """`cpu`'s interrupt context, from its preempt_count and (when given) its stack trace."""
    pc, source = preempt_count(prog, cpu)
    ctx = IrqContext(cpu=cpu, preempt_count=pc, source=source if pc is not None else
                     f"stack only (preempt_count unknown: {source})")
    vec, handler, irq, nmi_stack = _from_stack(prog, trace)
    ctx.pending = softirq_pending(prog, cpu)
    levels = ["task"]
    if pc is not None:
        d = decode_preempt_count(pc)
        ctx.bh_disabled, ctx.preempt_depth = int(d["bh_disabled"]), int(d["preempt"])
        if d["softirq_serving"]:
            levels.append("softirq")
        # nmi_enter() adds a HARDIRQ_OFFSET along with its NMI_OFFSET: not an IRQ of its own
        levels += ["hardirq"] * max(min(int(d["hardirq"]) - int(d["nmi"]), 15), 0)
        levels += ["NMI"] * min(int(d["nmi"]), 15)
    else:
        if vec is not None:
            levels.append("softirq")
        if irq is not None:
            levels.append("hardirq")
        if nmi_stack:
            levels.append("NMI")
    ctx.levels = levels
    if "softirq" in levels:
        ctx.softirq, ctx.softirq_handler = vec, handler
    if levels[-1] in ("hardirq", "NMI"):
        ctx.irq_handler = irq  # the innermost interrupt's, as the stack's top frames show it
    return ctx
