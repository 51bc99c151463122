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
zsstress_check holdtime 4 \
  "threads=1 ops=$(karg ops 6000) live=256 size_min=64 size_max=3072 read_pct=30 think_ns=0 seed=1"
log done
