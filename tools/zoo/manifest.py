#!/usr/bin/env python3
"""Write tests/zoo/manifest.toml from the crash-zoo dumps made by tools/make-zoo.sh.

    python3 tools/zoo/manifest.py [DUMPS_DIR] [OUT.toml]

DUMPS_DIR [/work/scratch/zoo/dumps] holds <arch>-<release>/<kind>-<boot>/ folders.  Every
expected value comes from the case's console.log (the guest's serial log) and case.env,
never from vmcorekit: the kind decides the title family (the wording syzbot uses, see
/work/shared/reports/syzkaller-linux) and the guilty function of the module; the console
log must confirm that function (in the RIP/pc line or the call trace) and supplies the
report line, the panic message, the crashing CPU/PID/comm, the hung tasks and lock
chain, and the stalled CPUs.  A kind whose console does not show what the kind promises
is reported on stderr and left out.  Python standard library only.
"""
import os
import re
import shlex
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# kind -> (title family, guilty function, class); "{fn}" is the guilty function
KINDS = {
    "null": ("BUG: unable to handle kernel NULL pointer dereference in {fn}", "zoo_null_deref", "null-deref"),
    "paging": ("BUG: unable to handle kernel paging request in {fn}", "zoo_paging", "bad-access"),
    "gpf": ("general protection fault in {fn}", "zoo_gpf", "bad-access"),
    "bug": ("kernel BUG in {fn}", "zoo_bug", "bug"),
    "warn": ("WARNING in {fn}", "zoo_warn", "warning"),
    "refcount": ("WARNING: refcount bug in {fn}", "zoo_refcount", "refcount"),
    "list": ("BUG: corrupted list in {fn}", "zoo_list_corrupt", "list-corruption"),
    "double_free": ("kernel BUG in {fn}", "zoo_double_free", "double-free"),
    "usercopy": ("BUG: bad usercopy in {fn}", "zoo_usercopy", "bad-usercopy"),
    "fortify": ("kernel BUG in {fn}", "zoo_fortify", "fortify"),
    "stack_overflow": ("BUG: stack guard page was hit in {fn}", "zoo_recurse", "stack-overflow"),
    "divide": ("divide error in {fn}", "zoo_divide", "divide-error"),
    "softlockup": ("BUG: soft lockup in {fn}", "zoo_softlockup", "soft-lockup"),
    "hung_chain": ("INFO: task hung in {fn}", None, "hung-task"),
    "abba": ("INFO: task hung in {fn}", None, "hung-task"),
    "rcu_stall": ("INFO: rcu detected stall in {fn}", "zoo_rcu_stall", "rcu-stall"),
    "oom_user": ("kernel panic: {panic}", "", "oom"),
    "oom_slab": ("kernel panic: {panic}", "zoo_oom_slab", "oom"),
    "panic": ("kernel panic: {panic}", "zoo_panic", "panic"),
    "timer_null": ("BUG: unable to handle kernel NULL pointer dereference in {fn}", "zoo_timer_fn", "null-deref"),
    "nmi": ("kernel panic: {panic}", "", "nmi"),
    "sysrq": ("kernel panic: {panic}", "sysrq_handle_crash", "sysrq"),
}

# A stall (and a runaway recursion) is titled the way syzbot titles them: by the function a
# generic dispatcher (vfs_write, and debugfs's full_proxy_write behind it) handed control to,
# nearest the stall -- the zoo's debugfs write handler -- since the looping code's own frame moves
# from report to report.  `guilty` stays the function that loops.
STALL_KINDS = {"softlockup", "rcu_stall", "stack_overflow"}
DISPATCHED = "zoo_trigger_write"

