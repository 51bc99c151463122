# zswap over a swapfile, zpool=zsmalloc, a small max_pool_percent, and a memory cgroup far
# smaller than what its allocator touches (twice), so there are stores, loads, rejects (pool
# limit, incompressible pages) and writebacks to the swapfile.
. "$(dirname "$0")/lib.sh"
common_start
PROBES=$(karg probes zsmalloc,zswap,locks)
MB=$(karg mb 160)
JOBS=$(karg jobs 1)  # concurrent allocators in the cgroup, MB split between them
LIMIT=$(karg memory_max 64M)
POOL=$(karg max_pool_percent 3)
zswap_on 512 "$POOL"
make_cgroup ztrace-zswap "$LIMIT"
snap before
AL="python3 $VM/scenarios/alloc.py --mb $((MB / JOBS)) --passes 2"
phase workload capture trace "$PROBES" -- $CGEXEC ztrace-zswap /bin/sh -c \
  "pids=; for i in \$(seq $JOBS); do $AL & pids=\"\$pids \$!\"; done; rc=0; \
   for p in \$pids; do wait \$p || rc=1; done; exit \$rc" \
  || die "workload failed"
snap after
phase swapoff swapoff /swapfile
snap after-swapoff
log done
