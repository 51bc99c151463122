# Only the inventory: symbols, ftrace-able functions, BTF, tracepoints, bcc, kernel config, with
# zram and zswap(zsmalloc) loaded so their module symbols are listed too.
. "$(dirname "$0")/lib.sh"
[ -w /sys/module/zswap/parameters/zpool ] && echo zsmalloc >/sys/module/zswap/parameters/zpool
common_start
snap idle
log done
