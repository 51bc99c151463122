#!/bin/bash
# Build (or find in the cache) the ztrace guest image: one Debian bookworm rootfs holding two
# stock kernels, bookworm's 6.1 and bookworm-backports' 6.12, each with its matching headers so
# BCC can compile probes inside the guest.
#
# Usage: ztrace/vm/build.sh [--force] [--quiet]
#   Prints the image directory (the last line of stdout) holding:
#     rootfs.img  vmlinuz-6.1  initrd-6.1  vmlinuz-6.12  initrd-6.12  manifest.json
# Env:
#   ZTRACE_VM_CACHE   cache root (default /var/cache/ztrace-vm)
#   ZTRACE_VM_MIRROR  Debian mirror URL (default: the ordinary Debian one)
#   ZTRACE_VM_NO_HOST_APT=1  do not apt-get install missing host tools; fail instead
#
# The image lives under $ZTRACE_VM_CACHE/<key>/, where <key> hashes this script: everything the
# image depends on (package lists, the init stub, sources.list) is written here, so editing this
# file is what invalidates the cache. The real guest init (guest-init) and the scenarios are read
# from the 9p share at boot, so changing them needs no rebuild.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${ZTRACE_VM_CACHE:-/var/cache/ztrace-vm}
MIRROR=${ZTRACE_VM_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${ZTRACE_VM_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
FORCE=0; QUIET=0
for a in "$@"; do
  case $a in
    --force) FORCE=1 ;;
    --quiet) QUIET=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
log() { [ "$QUIET" = 1 ] || echo "vm-build: $*" >&2; }
die() { echo "vm-build: error: $*" >&2; exit 1; }

# Guest packages. Python deps come from PyPI because bookworm's numpy (1.24) is older than what
# ztrace requires; bcc, fio and the kernels come from Debian.
DEB_PKGS="python3 python3-pip python3-bpfcc bpftool kmod util-linux procps fio e2fsprogs"
PIP_PKGS="pyarrow numpy click rich"
# Python modules the guest side of ztrace imports; checked after install so a broken image fails
# the build rather than the first scenario.
PY_CHECK="import bcc, pyarrow, numpy, click, rich"

KEY=$(sha256sum "$HERE/build.sh" | cut -c1-16)
OUT=$CACHE/$KEY
if [ "$FORCE" = 0 ] && [ -f "$OUT/manifest.json" ]; then
  log "cached image $OUT"
  echo "$OUT"; exit 0
fi

[ "$(id -u)" = 0 ] || die "building the guest image needs root (debootstrap, chroot)"
# Host tools: installed on demand so CI starting from nothing works with one command.
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
  [ "${ZTRACE_VM_NO_HOST_APT:-0}" = 1 ] && die "missing host tools: ${need[*]}"
  command -v apt-get >/dev/null || die "missing host tools (${need[*]}) and no apt-get to install them"
  log "installing host tools: ${need[*]}"
  (apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}") \
    >/dev/null 2>&1 || die "apt-get install ${need[*]} failed"
fi

mkdir -p "$CACHE"
# One builder at a time; a second caller waits and then finds the finished image.
exec 9>"$CACHE/.lock"
flock -w 1800 9 || die "timed out waiting for $CACHE/.lock"
if [ "$FORCE" = 0 ] && [ -f "$OUT/manifest.json" ]; then echo "$OUT"; exit 0; fi

