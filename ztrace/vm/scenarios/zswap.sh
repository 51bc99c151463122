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
Z=/sys/module/zswap/parameters
[ -d $Z ] || die "no zswap in this kernel"
swapoff -a 2>/dev/null
# The rootfs is the snapshot=on image, so the swapfile never reaches the cached image.
fallocate -l 512M /swapfile 2>/dev/null || dd if=/dev/zero of=/swapfile bs=1M count=512 status=none
chmod 600 /swapfile; mkswap /swapfile >/dev/null; swapon /swapfile || die "swapon"
echo lzo >$Z/compressor
# 6.1 defaults to zbud; the whole point is zsmalloc.
echo zsmalloc >$Z/zpool || die "zpool zsmalloc"
echo "$POOL" >$Z/max_pool_percent
[ -w $Z/shrinker_enabled ] && echo Y >$Z/shrinker_enabled
echo Y >$Z/enabled
grep -H . $Z/*
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
