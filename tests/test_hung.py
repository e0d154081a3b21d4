"""Hung tasks, lock owners, holder chains and deadlocks (kernel/locks.py, kernel/hung.py,
report/hung.py): on the zoo's hung_chain and abba dumps against the manifest, and on crafted
data for the owner words, the graph walk and its bounds."""
from __future__ import annotations

import copy
import json
import tomllib
import warnings
from pathlib import Path

import pytest
from zoo_dumps import dump_path, need

from vmcorekit.errors import CorruptKernelDataError
from vmcorekit.kernel.hung import chains_and_cycles, hung_timeout, reported_hung
from vmcorekit.kernel.locks import (decode_mutex_owner, decode_rwsem_owner, find_list_head,
                                    wait_kind)
from vmcorekit.report.hung import wait_graph_svg

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "tests" / "zoo" / "manifest.toml"


def _zoo_entries(kinds: tuple[str, ...]) -> list[dict]:
    if not MANIFEST.exists():
        return []
    with open(MANIFEST, "rb") as f:
        return [d for d in tomllib.load(f)["dump"] if d["kind"] in kinds]


ENTRIES = _zoo_entries(("hung_chain", "abba"))
_REPORTS: dict[str, dict] = {}


def _report(entry: dict) -> dict:
    """The triage report of a zoo dump (once per session)."""
    path = need(entry)
    if entry["id"] not in _REPORTS:
        from vmcorekit.program import Program
        from vmcorekit.report.triage import collect
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Program.open([path]) as prog:
                _REPORTS[entry["id"]] = collect(prog, path)
    return _REPORTS[entry["id"]]


def _lock_matches(dump: str, got: str, want: str) -> bool:
    """The lock's symbol when the dump's kallsyms has data symbols; a kernel without them
    (Debian arm64: no CONFIG_KALLSYMS_ALL) names it by its place in the module."""
    from vmcorekit.program import Program
    with Program.open([dump]) as prog:
        has = prog.try_symbol_address(want) is not None
    return got == want if has else got.startswith("[zoo]+0x")


def _edge(e: dict) -> tuple:
    return (e["task"], e["pid"], e["held_by"], e["holder_pid"])


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["id"] for e in ENTRIES])
def test_zoo_chain_or_deadlock_matches_manifest(entry: dict) -> None:
    r = _report(entry)
    h = r.get("hung_tasks")
    assert h is not None, r["sections"].get("hung_tasks")
    assert h["timeout_seconds"] == 10  # the zoo boots with hung_task_timeout_secs=10
    hung = {t["pid"] for t in h["tasks"] if t["hung"]}
    assert {t["pid"] for t in entry["hung_tasks"]} <= hung
    want = entry["lock_chain"]
    if entry["kind"] == "hung_chain":
        assert h["deadlocks"] == []
        assert len(h["chains"]) == 1
        ch = h["chains"][0]
        assert [_edge(e) for e in ch["lock_chain"]] == [_edge(e) for e in want]
        for got, w in zip(ch["lock_chain"], want):
            assert got["kind"] == "mutex"
            assert _lock_matches(need(entry), got["waits_for"], w["waits_for"]), got
        root, wroot = ch["root"], entry["chain_root"]
        assert (root["task"], root["pid"], root["state"]) == (wroot["task"], wroot["pid"], wroot["state"])
        assert _lock_matches(need(entry), root["holds"], wroot["holds"])
        assert "msleep" in root["stack"]["functions"]
    else:
        assert h["chains"] == []
        assert len(h["deadlocks"]) == 1
        cyc = h["deadlocks"][0]["cycle"]
        assert [_edge(e) for e in cyc] == [_edge(e) for e in want]
        for got, w in zip(cyc, want):
            assert _lock_matches(need(entry), got["waits_for"], w["waits_for"]), got
        assert cyc[0]["waits_for"] != cyc[1]["waits_for"]
        assert h["deadlocks"][0]["text"].startswith(f"deadlock: {want[0]['task']} ({want[0]['pid']})")


