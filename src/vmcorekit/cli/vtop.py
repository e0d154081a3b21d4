"""`vmcorekit vtop DUMP ADDR`: virtual to physical, step by step like crash's vtop."""
from __future__ import annotations

from typing import Any

import click

from ..arch.base import Translation
from ..errors import TranslationError
from .common import dump_arguments, emit_json, json_convention, open_program, resolve_address


def format_translation(t: Translation, flag_names: object = None) -> list[str]:
    lines = ["VIRTUAL           PHYSICAL", f"{t.vaddr:<16x}  {t.paddr:x}" if t.paddr is not None
             else f"{t.vaddr:<16x}  (not mapped)", ""]
    if t.region:
        lines.append(f"REGION: {t.region} ({t.method})")
    if t.root is not None:
        lines.append(f"PAGE TABLE ROOT: {t.root:x}")
    for s in t.steps:
        lines.append(f"   {s.level:>4}: {s.entry_paddr:x} => {s.entry:x}")
    if t.steps and t.steps[-1].leaf:
        size = t.page_size
        unit = f"{size >> 30}GB" if size >= 1 << 30 else f"{size >> 20}MB" if size >= 1 << 20 else f"{size >> 10}KB"
        base = t.paddr & ~(size - 1) if t.paddr is not None else 0
        lines.append(f"  PAGE: {base:x}  ({unit})")
        if callable(flag_names):
            e = t.steps[-1].entry
            lines += ["", f"{'PTE':>10}{'PHYSICAL':>17}  FLAGS",
                      f"{e:x}  {base:>8x}  ({'|'.join(flag_names(e))})"]
    if t.error:
        lines.append(f"NOTE: {t.error}")
    return lines


PAGE_HEADER = "      PAGE       PHYSICAL      MAPPING       INDEX CNT FLAGS"


def page_of(prog: Any, paddr: int) -> dict[str, Any] | None:
    """The struct page of the (base) page holding `paddr`, from mem_map, with what crash's vtop
    shows of it: mapping, index, reference count, flags and their PG_ names. None when the
    dump has no mem_map for it or no BTF for struct page."""
    from ..errors import VmcorekitError
    from ..kernel.memmap import find_memory_model
    from ..program.objects import Object
    pfn = paddr // prog.page_size
    try:
        model = find_memory_model(prog.space, prog.vmcoreinfo, pfn + 1)
        tp = prog.types.lookup("struct page")
        chunk = next((c for c in model.chunks if c.pfn_start <= pfn < c.pfn_end), None)
        if chunk is None:
            return None
        addr = chunk.vaddr + (pfn - chunk.pfn_start) * tp.sizeof()
        o = Object(prog, tp, address=addr)
        flags = o.flags.value_()
        info = {"address": addr, "paddr": pfn * prog.page_size, "mapping": o.mapping.value_(),
                "index": o.index.value_(), "count": o._refcount.counter.value_(), "flags": flags}
        try:
            enums = prog.types.lookup("enum pageflags").strip_typedefs().enumerators or []
        except VmcorekitError:
            enums = []
        names: dict[int, str] = {}
        limit = dict(enums).get("__NR_PAGEFLAGS", 64)
        for name, bit in enums:  # the first name of a bit; aliases (PG_checked...) come later
            if bit < limit:
                names.setdefault(bit, name.removeprefix("PG_"))
        info["flag_names"] = [names[b] for b in sorted(names) if flags >> b & 1]
        return info
    except (VmcorekitError, AttributeError):
        return None


def format_page(pg: dict[str, Any]) -> list[str]:
    """crash's vtop PAGE block: columns as crash 8.0.2 aligns them."""
    return ["", PAGE_HEADER,
            f"{pg['address']:016x}  {pg['paddr']:<8x}{pg['mapping']:>16x} {pg['index']:>8x} {pg['count']:>2} "
            f"{pg['flags']:x} {','.join(pg['flag_names'])}".rstrip()]


@click.command("vtop")
@dump_arguments
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, address: str, as_json: bool) -> None:
    """Translate ADDRESS (hex, or a VMCOREINFO symbol) and show each page-table step."""
    with open_program(dump, vmcoreinfo_file) as prog:
        vaddr = resolve_address(prog, address)
        t = prog.space.explain(vaddr)
        pg = page_of(prog, t.paddr) if t.paddr is not None else None
        if as_json:
            emit_json(json_convention(
                {"vaddr": t.vaddr, "paddr": t.paddr, "page_size": t.page_size, "method": t.method,
                 "region": t.region, "root": t.root, "error": t.error,
                 "steps": [s.__dict__ for s in t.steps], "struct_page": pg},
                {"vaddr", "paddr", "root", "table_paddr", "entry_paddr", "entry", "address", "mapping", "flags"}))
            return
        fn = getattr(__import__(f"vmcorekit.arch.{prog.arch}", fromlist=["flag_names"]), "flag_names", None)
        lines = format_translation(t, fn)
        if pg is not None:
            lines += format_page(pg)
        click.echo("\n".join(lines))
        if t.paddr is None:
            raise TranslationError(vaddr, t.error or "does not map")
