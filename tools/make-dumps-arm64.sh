#!/bin/bash
# make-dumps-arm64.sh - make real Linux arm64 (AArch64) crash dumps of a stock Debian
# arm64 kernel under qemu-system-aarch64 (TCG emulation on any host), and the small
# arm64 sample that ships in samples/arm64/.
#
# Usage:  tools/make-dumps-arm64.sh [STAGE...]      (as root on Debian 12)
#
# Stages (default: install kernel initramfs qmp reduce oracles sample):
#   install    dpkg --add-architecture arm64; apt-get update; install
#              qemu-system-arm (+ cpio zstd makedumpfile python3)
#   kernel     apt-get download linux-image-<abi>-arm64 (KPKG resolved for arm64)
#              and busybox-static:arm64, unpack both into $KDIR (nothing is
#              installed); DBG=1 also fetches the -dbg package (~800 MB) and
#              unpacks only its vmlinux, for the drgn oracle
#   initramfs  busybox initramfs: qemu_fw_cfg (+ dummy, loop, brd) and the
#              workload (sleepers, a busy loop, user memory, kmsg markers)
#   qmp        boot under qemu-system-aarch64 -machine virt -cpu $CPU with
#              -device vmcoreinfo, panic with sysrq-c, dump over QMP
#              (dump-guest-memory) -> $WORK/qmp/dump.<fmt>
#   reduce     try makedumpfile -c -d $DUMP_LEVEL on the ELF (a host build of
#              makedumpfile only understands its own architecture: the attempt
#              and its log are kept either way) and zstd the ELF
#   oracles    drgn (with the -dbg vmlinux, if DBG=1 was used) over the ELF:
#              task list, modules, page-table translations, registers
#   sample     the smallest usable dump + vmcoreinfo.txt + oracles -> $OUT
#
# Environment (defaults in brackets):
#   WORK          scratch directory [/work/scratch/arm64/work]
#   KDIR          unpacked kernel, busybox and debs [$WORK/kernel]
#   OUT           where the sample goes [<repo>/samples/arm64]
#   KPKG          kernel package (metapackage or concrete), optionally =VERSION
#                 [linux-image-arm64]
#   DBG           1 = fetch the matching -dbg package for the drgn oracle [0]
#   MEM           guest RAM [128M]
#   SMP           vCPUs [2]
#   KASLR         1 = KASLR on (the seed comes from QEMU's DT), 0 = nokaslr [1]
#   CPU           -cpu value [max,pauth-impdef=on]: "max" gives pointer
#                 authentication (so KERNELPACMASK is set) and LPA2; the impdef
#                 PAC algorithm is much faster to emulate than QARMA
#   QMP_FORMATS   elf kdump-zlib kdump-lzo kdump-snappy paging-elf [elf kdump-zlib]
#   HOLD_MB       MiB of tmpfs file and of shell-held user memory [4]
#   DUMP_LEVEL    makedumpfile -d level [31]
#   BOOT_TIMEOUT  seconds to wait for the panic [1500] (a TCG boot takes minutes)
#   DRGN          drgn executable [drgn on PATH]
#
# Run it in the background and poll: a TCG boot of the arm64 kernel takes
# several minutes on a small x86_64 host, e.g.
#   nohup tools/make-dumps-arm64.sh > /work/scratch/arm64/gen.log 2>&1 &
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
HELPER="python3 $HERE/dumpgen.py"
WORK=${WORK:-/work/scratch/arm64/work}
KDIR=${KDIR:-$WORK/kernel}
OUT=${OUT:-$ROOT/samples/arm64}
KPKG=${KPKG:-linux-image-arm64}
DBG=${DBG:-0}
MEM=${MEM:-128M}
SMP=${SMP:-2}
KASLR=${KASLR:-1}
CPU=${CPU:-max,pauth-impdef=on}
QMP_FORMATS=${QMP_FORMATS:-elf kdump-zlib}
HOLD_MB=${HOLD_MB:-4}
DUMP_LEVEL=${DUMP_LEVEL:-31}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-1500}
DRGN=${DRGN:-$(command -v drgn || true)}

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

apt_wait() {  # another apt/dpkg may be running: wait for its locks instead of failing
    local i=0
    while fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock \
            >/dev/null 2>&1; do
        [ $((i % 12)) -eq 0 ] && log "waiting for the apt/dpkg lock"
        sleep 5; i=$((i + 1))
    done
}