@pytest.mark.parametrize("entry", ENTRIES[:1] + [e for e in ENTRIES if e["kind"] == "abba"][:1],
                         ids=lambda e: e["id"])
def test_zoo_json_validates(entry: dict) -> None:
    import jsonschema
    r = _report(entry)
    schema = json.loads((ROOT / "src/vmcorekit/schemas/triage.json").read_text())
    jsonschema.validate(r, schema)
    assert "hung_tasks" in schema["properties"]


def test_html_draws_the_graph_and_escapes_a_hostile_name() -> None:
    entry = next((e for e in ENTRIES if e["kind"] == "abba"), None)
    if entry is None:
        pytest.skip("no abba dump in the manifest")
    r = copy.deepcopy(_report(entry))
    evil = "<script>x</script>\x1b[31m"
    h = r["hung_tasks"]
    victim = h["tasks"][0]
    old = victim["comm"]
    victim["comm"] = evil
    for t in h["tasks"]:
        if t["wait"] and t["wait"].get("owner_comm") == old:
            t["wait"]["owner_comm"] = evil
    from vmcorekit.report.render_html import render_html
    page = render_html(r)
    assert "<svg" in page and "waits for" in page and "held by" in page
    assert "<script>x" not in page and "&lt;script&gt;x" in page
    assert "\x1b" not in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    svg = wait_graph_svg(h)
    assert 'stroke="#c00"' in svg  # the deadlock drawn in red


def test_other_kinds_grow_no_hung_section() -> None:
    others = [e for e in _zoo_entries(("null", "sysrq", "panic")) if dump_path(e) is not None]
    if not others:
        pytest.skip("no zoo null/sysrq/panic dump")
    for e in others[:3]:
        r = _report(e)
        assert "hung_tasks" not in r, e["id"]
        assert r["sections"]["hung_tasks"]["ok"]


# -- crafted data -----------------------------------------------------------------------------
TASK = 0xFFFF89FB06492100


def test_mutex_owner_word() -> None:
    assert decode_mutex_owner(TASK).task == TASK
    o = decode_mutex_owner(TASK | 0x1)
    assert (o.task, o.flags) == (TASK, ("waiters",))
    o = decode_mutex_owner(TASK | 0x7)
    assert (o.task, o.flags) == (TASK, ("waiters", "handoff", "pickup"))
    assert decode_mutex_owner(0).task == 0
    assert decode_mutex_owner(-0x76 << 40 | 1).task == (-0x76 << 40) & (2**64 - 1)  # signed long


def test_rwsem_owner_word() -> None:
    o = decode_rwsem_owner(TASK | 0x1)
    assert o.reader_owned and o.task == TASK and o.flags == ("reader-owned",)
    o = decode_rwsem_owner(TASK | 0x2)
    assert not o.reader_owned and o.flags == ("nonspinnable",)


def test_wait_kind_from_frames() -> None:
    k, f = wait_kind(["__schedule", "schedule", "schedule_preempt_disabled",
                      "__mutex_lock.constprop.0", "zoo_hung_b"])
    assert k is not None and k.name == "mutex" and f == "__mutex_lock.constprop.0"
    k, f = wait_kind(["__schedule", "schedule", "schedule_timeout", "msleep", "zoo_hung_a"])
    assert k is None and f == "msleep"
    k, _ = wait_kind(["__schedule", "schedule", "rwsem_down_write_slowpath", "down_write"])
    assert k is not None and k.name == "rwsem"
    k, _ = wait_kind(["__schedule", "schedule", "schedule_timeout", "__down_common", "down"])
    assert k is not None and k.name == "semaphore"
    k, _ = wait_kind(["schedule", "schedule_timeout", "__wait_for_common", "wait_for_completion"])
    assert k is not None and k.name == "completion"
    k, _ = wait_kind(["schedule", "io_schedule", "folio_wait_bit_common", "filemap_fault"])
    assert k is not None and k.name == "folio"
    # A lock primitive further out is not where the task sleeps.
    k, f = wait_kind(["schedule", "pipe_read", "__mutex_lock"])
    assert k is None and f == "pipe_read"


