#!/bin/bash
# make-dumps.sh - make real Linux x86_64 crash dumps (vmcores) of a stock Debian
# kernel under QEMU with software emulation (TCG; KVM is neither needed nor used),
# and the small sample dump that ships in samples/.
#
# Usage:  tools/make-dumps.sh [STAGE...]          (as root on Debian 12 amd64)
#
# Stages (default: install kernel initramfs qmp reduce oracles sample):
#   install    apt-get update; apt-get install qemu-system-x86 busybox-static
#              kexec-tools makedumpfile cpio zstd ...
#   kernel     apt-get download the kernel package (KPKG) and unpack it into
#              $WORK/kernel (the host's /boot is not touched); DBG=1 also fetches
#              the matching -dbg package and unpacks only its vmlinux
#   initramfs  busybox initramfs images: the workload, the kdump first kernel
#              (workload + kexec + capture kernel), the capture kernel
#   qmp        boot, run the workload, panic (sysrq-c), dump over QMP
#              (dump-guest-memory, -device vmcoreinfo) -> $WORK/qmp/dump.<fmt>
#   kdump      boot with crashkernel=, kexec -p a capture kernel, panic; the
#              capture kernel copies /proc/vmcore to a virtio disk
#              -> $WORK/kdump/dump.elf
#   reduce     makedumpfile -c and -l -d $DUMP_LEVEL of every dump.elf
#              (QEMU ELF is normalized first, see dumpgen.py normalize-elf)
#   oracles    reference-tool outputs (makedumpfile --dump-dmesg, vmcore-dmesg,
#              drgn task list if drgn + the -dbg vmlinux are available)
#   sample     copy the smallest reduced dump of $SAMPLE_CASE + vmcoreinfo +
#              oracles to $OUT and write $OUT/README.md
#   all        every stage above, kdump included
#
# Environment (defaults in brackets):
#   WORK          scratch directory, several hundred MB to a few GB [/work/scratch/gen/work]
#   KDIR          unpacked kernel + downloaded debs [$WORK/kernel]; may be shared
#   OUT           where the sample goes [<repo>/samples]
#   KPKG          kernel package, a metapackage or a concrete one, optionally
#                 =VERSION [linux-image-amd64, i.e. whatever the host's apt offers]
#   KERNEL_DEB    use this local linux-image .deb instead of downloading KPKG
#   DBG           1 = fetch linux-image-<ver>-dbg (~850 MB) for the drgn oracle [0]
#   MEM           RAM of the QMP-dumped guest [128M]
#   SMP           vCPUs [2]
#   KASLR         1 = KASLR on, 0 = nokaslr [1]
#   PAGING        4 or 5 level page tables (5 = -cpu max, 4 = -cpu max,la57=off) [4]
#   QMP_FORMATS   QMP dump formats: elf, kdump-zlib, kdump-lzo, kdump-snappy,
#                 paging-elf (= elf with paging=true) [elf kdump-zlib paging-elf]
#   KDUMP_MEM     RAM of the kdump guest [768M]
#   CRASHKERNEL   crashkernel= reservation [192M]
#   HOLD_MB       MiB of tmpfs file and of shell-held user memory in the workload [8]
#   FILL_MB       MiB of varied bulk data (tmpfs, kept at every dump level) plus
#                 100k files' slab, for benchmarks; needs MEM > FILL_MB + HOLD_MB [0]
#   DUMP_LEVEL    makedumpfile -d level [31]
#   SAMPLE_CASE   qmp or kdump [qmp]
#   BOOT_TIMEOUT  seconds to wait for the guest [900]
#   DRGN          drgn executable [drgn on PATH]
#
# Typical runs:
#   tools/make-dumps.sh                                    # sample (QMP, 128M guest)
#   DBG=1 tools/make-dumps.sh kernel oracles sample        # + drgn task oracle
#   tools/make-dumps.sh kdump reduce oracles               # the real kdump path
#   MEM=256M KASLR=0 PAGING=5 WORK=/tmp/w OUT=/tmp/o tools/make-dumps.sh
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
WORK=${WORK:-/work/scratch/gen/work}
OUT=${OUT:-$ROOT/samples}
KPKG=${KPKG:-linux-image-amd64}
KERNEL_DEB=${KERNEL_DEB:-}
DBG=${DBG:-0}
MEM=${MEM:-128M}
SMP=${SMP:-2}
KASLR=${KASLR:-1}
PAGING=${PAGING:-4}
QMP_FORMATS=${QMP_FORMATS:-elf kdump-zlib paging-elf}
KDUMP_MEM=${KDUMP_MEM:-768M}
CRASHKERNEL=${CRASHKERNEL:-192M}
HOLD_MB=${HOLD_MB:-8}
FILL_MB=${FILL_MB:-0}
DUMP_LEVEL=${DUMP_LEVEL:-31}
SAMPLE_CASE=${SAMPLE_CASE:-qmp}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-900}
DRGN=${DRGN:-$(command -v drgn || true)}
KDIR=${KDIR:-$WORK/kernel}

