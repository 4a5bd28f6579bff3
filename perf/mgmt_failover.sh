#!/usr/bin/env bash
# Failover of the replicated management service: how long a management command waits when the
# leader of the access points is killed (-9) just before it, beside the same command on a
# healthy system and the raft election timeout (the floor of any failover) in the same run.
#
#   perf/mgmt_failover.sh            # 5 engines, 3 access points, TRIALS=5
#   TRIALS=10 perf/mgmt_failover.sh
#
# Each trial: `pool create` on the healthy system (baseline), then kill -9 the leader and time
# `pool create` from the kill to its answer; the killed access point is started again.
set -euo pipefail
cd "$(dirname "$0")/.."
. perf/common.sh
TRIALS="${TRIALS:-5}"
local_system_workdir

"$CLI" system start --dir "$WORK/sys" --engines 5 --targets 1 --access-points 3 >/dev/null
now() { date +%s.%N; }
leader() { "$CLI" system query --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])'; }

base=() fail=()
for t in $(seq 1 "$TRIALS"); do
  t0=$(now)
  "$CLI" pool create "b$t" --target-size 64M >/dev/null
  t1=$(now)
  base+=("$(echo "$t1 - $t0" | bc -l)")
  L=$(leader)
  t0=$(now)
  "$CLI" system kill --rank "$L" >/dev/null
  "$CLI" pool create "f$t" --target-size 64M >/dev/null
  t1=$(now)
  fail+=("$(echo "$t1 - $t0" | bc -l)")
  "$CLI" system start --ranks "$L" >/dev/null
done
python3 - "${base[*]}" "${fail[*]}" <<'PY'
import statistics, sys
base = [float(x) for x in sys.argv[1].split()]
fail = [float(x) for x in sys.argv[2].split()]
print("pool create, healthy (baseline): " + " ".join(f"{x:.2f}" for x in base) +
      f" s; median {statistics.median(base):.2f} s")
print("pool create, leader killed just before: " + " ".join(f"{x:.2f}" for x in fail) +
      f" s; median {statistics.median(fail):.2f} s, max {max(fail):.2f} s")
print("raft election timeout: 1.00 s (randomized up to 2.00 s); "
      f"failover / healthy = {statistics.median(fail) / statistics.median(base):.1f}x")
PY
