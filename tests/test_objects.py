"""Typed objects and list walks over synthetic memory and BTF (no dump needed)."""
from __future__ import annotations

import struct
import warnings

import pytest

from btfgen import BtfBuilder
from fakes import PagedBytes
from vmcorekit.arch.platform import X86_64
from test_btf import kernelish
from vmcorekit.errors import CorruptKernelDataError, MemoryReadError
from vmcorekit.kernel.lists import (container_of, hlist_for_each_entry, list_count, list_empty,
                                    list_for_each, list_for_each_entry, llist_for_each_entry,
                                    rbtree_inorder_for_each_entry)
from vmcorekit.kernel.percpu import per_cpu
from vmcorekit.program.objects import (MemberNotFoundError, Object, ObjectError,
                                       ObjectNotFoundError, cast, format_enum, global_object,
                                       reinterpret)
from vmcorekit.program.types import Btf, registry_from_btf
from vmcorekit.program.core import Program


class _Space:
    pointer_size = 8


class _Vmcoreinfo:
    def __init__(self) -> None:
        self.symbols: dict[str, int] = {}
        self.lengths: dict[str, int] = {}


class _Sym:
    def __init__(self, name: str, address: int) -> None:
        self.name, self.address = name, address


class _Symbols:
    def __init__(self, table: dict[str, int]) -> None:
        self.table = table

    def address_of(self, name: str) -> int:
        from vmcorekit.errors import SymbolError
        if name not in self.table:
            raise SymbolError(name)
        return self.table[name]

    def lookup(self, addr: int) -> _Sym | None:
        best = None
        for n, a in self.table.items():
            if a <= addr < a + 64 and (best is None or a > best.address):
                best = _Sym(n, a)
        return best


class FakeProgram(PagedBytes):
    """What objects need of a Program: types, memory reads, symbols, VMCOREINFO."""

    arch = "x86_64"
    platform = X86_64
    space = _Space()

    def __init__(self, types, symbols: dict[str, int] | None = None) -> None:
        self.types = types
        self.pages = {}
        self.symbols = _Symbols(symbols or {})
        self.vmcoreinfo = _Vmcoreinfo()
        self.cpus: list = []

    def read(self, addr: int, size: int, physical: bool = False) -> bytes:
        return self.read_pages(addr, size)

    def read_u64(self, addr: int) -> int:
        return struct.unpack("<Q", self.read(addr, 8))[0]

    def read_u32(self, addr: int) -> int:
        return struct.unpack("<I", self.read(addr, 4))[0]

    read_pointer = read_u64

    memo = Program.memo  # the real per-Program memo: it only needs an instance __dict__

    def try_symbol_address(self, name: str) -> int | None:
        if name in self.vmcoreinfo.symbols:
            return self.vmcoreinfo.symbols[name]
        return self.symbols.table.get(name)

    def read_cstring(self, addr: int, max_len: int = 4096) -> bytes:
        out = bytearray()
        while len(out) < max_len:
            b = self.read(addr + len(out), 1)
            if b == b"\0":
                break
            out += b
        return bytes(out)

    def __getitem__(self, name: str) -> Object:
        return global_object(self, name)  # type: ignore[arg-type]

    def object(self, type, address: int) -> Object:
        return Object(self, type, address=address)  # type: ignore[arg-type]


BASE = 0xFFFF888000100000
TASK = 96  # sizeof(struct task_struct) in kernelish()


def make_task(prog: FakeProgram, addr: int, *, pid: int, comm: bytes, parent: int,
              nxt: int, prev: int, state: int = 0, flags: tuple[int, int, int] = (5, -3, 1),
              st: int = 128, name: int = 0) -> None:
    rec = bytearray(TASK)
    struct.pack_into("<Q", rec, 0, state)
    struct.pack_into("<Q", rec, 8, 0x1122334455667788)
    struct.pack_into("<i", rec, 16, pid)
    a, b, on = flags
    bits = (a & 7) | ((b & 31) << 3) | ((on & 1) << 8)
    struct.pack_into("<I", rec, 20, bits)
    struct.pack_into("<QQ", rec, 24, nxt, prev)
    struct.pack_into("<Q", rec, 40, parent)
    rec[48:64] = comm.ljust(16, b"\0")
    struct.pack_into("<Q", rec, 64, 0xFFFFFFFF81000010)
    struct.pack_into("<i", rec, 72, st)
    struct.pack_into("<Q", rec, 80, name)
    prog.write(addr, bytes(rec))