DEB_ARCH=amd64
QEMU=qemu-system-x86_64
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

# ------------------------------------------------------------------ install
stage_install() {
    apt_install qemu-system-x86 busybox-static kexec-tools makedumpfile \
        cpio gzip xz-utils zstd python3 psmisc
}

# ------------------------------------------------------------------ kernel
# Resolve KPKG (e.g. the linux-image-amd64 metapackage) to a concrete
# linux-image-<abi>-amd64 package and version, download and unpack it.
stage_kernel() {
    kernel_unpack
    write_kernel_env
    kernel_dbg
}

# ------------------------------------------------------------------ initramfs
make_rootfs() {  # make_rootfs DIR MODULE...: busybox + its applet links + modules + /etc/init-common.sh
    local dir=$1 a; shift
    rootfs_skeleton "$dir" /bin/busybox
    for a in $("$dir/bin/busybox" --list); do   # the host's busybox: its applet links are made here
        [ -e "$dir/bin/$a" ] || ln -s busybox "$dir/bin/$a"
    done
    rootfs_modules "$dir" "$@"
}

write_workload_init() {  # write_workload_init DIR qmp|kdump
    local dir=$1 mode=$2
    printf "HOLD_MB=%s\nFILL_MB=%s\n" "$HOLD_MB" "$FILL_MB" > "$dir/etc/workload.env"
    {
        cat <<'EOF'
#!/bin/sh
. /etc/init-common.sh
. /etc/workload.env
echo "gen-init: kernel $(uname -r) cmdline: $(cat /proc/cmdline)"
hostname vmcorekit-guest
EOF
        guest_workload 1048576
        cat <<'EOF'

# --- kernel log markers ----------------------------------------------------
echo '<2>vmcorekit-marker: crit level line' > /dev/kmsg
echo '<3>vmcorekit-marker: error level line' > /dev/kmsg
echo '<4>vmcorekit-marker: warning level line' > /dev/kmsg
echo '<5>vmcorekit-marker: notice level line' > /dev/kmsg
echo '<6>vmcorekit-marker: info line' > /dev/kmsg
echo '<7>vmcorekit-marker: debug level line' > /dev/kmsg
echo '<30>vmcorekit-marker: facility daemon(3) info line' > /dev/kmsg
long=""; i=0
while [ $i -lt 88 ]; do long="$long$(printf '%09d|' $i)"; i=$((i+1)); done
echo "<5>vmcorekit-marker: long line BEGIN|${long}END" > /dev/kmsg
printf '<6>vmcorekit-marker: utf8 caf\303\251 \342\202\254uro \360\237\220\247 \316\251mega\n' > /dev/kmsg
printf '<6>vmcorekit-marker: embedded newline first half\nsecond half after newline\n' > /dev/kmsg
printf '<6>vmcorekit-marker: escapes tab[\t] backslash[\\] bell[\a] esc[\033] del[\177] quote["]\n' > /dev/kmsg
echo 'vmcorekit-marker: no priority prefix' > /dev/kmsg
EOF
        guest_wait_ready 300
        if [ "$mode" = kdump ]; then
            cat <<'EOF'
echo "gen-init: crash kernel region: $(grep -i 'crash kernel' /proc/iomem | tr -s ' ')"
kexec -p /vmlinuz --initrd=/capture.cpio.gz \
      --append='console=ttyS0 irqpoll nr_cpus=1 reset_devices init=/init panic=1 loglevel=7'
echo "gen-init: kexec -p rc=$? kexec_crash_loaded=$(cat /sys/kernel/kexec_crash_loaded)"
EOF
        fi
        guest_panic
    } > "$dir/init"
    chmod 755 "$dir/init"
}

