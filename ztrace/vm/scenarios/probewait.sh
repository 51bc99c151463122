# ztrace-vm: needs-kmod
# What the capture records as a spinlock wait when nothing holds the lock (issue 10): the
# kprobe/kretprobe pair on the spinlock slow path, timed around a call on a free lock
# (ztrace/vm/kmod/zsstress.c: free_spin, spin_file), in the two contexts real waiters run
# in, under the real capture:
#   kthread  zsstress's own kthread, back to back (zsstress's waiters)
#   user1    one call per write() from a user process (a system call, as fio's pwrite()s
#            into zram are): the call comes right after the syscall entry
#   user64   64 calls per write(): the first after the entry, 63 right behind it
#   userzram one call per write(), each right after the same process wrote a page to zram
#            (O_DIRECT pwrite: compression, zs_malloc, the copy): the state a zram writer's
#            slow path starts from
#   userswitch  one call per write(), each right after a context switch from another
#            process (its own mm) on the same vCPU: a pipe ping-pong, both pinned to CPU 0.
#            A switch of page tables writes CR3, and TCG empties its software TLB on every
#            CR3 write (no PCID in these guests), so the probes run from a cold TLB
#   userthread  the same ping-pong with a thread of the same process (same mm: no CR3
#            write), to tell the switch itself from the TLB it empties (session 29)
# each alone and beside a zram writer (fio, -p jobs), interleaved -p reps times (-p spins:
# the kthread's calls, -p writes: each user process's write()s in user1; user64 makes the
# same number of calls in writes/64 write()s, userzram writes/4 pages and calls). Every step
# is one line in probewait.tsv (name, start and end uptime: the capture's clock), and
# ztrace.checks.probewait reads the trace against it.
. "$(dirname "$0")/lib.sh"
common_start
# a syscall that switches page tables (PTI) also empties TCG's software TLB (CR3 writes flush
# it): the user context's first calls then pay for it, a kthread's do not
log "meltdown: $(cat /sys/devices/system/cpu/vulnerabilities/meltdown 2>/dev/null);" \
    "pcid: $(grep -qw pcid /proc/cpuinfo && echo yes || echo no);" \
    "vendor: $(grep -m1 vendor_id /proc/cpuinfo | cut -d: -f2)"
REPS=$(karg reps 2)
JOBS=$(karg jobs 4)
WRITES=$(karg writes 20000)
SPINS=$(karg spins 100000)
KO=$O/kmod/zsstress.ko
[ -f "$KO" ] || die "no $KO (the host builds it: ztrace/vm/kmod.py)"
zram_on 512M
BG="while :; do fio --name=bg --filename=/dev/zram0 --rw=write --bs=4k --size=16M --numjobs=$JOBS --offset_increment=16M --buffer_compress_percentage=60 --refill_buffers --direct=1 --ioengine=psync >/dev/null 2>&1; done"
WR="import os, sys; fd = os.open('/sys/kernel/debug/zsstress_spin', os.O_WRONLY)
for _ in range(int(sys.argv[1])): os.write(fd, b'1')"
# userzram: a 4 KiB O_DIRECT page (mmap: page-aligned), 60 % compressible as fio's
WZ="import mmap, os, sys; fd = os.open('/sys/kernel/debug/zsstress_spin', os.O_WRONLY)
z = os.open('/dev/zram0', os.O_RDWR | os.O_DIRECT); b = mmap.mmap(-1, 4096)
base = int(sys.argv[2]) * (16 << 20)
for i in range(int(sys.argv[1])):
    b.seek(0); b.write(os.urandom(1638) + bytes(2458)); os.pwrite(z, b, base + (i % 4096) * 4096); os.write(fd, b'1')"
# userswitch / userthread: N round trips; after each, one call (the partner is a forked
# process, or a thread, pinned to the same CPU)
WS="import os, sys, threading
os.sched_setaffinity(0, {0})
fd = os.open('/sys/kernel/debug/zsstress_spin', os.O_WRONLY)
r1, w1 = os.pipe(); r2, w2 = os.pipe()
n, mode = int(sys.argv[1]), sys.argv[2]
def partner():
    os.sched_setaffinity(0, {0})
    for _ in range(n):
        os.read(r1, 1); os.write(w2, b'x')
if mode == 'process':
    if os.fork() == 0:
        partner(); os._exit(0)
else:
    th = threading.Thread(target=partner); th.start()
for _ in range(n):
    os.write(w1, b'x'); os.read(r2, 1); os.write(fd, b'1')
os.wait() if mode == 'process' else th.join()"
LOOP=/tmp/probewait-loop.sh
TSV=$O/probewait.tsv
: >"$TSV"
cat >$LOOP <<EOF
set -e
up() { cut -d' ' -f1 /proc/uptime; }
step() {  # step NAME BACKGROUND cmd...: one timed step, alone or beside the zram writer
  name=\$1 bg=\$2; shift 2
  if [ "\$bg" = zram ]; then ( $BG ) & BGP=\$!; sleep 1; fi
  s=\$(up); "\$@"; e=\$(up)
  if [ "\$bg" = zram ]; then kill \$BGP; pkill -x fio || true; wait \$BGP 2>/dev/null || true; fi
  printf '%s\t%s\t%s\t%s\n' "\$name" "\$bg" "\$s" "\$e" >>$TSV
  sleep 2
}
users() {  # users N WRITES: two processes, each WRITES write()s of N calls
  insmod $KO spin_file=\$1
  python3 -c "$WR" \$2 & A=\$!
  python3 -c "$WR" \$2 & B=\$!
  wait \$A; wait \$B
  rmmod zsstress
}
switched() {  # switched WRITES process|thread: one call after each of WRITES round trips
  insmod $KO spin_file=1
  python3 -c "$WS" \$1 \$2
  rmmod zsstress
}
userzram() {  # userzram WRITES: two processes, each a zram page then one call, WRITES times
  insmod $KO spin_file=1
  python3 -c "$WZ" \$1 0 & A=\$!
  python3 -c "$WZ" \$1 1 & B=\$!
  wait \$A; wait \$B
  rmmod zsstress
}
EOF
for r in $(seq 1 "$REPS"); do
  for bg in none zram; do
    echo "step kthread $bg sh -c 'insmod $KO free_spin=1 threads=1 ops=$SPINS think_ns=2000 && rmmod zsstress'" >>$LOOP
    echo "step user1 $bg users 1 $WRITES" >>$LOOP
    echo "step user64 $bg users 64 $((WRITES / 64))" >>$LOOP
    echo "step userzram $bg userzram $((WRITES / 4))" >>$LOOP
    echo "step userswitch $bg switched $((WRITES / 4)) process" >>$LOOP
    echo "step userthread $bg switched $((WRITES / 4)) thread" >>$LOOP
  done
done
snap before
phase workload capture trace "$(karg probes zsmalloc,locks)" -- /bin/sh $LOOP || die "workload failed"
dmesg | grep 'zsstress:' >"$O/zsstress.log"
snap after
log done