# ------------------------------------------------------------------ install
stage_install() {
    export DEBIAN_FRONTEND=noninteractive
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    apt_wait
    apt-get -o DPkg::Lock::Timeout=1800 update
    apt_wait
    apt-get -o DPkg::Lock::Timeout=1800 install -y --no-install-recommends \
        qemu-system-arm cpio gzip zstd makedumpfile python3 psmisc
}

# ------------------------------------------------------------------ kernel
download() {  # download PKG VERSION: the .deb path in $KDIR/debs (fetched once)
    local pkg=$1 ver=$2 deb file
    file="$KDIR/debs/${pkg}_${ver//:/%3a}_arm64.deb"   # apt-get download escapes an epoch's ':'
    deb=$(ls "$file" 2>/dev/null || true)
    if [ -z "$deb" ]; then
        (cd "$KDIR/debs" && apt-get download "$pkg:arm64=$ver") >&2
        deb=$(ls "$file")
    fi
    echo "$deb"
}

candidate() { apt-cache policy "$1:arm64" | sed -n 's/^ *Candidate: //p'; }

stage_kernel() {
    mkdir -p "$KDIR/debs"
    local pkg=${KPKG%%=*} ver="" deb kv
    [[ "$KPKG" == *=* ]] && ver=${KPKG#*=}
    if ! [[ "$pkg" =~ ^linux-image-[0-9] ]]; then   # a metapackage: follow its Depends
        local meta=$pkg
        pkg=$(apt-cache show --no-all-versions "$meta:arm64${ver:+=$ver}" | sed -n 's/^Depends: //p' \
              | tr ',' '\n' | grep -o 'linux-image-[0-9][^ :]*' | head -1)
        [ -n "$pkg" ] || die "cannot resolve $meta to a linux-image-<version> package for arm64"
        ver=""
        log "$meta -> $pkg"
    fi
    [ -n "$ver" ] || ver=$(candidate "$pkg")
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || die "apt knows no arm64 version of $pkg (run the install stage)"
    deb=$(download "$pkg" "$ver")
    rm -rf "$KDIR/root"; mkdir -p "$KDIR/root"
    dpkg-deb -x "$deb" "$KDIR/root"
    kv=$(cd "$KDIR/root/boot" && ls vmlinuz-* | head -1); kv=${kv#vmlinuz-}
    [ -n "$kv" ] || die "no /boot/vmlinuz-* in $deb"
    # QEMU's -kernel wants the raw arm64 Image; some releases ship it gzip-compressed.
    if [ "$(head -c 2 "$KDIR/root/boot/vmlinuz-$kv" | od -An -tx1 | tr -d ' ')" = 1f8b ]; then
        gzip -dc "$KDIR/root/boot/vmlinuz-$kv" > "$KDIR/Image"
    else
        cp "$KDIR/root/boot/vmlinuz-$kv" "$KDIR/Image"
    fi
    local bver bdeb
    bver=$(candidate busybox-static)
    bdeb=$(download busybox-static "$bver")
    rm -rf "$KDIR/busybox"; mkdir -p "$KDIR/busybox"
    dpkg-deb -x "$bdeb" "$KDIR/busybox"
    {
        echo "KV=$kv"
        echo "KPKG_NAME=$(dpkg-deb -f "$deb" Package)"
        echo "KPKG_VERSION=$(dpkg-deb -f "$deb" Version)"
        echo "KPKG_DEB=$(basename "$deb")"
        echo "KPKG_SHA256=$(sha256sum "$deb" | cut -d' ' -f1)"
        echo "BUSYBOX_DEB=$(basename "$bdeb")"
    } > "$KDIR/kernel.env"
    log "kernel: $(tr '\n' ' ' < "$KDIR/kernel.env")"
    if [ "$DBG" = 1 ]; then
        local ddeb
        # linux-image-X-unsigned's debug symbols are in linux-image-X-dbg
        ddeb=$(download "$(dpkg-deb -f "$deb" Package | sed 's/-unsigned$//')-dbg" "$(dpkg-deb -f "$deb" Version)")
        log "unpacking vmlinux from $(basename "$ddeb")"
        mkdir -p "$KDIR/dbg"
        dpkg-deb --fsys-tarfile "$ddeb" | tar -x -C "$KDIR/dbg" --wildcards \
            "./usr/lib/debug/boot/vmlinux-$kv" "./usr/lib/debug/boot/System.map-$kv" \
            || die "no vmlinux-$kv in $ddeb"
        echo "KDBG_DEB=$(basename "$ddeb")" >> "$KDIR/kernel.env"
    fi
}

kernel_env() {
    [ -e "$KDIR/kernel.env" ] || die "no kernel in $KDIR (run the kernel stage)"
    # shellcheck disable=SC1091
    . "$KDIR/kernel.env"
    IMAGE=$KDIR/Image
    MODDIR=$KDIR/root/lib/modules/$KV
    VMLINUX=$KDIR/dbg/usr/lib/debug/boot/vmlinux-$KV
}

# ------------------------------------------------------------------ initramfs
stage_initramfs() {
    local d=$WORK/initramfs/root rel
    rm -rf "$d"; mkdir -p "$d"/{bin,sbin,etc,proc,sys,dev,tmp,root,lib/modules/$KV}
    # The arm64 busybox cannot run on the host, so it installs its applet links at boot.
    cp "$KDIR/busybox/bin/busybox" "$d/bin/busybox"
    : > "$d/etc/modules.load"
    for rel in $($HELPER moddeps "$MODDIR" qemu_fw_cfg dummy loop brd); do
        mkdir -p "$d/lib/modules/$KV/$(dirname "$rel")"
        case $rel in   # busybox insmod wants plain .ko files
            *.ko.xz) xz -dc "$MODDIR/$rel" > "$d/lib/modules/$KV/${rel%.xz}"; rel=${rel%.xz} ;;
            *.ko.zst) zstd -qdc "$MODDIR/$rel" > "$d/lib/modules/$KV/${rel%.zst}"; rel=${rel%.zst} ;;
            *) cp "$MODDIR/$rel" "$d/lib/modules/$KV/$rel" ;;
        esac
        echo "$rel" >> "$d/etc/modules.load"
    done
    echo "$KV" > "$d/etc/kernel-version"
    echo "HOLD_MB=$HOLD_MB" > "$d/etc/workload.env"
    cat > "$d/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
