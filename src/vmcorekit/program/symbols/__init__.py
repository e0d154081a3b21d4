"""Kernel symbols from the dump alone: vmlinux's kallsyms tables (located by VMCOREINFO) plus
each loaded module's own symbol table; a System.map or a vmlinux ELF may stand in for kallsyms.

    table = kernel_symbols(prog)            # what prog.symbols gives
    table.address_of("init_task")           # name -> address (SymbolError if unknown)
    table.lookup(addr)                      # -> Symbol(name, address, size, type, module) | None
    table.format(addr)                      # "schedule+0x1f/0x40", "lo_open+0x10/0x80 [loop]"
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...errors import SymbolError
from .recover import lacks_data_symbols, recover_early
from .table import KERNEL, Symbol, SymbolTable, distance_sizes

__all__ = ["Symbol", "SymbolTable", "kernel_symbols", "vmlinux_table"]

log = logging.getLogger(__name__)

_IMAGE_WINDOW = 1 << 31


def _image_start(names: Sequence[str], addrs: np.ndarray, near: int | None) -> int:
    """Lowest address of the kernel image: `_text`, else `_stext`, else the lowest symbol
    within 2 GiB of `near`. Symbols below it (x86_64's zero-based per-CPU variables,
    absolute values such as kexec_control_code_size) are not addresses."""
    found: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in ("_text", "_stext") and n not in found:
            found[n] = int(addrs[i])
            if len(found) == 2:
                break
    for n in ("_text", "_stext"):
        if n in found:
            return found[n]
    if near is not None and len(addrs):
        lo = max(0, near - _IMAGE_WINDOW)
        sel = addrs[(addrs >= np.uint64(lo)) & (addrs < np.uint64(min(near + _IMAGE_WINDOW, 2**64 - 1)))]
        if len(sel):
            return int(sel.min())
    return int(addrs.min()) if len(addrs) else 0


def _text_ranges(index: Mapping[str, int]) -> list[tuple[int, int]]:
    out = []
    for lo, hi in (("_stext", "_etext"), ("_sinittext", "_einittext")):
        if lo in index and hi in index and index[lo] < index[hi]:
            out.append((index[lo], index[hi]))
    return out


def vmlinux_table(names: list[str], addrs: np.ndarray, types: bytes, *, source: str,
                  near: int | None = None, problems: Sequence[str] = ()) -> SymbolTable:
    """A SymbolTable of vmlinux symbols, kallsyms-style sizes within the image."""
    start = _image_start(names, addrs, near)
    addressable = addrs >= np.uint64(start)
    want = {"_stext", "_etext", "_sinittext", "_einittext"}
    index: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in want and n not in index:
            index[n] = int(addrs[i])
    groups = np.where(addressable, KERNEL, -2)
    return SymbolTable(names, addrs, types, None, (), distance_sizes(addrs, groups), addressable,
                       source=source, text_ranges=_text_ranges(index), problems=problems)


def _relocate(names: list[str], addrs: np.ndarray, shift: int) -> np.ndarray:
    """Link-time addresses -> run-time: KASLR moves the image, not the per-CPU offsets or
    absolute values below it."""
    if not shift:
        return addrs
    start = _image_start(names, addrs, None)
    moved = addrs >= np.uint64(start)
    out = addrs.copy()
    out[moved] = (addrs[moved] + np.uint64(shift & (2**64 - 1))) & np.uint64(2**64 - 1)
    return out


def _check_anchors(names: list[str], addrs: np.ndarray, anchors: Mapping[str, int],
                   what: str) -> list[str]:
    """VMCOREINFO's SYMBOL() values that the file confirms; SymbolError if it confirms none of
    those it has (the file is for another kernel, or the KASLR shift is wrong)."""
    want = {k: v for k, v in anchors.items() if not k.startswith("kallsyms_")}
    have: dict[str, set[int]] = {}
    for i, n in enumerate(names):
        if n in want:
            have.setdefault(n, set()).add(int(addrs[i]))
    matched = [n for n, vals in have.items() if want[n] in vals]
    if have and not matched:
        detail = ", ".join(f"{n}: file {min(v):#x} vs dump {want[n]:#x}" for n, v in list(have.items())[:3])
        raise SymbolError(f"{what} does not match this dump ({detail})")
    return matched


def _kallsyms_part(prog: Any) -> tuple[SymbolTable, bool]:
    """vmlinux's symbols from kallsyms, and whether data symbols had to be recovered."""
    from .kallsyms import read_kallsyms

    vi = prog.vmcoreinfo
    space = getattr(prog, "space", None)
    ps = int(getattr(space, "pointer_size", 8) or 8)
    order = getattr(space, "byteorder", "little")
    k = read_kallsyms(prog.read, vi.symbols, pointer_size=ps, byteorder=order)
    log.debug("kallsyms: %s", "; ".join(k.notes))
    source = f"kallsyms ({k.encoding}, {len(k)} symbols)"
    names, addrs, types = k.names, k.addresses, k.types
    recovered = False
    if lacks_data_symbols(k.types):
        # CONFIG_KALLSYMS_ALL=n: kallsyms has functions only. Recover what the image still
        # says about its data (BTF, exported symbols); the rest waits for the types.
        rec = recover_early(prog.read, k.names, k.addresses, k.types, byteorder=order,
                            page_size=int(getattr(prog, "page_size", 4096) or 4096),
                            vmcoreinfo=dict(vi.symbols))
        for n in rec.notes:
            log.info("kallsyms has no data symbols: %s", n)
        if len(rec):
            names = k.names + rec.names
            addrs = np.concatenate([k.addresses, np.array(rec.addresses, dtype=np.uint64)])
            types = k.types + bytes(rec.types)
        source += f", functions only; {len(rec)} data symbols recovered"
        recovered = True
    return vmlinux_table(names, addrs, types, near=vi.symbols.get("kallsyms_names"),
                         source=source), recovered


