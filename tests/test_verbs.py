"""crash's verbs as standalone commands: p/px/pd (over the expression parser), whatis, list,
task, set. Checked against facts read another way (symbols, ps, the corpus's crash outputs)."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from vmcorekit.cli.main import main
from vmcorekit.errors import ExpressionError


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def prog(sample_dump):
    from vmcorekit.program import Program
    p = Program.open(str(sample_dump))
    yield p
    p.close()


# -- the expression parser ------------------------------------------------------------------------

def test_expressions_follow_members_pointers_indexes_and_casts(prog) -> None:
    from vmcorekit.program.expr import evaluate
    task = prog["init_task"]
    assert int(evaluate(prog, "init_task.pid")) == int(task.pid)
    assert evaluate(prog, "&init_task").value_() == task.address_
    nxt = int(task.tasks.next)
    assert int(evaluate(prog, "init_task.tasks.next")) == nxt
    assert int(evaluate(prog, "init_task.tasks.next->prev")) == task.tasks.address_
    assert int(evaluate(prog, "(*init_task.tasks.next).prev")) == task.tasks.address_
    assert int(evaluate(prog, "init_task.comm[0]")) == ord("s")  # swapper/0
    cast = evaluate(prog, f"((struct task_struct *){task.address_:#x})->pid")
    assert int(cast) == int(task.pid)
    assert evaluate(prog, "sizeof(struct list_head)").value_() == 16
    p = evaluate(prog, "&init_task + 1")
    assert int(p) == task.address_ + prog.types.sizeof("struct task_struct")
    assert int(evaluate(prog, "(unsigned char)0x1ff")) == 0xFF


@pytest.mark.parametrize("text, why", [
    ("", "empty"), ("init_task.", "too early"), ("init_task.pid +", "too early"),
    ("init_task @ 1", "unexpected"), ("(" * 500 + "1" + ")" * 500, "nested"),
    ("1" * 5000, "longer"), ("nosuch_function(1)", "unknown function"),
    ("init_task->pid", "not a pointer"), ("*jiffies", "cannot dereference"),
])
def test_bad_expressions_fail_with_one_message(prog, text, why) -> None:
    from vmcorekit.program.expr import evaluate
    with pytest.raises(ExpressionError, match=why):
        evaluate(prog, text)


def test_per_cpu_gives_each_cpus_instance(prog) -> None:
    from vmcorekit.kernel.percpu import per_cpu
    from vmcorekit.program.expr import evaluate
    from vmcorekit.cli.p import expression_functions
    f = expression_functions(prog)
    for cpu in (0, 1):
        rq = evaluate(prog, f"per_cpu(runqueues, {cpu})", f)
        assert rq.address_ == per_cpu(prog, "runqueues", cpu)
        assert int(evaluate(prog, f"per_cpu(runqueues, {cpu}).cpu", f)) == cpu


# -- p / px / pd ----------------------------------------------------------------------------------

def test_p_prints_like_crash(capsys, sample_dump, prog) -> None:
    d = str(sample_dump)
    rc, out, _ = run(capsys, "p", d, "jiffies")
    value = int(prog["jiffies"])
    assert rc == 0 and out == f"jiffies = $1 = {value}\n"
    rc, out, _ = run(capsys, "px", d, "jiffies")
    assert out == f"jiffies = $1 = {value:#x}\n"
    rc, out, _ = run(capsys, "pd", d, "init_task.pid")
    assert out == "$1 = 0\n"
    rc, out, _ = run(capsys, "p", d, "&init_task")
    assert out == f"$1 = (struct task_struct *) {prog['init_task'].address_:#x} <init_task>\n"
    rc, out, _ = run(capsys, "p", d, "*init_task.tasks.next")
    assert out.startswith("$1 = {\n  next = 0x") and out.endswith("}\n")
    rc, out, _ = run(capsys, "p", d, "runqueues")  # a per-CPU variable: its address on each CPU
    assert out.startswith("PER-CPU DATA TYPE:\n  struct rq runqueues;\nPER-CPU ADDRESSES:\n  [0]: ")


def test_p_errors_are_one_line(capsys, sample_dump) -> None:
    for expr in ("no_such_symbol_here", "*(struct task_struct *)0x10", "init_task.nosuchmember", "init_task +"):
        rc, out, err = run(capsys, "p", str(sample_dump), expr)
        assert rc == 1 and out == "" and err.count("\n") == 1 and err.startswith("vmcorekit: error: "), (expr, err)


@pytest.mark.corpus
def test_p_and_list_agree_with_crash(corpus_case: Path) -> None:
    """The corpus's crash session ran `p jiffies`, `p init_uts_ns.name` and a `list -h` of the
    task list: the same lines through a session give the same values, field by field."""
    exp = corpus_case / "expected" / "crash"
    cmds = [ln.split(" > ")[0] for ln in (exp / "commands.in").read_text().splitlines()]
    wanted = [c for c in cmds if c.startswith(("p ", "list "))]
    assert wanted, "no p/list commands in the corpus's crash session"
    script = "\n".join([c for c in cmds if c.startswith("p ")] + ["q"])
    r = subprocess.run([sys.executable, "-m", "vmcorekit", "crash", str(corpus_case / "vmcore.c-d31.kdump")],
                       input=script, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    ours = r.stdout
    theirs = (exp / "p-jiffies.txt").read_text() + (exp / "p-init_uts_ns.txt").read_text()
    assert re.search(r"^jiffies = \$1 = (\d+)$", ours, re.M).group(1) == \
        re.search(r"^jiffies = \$1 = (\d+)$", theirs, re.M).group(1)
    fields = re.compile(r'^  (\w+) = (".*"),?$', re.M)
    assert "$2 = {" in ours
    assert dict(fields.findall(ours)) == dict(fields.findall(theirs)) != {}

    lst = next(c for c in cmds if c.startswith("list "))
    r = subprocess.run([sys.executable, "-m", "vmcorekit", "list", str(corpus_case / "vmcore.c-d31.kdump"),
                        *shlex.split(lst)[1:]], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr

    def entries(text: str) -> list[tuple[str, str, str, str]]:
        return re.findall(r'^([0-9a-f]+)\n  pid = (\d+),\n  tgid = (\d+),\n  comm = (".*"),$', text, re.M)
    mine, crash = entries(r.stdout), entries((exp / "list-tasks.txt").read_text())
    assert len(crash) > 50 and mine == crash


# -- whatis -----------------------------------------------------------------------------------------

def test_whatis_symbols_and_types(capsys, sample_dump, prog) -> None:
    d = str(sample_dump)
    assert run(capsys, "whatis", d, "jiffies")[1] == "volatile unsigned long jiffies;\n"
    assert run(capsys, "whatis", d, "schedule")[1] == "void schedule(void);\n"
    out = run(capsys, "whatis", d, "list_head")[1]
    assert out == ("struct list_head {\n    struct list_head *next;\n    struct list_head *prev;\n}\n"
                   "SIZE: 16\n")
    out = run(capsys, "whatis", d, "struct", "task_struct")[1]
    assert out.endswith(f"SIZE: {prog.types.sizeof('struct task_struct')}\n")
    assert "    pid_t pid;\n" in out
    rc, out, err = run(capsys, "whatis", d, "no_such_thing_at_all")
    assert rc == 1 and "no symbol or type named" in err and err.count("\n") == 1


# -- list -------------------------------------------------------------------------------------------

def test_list_walks_the_task_list_like_ps(capsys, sample_dump) -> None:
    import json
    d = str(sample_dump)
    rc, out, _ = run(capsys, "list", d, "-h", "init_task", "-o", "task_struct.tasks", "-s", "task_struct.pid")
    assert rc == 0
    pids = [int(x) for x in re.findall(r"^  pid = (\d+),$", out, re.M)]
    rc, ps, _ = run(capsys, "ps", "--json", d)
    leaders = {t["pid"] for t in json.loads(ps)["tasks"] if t["pid"] == t["tgid"] and t["pid"]}
    assert pids[0] == 0 and set(pids[1:]) == leaders


def test_list_stops_at_a_cycle_that_misses_the_start(capsys, sample_dump, prog) -> None:
    """From a word that points into the ring of task list_heads (but is no node of it) the
    `next` chain loops forever: the walk prints the ring once and ends with one line."""
    first = int(prog["init_task"].tasks.next)  # a list_head; its prev word holds &init_task.tasks
    rc, out, err = run(capsys, "list", str(sample_dump), f"{first + 8:#x}")
    assert rc == 3
    assert "cycle" in err and err.count("\n") == 1
    lines = out.split()
    assert len(lines) == len(set(lines)) > 50


def test_list_refuses_conflicting_options(capsys, sample_dump) -> None:
    rc, _, err = run(capsys, "list", str(sample_dump), "-h", "-H", "init_task")
    assert rc == 2 and err.count("\n") == 1


# -- task / set -------------------------------------------------------------------------------------

def test_task_and_set_show_the_context(capsys, sample_dump, prog) -> None:
    from vmcorekit.kernel.tasks import find_task_addresses
    d = str(sample_dump)
    init = find_task_addresses(prog, 1)[0]
    rc, out, _ = run(capsys, "set", d, "1")
    assert rc == 0 and out.splitlines()[:4] == ["    PID: 1", 'COMMAND: "init"', f"   TASK: {init:x}",
                                                 "    CPU: 0"]
    rc, out, _ = run(capsys, "task", d, f"{init:#x}", "-R", "pid,comm")
    assert out.splitlines()[-2:] == ["  pid = 1,", '  comm = "init\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000",']
    rc, out, _ = run(capsys, "set", d)  # no argument: the panic task, marked
    assert rc == 0 and out.rstrip().endswith("(PANIC)")
    rc, _, err = run(capsys, "task", d, "999999")
    assert rc == 2 and "no task with pid 999999" in err
    rc, _, err = run(capsys, "task", d, f"{init + 8:#x}")
    assert rc == 2 and "is not a task" in err


def test_arm64_verbs(capsys) -> None:
    from conftest import SAMPLES, decompressed_elf
    if not (SAMPLES / "arm64" / "vmcore.elf.zst").exists():
        pytest.skip("samples/arm64 absent")
    d = str(decompressed_elf(SAMPLES / "arm64"))
    rc, out, _ = run(capsys, "p", d, "init_task.comm")
    assert rc == 0 and out.startswith('$1 = "swapper')
    rc, out, _ = run(capsys, "whatis", d, "list_head")
    assert rc == 0 and out.endswith("SIZE: 16\n")
    rc, out, _ = run(capsys, "list", d, "-h", "init_task", "-o", "task_struct.tasks")
    assert rc == 0 and len(out.split()) > 20
    rc, out, _ = run(capsys, "task", d, "1", "-R", "pid")
    assert rc == 0 and out.rstrip().endswith("pid = 1,")


def test_globals_without_a_btf_type_work_through_a_cast(capsys, sample_dump, prog) -> None:
    """BTF types per-CPU variables and functions only: a plain global is an address whose
    type the user supplies, as in gdb without debuginfo; used bare, one line says so."""
    import struct as _struct
    d = str(sample_dump)
    addr = prog.symbol_address("loops_per_jiffy")
    want = _struct.unpack("<Q", prog.read(addr, 8))[0]
    assert run(capsys, "p", d, "(unsigned long)loops_per_jiffy")[1] == f"$1 = {want}\n"
    assert run(capsys, "p", d, "&loops_per_jiffy")[1] == f"$1 = (void *) {addr:#x} <loops_per_jiffy>\n"
    for expr in ("loops_per_jiffy", "loops_per_jiffy + 1", "loops_per_jiffy.x", "sizeof(loops_per_jiffy)"):
        rc, out, err = run(capsys, "p", d, expr)
        assert rc == 1 and "without a type in this dump's BTF" in err and err.count("\n") == 1, expr
    assert run(capsys, "whatis", d, "loops_per_jiffy")[1] == "<data variable, no debug info> loops_per_jiffy;\n"
    assert run(capsys, "p", d, "-1")[1] == "$1 = -1\n"  # a negative number is no option


def test_struct_l_prints_the_struct_holding_a_member(capsys, sample_dump, prog) -> None:
    from vmcorekit.kernel.tasks import find_task_addresses
    node = int(prog["init_task"].tasks.next)  # the tasks list_head of the first task after init_task
    rc, out, _ = run(capsys, "struct", str(sample_dump), "task_struct.pid", "-l", "task_struct.tasks", f"{node:#x}")
    pid = int(re.search(r"pid = (\d+)", out).group(1))
    assert rc == 0 and find_task_addresses(prog, pid)[0] == node - prog.offsetof("struct task_struct", "tasks")
