"""The one crash-report recogniser and the titles built on it, on small hand-made logs: every
family's header form, every printk prefix form, noise, cut tails, CRLF, invalid UTF-8, two
reports in a row, bounded memory on a long stream."""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vmcorekit.kernel.printk.events import (arch_skip_frames, find_reports, first_report, function_name,
                                            parse_frame, strip_prefix)
from vmcorekit.report.titles import load_rules, stack_title, title_log
from vmcorekit.report.titles_log import triage_lines
from vmcorekit.util.text import printable as escape_control

REPO = Path(__file__).resolve().parent.parent

X86_TRACE = """\
CPU: 1 PID: 4242 Comm: syz-executor.0 Not tainted 6.1.0-rc1 #1
Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.0 04/01/2014
RIP: 0010:{rip}+0x1a/0x40
Code: 00 00 00
RSP: 0018:ffffc90000b7f9d8 EFLAGS: 00010246
RAX: 0000000000000000 RBX: ffff888100000000 RCX: 0000000000000000
Call Trace:
 <TASK>
 {f1}+0x1c7/0x380
 ? some_guess+0x3a0/0x3a0
 {f2}.isra.0+0x4d/0x380
 __x64_sys_ioctl+0x73/0xb0
 do_syscall_64+0x35/0x80
 entry_SYSCALL_64_after_hwframe+0x63/0xcd
 </TASK>
Modules linked in: nf_tables x_tables
---[ end trace 0000000000000000 ]---
"""


def title(text: str) -> str | None:
    first, _ = title_log(text.splitlines())
    return None if first is None else first.title


def trace(rip: str = "victim", f1: str = "caller_one", f2: str = "caller_two") -> str:
    return X86_TRACE.format(rip=rip, f1=f1, f2=f2)


# -- each family ----------------------------------------------------------------------------------
@pytest.mark.parametrize("header, extra, want", [
    ("BUG: KASAN: use-after-free in tcp_close+0x1/0x2",
     "Read of size 8 at addr ffff888012345678 by task syz/1\n", "KASAN: use-after-free Read in caller_one"),
    ("BUG: KASAN: slab-out-of-bounds in memcpy+0x1/0x2",
     "Write of size 4 at addr ffff888012345678 by task syz/1\n", "KASAN: slab-out-of-bounds Write in caller_one"),
    ("general protection fault, probably for non-canonical address 0xdffffc0000000001: 0000 [#1] PREEMPT SMP KASAN",
     "", "general protection fault in victim"),
    ("BUG: kernel NULL pointer dereference, address: 0000000000000008", "",
     "BUG: unable to handle kernel NULL pointer dereference in victim"),
    ("BUG: unable to handle page fault for address: ffffc90000000000", "",
     "BUG: unable to handle kernel paging request in victim"),
    ("kernel BUG at net/core/skbuff.c:120!", "invalid opcode: 0000 [#1] PREEMPT SMP KASAN\n", "kernel BUG in victim"),
    ("divide error: 0000 [#1] PREEMPT SMP KASAN", "", "divide error in victim"),
    # a stall is titled by the handler the syscall dispatched to
    ("BUG: soft lockup - CPU#0 stuck for 143s! [syz-executor.0:4242]", "", "BUG: soft lockup in caller_two"),
    ("BUG: sleeping function called from invalid context at mm/slab.h:123", "",
     "BUG: sleeping function called from invalid context in caller_one"),
    ("BUG: scheduling while atomic: syz/4242/0x00000002", "", "BUG: scheduling while atomic in caller_one"),
    ("BUG: using smp_processor_id() in preemptible [00000000] code: syz/4242", "",
     "BUG: using smp_processor_id() in preemptible code in caller_one"),
    # a stack overflow (runaway recursion) is named by the handler that entered it
    ("BUG: TASK stack guard page was hit at ffffc90000b80000 (stack is ffffc90000b7c000..ffffc90000b80000)", "",
     "BUG: stack guard page was hit in caller_two"),
    ("BUG: KMSAN: uninit-value in victim+0x1/0x2", "", "KMSAN: uninit-value in caller_one"),
    ("UBSAN: shift-out-of-bounds in net/core/dev.c:123:45", "", "UBSAN: shift-out-of-bounds in caller_one"),
    ("INFO: task syz-executor.0:4242 blocked for more than 143 seconds.", "", "INFO: task hung in caller_one"),
])
def test_family_titles(header: str, extra: str, want: str) -> None:
    assert title(header + "\n" + extra + trace()) == want


