# A kernel-build-like load under zswap (issue 10, item 6: the published kernel-build table was
# measured on `make -jN` of a kernel with zswap on). The guest has gcc-12 but no make and no
# kernel tree, so: kbuild_gen.py writes FILES C units that include one large shared header
# (structs and static inline helpers, as kernel headers are), and `xargs -P JOBS` runs one
# short-lived `gcc-12 -O2 -pipe -c` per unit, JOBS at a time, inside memory cgroup
# ztrace-kbuild whose memory.max is below the compilers' summed working set (each cc1 peaks
# at ~55-60 MB on these units), so their heaps are stored in, loaded from and written back by
# zswap. zswap, the swapfile and the cgroup are set up as the zswap scenario does (lib.sh).
. "$(dirname "$0")/lib.sh"
common_start
PROBES=$(karg probes zsmalloc,zswap,locks)
JOBS=$(karg jobs 4)
FILES=$(karg files 10)
LIMIT=$(karg memory_max 128M)
POOL=$(karg max_pool_percent 5)
FUNCS=$(karg funcs 6)  # functions per unit: cc1's time per unit
W=/tmp/kbuild  # the rootfs is the snapshot=on image: nothing here reaches the cached image
zswap_on 512 "$POOL"
make_cgroup ztrace-kbuild "$LIMIT"
# Sources are written outside the cgroup, before the capture: the header's page cache is
# then the root cgroup's, and only the compilers' own memory is under memory.max.
rm -rf $W; mkdir -p $W/out
python3 "$VM/scenarios/kbuild_gen.py" $W --files "$FILES" --funcs "$FUNCS" || die "kbuild_gen"
# A file rather than an `sh -c` string: `ztrace capture --` execs its argv, and the xargs
# line's own quoting would not survive a second shell's. xargs exits 123 if any compile fails.
cat >$W/build.sh <<EOF
cd $W && ls f*.c | xargs -P $JOBS -n 1 sh -c 'exec gcc-12 -O2 -pipe -c "\$0" -o "out/\${0%.c}.o"'
EOF
snap before
phase workload capture trace "$PROBES" -- $CGEXEC ztrace-kbuild /bin/sh $W/build.sh \
  || die "workload failed"
log "built $(ls $W/out | wc -l) of $FILES objects; memory.peak" \
    "$(cat /sys/fs/cgroup/ztrace-kbuild/memory.peak 2>/dev/null || echo n/a)"
snap after
phase swapoff swapoff /swapfile
snap after-swapoff
log done
