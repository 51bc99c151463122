# ztrace-vm: needs-kmod
# The capture probes' own cost on this kernel (issue 10; ztrace/checks/probecost.py): an outer
# kprobe/kretprobe pair on zs_malloc/zs_free alone (A) and around a nested pair doing the
# capture pair's work (B), ABAB, over one zsstress thread (no lock contention in the way).
# Written by engineer B (issue 10 model side); result in $O/probecost.json.
. "$(dirname "$0")/lib.sh"
common_start
zsstress_check probecost 8 \
  "threads=1 ops=$(karg ops 8000) live=256 size_min=64 size_max=3072 read_pct=0 think_ns=0 seed=1"
log done
