"""`vmcorekit irq DUMP`: interrupts, as crash's irq (-s: counts per CPU, as /proc/interrupts)."""
from __future__ import annotations

import click

from .common import dump_arguments, emit_json, json_convention, open_program


@click.command("irq")
@dump_arguments
@click.option("-s", "stats", is_flag=True, help="Counts per CPU, chip and handler names, as /proc/interrupts.")
@click.option("-a", "all_irqs", is_flag=True, help="Also descriptors without a handler.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, stats: bool, all_irqs: bool, as_json: bool) -> None:
    """Interrupts: IRQ IRQ_DESC CHIP NAME, as crash's irq; -s the counts per CPU."""
    from ..kernel.irqs import irq_table
    from ..util.text import printable
    with open_program(dump, vmcoreinfo_file) as prog:
        irqs = irq_table(prog, all_irqs=all_irqs)
    if as_json:
        emit_json({"irqs": [json_convention(i.as_dict(), {"desc"}) for i in irqs]})
        return
    if not stats:
        click.echo(" IRQ      IRQ_DESC       HWIRQ  CHIP            NAME")
        for i in irqs:
            click.echo(printable(f"{i.irq:4}  {i.desc:016x} {i.hwirq:6}  {i.chip or '-':<14}  "
                                 f"{', '.join(a or '-' for a in i.actions)}"))
        return
    cpus = sorted({c for i in irqs for c in i.counts})
    click.echo("      " + "".join(f"{'CPU' + str(c):>11}" for c in cpus))
    for i in irqs:
        counts = "".join(f"{i.counts.get(c, 0):>11}" for c in cpus)
        click.echo(printable(f"{i.irq:4}: {counts}  {i.chip or '-':<14} {i.hwirq:>5}  "
                             f"{', '.join(a or '-' for a in i.actions)}"))