write_capture_init() {
    local dir=$1
    cat > "$dir/init" <<'EOF'
#!/bin/sh
. /etc/init-common.sh
echo "capture-init: kdump kernel $(uname -r) cmdline: $(cat /proc/cmdline)"
i=0; while [ ! -b /dev/vda ] && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done
[ -b /dev/vda ] || { echo "capture-init: no /dev/vda"; poweroff -f; }
SIZE=$(stat -c %s /proc/vmcore)
echo "capture-init: copying $SIZE bytes of /proc/vmcore to /dev/vda"
dd if=/proc/vmcore of=/dev/vda bs=1M conv=fsync 2>&1
SECTORS=$(cat /sys/block/vda/size)
# size trailer in the disk's last sector (cross-checked by the host)
printf 'VMCORE-SIZE=%s\n' "$SIZE" | dd of=/dev/vda bs=512 seek=$((SECTORS-1)) conv=notrunc,fsync 2>/dev/null
sync
echo "VMCORE-SIZE=$SIZE"
echo CAPTURE-DONE
poweroff -f
EOF
    chmod 755 "$dir/init"
}

stage_initramfs() {
    local d=$WORK/initramfs f
    mkdir -p "$d"
    make_rootfs "$d/qmp-root" qemu_fw_cfg dummy loop brd
    write_workload_init "$d/qmp-root" qmp
    pack_cpio "$d/qmp-root" "$d/qmp.cpio.gz"
    make_rootfs "$d/capture-root" virtio_pci virtio_blk
    write_capture_init "$d/capture-root"
    pack_cpio "$d/capture-root" "$d/capture.cpio.gz"
    make_rootfs "$d/kdump-root" qemu_fw_cfg dummy loop brd
    write_workload_init "$d/kdump-root" kdump
    cp /sbin/kexec "$d/kdump-root/sbin/kexec"
    for f in $(ldd /sbin/kexec | grep -o '/[^ ]*'); do
        mkdir -p "$d/kdump-root$(dirname "$f")"
        cp -L "$f" "$d/kdump-root$f"
    done
    cp "$VMLINUZ" "$d/kdump-root/vmlinuz"
    cp "$d/capture.cpio.gz" "$d/kdump-root/capture.cpio.gz"
    pack_cpio "$d/kdump-root" "$d/kdump.cpio.gz"
    ls -l "$d"/*.cpio.gz >&2
}

# ------------------------------------------------------------------ QEMU
qemu_cpu() { [ "$PAGING" = 5 ] && echo max || echo max,la57=off; }

start_x86() {  # start_x86 CASEDIR MEM APPEND INITRD [extra QEMU args]; sets QEMU_PID
    local cdir=$1 mem=$2 append=$3 initrd=$4; shift 4
    start_qemu "$cdir" q35 "$(qemu_cpu)" "$mem" "$VMLINUZ" "$initrd" "$append" "$@"
}

stage_qmp() {
    local cdir=$WORK/qmp
    rm -rf "$cdir"; mkdir -p "$cdir"
    describe_case "$cdir" qmp "$MEM" PAGING "$PAGING"
    start_x86 "$cdir" "$MEM" "$(kernel_append ttyS0)" "$WORK/initramfs/qmp.cpio.gz"
    qmp_panic_dumps "$cdir" 2 5
    dump_facts "$cdir" 'OSRELEASE|KERNELOFFSET|NUMBER\(phys_base\)|NUMBER\(pgtable_l5_enabled\)'
}

stage_kdump() {
    local cdir=$WORK/kdump s=0 size
    rm -rf "$cdir"; mkdir -p "$cdir"
    describe_case "$cdir" kdump "$KDUMP_MEM" PAGING "$PAGING"
    kv CRASHKERNEL "$CRASHKERNEL" >> "$cdir/case.env"
    truncate -s "$(( $(numfmt --from=iec "$KDUMP_MEM") + (64 << 20) ))" "$cdir/disk.img"
    start_x86 "$cdir" "$KDUMP_MEM" "$(kernel_append ttyS0) crashkernel=$CRASHKERNEL" \
        "$WORK/initramfs/kdump.cpio.gz" -drive "file=$cdir/disk.img,format=raw,if=virtio"
    while kill -0 "$QEMU_PID" 2>/dev/null; do
        if [ $s -ge "$BOOT_TIMEOUT" ]; then
            stop_qemu "$cdir"; die "kdump: timeout; see $cdir/console.log"
        fi
        if grep -aq 'kexec -p rc=[1-9]' "$cdir/console.log"; then
            stop_qemu "$cdir"; die "kdump: kexec -p failed; see $cdir/console.log"
        fi
        sleep 5; s=$((s + 5))
    done
    wait "$QEMU_PID" || true
    log "kdump: QEMU exited after ~${s}s"
    size=$(tr -d '\r' < "$cdir/console.log" | sed -n 's/^VMCORE-SIZE=\([0-9]*\)$/\1/p' | tail -1)
    [ -n "$size" ] || die "kdump: the capture kernel reported no VMCORE-SIZE; see $cdir/console.log"
    tail -c 512 "$cdir/disk.img" | tr -d '\0' | grep -q "VMCORE-SIZE=$size" \
        || die "kdump: size trailer on the disk does not match"
    head -c "$size" "$cdir/disk.img" > "$cdir/dump.elf"
    rm -f "$cdir/disk.img"
    dump_facts "$cdir" 'OSRELEASE|KERNELOFFSET|CRASHTIME'
}

# ------------------------------------------------------------------ reduce
cases_with_dumps() {
    local c
    for c in qmp kdump; do [ -e "$WORK/$c/dump.elf" ] && echo "$c"; done; return 0
}

stage_reduce() {
    local c cdir in codec
    for c in $(cases_with_dumps); do
        cdir=$WORK/$c; in=$(makedumpfile_input "$cdir")
        for codec in c l; do
            rm -f "$cdir/vmcore.$codec-d$DUMP_LEVEL.kdump"
            (cd "$cdir" && makedumpfile -$codec -d "$DUMP_LEVEL" "$in" "vmcore.$codec-d$DUMP_LEVEL.kdump") \
                > "$cdir/makedumpfile-$codec.log" 2>&1 || log "$c: makedumpfile -$codec failed (see log)"
        done
        echo "$in" > "$cdir/mdf-input.txt"
        ls -l "$cdir"/vmcore.*.kdump >&2
    done
}

# ------------------------------------------------------------------ oracles
# Outputs of the reference tools, never of vmcorekit itself.
run_rc() {  # run_rc OUTFILE CMD...: stdout to OUTFILE, stderr to OUTFILE.stderr, rc recorded
    local outf=$1 rc=0; shift
    "$@" > "$outf" 2> "$outf.stderr" || rc=$?
    [ -s "$outf.stderr" ] || rm -f "$outf.stderr"
    printf '%s\t%s\n' "$rc" "$*" >> "$E/commands.tsv"
    log "  rc=$rc: $*"
}

best_reduced() {  # the smaller of the -c / -l outputs of a case
    ls -S "$WORK/$1"/vmcore.[cl]-d"$DUMP_LEVEL".kdump 2>/dev/null | tail -1
}

stage_oracles() {
    local c cdir red in
    for c in $(cases_with_dumps); do
        cdir=$WORK/$c; E=$cdir/expected
        rm -rf "$E"; mkdir -p "$E"
        printf 'rc\tcommand (run in %s/)\n' "$c" > "$E/commands.tsv"
        red=$(best_reduced "$c"); red=${red##*/}
        in=$(cat "$cdir/mdf-input.txt" 2>/dev/null || echo dump.elf)
        log "oracles for $c (reduced dump: ${red:-none})"
        cd "$cdir"
        if [ -n "$red" ]; then
            run_rc "$E/makedumpfile-dump-dmesg.log" makedumpfile --dump-dmesg "$red" expected/makedumpfile-dmesg.txt
        fi
        run_rc "$E/makedumpfile-dump-dmesg-elf.log" makedumpfile --dump-dmesg "$in" expected/makedumpfile-dmesg-elf.txt
        # vmcore-dmesg needs virtual addresses in the PT_LOADs: the kdump ELF, or
        # QEMU's paging=true ELF (QEMU's paging=false ELF has physical ones only)
        if [ "$c" = kdump ]; then
            run_rc "$E/vmcore-dmesg.txt" vmcore-dmesg dump.elf
        elif [ -e dump.paging.elf ]; then
            run_rc "$E/vmcore-dmesg.txt" vmcore-dmesg dump.paging.elf
        fi
        if drgn_oracle_ready && [ -n "$red" ]; then
            run_rc "$E/drgn-run.out" "$DRGN" -q -c "$red" -s "$VMLINUX" "$DRGN_ORACLE" expected
        else
            log "  drgn oracle skipped (drgn: ${DRGN:-missing}; vmlinux: ${VMLINUX:-?} needs DBG=1 kernel stage)"
        fi
        cd - >/dev/null
        # keep only outputs that are meaningful
        for f in "$E"/*.txt; do [ -s "$f" ] || rm -f "$f"; done
        sed -i "s#$cdir/##g; s#$KDIR/dbg##g; s#${DRGN:-/nonexistent} #drgn #g; s#$HERE/#tools/#g" "$E/commands.tsv"
    done
}

# ------------------------------------------------------------------ sample
stage_sample() {
    local cdir=$WORK/$SAMPLE_CASE red name f
    red=$(best_reduced "$SAMPLE_CASE")
    [ -n "$red" ] || die "no reduced dump in $cdir (run the $SAMPLE_CASE and reduce stages)"
    # shellcheck disable=SC1091
    . "$cdir/case.env"
    local codec=${red##*/vmcore.}; codec=${codec%.kdump}
    name=x86_64-$KV-$SAMPLE_CASE-$codec.kdump
    mkdir -p "$OUT"
    rm -rf "$OUT/expected"
    rm -f "$OUT"/x86_64-*.kdump
    cp "$red" "$OUT/$name"
    chmod 644 "$OUT/$name"
    cp "$cdir/vmcoreinfo.txt" "$OUT/vmcoreinfo.txt"
    cp "$cdir/qemu-cmdline.txt" "$OUT/qemu-cmdline.txt"
    clean_console "$cdir/console.log" "$OUT/console.log"
    if [ -d "$cdir/expected" ]; then
        cp -r "$cdir/expected" "$OUT/expected"
        chmod -R u+rw,go+r "$OUT/expected"
        # the oracles ran on the reduced dump under its scratch name
        grep -rlI -- "${red##*/}" "$OUT/expected" | while read -r f; do
            sed -i "s#${red##*/}#$name#g" "$f"; done
    fi
    local sha size elf_size
    sha=$(sha256sum "$OUT/$name" | cut -d' ' -f1); size=$(stat -c %s "$OUT/$name")
    elf_size=$(stat -c %s "$cdir/dump.elf")
    {
        kv FILE "$name"; kv SIZE "$size"; kv SHA256 "$sha"
        cat "$cdir/case.env"
        kv MAKEDUMPFILE "$(makedumpfile -v 2>&1 | sed -n 's/^makedumpfile: version \([^ ]*\).*/\1/p')"
        kv MAKEDUMPFILE_CMD "makedumpfile -${codec%%-*} -d $DUMP_LEVEL $(cat "$cdir/mdf-input.txt" 2>/dev/null || echo dump.elf) $name"
        kv SOURCE_ELF_SIZE "$elf_size"
        kv SOURCE_ELF_SHA256 "$(sha256sum "$cdir/dump.elf" | cut -d' ' -f1)"
        kv SOURCE_ELF_LAYOUT "$(cat "$cdir/elfinfo.txt")"
        kv KEXEC_TOOLS "$(dpkg-query -W -f='${Version}' kexec-tools 2>/dev/null)"
        [ -z "$DRGN" ] || kv DRGN "$("$DRGN" --version 2>&1 | awk '{print $2; exit}')"
        kv GENERATED "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    } > "$OUT/sample.env"
    write_sample_readme "$name" "$size" "$sha"
    ls -l "$OUT" >&2
}