@pytest.fixture()
def prog() -> FakeProgram:
    reg = registry_from_btf(Btf(kernelish()[0]))
    p = FakeProgram(reg, {"init_task": BASE, "wake_up_process": 0xFFFFFFFF81000000,
                          "__per_cpu_offset": BASE + 0x10000, "runqueues": 0x1c40})
    t1, t2 = BASE + 0x1000, BASE + 0x2000
    # init_task -> t1 -> t2 -> init_task through .tasks (offset 24)
    make_task(p, BASE, pid=0, comm=b"swapper/0", parent=BASE, nxt=t1 + 24, prev=t2 + 24)
    make_task(p, t1, pid=1, comm=b"init", parent=BASE, nxt=t2 + 24, prev=BASE + 24,
              name=BASE + 0x3000)
    make_task(p, t2, pid=2, comm=b"kthreadd\xc3\xa9\t", parent=t1, nxt=BASE + 24, prev=t1 + 24,
              flags=(7, 15, 0), st=0)
    p.write(BASE + 0x3000, b"hello\0")
    # per-CPU: two CPUs
    p.write_u64(BASE + 0x10000, 0x100000)
    p.write_u64(BASE + 0x10008, 0x200000)
    p.write(0x1c40 + 0x100000, struct.pack("<Ii", 3, 0) + bytes(8))
    p.write(0x1c40 + 0x200000, struct.pack("<Ii", 4, 1) + bytes(8))
    return p


def test_members_pointers_and_values(prog):
    t = prog["init_task"]
    assert t.address_ == BASE and t.type_.type_name() == "struct task_struct"
    assert t.comm.string_() == b"swapper/0"
    assert t.pid.value_() == 0 and int(t.pid) == 0 and t.pid == 0
    assert t.pid.type_.type_name() == "pid_t"
    nxt = t.tasks.next
    assert nxt.type_.type_name() == "struct list_head *" and nxt.address_ == BASE + 24
    assert int(nxt) == BASE + 0x1000 + 24
    init = container_of(nxt, "struct task_struct", "tasks")
    assert init.type_.type_name() == "struct task_struct *"
    assert init.pid == 1 and init.comm.string_() == b"init"      # '->' through the pointer
    assert init[0].pid == 1 and init.deref().pid == 1
    assert init.real_parent.real_parent.comm.string_() == b"swapper/0"
    assert init.name.string_() == b"hello"
    assert t.u_flags.value_() == 0x55667788 and t.raw.value_() == 0x1122334455667788
    assert t.comm[1].value_() == ord("w")
    assert [int(c) for c in t.comm][:3] == [ord("s"), ord("w"), ord("a")]
    assert len(t.comm) == 16
    assert t.fn.value_() == 0xFFFFFFFF81000010
    d = t.value_()
    assert d["pid"] == 0 and d["u_flags"] == 0x55667788 and d["tasks"]["next"] == int(nxt)
    assert d["on"] is True and d["tail"] == []
    v = t.read_()
    assert v.address_ is None and v.pid == 0 and v.comm.string_() == b"swapper/0"
    assert v.tasks.next == nxt
    assert t.tasks.address_of_().value_() == BASE + 24


