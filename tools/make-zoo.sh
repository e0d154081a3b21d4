#!/bin/bash
# make-zoo.sh - the crash zoo: real dumps of the ways a kernel actually dies.
# Boots a stock Debian kernel under QEMU (TCG), loads the project's own test module
# (tools/zoo/zoo.c, built against Debian's linux-headers-<abi> of that exact kernel),
# provokes ONE failure kind, waits for the panic the kernel's own knob causes, and saves
# the QMP dump-guest-memory ELF (reduced), the console log and the case description.
#
# Usage:  tools/make-zoo.sh KIND [BOOT_ID]     one dump (BOOT_ID 1 or 2, default 1)
#         tools/make-zoo.sh all [KIND...]      every kind (or the ones given) x BOOTS boots
#         tools/make-zoo.sh prepare            only install, kernel, headers, module, initramfs
#         tools/make-zoo.sh list               the kinds and their knobs
#
# Kinds: null paging gpf bug warn refcount list double_free usercopy fortify
#   stack_overflow divide softlockup hung_chain abba rcu_stall oom_user oom_slab
#   panic timer_null nmi sysrq   (see tools/README.md, "The crash zoo")
#
# Each boot: KASLR on (a fresh offset every boot), the busybox workload of lib.sh, plus
# BOOT_ID*3-2 extra sleepers (so PIDs differ between boots), then the trigger from a child
# shell: echo KIND > /sys/kernel/debug/zoo/trigger (oom_user: tail /dev/zero; sysrq:
# echo c > /proc/sysrq-trigger; nmi: QMP inject-nmi from the host).
#
# Output per dump, in $OUT/<arch>-<kernel release>/<kind>-<boot>/:
#   vmcore.c-d31.kdump   makedumpfile -c -d 31 of the ELF (x86_64; the ELF is then deleted);
#                        vmcorekit's filter when makedumpfile says it does not know the kernel
#   dump.elf.zst         zstd -19 of the ELF (arm64: Debian's makedumpfile cannot read it;
#                        or everywhere with KEEP_ELF=1)
#   console.log          the guest serial log (CRs and escapes removed)
#   vmcoreinfo.txt       the VMCOREINFO note
#   case.env             kind, boot id, kernel package, QEMU version, knobs, the exact command
#   qemu-cmdline.txt     the QEMU command line
#
# Environment (defaults in brackets):
#   ARCH          x86_64 or arm64 [x86_64]
#   KPKG          kernel package, metapackage or concrete, optionally =VERSION
#                 [linux-image-amd64 / linux-image-arm64]
#   WORK          scratch: kernel, headers, module build, initramfs [/work/scratch/zoo/work-$ARCH-$KPKG]
#   KDIR          unpacked kernel and debs [$WORK/kernel]
#   OUT           where the dumps go [/work/scratch/zoo/dumps]
#   MEM [128M]  SMP [2]  KASLR [1]  HOLD_MB [4]  BOOTS (all mode) [1 2]
#   KEEP_ELF      1 = also keep dump.elf.zst on x86_64 [0]
#   BOOT_TIMEOUT  seconds to wait for the panic [600]
#   SKIP_DONE     all mode: 1 = skip dumps already made [1]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ARCH=${ARCH:-x86_64}
case $ARCH in
    x86_64) DEB_ARCH=amd64; QEMU=qemu-system-x86_64; KPKG=${KPKG:-linux-image-amd64}
            CONSOLE=ttyS0; SETTLE=5; POLL=2 ;;
    arm64)  DEB_ARCH=arm64; QEMU=qemu-system-aarch64; KPKG=${KPKG:-linux-image-arm64}
            CONSOLE=ttyAMA0; SETTLE=15; POLL=3 ;;
    *) echo "ARCH must be x86_64 or arm64" >&2; exit 2 ;;
