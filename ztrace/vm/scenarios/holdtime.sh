# ztrace-vm: needs-kmod
# How long zsmalloc's lock is really held inside zs_malloc/zs_free/zs_map_object on this
# kernel, and what share of the call's measured duration that is (issue 10;
# ztrace/checks/holdtime.py, probes/zs_hold.bpf.c): rounds A (zs_* pair alone), B (+ lock and
# unlock probes), C (+ handlers inside the hold window: their in-window cost), over one
# zsstress thread with reads (no contention: a wait would count as call time).
# Written by engineer H (issue 10, session 4); result in $O/holdtime.json.
. "$(dirname "$0")/lib.sh"
common_start
KO=$O/kmod/zsstress.ko
[ -f "$KO" ] || die "no $KO (the host builds it: ztrace/vm/kmod.py)"
ARGS="threads=1 ops=$(karg ops 6000) live=256 size_min=64 size_max=3072 read_pct=30 think_ns=0 seed=1"
echo "$ARGS" >"$O/zsstress.args"
grep -wE '_raw_(spin|read)_(un)?lock$' /proc/kallsyms >"$O/lockfuncs.txt"
phase workload python3 -m ztrace.checks.holdtime --rounds "$(karg rounds 4)" \
  -o "$O/holdtime.json" -- /bin/sh -c "insmod $KO $ARGS && rmmod zsstress" \
  || die "holdtime failed"
log done
