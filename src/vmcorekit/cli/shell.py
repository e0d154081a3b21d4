"""`vmcorekit shell DUMP`: a Python REPL with the dump open as `prog` and the helpers loaded.

The REPL and the library are the same API: whatever works here works in a script.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from typing import Any

import click

from .common import dump_arguments, open_program


def repl_namespace(prog: Any) -> dict[str, Any]:
    """`prog`, the public functions of every kernel helper module, and a few conveniences."""
    import vmcorekit
    from vmcorekit import kernel

    ns: dict[str, Any] = {"prog": prog, "vmcorekit": vmcorekit}
    for m in pkgutil.iter_modules(kernel.__path__):
        try:
            mod = importlib.import_module(f"vmcorekit.kernel.{m.name}")
        except ImportError:
            continue
        ns[m.name] = mod
        for name in getattr(mod, "__all__", []):
            ns[name] = getattr(mod, name)
    return ns


BANNER = """vmcorekit shell — {path}
{release} ({arch}); `prog` is the dump: prog["init_task"].comm, prog.read(addr, n), prog.symbols, prog.types.
Helper modules are loaded by name (e.g. tasks, printk); help(prog) lists the API."""


@click.command("shell")
@dump_arguments
@click.option("-c", "--command", "code", help="Run this Python code instead of the interactive REPL.")
@click.option("--plain", is_flag=True, help="Use the plain Python REPL, not ptpython.")
def command(dump: str, vmcoreinfo_file: str | None, code: str | None, plain: bool) -> None:
    """Interactive Python over the dump (ptpython: completion, history)."""
    with open_program(dump, vmcoreinfo_file) as prog:
        ns = repl_namespace(prog)
        if code is not None:
            exec(compile(code, "<vmcorekit -c>", "exec"), ns)  # the user's own code, by request
            return
        banner = BANNER.format(path=dump, release=prog.vmcoreinfo.osrelease, arch=prog.arch)
        if not plain and sys.stdin.isatty():
            try:
                from ptpython.repl import embed
            except ImportError:
                pass
            else:
                click.echo(banner)
                hist = os.path.join(os.path.expanduser("~"), ".vmcorekit_history")
                embed(globals=ns, locals=ns, history_filename=hist, title="vmcorekit")
                return
        import code as _code
        _code.interact(banner=banner, local=ns, exitmsg="")
