# Shared helpers for guest scenarios; sourced by scenarios/NAME.sh, which guest-init runs as
#   bash /mnt/src/ztrace/vm/scenarios/NAME.sh  > /mnt/out/guest.log
# Results go to $O (the host's output directory, shared over 9p):
#   counters/LABEL.json  kernel counters (counters.py), taken around each phase
#   phases.tsv           phase name, start and end uptime (seconds)
#   trace/               ztrace capture output (Parquet), when `ztrace capture` exists
#   inventory.json       probe-able symbols, BTF, tracepoints, bcc version of this kernel
#   doctor.json          `python3 -m ztrace doctor --json`, when that command exists
set -u
O=${ZTRACE_VM_OUT:-/mnt/out}
SRC=${ZTRACE_VM_SRC:-/mnt/src}
VM=$SRC/ztrace/vm
ts() { cut -d' ' -f1 /proc/uptime; }

# Under qemu 7.2's TCG (the project machines; -cpu max offers AVX2) numpy 2.4's AVX2 int64
# argsort returns unsorted permutations (scenarios/npsort.sh: 290 of 300 rounds wrong) and at
# times crashes: the guest capture's np.unique(return_inverse=True) on lock keys died with
# SIGSEGV (capture/session.py: _table). numpy's baseline (X86_V2) sorts are right there, so
# guests under TCG run numpy without its AVX2/AVX-512 dispatch targets.
if tr ' ' '\n' </proc/cmdline | grep -qx 'ztrace.accel=tcg'; then
  export NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR"
fi
log() { echo "[$(ts)] $*"; }
die() { log "FAIL: $*"; exit 1; }
snap() { python3 "$VM/counters.py" "$1" || die "counters.py $1 failed"; }

# Kernel command line knobs (ztrace.NAME=VALUE), so the host can vary a run without new files.
karg() {
  local v
  v=$(tr ' ' '\n' </proc/cmdline | sed -n "s/^ztrace\.$1=//p" | tail -1)
  echo "${v:-$2}"
}

phase() {  # phase NAME cmd...: run a step and record its uptime span in phases.tsv
  local name=$1 s e rc; shift
  s=$(ts); log "phase $name: $*"
  "$@"; rc=$?
  e=$(ts); printf '%s\t%s\t%s\t%s\n' "$name" "$s" "$e" "$rc" >>"$O/phases.tsv"
  log "phase $name rc=$rc ($(awk "BEGIN{print $e-$s}")s)"
  return $rc
}

CAPTURE_AVAILABLE=
have_capture() {
  if [ -z "$CAPTURE_AVAILABLE" ]; then
    if python3 -m ztrace capture --help >/dev/null 2>&1; then CAPTURE_AVAILABLE=yes
    else CAPTURE_AVAILABLE=no; fi
    echo "$CAPTURE_AVAILABLE" >"$O/capture_available"
  fi
  [ "$CAPTURE_AVAILABLE" = yes ]
}

# capture NAME PROBES -- cmd...: run the workload under `ztrace capture`, Parquet to $O/NAME.
# ztrace.capture=on (default) fails the scenario if the capture command is broken; =off runs
# the workload bare (counters only), e.g. to measure the workload without probes; =summary
# runs the always-on mode instead (`--summary`, one summary-NNNNN.parquet every
# ztrace.interval, default 2s: in-kernel aggregates, no event stream; tests/test_capture_vm.py)
# ztrace.capture_opts=--max-files=2,--interval=1s adds capture options (commas for spaces: a
# kernel command line word has none; tests/test_capture_vm.py, the operations run).
capture() {
  local name=$1 probes=$2; shift 2; [ "${1:-}" = -- ] && shift
  local -a extra
  read -r -a extra <<<"$(karg capture_opts "" | tr , ' ')"
  # --no-fentry unless ztrace.fentry=on: the validation's runs and the hold calibrations
  # (replays/calibration) were all measured with kprobes on zs_malloc/zs_free, whose
  # durations carry the kprobe pair's cost; tests/test_capture_vm.py runs fentry
  [ "$(karg fentry off)" = on ] || extra+=(--no-fentry)
  case $(karg capture on) in
    off)
      log "capture=off: running the workload without capture"
      "$@" ;;
    summary)
      have_capture || die "\`python3 -m ztrace capture --help\` fails in the guest"
      python3 -X faulthandler -m ztrace capture -o "$O/$name" --probes "$probes" --summary \
        --interval "$(karg interval 2s)" --lock-stacks "$(karg lock_stacks per-lock)" \
        "${extra[@]}" -- "$@" ;;
    *)
      have_capture || die "\`python3 -m ztrace capture --help\` fails in the guest"
      # A large ring: under TCG the Python consumer drains slowly, and a discard or swapoff
      # frees tens of thousands of objects in a burst (1024 pages lost ~15k of 65k events).
      # -X faulthandler: a crash in a C extension (bcc, pyarrow) prints the Python stack of
      # every thread to guest.log instead of a bare "Segmentation fault" (6.12 zram, rc 139)
      # --lock-stacks per-lock: a stack walk on every wait idles the waiter 3-5 us under TCG
      # before it spins, and raised 6.1 zsstress-heavy's measured contention by 5-35 %
      # (probes/zs_capture.bpf.c, zt_cached_stack); -p lock_stacks=each walks every wait
      # --reorder-window 5s: a starved guest (TCG on a loaded host) emitted an event more
      # than the default 500 ms after it began, and it was dropped as late (a fresh-clone
      # CI run, 6.12 zram, session 18); at a guest's event rates 5 s of events is small
      python3 -X faulthandler -m ztrace capture -o "$O/$name" --probes "$probes" \
        --ringbuf-pages "$(karg ringbuf_pages 16384)" \
        --reorder-window "$(karg reorder_window 5s)" \
        --lock-stacks "$(karg lock_stacks per-lock)" "${extra[@]}" -- "$@" ;;
  esac
}

