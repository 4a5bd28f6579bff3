#!/usr/bin/env bash
# The control path at the size of a large system: perf/scale_bench runs the production
# management state machine, its pool encoder and decoder, and placement for N engines of 16
# targets (N = 8, 64, 256, 1024 by default; no engine process runs) and this prints the table of
# docs/SCALE.md: the pool map on the wire and its decode, placement lookups per second on one
# core, the state machine's time to take an engine's death (exclusion and rebuild plan), and the
# shards whose home moves on that exclusion and when 10% more engines join, beside the ideal.
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
print(f"{'engines':>7} {'targets':>7} {'map KiB':>8} {'decode ms':>9} {'lookups/s RP_3GX':>16} "
      f"{'EC_4P2GX':>9} {'exclude ms':>10} {'moved/ideal (excl)':>18} {'moved/ideal (+10%)':>18}")
for r in rows:
    t = r['engines'] * r['targets_per_engine']
    ex = r['moved_on_exclusion'] / r['ideal_on_exclusion'] if r['ideal_on_exclusion'] else 0
    gr = r['moved_on_extend'] / r['ideal_on_extend'] if r['ideal_on_extend'] else 0
    print(f"{r['engines']:>7} {t:>7} {r['map_bytes']/1024:>8.1f} {r['map_decode_ms']:>9.3f} "
          f"{r['lookups_per_s_rp3gx']:>16.0f} {r['lookups_per_s_ec4p2gx']:>9.0f} "
          f"{r['exclusion_ms']:>10.3f} "
          f"{r['moved_on_exclusion']:.4f}/{r['ideal_on_exclusion']:.4f} ={ex:>5.2f}x "
          f"{r['moved_on_extend']:.4f}/{r['ideal_on_extend']:.4f} ={gr:>5.2f}x")
print("goals at 1,024 x 16 (issue 25): a map change applied in < 10 ms; movement on exclusion"
      " <= 1.2x the ideal; rebuild planning < 1 s")
PY
