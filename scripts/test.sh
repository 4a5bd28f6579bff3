#!/usr/bin/env bash
# Installs dependencies (Debian 12 packages), builds Tessera with -Werror and runs the whole
# test suite through ctest. Usage: scripts/test.sh [preset]   (default: release; also dev, asan, tsan)
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET="${1:-release}"

bash scripts/install-deps.sh

JOBS="$(nproc)"
stage() { echo "== $1 (${SECONDS}s since the start)"; }

# The fuzz targets' mutation drivers run in every suite (ctest fuzz.<name>_driver). With
# TESSERA_LIBFUZZER=1 the libFuzzer binaries are built too, in their own clang tree, and ctest
# runs a short session of each (fuzz.<name>_libfuzzer); scripts/fuzz.sh runs longer campaigns.
# Not by default: the clang tree costs CI about 3 minutes of its 90.
stage "fuzz targets"
FUZZ=()
if [ "${TESSERA_LIBFUZZER:-0}" = "1" ] && command -v clang++ >/dev/null 2>&1 &&
   [ "$PRESET" = "release" ]; then
  bash scripts/fuzz.sh --build-only
  FUZZ=(-DTESSERA_LIBFUZZER_DIR="$PWD/build/fuzz/tests/fuzz")
fi

stage "build ($PRESET)"
cmake --preset "$PRESET" -DTESSERA_BUILD_TESTS=ON "${FUZZ[@]}"
cmake --build --preset "$PRESET" -j "$JOBS"

# Memory safety under faults: the simulations (cluster, transactions, rebuild), the fabric
# receiver whose senders are killed mid-message (FabricKill) and the shipped drills (drills once
# found use-after-free bugs: rebuild and reintegration holding a pool shard across fiber
# suspensions) run built with AddressSanitizer and UBSan, after the release suite;
# those drills then run only there (the random drills stay in the release suite, at full speed).
# The longest shipped drill (cascading failures under erasure coding, ~6 minutes under the
# sanitizers) stays in the release suite: CI's time limit. The whole suite under the sanitizers:
# scripts/test.sh asan. TESSERA_ASAN_SUBSET=0 skips this part and runs every shipped drill in the
# release suite instead.
# Data races: the unit and simulation tests (ctest labels unit and sim) run built with
# ThreadSanitizer. The whole suite: scripts/test.sh tsan. TESSERA_TSAN_SUBSET=0 skips it.
# Both sanitizer stages run the simulation's fixed seeds 1-4 (TESSERA_SIM_FIXED_SEEDS; the
# release stage runs all 12), one seed of each of the rebuild simulation's aggregation,
# erasure-coded stripe and partial-stripe variants (the release stage runs two), and build with line tables only
# (-g1, CMakePresets.json): CI's 90-minute limit.
SAN_SEEDS=(TESSERA_SIM_FIXED_SEEDS=4 TESSERA_REBUILD_SIM_AGG_SEEDS=1
           TESSERA_REBUILD_SIM_EC_ARRAYS_SEEDS=1 TESSERA_REBUILD_SIM_EC_PARTIAL_SEEDS=1)
RELEASE_ONLY_DRILL='cascading_failures_ec4p2'
ASAN_SUBSET=0
TSAN_SUBSET=0
if [ "$PRESET" = "release" ] && [ "${TESSERA_ASAN_SUBSET:-1}" != "0" ]; then ASAN_SUBSET=1; fi
if [ "$PRESET" = "release" ] && [ "${TESSERA_TSAN_SUBSET:-1}" != "0" ]; then TSAN_SUBSET=1; fi
EXCLUDE=()
if [ "$ASAN_SUBSET" = 1 ]; then
  ASAN_DRILLS="$(ls tests/drills/*.yaml | xargs -n1 basename | sed 's/\.yaml$//; s/-/_/g' |
                 grep -vx "$RELEASE_ONLY_DRILL" | paste -sd'|')"
  EXCLUDE=(-E "^Shipped/Drill\\.PassesWithNoLostWrite/(${ASAN_DRILLS})")
fi

stage "tests"
(cd "build/$PRESET" && ctest --output-on-failure -j 2 --timeout 900 "${EXCLUDE[@]}")

if [ "$ASAN_SUBSET" = 1 ]; then
  stage "sanitizer build and tests"
  cmake --preset asan -DTESSERA_BUILD_TESTS=ON
  cmake --build --preset asan -j "$JOBS" --target tessera-server tessera-agent tessera_cli sim dtx_sim rebuild_sim drills \
    unit_net  # (with fabric_blaster, its dependency)
  (cd build/asan && env "${SAN_SEEDS[@]}" ctest --output-on-failure -j 2 --timeout 1500 -R '^Simulation\.|^DtxSim\.|^RebuildSim\.|^Shipped/Drill\.|^FabricKill\.' \
                          -E "/${RELEASE_ONLY_DRILL}")
fi

if [ "$TSAN_SUBSET" = 1 ]; then
  stage "thread sanitizer build and tests (unit, simulation)"
  cmake --preset tsan -DTESSERA_BUILD_TESTS=ON
  cmake --build --preset tsan -j "$JOBS" --target tests_unit tests_sim
  (cd build/tsan && env "${SAN_SEEDS[@]}" ctest --output-on-failure -j 2 --timeout 1500 -L '^(unit|sim)$')
fi
stage "done"
