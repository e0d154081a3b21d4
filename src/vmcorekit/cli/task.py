"""`vmcorekit task DUMP [PID|TASK]`: a task's context and its task_struct, like crash's task.

    vmcorekit task DUMP                 the panic task (in a session: the current context)
    vmcorekit task DUMP 1               by pid; a task address (hex) works too
    vmcorekit task DUMP -c 1            the task running on CPU 1
    vmcorekit task DUMP 1 -R pid,comm   only these members
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..util.text import printable
from .common import current_session, dump_arguments, emit_json, open_program

if TYPE_CHECKING:
    from ..program import Program

# crash's words for the states of fs/proc/array.c's letters.
STATE_NAMES = {"R": "TASK_RUNNING", "S": "TASK_INTERRUPTIBLE", "D": "TASK_UNINTERRUPTIBLE",
               "T": "TASK_STOPPED", "t": "TASK_TRACED", "X": "EXIT_DEAD", "Z": "EXIT_ZOMBIE",
               "P": "TASK_PARKED", "I": "TASK_IDLE"}


def known_tasks(prog: "Program") -> set[int]:
    """Every task address of the dump: the task list, the threads and each CPU's idle task."""
    from ..kernel.cpus import idle_task_address, present_cpus
    from ..kernel.tasks import for_each_task_address

    def make() -> set[int]:
        out = set(for_each_task_address(prog, idle=True, on_error="warn"))
        for c in present_cpus(prog):
            t = idle_task_address(prog, c)
            if t:
                out.add(t)
        return out
    return prog.memo("cli.task.known_tasks", make)


def panic_task_address(prog: "Program") -> int | None:
    from ..kernel.panic import crash_context
    return prog.memo("cli.task.panic_task", lambda: (lambda t: int(t) if t is not None else None)(
        crash_context(prog).task))


def task_target(target: str | None, pid: int | None) -> str | None:
    """The PID|TASK argument, or --pid's value in its place (checked before the dump opens)."""
    if pid is None:
        return target
    if target is not None:
        raise click.UsageError("give PID|TASK or --pid, not both")
    return str(pid)


def resolve_task(prog: "Program", text: str | None, cpu: int | None = None) -> int:
    """A task address from a pid (decimal), a task address (hex: 0x... or 12+ digits) or a
    CPU; with none of them, the session's current task or the panic task."""
    from ..errors import VmcorekitError
    from ..kernel.cpus import current_task_address, present_cpus
    from ..kernel.tasks import find_task_addresses
    if text is not None and cpu is not None:
        raise click.UsageError("give a PID/TASK or --cpu, not both")
    if cpu is not None:
        t = current_task_address(prog, cpu)
        if not t:
            raise click.BadParameter(f"no task is known to run on CPU {cpu}", param_hint="--cpu")
        return t
    if text is None:
        s = current_session()
        if s is not None and s.task is not None:
            return s.task
        t = panic_task_address(prog)
        if t is None:
            # No panic: like crash, the task on the lowest CPU.
            t = next((current_task_address(prog, c) for c in present_cpus(prog)
                      if current_task_address(prog, c)), None)
        if not t:
            raise VmcorekitError("no panic task and no CPU's task is known; name one")
        return t
    v = text.strip().lower()
    try:
        if v.startswith("0x") or len(v) >= 12:
            addr = int(v, 16)
            if addr not in known_tasks(prog):
                raise click.BadParameter(f"{addr:#x} is not a task of this dump", param_hint="TASK")
            return addr
        pid = int(v, 10)
    except ValueError:
        raise click.BadParameter(f"expected a pid or a task address, got {text!r}") from None
    found = find_task_addresses(prog, pid)
    if not found:
        raise click.BadParameter(f"no task with pid {pid}", param_hint="PID")
    return found[0]


def task_context(prog: "Program", addr: int) -> dict[str, Any]:
    """What crash's `set` prints of a task: pid, command, task, CPU, state (PANIC/ACTIVE)."""
    from ..kernel.cpus import current_task_address, present_cpus
    from ..kernel.tasks import task_comm, task_cpu, task_state_to_char
    t = prog.object("struct task_struct", addr)
    state = STATE_NAMES.get(task_state_to_char(t), "?")
    mark = None
    if addr == panic_task_address(prog):
        mark = "PANIC"
    elif any(current_task_address(prog, c) == addr for c in present_cpus(prog)):
        mark = "ACTIVE"
    return {"pid": int(t.pid), "command": task_comm(t), "task": addr, "cpu": task_cpu(t),
            "state": state, "mark": mark}


def context_text(d: dict[str, Any]) -> str:
    state = d["state"] + (f" ({d['mark']})" if d["mark"] else "")
    cpu = "-" if d["cpu"] is None else d["cpu"]
    return "\n".join([f"    PID: {d['pid']}", f'COMMAND: "{d["command"]}"', f"   TASK: {d['task']:x}",
                      f"    CPU: {cpu}", f"  STATE: {state}"])


def context_json(d: dict[str, Any]) -> dict[str, Any]:
    return {**d, "task": f"{d['task']:#x}"}


@click.command("task")
@dump_arguments
@click.argument("target", required=False, metavar="[PID|TASK]")
@click.option("-p", "--pid", "pid", type=int, help="The task with this pid.")
@click.option("-c", "--cpu", type=int, help="The task running on this CPU.")
@click.option("-R", "--members", "members_text", metavar="MEMBER,...",
              help="Only these task_struct members (crash's task -R).")
@click.option("-x", "--hex", "hex_", is_flag=True, help="Integers in hexadecimal.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, target: str | None, pid: int | None, cpu: int | None,
            members_text: str | None, hex_: bool, as_json: bool) -> None:
    """A task's context (pid, command, task, CPU, state) and its task_struct. Without
    PID|TASK: the session's current task (`set`), else the panic task."""
    from .struct import json_value
    target = task_target(target, pid)
    with open_program(dump, vmcoreinfo_file) as prog:
        addr = resolve_task(prog, target, cpu)
        ctx = task_context(prog, addr)
        obj = prog.object("struct task_struct", addr)
        members = [m.strip() for m in (members_text or "").split(",") if m.strip()]
        if as_json:
            val = ({m: json_value(obj.subobject_(m) if ("." in m or "[" in m) else obj.member_(m))
                    for m in members} if members else json_value(obj))
            emit_json({**context_json(ctx), "value": val})
            return
        body = obj.format_members_(members, hex=hex_) if members else obj.format_(hex=hex_)
        click.echo(printable(context_text(ctx) + "\n" + body))