def test_warning_titles() -> None:
    w = "WARNING: CPU: 0 PID: 1 at net/core/dev.c:10 {fn}+0x10/0x20\n"
    assert title(w.format(fn="victim") + trace()) == "WARNING in victim"
    # the reporting helper named in the header is skipped: the stack names the bug
    refc = "refcount_t: underflow; use-after-free.\n" + w.format(fn="refcount_warn_saturate")
    assert title(refc + trace(rip="refcount_warn_saturate")) == "WARNING: refcount bug in caller_one"
    # 6.x form: "WARNING: file:line at func+0x.., CPU#0: comm/pid"
    assert title("WARNING: net/core/dev.c:10 at victim+0x10/0x20, CPU#0: syz/1\n" + trace()) == "WARNING in victim"
    # no call trace at all: the report is cut, the title says so
    assert title(w.format(fn="victim") + "Modules linked in:\n") == "WARNING in corrupted"


def test_lockdep_and_rcu_stall() -> None:
    log = """\
======================================================
WARNING: possible circular locking dependency detected
6.1.0 #1 Not tainted
------------------------------------------------------
syz-executor.0/4242 is trying to acquire lock:
ffff888012345678 (&sb->s_type->i_mutex_key#12){+.+.}-{3:3}, at: inode_lock include/linux/fs.h:756 [inline]
ffff888012345678 (&sb->s_type->i_mutex_key#12){+.+.}-{3:3}, at: do_truncate+0x123/0x200 fs/open.c:63

but task is already holding lock:
"""
    assert title(log) == "possible deadlock in do_truncate"
    stall = """\
rcu: INFO: rcu_preempt self-detected stall on CPU
rcu: \t0-....: (10500 ticks this GP) idle=8f4c/1/0x4000000000000000
NMI backtrace for cpu 0
CPU: 0 PID: 4242 Comm: syz-executor.0 Not tainted 6.1.0 #1
Call Trace:
 <IRQ>
 dump_stack_lvl+0x1/0x2
 nmi_cpu_backtrace+0x1/0x2
 rcu_dump_cpu_stacks+0x1/0x2
 rcu_sched_clock_irq+0x1/0x2
 update_process_times+0x1/0x2
 tick_sched_timer+0x1/0x2
 __hrtimer_run_queues+0x1/0x2
 hrtimer_interrupt+0x1/0x2
 __sysvec_apic_timer_interrupt+0x1/0x2
 sysvec_apic_timer_interrupt+0x1/0x2
 </IRQ>
 <TASK>
 asm_sysvec_apic_timer_interrupt+0x1/0x2
 spin_forever+0x1/0x2
 my_dev_ioctl+0x1/0x2
 __x64_sys_ioctl+0x1/0x2
 do_syscall_64+0x1/0x2
 entry_SYSCALL_64_after_hwframe+0x1/0x2
 </TASK>
"""
    assert title(stall) == "INFO: rcu detected stall in my_dev_ioctl"


def test_memory_leak_and_panic() -> None:
    leak = """\
BUG: memory leak
unreferenced object 0xffff888012345678 (size 64):
  comm "syz-executor.0", pid 4242, jiffies 4294967296 (age 12.340s)
  hex dump (first 32 bytes):
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................
  backtrace:
    [<ffffffff81234567>] kmalloc include/linux/slab.h:600 [inline]
    [<ffffffff81234567>] kzalloc include/linux/slab.h:733 [inline]
    [<ffffffff81234567>] leaky_alloc+0x12/0x40 drivers/leaky.c:10
    [<ffffffff81234568>] leaky_ioctl+0x34/0x80 drivers/leaky.c:20
"""
    assert title(leak) == "memory leak in leaky_alloc"
    assert title("Kernel panic - not syncing: Couldn't open N_TTY ldisc for ptm1 --- error -12.\n") == \
        "kernel panic: Couldn't open N_TTY ldisc"
    assert title("Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n") == \
        "kernel panic: VFS: Unable to mount root fs on unknown-block(0,0)"