# zsstress_check NAME ROUNDS ARGS: the guest check ztrace/checks/NAME.py, its rounds each one
# insmod/rmmod of zsstress.ko (built by the host: ztrace/vm/kmod.py) with module arguments
# ARGS; `-p rounds=` overrides ROUNDS. Result in $O/NAME.json, ARGS in $O/zsstress.args.
zsstress_check() {
  local name=$1 rounds=$2 args=$3 ko=$O/kmod/zsstress.ko
  [ -f "$ko" ] || die "no $ko (the host builds it: ztrace/vm/kmod.py)"
  echo "$args" >"$O/zsstress.args"
  phase workload python3 -m "ztrace.checks.$name" --rounds "$(karg rounds "$rounds")" \
    -o "$O/$name.json" -- /bin/sh -c "insmod $ko $args && rmmod zsstress" \
    || die "$name failed"
}

doctor() {
  if python3 -m ztrace doctor --help >/dev/null 2>&1; then
    # ztrace.fentry=on: also --check-fentry, a real fentry load and attach (issue 12: a
    # feature probe is not trusted; doctor.json's fentry_check). Only there: it patches
    # vfs_read's ftrace site and back, which the calibration and validation runs do without
    local check=()
    [ "$(karg fentry off)" = on ] && check=(--check-fentry)
    python3 -m ztrace doctor --json "${check[@]}" >"$O/doctor.json" 2>"$O/doctor.err" \
      || log "doctor rc=$? (see doctor.err)"
  else
    log "ztrace doctor not available in this tree"
  fi
}

# in_cgroup CG cmd...: run cmd inside memory cgroup /sys/fs/cgroup/CG (created by make_cgroup).
in_cgroup() { /bin/sh "$VM/scenarios/cgexec.sh" "$@"; }
CGEXEC="/bin/sh $VM/scenarios/cgexec.sh"  # the same, as argv for `ztrace capture -- ...`
make_cgroup() {  # make_cgroup NAME MEMORY_MAX
  grep -qw memory /sys/fs/cgroup/cgroup.subtree_control \
    || echo +memory >/sys/fs/cgroup/cgroup.subtree_control
  mkdir -p "/sys/fs/cgroup/$1"
  echo "$2" >"/sys/fs/cgroup/$1/memory.max"
}

# set_comp DEV ALGO: pick zram's compressor. 6.12's Debian build has no lzo backend for zram
# (CONFIG_ZRAM_BACKEND_LZO unset) and 6.1 defaults to lzo-rle, so both use lz4 unless told.
set_comp() {
  echo "$2" >"/sys/block/$1/comp_algorithm" 2>/dev/null \
    || log "zram comp_algorithm $2 not available; keeping $(cat /sys/block/$1/comp_algorithm)"
}

zswap_off() { [ -w /sys/module/zswap/parameters/enabled ] && echo 0 >/sys/module/zswap/parameters/enabled; true; }
# zram_on DISKSIZE: zswap off, zram0 with the compressor of `-p comp=` (default lz4), sized
zram_on() {
  zswap_off
  modprobe zram num_devices=1 || die "modprobe zram"
  set_comp zram0 "$(karg comp lz4)"
  echo "$1" >/sys/block/zram0/disksize
}