# the first line of the kernel's report, per kind (x86_64 wording, then arm64 wording)
REPORT = {
    "null": r"BUG: kernel NULL pointer dereference|Unable to handle kernel NULL pointer dereference",
    "timer_null": r"BUG: kernel NULL pointer dereference|Unable to handle kernel NULL pointer dereference",
    "paging": r"BUG: unable to handle page fault for address|Unable to handle kernel paging request",
    "gpf": r"general protection fault|Unable to handle kernel paging request",
    "bug": r"kernel BUG at",
    "warn": r"WARNING: CPU: \d+ PID: \d+ at",
    "refcount": r"refcount_t: underflow",
    "list": r"list_del corruption",
    "double_free": r"kernel BUG at mm/slub\.c",
    "usercopy": r"usercopy: Kernel memory overwrite attempt detected",
    "fortify": r"detected buffer overflow",
    "stack_overflow": r"BUG: (?:\w+ )?stack guard page was hit|Insufficient stack space|kernel stack overflow",
    "divide": r"divide error",
    "softlockup": r"BUG: soft lockup - CPU#\d+ stuck",
    "hung_chain": r"INFO: task \S+ blocked for more than",
    "abba": r"INFO: task \S+ blocked for more than",
    "rcu_stall": r"rcu: INFO: \S+ detected stalls on CPUs/tasks",
    "oom_user": r"invoked oom-killer",
    "oom_slab": r"invoked oom-killer",
    "panic": r"Kernel panic - not syncing: zoo:",
    "nmi": r"NMI received for unknown reason",
    "sysrq": r"sysrq: Trigger a crash",
}

# (arch, kind) -> why that kind cannot be made there; used for the [[not_made]] list
CANNOT = {
    ("arm64", "divide"): "AArch64 integer division by zero does not trap (UDIV/SDIV return 0): no divide error exists",
    ("arm64", "gpf"): "arm64 has no non-canonical-address general protection fault; 0xdead000000000000 is an "
                      "ordinary translation fault there ('Unable to handle kernel paging request'), i.e. kind paging",
    ("arm64", "nmi"): "QEMU 7.2's QMP inject-nmi is not supported on -machine virt ('this feature or command is "
                      "not currently supported'), and unknown_nmi_panic is an x86-only knob",
}

TS = re.compile(r"^\[\s*\d+\.\d+\] ")


def strip(line):
    return TS.sub("", line.rstrip("\n"))


def read_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                try:
                    v = shlex.split(v)[0] if v else ""
                except ValueError:
                    pass
                env[k] = v
    return env


