#!/usr/bin/env bash
# Which production code the simulations run: builds them with gcc's --coverage in build/cov,
# runs the cluster, transaction, rebuild and SWIM simulations, and prints the share of lines of each file
# of storage/, shard/, actors/, rebuild/, mgmt/, placement/ and client/ they executed (gcov). docs/DEVELOPMENT.md records the
# figures. Usage: scripts/sim-coverage.sh   (about 10 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
B=build/cov
cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTESSERA_BUILD_TESTS=ON \
  -DCMAKE_CXX_FLAGS="--coverage -O1" -DCMAKE_EXE_LINKER_FLAGS="--coverage" >/dev/null
cmake --build "$B" -j "$(nproc)" --target sim dtx_sim rebuild_sim swim_sim
find "$B" -name '*.gcda' -delete
"$B/tests/sim" >/dev/null
"$B/tests/dtx_sim" >/dev/null 2>&1
"$B/tests/rebuild_sim" >/dev/null 2>&1
"$B/tests/swim_sim" >/dev/null 2>&1

# One line per source file: executed lines / lines, from the objects of its library.
report() {
  local dir=$1 objdir=$2
  (
    cd "$B/$objdir"
    for gcno in $(find . -maxdepth 1 -name '*.gcno' | sort); do
      src="$dir/$(basename "${gcno%.gcno}")"
      case "$src" in *.cpp) ;; *) continue ;; esac
      gcov -n -o "$(dirname "$gcno")" "$gcno" 2>/dev/null |
        awk -v want="$src" '
          /^File / { f = $2; gsub(/\x27/, "", f) }
          /^Lines executed:/ && index(f, want) == length(f) - length(want) + 1 {
            split($2, a, ":"); pct = a[2]; sub(/%/, "", pct); n = $4;
            if (!done) printf "%-42s %5.1f%% of %4d lines\n", want, pct, n; done = 1 }'
    done
  )
}
echo "lines each simulation run executed (sim, dtx_sim, rebuild_sim, swim_sim together):"
report storage storage/CMakeFiles/tessera_storage.dir
report shard shard/CMakeFiles/tessera_shard.dir
report actors actors/CMakeFiles/tessera_actors.dir
report actors/mgmt actors/CMakeFiles/tessera_actors.dir/mgmt
report rebuild rebuild/CMakeFiles/tessera_rebuild.dir
report mgmt mgmt/CMakeFiles/tessera_mgmt.dir
report placement placement/CMakeFiles/tessera_placement.dir
report client client/CMakeFiles/tessera_client.dir
