"""C-like expressions over a Program, the subset crash's `p` is used with:

    jiffies                         a global (typed from BTF)
    init_task.comm, p->mm->pgd      members, through pointers with `->` (or `.`)
    cpu_online_mask->bits[0]        array and pointer indexing
    *ptr, &var                      dereference, address of
    (struct task_struct *)0xffff... casts to a C type name
    per_cpu(runqueues, 1)           functions the caller provides (per-CPU lives in kernel/)
    sizeof(struct page)             size of a type or of an expression's type
    a + 8, p - 1                    integer and pointer arithmetic (pointers step by elements)

A small recursive-descent parser, bounded in length and nesting: the text comes from a person
or a script, and a typo must fail with one message, never a recursion error.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ExpressionError, TypeLookupError
from .objects import Object
from .types.model import TypeKind

if TYPE_CHECKING:
    from .core import Program

MAX_LENGTH = 4096
MAX_DEPTH = 64
_MASK = 0xFFFFFFFFFFFFFFFF

_TOKEN = re.compile(r"\s*(?:(0[xX][0-9a-fA-F]+|\d+)|(\$\d*)|([A-Za-z_][A-Za-z0-9_.]*(?::[A-Za-z_][A-Za-z0-9_.]*)?)"
                    r"|(->|[()\[\]*&.,+\-]))")
_TYPE_WORDS = frozenset({"struct", "union", "enum", "unsigned", "signed", "const", "volatile",
                         "char", "short", "int", "long", "void", "_Bool", "float", "double"})

Function = Callable[..., Object]


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs: kind is 'num', 'hist' ($N), 'id' or 'op'."""
    out: list[tuple[str, str]] = []
    pos = 0
    end = len(text.rstrip())
    while pos < end:
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ExpressionError(f"unexpected {text[pos:].strip()[:20]!r} in expression")
        num, hist, ident, op = m.groups()
        if num is not None:
            out.append(("num", num))
        elif hist is not None:
            out.append(("hist", hist))
        elif ident is not None:
            # A name ending in '.' (init_task.) or holding '.' is member access, except names
            # the kernel really has (foo.isra.0): split at the dots; the evaluator rejoins.
            parts = ident.split(".")
            out.append(("id", parts[0]))
            for p in parts[1:]:
                out.append(("op", "."))
                if p:
                    out.append(("id", p))
        else:
            out.append(("op", op))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, prog: "Program", text: str, functions: dict[str, Function],
                 history: list[Object] | None = None) -> None:
        if len(text) > MAX_LENGTH:
            raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
        if not text.strip():
            raise ExpressionError("empty expression")
        self.prog = prog
        self.toks = _tokens(text)
        self.i = 0
        self.functions = functions
        self.history = history or []
        self.depth = 0

    # -- token helpers -----------------------------------------------------------------------
    def peek(self, k: int = 0) -> tuple[str, str] | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def take(self, op: str | None = None) -> tuple[str, str]:
        t = self.peek()
        if t is None:
            raise ExpressionError("expression ends too early" + (f" (expected {op!r})" if op else ""))
        if op is not None and t != ("op", op):
            raise ExpressionError(f"expected {op!r}, found {t[1]!r}")
        self.i += 1
        return t

    def at(self, op: str) -> bool:
        return self.peek() == ("op", op)

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"expression nested deeper than {MAX_DEPTH}")

    # -- grammar -----------------------------------------------------------------------------
    def parse(self) -> Object:
        v = self.additive()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()[1]!r} after the expression")  # type: ignore[index]
        if isinstance(v, Untyped):
            v.refuse()
        return v

    def additive(self) -> Object:
        self.nest()
        v = self.unary()
        while self.at("+") or self.at("-"):
            op = self.take()[1]
            v = _arith(self.prog, v, op, self.unary())
        self.depth -= 1
        return v

    def unary(self) -> Object:
        self.nest()
        try:
            if self.at("*"):
                self.take()
                return _deref(self.unary())
            if self.at("&"):
                self.take()
                v = self.unary()
                if isinstance(v, Untyped):
                    void = self.prog.types.lookup("void")
                    return Object(self.prog, self.prog.types.pointer(void), v.address)
                return v.address_of_()
            if self.at("-"):
                self.take()
                v = self.unary()
                return _int_object(self.prog, -_integer(v))
            if self.at("("):
                t = self.try_type_in_parens()
                if t is not None:
                    return _cast(self.prog, self.unary(), t)
            return self.postfix(self.primary())
        finally:
            self.depth -= 1

    def try_type_in_parens(self) -> Any:
        """At '(': a C type name up to the matching ')' (then consumed) or None (an
        expression in parentheses)."""
        j = self.i + 1
        words: list[str] = []
        while j < len(self.toks) and self.toks[j] != ("op", ")"):
            kind, text = self.toks[j]
            if kind == "id" or (kind == "op" and text == "*"):
                words.append(text)
            else:
                return None
            j += 1
        if j >= len(self.toks) or not words:
            return None
        names = [w for w in words if w != "*"]
        if not names:
            return None
        name = " ".join(words)
        if names[0] not in _TYPE_WORDS:
            # One identifier that is also a variable (`(jiffies)`) is the variable.
            if len(names) == 1 and self.prog.try_symbol_address(names[0]) is not None:
                return None
        try:
            t = self.prog.types.lookup(name)
        except TypeLookupError:
            if names[0] in _TYPE_WORDS:
                raise
            return None
        self.i = j + 1
        return t

    def type_name_in_parens(self) -> Any:
        self.take("(")
        j = self.i
        words: list[str] = []
        while self.peek() is not None and not self.at(")"):
            words.append(self.take()[1])
        self.take(")")
        try:
            return self.prog.types.lookup(" ".join(words))
        except TypeLookupError:
            self.i = j - 1
            return None

    def primary(self) -> Object:
        t = self.take()
        kind, text = t
        if kind == "num":
            return _int_object(self.prog, int(text, 0))
        if kind == "hist":  # gdb's value history: $N, or $ for the last value
            n = int(text[1:]) if len(text) > 1 else len(self.history)
            if not 1 <= n <= len(self.history):
                raise ExpressionError(f"no value {text} in the history ({len(self.history)} values)")
            return self.history[n - 1]
        if kind == "op" and text == "(":
            v = self.additive()
            self.take(")")
            return v
        if kind == "id":
            if self.at("("):
                if text == "sizeof":
                    save = self.i
                    ty = self.type_name_in_parens()
                    if ty is None:
                        self.i = save
                        self.take("(")
                        ty = self.additive().type_
                        self.take(")")
                    return _int_object(self.prog, ty.sizeof())
                fn = self.functions.get(text)
                if fn is None:
                    raise ExpressionError(f"unknown function {text}(); known: "
                                          f"{', '.join(sorted([*self.functions, 'sizeof']))}")
                self.take("(")
                args: list[Object] = []
                while not self.at(")"):
                    args.append(self.additive())
                    if not self.at(")"):
                        self.take(",")
                self.take(")")
                return fn(*args)
            return self.name(text)
        raise ExpressionError(f"unexpected {text!r} in expression")

    def name(self, text: str) -> Object:
        # A symbol whose name holds dots (foo.isra.0) was split by the tokenizer: take the
        # longest run of `.name` parts that is a symbol, if the plain name is not one.
        parts = [text]
        j = self.i
        while (j + 1 < len(self.toks) and self.toks[j] == ("op", ".")
               and self.toks[j + 1][0] == "id"):
            parts.append(self.toks[j + 1][1])
            j += 2
        if self.prog.try_symbol_address(text) is None and self.prog.types.variable(text) is None:
            for k in range(len(parts), 1, -1):
                cand = ".".join(parts[:k])
                if self.prog.try_symbol_address(cand) is not None:
                    self.i += 2 * (k - 1)
                    return self.prog[cand]
            v = self.prog.types.enumerator(text)
            if v is not None:
                return Object(self.prog, v[0], v[1])
        try:
            return self.prog[text]
        except TypeLookupError:
            addr = self.prog.try_symbol_address(text)
            if addr is None:
                raise
            # BTF types the per-CPU variables and functions only: a plain global is an
            # address without a type, usable through a cast or & as in gdb without debuginfo.
            return Untyped(self.prog, text, addr)  # type: ignore[return-value]

    def postfix(self, v: Object) -> Object:
        while True:
            if isinstance(v, Untyped) and (self.at(".") or self.at("->") or self.at("[")):
                v.refuse()
            if self.at(".") or self.at("->"):
                op = self.take()[1]
                kind, member = self.take()
                if kind != "id":
                    raise ExpressionError(f"expected a member name after {op!r}, found {member!r}")
                s = v.type_.strip_typedefs()
                if s.kind == TypeKind.POINTER:  # gdb lets `.` through a pointer too
                    v = _deref(v)
                elif op == "->":
                    raise ExpressionError(f"'->' on {v.type_.type_name()}, not a pointer; use '.'")
                v = v.member_(member)
            elif self.at("["):
                self.take()
                self.nest()
                idx = _integer(self.additive())
                self.depth -= 1
                self.take("]")
                v = v[idx]
            else:
                return v


