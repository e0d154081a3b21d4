"""Interrupts: the irq descriptors and their per-CPU counts, as /proc/interrupts and crash's
`irq -s` show them.

    irq_table(prog)    # [Irq]: number, chip, hardware irq, action names, count per CPU

Descriptors are in the sparse-irq tree: `irq_desc_tree` (an XArray / radix tree, up to 6.4)
or `sparse_irqs` (a maple tree, 6.5+); without SPARSE_IRQ, the `irq_desc[]` array. A count is
desc->kstat_irqs, a per-CPU unsigned int (struct irqstat's cnt from 6.10).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import CorruptKernelDataError, MemoryReadError, TypeLookupError, VmcorekitError, note, partial_result
from ..program.objects import Object

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["Irq", "irq_table"]

_MAX_IRQS = 1 << 20
_MAX_ACTIONS = 64


@dataclass
class Irq:
    irq: int
    desc: int
    chip: str
    hwirq: int
    actions: list[str]
    counts: dict[int, int] = field(default_factory=dict)  # cpu -> count

    def as_dict(self) -> dict[str, Any]:
        return {"irq": self.irq, "desc": self.desc, "chip": self.chip, "hwirq": self.hwirq,
                "actions": self.actions, "counts": {str(c): n for c, n in self.counts.items()}}


def _descs(prog: "Program") -> list[tuple[int, int]]:
    from .xarray import mt_entries, xa_entries
    a = prog.try_symbol_address("sparse_irqs")
    if a is not None:
        return mt_entries(prog, a, limit=_MAX_IRQS)
    a = prog.try_symbol_address("irq_desc_tree")
    if a is not None:
        return xa_entries(prog, a, limit=_MAX_IRQS)
    a = prog.try_symbol_address("irq_desc")
    if a is not None:
        size = prog.types.sizeof("struct irq_desc")
        sym = prog.symbols.get("irq_desc")
        n = min((sym.size // size) if sym is not None and sym.size else 0, _MAX_IRQS)
        return [(i, a + i * size) for i in range(n)]
    return _descs_from_slab(prog)


def _descs_from_slab(prog: "Program") -> list[tuple[int, int]]:
    """Without the tree's symbol (arm64 Debian's kallsyms names no static data), descriptors
    are found where the kernel allocates them, the kmalloc cache their size falls in: an
    allocated object is an irq_desc when its irq_data.common points back at its own
    irq_common_data and its irq_data.irq is a plausible number."""
    from . import slab as S
    size = prog.types.sizeof("struct irq_desc")
    caches = [c for c in S.slab_caches(prog) if c.name.startswith("kmalloc-") and
              not c.name.startswith("kmalloc-rcl") and not c.name.startswith("kmalloc-cg")
              and c.object_size >= size]
    if not caches:
        raise TypeLookupError("none of sparse_irqs, irq_desc_tree, irq_desc is in the symbol "
                              "table and no kmalloc cache fits an irq_desc: irqs unknown")
    cache = min(caches, key=lambda c: c.object_size)
    note(f"irq descriptors: no tree in the symbol table; found by scanning the {cache.name} "
         f"slab cache (checked against each CPU's kstat.irqs_sum)")
    o_common = prog.offsetof("struct irq_desc", "irq_common_data")
    o_data = prog.offsetof("struct irq_desc", "irq_data")
    o_dcommon = o_data + prog.offsetof("struct irq_data", "common")
    o_irq = o_data + prog.offsetof("struct irq_data", "irq")
    out: dict[int, int] = {}
    slabs = S.cache_slabs(prog, cache.address, full=True)
    for _, _, objs in S.slab_objects(prog, cache.address, slabs, _MAX_IRQS):
        for obj, allocated in objs:
            if not allocated:
                continue
            try:
                if prog.read_pointer(obj + o_dcommon) != obj + o_common:
                    continue
                irq = prog.read_u32(obj + o_irq)
            except MemoryReadError:
                continue
            if irq < _MAX_IRQS:
                out.setdefault(irq, obj)
    return sorted(out.items())


def _cstr(prog: "Program", addr: int) -> str:
    if not addr:
        return ""
    try:
        return prog.read_cstring(addr, 64).decode("utf-8", "backslashreplace")
    except MemoryReadError:
        return "?"


def irq_table(prog: "Program", *, all_irqs: bool = False) -> list[Irq]:
    """IRQs with a handler (every descriptor with `all_irqs`), by number, with per-CPU counts."""
    from .cpus import present_cpus
    from .percpu import per_cpu_offset
    if not prog.has_btf:
        raise TypeLookupError("irqs need struct irq_desc's layout, which only BTF gives")
    cpus = present_cpus(prog)  # a panic takes the other CPUs offline; their counts stay
    o_cnt = prog.offsetof("struct irqstat", "cnt") if prog.types.has_member("struct irqstat", "cnt") else 0
    out: list[Irq] = []
    summed = dict.fromkeys(cpus, 0)
    for irq, addr in _descs(prog):
        try:
            d = Object(prog, "struct irq_desc", address=addr)
            ks = int(d.kstat_irqs)
            counts = {}
            if ks:
                for cpu in cpus:
                    counts[cpu] = prog.read_u32((ks + per_cpu_offset(prog, cpu) + o_cnt) & (2**64 - 1))
                    summed[cpu] += counts[cpu]
            actions: list[str] = []
            act = int(d.action)
            while act and len(actions) < _MAX_ACTIONS:
                a = Object(prog, "struct irqaction", address=act)
                actions.append(_cstr(prog, int(a.name)))
                act = int(a.next)
            if act:
                raise CorruptKernelDataError(f"irq {irq}: more than {_MAX_ACTIONS} actions (a loop?)")
            if not actions and not all_irqs:
                continue
            chip = int(d.irq_data.chip)
            name = _cstr(prog, int(Object(prog, "struct irq_chip", address=chip).name)) if chip else ""
            out.append(Irq(irq, addr, name, int(d.irq_data.hwirq), actions, counts))
        except (MemoryReadError, CorruptKernelDataError) as e:
            partial_result(f"irq {irq} (desc {addr:#x}): {e}")
    _check_sums(prog, summed)
    return out


def _check_sums(prog: "Program", summed: dict[int, int]) -> None:
    """Every descriptor's count on a CPU adds up to that CPU's kstat.irqs_sum (both are bumped
    together): a shortfall means descriptors were missed."""
    from .percpu import per_cpu
    if prog.try_symbol_address("kstat") is None:
        return
    for cpu, n in summed.items():
        try:
            k = Object(prog, "struct kernel_stat", address=per_cpu(prog, "kstat", cpu))
            want = int(k.irqs_sum)
        except (VmcorekitError, LookupError):
            return
        if n != want:
            partial_result(f"irqs: CPU {cpu} counts {n} interrupts over the descriptors found, "
                           f"kstat.irqs_sum says {want}: some descriptors were missed")
