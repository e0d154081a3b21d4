#!/usr/bin/env python3
"""Helper for tools/make-dumps.sh and tools/make-dumps-arm64.sh (standard library only).

Subcommands:
  qmp SOCKET formats                 print the dump formats this QEMU offers
  qmp SOCKET dump FORMAT PATH [--paging]
                                     dump-guest-memory to PATH, wait for completion
  qmp SOCKET quit                    ask QEMU to exit
  moddeps MODDIR NAME...             print the .ko paths (relative to MODDIR) needed
                                     to load the named modules, dependencies first
  vmcoreinfo ELF OUT                 write the VMCOREINFO ELF note's text to OUT
  normalize-elf IN OUT               copy an ELF core with the program headers right
                                     after the ELF header and no section headers
                                     (makedumpfile 1.7.2 cannot read QEMU 7.2's layout)
  elfinfo ELF                        one-line summary of an ELF core (phoff, PT_LOAD
                                     count, note names, first PT_LOAD vaddr/paddr)

Everything here reads and writes plain files; nothing is specific to one host.
"""
import json
import lzma
import os
import socket
import struct
import subprocess
import sys
import time


# --------------------------------------------------------------------- QMP
class QMP:
    def __init__(self, path, timeout=600):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.f = self.sock.makefile("rw")
        greeting = json.loads(self.f.readline())
        if "QMP" not in greeting:
            raise SystemExit("not a QMP greeting: %r" % greeting)
        self.call("qmp_capabilities")

    def call(self, cmd, **args):
        msg = {"execute": cmd}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg) + "\n")
        self.f.flush()
        while True:
            line = self.f.readline()
            if not line:
                raise SystemExit("QMP connection closed during %s" % cmd)
            r = json.loads(line)
            if "event" in r:
                print("qmp event:", json.dumps(r), file=sys.stderr)
                continue
            if "error" in r:
                raise SystemExit("QMP error in %s: %s" % (cmd, json.dumps(r["error"])))
            return r.get("return")


def cmd_qmp(argv):
    if len(argv) < 2:
        raise SystemExit("usage: qmp SOCKET formats|dump FORMAT PATH [--paging]|nmi|quit")
    path, what = argv[0], argv[1]
    q = QMP(path)
    if what == "formats":
        print(" ".join(q.call("query-dump-guest-memory-capability")["formats"]))
    elif what == "dump":
        fmt, out = argv[2], os.path.abspath(argv[3])
        paging = "--paging" in argv[4:]
        t0 = time.time()
        q.call("dump-guest-memory", paging=paging, protocol="file:" + out, format=fmt)
        while True:  # the command is synchronous here, but confirm the status
            st = q.call("query-dump")
            if st["status"] in ("completed", "failed"):
                break
            time.sleep(0.2)
        print("%s paging=%s %s %.2fs %d bytes" % (
            fmt, str(paging).lower(), st["status"], time.time() - t0,
            os.path.getsize(out) if os.path.exists(out) else -1))
        if st["status"] != "completed":
            raise SystemExit(1)
    elif what == "nmi":   # inject-nmi: an NMI to the guest's CPUs (x86: every CPU)
        q.call("inject-nmi")
        print("inject-nmi sent")
    elif what == "quit":
        try:
            q.call("quit")
        except (SystemExit, OSError):
            pass
    else:
        raise SystemExit("unknown qmp command %r" % what)


# --------------------------------------------------------------------- ELF helpers
def _read_ehdr(f):
    eh = f.read(64)
    if eh[:4] != b"\x7fELF" or eh[4] != 2 or eh[5] != 1:
        raise SystemExit("need a little-endian ELF64 file")
    return bytearray(eh)


def _phdrs(f, eh):
    phoff, = struct.unpack_from("<Q", eh, 32)
    phentsize, phnum = struct.unpack_from("<HH", eh, 54)
    if phentsize != 56 or phnum in (0, 0xFFFF):
        raise SystemExit("unsupported program header table (size %d, count %d)" % (phentsize, phnum))
    f.seek(phoff)
    return [list(struct.unpack("<IIQQQQQQ", f.read(56))) for _ in range(phnum)]


def _notes(f, phdrs):
    """Yield (name, type, desc) of every note in every PT_NOTE."""
    for ph in phdrs:
        if ph[0] != 4:
            continue
        f.seek(ph[2])
        data = f.read(ph[5])
        off = 0
        while off + 12 <= len(data):
            namesz, descsz, ntype = struct.unpack_from("<III", data, off)
            name = data[off + 12: off + 12 + namesz].rstrip(b"\0")
            doff = off + 12 + ((namesz + 3) & ~3)
            yield name, ntype, data[doff: doff + descsz]
            off = doff + ((descsz + 3) & ~3)


def cmd_vmcoreinfo(argv):
    src, out = argv
    with open(src, "rb") as f:
        eh = _read_ehdr(f)
        for name, _, desc in _notes(f, _phdrs(f, eh)):
            if name == b"VMCOREINFO":
                with open(out, "wb") as g:
                    g.write(desc.rstrip(b"\0"))
                return
    raise SystemExit("no VMCOREINFO note in " + src)


