"""SymbolTable: kernel and module symbols with fast lookups both ways.

Address -> symbol works like kallsyms: a symbol's size is the distance to the next higher address
in its group (vmlinux, or one module), the first of several aliases at one address wins. Lookups
are a numpy searchsorted over the addresses sorted once. Name -> address is a dict built on first
use (globals win over locals, vmlinux over modules); `symbols_named` gives every duplicate.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import SymbolError, VmcorekitError

KERNEL = -1  # module index of vmlinux symbols


@dataclass(frozen=True, slots=True)
class Symbol:
    name: str
    address: int
    size: int
    type: str  # nm-style type character: T/t text, D/d data, B/b bss, R/r rodata, A absolute, ...
    module: str | None = None  # None for vmlinux

    @property
    def is_text(self) -> bool:
        return self.type in "tTwW"

    @property
    def is_global(self) -> bool:
        return self.type.isupper()

    def end(self) -> int:
        return self.address + self.size

    def __repr__(self) -> str:
        mod = f", module={self.module!r}" if self.module else ""
        return (f"Symbol(name={self.name!r}, address={self.address:#x}, size={self.size:#x}, "
                f"type={self.type!r}{mod})")

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "address": f"{self.address:#x}", "size": self.size,
                "type": self.type, "module": self.module}


def distance_sizes(addresses: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Size of each symbol as kallsyms reckons it: the distance to the next higher address in
    the same group; 0 for the last of a group."""
    n = len(addresses)
    size = np.zeros(n, dtype=np.uint64)
    if n == 0:
        return size
    g = np.asarray(groups, dtype=np.int64)
    order = np.lexsort((addresses, g))
    a = addresses[order]
    go = g[order]
    # Runs of equal (group, address); each run's size reaches the start of the next run.
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = (a[1:] != a[:-1]) | (go[1:] != go[:-1])
    starts = np.flatnonzero(new_run)
    run_of = np.cumsum(new_run) - 1
    run_addr = a[starts]
    run_size = np.zeros(len(starts), dtype=np.uint64)
    if len(starts) > 1:
        same = go[starts[1:]] == go[starts[:-1]]
        run_size[:-1] = np.where(same, run_addr[1:] - run_addr[:-1], 0)
    size[order] = run_size[run_of]
    return size


