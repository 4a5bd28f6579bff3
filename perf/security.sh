#!/usr/bin/env bash
# What authentication costs on the data path: the 4 KiB round trip and the 4 KiB random fetch
# rate against an engine that authenticates (system key: it MACs every message it sends and
# checks every MAC it receives, and checks each request's container handle) and against the same
# engine in insecure mode (no key), alternated in one run: insecure, secure, insecure, secure.
# With BEFORE=<release build directory of a commit older than authentication> (e.g. 7c55d4f,
# built with `cmake --build --preset release --target tessera-server tessera-bench`), that
# build's engine and benchmark run in each round too, first: the figures before and after.
# Usage: [BEFORE=DIR] perf/security.sh [ROUNDS]   (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
source perf/common.sh
ROUNDS="${1:-2}"
BEFORE="${BEFORE:-}"
DIR="$(mktemp -d /tmp/tessera-sec.XXXXXX)"
trap 'stop_engine; rm -rf "$DIR"' EXIT
MODES=(insecure secure)
[ -n "$BEFORE" ] && MODES=(before insecure secure)

run_one() {  # run_one MODE ROUND -> appends "mode rtt_mean_us rtt_p50_us fetch_iops" to $DIR/results
  local mode="$1" round="$2" d="$DIR/$1-$2" extra=() bin="$BIN"
  [ "$mode" = insecure ] && extra=(--insecure)
  [ "$mode" = before ] && BIN="$BEFORE/apps" && export KEYLESS=1
  start_engine "$d" --targets 1 --cpus 0 --storage-size 1G --wal-size 128M "${extra[@]}"
  "$BIN/tessera-bench" -e "$ENGINE" --json rtt --sizes 4K --iters 5000 >"$d/rtt.json"
  "$BIN/tessera-bench" -e "$ENGINE" --json io --bs 4K --total 128M --qd 32 --random >"$d/io.json"
  stop_engine
  BIN="$bin"
  export KEYLESS=0
  python3 - "$d/rtt.json" "$d/io.json" "$mode" >>"$DIR/results" <<'PY'
import json, sys
rtt = json.load(open(sys.argv[1]))["rtt"][0]
io = json.load(open(sys.argv[2]))
print(sys.argv[3], rtt["mean_us"], rtt["p50_us"], io["io"]["fetch_iops"])
PY
  rm -rf "$d/data"
}

for r in $(seq 1 "$ROUNDS"); do
  for m in "${MODES[@]}"; do run_one "$m" "$r"; done
done
python3 - "$DIR/results" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
modes = [m for m in ("before", "insecure", "secure") if any(r[0] == m for r in rows)]
by = {m: [tuple(float(v) for v in r[1:]) for r in rows if r[0] == m] for m in modes}
avg = {m: [st.mean(r[i] for r in by[m]) for i in range(3)] for m in modes}
print(f"{'mode':<10} {'4K rtt mean us':>15} {'4K rtt p50 us':>14} {'4K fetch IOPS':>14}"
      f"   (each: mean of {len(by['secure'])} rounds)")
for m in modes:
    print(f"{m:<10} {avg[m][0]:15.1f} {avg[m][1]:14.1f} {avg[m][2]:14.0f}")
for base in [b for b in ("insecure", "before") if b in avg]:
    s, b = avg["secure"], avg[base]
    print(f"secure / {base}: round trip mean {s[0] / b[0]:.3f}x, p50 {s[1] / b[1]:.3f}x, "
          f"fetch rate {s[2] / b[2]:.3f}x")
PY
