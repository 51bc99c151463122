# zram as the swap device under a memory cgroup: the allocator touches its pages twice, so pages
# are swapped out (zs_malloc), faulted back in (zs_map_object, zs_free when zram frees the slot)
# and swapped out again; swapoff at the end frees the rest.
. "$(dirname "$0")/lib.sh"
common_start
PROBES=$(karg probes zsmalloc)
MB=$(karg mb 160)
LIMIT=$(karg memory_max 64M)
swapoff -a 2>/dev/null
zram_on 512M
mkswap /dev/zram0 >/dev/null; swapon -p 100 /dev/zram0 || die "swapon zram0"
make_cgroup ztrace-swap "$LIMIT"
snap before
phase workload capture trace "$PROBES" -- \
  $CGEXEC ztrace-swap python3 "$VM/scenarios/alloc.py" --mb "$MB" --passes 2 \
  || die "workload failed"
snap after
phase swapoff swapoff /dev/zram0
snap after-swapoff
echo 1 >/sys/block/zram0/reset
log done