. /etc/workload.env
KV=$(cat /etc/kernel-version)
while read -r rel; do
    args=""
    case "$rel" in */brd.ko) args="rd_nr=2 rd_size=4096" ;; esac
    insmod "/lib/modules/$KV/$rel" $args || echo "gen-init: insmod $rel FAILED"
done < /etc/modules.load
echo "gen-init: kernel $(uname -r) machine $(uname -m) cmdline: $(cat /proc/cmdline)"
hostname vmcorekit-arm64
echo on > /proc/sys/kernel/printk_devkmsg
echo 1 > /proc/sys/kernel/sysrq
ip link set dummy0 up 2>/dev/null
echo "gen-init: modules:"; cat /proc/modules
echo "gen-init: fw_cfg: $(ls /sys/firmware/qemu_fw_cfg/by_name/etc 2>/dev/null | tr '\n' ' ')"

# --- workload ---------------------------------------------------------------
sleep 1000 &
sleep 1001 &
sh -c 'while :; do :; done' &
dd if=/dev/zero bs=1M count=$HOLD_MB 2>/dev/null | cat > /tmp/big
yes 'VMCOREKIT-USERMEM-MARKER 0123456789abcdef' | head -c 262144 > /tmp/text
sh -c 'data=$(cat /tmp/text); touch /tmp/ready.data; while :; do sleep 1000; done' &
sh -c "big=\$(head -c $((HOLD_MB * 1048576)) /dev/zero | tr '\\0' Z); touch /tmp/ready.big; while :; do sleep 1000; done" &
losetup /dev/loop0 /tmp/big 2>/dev/null
echo vmcorekit-brd-data > /dev/ram0

# --- kernel log markers ----------------------------------------------------
echo '<2>vmcorekit-marker: arm64 crit level line' > /dev/kmsg
echo '<4>vmcorekit-marker: arm64 warning level line' > /dev/kmsg
echo '<6>vmcorekit-marker: arm64 info line' > /dev/kmsg
printf '<6>vmcorekit-marker: utf8 caf\303\251 \342\202\254uro\n' > /dev/kmsg
i=0; while [ ! -e /tmp/ready.data -o ! -e /tmp/ready.big ] && [ $i -lt 600 ]; do sleep 1; i=$((i+1)); done
echo "gen-init: memory holders ready after ${i}s"
free; ps
echo WORKLOAD-READY
sleep 3
# panic from a child process (not PID 1)
sh -c 'echo c > /proc/sysrq-trigger'
sleep 1000
EOF
    chmod 755 "$d/init"
    (cd "$d" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) \
        | gzip -9 > "$WORK/initramfs/qmp.cpio.gz"
    ls -l "$WORK/initramfs/qmp.cpio.gz" >&2
}

