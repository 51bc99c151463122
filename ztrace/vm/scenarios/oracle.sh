# ztrace-vm: needs-wheels
# The zram oracle (ztrace/oracle/zram.py, `ztrace oracle zram`) inside the guest: drive
# /dev/zram0 with O_DIRECT writes, overwrites and discards and compare the zsmalloc model with
# the kernel's mm_stat page-exactly. On 6.1 this is the kernel that runs the <= 6.3 fullness
# generation and the legacy class table, which the host (6.18) cannot check. numba comes from
# the host's pip ($O/wheels, ztrace/vm/guestpip.py): the image does not carry it.
. "$(dirname "$0")/lib.sh"
common_start
OPS=$(karg ops 4000)
SLOTS=$(karg slots 2048)
zswap_off
t0=$(ts)
python3 -m pip install -q --no-index --find-links "$O/wheels" --break-system-packages numba \
  >"$O/pip.log" 2>&1 || die "pip install numba (see pip.log)"
log "numba installed in $(awk "BEGIN{print $(ts)-$t0}")s"
modprobe zram num_devices=1 || die "modprobe zram"
snap before
# stdout of the oracle alone goes to oracle.json (phase() logs to stdout too)
phase oracle /bin/sh -c "python3 -m ztrace oracle zram --ops $OPS --slots $SLOTS \
  --comp $(karg comp lz4) --seed $(karg seed 1) --json >$O/oracle.json"
rc=$?
snap after
log "oracle rc=$rc"
exit $rc
