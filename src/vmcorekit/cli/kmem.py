"""`vmcorekit kmem -i DUMP`: memory usage summary, line for line crash's `kmem -i`."""
from __future__ import annotations

from typing import Any

import click

from ..errors import note, partial_result

from .common import dump_arguments, emit_json, meminfo_json, open_program


@click.command("kmem")
@dump_arguments
@click.option("-i", "--info", "info", is_flag=True,
              help="Memory usage summary (total, free, used, shared, buffers, cached, slab, huge "
                   "pages, swap, commit limit / committed), as crash's kmem -i.")
@click.option("-V", "vm_stat", is_flag=True, help="The vm_stat counters (zone and node items), as crash's kmem -V.")
@click.option("--no-shared", is_flag=True,
              help="Skip SHARED (it reads every struct page of the machine).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, info: bool, vm_stat: bool, no_shared: bool,
            as_json: bool) -> None:
    """Kernel memory information, as crash's kmem: -i (the summary) or -V (vm_stat counters)."""
    from ..kernel.meminfo import format_kmem_i, memory_summary

    if info == vm_stat:
        # crash's `kmem` without an option prints its usage; so does this, in one line.
        raise click.UsageError("usage: vmcorekit kmem -i|-V [--json] DUMP (crash's kmem; -i memory summary, "
                               "-V vm_stat counters; other kmem options are not implemented)")
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
