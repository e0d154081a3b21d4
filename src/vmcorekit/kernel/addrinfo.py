"""What a kernel address is, as crash's `kmem ADDR` says it: kernel or module text/data (the
symbol), a task's kernel stack, a slab object (cache, object start, allocated or free), a
page-cache page (the file), and the struct page with its flags.

    describe_address(prog, addr)        # AddressInfo: facts, one line each, and the page
    describe_address(prog, paddr, physical=True)

Every fact is looked up independently: a failing lookup is a note on the answer, not an error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import MemoryReadError, TypeLookupError, VmcorekitError
from ..program.objects import Object

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["AddressInfo", "PageInfo", "describe_address"]

_MAX_NAME = 256


@dataclass
class PageInfo:
    page: int
    pfn: int
    physical: int
    flags: int
    flag_names: list[str]
    refcount: int | None
    mapping: int
    index: int

    def as_dict(self) -> dict[str, Any]:
        return {"struct_page": self.page, "pfn": self.pfn, "physical": self.physical, "flags": self.flags,
                "flag_names": self.flag_names, "refcount": self.refcount, "mapping": self.mapping,
                "index": self.index}


@dataclass
class AddressInfo:
    address: int
    facts: list[dict[str, Any]] = field(default_factory=list)  # {"kind", "text", ...}
    page: PageInfo | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"address": self.address, "facts": self.facts,
                "page": None if self.page is None else self.page.as_dict(), "notes": self.notes}


def _flag_names(prog: "Program", flags: int) -> list[str]:
    try:
        enums = prog.types.lookup("enum pageflags").strip_typedefs().enumerators or []
    except (TypeLookupError, VmcorekitError):
        return []
    seen: set[int] = set()
    out = []
    for name, bit in enums:  # the first name of a bit is its own; later ones are aliases
        if name.startswith("__NR") or name == "NR_PAGEFLAGS" or bit in seen or not 0 <= bit < 64:
            continue
        seen.add(bit)
        if flags >> bit & 1:
            out.append(name[3:].lower() if name.startswith("PG_") else name)
    return out


def _page_info(prog: "Program", page: int) -> PageInfo:
    from .memmap import page_to_pfn
    p = Object(prog, "struct page", address=page)
    flags = int(p.flags)
    try:
        ref = int(p._refcount.counter)
    except (VmcorekitError, LookupError, AttributeError):
        ref = None
    pfn = page_to_pfn(prog, page)
    return PageInfo(page, pfn, pfn * prog.page_size, flags, _flag_names(prog, flags), ref,
                    int(p.mapping), int(p.index))


def _task_stack(prog: "Program", addr: int) -> dict[str, Any] | None:
    from .tasks import for_each_task_address
    size = max(prog.platform.thread_size, prog.page_size)
    o_stack = prog.offsetof("struct task_struct", "stack")
    for t in for_each_task_address(prog, idle=True, on_error="warn"):
        base = prog.read_pointer(t + o_stack)
        if base <= addr < base + size:
            task = Object(prog, "struct task_struct", address=t)
            comm = bytes(task.comm.string_()).decode("utf-8", "backslashreplace")
            return {"kind": "task stack", "task": t, "pid": int(task.pid), "comm": comm,
                    "text": f"{addr:x}: kernel stack of PID {int(task.pid)} ({comm}), task {t:x}, "
                            f"stack {base:x}-{base + size:x}"}
    return None


def _module(prog: "Program", addr: int) -> dict[str, Any] | None:
    from .modules import for_each_module, module_address_range
    for mod in for_each_module(prog, on_error="warn"):
        try:
            base, size = module_address_range(mod)
        except (TypeLookupError, MemoryReadError):
            continue
        if base <= addr < base + size:
            name = mod.name.string_().decode("utf-8", "backslashreplace")
            return {"kind": "module", "module": name, "text": f"{addr:x}: in module {name} "
                    f"({base:x}-{base + size:x})"}
    return None


def _slab(prog: "Program", addr: int, page: int) -> dict[str, Any] | None:
    from . import slab as S
    cache_addr = S.slab_of_page(prog, page)
    if cache_addr is None:
        return None
    head = S._compound_head(prog, page)
    c = Object(prog, "struct kmem_cache", address=cache_addr)
    name = prog.read_cstring(int(c.name), 64).decode("utf-8", "backslashreplace")
    objects, _, _ = S._slab_fields(prog, head)
    from .memmap import page_to_virt
    base = page_to_virt(prog, head) + S._red_left(c)
    stride = int(c.size)
    i = (addr - base) // stride
    if not 0 <= i < objects:
        return {"kind": "slab", "cache": cache_addr, "name": name,
                "text": f"{addr:x}: in slab {head:x} of cache {name}, outside its objects"}
    obj = base + i * stride
    state = "unknown"
    for s in S.cache_slabs(prog, cache_addr):
        if s.page == head:
            listing = S.slab_objects(prog, cache_addr, [s], s.objects)
            state = "allocated" if dict(listing[0][2]).get(obj) else "free"
            break
    else:
        state = "allocated"  # on no freelist-carrying list: a full slab
    return {"kind": "slab object", "cache": cache_addr, "name": name, "object": obj, "state": state,
            "text": f"{addr:x}: {state} object {obj:x}+{addr - obj:#x} of slab cache {name} "
                    f"(kmem_cache {cache_addr:x}, object size {int(c.object_size)})"}


def _file_page(prog: "Program", info: PageInfo) -> dict[str, Any] | None:
    """A page-cache page: page->mapping is an address_space (bit 0 clear; anonymous and movable
    mappings set bits 0/1), its host the inode; the name is the inode's first dentry's."""
    m = info.mapping
    if not m or m & 3:
        return None
    host = int(Object(prog, "struct address_space", address=m).host)
    if not host:
        return None
    inode = Object(prog, "struct inode", address=host)
    ino = int(inode.i_ino)
    name = "?"
    first = int(inode.i_dentry.first)
    if first:
        o = prog.offsetof("struct dentry", "d_alias") if prog.types.has_member("struct dentry", "d_alias") \
            else prog.offsetof("struct dentry", "d_u")
        name = _dentry_path(prog, first - o)
    return {"kind": "page cache", "inode": host, "ino": ino, "file": name, "index": info.index,
            "text": f"page cache of {name} (inode {host:x}, ino {ino}) at page index {info.index}"}


def _head_info(prog: "Program", page: int, info: PageInfo) -> PageInfo:
    """The compound head's PageInfo (a tail page's mapping is no address_space)."""
    from .slab import _compound_head
    head = _compound_head(prog, page)
    return info if head == page else _page_info(prog, head)


def _dentry_path(prog: "Program", dentry: int) -> str:
    """The dentry's path from its filesystem's root (d_parent up to the root, which is its own
    parent), bounded; the mount it is seen through is not known from a page."""
    parts: list[str] = []
    d = Object(prog, "struct dentry", address=dentry)
    for _ in range(64):
        parent = int(d.d_parent)
        if parent == d.address_ or not parent:
            break
        parts.append(prog.read_cstring(int(d.d_name.name), _MAX_NAME).decode("utf-8", "backslashreplace"))
        d = Object(prog, "struct dentry", address=parent)
    return "/" + "/".join(reversed(parts))


def describe_address(prog: "Program", addr: int, *, physical: bool = False) -> AddressInfo:
    """Everything `addr` is (see the module docstring); `physical` takes it as a physical address."""
    from .memmap import page_to_virt, pfn_to_page, virt_to_page
    out = AddressInfo(addr)

    def attempt(what: str, fn: Any) -> Any:
        try:
            return fn()
        except (VmcorekitError, LookupError, AttributeError, ValueError) as e:
            out.notes.append(f"{what}: {e}")
            return None

    if physical:
        page = attempt("struct page", lambda: pfn_to_page(prog, addr // prog.page_size))
        vaddr = attempt("direct map", lambda: page_to_virt(prog, page) + addr % prog.page_size) \
            if page is not None else None
    else:
        vaddr = addr
        page = attempt("struct page", lambda: virt_to_page(prog, addr))
    if vaddr is not None and not physical:
        sym = prog.symbols.lookup(vaddr)
        if sym is not None:
            kind = "text" if sym.is_text else "data"
            where = "module" if sym.module else "kernel"
            off = vaddr - sym.address
            out.facts.append({"kind": f"{where} {kind}", "symbol": sym.name, "offset": off,
                              **({"module": sym.module} if sym.module else {}),
                              "text": f"{vaddr:x} ({sym.type}) {sym.name}{f'+{off}' if off else ''}"
                                      f"{f' [{sym.module}]' if sym.module else ''}"})
        mod = attempt("modules", lambda: _module(prog, vaddr))
        if mod is not None and not any(f["kind"].startswith("module") for f in out.facts):
            out.facts.append(mod)
        st = attempt("task stacks", lambda: _task_stack(prog, vaddr))
        if st is not None:
            out.facts.append(st)
    if page is None:
        return out
    info = attempt("struct page", lambda: _page_info(prog, page))
    out.page = info
    if info is None:
        return out
    if vaddr is not None:
        sl = attempt("slab", lambda: _slab(prog, vaddr, page))
        if sl is not None:
            out.facts.append(sl)
    fp = None
    if not any(f["kind"] == "slab object" for f in out.facts):
        fp = attempt("page cache", lambda: _file_page(prog, _head_info(prog, page, info)))
    if fp is not None:
        out.facts.append(fp)
    return out


