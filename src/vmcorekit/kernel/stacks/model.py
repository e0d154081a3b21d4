"""The shared result of every unwinder, a Trace of Frames, and the StackRanges they walk.

A frame names the code address it was executing (`pc`), the stack pointer it had (`sp`: for a
frame reached by a return, the value rsp had right after that return) and, like crash, the stack
slot the pc was read from (`slot`; None when the pc came from registers). `method` says how the
frame was found, so a reader can tell a frame proven by unwind tables from a guess:

  regs      the pc came from a register set (CPU note, or a pt_regs frame on the stack)
  switch    the saved context of a task that was not running (inactive_task_frame)
  orc       ORC unwind tables
  fp        the frame-pointer chain
  scan      a text address found by scanning the stack (a guess; reliable=False)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The x86_64 pt_regs register names in crash's print order (and the JSON key order).
PT_REGS_ORDER = ("rip", "rsp", "eflags", "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp",
                 "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "orig_rax", "cs", "ss")
# arm64 (struct pt_regs / user_pt_regs).
A64_REGS_ORDER = ("pc", "sp", "pstate", *(f"x{i}" for i in range(31)), "orig_x0", "syscallno")


def regs_order(regs: dict[str, int]) -> tuple[str, ...]:
    """The register names of `regs`' architecture, in print order."""
    return A64_REGS_ORDER if "pstate" in regs else PT_REGS_ORDER


@dataclass(frozen=True)
class StackRange:
    """A kernel stack: [lo, hi), what it is, and for per-CPU stacks which CPU owns it."""

    kind: str  # "task", "IRQ", "DF", "NMI", "DB", "MCE", "VC", "VC2", "Overflow", "SDEI"
    lo: int
    hi: int
    cpu: int | None = None

    def __contains__(self, addr: int) -> bool:
        return self.lo <= addr < self.hi


@dataclass
class ExceptionFrame:
    """Registers saved on entry to the kernel (struct pt_regs), or taken from a CPU note."""

    regs: dict[str, int]
    address: int | None  # where the pt_regs lies on the stack; None for CPU-note registers
    source: str  # "pt_regs", "iret" (only the hardware frame is valid), "note"
    # Symbolic names of code addresses among the registers (arm64: "pc", "lr"), for display.
    labels: dict[str, str] = field(default_factory=dict)
    # For "note": who saved them: "prstatus" (the kernel's crash path, crash_setup_regs or the
    # stop NMI) or "qemu" (the vCPU state when the hypervisor took the dump).
    origin: str | None = None

    @property
    def user_mode(self) -> bool:
        if "pstate" in self.regs:  # arm64: PSTATE.M[3:0] == EL0t
            return (self.regs["pstate"] & 0xF) == 0
        return bool(self.regs.get("cs", 0) & 3)


@dataclass
class Frame:
    index: int
    pc: int
    sp: int
    method: str
    slot: int | None = None
    stack: str | None = None  # "task", "irq", "NMI", "DF", ... (the stack sp lies on)
    function: str | None = None
    offset: int | None = None
    size: int | None = None
    module: str | None = None
    reliable: bool = True
    # Set when this frame was interrupted (its pc is exact, not a return address): the
    # registers of the interruption.
    exception: ExceptionFrame | None = None

    @property
    def symbolic(self) -> str:
        if self.function is None:
            return f"{self.pc:#x}"
        s = f"{self.function}+{self.offset:#x}/{self.size:#x}"
        return f"{s} [{self.module}]" if self.module else s

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "index": self.index, "pc": self.pc, "sp": self.sp, "slot": self.slot,
            "function": self.function, "offset": self.offset, "size": self.size,
            "module": self.module, "stack": self.stack, "method": self.method,
            "reliable": self.reliable,
        }
        if self.exception is not None:
            d["exception"] = {"source": self.exception.source, "address": self.exception.address,
                              "user_mode": self.exception.user_mode,
                              "regs": {k: self.exception.regs[k]
                                       for k in regs_order(self.exception.regs)
                                       if k in self.exception.regs}}
        return d


@dataclass
class Trace:
    """One task's (or one CPU's) stack trace."""

    frames: list[Frame] = field(default_factory=list)
    # Registers at which the trace starts (CPU note or saved context), for display.
    start: str = ""  # "cpu-note", "saved-context", "pt_regs", "regs"
    # The kernel-entry frame the trace ended in (user-mode pt_regs at the stack top), if any.
    user_regs: ExceptionFrame | None = None
    # Why the trace ended: "end of stack", "user mode", or a problem (loop, wild sp, ...).
    end_reason: str = ""
    complete: bool = False  # ended where a stack ends normally (user regs / end-of-stack entry)
    unwinder: str = ""  # "orc", "fp", "scan", "crash"
    notes: list[str] = field(default_factory=list)  # e.g. which ORC layout was used and why
    task: int | None = None
    pid: int | None = None
    comm: str | None = None
    cpu: int | None = None

    def functions(self) -> list[str]:
        return [f.function or f"{f.pc:#x}" for f in self.frames]

    def signature(self) -> tuple[int, ...]:
        """What makes two traces "the same stack" for grouping: the pcs."""
        return tuple(f.pc for f in self.frames)

    def __str__(self) -> str:
        """The trace in crash's `bt` format."""
        from .render import render_trace  # render imports this module only for type hints
        return "\n".join(render_trace(self))

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task, "pid": self.pid, "comm": self.comm, "cpu": self.cpu,
            "unwinder": self.unwinder, "start": self.start, "complete": self.complete,
            "end_reason": self.end_reason, "notes": list(self.notes),
            "frames": [f.to_json() for f in self.frames],
            "user_regs": None if self.user_regs is None else {
                "address": self.user_regs.address,
                "regs": {k: self.user_regs.regs[k] for k in regs_order(self.user_regs.regs)
                         if k in self.user_regs.regs}},
        }