# ------------------------------------------------------------------ QEMU
start_qemu() {  # start_qemu CASEDIR; sets QEMU_PID
    local cdir=$1 append="console=ttyAMA0 panic=0 loglevel=7"
    [ "$KASLR" = 1 ] || append="$append nokaslr"
    rm -f "$cdir/qmp.sock"
    local cmd=(qemu-system-aarch64 -machine virt -accel tcg -cpu "$CPU" -smp "$SMP" -m "$MEM"
               -nographic -nic none -no-reboot -device vmcoreinfo
               -kernel "$IMAGE" -initrd "$WORK/initramfs/qmp.cpio.gz" -append "$append"
               -qmp "unix:$cdir/qmp.sock,server=on,wait=off")
    local a line=""
    for a in "${cmd[@]}"; do
        case $a in *[[:space:]]*) line="$line '$a'" ;; *) line="$line $a" ;; esac
    done
    echo "${line# }" | sed "s#$cdir/##g; s#$KDIR/##g; s#$WORK/##g" > "$cdir/qemu-cmdline.txt"
    "${cmd[@]}" < /dev/null > "$cdir/console.log" 2>&1 &
    QEMU_PID=$!
    echo "$QEMU_PID" > "$cdir/qemu.pid"
    log "QEMU pid $QEMU_PID: $(cat "$cdir/qemu-cmdline.txt")"
}

wait_console() {  # wait_console CASEDIR PATTERN TIMEOUT
    local cdir=$1 pat=$2 t=$3 s=0
    while ! grep -aq -- "$pat" "$cdir/console.log" 2>/dev/null; do
        kill -0 "$QEMU_PID" 2>/dev/null || { log "QEMU exited"; return 1; }
        [ $s -ge "$t" ] && { log "timeout waiting for '$pat'"; return 1; }
        sleep 5; s=$((s + 5))
    done
    log "saw '$pat' after ~${s}s"
}

stop_qemu() {
    local cdir=$1
    if kill -0 "$QEMU_PID" 2>/dev/null; then
        $HELPER qmp "$cdir/qmp.sock" quit 2>/dev/null || true
        sleep 2
        if kill -0 "$QEMU_PID" 2>/dev/null; then kill "$QEMU_PID" || true; fi
    fi
    wait "$QEMU_PID" 2>/dev/null || true
}

stage_qmp() {
    local cdir=$WORK/qmp fmt t0
    rm -rf "$cdir"; mkdir -p "$cdir"
    {
        echo "KIND=qmp"; echo "MEM=$MEM"; echo "SMP=$SMP"; echo "KASLR=$KASLR"; echo "CPU=$CPU"
        echo "HOLD_MB=$HOLD_MB"; echo "QEMU_VERSION=$(qemu-system-aarch64 --version | head -1)"
        cat "$KDIR/kernel.env"
    } > "$cdir/case.env"
    t0=$(date +%s)
    start_qemu "$cdir"
    if ! wait_console "$cdir" "Kernel panic - not syncing" "$BOOT_TIMEOUT"; then
        stop_qemu "$cdir"; tail -20 "$cdir/console.log" >&2
        die "qmp: guest did not panic; see $cdir/console.log"
    fi
    echo "BOOT_TO_PANIC_S=$(( $(date +%s) - t0 ))" >> "$cdir/case.env"
    sleep 15   # let the (slow, emulated) panic path finish printing and stop the other CPUs
    $HELPER qmp "$cdir/qmp.sock" formats > "$cdir/qmp-formats.txt"
    log "QEMU dump formats: $(cat "$cdir/qmp-formats.txt")"
    : > "$cdir/qmp-dumps.txt"
    for fmt in $QMP_FORMATS; do
        if [ "$fmt" = paging-elf ]; then
            $HELPER qmp "$cdir/qmp.sock" dump elf "$cdir/dump.paging.elf" --paging \
                | tee -a "$cdir/qmp-dumps.txt" || log "paging=true dump failed"
        elif grep -qw -- "$fmt" "$cdir/qmp-formats.txt"; then
            $HELPER qmp "$cdir/qmp.sock" dump "$fmt" "$cdir/dump.$fmt" | tee -a "$cdir/qmp-dumps.txt" \
                || log "$fmt dump failed"
        else
            echo "$fmt unsupported by this QEMU" | tee -a "$cdir/qmp-dumps.txt"
        fi
    done
    stop_qemu "$cdir"
    echo "TOTAL_S=$(( $(date +%s) - t0 ))" >> "$cdir/case.env"
    [ -e "$cdir/dump.elf" ] || die "qmp: no ELF dump (QMP_FORMATS must include elf)"
    $HELPER vmcoreinfo "$cdir/dump.elf" "$cdir/vmcoreinfo.txt"
    $HELPER elfinfo "$cdir/dump.elf" | tee "$cdir/elfinfo.txt" >&2
    grep -E '^(OSRELEASE|PAGESIZE|KERNELOFFSET|NUMBER\((VA_BITS|kimage_voffset|PHYS_OFFSET|KERNELPACMASK|TCR_EL1_T1SZ)\))=' \
        "$cdir/vmcoreinfo.txt" >&2 || true
    ls -l "$cdir" >&2
}

