"""ORC: entry layouts (6.1 / 6.3 / 6.4+), table lookup, and unwinding synthetic stacks."""
from __future__ import annotations

import numpy as np
import pytest

from orcgen import TEXT, SynthKernel, encode_bits, functions
from vmcorekit.kernel.stacks import orc as O
from vmcorekit.program.types.model import Member, Type, TypeKind

STACK = 0xFFFFC90000010000


def _orc_entry_type(fields: dict[str, tuple[int, int]]) -> Type:
    u = Type(TypeKind.INT, name="unsigned int", size=4)
    s16 = Type(TypeKind.INT, name="s16", size=2, is_signed=True)
    members = [Member("sp_offset", s16, 0), Member("bp_offset", s16, 16)]
    members += [Member(n, u, 32 + sh, w) for n, (sh, w) in fields.items()]
    return Type(TypeKind.STRUCT, tag="orc_entry", size=6, members=members)


@pytest.mark.parametrize("fields", [O.LAYOUT_6_1, O.LAYOUT_6_3, O.LAYOUT_6_4])
def test_layout_from_btf_matches_the_struct(fields):
    lay = O.layout_from_btf(_orc_entry_type(fields))
    assert lay is not None and lay.fields == fields and "BTF" in lay.source


def test_layout_from_btf_rejects_incomplete_struct():
    assert O.layout_from_btf(None) is None
    assert O.layout_from_btf(_orc_entry_type({"sp_reg": (0, 4)})) is None


@pytest.mark.parametrize("version,fields", [((6, 1, 0), O.LAYOUT_6_1), ((5, 15), O.LAYOUT_6_1),
                                            ((6, 3, 1), O.LAYOUT_6_3), ((6, 4, 0), O.LAYOUT_6_4),
                                            ((6, 12), O.LAYOUT_6_4)])
def test_layout_from_version(version, fields):
    lay = O.layout_from_version(version)
    assert lay.fields == fields and "guessed" in lay.source


@pytest.mark.parametrize("fields", [O.LAYOUT_6_1, O.LAYOUT_6_3, O.LAYOUT_6_4])
@pytest.mark.parametrize("kind", [O.CALL, O.REGS, O.REGS_PARTIAL, O.END, O.UNDEFINED])
def test_decode_roundtrip(fields, kind):
    lay = O.OrcLayout(dict(fields), "t")
    sp_reg = O.ORC_REG_UNDEFINED if kind in (O.UNDEFINED, O.END) else O.ORC_REG_SP
    bits = encode_bits(lay, sp_reg, O.ORC_REG_PREV_SP, kind)
    e = O.decode_entry(lay, 0x1000, 24, -16, bits)
    assert e.type == kind
    assert (e.sp_offset, e.bp_offset) == (24, -16)
    if kind not in (O.UNDEFINED, O.END):
        assert e.sp_reg == O.ORC_REG_SP and e.bp_reg == O.ORC_REG_PREV_SP


def test_same_bits_mean_different_types_in_old_and_new_layouts():
    # type field value 2: REGS_PARTIAL up to 6.3, CALL from 6.4 on.
    bits = O.ORC_REG_SP | (2 << 8)
    assert O.decode_entry(O.OrcLayout(dict(O.LAYOUT_6_1), "t"), 0, 8, 0, bits).type == O.REGS_PARTIAL
    assert O.decode_entry(O.OrcLayout(dict(O.LAYOUT_6_4), "t"), 0, 8, 0, bits).type == O.CALL


def test_read_table_resolves_relative_ips_and_sorts():
    lay = O.OrcLayout(dict(O.LAYOUT_6_1), "t")
    ip_table = 0xFFFFFFFF82000000
    targets = [0xFFFFFFFF81000100, 0xFFFFFFFF81000000, 0xFFFFFFFF81000200]
    rel = np.array([t - (ip_table + 4 * i) for i, t in enumerate(targets)], dtype="<i4").tobytes()
    ent = np.zeros(3, dtype=O.ENTRY_DTYPE)
    ent["sp_offset"] = [16, 8, 24]
    ent["bits"] = O.ORC_REG_SP
    mem = {ip_table: rel, 0xFFFFFFFF83000000: ent.tobytes()}
    t = O.read_table(lambda a, n: mem[a][:n], "vmlinux", ip_table, 0xFFFFFFFF83000000, 3, lay)
    assert [int(x) for x in t.ips] == sorted(targets)
    assert t.find(0xFFFFFFFF81000150).sp_offset == 16
    assert t.find(0xFFFFFFFF81000000).sp_offset == 8
    assert t.find(0xFFFFFFFF80FFFFFF) is None