def _file_part(prog: Any, system_map: str | os.PathLike[str] | None,
               vmlinux: str | os.PathLike[str] | None) -> SymbolTable:
    vi = prog.vmcoreinfo
    shift = vi.kerneloffset
    if vmlinux is not None:
        from .elfsyms import read_elf_symbols

        e = read_elf_symbols(vmlinux)
        if e.build_id and vi.build_id and e.build_id.lower() != vi.build_id.lower():
            raise SymbolError(f"{os.fspath(vmlinux)}: build ID {e.build_id} differs from the "
                              f"dump's {vi.build_id}")
        names, addrs, types = e.names, e.addresses, e.types
        what = os.fspath(vmlinux)
    else:
        from .sysmap import read_system_map

        assert system_map is not None
        names, addrs, types = read_system_map(system_map)
        what = os.fspath(system_map)
    addrs = _relocate(names, addrs, shift)
    _check_anchors(names, addrs, vi.symbols, what)
    return vmlinux_table(names, addrs, types, source=f"{what} (+{shift:#x})")


def kernel_symbols(prog: Any, system_map: str | os.PathLike[str] | None = None,
                   vmlinux: str | os.PathLike[str] | None = None, *,
                   modules: bool = True) -> SymbolTable:
    """vmlinux symbols (from `vmlinux` or `system_map` when given, shifted by KERNELOFFSET and
    checked against VMCOREINFO; else from the in-memory kallsyms) plus loaded modules' symbols.

    `prog` needs `.read(addr, n)`, `.vmcoreinfo` and, for modules, `.types` if it has them.
    Module symbols are read on first need (see SymbolTable.defer); what cannot be read is
    reported in the table's `problems`."""
    recovered = False
    if vmlinux is not None or system_map is not None:
        kern = _file_part(prog, system_map, vmlinux)
    else:
        kern, recovered = _kallsyms_part(prog)
    if recovered:
        # Per-CPU variables and the modules list need BTF, which needs this table: later.
        kern.defer(lambda: _recovered_part(prog, kern, modules), "recovered data symbols")
    elif modules:
        kern.defer(lambda: _modules_part(prog, kern), "module symbols")
    return kern


def _recovered_part(prog: Any, kern: SymbolTable, modules: bool) -> SymbolTable:
    from .recover import recover_late

    rec = recover_late(prog, kern)
    late = vmlinux_table(rec.names, np.array(rec.addresses, dtype=np.uint64), bytes(rec.types),
                         source=f"{len(rec)} recovered (per-CPU, modules, timekeeper)")
    late.problems += [n for n in rec.notes if "not recovered" in n]
    parts = [late]
    if modules:
        head = rec.addresses[rec.names.index("modules")] if "modules" in rec.names else None
        try:
            parts.append(_modules_part(prog, kern, head))
        except SymbolError as e:
            late.problems.append(f"module symbols: {e}")
    return SymbolTable.concat(parts, source=" + ".join(p.source for p in parts))


def _modules_part(prog: Any, kern: SymbolTable, head: int | None = None) -> SymbolTable:
    from .modules import module_symbols

    try:
        if head is None:
            head = kern.address_of("modules")
    except SymbolError:
        raise SymbolError("no `modules` symbol: module symbols not loaded") from None
    table = module_symbols(prog, head)
    for p in table.problems:
        log.warning("%s", p)
    return table
