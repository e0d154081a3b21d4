"""`vmcorekit schema [NAME]`: the JSON Schema of a command's --json output, as shipped in the
package (vmcorekit/schemas/NAME.json)."""
from __future__ import annotations

import sys
from importlib import resources

import click


def schema_names() -> list[str]:
    return sorted(p.name.removesuffix(".json") for p in resources.files("vmcorekit").joinpath("schemas").iterdir()
                  if p.name.endswith(".json"))


def schema_text(name: str) -> str:
    return resources.files("vmcorekit").joinpath("schemas", f"{name}.json").read_text(encoding="utf-8")


@click.command("schema")
@click.argument("name", required=False)
def command(name: str | None) -> None:
    """Print the JSON Schema of NAME's --json output (triage, info, ps, bt, ...); without NAME,
    list them. Addresses are "0x..." strings and sizes bytes (`*_bytes`) in every one."""
    names = schema_names()
    if name is None:
        click.echo("\n".join(names))
        return
    if name not in names:
        raise click.BadParameter(f"no schema {name!r}: one of {', '.join(names)}", param_hint="NAME")
    sys.stdout.write(schema_text(name))
