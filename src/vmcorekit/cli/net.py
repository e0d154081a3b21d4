"""`vmcorekit net DUMP`: network devices of init's namespace, as crash's net."""
from __future__ import annotations

import click

from .common import dump_arguments, emit_json, json_convention, open_program


@click.command("net")
@dump_arguments
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, as_json: bool) -> None:
    """Network devices: NET_DEVICE NAME IP ADDRESS(ES), as crash's net, then the hardware
    address, MTU and interface flags."""
    from ..kernel.net import net_devices
    from ..util.text import printable
    with open_program(dump, vmcoreinfo_file) as prog:
        devs = net_devices(prog)
    if as_json:
        emit_json({"devices": [json_convention(d.as_dict(), {"net_device"}) for d in devs]})
        return
    w = max([4, *(len(d.name) for d in devs)])
    click.echo(f"{'NET_DEVICE':>13}{'':3}  {'NAME':<{w}}  IP ADDRESS(ES)    HWADDR             MTU  FLAGS")
    for d in devs:
        click.echo(printable(f"{d.address:016x}  {d.name:<{w}}  {', '.join(d.ipv4):<16}  {d.hwaddr:<17} "
                             f"{d.mtu:>5}  {','.join(d.flag_names)}"))
