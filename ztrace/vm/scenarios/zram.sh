# zram block device: 4 fio writers (60% compressible, fresh buffers so no same-filled pages),
# then a discard of the written range. Expect one zs_malloc per stored page and one zs_free per
# page at the discard.
. "$(dirname "$0")/lib.sh"
common_start
PROBES=$(karg probes zsmalloc)  # locks: -p probes=zsmalloc,locks (6.12 capture segfaults with locks: see docs/vm.md)
JOBS=$(karg jobs 4)
MB=$(karg mb_per_job 64)
zram_on 1G
snap before
# zram splits each 64k write into 16 pages, each compressed and stored on its own (zs_malloc).
WL="fio --name=zram --filename=/dev/zram0 --rw=write --bs=64k --size=${MB}M --numjobs=$JOBS \
 --offset_increment=${MB}M --buffer_compress_percentage=60 --refill_buffers --direct=1 \
 --ioengine=psync --group_reporting --output-format=json --output=$O/fio.json"
phase workload capture trace "$PROBES" -- /bin/sh -c \
  "$WL && python3 $VM/counters.py after-write && blkdiscard -o 0 -l $((JOBS * MB))M /dev/zram0" || die "workload failed"
snap after-discard
echo 1 >/sys/block/zram0/reset
log done
