"""The triage report's hung-task section (schema: triage.json `hung_tasks`): the tasks blocked
past the hung-task timeout, what each waits on and who holds it, the chains of holders to
their roots, and deadlocks, from kernel/hung.py's wait-for graph; plus the graph drawn as an
inline SVG for the HTML report (server-side, no script).

The section is absent when no task is hung and no blocked task waits on a lock someone
holds: a dump that did not hang grows nothing.
"""
from __future__ import annotations

import html
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..util.text import printable

if TYPE_CHECKING:
    from ..kernel.hung import HungGraph, HungTask
    from ..program import Program

__all__ = ["hung_section", "wait_graph_svg", "lock_label", "chain_text", "deadlock_text"]

MAX_LISTED = 100  # tasks listed in the section (the counts say how many there are)


def lock_label(w: dict[str, Any] | None) -> str:
    """`zoo_m1`, else `struct mutex 0xffff...`."""
    if not w:
        return "?"
    if w.get("name"):
        return str(w["name"])
    if w.get("lock"):
        return f"{w.get('lock_type') or w.get('kind')} {w['lock']}"
    return str(w.get("kind") or "?")


def _task_dict(h: "HungTask", g: "HungGraph") -> dict[str, Any]:
    d: dict[str, Any] = {"pid": h.pid, "comm": h.comm, "task": f"{h.task:#x}", "state": h.state,
                         "doing": h.doing, "cpu": h.cpu, "blocked_seconds": _r(h.blocked_seconds),
                         "hung_seconds": _r(h.hung_seconds), "hung": h.hung, "wait": None,
                         "problems": list(h.problems)}
    if h.wait is not None:
        w = h.wait.as_dict()
        holder = g.tasks.get(h.wait.owner or 0)
        w["owner_pid"] = holder.pid if holder else None
        w["owner_comm"] = holder.comm if holder else None
        w["owner_state"] = holder.doing if holder else None
        d["wait"] = w
    if h.trace_error:
        d["problems"].append(f"no stack: {h.trace_error}")
    return d


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _edge(g: "HungGraph", a: int) -> dict[str, Any]:
    h = g.tasks[a]
    w = h.wait.as_dict() if h.wait is not None else None
    o = g.tasks.get(g.edges.get(a, 0))
    return {"task": h.comm, "pid": h.pid, "waits_for": lock_label(w), "kind": w and w["kind"],
            "lock": w and w["lock"], "held_by": o.comm if o else None,
            "holder_pid": o.pid if o else None}


def _stack(h: "HungTask") -> dict[str, Any]:
    return {"text": str(h.trace) if h.trace is not None else f"unavailable: {h.trace_error}",
            "functions": h.trace.functions() if h.trace is not None else []}


def chain_text(edges: list[dict[str, Any]], end: dict[str, Any] | None = None) -> str:
    """`c (153) -> zoo_m2 -> b (152) -> zoo_m1 -> a (151)`."""
    parts = []
    for e in edges:
        parts += [f"{e['task']} ({e['pid']})", str(e["waits_for"])]
    if end is not None:
        parts.append(f"{end['task']} ({end['pid']})")
    elif edges:
        parts.append(f"{edges[-1]['held_by']} ({edges[-1]['holder_pid']})")
    return " -> ".join(parts)


def deadlock_text(cycle: list[dict[str, Any]]) -> str:
    return "deadlock: " + chain_text(cycle, {"task": cycle[0]["task"], "pid": cycle[0]["pid"]})


def hung_section(prog: "Program", tasks: Iterable[Any], log: Iterable[str] = ()) -> dict[str, Any] | None:
    from ..kernel.hung import hung_graph
    g = hung_graph(prog, tasks, log)
    hung = g.hung
    if not hung and not g.edges:
        return None
    listed = sorted(g.tasks.values(), key=lambda h: (not h.hung, h.pid))
    shown = [h for h in listed if h.hung or h.task in g.edges or h.task in g.edges.values()]
    chains = []
    for path, into_cycle in g.chains:
        edges = [_edge(g, a) for a in path[:-1]] if not into_cycle else [_edge(g, a) for a in path]
        root = None
        if not into_cycle:
            r = g.tasks[path[-1]]
            root = {"task": r.comm, "pid": r.pid, "task_address": f"{r.task:#x}",
                    "holds": edges[-1]["waits_for"] if edges else None, "state": r.doing,
                    "hung": r.hung, "stack": _stack(r)}
        chains.append({"lock_chain": edges, "root": root, "into_deadlock": into_cycle,
                       "text": chain_text(edges)})
    deadlocks = []
    for cyc in g.cycles:
        edges = [_edge(g, a) for a in cyc]
        deadlocks.append({"cycle": edges, "text": deadlock_text(edges),
                          "stacks": [dict(_stack(g.tasks[a]), pid=g.tasks[a].pid) for a in cyc]})
    return {"timeout_seconds": g.timeout, "timeout_source": g.timeout_source,
            "blocked_count": g.blocked, "hung_count": len(hung),
            "tasks": [_task_dict(h, g) for h in shown[:MAX_LISTED]],
            "chains": chains, "deadlocks": deadlocks, "notes": list(g.notes)}


# -- the graph, drawn -------------------------------------------------------------------------
def _x(s: Any) -> str:
    """Text from the dump, for SVG: control bytes shown (util.text), markup escaped."""
    return html.escape(printable(str(s)))