# ------------------------------------------------------------------ reduce
stage_reduce() {
    local cdir=$WORK/qmp in=dump.elf
    [ -e "$cdir/dump.elf" ] || die "no $cdir/dump.elf (run the qmp stage)"
    if [ "$(od -An -t u8 -j 32 -N 8 "$cdir/dump.elf" | tr -d ' ')" != 64 ]; then
        $HELPER normalize-elf "$cdir/dump.elf" "$cdir/dump.norm.elf"
        in=dump.norm.elf
    fi
    rm -f "$cdir/vmcore.c-d$DUMP_LEVEL.kdump"
    # Debian's makedumpfile is built for the host architecture only; keep its verdict.
    (cd "$cdir" && timeout 600 makedumpfile -c -d "$DUMP_LEVEL" "$in" "vmcore.c-d$DUMP_LEVEL.kdump") \
        > "$cdir/makedumpfile-c.log" 2>&1 || log "makedumpfile -c failed on the arm64 ELF (see makedumpfile-c.log)"
    zstd -q -f -19 --long=27 "$cdir/dump.elf" -o "$cdir/dump.elf.zst"
    ls -l "$cdir" >&2
}

# ------------------------------------------------------------------ oracles
write_drgn_script() {
    cat > "$1" <<'PYEOF'
# drgn oracle for an arm64 dump: drgn -q -c DUMP -s VMLINUX drgn-oracle.py OUTDIR
import os, sys
from drgn import FaultError
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.sched import task_state_to_char
from drgn.helpers.linux.module import for_each_module
from drgn.helpers.linux.mm import follow_phys, virt_to_phys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)

def w(name, text):
    with open(os.path.join(out, name), "w") as f:
        f.write(text)

rows = ["PID\tTGID\tPPID\tST\tTASK\tCOMM"]
tasks = sorted(for_each_task(prog), key=lambda t: (t.pid.value_(), t.value_()))
for t in tasks:
    rows.append("%d\t%d\t%d\t%s\t%#x\t%s" % (
        t.pid, t.tgid, t.real_parent.pid, task_state_to_char(t), t.value_(),
        t.comm.string_().decode(errors="backslashreplace")))
w("tasks.tsv", "\n".join(rows) + "\n")

mods = ["NAME\tBASE\tSIZE\tSTRUCT_MODULE"]
for m in for_each_module(prog):
    # struct module_layout core_layout until 6.3; mem[MOD_TEXT] (index 0) from 6.4
    lay = m.core_layout if hasattr(m, "core_layout") else m.mem[0]
    mods.append("%s\t%#x\t%d\t%#x" % (m.name.string_().decode(), lay.base.value_(), lay.size.value_(),
                                      m.value_()))
w("modules.tsv", "\n".join(mods) + "\n")

