# tools/lib.sh - shell functions shared by make-dumps.sh (x86_64) and make-dumps-arm64.sh.
# Sourced by them, never run.  The sourcing script sets, before calling anything here:
#   HERE        this directory
#   WORK, KDIR  scratch directory, unpacked kernel + downloaded debs
#   DEB_ARCH    Debian architecture of the guest kernel (amd64, arm64)
#   QEMU        qemu-system-* binary of that architecture
#   KPKG, DBG, SMP, KASLR, HOLD_MB, FILL_MB, QMP_FORMATS, BOOT_TIMEOUT, DRGN   as in the script's usage text
# and defines stage_<name> for every stage it offers.
# shellcheck shell=bash
# shellcheck disable=SC2034  # globals set here (DRGN_ORACLE, VMLINUZ, PANIC_S, ...) are read by the caller

HELPER="python3 $HERE/dumpgen.py"
DRGN_ORACLE=$HERE/drgn_oracle.py

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }

kv() { printf "%s='%s'\n" "$1" "${2//\'/\'\\\'\'}"; }   # NAME='value': sourceable, and shlex-parsable

# ------------------------------------------------------------------ install
apt_wait() {  # another apt/dpkg may be running: wait for its locks instead of failing
    local i=0
    while fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock \
            >/dev/null 2>&1; do
        [ $((i % 12)) -eq 0 ] && log "waiting for the apt/dpkg lock"
        sleep 5; i=$((i + 1))
    done
}

apt_install() {  # apt_install PKG...: apt-get update, then install (no recommends)
    export DEBIAN_FRONTEND=noninteractive
    apt_wait
    apt-get -o DPkg::Lock::Timeout=1800 update
    apt_wait
    apt-get -o DPkg::Lock::Timeout=1800 install -y --no-install-recommends "$@"
}

# ------------------------------------------------------------------ kernel
deb_download() {  # deb_download PKG VERSION: path of PKG_VERSION_$DEB_ARCH.deb in $KDIR/debs (fetched once)
    local pkg=$1 ver=$2 file
    file="$KDIR/debs/${pkg}_${ver//:/%3a}_$DEB_ARCH.deb"   # apt-get download escapes an epoch's ':'
    if [ ! -e "$file" ]; then
        (cd "$KDIR/debs" && apt-get -o APT::Sandbox::User=root download "$pkg:$DEB_ARCH=$ver") >&2
        [ -e "$file" ] || die "apt-get download $pkg:$DEB_ARCH=$ver gave no $file"
    fi
    echo "$file"
}

deb_candidate() { apt-cache policy "$1:$DEB_ARCH" | sed -n 's/^ *Candidate: //p'; }