def wait_graph_svg(sec: dict[str, Any]) -> str:
    """The wait-for graph as inline SVG: tasks (boxes, with what they are doing) and locks
    (ellipses), an edge task -> lock for "waits for" and lock -> task for "held by"; a
    deadlock's nodes and edges in red. Chains are drawn as rows, left to right from the
    waiter nobody waits on to the root; a cycle nothing leads into goes round a circle.
    Every label is escaped."""
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[tuple[str, str, str, bool]] = []
    in_cycle: set[str] = set()
    for d in sec.get("deadlocks", []):
        for e in d["cycle"]:
            in_cycle |= {f"t{e['pid']}", f"l{e['lock'] or e['waits_for']}"}
    doing = {t["pid"]: t.get("doing") for t in sec.get("tasks", [])}

    def tnode(pid: Any, comm: Any) -> str:
        k = f"t{pid}"
        nodes.setdefault(k, {"label": f"{comm} ({pid})", "kind": "task", "sub": doing.get(pid) or ""})
        return k

    for t in sec.get("tasks", []):
        w = t.get("wait")
        if not w or not w.get("lock"):
            continue
        a = tnode(t["pid"], t["comm"])
        lk = f"l{w['lock'] or lock_label(w)}"
        nodes.setdefault(lk, {"label": lock_label(w), "kind": "lock", "sub": w.get("kind") or ""})
        edges.append((a, lk, "waits for", a in in_cycle and lk in in_cycle))
        if w.get("owner_pid") is not None:
            o = tnode(w["owner_pid"], w.get("owner_comm"))
            edges.append((lk, o, "held by", lk in in_cycle and o in in_cycle))
    if not nodes:
        return ""
    pos = _layout(list(nodes)[:60], edges)  # past 60 nodes a drawing is unreadable
    w_ = max(x for x, _ in pos.values()) + 110
    h_ = max(y for _, y in pos.values()) + 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="waitgraph" role="img" '
           f'aria-label="wait-for graph" width="{w_:.0f}" height="{h_:.0f}" '
           f'viewBox="0 0 {w_:.0f} {h_:.0f}">',
           '<defs><marker id="arr" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/>'
           '</marker><marker id="arr-red" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#c00"/>'
           '</marker></defs>']
    for a, b, label, red in edges:
        if a not in pos or b not in pos:
            continue
        (x1, y1), (x2, y2) = pos[a], pos[b]
        dx, dy = x2 - x1, y2 - y1
        dist = math.hypot(dx, dy) or 1.0
        # stop at the shapes' edges (boxes 180x40, ellipses 180x36): a horizontal edge
        # needs 90 px, a vertical one about 22
        pad = 22 + 68 * abs(dx) / dist
        sx, sy, ex, ey = x1 + dx * pad / dist, y1 + dy * pad / dist, x2 - dx * pad / dist, y2 - dy * pad / dist
        color, mark = ("#c00", "arr-red") if red else ("#555", "arr")
        out.append(f'<line x1="{sx:.1f}" y1="{sy:.1f}" x2="{ex:.1f}" y2="{ey:.1f}" stroke="{color}" '
                   f'stroke-width="{2.5 if red else 1.5}" marker-end="url(#{mark})"/>'
                   f'<text x="{(sx + ex) / 2:.1f}" y="{(sy + ey) / 2 - 5:.1f}" font-size="11" '
                   f'fill="{color}" text-anchor="middle">{_x(label)}</text>')
    for k, (x, y) in pos.items():
        nd = nodes[k]
        red = k in in_cycle
        stroke, width = ("#c00", 2.5) if red else ("#333", 1)
        if nd["kind"] == "task":
            out.append(f'<rect x="{x - 90:.1f}" y="{y - 20:.1f}" width="180" height="40" rx="4" '
                       f'fill="#eef" stroke="{stroke}" stroke-width="{width}"/>')
        else:
            out.append(f'<ellipse cx="{x:.1f}" cy="{y:.1f}" rx="90" ry="20" fill="#ffe" '
                       f'stroke="{stroke}" stroke-width="{width}"/>')
        out.append(f'<text x="{x:.1f}" y="{y - 3:.1f}" font-size="12" text-anchor="middle">'
                   f'{_x(nd["label"][:40])}</text><text x="{x:.1f}" y="{y + 12:.1f}" font-size="10" '
                   f'fill="#666" text-anchor="middle">{_x(nd["sub"][:40])}</text>')
    out.append("</svg>")
    return "".join(out)


def _layout(keys: list[str], edges: list[tuple[str, str, str, bool]]) -> dict[str, tuple[float, float]]:
    """Positions: each chain a row from its start (a node nothing points to) along the
    edges; the nodes left (cycles nothing leads into) round a circle below the rows."""
    succ: dict[str, str] = {}
    has_in: set[str] = set()
    for a, b, _, _ in edges:
        succ.setdefault(a, b)
        has_in.add(b)
    want = set(keys)
    pos: dict[str, tuple[float, float]] = {}
    step, row_h = 240.0, 90.0
    y = 40.0
    for start in (k for k in keys if k not in has_in):
        x, n = 110.0, start
        if n in pos:
            continue
        for _ in range(len(keys)):  # a row is at most every node
            if n in pos or n not in want:
                break
            pos[n] = (x, y)
            x += step
            if n not in succ:
                break
            n = succ[n]
        y += row_h
    rest = [k for k in keys if k not in pos]
    if rest:
        r = max(90.0, 60.0 * len(rest))
        cx, cy = 110 + r, y + r
        for i, k in enumerate(rest):
            t = 2 * math.pi * i / len(rest) - math.pi / 2
            pos[k] = (cx + r * math.cos(t), cy + r * math.sin(t))
    return pos