def test_no_crash_no_title() -> None:
    assert title("hello\nusb 1-1: new device\nINFO: lockdep is turned off.\n") is None
    assert title("") is None
    # the OOM killer is recognised, never titled
    oom = "bash invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=0\n"
    assert title(oom) is None
    assert first_report(oom.splitlines()).kind == "oom"


# -- what every report carries --------------------------------------------------------------------
def test_report_fields() -> None:
    rep = first_report(("general protection fault: 0000 [#1] SMP\n" + trace()).splitlines())
    assert (rep.cpu, rep.pid, rep.comm, rep.taint) == (1, 4242, "syz-executor.0", "Not tainted")
    assert rep.release == "6.1.0-rc1"
    assert rep.ip == "victim+0x1a/0x40" and rep.ip_label == "RIP" and rep.arch == "x86_64"
    assert rep.error_code == "0000"
    assert rep.modules == ["nf_tables", "x_tables"]
    f = [x for x in rep.stack if x.function == "caller_two"][0]
    assert (f.raw, f.offset, f.size, f.reliable) == ("caller_two.isra.0", 0x4d, 0x380, True)
    guess = [x for x in rep.stack if x.function == "some_guess"][0]
    assert not guess.reliable
    assert rep.end - rep.start + 1 == len(("general protection fault: 0000 [#1] SMP\n" + trace()).splitlines())
    cpu612 = first_report(["BUG: kernel NULL pointer dereference, address: 0000000000000000",
                           "CPU: 3 UID: 0 PID: 77 Comm: kworker/3:1 Tainted: G        W          6.12.0 #1"])
    assert (cpu612.cpu, cpu612.pid, cpu612.comm, cpu612.taint) == (3, 77, "kworker/3:1", "Tainted: G        W")


@pytest.mark.parametrize("line, label, where", [
    ("pc : victim+0x24/0x60", "pc", "victim+0x24/0x60"),
    ("NIP [c000000000a3b8fc] victim+0x58/0x1f0", "NIP", "victim+0x58/0x1f0"),
    ("epc : victim+0x1c/0x40", "epc", "victim+0x1c/0x40"),
    ("Krnl PSW : 0704c00180000000 000000000046e4ac (victim+0x6c/0x1a8)", "Krnl PSW", "victim+0x6c/0x1a8"),
    ("RIP: 0010:victim+0x1a/0x40 [buggy]", "RIP", "victim+0x1a/0x40 [buggy]"),
])
def test_ip_lines(line: str, label: str, where: str) -> None:
    rep = first_report(["Internal error: Oops: 0000000096000005 [#1] PREEMPT SMP", line])
    assert (rep.ip_label, rep.ip) == (label, where)
    assert rep.guilty is not None and rep.guilty.function == "victim"


def test_frame_forms() -> None:
    assert parse_frame(" ? foo+0x1/0x2 [mod]").module == "mod"
    assert not parse_frame(" ? foo+0x1/0x2").reliable
    assert parse_frame(" [<ffffffff81000000>] foo.constprop.3+0x1/0x2").function == "foo"
    assert parse_frame(" __dump_stack lib/dump_stack.c:77 [inline]").inline
    assert parse_frame(" foo+0x2b0/0x6e0 (T)").function == "foo"
    assert parse_frame("[c0000000] [c0000001] foo+0x58/0x1f0 (unreliable)").reliable is False
    assert parse_frame("[<c010e8b4>] (dump_backtrace) from [<c010ebb0>] (show_stack+0x18/0x1c)").function \
        == "dump_backtrace"
    assert parse_frame("RIP: 0010:foo+0x1/0x2") is None
    assert parse_frame("just some words") is None
    assert function_name("f.isra.0.cold") == "f" and function_name("g.part.12") == "g"


# -- noise ------------------------------------------------------------------------------------------
GPF = "general protection fault: 0000 [#1] SMP KASAN\n" + trace()
PREFIXES = [
    "[  12.345678] ",
    "[  12.345678][ T1234] ",
    "[ T1234] ",
    "[    C0] ",
    "Jan  1 00:00:00 host kernel: ",
    "2024-01-01T00:00:00.123456+00:00 host kernel: ",
    "<4>[  12.345678] ",
    "<4>",
]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_prefix_forms(prefix: str) -> None:
    text = "".join(prefix + ln + "\n" for ln in GPF.splitlines())
    assert title(text) == "general protection fault in victim"
    assert strip_prefix(prefix + "hello")[0] == "hello"


