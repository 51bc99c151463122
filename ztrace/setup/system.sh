#!/usr/bin/env bash
# Install the Debian packages ztrace needs, and link kernel headers where BCC looks for them.
# Idempotent; safe to run again. Needs root; without it, prints what it skipped.
set -euo pipefail
pkgs=(python3-bpfcc bpfcc-tools linux-headers-amd64 qemu-system-x86 qemu-utils debootstrap
      e2fsprogs fio util-linux chromium chromium-driver)
if [ "$(id -u)" != 0 ]; then
  echo "ztrace setup: not root, skipping apt packages (${pkgs[*]}); kernel/VM/browser tests will skip." >&2
  exit 0
fi
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "ztrace setup: apt-get install ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# BCC compiles against /lib/modules/$(uname -r)/build. A distribution kernel ships its own
# headers; a custom one (like this machine's 6.18) gets Debian's generic headers linked in.
rel=$(uname -r)
mod=/lib/modules/$rel
# Debian splits headers in two: linux-headers-X-amd64 (generated, the `build` tree) and
# linux-headers-X-common (the shared sources BCC reads through `source`).
hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n1)
if [ -n "$hdr" ] && [ ! -e "$mod/build/Makefile" -o ! -e "$mod/source/include/linux/kconfig.h" ]; then
  common=${hdr%-amd64}-common
  [ -d "$common" ] || common=$hdr
  mkdir -p "$mod"
  [ -e "$mod/build/Makefile" ] || ln -sfn "$hdr" "$mod/build"
  [ -e "$mod/source/include/linux/kconfig.h" ] || ln -sfn "$common" "$mod/source"
  echo "ztrace setup: linked $hdr as $mod/build and $common as $mod/source" >&2
fi
# Tracing and debug filesystems: BCC and the zram oracle read them.
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
