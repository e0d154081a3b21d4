"""`vmcorekit kmem DUMP`: kernel memory, as crash's kmem: -i summary, -V vm_stat, -s slab
caches, -S CACHE objects, -z zones, -f free areas, ADDR / -p ADDR what an address is."""
from __future__ import annotations

from typing import Any

import click

from ..errors import note, partial_result

from .common import dump_arguments, emit_json, json_convention, meminfo_json, open_program

USAGE = ("usage: vmcorekit kmem -i|-V|-s|-S CACHE|-z|-f|-p ADDR|ADDR [--json] DUMP (crash's kmem; "
         "-i memory summary, -V vm_stat counters, -s slab caches, -S a cache's objects, -z zones, "
         "-f free areas, ADDR what an address is)")


@click.command("kmem")
@dump_arguments
@click.argument("address", required=False, metavar="[ADDR]")
@click.option("-i", "--info", "info", is_flag=True,
              help="Memory usage summary (total, free, used, shared, buffers, cached, slab, huge "
                   "pages, swap, commit limit / committed), as crash's kmem -i.")
@click.option("-V", "vm_stat", is_flag=True, help="The vm_stat counters (zone and node items), as crash's kmem -V.")
@click.option("-s", "slabs", is_flag=True,
              help="Slab caches: objects allocated (off the freelists) and in total, slabs, slab size.")
@click.option("-S", "slab_objects", metavar="CACHE",
              help="One cache's slabs and objects (allocated or free), by name or kmem_cache address.")
@click.option("--max-objects", type=click.IntRange(1), default=4096, show_default=True,
              help="With -S: list at most this many objects.")
@click.option("-z", "zones", is_flag=True, help="Per-zone page counts and watermarks.")
@click.option("-f", "free_areas", is_flag=True, help="Buddy allocator free areas: free blocks per order and zone.")
@click.option("-p", "page_addr", is_flag=True,
              help="ADDR is a physical address: say what its page is.")
@click.option("--no-shared", is_flag=True,
              help="Skip SHARED (it reads every struct page of the machine).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, address: str | None, info: bool, vm_stat: bool,
            slabs: bool, slab_objects: str | None, max_objects: int, zones: bool, free_areas: bool,
            page_addr: bool, no_shared: bool, as_json: bool) -> None:
    """Kernel memory information, as crash's kmem: -i (the summary), -V (vm_stat counters),
    -s (slab caches), -S CACHE (its objects), -z (zones), -f (free areas), ADDR (what the
    address is: slab object, page-cache page, task stack, module or kernel text)."""
    from ..kernel.meminfo import format_kmem_i, memory_summary

    chosen = [info, vm_stat, slabs, slab_objects is not None, zones, free_areas, address is not None]
    if sum(chosen) != 1 or (page_addr and address is None):
        # crash's `kmem` without an option prints its usage; so does this, in one line.
        raise click.UsageError(USAGE)
    if slabs:
        return _slabs(dump, vmcoreinfo_file, as_json)
    if slab_objects is not None:
        return _slab_objects(dump, vmcoreinfo_file, slab_objects, max_objects, as_json)
    if zones or free_areas:
        return _zones(dump, vmcoreinfo_file, free_areas, as_json)
    if address is not None:
        return _address(dump, vmcoreinfo_file, address, page_addr, as_json)
    if vm_stat:
        with open_program(dump, vmcoreinfo_file) as prog:
            groups = vm_stat_counters(prog)
        if as_json:
            emit_json({"vm_stat": groups})
            return
        click.echo("\n".join(format_vm_stat(groups)))
        return
    with open_program(dump, vmcoreinfo_file) as prog:
        mi = memory_summary(prog, shared=not no_shared)
        damaged = prog.damaged
    for n in mi.notes:
        note(n)
    if damaged:
        # A damaged dump: a figure shown as "-" may be one the intact dump gives (exit 3).
        fields = {"TOTAL MEM": mi.total, "FREE": mi.free, "BUFFERS": mi.buffers, "CACHED": mi.cached,
                  "SLAB": mi.slab, "TOTAL SWAP": mi.swap_total, "COMMITTED": mi.committed}
        if not no_shared:
            fields["SHARED"] = mi.shared
        for name, v in fields.items():
            if v is None:
                partial_result(f"kmem: {name} unknown in a damaged dump", reported=False)
    if as_json:
        emit_json(meminfo_json(mi.as_dict()))
        return
    text = format_kmem_i(mi)
    click.echo(text, nl=False)


