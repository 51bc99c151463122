#!/usr/bin/env bash
# `make demo`: the main job on the bundled real sample (replays/samples, see its README).
#  1. locks: the 6.1 guest's parallel zram writers replayed under every lock design
#     -> results (Parquet) -> perf-style report -> report.html
#  2. LRU: the 6.12 guest's zswap traffic replayed under every LRU design, and swept over
#     pool limits -> report-lru.html
#  3. predicted vs measured: the zswap/zram samples as the "predict near zero" check (6.1 zram
#     measured 0, so no ratio), then the zsstress-spread pair, the one that gives ratios
set -euo pipefail
vpy=$1
out=${2:-build/demo}
samples=${ZTRACE_SAMPLES:-replays/samples}
locks=${ZTRACE_DEMO_LOCKS:-class,pool,pools:32,striped:8,magazine}
lru=${ZTRACE_DEMO_LRU:-none,zspage-lru,entry-lru,entry-lru-2nd-chance,swap-lru}
zt() { "$vpy" -m ztrace "$@"; }
rm -rf "$out/results" "$out/results-lru" "$out/results-sweep"
mkdir -p "$out"

echo "== ztrace demo 1/2: lock designs on $samples/default" >&2
zt validate-trace "$samples/default"
# --replicas 3: every design gets an interval, and the report ranks designs only where the
# intervals are apart (issue 10)
zt replay "$samples/default" --locks "$locks" --replicas 3 -o "$out/results" --json > "$out/summary.json"
zt report "$out/results"
zt dashboard "$out/results" -o "$out/report.html" --force  # a rerun replaces it

echo >&2
echo "== ztrace demo 2/2: LRU designs on $samples/guest-6.12-zswap" >&2
zt replay "$samples/guest-6.12-zswap" --locks class --lru "$lru" --pool-limit 8M \
  -o "$out/results-lru" --json > "$out/summary-lru.json"
# a results directory is written whole, never merged: the sweep gets its own, and the
# dashboard reads both
zt sweep "$samples/guest-6.12-zswap" --lru "$lru" --pool-limits 4M,8M,16M,32M,60M \
  -o "$out/results-sweep" > /dev/null
zt report "$out/results-lru"
zt report "$out/results-sweep"
zt dashboard "$out/results-lru" "$out/results-sweep" -o "$out/report-lru.html" --force  # a rerun replaces it

echo >&2
echo "== ztrace demo: the 'predict near zero' check: the 6.12 zswap and 6.1 zram samples under both designs" >&2
echo "  (6.1 zram measured 0 zsmalloc contention, the zswap capture has no lock probes: no ratio, only how near 0)" >&2
zt check cross-kernel --from "$samples/guest-6.12-zswap" --to "$samples/guest-6.1-zram" --runs 3
# 6.18's own design: class locks, zspage lock only tried (class-6.15, docs/replay-model.md)
zt replay "$samples/host-6.18-locks" --locks class-6.15 --sizes-from "$samples/guest-6.12-zswap" \
  --json > "$out/summary-host.json"
"$vpy" - "$out/summary-host.json" "$samples/host-6.18-locks" <<'PY'
import json, sys
from ztrace.checks.crosskernel import measured
r = json.load(open(sys.argv[1]))["locks"][0]
m = measured(sys.argv[2])
print(f"host 6.18 under class-6.15: predicted {r['contended']} contended, {r['wait_ns_total']} ns wait "
      f"(zs_malloc sizes imputed from the 6.12 sample); measured {m['contended']} contended, "
      f"{m['wait_ns_total']} ns wait")
PY
echo "caution: the 6.1 and host samples measured contention with lock:contention_begin alone," >&2
echo "  which never sees qspinlock's first (pending-bit) waiter: their 'measured' undercounts." >&2
echo "  The zsstress pair below adds the slowpath kprobe (docs/validation.md)." >&2

echo >&2
echo "== ztrace demo: measured zsmalloc contention, the same zsstress load on 6.1 and 6.12" >&2
for k in 6.1 6.12; do
  "$vpy" -m ztrace.vm.contention "$samples/guest-$k-zsstress"
done

echo >&2
echo "== ztrace demo: the pair to try, predicted / measured on both kernels: the quiet-host zsstress-spread pair" >&2
echo "  (switched-out time captured): both designs, both kernels, a ratio in every row" >&2
zt check cross-kernel --from "$samples/guest-6.12-zsstress-spread" \
  --to "$samples/guest-6.1-zsstress-spread" --runs 3

dir=$(cd "$out" && pwd)
echo >&2
echo "demo: results in $dir/results, $dir/results-lru and $dir/results-sweep (Parquet), summaries in $dir/summary*.json" >&2
echo "demo: dashboards written to $dir/report.html and $dir/report-lru.html (offline; open in a browser)" >&2
