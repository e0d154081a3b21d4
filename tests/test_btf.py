"""BTF parser and type registry over synthetic blobs (tests/btfgen.py)."""
from __future__ import annotations

import struct

import pytest

from btfgen import BtfBuilder
from vmcorekit.errors import TypeLookupError, VmcorekitError
from vmcorekit.program.types import (Btf, BtfFormatError, BtfKind, Qualifiers, TypeKind,
                                     TypeRegistry, registry_from_btf)
from vmcorekit.program.types.btf_source import BtfTypeSource


def kernelish(endian: str = "<") -> tuple[bytes, dict[str, int]]:
    """A blob with every kind, shaped like the kernel structs the tools use."""
    b = BtfBuilder(endian=endian)
    ids: dict[str, int] = {}
    ids["int"] = b.int("int", 4, signed=True)
    ids["uint"] = b.int("unsigned int", 4)
    ids["ulong"] = b.int("long unsigned int", 8)
    ids["char"] = b.int("char", 1, signed=True, char=True)
    ids["uchar"] = b.int("unsigned char", 1)
    ids["bool"] = b.int("_Bool", 1, bool_=True)
    ids["u8"] = b.typedef("u8", ids["uchar"])
    ids["u16i"] = b.int("short unsigned int", 2)
    ids["u16"] = b.typedef("u16", ids["u16i"])
    ids["u64i"] = b.int("long long unsigned int", 8)
    ids["u64"] = b.typedef("u64", ids["u64i"])
    lh = b.forward()
    ids["list_head"] = lh
    lhp = b.ptr(lh)
    b.fill(lh, b.compound_rec("struct", "list_head", 16, [("next", lhp, 0), ("prev", lhp, 64)]))
    ids["list_head_p"] = lhp
    ids["comm"] = b.array(ids["char"], 16, ids["int"])
    ids["pid_t"] = b.typedef("pid_t", ids["int"])
    ids["state"] = b.enum("task_state", 4, [("TASK_RUNNING", 0), ("TASK_DEAD", 128)])
    ids["flags_enum"] = b.enum("pf", 4, [("PF_A", 1), ("PF_B", 2), ("PF_C", 4)])
    ids["neg_enum"] = b.enum("neg", 4, [("MINUS", -1), ("ZERO", 0)], signed=True)
    ids["big_enum"] = b.enum64("big", 8, [("BIG", 1 << 40), ("NEG", -5)], signed=True)
    ids["nr_items"] = b.enum("stat_item", 4, [("NR_A", 0), ("NR_B", 1), ("NR_ITEMS", 2)])
    ids["fwd"] = b.fwd("opaque")
    ids["fwd_u"] = b.fwd("opaque_u", union=True)
    ids["anon_union"] = b.union("", 8, [("u_flags", ids["uint"], 0), ("raw", ids["ulong"], 0)])
    ids["const_char"] = b.qual("const", ids["char"])
    ids["const_char_p"] = b.ptr(ids["const_char"])
    ids["volatile_ulong"] = b.qual("volatile", ids["ulong"])
    ids["restrict_p"] = b.qual("restrict", ids["const_char_p"])
    ids["rcu_tag"] = b.type_tag("rcu", lh)
    ids["rcu_p"] = b.ptr(ids["rcu_tag"])
    ids["float"] = b.float("float", 4)
    ids["double"] = b.float("double", 8)
    task = b.forward()
    ids["task_struct"] = task
    task_p = b.ptr(task)
    ids["task_p"] = task_p
    ids["proto"] = b.func_proto(ids["int"], [("t", task_p), ("", 0)])  # variadic
    ids["fnp"] = b.ptr(ids["proto"])
    ids["func"] = b.func("wake_up_process", ids["proto"])
    b.fill(task, b.compound_rec("struct", "task_struct", 96, [
        ("state", ids["volatile_ulong"], 0),
        ("", ids["anon_union"], 64),
        ("pid", ids["pid_t"], 128),
        ("flag_a", ids["uint"], 160, 3),
        ("flag_b", ids["int"], 163, 5),
        ("on", ids["bool"], 168, 1),
        ("tasks", lh, 192),
        ("real_parent", task_p, 320),
        ("comm", ids["comm"], 384),
        ("fn", ids["fnp"], 512),
        ("st", ids["state"], 576),
        ("name", ids["const_char_p"], 640),
        ("tail", b.array(ids["u64"], 0), 704),
    ], kflag=True))
    # Old-style bit field: width lives in the INT type, kind_flag 0.
    ids["int3"] = b.int("unsigned int", 4, bits=3, offset=0)
    ids["oldbf"] = b.struct("oldbf", 4, [("a", ids["int3"], 0), ("b", ids["int3"], 3)], kflag=False)
    ids["rq"] = b.struct("rq", 16, [("nr_running", ids["uint"], 0), ("cpu", ids["int"], 32)])
    ids["var_rq"] = b.var("runqueues", ids["rq"])
    ids["var_x"] = b.var("other_var", ids["int"])
    ids["sec"] = b.datasec(".data..percpu", 4096, [(ids["var_rq"], 0x1c40, 16)])
    ids["sec2"] = b.datasec(".data", 4, [(ids["var_x"], 0, 4)])
    ids["tag"] = b.decl_tag("user", task, 2)
    ids["atomic_long_t"] = b.typedef("atomic_long_t", b.struct("", 8, [("counter", ids["ulong"], 0)]))
    return b.build(), ids