def _size_k(nbytes: int) -> str:
    return f"{nbytes // 1024}k"


def _slabs(dump: str, vmcoreinfo_file: str | None, as_json: bool) -> None:
    from ..kernel.slab import cache_usage, slab_caches
    with open_program(dump, vmcoreinfo_file) as prog:
        ps = prog.page_size
        rows = [cache_usage(prog, c) for c in slab_caches(prog)]
    if as_json:
        emit_json({"page_size": ps, "caches": [
            {**u.cache.as_dict(ps), "allocated": u.allocated, "free": u.free,
             "slab_size_bytes": ps << u.cache.order} for u in rows]})
        return
    click.echo("CACHE             OBJSIZE  ALLOCATED     TOTAL  SLABS  SSIZE  NAME")
    from ..util.text import printable
    for u in rows:
        c = u.cache
        click.echo(f"{c.address:016x} {c.object_size:8} {u.allocated:10} {c.objects:9} {c.slabs:6} "
                   f"{_size_k(ps << c.order):>6}  {printable(c.name)}")


def _slab_objects(dump: str, vmcoreinfo_file: str | None, which: str, limit: int, as_json: bool) -> None:
    from ..errors import partial_result
    from ..kernel.slab import cache_slabs, cache_usage, find_cache, slab_objects
    from ..util.text import printable
    with open_program(dump, vmcoreinfo_file) as prog:
        try:
            c = find_cache(prog, which)
        except LookupError as e:
            raise click.BadParameter(str(e), param_hint="CACHE") from None
        slabs = cache_slabs(prog, c.address, full=True)
        listing = slab_objects(prog, c.address, slabs, limit)
        alloc = cache_usage(prog, c).allocated
        ps = prog.page_size
    shown = sum(len(objs) for _, _, objs in listing)
    total = sum(s.objects for s in slabs)
    if shown < total:
        partial_result(f"kmem -S {which}: {shown} of {total} objects listed (--max-objects {limit})")
    if as_json:
        emit_json(json_convention({"cache": c.address, "name": c.name, "object_size_bytes": c.object_size,
                                   "stride_bytes": c.size, "slabs": [
            {"slab": s.page, "base": s.base, "where": s.where, "objects": s.objects, "free": nfree,
             "listed": [{"address": a, "allocated": used} for a, used in objs]}
            for s, nfree, objs in listing], "allocated": alloc, "total": total},
            {"cache", "slab", "base", "address"}))
        return
    click.echo("CACHE             OBJSIZE  ALLOCATED     TOTAL  SLABS  SSIZE  NAME")
    click.echo(f"{c.address:016x} {c.object_size:8} {alloc:10} {total:9} {len(slabs):6} "
               f"{_size_k(ps << c.order):>6}  {printable(c.name)}")
    for s, nfree, objs in listing:
        click.echo(f"  {s.where.upper()}:")
        click.echo("  SLAB              MEMORY            NODE  TOTAL  ALLOCATED  FREE")
        click.echo(f"  {s.page:016x}  {s.base:016x}  {'-':>4} {s.objects:6} {s.objects - nfree:10} {nfree:5}")
        for a, allocated in objs:
            click.echo(f"  {'[' + format(a, 'x') + ']' if allocated else ' ' + format(a, 'x')}")


