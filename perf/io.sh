#!/usr/bin/env bash
# Object update + fetch against one engine beside fio (io_uring, O_DIRECT) on the same file
# system, in the same run. Usage: perf/io.sh [DIR]   (DIR: where the target files and fio's file go)
#   1 MiB values, QD 4, 1 GiB:      tessera update/fetch  vs  fio write/read  bs=1M iodepth=4
#   4 KiB values, QD 32, 256 MiB:   tessera update/random fetch  vs  fio randwrite/randread bs=4k iodepth=32
# Tessera's update is durable before it is acknowledged (data write + WAL write + fdatasync,
# group-committed); plain fio writes are not synced, so the write ratio is conservative.
set -euo pipefail
cd "$(dirname "$0")/.."
source perf/common.sh
BASE="${1:-/var/tmp}"
DIR="$(mktemp -d "$BASE/tessera-io.XXXXXX")"
trap 'stop_engine; rm -rf "$DIR"' EXIT
SIZE_1M="${SIZE_1M:-1G}"
SIZE_4K="${SIZE_4K:-256M}"

fio_bw() {  # fio_bw rw bs qd size -> "MiB/s IOPS"
  fio --name=base --filename="$DIR/fio.dat" --size="$4" --ioengine=io_uring --direct=1 \
      --rw="$1" --bs="$2" --iodepth="$3" --numjobs=1 --time_based=0 --output-format=json \
      --randrepeat=1 >"$DIR/fio.json" 2>/dev/null
  python3 - "$DIR/fio.json" "$1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
side = j["read"] if "read" in sys.argv[2] else j["write"]
print(f"{side['bw_bytes'] / 2**20:.1f} {side['iops']:.0f}")
PY
}

start_engine "$DIR" --targets 1 --cpus 0 --storage-size 2G --wal-size 256M
"$BIN/tessera-bench" -e "$ENGINE" --json io --bs 1M --total "$SIZE_1M" --qd 4 >"$DIR/t1m.json"
"$BIN/tessera-bench" -e "$ENGINE" --json io --bs 4K --total "$SIZE_4K" --qd 32 --random >"$DIR/t4k.json"
stop_engine
rm -rf "$DIR/data"

read -r w1 _ <<<"$(fio_bw write 1M 4 "$SIZE_1M")"
read -r r1 _ <<<"$(fio_bw read 1M 4 "$SIZE_1M")"
read -r _ w4 <<<"$(fio_bw randwrite 4k 32 "$SIZE_4K")"
read -r _ r4 <<<"$(fio_bw randread 4k 32 "$SIZE_4K")"

python3 - "$DIR/t1m.json" "$DIR/t4k.json" "$w1" "$r1" "$w4" "$r4" "$(df -h --output=source,fstype "$DIR" | tail -1)" <<'PY'
import json, sys
t1, t4 = json.load(open(sys.argv[1]))["io"], json.load(open(sys.argv[2]))["io"]
w1, r1, w4, r4 = map(float, sys.argv[3:7])
print(f"file system: {sys.argv[7]}")
print(f"{'workload':<32} {'tessera':>12} {'fio':>12} {'ratio':>7}")
rows = [("1 MiB update QD4 (MiB/s)", t1["update_MiBps"], w1),
        ("1 MiB fetch QD4 (MiB/s)", t1["fetch_MiBps"], r1),
        ("4 KiB update QD32 (IOPS)", t4["update_iops"], w4),
        ("4 KiB random fetch QD32 (IOPS)", t4["fetch_iops"], r4)]
for name, t, f in rows:
    print(f"{name:<32} {t:12.1f} {f:12.1f} {t / f:7.2f}")
PY