esac
WORK=${WORK:-/work/scratch/zoo/work-$ARCH-${KPKG//[^A-Za-z0-9.+-]/_}}
KDIR=${KDIR:-$WORK/kernel}
OUT=${OUT:-/work/scratch/zoo/dumps}
MEM=${MEM:-128M}
SMP=${SMP:-2}
KASLR=${KASLR:-1}
HOLD_MB=${HOLD_MB:-4}
FILL_MB=0
BOOTS=${BOOTS:-1 2}
KEEP_ELF=${KEEP_ELF:-0}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-600}
SKIP_DONE=${SKIP_DONE:-1}
DBG=0
DRGN=""
QMP_FORMATS=elf
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

KINDS="null paging gpf bug warn refcount list double_free usercopy fortify stack_overflow
divide softlockup hung_chain abba rcu_stall oom_user oom_slab panic timer_null nmi sysrq"

kind_knobs() {  # kind_knobs KIND: the kernel command line knobs that make KIND fatal
    local base="sysctl.kernel.panic_on_oops=1"
    case $1 in
        warn|refcount) echo "$base panic_on_warn=1" ;;
        softlockup)    echo "$base softlockup_panic=1 watchdog_thresh=5" ;;
        hung_chain|abba) echo "$base hung_task_panic=1 sysctl.kernel.hung_task_timeout_secs=10" ;;
        rcu_stall)     echo "$base sysctl.kernel.panic_on_rcu_stall=1 rcupdate.rcu_cpu_stall_timeout=10" ;;
        oom_user|oom_slab) echo "$base sysctl.vm.panic_on_oom=1" ;;
        nmi)           echo "$base sysctl.kernel.unknown_nmi_panic=1" ;;
        *)             echo "$base" ;;
    esac
}

# ------------------------------------------------------------------ prepare
stage_install() {
    local pkgs="busybox-static makedumpfile cpio gzip xz-utils zstd python3 psmisc make gcc-12 libelf-dev dwarves"
    if [ "$ARCH" = arm64 ]; then
        dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
        pkgs="$pkgs qemu-system-arm gcc-12-aarch64-linux-gnu"
    else
        pkgs="$pkgs qemu-system-x86"
    fi
    local p missing=""
    for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
    # shellcheck disable=SC2086
    if [ -n "$missing" ]; then apt_install $missing; else log "install: all present"; fi
}

stage_kernel() {
    kernel_unpack
    if [ "$ARCH" = arm64 ]; then
        arm64_image_and_busybox
    else
        write_kernel_env
    fi
}

# Debian's linux-headers-<abi> (+ its -common and linux-kbuild) for the exact kernel,
# downloaded and unpacked under $KDIR/headers (never installed: the arch package of another
# architecture, or one whose image is not installed, works the same way).
stage_headers() {
    local hpkg=linux-headers-$KV ver deps dep common kbuild f h=$KDIR/headers
    ver=$(dpkg-deb -f "$KDIR/debs/$KPKG_DEB" Version)
    deps=$(apt-cache show "$hpkg:$DEB_ARCH=$ver" | sed -n 's/^Depends: //p' | head -1)
    [ -n "$deps" ] || die "apt knows no $hpkg:$DEB_ARCH=$ver"
    common=$(echo "$deps" | tr ',' '\n' | grep -o 'linux-headers-[^ ]*-common[^ ]*' | head -1)
    kbuild=$(echo "$deps" | tr ',' '\n' | grep -o 'linux-kbuild-[^ ]*' | head -1)
    rm -rf "$h"; mkdir -p "$h"
    dpkg-deb -x "$(deb_download "$hpkg" "$ver")" "$h"
    # -common is Architecture: all; linux-kbuild runs on the build host (amd64)
    f=$(cd "$KDIR/debs" && apt-get -o APT::Sandbox::User=root download "$common=$ver" >&2 && ls "${common}_"*"_all.deb" | head -1)
    dpkg-deb -x "$KDIR/debs/$f" "$h"
    f=$(DEB_ARCH=amd64 deb_download "$kbuild" "$ver")
    dpkg-deb -x "$f" "$h"
    # the arch Makefile includes the -common one by absolute path
    sed -i "s#^include /usr/src/#include $h/usr/src/#" "$h/usr/src/$hpkg/Makefile"
    {
        kv HEADERS_DEB "$hpkg $ver"; kv HEADERS_COMMON "$common"; kv KBUILD_PKG "$kbuild"
    } > "$KDIR/headers.env"
    log "headers: $(tr '\n' ' ' < "$KDIR/headers.env")"
}

