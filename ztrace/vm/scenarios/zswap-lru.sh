# zswap LRU scenario (issue 13): the `zswap` scenario's setup, plus what the LRU replay needs to
# model the shrink worker in time and per memory cgroup:
#   * shrink_wq.trace  ftrace of workqueue_queue_work / _execute_start / _execute_end for the
#                      zswap shrink worker only (filtered on its function address), clock mono,
#                      the clock of the capture's ts_ns (bpf_ktime_get_ns). 6.12:
#                      zswap_store's `reject:` path does queue_work(shrink_wq,
#                      &zswap_shrink_work) (mm/zswap.c: zswap_store), INIT_WORK(...,
#                      shrink_worker) (mm/zswap.c: zswap_setup); the workqueue tracepoints carry
#                      `function` (include/trace/events/workqueue.h).
#   * (same file) zt_scan / zt_scan_ret: kprobe events on zswap_shrinker_scan, its nr_to_scan
#                      and memcg, and what it returned (freed, or SHRINK_STOP).
#   * memcg.tsv        pid, cgroup name, cgroup inode id, memory.max of every allocator, so a
#                      trace row's pid names the task's cgroup (zswap_store/zswap_load run in
#                      the reclaiming/faulting task; 6.12 charges the entry to the folio's
#                      objcg, which for anonymous pages is the faulting task's memcg).
#   * counters/memcg-NAME-{before,after}.txt  memory.stat of each cgroup (zswpout, zswpin,
#                      zswpwb per memcg, 6.8+).
# Parameters (ztrace.KEY=VALUE): groups=MAX:MB[,MAX:MB...] one cgroup per item, with memory.max
# MAX and an allocator of MB MiB (default 64M:300, the fresh 6.12 run of docs/lru-kernel-check.md);
# probes, max_pool_percent as in `zswap`.
. "$(dirname "$0")/lib.sh"
common_start
PROBES=$(karg probes zsmalloc,zswap)
GROUPS_SPEC=$(karg groups 64M:300)
POOL=$(karg max_pool_percent 3)
zswap_on 768 "$POOL"

# ftrace of the shrink worker, filtered to its function (a kernel text address)
T=/sys/kernel/tracing
echo 0 >/proc/sys/kernel/kptr_restrict 2>/dev/null
FN=$(awk '$3 == "shrink_worker" {print "0x" $1}' /proc/kallsyms | head -1)
if [ -n "$FN" ] && [ -d $T/events/workqueue ]; then
  echo 0 >$T/tracing_on; : >$T/trace
  echo mono >$T/trace_clock || log "trace_clock mono unavailable: $(cat $T/trace_clock)"
  echo 8192 >$T/buffer_size_kb
  for e in workqueue_queue_work workqueue_execute_start workqueue_execute_end; do
    echo "function == $FN" >$T/events/workqueue/$e/filter || log "filter on $e failed"
    echo 1 >$T/events/workqueue/$e/enable
  done
  echo "$FN" >"$O/shrink_worker.addr"
  # the memory-pressure shrinker's scans (6.8+): how many entries each call may walk.
  # 6.12 struct shrink_control: gfp_mask, nid, nr_to_scan (+8), nr_scanned, memcg (+24)
  # (include/linux/shrinker.h); zswap_shrinker_scan walks nr_to_scan entries of sc->memcg's
  # list_lru (mm/zswap.c: zswap_shrinker_scan → list_lru_shrink_walk).
  # The memcg as its cgroup id (issue 13: the capture's memcg_id) through a BTF argument
  # (CONFIG_PROBE_EVENTS_BTF_ARGS, 6.6+; field access 6.7+), else the pointer only.
  if grep -qx zswap_shrinker_scan $T/available_filter_functions 2>/dev/null; then
    { echo 'p:zt_scan zswap_shrinker_scan nr_to_scan=+8(%si):u64 memcg=+24(%si):u64'\
' cg=sc->memcg->css.cgroup->kn->id:u64' >>$T/kprobe_events 2>/dev/null \
      || echo 'p:zt_scan zswap_shrinker_scan nr_to_scan=+8(%si):u64 memcg=+24(%si):u64' \
      >>$T/kprobe_events; } && echo 'r:zt_scan_ret zswap_shrinker_scan ret=$retval:u64' \
      >>$T/kprobe_events && echo 1 >$T/events/kprobes/enable \
      || log "kprobe events on zswap_shrinker_scan failed"
  fi
  echo 1 >$T/tracing_on
else
  log "no shrink_worker symbol or no workqueue events: shrink_wq.trace not written"
fi

mkdir -p "$O/counters"; : >"$O/memcg.tsv"
i=0
CMD="pids=;"
for g in $(echo "$GROUPS_SPEC" | tr ',' ' '); do
  i=$((i + 1)); max=${g%%:*}; mb=${g#*:}
  make_cgroup "ztrace-lru$i" "$max"
  cat "/sys/fs/cgroup/ztrace-lru$i/memory.stat" >"$O/counters/memcg-ztrace-lru$i-before.txt"
  # the allocator's pid goes to memcg.tsv from inside the capture (it is the exec'd cgexec pid)
  CMD="$CMD $CGEXEC ztrace-lru$i python3 $VM/scenarios/alloc.py --mb $mb --passes 2 & p=\$!;\
 printf '%s\tztrace-lru$i\t%s\t%s\n' \$p \$(stat -c %i /sys/fs/cgroup/ztrace-lru$i)\
 $max >>$O/memcg.tsv; pids=\"\$pids \$p\";"
done
CMD="$CMD rc=0; for p in \$pids; do wait \$p || rc=1; done; exit \$rc"
snap before
phase workload capture trace "$PROBES" -- /bin/sh -c "$CMD" || die "workload failed"
snap after
if [ -n "$FN" ] && [ -d $T/events/workqueue ]; then
  echo 0 >$T/tracing_on
  cp $T/trace "$O/shrink_wq.trace"
  cat $T/per_cpu/cpu*/stats >"$O/shrink_wq.stats" 2>/dev/null
fi
for d in /sys/fs/cgroup/ztrace-lru*; do
  cat "$d/memory.stat" >"$O/counters/memcg-$(basename "$d")-after.txt"
done
phase swapoff swapoff /swapfile
log done
