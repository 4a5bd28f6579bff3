#!/usr/bin/env bash
# What distributed transactions cost replicated updates: 4 KiB single-value updates in an RP_3G1
# container of a 3-engine local system (1 target each), latency at queue depth 1 and the rate at
# queue depth 32, beside the disk in the same run (fio, io_uring, direct, 4 KiB: a durable write
# at QD1 with fdatasync after each, and unsynced random writes at QD32).
# With BEFORE=<release build directory of a commit older than transactions> (e.g. dea1b3c, built
# with `cmake --build --preset release --target tessera-server tessera_cli tessera-agent`), that build's
# engines run in each round too, first (the benchmark client is this build's): before and after.
# Then transactions of 8 such updates each (8 in flight), this build only: their rate in updates/s
# beside the single-update rate.
# NOW_ARGS: more `tessera system start` arguments for this build's engines only, e.g.
# NOW_ARGS=--engine-arg=--spin-us=0 to have them sleep as soon as they are idle.
# Usage: [BEFORE=DIR] [NOW_ARGS=...] perf/dtx.sh [ROUNDS]   (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
source perf/common.sh
ROUNDS="${1:-2}"
BEFORE="${BEFORE:-}"
WORK="$(mktemp -d /var/tmp/tessera-dtx.XXXXXX)"
CLI_NOW="$BIN/tessera"
CLI=""
trap '[ -n "$CLI" ] && "$CLI" system stop >/dev/null 2>&1; rm -rf "$WORK"' EXIT
MODES=(now)
[ -n "$BEFORE" ] && MODES=(before now)

fio_json() {  # fio_json ARGS... -> the write side's JSON
  fio --name=base --filename="$WORK/fio.dat" --size=256M --ioengine=io_uring --direct=1 \
      --bs=4k --numjobs=1 --output-format=json --randrepeat=1 "$@" 2>/dev/null |
    python3 -c 'import json,sys; w=json.load(sys.stdin)["jobs"][0]["write"]; print(w["iops"], w["clat_ns"]["mean"]/1000, w["clat_ns"]["percentile"]["50.000000"]/1000)'
}

run_one() {  # run_one MODE ROUND -> appends "mode p50 p99 mean iops" to $WORK/results
  local mode="$1" round="$2" d="$WORK/$1-$2"
  CLI="$CLI_NOW"
  [ "$mode" = before ] && CLI="$BEFORE/apps/tessera"
  export TESSERA_SYSTEM="$d/sys"
  local args=()
  [ "$mode" = now ] && read -r -a args <<<"${NOW_ARGS:-}"
  "$CLI" system start --dir "$d/sys" --engines 3 --targets 1 "${args[@]}" >/dev/null
  "$CLI" pool create tank --target-size 1G >/dev/null
  "$CLI" cont create tank c --oclass RP_3G1 --rf 2 >/dev/null
  local mgmt
  mgmt=$(python3 -c "import json;print(json.load(open('$d/sys/system.json'))['mgmt'])")
  # Multi-key transactions too (this build's engines only: older ones have none).
  local tx=()
  [ "$mode" = now ] && tx=(--tx-keys 8 --tx-threads 8 --tx-count 1000)
  # The benchmark is a user of the system: the system's agent vouches for it.
  TESSERA_AGENT="$d/sys/agent.sock" "$BIN/tessera-bench" -e "$mgmt" --json cont --pool tank --cont c --bs 4K --iters 2000 \
    --count 20000 --qd 32 "${tx[@]}" >"$d/bench.json"
  "$CLI" system stop >/dev/null
  CLI=""
  python3 - "$d/bench.json" "$mode" >>"$WORK/results" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
c, t = j["cont"], j.get("tx", {})
print(sys.argv[2], c["p50_us"], c["p99_us"], c["mean_us"], c["iops"],
      t.get("p50_us", 0), t.get("tx_per_s", 0), t.get("keys_per_s", 0))
PY
  rm -rf "$d"
}

read -r sync_iops sync_mean sync_p50 < <(fio_json --rw=randwrite --iodepth=1 --fdatasync=1 --number_ios=4000)
read -r qd_iops _ _ < <(fio_json --rw=randwrite --iodepth=32 --number_ios=40000)
rm -f "$WORK/fio.dat"
for r in $(seq 1 "$ROUNDS"); do
  for m in "${MODES[@]}"; do run_one "$m" "$r"; done
done
python3 - "$WORK/results" "$sync_p50" "$sync_mean" "$qd_iops" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
sync_p50, sync_mean, qd_iops = map(float, sys.argv[2:5])
modes = [m for m in ("before", "now") if any(r[0] == m for r in rows)]
avg = {m: [st.mean(float(r[i]) for r in rows if r[0] == m) for i in range(1, 5)] for m in modes}
n = sum(1 for r in rows if r[0] == "now")
print(f"RP_3G1, 3 engines x 1 target, 4 KiB single values (each: mean of {n} rounds)")
print(f"{'engines':<8} {'QD1 p50 us':>11} {'QD1 p99 us':>11} {'QD1 mean us':>12} {'QD32 updates/s':>15}")
for m in modes:
    a = avg[m]
    print(f"{m:<8} {a[0]:11.1f} {a[1]:11.1f} {a[2]:12.1f} {a[3]:15.0f}")
print(f"{'disk':<8} {sync_p50:11.1f} {'':>11} {sync_mean:12.1f} {qd_iops:15.0f}"
      "   (fio 4K: QD1 write+fdatasync; QD32 unsynced randwrite)")
now = avg["now"]
print(f"now / disk: QD1 p50 {now[0] / sync_p50:.2f}x, QD32 rate {now[3] / qd_iops:.3f}x")
tx = [st.mean(float(r[i]) for r in rows if r[0] == "now") for i in range(5, 8)]
print(f"transactions of 8 updates of 4 KiB (one RP_3G1 group, 3 copies each): one at a time "
      f"p50 {tx[0]:.1f} us; 8 at once {tx[1]:.0f} tx/s = {tx[2]:.0f} updates/s "
      f"({tx[2] / now[3]:.2f}x the QD32 single-update rate, {tx[2] / qd_iops:.3f}x the disk)")
if "before" in avg:
    b = avg["before"]
    print(f"now / before: QD1 p50 {now[0] / b[0]:.3f}x, mean {now[2] / b[2]:.3f}x, "
          f"QD32 rate {now[3] / b[3]:.3f}x")
PY