stage_module() {
    local b=$WORK/module gcc
    [ -e "$KDIR/headers.env" ] || die "no headers (run prepare)"
    rm -rf "$b"; mkdir -p "$b"
    cp "$HERE/zoo/zoo.c" "$HERE/zoo/Kbuild" "$HERE/zoo/Makefile" "$b/"
    local margs=(KDIR="$KDIR/headers/usr/src/linux-headers-$KV")
    gcc=$(sed -n 's/^CC = .*\(gcc-[0-9]*\)$/\1/p' "$KDIR/headers/usr/src/linux-headers-$KV/.kernelvariables")
    if [ "$ARCH" = arm64 ]; then   # cross-build: Debian's .kernelvariables picks $(CROSS_COMPILE)gcc-N
        margs+=(DEB_BUILD_ARCH=amd64 DEB_HOST_ARCH=arm64 DEB_HOST_GNU_TYPE=aarch64-linux-gnu)
    fi
    log "module: building with ${gcc:-gcc} ($([ "$ARCH" = arm64 ] && echo aarch64-linux-gnu-)): make ${margs[*]}"
    (cd "$b" && nice -n 10 make "${margs[@]}") > "$b/build.log" 2>&1 || { tail -30 "$b/build.log" >&2; die "module build failed"; }
    [ -e "$b/zoo.ko" ] || die "no zoo.ko"
    strings "$b/zoo.ko" | grep -E '^(vermagic|license)=' >&2 || true
    {
        kv MODULE_GCC "$( ([ "$ARCH" = arm64 ] && aarch64-linux-gnu-"${gcc:-gcc}" --version || "${gcc:-gcc}" --version) | head -1)"
        kv MODULE_VERMAGIC "$(strings "$b/zoo.ko" | sed -n 's/^vermagic=//p')"
        kv MODULE_SHA256 "$(sha256sum "$b/zoo.ko" | cut -d' ' -f1)"
    } > "$b/module.env"
}

write_zoo_init() {  # write_zoo_init DIR
    local dir=$1
    printf "HOLD_MB=%s\nFILL_MB=0\n" "$HOLD_MB" > "$dir/etc/workload.env"
    {
        if [ "$ARCH" = arm64 ]; then
            printf '#!/bin/busybox sh\n/bin/busybox --install -s /bin\n'
        else
            printf '#!/bin/sh\n'
        fi
        cat <<'EOF'
. /etc/init-common.sh
. /etc/workload.env
arg() { sed -n "s/.*[ ^]$1=\([^ ]*\).*/\1/p" /proc/cmdline | tr -d '\n'; }
kind=$(arg zoo_kind); boot=$(arg zoo_boot); boot=${boot:-1}
echo "zoo-init: kernel $(uname -r) machine $(uname -m) kind $kind boot $boot"
echo "zoo-init: cmdline: $(cat /proc/cmdline)"
hostname zoo-$boot
mount -t debugfs debugfs /sys/kernel/debug
EOF
        guest_workload 262144
        cat <<'EOF'
# vary the workload between boots: BOOT_ID*3-2 extra sleepers
n=$((boot * 3 - 2)); i=0
while [ $i -lt $n ]; do sleep $((2000 + i)) & i=$((i + 1)); done
echo "<6>zoo-init: boot $boot, $n extra sleepers, kind $kind" > /dev/kmsg
EOF
        guest_wait_ready 600
        cat <<'EOF'
echo "zoo-init: knobs: panic_on_oops=$(cat /proc/sys/kernel/panic_on_oops) panic_on_warn=$(cat /proc/sys/kernel/panic_on_warn) softlockup_panic=$(cat /proc/sys/kernel/softlockup_panic) hung_task_panic=$(cat /proc/sys/kernel/hung_task_panic 2>/dev/null) hung_task_timeout_secs=$(cat /proc/sys/kernel/hung_task_timeout_secs 2>/dev/null) panic_on_rcu_stall=$(cat /proc/sys/kernel/panic_on_rcu_stall) panic_on_oom=$(cat /proc/sys/vm/panic_on_oom) unknown_nmi_panic=$(cat /proc/sys/kernel/unknown_nmi_panic 2>/dev/null) watchdog_thresh=$(cat /proc/sys/kernel/watchdog_thresh 2>/dev/null)"
echo "zoo-init: zoo kinds: $(cat /sys/kernel/debug/zoo/kinds 2>/dev/null | tr '\n' ' ')"
echo WORKLOAD-READY
sleep 2
case "$kind" in
    sysrq)    sh -c 'echo c > /proc/sysrq-trigger' ;;
    oom_user) sh -c 'exec tail /dev/zero' ;;   # tail keeps its "last line" in memory: it never ends
    nmi)      echo ZOO-NMI-READY ;;
    '')       echo "zoo-init: no zoo_kind= on the command line" ;;
    *)        sh -c "echo $kind > /sys/kernel/debug/zoo/trigger"
              echo "zoo-init: trigger write returned rc=$?" ;;
