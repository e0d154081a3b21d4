"""`vmcorekit files DUMP [PID|TASK]`: a task's open files, like crash's files.

    vmcorekit files DUMP 1        PID 1's root, working directory and every open descriptor:
                                  FD, struct file, dentry, inode, type, path
"""
from __future__ import annotations

from typing import Any

import click

from ..util.text import printable
from .common import dump_arguments, emit_json, json_convention, open_program
from .task import resolve_task, task_context


def task_of(prog: Any, target: str | None) -> int:
    """resolve_task(), a pid or task the dump does not have being an error (exit 1): the
    command line was well formed, the dump says no."""
    from ..errors import VmcorekitError
    try:
        return resolve_task(prog, target)
    except click.BadParameter as e:
        if target is not None and ("no task with pid" in e.message or "is not a task" in e.message):
            raise VmcorekitError(e.message) from None
        raise


def files_text(ctx: dict[str, Any], root: str | None, cwd: str | None, rows: list[Any]) -> str:
    cpu = "-" if ctx["cpu"] is None else ctx["cpu"]
    lines = [f'PID: {ctx["pid"]:<6} TASK: {ctx["task"]:x}  CPU: {cpu:<3} COMMAND: "{ctx["command"]}"',
             f"ROOT: {root or '?'}    CWD: {cwd or '?'}"]
    if not rows:
        lines.append("No open files")
        return "\n".join(lines)
    lines.append(" FD       FILE            DENTRY           INODE       TYPE PATH")
    for r in rows:
        path = r.path if r.path is not None else f"({r.problem})"
        lines.append(f"{r.fd:>3} {r.file:16x} {r.dentry:16x} {r.inode:16x} {r.type:<4} {path}")
    return "\n".join(lines)


@click.command("files")
@dump_arguments
@click.argument("target", required=False, metavar="[PID|TASK]")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, target: str | None, as_json: bool) -> None:
    """A task's open files: root and working directory, then per descriptor its struct file,
    dentry, inode, type and path. Without PID|TASK: the current task (the panic task)."""
    from ..errors import partial_result
    from ..kernel.fs import open_files, task_root_cwd
    with open_program(dump, vmcoreinfo_file) as prog:
        addr = task_of(prog, target)
        ctx = task_context(prog, addr)
        task = prog.object("struct task_struct", addr)
        root, cwd = task_root_cwd(task)
        problems: list[str] = []
        rows = open_files(task, problems)
        for p in problems:
            partial_result(p, reported=as_json)
        if as_json:
            emit_json(json_convention({"pid": ctx["pid"], "task": addr, "comm": ctx["command"], "root": root,
                                       "cwd": cwd, "files": [r.as_dict() for r in rows]},
                                      {"task", "file", "dentry", "inode"}))
            return
        click.echo(printable(files_text(ctx, root, cwd, rows)))
