# numpy's SIMD sorts under TCG (the zram capture segfault, docs/vm.md): npsort.py's checks run
# with numpy's CPU dispatch as is, then with its AVX2/AVX-512 targets disabled.
. "$(dirname "$0")/lib.sh"
: >"$O/phases.tsv"
log "scenario npsort on $(uname -r), nproc=$(nproc)"
grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx|sse4|fma|bmi)' | tr '\n' ' ' \
  >"$O/cpuflags.txt"
ROUNDS=$(karg rounds 300)
# lib.sh disables the AVX2 targets under TCG: this first run puts them back
env -u NPY_DISABLE_CPU_FEATURES python3 -X faulthandler "$VM/scenarios/npsort.py" "$ROUNDS" \
  >"$O/npsort-default.jsonl" 2>&1
echo "rc=$?" >>"$O/npsort-default.jsonl"
NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR" \
  python3 -X faulthandler "$VM/scenarios/npsort.py" "$ROUNDS" >"$O/npsort-baseline.jsonl" 2>&1
echo "rc=$?" >>"$O/npsort-baseline.jsonl"
log done