class SymbolTable:
    """Symbols of one kernel: vmlinux symbols in their source's order, then each module's.

    `addressable[i]` is False for symbols that are not addresses at all (x86_64 per-CPU offsets
    before 6.15, absolute values): they are found by name, never by address."""

    def __init__(self, names: Sequence[str], addresses: np.ndarray, types: bytes,
                 modules: np.ndarray | None = None, module_names: Sequence[str] = (),
                 sizes: np.ndarray | None = None, addressable: np.ndarray | None = None,
                 *, source: str = "", text_ranges: Sequence[tuple[int, int]] = (),
                 problems: Sequence[str] = ()) -> None:
        n = len(names)
        if len(addresses) != n or len(types) != n:
            raise ValueError("names, addresses and types differ in length")
        self._names = list(names)
        self._addr = np.asarray(addresses, dtype=np.uint64)
        self._types = bytes(types)
        self._mod = (np.full(n, KERNEL, dtype=np.int32) if modules is None
                     else np.asarray(modules, dtype=np.int32))
        self.module_names = list(module_names)
        self._addressable = (np.ones(n, dtype=bool) if addressable is None
                             else np.asarray(addressable, dtype=bool))
        self.source = source
        self.text_ranges = [(int(a), int(b)) for a, b in text_ranges]
        self.problems = list(problems)  # what could not be loaded (a module's symbols, ...)
        # Sorted view of the addressable symbols; stable, so the source's order breaks ties
        # (kallsyms puts the preferred alias first).
        idx = np.flatnonzero(self._addressable)
        order = idx[np.argsort(self._addr[idx], kind="stable")]
        self._order = order
        self._sorted = self._addr[order]
        self._size = self._group_sizes() if sizes is None else np.asarray(sizes, dtype=np.uint64)
        self._by_name: dict[str, int] | None = None
        self._dups: dict[str, list[int]] | None = None
        self._pending: Callable[[], SymbolTable] | None = None
        self._pending_what = ""
        self._loading = False

    # -- deferred parts (module symbols) -----------------------------------------------------
    def defer(self, loader: Callable[[], "SymbolTable"], what: str = "modules") -> None:
        """Add `loader()`'s symbols the first time they could matter: an address vmlinux does
        not cover, a name it lacks, iteration. Module symbols wait like this because reading
        them may need prog.types, which may itself need these symbols (to find BTF)."""
        self._pending = loader
        self._pending_what = what

    def load_deferred(self) -> list[str]:
        """Load deferred symbols now; returns the table's problems."""
        loader = self._pending
        if loader is None or self._loading:
            return self.problems
        self._loading = True
        try:
            try:
                extra = loader()
            except VmcorekitError as e:
                self.problems.append(f"{self._pending_what}: {e}")
                return self.problems
            merged = SymbolTable.concat([self, extra], source=f"{self.source} + {extra.source}")
        finally:
            self._pending = None
            self._loading = False
        self.__dict__.update({k: v for k, v in merged.__dict__.items()
                              if k not in ("_pending", "_loading")})
        return self.problems

    @property
    def complete(self) -> bool:
        """False while module symbols are still deferred."""
        return self._pending is None

    def _group_sizes(self) -> np.ndarray:
        """vmlinux, the non-address values, and each module are separate groups."""
        return distance_sizes(self._addr, np.where(self._addressable, self._mod, -2))

    # -- construction helpers ----------------------------------------------------------------
    @classmethod
    def concat(cls, parts: Sequence["SymbolTable"], *, source: str = "",
               problems: Sequence[str] = ()) -> "SymbolTable":
        names: list[str] = []
        module_names: list[str] = []
        addrs, types, mods, sizes, addressable = [], [], [], [], []
        text_ranges: list[tuple[int, int]] = []
        probs: list[str] = []
        for p in parts:
            names += p._names
            addrs.append(p._addr)
            types.append(p._types)
            m = p._mod.copy()
            m[m >= 0] += len(module_names)
            mods.append(m)
            module_names += p.module_names
            sizes.append(p._size)
            addressable.append(p._addressable)
            text_ranges += p.text_ranges
            probs += p.problems
        cat = (lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dtype=dt))  # noqa: E731
        return cls(names, cat(addrs, np.uint64), b"".join(types), cat(mods, np.int32), module_names,
                   cat(sizes, np.uint64), cat(addressable, bool), source=source,
                   text_ranges=text_ranges, problems=probs + list(problems))

    # -- access ------------------------------------------------------------------------------
    def __len__(self) -> int:
        self.load_deferred()
        return len(self._names)

    def __iter__(self) -> Iterator[Symbol]:
        self.load_deferred()
        for i in range(len(self._names)):
            yield self._symbol(i)

    def __repr__(self) -> str:
        return f"<SymbolTable {len(self)} symbols, {len(self.module_names)} modules, {self.source}>"

    def _symbol(self, i: int) -> Symbol:
        m = int(self._mod[i])
        return Symbol(self._names[i], int(self._addr[i]), int(self._size[i]), chr(self._types[i]),
                      self.module_names[m] if m >= 0 else None)

    def _name_index(self) -> dict[str, int]:
        if self._by_name is None:
            # Lowest priority first; later updates win. Within a class the first occurrence
            # wins (built from the reversed list).
            d: dict[str, int] = {}
            upper = np.frombuffer(self._types, dtype=np.uint8)
            is_global = (upper >= ord("A")) & (upper <= ord("Z"))
            is_kernel = self._mod == KERNEL
            for sel in (~is_kernel & ~is_global, ~is_kernel & is_global,
                        is_kernel & ~is_global, is_kernel & is_global):
                idx = np.flatnonzero(sel)[::-1].tolist()
                d.update(zip([self._names[i] for i in idx], idx))
            self._by_name = d
        return self._by_name

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name not in self._name_index() and self._pending is not None:
            self.load_deferred()
        return name in self._name_index()

    def address_of(self, name: str) -> int:
        """Address of `name` (a global vmlinux symbol if several share the name). Accepts
        `module:name` for a module's own symbol."""
        i = self._name_index().get(name)
        if i is None and self._pending is not None:
            self.load_deferred()
            i = self._name_index().get(name)
        if i is None and ":" in name:
            mod, _, sym = name.partition(":")
            for s in self.symbols_named(sym):
                if s.module == mod:
                    return s.address
        if i is None:
            raise SymbolError(f"symbol {name!r} not found")
        return int(self._addr[i])

    def get(self, name: str) -> Symbol | None:
        if name not in self:
            return None
        i = self._name_index().get(name)
        return None if i is None else self._symbol(i)

    def symbols_named(self, name: str) -> list[Symbol]:
        """Every symbol called `name` (static functions and variables repeat), table order."""
        self.load_deferred()
        if self._dups is None:
            seen: dict[str, int] = {}
            dups: dict[str, list[int]] = {}
            for i, nm in enumerate(self._names):
                j = seen.setdefault(nm, i)
                if j != i:
                    dups.setdefault(nm, [j]).append(i)
            self._dups = dups
        if name in self._dups:
            return [self._symbol(i) for i in self._dups[name]]
        i = self._name_index().get(name)
        return [] if i is None else [self._symbol(i)]

    def find(self, name: str) -> list[Symbol]:
        """symbols_named(name), or for `module:name` that module's symbols of that name."""
        found = self.symbols_named(name)
        if not found and ":" in name:
            mod, _, sym = name.partition(":")
            found = [s for s in self.symbols_named(sym) if s.module == mod]
        return found

    def lookup(self, address: int) -> Symbol | None:
        """The symbol containing `address`, or None."""
        found = self._lookup(address)
        if self._pending is not None and (found is None or found.size == 0):
            self.load_deferred()
            found = self._lookup(address)
        return found

    def _lookup(self, address: int) -> Symbol | None:
        if not 0 <= address < 1 << 64 or not len(self._sorted):
            return None
        k = int(np.searchsorted(self._sorted, np.uint64(address), side="right")) - 1
        if k < 0:
            return None
        start = self._sorted[k]
        k = int(np.searchsorted(self._sorted, start, side="left"))  # the first alias
        off = address - int(start)
        first = int(self._order[k])
        while k < len(self._sorted) and self._sorted[k] == start:
            i = int(self._order[k])
            if off < int(self._size[i]):
                return self._symbol(i)
            k += 1
        # A zero-size symbol (the last of its group) still names its own address.
        return self._symbol(first) if off == 0 else None

    def format(self, address: int) -> str:
        """`name+0x1f/0x40 [module]` as the kernel prints %pS; the bare address when unknown."""
        s = self.lookup(address)
        if s is None:
            return f"{address:#x}"
        out = f"{s.name}+{address - s.address:#x}/{s.size:#x}"
        return f"{out} [{s.module}]" if s.module else out

    def symbolize(self, address: int) -> str | None:
        """`name` or `name+0x1f` (module symbols: `name+0x1f [mod]`) for annotating pointers;
        None when no symbol contains the address."""
        s = self.lookup(address)
        if s is None:
            return None
        off = address - s.address
        out = f"{s.name}+{off:#x}" if off else s.name
        return f"{out} [{s.module}]" if s.module else out

    def size_of(self, name: str) -> int:
        """Size of the symbol `address_of(name)` names (kallsyms-style: to the next symbol;
        for per-CPU variables, to the next per-CPU variable)."""
        i = self._name_index().get(name)
        if i is None and name not in self:
            raise SymbolError(f"symbol {name!r} not found")
        i = self._name_index()[name]
        return int(self._size[i])

    def in_text(self, address: int) -> bool:
        """True for an address in kernel or module code."""
        for lo, hi in self.text_ranges:
            if lo <= address < hi:
                return True
        s = self.lookup(address)
        if s is None or not s.is_text:
            return False
        # vmlinux text is covered by text_ranges when the table knows them.
        return s.module is not None or not self.text_ranges

    def modules(self) -> list[str]:
        self.load_deferred()
        return list(self.module_names)

    def arrays(self) -> tuple[list[str], np.ndarray, np.ndarray, bytes, np.ndarray]:
        """(names, addresses, sizes, types, module index) for bulk users; do not modify."""
        self.load_deferred()
        return self._names, self._addr, self._size, self._types, self._mod