def test_chains_and_cycles() -> None:
    chains, cycles = chains_and_cycles({3: 2, 2: 1})
    assert chains == [([3, 2, 1], False)] and cycles == []
    chains, cycles = chains_and_cycles({1: 2, 2: 1})
    assert chains == [] and cycles == [[1, 2]]
    chains, cycles = chains_and_cycles({5: 1, 1: 2, 2: 1, 7: 7})
    assert chains == [([5, 1, 2], True)] and cycles == [[1, 2], [7]]
    # rotated to the smallest key
    _, cycles = chains_and_cycles({9: 4, 4: 6, 6: 9}, key=lambda n: -n)
    assert cycles == [[9, 4, 6]]


def test_chain_walk_is_bounded() -> None:
    edges = {i: i + 1 for i in range(1000)}
    chains, _ = chains_and_cycles(edges, limit=10)
    assert len(chains) == 1 and len(chains[0][0]) == 11 and not chains[0][1]
    # a chain longer than the tasks in the graph cannot exist: the default bound holds
    chains, cycles = chains_and_cycles(edges)
    assert chains[0][0] == list(range(1001)) and cycles == []


def _mem(links: dict[int, int]):
    def read(addr: int) -> int:
        if addr not in links:
            from vmcorekit.errors import PageNotInDumpError
            raise PageNotInDumpError(addr, "not in test memory")
        return links[addr]
    return read


def test_find_list_head_in_a_ring() -> None:
    head, w1, w2 = 0x1000, 0x2000, 0x3000
    read = _mem({head: w1, w1: w2, w2: head})
    assert find_list_head(read, w1, lambda n: n in (w1, w2), limit=8) == [head]


def test_find_list_head_bounds_a_looping_list() -> None:
    # w1 -> w2 -> w3 -> w2 ...: never back to w1 nor to a head
    w1, w2, w3 = 0x2000, 0x3000, 0x4000
    read = _mem({w1: w2, w2: w3, w3: w2})
    with pytest.raises(CorruptKernelDataError):
        find_list_head(read, w1, lambda n: True, limit=8)
    # a ring longer than the bound (more waiters than tasks)
    ring = {0x10000 + i * 0x100: 0x10000 + (i + 1) * 0x100 for i in range(100)}
    ring[0x10000 + 100 * 0x100] = 0x10000
    with pytest.raises(CorruptKernelDataError, match="more than 5"):
        find_list_head(_mem(ring), 0x10000, lambda n: True, limit=5)
    with pytest.raises(CorruptKernelDataError):  # a wild link
        find_list_head(_mem({w1: 0xdead0000}), w1, lambda n: True, limit=5)


def test_timeout_and_reports_from_the_log() -> None:
    class NoSymbols:
        def try_symbol_address(self, name: str) -> None:
            return None
    log = ["Kernel command line: console=ttyS0 sysctl.kernel.hung_task_timeout_secs=42 quiet",
           "INFO: task kworker/0:1:77 blocked for more than 42 seconds."]
    assert hung_timeout(NoSymbols(), log) == (42, "sysctl.kernel.hung_task_timeout_secs on the kernel command line (log)")  # type: ignore[arg-type]
    assert hung_timeout(NoSymbols(), [])[0] == 120  # type: ignore[arg-type]
    assert reported_hung(log) == {77: 42}


# -- a real dump, lied to ---------------------------------------------------------------------
def _hung_chain_x86() -> dict:
    e = next((e for e in ENTRIES if e["kind"] == "hung_chain" and e["arch"] == "x86_64"
              and dump_path(e) is not None), None)
    if e is None:
        pytest.skip("no x86_64 hung_chain zoo dump")
    return e


