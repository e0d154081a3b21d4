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


class _Shown:
    """An Object as the REPL echoes it: its value the way `struct` prints it (drgn's REPL does
    the same), not the Object(prog, 'char [16]', address=...) constructor form of repr()."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __repr__(self) -> str:
        try:
            return self.obj.format_()
        except Exception as e:  # an unreadable object still echoes, with why
            return f"{self.obj!r} ({e})"


def shown(value: Any) -> Any:
    """What the REPL echoes for `value`."""
    from ..program.objects import Object
    return _Shown(value) if isinstance(value, Object) else value


def displayhook(value: Any) -> None:
    """sys.displayhook of the plain REPL: Objects by value, everything else as usual."""
    sys.__displayhook__(shown(value))


def _configure_ptpython(repl: Any) -> None:
    # ptpython echoes results through PythonRepl._show_result; wrap it when this version has it.
    show = getattr(repl, "_show_result", None)
    if callable(show):
        repl._show_result = lambda result: show(shown(result))


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
                embed(globals=ns, locals=ns, history_filename=hist, title="vmcorekit",
                      configure=_configure_ptpython)
                return
        import code as _code
        hook, sys.displayhook = sys.displayhook, displayhook
        try:
            _code.interact(banner=banner, local=ns, exitmsg="")
        finally:
            sys.displayhook = hook
