"""`vmcorekit bt DUMP [PID|TASK...]`: kernel stack traces without debuginfo, in crash's format."""
from __future__ import annotations

import click

from ..errors import CorruptKernelDataError, MemoryReadError, VmcorekitError, partial_result
from ..util.text import printable
from .common import bt_json, current_session, dump_arguments, emit_json, open_program


def _task_arg(text: str) -> tuple[str, int]:
    """A pid (decimal) or a task_struct address (hex: 0x-prefixed or a full kernel pointer)."""
    t = text.strip().lower()
    try:
        if t.startswith("0x"):
            return "task", int(t, 16)
        if len(t) >= 12:
            return "task", int(t, 16)
        return "pid", int(t, 10)
    except ValueError:
        raise click.BadParameter(f"expected a pid or a task address, got {text!r}") from None


@click.command("bt")
@dump_arguments
@click.argument("tasks", nargs=-1, metavar="[PID|TASK]...")
@click.option("-a", "--active", is_flag=True, help="The task running on every CPU (crash's bt -a).")
@click.option("-c", "--cpu", "cpus", multiple=True, type=int, help="The task running on this CPU.")
@click.option("--all-tasks", is_flag=True,
              help="Every task (crash's foreach bt), tasks with identical stacks grouped.")
@click.option("--no-group", is_flag=True, help="With --all-tasks: one trace per task, like crash.")
@click.option("-f", "--full", is_flag=True, help="Show each frame's stack words (crash's bt -f).")
@click.option("--unwinder", type=click.Choice(["auto", "orc", "fp", "scan", "crash"]), default="auto",
              show_default=True,
              help="auto: ORC, falling back to frame pointers / scanning; crash: reproduce crash "
                   "8.0.2's heuristic tracer (stale frames included).")
@click.option("--max-frames", type=click.IntRange(1, 4096), default=256, show_default=True)
@click.option("-v", "--verbose", is_flag=True,
              help="Say how each trace was made: ORC layout source, fallbacks, why it ended.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, tasks: tuple[str, ...], active: bool,
            cpus: tuple[int, ...], all_tasks: bool, no_group: bool, full: bool, unwinder: str,
            max_frames: int, verbose: bool, as_json: bool) -> None:
    """Stack traces of the panicking task (default), of tasks by PID or task address, of the
    task on each CPU (-a) or of every task (--all-tasks), from the dump alone: ORC tables and
    kallsyms from kernel memory, types from BTF."""
    from ..kernel.cpus import current_task_address
    from ..kernel.stacks import stacks
    from ..kernel.stacks.render import group_traces, render_group, render_trace
    from ..kernel.tasks import find_task_addresses

    with open_program(dump, vmcoreinfo_file) as prog:
        s = stacks(prog)
        targets: list[int] = []
        if all_tasks:
            targets = _all_tasks(s)
        elif active:
            targets = [ctx.task for _, ctx in sorted(s.contexts.items()) if ctx.task]
        for c in cpus:
            ctx = s.contexts.get(c)
            t = ctx.task if ctx else current_task_address(prog, c)
            if not t:
                raise click.BadParameter(f"no task is known to run on CPU {c}", param_hint="--cpu")
            targets.append(t)
        known: set[int] | None = None
        for text in tasks:
            kind, v = _task_arg(text)
            if kind == "task":
                if known is None:
                    known = set(_all_tasks(s)) | {ctx.task for ctx in s.contexts.values() if ctx.task}
                if v not in known:
                    raise click.BadParameter(f"{v:#x} is not a task of this dump", param_hint="TASK")
                targets.append(v)
            else:
                found = find_task_addresses(prog, v)
                if not found:
                    raise click.BadParameter(f"no task with pid {v}", param_hint="PID")
                targets += found
        session = current_session()
        if not targets and session is not None and session.task is not None:
            targets = [session.task]  # the session's current context (`set PID`)
        if not targets:
            c = s.crashed
            if c.task is None:
                # No panic: like crash, start with the task on the lowest CPU.
                first = next((ctx.task for _, ctx in sorted(s.contexts.items()) if ctx.task), None)
                if first is None:
                    raise VmcorekitError(f"no panicking task ({c.how}) and no CPU's task is known")
                targets = [first]
            else:
                targets = [c.task]

        traces = []
        for t in targets:
            try:
                if unwinder == "crash":
                    from ..kernel.stacks.crashbt import crash_trace
                    traces.append(crash_trace(s, t))
                else:
                    traces.append(s.trace(t, unwinder=unwinder, max_frames=max_frames))
            except (MemoryReadError, VmcorekitError) as e:
                from ..kernel.stacks.model import Trace
                traces.append(Trace(task=t, end_reason=f"cannot trace task {t:#x}: {e}"))
                if isinstance(e, MemoryReadError):  # printed as the trace's end: exit status 3
                    partial_result(str(e), reported=False)

        if as_json:
            emit_json(bt_json({"crashed": {"task": s.crashed.task, "cpu": s.crashed.cpu, "how": s.crashed.how},
                               "traces": [tr.to_json() for tr in traces]}))
            return
        blocks: list[list[str]] = []
        mark = unwinder != "crash"
        groups = group_traces(traces) if all_tasks and not no_group else [[t] for t in traces]
        for g in groups:
            if len(g) > 1:
                lines = render_group(g)
            else:
                lines = render_trace(g[0], full=full, read=prog.read, mark_guesses=mark)
            if verbose:
                tr = g[0]
                lines += [f"    note: {n}" for n in tr.notes]
                lines.append(f"    note: unwinder {tr.unwinder}, started from {tr.start or '?'}, "
                             f"ended: {tr.end_reason or '?'}")
            blocks.append(lines)
        click.echo(printable("\n\n".join("\n".join(b) for b in blocks)))


def _all_tasks(s) -> list[int]:  # type: ignore[no-untyped-def]
    """Every task in crash's foreach order: by pid, the idle tasks (pid 0) by CPU."""
    from ..kernel.cpus import idle_task_address, present_cpus
    from ..kernel.tasks import for_each_task_address, task_info
    seen: set[int] = set()
    items: list[tuple[int, int, int]] = []
    for cpu in present_cpus(s.prog):
        t = idle_task_address(s.prog, cpu)
        if t and t not in seen:
            seen.add(t)
            items.append((0, cpu, t))
    try:
        for t in for_each_task_address(s.prog):
            if t in seen:
                continue
            seen.add(t)
            try:
                info = task_info(s.prog, t)
            except (MemoryReadError, VmcorekitError):
                continue
            items.append((info.pid, 0, t))
    except (CorruptKernelDataError, MemoryReadError) as e:
        # A broken task list still leaves the tasks found before the break worth tracing.
        partial_result(f"task list incomplete: {e}")
    return [t for _, _, t in sorted(items)]
