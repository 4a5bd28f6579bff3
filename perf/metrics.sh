#!/usr/bin/env bash
# What a Prometheus scrape costs an engine (GET /metrics once a second, docs/OPERATIONS.md).
# A 3-engine local system (2 targets each, RP_3G1 container); rank 0's CPU is read from
# /proc/PID/task/*/schedstat (ns on CPU, per thread):
#  1. idle: SCRAPES scrapes 250 ms apart (each one gathers: the engine keeps a scrape 200 ms)
#     against the same time without scrapes: the engine's CPU per scrape, all threads;
#  2. under load (tessera-bench, 4 KiB updates at queue depth 32, for the whole phase): SECS
#     seconds without scrapes, then SECS seconds scraped once a second: the engine's CPU in
#     each, and its metrics thread's, beside one core (the baseline: "under 1% of a core").
# Usage: perf/metrics.sh [SECS] [SCRAPES]   (defaults 30 and 40)
set -euo pipefail
cd "$(dirname "$0")/.."
source perf/common.sh
SECS="${1:-30}"
SCRAPES="${2:-40}"
local_system_workdir
"$CLI" system start --dir "$WORK/sys" --engines 3 --targets 2 >/dev/null
"$CLI" pool create tank --target-size 512M >/dev/null
"$CLI" cont create tank c --oclass RP_3G1 --rf 2 >/dev/null
read -r PID METRICS MGMT < <("$CLI" --json system query | python3 -c '
import json, sys
j = json.load(sys.stdin)
r = [x for x in j["ranks"] if x["rank"] == 0][0]
print(r["pid"], r["metrics"], j["mgmt"])')

cpu_ns() {  # cpu_ns [COMM]: ns on CPU of rank 0's threads (named COMM only, if given)
  local sum=0 t
  for t in /proc/"$PID"/task/*; do
    if [ -n "${1:-}" ] && [ "$(cat "$t/comm" 2>/dev/null)" != "$1" ]; then continue; fi
    sum=$((sum + $(cut -d' ' -f1 "$t/schedstat" 2>/dev/null || echo 0)))
  done
  echo "$sum"
}
scrape() { curl -sf "http://$METRICS/metrics" >"$WORK/scrape.txt"; }
scrape
BYTES=$(wc -c <"$WORK/scrape.txt")
SERIES=$(grep -vc '^#' "$WORK/scrape.txt")

# 1. Idle.
a=$(cpu_ns); sleep "$(python3 -c "print($SCRAPES * 0.25)")"; b=$(cpu_ns)
for _ in $(seq 1 "$SCRAPES"); do scrape; sleep 0.25; done
c=$(cpu_ns)
idle_quiet=$((b - a)); idle_scraped=$((c - b))

# 2. Under load.
TESSERA_AGENT="$WORK/sys/agent.sock" "$BIN/tessera-bench" -e "$MGMT" --json cont --pool tank \
  --cont c --bs 4K --iters 1 --count 100000000 --qd 32 >/dev/null 2>&1 &
BENCH=$!
sleep 3
l0=$(cpu_ns); m0=$(cpu_ns metrics); sleep "$SECS"; l1=$(cpu_ns); m1=$(cpu_ns metrics)
for _ in $(seq 1 "$SECS"); do scrape; sleep 1; done
l2=$(cpu_ns); m2=$(cpu_ns metrics)
kill "$BENCH" 2>/dev/null || true; wait "$BENCH" 2>/dev/null || true

python3 - "$SCRAPES" "$SECS" "$idle_quiet" "$idle_scraped" "$l0" "$l1" "$l2" "$m0" "$m1" "$m2" \
  "$BYTES" "$SERIES" <<'PY'
import sys
n, secs, quiet, scraped, l0, l1, l2, m0, m1, m2, size, series = map(int, sys.argv[1:])
per = (scraped - quiet) / n / 1e6
print(f"one scrape of rank 0 (2 targets, 1 pool): {size} bytes, {series} samples")
print(f"idle engine: {quiet/1e6:.1f} ms of CPU in {n * 0.25:.0f} s without scrapes, "
      f"{scraped/1e6:.1f} ms with {n}: {per:.2f} ms of CPU per scrape, all threads "
      f"= {per / 10:.3f}% of one core at one scrape per second")
load_q, load_s = (l1 - l0) / 1e9 / secs, (l2 - l1) / 1e9 / secs
mq, ms = (m1 - m0) / 1e9 / secs, (m2 - m1) / 1e9 / secs
print(f"under load ({secs} s each): engine {load_q * 100:.1f}% of a core unscraped, "
      f"{load_s * 100:.1f}% scraped once a second; its metrics thread {mq * 100:.3f}% -> "
      f"{ms * 100:.3f}% of one core (baseline: 1 core = 100%)")
PY
