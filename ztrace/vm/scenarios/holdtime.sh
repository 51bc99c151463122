# ztrace-vm: needs-kmod
# ztrace-vm: kprobes-on-hot-locks
# How long zsmalloc's lock is really held inside zs_malloc/zs_free/zs_map_object on this
# kernel, and what share of the call's measured duration that is (issue 10;
# ztrace/checks/holdtime.py, probes/zs_hold.bpf.c): rounds A (zs_* pair alone), B (+ lock and
# unlock probes), C (+ handlers inside the hold window: their in-window cost), over one
# zsstress thread with reads (no contention: a wait would count as call time).
# Written by engineer H (issue 10, session 4); result in $O/holdtime.json.
. "$(dirname "$0")/lib.sh"
common_start
grep -wE '_raw_(spin|read)_(un)?lock$' /proc/kallsyms >"$O/lockfuncs.txt"
# ztrace.threads=N: N zsstress threads instead of one (their waits stay out of the hold, which
# starts at the lock's return; session 14 compared 4 with 1). With several, the slowpath probe
# of every round counts the kernel's contention on these calls (session 23).
# ztrace.size_fixed=BYTES: every object that size, so one class: on >=6.11 malloc and free then
# meet on one class->lock, as 6.1's meet on pool->lock (0 = sizes 64..3072, ~100 classes)
ARGS="threads=$(karg threads 1) ops=$(karg ops 6000) live=256 size_min=64 size_max=3072 size_fixed=$(karg size_fixed 0) read_pct=30 think_ns=0 seed=1"
# ztrace.workload=zram: the rounds time zram's own calls instead of zsstress's: each round
# is `jobs` fio writers of 8 MiB on /dev/zram0 (as the zram scenario), then a discard (the
# frees). The holds of a pool that only grows, beside zsstress's churn of 256 objects
# (session 27: zram's pool-lock waits are 2.5x zsstress's at the same call durations)
if [ "$(karg workload zsstress)" = zram ]; then
  zram_on 512M
  J=$(karg jobs 4)
  CMD="fio --name=ht --filename=/dev/zram0 --rw=write --bs=64k --size=8M --numjobs=$J \
 --offset_increment=8M --buffer_compress_percentage=60 --refill_buffers --direct=1 \
 --ioengine=psync >/dev/null && blkdiscard -o 0 -l $((J * 8))M /dev/zram0"
  echo "zram fio jobs=$J" >"$O/zsstress.args"
  phase workload python3 -m ztrace.checks.holdtime --rounds "$(karg rounds 4)" \
    -o "$O/holdtime.json" -- /bin/sh -c "$CMD" || die "holdtime failed"
else
  zsstress_check holdtime 4 "$ARGS"
fi
# ztrace.trace=1: the same load once more under the real capture (zsmalloc,locks probes), so
# that the capture's own call durations sit beside round A's in one boot (session 14: their
# ratio ran 0.44-2.9 over four boots; docs/validation.md "Session 14")
if [ "$(karg trace 0)" = 1 ]; then
  phase capture capture trace zsmalloc,locks -- /bin/sh -c \
    "insmod $O/kmod/zsstress.ko $ARGS && rmmod zsstress" || die "capture failed"
fi
log done