def test_caller_ids_and_interleaving() -> None:
    assert strip_prefix("[  12.345678][ T1234] x") == ("x", "T1234")
    assert strip_prefix("[    C3] x") == ("x", "C3")
    a = ("WARNING: CPU: 0 PID: 1 at a.c:1 first_warn+0x1/0x2\n" + trace(f1="a_caller")).splitlines()
    b = ("general protection fault: 0000 [#1] SMP\n" + trace(rip="b_victim", f1="b_caller")).splitlines()
    mixed = []
    for x, y in itertools.zip_longest(a, b):
        if x is not None:
            mixed.append(f"[  1.0][ T100] {x}")
        if y is not None:
            mixed.append(f"[  1.0][ T200] {y}")
    reps = sorted(find_reports(mixed), key=lambda r: r.start)
    assert [r.family for r in reps] == ["warning", "gpf"]
    assert reps[0].pid == 4242 and reps[0].guilty.function == "first_warn"
    assert reps[1].guilty.function == "b_victim"
    assert "b_caller" not in [f.function for f in reps[0].stack]


def test_crlf_invalid_utf8_garbage_and_cut_tail() -> None:
    raw = ("\x1b[0m\x00garbage\r\n" + GPF.replace("\n", "\r\n")).encode() + b"\xff\xfe broken \xc3\n"
    first, _ = title_log(raw.splitlines())
    assert first.title == "general protection fault in victim"
    cut = "\n".join(GPF.splitlines()[:2])    # header and CPU line: no RIP, no stack
    first, _ = title_log(cut.splitlines())
    assert first.title == "general protection fault in corrupted" and first.corrupted


def test_two_reports_in_a_row() -> None:
    text = ("BUG: KASAN: use-after-free in a+0x1/0x2\nRead of size 8 at addr 0 by task x/1\n" + trace(f1="first")
            + "WARNING: CPU: 0 PID: 1 at b.c:1 second_warn+0x1/0x2\n" + trace(f1="second"))
    first, every = title_log(text.splitlines())
    assert first.title == "KASAN: use-after-free Read in first"
    assert [t.title for t in every] == ["KASAN: use-after-free Read in first", "WARNING in second_warn"]
    assert every[0].report.end < every[1].report.start


def test_signature_stable_and_discriminating() -> None:
    a = title_log(GPF.splitlines())[0].signature
    b = title_log(GPF.replace("0x1a/0x40", "0x2b/0x50").replace("4242", "99").splitlines())[0].signature
    c = title_log(GPF.replace("victim", "other").splitlines())[0].signature
    assert a == b and a["id"] != c["id"] and a["rules_version"] == load_rules().version


def test_stack_title_and_arch_skip() -> None:
    t = stack_title("kernel panic", ["panic+0x1/0x2", "sysrq_handle_crash+0x16/0x20",
                                     "__handle_sysrq.cold+0x44/0x11c", "entry_SYSCALL_64_after_hwframe+0x1/0x2"])
    assert t.title == "kernel panic in sysrq_handle_crash" and t.source == "stack"
    assert "entry_SYSCALL_64_after_hwframe" in arch_skip_frames("x86_64")
    assert "el0_svc" in arch_skip_frames("aarch64")
    for arch in ("ppc64le", "riscv64", "s390x"):
        assert arch_skip_frames(arch)
    assert arch_skip_frames("vax") == frozenset()


def test_long_stream_is_bounded() -> None:
    """A very long report and a huge line: bounded lines and frames kept, all consumed lazily."""
    def lines():
        yield "general protection fault: 0000 [#1] SMP"
        yield "x" * 10_000_000
        for i in range(200_000):
            yield f" f{i}+0x1/0x2"
    reps = list(find_reports(lines()))
    assert len(reps[0].stack) <= 512 and len(reps[0].lines) <= 3000
    # the first frames and the last ones are kept (a recursion's entry is at its end)
    assert reps[0].stack[0].function == "f0" and reps[0].stack[-1].line == reps[0].end
    assert reps[0].cut and reps[0].corrupted and reps[0].frames_dropped > 0
    assert sum(len(x) for x in reps[0].lines) < 4_000_000


