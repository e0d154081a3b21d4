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
HELPER="python3 $HERE/dumpgen.py"
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
DUMP_LEVEL=${DUMP_LEVEL:-31}
SAMPLE_CASE=${SAMPLE_CASE:-qmp}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-900}
DRGN=${DRGN:-$(command -v drgn || true)}
KDIR=${KDIR:-$WORK/kernel}

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }

# ------------------------------------------------------------------ install
apt_wait() {  # another apt/dpkg may be running: wait for its locks instead of failing
    local i=0
    while fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock \
            >/dev/null 2>&1; do
        [ $((i % 12)) -eq 0 ] && log "waiting for the apt/dpkg lock"
        sleep 5; i=$((i + 1))
    done
}

stage_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt_wait
    apt-get -o DPkg::Lock::Timeout=1800 update
    apt_wait
    apt-get -o DPkg::Lock::Timeout=1800 install -y --no-install-recommends \
        qemu-system-x86 busybox-static kexec-tools makedumpfile \
        cpio gzip xz-utils zstd python3 psmisc
}

# ------------------------------------------------------------------ kernel
# Resolve KPKG (e.g. the linux-image-amd64 metapackage) to a concrete
# linux-image-<abi>-amd64 package and version, download and unpack it.
stage_kernel() {
    mkdir -p "$KDIR/debs"
    local deb pkg ver
    if [ -n "$KERNEL_DEB" ]; then
        deb=$KERNEL_DEB
    else
        pkg=${KPKG%%=*}; ver=""
        [[ "$KPKG" == *=* ]] && ver=${KPKG#*=}
        if ! [[ "$pkg" =~ ^linux-image-[0-9] ]]; then   # a metapackage: follow its Depends
            local meta=$pkg
            pkg=$(apt-cache show --no-all-versions "$meta${ver:+=$ver}" | sed -n 's/^Depends: //p' \
                  | tr ',' '\n' | grep -o 'linux-image-[0-9][^ ]*' | head -1)
            [ -n "$pkg" ] || die "cannot resolve $meta to a linux-image-<version> package"
            ver=""
            log "$meta -> $pkg"
        fi
        [ -n "$ver" ] || ver=$(apt-cache policy "$pkg" | sed -n 's/^ *Candidate: //p')
        [ -n "$ver" ] && [ "$ver" != "(none)" ] || die "apt knows no version of $pkg"
        deb=$(ls "$KDIR/debs/${pkg}_${ver/*:/}_amd64.deb" 2>/dev/null || true)
        if [ -z "$deb" ]; then
            (cd "$KDIR/debs" && apt-get -o APT::Sandbox::User=root download "$pkg=$ver")
            deb=$(ls "$KDIR/debs/${pkg}_${ver/*:/}_amd64.deb")
        fi
    fi
    rm -rf "$KDIR/root"; mkdir -p "$KDIR/root"
    dpkg-deb -x "$deb" "$KDIR/root"
    local kv
    kv=$(cd "$KDIR/root/boot" && ls vmlinuz-* | head -1); kv=${kv#vmlinuz-}
    [ -n "$kv" ] || die "no /boot/vmlinuz-* in $deb"
    {
        kv KV "$kv"
        kv KPKG_NAME "$(dpkg-deb -f "$deb" Package)"
        kv KPKG_VERSION "$(dpkg-deb -f "$deb" Version)"
        kv KPKG_DEB "$(basename "$deb")"
        kv KPKG_SHA256 "$(sha256sum "$deb" | cut -d' ' -f1)"
    } > "$KDIR/kernel.env"
    log "kernel: $(tr '\n' ' ' < "$KDIR/kernel.env")"
    if [ "$DBG" = 1 ]; then
        local dpkg_name dver ddeb
        dpkg_name=$(dpkg-deb -f "$deb" Package)-dbg
        dver=$(dpkg-deb -f "$deb" Version)
        ddeb=$(ls "$KDIR/debs/${dpkg_name}_${dver/*:/}_amd64.deb" 2>/dev/null || true)
        if [ -z "$ddeb" ]; then
            (cd "$KDIR/debs" && apt-get -o APT::Sandbox::User=root download "$dpkg_name=$dver")
            ddeb=$(ls "$KDIR/debs/${dpkg_name}_${dver/*:/}_amd64.deb")
        fi
        if [ ! -s "$KDIR/dbg/usr/lib/debug/boot/vmlinux-$kv" ] || [ "$ddeb" -nt "$KDIR/dbg/usr/lib/debug/boot/vmlinux-$kv" ]; then
            log "unpacking vmlinux from $(basename "$ddeb")"
            mkdir -p "$KDIR/dbg"
            dpkg-deb --fsys-tarfile "$ddeb" | tar -x -C "$KDIR/dbg" \
                "./usr/lib/debug/boot/vmlinux-$kv" "./usr/lib/debug/boot/System.map-$kv" \
                || die "no vmlinux-$kv in $ddeb"
            touch "$KDIR/dbg/usr/lib/debug/boot/vmlinux-$kv"
        fi
        kv KDBG_DEB "$(basename "$ddeb")" >> "$KDIR/kernel.env"
    fi
}

kernel_env() {
    [ -e "$KDIR/kernel.env" ] || die "no kernel in $KDIR (run the kernel stage)"
    # shellcheck disable=SC1091
    . "$KDIR/kernel.env"
    VMLINUZ=$KDIR/root/boot/vmlinuz-$KV
    MODDIR=$KDIR/root/lib/modules/$KV
    VMLINUX=$KDIR/dbg/usr/lib/debug/boot/vmlinux-$KV
}

# ------------------------------------------------------------------ initramfs
make_rootfs() {  # make_rootfs DIR MODULE...: busybox + modules (deps first) + /etc/modules.load
    local dir=$1; shift
    rm -rf "$dir"
    mkdir -p "$dir"/{bin,sbin,etc,proc,sys,dev,tmp,root,lib/modules/$KV}
    cp /bin/busybox "$dir/bin/busybox"
    local a rel
    for a in $("$dir/bin/busybox" --list); do
        [ -e "$dir/bin/$a" ] || ln -s busybox "$dir/bin/$a"
    done
    : > "$dir/etc/modules.load"
    for rel in $($HELPER moddeps "$MODDIR" "$@"); do
        mkdir -p "$dir/lib/modules/$KV/$(dirname "$rel")"
        case $rel in   # busybox insmod wants plain .ko files
            *.ko.xz) xz -dc "$MODDIR/$rel" > "$dir/lib/modules/$KV/${rel%.xz}"; rel=${rel%.xz} ;;
            *.ko.zst) zstd -qdc "$MODDIR/$rel" > "$dir/lib/modules/$KV/${rel%.zst}"; rel=${rel%.zst} ;;
            *) cp "$MODDIR/$rel" "$dir/lib/modules/$KV/$rel" ;;
        esac
        echo "$rel" >> "$dir/etc/modules.load"
    done
    echo "$KV" > "$dir/etc/kernel-version"
    cat > "$dir/etc/init-common.sh" <<'EOF'