def _graph_with(entry: dict, lie) -> object:
    """hung_graph of the dump with the pointer reads answering `lie(prog, addr, truth)`."""
    from vmcorekit.kernel.hung import hung_graph
    from vmcorekit.kernel.tasks import task_table
    from vmcorekit.program import Program
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Program.open([need(entry)]) as prog:
            real_p, real_u64 = prog.read_pointer, prog.read_u64
            prog.read_pointer = lambda a: lie(prog, a, real_p(a))  # type: ignore[method-assign]
            prog.read_u64 = lambda a: lie(prog, a, real_u64(a))  # type: ignore[method-assign]
            return hung_graph(prog, task_table(prog))


def test_owner_pointing_to_garbage_is_no_edge() -> None:
    e = _hung_chain_x86()
    m1 = None

    def lie(prog, a, v):
        nonlocal m1
        m1 = m1 or prog.try_symbol_address(e["chain_root"]["holds"])
        return 0x4141414141414100 | 1 if a == m1 else v  # zoo_m1.owner (offset 0)
    g = _graph_with(e, lie)
    b = next(t for t in g.tasks.values() if t.comm == "zoo_hung_b")
    assert b.wait is not None and not b.wait.owner_known
    assert any("not a task" in p for p in b.wait.problems)
    assert b.task not in g.edges
    assert [len(p) for p, _ in g.chains] == [2]  # c -> b, where the chain now ends


def test_wait_list_that_loops_is_bounded() -> None:
    e = _hung_chain_x86()
    m2 = None

    def lie(prog, a, v):
        nonlocal m2
        m2 = m2 or prog.try_symbol_address(e["lock_chain"][0]["waits_for"])
        # zoo_m2.wait_list.next (offset 16) points to itself: the waiter's ring never closes
        return m2 + 16 if a == m2 + 16 else v
    g = _graph_with(e, lie)
    c = next(t for t in g.tasks.values() if t.comm == "zoo_hung_c")
    assert c.wait is not None and c.wait.kind == "mutex" and c.wait.owner is None
    assert c.wait.problems  # said, not raised
    assert c.task not in g.edges


# -- task_wait on a crafted kernel: each kind of waiter on a task's stack -----------------------
class _Sym:
    def __init__(self, name: str, address: int, size: int, type: str) -> None:
        self.name, self.address, self.size, self.type = name, address, size, type
        self.is_text = type in "tT"


class _FakeKernel:
    """The few Program calls kernel/locks.py makes, over a dict of 64-bit words. Offsets
    are 6.1 x86_64's (BTF of the zoo's kernel)."""

    OFF = {("struct list_head", "next"): 0, ("struct list_head", "prev"): 8,
           ("struct mutex", "owner"): 0, ("struct mutex", "wait_list"): 16,
           ("struct mutex_waiter", "list"): 0, ("struct mutex_waiter", "task"): 16,
           ("struct rw_semaphore", "owner"): 8, ("struct rw_semaphore", "wait_list"): 24,
           ("struct rwsem_waiter", "list"): 0, ("struct rwsem_waiter", "task"): 16,
           ("struct semaphore", "wait_list"): 8,
           ("struct semaphore_waiter", "list"): 0, ("struct semaphore_waiter", "task"): 16,
           ("struct completion", "wait.task_list"): 16,
           ("struct swait_queue", "task"): 0, ("struct swait_queue", "task_list"): 8,
           ("struct wait_page_queue", "folio"): 0, ("struct wait_page_queue", "bit_nr"): 8,
           ("struct wait_page_queue", "wait.private"): 24, ("struct wait_page_queue", "wait.func"): 32,
           ("struct wait_page_queue", "wait.entry"): 40,
           ("struct wait_queue_head", "head"): 8, ("struct wait_queue_entry", "private"): 8,
           ("struct wait_queue_entry", "entry"): 24}

    class platform:
        pointer_size = 8

        @staticmethod
        def unpack(fmt: str) -> str:
            return "<" + fmt

    class space:
        pointer_size = 8

    def __init__(self) -> None:
        self.words: dict[int, int] = {}
        self.syms: list[_Sym] = []
        me = self

        class Symbols:
            def lookup(self, addr: int):
                return next((s for s in me.syms if s.address <= addr < s.address + max(s.size, 1)), None)

        class Types:
            def has_member(self, t: str, m: str) -> bool:
                return (t, m) in me.OFF

        self.symbols, self.types = Symbols(), Types()

    def offsetof(self, t: str, m: str) -> int:
        if (t, m) not in self.OFF:
            raise LookupError(f"{t}.{m}")
        return self.OFF[(t, m)]

    def read_u64(self, a: int) -> int:
        from vmcorekit.errors import PageNotInDumpError
        if a not in self.words:
            raise PageNotInDumpError(a, "not in test memory")
        return self.words[a]

    read_pointer = read_u64

    def read_u32(self, a: int) -> int:
        return self.read_u64(a) & 0xFFFFFFFF

    def read(self, a: int, n: int) -> bytes:
        return b"".join(self.words.get(a + i, 0).to_bytes(8, "little") for i in range(0, n, 8))

    def memo(self, key, make):
        return make()

    def try_symbol_address(self, name: str):
        return next((s.address for s in self.syms if s.name == name), None)


