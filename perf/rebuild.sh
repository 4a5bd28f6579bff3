#!/usr/bin/env bash
# Rebuild rate, and what a rebuild costs a foreground client, beside the disk's sequential write
# rate (fio, io_uring, direct) on the same file system in the same run.
#
#   perf/rebuild.sh            # 4 engines x 1 target, RP_2GX, MB=256 MiB of 4 MiB objects
#   MB=1024 SHARE=25 perf/rebuild.sh
#   BUILD=<older build> BENCH=build/release/apps/tessera-bench perf/rebuild.sh   # an older engine
#   LOGS=/tmp/rebuild-logs perf/rebuild.sh   # keep the engines' logs there
#
# MB of 4 MiB objects are written first (`tessera obj put`). Then a library client
# (`tessera-bench load`: 1 MiB updates, each an object of its own, QD=8 in flight) writes for the
# rest of the run and prints its rate every 250 ms; after BEFORE_S seconds one engine is killed
# (-9), the pool's self-healing rebuild copies the replicas it held to the other engines, and the
# load goes on AFTER_S seconds past the rebuild's end. The foreground figures are the load's mean
# rate before the kill, while the rebuild ran (from the generation's start to its completion, as
# the management service records them) and after it.
set -euo pipefail
cd "$(dirname "$0")/.."
. perf/common.sh
MB="${MB:-256}"
SHARE="${SHARE:-50}"
QD="${QD:-8}"
BEFORE_S="${BEFORE_S:-5}"
AFTER_S="${AFTER_S:-5}"
local_system_workdir

"$CLI" system start --dir "$WORK/sys" --engines 4 --targets 1 \
  --engine-arg=--rebuild-share-pct="$SHARE" >/dev/null
"$CLI" pool create tank --target-size "${TARGET_SIZE:-8G}" >/dev/null
"$CLI" cont create tank c --type ARRAY --oclass RP_2GX --rf 1 >/dev/null
head -c $((4 << 20)) /dev/urandom >"$WORK/obj"
now_ms() { date +%s%3N; }

for i in $(seq 1 $((MB / 4))); do
  "$CLI" obj put --pool tank --cont c --oid "$i" --dkey d --akey a --array -f "$WORK/obj" >/dev/null
done
fio_out=$(fio --name=base --filename="$WORK/fio.dat" --size="${MB}M" --bs=1M --rw=write \
  --ioengine=io_uring --direct=1 --iodepth=8 --output-format=json 2>/dev/null)
disk=$(echo "$fio_out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["write"]["bw"]/1024)')
rm -f "$WORK/fio.dat"

sysfile="$WORK/sys/system.json"
mgmt=$(python3 -c "import json;print(json.load(open('$sysfile'))['mgmt'])")
pid=$(python3 -c "import json;print(json.load(open('$sysfile'))['engines'][3]['pid'])")
# The load is a user of the system: the system's agent vouches for it.
TESSERA_AGENT="$WORK/sys/agent.sock" "${BENCH:-$BIN/tessera-bench}" -e "$mgmt" load --pool tank --cont c \
  --bs 1M --qd "$QD" --seconds 3600 --interval-ms 250 >"$WORK/load.txt" 2>"$WORK/load.err" &
load=$!
# However the script ends, the load ends with it.
keep_logs() {
  [ -n "${LOGS:-}" ] || return 0
  mkdir -p "$LOGS"
  for f in "$WORK"/sys/rank*/engine.log; do cp "$f" "$LOGS/$(basename "$(dirname "$f")").log"; done
}
trap 'kill "$load" 2>/dev/null || true; "$CLI" system stop >/dev/null 2>&1 || true; keep_logs; rm -rf "$WORK"' EXIT
t_load=$(now_ms)
sleep "$BEFORE_S"
t_kill=$(now_ms)
kill -9 "$pid"
# The failure detector reports the engine, and the service starts a generation.
generation() {
  "$CLI" pool query tank --no-space --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["pool"]["rebuild"].get("generation", 0))'
}
for _ in $(seq 1 600); do
  [ "$(generation)" -ge 1 ] && break
  sleep 0.1
done
# A generation that fails is followed by another after a back-off (docs/REBUILD.md): say so and
# wait for that one.
failed=0
until "$CLI" pool rebuild wait tank >/dev/null 2>"$WORK/wait.err"; do
  failed=$((failed + 1))
  echo "rebuild generation failed ($(tail -1 "$WORK/wait.err")); waiting for the next" >&2
  [ "$failed" -lt 5 ] || exit 1
done
t_done=$(now_ms)
rb=$("$CLI" pool query tank --no-space --json)
sleep "$AFTER_S"
kill -INT "$load" 2>/dev/null || true
wait "$load" 2>/dev/null || true
if grep -q "an update failed" "$WORK/load.err"; then
  echo "the foreground load saw failed updates:" >&2
  grep "an update failed" "$WORK/load.err" | head -5 >&2
fi
python3 - "$rb" "$disk" "$SHARE" "$QD" "$t_load" "$t_kill" "$t_done" "$WORK/load.txt" <<'PY'
import json, sys
rb = json.loads(sys.argv[1])["pool"]["rebuild"]
disk, share = float(sys.argv[2]), float(sys.argv[3])
qd = int(sys.argv[4])
t_load, t_kill, t_done = (int(x) for x in sys.argv[5:8])
mib = rb["bytes"] / 2**20
sec = max(rb["elapsed_ms"], 1) / 1000
rate = mib / sec
t_rb = t_done - rb["elapsed_ms"]  # the generation's start, as the service records its length
step = 250
samples = []
for line in open(sys.argv[8]):
    if line.startswith("#") or not line.strip():
        continue
    end, mibs = line.split()
    samples.append((int(end) - step, int(end), float(mibs)))
def mean(lo, hi):
    v = [r for (a, b, r) in samples if a >= lo and b <= hi]
    return (sum(v) / len(v) if v else float("nan")), len(v)
before, nb = mean(t_load + 1000, t_kill)
during, nd = mean(t_rb, t_done)
after, na = mean(t_done + 500, t_done + 100000)
print(f"rebuild: {rb['state']}, {rb['objects']} objects, {rb['records']} records, {mib:.1f} MiB in {sec:.2f} s = {rate:.1f} MiB/s (share {share:.0f}%)")
print(f"disk baseline (fio io_uring direct seq write, same fs): {disk:.1f} MiB/s; rebuild / disk = {rate / disk:.2f}")
print(f"foreground (library client, 1 MiB updates at QD {qd}, RP_2GX): before {before:.1f} MiB/s ({nb} x 250 ms), "
      f"during rebuild {during:.1f} MiB/s ({nd}), after {after:.1f} MiB/s ({na}); during / before = {during / before:.2f}")
PY