def cmd_normalize_elf(argv):
    """QEMU 7.2 writes two section headers at offset 64 and the program headers
    after them; makedumpfile 1.7.2 assumes e_phoff == 64 ("Can't get the number
    of PT_LOAD").  Write a copy with the program headers at 64, no section
    headers, and every segment's bytes unchanged (PT_LOAD data page aligned)."""
    src, dst = argv
    with open(src, "rb") as f:
        eh = _read_ehdr(f)
        phdrs = _phdrs(f, eh)
        off = 64 + 56 * len(phdrs)
        plan = []
        for ph in phdrs:
            align = 4096 if ph[0] == 1 else 8
            off = (off + align - 1) // align * align
            plan.append((ph[2], off, ph[5]))
            ph[2] = off
            off += ph[5]
        struct.pack_into("<Q", eh, 32, 64)          # e_phoff
        struct.pack_into("<Q", eh, 40, 0)           # e_shoff
        struct.pack_into("<HHH", eh, 58, 0, 0, 0)   # e_shentsize, e_shnum, e_shstrndx
        with open(dst, "wb") as g:
            g.write(eh)
            for ph in phdrs:
                g.write(struct.pack("<IIQQQQQQ", *ph))
            for old, new, size in plan:
                g.seek(new)
                f.seek(old)
                while size:
                    chunk = f.read(min(size, 1 << 22))
                    if not chunk:
                        raise SystemExit("short read in " + src)
                    g.write(chunk)
                    size -= len(chunk)
            g.truncate(off)


def cmd_elfinfo(argv):
    src, = argv
    with open(src, "rb") as f:
        eh = _read_ehdr(f)
        phoff, = struct.unpack_from("<Q", eh, 32)
        shnum, = struct.unpack_from("<H", eh, 60)
        phdrs = _phdrs(f, eh)
        loads = [p for p in phdrs if p[0] == 1]
        names = [n.decode(errors="replace") for n, _, _ in _notes(f, phdrs)]
    counts = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    first = loads[0] if loads else [0] * 8
    print("e_phoff=%d e_shnum=%d PT_LOAD=%d notes=%s first_load_vaddr=%#x paddr=%#x" % (
        phoff, shnum, len(loads), ",".join("%sx%d" % kv for kv in counts.items()),
        first[3], first[4]))


# --------------------------------------------------------------------- modules
def _module_bytes(path):
    if path.endswith(".xz"):
        return lzma.decompress(open(path, "rb").read())
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-dc", path], check=True, stdout=subprocess.PIPE).stdout
    if path.endswith(".gz"):
        import gzip
        return gzip.decompress(open(path, "rb").read())
    return open(path, "rb").read()


def _modinfo_depends(data):
    """The depends= list from a .ko's .modinfo section."""
    shoff, = struct.unpack_from("<Q", data, 40)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 58)
    secs = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    stroff = secs[shstrndx][4]
    for s in secs:
        name = data[stroff + s[0]: data.index(b"\0", stroff + s[0])]
        if name == b".modinfo":
            for item in data[s[4]: s[4] + s[5]].split(b"\0"):
                if item.startswith(b"depends="):
                    return [d.decode() for d in item[8:].split(b",") if d]
            return []
    return []


def cmd_moddeps(argv):
    moddir, names = argv[0], argv[1:]
    index = {}
    for dirpath, _, files in os.walk(os.path.join(moddir, "kernel")):
        for fn in files:
            if ".ko" in fn:
                mod = fn.split(".ko")[0].replace("-", "_")
                index.setdefault(mod, os.path.relpath(os.path.join(dirpath, fn), moddir))
    builtin = set()
    bpath = os.path.join(moddir, "modules.builtin")
    if os.path.exists(bpath):
        for line in open(bpath):
            builtin.add(os.path.basename(line.strip()).split(".ko")[0].replace("-", "_"))
    order, seen = [], set()

    def visit(mod):
        mod = mod.replace("-", "_")
        if mod in seen:
            return
        seen.add(mod)
        if mod not in index:
            if mod in builtin:
                return
            raise SystemExit("module %s not found under %s" % (mod, moddir))
        for dep in _modinfo_depends(_module_bytes(os.path.join(moddir, index[mod]))):
            visit(dep)
        order.append(index[mod])

    for n in names:
        visit(n)
    print("\n".join(order))


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return
    cmd, argv = sys.argv[1], sys.argv[2:]
    table = {"qmp": cmd_qmp, "vmcoreinfo": cmd_vmcoreinfo, "normalize-elf": cmd_normalize_elf,
             "elfinfo": cmd_elfinfo, "moddeps": cmd_moddeps}
    if cmd not in table:
        raise SystemExit("unknown subcommand %r (see --help)" % cmd)
    table[cmd](argv)


if __name__ == "__main__":
    main()
