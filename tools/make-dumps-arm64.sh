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
#   FILL_MB       MiB of varied bulk data (tmpfs, kept at every dump level) plus
#                 100k files' slab, for benchmarks; needs MEM > FILL_MB + HOLD_MB [0]
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
FILL_MB=${FILL_MB:-0}
DUMP_LEVEL=${DUMP_LEVEL:-31}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-1500}
DRGN=${DRGN:-$(command -v drgn || true)}

DEB_ARCH=arm64
QEMU=qemu-system-aarch64
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
# This script's .env files hold plain NAME=value lines: they are read line by line
# (write_sample_readme), and case.env has values with spaces that are not quoted.
kv() { printf '%s=%s\n' "$1" "$2"; }

# ------------------------------------------------------------------ install
stage_install() {
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    apt_install qemu-system-arm cpio gzip zstd makedumpfile python3 psmisc
}

# ------------------------------------------------------------------ kernel
stage_kernel() {
    kernel_unpack
    arm64_image_and_busybox
    kernel_dbg
}

# ------------------------------------------------------------------ initramfs
stage_initramfs() {
    local d=$WORK/initramfs/root
    # The arm64 busybox cannot run on the host, so it installs its applet links at boot.
    rootfs_skeleton "$d" "$KDIR/busybox/bin/busybox"
    rootfs_modules "$d" qemu_fw_cfg dummy loop brd
    printf "HOLD_MB=%s\nFILL_MB=%s\n" "$HOLD_MB" "$FILL_MB" > "$d/etc/workload.env"
    {
        cat <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
. /etc/init-common.sh
. /etc/workload.env
echo "gen-init: kernel $(uname -r) machine $(uname -m) cmdline: $(cat /proc/cmdline)"
hostname vmcorekit-arm64
EOF
        guest_workload 262144
        cat <<'EOF'

# --- kernel log markers ----------------------------------------------------
echo '<2>vmcorekit-marker: arm64 crit level line' > /dev/kmsg
echo '<4>vmcorekit-marker: arm64 warning level line' > /dev/kmsg
echo '<6>vmcorekit-marker: arm64 info line' > /dev/kmsg
printf '<6>vmcorekit-marker: utf8 caf\303\251 \342\202\254uro\n' > /dev/kmsg
EOF
        guest_wait_ready 600
        guest_panic
    } > "$d/init"
    chmod 755 "$d/init"
    pack_cpio "$d" "$WORK/initramfs/qmp.cpio.gz"
    ls -l "$WORK/initramfs/qmp.cpio.gz" >&2
}

# ------------------------------------------------------------------ QEMU
stage_qmp() {
    local cdir=$WORK/qmp
    rm -rf "$cdir"; mkdir -p "$cdir"
    describe_case "$cdir" qmp "$MEM" CPU "$CPU"
    start_qemu "$cdir" virt "$CPU" "$MEM" "$KDIR/Image" "$WORK/initramfs/qmp.cpio.gz" "$(kernel_append ttyAMA0)"
    # the (slow, emulated) panic path needs ~15 s to finish printing and stop the other CPUs
    qmp_panic_dumps "$cdir" 5 15
    kv BOOT_TO_PANIC_S "$PANIC_S" >> "$cdir/case.env"
    kv TOTAL_S "$(( $(date +%s) - QEMU_T0 ))" >> "$cdir/case.env"
    dump_facts "$cdir" 'OSRELEASE|PAGESIZE|KERNELOFFSET|NUMBER\((VA_BITS|kimage_voffset|PHYS_OFFSET|KERNELPACMASK|TCR_EL1_T1SZ)\)'
}

# ------------------------------------------------------------------ reduce
stage_reduce() {
    local cdir=$WORK/qmp in
    [ -e "$cdir/dump.elf" ] || die "no $cdir/dump.elf (run the qmp stage)"
    in=$(makedumpfile_input "$cdir")
    rm -f "$cdir/vmcore.c-d$DUMP_LEVEL.kdump"
    # Debian's makedumpfile is built for the host architecture only; keep its verdict.
    (cd "$cdir" && timeout 600 makedumpfile -c -d "$DUMP_LEVEL" "$in" "vmcore.c-d$DUMP_LEVEL.kdump") \
        > "$cdir/makedumpfile-c.log" 2>&1 || log "makedumpfile -c failed on the arm64 ELF (see makedumpfile-c.log)"
    zstd -q -f -19 --long=27 "$cdir/dump.elf" -o "$cdir/dump.elf.zst"
    ls -l "$cdir" >&2
}

# ------------------------------------------------------------------ oracles
stage_oracles() {
    local cdir=$WORK/qmp E
    E=$cdir/expected
    rm -rf "$E"; mkdir -p "$E"
    if ! drgn_oracle_ready; then
        log "oracles: drgn or $VMLINUX missing (DBG=1 kernel stage fetches the vmlinux); skipped"
        echo "drgn oracle skipped: no drgn or no -dbg vmlinux" > "$E/README.txt"
        return 0
    fi
    "$DRGN" -q -c "$cdir/dump.elf" -s "$VMLINUX" "$DRGN_ORACLE" "$E/drgn" \
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
    fi
    cp "$cdir/qemu-cmdline.txt" "$OUT/qemu-cmdline.txt"
    clean_console "$cdir/console.log" "$OUT/console.log"
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

Made by \`tools/drgn_oracle.py\`, run as \`drgn -q -c dump.elf -s vmlinux-$KV tools/drgn_oracle.py OUTDIR\`
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

run_stages "install kernel initramfs qmp reduce oracles sample" \
    "install kernel initramfs qmp reduce oracles sample" "$@"