@pytest.fixture(scope="module")
def blob() -> tuple[bytes, dict[str, int]]:
    return kernelish()


@pytest.fixture(scope="module")
def reg(blob: tuple[bytes, dict[str, int]]) -> TypeRegistry:
    return registry_from_btf(Btf(blob[0]))


def test_every_kind_decodes(blob):
    data, ids = blob
    btf = Btf(data)
    kinds = {btf.type(i).kind for i in btf.ids()}
    assert kinds == set(BtfKind) - {BtfKind.UNKN}
    t = btf.type(ids["task_struct"])
    assert t.name == "task_struct" and t.size == 96 and t.kind_flag
    assert [(m.name, m.bit_offset, m.bitfield_size) for m in t.members][3:6] == [
        ("flag_a", 160, 3), ("flag_b", 163, 5), ("on", 168, 1)]
    assert btf.type(ids["big_enum"]).enumerators == (("BIG", 1 << 40), ("NEG", -5))
    assert btf.type(ids["neg_enum"]).enumerators[0] == ("MINUS", -1)
    assert btf.type(ids["sec"]).secinfo[0].offset == 0x1c40
    assert btf.type(ids["tag"]).component_idx == 2
    assert btf.type(ids["func"]).linkage == 1
    assert btf.type(ids["comm"]).nelems == 16


def test_big_endian_blob_reads_the_same():
    le, ids = kernelish("<")
    be, _ = kernelish(">")
    a, b = Btf(le), Btf(be)
    assert a.byteorder == "<" and b.byteorder == ">"
    for i in a.ids():
        assert a.type(i) == b.type(i)


def test_find_by_name_and_kind(blob):
    data, ids = blob
    btf = Btf(data)
    assert btf.find("task_struct", (BtfKind.STRUCT,)) == [ids["task_struct"]]
    assert btf.find("task_struct", (BtfKind.UNION,)) == []
    assert btf.find("no_such_name") == []
    # name at the very start of the string table still found
    assert btf.find("int", (BtfKind.INT,)) == [ids["int"]]
    assert btf.find_enumerator("NR_ITEMS") == [(ids["nr_items"], 2)]