kernel_unpack() {  # KERNEL_DEB, or KPKG resolved and downloaded -> $KDIR/root; sets KDEB and KV
    mkdir -p "$KDIR/debs"
    if [ -n "${KERNEL_DEB:-}" ]; then
        KDEB=$KERNEL_DEB
    else
        local pkg=${KPKG%%=*} ver=""
        [[ "$KPKG" == *=* ]] && ver=${KPKG#*=}
        if ! [[ "$pkg" =~ ^linux-image-[0-9] ]]; then   # a metapackage: follow its Depends
            local meta=$pkg
            pkg=$(apt-cache show --no-all-versions "$meta:$DEB_ARCH${ver:+=$ver}" | sed -n 's/^Depends: //p' \
                  | tr ',' '\n' | grep -o 'linux-image-[0-9][^ :]*' | head -1)
            [ -n "$pkg" ] || die "cannot resolve $meta to a linux-image-<version> package for $DEB_ARCH"
            ver=""
            log "$meta -> $pkg"
        fi
        [ -n "$ver" ] || ver=$(deb_candidate "$pkg")
        [ -n "$ver" ] && [ "$ver" != "(none)" ] || die "apt knows no $DEB_ARCH version of $pkg (run the install stage)"
        KDEB=$(deb_download "$pkg" "$ver")
    fi
    rm -rf "$KDIR/root"; mkdir -p "$KDIR/root"
    dpkg-deb -x "$KDEB" "$KDIR/root"
    KV=$(cd "$KDIR/root/boot" && ls vmlinuz-* | head -1); KV=${KV#vmlinuz-}
    [ -n "$KV" ] || die "no /boot/vmlinuz-* in $KDEB"
}

write_kernel_env() {  # write_kernel_env [NAME VALUE]...: $KDIR/kernel.env for the kernel in $KDEB
    {
        kv KV "$KV"
        kv KPKG_NAME "$(dpkg-deb -f "$KDEB" Package)"
        kv KPKG_VERSION "$(dpkg-deb -f "$KDEB" Version)"
        kv KPKG_DEB "$(basename "$KDEB")"
        kv KPKG_SHA256 "$(sha256sum "$KDEB" | cut -d' ' -f1)"
        while [ $# -ge 2 ]; do kv "$1" "$2"; shift 2; done
    } > "$KDIR/kernel.env"
    log "kernel: $(tr '\n' ' ' < "$KDIR/kernel.env")"
}

arm64_image_and_busybox() {  # after kernel_unpack: $KDIR/Image (the raw arm64 Image QEMU's -kernel
    # wants; some releases ship it gzip-compressed) and the arm64 busybox for the guest's
    # initramfs (it cannot run on the host), recorded in kernel.env
    if [ "$(head -c 2 "$KDIR/root/boot/vmlinuz-$KV" | od -An -tx1 | tr -d ' ')" = 1f8b ]; then
        gzip -dc "$KDIR/root/boot/vmlinuz-$KV" > "$KDIR/Image"
    else
        cp "$KDIR/root/boot/vmlinuz-$KV" "$KDIR/Image"
    fi
    local bdeb
    bdeb=$(deb_download busybox-static "$(deb_candidate busybox-static)")
    rm -rf "$KDIR/busybox"; mkdir -p "$KDIR/busybox"
    dpkg-deb -x "$bdeb" "$KDIR/busybox"
    write_kernel_env BUSYBOX_DEB "$(basename "$bdeb")"
}

kernel_dbg() {  # DBG=1: the -dbg package of $KDEB, unpacking only vmlinux and System.map
    [ "$DBG" = 1 ] || return 0
    local ddeb boot=$KDIR/dbg/usr/lib/debug/boot
    # linux-image-X-unsigned's debug symbols are in linux-image-X-dbg
    ddeb=$(deb_download "$(dpkg-deb -f "$KDEB" Package | sed 's/-unsigned$//')-dbg" "$(dpkg-deb -f "$KDEB" Version)")
    if [ ! -s "$boot/vmlinux-$KV" ] || [ "$ddeb" -nt "$boot/vmlinux-$KV" ]; then
        log "unpacking vmlinux from $(basename "$ddeb")"
        mkdir -p "$KDIR/dbg"
        dpkg-deb --fsys-tarfile "$ddeb" | tar -x -C "$KDIR/dbg" \
            "./usr/lib/debug/boot/vmlinux-$KV" "./usr/lib/debug/boot/System.map-$KV" \
            || die "no vmlinux-$KV in $ddeb"
        touch "$boot/vmlinux-$KV"
    fi
    kv KDBG_DEB "$(basename "$ddeb")" >> "$KDIR/kernel.env"
}

kernel_env() {  # load $KDIR/kernel.env; sets KV, VMLINUZ, MODDIR, VMLINUX (the -dbg one)
    [ -e "$KDIR/kernel.env" ] || die "no kernel in $KDIR (run the kernel stage)"
    # shellcheck disable=SC1091
    . "$KDIR/kernel.env"
    VMLINUZ=$KDIR/root/boot/vmlinuz-$KV
    MODDIR=$KDIR/root/lib/modules/$KV
    VMLINUX=$KDIR/dbg/usr/lib/debug/boot/vmlinux-$KV
}

# ------------------------------------------------------------------ initramfs
rootfs_skeleton() {  # rootfs_skeleton DIR BUSYBOX: an empty root with busybox in /bin
    rm -rf "$1"
    mkdir -p "$1"/{bin,sbin,etc,proc,sys,dev,tmp,root,lib/modules/$KV}
    cp "$2" "$1/bin/busybox"
}

rootfs_modules() {  # rootfs_modules DIR MODULE...: the modules (deps first), /etc/modules.load,
    # /etc/kernel-version, and /etc/init-common.sh, which every /init sources first: PATH,
    # mounts, console, then insmod of the modules in order.
    local dir=$1 rel; shift
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

# A workload guest's /init is: its own banner, guest_workload, its own /dev/kmsg markers,
# guest_wait_ready, (kdump: kexec -p), guest_panic.
guest_workload() {  # guest_workload TEXT_BYTES: sysctls, then the processes and data the dump should hold
    sed "s/@TEXT_BYTES@/$1/" <<'EOF'
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
yes 'VMCOREKIT-USERMEM-MARKER 0123456789abcdef' | head -c @TEXT_BYTES@ > /tmp/text
# a reader that keeps the text file in its own heap
sh -c 'data=$(cat /tmp/text); touch /tmp/ready.data; while :; do sleep 1000; done' &
# a shell holding HOLD_MB MiB of anonymous user memory ('Z' bytes)
sh -c "big=\$(head -c $((HOLD_MB * 1048576)) /dev/zero | tr '\\0' Z); touch /tmp/ready.big; while :; do sleep 1000; done" &
losetup /dev/loop0 /tmp/big 2>/dev/null
echo vmcorekit-brd-data > /dev/ram0
# FILL_MB: bulk data for benchmarks, like a loaded machine's: a tmpfs file (shmem pages, which
# every dump level keeps) of text, machine code and random bytes, each copy shifted by a few
# bytes so no two pages repeat; and ~100k inodes + dentries in the slab caches.
if [ "${FILL_MB:-0}" -gt 0 ]; then
    mkdir -p /fill && mount -t tmpfs -o size=$((FILL_MB + 64))m tmpfs /fill
    { cat /proc/kallsyms; find /lib/modules -name '*.ko' | xargs cat; cat /bin/busybox; head -c 1048576 /dev/urandom; } > /tmp/seed
    i=1
    while [ $(( $(stat -c %s /fill/data 2>/dev/null || echo 0) / 1048576 )) -lt "$FILL_MB" ]; do
        tail -c +$((i * 97 % 4093 + 2)) /tmp/seed >> /fill/data || break; i=$((i + 1))
    done
    rm /tmp/seed
    mkdir /fill/files && (cd /fill/files && seq 1 100000 | xargs touch)
    echo "gen-init: fill ${FILL_MB} MiB in $i copies, 100000 files"
fi
EOF
}

guest_wait_ready() {  # guest_wait_ready SECONDS: wait (at most SECONDS) for the memory holders
    sed "s/@SECONDS@/$1/" <<'EOF'
i=0; while [ ! -e /tmp/ready.data -o ! -e /tmp/ready.big ] && [ $i -lt @SECONDS@ ]; do sleep 1; i=$((i+1)); done
echo "gen-init: memory holders ready after ${i}s"
free; ps
EOF
}

guest_panic() {  # announce readiness, then crash the kernel with sysrq-c
    cat <<'EOF'
echo WORKLOAD-READY
sleep 3
# panic from a child process (not PID 1)
sh -c 'echo c > /proc/sysrq-trigger'
sleep 1000
EOF
}

pack_cpio() {  # pack_cpio DIR OUT
    (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -9 > "$2"
}

# ------------------------------------------------------------------ QEMU
kernel_append() {  # kernel_append CONSOLE: the guest kernel's command line
    local a="console=$1 panic=0 loglevel=7"
    [ "$KASLR" = 1 ] || a="$a nokaslr"
    echo "$a"
}

describe_case() {  # describe_case CASEDIR KIND MEM NAME VALUE: the case's configuration -> case.env
    {
        kv KIND "$2"; kv MEM "$3"; kv SMP "$SMP"; kv KASLR "$KASLR"; kv "$4" "$5"
        kv HOLD_MB "$HOLD_MB"; kv FILL_MB "${FILL_MB:-0}"; kv QEMU_VERSION "$("$QEMU" --version | head -1)"
        cat "$KDIR/kernel.env"
    } > "$1/case.env"
}

start_qemu() {  # start_qemu CASEDIR MACHINE CPU MEM KERNEL INITRD APPEND [QEMU ARG...]; sets QEMU_PID, QEMU_T0
    local cdir=$1 machine=$2 cpu=$3 mem=$4 kernel=$5 initrd=$6 append=$7; shift 7
    rm -f "$cdir/qmp.sock"
    local cmd=("$QEMU" -machine "$machine" -accel tcg -cpu "$cpu" -smp "$SMP" -m "$mem"
               -nographic -nic none -no-reboot -device vmcoreinfo
               -kernel "$kernel" -initrd "$initrd" -append "$append"
               -qmp "unix:$cdir/qmp.sock,server=on,wait=off" "$@")
    local a line=""
    for a in "${cmd[@]}"; do
        case $a in *[[:space:]]*) line="$line '$a'" ;; *) line="$line $a" ;; esac
    done
    echo "${line# }" | sed "s#$cdir/##g; s#$KDIR/root/##g; s#$KDIR/##g; s#$WORK/##g" > "$cdir/qemu-cmdline.txt"
    QEMU_T0=$(date +%s)
    "${cmd[@]}" < /dev/null > "$cdir/console.log" 2>&1 &
    QEMU_PID=$!
    echo "$QEMU_PID" > "$cdir/qemu.pid"
    log "QEMU pid $QEMU_PID: $(cat "$cdir/qemu-cmdline.txt")"
}

wait_console() {  # wait_console CASEDIR PATTERN TIMEOUT STEP: poll the serial log every STEP s
    local cdir=$1 pat=$2 t=$3 step=$4 s=0
    while ! grep -aq -- "$pat" "$cdir/console.log" 2>/dev/null; do
        kill -0 "$QEMU_PID" 2>/dev/null || { log "QEMU exited"; return 1; }
        [ $s -ge "$t" ] && { log "timeout waiting for '$pat'"; return 1; }
        sleep "$step"; s=$((s + step))
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

qmp_panic_dumps() {  # qmp_panic_dumps CASEDIR POLL SETTLE: wait for the panic, dump QMP_FORMATS, stop QEMU
    # Sets PANIC_S (seconds from QEMU start to the panic message).
    local cdir=$1 poll=$2 settle=$3 fmt
    if ! wait_console "$cdir" "Kernel panic - not syncing" "$BOOT_TIMEOUT" "$poll"; then
        stop_qemu "$cdir"; tail -20 "$cdir/console.log" >&2
        die "qmp: guest did not panic; see $cdir/console.log"
    fi
    PANIC_S=$(( $(date +%s) - QEMU_T0 ))
    sleep "$settle"   # let the panic path finish printing and stop the other CPUs (panic=0: it then spins)
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
    [ -e "$cdir/dump.elf" ] || die "qmp: no ELF dump (QMP_FORMATS must include elf)"
}

dump_facts() {  # dump_facts CASEDIR VMCOREINFO_KEYS_ERE: vmcoreinfo.txt, elfinfo.txt, a summary on stderr
    local cdir=$1
    $HELPER vmcoreinfo "$cdir/dump.elf" "$cdir/vmcoreinfo.txt"
    $HELPER elfinfo "$cdir/dump.elf" | tee "$cdir/elfinfo.txt" >&2
    grep -E "^($2)=" "$cdir/vmcoreinfo.txt" >&2 || true
    ls -l "$cdir" >&2
}

# ------------------------------------------------------------------ reduce, oracles, sample
makedumpfile_input() {  # makedumpfile_input CASEDIR: the name of the ELF makedumpfile can read
    # makedumpfile 1.7.2 wants e_phoff == 64; QEMU 7.2 puts section headers there first.
    if [ "$(od -An -t u8 -j 32 -N 8 "$1/dump.elf" | tr -d ' ')" != 64 ]; then
        $HELPER normalize-elf "$1/dump.elf" "$1/dump.norm.elf" >&2 || return 1
        echo dump.norm.elf
    else
        echo dump.elf
    fi
}

drgn_oracle_ready() {  # drgn and the -dbg vmlinux are both at hand
    [ -n "$DRGN" ] && [ -e "${VMLINUX:-/nonexistent}" ]
}

clean_console() {  # clean_console IN OUT: the serial log without CRs and terminal escapes
    tr -d '\r' < "$1" | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g' > "$2"
}

# ------------------------------------------------------------------ main
run_stages() {  # run_stages "ALL STAGES" "DEFAULT STAGES" [STAGE...|all|--help]
    local valid=" $1 " stages st t0
    read -ra stages <<< "$2"; shift 2
    case "${1:-}" in -h|--help|help) usage 0 ;; esac
    if [ $# -gt 0 ]; then stages=("$@"); fi
    [ "${stages[0]}" = all ] && read -ra stages <<< "${valid# }"
    for st in "${stages[@]}"; do
        [[ "$valid" == *" $st "* ]] || { log "unknown stage '$st'"; usage 2; }
    done
    mkdir -p "$WORK"
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
