#!/usr/bin/env bash
# The asynchronous C API beside the C++ API (docs/API.md, "Event queues"): 4 KiB single-value
# updates and fetches with 64 calls in flight from one thread, over 64 S1 objects of a 3-engine
# local system (1 target each), the two APIs alternating in each round (perf/api_bench.cpp);
# beside the disk measured in the same run (fio, io_uring, direct, 4 KiB, QD64: unsynced random
# writes and random reads). Goal: the C API at >= 0.9x the C++ API's rate.
# Usage: perf/api.sh [ROUNDS] [OPS]   (default 3 rounds of 20000 calls per API and direction)
set -euo pipefail
cd "$(dirname "$0")/.."
source perf/common.sh
ROUNDS="${1:-3}"
OPS="${2:-20000}"
WORK="$(mktemp -d /var/tmp/tessera-api.XXXXXX)"
trap 'TESSERA_SYSTEM="$WORK/sys" "$BIN/tessera" system stop >/dev/null 2>&1; rm -rf "$WORK"' EXIT

fio_iops() {  # fio_iops RW -> IOPS
  fio --name=base --filename="$WORK/fio.dat" --size=256M --ioengine=io_uring --direct=1 \
      --bs=4k --iodepth=64 --numjobs=1 --output-format=json --randrepeat=1 --number_ios=40000 \
      --rw="$1" 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(j["write"]["iops"] + j["read"]["iops"])'
}
write_iops=$(fio_iops randwrite)
read_iops=$(fio_iops randread)
rm -f "$WORK/fio.dat"

export TESSERA_SYSTEM="$WORK/sys"
"$BIN/tessera" system start --dir "$WORK/sys" --engines 3 --targets 1 >/dev/null
"$BIN/tessera" pool create tank --target-size 1G >/dev/null
"$BIN/tessera" cont create tank c --oclass S1 >/dev/null
mgmt=$(python3 -c "import json;print(json.load(open('$WORK/sys/system.json'))['mgmt'])")
# The benchmark is a user of the system: the system's agent vouches for it.
TESSERA_AGENT="$WORK/sys/agent.sock" "$BUILD/perf/api_bench" "$mgmt" tank c "$OPS" 64 "$ROUNDS" \
  >"$WORK/results"
python3 - "$WORK/results" "$write_iops" "$read_iops" "$OPS" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
disk = {"update": float(sys.argv[2]), "fetch": float(sys.argv[3])}
print(f"4 KiB single values, S1 over 3 engines x 1 target, 64 in flight from one thread, "
      f"{sys.argv[4]} calls per round")
print(f"{'':<7} {'round':>5} {'C++ /s':>9} {'C /s':>9} {'C/C++':>6} {'C/disk':>7}")
for r in rows:
    cxx, c = float(r[2]), float(r[3])
    print(f"{r[0]:<7} {r[1]:>5} {cxx:9.0f} {c:9.0f} {c / cxx:6.2f} {c / disk[r[0]]:7.3f}")
for op in ("update", "fetch"):
    ratios = [float(r[3]) / float(r[2]) for r in rows if r[0] == op]
    print(f"{op}: C/C++ mean {st.mean(ratios):.2f}x (min {min(ratios):.2f}x); disk (fio QD64 "
          f"{'unsynced randwrite' if op == 'update' else 'randread'}) {disk[op]:.0f}/s")
PY