# Images of other keys are stale (built from another build.sh); drop them before building so the
# cache peaks at one image plus one build tree (< 6 GB) instead of two images plus a tree.
# safe_rm DIR: a build killed mid-chroot leaves /proc, /sys, /dev bound inside its rootfs;
# unmount those first, and never let rm cross into another filesystem.
safe_rm() {
  local m
  for m in $(awk -v p="$1/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$1"
}
for d in "$CACHE"/*/; do
  [ "${d%/}" = "$OUT" ] || safe_rm "${d%/}"
done
W=$CACHE/$KEY.tmp
R=$W/rootfs
cleanup() {
  for d in dev/pts dev sys proc; do umount "$R/$d" 2>/dev/null || true; done
}
trap cleanup EXIT
cleanup
safe_rm "$W"; mkdir -p "$W"
T0=$(date +%s)
declare -A TIMING
step() {  # step NAME cmd...: run and record wall time
  local name=$1 s; shift; s=$(date +%s.%N)
  log "$name ..."
  "$@"
  TIMING[$name]=$(python3 -c "import time; print(round(time.time() - $s, 1))" 2>/dev/null \
    || echo 0)
  log "$name done in ${TIMING[$name]}s"
}

# Clean environment inside the chroot: the host's PIP_*, PYTHON* and locale settings mean nothing
# there (and the host's pip config points at files the chroot does not have).
inchroot() {
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive chroot "$R" "$@"
}

do_debootstrap() {
  debootstrap --variant=minbase bookworm "$R" "$MIRROR" >"$W/debootstrap.log" 2>&1 \
    || die "debootstrap failed, see $W/debootstrap.log"
}

do_chroot_apt() {
  # updates + security so the kernel that linux-image-amd64 points at has matching headers;
  # backports for the 6.12 kernel.
  cat >"$R/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY_MIRROR bookworm-security main
deb $MIRROR bookworm-backports main
EOF
  printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n' \
    >"$R/etc/dpkg/dpkg.cfg.d/01_nodoc"
  # Small initramfs: only what mounting an ext4 root on virtio-blk needs; the rest (9p, zram,
  # zsmalloc) loads from the rootfs.
  mkdir -p "$R/etc/initramfs-tools/conf.d"
  printf 'virtio_pci\nvirtio_blk\next4\n' >"$R/etc/initramfs-tools/modules"
  printf 'MODULES=list\nCOMPRESS=gzip\n' >"$R/etc/initramfs-tools/conf.d/ztrace.conf"
  mount --bind /proc "$R/proc"; mount --bind /sys "$R/sys"
  mount --bind /dev "$R/dev"; mount --bind /dev/pts "$R/dev/pts"
  inchroot apt-get update -q >"$W/chroot-apt.log" 2>&1 || die "chroot apt-get update failed"
  # Resolve the kernel ABIs the metapackages point at: bookworm's 6.1 and backports' 6.12.
  # Plain name = apt's candidate = the newest of bookworm/-updates/-security (backports is
  # NotAutomatic, so it never wins here).
  K61=$(inchroot apt-cache depends linux-image-amd64 2>/dev/null \
    | awk '/Depends: linux-image-[0-9]/{sub("linux-image-","",$2); print $2; exit}')
  K612=$(inchroot apt-cache depends linux-image-amd64/bookworm-backports 2>/dev/null \
    | awk '/Depends: linux-image-[0-9]/{sub("linux-image-","",$2); print $2; exit}')
  case $K61 in 6.1.*) ;; *) die "bookworm linux-image-amd64 is '$K61', expected 6.1.*" ;; esac
  case $K612 in 6.12.*) ;; *)
    # Backports may move on to a newer series; then pick the newest 6.12 image still listed.
    K612=$(inchroot apt-cache search --names-only '^linux-image-6\.12\..*-amd64$' \
      | awk '{sub("linux-image-","",$1); print $1}' | grep -v -- '-unsigned' | sort -V | tail -1)
    [ -n "$K612" ] || die "no 6.12 kernel found in bookworm-backports" ;;
  esac
  log "kernels: 6.1 -> $K61, 6.12 -> $K612"
  inchroot apt-get install -y -q --no-install-recommends $DEB_PKGS \
    "linux-image-$K61" "linux-headers-$K61" >>"$W/chroot-apt.log" 2>&1 \
    || die "chroot apt-get install (6.1) failed, see $W/chroot-apt.log"
  inchroot apt-get install -y -q --no-install-recommends -t bookworm-backports \
    "linux-image-$K612" "linux-headers-$K612" >>"$W/chroot-apt.log" 2>&1 \
    || die "chroot apt-get install (6.12) failed, see $W/chroot-apt.log"
  echo "$K61" >"$W/k61"; echo "$K612" >"$W/k612"
}

do_pip() {
  # Wheels are fetched by the host's pip (whose TLS and index settings are known to work here)
  # for the guest's interpreter (CPython 3.11, glibc 2.36), then installed in the chroot offline.
  mkdir -p "$R/tmp/wheels"
  python3 -m pip download -q --no-cache-dir --only-binary=:all: --dest "$R/tmp/wheels" \
    --python-version 3.11 --implementation cp --abi cp311 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    $PIP_PKGS >"$W/pip.log" 2>&1 || die "pip download on the host failed, see $W/pip.log"
  inchroot python3 -m pip install -q \
    --no-index --find-links /tmp/wheels --break-system-packages $PIP_PKGS >>"$W/pip.log" 2>&1 \
    || die "pip install in the chroot failed, see $W/pip.log"
  rm -rf "$R/tmp/wheels"
  inchroot python3 -c "$PY_CHECK" >>"$W/pip.log" 2>&1 \
    || die "guest python imports failed, see $W/pip.log"
}

do_finish_rootfs() {
  # PID 1 stub: mount the 9p share holding the ztrace source and hand over to its guest-init, so
  # the init logic and the scenarios are versioned with the code, not baked into the image.
  cat >"$R/sbin/ztrace-init" <<'EOF'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# The initramfs has already moved /proc, /sys and /dev onto the new root.
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sys /sys
mountpoint -q /dev || mount -t devtmpfs dev /dev
modprobe 9pnet_virtio; modprobe 9p
mkdir -p /mnt/src /mnt/out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=none,ro ztsrc /mnt/src
if [ -f /mnt/src/ztrace/vm/guest-init ]; then exec /bin/sh /mnt/src/ztrace/vm/guest-init; fi
echo "ZTRACE-VM: no ztrace/vm/guest-init on the source share"
echo o >/proc/sysrq-trigger; sleep 10
EOF
  chmod 755 "$R/sbin/ztrace-init"
  echo ztrace-guest >"$R/etc/hostname"
  inchroot sh -c 'dpkg-query -W -f="\${Package} \${Version}\n"' >"$W/packages.txt"
  inchroot python3 -m pip freeze >"$W/pip-freeze.txt" 2>/dev/null || true
  cleanup
  rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* "$R"/root/.cache
}

do_image() {
  local k61 k612; k61=$(cat "$W/k61"); k612=$(cat "$W/k612")
  # Sparse 4 GB: rootfs ~2 GB plus room for a swapfile scenario (writes land in the snapshot).
  truncate -s 4G "$W/rootfs.img"
  mkfs.ext4 -q -F -L ztraceroot -d "$R" "$W/rootfs.img" || die "mkfs.ext4 failed"
  cp "$R/boot/vmlinuz-$k61" "$W/vmlinuz-6.1"; cp "$R/boot/initrd.img-$k61" "$W/initrd-6.1"
  cp "$R/boot/vmlinuz-$k612" "$W/vmlinuz-6.12"; cp "$R/boot/initrd.img-$k612" "$W/initrd-6.12"
  BCC_VER=$(awk '$1=="python3-bpfcc"{print $2}' "$W/packages.txt")
  safe_rm "$R"
}

step debootstrap do_debootstrap
step chroot-apt do_chroot_apt
step pip do_pip
step finish do_finish_rootfs
step image do_image
K61=$(cat "$W/k61"); K612=$(cat "$W/k612")
TOTAL=$(( $(date +%s) - T0 ))
python3 - "$W/manifest.json" <<EOF
import json, sys
json.dump({
    "key": "$KEY",
    "built_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
    "kernels": {
        "6.1": {"release": "$K61", "vmlinuz": "vmlinuz-6.1", "initrd": "initrd-6.1"},
        "6.12": {"release": "$K612", "vmlinuz": "vmlinuz-6.12", "initrd": "initrd-6.12"},
    },
    "image": "rootfs.img",
    "bcc": "$BCC_VER",
    "timings_s": {"debootstrap": ${TIMING[debootstrap]}, "chroot_apt": ${TIMING[chroot-apt]},
                  "pip": ${TIMING[pip]}, "finish": ${TIMING[finish]},
                  "image": ${TIMING[image]}, "total": $TOTAL},
}, open(sys.argv[1], "w"), indent=2)
EOF
rm -f "$W/k61" "$W/k612"
safe_rm "$OUT"; mv "$W" "$OUT"
log "image ready in ${TOTAL}s: $OUT ($(du -sh "$OUT" | cut -f1) on disk)"
echo "$OUT"