# zswap_on SWAP_MB POOL_PERCENT: a swapfile of SWAP_MB and zswap on zsmalloc with lzo, the
# pool limit at POOL_PERCENT of RAM and the shrinker on where the kernel has one. The rootfs
# is the snapshot=on image, so the swapfile never reaches the cached image.
zswap_on() {
  local z=/sys/module/zswap/parameters
  [ -d $z ] || die "no zswap in this kernel"
  swapoff -a 2>/dev/null
  fallocate -l "$1M" /swapfile 2>/dev/null || dd if=/dev/zero of=/swapfile bs=1M count="$1" status=none
  chmod 600 /swapfile; mkswap /swapfile >/dev/null; swapon /swapfile || die "swapon"
  echo lzo >$z/compressor
  # 6.1 defaults to zbud; the whole point is zsmalloc.
  echo zsmalloc >$z/zpool || die "zpool zsmalloc"
  echo "$2" >$z/max_pool_percent
  [ -w $z/shrinker_enabled ] && echo Y >$z/shrinker_enabled
  echo Y >$z/enabled
  grep -H . $z/*
}

# zs_pool_layout: byte offsets of struct zs_pool's locks from this kernel's BTF, so the host can
# tell the pool lock (6.1: pool->lock) and the migrate rwlock (6.9+: pool->lock is an rwlock,
# older 6.x: pool->migrate_lock) from per-class locks by address (lock_addr - pool).
zs_pool_layout() {
  local btf=/sys/kernel/btf/zsmalloc
  [ -f $btf ] || btf=/sys/kernel/btf/vmlinux
  if [ "$btf" = /sys/kernel/btf/vmlinux ]; then
    bpftool btf dump file $btf >/tmp/btf.txt 2>/dev/null
  else
    bpftool -B /sys/kernel/btf/vmlinux btf dump file $btf >/tmp/btf.txt 2>/dev/null
  fi
  python3 "$VM/counters.py" --pool-layout /tmp/btf.txt >"$O/zs_pool_layout.json" \
    || log "zs_pool_layout: no struct zs_pool in $btf"
}

common_start() {
  : >"$O/phases.tsv"
  log "scenario $ZTRACE_VM_SCENARIO on $(uname -r), nproc=$(nproc)," \
      "mem=$(awk '/MemTotal/{print $2}' /proc/meminfo)kB"
  # Which spinlock the guest runs. With the CPUID hypervisor bit (qemu sets it, TCG too) and
  # no PV spinlocks (KVM's kvm_spinlock_init; TCG has none), virt_spin_lock_key stays on and
  # every contended spinlock is a test-and-set loop, unfair and never queued (6.1 and 6.12
  # arch/x86/include/asm/qspinlock.h: virt_spin_lock; arch/x86/kernel/paravirt.c:
  # native_pv_lock_init), so lock:contention_begin, which sits on the queue path, never fires.
  log "cpu flag hypervisor: $(grep -qw hypervisor /proc/cpuinfo && echo yes || echo no);" \
      "$(dmesg | grep -m1 -o 'Booting paravirtualized kernel.*' || echo 'no paravirt boot line')"
  # Which clock the probes' timestamps come from (bpf_ktime_get_ns reads the clocksource):
  # under TCG the TSC may be judged unstable, and a port-I/O clock (acpi_pm, hpet) is coarse
  # and costs a device exit per read.
  log "clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null)" \
      "(available: $(cat /sys/devices/system/clocksource/clocksource0/available_clocksource 2>/dev/null));" \
      "$(dmesg | grep -i -E 'tsc.*(unstable|calibrat|detected)|clocksource.*(switch|watchdog|unstable)' | tr '\n' '|' | head -c 600)"
  # Load zsmalloc (a module on 6.1, built in on 6.12) and zram first, so the inventory and
  # doctor see their symbols; scenarios' later `modprobe zram` calls are then no-ops.
  modprobe zsmalloc 2>/dev/null; modprobe zram num_devices=1 || log "modprobe zram failed"
  zs_pool_layout  # lets the host name contended locks by address (ztrace/vm/contention.py)
  python3 "$VM/counters.py" --inventory || log "inventory failed"
  have_capture; log "ztrace capture available: $CAPTURE_AVAILABLE"
  doctor
}