def _int_object(prog: "Program", n: int) -> Object:
    t = prog.types.lookup("long" if -(1 << 63) <= n < (1 << 63) else "unsigned long")
    if not -(1 << 63) <= n <= _MASK:
        raise ExpressionError(f"{n} does not fit in 64 bits")
    return Object(prog, t, n)


class Untyped:
    """A symbol BTF gives no type for (only per-CPU variables and functions have one): its
    address, usable under a cast or `&`; anything else says what is missing."""

    def __init__(self, prog: "Program", name: str, address: int) -> None:
        self.prog = prog
        self.name = name
        self.address = address

    def __getattr__(self, attr: str) -> Any:  # any use as an Object: say what is missing
        if attr.startswith("__"):
            raise AttributeError(attr)
        self.refuse()

    def __int__(self) -> int:
        self.refuse()
        return 0

    def refuse(self) -> None:
        sym = self.prog.symbols.get(self.name)
        kind = "function" if sym is not None and sym.is_text else "variable"
        raise ExpressionError(f"{self.name!r} is a {kind} without a type in this dump's BTF (BTF types "
                              f"per-CPU variables and functions only); cast it to its type, e.g. "
                              f"(unsigned long){self.name}, or use &{self.name}")


def _integer(v: Object) -> int:
    if isinstance(v, Untyped):
        v.refuse()
    s = v.type_.strip_typedefs()
    if s.kind in (TypeKind.STRUCT, TypeKind.UNION, TypeKind.FUNCTION, TypeKind.VOID):
        raise ExpressionError(f"{v.type_.type_name()} is not a number")
    if s.kind == TypeKind.ARRAY:
        if v.address_ is None:
            raise ExpressionError("an array value has no address")
        return v.address_
    return int(v)


