"""`vmcorekit` entry point: the command group and the one place errors become messages."""
from __future__ import annotations

import os

# The command line does no linear algebra: keep numpy's OpenBLAS from starting (and spinning)
# a thread per core at import, ~0.1 s of CPU per command. Set here, not in the library, so a
# user's own process keeps its settings; a value already in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import contextlib
import errno
import sys
from collections.abc import Iterator

import click

from ..errors import EXIT_USAGE, VmcorekitError
from ..util.text import printable


# Modules of this package that are not commands.
_HELPERS = frozenset({"common", "main", "render"})


class _PipeClosed(Exception):
    """Control flow: the reader of stdout went away (`vmcorekit dmesg | head`). Raised past
    click, whose own handling of EPIPE (exit 1) differs between versions."""


class _LazyGroup(click.Group):
    """Every module of this package that defines `command` is a subcommand: adding a command
    is adding a file. A command's module is imported only when that command runs (or for the
    command list in --help): `vmcorekit filter` does not pay for `triage`'s imports. A module
    named after its command, or with `_cmd` added where the name would shadow another module."""

    def _modules(self) -> dict[str, str]:
        import pkgutil

        from . import __path__ as pkg_path
        names = (m.name for m in pkgutil.iter_modules(pkg_path))
        return {n.removesuffix("_cmd"): n for n in names if n not in _HELPERS and not n.startswith("_")}

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise _PipeClosed() from None
        except OSError as e:
            if e.errno == errno.EPIPE:
                raise _PipeClosed() from None
            raise

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # `vmcorekit DUMP` on a terminal: a path that exists and is no command opens a session.
        i = next((k for k, a in enumerate(args) if not a.startswith("-")), None)
        if (i is not None and self.get_command(ctx, args[i]) is None
                and all(os.path.isfile(p) for p in args[i].split(",") if p)):
            if not (sys.stdin.isatty() and sys.stdout.isatty()):
                raise click.UsageError(f"{args[i]} is a file, not a command: name one (vmcorekit COMMAND "
                                       f"DUMP ...), or `vmcorekit crash DUMP` for a session", ctx)
            args = [*args[:i], "crash", *args[i:]]
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self._modules()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = self.commands.get(name)
        if cmd is None:
            module = self._modules().get(name)
            if module is None:
                return None
            import importlib
            cmd = getattr(importlib.import_module(f"vmcorekit.cli.{module}"), "command", None)
            if not isinstance(cmd, click.Command):
                return None
            self.add_command(cmd, name)
        return cmd


# Commands whose output is never paged: interactive, long-running, or writing dump data.
_UNPAGED = frozenset({"shell", "fleet", "filter", "crash"})


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="vmcorekit")
@click.option("--no-pager", is_flag=True, envvar="VMCOREKIT_NO_PAGER",
              help="Never page output (a terminal otherwise gets $PAGER, default 'less -FRX').")
@click.pass_context
def cli(ctx: click.Context, no_pager: bool) -> None:
    """Linux kernel crash dumps, from the dump alone."""
    if not no_pager and ctx.invoked_subcommand not in _UNPAGED and sys.stdout.isatty():
        ctx.with_resource(_paged())


@contextlib.contextmanager
def _paged() -> Iterator[None]:
    """Send everything written to stdout through $PAGER (`less -FRX`: it quits at once when
    the output fits the screen, keeps colour, leaves the screen as it was). stdout itself is
    redirected, so every writer (click, print, rich) pages; a missing pager pages nothing."""
    import shlex  # here: the pager's modules are no cost to a command in a pipe
    import shutil
    import subprocess

    argv = shlex.split(os.environ.get("PAGER") or "less -FRX")
    if not argv or shutil.which(argv[0]) is None:
        yield
        return
    env = dict(os.environ)
    env.setdefault("LESS", "FRX")
    sys.stdout.flush()
    pager = subprocess.Popen(argv, stdin=subprocess.PIPE, env=env)
    assert pager.stdin is not None
    saved = os.dup(1)
    os.dup2(pager.stdin.fileno(), 1)
    pager.stdin.close()
    try:
        yield
    finally:
        try:
            sys.stdout.flush()
        except OSError:
            pass  # the reader quit early (q in less): not an error
        os.dup2(saved, 1)
        os.close(saved)
        pager.wait()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; bad input gives one line on stderr and a nonzero status, never a traceback.
    A command that printed a partial result (PartialResultWarning) exits with EXIT_PARTIAL (3)."""
    from ._report import run_reporting
    return run_reporting(lambda: _run(argv), _to_stderr)


def _to_stderr(line: str) -> None:
    """One diagnostic line; a closed stderr (`vmcorekit sys D 2>&1 | head`) loses it quietly
    and does not change the exit status the answer earned."""
    try:
        click.echo(printable(line), err=True)
    except OSError as e:
        if not isinstance(e, BrokenPipeError) and e.errno != errno.EPIPE:
            raise
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stderr.fileno())
        except (OSError, ValueError):
            pass


def _usage_line(e: click.UsageError) -> str:
    """click's three-line usage error as one line, with the hint to --help at its end."""
    msg = " ".join(e.format_message().split()).rstrip(".")
    path = e.ctx.command_path if e.ctx is not None else "vmcorekit"
    return f"{msg} (see '{path} --help')"


def _run(argv: list[str] | None) -> int:
    if not (sys.argv[1:] if argv is None else argv) and "_VMCOREKIT_COMPLETE" not in os.environ:
        # Without arguments: the help, on stdout, and success (click would say it on stderr, 2).
        # (Shell completion also runs without arguments: click answers it below.)
        with cli.make_context("vmcorekit", [], resilient_parsing=True) as ctx:
            click.echo(cli.get_help(ctx))
        return 0
    try:
        rv = cli.main(args=argv, prog_name="vmcorekit", standalone_mode=False)
        # click returns the status of a command that ended with ctx.exit(n) / Exit(n)
        return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except _PipeClosed:
        _drop_stdout()
        return 0
    except click.exceptions.Abort:
        click.echo("vmcorekit: aborted", err=True)
        return 130
    except click.UsageError as e:
        click.echo(f"vmcorekit: error: {_usage_line(e)}", err=True)
        return EXIT_USAGE
    except click.ClickException as e:
        click.echo(f"vmcorekit: error: {' '.join(e.format_message().split())}", err=True)
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except SystemExit as e:
        ctx = e.__context__
        if isinstance(ctx, OSError) and ctx.errno == errno.EPIPE:
            # click turns a closed pipe (`vmcorekit dmesg | head`) into exit 1; it is not an error.
            _drop_stdout()
            return 0
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except VmcorekitError as e:
        click.echo(printable(f"vmcorekit: error: {e}"), err=True)
        return 1
    except BrokenPipeError:
        # `vmcorekit dmesg | head`: the reader went away; that is not an error.
        _drop_stdout()
        return 0
    except OSError as e:
        if e.errno == errno.EPIPE:
            _drop_stdout()
            return 0
        where = f"{e.filename}: " if e.filename else ""
        click.echo(printable(f"vmcorekit: error: {where}{e.strerror or e}"), err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("vmcorekit: interrupted", err=True)
        return 130


def _drop_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail on the closed pipe
    (which would turn a clean `| head` into exit status 1)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