def test_bitfields_enums_bools(prog):
    t = prog["init_task"]
    assert t.flag_a.value_() == 5 and t.flag_a.bit_field_size_ == 3
    assert t.flag_b.value_() == -3           # signed 5-bit field
    assert t.on.value_() is True
    k = container_of(t.tasks.prev, "struct task_struct", "tasks")
    assert (k.flag_a.value_(), k.flag_b.value_(), k.on.value_()) == (7, 15, False)
    assert t.st.value_() == 128 and t.st.enum_name_() == "TASK_DEAD"
    assert k.st.enum_name_() == "TASK_RUNNING"
    e = prog.types.lookup("enum pf")
    assert format_enum(e, 5) == "(PF_A | PF_C)"
    assert format_enum(e, 9) == "(PF_A | unknown: 0x8)"
    assert format_enum(e, 0) == "0"
    assert format_enum(prog.types.lookup("enum task_state"), 3) == "(unknown: 0x3)"
    assert format_enum(prog.types.lookup("enum neg"), 3) == "3"   # not a flag enum
    with pytest.raises(ObjectError):
        t.pid.enum_name_()


def test_errors_are_typed(prog):
    t = prog["init_task"]
    with pytest.raises(MemberNotFoundError):
        t.nosuch
    assert not hasattr(t, "nosuch") and hasattr(t, "comm")
    with pytest.raises(ObjectError):
        t.pid.deref()
    with pytest.raises(ObjectError):
        t.pid.string_()
    with pytest.raises(ObjectError):
        t.pid[0]
    with pytest.raises(TypeError):
        int(t)
    with pytest.raises(TypeError):
        iter(t.pid)
    with pytest.raises(ObjectNotFoundError):
        prog["no_such_symbol"]
    with pytest.raises(KeyError):
        prog["no_such_symbol"]
    wild = prog.object("struct task_struct", 0xDEAD000000000000)
    with pytest.raises(MemoryReadError):
        wild.pid.value_()
    with pytest.raises(ObjectError):
        Object(prog, "int")  # type: ignore[arg-type]
    with pytest.raises(ObjectError):
        prog.object("void *", BASE).deref()


def test_arithmetic_casts_and_repr(prog):
    t = prog["init_task"]
    p = t.address_of_()
    assert int(p + 1) == BASE + TASK and int(p - 1) == BASE - TASK
    assert (p + 2) - p == 2
    assert t.pid + 5 == 5 and t.flag_a * 2 == 10 and t.flag_a | 8 == 13
    c = cast("unsigned char", t.raw)
    assert c.value_() == 0x88
    r = reinterpret("unsigned int", t.comm)
    assert r.value_() == int.from_bytes(b"swap", "little")
    assert repr(t) == f"Object(prog, 'struct task_struct', address={BASE:#x})"
    assert repr(t.pid.read_()) == "Object(prog, 'pid_t', value=0)"
    assert "pid" in dir(t) and "comm" in dir(p)


def test_format_like_crash(prog):
    init = container_of(prog["init_task"].tasks.next, "struct task_struct", "tasks").deref()
    text = str(init)
    lines = text.splitlines()
    assert lines[0] == "struct task_struct {"
    assert lines[-1] == "}"
    assert "  state = 0," in lines
    assert "  {" in lines and "    u_flags = 1432778632," in lines   # anonymous union
    assert "  pid = 1," in lines
    assert "  flag_b = -3," in lines and "  on = true," in lines
    assert '  comm = "init\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000",' in lines
    assert "  st = TASK_DEAD," in lines
    assert f'  name = {BASE + 0x3000:#x} <init_task+12288> "hello",' not in lines  # >64 away
    assert f'  name = {BASE + 0x3000:#x} "hello",' in lines
    assert f"  real_parent = {BASE:#x} <init_task>," in lines
    assert "  fn = 0xffffffff81000010 <wake_up_process+16>," in lines
    assert f"  tail = {BASE + 0x1000 + 88:#x}" in lines            # no-length array
    k = container_of(init.tasks.next, "struct task_struct", "tasks")
    assert '  comm = "kthreaddé\\t\\000\\000\\000\\000",' in str(k.deref()).splitlines()
    assert init.format_members_(["pid", "tasks"]).splitlines() == [
        "  pid = 1,", "  tasks = {",
        f"    next = {BASE + 0x2000 + 24:#x},", f"    prev = {BASE + 24:#x} <init_task+24>",
        "  },"]
    assert str(init.pid) == "(pid_t)1"
    assert str(init.comm[0]) == "(char)105 'i'"
    assert "flag_a = 0x5," in init.format_(hex=True)


