# Mixed zram random reads and writes (fio randrw): `jobs` fio jobs on /dev/zram0, each on its own
# prefilled range, 4k direct I/O, rwmixread % reads, for `runtime` seconds. Reads go through
# zsmalloc's read path (zs_map_object RO on 6.1/6.12), overwrites free the old object and store
# a new one, so allocator, read and lock events mix as in a zram swap or filesystem.
. "$(dirname "$0")/lib.sh"
common_start
PROBES=$(karg probes zsmalloc,locks)
JOBS=$(karg jobs 4)
MB=$(karg mb_per_job 16)
MIX=$(karg rwmixread 70)
RUNTIME=$(karg runtime 10)
zram_on 1G
COMMON="--filename=/dev/zram0 --size=${MB}M --numjobs=$JOBS --offset_increment=${MB}M \
 --buffer_compress_percentage=60 --refill_buffers --direct=1 --ioengine=psync --group_reporting"
snap before
# Prefill outside the capture: the captured phase is the random mix only.
fio --name=fill --rw=write --bs=64k $COMMON --output-format=json --output=$O/fio-fill.json \
  >/dev/null || die "prefill failed"
snap after-fill
WL="fio --name=randrw --rw=randrw --rwmixread=$MIX --bs=4k --time_based --runtime=$RUNTIME \
 --randrepeat=0 $COMMON --output-format=json --output=$O/fio.json"
phase workload capture trace "$PROBES" -- /bin/sh -c "$WL" || die "workload failed"
snap after-randrw
echo 1 >/sys/block/zram0/reset
log done