def test_registry_lookups(reg, blob):
    ts = reg.lookup("struct task_struct")
    assert ts.size == 96 and ts.tag == "task_struct"
    assert reg.sizeof("struct list_head") == 16
    assert reg.offsetof("struct task_struct", "tasks.next") == 24
    assert reg.offsetof("struct task_struct", "tasks.prev") == 32
    assert reg.offsetof("struct task_struct", "comm[3]") == 51
    assert reg.offsetof("struct task_struct", "u_flags") == 8   # anonymous union member
    assert reg.member_bits("struct task_struct", "flag_b") == (163, 5)
    assert reg.member_bits("struct task_struct", "pid") == (128, 32)
    assert reg.member_bits("struct oldbf", "b") == (3, 3)
    with pytest.raises(TypeLookupError):
        reg.offsetof("struct task_struct", "flag_a")
    with pytest.raises(TypeLookupError):
        reg.offsetof("struct task_struct", "nope")
    with pytest.raises(TypeLookupError):
        reg.lookup("struct nope")
    assert reg.has_member("struct task_struct", "real_parent")
    assert not reg.has_member("struct task_struct", "mm")


@pytest.mark.parametrize("spec, name, size", [
    ("struct task_struct *", "struct task_struct *", 8),
    ("unsigned long", "unsigned long", 8),
    ("long unsigned int", "unsigned long", 8),
    ("char [16]", "char [16]", 16),
    ("struct list_head *[4]", "struct list_head *[4]", 32),
    ("char (*)[16]", "char (*)[16]", 8),
    ("u64 [NR_ITEMS]", "u64 [2]", 16),
    ("u64 [NR_ITEMS + 1]", "u64 [3]", 24),
    ("const char *", "const char *", 8),
    ("char * const", "char * const", 8),
    ("int (*)(struct task_struct *, ...)", "int (*)(struct task_struct *, ...)", 8),
    ("void *", "void *", 8),
    ("enum task_state", "enum task_state", 4),
    ("union opaque_u *", "union opaque_u *", 8),
    ("atomic_long_t", "atomic_long_t", 8),
    ("pid_t", "pid_t", 4),
    ("_Bool", "_Bool", 1),
    ("unsigned __int128", "unsigned __int128", 16),
])
def test_type_names(reg, spec, name, size):
    t = reg.lookup(spec)
    assert t.type_name() == name
    assert t.size == size


@pytest.mark.parametrize("spec", ["struct", "int [", "int [x y]", "struct task_struct **)", "",
                                  "void (", "unsigned struct list_head", "int [-3]", "@"])
def test_bad_type_names(reg, spec):
    with pytest.raises(TypeLookupError):
        reg.lookup(spec)


def test_model_details(reg, blob):
    ts = reg.lookup("struct task_struct")
    state = ts.member("state").type
    assert state.qualifiers == Qualifiers.VOLATILE and state.type_name() == "volatile unsigned long"
    rp = ts.member("real_parent").type
    assert rp.kind == TypeKind.POINTER and rp.type is ts
    fn = ts.member("fn").type.type
    assert fn.kind == TypeKind.FUNCTION and fn.is_variadic and len(fn.parameters) == 1
    assert ts.member("tail").type.size == 0
    assert reg.lookup("struct opaque").is_complete() is False
    assert reg.lookup("struct opaque").size is None
    e = reg.lookup("enum neg")
    assert e.is_signed and e.type.is_signed and e.type.size == 4
    assert reg.lookup("enum big").enumerators[0] == ("BIG", 1 << 40)
    # a type tag is transparent
    src = reg.sources[0]
    assert src.type(blob[1]["rcu_p"]).type is reg.lookup("struct list_head")
    assert src.type(blob[1]["restrict_p"]).qualifiers == Qualifiers.RESTRICT
    assert reg.lookup("struct task_struct *") == rp
    assert hash(reg.lookup("struct task_struct *")) == hash(rp)
    assert "flag_a" in ts.member_names() and "u_flags" in ts.member_names()
    assert reg.constant("NR_ITEMS") == 2


