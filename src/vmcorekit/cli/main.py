"""`vmcorekit` entry point: the command group and the one place errors become messages."""
from __future__ import annotations

import errno
import sys

import click

from ..errors import VmcorekitError



@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="vmcorekit")
def cli() -> None:
    """Linux kernel crash dumps, from the dump alone."""


def _register() -> None:
    """Every module of this package that defines `command` is a subcommand: adding a command
    is adding a file. Heavy imports stay inside the command functions."""
    import importlib
    import pkgutil

    from . import __path__ as pkg_path
    for m in sorted(pkgutil.iter_modules(pkg_path), key=lambda m: m.name):
        mod = importlib.import_module(f"vmcorekit.cli.{m.name}")
        cmd = getattr(mod, "command", None)
        if isinstance(cmd, click.Command):
            cli.add_command(cmd)


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; bad input gives one line on stderr and a nonzero status, never a traceback."""
    try:
        cli.main(args=argv, prog_name="vmcorekit", standalone_mode=False)
        return 0
    except click.exceptions.Abort:
        click.echo("vmcorekit: aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except VmcorekitError as e:
        click.echo(f"vmcorekit: error: {e}", err=True)
        return 1
    except BrokenPipeError:
        # `vmcorekit dmesg | head`: the reader went away; that is not an error.
        sys.stderr.close()
        return 0
    except OSError as e:
        if e.errno == errno.EPIPE:
            return 0
        where = f"{e.filename}: " if e.filename else ""
        click.echo(f"vmcorekit: error: {where}{e.strerror or e}", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("vmcorekit: interrupted", err=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
