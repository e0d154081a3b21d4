"""`vmcorekit p DUMP EXPR`: print an expression's value the way crash's `p` does.

    vmcorekit p DUMP jiffies                       jiffies = $1 = 4294892296
    vmcorekit p DUMP init_uts_ns.name.release      $1 = "6.1.0-56-amd64\\000..."
    vmcorekit p DUMP '((struct task_struct *)0xffff...)->comm'
    vmcorekit p DUMP 'per_cpu(runqueues, 1).nr_running'
    vmcorekit px DUMP jiffies                      integers in hexadecimal (pd: decimal)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..util.text import printable
from .common import current_session, dump_arguments, emit_json, open_program

if TYPE_CHECKING:
    from ..program import Program
    from ..program.objects import Object


def expression_functions(prog: "Program") -> dict[str, Any]:
    """The functions expressions may call: the kernel's per-CPU accessors."""
    from ..errors import ExpressionError
    from ..kernel.percpu import per_cpu, per_cpu_ptr

    def _per_cpu(var: "Object", cpu: "Object") -> "Object":
        from ..program.types.model import TypeKind
        if var.type_.strip_typedefs().kind == TypeKind.POINTER and var.address_ is None:
            return per_cpu_ptr(var, int(cpu)).deref()
        if var.address_ is None:
            raise ExpressionError("per_cpu() needs a per-CPU variable or pointer")
        return per_cpu(var, int(cpu))

    def _per_cpu_ptr(ptr: "Object", cpu: "Object") -> "Object":
        return per_cpu_ptr(ptr, int(cpu))

    return {"per_cpu": _per_cpu, "per_cpu_ptr": _per_cpu_ptr}


def evaluate(prog: "Program", text: str) -> "Object":
    """`text` as an Object; in a session $N names the N-th value printed."""
    from ..program.expr import evaluate as _evaluate
    s = current_session()
    return _evaluate(prog, text, expression_functions(prog), s.history if s is not None else None)


def gdb_value(obj: "Object", *, hex: bool = False) -> str:
    """The value as gdb prints it after `$N = `: structs as `{ member = ..., }` blocks, a
    pointer as `(type *) 0x... <symbol>`, a function as `{type} 0x... <name>`, a scalar bare."""
    from ..program.types.model import TypeKind
    t = obj.type_.strip_typedefs()
    text = obj.format_(hex=hex)
    if t.kind in (TypeKind.STRUCT, TypeKind.UNION):
        prefix = f"{t.type_name()} "
        return text[len(prefix):] if t.tag and text.startswith(prefix) else text
    if t.kind == TypeKind.ARRAY:
        return text
    prefix = f"({obj.type_.type_name()})"
    body = text[len(prefix):] if text.startswith(prefix) else text
    if t.kind == TypeKind.FUNCTION:
        return f"{{{obj.type_.type_name()}}} {body}"
    if t.kind == TypeKind.POINTER:
        return f"{prefix} {body}"
    return body


def _percpu_symbol(prog: "Program", name: str) -> bool:
    """`name` is a per-CPU variable: BTF places it in the per-CPU section, or (without its
    VAR) its symbol lies between __per_cpu_start and __per_cpu_end."""
    from ..errors import VmcorekitError
    try:
        var = prog.types.variable(name)
    except VmcorekitError:
        var = None
    if var is not None:
        return var[1] is not None
    lo, hi = prog.try_symbol_address("__per_cpu_start"), prog.try_symbol_address("__per_cpu_end")
    a = prog.try_symbol_address(name)
    return None not in (lo, hi, a) and lo <= a < hi and name not in ("__per_cpu_start", "__per_cpu_end")  # type: ignore[operator]


def _percpu_text(prog: "Program", name: str) -> tuple[str, list[tuple[int, int]]]:
    """crash's answer for a per-CPU variable: its type and its address on every CPU."""
    from ..kernel.percpu import nr_cpu_ids, per_cpu
    from ..program.types.model import format_declaration
    obj = prog[name]
    addrs = [(c, per_cpu(prog, name, c)) for c in range(nr_cpu_ids(prog, strict=False))]
    lines = ["PER-CPU DATA TYPE:", f"  {format_declaration(obj.type_, name)};", "PER-CPU ADDRESSES:"]
    lines += [f"  [{c}]: {a:x}" for c, a in addrs]
    return "\n".join(lines), addrs


def run_print(dump: str, vmcoreinfo_file: str | None, expression: tuple[str, ...], radix: str | None,
              as_json: bool) -> None:
    from ..program.expr import is_plain_name
    from .struct import json_value
    text = " ".join(expression)
    session = current_session()
    with open_program(dump, vmcoreinfo_file) as prog:
        if is_plain_name(text) and _percpu_symbol(prog, text.strip()):
            out, addrs = _percpu_text(prog, text.strip())
            if as_json:
                emit_json({"expression": text, "type": prog[text.strip()].type_.type_name(), "per_cpu": True,
                           "addresses": [{"cpu": c, "address": f"{a:#x}"} for c, a in addrs]})
            else:
                click.echo(printable(out))
            return
        obj = evaluate(prog, text)
        if as_json:
            emit_json({"expression": text, "type": obj.type_.type_name(),
                       "address": None if obj.address_ is None else f"{obj.address_:#x}",
                       "value": json_value(obj)})
            return
        value = gdb_value(obj, hex=radix == "hex")
        n = session.next_value(obj) if session is not None else 1
        head = f"{text.strip()} = " if is_plain_name(text) else ""
        click.echo(printable(f"{head}${n} = {value}"))


def make_command(name: str, radix: str | None, summary: str) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True}, help=summary + " EXPR: a global, members (. and ->), [i], *ptr, &x, "
                   "casts such as (struct task_struct *)0xADDR, per_cpu(var, cpu), sizeof(T), + and -; "
                   "in a session $N (and $) names a value printed before.")
    @dump_arguments
    @click.argument("expression", nargs=-1, required=True, metavar="EXPR")
    @click.option("--json", "as_json", is_flag=True, help="The value as JSON.")
    def cmd(dump: str, vmcoreinfo_file: str | None, expression: tuple[str, ...], as_json: bool) -> None:
        run_print(dump, vmcoreinfo_file, expression, radix, as_json)
    return cmd


command = make_command("p", None, "Print the value of an expression, like crash's p.")