esac
while :; do sleep 1000; done
EOF
    } > "$dir/init"
    chmod 755 "$dir/init"
}

stage_initramfs() {
    local d=$WORK/initramfs/root a
    if [ "$ARCH" = arm64 ]; then
        rootfs_skeleton "$d" "$KDIR/busybox/bin/busybox"
    else
        rootfs_skeleton "$d" /bin/busybox
        for a in $("$d/bin/busybox" --list); do
            [ -e "$d/bin/$a" ] || ln -s busybox "$d/bin/$a"
        done
    fi
    rootfs_modules "$d" qemu_fw_cfg dummy loop brd
    cp "$WORK/module/zoo.ko" "$d/lib/modules/$KV/zoo.ko"
    echo zoo.ko >> "$d/etc/modules.load"
    write_zoo_init "$d"
    pack_cpio "$d" "$WORK/initramfs/zoo.cpio.gz"
    ls -l "$WORK/initramfs/zoo.cpio.gz" >&2
}

prepare() {
    mkdir -p "$WORK"
    stage_install
    if [ ! -e "$KDIR/kernel.env" ] || [ "$(cat "$WORK/kpkg" 2>/dev/null)" != "$KPKG" ]; then
        stage_kernel; echo "$KPKG" > "$WORK/kpkg"
    fi
    kernel_env
    [ -e "$KDIR/headers.env" ] || stage_headers
    if [ ! -e "$WORK/module/zoo.ko" ] || [ "$HERE/zoo/zoo.c" -nt "$WORK/module/zoo.ko" ]; then stage_module; fi
    if [ ! -e "$WORK/initramfs/zoo.cpio.gz" ] || [ "$WORK/module/zoo.ko" -nt "$WORK/initramfs/zoo.cpio.gz" ] \
            || [ "$HERE/make-zoo.sh" -nt "$WORK/initramfs/zoo.cpio.gz" ]; then
        stage_initramfs
    fi
}

