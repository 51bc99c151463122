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
. "$(dirname "$0")/lib.sh"
common_start
PROBES=$(karg probes zsmalloc,locks)
LEVEL=$(karg level heavy)
case $LEVEL in
  none)   T=1; THINK=0;     FIXED=0 ;;
  light)  T=2; THINK=20000; FIXED=0 ;;
  medium) T=2; THINK=2000;  FIXED=0 ;;
  heavy)  T=4; THINK=0;     FIXED=1024 ;;
  *) die "unknown level $LEVEL (none, light, medium, heavy)" ;;
esac
ARGS="threads=$(karg threads $T) ops=$(karg ops 20000) duration_ms=$(karg duration_ms 0)"
ARGS="$ARGS live=$(karg live 256) size_min=$(karg size_min 64) size_max=$(karg size_max 3072)"
ARGS="$ARGS size_fixed=$(karg size_fixed $FIXED) read_pct=$(karg read_pct 30)"
ARGS="$ARGS think_ns=$(karg think_ns $THINK) compact_ms=$(karg compact_ms 0) seed=$(karg seed 1)"
KO=$O/kmod/zsstress.ko
[ -f "$KO" ] || die "no $KO (the host builds it: ztrace/vm/kmod.py)"
echo "level=$LEVEL $ARGS" >"$O/zsstress.args"
snap before
# insmod returns when every thread has finished; rmmod frees the objects and the pool.
phase workload capture trace "$PROBES" -- /bin/sh -c \
  "insmod $KO $ARGS && rmmod zsstress" || die "workload failed"
dmesg | grep 'zsstress:' | tee "$O/zsstress.log"
grep -q 'zsstress: done' "$O/zsstress.log" || die "zsstress did not finish"
snap after
log done