def q(s):
    """A TOML basic string."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t") + '"'


def facts(kind, lines):
    """What the console says; raises ValueError when it does not show the kind's failure."""
    f = {}
    body = [strip(x) for x in lines]
    rep = next((i for i, x in enumerate(body) if re.search(REPORT[kind], x) and not x.startswith("zoo")), None)
    if rep is None:
        raise ValueError("no report line matching %r" % REPORT[kind])
    f["report"] = body[rep].strip()
    pan = next((x for x in body if x.startswith("Kernel panic - not syncing: ")), None)
    if pan is None:
        raise ValueError("no 'Kernel panic - not syncing' line")
    f["panic"] = pan[len("Kernel panic - not syncing: "):].strip()
    for x in body[rep:]:
        m = re.search(r"CPU: (\d+) (?:UID: \d+ )?PID: (\d+) Comm: (\S+)", x)
        if m:
            f["cpu"], f["pid"], f["comm"] = int(m[1]), int(m[2]), m[3]
            break
    for x in body[rep:]:
        m = re.search(r"(?:RIP: 0010:|pc : )([A-Za-z0-9_.]+)\+0x", x)
        if m:
            f["pc_function"] = m[1]
            break
    for x in body:
        m = re.search(r"kernel BUG at (\S+)!", x)
        if m:
            f["bug_at"] = m[1]
            break
    for x in body:
        m = re.search(r"Tainted: ([A-Z ]+?)\s+\d", x)
        if m:
            f["taint"] = " ".join(m[1].split())   # "G           OE" -> "G OE"
            break
    trig = next((x for x in body if x.startswith("zoo: trigger '")), None)
    if trig:
        m = re.search(r"from (\S+) \(pid (\d+)\) on CPU (\d+)", trig)
        if m:
            f["trigger"] = {"comm": m[1], "pid": int(m[2]), "cpu": int(m[3])}
    text = "\n".join(body)
    if kind in ("hung_chain", "abba"):
        f["hung"] = [{"comm": m[1], "pid": int(m[2]), "seconds": int(m[3])}
                     for m in re.finditer(r"INFO: task (\S+):(\d+) blocked for more than (\d+) seconds", text)]
        pids = {}
        for m in re.finditer(r"zoo: (?:hung chain: ([ABC])|ABBA: thread ([12])) \(pid (\d+)\)", text):
            pids["zoo_hung_" + m[1].lower() if m[1] else "zoo_abba_" + m[2]] = int(m[3])
        f["pids"] = pids
    if kind == "rcu_stall":
        cpus = sorted({int(m[1]) for m in re.finditer(r"rcu: \s*(\d+)-\S*: \(", text)})
        f["stalled_cpus"] = cpus
    if kind == "softlockup":
        m = re.search(r"BUG: soft lockup - CPU#(\d+) stuck for (\d+)s! \[(\S+):(\d+)\]", text)
        f["stalled_cpus"] = [int(m[1])]
        f["stuck"] = {"cpu": int(m[1]), "seconds": int(m[2]), "comm": m[3], "pid": int(m[4])}
    if kind in ("oom_user", "oom_slab"):
        m = re.search(r"(\S+) invoked oom-killer: gfp_mask=(0x[0-9a-f]+)\(([^)]*)\), order=(\d+)", text)
        if m:
            f["oom"] = {"comm": m[1], "gfp_mask": "%s(%s)" % (m[2], m[3]), "order": int(m[4])}
    return f, text


