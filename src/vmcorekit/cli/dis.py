"""`vmcorekit dis DUMP ADDR|SYMBOL [COUNT]`: disassemble kernel code, like crash's dis.

    vmcorekit dis DUMP schedule             the whole function (a symbol, or its address)
    vmcorekit dis DUMP ffffffff81234567 5   five instructions from an address
    vmcorekit dis DUMP -r ADDR              from the function's start up to ADDR (a return address)
    vmcorekit dis DUMP -f ADDR              from ADDR to the function's end

x86_64 in AT&T syntax as crash (gdb) prints it; arm64 in its own syntax. Call and jump
targets are named `<symbol+offset>`.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import click

from ..util.text import printable
from .common import dump_arguments, emit_json, open_program, parse_address

if TYPE_CHECKING:
    from ..program import Program
    from ..program.disasm import Instruction

_IDENT = re.compile(r"^[A-Za-z_.$][\w.$]*(?::[\w.$]+)?$")


def resolve_code_address(prog: "Program", text: str) -> int:
    """A symbol (preferred when the word names one: `add`, `cafe` are hex too) or a hex
    address; `SYMBOL+OFFSET` works as well."""
    from ..errors import SymbolError
    base, plus, off = text.partition("+")
    offset = 0
    if plus:
        try:
            offset = int(off, 0)
        except ValueError:
            raise click.BadParameter(f"expected SYMBOL+OFFSET, got {text!r}", param_hint="ADDR") from None
    if _IDENT.match(base):
        a = prog.try_symbol_address(base)
        if a is not None:
            return a + offset
    try:
        return parse_address(base) + offset
    except click.BadParameter:
        raise SymbolError(f"symbol {base!r} not found") from None


def line(i: "Instruction") -> str:
    where = "" if i.symbol is None else f" <{i.symbol}+{i.offset}>" if i.offset else f" <{i.symbol}>"
    return f"{i.address:#x}{where}:\t{i.text()}"  # a tab, as gdb and crash write it


def instruction_json(i: "Instruction") -> dict[str, Any]:
    return {"address": f"{i.address:#x}", "symbol": i.symbol, "offset": i.offset, "bytes": i.raw.hex(),
            "mnemonic": i.mnemonic, "operands": i.operands,
            "target": None if i.target is None else f"{i.target:#x}", "target_symbol": i.target_symbol,
            "reference": None if i.reference is None else f"{i.reference:#x}", "reference_symbol": i.reference_symbol,
            "text": i.text()}


@click.command("dis")
@dump_arguments
@click.argument("target", metavar="ADDR|SYMBOL")
@click.argument("count_arg", required=False, type=click.IntRange(1), metavar="[COUNT]")
@click.option("-l", "--count", "count_opt", type=click.IntRange(1), metavar="COUNT",
              help="This many instructions (the same as the COUNT argument).")
@click.option("-r", "--reverse", is_flag=True, help="From the function's start up to ADDR, ADDR included.")
@click.option("-f", "--forward", is_flag=True, help="From ADDR to the function's end.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, target: str, count_arg: int | None, count_opt: int | None,
            reverse: bool, forward: bool, as_json: bool) -> None:
    """Disassemble kernel or module code. Without COUNT: the whole function when ADDR is its
    start, else one instruction."""
    from ..errors import partial_result
    from ..program.disasm import disassemble, function_range
    if count_arg is not None and count_opt is not None and count_arg != count_opt:
        raise click.UsageError("give COUNT once")
    count = count_arg if count_arg is not None else count_opt
    if reverse and forward:
        raise click.UsageError("give -r or -f, not both")
    if (reverse or forward) and count is not None:
        raise click.UsageError("-r and -f end at the function's bounds: no COUNT with them")
    with open_program(dump, vmcoreinfo_file) as prog:
        addr = resolve_code_address(prog, target)
        problems: list[str] = []
        if reverse:
            start, end = function_range(prog, addr)
            seen: list[str] = []
            insns = [i for i in disassemble(prog, start, end=end, problems=seen) if i.address <= addr]
            if not insns or insns[-1].address + insns[-1].size <= addr:
                problems += seen  # what stopped the listing before ADDR; later trouble is not ours
        elif forward:
            _, end = function_range(prog, addr)
            insns = disassemble(prog, addr, end=end, problems=problems)
        elif count is None and prog.symbols.lookup(addr) is not None and \
                prog.symbols.lookup(addr).address == addr and prog.symbols.lookup(addr).is_text:  # type: ignore[union-attr]
            _, end = function_range(prog, addr)
            insns = disassemble(prog, addr, end=end, problems=problems)
        else:
            insns = disassemble(prog, addr, count=count or 1, problems=problems)
        for p in problems:
            partial_result(p)
        if as_json:
            emit_json({"address": f"{addr:#x}", "instructions": [instruction_json(i) for i in insns],
                       "problems": problems})
            return
        if insns:
            click.echo(printable("\n".join(line(i) for i in insns)))
