#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, a fully instrumented tree in build/fuzz) and runs a
# campaign: every target for the given time, each with its own corpus under build/fuzz/corpus.
# Usage: scripts/fuzz.sh [--build-only] [seconds per target, default 600] [targets...]
# Prints, per target, executions, coverage and any crash (the reproducer is left in
# build/fuzz/crashes/<target>/).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_ONLY=0
if [ "${1:-}" = "--build-only" ]; then BUILD_ONLY=1; shift; fi
SECONDS_EACH="${1:-600}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(frame body reassembly store)

cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
      -DTESSERA_BUILD_PERF=OFF -DTESSERA_FUZZ_ONLY=ON >/dev/null
cmake --build build/fuzz -j "$(nproc)" --target "${TARGETS[@]/#/fuzz_}"
[ "$BUILD_ONLY" = 1 ] && exit 0

status=0
for t in "${TARGETS[@]}"; do
  corpus="build/fuzz/corpus/$t"
  crashes="build/fuzz/crashes/$t"
  mkdir -p "$corpus" "$crashes"
  log="build/fuzz/$t.log"
  echo "== fuzz_$t for ${SECONDS_EACH}s"
  if ! "build/fuzz/tests/fuzz/fuzz_$t" -max_total_time="$SECONDS_EACH" -max_len=4096 \
        -artifact_prefix="$crashes/" -print_final_stats=1 "$corpus" >"$log" 2>&1; then
    status=1
    echo "   CRASH: see $log and $crashes/"
  fi
  grep -E '^stat::number_of_executed_units|^stat::average_exec_per_sec|^stat::peak_rss_mb' "$log" |
    sed 's/^/   /'
  grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 | sed 's/^/   final /'
  echo "   corpus: $(ls "$corpus" | wc -l) inputs"
done
exit $status
