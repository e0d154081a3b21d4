"""`vmcorekit set DUMP [PID|TASK]`: a task's context, like crash's `set`; inside a `crash`
session it also makes that task the current one (what `bt` and `task` show without
arguments).

    vmcorekit set DUMP              the panic task's context
    vmcorekit set DUMP 1            by pid (a task address works too)
    vmcorekit set DUMP -c 1         the task running on CPU 1
"""
from __future__ import annotations

import click

from ..util.text import printable
from .common import current_session, dump_arguments, emit_json, open_program
from .task import context_json, context_text, resolve_task, task_context, task_target


@click.command("set")
@dump_arguments
@click.argument("target", required=False, metavar="[PID|TASK]")
@click.option("-p", "--pid", "pid", type=int, help="The task with this pid.")
@click.option("-c", "--cpu", type=int, help="The task running on this CPU.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, target: str | None, pid: int | None, cpu: int | None,
            as_json: bool) -> None:
    """Show (in a session: set) the current task context: pid, command, task address, CPU,
    state. Without PID|TASK or --cpu: the current context, at first the panic task."""
    target = task_target(target, pid)
    with open_program(dump, vmcoreinfo_file) as prog:
        addr = resolve_task(prog, target, cpu)
        ctx = task_context(prog, addr)
        session = current_session()
        if session is not None:
            session.task = addr
        if as_json:
            emit_json(context_json(ctx))
        else:
            click.echo(printable(context_text(ctx)))
