"""`vmcorekit runq DUMP`: each CPU's run queue, like crash's runq.

    vmcorekit runq DUMP            every CPU: current task, RT priority arrays, CFS tree, DL tree
    vmcorekit runq DUMP -c 1       CPU 1 only (a list: -c 0,2)
    vmcorekit runq DUMP -t         each CPU's rq clock and when its current task last arrived
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..util.text import printable
from .common import dump_arguments, emit_json, json_convention, open_program

if TYPE_CHECKING:
    from ..kernel.sched import QueuedEntity, RunQueue


def _task_line(pid: int | None, task: int | None, comm: str | None) -> str:
    return f'PID: {pid if pid is not None else "?":<6} TASK: {task or 0:x}  COMMAND: "{comm or "?"}"'


def _entities(ents: "list[QueuedEntity]", indent: int, group_word: str) -> list[str]:
    pad = " " * indent
    if not ents:
        return [f"{pad}[no tasks queued]"]
    out: list[str] = []
    for e in ents:
        prio = "" if e.prio is None else f"[{e.prio:3d}] "
        if e.kind == "task":
            out.append(f"{pad}{prio}{_task_line(e.pid, e.address, e.comm)}")
        elif e.kind == "server":
            out.append(f"{pad}DL SERVER: {e.address:x}  ({e.comm})")
        else:
            out.append(f"{pad}{prio}GROUP {group_word}: {e.root or 0:x}")
            out += _entities(e.children, indent + 3, group_word)
    return out


def runq_text(rqs: "list[RunQueue]", timestamps: bool) -> str:
    if timestamps:
        lines = []
        for rq in rqs:
            lines.append(f" CPU {rq.cpu}: {rq.clock if rq.clock is not None else '?'}")
            arrival = rq.current_arrival if rq.current_arrival is not None else "?"
            lines.append(f"        {arrival}  {_task_line(rq.current_pid, rq.current, rq.current_comm)}")
        return "\n".join(lines)
    blocks = []
    for rq in rqs:
        lines = [f"CPU {rq.cpu} RUNQUEUE: {rq.address:x}",
                 f"  CURRENT: {_task_line(rq.current_pid, rq.current, rq.current_comm)}"]
        if rq.rt_array is not None:
            lines.append(f"  RT PRIO_ARRAY: {rq.rt_array:x}")
            lines += _entities(rq.rt, 5, "RT PRIO_ARRAY")
        if rq.cfs_root is not None:
            lines.append(f"  CFS RB_ROOT: {rq.cfs_root:x}")
            lines += _entities(rq.cfs, 5, "CFS RB_ROOT")
        if rq.dl_root is not None:
            lines.append(f"  DL RB_ROOT: {rq.dl_root:x}")
            lines += _entities(rq.dl, 5, "DL RB_ROOT")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _entity_json(e: "QueuedEntity") -> dict[str, Any]:
    if e.kind == "task":
        return {"kind": "task", "task": e.address, "pid": e.pid, "comm": e.comm, "prio": e.prio}
    if e.kind == "server":
        return {"kind": "server", "address": e.address, "name": e.comm}
    return {"kind": "group", "address": e.address, "root": e.root, "prio": e.prio,
            "entities": [_entity_json(c) for c in e.children]}


def runq_json(rqs: "list[RunQueue]") -> dict[str, Any]:
    out = []
    for rq in rqs:
        out.append({
            "cpu": rq.cpu, "address": rq.address, "clock_ns": rq.clock, "nr_running": rq.nr_running,
            "current": {"task": rq.current, "pid": rq.current_pid, "comm": rq.current_comm,
                        "last_arrival_ns": rq.current_arrival},
            "rt": {"address": rq.rt_array, "entities": [_entity_json(e) for e in rq.rt]},
            "cfs": {"root": rq.cfs_root, "entities": [_entity_json(e) for e in rq.cfs]},
            "dl": {"root": rq.dl_root, "entities": [_entity_json(e) for e in rq.dl]},
            "problems": rq.problems})
    return json_convention({"runqueues": out}, {"address", "task", "root"})  # type: ignore[no-any-return]


def parse_cpus(text: str | None, present: list[int]) -> list[int]:
    """`-c 1`, `-c 0,2`, `-c 0-3`: CPUs that exist in the dump."""
    if text is None:
        return present
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            lo, _, hi = part.partition("-")
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise click.BadParameter(f"expected CPU numbers such as 1, 0,2 or 0-3, got {text!r}",
                                     param_hint="-c") from None
        for c in range(a, min(b, a + 8192) + 1):
            if c not in present:
                raise click.BadParameter(f"CPU {c} is not present in this dump", param_hint="-c")
            out.append(c)
    return out


@click.command("runq")
@dump_arguments
@click.option("-c", "--cpu", "cpus_text", metavar="CPUS", help="Only these CPUs (1, 0,2 or 0-3).")
@click.option("-t", "--timestamps", is_flag=True,
              help="Each CPU's rq clock and its current task's last arrival (ns), like crash's runq -t.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, cpus_text: str | None, timestamps: bool, as_json: bool) -> None:
    """Each CPU's run queue: the current task, then the tasks waiting in the RT priority
    arrays, the CFS tree (vruntime order, task groups nested) and the deadline tree."""
    from ..errors import partial_result
    from ..kernel.cpus import present_cpus
    from ..kernel.sched import runqueues
    with open_program(dump, vmcoreinfo_file) as prog:
        rqs = runqueues(prog, parse_cpus(cpus_text, present_cpus(prog)))
        for rq in rqs:
            for p in rq.problems:
                partial_result(p)
        if as_json:
            emit_json(runq_json(rqs))
        else:
            click.echo(printable(runq_text(rqs, timestamps)))
