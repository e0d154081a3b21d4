"""`vmcorekit ps DUMP [PID|TASK|COMM]...`: the tasks of the crashed kernel, like crash's `ps`.

Piped, the output is crash's table column for column ('>' marks the task running on each
CPU), in crash's layout on a terminal and in a pipe alike (the panicking task highlighted
when colour is on); --json for scripts.
"""
from __future__ import annotations

import click

from ..util.text import printable
from .common import dump_arguments, emit_json, open_program, ps_json
from .render import bold, color_enabled

SORT_KEYS = ("pid", "ppid", "cpu", "task", "state", "rss", "vsz", "comm")
HEADER = "      PID    PPID  CPU       TASK        ST  %MEM      VSZ      RSS  COMM"


def _select(rows: list, specs: tuple[str, ...]) -> list:  # type: ignore[type-arg]
    """crash's selectors: a decimal pid, a hex task address (0x... or a full pointer), else a
    command name ('\\' before an all-digit name)."""
    if not specs:
        return rows
    pids, tasks, comms = set(), set(), set()
    for s in specs:
        t = s.strip()
        low = t.lower()
        if low.startswith("0x") or (len(low) >= 12 and all(c in "0123456789abcdef" for c in low)):
            try:
                tasks.add(int(low, 16))
                continue
            except ValueError:
                pass
        if t.isdigit():
            pids.add(int(t))
        else:
            comms.add(t[1:] if t.startswith("\\") else t)
    return [r for r in rows if r.pid in pids or r.task in tasks or r.comm in comms]


def _state_filter(spec: tuple[str, ...]) -> set[str]:
    """--state D / --state UN / --state R,S: drgn letters or crash's two-letter codes."""
    from ..kernel.tasks import CRASH_STATE_CODES
    by_code = {v: k for k, v in CRASH_STATE_CODES.items()}
    out: set[str] = set()
    for part in ",".join(spec).split(","):
        p = part.strip()
        if not p:
            continue
        if p in CRASH_STATE_CODES:
            out.add(p)
        elif p.upper() in by_code:
            out.add(by_code[p.upper()])
        else:
            raise click.BadParameter(f"unknown state {p!r}: use one of "
                                     f"{' '.join(CRASH_STATE_CODES)} or "
                                     f"{' '.join(CRASH_STATE_CODES.values())}",
                                     param_hint="--state")
    return out


def _pct(rss_pages: int, total: int | None) -> str:
    if not total:
        return " 0.0"
    return f"{rss_pages * 100 / total:.1f}".rjust(4)


def crash_line(r, total_pages: int | None, page_size: int) -> str:  # type: ignore[no-untyped-def]
    """One row exactly as crash 8.0.2 prints it."""
    mark = "> " if r.active else "  "
    ppid = 0 if r.idle else r.ppid  # crash shows the idle tasks as children of no one
    cpu = "-" if r.cpu is None else str(r.cpu)
    rss = r.rss.crash_rss
    comm = f"[{r.comm}]" if r.kernel_thread else r.comm
    return (f"{mark}{r.pid:>7} {ppid:>7} {cpu:>3}  {r.task:016x} {r.crash_state:>3}  "
            f"{_pct(rss, total_pages)} {r.vsz * page_size // 1024:>8} "
            f"{rss * page_size // 1024:>8}  {comm}")


@click.command("ps")
@dump_arguments
@click.argument("select", nargs=-1, metavar="[PID|TASK|COMM]...")
@click.option("-u", "--user", "user_only", is_flag=True, help="Only user tasks.")
@click.option("-k", "--kernel", "kernel_only", is_flag=True, help="Only kernel threads.")
@click.option("-G", "--group-leaders", is_flag=True, help="Only thread-group leaders.")
@click.option("--state", "states", multiple=True, metavar="ST",
              help="Only tasks in these states: R S D T t X Z P I, or crash's RU IN UN ST TR DE "
                   "ZO PA ID (repeat or comma-separate).")
@click.option("--active", "active_only", is_flag=True, help="Only the task running on each CPU.")
@click.option("--sort", "sort_key", type=click.Choice(SORT_KEYS), default="pid", show_default=True,
              help="Order of the rows (pid: crash's order, idle tasks first).")
@click.option("-r", "--reverse", is_flag=True, help="Reverse the order.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, select: tuple[str, ...], user_only: bool,
            kernel_only: bool, group_leaders: bool, states: tuple[str, ...], active_only: bool,
            sort_key: str, reverse: bool, as_json: bool) -> None:
    """Process status of every task (pid, ppid, CPU, task_struct, state, %MEM, VSZ, RSS,
    command), from the dump alone: kallsyms and BTF in kernel memory."""
    from ..errors import VmcorekitError
    from ..kernel.meminfo import totalram_pages
    from ..kernel.tasks import task_table

    if user_only and kernel_only:
        raise click.UsageError("-u and -k are mutually exclusive")
    want_states = _state_filter(states) if states else None
    with open_program(dump, vmcoreinfo_file) as prog:
        warns: list[str] = []
        rows = task_table(prog, warnings=warns)
        try:
            total = totalram_pages(prog)
        except VmcorekitError as e:  # %MEM is then shown as 0.0
            warns.append(f"totalram_pages unreadable: {e}")
            total = None
        page_size = prog.page_size
    missing = [s for s in select if not _select(rows, (s,))]
    rows = _select(rows, select)
    if missing:  # crash: "ps: invalid task or pid value"; nothing found is an error (exit 1)
        msg = f"invalid task, pid or command: {' '.join(missing)}"
        if not rows:
            raise click.ClickException(msg)
        from ..errors import note
        note(msg)
    if user_only:
        rows = [r for r in rows if not r.kernel_thread]
    if kernel_only:
        rows = [r for r in rows if r.kernel_thread]
    if group_leaders:
        rows = [r for r in rows if r.pid == r.tgid]
    if want_states is not None:
        rows = [r for r in rows if r.state in want_states]
    if active_only:
        rows = [r for r in rows if r.active]
    if sort_key != "pid" or reverse:
        keyf = {"pid": lambda r: (r.pid, r.task), "ppid": lambda r: (r.ppid, r.pid),
                "cpu": lambda r: (-1 if r.cpu is None else r.cpu, r.pid),
                "task": lambda r: r.task, "state": lambda r: (r.state, r.pid),
                "rss": lambda r: (r.rss.crash_rss, r.pid), "vsz": lambda r: (r.vsz, r.pid),
                "comm": lambda r: (r.comm, r.pid)}[sort_key]
        rows = sorted(rows, key=keyf, reverse=reverse)
    from ..errors import partial_result
    for w in warns:  # the list broke: every gap is a partial result (exit 3), said once
        partial_result(f"task list incomplete: {w}")
    if not warns and any(r.problems for r in rows):  # said in the rows themselves
        partial_result("task list incomplete: unreadable task fields", reported=False)
    if as_json:
        emit_json(ps_json({"page_size": page_size, "totalram_pages": total,
                           "tasks": [r.as_dict() for r in rows], "warnings": warns}))
        return
    click.echo(bold(HEADER))
    for r in rows:
        line = printable(crash_line(r, total, page_size))
        click.echo(click.style(line, bold=True, fg="red" if r.panic else None)
                   if (r.active or r.panic) and color_enabled() else line)
