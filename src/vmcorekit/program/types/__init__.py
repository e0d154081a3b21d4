"""Kernel types from the dump alone: the kernel's in-memory BTF (vmlinux and modules), a
vmlinux file's .BTF section when given, else the SIZE/OFFSET facts in VMCOREINFO.

    reg = kernel_types(prog)               # what prog.types returns
    reg.lookup("struct task_struct *")
    reg.offsetof("struct task_struct", "tasks.next")
    reg.member_bits("struct printk_info", "level")
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ...errors import BtfFormatError, MemoryReadError, SymbolError, VmcorekitError, note
from ..modlist import module_nodes, module_offsets, walk_modules
from .btf import BTF_MAX_SIZE, Btf, BtfKind, btf_from_elf, elf_build_id, parse_btf
from .btf_source import BtfTypeSource
from .fallback import VmcoreinfoTypeSource
from .model import Member, Parameter, Qualifiers, Type, TypeKind
from .globals import GlobalInfo
from .registry import TypeRegistry

if TYPE_CHECKING:
    from ..core import Program

__all__ = ["TypeRegistry", "kernel_types", "registry_from_btf", "Type", "TypeKind", "Member",
           "Parameter", "Qualifiers", "GlobalInfo", "Btf", "BtfKind", "BtfFormatError",
           "parse_btf", "btf_from_elf", "btf_from_memory", "load_module_btf"]

# A module's BTF is a fraction of vmlinux's; anything this large is a wild pointer or size.
MODULE_BTF_MAX = 16 << 20
# Bound on modules walked (the kernel has no hard limit; real systems load < 1000).
MODULES_MAX = 65536


def registry_from_btf(btf: Btf, *, pointer_size: int = 8, kind: str = "btf",
                      prog: "Program | None" = None) -> TypeRegistry:
    """A registry over one vmlinux BTF blob; with `prog`, module BTF is found on demand."""
    holder: dict[str, BtfTypeSource] = {}

    def modules(reg: TypeRegistry) -> list[BtfTypeSource]:
        assert prog is not None
        return load_module_btf(prog, reg, holder["base"])

    reg = TypeRegistry([], pointer_size=pointer_size, kind=kind,
                       module_loader=modules if prog is not None else None)
    src = BtfTypeSource(btf, pointer_size, int_type=reg.int_type)
    holder["base"] = src
    reg.sources.append(src)
    return reg


def kernel_types(prog: "Program", *, vmlinux: str | None = None) -> TypeRegistry:
    """The dump's types: BTF from kernel memory (`__start_BTF`..`__stop_BTF`, located through
    the symbol table), or a vmlinux's .BTF section; without BTF, VMCOREINFO's SIZE/OFFSET
    facts. Why BTF was not used is kept in the registry's `warnings`."""
    psize = prog.space.pointer_size
    why: str | None = None
    if vmlinux is not None:
        # A vmlinux of another build would describe other layouts: refuse it.
        want = prog.vmcoreinfo.build_id
        have = elf_build_id(vmlinux)
        if want and have and want.lower() != have:
            raise BtfFormatError(f"{vmlinux}: build ID {have} differs from the dump's {want}")
        btf = Btf(btf_from_elf(vmlinux), name="vmlinux-file")
        return registry_from_btf(btf, pointer_size=psize, kind="btf-file", prog=prog)
    try:
        btf = btf_from_memory(prog)
        return registry_from_btf(btf, pointer_size=psize, kind="btf", prog=prog)
    except VmcorekitError as e:  # no symbols, BTF pages missing, a damaged blob
        why = str(e)
    reg = TypeRegistry([], pointer_size=psize, kind="vmcoreinfo")
    reg.sources.append(VmcoreinfoTypeSource(prog.vmcoreinfo, reg))
    reg.warnings.append(f"no BTF: {why}")
    note(f"no usable BTF in the dump ({why}); types come from VMCOREINFO only")
    return reg


