#!/usr/bin/env bash
# Installs dependencies (Debian 12 packages), builds Tessera with -Werror and runs the whole
# test suite through ctest. Usage: scripts/test.sh [preset]   (default: release; also dev, asan, tsan)
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET="${1:-release}"

bash scripts/install-deps.sh

JOBS="$(nproc)"
cmake --preset "$PRESET" -DTESSERA_BUILD_TESTS=ON
cmake --build --preset "$PRESET" -j "$JOBS"

# The frame decoder's libFuzzer target needs clang: build it in its own small tree when clang
# is present, so the suite runs a short real fuzzing session too.
EXTRA=()
if command -v clang++ >/dev/null 2>&1 && [ "$PRESET" = "release" ]; then
  cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
        -DTESSERA_BUILD_PERF=OFF -DTESSERA_FUZZ_ONLY=ON >/dev/null
  cmake --build build/fuzz -j "$JOBS" --target fuzz_frame
fi

cd "build/$PRESET"
ctest --output-on-failure -j 2 --timeout 900
if [ -x ../fuzz/tests/fuzz/fuzz_frame ]; then
  echo "libFuzzer: 1000000 runs of the frame decoder"
  ../fuzz/tests/fuzz/fuzz_frame -runs=1000000 -max_len=4096 -seed=1 2>&1 | tail -n 2
fi