write_sample_readme() {
    local name=$1 size=$2 sha=$3 vi=$OUT/vmcoreinfo.txt
    # shellcheck disable=SC1091
    . "$OUT/sample.env"
    {
        cat <<EOF
# Sample crash dump

\`$name\` ($size bytes, sha256 \`$sha\`) is a real crash dump of a stock
Debian kernel, made by \`tools/make-dumps.sh\` (see tools/README.md); all values below
are also in \`sample.env\` (machine readable).  Samples of other architectures, if any,
live in subdirectories (e.g. \`arm64/\`) with their own README.

* Kernel: \`$KPKG_NAME\` version \`$KPKG_VERSION\` (\`$KPKG_DEB\`, sha256 \`$KPKG_SHA256\`),
  release \`$KV\`.  VMCOREINFO: OSRELEASE=\`$(sed -n 's/^OSRELEASE=//p' "$vi")\`,
  KERNELOFFSET=\`$(sed -n 's/^KERNELOFFSET=//p' "$vi")\`, NUMBER(phys_base)=\`$(sed -n 's/^NUMBER(phys_base)=//p' "$vi")\`,
  pgtable_l5_enabled=\`$(sed -n 's/^NUMBER(pgtable_l5_enabled)=//p' "$vi")\`, BUILD-ID=\`$(sed -n 's/^BUILD-ID=//p' "$vi")\`.
* Guest: $MEM RAM, $SMP vCPUs, KASLR $([ "$KASLR" = 1 ] && echo on || echo "off (nokaslr)"), $PAGING-level paging
  (\`-cpu $( [ "$PAGING" = 5 ] && echo max || echo max,la57=off)\`), $QEMU_VERSION, TCG.  Exact command line:
  \`qemu-cmdline.txt\`; guest serial log: \`console.log\`.
EOF
        if [ "$KIND" = qmp ]; then
            cat <<EOF
* Dump path: the guest panicked (\`echo c > /proc/sysrq-trigger\` from a child shell,
  \`panic=0\` so CPU 0 spins in panic()); QEMU wrote an ELF core over QMP
  (\`dump-guest-memory\`, paging=false, \`-device vmcoreinfo\` supplies the guest VMCOREINFO);
  uncompressed $SOURCE_ELF_SIZE bytes, sha256 \`$SOURCE_ELF_SHA256\`
  ($SOURCE_ELF_LAYOUT).  Since makedumpfile $MAKEDUMPFILE cannot read QEMU 7.2's header
  layout, the ELF was first normalized (program headers moved to offset 64, section headers
  dropped, segment bytes unchanged: \`tools/dumpgen.py normalize-elf\`), then
  \`$MAKEDUMPFILE_CMD\` produced this kdump-compressed (\`KDUMP   \`) file.
EOF
        else
            cat <<EOF
* Dump path: the real kdump path: \`crashkernel=$CRASHKERNEL\`, \`kexec -p\` of the same
  kernel as capture kernel, \`echo c > /proc/sysrq-trigger\`; the capture kernel copied
  /proc/vmcore (kexec-tools $KEXEC_TOOLS elfcorehdr) to a virtio disk: $SOURCE_ELF_SIZE bytes,
  sha256 \`$SOURCE_ELF_SHA256\` ($SOURCE_ELF_LAYOUT); then \`$MAKEDUMPFILE_CMD\`.
EOF
        fi
        cat <<EOF
* Workload: busybox initramfs; \`/init\` loads qemu_fw_cfg, dummy, loop, brd; runs
  \`sleep 1000\`, \`sleep 1001\`, a busy loop \`sh -c 'while :; do :; done'\`, a $HOLD_MB MiB tmpfs
  file on /dev/loop0, a shell holding a 1 MiB text file (\`VMCOREKIT-USERMEM-MARKER ...\`), a
  shell holding $HOLD_MB MiB of \`Z\`; writes \`vmcorekit-marker:\` lines to /dev/kmsg (levels
  2..7, facility daemon, a ~900 char line, UTF-8 \`café €uro 🐧 Ωmega\`, an embedded newline,
  tab/backslash/BEL/ESC/DEL, a line without \`<N>\` prefix), then panics via sysrq-c.
  Page filtering \`-d 31\` drops zero, cache, user and free pages: user memory markers are
  NOT in this file (only kernel memory).
* Size: what -d $DUMP_LEVEL keeps is mostly the kernel image itself (text, rodata, data:
  ~29 MiB of non-zero pages, ~12 MiB after makedumpfile's per-page compression on
  Debian's 6.1 kernel); less guest RAM does not shrink it (96M gave the same size as 128M).
  \`-c\` (zlib) was smaller than \`-l\` (lzo); snappy/zstd are disabled in Debian's makedumpfile.

## Files

* \`$name\` - the dump.
* \`vmcoreinfo.txt\` - the VMCOREINFO note text (from the ELF before reduction).
* \`sample.env\` - provenance (kernel package, QEMU, makedumpfile, sizes, hashes).
* \`qemu-cmdline.txt\`, \`console.log\` - what ran (serial log, escape sequences stripped).
* \`expected/\` - outputs of the reference tools (never of vmcorekit), rc + command in
  \`expected/commands.tsv\` (run in the scratch case directory; \`$name\` is this file):
EOF
        for f in "$OUT"/expected/*; do
            case ${f##*/} in
                commands.tsv) continue ;;
                makedumpfile-dmesg.txt) echo "  * \`makedumpfile-dmesg.txt\` - \`makedumpfile --dump-dmesg $name\` (prints non-ASCII bytes sign-extended, e.g. \`\\xffffffc3\`)." ;;
                makedumpfile-dmesg-elf.txt) echo "  * \`makedumpfile-dmesg-elf.txt\` - \`makedumpfile --dump-dmesg\` of the unfiltered (normalized) ELF." ;;
                vmcore-dmesg.txt) echo "  * \`vmcore-dmesg.txt\` - kexec-tools \`vmcore-dmesg\` of $([ "$KIND" = qmp ] && echo "an extra QEMU paging=true ELF dump taken in the same session (vmcore-dmesg cannot read paging=false dumps)" || echo "the unfiltered kdump ELF")." ;;
                drgn-tasks.tsv) echo "  * \`drgn-tasks.tsv\` - drgn $DRGN with the -dbg vmlinux over this file: every task (pid, tgid, ppid, state char, task_struct address, comm); script \`tools/drgn_oracle.py\`." ;;
                drgn-dmesg.txt) echo "  * \`drgn-dmesg.txt\` - drgn \`get_dmesg()\` over this file (raw UTF-8)." ;;
                drgn-crashed-thread.txt) echo "  * \`drgn-crashed-thread.txt\` - drgn \`prog.crashed_thread()\` stack trace." ;;
                drgn-misc.txt) echo "  * \`drgn-misc.txt\` - a few drgn-read values (jiffies, init_task address, nr_threads, panic_cpu)." ;;
                *.log|*.stderr|*.out) echo "  * \`${f##*/}\` - terminal messages of the matching command in commands.tsv." ;;
                *) echo "  * \`${f##*/}\`" ;;
            esac
        done
        cat <<EOF

## Regenerating

    WORK=/work/scratch/gen/work DBG=1 MEM=$MEM KASLR=$KASLR PAGING=$PAGING HOLD_MB=$HOLD_MB \\
        KPKG=$KPKG_NAME=$KPKG_VERSION tools/make-dumps.sh

The result differs byte for byte (KASLR slide, timing), not in kind.  If apt no longer
offers that kernel version, download \`$KPKG_DEB\` (e.g. from snapshot.debian.org; sha256
above) and pass it as \`KERNEL_DEB=/path/to/$KPKG_DEB\`.
EOF
    } > "$OUT/README.md"
}

# ------------------------------------------------------------------ main
run_stages "install kernel initramfs qmp kdump reduce oracles sample" \
    "install kernel initramfs qmp reduce oracles sample" "$@"
