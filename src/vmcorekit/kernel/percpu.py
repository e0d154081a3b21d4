"""Per-CPU data: the one place that knows how a per-CPU variable of one CPU is found.

    nr_cpu_ids(prog)                      # 2: how many CPU numbers the kernel uses
    per_cpu_offset(prog, 1)               # __per_cpu_offset[1]
    per_cpu(prog, "runqueues", 1)         # address of CPU 1's struct rq (raw, no types needed)
    per_cpu(prog["runqueues"], 1)         # the same as a typed object (drgn's per_cpu)
    per_cpu_ptr(ptr, 1)                   # CPU 1's instance behind a per-CPU pointer

A per-CPU variable's symbol value plus `__per_cpu_offset[cpu]` is its address on `cpu`: on
x86_64 the section is linked at 0 (the symbol is an offset), elsewhere the offsets count from
`__per_cpu_start`; either way the sum is right, so no architecture test is needed here.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, overload

from ..errors import (CorruptKernelDataError, MemoryReadError, ObjectError, SymbolError,
                      VmcorekitError)
from ..program.objects import Object
from ..program.types.model import TypeKind

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["nr_cpu_ids", "per_cpu_offset", "per_cpu", "per_cpu_ptr", "note_cpus", "MAX_CPUS"]

# Linux's NR_CPUS tops out at 8192 (x86 MAXSMP); anything beyond is a corrupt nr_cpu_ids.
MAX_CPUS = 8192
_MASK = 0xFFFFFFFFFFFFFFFF


def note_cpus(prog: "Program") -> list[int]:
    """CPU numbers the dump has register notes for (empty when the notes do not decode)."""
    try:
        return sorted({c.cpu for c in prog.cpus})
    except (VmcorekitError, ValueError, struct.error):
        return []


def _read_nr_cpu_ids(prog: "Program") -> tuple[int | None, int | None]:
    """(address, value) of the kernel's nr_cpu_ids; value None when there is no such symbol.
    Raises MemoryReadError when the symbol is known but its page is not. Read once per dump:
    every per-CPU helper asks."""
    return prog.memo(_read_nr_cpu_ids, lambda: _read_nr_cpu_ids_once(prog))


def _read_nr_cpu_ids_once(prog: "Program") -> tuple[int | None, int | None]:
    addr = prog.try_symbol_address("nr_cpu_ids")
    if addr is None:
        return None, None
    return addr, prog.read_u32(addr)


def nr_cpu_ids(prog: "Program", *, strict: bool = True) -> int:
    """How many CPU numbers the kernel uses (`nr_cpu_ids`); the number of CPU notes (at least
    1) for a kernel without the symbol (no SMP, or no data symbols). A value that does not
    read or is no CPU count raises CorruptKernelDataError, or with strict=False gives the
    note count too (what a stack trace needs: something to go on)."""
    try:
        addr, n = _read_nr_cpu_ids(prog)
    except MemoryReadError as e:
        if strict:
            raise CorruptKernelDataError(f"nr_cpu_ids does not read: {e}") from None
        n = None
    else:
        if n is not None and not 0 < n <= MAX_CPUS:
            if strict:
                raise CorruptKernelDataError(f"nr_cpu_ids is {n}, not a CPU count (1..{MAX_CPUS})")
            n = None
    return n if n is not None else max(1, len(note_cpus(prog)))


def per_cpu_offset(prog: "Program", cpu: int) -> int:
    """`__per_cpu_offset[cpu]`: what to add to a per-CPU symbol for `cpu`'s instance.
    ObjectError for a CPU number the kernel does not use or a dump without the table."""
    if cpu < 0:
        raise ObjectError(f"CPU {cpu} is negative")
    try:
        _, n = _read_nr_cpu_ids(prog)
    except MemoryReadError:
        n = None  # the bound is unknown, not the offset
    if n is not None and cpu >= n:
        raise ObjectError(f"CPU {cpu} is beyond nr_cpu_ids ({n})")
    base = prog.try_symbol_address("__per_cpu_offset")
    if base is None:
        raise ObjectError("per-CPU access needs the __per_cpu_offset symbol")
    return prog.read_pointer(base + cpu * prog.platform.pointer_size)


@overload
def per_cpu(var: Object, cpu: int, /) -> Object: ...
@overload
def per_cpu(prog: "Program", name_or_offset: str | int, cpu: int, /) -> int: ...


def per_cpu(target: "Object | Program", a: "str | int", b: int | None = None) -> "Object | int":
    """`cpu`'s instance of a per-CPU variable. Raw: per_cpu(prog, "runqueues", cpu) (or a
    per-CPU offset instead of the name) gives its address. Typed, as drgn's per_cpu:
    per_cpu(prog["runqueues"], cpu) gives the object (struct rq of `cpu`)."""
    if isinstance(target, Object):
        if target.address_ is None:
            raise ObjectError("per_cpu() needs a per-CPU variable (a reference object)")
        addr = (target.address_ + per_cpu_offset(target.prog_, int(a))) & _MASK
        return Object(target.prog_, target.type_, address=addr)
    if b is None:
        raise TypeError("per_cpu(prog, name_or_offset, cpu) needs the CPU")
    off = a if isinstance(a, int) else target.try_symbol_address(a)
    if off is None:
        raise SymbolError(f"per-CPU symbol {a!r} not found")
    return (off + per_cpu_offset(target, b)) & _MASK


def per_cpu_ptr(ptr: Object, cpu: int) -> Object:
    """The CPU's instance of what a per-CPU pointer points to (a pointer value)."""
    if ptr.type_.strip_typedefs().kind != TypeKind.POINTER:
        raise ObjectError(f"per_cpu_ptr() needs a pointer, not {ptr.type_.type_name()!r}")
    off = per_cpu_offset(ptr.prog_, cpu)
    return Object(ptr.prog_, ptr.type_, (int(ptr) + off) & _MASK)
