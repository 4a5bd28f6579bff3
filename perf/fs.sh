#!/usr/bin/env bash
# POSIX containers through tessera-fuse (docs/POSIX.md) beside the engines' own file system,
# directly and through a FUSE passthrough of it (bindfs: this machine's FUSE ceiling), in one
# run. Needs root (/dev/fuse, drop_caches). Usage: perf/fs.sh
#   SIZE (default 512M): 1 MiB sequential write (then fsync) and read (page cache dropped)
#   FILES (default 10000; the issue's figure is 100000): created, stated and removed in one
#   directory by 2 processes
# The container is RP_2G1 on 3 engines of 1 target (every write goes to two engines' devices and
# is durable when acknowledged); the baselines write one copy, unsynced until the final fsync.
set -euo pipefail
cd "$(dirname "$0")/.."
source perf/common.sh
SIZE="${SIZE:-512M}"
FILES="${FILES:-10000}"
local_system_workdir
MNT="$WORK/mnt" LOCAL="$WORK/local" PASS="$WORK/pass"
mkdir -p "$MNT" "$LOCAL" "$PASS"
cleanup() {
  "$CLI" fs umount "$MNT" >/dev/null 2>&1 || true
  fusermount3 -u "$PASS" >/dev/null 2>&1 || true
  "$CLI" system stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$CLI" system start --dir "$WORK/sys" --engines 3 --targets 1 >/dev/null
"$CLI" pool create tank --size 3G >/dev/null
"$CLI" cont create tank fs --type POSIX --oclass RP_2G1 --rf 1 >/dev/null
"$CLI" fs mount tank fs "$MNT" >/dev/null
bindfs --no-allow-other "$LOCAL" "$PASS"

seq_bw() {  # seq_bw DIR -> "write_MiBps read_MiBps"
  local f="$1/seq.dat"
  fio --name=w --filename="$f" --size="$SIZE" --bs=1M --rw=write --ioengine=psync \
      --end_fsync=1 --output-format=json >"$WORK/w.json" 2>/dev/null
  sync; echo 3 >/proc/sys/vm/drop_caches
  fio --name=r --filename="$f" --size="$SIZE" --bs=1M --rw=read --ioengine=psync \
      --output-format=json >"$WORK/r.json" 2>/dev/null
  rm -f "$f"
  python3 - "$WORK/w.json" "$WORK/r.json" <<'PY'
import json, sys
w = json.load(open(sys.argv[1]))["jobs"][0]["write"]["bw_bytes"] / 2**20
r = json.load(open(sys.argv[2]))["jobs"][0]["read"]["bw_bytes"] / 2**20
print(f"{w:.1f} {r:.1f}")
PY
}

meta_rates() {  # meta_rates DIR -> "create/s stat/s remove/s" (2 processes, one directory)
  python3 - "$1/many" "$FILES" <<'PY'
import os, sys, time
from multiprocessing import Process
d, n = sys.argv[1], int(sys.argv[2])
os.mkdir(d)
def work(w, phase):
    for i in range(w, n, 2):
        p = f"{d}/f{i:07d}"
        if phase == "create":
            os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        elif phase == "stat":
            os.stat(p)
        else:
            os.unlink(p)
rates = []
for phase in ("create", "stat", "remove"):
    if phase == "stat":
        os.system("sync; echo 3 > /proc/sys/vm/drop_caches")
    t = time.monotonic()
    ps = [Process(target=work, args=(w, phase)) for w in (0, 1)]
    for p in ps: p.start()
    for p in ps: p.join()
    if any(p.exitcode != 0 for p in ps): sys.exit(f"{phase} failed")
    rates.append(n / (time.monotonic() - t))
os.rmdir(d)
print(" ".join(f"{r:.0f}" for r in rates))
PY
}

read -r tw tr <<<"$(seq_bw "$MNT")"
read -r lw lr <<<"$(seq_bw "$LOCAL")"
read -r pw pr <<<"$(seq_bw "$PASS")"
read -r tc ts tu <<<"$(meta_rates "$MNT")"
read -r lc ls lu <<<"$(meta_rates "$LOCAL")"
read -r pc ps pu <<<"$(meta_rates "$PASS")"

python3 - "$SIZE" "$FILES" "$(df -h --output=source,fstype "$LOCAL" | tail -1)" \
  "$tw" "$lw" "$pw" "$tr" "$lr" "$pr" "$tc" "$lc" "$pc" "$ts" "$ls" "$ps" "$tu" "$lu" "$pu" <<'PY'
import sys
size, files, fsys = sys.argv[1:4]
v = list(map(float, sys.argv[4:]))
print(f"engines' file system: {fsys}; {size} sequential, {files} files by 2 processes")
print(f"{'workload':<28} {'tessera':>10} {'local':>10} {'bindfs':>10} {'vs bindfs':>10} {'vs local':>9}")
names = ["1 MiB write (MiB/s)", "1 MiB read (MiB/s)", "create (files/s)", "stat (files/s)",
         "remove (files/s)"]
for i, n in enumerate(names):
    t, l, p = v[3 * i:3 * i + 3]
    print(f"{n:<28} {t:10.1f} {l:10.1f} {p:10.1f} {t / p:10.2f} {t / l:9.2f}")
PY