def test_list_walks(prog):
    head = prog["init_task"].tasks
    pids = [int(t.pid) for t in list_for_each_entry("struct task_struct", head.address_of_(), "tasks")]
    assert pids == [1, 2]
    assert [int(t.pid) for t in list_for_each_entry("struct task_struct", head, "tasks",
                                                       reverse=True)] == [2, 1]
    assert [int(t.pid) for t in list_for_each_entry("struct task_struct", BASE + 24, "tasks",
                                                       prog=prog, validate=True)] == [1, 2]
    assert [int(n) for n in list_for_each(head)] == [BASE + 0x1000 + 24, BASE + 0x2000 + 24]
    assert list_count(head) == 2 and not list_empty(head)
    with pytest.raises(ObjectError):
        list(list_for_each_entry("struct task_struct", BASE + 24, "tasks"))


def test_list_corruption_is_reported(prog):
    head = prog["init_task"].tasks
    t2 = BASE + 0x2000
    # cycle that skips the head: t2.next -> t1
    prog.write_u64(t2 + 24, BASE + 0x1000 + 24)
    got = []
    with pytest.raises(CorruptKernelDataError, match=r"struct task_struct\.tasks.*cycle"):
        for t in list_for_each_entry("struct task_struct", head, "tasks"):
            got.append(int(t.pid))
    assert got == [1, 2]  # every good entry came first
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert [int(t.pid) for t in list_for_each_entry("struct task_struct", head, "tasks",
                                                           on_error="warn")] == [1, 2]
    assert any("cycle" in str(x.message) for x in w)
    # wild pointer
    prog.write_u64(t2 + 24, 0xDEAD000000000100)
    with pytest.raises(CorruptKernelDataError, match="does not read"):
        list(list_for_each_entry("struct task_struct", head, "tasks"))
    # NULL
    prog.write_u64(t2 + 24, 0)
    with pytest.raises(CorruptKernelDataError, match="NULL"):
        list(list_for_each_entry("struct task_struct", head, "tasks"))
    # limit
    prog.write_u64(t2 + 24, BASE + 24)
    with pytest.raises(CorruptKernelDataError, match="more than 1 entries"):
        list(list_for_each_entry("struct task_struct", head, "tasks", limit=1))
    # back pointer check
    prog.write_u64(t2 + 32, BASE + 24)
    with pytest.raises(CorruptKernelDataError, match="points back"):
        list(list_for_each_entry("struct task_struct", head, "tasks", validate=True))


def test_long_cycle_found_by_brent(prog, monkeypatch):
    import vmcorekit.kernel.lists as lists
    monkeypatch.setattr(lists, "EXACT_NODES", 4)
    # 40 nodes in a ring that never returns to the head
    ring = [BASE + 0x40000 + 16 * i for i in range(40)]
    for i, n in enumerate(ring):
        prog.write_u64(n, ring[(i + 1) % len(ring)])
    prog.write_u64(BASE + 0x50000, ring[0])
    with pytest.raises(CorruptKernelDataError, match="cycle"):
        list(lists.list_nodes(prog, BASE + 0x50000))  # type: ignore[arg-type]
    seen = 0
    try:
        for _ in lists.list_nodes(prog, BASE + 0x50000):  # type: ignore[arg-type]
            seen += 1
    except CorruptKernelDataError:
        pass
    assert 40 <= seen <= 40 + 3 * 64  # detected within a few laps, not run to the limit