def test_read_table_rejects_absurd_sizes():
    lay = O.OrcLayout(dict(O.LAYOUT_6_1), "t")
    from vmcorekit.errors import CorruptKernelDataError
    with pytest.raises(CorruptKernelDataError):
        O.read_table(lambda a, n: b"", "m", 0, 0, O.MAX_ORCS + 1, lay)


def _chain(layout=None):
    """leaf <- mid <- top, each a CALL frame; top's caller is the entry code (REGS, user)."""
    k = SynthKernel(layout)
    leaf = k.func("leaf", 0x40)
    mid = k.func("mid", 0x40)
    top = k.func("top", 0x40)
    entry = k.func("entry_SYSCALL_64", 0x40)
    r_mid = k.call(mid, 0x10, leaf)
    r_top = k.call(top, 0x8, mid)
    r_entry = k.call(entry, 0x20, top)
    k.orc(leaf, 8)
    k.orc(leaf + 1, 24)          # leaf pushed two registers
    k.orc(mid, 8)
    k.orc(mid + 4, 40)           # mid has 32 bytes of locals
    k.orc(top, 8)
    k.orc(top + 1, 16)
    k.orc(entry, 0, kind=O.REGS)  # pt_regs sits right at the stack pointer
    s = k.stack("task", STACK, 0x4000)
    sp = STACK + 0x3000
    # leaf's frame: 16 bytes, then return into mid
    k.put(sp + 16, r_mid)
    mid_sp = sp + 24
    k.put(mid_sp + 32, r_top)
    top_sp = mid_sp + 40
    k.put(top_sp + 8, r_entry)
    regs_at = top_sp + 16
    k.put_regs(regs_at, rip=0x401000, rsp=0x7FFF0000, cs=0x33, ss=0x2B, eflags=0x202)
    return k, s, (leaf, mid, top, entry), sp, (r_mid, r_top, r_entry), regs_at


@pytest.mark.parametrize("layout", [O.LAYOUT_6_1, O.LAYOUT_6_4])
def test_unwind_call_chain_to_user_regs(layout):
    k, s, (leaf, mid, top, entry), sp, rets, regs_at = _chain(layout)
    tr = k.unwind(leaf + 0x20, sp)
    assert functions(tr) == ["leaf", "mid", "top", "entry_SYSCALL_64"]
    assert [f.pc for f in tr.frames[1:]] == list(rets)
    assert [f.slot for f in tr.frames[1:]] == [sp + 16, sp + 24 + 32, sp + 24 + 40 + 8]
    assert all(f.method == "orc" and f.reliable for f in tr.frames[1:])
    assert tr.complete and tr.end_reason == "user mode"
    assert tr.user_regs is not None and tr.user_regs.address == regs_at
    assert tr.user_regs.regs["rip"] == 0x401000


def test_return_address_uses_ip_minus_one():
    """A call as the last instruction of a function (noreturn callee): the return address is
    the next function's first byte, whose entry must not be used."""
    k = SynthKernel()
    callee = k.func("panic", 0x20)
    f = k.func("sysrq_handle_crash", 0x10)
    nxt = k.func("next_function", 0x20)
    entry = k.func("entry", 0x20)
    ret = k.call(f, 0x10 - 5, callee)
    assert ret == nxt
    r2 = k.call(entry, 0, f)
    k.orc(callee, 8)
    k.orc(f, 8)
    k.orc(nxt, 64)        # wrong for f's frame
    k.orc(entry, 8, kind=O.END)
    k.stack("task", STACK, 0x4000)
    sp = STACK + 0x3F00
    k.put(sp, ret)
    k.put(sp + 8, r2)
    tr = k.unwind(callee + 4, sp)
    assert functions(tr) == ["panic", "sysrq_handle_crash", "entry"]
    assert tr.complete and tr.end_reason.startswith("end of stack")