T, S = 0xFFFF888000100000, 0xFFFFC90000000000      # the blocked task and its stack
O, SO = 0xFFFF888000200000, 0xFFFFC90000010000     # another task (the owner) and its stack
LOCK = 0xFFFFFFFFC0001000
TS = 0x4000
SP = S + 0x3000
W = S + 0x3E00                                       # the waiter in T's frame
STACKS = {T: S, O: SO}
MUTEX_FRAMES = ["__schedule", "schedule", "schedule_preempt_disabled", "__mutex_lock.constprop.0", "f"]


def _ring(k: _FakeKernel, nodes: list[int]) -> None:
    for i, n in enumerate(nodes):
        k.words[n] = nodes[(i + 1) % len(nodes)]
        k.words[n + 8] = nodes[i - 1]


def _mutex_kernel(owner_word: int) -> _FakeKernel:
    k = _FakeKernel()
    k.syms.append(_Sym("my_lock", LOCK, 32, "b"))
    k.words[LOCK] = owner_word
    k.words[W + 16] = T
    _ring(k, [LOCK + 16, W])
    return k


def test_task_wait_mutex_with_its_owner() -> None:
    from vmcorekit.kernel.locks import task_wait
    w = task_wait(_mutex_kernel(O | 1), T, MUTEX_FRAMES, (S, S + TS), SP, STACKS, TS)
    assert w is not None and (w.kind, w.name, w.lock, w.owner, w.owner_known, w.owner_flags) == \
        ("mutex", "my_lock", LOCK, O, True, ("waiters",))
    assert w.waiter == W and w.frame == "__mutex_lock.constprop.0"


def test_task_wait_mutex_with_a_garbage_owner() -> None:
    from vmcorekit.kernel.locks import task_wait
    w = task_wait(_mutex_kernel(0x4141414141414101), T, MUTEX_FRAMES, (S, S + TS), SP, STACKS, TS)
    assert w is not None and w.lock == LOCK and not w.owner_known
    assert any("not a task" in p for p in w.problems)


def test_task_wait_tells_other_waiters_from_the_head() -> None:
    """Two waiters: the other one's node (on its task's stack) is not taken for the lock."""
    from vmcorekit.kernel.locks import task_wait
    k = _mutex_kernel(O)
    w2 = SO + 0x3E00
    k.words[w2 + 16] = O
    _ring(k, [LOCK + 16, w2, W])
    w = task_wait(k, T, MUTEX_FRAMES, (S, S + TS), SP, STACKS, TS)
    assert w is not None and w.lock == LOCK and w.problems == []


def test_task_wait_wait_list_that_loops() -> None:
    from vmcorekit.kernel.locks import task_wait
    k = _mutex_kernel(O)
    x = 0xFFFF888000300000
    k.words[W] = x          # the waiter's next leads into a loop that never returns
    k.words[x] = x
    w = task_wait(k, T, MUTEX_FRAMES, (S, S + TS), SP, STACKS, TS)
    assert w is not None and w.kind == "mutex" and w.lock is None and w.owner is None
    assert any("cycle" in p for p in w.problems)


