# ztrace-vm: needs-kmod
# The capture probes' own cost on this kernel (issue 10; ztrace/checks/probecost.py): an outer
# kprobe/kretprobe pair on zs_malloc/zs_free alone (A) and around a nested pair doing the
# capture pair's work (B), ABAB, over one zsstress thread (no lock contention in the way).
# Written by engineer B (issue 10 model side); result in $O/probecost.json.
. "$(dirname "$0")/lib.sh"
common_start
KO=$O/kmod/zsstress.ko
[ -f "$KO" ] || die "no $KO (the host builds it: ztrace/vm/kmod.py)"
ARGS="threads=1 ops=$(karg ops 8000) live=256 size_min=64 size_max=3072 read_pct=0 think_ns=0 seed=1"
echo "$ARGS" >"$O/zsstress.args"
phase workload python3 -m ztrace.checks.probecost --rounds "$(karg rounds 8)" \
  -o "$O/probecost.json" -- /bin/sh -c "insmod $KO $ARGS && rmmod zsstress" \
  || die "probecost failed"
log done