def test_rbtree_and_hlist():
    bb = BtfBuilder()
    ul = bb.int("long unsigned int", 8)
    rbn = bb.forward()
    rbp = bb.ptr(rbn)
    bb.fill(rbn, bb.compound_rec("struct", "rb_node", 24, [("__rb_parent_color", ul, 0),
                                                          ("rb_right", rbp, 64), ("rb_left", rbp, 128)]))
    bb.struct("rb_root", 8, [("rb_node", rbp, 0)])
    bb.struct("item", 32, [("key", ul, 0), ("node", rbn, 64)])
    hn = bb.forward()
    hnp = bb.ptr(hn)
    bb.fill(hn, bb.compound_rec("struct", "hlist_node", 16, [("next", hnp, 0), ("pprev", bb.ptr(hnp), 64)]))
    bb.struct("hlist_head", 8, [("first", hnp, 0)])
    bb.struct("hitem", 24, [("key", ul, 0), ("link", hn, 64)])
    p = FakeProgram(registry_from_btf(Btf(bb.build())))
    base = 0xFFFF888000200000
    # items k at base+0x100+32k, node at +8; tree: 4 -> (2 -> (1, 3), 6 -> (5, None))
    shape = {4: (2, 6), 2: (1, 3), 6: (5, None), 1: (None, None), 3: (None, None), 5: (None, None)}

    def node(k):
        return 0 if k is None else base + 0x100 + 32 * k + 8
    for k, (l, r) in shape.items():
        p.write(base + 0x100 + 32 * k, struct.pack("<QQQQ", k, 0, node(r), node(l)))
    p.write_u64(base, node(4))
    keys = [int(i.key) for i in rbtree_inorder_for_each_entry("struct item", base, "node", prog=p)]
    assert keys == [1, 2, 3, 4, 5, 6]
    root = p.object("struct rb_root", base)
    assert [int(i.key) for i in rbtree_inorder_for_each_entry("struct item", root, "node")] == keys
    # a child pointing back up makes a cycle
    p.write(base + 0x100 + 32 * 3 + 16, struct.pack("<Q", node(2)))
    with pytest.raises(CorruptKernelDataError, match="rbtree struct item.node"):
        list(rbtree_inorder_for_each_entry("struct item", root, "node"))
    # hlist: head -> 1 -> 2 -> NULL
    h = base + 0x800
    items = [base + 0x900, base + 0xa00]
    p.write_u64(h, items[0] + 8)
    p.write(items[0], struct.pack("<QQQ", 11, items[1] + 8, h))
    p.write(items[1], struct.pack("<QQQ", 22, 0, items[0] + 8))
    hh = p.object("struct hlist_head", h)
    assert [int(x.key) for x in hlist_for_each_entry("struct hitem", hh, "link")] == [11, 22]
    p.write(items[1] + 8, struct.pack("<Q", items[0] + 8))
    with pytest.raises(CorruptKernelDataError, match="cycle"):
        list(hlist_for_each_entry("struct hitem", hh, "link"))
    # llist: NULL-terminated from a first pointer
    p.write(items[1] + 8, struct.pack("<Q", 0))
    assert [int(x.key) for x in llist_for_each_entry("struct hitem", items[0] + 8, "link", prog=p)] == [11, 22]


def test_per_cpu(prog):
    rq = prog["runqueues"]
    assert rq.address_ == 0x1c40 and rq.type_.tag == "rq"
    assert [(int(per_cpu(rq, c).nr_running), int(per_cpu(rq, c).cpu)) for c in (0, 1)] == [(3, 0), (4, 1)]
    with pytest.raises(ObjectError):
        per_cpu(rq, -1)
    with pytest.raises(ObjectError):
        per_cpu(Object(prog, "int", 5), 0)  # type: ignore[arg-type]


def test_mem_section_vmcoreinfo_value(prog):
    """SYMBOL(mem_section) in VMCOREINFO is the pointer's value, not its address."""
    b = BtfBuilder()
    ul = b.int("long unsigned int", 8)
    b.struct("mem_section", 16, [("section_mem_map", ul, 0), ("usage", ul, 64)])
    p = FakeProgram(registry_from_btf(Btf(b.build())))
    p.vmcoreinfo.symbols["mem_section"] = 0xFFFF888000300000
    ms = p["mem_section"]
    assert ms.address_ is None and int(ms) == 0xFFFF888000300000
    assert ms.type_.type_name() == "struct mem_section **"
    # with kallsyms: a real pointer variable elsewhere
    p.symbols.table["mem_section"] = 0xFFFFFFFF82000000
    ms = p["mem_section"]
    assert ms.address_ == 0xFFFFFFFF82000000
    # a static array (not SPARSEMEM_EXTREME): the value is the variable's own address
    p.symbols.table["mem_section"] = 0xFFFF888000300000
    p.vmcoreinfo.lengths["mem_section"] = 4
    ms = p["mem_section"]
    assert ms.type_.type_name() == "struct mem_section [4][1]"


