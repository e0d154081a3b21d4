"""Parse C type names ("struct task_struct *", "unsigned long", "atomic_long_t [NR_ITEMS]",
"void (*)(int)") into Types, resolving names through a registry.

Array lengths may be integers, enumerator names (`NR_VM_ZONE_STAT_ITEMS`) or sums of them
(`KMALLOC_SHIFT_HIGH + 1`), so a declaration can follow the running kernel's own constants.
"""
from __future__ import annotations

import re
from typing import Protocol

from ...errors import TypeLookupError
from .model import Parameter, Qualifiers, Type, TypeKind

_TOKEN = re.compile(r"\s*(?:(?P<id>[A-Za-z_][A-Za-z0-9_]*)|(?P<num>0[xX][0-9a-fA-F]+|\d+)[uUlL]*"
                    r"|(?P<ell>\.\.\.)|(?P<p>[*()\[\],+\-]))")

_QUALIFIERS = {"const": Qualifiers.CONST, "volatile": Qualifiers.VOLATILE,
               "restrict": Qualifiers.RESTRICT, "__restrict": Qualifiers.RESTRICT}
_INT_WORDS = {"signed", "unsigned", "short", "long", "int", "char", "__int128", "double", "float"}
_IGNORED = {"__user", "__percpu", "__rcu", "__iomem", "__kernel", "__force"}

# Longest type name a user could mean; anything longer is refused before tokenizing.
MAX_SPEC = 4096


class Resolver(Protocol):
    def named(self, name: str) -> Type: ...
    def tagged(self, kind: TypeKind, tag: str) -> Type: ...
    def constant(self, name: str) -> int: ...
    def pointer(self, target: Type, qualifiers: Qualifiers = Qualifiers.NONE) -> Type: ...
    def array(self, element: Type, length: int | None) -> Type: ...
    def function(self, ret: Type, params: list[Parameter], variadic: bool) -> Type: ...


def canonical_int_name(words: list[str]) -> str:
    """drgn/C canonical spelling of an arithmetic type from its words in any order
    ('long unsigned int' -> 'unsigned long')."""
    ws = [w for w in words if w != "int" or len(words) == 1]
    n_long = ws.count("long")
    unsigned = "unsigned" in ws
    signed = "signed" in ws
    if "double" in ws:
        return "long double" if n_long else "double"
    if "float" in ws:
        return "float"
    if "__int128" in ws:
        return "unsigned __int128" if unsigned else "__int128"
    if "char" in ws:
        return "unsigned char" if unsigned else ("signed char" if signed else "char")
    if "short" in ws:
        return "unsigned short" if unsigned else "short"
    if n_long >= 2:
        return "unsigned long long" if unsigned else "long long"
    if n_long == 1:
        return "unsigned long" if unsigned else "long"
    if unsigned:
        return "unsigned int"
    if signed or "int" in words:
        return "int"
    raise TypeLookupError(f"not an arithmetic type: {' '.join(words)!r}")