def test_triage_lines_and_escape() -> None:
    r = triage_lines(GPF.splitlines(), "gpf.log")
    assert r["title"] == "general protection fault in victim" and r["class"] == "BUG"
    assert r["guilty_frame"] == {"function": "victim", "module": None, "offset": "0x1a"}
    assert (r["cpu"], r["pid"], r["comm"], r["taint"]) == (1, 4242, "syz-executor.0", "Not tainted")
    assert r["reports"][0]["start"] == 0 and r["corrupted"] is False
    assert escape_control("a\x1b[31mb\x07") == "a\\x1b[31mb\\x07"
    json.dumps(r)


def test_cli_triage_log(tmp_path: Path) -> None:
    good = tmp_path / "gpf.log"
    good.write_text(GPF)
    esc = tmp_path / "esc.log"
    esc.write_text("Kernel panic - not syncing: evil \x1b[2J title\n")
    quiet = tmp_path / "quiet.log"
    quiet.write_text("nothing here\n")
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    binary = tmp_path / "bin.log"
    binary.write_bytes(bytes(range(256)) * 64)
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    args = [sys.executable, "-m", "vmcorekit", "triage", "--log", str(good), str(esc), str(quiet), str(empty),
            str(binary), str(tmp_path), "-"]
    p = subprocess.run(args, input=GPF.encode(), capture_output=True, env=env, timeout=120)
    out = p.stdout.decode().splitlines()
    assert p.returncode == 3, p.stderr
    assert out[0].startswith("general protection fault in victim\t") and out[0].endswith(str(good))
    assert "\\x1b[2J" in out[1] and "\x1b" not in p.stdout.decode()
    assert out[2].startswith("(no crash)\t-\t")
    assert out[3].endswith("<stdin>") and out[3].startswith("general protection fault in victim")
    err = p.stderr.decode().splitlines()
    assert len(err) == 3 and all(e.startswith("vmcorekit: error: ") for e in err)
    assert "empty" in err[0] and "binary" in err[1] and "directory" in err[2]
    p = subprocess.run(args[:6] + ["--json"], capture_output=True, env=env, timeout=120)
    assert p.returncode == 0
    r = json.loads(p.stdout.decode().splitlines()[0])
    assert r["source"] == str(good) and r["signature"]["rules_version"] == load_rules().version
    for key in ("title", "alt_titles", "class", "guilty_frame", "corrupted", "signature", "reports", "cpu", "pid",
                "comm", "taint"):
        assert key in r


def test_rust_symbols_and_panic() -> None:
    from vmcorekit.kernel.printk.events import rust_demangle
    assert rust_demangle("_RNvMs3_NtCshgDM7dBCdno_11rust_binder7processNtB5_7Process10update_ref") == \
        "<rust_binder::process::Process>::update_ref"
    assert rust_demangle("_RNvNtCs9jEwPDbx20M_4core9panicking9panic_fmt") == "core::panicking::panic_fmt"
    assert rust_demangle("_RNvXs5_NtCsaRLatgXjLfN_6kernel4syncINtB5_3ArcNtNtCs_11rust_binder6thread6ThreadE"
                         "NtNtNtCsb_4core3ops4drop4Drop4drop") == \
        "<kernel::sync::Arc<rust_binder::thread::Thread> as core::ops::drop::Drop>::drop"
    assert rust_demangle("_Rnot_a_symbol") == "_Rnot_a_symbol"
    log = """\
rust_kernel: panicked at drivers/android/binder/node.rs:877:13:
attempt to subtract with overflow
------------[ cut here ]------------
kernel BUG at rust/helpers/bug.c:7!
Oops: invalid opcode: 0000 [#1] PREEMPT SMP KASAN PTI
CPU: 0 UID: 0 PID: 298 Comm: syz-executor821 Not tainted 6.12.23 #0
RIP: 0010:rust_helper_BUG+0x8/0x10
Call Trace:
 <TASK>
 _RNvCscSpY9Juk0HT_7___rustc17rust_begin_unwind+0x15b/0x160
 _RNvNtCs9jEwPDbx20M_4core9panicking9panic_fmt+0x84/0x90
 _RNvMs3_NtCshgDM7dBCdno_11rust_binder7processNtB5_7Process10update_ref+0x17e5/0x1860
 __x64_sys_ioctl+0x7f/0xa0
 </TASK>
"""
    assert title(log) == "attempt to subtract with overflow in <rust_binder::process::Process>::update_ref"