@pytest.mark.parametrize("data, kw, text", [
    (b"abc", {}, '"abc"'),
    (b"\x05" + b"3x", {}, '"\\005\\063x"'),            # a digit after an octal escape
    (b"\n3", {}, '"\\n3"'),                            # but not after \n
    ("café €".encode(), {}, '"café €"'),               # UTF-8 shown as characters
    ("café".encode(), {"charset": "ascii"}, '"caf\\303\\251"'),
    (b"\xe9\x8f", {}, '"\\351\\217"'),                 # truncated sequence: bytes
    (b'q"\\\x1b\x7f', {}, '"q\\"\\\\\\033\\177"'),
    (b"a" * 250, {}, '"' + "a" * 250 + '"'),           # one run is finished whole
    (b"ab" * 150, {}, '"' + "ab" * 100 + '"...'),      # print elements 200
    (b"x" * 150 + b"\0" * 100 + b"y", {}, '"' + "x" * 150 + "\\000" * 100 + '"...'),
    (b"hi", {"force_ellipses": True}, '"hi"...'),
])
def test_gdb_string(data, kw, text):
    from vmcorekit.program.objects import gdb_string
    assert gdb_string(data, **kw) == text


def test_long_arrays_and_pointer_strings(prog):
    from vmcorekit.program.objects import c_string_literal
    assert c_string_literal(b"ab\0") == '"ab"' and c_string_literal(b"ab\0\0") == '"ab\\000"'
    arr = Object(prog, prog.types.lookup("int [250]"), bytes(1000))  # type: ignore[arg-type]
    text = arr.format_()
    assert text.startswith("{0, 0") and text.endswith(", 0...}") and text.count("0") == 200
    # a char pointer whose string runs past 200 bytes, then one that runs into a hole
    prog.write(BASE + 0x5000, b"z" * 300 + b"\0")
    p = Object(prog, "char *", BASE + 0x5000)  # type: ignore[arg-type]
    assert str(p).endswith('"' + "z" * 200 + '"...')
    prog.write(BASE + 0x6000 - 3, b"abc")
    p = Object(prog, "char *", BASE + 0x6000 - 3)  # type: ignore[arg-type]
    assert str(p).endswith(f'"abc"<error: Cannot access memory at address {BASE + 0x6000:#x}>')
    p = Object(prog, "char *", 0x1234)  # type: ignore[arg-type]
    assert str(p) == "(char *)0x1234 <error: Cannot access memory at address 0x1234>"


def test_enum_constants_as_objects(prog):
    o = prog["NR_ITEMS"]
    assert o.value_() == 2 and o.type_.type_name() == "enum stat_item"
    assert str(o) == "(enum stat_item)NR_ITEMS"
    assert prog.types.enumerator("NR_B") == (prog.types.lookup("enum stat_item"), 1)
    assert prog.types.enumerator("NOPE") is None


def test_self_containing_struct_is_bounded():
    """Damaged BTF: a struct that contains itself twice. Printing stops at gdb's max-depth
    ({...}) and value_() at its budget; neither recurses without bound."""
    import time
    from vmcorekit.program.objects import ObjectError
    b = BtfBuilder()
    i = b.int("int", 4, signed=True)
    a = b.forward()
    b.fill(a, b.compound_rec("struct", "loop", 8, [("x", a, 0), ("y", a, 0), ("n", i, 32)]))
    p = FakeProgram(registry_from_btf(Btf(b.build())))
    o = Object(p, "struct loop", bytes(8))  # type: ignore[arg-type]
    t0 = time.perf_counter()
    with pytest.raises(ObjectError):
        str(o)  # 2**20 nested structs exceed the budget first
    with pytest.raises(ObjectError):
        o.value_()
    assert o.x.x.x.n.value_() == 0
    assert time.perf_counter() - t0 < 20