class _Parser:
    def __init__(self, text: str, resolver: Resolver) -> None:
        if len(text) > MAX_SPEC:
            raise TypeLookupError(f"type name of {len(text)} characters is too long")
        self.text = text
        self.r = resolver
        self.toks: list[tuple[str, str]] = []
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise TypeLookupError(f"cannot parse type name {self.text!r} at {text[pos:]!r}")
            pos = m.end()
            kind = m.lastgroup or "p"
            self.toks.append((kind, m.group(kind)))
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        t = self.peek()
        if t is None:
            raise TypeLookupError(f"type name {self.text!r} ends too early")
        self.i += 1
        return t

    def expect(self, p: str) -> None:
        t = self.take()
        if t[1] != p:
            raise TypeLookupError(f"type name {self.text!r}: expected {p!r}, found {t[1]!r}")

    def fail(self, what: str) -> TypeLookupError:
        return TypeLookupError(f"type name {self.text!r}: {what}")

    # specifier-qualifier list
    def base(self) -> Type:
        quals = Qualifiers.NONE
        words: list[str] = []
        t: Type | None = None
        while True:
            tok = self.peek()
            if tok is None or tok[0] != "id":
                break
            w = tok[1]
            if w in _QUALIFIERS:
                quals |= _QUALIFIERS[w]
                self.i += 1
            elif w in _IGNORED:
                self.i += 1
            elif w in ("struct", "union", "enum"):
                if t is not None or words:
                    raise self.fail(f"unexpected {w!r}")
                self.i += 1
                tag = self.take()
                if tag[0] != "id":
                    raise self.fail(f"{w} needs a tag name")
                t = self.r.tagged(TypeKind(w), tag[1])
            elif w in _INT_WORDS:
                if t is not None:
                    raise self.fail(f"unexpected {w!r}")
                words.append(w)
                self.i += 1
            elif w in ("void", "_Bool", "bool") and t is None and not words:
                t = self.r.named(w)
                self.i += 1
            elif t is None and not words:
                t = self.r.named(w)  # a typedef name
                self.i += 1
            else:
                break
        if words:
            t = self.r.named(canonical_int_name(words))
        if t is None:
            raise self.fail("no type specifier")
        return t.qualified(t.qualifiers | quals) if quals else t

    def length(self) -> int | None:
        if self.peek() == ("p", "]"):
            return None
        total = 0
        sign = 1
        while True:
            tok = self.take()
            if tok[0] == "num":
                v = int(tok[1], 0)
            elif tok[0] == "id":
                v = self.r.constant(tok[1])
            else:
                raise self.fail(f"bad array length near {tok[1]!r}")
            total += sign * v
            nxt = self.peek()
            if nxt in (("p", "+"), ("p", "-")):
                sign = 1 if self.take()[1] == "+" else -1
                continue
            break
        if total < 0 or total > 1 << 32:
            raise self.fail(f"array length {total} out of range")
        return total

    def declarator(self):  # type: ignore[no-untyped-def]
        """Abstract declarator -> function applying it to a base type."""
        ptrs: list[Qualifiers] = []
        while self.peek() == ("p", "*"):
            self.i += 1
            q = Qualifiers.NONE
            while (tok := self.peek()) is not None and tok[0] == "id" and (
                    tok[1] in _QUALIFIERS or tok[1] in _IGNORED):
                q |= _QUALIFIERS.get(tok[1], Qualifiers.NONE)
                self.i += 1
            ptrs.append(q)
        inner = None
        tok = self.peek()
        if tok == ("p", "(") and self.i + 1 < len(self.toks) and \
                self.toks[self.i + 1][1] in ("*", "(", "["):
            self.i += 1
            inner = self.declarator()
            self.expect(")")
        suffixes: list[tuple[str, object]] = []
        while (tok := self.peek()) is not None and tok[1] in ("[", "("):
            self.i += 1
            if tok[1] == "[":
                n = self.length()
                self.expect("]")
                suffixes.append(("array", n))
            else:
                suffixes.append(("func", self.params()))
        r = self.r

        def apply(base: Type) -> Type:
            t = base
            for q in ptrs:
                t = r.pointer(t, q)
            for kind, arg in reversed(suffixes):
                if kind == "array":
                    t = r.array(t, arg)  # type: ignore[arg-type]
                else:
                    params, variadic = arg  # type: ignore[misc]
                    t = r.function(t, params, variadic)
            return inner(t) if inner is not None else t
        return apply

    def params(self) -> tuple[list[Parameter], bool]:
        params: list[Parameter] = []
        variadic = False
        if self.peek() == ("p", ")"):
            self.i += 1
            return params, False
        while True:
            if self.peek() == ("ell", "..."):
                self.i += 1
                variadic = True
            else:
                b = self.base()
                t = self.declarator()(b)
                name = None
                if (tok := self.peek()) is not None and tok[0] == "id":
                    name = tok[1]
                    self.i += 1
                params.append(Parameter(name, t))
            tok = self.take()
            if tok[1] == ")":
                break
            if tok[1] != ",":
                raise self.fail(f"unexpected {tok[1]!r} in parameter list")
        if len(params) == 1 and params[0].type.kind == TypeKind.VOID and not variadic:
            params = []
        return params, variadic

    def parse(self) -> Type:
        base = self.base()
        t = self.declarator()(base)
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return t


def parse_type_name(text: str, resolver: Resolver) -> Type:
    """The Type a C type name denotes; TypeLookupError if it is malformed or names an
    unknown type."""
    if not text or not text.strip():
        raise TypeLookupError("empty type name")
    return _Parser(text, resolver).parse()
