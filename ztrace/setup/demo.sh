#!/usr/bin/env bash
# `make demo`: the main job on the bundled sample trace.
# replay under every lock design -> results (Parquet) -> terminal report -> dashboard HTML.
set -euo pipefail
vpy=$1
out=${2:-build/demo}
sample=${ZTRACE_SAMPLE:-replays/samples/default}
zt() { "$vpy" -m ztrace "$@"; }
mkdir -p "$out"
echo "== ztrace demo on $sample" >&2
zt validate-trace "$sample"
designs=${ZTRACE_DEMO_LOCKS:-class,pool,pools:32,striped:8,magazine}
zt replay "$sample" --locks "$designs" -o "$out/results" --json > "$out/summary.json"
zt report "$out/results"
zt dashboard "$out/results" -o "$out/report.html"
echo >&2
echo "demo: results in $out/results, JSON summary in $out/summary.json" >&2
echo "demo: dashboard written to $(cd "$out" && pwd)/report.html (open it in a browser; it works offline)" >&2
