"""`vmcorekit ptov DUMP PADDR...`: physical to kernel virtual (the direct map), like crash's ptov.

    vmcorekit ptov DUMP 1000000         VIRTUAL           PHYSICAL
                                        ffff8aee01000000  1000000

The direct map's base comes from the dump's address space (x86_64: page_offset_base as found
in the kernel's page tables; arm64: PAGE_OFFSET and PHYS_OFFSET), never from a constant.
"""
from __future__ import annotations

import click

from ..errors import VmcorekitError, note
from .common import dump_arguments, emit_json, open_program, parse_address


@click.command("ptov")
@dump_arguments
@click.argument("addresses", nargs=-1, required=True, metavar="PADDR...")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, addresses: tuple[str, ...], as_json: bool) -> None:
    """Physical addresses (hex) as kernel virtual addresses in the direct map (__va)."""
    paddrs = [parse_address(a) for a in addresses]
    with open_program(dump, vmcoreinfo_file) as prog:
        space = prog.space
        region = space.direct_map()
        if region is None:
            raise VmcorekitError("the direct map of physical memory was not found in this dump: "
                                 "no physical address can be given its virtual one")
        ranges = prog.phys.ranges()
        rows = []
        for pa in paddrs:
            va = space.phys_to_virt(pa)
            in_dump = any(r.start <= pa < r.end for r in ranges)
            if va is None:
                note(f"{pa:#x}: beyond the direct map ({region.start:#x}-{region.end:#x})")
            rows.append({"paddr": f"{pa:#x}", "vaddr": None if va is None else f"{va:#x}", "in_dump": in_dump})
        if as_json:
            emit_json({"direct_map": {"start": f"{region.start:#x}", "end": f"{region.end:#x}"}, "addresses": rows})
            return
        lines = ["VIRTUAL           PHYSICAL"]
        for r in rows:
            va = "(none)" if r["vaddr"] is None else r["vaddr"][2:]
            lines.append(f"{va:<16}  {r['paddr'][2:]}")
        click.echo("\n".join(lines))