def test_task_wait_rwsem_reader_owned() -> None:
    from vmcorekit.kernel.locks import task_wait
    k = _FakeKernel()
    k.words[LOCK + 8] = O | 1
    k.words[W + 16] = T
    _ring(k, [LOCK + 24, W])
    w = task_wait(k, T, ["__schedule", "schedule", "rwsem_down_write_slowpath", "down_write"],
                  (S, S + TS), SP, STACKS, TS)
    assert w is not None and (w.kind, w.lock, w.owner, w.reader_owned) == ("rwsem", LOCK, O, True)
    assert w.name is None  # no symbol: the lock is shown by address


def test_task_wait_semaphore_and_completion() -> None:
    from vmcorekit.kernel.locks import task_wait
    k = _FakeKernel()
    k.syms.append(_Sym("my_sem", LOCK, 24, "d"))
    k.words[W + 16] = T
    _ring(k, [LOCK + 8, W])
    w = task_wait(k, T, ["__schedule", "schedule", "schedule_timeout", "__down_common", "down"],
                  (S, S + TS), SP, STACKS, TS)
    assert w is not None and (w.kind, w.name, w.owner) == ("semaphore", "my_sem", None)
    k = _FakeKernel()
    k.syms.append(_Sym("my_done", LOCK, 32, "d"))
    k.words[W] = T                     # swait_queue.task first
    _ring(k, [LOCK + 16, W + 8])
    w = task_wait(k, T, ["schedule", "schedule_timeout", "__wait_for_common", "wait_for_completion"],
                  (S, S + TS), SP, STACKS, TS)
    assert w is not None and (w.kind, w.name, w.lock) == ("completion", "my_done", LOCK)


def test_task_wait_folio_lock() -> None:
    from vmcorekit.kernel.locks import task_wait
    k = _FakeKernel()
    fn, folio = 0xFFFFFFFF81200000, 0xFFFFEA0000123400
    k.syms.append(_Sym("wake_page_function", fn, 0x80, "t"))
    k.words[W] = folio
    k.words[W + 8] = 0
    k.words[W + 24] = T
    k.words[W + 32] = fn
    w = task_wait(k, T, ["__schedule", "schedule", "io_schedule", "folio_wait_bit_common"],
                  (S, S + TS), SP, STACKS, TS)
    assert w is not None and (w.kind, w.lock, w.lock_type) == ("folio", folio, "struct folio")


def test_task_wait_plain_sleep_and_nothing() -> None:
    from vmcorekit.kernel.locks import task_wait
    k = _FakeKernel()
    w = task_wait(k, T, ["__schedule", "schedule", "schedule_timeout", "msleep", "f"], (S, S + TS), SP, STACKS, TS)
    assert w is not None and (w.kind, w.frame) == ("sleep", "msleep")
    assert task_wait(k, T, ["__schedule", "schedule", "do_idle"], (S, S + TS), SP, STACKS, TS) is None


def test_text_without_hung_tasks_is_one_line_per_held_lock() -> None:
    import io
    from rich.console import Console
    from vmcorekit.report.render_text import _render_hung
    sec = {"timeout_seconds": 120, "timeout_source": "x", "blocked_count": 1, "hung_count": 0,
           "chains": [], "deadlocks": [], "notes": [],
           "tasks": [{"pid": 7, "comm": "[bold]x", "task": "0x1", "state": "D", "doing": "D (__mutex_lock)",
                      "hung": False, "problems": [],
                      "wait": {"kind": "mutex", "name": "[zoo]+0x10", "owner_pid": 8, "owner_comm": "y",
                               "owner_state": "S", "owner_flags": []}}]}
    buf = io.StringIO()
    _render_hung(Console(file=buf, width=200), {"hung_tasks": sec, "sections": {}}, lambda *a: False)
    out = buf.getvalue()
    assert "Hung tasks" not in out and out.count("\n") == 1
    assert "7 [bold]x  waits on mutex [zoo]+0x10 held by 8 y" in out