# Virtual -> physical through page tables (drgn's follow_phys walks them). ROOT is the
# physical address of the page-table root walked: swapper_pg_dir, or a process's mm->pgd.
init_mm = prog["init_mm"].address_of_()
vt = ["KIND\tVADDR\tPADDR\tROOT"]
def add(kind, va, mm=init_mm):
    if mm == init_mm:  # swapper_pg_dir is in the kernel image, outside the linear map
        root = mm.pgd.value_() - prog["kimage_voffset"].value_()
    else:
        root = virt_to_phys(mm.pgd).value_()
    try:
        vt.append("%s\t%#x\t%#x\t%#x" % (kind, va, follow_phys(mm, va).value_(), root))
    except FaultError:
        vt.append("%s\t%#x\tFAULT\t%#x" % (kind, va, root))
add("image:init_task", prog["init_task"].address_)
add("image:swapper_pg_dir", prog.symbol("swapper_pg_dir").address)
add("image:jiffies", prog["jiffies"].address_)
add("linear:mem_section", prog["mem_section"].value_())
for t in tasks[1:6]:
    add("linear:task %d" % t.pid.value_(), t.value_())
    add("vmalloc:stack %d" % t.pid.value_(), t.stack.value_())
for m in for_each_module(prog):
    add("module:%s" % m.name.string_().decode(), m.value_())
for t in tasks:
    if t.mm and t.comm.string_() == b"sh":
        mm = t.mm
        add("user:pid %d arg_start" % t.pid.value_(), mm.arg_start.value_(), mm)
        add("user:pid %d start_brk" % t.pid.value_(), mm.start_brk.value_(), mm)
w("vtop.tsv", "\n".join(vt) + "\n")
pgd = init_mm.pgd

misc = [
    "uts_release=%s" % prog["init_uts_ns"].name.release.string_().decode(),
    "init_task=%#x" % prog["init_task"].address_,
    "swapper_pg_dir=%#x" % prog.symbol("swapper_pg_dir").address,
    "init_mm.pgd=%#x" % pgd.value_(),
    "jiffies=%d" % prog["jiffies"].value_(),
    "nr_cpu_ids=%d" % prog["nr_cpu_ids"].value_(),
    "panic_cpu=%d" % prog["panic_cpu"].counter.value_(),
    "memstart_addr=%#x" % prog["memstart_addr"].value_(),
    "kimage_voffset=%#x" % prog["kimage_voffset"].value_(),
]
w("misc.txt", "\n".join(misc) + "\n")

regs = []
for cpu in range(prog["nr_cpu_ids"].value_()):
    try:
        th = prog.crashed_thread() if cpu == prog["panic_cpu"].counter.value_() else None
    except Exception:
        th = None
    if th is not None:
        f0 = th.stack_trace()[0]
        regs.append("crashed cpu %d pid %d pc=%#x sp=%#x" % (cpu, th.tid, f0.pc, f0.sp))
        regs.append(" ".join("%s=%#x" % kv for kv in sorted(f0.registers().items())))
        regs.append(str(th.stack_trace()))
w("crashed-thread.txt", "\n".join(regs) + "\n")
print("drgn oracle: %d tasks, %d modules, %d translations" % (len(rows) - 1, len(mods) - 1, len(vt) - 1))
PYEOF
}

stage_oracles() {
    local cdir=$WORK/qmp E
    E=$cdir/expected
    rm -rf "$E"; mkdir -p "$E"
    if [ -z "$DRGN" ] || [ ! -e "$VMLINUX" ]; then
        log "oracles: drgn or $VMLINUX missing (DBG=1 kernel stage fetches the vmlinux); skipped"
        echo "drgn oracle skipped: no drgn or no -dbg vmlinux" > "$E/README.txt"
        return 0
    fi
    write_drgn_script "$WORK/drgn-oracle.py"
    "$DRGN" -q -c "$cdir/dump.elf" -s "$VMLINUX" "$WORK/drgn-oracle.py" "$E/drgn" \
        > "$E/drgn.log" 2>&1 || log "drgn oracle failed (see $E/drgn.log)"
    "$DRGN" --version > "$E/drgn-version.txt" 2>&1 || true
    ls -l "$E" "$E/drgn" >&2 || true
}