def btf_from_memory(prog: "Program") -> Btf:
    """Read and parse the vmlinux BTF the running kernel kept in memory."""
    try:
        start = prog.symbols.address_of("__start_BTF")
        stop = prog.symbols.address_of("__stop_BTF")
    except ImportError as e:
        raise SymbolError(f"no symbol table to locate __start_BTF ({e})") from None
    except MemoryReadError as e:
        raise SymbolError(f"the symbol table that locates __start_BTF is unreadable: {e}") from None
    size = stop - start
    if size <= 0 or size > BTF_MAX_SIZE:
        raise BtfFormatError(f"__start_BTF {start:#x} .. __stop_BTF {stop:#x} is not a "
                             f"plausible BTF extent ({size} bytes)")
    try:
        data = prog.read(start, size)
    except MemoryReadError as e:
        raise BtfFormatError(f"BTF pages {start:#x}..{stop:#x} unreadable: {e}") from None
    return Btf(data, name="vmlinux")


def load_module_btf(prog: "Program", reg: TypeRegistry, base: BtfTypeSource) -> list[BtfTypeSource]:
    """Split BTF of every loaded module, on top of the vmlinux BTF.

    `struct module.btf_data` is cleared once a module finished loading (the section is not
    kept), so the copy the BPF subsystem keeps is used: `btf_modules` lists `struct
    btf_module {list, module, btf}` and `struct btf` holds `data`/`data_size`. `btf_data`
    is read for modules still initializing. Problems with one module are warnings, not errors.
    """
    out: list[BtfTypeSource] = []
    seen: set[int] = set()
    psize = prog.space.pointer_size

    def add(name: str, data_addr: int, size: int) -> None:
        if not data_addr or size <= 0 or data_addr in seen:
            return
        seen.add(data_addr)
        if size > MODULE_BTF_MAX:
            reg.warnings.append(f"module {name}: BTF size {size} is implausible; skipped")
            return
        try:
            btf = Btf(prog.read(data_addr, size), base=base.btf, name=name)
        except (MemoryReadError, BtfFormatError) as e:
            reg.warnings.append(f"module {name}: BTF not usable: {e}")
            return
        out.append(BtfTypeSource(btf, psize, int_type=reg.int_type, base_source=base))

    ps = prog.space.pointer_size
    order = prog.space.byteorder
    # Only the name and the BTF fields: nothing else of struct module needs to read.
    offs = dataclasses.replace(module_offsets(reg, ps), ranges=(), kallsyms=None)

    def walk(head: int, what: str) -> Iterator[int]:
        return module_nodes(prog.read, head, pointer_size=ps, byteorder=order,
                            limit=MODULES_MAX, what=f"{what} list at {head:#x}")

    def module_name(mod: int) -> str:
        try:
            raw = prog.read(mod + offs.name, offs.name_size)
        except VmcorekitError:
            return f"module@{mod:#x}"
        return raw.split(b"\0")[0].decode("utf-8", "replace") or "?"

    try:
        head = prog.symbol_address("btf_modules")
        o_list = reg.offsetof("struct btf_module", "list")
        o_mod = reg.offsetof("struct btf_module", "module")
        o_btf = reg.offsetof("struct btf_module", "btf")
        o_data = reg.offsetof("struct btf", "data")
        o_size = reg.offsetof("struct btf", "data_size")
        for node in walk(head, "btf_modules"):
            bm = node - o_list
            mod = prog.read_pointer(bm + o_mod)
            b = prog.read_pointer(bm + o_btf)
            if not b:
                continue
            add(module_name(mod), prog.read_pointer(b + o_data),
                int.from_bytes(prog.read(b + o_size, 4), order))
    except (VmcorekitError, ImportError) as e:
        reg.warnings.append(f"btf_modules not walked: {e}")

    try:
        head = prog.symbol_address("modules")
        # The members this walk needs; their absence is the warning.
        reg.offsetof("struct module", "btf_data")
        reg.offsetof("struct module", "btf_data_size")
        for m in walk_modules(prog.read, head, offs, pointer_size=ps, byteorder=order,
                              limit=MODULES_MAX, what=f"modules list at {head:#x}"):
            add(m.name or "?", m.btf_data or 0, m.btf_data_size or 0)
    except (VmcorekitError, ImportError) as e:
        reg.warnings.append(f"modules not walked for btf_data: {e}")
    return out
