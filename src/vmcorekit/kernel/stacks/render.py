"""Traces as text in crash's `bt` format.

    PID: 218      TASK: ff335db082b08000  CPU: 0    COMMAND: "sh"
        [exception RIP: delay_tsc+51]          <- a frame interrupted (registers known); from a
                                                  CPU note: "[registers saved at the crash: ...]"
        RIP: ...  RSP: ...  RFLAGS: ...
     #0 [ff4c415880453b68] panic at ffffffff9d201f99
     ...
        RIP: 000000000047b7a0  RSP: ...         <- the user-mode registers the trace ends in

Frames the unwinder only guessed (stack scan) end in " (scan)"; a trace that stopped early
says why on its last line.
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the model's Trace renders itself through this module
    from .model import ExceptionFrame, Frame, Trace

IST_KINDS = ("DF", "NMI", "DB", "MCE", "VC", "VC2")


def header(trace: Trace) -> str:
    cpu = "-" if trace.cpu is None else str(trace.cpu)
    task = f"{trace.task:x}" if trace.task is not None else "?"
    return f'PID: {trace.pid if trace.pid is not None else "?":<7}  TASK: {task}  CPU: {cpu:<3}  COMMAND: "{trace.comm or ""}"'


def a64_regs_block(exc: ExceptionFrame) -> list[str]:
    """crash's arm64 exception frame: PC/LR/SP (kernel mode: with their symbols), then
    x29..x0 three to a line; user mode adds ORIG_X0, SYSCALLNO and PSTATE."""
    r = exc.regs
    g = lambda k: r.get(k, 0)  # noqa: E731
    user = exc.user_mode
    if user:
        lines = [f"     PC: {g('pc'):016x}   LR: {g('x30'):016x}   SP: {g('sp'):016x}"]
    else:
        def label(k: str) -> str:
            return f"[{exc.labels[k]}]" if k in exc.labels else "[unknown or invalid address]"
        lines = [f"     PC: {g('pc'):016x}  {label('pc')}",
                 f"     LR: {g('x30'):016x}  {label('lr')}",
                 f"     SP: {g('sp'):016x}  PSTATE: {g('pstate'):08x}"]
    row: list[str] = []
    for i in range(29, -1, -1):
        row.append(f"{' ' if i < 10 else ''}X{i}: {g(f'x{i}'):016x}")
        if len(row) == 3 or i == 0:
            lines.append("    " + "  ".join(row))
            row = []
    if user:
        lines.append(f"    ORIG_X0: {g('orig_x0'):016x}  SYSCALLNO: {g('syscallno') & 0xFFFFFFFFFFFFFFFF:x}"
                     f"  PSTATE: {g('pstate'):08x}")
    return lines


def regs_block(exc: ExceptionFrame) -> list[str]:
    r = exc.regs
    if "pstate" in r:
        return a64_regs_block(exc)
    g = lambda k: r.get(k, 0)  # noqa: E731
    lines = []
    if "rax" in r:
        lines += [
            f"    RIP: {g('rip'):016x}  RSP: {g('rsp'):016x}  RFLAGS: {g('eflags'):08x}",
            f"    RAX: {g('rax'):016x}  RBX: {g('rbx'):016x}  RCX: {g('rcx'):016x}",
            f"    RDX: {g('rdx'):016x}  RSI: {g('rsi'):016x}  RDI: {g('rdi'):016x}",
            f"    RBP: {g('rbp'):016x}   R8: {g('r8'):016x}   R9: {g('r9'):016x}",
            f"    R10: {g('r10'):016x}  R11: {g('r11'):016x}  R12: {g('r12'):016x}",
            f"    R13: {g('r13'):016x}  R14: {g('r14'):016x}  R15: {g('r15'):016x}",
        ]
    else:  # only the hardware (iret) frame is known
        lines.append(f"    RIP: {g('rip'):016x}  RSP: {g('rsp'):016x}  RFLAGS: {g('eflags'):08x}")
    if exc.source == "pt_regs":
        lines.append(f"    ORIG_RAX: {g('orig_rax'):016x}  CS: {g('cs'):04x}  SS: {g('ss'):04x}")
    else:
        lines.append(f"    CS: {g('cs'):04x}  SS: {g('ss'):04x}")
    return lines


def exception_rip(f: Frame) -> str:
    """The line above an exception frame's registers. Registers from a CPU note are a snapshot,
    not a fault: they are labelled by who saved them."""
    where = "unknown or invalid address"
    if f.function is not None:
        where = f.function + (f"+{f.offset}" if f.offset else "")
    exc = f.exception
    # (crash mode's tracer leaves `origin` unset: it prints crash's own label)
    if exc is not None and exc.source == "note" and exc.origin is not None:
        if exc.origin == "qemu":
            return f"    [registers at dump time: {where}]"
        return f"    [registers saved at the crash: {where}]"
    return f"    [exception RIP: {where}]"


def frame_line(n: int, f: Frame, mark_guesses: bool = True, arm64: bool = False) -> str:
    name = f.function if f.function is not None else "(unknown)"
    if arm64:
        # crash on arm64: the frame's own frame record, and the branch (bl) before a return
        # address; a pc taken from registers is shown as it is.
        slot, pc = f.sp, f.pc if f.method == "regs" else f.pc - 4
    else:
        slot, pc = (f.slot if f.slot is not None else f.sp), f.pc
    line = f"{' ' if n < 10 else ''}#{n} [{slot:x}] {name} at {pc:x}"
    if f.module:
        line += f" [{f.module}]"
    if mark_guesses and not f.reliable:
        line += " (scan)"
    return line


def stack_words(read: Callable[[int, int], bytes], lo: int, hi: int) -> list[str]:
    """crash's `bt -f` frame dump: the words of [lo, hi] two to a line."""
    if hi < lo or hi - lo > 1 << 16:
        return []
    try:
        raw = read(lo, hi - lo + 8)
    except Exception:  # noqa: BLE001 - a missing page only loses the dump of this frame
        return [f"    {lo:x}: (unreadable)"]
    words = struct.unpack(f"<{len(raw) // 8}Q", raw[: len(raw) // 8 * 8])
    out = []
    for i in range(0, len(words), 2):
        out.append(f"    {lo + 8 * i:x}: " + "".join(f"{w:016x} " for w in words[i:i + 2]))
    return out


def render_trace(trace: Trace, *, full: bool = False, read: Callable[[int, int], bytes] | None = None,
                 show_header: bool = True, mark_guesses: bool = True) -> list[str]:
    lines: list[str] = [header(trace)] if show_header else []
    n = 0
    frameptr: int | None = None
    prev_stack: str | None = None
    arm64 = trace.unwinder == "frame-record"
    for f in trace.frames:
        if prev_stack is not None and f.stack != prev_stack and prev_stack != "task":
            kind = f"{prev_stack} exception" if prev_stack in IST_KINDS else prev_stack
            lines.append(f"--- <{kind} stack> ---")
        prev_stack = f.stack
        if arm64 and f.exception is not None and not f.exception.user_mode:
            # crash on arm64: the registers, then the interrupted function as a frame.
            lines += regs_block(f.exception)
        elif f.exception is not None and not f.exception.user_mode:
            lines.append(exception_rip(f))
            lines += regs_block(f.exception)
            frameptr = f.sp
            continue
        if arm64:
            # crash's arm64 bt -f: the words between the previous frame record and this one
            if full and read is not None and frameptr is not None and frameptr < f.sp:
                lines += stack_words(read, frameptr, f.sp - 8)
            lines.append(frame_line(n, f, mark_guesses, arm64))
            n += 1
            frameptr = f.sp
            continue
        if full and read is not None and frameptr is not None and f.slot is not None:
            lines += stack_words(read, frameptr, f.slot)
        lines.append(frame_line(n, f, mark_guesses, arm64))
        n += 1
        if f.slot is not None:
            frameptr = f.slot + 8
    if trace.user_regs is not None:
        if not trace.frames and not arm64:
            lines.append("    [exception RIP: user space]")
        lines += regs_block(trace.user_regs)
    if not trace.complete and trace.end_reason:
        lines.append(f"    [trace stopped: {trace.end_reason}]")
    elif not trace.frames and trace.user_regs is None and trace.end_reason:
        lines.append(f"    ({trace.end_reason})")
    return lines


def group_traces(traces: Iterable[Trace]) -> list[list[Trace]]:
    """Traces with the same pcs, in first-seen order."""
    groups: dict[tuple[Any, ...], list[Trace]] = {}
    for t in traces:
        key = (t.signature(), t.user_regs is not None, t.complete)
        groups.setdefault(key, []).append(t)
    return list(groups.values())


def render_group(group: list[Trace]) -> list[str]:
    """Tasks sharing one stack: each task's header, then the frames without stack addresses
    (they differ per task)."""
    lines = [header(t) for t in group]
    first = group[0]
    arm64 = first.unwinder == "frame-record"
    n = 0
    for f in first.frames:
        if f.exception is not None and not f.exception.user_mode:
            lines.append(exception_rip(f))
            if not arm64:  # arm64 shows the interrupted function as a frame too
                continue
        name = f.function if f.function is not None else "(unknown)"
        mod = f" [{f.module}]" if f.module else ""
        guess = " (scan)" if not f.reliable else ""
        pc = f.pc - 4 if arm64 and f.method != "regs" else f.pc
        lines.append(f"{' ' if n < 10 else ''}#{n} {name} at {pc:x}{mod}{guess}")
        n += 1
    if first.user_regs is not None:
        lines.append("    (returns to user mode)")
    if not first.complete and first.end_reason:
        lines.append(f"    [trace stopped: {first.end_reason}]")
    elif not first.frames and first.user_regs is None and first.end_reason:
        lines.append(f"    ({first.end_reason})")
    return lines