def test_globals_from_btf_var_and_table(reg):
    info = reg.global_info("runqueues")
    assert info.how == "btf-var" and info.percpu_offset == 0x1c40
    assert info.type.tag == "rq"
    assert reg.global_info("other_var").percpu_offset is None
    fn = reg.global_info("wake_up_process")
    assert fn.how == "btf-func" and fn.type.kind == TypeKind.FUNCTION
    with pytest.raises(TypeLookupError, match="declare_global"):
        reg.global_info("unknown_thing")
    # table entries only resolve when their types exist
    with pytest.raises(TypeLookupError):
        reg.global_info("init_uts_ns")
    assert reg.global_info("init_task").type.tag == "task_struct"
    reg.declare_global("unknown_thing", "struct list_head *")
    assert reg.global_type("unknown_thing").type_name() == "struct list_head *"
    with pytest.raises(TypeLookupError):
        reg.declare_global("x", "struct does_not_exist")


def test_split_btf_on_base(blob):
    data, ids = blob
    base = Btf(data)
    m = BtfBuilder(start_id=base.type_count, base_str_len=base.str_len)
    loop = m.struct("loop_device", 24, [("lo_number", ids["int"], 0),
                                        ("list", ids["list_head"], 64)])
    m.typedef("loop_t", loop)
    mod = Btf(m.build(), base=base, name="loop")
    assert mod.start_id == base.type_count
    assert mod.type(loop).members[1].type == ids["list_head"]
    assert mod.type(ids["task_struct"]).name == "task_struct"  # base ids pass through
    assert mod.find("loop_device", (BtfKind.STRUCT,)) == [loop]

    reg = registry_from_btf(base)
    base_src = reg.sources[0]
    src = BtfTypeSource(mod, 8, base_source=base_src)
    reg.sources.append(src)
    lt = reg.lookup("struct loop_device")
    assert lt.member("list").type is reg.lookup("struct list_head")
    assert reg.offsetof("loop_t", "list.prev") == 16
    with pytest.raises(BtfFormatError):
        mod.type(mod.type_count)


def corrupt(data: bytes, off: int, value: int) -> bytes:
    return data[:off] + struct.pack("<I", value) + data[off + 4:]


@pytest.mark.parametrize("mutate, match", [
    (lambda d: b"\x00\x00" + d[2:], "magic"),
    (lambda d: d[:10], "too short"),
    (lambda d: d[:2] + b"\x02" + d[3:], "version"),
    (lambda d: corrupt(d, 4, 1 << 30), "header length"),
    (lambda d: corrupt(d, 12, 1 << 30), "exceed"),
    (lambda d: corrupt(d, 20, (1 << 24) + 5), "exceed|too large"),
    (lambda d: corrupt(d, 12, 6), "aligned"),
    (lambda d: d[:-1] + b"x", "NUL-terminated"),
    (lambda d: corrupt(d, 24 + 4, 31 << 24), "unknown kind"),
    (lambda d: corrupt(d, 24 + 4, (4 << 24) | 0xFFFF), "runs past|truncated"),
])
def test_malformed_headers(blob, mutate, match):
    with pytest.raises(BtfFormatError, match=match):
        Btf(mutate(blob[0]))


def test_bad_references_raise_typed_errors():
    b = BtfBuilder()
    i = b.int("int", 4, signed=True)
    p = b.ptr(999)            # beyond the last id
    c = b.forward()
    b.fill(c, b.head("", "const", size_type=c))   # const of itself
    t = b.forward()
    b.fill(t, b.head("loop_t", "typedef", size_type=t))  # typedef of itself
    a = b.forward()
    b.fill(a, b.head("", "array") + b.u32(a, i, 4))  # array of itself
    f = b.forward()
    b.fill(f, b.head("f", "func", size_type=f))
    v = b.var("v", i)
    s = b.struct("bad", 4, [("x", v, 0)])     # member typed by a VAR
    n = b.struct("badname", 4, [("x", i, 0)])
    blob = b.build()
    btf = Btf(blob)
    assert BtfTypeSource(btf, 8).type(n).size == 4
    with pytest.raises(BtfFormatError):
        btf.type(p)
    src = BtfTypeSource(btf, 8)
    for tid in (c, f):
        with pytest.raises(BtfFormatError):
            src.type(tid)
    with pytest.raises(TypeLookupError):
        src.type(t).size
    assert src.type(t).type_name() == "loop_t"
    with pytest.raises(TypeLookupError):
        src.type(t).strip_typedefs()
    with pytest.raises(TypeLookupError):
        src.type(a).type_name()
    with pytest.raises(TypeLookupError):
        src.type(a).size
    with pytest.raises(VmcorekitError):
        src.type(s).members[0].type
    with pytest.raises(BtfFormatError):
        btf.string(len(blob) * 4)


