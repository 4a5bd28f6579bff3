#!/usr/bin/env bash
# Rebuild rate and foreground throughput before, during and after a rebuild, beside the disk's
# sequential write rate (fio, io_uring, direct) on the same file system in the same run.
#
#   perf/rebuild.sh            # 4 engines x 1 target, RP_2GX, MB=256 MiB of 4 MiB objects
#   MB=512 SHARE=30 perf/rebuild.sh
#
# One engine is killed (-9) once the data is written; the pool's self-healing rebuild copies
# the replicas it held to the other engines while a writer keeps writing.
set -euo pipefail
cd "$(dirname "$0")/.."
. perf/common.sh
MB="${MB:-256}"
SHARE="${SHARE:-50}"
local_system_workdir

"$CLI" system start --dir "$WORK/sys" --engines 4 --targets 1 \
  --engine-arg=--rebuild-share-pct="$SHARE" >/dev/null
"$CLI" pool create tank --target-size 1G >/dev/null
"$CLI" cont create tank c --type ARRAY --oclass RP_2GX --rf 1 >/dev/null
head -c $((4 << 20)) /dev/urandom >"$WORK/obj"
now() { date +%s.%N; }

# write FIRST COUNT: objects FIRST.. of 4 MiB; prints MiB/s.
write() {
  local t0 t1
  t0=$(now)
  for i in $(seq "$1" $(($1 + $2 - 1))); do
    "$CLI" obj put --pool tank --cont c --oid "$i" --dkey d --akey a --array -f "$WORK/obj" >/dev/null 2>&1
  done
  t1=$(now)
  echo "$2 * 4 / ($t1 - $t0)" | bc -l
}

N=$((MB / 4))
before=$(write 1 "$N")
fio_out=$(fio --name=base --filename="$WORK/fio.dat" --size="${MB}M" --bs=1M --rw=write \
  --ioengine=io_uring --direct=1 --iodepth=8 --output-format=json 2>/dev/null)
disk=$(echo "$fio_out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["write"]["bw"]/1024)')
rm -f "$WORK/fio.dat"

pid=$(python3 -c "import json;print(json.load(open('$WORK/sys/system.json'))['engines'][3]['pid'])")
kill -9 "$pid"
# Foreground writes while the rebuild runs (new objects), then the rebuild's own figures.
during=$(write 100001 8)
"$CLI" pool rebuild wait tank >/dev/null 2>&1
rb=$("$CLI" pool query tank --no-space --json)
after=$(write 200001 8)
python3 - "$rb" "$disk" "$before" "$during" "$after" "$SHARE" <<'PY'
import json, sys
rb = json.loads(sys.argv[1])["pool"]["rebuild"]
disk, before, during, after, share = map(float, sys.argv[2:7])
mib = rb["bytes"] / 2**20
sec = max(rb["elapsed_ms"], 1) / 1000
rate = mib / sec
print(f"rebuild: {rb['state']}, {rb['objects']} objects, {rb['records']} records, {mib:.1f} MiB in {sec:.2f} s = {rate:.1f} MiB/s (share {share:.0f}%)")
print(f"disk baseline (fio io_uring direct seq write, same fs): {disk:.1f} MiB/s; rebuild / disk = {rate / disk:.2f}")
print(f"foreground writes (CLI, 4 MiB objects, RP_2GX): before {before:.1f} MiB/s, during rebuild {during:.1f} MiB/s, after {after:.1f} MiB/s; during / before = {during / before:.2f}")
PY
