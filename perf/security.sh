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

run_one() {  # run_one MODE ROUND -> appends "mode rtt_mean_us fetch_iops" to $DIR/results
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
rtt = json.load(open(sys.argv[1]))["rtt"][0]["mean_us"]
io = json.load(open(sys.argv[2]))
print(sys.argv[3], rtt, io["io"]["fetch_iops"])
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
by = {m: [(float(a), float(b)) for mm, a, b in rows if mm == m] for m in modes}
print(f"{'mode':<10} {'4K rtt mean us':>15} {'4K fetch IOPS':>14}   (each: mean of {len(by['secure'])} rounds)")
for m in modes:
    print(f"{m:<10} {st.mean(x for x, _ in by[m]):15.1f} {st.mean(y for _, y in by[m]):14.0f}")
ri = st.mean(x for x, _ in by["secure"]) / st.mean(x for x, _ in by["insecure"])
fi = st.mean(y for _, y in by["secure"]) / st.mean(y for _, y in by["insecure"])
print(f"secure / insecure: round trip {ri:.3f}x, fetch rate {fi:.3f}x")
if "before" in by:
    rb = st.mean(x for x, _ in by["secure"]) / st.mean(x for x, _ in by["before"])
    fb = st.mean(y for _, y in by["secure"]) / st.mean(y for _, y in by["before"])
    print(f"secure / before: round trip {rb:.3f}x, fetch rate {fb:.3f}x")
PY