# ------------------------------------------------------------------ sample
stage_sample() {
    local cdir=$WORK/qmp best name
    mkdir -p "$OUT"
    # Smallest of: makedumpfile's kdump output (if it worked), QEMU's kdump-zlib, the zstd ELF.
    best=$(ls -S "$cdir"/vmcore.c-d"$DUMP_LEVEL".kdump "$cdir"/dump.kdump-zlib "$cdir"/dump.elf.zst \
           2>/dev/null | tail -1 || true)
    [ -n "$best" ] || die "no dump to ship (run qmp and reduce)"
    case $best in
        *.kdump) name=vmcore.c-d$DUMP_LEVEL.kdump ;;
        *kdump-zlib) name=vmcore.kdump-zlib ;;
        *.zst) name=vmcore.elf.zst ;;
    esac
    rm -f "$OUT"/vmcore.*
    cp "$best" "$OUT/$name"; chmod 644 "$OUT/$name"
    cp "$cdir/vmcoreinfo.txt" "$OUT/vmcoreinfo.txt"
    rm -rf "$OUT/expected"; mkdir -p "$OUT/expected"
    if [ -d "$cdir/expected/drgn" ]; then
        cp "$cdir"/expected/drgn/* "$OUT/expected/"
        cp "$WORK/drgn-oracle.py" "$OUT/expected/drgn-oracle.py"
    fi
    cp "$cdir/qemu-cmdline.txt" "$OUT/qemu-cmdline.txt"
    tr -d '\r' < "$cdir/console.log" | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g' > "$OUT/console.log"
    {
        echo "FILE=$name"; echo "SIZE=$(stat -c %s "$OUT/$name")"
        echo "SHA256=$(sha256sum "$OUT/$name" | cut -d' ' -f1)"
        cat "$cdir/case.env"
        echo "SOURCE_ELF_SIZE=$(stat -c %s "$cdir/dump.elf")"
        echo "SOURCE_ELF_SHA256=$(sha256sum "$cdir/dump.elf" | cut -d' ' -f1)"
        echo "SOURCE_ELF_LAYOUT='$(cat "$cdir/elfinfo.txt")'"
        echo "QEMU_KDUMP_ZLIB_SIZE=$(stat -c %s "$cdir/dump.kdump-zlib" 2>/dev/null || echo none)"
        echo "MAKEDUMPFILE=$(makedumpfile -v 2>&1 | sed -n 's/^makedumpfile: version \([^ ]*\).*/\1/p')"
        echo "MAKEDUMPFILE_RESULT='$(grep -v '^$' "$cdir/makedumpfile-c.log" 2>/dev/null | head -1 | tr -d "'")'"
        [ -z "$DRGN" ] || echo "DRGN=$("$DRGN" --version 2>&1 | awk '{print $2; exit}')"
        echo "GENERATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    } > "$OUT/sample.env"
    write_sample_readme "$name"
    ls -l "$OUT" >&2
}

