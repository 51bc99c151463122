# The capture's ring lock contended from raw-tracepoint context, under the spinlock slowpath
# kprobe pair (ztrace/checks/ringlock.py): the regression check of the deadlock that hung the
# 6.1 guest in session 6's CI. Result in $O/ringlock.json.
. "$(dirname "$0")/lib.sh"
common_start
phase workload python3 -m ztrace.checks.ringlock --seconds "$(karg seconds 20)" \
  --json "$O/ringlock.json" || die "ringlock check failed"
log done
