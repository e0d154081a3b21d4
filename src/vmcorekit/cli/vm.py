"""`vmcorekit vm DUMP [PID|TASK]`: a task's memory map, like crash's vm.

    vmcorekit vm DUMP 1        mm, page table root, RSS and total size, then each VMA:
                               its vm_area_struct, start, end, flags and mapped file
"""
from __future__ import annotations

from typing import Any

import click

from ..util.text import printable
from .common import dump_arguments, emit_json, json_convention, open_program
from .files import task_of
from .task import task_context


def vm_text(ctx: dict[str, Any], head: dict[str, Any], rows: list[Any]) -> str:
    cpu = "-" if ctx["cpu"] is None else ctx["cpu"]
    lines = [f'PID: {ctx["pid"]:<6} TASK: {ctx["task"]:x}  CPU: {cpu:<3} COMMAND: "{ctx["command"]}"',
             "       MM               PGD          RSS    TOTAL_VM",
             f'{head["mm"]:16x}  {head["pgd"]:16x}  {head["rss_k"]:>5}k  {head["total_vm_k"]:>7}k']
    if rows:
        lines.append("      VMA           START       END     FLAGS FILE")
        for v in rows:
            lines.append(f"{v.address:16x} {v.start:>10x} {v.end:>10x} {v.flags:>8x} {v.path or ''}".rstrip())
    return "\n".join(lines)


@click.command("vm")
@dump_arguments
@click.argument("target", required=False, metavar="[PID|TASK]")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, target: str | None, as_json: bool) -> None:
    """A task's virtual memory: its mm (page table root, RSS, total size) and every VMA
    (start, end, flags, mapped file), from the maple tree (6.1+) or the VMA list. Without
    PID|TASK: the current task (the panic task)."""
    from ..errors import partial_result
    from ..kernel.tasks import task_rss
    from ..kernel.vma import vmas
    with open_program(dump, vmcoreinfo_file) as prog:
        addr = task_of(prog, target)
        ctx = task_context(prog, addr)
        task = prog.object("struct task_struct", addr)
        mm = int(task.mm)
        kib = prog.page_size // 1024
        head = {"mm": mm, "pgd": 0, "rss_k": 0, "total_vm_k": 0}
        rows: list[Any] = []
        problems: list[str] = []
        if mm:
            m = prog.object("struct mm_struct", mm)
            head.update(pgd=int(m.pgd), rss_k=task_rss(task).crash_rss * kib, total_vm_k=int(m.total_vm) * kib)
            rows = vmas(m, problems)
        for p in problems:
            partial_result(p)
        if as_json:
            emit_json(json_convention({"pid": ctx["pid"], "task": addr, "comm": ctx["command"],
                                       "mm": mm, "pgd": head["pgd"], "rss_bytes": head["rss_k"] * 1024,
                                       "total_vm_bytes": head["total_vm_k"] * 1024,
                                       "vmas": [v.as_dict() for v in rows]},
                                      {"task", "mm", "pgd", "vma", "start", "end", "file"}))
            return
        click.echo(printable(vm_text(ctx, head, rows)))
