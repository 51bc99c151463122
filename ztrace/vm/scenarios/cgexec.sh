#!/bin/sh
# cgexec.sh CGROUP CMD...: move into /sys/fs/cgroup/CGROUP, then exec CMD. A script rather than a
# shell function so `ztrace capture -- ...` (which execs its argv) can run it.
cg=$1; shift
echo $$ >"/sys/fs/cgroup/$cg/cgroup.procs" || exit 1
exec "$@"
