"""`vmcorekit timer DUMP`: pending timers, as crash's timer (the wheel) and timer -r (hrtimers)."""
from __future__ import annotations

import click

from .common import dump_arguments, emit_json, json_convention, open_program

_ADDR = {"base", "timer", "function"}


@click.command("timer")
@dump_arguments
@click.option("-r", "hrtimers", is_flag=True, help="hrtimers: each CPU's clock bases and their queued timers.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, hrtimers: bool, as_json: bool) -> None:
    """Pending timers, as crash's timer: the timer wheel per CPU and base (EXPIRES in jiffies,
    TTE time to expiry), or with -r the hrtimers per CPU and clock (nanoseconds)."""
    from ..kernel.timers import hrtimer_bases, jiffies, timer_wheel
    from ..util.text import printable
    with open_program(dump, vmcoreinfo_file) as prog:
        if hrtimers:
            hb = hrtimer_bases(prog)
        else:
            now = jiffies(prog)
            wheel = timer_wheel(prog)
    lines: list[str] = []
    if hrtimers:
        if as_json:
            emit_json({"hrtimer_bases": [json_convention(b.as_dict(), _ADDR) for b in hb]})
            return
        cpu = None
        for b in hb:
            if b.cpu != cpu:
                cpu = b.cpu
                lines.append(f"CPU: {cpu}")
            lines.append(f"  CLOCK: {b.index}  HRTIMER_CLOCK_BASE: {b.address:016x}  [{b.get_time or '?'}]")
            if not b.timers:
                lines.append("       (empty)")
                continue
            lines.append("       CURRENT")
            lines.append(f"  {b.now if b.now is not None else '?':>12}")
            lines.append("   SOFTEXPIRES       EXPIRES            TTE         HRTIMER           FUNCTION")
            for t in b.timers:
                tte = "?" if b.now is None else str(t.expires - b.now)
                lines.append(printable(f"  {t.softexpires:>12}  {t.expires:>12}  {tte:>13}  {t.address:016x}  "
                                       f"{t.function:016x} <{t.symbol or '?'}>"))
        click.echo("\n".join(lines))
        return
    if as_json:
        emit_json({"jiffies": now, "timer_bases": [json_convention(b.as_dict(), _ADDR) for b in wheel]})
        return
    lines += ["JIFFIES", f"{now}"]
    for b in wheel:
        lines.append(f"TIMER_BASES[{b.cpu}][{b.name}]: {b.address:016x}")
        if not b.timers:
            lines.append("  (none)")
            continue
        lines.append("     EXPIRES        TTE         TIMER_LIST           FUNCTION")
        for t in b.timers:
            lines.append(printable(f"  {t.expires:>10}  {t.expires - now:>9}  {t.address:016x}  "
                                   f"{t.function:016x} <{t.symbol or '?'}>"))
    click.echo("\n".join(lines))
