"""The x86_64 unwinding engine: ORC first, the frame-pointer chain where a kernel has no ORC, a
validated stack scan where neither can go on. Every step is bounded: the stack pointer must stay
on a known stack and grow on it, each stack is entered once, the number of frames is capped,
and a bad read ends the trace with a reason instead of raising.

Memory is read through `StackMemory`, which reads each stack once, whole, so a trace costs a few
dump reads however deep it is.
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import MemoryReadError, VmcorekitError
from . import orc as O
from .kinfo import StackRange
from .model import ExceptionFrame, Frame, Trace
from .x86 import (IRET_FRAME_OFFSET, PT_REGS_SIZE, call_before, kernel_words, parse_iret,
                  parse_pt_regs)

Reader = Callable[[int, int], bytes]
MAX_FRAMES = 256
# The scan gives up after this many words without a plausible return address.
SCAN_WINDOW = 2048
MASK = 0xFFFFFFFFFFFFFFFF


class StackMemory:
    """Reads of kernel stacks, each stack fetched once. Reads outside the known stacks fail:
    an unwinder that follows a wild pointer must stop, not wander through memory."""

    def __init__(self, read: Reader, stacks: Sequence[StackRange]) -> None:
        self._read = read
        self.stacks = list(stacks)
        self._cache: dict[tuple[int, int], bytes | None] = {}

    def stack_of(self, addr: int) -> StackRange | None:
        for s in self.stacks:
            if s.lo <= addr < s.hi:
                return s
        return None

    def _block(self, s: StackRange) -> bytes | None:
        key = (s.lo, s.hi)
        if key not in self._cache:
            try:
                self._cache[key] = self._read(s.lo, s.hi - s.lo)
            except (MemoryReadError, VmcorekitError):
                self._cache[key] = None
        return self._cache[key]

    def read(self, addr: int, n: int) -> bytes:
        s = self.stack_of(addr)
        if s is None or addr + n > s.hi:
            raise MemoryReadError(addr, "not on a known stack of this task", physical=False)
        blk = self._block(s)
        if blk is None:
            return self._read(addr, n)  # a page of the stack is missing: try just these bytes
        return blk[addr - s.lo:addr - s.lo + n]

    def u64(self, addr: int) -> int:
        return struct.unpack("<Q", self.read(addr, 8))[0]

    def words(self, s: StackRange) -> tuple[int, bytes] | None:
        blk = self._block(s)
        return None if blk is None else (s.lo, blk)


@dataclass
class State:
    """Where the unwind stands: the frame being executed and its registers."""

    ip: int
    sp: int
    bp: int | None
    signal: bool  # ip is exact (interrupted / register snapshot), not a return address
    method: str
    slot: int | None = None
    regs: dict[str, int] | None = None  # the pt_regs this frame came from, if any
    full_regs: bool = False
    exception: ExceptionFrame | None = None
    reliable: bool = True


class StepEnd(Exception):
    """The unwind is over: `complete` when it ended where stacks end (user regs, END entry)."""

    def __init__(self, reason: str, complete: bool, user_regs: ExceptionFrame | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.complete = complete
        self.user_regs = user_regs


class StepFail(Exception):
    """This unwinder cannot take the next step (a fallback may)."""


class Unwinder:
    def __init__(self, mem: StackMemory, symbols: Any, orc: O.OrcIndex | None, *,
                 max_frames: int = MAX_FRAMES, use_orc: bool = True, use_fp: bool | None = None,
                 use_scan: bool = True) -> None:
        self.mem = mem
        self.symbols = symbols
        self.orc = orc if use_orc else None
        # Frame pointers are the primary method only when the kernel has no ORC.
        self.use_fp = (self.orc is None) if use_fp is None else use_fp
        self.use_scan = use_scan
        self.max_frames = max_frames

    # -- helpers ------------------------------------------------------------------------------
    def in_text(self, addr: int) -> bool:
        return bool(self.symbols.in_text(addr))

    def frame_of(self, index: int, st: State) -> Frame:
        s = self.mem.stack_of(st.sp) or (self.mem.stack_of(st.slot) if st.slot is not None else None)
        f = Frame(index=index, pc=st.ip, sp=st.sp, method=st.method, slot=st.slot,
                  stack=s.kind if s else None, reliable=st.reliable, exception=st.exception)
        # A return address may be the first byte after its function (a call to a noreturn
        # function ends it): name the function holding ip - 1, as the kernel's %pB does.
        sym = self.symbols.lookup(st.ip if st.signal else st.ip - 1)
        if sym is not None:
            f.function, f.offset, f.size, f.module = sym.name, st.ip - sym.address, sym.size, sym.module
        return f

    def _check_sp(self, old: State, new_sp: int, *, switching: bool) -> None:
        """The new stack pointer must be on a known stack; on the same stack it must grow
        (x86 stacks grow down, so callers sit higher)."""
        new_s = self.mem.stack_of(new_sp)
        if new_s is None:
            raise StepFail(f"stack pointer {new_sp:#x} is not on any stack of this task")
        old_s = self.mem.stack_of(old.sp)
        if old_s is not None and new_s == old_s:
            if new_sp <= old.sp and not (switching and new_sp == old.sp):
                raise StepFail(f"stack pointer does not grow ({old.sp:#x} -> {new_sp:#x}): loop")

    # -- ORC ----------------------------------------------------------------------------------
    def _reg(self, st: State, name: str) -> int:
        if st.regs is None or name not in st.regs:
            raise StepFail(f"ORC needs %{name}, which is not known in this frame")
        return st.regs[name]

    def orc_step(self, st: State) -> State:
        assert self.orc is not None
        at = st.ip if st.signal else st.ip - 1
        sym = self.symbols.lookup(at)
        entry = self.orc.find(at, sym.module if sym is not None else None)
        if entry is None:
            raise StepFail(f"no ORC entry for {st.ip:#x}")
        if (entry.type in (O.END, O.UNDEFINED) and st.signal and sym is not None
                and st.ip == sym.address):
            # Registers caught on a function's first instruction (a retpoline thunk, whose
            # objtool hint says "end of stack"): nothing is pushed yet, the return address
            # is at %rsp.
            entry = O.OrcEntry(st.ip, 8, 0, O.ORC_REG_SP, O.ORC_REG_UNDEFINED, O.CALL, False,
                               entry.table)
        if entry.type == O.END:
            raise StepEnd("end of stack (ORC)", True)
        if entry.type == O.UNDEFINED:
            raise StepFail(f"ORC entry for {st.ip:#x} is undefined")
        # Find the previous frame's stack pointer (the CFA).
        indirect = False
        r = entry.sp_reg
        if r == O.ORC_REG_SP:
            cfa = st.sp + entry.sp_offset
        elif r == O.ORC_REG_BP:
            if st.bp is None:
                raise StepFail("ORC needs %rbp, which is not known in this frame")
            cfa = st.bp + entry.sp_offset
        elif r == O.ORC_REG_SP_INDIRECT:
            cfa, indirect = st.sp, True
        elif r == O.ORC_REG_BP_INDIRECT:
            if st.bp is None:
                raise StepFail("ORC needs %rbp, which is not known in this frame")
            cfa, indirect = st.bp + entry.sp_offset, True
        elif r in (O.ORC_REG_R10, O.ORC_REG_R13, O.ORC_REG_DI, O.ORC_REG_DX):
            if not st.full_regs:
                raise StepFail(f"ORC needs %{O.REG_NAMES[r]} outside a full pt_regs frame")
            cfa = self._reg(st, {6: "r10", 7: "r13", 3: "rdi", 2: "rdx"}[r])
        else:
            raise StepFail(f"ORC sp_reg {r} unknown")
        cfa &= MASK
        if indirect:
            try:
                cfa = self.mem.u64(cfa)
            except MemoryReadError as e:
                raise StepFail(f"ORC indirect stack pointer unreadable: {e}") from None
            if r == O.ORC_REG_SP_INDIRECT:
                cfa = (cfa + entry.sp_offset) & MASK

        new = State(ip=0, sp=cfa, bp=st.bp, signal=False, method="orc")
        if entry.type == O.CALL:
            try:
                new.ip = self.mem.u64(cfa - 8)
            except MemoryReadError as e:
                raise StepFail(f"return address unreadable: {e}") from None
            new.slot = cfa - 8
            self._check_sp(st, cfa, switching=False)
        elif entry.type == O.REGS:
            return self._pt_regs_frame(st, cfa)  # the bp of an interrupted frame is the saved one
        elif entry.type == O.REGS_PARTIAL:
            base = cfa - IRET_FRAME_OFFSET
            try:
                iret = parse_iret(self.mem.read(cfa, 40))
            except MemoryReadError as e:
                raise StepFail(f"iret frame at {cfa:#x} unreadable: {e}") from None
            exc = ExceptionFrame(dict(iret), base, "iret")
            if exc.user_mode:
                raise StepEnd("user mode", True, exc)
            new = State(ip=iret["rip"], sp=iret["rsp"], bp=st.bp, signal=True, method="regs",
                        regs=dict(iret), full_regs=False, exception=exc)
            self._check_sp(st, new.sp, switching=True)
        else:
            raise StepFail(f"ORC type {entry.type} unknown")

        # Find the previous frame's %rbp.
        if entry.bp_reg == O.ORC_REG_PREV_SP:
            try:
                new.bp = self.mem.u64((cfa + entry.bp_offset) & MASK)
            except MemoryReadError as e:
                raise StepFail(f"saved %rbp unreadable: {e}") from None
        elif entry.bp_reg == O.ORC_REG_BP:
            if st.bp is None:
                new.bp = None
            else:
                try:
                    new.bp = self.mem.u64((st.bp + entry.bp_offset) & MASK)
                except MemoryReadError:
                    new.bp = None
        elif entry.bp_reg == O.ORC_REG_UNDEFINED:
            if st.regs is not None and st.full_regs and entry.type != O.CALL:
                new.bp = st.regs.get("rbp", new.bp)
        return new

    def _pt_regs_frame(self, st: State, regs_at: int) -> State:
        """The interrupted frame whose full pt_regs the entry code saved at `regs_at`; StepEnd
        when it interrupted user mode."""
        try:
            regs = parse_pt_regs(self.mem.read(regs_at, PT_REGS_SIZE))
        except MemoryReadError as e:
            raise StepFail(f"pt_regs at {regs_at:#x} unreadable: {e}") from None
        exc = ExceptionFrame(regs, regs_at, "pt_regs")
        if exc.user_mode:
            raise StepEnd("user mode", True, exc)
        new = State(ip=regs["rip"], sp=regs["rsp"], bp=regs["rbp"], signal=True, method="regs",
                    regs=regs, full_regs=True, exception=exc)
        self._check_sp(st, new.sp, switching=True)
        return new

    # -- frame pointers -----------------------------------------------------------------------
    def fp_step(self, st: State) -> State:
        """CONFIG_FRAME_POINTER: [rbp] = caller's rbp, [rbp+8] = return address. The entry code
        encodes a pt_regs pointer as rbp|1 (arch/x86/kernel/unwind_frame.c)."""
        bp = st.bp
        if bp is None or bp == 0:
            raise StepFail("no frame pointer")
        if bp & 1:
            return self._pt_regs_frame(st, bp & ~1)
        if bp < st.sp:
            raise StepFail(f"frame pointer {bp:#x} below the stack pointer {st.sp:#x}")
        try:
            next_bp = self.mem.u64(bp)
            ret = self.mem.u64(bp + 8)
        except MemoryReadError as e:
            raise StepFail(f"frame at {bp:#x} unreadable: {e}") from None
        new = State(ip=ret, sp=bp + 16, bp=next_bp, signal=False, method="fp", slot=bp + 8)
        self._check_sp(st, new.sp, switching=False)
        if ret == 0:
            raise StepEnd("end of stack (frame pointer)", True)
        return new

    # -- scanning -----------------------------------------------------------------------------
    def looks_like_return(self, addr: int, callee: int | None) -> tuple[bool, bool]:
        """(is a return address, and the call's direct target is `callee`)."""
        if not self.in_text(addr):
            return False, False
        try:
            code = self.mem._read(addr - 8, 8)  # text, not stack: read through the dump
        except (MemoryReadError, VmcorekitError):
            return False, False
        c = call_before(code, addr)
        if c is None:
            return False, False
        kind, target = c
        return True, bool(kind == "direct" and callee is not None and target == callee)

    def scan_step(self, st: State) -> State:
        """The next frame by scanning up the stack for a return address: first one whose call
        instruction targets the current function, else any word preceded by a call. Frames
        found so are marked unreliable."""
        s = self.mem.stack_of(st.sp)
        if s is None:
            raise StepFail(f"stack pointer {st.sp:#x} is not on any stack of this task")
        got = self.mem.words(s)
        if got is None:
            raise StepFail(f"stack {s.kind} at {s.lo:#x} unreadable")
        lo, blk = got
        sym = self.symbols.lookup(st.ip)
        callee = sym.address if sym is not None else None
        start = (st.sp - lo + 7) & ~7
        loose: tuple[int, int] | None = None
        for addr, w in kernel_words(blk, lo, start, start + 8 * SCAN_WINDOW):
            ok, exact = self.looks_like_return(w, callee)
            if exact:
                return State(ip=w, sp=addr + 8, bp=st.bp, signal=False, method="scan",
                             slot=addr, reliable=False)
            if ok and loose is None:
                loose = (addr, w)
        if loose is not None:
            addr, w = loose
            return State(ip=w, sp=addr + 8, bp=st.bp, signal=False, method="scan",
                         slot=addr, reliable=False)
        # Nothing left but the registers the entry code saved at the top of a task stack?
        if s.kind == "task" and st.sp <= s.hi - PT_REGS_SIZE:
            regs = parse_pt_regs(blk[len(blk) - PT_REGS_SIZE:])
            if regs["cs"] & 3 == 3 and regs["ss"] & 3 == 3 and regs["rip"] < 0x800000000000:
                raise StepEnd("user mode", True, ExceptionFrame(regs, s.hi - PT_REGS_SIZE, "pt_regs"))
        raise StepFail("no return address found by scanning the stack")

    # -- driver -------------------------------------------------------------------------------
    def run(self, start: State, trace: Trace | None = None) -> Trace:
        trace = trace if trace is not None else Trace()
        trace.unwinder = "orc" if self.orc is not None else ("fp" if self.use_fp else "scan")
        st = start
        visited = {self.mem.stack_of(st.sp)}
        for index in range(self.max_frames):
            trace.frames.append(self.frame_of(index, st))
            if not self.in_text(st.ip):
                trace.end_reason = f"unknown return address {st.ip:#x}"
                trace.frames[-1].reliable = False
                return trace
            nxt: State | None = None
            problems: list[str] = []
            steps: list[Callable[[State], State]] = []
            if self.orc is not None:
                steps.append(self.orc_step)
            if self.use_fp:
                steps.append(self.fp_step)
            if self.use_scan:
                steps.append(self.scan_step)
            for step in steps:
                try:
                    nxt = step(st)
                    break
                except StepEnd as e:
                    trace.end_reason = e.reason
                    trace.complete = e.complete
                    trace.user_regs = e.user_regs
                    return trace
                except StepFail as e:
                    problems.append(str(e))
                except (MemoryReadError, VmcorekitError) as e:
                    problems.append(str(e))
            if nxt is None:
                trace.end_reason = "; ".join(problems) or "no unwinder applies"
                return trace
            if problems:
                trace.notes.append(f"frame #{index} {self.symbols.format(st.ip)}: "
                                   f"{problems[0]}; next frame found by {nxt.method}")
            new_stack = self.mem.stack_of(nxt.sp)
            if new_stack != self.mem.stack_of(st.sp):
                if new_stack in visited:
                    trace.end_reason = (f"stack recursion: back on the {new_stack.kind if new_stack else '?'} "
                                        f"stack at {nxt.sp:#x}")
                    return trace
                visited.add(new_stack)
            st = nxt
        trace.end_reason = f"stopped after {self.max_frames} frames"
        return trace
