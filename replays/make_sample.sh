#!/usr/bin/env bash
# Recreate the bundled real sample (replays/samples/) from scratch. Needs root, BPF, qemu.
#   bash replays/make_sample.sh [OUTDIR]      (default: replays/samples)
# 1. 6.1 guest (stock Debian, single zsmalloc pool lock): zram, 4 fio writers x 16 MiB,
#    probes zsmalloc (kprobes: size, handle, duration) and locks.
# 2. 6.12 guest (bookworm-backports): zswap over a swapfile, a 96 MiB allocator in a memory
#    cgroup with memory.max=48M, max_pool_percent=3: zswap store/load/writeback + zsmalloc.
# 4. zsstress heavy on both guests (the in-kernel load generator, 4 threads x 10000 ops, one
#    size class): the same workload on the pool-lock kernel (6.1) and the class-lock kernel
#    (6.12), probes zsmalloc (incl. zs_read/zs_write) and locks (incl. spin_slowpath).
# 5. The same-boot hold check (session 23): the 6.1 holdtime calibration with 4 zsstress
#    threads on one size class, then the same load under the capture; the boot's hold shares
#    go beside the trace (`ztrace check holds`).
# 6. A kernel-build-like zswap load on the 6.12 guest (issue 10, item 6): the kbuild scenario's
#    defaults, 4 parallel gcc-12 -O2 compiles of 10 generated units in a memory cgroup with
#    memory.max=128M, zswap on zsmalloc (max_pool_percent=5).
# 3. This host (6.18, tracepoints only): 4 pinned writers on /dev/zram0 for 0.5 s, probes
#    zsmalloc (kmem tracepoint fallback) and locks (lock:contention_begin/end with stacks).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-replays/samples}
zt() { .venv/bin/python -m ztrace "$@"; }
work=$(mktemp -d /tmp/ztrace-sample.XXXXXX)
trap 'rm -rf "$work"' EXIT

zt vm run -k 6.1 -s zram -o "$work/g61" -p probes=zsmalloc,locks -p mb_per_job=16 --json >/dev/null
zt vm run -k 6.12 -s zswap -o "$work/g612" -p mb=96 -p memory_max=48M --json >/dev/null
zt vm run -k 6.12 -s kbuild -o "$work/kb612" --json >/dev/null
for k in 6.1 6.12; do
  zt vm run -k $k -s zsstress -o "$work/zs$k" -p level=heavy -p ops=10000 --json >/dev/null
done
# the quiet-host spread pair (session 9; bundled from a 12-load boot, one load per boot here):
# run it with nothing else on the host
for k in 6.1 6.12; do
  zt vm run -k $k -s zsstress -o "$work/zsspread$k" -p level=spread -p ops=10000 --json >/dev/null
done

zt vm run -k 6.1 -s holdtime -o "$work/holds61" -p threads=4 -p size_fixed=1024 -p rounds=3 \
  -p ops=3000 -p trace=1 --json >/dev/null

# Host: configure zram0 under the shared zram lock, capture, then reset the device.
exec 9>/tmp/ztrace-zram0.lock
flock 9
echo 1 > /sys/block/zram0/reset
echo lzo-rle > /sys/block/zram0/comp_algorithm
echo 256M > /sys/block/zram0/disksize
zt capture -o "$work/host/trace" --probes zsmalloc,locks --ringbuf-pages 16384 -- \
  .venv/bin/ztrace host writers --writers 4 --seconds 0.5 --discard-every 4 \
  > "$work/host/workload.json"
cat /sys/block/zram0/mm_stat > "$work/host/mm_stat"
echo 1 > /sys/block/zram0/reset
flock -u 9

rm -rf "$out"
mkdir -p "$out"
cp -r "$work/g61/trace" "$out/guest-6.1-zram"
cp -r "$work/g612/trace" "$out/guest-6.12-zswap"
cp -r "$work/host/trace" "$out/host-6.18-locks"
cp -r "$work/kb612/trace" "$out/guest-6.12-kbuild"
for d in g61 g612 kb612; do
  case $d in g61) name=guest-6.1-zram ;; g612) name=guest-6.12-zswap ;; *) name=guest-6.12-kbuild ;; esac
  mkdir -p "$out/$name.kernel"
  cp -r "$work/$d/counters" "$work/$d/doctor.json" "$out/$name.kernel/" 2>/dev/null || true
done
for k in 6.1 6.12; do
 for pair in "zs$k:guest-$k-zsstress" "zsspread$k:guest-$k-zsstress-spread"; do
  d=${pair%%:*} name=${pair#*:}
  cp -r "$work/$d/trace" "$out/$name"
  mkdir -p "$out/$name.kernel"
  cp -r "$work/$d/counters" "$work/$d/zs_pool_layout.json" "$work/$d/zsstress.log" \
    "$work/$d/zsstress.args" "$out/$name.kernel/"
  .venv/bin/python -c "import json, sys; from ztrace.vm.contention import summarize_trace; \
print(json.dumps(summarize_trace(sys.argv[1], sys.argv[1] + '.kernel'), indent=1, sort_keys=True))" \
    "$out/$name" > "$out/$name.kernel/contention.json"
 done
done
cp -r "$work/holds61/trace" "$out/guest-6.1-zsstress-holds"
mkdir -p "$out/guest-6.1-zsstress-holds.kernel"
.venv/bin/python -m ztrace.checks.holdtime --slim "$work/holds61/holdtime.json" \
  "$out/guest-6.1-zsstress-holds.kernel/holdtime.json"
cp "$work/holds61/zs_pool_layout.json" "$work/holds61/zsstress.args" \
  "$out/guest-6.1-zsstress-holds.kernel/"
.venv/bin/python -c "import json, sys; from ztrace.vm.contention import summarize_trace; \
print(json.dumps(summarize_trace(sys.argv[1], sys.argv[1] + '.kernel'), indent=1, sort_keys=True))" \
  "$out/guest-6.1-zsstress-holds" > "$out/guest-6.1-zsstress-holds.kernel/contention.json"
mkdir -p "$out/host-6.18-locks.kernel"
cp "$work/host/workload.json" "$work/host/mm_stat" "$out/host-6.18-locks.kernel/"
zt doctor --json > "$out/host-6.18-locks.kernel/doctor.json" || true
ln -sfn guest-6.1-zram "$out/default"
du -sh "$out"