write_sample_readme() {
    local name=$1 vi=$OUT/vmcoreinfo.txt
    local k v
    while IFS='=' read -r k v; do   # KEY=VALUE lines (values may hold spaces and parentheses)
        v=${v#\'}; v=${v%\'}
        printf -v "$k" '%s' "$v"
    done < "$OUT/sample.env"
    key() { grep -F "$1=" "$vi" | head -1 | cut -d= -f2-; }
    {
        cat <<EOF
# arm64 sample crash dump

\`$name\` ($SIZE bytes, sha256 \`$SHA256\`) is a real crash dump of a stock Debian arm64
kernel, made by \`tools/make-dumps-arm64.sh\` (see tools/README.md) on an x86_64 host with
qemu-system-aarch64 (TCG). Provenance, machine readable: \`sample.env\`.

* Kernel: \`$KPKG_NAME\` \`$KPKG_VERSION\` (\`$KPKG_DEB\`, sha256 \`$KPKG_SHA256\`), release \`$KV\`,
  downloaded with \`apt-get download\` and unpacked (never installed); its \`vmlinuz\` is the raw
  arm64 \`Image\` that \`-kernel\` boots.
* VMCOREINFO: PAGESIZE=$(key PAGESIZE), VA_BITS=$(key 'NUMBER(VA_BITS)'), TCR_EL1_T1SZ=$(key 'NUMBER(TCR_EL1_T1SZ)'),
  KERNELOFFSET=$(key KERNELOFFSET), kimage_voffset=$(key 'NUMBER(kimage_voffset)'),
  PHYS_OFFSET=$(key 'NUMBER(PHYS_OFFSET)'), KERNELPACMASK=$(key 'NUMBER(KERNELPACMASK)'),
  BUILD-ID=$(key BUILD-ID).
* Guest: \`-machine virt -cpu $CPU\`, $MEM RAM, $SMP vCPUs, KASLR $([ "$KASLR" = 1 ] && echo "on (seed from QEMU's device tree)" || echo "off"),
  $QEMU_VERSION. Exact command line: \`qemu-cmdline.txt\`; serial log: \`console.log\`.
  Boot to panic took ${BOOT_TO_PANIC_S}s, the whole QMP session ${TOTAL_S}s.
  Regenerate (the same package version, if the archive still has it):
  \`KPKG=$KPKG_NAME=$KPKG_VERSION DBG=1 OUT=${OUT#"$ROOT"/} tools/make-dumps-arm64.sh\`
  (KASLR and the workload's timing make each run's addresses differ).
* Dump path: busybox initramfs \`/init\` loads qemu_fw_cfg (so \`-device vmcoreinfo\` hands QEMU
  the guest's VMCOREINFO), dummy, loop, brd; runs \`sleep 1000\`, \`sleep 1001\`, a busy loop, a
  $HOLD_MB MiB tmpfs file on /dev/loop0, shells holding a text file and $HOLD_MB MiB of \`Z\`; writes
  \`vmcorekit-marker:\` lines to /dev/kmsg; panics with \`echo c > /proc/sysrq-trigger\` from a
  child shell (\`panic=0\`: the panicking CPU spins). QEMU then wrote an ELF core over QMP
  (\`dump-guest-memory\`, paging=false): $SOURCE_ELF_SIZE bytes, sha256 \`$SOURCE_ELF_SHA256\`
  ($SOURCE_ELF_LAYOUT). QEMU writes per CPU an NT_PRSTATUS, an NT_PRFPREG and (SVE is on with
  \`-cpu max\`) an NT_ARM_SVE note; no pointer-authentication note.
EOF
        case $name in
            *.zst) cat <<EOF
* This file is that ELF, \`zstd -19 --long=27\`; decompress it (\`zstd -d\`) before use. It is
  the smallest form at hand: makedumpfile $MAKEDUMPFILE on this amd64 host is built for x86_64
  only and fails on an arm64 dump ("$MAKEDUMPFILE_RESULT"), and QEMU's own kdump-zlib output
  was $QEMU_KDUMP_ZLIB_SIZE bytes. The size is mostly the kernel image (text, rodata, data:
  ~9 MiB compressed); the rest of the $MEM is zero or free pages.
EOF
            ;;
            *) echo "* This file: \`$name\` (see sample.env)." ;;
        esac
        cat <<EOF

## expected/ (outputs of drgn $DRGN with the matching -dbg vmlinux; never of vmcorekit)

Made by \`expected/drgn-oracle.py\`, run as \`drgn -q -c dump.elf -s vmlinux-$KV drgn-oracle.py OUTDIR\`
on the uncompressed ELF:

* \`tasks.tsv\` - every task: pid, tgid, ppid, state, task_struct address, comm.
* \`modules.tsv\` - modules: name, core_layout base and size, struct module address.
* \`vtop.tsv\` - \`follow_phys()\` translations (kind, virtual, physical, page-table root): image
  symbols, linear-map task_structs, vmalloc'd stacks, module structs (walked through
  swapper_pg_dir) and user addresses of the shells (walked through their mm->pgd).
* \`misc.txt\` - uts release, init_task, swapper_pg_dir, jiffies, nr_cpu_ids, panic_cpu,
  memstart_addr, kimage_voffset.
* \`crashed-thread.txt\` - the panicking CPU's registers (QEMU's PRSTATUS) and drgn's stack trace.
EOF
    } > "$OUT/README.md"
}

main() {
    local stages=("$@") st
    [ ${#stages[@]} -gt 0 ] || stages=(install kernel initramfs qmp reduce oracles sample)
    mkdir -p "$WORK"
    for st in "${stages[@]}"; do
        log "=== stage $st"
        case $st in install|kernel) ;; *) kernel_env ;; esac
        case $st in
            install) stage_install ;;
            kernel) stage_kernel ;;
            initramfs) stage_initramfs ;;
            qmp) stage_qmp ;;
            reduce) stage_reduce ;;
            oracles) stage_oracles ;;
            sample) stage_sample ;;
            -h|--help|help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
            *) die "unknown stage $st" ;;
        esac
    done
}
main "$@"