def test_kernel_mode_pt_regs_frame_becomes_an_exception_frame():
    k = SynthKernel()
    handler = k.func("exc_page_fault", 0x40)
    stub = k.func("asm_exc_page_fault", 0x40)
    victim = k.func("copy_user", 0x40)
    caller = k.func("caller", 0x40)
    r_stub = k.call(stub, 0x10, handler)
    r_caller = k.call(caller, 0x8, victim)
    k.orc(handler, 8)
    k.orc(stub, 0, kind=O.REGS)
    k.orc(victim, 8)
    k.orc(victim + 0x10, 16)
    k.orc(caller, 8, kind=O.END)
    k.stack("task", STACK, 0x4000)
    sp = STACK + 0x2000
    k.put(sp, r_stub)
    regs_at = sp + 8
    victim_sp = STACK + 0x2800
    k.put_regs(regs_at, rip=victim + 0x18, rsp=victim_sp, rbp=0x1234, cs=0x10, ss=0x18, eflags=0x46)
    k.put(victim_sp + 8, r_caller)
    tr = k.unwind(handler + 4, sp)
    assert functions(tr) == ["exc_page_fault", "asm_exc_page_fault", "copy_user", "caller"]
    exc = tr.frames[2].exception
    assert exc is not None and exc.address == regs_at and not exc.user_mode
    assert tr.frames[2].method == "regs" and tr.frames[2].pc == victim + 0x18


def test_regs_partial_reads_the_iret_frame():
    k = SynthKernel()
    f = k.func("idle_loop", 0x40)
    stub = k.func("asm_sysvec_apic_timer_interrupt", 0x40)
    caller = k.func("do_idle", 0x40)
    r_caller = k.call(caller, 0x8, f)
    k.orc(stub, 0, kind=O.REGS_PARTIAL)
    k.orc(f, 8)
    k.orc(caller, 8, kind=O.END)
    k.stack("task", STACK, 0x4000)
    sp = STACK + 0x3000
    iret_at = sp  # the iret frame (ip, cs, flags, sp, ss) at the CFA
    f_sp = STACK + 0x3800
    for i, v in enumerate((f + 0x20, 0x10, 0x246, f_sp, 0x18)):
        k.put(iret_at + 8 * i, v)
    k.put(f_sp, r_caller)
    tr = k.unwind(stub + 4, sp)
    assert functions(tr) == ["asm_sysvec_apic_timer_interrupt", "idle_loop", "do_idle"]
    assert tr.frames[1].exception.source == "iret"


def test_bp_based_frame_and_saved_bp():
    """A function with a frame pointer (CFA = rbp + 16, saved rbp at CFA - 16), as gcc emits for
    alloca (do_syscall_64's randomized stack offset)."""
    k = SynthKernel()
    leaf = k.func("leaf", 0x40)
    f = k.func("do_syscall_64", 0x80)
    top = k.func("entry", 0x40)
    r_f = k.call(f, 0x30, leaf)
    r_top = k.call(top, 0x10, f)
    k.orc(leaf, 8)
    k.orc(leaf + 1, 16, bp_reg=O.ORC_REG_PREV_SP, bp=-16)   # push %rbp
    k.orc(f, 8)
    k.orc(f + 4, 16, sp_reg=O.ORC_REG_BP, bp_reg=O.ORC_REG_PREV_SP, bp=-16)
    k.orc(top, 8, kind=O.END)
    k.stack("task", STACK, 0x4000)
    sp = STACK + 0x3000
    f_bp = STACK + 0x3F00            # far above: a big alloca in between
    k.put(sp, f_bp)                   # leaf saved do_syscall_64's rbp
    k.put(sp + 8, r_f)
    k.put(f_bp, 0xDEAD)               # do_syscall_64's caller's rbp
    k.put(f_bp + 8, r_top)
    tr = k.unwind(leaf + 8, sp)
    assert functions(tr) == ["leaf", "do_syscall_64", "entry"]
    assert tr.frames[2].slot == f_bp + 8