# ------------------------------------------------------------------ one dump
make_one() {  # make_one KIND BOOT_ID
    local kind=$1 boot=$2 cdir t0 knobs append kernel machine cpu
    case " $(echo $KINDS) " in *" $kind "*) ;; *) die "unknown kind '$kind' (tools/make-zoo.sh list)" ;; esac
    if [ "$ARCH" = arm64 ]; then
        case $kind in   # kinds arm64 cannot have (tests/zoo/manifest.toml [[not_made]] says the same)
            divide) die "arm64: integer division by zero does not trap (UDIV/SDIV return 0)" ;;
            gpf)    die "arm64: no non-canonical-address GP fault; that address is a plain translation fault (kind paging)" ;;
            nmi)    die "arm64: QEMU's inject-nmi is unsupported on -machine virt; unknown_nmi_panic is x86-only" ;;
        esac
    fi
    cdir=$OUT/$ARCH-$KV/$kind-$boot
    rm -rf "$cdir"; mkdir -p "$cdir"
    t0=$(date +%s)
    knobs=$(kind_knobs "$kind")
    append="$(kernel_append "$CONSOLE") $knobs zoo_kind=$kind zoo_boot=$boot"
    if [ "$ARCH" = arm64 ]; then
        machine=virt; cpu=max,pauth-impdef=on; kernel=$KDIR/Image
    else
        machine=q35; cpu=max,la57=off; kernel=$VMLINUZ
    fi
    describe_case "$cdir" "$kind" "$MEM" ARCH "$ARCH"
    {
        kv BOOT_ID "$boot"; kv KNOBS "$knobs"
        kv COMMAND "ARCH=$ARCH KPKG=$KPKG tools/make-zoo.sh $kind $boot"
        cat "$KDIR/headers.env" "$WORK/module/module.env"
    } >> "$cdir/case.env"
    log "=== $kind boot $boot ($ARCH $KV): $append"
    start_qemu "$cdir" "$machine" "$cpu" "$MEM" "$kernel" "$WORK/initramfs/zoo.cpio.gz" "$append"
    renice -n 10 -p "$QEMU_PID" >/dev/null || true   # a shared 2-core host
    if [ "$kind" = nmi ]; then
        if ! wait_console "$cdir" ZOO-NMI-READY "$BOOT_TIMEOUT" "$POLL"; then
            stop_qemu "$cdir"; die "nmi: guest never got ready; see $cdir/console.log"
        fi
        sleep 2
        $HELPER qmp "$cdir/qmp.sock" nmi >&2
    fi
    qmp_panic_dumps "$cdir" "$POLL" "$SETTLE"
    kv BOOT_TO_PANIC_S "$PANIC_S" >> "$cdir/case.env"
    $HELPER vmcoreinfo "$cdir/dump.elf" "$cdir/vmcoreinfo.txt"
    $HELPER elfinfo "$cdir/dump.elf" > "$cdir/elfinfo.txt"
    clean_console "$cdir/console.log" "$cdir/console.clean" && mv "$cdir/console.clean" "$cdir/console.log"
    local in
    if [ "$ARCH" = x86_64 ]; then
        in=$(makedumpfile_input "$cdir")
        (cd "$cdir" && nice -n 10 makedumpfile -c -d 31 "$in" vmcore.c-d31.kdump) > "$cdir/makedumpfile.log" 2>&1 \
            || { log "makedumpfile failed (see log)"; KEEP_ELF=1; }
        if grep -q "kernel version is not supported" "$cdir/makedumpfile.log"; then
            # An older makedumpfile guesses a newer kernel's page types (6.10+ moved PG_slab into
            # page_type) and drops live slab pages, task_structs among them: filter with vmcorekit.
            log "makedumpfile does not know this kernel: filtering with vmcorekit instead"
            (cd "$cdir" && rm -f vmcore.c-d31.kdump && PYTHONPATH="$HERE/../src" nice -n 10 \
                python3 -m vmcorekit filter -c -d 31 "$in" vmcore.c-d31.kdump) >> "$cdir/makedumpfile.log" 2>&1 \
                || { log "vmcorekit filter failed (see makedumpfile.log)"; KEEP_ELF=1; }
            kv REDUCED "vmcorekit filter -c -d 31 $in vmcore.c-d31.kdump" >> "$cdir/case.env"
        else
            kv REDUCED "makedumpfile -c -d 31 $in vmcore.c-d31.kdump" >> "$cdir/case.env"
        fi
    fi
    if [ "$ARCH" = arm64 ] || [ "$KEEP_ELF" = 1 ]; then
        nice -n 10 zstd -q -f -19 -T2 --long=27 "$cdir/dump.elf" -o "$cdir/dump.elf.zst"
    fi
    kv ELF_SIZE "$(stat -c %s "$cdir/dump.elf")" >> "$cdir/case.env"
    rm -f "$cdir/dump.elf" "$cdir/dump.norm.elf" "$cdir/qmp.sock" "$cdir/qemu.pid"
    kv TOTAL_S "$(( $(date +%s) - t0 ))" >> "$cdir/case.env"
    kv GENERATED "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$cdir/case.env"
    log "=== $kind boot $boot: panic after ${PANIC_S}s, total $(( $(date +%s) - t0 ))s: $(grep -a -m1 'Kernel panic - not syncing' "$cdir/console.log" | tr -d '\r')"
    ls -l "$cdir" >&2
    printf '%s\t%s\t%s\t%s\t%ss\t%ss\n' "$(date -u +%FT%TZ)" "$ARCH-$KV" "$kind" "$boot" "$PANIC_S" \
        "$(( $(date +%s) - t0 ))" >> "$OUT/timings.tsv"
}

# ------------------------------------------------------------------ main
case "${1:-}" in
    ''|-h|--help|help) usage 0 ;;
    list)
        for k in $KINDS; do printf '%-15s %s\n' "$k" "$(kind_knobs "$k")"; done; exit 0 ;;
    prepare) prepare ;;
    all)
        shift; prepare
        kinds=${*:-$KINDS}
        failed=""
        for b in $BOOTS; do
            for k in $kinds; do
                if [ "$SKIP_DONE" = 1 ] && [ -e "$OUT/$ARCH-$KV/$k-$b/case.env" ] \
                        && grep -q '^TOTAL_S=' "$OUT/$ARCH-$KV/$k-$b/case.env"; then
                    log "skip $k-$b (done)"; continue
                fi
                ( make_one "$k" "$b" ) || { log "FAILED: $k boot $b"; failed="$failed $k-$b"; }
            done
        done
        log "all done; failed:${failed:- none}"
        ;;
    *)
        prepare
        make_one "$1" "${2:-1}" ;;
esac
