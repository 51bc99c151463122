# ztrace-vm: needs-kmod
# In-kernel zsmalloc load generator (ztrace/vm/kmod/zsstress.c): N kthreads call zs_malloc /
# zs_free / map+read on a pool of their own, so zsmalloc lock contention can be dialled from
# none to heavy without zram's compression or syscall cost in the way. The host builds
# zsstress.ko against this guest's own headers and puts it in $O/kmod/ (ztrace/vm/kmod.py).
#
# level presets (any knob can be overridden with -p NAME=VALUE):
#   none    threads=1                         one thread: no zsmalloc lock can be contended
#   light   threads=2 think_ns=20000           two threads, 20 us of CPU between ops
#   medium  threads=2 think_ns=2000
#   heavy   threads=4 think_ns=0 size_fixed=1024   back to back, one size class
#   spread  threads=4 think_ns=0 size_fixed=0      back to back, sizes over ~100 classes
#   freespin threads=1 think_ns=2000 free_spin=1    no zsmalloc op: the slowpath on a free lock
#                                                  (what the capture records as a wait when
#                                                  nothing holds the lock; zsstress.c)
#
# Several runs in one boot (one BCC compile, which under TCG costs 1-3 min, the workload 5 s):
# levels=light,heavy reps=3 runs light heavy light heavy light heavy under one capture, seed =
# the repetition (1..reps), 3 s apart; zsstress.runs lists them in order. The host splits the
# capture at those gaps into one run directory per load (ztrace/vm/split.py).
. "$(dirname "$0")/lib.sh"
common_start
PROBES=$(karg probes zsmalloc,locks)
LEVELS=$(karg levels "$(karg level heavy)")
REPS=$(karg reps 1)
preset() {  # preset LEVEL: the module arguments of one load
  case $1 in
    none)   T=1; THINK=0;     FIXED=0 ;;
    light)  T=2; THINK=20000; FIXED=0 ;;
    medium) T=2; THINK=2000;  FIXED=0 ;;
    heavy)  T=4; THINK=0;     FIXED=1024 ;;
    spread) T=4; THINK=0;     FIXED=0 ;;
    freespin) T=1; THINK=2000; FIXED=0 ;;
    *) die "unknown level $1 (none, light, medium, heavy, spread, freespin)" ;;
  esac
  A="threads=$(karg threads $T) ops=$(karg ops 20000) duration_ms=$(karg duration_ms 0)"
  A="$A live=$(karg live 256) size_min=$(karg size_min 64) size_max=$(karg size_max 3072)"
  A="$A size_fixed=$(karg size_fixed $FIXED) read_pct=$(karg read_pct 30)"
  A="$A think_ns=$(karg think_ns $THINK) compact_ms=$(karg compact_ms 0) seed=$(karg seed $2)"
  [ "$1" = freespin ] && A="$A free_spin=1"
  echo "$A"
}
KO=$O/kmod/zsstress.ko
[ -f "$KO" ] || die "no $KO (the host builds it: ztrace/vm/kmod.py)"
# ztrace.background=9p: every second load runs beside a writer to the output share
# (virtio-9p, which QEMU serves from its main loop under the global lock that a vCPU thread
# also takes each time it leaves translated code, e.g. at each PAUSE of a spinning waiter);
# zsstress.background lists none/9p per load. Started after the capture attached and
# stopped before it detaches: a kprobe patched while the writer runs crashed the 6.1 guest
# three boots of three (session 27). An A/B in one boot: does guest I/O lengthen the waits
# per contention while the calls' durations stay?
# ztrace.background=zram: the writer is fio on a zram device instead (zram's own pool and
# lock; zsstress's waits on its own pool's lock, filtered by the waiter's comm): do the
# waits per contention of one lock follow what else the guest runs?
BGMODE=$(karg background none)
case $BGMODE in
  none) ;;
  9p) BGLOOP="while :; do dd if=/dev/zero of=$O/background.tmp bs=64k count=64 conv=fsync 2>/dev/null; done" ;;
  zram)
    zram_on 256M
    BGLOOP="while :; do fio --name=bg --filename=/dev/zram0 --rw=write --bs=64k --size=32M --numjobs=2 --offset_increment=32M --buffer_compress_percentage=60 --refill_buffers --direct=1 --ioengine=psync >/dev/null 2>&1; done" ;;
  *) die "unknown background $BGMODE (none, 9p, zram)" ;;
esac
LOOP=/tmp/zsstress-loop.sh
: >"$O/zsstress.runs"
: >"$O/zsstress.background"
echo "set -e" >$LOOP
n=0
for r in $(seq 1 "$REPS"); do
  for lv in $(echo "$LEVELS" | tr ',' ' '); do
    ARGS=$(preset "$lv" "$r") || die "unknown level $lv (none, light, medium, heavy, spread, freespin)"
    [ $n -gt 0 ] && echo "sleep 3" >>$LOOP
    # insmod returns when every thread has finished; rmmod frees the objects and the pool.
    if [ "$BGMODE" != none ] && [ $((n % 2)) = 1 ]; then
      echo "( $BGLOOP ) & BG=\$!; sleep 1" >>$LOOP
      echo "insmod $KO $ARGS && rmmod zsstress" >>$LOOP
      echo "kill \$BG; pkill -x fio 2>/dev/null || true; pkill -x dd 2>/dev/null || true; wait \$BG 2>/dev/null || true; rm -f $O/background.tmp" >>$LOOP
      echo "$BGMODE" >>"$O/zsstress.background"
    else
      echo "insmod $KO $ARGS && rmmod zsstress" >>$LOOP
      echo none >>"$O/zsstress.background"
    fi
    printf '%s\t%s\t%s\n' "$r" "$lv" "$ARGS" >>"$O/zsstress.runs"
    n=$((n + 1))
  done
done
cut -f2,3 "$O/zsstress.runs" | sed 's/^/level=/; s/\t/ /' >"$O/zsstress.args"
snap before
phase workload capture trace "$PROBES" -- /bin/sh $LOOP || die "workload failed"
dmesg | grep 'zsstress:' | tee "$O/zsstress.log"
[ "$(grep -c 'zsstress: done' "$O/zsstress.log")" = $n ] || die "zsstress did not finish $n runs"
snap after
log done