def test_irq_stack_to_task_stack_through_sp_indirect():
    k = SynthKernel()
    handler = k.func("handler", 0x40)
    oncall = k.func("call_on_irqstack", 0x40)
    sysvec = k.func("sysvec_x", 0x40)
    r_on = k.call(oncall, 0x10, handler)
    r_sys = k.call(sysvec, 0x10, oncall)
    k.orc(handler, 8)
    k.orc(oncall + 0x10, 8, sp_reg=O.ORC_REG_SP_INDIRECT)   # the old rsp is at the irq stack top
    k.orc(sysvec, 8, kind=O.END)
    irq = k.stack("IRQ", 0xFFFFC90000100000, 0x4000, cpu=0)
    task = k.stack("task", STACK, 0x4000)
    sp = irq.hi - 0x100
    k.put(sp, r_on)
    task_sp = STACK + 0x3000
    k.put(sp + 8, task_sp)        # saved task-stack pointer
    k.put(task_sp, r_sys)
    tr = k.unwind(handler + 2, sp)
    assert functions(tr) == ["handler", "call_on_irqstack", "sysvec_x"]
    assert [x.stack for x in tr.frames] == ["IRQ", "IRQ", "task"]


def test_undefined_entry_falls_back_to_a_validated_scan():
    """Like __crash_kexec (objtool left it without ORC): the caller is found by scanning for a
    return address whose call targets the current function, skipping stale text addresses."""
    k = SynthKernel()
    crashk = k.func("__crash_kexec", 0x80)
    other = k.func("other", 0x40)
    panic = k.func("panic", 0x80)
    entry = k.func("entry", 0x40)
    stale = k.call(other, 0x10, entry)          # a return address, but into other's call to entry
    r_panic = k.call(panic, 0x20, crashk)
    r_entry = k.call(entry, 0x8, panic)
    k.orc(crashk, 8, kind=O.UNDEFINED, sp_reg=O.ORC_REG_UNDEFINED)
    k.orc(panic, 8)
    k.orc(panic + 1, 32)
    k.orc(entry, 8, kind=O.END)
    k.stack("task", STACK, 0x4000)
    sp = STACK + 0x3000
    k.put(sp + 8, stale)
    k.put(sp + 24, r_panic)
    k.put(sp + 24 + 8 + 24, r_entry)
    tr = k.unwind(crashk + 0x40, sp)
    assert functions(tr) == ["__crash_kexec", "panic", "entry"]
    assert tr.frames[1].method == "scan" and not tr.frames[1].reliable
    assert tr.frames[2].method == "orc"
    assert any("next frame found by scan" in n for n in tr.notes)


def test_orc_only_mode_stops_with_the_reason():
    k = SynthKernel()
    f = k.func("nofc", 0x40)
    k.orc(f, 8, kind=O.UNDEFINED, sp_reg=O.ORC_REG_UNDEFINED)
    k.stack("task", STACK, 0x4000)
    tr = k.unwind(f + 4, STACK + 0x100, use_scan=False)
    assert len(tr.frames) == 1 and "undefined" in tr.end_reason and not tr.complete


def test_module_tables_are_chosen_by_owning_module():
    """Module ORC tables also cover their freed init text, so extents overlap: the table of the
    module that holds the address (from the symbol table) must be used."""
    lay = O.OrcLayout(dict(O.LAYOUT_6_1), "t")

    def table(name, ips, sp):
        ent = np.zeros(len(ips), dtype=O.ENTRY_DTYPE)
        ent["sp_offset"] = sp
        ent["bits"] = O.ORC_REG_SP
        return O.OrcTable(name, np.array(ips, dtype=np.uint64), ent, lay)

    vm = table("vmlinux", [0xFFFFFFFF81000000, 0xFFFFFFFF82000000], 8)
    a = table("brd", [0xFFFFFFFFC0000000, 0xFFFFFFFFC0020000], 16)   # core + freed init text
    b = table("dummy", [0xFFFFFFFFC0010000, 0xFFFFFFFFC0011000], 24)  # inside brd's extent
    idx = O.OrcIndex([vm, a, b], lay)
    assert idx.find(0xFFFFFFFFC0010010, "dummy").sp_offset == 24
    assert idx.find(0xFFFFFFFFC0010010, "brd").sp_offset == 16
    assert idx.find(0xFFFFFFFFC0010010) is None          # ambiguous without the owner
    assert idx.find(0xFFFFFFFFC0000010).sp_offset == 16  # only brd's extent covers it
    assert idx.find(0xFFFFFFFF81000010).sp_offset == 8
    assert idx.find(0xFFFFFFFFC0010010, "nosuchmodule") is None
