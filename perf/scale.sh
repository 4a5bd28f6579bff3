#!/usr/bin/env bash
# The control path at the size of a large system: perf/scale_bench runs the production
# management state machine, its pool encoder and decoder, and placement for N engines of 16
# targets (N = 8, 64, 256, 1024 by default; no engine process runs) and this prints the table of
# docs/SCALE.md: the pool map on the wire, its decode and its application (decode and routes on
# a running target), placement lookups per second on one
# core, the state machine's time to take an engine's death (exclusion and rebuild plan), and the
# shards whose home moves on that exclusion and when 10% more engines join, beside the ideal;
# then a connect storm of container opens answered by the production management service, and
# SWIM's load and detection time at each size, on the simulator (needs the test build).
# Usage: perf/scale.sh [ENGINES]   e.g. perf/scale.sh 8,64,256,1024
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${BUILD:-build/release}"
ENGINES="${1:-8,64,256,1024}"
OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT
"$BUILD/perf/scale_bench" --engines "$ENGINES" --targets 16 >"$OUT"
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'engines':>7} {'targets':>7} {'map KiB':>8} {'decode ms':>9} {'apply ms':>8} {'lookups/s RP_3GX':>16} "
      f"{'EC_4P2GX':>9} {'cached':>9} {'exclude ms':>10} {'moved/ideal (excl)':>18} {'moved/ideal (+10%)':>18}")
for r in rows:
    t = r['engines'] * r['targets_per_engine']
    ex = r['moved_on_exclusion'] / r['ideal_on_exclusion'] if r['ideal_on_exclusion'] else 0
    gr = r['moved_on_extend'] / r['ideal_on_extend'] if r['ideal_on_extend'] else 0
    print(f"{r['engines']:>7} {t:>7} {r['map_bytes']/1024:>8.1f} {r['map_decode_ms']:>9.3f} "
          f"{r['map_apply_ms']:>8.3f} "
          f"{r['lookups_per_s_rp3gx']:>16.0f} {r['lookups_per_s_ec4p2gx']:>9.0f} "
          f"{r['cached_lookups_per_s_rp3gx']:>9.0f} "
          f"{r['exclusion_ms']:>10.3f} "
          f"{r['moved_on_exclusion']:.4f}/{r['ideal_on_exclusion']:.4f} ={ex:>5.2f}x "
          f"{r['moved_on_extend']:.4f}/{r['ideal_on_extend']:.4f} ={gr:>5.2f}x")
print()
print("connect storm: container opens answered by the management service (4 threads, no sockets)")
print(f"{'engines':>7} {'opens/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'answer KiB':>10} {'100k opens s':>12} "
      f"{'longest wait s':>14}")
for r in rows:
    if 'storm_opens_per_s' not in r:
        continue
    # 100,000 clients arriving evenly over 10 s, served first come first served: the last
    # one waits what the service has not done by then (a client gives up after 30 s).
    wait = max(0.0, r['storm_100k_s'] - 10)
    print(f"{r['engines']:>7} {r['storm_opens_per_s']:>8.0f} {r['storm_open_p50_ms']:>7.2f} "
          f"{r['storm_open_p99_ms']:>7.2f} {r['storm_reply_bytes']/1024:>10.1f} "
          f"{r['storm_100k_s']:>12.1f} {wait:>14.1f}{'  (> 30 s: timeouts)' if wait > 30 else ''}")
print("goals at 1,024 x 16 (issue 25): a map change applied in < 10 ms; movement on exclusion"
      " <= 1.2x the ideal; rebuild planning < 1 s; the connect storm with no request timing out")
PY

# SWIM: the production failure detector (actors/swim.cpp) of N engines on the simulator's
# virtual clock and network (tests/sim/swim_sim_test.cpp, SwimScale): a quiet system's load, then
# ten engines killed one at a time and the time until the management service hears of each.
SWIM="$BUILD/tests/swim_sim"
if [[ ! -x "$SWIM" ]]; then
  echo "SWIM: $SWIM is missing (configure with -DTESSERA_BUILD_TESTS=ON)"
  exit 0
fi
: >"$OUT"
IFS=, read -r -a NS <<<"$ENGINES"
for n in "${NS[@]}"; do
  TESSERA_SWIM_SCALE_RANKS="$n" "$SWIM" --gtest_filter='SwimScale.DetectionTimeAndLoad' |
    sed -n 's/^SWIM_SCALE //p' >>"$OUT"
done
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print()
print(f"{'engines':>7} {'SWIM msgs/engine/s':>18} {'bytes/msg':>9} {'bytes/engine/s':>14} "
      f"{'deaths':>6} {'reported: mean ms':>17} {'worst ms':>8} {'false':>5} {'wall s':>6}")
for r in rows:
    print(f"{r['engines']:>7} {r['messages_per_engine_s']:>18.2f} {r['bytes_per_message']:>9.0f} "
          f"{r['bytes_per_engine_s']:>14.0f} {r['kills']:>6} {r['detect_mean_ms']:>17.0f} "
          f"{r['detect_worst_ms']:>8.0f} {r['refused']:>5} {r['wall_s']:>6.1f}")
print("goals at 1,024 engines (issue 25): a dead engine detected in < 5 s, SWIM load < 10 "
      "messages per engine per second")
PY
