"""`vmcorekit foreach DUMP [SELECTOR...] VERB [ARGS...]`: run a per-task verb on many tasks,
like crash's foreach.

    vmcorekit foreach DUMP bt                 every task's backtrace
    vmcorekit foreach DUMP UN bt              the tasks in uninterruptible sleep
    vmcorekit foreach DUMP RU IN task -R pid  running and sleeping tasks, two members each
    vmcorekit foreach DUMP sh kernel bt       tasks named sh, kernel threads

SELECTORs (any of them selects a task): crash's state letters (RU IN UN ST TR ZO DE ID PA
NE), a pid, a task address, a command name, `kernel`, `user`, `active`. VERB is one of the
verbs that take a task (bt, task, files, vm, sig where installed); its output comes per task,
in crash's foreach order (pid, the idle tasks by CPU), a blank line between tasks. The dump
is opened once; a verb's error on one task is printed and the others go on.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
from typing import TYPE_CHECKING, Any

import click

from .common import Session, current_session, dump_arguments, emit_json, enter_session, open_program

if TYPE_CHECKING:
    from ..kernel.tasks import TaskSummary

PER_TASK_VERBS = ("bt", "task", "files", "vm", "sig")
STATES = frozenset({"RU", "IN", "UN", "ST", "TR", "ZO", "DE", "ID", "PA", "NE", "WA", "SW"})
KINDS = frozenset({"kernel", "user", "active"})
MAX_TASKS = 1 << 20


def _verbs() -> dict[str, click.Command]:
    from .crash import verbs
    found = verbs()
    return {v: found[v] for v in PER_TASK_VERBS if v in found}


def _selected(rows: "list[TaskSummary]", selectors: list[str]) -> "list[TaskSummary]":
    if not selectors:
        return rows
    out = []
    for r in rows:
        for s in selectors:
            if (s in STATES and r.crash_state == s) or (s == "kernel" and r.kernel_thread) or \
                    (s == "user" and not r.kernel_thread) or (s == "active" and r.active) or \
                    (s.isdigit() and r.pid == int(s)) or \
                    (re.fullmatch(r"(0x)?[0-9a-fA-F]{12,16}", s) and r.task == int(s, 16)) or r.comm == s:
                out.append(r)
                break
    return out


@click.command("foreach", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@dump_arguments
@click.option("--json", "as_json", is_flag=True,
              help="One JSON document: each selected task and its verb's JSON (the verb runs with --json).")
@click.argument("words", nargs=-1, required=True, metavar="[SELECTOR...] VERB [ARGS...]")
def command(dump: str, vmcoreinfo_file: str | None, as_json: bool, words: tuple[str, ...]) -> None:
    """Run a per-task verb (bt, task, files, vm, sig) on every task, or on the tasks the
    selectors name: crash state letters (RU IN UN ...), pids, task addresses, command names,
    kernel, user, active."""
    from ..errors import partial_result
    from ..kernel.tasks import task_table
    from .main import main
    verbs = _verbs()
    at = next((i for i, w in enumerate(words) if w in verbs), None)
    if at is None:
        raise click.UsageError(f"name a verb to run per task: one of {', '.join(verbs)}")
    selectors, verb, args = list(words[:at]), words[at], list(words[at + 1:])
    with open_program(dump, vmcoreinfo_file) as prog:
        notes: list[str] = []
        rows = _selected(task_table(prog, warnings=notes)[:MAX_TASKS], selectors)
        for n in notes:
            partial_result(n)
        if not rows:
            raise click.BadParameter(f"no task matches {' '.join(selectors)}", param_hint="SELECTOR")
        outer = current_session()
        session = outer if outer is not None else Session(prog, dump, vmcoreinfo_file)
        saved_task = session.task
        old = enter_session(session)
        worst = 0
        results: list[dict[str, Any]] = []
        try:
            for k, r in enumerate(rows):
                argv = ["--no-pager", verb, dump, f"{r.task:#x}", *args]
                if vmcoreinfo_file is not None:
                    argv[2:2] = ["--vmcoreinfo", vmcoreinfo_file]
                if as_json:
                    buf = io.StringIO()
                    with contextlib.redirect_stdout(buf):
                        rc = main([*argv, "--json"] if "--json" not in args else argv)
                    try:
                        doc: Any = json.loads(buf.getvalue())
                    except ValueError:
                        doc = None
                    results.append({"pid": r.pid, "task": f"{r.task:#x}", "comm": r.comm,
                                    "state": r.crash_state, "status": rc, "output": doc})
                else:
                    if k:
                        click.echo()
                    rc = main(argv)
                worst = rc if rc in (1, 2) or worst == 0 else worst
        finally:
            enter_session(old)
            session.task = saved_task
        if as_json:
            emit_json({"verb": verb, "arguments": args, "tasks": results})
        if worst == 3:
            partial_result("some tasks' answers are partial (said above)", reported=False)
        elif worst:
            partial_result(f"{verb} failed on some tasks (said above)", reported=False)
