"""crash's x86_64 `bt`, reproduced: the tracer of crash 8.0.2 (x86_64.c,
x86_64_low_budget_back_trace_cmd) that scans the stack word by word and prints every kernel text
address that looks like a return address, skipping over frames whose size it can work out:

  * frame size from ORC only when the entry is a CALL entry based on %rsp (looked up at the
    return address itself, not one byte before it); otherwise by counting, from the start of the
    function up to the return address, the pushes, pops and %rsp adjustments of the instructions
    (crash asks gdb to disassemble; here the instructions are decoded from the dump's text);
    0 for init functions;
  * where the size is wrong (functions that move %rsp by a variable amount, like do_syscall_64
    with its randomized stack offset), stale return addresses left deeper in the stack are
    printed as frames — exactly as crash prints them;
  * the starting point of an active task is found by crash's search for panic/kexec/NMI
    functions on its stacks, not from the CPU's registers (those are used only when the search
    finds nothing).

It exists so `bt --unwinder crash` output can be compared with crash line for line; the ORC
unwinder (`unwind.py`) gives the true call chain. Frames it prints are all marked unreliable.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...errors import MemoryReadError, VmcorekitError
from ..tasks import TaskInfo, task_info
from . import orc as O
from .model import ExceptionFrame, Frame, StackRange, Trace
from .x86 import PT_REGS_SIZE, insn_length, kernel_words, parse_pt_regs, readable_stacks, stack_effect

if TYPE_CHECKING:
    from . import Stacks

KEXEC_NAMES = ("netconsole_netdump", "netpoll_start_netdump", "start_disk_dump", "disk_dump",
               "crash_kexec", "machine_kexec", "try_crashdump")
EXCEPTION_FUNCTIONS = (
    "asm_exc_invalid_tss", "asm_exc_segment_not_present", "asm_exc_alignment_check",
    "asm_exc_general_protection", "asm_exc_page_fault", "asm_exc_divide_error",
    "asm_exc_overflow", "asm_exc_bounds", "asm_exc_invalid_op", "asm_exc_device_not_available",
    "asm_exc_coproc_segment_overrun", "asm_exc_spurious_interrupt_bug",
    "asm_exc_coprocessor_error", "asm_exc_simd_coprocessor_error", "asm_exc_debug",
    "xen_asm_exc_stack_segment", "xen_asm_exc_xen_hypervisor_callback", "xen_asm_exc_int3")
DIRECT_CALL_TARGETS = ("schedule", "schedule_timeout")
RAZ_MASK = 0xFFFFFFFFFFC08028
MAX_LEVELS = 1024


@dataclass
class _Bt:
    stack: StackRange
    buf: bytes
    level: int = 0
    call_target: str | None = None
    check_caller: bool = False
    no_check_caller: bool = False
    eframe_ip: int = 0
    framesize_disable: bool = False
    frames: list[Frame] = field(default_factory=list)

    def word(self, addr: int) -> int:
        off = addr - self.stack.lo
        return struct.unpack_from("<Q", self.buf, off)[0]


class CrashTracer:
    def __init__(self, s: "Stacks") -> None:
        self.s = s
        self.ki = s.ki
        self.prog = s.prog
        self.sym = s.ki.symbols
        self._text_cache: dict[int, bytes] = {}
        init_lo = self.prog.try_symbol_address("__init_begin")
        init_hi = self.prog.try_symbol_address("__init_end")
        self.init_range = (init_lo or 0, init_hi or 0)

    # -- symbols and text ---------------------------------------------------------------------
    def is_text(self, addr: int) -> bool:
        return bool(self.sym.in_text(addr))

    def name(self, addr: int) -> str | None:
        s = self.sym.lookup(addr)
        return s.name if s is not None else None

    def code(self, start: int, end: int) -> bytes:
        try:
            return self.prog.read(start, end - start)
        except (MemoryReadError, VmcorekitError):
            return b""

    def called_by(self, ret: int) -> str | None:
        """x86_64_function_called_by(ret - 5): the target of a direct call ending at `ret`."""
        c = self.code(ret - 5, ret)
        if len(c) != 5 or c[0] != 0xE8:
            return None
        target = (ret + struct.unpack_from("<i", c, 1)[0]) & 0xFFFFFFFFFFFFFFFF
        n = self.name(target)
        if n in ("schedule_timeout_interruptible", "schedule_timeout_uninterruptible"):
            return "schedule_timeout"
        if n == "__cond_resched":
            return "schedule"
        return n

    # -- frame sizes --------------------------------------------------------------------------
    def framesize(self, bt: _Bt, text: int) -> int:
        if bt.framesize_disable:
            return 0
        s = self.sym.lookup(text)
        if s is None:
            bt.framesize_disable = True
            return 0
        exception = bt.eframe_ip == text
        lo, hi = self.init_range
        if lo <= s.address < hi:
            return 0
        orc = self.s.orc
        if orc is not None:
            e = orc.find(text, s.module)  # crash looks the return address itself up
            if e is not None and e.type == O.CALL and e.sp_reg == O.ORC_REG_SP:
                return e.sp_offset - 8
        code = self.code(s.address, text + 16)
        size = 0
        pos = 0
        limit = text - s.address
        while pos < len(code):
            if pos > limit or (pos == limit and not exception):
                break
            n = insn_length(code, pos)
            eff = stack_effect(code, pos, n)
            if eff is not None:
                kind, v = eff
                if kind == "push":
                    size += 8
                elif kind == "pop":
                    if size > 0:
                        size -= 8
                elif kind == "add":
                    if size > 0:
                        size = _int32(size - v)
                elif kind == "sub":
                    size = _int32(size + v)
            pos += n
        return size

    # -- printing -----------------------------------------------------------------------------
    def frame(self, bt: _Bt, slot: int, text: int, method: str = "crash") -> Frame:
        s = self.sym.lookup(text)
        f = Frame(index=len(bt.frames), pc=text, sp=slot + 8, method=method, slot=slot,
                  stack=bt.stack.kind, reliable=False)
        if s is not None:
            f.function, f.offset, f.size, f.module = s.name, text - s.address, s.size, s.module
        return f

    def eframe(self, bt: _Bt, addr: int, verify: bool) -> Frame | None:
        """x86_64_exception_frame at `addr`: the pt_regs there if it verifies."""
        try:
            raw = self.prog.read(addr, PT_REGS_SIZE)
        except (MemoryReadError, VmcorekitError):
            return None
        regs = parse_pt_regs(raw)
        if verify and not self.eframe_verify(bt, addr, regs):
            return None
        exc = ExceptionFrame(regs, addr, "pt_regs")
        f = Frame(index=len(bt.frames), pc=regs["rip"], sp=regs["rsp"], method="regs",
                  stack=bt.stack.kind, reliable=False, exception=exc)
        s = self.sym.lookup(regs["rip"])
        if s is not None:
            f.function, f.offset, f.size, f.module = s.name, regs["rip"] - s.address, s.size, s.module
            bt.eframe_ip = regs["rip"]
        return f

    def eframe_verify(self, bt: _Bt, kvaddr: int, r: dict[str, int]) -> bool:
        cs, ss, rip, rsp, fl = r["cs"], r["ss"], r["rip"], r["rsp"], r["eflags"]
        if fl & RAZ_MASK or not fl & 2:
            return False
        kv = rsp >= 0xFFFF800000000000
        if cs == 0x10 and ss == 0x18:
            if self.is_text(rip) and kv:
                return True
            if kvaddr + PT_REGS_SIZE == rsp:
                return True
        if cs == 0x10 and kvaddr and self.is_text(rip) and kv and rsp in (kvaddr + PT_REGS_SIZE, kvaddr + PT_REGS_SIZE + 8):
            return True
        if cs == 0x33 and ss == 0x2B and rip < 0x800000000000 and rsp < 0x800000000000:
            return True
        return False

    def print_entry(self, bt: _Bt, slot: int, text: int, *, start: bool = False) -> str:
        """x86_64_print_stack_entry: 'ignored', 'displayed', 'eframe' or 'complete'."""
        bt.eframe_ip = 0
        s = self.sym.lookup(text)
        if s is None:
            return "ignored"
        off = text - s.address
        eframe_check = -1
        if not off and not start:
            if s.name != "error_exit":
                return "ignored"
            eframe_check = 8
        if eframe_check == -1 and off and not start:
            if s.name in EXCEPTION_FUNCTIONS:
                eframe_check = 8
            if bt.stack.kind == "IRQ" and "_interrupt" in s.name:
                eframe_check = 0
        result = "complete" if s.name in ("cpu_idle", "system_call_fastpath") else "displayed"
        bt.frames.append(self.frame(bt, slot, text))
        bt.level += 1
        if eframe_check >= 0:
            ef = self.eframe(bt, slot + eframe_check, verify=True)
            if ef is not None:
                bt.frames.append(ef)
                result = "eframe"
        bt.call_target = s.name
        if (s.name in DIRECT_CALL_TARGETS and not bt.no_check_caller
                and not ("schedule" in s.name and self._active)):
            bt.check_caller = True
        else:
            if bt.check_caller:
                bt.no_check_caller = True
            bt.check_caller = False
        return result

    # -- walking ------------------------------------------------------------------------------
    def walk(self, bt: _Bt, rsp: int, top: int) -> tuple[int, bool, int]:
        """Scan [rsp, top) of bt's stack; (rsp after, done, last eframe address)."""
        done = False
        last_eframe = 0
        while not done and rsp < top and bt.level < MAX_LEVELS:
            w = bt.word(rsp)
            if not self.is_text(w):
                rsp += 8
                continue
            if bt.check_caller:
                s = self.sym.lookup(w)
                if s is None or (w == s.address and not bt.framesize_disable):
                    rsp += 8
                    continue
                target = self.called_by(w)
                if target is None or target != bt.call_target:
                    rsp += 8
                    continue
            r = self.print_entry(bt, rsp, w)
            if r == "eframe":
                last_eframe = rsp + 8
                rsp += PT_REGS_SIZE
                if not bt.eframe_ip:
                    rsp += 8
                    continue
                r = "displayed"
            if r == "displayed":
                fs = self.framesize(bt, bt.eframe_ip or w)
                if fs >= 0:
                    rsp += fs
            elif r == "complete":
                done = True
            rsp += 8
        return rsp, done, last_eframe

    # -- starting point -----------------------------------------------------------------------
    def dumpfile_start(self, info: TaskInfo, cpu: int, stacks: list[StackRange],
                       panic_task: bool) -> tuple[int, int, str] | None:
        """x86_64_get_dumpfile_stack_frame: (rip, rsp, how) from the stack search, or None."""
        panic: tuple[int, int] | None = None
        crash_kexec: tuple[int, int] | None = None
        sysrq: tuple[int, int] | None = None
        call_function: tuple[int, int] | None = None
        for stage, (s, blk) in enumerate(readable_stacks(self.prog.read, stacks)):
            for addr, w in kernel_words(blk, s.lo):
                name = self.name(w)
                if name is None:
                    continue
                at = (w, addr)
                if name in KEXEC_NAMES:
                    if name == "crash_kexec":
                        if self.called_by(w) == "machine_kexec":
                            return w, addr, "crash_kexec"
                        if crash_kexec is None:
                            crash_kexec = at
                            continue
                    return w, addr, name
                if name == "panic":
                    panic = at
                    continue
                if name == "sysrq_handle_crash":
                    sysrq = at
                if not panic_task and stage > 0 and name in ("smp_call_function_interrupt", "stop_this_cpu"):
                    call_function = at
                if not panic_task and name == "crash_nmi_callback":
                    return w, addr, name
            if stage == 0:
                if panic is not None:
                    return panic[0], panic[1], "panic"
                if crash_kexec is not None:
                    return crash_kexec[0], crash_kexec[1], "crash_kexec"
        if sysrq is not None:
            return sysrq[0], sysrq[1], "sysrq_handle_crash"
        ctx = self.s.contexts.get(cpu)
        if not panic_task and ctx is not None and ctx.regs is not None and ctx.regs.get("rip") and ctx.regs.get("rsp"):
            return ctx.regs["rip"], ctx.regs["rsp"], "note"
        if call_function is not None:
            return call_function[0], call_function[1], "call_function"
        if panic_task and ctx is not None and ctx.regs is not None and ctx.regs.get("rsp"):
            return ctx.regs["rip"], ctx.regs["rsp"], "note"
        return None

    # -- the trace ----------------------------------------------------------------------------
    def trace(self, task: int) -> Trace:
        s = self.s
        ki = self.ki
        info = task_info(s.prog, task)
        cpu = s.cpu_of_active(task)
        self._active = cpu is not None
        tr = Trace(task=task, pid=info.pid, comm=info.comm, cpu=cpu if cpu is not None else info.cpu,
                   unwinder="crash")
        tstack = s.arch.task_stack(info)
        if tstack is None:
            tr.end_reason = "task has no stack"
            return tr
        try:
            tbuf = s.prog.read(tstack.lo, tstack.hi - tstack.lo)
        except (MemoryReadError, VmcorekitError) as e:
            tr.end_reason = f"task stack unreadable: {e}"
            return tr
        cpu_stacks = s.arch.cpu_stacks(cpu) if cpu is not None else []
        bt = _Bt(tstack, tbuf)
        rip: int
        rsp: int
        kernel_space = user_space = False
        if cpu is not None:
            order = [tstack] + [x for x in cpu_stacks if x.kind == "IRQ"] + [x for x in cpu_stacks if x.kind != "IRQ"]
            got = self.dumpfile_start(info, cpu, order, task == s.crashed.task)
            if got is None:
                rip, rsp = self._saved(info)
                tr.start = "saved-context"
            else:
                rip, rsp, how = got
                tr.start = how
                if how == "note":
                    on = any(rsp in x for x in [tstack] + cpu_stacks)
                    kernel_space = self.is_text(rip) and on
                    user_space = not self.is_text(rip) and rsp < 0x800000000000
        else:
            rip, rsp = self._saved(info)
            tr.start = "saved-context"

        ctx = s.contexts.get(cpu) if cpu is not None else None
        show_note_regs = ctx is not None and ctx.regs is not None and (
            "cr3" in ctx.regs or getattr(ki.prog.phys.info, "format", "") not in ("elf", "ELF"))
        if user_space and ctx is not None and ctx.regs is not None:
            tr.user_regs = ExceptionFrame(dict(ctx.regs), None, "note")
            tr.complete = True
            return tr
        if kernel_space and ctx is not None and ctx.regs is not None and show_note_regs:
            f = Frame(index=0, pc=rip, sp=rsp, method="regs", stack="task", reliable=False,
                      exception=ExceptionFrame(dict(ctx.regs), None, "note"))
            sy = self.sym.lookup(rip)
            if sy is not None:
                f.function, f.offset, f.size, f.module = sy.name, rip - sy.address, sy.size, sy.module
            bt.frames.append(f)

        # Exception and IRQ stacks first, then over to the task stack.
        done = False
        irq_eframe = 0
        visited: set[str] = set()
        for _ in range(len(cpu_stacks) + 1):
            cur = next((x for x in cpu_stacks if rsp in x), None)
            if cur is None or cur.kind in visited:
                break
            visited.add(cur.kind)
            try:
                buf = s.prog.read(cur.lo, cur.hi - cur.lo)
            except (MemoryReadError, VmcorekitError):
                break
            bt.stack, bt.buf = cur, buf
            bt.framesize_disable = False
            if cur.kind == "IRQ":
                top = cur.hi - 64 if cur.hi - cur.lo > 64 else cur.hi
                rsp, done, _ = self.walk(bt, rsp, top)
                link = bt.word(top - 8)
                irq_eframe = rsp = link
                rip = bt.word(top - 16)
                n = self.name(rip)
                if n in ("do_softirq_own_stack", "call_softirq"):
                    irq_eframe = 0
                done = False
            else:
                top = cur.hi - PT_REGS_SIZE
                rsp, done, _ = self.walk(bt, rsp, top)
                ef = self.eframe(bt, top, verify=False)
                if ef is not None:
                    bt.frames.append(ef)
                hw = [bt.word(cur.hi - 40 + 8 * i) for i in range(5)]  # rip cs flags rsp ss
                rip, rsp = hw[0], hw[3]
                if hw[1] & 3:
                    done = True
                    if bt.frames and bt.frames[-1].exception is not None:
                        tr.user_regs = bt.frames.pop().exception
                    break
                bt.frames.append(self.frame(bt, rsp, rip, method="regs"))
                bt.frames[-1].slot = None
                fs = self.framesize(bt, rip)
                if fs >= 0:
                    rsp += fs
        if bt.stack is not tstack:
            bt.stack, bt.buf = tstack, tbuf
            if not done and rsp not in tstack:
                tr.frames = bt.frames
                tr.end_reason = f"cannot transition to the process stack (rsp {rsp:#x})"
                return tr

        if done:
            tr.frames = bt.frames
            tr.complete = True
            return tr

        # A blocked task: crash prints __schedule at the saved stack pointer, then finds the
        # return address of the call to __schedule above it.
        if tr.start == "saved-context":
            rname = self.name(rip)
            if rname in ("__schedule", "schedule", "thread_return"):
                if rname == "__schedule":
                    self.print_entry(bt, rsp, rip, start=True)
                    rsp, rip = self._schedule_adjust(bt, rsp, rip)
                    if self.name(rip) == "schedule":
                        self.print_entry(bt, rsp, rip, start=True)
                        rsp += 8
                else:
                    self.print_entry(bt, rsp, rip, start=True)
                    rsp += 8

        if irq_eframe:
            ef = self.eframe(bt, irq_eframe, verify=False)
            if ef is not None:
                if ef.exception is not None and ef.exception.user_mode:
                    tr.user_regs = ef.exception
                    tr.frames = bt.frames
                    tr.complete = True
                    return tr
                bt.frames.append(ef)
                rsp = irq_eframe + PT_REGS_SIZE
                if bt.eframe_ip:
                    fs = self.framesize(bt, bt.eframe_ip)
                    if fs >= 0:
                        rsp += fs
        bt.framesize_disable = False
        rsp, done, last_eframe = self.walk(bt, rsp, tstack.hi)
        if not info.is_kernel_thread:
            user_eframe = tstack.hi - PT_REGS_SIZE
            if last_eframe < user_eframe:
                ef = self.eframe(bt, user_eframe, verify=False)
                if ef is not None and ef.exception is not None:
                    if ef.exception.user_mode:
                        tr.user_regs = ef.exception
                    else:
                        bt.frames.append(ef)
        tr.frames = bt.frames
        for i, f in enumerate(tr.frames):
            f.index = i
        tr.complete = True
        tr.end_reason = "end of stack"
        return tr

    def _saved(self, info: TaskInfo) -> tuple[int, int]:
        """x86_64_get_stack_frame for a blocked task: thread.sp, and __schedule's return point
        (kernels since 4.9 have no thread.ip; crash uses the return address switch_to saved)."""
        off = self.ki.offsetof("struct inactive_task_frame", "ret_addr")
        ret = self.prog.read_u64(info.thread_sp + (off if off is not None else 48))
        return ret, info.thread_sp

    def _schedule_adjust(self, bt: _Bt, rsp: int, rip: int) -> tuple[int, int]:
        """__schedule_frame_adjust: the first return address above that called __schedule."""
        r = rsp
        while r < bt.stack.hi:
            w = bt.word(r)
            s = self.sym.lookup(w)
            if s is not None and w != s.address and self.is_text(w) and self.called_by(w) == "__schedule":
                return r, w
            r += 8
        return rsp, rip


def _int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def crash_trace(s: "Stacks", task: int) -> Trace:
    """crash 8.0.2's `bt` of `task`, as the dump's platform has it (platforms.py)."""
    return s.platform_stacks.crash_trace(s, task)


def x86_64_crash_trace(s: "Stacks", task: int) -> Trace:
    return CrashTracer(s).trace(task)