export PATH=/bin:/sbin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
KV=$(cat /etc/kernel-version)
while read -r rel; do
    args=""
    case "$rel" in */brd.ko) args="rd_nr=2 rd_size=4096" ;; esac
    insmod "/lib/modules/$KV/$rel" $args || echo "gen-init: insmod $rel FAILED"
done < /etc/modules.load
EOF
}

pack_cpio() {  # pack_cpio DIR OUT
    (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -9 > "$2"
}

write_workload_init() {  # write_workload_init DIR qmp|kdump
    local dir=$1 mode=$2
    echo "HOLD_MB=$HOLD_MB" > "$dir/etc/workload.env"
    cat > "$dir/init" <<'EOF'
#!/bin/sh
. /etc/init-common.sh
. /etc/workload.env
echo "gen-init: kernel $(uname -r) cmdline: $(cat /proc/cmdline)"
hostname vmcorekit-guest
echo on > /proc/sys/kernel/printk_devkmsg      # no /dev/kmsg rate limiting
echo 1 > /proc/sys/kernel/sysrq
ip link set dummy0 up 2>/dev/null
echo "gen-init: modules:"; cat /proc/modules
echo "gen-init: fw_cfg: $(ls /sys/firmware/qemu_fw_cfg/by_name/etc 2>/dev/null | tr '\n' ' ')"

# --- workload ---------------------------------------------------------------
sleep 1000 &
sleep 1001 &
sh -c 'while :; do :; done' &
dd if=/dev/zero bs=1M count=$HOLD_MB 2>/dev/null | cat > /tmp/big
yes 'VMCOREKIT-USERMEM-MARKER 0123456789abcdef' | head -c 1048576 > /tmp/text
# a reader that keeps the text file in its own heap
sh -c 'data=$(cat /tmp/text); touch /tmp/ready.data; while :; do sleep 1000; done' &
# a shell holding HOLD_MB MiB of anonymous user memory ('Z' bytes)
sh -c "big=\$(head -c $((HOLD_MB * 1048576)) /dev/zero | tr '\\0' Z); touch /tmp/ready.big; while :; do sleep 1000; done" &
losetup /dev/loop0 /tmp/big 2>/dev/null
echo vmcorekit-brd-data > /dev/ram0

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
i=0; while [ ! -e /tmp/ready.data -o ! -e /tmp/ready.big ] && [ $i -lt 300 ]; do sleep 1; i=$((i+1)); done
echo "gen-init: memory holders ready after ${i}s"
free; ps
EOF
    if [ "$mode" = kdump ]; then
        cat >> "$dir/init" <<'EOF'
echo "gen-init: crash kernel region: $(grep -i 'crash kernel' /proc/iomem | tr -s ' ')"
kexec -p /vmlinuz --initrd=/capture.cpio.gz \
      --append='console=ttyS0 irqpoll nr_cpus=1 reset_devices init=/init panic=1 loglevel=7'
echo "gen-init: kexec -p rc=$? kexec_crash_loaded=$(cat /sys/kernel/kexec_crash_loaded)"
EOF
    fi
    cat >> "$dir/init" <<'EOF'
echo WORKLOAD-READY
sleep 3
# panic from a child process (not PID 1)
sh -c 'echo c > /proc/sysrq-trigger'
sleep 1000
EOF
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

start_qemu() {  # start_qemu CASEDIR MEM APPEND INITRD [extra QEMU args]; sets QEMU_PID
    local cdir=$1 mem=$2 append=$3 initrd=$4; shift 4
    rm -f "$cdir/qmp.sock"
    local cmd=(qemu-system-x86_64 -machine q35 -accel tcg -cpu "$(qemu_cpu)" -smp "$SMP" -m "$mem"
               -nographic -nic none -no-reboot -device vmcoreinfo
               -kernel "$VMLINUZ" -initrd "$initrd" -append "$append"
               -qmp "unix:$cdir/qmp.sock,server=on,wait=off" "$@")
    local a line=""
    for a in "${cmd[@]}"; do
        case $a in *[[:space:]]*) line="$line '$a'" ;; *) line="$line $a" ;; esac
    done
    echo "${line# }" | sed "s#$cdir/##g; s#$KDIR/root/##g; s#$WORK/##g" > "$cdir/qemu-cmdline.txt"
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
        sleep 2; s=$((s + 2))
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

base_append() {
    local a="console=ttyS0 panic=0 loglevel=7"
    [ "$KASLR" = 1 ] || a="$a nokaslr"
    echo "$a"
}

kv() { printf "%s='%s'\n" "$1" "${2//\'/\'\\\'\'}"; }   # NAME='value': sourceable, and shlex-parsable

describe_case() {  # describe_case CASEDIR KIND MEM
    {
        kv KIND "$2"; kv MEM "$3"; kv SMP "$SMP"; kv KASLR "$KASLR"; kv PAGING "$PAGING"
        kv HOLD_MB "$HOLD_MB"; kv QEMU_VERSION "$(qemu-system-x86_64 --version | head -1)"
        cat "$KDIR/kernel.env"
    } > "$1/case.env"
}

stage_qmp() {
    local cdir=$WORK/qmp fmt path
    rm -rf "$cdir"; mkdir -p "$cdir"
    describe_case "$cdir" qmp "$MEM"
    start_qemu "$cdir" "$MEM" "$(base_append)" "$WORK/initramfs/qmp.cpio.gz"
    if ! wait_console "$cdir" "Kernel panic - not syncing" "$BOOT_TIMEOUT"; then
        stop_qemu "$cdir"; tail -20 "$cdir/console.log" >&2
        die "qmp: guest did not panic; see $cdir/console.log"
    fi
    sleep 5   # let the panic path finish printing; CPU 0 then spins in panic() (panic=0)
    $HELPER qmp "$cdir/qmp.sock" formats > "$cdir/qmp-formats.txt"
    log "QEMU dump formats: $(cat "$cdir/qmp-formats.txt")"
    : > "$cdir/qmp-dumps.txt"
    for fmt in $QMP_FORMATS; do
        if [ "$fmt" = paging-elf ]; then
            $HELPER qmp "$cdir/qmp.sock" dump elf "$cdir/dump.paging.elf" --paging \
                | tee -a "$cdir/qmp-dumps.txt" || log "paging=true dump failed"
        elif grep -qw -- "$fmt" "$cdir/qmp-formats.txt"; then
            path=$cdir/dump.$fmt
            $HELPER qmp "$cdir/qmp.sock" dump "$fmt" "$path" | tee -a "$cdir/qmp-dumps.txt" \
                || log "$fmt dump failed"
        else
            echo "$fmt unsupported by this QEMU" | tee -a "$cdir/qmp-dumps.txt"
        fi
    done
    stop_qemu "$cdir"
    [ -e "$cdir/dump.elf" ] || die "qmp: no ELF dump (QMP_FORMATS must include elf)"
    $HELPER vmcoreinfo "$cdir/dump.elf" "$cdir/vmcoreinfo.txt"
    $HELPER elfinfo "$cdir/dump.elf" | tee "$cdir/elfinfo.txt" >&2
    grep -E '^(OSRELEASE|KERNELOFFSET|NUMBER\(phys_base\)|NUMBER\(pgtable_l5_enabled\))=' "$cdir/vmcoreinfo.txt" >&2 || true
    ls -l "$cdir" >&2
}

stage_kdump() {
    local cdir=$WORK/kdump s=0 size
    rm -rf "$cdir"; mkdir -p "$cdir"
    describe_case "$cdir" kdump "$KDUMP_MEM"
    kv CRASHKERNEL "$CRASHKERNEL" >> "$cdir/case.env"
    truncate -s "$(( $(numfmt --from=iec "$KDUMP_MEM") + (64 << 20) ))" "$cdir/disk.img"
    start_qemu "$cdir" "$KDUMP_MEM" "$(base_append) crashkernel=$CRASHKERNEL" \
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
    $HELPER vmcoreinfo "$cdir/dump.elf" "$cdir/vmcoreinfo.txt"
    $HELPER elfinfo "$cdir/dump.elf" | tee "$cdir/elfinfo.txt" >&2
    grep -E '^(OSRELEASE|KERNELOFFSET|CRASHTIME)=' "$cdir/vmcoreinfo.txt" >&2 || true
    ls -l "$cdir" >&2
}

# ------------------------------------------------------------------ reduce
cases_with_dumps() {
    local c
    for c in qmp kdump; do [ -e "$WORK/$c/dump.elf" ] && echo "$c"; done; return 0
}

stage_reduce() {
    local c cdir in codec
    for c in $(cases_with_dumps); do
        cdir=$WORK/$c; in=dump.elf
        if [ "$(od -An -t u8 -j 32 -N 8 "$cdir/dump.elf" | tr -d ' ')" != 64 ]; then
            $HELPER normalize-elf "$cdir/dump.elf" "$cdir/dump.norm.elf"
            in=dump.norm.elf
        fi
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

write_drgn_script() {
    cat > "$1" <<'PYEOF'
# drgn oracle: drgn -q -c DUMP -s VMLINUX drgn-tasks.py OUTDIR
import os, sys
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.sched import task_state_to_char
from drgn.helpers.linux.printk import get_dmesg

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rows = ["pid\ttgid\tppid\tstate\ttask\tcomm"]
for t in sorted(for_each_task(prog), key=lambda t: (t.pid.value_(), t.value_())):
    rows.append("%d\t%d\t%d\t%s\t%#x\t%s" % (
        t.pid, t.tgid, t.real_parent.pid, task_state_to_char(t), t.value_(),
        t.comm.string_().decode(errors="backslashreplace")))
with open(os.path.join(out, "drgn-tasks.tsv"), "w") as f:
    f.write("\n".join(rows) + "\n")
with open(os.path.join(out, "drgn-dmesg.txt"), "wb") as f:
    f.write(get_dmesg(prog))
ct = prog.crashed_thread()
with open(os.path.join(out, "drgn-crashed-thread.txt"), "w") as f:
    f.write("pid %d comm %s\n%s\n" % (ct.tid, ct.object.comm.string_().decode(), ct.stack_trace()))
with open(os.path.join(out, "drgn-misc.txt"), "w") as f:
    f.write("uts_release=%s\n" % prog["init_uts_ns"].name.release.string_().decode())
    f.write("jiffies=%d\n" % prog["jiffies"].value_())
    f.write("init_task=%#x\n" % prog["init_task"].address_)
    f.write("nr_threads=%d\n" % prog["nr_threads"].value_())
    f.write("panic_cpu=%d\n" % prog["panic_cpu"].counter.value_())
print("drgn oracle: %d tasks" % (len(rows) - 1))
PYEOF
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
        if [ -n "$DRGN" ] && [ -e "${VMLINUX:-/nonexistent}" ] && [ -n "$red" ]; then
            write_drgn_script "$E/drgn-oracle.py"
            run_rc "$E/drgn-run.out" "$DRGN" -q -c "$red" -s "$VMLINUX" expected/drgn-oracle.py expected
        else
            log "  drgn oracle skipped (drgn: ${DRGN:-missing}; vmlinux: ${VMLINUX:-?} needs DBG=1 kernel stage)"
        fi
        cd - >/dev/null
        # keep only outputs that are meaningful
        for f in "$E"/*.txt; do [ -s "$f" ] || rm -f "$f"; done
        sed -i "s#$cdir/##g; s#$KDIR/dbg##g; s#${DRGN:-/nonexistent} #drgn #g" "$E/commands.tsv"
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
    tr -d '\r' < "$cdir/console.log" | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g' > "$OUT/console.log"
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
                commands.tsv|drgn-oracle.py) continue ;;
                makedumpfile-dmesg.txt) echo "  * \`makedumpfile-dmesg.txt\` - \`makedumpfile --dump-dmesg $name\` (prints non-ASCII bytes sign-extended, e.g. \`\\xffffffc3\`)." ;;
                makedumpfile-dmesg-elf.txt) echo "  * \`makedumpfile-dmesg-elf.txt\` - \`makedumpfile --dump-dmesg\` of the unfiltered (normalized) ELF." ;;
                vmcore-dmesg.txt) echo "  * \`vmcore-dmesg.txt\` - kexec-tools \`vmcore-dmesg\` of $([ "$KIND" = qmp ] && echo "an extra QEMU paging=true ELF dump taken in the same session (vmcore-dmesg cannot read paging=false dumps)" || echo "the unfiltered kdump ELF")." ;;
                drgn-tasks.tsv) echo "  * \`drgn-tasks.tsv\` - drgn $DRGN with the -dbg vmlinux over this file: every task (pid, tgid, ppid, state char, task_struct address, comm); script \`drgn-oracle.py\`." ;;
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
main() {
    case "${1:-}" in -h|--help|help) usage 0 ;; esac
    local stages=("$@") st t0
    [ ${#stages[@]} -gt 0 ] || stages=(install kernel initramfs qmp reduce oracles sample)
    if [ "${stages[0]}" = all ]; then
        stages=(install kernel initramfs qmp kdump reduce oracles sample)
    fi
    mkdir -p "$WORK"
    for st in "${stages[@]}"; do
        case $st in
            install|kernel|initramfs|qmp|kdump|reduce|oracles|sample) ;;
            *) log "unknown stage '$st'"; usage 2 ;;
        esac
    done
    for st in "${stages[@]}"; do
        log "=== stage $st"
        t0=$SECONDS
        case $st in install|kernel) ;; *) kernel_env ;; esac
        "stage_$st"
        if [ -e "$KDIR/kernel.env" ]; then kernel_env; fi
        printf '%s\t%s\t%ss\n' "$(date -u +%FT%TZ)" "$st" "$((SECONDS - t0))" >> "$WORK/timings.tsv"
        log "=== stage $st done in $((SECONDS - t0))s"
    done
}
main "$@"
