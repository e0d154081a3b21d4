"""`vmcorekit mount DUMP [PID]`: the mounts of init's mount namespace (or PID's), as crash's mount."""
from __future__ import annotations

import click

from .common import dump_arguments, emit_json, json_convention, open_program


@click.command("mount")
@dump_arguments
@click.argument("pid", required=False, type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, pid: int | None, as_json: bool) -> None:
    """Mounted filesystems: MOUNT SUPERBLK TYPE DEVNAME DIRNAME, as crash's mount (init's mount
    namespace, or the one of task PID)."""
    from ..kernel.mounts import mounts
    from ..kernel.tasks import find_task_addresses
    from ..util.text import printable
    with open_program(dump, vmcoreinfo_file) as prog:
        task = None
        if pid is not None:
            found = find_task_addresses(prog, pid)
            if not found:
                raise click.BadParameter(f"no task with PID {pid}", param_hint="PID")
            task = found[0]
        ms = mounts(prog, task)
    if as_json:
        emit_json({"mounts": [json_convention(m.as_dict(), {"mount", "superblock"}) for m in ms]})
        return
    tw = max([4, *(len(m.fstype) for m in ms)])
    dw = max([7, *(len(m.devname) for m in ms)])
    click.echo(f"{'MOUNT':>11}{'':7}{'SUPERBLK':>12}{'':5}{'TYPE':<{tw}}  {'DEVNAME':<{dw}}  DIRNAME")
    for m in ms:
        click.echo(printable(f"{m.address:016x} {m.superblock:016x} {m.fstype:<{tw}}  {m.devname:<{dw}}  {m.dirname}"))