def entry(ddir, kind, boot, env, f, text):
    fam, guilty, cls = KINDS[kind]
    if kind == "hung_chain":
        # the first task the hung-task detector names decides the title; its own function
        guilty = f["hung"][0]["comm"] if f.get("hung") else "?"
    elif kind == "abba":
        guilty = f["hung"][0]["comm"] if f.get("hung") else "?"
    note = ""
    if guilty and guilty not in text:
        # The console may not name the guilty function although the dump holds it:
        # (1) a noreturn call (panic) as the function's last instruction: the saved return
        #     address is the first byte after it, printed as the NEXT symbol "+0x0" (arm64);
        # (2) a CPU spinning with irqs off that the architecture cannot NMI-backtrace (arm64
        #     without pseudo-NMI): only the dump's register note of that CPU shows it.
        m = re.search(r"\bpanic\+0x[0-9a-f]+/0x[0-9a-f]+\n\s*(\S+\+0x0/0x[0-9a-f]+)", text)
        if kind in ("panic", "sysrq") and m:
            note = ("the return address of %s's noreturn call to panic() is the first byte after it: "
                    "the console prints it as %s" % (guilty, m[1]))
        elif kind == "rcu_stall" and f.get("stalled_cpus") and "NMI backtrace for cpu" not in text:
            note = ("no NMI backtrace of the stalled CPU (irqs off, no pseudo-NMI): the console never "
                    "names %s; the dump's registers of CPU %d do" % (guilty, f["stalled_cpus"][0]))
        else:
            raise ValueError("guilty function %s not in the console log" % guilty)
    if kind == "fortify" and re.search(r"WARNING: CPU: \d+ PID: \d+ at \S+ __fortify_report", text):
        # 6.12: __fortify_report() WARNs first, then __fortify_panic() BUGs: the first report names it
        fam = "WARNING in {fn}"
    if kind == "stack_overflow" and "Insufficient stack space to handle exception" in text:
        # arm64: no guard-page report, the overflow-stack handler panics("kernel stack overflow")
        fam = "kernel panic: {panic}"
    title = fam.format(fn=DISPATCHED if kind in STALL_KINDS else guilty, panic=f["panic"])
    arch, kv = env["ARCH"], env["KV"]
    dumpf = "vmcore.c-d31.kdump" if os.path.exists(os.path.join(ddir, "vmcore.c-d31.kdump")) else "dump.elf.zst"
    out = []
    w = out.append
    w("[[dump]]")
    w("id = %s" % q("%s-%s-%s-%s" % (arch, kv, kind, boot)))
    w("kernel_release = %s" % q(kv))
    w("kernel_package = %s" % q("%s=%s" % (env.get("KPKG_NAME", ""), env.get("KPKG_VERSION", ""))))
    w("arch = %s" % q(arch))
    w("kind = %s" % q(kind))
    w("boot = %d" % int(boot))
    w("dump = %s" % q(os.path.join(ddir, dumpf)))
    mini = os.path.join("tests", "zoo", "dumps", "%s-%s-%s-%s.kdump" % (arch, kv, kind, boot))
    if os.path.isfile(os.path.join(REPO, mini)):
        # the minidump shipped in the repository (tools/zoo/ship.py), which the tests read
        w("minidump = %s" % q(mini))
    w("console = %s" % q(os.path.join(ddir, "console.log")))
    w("command = %s" % q(env.get("COMMAND", "")))
    w("knobs = %s" % q(env.get("KNOBS", "")))
    w("title = %s" % q(title))
    w("class = %s" % q(cls))
    w("guilty = %s" % q(guilty))
    w("bug = %s" % q("zoo-" + kind))
    if note:
        w("guilty_note = %s" % q(note))
    w("report = %s" % q(f["report"]))
    w("panic = %s" % q(f["panic"]))
    if "pc_function" in f:
        w("pc_function = %s" % q(f["pc_function"]))
    if "bug_at" in f:
        w("bug_at = %s" % q(f["bug_at"]))
    if "cpu" in f:
        w("cpu = %d" % f["cpu"])
        w("pid = %d" % f["pid"])
        w("comm = %s" % q(f["comm"]))
    if "taint" in f:
        w("taint = %s" % q(f["taint"]))
    if "trigger" in f:
        t = f["trigger"]
        w("trigger = { comm = %s, pid = %d, cpu = %d }" % (q(t["comm"]), t["pid"], t["cpu"]))
    if "stalled_cpus" in f:
        w("stalled_cpus = [%s]" % ", ".join(str(c) for c in f["stalled_cpus"]))
    if "stuck" in f:
        s = f["stuck"]
        w("stuck = { cpu = %d, seconds = %d, comm = %s, pid = %d }" % (s["cpu"], s["seconds"], q(s["comm"]), s["pid"]))
    if "oom" in f:
        o = f["oom"]
        w("oom = { comm = %s, gfp_mask = %s, order = %d }" % (q(o["comm"]), q(o["gfp_mask"]), o["order"]))
    if "hung" in f:
        w("hung_tasks = [%s]" % ", ".join("{ comm = %s, pid = %d, seconds = %d }" % (q(h["comm"]), h["pid"], h["seconds"])
                                          for h in f["hung"]))
        p = f["pids"]
        if kind == "hung_chain":
            chain = [("zoo_hung_c", "zoo_m2", "zoo_hung_b"), ("zoo_hung_b", "zoo_m1", "zoo_hung_a")]
            w("# C waits for zoo_m2 (held by B); B waits for zoo_m1 (held by A); A sleeps in msleep() holding zoo_m1")
        else:
            chain = [("zoo_abba_1", "zoo_lock_b", "zoo_abba_2"), ("zoo_abba_2", "zoo_lock_a", "zoo_abba_1")]
            w("# a cycle: each thread holds one mutex and waits for the other's")
        w("lock_chain = [%s]" % ", ".join(
            "{ task = %s, pid = %d, waits_for = %s, held_by = %s, holder_pid = %d }"
            % (q(a), p.get(a, -1), q(m), q(b), p.get(b, -1)) for a, m, b in chain))
        if kind == "hung_chain":
            w("chain_root = { task = \"zoo_hung_a\", pid = %d, holds = \"zoo_m1\", state = \"D (msleep)\" }"
              % p.get("zoo_hung_a", -1))
    for k in ("BOOT_TO_PANIC_S", "TOTAL_S"):
        if k in env:
            w("%s = %s" % (k.lower(), env[k]))
    return "\n".join(out) + "\n"