def test_triage_title_fields_from_log_and_from_stack(sample_dump: Path, monkeypatch) -> None:
    """A dump: the title comes from its log; with no report in the log (an overwritten log),
    from the panicking task's backtrace, and the source says which."""
    import jsonschema

    from vmcorekit.report import triage as triage_mod
    schema = json.loads((REPO / "src" / "vmcorekit" / "schemas" / "triage.json").read_text())
    r = triage_mod.triage(str(sample_dump))
    jsonschema.validate(r, schema)
    c = r["crash"]
    assert c["title"] == "kernel panic: sysrq triggered crash" and c["title_source"] == "log"
    assert c["class"] == "PANIC" and c["guilty_frame"]["function"] == "sysrq_handle_crash"
    assert c["signature"]["rules_version"] == load_rules().version
    monkeypatch.setattr(triage_mod, "title_log", lambda lines, *a, **k: (None, []))
    r = triage_mod.triage(str(sample_dump))
    jsonschema.validate(r, schema)
    c = r["crash"]
    assert c["title_source"] == "stack" and c["title"] == "kernel panic in sysrq_handle_crash"
    assert r["sections"]["title"]["ok"]


def test_every_rule_pattern_compiles() -> None:
    """The rules' alternations compile on first use (kernel/printk/events._LazyPattern); a bad
    regex in a skip list must still fail here, not on the first log that reaches it."""
    import dataclasses
    import re

    rules = load_rules()

    def patterns(obj: object):
        if hasattr(obj, "pattern") and not isinstance(obj, str):
            yield obj
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            for f in dataclasses.fields(obj):
                yield from patterns(getattr(obj, f.name))
        elif isinstance(obj, (tuple, list)):
            for x in obj:
                yield from patterns(x)
        elif isinstance(obj, dict):
            for x in obj.values():
                yield from patterns(x)

    found = list(patterns(rules))
    assert len(found) > 100
    for p in found:
        re.compile(p.pattern)


# -- stalls whose log lacks the stuck CPU's stack; signatures from the crash's own context --------

ARM64_RCU_STALL = """\
[   18.920087] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:
[   18.920732] rcu: \t0-...0: (1 GPs behind) idle=3b3c/1/0x4000000000000000 softirq=396/397 fqs=809
[   18.920800] rcu: \t3-...!: (0 ticks this GP) idle=1a2/1/0x4000000000000000 softirq=10/10 fqs=0
[   18.921195] \t(detected by 1, t=2502 jiffies, g=-479, q=11 ncpus=4)
[   18.921528] Task dump for CPU 0:
[   18.921655] task:sh              state:R  running task     stack:0     pid:151   ppid:1      flags:0x00000002
[   18.922287] Call trace:
[   18.922425]  ret_from_fork+0x0/0x20
[   18.923176] Kernel panic - not syncing: RCU Stall
[   18.923499] CPU: 1 PID: 116 Comm: sh Tainted: G           OE      6.1.0-57-arm64 #1  Debian 6.1.192-3
[   18.923951] Call trace:
[   18.924122]  dump_backtrace+0xe4/0x140
[   18.924441]  panic+0x184/0x364
[   18.924565]  rcu_sched_clock_irq+0xad0/0xb90
[   18.924742]  update_process_times+0x78/0xc0
[   18.925094]  hrtimer_interrupt+0x114/0x310
[   18.925450]  gic_handle_irq+0x64/0x90
[   18.925527]  call_on_irq_stack+0x30/0x48
[   18.925617]  do_interrupt_handler+0x88/0x90
[   18.925701]  el0_interrupt+0x54/0x12c
[   18.925780]  __el0_irq_handler_common+0x18/0x24
[   18.925895]  el0t_64_irq_handler+0x10/0x20
[   18.925981]  el0t_64_irq+0x18c/0x190
"""