def _deref(v: Object) -> Object:
    if isinstance(v, Untyped):
        v.refuse()
    s = v.type_.strip_typedefs()
    if s.kind not in (TypeKind.POINTER, TypeKind.ARRAY):
        raise ExpressionError(f"cannot dereference {v.type_.type_name()}, not a pointer")
    return v.deref()


def _cast(prog: "Program", v: Object, t: Any) -> Object:
    s = t.strip_typedefs()
    if isinstance(v, Untyped):  # gdb: (unsigned long)sym reads the symbol's memory as that type
        if s.kind == TypeKind.VOID or t.size is None:
            raise ExpressionError(f"cannot read {v.name!r} as {t.type_name()}")
        return Object(prog, t, address=v.address)
    if s.kind in (TypeKind.POINTER, TypeKind.INT, TypeKind.BOOL, TypeKind.ENUM):
        n = _integer(v)
        size = s.size or 8
        n &= (1 << (8 * size)) - 1
        if s.kind == TypeKind.INT and s.is_signed and n >> (8 * size - 1):
            n -= 1 << (8 * size)
        return Object(prog, t, n)
    if s.kind in (TypeKind.STRUCT, TypeKind.UNION, TypeKind.ARRAY):
        if v.address_ is None:
            raise ExpressionError(f"cannot cast a value to {t.type_name()}; cast a pointer and dereference it")
        return Object(prog, t, address=v.address_)
    raise ExpressionError(f"cannot cast to {t.type_name()}")


def _arith(prog: "Program", a: Object, op: str, b: Object) -> Object:
    sa, sb = a.type_.strip_typedefs(), b.type_.strip_typedefs()
    if sa.kind == TypeKind.POINTER and sb.kind != TypeKind.POINTER:
        step = sa.type.size or 1
        n = _integer(b) * step
        return Object(prog, a.type_, (int(a) + (n if op == "+" else -n)) & _MASK)
    if sa.kind == TypeKind.POINTER and sb.kind == TypeKind.POINTER and op == "-":
        step = sa.type.size or 1
        return _int_object(prog, (int(a) - int(b)) // step)
    x, y = _integer(a), _integer(b)
    return _int_object(prog, x + y if op == "+" else x - y)


def evaluate(prog: "Program", text: str, functions: dict[str, Function] | None = None,
             history: list[Object] | None = None) -> Object:
    """The Object `text` denotes. `functions` adds callables by name (per_cpu, ...); each
    gets Objects and returns one. `history` holds the values $1, $2, ... name."""
    return _Parser(prog, text, dict(functions or {}), history).parse()


def is_plain_name(text: str) -> bool:
    """The expression is one identifier (crash prints `name = $N = value` for those)."""
    return re.fullmatch(r"\s*[A-Za-z_][A-Za-z0-9_.]*\s*", text) is not None and "." not in text.strip()