def main():
    dumps = sys.argv[1] if len(sys.argv) > 1 else "/work/scratch/zoo/dumps"
    outp = sys.argv[2] if len(sys.argv) > 2 else "tests/zoo/manifest.toml"
    order = list(KINDS)
    entries, bad = [], []
    for kdir in sorted(os.listdir(dumps)):
        kp = os.path.join(dumps, kdir)
        if not os.path.isdir(kp):
            continue
        cases = []
        for c in os.listdir(kp):
            kind, _, boot = c.rpartition("-")
            if kind in KINDS and os.path.exists(os.path.join(kp, c, "case.env")):
                cases.append((order.index(kind), int(boot), kind, c))
        for _, boot, kind, c in sorted(cases):
            ddir = os.path.join(kp, c)
            env = read_env(os.path.join(ddir, "case.env"))
            if "TOTAL_S" not in env:
                bad.append((ddir, "incomplete (no TOTAL_S in case.env)"))
                continue
            with open(os.path.join(ddir, "console.log"), errors="replace") as fh:
                lines = fh.readlines()
            try:
                f, text = facts(kind, lines)
                entries.append(entry(ddir, kind, boot, env, f, text))
            except (ValueError, TypeError, KeyError) as e:
                bad.append((ddir, str(e)))
    # every kind x boot 1, 2 of each kernel that has dumps, which was not made
    made = {(m[1], m[2], m[3]) for m in re.finditer(r'id = "(\S+?-\S+?)-(\w+)-(\d)"', "".join(entries))}
    missing = []
    for kdir in sorted(os.listdir(dumps)):
        if not os.path.isdir(os.path.join(dumps, kdir)):
            continue
        arch = kdir.split("-", 1)[0]
        for kind in order:
            for boot in ("1", "2"):
                if (kdir, kind, boot) in made:
                    continue
                why = CANNOT.get((arch, kind), "not attempted: no time left before the deadline")
                why = dict(bad).get(os.path.join(dumps, kdir, "%s-%s" % (kind, boot)), why)
                missing.append("[[not_made]]\nkernel = %s\nkind = %s\nboot = %s\nwhy = %s\n"
                               % (q(kdir), q(kind), boot, q(why)))
    with open(outp, "w") as out:
        out.write("# The crash zoo: one [[dump]] per dump made by tools/make-zoo.sh (see tools/README.md).\n"
                  "# Generated by tools/zoo/manifest.py from each dump's console.log and case.env (never from\n"
                  "# vmcorekit).  Dumps live outside the repository, under /work/scratch/zoo/dumps.\n"
                  "# title: syzbot's wording (family + guilty function; a stall: the handler its dispatcher called);\n# guilty: the zoo module's function\n"
                  "# that did it (not the reporting code); bug: dumps with the same key are the same bug\n"
                  "# (the boots of one kind, on every kernel); report/panic/cpu/pid/comm/pc_function/bug_at:\n"
                  "# as printed on the console.\n\n")
        out.write("\n".join(entries))
        if missing:
            out.write("\n# Dumps NOT made (kernel = <arch>-<release>), and why.\n\n")
            out.write("\n".join(missing))
    for d, why in bad:
        print("skipped %s: %s" % (d, why), file=sys.stderr)
    print("%d entries -> %s" % (len(entries), outp), file=sys.stderr)


if __name__ == "__main__":
    main()
