#!/usr/bin/env bash
# The management service's rates and restart time with many containers (issue: state that
# scales). A local system of 3 engines (1 target each), run twice: the management service on
# rank 0 alone (a journal append and sync per command, a snapshot now and then), then
# replicated on 3 access points (raft: a log append per command, snapshots). Each:
# `tessera-bench mgmt` creates CONTAINERS containers (8 client threads), then 2,000 container
# open + close pairs among them, 2,000 container queries and 200 pool queries (each answer
# lists every container); then the system stops and starts again and the time until
# `tessera pool query` answers is the management restart time. The baseline beside them: one
# 4 KiB write + fdatasync on the same file system (fio), what a durable command costs at least.
# Usage: perf/mgmt.sh [CONTAINERS] [MODES]   (defaults 10000 and "host access-points")
set -euo pipefail
cd "$(dirname "$0")/.."
source perf/common.sh
N="${1:-10000}"
MODES="${2:-host access-points}"
local_system_workdir
# KEEP=1 keeps the work directory (the engines' logs) at the end.
trap '"$CLI" system stop >/dev/null 2>&1 || true; [ "${KEEP:-0}" = 1 ] && echo "kept $WORK" || rm -rf "$WORK"' EXIT
read -r sync_iops sync_mean < <(fio --name=base --filename="$WORK/fio.dat" --size=64M \
  --ioengine=io_uring --direct=1 --bs=4k --rw=randwrite --iodepth=1 --fdatasync=1 \
  --number_ios=2000 --output-format=json 2>/dev/null |
  python3 -c 'import json,sys; w=json.load(sys.stdin)["jobs"][0]["write"]; print(w["iops"], w["clat_ns"]["mean"]/1000)')
rm -f "$WORK/fio.dat"
for mode in $MODES; do
  d="$WORK/$mode"
  export TESSERA_SYSTEM="$d/sys"
  args=()
  [ "$mode" = access-points ] && args=(--access-points 3)
  "$CLI" system start --dir "$d/sys" --engines 3 --targets 1 "${args[@]}" >/dev/null 2>&1
  "$CLI" pool create tank --target-size 64M >/dev/null 2>&1
  mgmt=$(python3 -c "import json;print(json.load(open('$d/sys/system.json'))['mgmt'])")
  TESSERA_AGENT="$d/sys/agent.sock" "$BIN/tessera-bench" -e "$mgmt" --json mgmt --pool tank \
    --containers "$N" --opens 2000 --queries 2000 --threads 8 >"$d/bench.json"
  "$CLI" system stop >/dev/null 2>&1
  t0=$(date +%s.%N)
  "$CLI" system start >/dev/null 2>&1
  until "$CLI" pool query tank >/dev/null 2>&1; do sleep 0.05; done
  t1=$(date +%s.%N)
  state=$(du -scb "$d/sys/rank0/mgmt-state.json" "$d/sys/rank0/mgmt-state.json.journal" "$d/sys/rank0/mgmt-raft" 2>/dev/null | tail -1 | cut -f1 || true)
  "$CLI" system stop >/dev/null 2>&1
  python3 - "$d/bench.json" "$mode" "$t0" "$t1" "$state" "$sync_mean" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
mode, t0, t1, state, sync_us = sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
c, o, q, pq = j["creates"], j["open_close"], j["queries"], j["pool_queries"]
print(f"{mode}: {j['containers']} containers, {j['threads']} client threads")
print(f"  container create   {c['per_s']:8.0f}/s  p50 {c['p50_us']/1000:8.2f} ms  p99 {c['p99_us']/1000:8.2f} ms")
print(f"  open + close       {o['per_s']:8.0f}/s  p50 {o['p50_us']/1000:8.2f} ms  p99 {o['p99_us']/1000:8.2f} ms")
print(f"  container query    {q['per_s']:8.0f}/s  p50 {q['p50_us']/1000:8.2f} ms  p99 {q['p99_us']/1000:8.2f} ms")
print(f"  pool query         {pq['per_s']:8.0f}/s  p50 {pq['p50_us']/1000:8.2f} ms  p99 {pq['p99_us']/1000:8.2f} ms  (each lists every container)")
print(f"  restart: system start to the first pool query answered {t1 - t0:.2f} s; rank 0's management files {state/1e6:.1f} MB")
print(f"  baseline: a 4 KiB write + fdatasync {sync_us:.1f} us (a durable command's floor); "
      f"creates at {1e6 / sync_us / c['per_s']:.0f}x that cost")
PY
done