def test_stalled_cpus_and_a_stack_from_the_dump():
    """An arm64 RCU stall prints only the detecting CPU's interrupt from user mode: no frame of
    the stall (never the el0 entry code); the stuck CPUs come from the per-CPU lines, and the
    stuck CPU's backtrace (as a dump gives it) names the frame by the family's stall rules."""
    from vmcorekit.kernel.printk.events import Frame, restacked, stalled_cpus
    from vmcorekit.report.titles import title_of
    rep = first_report(ARM64_RCU_STALL.splitlines())
    assert rep.family == "rcu-stall" and rep.guilty is None and rep.corrupted
    assert stalled_cpus(rep) == [0, 3]
    dump_stack = [Frame(n, n) for n in ("zoo_rcu_stall", "zoo_trigger_write", "full_proxy_write",
                                        "vfs_write", "ksys_write", "__arm64_sys_write", "invoke_syscall",
                                        "el0_svc_common", "do_el0_svc", "el0_svc", "el0t_64_sync")]
    new = restacked(rep, dump_stack)
    assert new is not None and new.guilty.function == "zoo_trigger_write" and not new.corrupted
    assert title_of(new).title == "INFO: rcu detected stall in zoo_trigger_write"
    assert rep.guilty is None and rep.stack[0].function != "zoo_rcu_stall"   # the original is untouched
    # an expedited stall lists its CPUs in braces; a lockup names its CPU in the header
    exp = first_report(["rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: { 2-...D 5-...D } 21002 jiffies s: 1 root: 0x1/.",
                        "Call Trace:", " <TASK>", " foo+0x1/0x2", " </TASK>"])
    assert stalled_cpus(exp) == [2, 5]
    lock = first_report(["watchdog: BUG: soft lockup - CPU#7 stuck for 22s! [sh:149]", "Call Trace:", " zoo_x+0x1/0x2"])
    assert stalled_cpus(lock) == [7]


NMI_PANIC = """\
[   16.9] Uhhuh. NMI received for unknown reason 31 on CPU 0.
[   16.9] Kernel panic - not syncing: NMI: Not continuing
[   16.9] CPU: 0 PID: 114 Comm: sh Tainted: G           OE      6.1.0-57-amd64 #1  Debian 6.1.192-3
[   16.9] Call Trace:
[   16.9]  {open}
[   16.9]  dump_stack_lvl+0x44/0x5c
[   16.9]  panic+0x118/0x2f4
[   16.9]  ? _printk+0x68/0x83
[   16.9]  nmi_panic.cold+0xc/0xc
[   16.9]  unknown_nmi_error.cold+0x3b/0x49
[   16.9]  exc_nmi+0x11e/0x150
[   16.9]  {entry}
[   16.9] RIP: {rip}
[   16.9] RSP: 0000:ffffd18f40403ea8 EFLAGS: 00000006
{rest}
"""


def test_a_panic_inside_an_nmi_is_one_bucket_whatever_it_interrupted():
    """The same unknown NMI, once from user mode (one <TASK> section) and once interrupting the
    timer interrupt (an <NMI> section, then the interrupted task): one signature, named by the
    code that called panic(), not by the interrupted IP."""
    user = NMI_PANIC.format(open="<TASK>", entry="asm_exc_nmi+0xb3/0xfc", rip="0033:0x528a03",
                            rest="[   16.9]  </TASK>")
    kern = NMI_PANIC.format(open="<NMI>", entry="end_repeat_nmi+0x16/0x67", rip="0010:lapic_next_event+0x1c/0x30",
                            rest="[   16.9]  ? lapic_next_event+0x1c/0x30\n[   16.9]  </NMI>\n[   16.9]  <TASK>\n"
                                 "[   16.9]  clockevents_program_event+0x96/0x100\n"
                                 "[   16.9]  hrtimer_interrupt+0x11d/0x210\n"
                                 "[   16.9]  __sysvec_apic_timer_interrupt+0x5d/0x110\n[   16.9]  </TASK>")
    a, _ = title_log(user.splitlines())
    b, _ = title_log(kern.splitlines())
    assert a.title == b.title == "kernel panic: NMI: Not continuing"
    assert a.guilty_frame["function"] == b.guilty_frame["function"] == "unknown_nmi_error"
    assert a.signature["frames"] == b.signature["frames"] == ["unknown_nmi_error"]
    assert a.signature["id"] == b.signature["id"]
