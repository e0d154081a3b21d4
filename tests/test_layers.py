"""The layering of docs/ARCHITECTURE.md, enforced: data flows one way, so a module imports only
from its own layer or lower ones, and no two files import each other (directly or round a
circle). Imports inside functions count (a lazy import is still a dependency); imports under
`if TYPE_CHECKING:` do not (they never run)."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "src" / "vmcorekit"

# Lowest first. filter/ and report/ are siblings: neither may import the other.
LAYERS = [("errors", "util"), ("dump",), ("vmcoreinfo",), ("arch",), ("program",), ("kernel",),
          ("filter", "report"), ("minidump",), ("fleet",), ("cli", "__init__", "__main__")]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.AST) -> bool:
    t = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        isinstance(t, ast.Name) and t.id == "TYPE_CHECKING"
        or isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(mod: str, path: Path) -> set[str]:
    """Every vmcorekit module `mod` imports (a name imported from a package counts as the
    submodule when there is one of that name, else as the package)."""
    is_pkg = path.name == "__init__.py"
    package = mod if is_pkg else mod.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for ch in ast.iter_child_nodes(node):
            if _is_type_checking(ch):
                for sub in getattr(ch, "orelse", []):
                    visit(sub)
                continue
            if isinstance(ch, ast.Import):
                for a in ch.names:
                    if a.name.split(".")[0] == "vmcorekit" and (t := _resolve(a.name)):
                        found.add(t)
            elif isinstance(ch, ast.ImportFrom):
                if ch.level:
                    base = package.split(".")
                    base = base[:len(base) - (ch.level - 1)]
                    full = ".".join(base + ([ch.module] if ch.module else []))
                else:
                    full = ch.module or ""
                if full.split(".")[0] != "vmcorekit":
                    continue
                for a in ch.names:
                    t = _resolve(f"{full}.{a.name}")
                    if t == mod or t is None or len(t) <= len(full):
                        t = _resolve(full)
                    if t:
                        found.add(t)
            visit(ch)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(mod)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _layer(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_has_a_layer() -> None:
    unknown = sorted({_layer(m) for m in MODULES} - set(RANK))
    assert not unknown, f"folders with no place in LAYERS: {unknown}"


def test_no_upward_imports() -> None:
    bad = []
    for m, targets in GRAPH.items():
        for t in targets:
            lm, lt = _layer(m), _layer(t)
            siblings = lm != lt and {lm, lt} <= {"filter", "report"}
            if RANK[lt] > RANK[lm] or siblings:
                bad.append(f"{m} -> {t}")
    assert not bad, "imports from a lower layer to a higher one (or between siblings):\n" + "\n".join(sorted(bad))


def _circles() -> list[list[str]]:
    """Strongly connected components with more than one file (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in GRAPH:
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(GRAPH.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_import_circles() -> None:
    circles = _circles()
    assert not circles, "files that import each other:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_checker_sees_a_planted_violation() -> None:
    """The checks above are only worth something if they can fail."""
    saved = dict(GRAPH)
    try:
        GRAPH["vmcorekit.dump.base"] = GRAPH["vmcorekit.dump.base"] | {"vmcorekit.cli.main"}
        GRAPH["vmcorekit.cli.main"] = GRAPH["vmcorekit.cli.main"] | {"vmcorekit.dump.base"}
        assert any("vmcorekit.dump.base" in c for c in _circles())
        try:
            test_no_upward_imports()
        except AssertionError as e:
            assert "vmcorekit.dump.base -> vmcorekit.cli.main" in str(e)
        else:
            raise AssertionError("upward import not detected")
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


# Every spelling of an architecture the project knows or may meet.
ARCH_NAMES = {"x86_64", "amd64", "x86-64", "i386", "i686", "x86", "aarch64", "arm64", "arm",
              "ppc64", "ppc64le", "powerpc", "riscv64", "riscv", "s390x", "s390", "mips", "loongarch64"}


def _arch_literals(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and node.value.lower() in ARCH_NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_arch_literals(e) for e in node.elts)
    return False


def test_no_arch_name_tests_outside_arch() -> None:
    """Per-architecture knowledge lives in the Platform records (arch/platform.py): code
    elsewhere asks `prog.platform`, never compares with an architecture's name."""
    bad = []
    for m, p in MODULES.items():
        if _layer(m) == "arch":
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Compare) and any(_arch_literals(n) for n in [node.left, *node.comparators]):
                bad.append(f"{p.relative_to(PKG)}:{node.lineno}")
    assert not bad, "architecture tests outside arch/: " + ", ".join(bad)
