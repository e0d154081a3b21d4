"""The one symbol precedence: which source answers "where is `name`?" (see Program's docstring).

    address_of(prog, name)       # -> int | None, the one order
    vmcoreinfo_value(prog, name)  # -> int | None, SYMBOL() of a value entry (mem_section)

Kept out of core.py so that everything holding a Program-like object (typed objects, test
doubles with just `.vmcoreinfo` and `.symbols`) asks the same order without importing Program.
"""
from __future__ import annotations

from typing import Any

from ..errors import SymbolError
from ..vmcoreinfo.memsection import VMCOREINFO_VALUE_SYMBOLS

__all__ = ["address_of", "vmcoreinfo_value", "VMCOREINFO_VALUE_SYMBOLS"]

# What a symbol table raises for a name it does not have (or when there is none to ask).
NOT_FOUND = (SymbolError, LookupError, ImportError)


def address_of(prog: Any, name: str) -> int | None:
    """Address of `name`, None when no source knows it:
    1. VMCOREINFO's SYMBOL(name): the running kernel's own word for this boot (KASLR applied),
       except the entries whose SYMBOL() is a pointer's value (VMCOREINFO_VALUE_SYMBOLS);
    2. the symbol table (`prog.symbols`): vmlinux's kallsyms, or the System.map / vmlinux
       given instead, then data symbols recovered from the image, then module symbols.
    Errors other than "not there" (an unreadable kallsyms) propagate."""
    if name not in VMCOREINFO_VALUE_SYMBOLS:
        addr = prog.vmcoreinfo.symbols.get(name)
        if addr is not None:
            return addr
    try:
        return prog.symbols.address_of(name)
    except NOT_FOUND:
        return None


def vmcoreinfo_value(prog: Any, name: str) -> int | None:
    """VMCOREINFO's SYMBOL(name) for an entry that holds the variable's value (mem_section
    under SPARSEMEM_EXTREME: the root array), None for any other name."""
    if name not in VMCOREINFO_VALUE_SYMBOLS:
        return None
    return prog.vmcoreinfo.symbols.get(name)