def _zones(dump: str, vmcoreinfo_file: str | None, free_areas: bool, as_json: bool) -> None:
    from ..kernel.zones import zones
    from ..util.text import printable
    with open_program(dump, vmcoreinfo_file) as prog:
        zs = zones(prog)
        ps = prog.page_size
    if as_json:
        emit_json(json_convention({"page_size": ps, "zones": [z.as_dict() for z in zs]}, {"address"}))
        return
    lines: list[str] = []
    for z in zs:
        if lines:
            lines.append("")
        if free_areas:
            # crash's kmem -f: the zone, then one line per order
            lines.append("ZONE  NAME        SIZE    FREE  START_PFN")
            lines.append(f"{z.index:3}   {printable(z.name):<10} {z.spanned:6} {z.free_pages_buddy:7}  {z.start_pfn:#x}")
            if not z.spanned:
                continue
            lines.append("AREA    SIZE  FREE_AREA_STRUCT  BLOCKS   PAGES  MIGRATETYPE")
            for o, fl in enumerate(z.free_lists):
                for mt, head, n in fl:
                    lines.append(f"{o:4} {_size_k(ps << o):>7}  {head:016x}  {n:6} {n << o:7}  {mt}")
            continue
        lines.append(f'NODE: {z.node}  ZONE: {z.index}  ADDR: {z.address:016x}  NAME: "{printable(z.name)}"')
        if not z.spanned:
            lines.append("  [unpopulated]")
            continue
        wm = z.watermarks
        lines.append(f"  SIZE: {z.spanned}  PRESENT: {z.present}  MANAGED: {z.managed}  "
                     f"MIN/LOW/HIGH: {wm.get('min')}/{wm.get('low')}/{wm.get('high')}")
        lines.append(f"  START_PFN: {z.start_pfn:#x}  FREE: {z.vm_stat.get('NR_FREE_PAGES', z.free_pages_buddy)}")
        lines.append("  VM_STAT:")
        w = max((len(n) for n in z.vm_stat), default=0)
        lines += [f"    {n:>{w}}: {v}" for n, v in z.vm_stat.items()]
    if free_areas:
        lines.append("")
        walked = sum(n << o for z in zs for o, fl in enumerate(z.free_lists) for _, _, n in fl)
        counted = sum(z.vm_stat.get("NR_FREE_PAGES", 0) for z in zs)
        lines.append(f"nr_free_pages: {walked}  " + ("(verified)" if walked == counted else
                                                      f"(NR_FREE_PAGES says {counted})"))
    click.echo("\n".join(lines))


def _address(dump: str, vmcoreinfo_file: str | None, text: str, physical: bool, as_json: bool) -> None:
    from ..errors import partial_result
    from ..kernel.addrinfo import describe_address
    from ..util.text import printable
    from .common import resolve_address
    with open_program(dump, vmcoreinfo_file) as prog:
        addr = resolve_address(prog, text)
        info = describe_address(prog, addr, physical=physical)
    for n in info.notes:
        note(n)
    if info.page is None and not info.facts:
        partial_result(f"{addr:#x}: no struct page and no symbol, stack or module holds it "
                       f"(not in the dump, or not a kernel address)")
    if as_json:
        emit_json(json_convention(info.as_dict(), {"address", "struct_page", "physical", "flags", "mapping",
                                                  "task", "cache", "object", "inode"}))
        return
    for f in info.facts:
        click.echo(printable(f["text"]))
    p = info.page
    if p is not None:
        if info.facts:
            click.echo("")
        click.echo("      PAGE        PHYSICAL      MAPPING       INDEX CNT FLAGS")
        cnt = "?" if p.refcount is None else str(p.refcount)
        click.echo(f"{p.page:016x} {p.physical:10x} {p.mapping:16x} {p.index:10x} {cnt:>3} "
                   f"{p.flags:x} {','.join(p.flag_names)}")


# crash's kmem -V sections: (title, enum tag of the items, the counter arrays in kernel order)
VM_STAT_GROUPS = (("VM_ZONE_STAT", "zone_stat_item"), ("VM_NODE_STAT", "node_stat_item"))


def vm_stat_counters(prog: "Any") -> dict[str, dict[str, int]]:
    """{section: {ITEM: value}} for every item of the kernel's stat enums (the NR_VM_*_ITEMS
    count and aliases sharing a value left out), read through kernel.meminfo.vm_stat."""
    from ..errors import TypeLookupError, VmcorekitError
    from ..kernel.meminfo import vm_stat
    out: dict[str, dict[str, int]] = {}
    for title, tag in VM_STAT_GROUPS:
        try:
            enums = prog.types.lookup(f"enum {tag}").strip_typedefs().enumerators or []
        except (TypeLookupError, VmcorekitError):
            note(f"{title}: the dump's BTF has no enum {tag}")
            continue
        seen: set[int] = set()
        items: dict[str, int] = {}
        for name, value in enums:
            if name.startswith("NR_VM_") or value in seen:
                continue
            seen.add(value)
            v = vm_stat(prog, name)
            if v is not None:
                items[name] = v
        out[title] = items
    return out


def format_vm_stat(groups: dict[str, dict[str, int]]) -> list[str]:
    """crash's layout: the section name, then `NAME: value` with names right-aligned."""
    lines: list[str] = []
    for title, items in groups.items():
        if lines:
            lines.append("")
        lines.append(f"  {title}:")
        w = max((len(n) for n in items), default=0)
        lines += [f"{n:>{w + 2}}: {v}" for n, v in items.items()]
    return lines
