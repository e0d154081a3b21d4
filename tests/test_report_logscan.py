"""Log signature recognition and crash signatures, on log text in the kernel's own formats."""
from __future__ import annotations

from vmcorekit.report.logscan import LogLine, crash_from_log, normalize_reason, scan
from vmcorekit.report.signature import crash_signature

OOPS_LOG = """\
[  100.000001] BUG: kernel NULL pointer dereference, address: 0000000000000008
[  100.000002] #PF: supervisor read access in kernel mode
[  100.000003] Oops: 0000 [#1] PREEMPT SMP NOPTI
[  100.000004] CPU: 1 PID: 4242 Comm: kworker/1:2 Tainted: G           OE      6.1.0-56-amd64 #1  Debian 6.1.192-2
[  100.000005] RIP: 0010:my_handler+0x1a/0x40 [buggy]
[  100.000006] Code: 00 00
[  100.000007] Call Trace:
[  100.000008]  <TASK>
[  100.000009]  process_one_work+0x1c7/0x380
[  100.000010]  ? rescuer_thread+0x3a0/0x3a0
[  100.000011]  worker_thread+0x4d/0x380
[  100.000012]  kthread+0xd7/0x100
[  100.000013]  ret_from_fork+0x22/0x30
[  100.000014]  </TASK>
[  100.000015] Kernel panic - not syncing: Fatal exception
"""


def lines_of(text: str) -> list[LogLine]:
    out = []
    for l in text.splitlines():
        ts, _, rest = l.partition("] ")
        out.append(LogLine(float(ts.strip("[ ")), rest))
    return out


def test_oops_details() -> None:
    c = crash_from_log(lines_of(OOPS_LOG))
    assert c.kind == "oops" and c.reason == "Fatal exception"
    assert c.message.startswith("BUG: kernel NULL pointer dereference")
    assert (c.cpu, c.pid, c.comm) == (1, 4242, "kworker/1:2")
    assert c.rip == "my_handler+0x1a/0x40 [buggy]"
    assert c.error_code == "0000"
    assert c.tainted.startswith("Tainted: G")
    assert c.call_trace == ["process_one_work+0x1c7/0x380", "worker_thread+0x4d/0x380", "kthread+0xd7/0x100",
                            "ret_from_fork+0x22/0x30"]


def test_each_signature_kind() -> None:
    log = [
        LogLine(1.0, "watchdog: BUG: soft lockup - CPU#3 stuck for 22s! [stress:991]"),
        LogLine(2.0, "NMI watchdog: Watchdog detected hard LOCKUP on cpu 2"),
        LogLine(3.0, "INFO: task jbd2/sda1-8:210 blocked for more than 120 seconds."),
        LogLine(4.0, "bash invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=0"),
        LogLine(5.0, "Out of memory: Killed process 812 (hog) total-vm:1234kB, anon-rss:1000kB"),
        LogLine(6.0, "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:"),
        LogLine(7.0, "WARNING: CPU: 0 PID: 1 at kernel/foo.c:12 foo_init+0x10/0x20 [foo]"),
        LogLine(8.0, "kernel BUG at mm/slub.c:379!"),
    ]
    kinds = [e.kind for e in scan(log)]
    assert kinds == ["soft_lockup", "hard_lockup", "hung_task", "oom", "oom", "rcu_stall", "warning", "bug"]
    ev = scan(log)
    assert ev[0].facts == {"cpu": "3", "secs": "22", "comm": "stress", "pid": "991"}
    assert ev[2].facts["comm"] == "jbd2/sda1-8" and ev[2].facts["pid"] == "210"
    assert ev[6].facts["func"] == "foo_init+0x10/0x20" and ev[6].facts["mod"] == "foo"


def test_reason_without_panic_falls_back_to_lockup() -> None:
    c = crash_from_log([LogLine(1.0, "watchdog: BUG: soft lockup - CPU#0 stuck for 23s! [sh:1]")])
    assert c.kind == "soft_lockup"


def test_signature_is_stable_and_discriminating() -> None:
    a = crash_signature("soft lockup - CPU#0 stuck for 22s! [sh:12]",
                        ["panic+0x118/0x2f4", "sysrq_handle_crash+0x16/0x20", "__handle_sysrq.cold+0x44/0x11c"])
    b = crash_signature("soft lockup - CPU#3 stuck for 40s! [bash:99]",
                        ["panic+0x100/0x2f0", "sysrq_handle_crash+0x12/0x20", "__handle_sysrq+0x40/0x100"])
    c = crash_signature("soft lockup - CPU#3 stuck for 40s! [bash:99]", ["other_func+0x1/0x2"])
    assert a.id == b.id and a.frames == ("sysrq_handle_crash", "__handle_sysrq")
    assert a.id != c.id
    assert normalize_reason("unable to handle page fault for address: ffffa0c3c0de0000") == \
        "unable to handle page fault for address: ADDR"


def test_end_marker_is_not_the_reason() -> None:
    log = [LogLine(1.0, "Kernel panic - not syncing: sysrq triggered crash"),
           LogLine(1.1, "CPU: 0 PID: 221 Comm: sh Kdump: loaded Not tainted 6.1.0-56-amd64 #1  Debian 6.1.192-2"),
           LogLine(1.2, "---[ end Kernel panic - not syncing: sysrq triggered crash ]---")]
    c = crash_from_log(log)
    assert c.reason == "sysrq triggered crash"
    assert (c.cpu, c.pid, c.comm, c.tainted) == (0, 221, "sh", "Not tainted")
