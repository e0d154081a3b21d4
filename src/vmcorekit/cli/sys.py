"""`vmcorekit sys DUMP`: system information, like crash's `sys`.

Piped, the lines are crash's (KEYWORD: value, keywords right-aligned to 12 columns) followed by
what crash's `sys` does not show (the panicking task, the oops that led to the panic, taint);
on a terminal a rich table; --json for scripts.
"""
from __future__ import annotations

import time

import click

from ..errors import note, partial_result

from ..util.text import printable
from .common import dump_arguments, emit_json, open_program
from .render import bold

KERNEL_TEXT = "(none: symbols from kallsyms, types from BTF in the dump)"


def _date(epoch: int) -> str:
    """crash's DATE: "Thu Nov 26 08:21:53 UTC 2026" (always UTC here)."""
    t = time.gmtime(epoch)
    return time.strftime("%a %b ", t) + f"{t.tm_mday:2d}" + time.strftime(" %H:%M:%S UTC %Y", t)


def sys_lines(si, dumpfile: str, partial: bool) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(KEYWORD, value) pairs in crash's order; extras after PANIC."""
    from ..kernel.sysinfo import format_uptime

    u = si.uts
    cpus = "unknown" if si.cpus is None else str(si.cpus)
    if si.cpus_offline:
        cpus += f" [OFFLINE: {len(si.cpus_offline)}]"
    up = si.uptime
    la = si.load_average
    machine = u.get("machine", "unknown")
    if si.cpu_mhz:
        machine += f"  ({si.cpu_mhz} Mhz)"
    rows = [
        ("KERNEL", KERNEL_TEXT),
        ("DUMPFILE", dumpfile + ("  [PARTIAL DUMP]" if partial else "")),
        ("CPUS", cpus),
        ("DATE", "unknown" if si.crash_time is None else _date(si.crash_time)),
        ("UPTIME", "unknown" if up is None or up.seconds is None else format_uptime(up.seconds)),
        ("LOAD AVERAGE", "unknown" if la is None else ", ".join(f"{v:.2f}" for v in la)),
        ("TASKS", "unknown" if si.tasks is None else str(si.tasks)),
        ("NODENAME", u.get("nodename", "unknown")),
        ("RELEASE", u.get("release", "unknown")),
        ("VERSION", u.get("version", "unknown")),
        ("MACHINE", machine),
        ("MEMORY", "unknown" if si.memory_bytes is None else _memory(si.memory_bytes)),
        ("PANIC", "" if si.panic is None else f'"{si.panic.message}"'),
    ]
    if si.panic is not None and si.panic.cause:
        rows.append(("PANIC CAUSE", f'"{si.panic.cause}"'))
    if si.panic_pid is not None:
        rows.append(("PANIC TASK", f"{si.panic_pid} ({si.panic_comm}) on CPU {si.panic_cpu}"))
    elif si.panic_cpu is not None:
        rows.append(("PANIC CPU", str(si.panic_cpu)))
    if si.tainted_mask is not None:
        rows.append(("TAINT", "Not tainted" if not si.tainted_mask else
                     f"{' '.join(si.taint_letters)} ({si.tainted_mask:#x})"))
    return rows


def _memory(nbytes: int) -> str:
    """crash's MEMORY (get_memory_size()): a size within 64 MB below a whole GB is shown as
    that GB (the RAM a machine was given, less what firmware keeps)."""
    from ..kernel.sysinfo import format_size

    gib = 1 << 30
    up = -(-nbytes // gib) * gib
    if up - nbytes <= 64 << 20:
        nbytes = up
    return format_size(nbytes)


@click.command("sys")
@dump_arguments
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, as_json: bool) -> None:
    """Release, node name, CPUs, crash date, uptime, load average, tasks, memory, the panic
    message and the task that panicked, taint — from the dump alone."""
    from ..kernel.sysinfo import system_info

    with open_program(dump, vmcoreinfo_file) as prog:
        si = system_info(prog)
        level = prog.phys.info.dump_level
        path = prog.phys.path
        damaged = prog.damaged
    for w in si.warnings:
        note(w)
    if damaged:
        # A damaged dump: what is unknown may be what the intact dump says (exit status 3).
        for u in si.unknown:
            partial_result(f"sys: {u}", reported=False)
    if as_json:
        d = si.as_dict()
        d["dumpfile"] = path
        d["dump_level"] = level
        d.pop("warnings", None)  # said as notes above: `notes` is the one list of them
        emit_json(d)
        return
    rows = sys_lines(si, str(dump), bool(level))
    for k, v in rows:  # crash's layout, on a terminal too
        click.echo(bold(printable(f"{k:>12}:")) + printable(f" {v}"))
