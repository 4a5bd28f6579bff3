#!/usr/bin/env bash
# What a Prometheus scrape costs an engine (GET /metrics once a second, docs/OPERATIONS.md).
# A 3-engine local system (2 targets each, RP_3G1 container); rank 0's CPU is read from
# /proc/PID/task/*/schedstat (ns on CPU, per thread):
#  1. idle: SCRAPES scrapes 250 ms apart (each one gathers: the engine keeps a scrape 200 ms)
#     against the same time without scrapes: the engine's CPU per scrape, all threads;
#  2. under load (tessera-bench, 4 KiB updates at queue depth 32, for the whole phase): windows
#     with and without a scrape a second, SECS seconds of each: the engine's CPU per request it
#     served in each, and its metrics thread's CPU, beside one core (the goal: under 1% of one).
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

# 2. Under load: windows of SECS/2 seconds alternately unscraped (A) and scraped once a second
# (B), 2 of each; a scrape at each window's edges counts the requests rank 0 served, so the
# CPU is compared per request served (the load's rate drifts on a shared machine).
served() {  # requests rank 0 served so far
  curl -sf "http://$METRICS/metrics" | awk '/^tessera_requests_total/ {s += $2} END {printf "%d\n", s}'
}
TESSERA_AGENT="$WORK/sys/agent.sock" "$BIN/tessera-bench" -e "$MGMT" --json cont --pool tank \
  --cont c --bs 4K --iters 1 --count 100000000 --qd 32 >/dev/null 2>&1 &
BENCH=$!
sleep 3
HALF=$(( (SECS + 1) / 2 ))
: >"$WORK/windows"
for mode in A B A B; do
  sleep 0.3  # the edge scrape's 200 ms cache ends
  r0=$(served); c0=$(cpu_ns); m0=$(cpu_ns metrics)
  if [ "$mode" = A ]; then sleep "$HALF"; else for _ in $(seq 1 "$HALF"); do scrape; sleep 1; done; fi
  r1=$(served); c1=$(cpu_ns); m1=$(cpu_ns metrics)
  echo "$mode $((r1 - r0)) $((c1 - c0)) $((m1 - m0)) $HALF" >>"$WORK/windows"
done
kill "$BENCH" 2>/dev/null || true; wait "$BENCH" 2>/dev/null || true

python3 - "$SCRAPES" "$idle_quiet" "$idle_scraped" "$BYTES" "$SERIES" "$WORK/windows" <<'PY'
import sys
n, quiet, scraped, size, series = map(int, sys.argv[1:6])
rows = [l.split() for l in open(sys.argv[6])]
per = (scraped - quiet) / n / 1e6
print(f"one scrape of rank 0 (2 targets, 1 pool): {size} bytes, {series} samples")
print(f"idle engine: {quiet/1e6:.1f} ms of CPU in {n * 0.25:.0f} s without scrapes, "
      f"{scraped/1e6:.1f} ms with {n}: {per:.2f} ms of CPU per scrape, all threads "
      f"= {per / 10:.3f}% of one core at one scrape per second")
tot = {}
for mode, req, cpu, met, secs in rows:
    t = tot.setdefault(mode, [0, 0, 0, 0])
    for i, v in enumerate((req, cpu, met, secs)):
        t[i] += int(v)
    print(f"  window {mode}: {int(req)/int(secs):8.0f} requests/s, engine {int(cpu)/1e9/int(secs)*100:5.1f}% "
          f"of a core, {int(cpu)/1e3/max(int(req),1):6.1f} us of CPU per request, metrics thread "
          f"{int(met)/1e9/int(secs)*100:.3f}%")
a, b = tot["A"], tot["B"]
ua, ub = a[1] / 1e3 / a[0], b[1] / 1e3 / b[0]
rate = b[0] / b[3]
print(f"under load: engine CPU per request {ua:.1f} us unscraped (A), {ub:.1f} us scraped once a "
      f"second (B): {100 * (ub - ua) / ua:+.1f}%, i.e. {(ub - ua) * rate / 1e4:+.2f}% of one core at "
      f"B's {rate:.0f} requests/s; metrics thread {b[2] / 1e9 / b[3] * 100:.3f}% of one core "
      f"(baseline: 1 core = 100%)")
PY
