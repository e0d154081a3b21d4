"""Program: memory + VMCOREINFO + address space (+ symbols and types when available)."""
from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from ..arch import AddressSpace, CpuRegisters, address_space
from ..dump import PhysicalMemory, open_dump
from ..errors import SymbolError, VmcoreinfoError, VmcorekitError, note
from ..vmcoreinfo import VmcoreInfo
from ..vmcoreinfo.memsection import VMCOREINFO_VALUE_SYMBOLS

# VMCOREINFO_SYMBOL_ARRAY() entries: the value of a pointer, not an address in the image
# (SPARSEMEM_VMEMMAP kernels print vmemmap's so).
VALUE_SYMBOLS = VMCOREINFO_VALUE_SYMBOLS | {"vmemmap"}
from . import symbol_order

if TYPE_CHECKING:
    from ..arch import Platform
    from .objects import Object
    from .symbols import SymbolTable
    from .types import Type, TypeRegistry


T = TypeVar("T")


class Program:
    """A crashed kernel as seen through one dump.

    Symbols: one precedence, in program/symbol_order.py, for every name -> address lookup
    (symbol_address, try_symbol_address, prog[name]):
      1. VMCOREINFO's SYMBOL(name) — the kernel's own word for this boot, KASLR applied;
      2. the symbol table `symbols`: vmlinux's in-memory kallsyms (or the System.map / vmlinux
         ELF given instead, relocated and checked against VMCOREINFO), then data symbols
         recovered from the image when kallsyms has functions only, then module symbols
         (a vmlinux symbol wins over a module's of the same name; "module:name" picks one).
    VMCOREINFO entries that hold a pointer's value, not an address (VMCOREINFO_SYMBOL_ARRAY:
    mem_section), are never taken as an address: the table answers for them, and
    vmcoreinfo_value() gives the value. Address -> name is the symbol table alone
    (`symbols.lookup`, `symbols.format`): VMCOREINFO names too few addresses to matter.
    """

    def __init__(self, phys: PhysicalMemory, vmcoreinfo: VmcoreInfo | None = None) -> None:
        self.phys = phys
        if vmcoreinfo is None:
            raw = phys.vmcoreinfo_raw
            if raw is None:
                raise VmcoreinfoError(f"{phys.path}: the dump carries no VMCOREINFO note; "
                                      "give one with --vmcoreinfo FILE")
            vmcoreinfo = VmcoreInfo.parse(raw, source=phys.path)
        self.vmcoreinfo = vmcoreinfo
        # Numbers the dump contradicts are dropped before anything lays memory out with them.
        vmcoreinfo.check(block_size=phys.page_size if phys.info.format != "elf" else None)
        self.space: AddressSpace = address_space(phys, vmcoreinfo)
        self._check_symbols()
        for r in vmcoreinfo.rejected:
            note(f"VMCOREINFO {r}; value ignored")

    @property
    def damaged(self) -> bool:
        """Whether this dump's answers may lack what the intact dump has: the file is cut
        short, a read met a damaged page, or VMCOREINFO values were rejected."""
        return self.phys.damaged or bool(self.vmcoreinfo.rejected)

    def _check_symbols(self) -> None:
        """A SYMBOL() outside every kernel region (image, direct/linear map) is not this
        kernel's: drop it, so the symbol table answers for the name instead."""
        regions = [(r.start, r.end) for r in self.space.regions]
        if not any(r.name == "kernel image" for r in self.space.regions):
            return
        for name, addr in list(self.vmcoreinfo.symbols.items()):
            if name in VALUE_SYMBOLS:
                continue  # their SYMBOL() is a pointer's value, which may lie anywhere
            if not any(lo <= addr < hi for lo, hi in regions):
                self.vmcoreinfo.reject(f"SYMBOL({name})", f"{addr:#x} is outside the kernel image "
                                                          "and the kernel's direct map")

    @classmethod
    def open(cls, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
             vmcoreinfo: str | os.PathLike[str] | None = None) -> "Program":
        phys = open_dump(paths)
        try:
            vi = VmcoreInfo.from_file(vmcoreinfo) if vmcoreinfo is not None else None
            return cls(phys, vi)
        except BaseException:
            phys.close()
            raise

    def close(self) -> None:
        self.phys.close()

    def __enter__(self) -> "Program":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- facts -------------------------------------------------------------------------------
    @property
    def arch(self) -> str:
        return self.space.arch

    @property
    def platform(self) -> "Platform":
        """The architecture's facts as data (arch/platform.py): ask it, never test `arch`."""
        return self.space.platform

    @property
    def page_size(self) -> int:
        return self.space.page_size

    @cached_property
    def cpus(self) -> list[CpuRegisters]:
        return self.space.cpu_registers()

    # -- memory ------------------------------------------------------------------------------
    def read(self, address: int, size: int, physical: bool = False) -> bytes:
        if physical:
            return self.phys.read(address, size)
        return self.space.read(address, size)

    def read_u8(self, address: int) -> int:
        return self.read(address, 1)[0]

    def read_u16(self, address: int) -> int:
        return struct.unpack("<H", self.read(address, 2))[0]

    def read_u32(self, address: int) -> int:
        return struct.unpack("<I", self.read(address, 4))[0]

    def read_u64(self, address: int) -> int:
        return struct.unpack("<Q", self.read(address, 8))[0]

    def read_s64(self, address: int) -> int:
        return struct.unpack("<q", self.read(address, 8))[0]

    def read_pointer(self, address: int) -> int:
        """One kernel pointer (the platform's size and byte order) at virtual `address`."""
        ps = self.space.pointer_size
        return int.from_bytes(self.read(address, ps), self.space.byteorder)  # type: ignore[arg-type]

    def read_cstring(self, address: int, max_len: int = 4096) -> bytes:
        """NUL-terminated bytes at `address`, at most `max_len`, stopping at unreadable pages."""
        out = bytearray()
        pos = address
        while len(out) < max_len:
            n = min(max_len - len(out), self.page_size - (pos % self.page_size))
            chunk = self.read(pos, n)
            i = chunk.find(b"\0")
            if i >= 0:
                out += chunk[:i]
                break
            out += chunk
            pos += n
        return bytes(out)

    # -- symbols and types -------------------------------------------------------------------
    @cached_property
    def symbols(self) -> "SymbolTable":
        """Kernel (and module) symbols: kallsyms from memory, System.map/vmlinux when given."""
        from .symbols import kernel_symbols
        return kernel_symbols(self)

    @cached_property
    def types(self) -> "TypeRegistry":
        """Kernel types: BTF from memory (or a vmlinux), else VMCOREINFO's SIZE/OFFSET facts."""
        from .types import kernel_types
        return kernel_types(self)

    @cached_property
    def has_btf(self) -> bool:
        """Whether the dump's own types (BTF) are available, not only VMCOREINFO's few facts."""
        try:
            return self.types.kind != "vmcoreinfo"
        except (VmcorekitError, ImportError):
            return False

    def offsetof(self, type: "str | Type", member: str) -> int:
        """Byte offset of `member` (a designator such as "thread.sp") in `type`; raises
        TypeLookupError when the dump's types do not describe it."""
        return self.types.offsetof(type, member)

    def try_offsetof(self, type: "str | Type", member: str) -> int | None:
        """offsetof(), or None when the dump's types do not describe it (or there are none)."""
        try:
            return self.types.offsetof(type, member)
        except (VmcorekitError, ImportError):
            return None

    def __getitem__(self, name: str) -> "Object":
        """A global variable (or function) as a typed object: `prog["init_task"].comm`."""
        from .objects import global_object
        return global_object(self, name)

    def object(self, type: "str | Type", address: int) -> "Object":
        """The object of `type` (a C type name or Type) at `address`."""
        from .objects import Object
        return Object(self, type, address=address)

    def symbol_address(self, name: str) -> int:
        """Address of a kernel symbol by the one precedence (see the class docstring);
        SymbolError when no source knows it."""
        addr = symbol_order.address_of(self, name)
        if addr is None:
            raise SymbolError(f"symbol {name!r} not found")
        return addr

    def memo(self, key: object, make: "Callable[[], T]") -> "T":
        """A per-Program memo for the layers above (a task layout, the stack context): made
        once by `make()`, kept as long as this Program. Living on the Program, an entry may
        refer to it without keeping it alive, as a global cache keyed by it would."""
        memo: dict[object, Any] = self.__dict__.setdefault("_memo", {})
        try:
            return memo[key]  # type: ignore[no-any-return]
        except KeyError:
            value = memo[key] = make()
            return value

    def try_symbol_address(self, name: str) -> int | None:
        """symbol_address(), or None when no source knows the name."""
        return symbol_order.address_of(self, name)

    def vmcoreinfo_value(self, name: str) -> int | None:
        """What VMCOREINFO's SYMBOL() says for an entry that is a pointer's value rather than
        an address (mem_section: the root array); None for every other name."""
        return symbol_order.vmcoreinfo_value(self, name)


def open_program(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                 vmcoreinfo: str | os.PathLike[str] | None = None) -> Program:
    return Program.open(paths, vmcoreinfo)
