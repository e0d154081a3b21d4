"""`vmcorekit info DUMP`: what the dump is and what machine it came from."""
from __future__ import annotations

import click

from ..dump import open_dump
from ..program.summary import dump_summary
from ..vmcoreinfo import VmcoreInfo
from .common import emit_json, split_dump_arg
from .render import kv_table, print_table


@click.command("info")
@click.argument("dump", nargs=-1, required=True)
@click.option("--vmcoreinfo", "vmcoreinfo_file", type=click.Path(exists=True, dir_okay=False),
              help="Use this VMCOREINFO text instead of the dump's note.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: tuple[str, ...], vmcoreinfo_file: str | None, as_json: bool) -> None:
    """Format, codec, architecture, release, page size, CPUs, memory ranges, KASLR offset,
    phys_base, crash time, and whether the dump is filtered or incomplete."""
    with open_dump(split_dump_arg(dump)) as phys:
        vi = VmcoreInfo.from_file(vmcoreinfo_file) if vmcoreinfo_file else None
        s = dump_summary(phys, vi)
    if as_json:
        emit_json(s)
        return
    af = s.get("arch_facts", {})

    def hx(v: object) -> str:
        return f"{v:#x}" if isinstance(v, int) else "-" if v is None else str(v)

    rows = [
        ("file", s["path"]),
        ("format", s["format"] + (f" v{s['header_version']}" if s.get("header_version") else "")),
        ("codec", s.get("codec") or "-"),
        ("arch", s.get("arch") or "unknown"),
        ("release", s.get("release") or "unknown"),
        ("build id", s.get("build_id") or "-"),
        ("page size", str(s["page_size"])),
        ("cpus", str(s.get("cpus") if s.get("cpus") is not None else "unknown")),
        ("memory", f"{s['memory_bytes'] / (1 << 20):.1f} MiB in {len(s['memory_ranges'])} ranges"),
        ("KASLR offset", hx(s.get("kaslr_offset"))),
        ("phys_base", hx(af.get("phys_base"))),
        ("paging", f"{af['paging_levels']}-level" if af.get("paging_levels") else "-"),
        ("direct map", hx(af.get("page_offset_base"))),
        ("vmemmap", hx(af.get("vmemmap_base"))),
        ("crash time", s.get("crash_time_utc") or "not recorded"),
        ("dump level", str(s["dump_level"]) if s.get("dump_level") is not None else "unfiltered"),
        ("incomplete", "yes" if s["incomplete"] else "no"),
    ]
    kv_table("Dump", rows)
    print_table("Memory ranges", ["start", "end", "size"],
                [[f"{r['start']:#014x}", f"{r['end']:#014x}", f"{r['size'] >> 10} KiB"] for r in s["memory_ranges"]])
    for p in s.get("problems", []):
        click.echo(f"note: {p}", err=True)