def test_vlen_claims_more_than_the_blob():
    b = BtfBuilder()
    b.int("int", 4, signed=True)
    data = bytearray(b.build())
    # Claim 65535 members on a record with none: bounded by the section, not allocated.
    struct.pack_into("<I", data, 24 + 4, (4 << 24) | 0xFFFF)
    with pytest.raises(BtfFormatError):
        Btf(bytes(data))


def test_too_large_blob_refused(monkeypatch):
    from vmcorekit.program.types import btf as btfmod
    data, _ = kernelish()
    monkeypatch.setattr(btfmod, "BTF_MAX_SIZE", len(data) - 1)
    with pytest.raises(BtfFormatError, match="larger"):
        btfmod.Btf(data)


def minimal_elf(sections: list[tuple[str, int, bytes]]) -> bytes:
    """An ELF64 little-endian file with the given (name, sh_type, data) sections."""
    shstr = b"\0" + b"".join(n.encode() + b"\0" for n, _, _ in sections) + b".shstrtab\0"
    body = b""
    offs = []
    for _, _, data in sections:
        offs.append(64 + len(body))
        body += data + b"\0" * (-len(data) % 8)
    shstr_off = 64 + len(body)
    body += shstr + b"\0" * (-len(shstr) % 8)
    shoff = 64 + len(body)
    n = len(sections) + 2
    ehdr = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + struct.pack(
        "<HHIQQQIHHHHHH", 2, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, n, n - 1)
    shdrs = b"\0" * 64
    name_off = 1
    for (name, typ, data), off in zip(sections, offs):
        shdrs += struct.pack("<IIQQQQIIQQ", name_off, typ, 0, 0, off, len(data), 0, 0, 4, 0)
        name_off += len(name) + 1
    shdrs += struct.pack("<IIQQQQIIQQ", name_off, 3, 0, 0, shstr_off, len(shstr), 0, 0, 1, 0)
    return ehdr + body + shdrs


def test_btf_from_vmlinux_file(tmp_path):
    from vmcorekit.program.types import btf_from_elf
    from vmcorekit.program.types.btf import elf_build_id
    data, ids = kernelish()
    bid = bytes.fromhex("eb4fbcd037e7253717950bf2b93bd5566f47c56f")
    note = struct.pack("<III", 4, len(bid), 3) + b"GNU\0" + bid
    path = tmp_path / "vmlinux"
    path.write_bytes(minimal_elf([(".note.gnu.build-id", 7, note), (".BTF", 1, data)]))
    assert btf_from_elf(str(path)) == data
    assert elf_build_id(str(path)) == bid.hex()
    assert Btf(btf_from_elf(str(path))).find("task_struct") == [ids["task_struct"]]
    nobtf = tmp_path / "nobtf"
    nobtf.write_bytes(minimal_elf([(".text", 1, b"\x90" * 16)]))
    with pytest.raises(BtfFormatError, match="no .BTF"):
        btf_from_elf(str(nobtf))
    junk = tmp_path / "junk"
    junk.write_bytes(b"not an elf at all" * 10)
    with pytest.raises(BtfFormatError):
        btf_from_elf(str(junk))
