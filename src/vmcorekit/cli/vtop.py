"""`vmcorekit vtop DUMP ADDR`: virtual to physical, step by step like crash's vtop."""
from __future__ import annotations

import click

from ..arch.base import Translation
from ..errors import TranslationError
from .common import dump_arguments, emit_json, open_program, resolve_address


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


@click.command("vtop")
@dump_arguments
@click.argument("address")
@click.option("--json", "as_json", is_flag=True)
def command(dump: str, vmcoreinfo_file: str | None, address: str, as_json: bool) -> None:
    """Translate ADDRESS (hex, or a VMCOREINFO symbol) and show each page-table step."""
    with open_program(dump, vmcoreinfo_file) as prog:
        vaddr = resolve_address(prog, address)
        t = prog.space.explain(vaddr)
        if as_json:
            emit_json({"vaddr": t.vaddr, "paddr": t.paddr, "page_size": t.page_size, "method": t.method,
                       "region": t.region, "root": t.root, "error": t.error,
                       "steps": [s.__dict__ for s in t.steps]})
            return
        fn = getattr(__import__(f"vmcorekit.arch.{prog.arch}", fromlist=["flag_names"]), "flag_names", None)
        click.echo("\n".join(format_translation(t, fn)))
        if t.paddr is None:
            raise TranslationError(vaddr, t.error or "does not map")
