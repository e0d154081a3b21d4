"""`vmcorekit sig DUMP [PID|TASK]`: a task's signal handling, like crash's sig.

    vmcorekit sig DUMP 1       the handlers of PID 1's thread group (handler, mask, flags per
                               signal), the group's pending signals, each thread's blocked and
                               pending signals with their queued siginfo
"""
from __future__ import annotations

from typing import Any

import click

from ..util.text import printable
from .common import dump_arguments, emit_json, json_convention, open_program
from .files import task_of
from .task import task_context


def _pending_lines(p: Any, indent: str) -> list[str]:
    from ..kernel.signals import signal_name, sigset_names
    names = " ".join(sigset_names(p.signal))
    queued = " ".join(signal_name(n) for n in p.queued) if p.queued else "(empty)"
    return [f"{indent}    SIGNAL: {p.signal:016x}" + (f" ({names})" if names else ""),
            f"{indent}  SIGQUEUE: {queued}"]


def sig_text(ctx: dict[str, Any], st: Any) -> str:
    from ..kernel.signals import signal_name
    cpu = "-" if ctx["cpu"] is None else ctx["cpu"]
    lines = [f'PID: {ctx["pid"]:<6} TASK: {ctx["task"]:x}  CPU: {cpu:<3} COMMAND: "{ctx["command"]}"',
             f"SIGNAL_STRUCT: {st.signal_struct:x}  NR_THREADS: {st.nr_threads if st.nr_threads is not None else '?'}",
             " SIG SIGACTION        HANDLER          MASK       FLAGS"]
    for a in st.actions:
        flags = f"{a.flags:x}" + (f" ({'|'.join(a.flag_names())})" if a.flag_names() else "")
        lines.append(f"{'[' + str(a.signal) + ']':>5} {a.address:16x} {a.handler_text():>16} {a.mask:016x} {flags}"
                     f"  {signal_name(a.signal)}")
    if st.shared is not None:
        lines += ["SHARED_PENDING", *_pending_lines(st.shared, "")]
    for t in st.threads:
        lines += ["", f"THREAD: {t.task:x} (pid {t.pid})", f"  BLOCKED: {t.blocked:016x}", "  PRIVATE_PENDING",
                  *_pending_lines(t.pending, "  ")]
    return "\n".join(lines)


@click.command("sig")
@dump_arguments
@click.argument("target", required=False, metavar="[PID|TASK]")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, target: str | None, as_json: bool) -> None:
    """A task's signals: each signal's handler, mask and flags, the pending signals of its
    thread group and, per thread, the blocked and pending ones. Without PID|TASK: the
    current task (the panic task)."""
    from ..errors import partial_result
    from ..kernel.signals import signal_state
    with open_program(dump, vmcoreinfo_file) as prog:
        addr = task_of(prog, target)
        ctx = task_context(prog, addr)
        st = signal_state(prog.object("struct task_struct", addr))
        for p in st.problems:
            partial_result(p)
        if as_json:
            emit_json(json_convention({"pid": ctx["pid"], "task": addr, "comm": ctx["command"], **st.as_dict()},
                                      {"task", "signal_struct", "sighand", "address", "handler"}))
            return
        click.echo(printable(sig_text(ctx, st)))
