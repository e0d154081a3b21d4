"""`vmcorekit drgn DUMP [SCRIPT [ARGS]...]`: drgn on a dump with no debuginfo.

The drgn Program gets its symbols (kallsyms) and types (BTF) from the dump through
vmcorekit.drgn; a script runs as under `drgn -c DUMP SCRIPT`, with `prog` set.
"""
from __future__ import annotations

import os
import sys

import click

from .common import dump_arguments, split_dump_arg


@click.command("drgn", context_settings={"ignore_unknown_options": True,
                                         "allow_interspersed_args": False})
@dump_arguments
@click.argument("script", required=False, type=click.Path(exists=True, dir_okay=False))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(dump: str, vmcoreinfo_file: str | None, script: str | None,
            args: tuple[str, ...]) -> None:
    """Run a drgn SCRIPT (with ARGS as sys.argv[1:]) on DUMP, or drgn's interactive REPL
    without one. drgn's helpers (for_each_task, d_path, slab caches, ...) work on the dump's
    own symbols and BTF: no vmlinux, no debuginfo. `vmcorekit.drgn.stack_trace(prog, task)`
    gives stack traces (drgn's own unwinder needs DWARF or ORC from a vmlinux file).
    Needs drgn: pip install 'vmcorekit[drgn]'."""
    from .. import drgn as bridge

    prog = bridge.program(split_dump_arg(dump), vmcoreinfo=vmcoreinfo_file)
    import drgn  # present: bridge.program() raised DrgnUnavailableError otherwise

    drgn.set_default_prog(prog)
    if script is None:
        from drgn.cli import run_interactive

        def banner(default: str) -> str:
            return (f"{default}\nvmcorekit: symbols from kallsyms, types from BTF (no debuginfo); "
                    "stack traces: vmcorekit.drgn.stack_trace(prog, task)")

        def namespace(ns: dict[str, object]) -> dict[str, object]:
            import vmcorekit.drgn
            ns["vmcorekit"] = sys.modules["vmcorekit"]
            ns["stack_trace"] = vmcorekit.drgn.stack_trace
            return ns

        run_interactive(prog, banner_func=banner, globals_func=namespace)
        return
    _run_script(prog, script, args)


def _run_script(prog: object, script: str, args: tuple[str, ...]) -> None:
    """As `drgn SCRIPT ARGS` does: sys.argv is the script and its arguments, the script's
    folder is importable, `prog` is a global; the script's own exit status is kept."""
    import runpy
    import traceback

    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, init_globals={"prog": prog}, run_name="__main__")
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception:  # the script's own error: its traceback is what its author needs
        traceback.print_exc()
        raise SystemExit(1) from None
