#!/usr/bin/env bash
# The per-target store alone (no network, no client) beside fio on the same file system, in the
# same run: 1 MiB update/fetch at QD 4 and 4 KiB update/random-ish fetch at QD 32. Then what the
# transaction protocol costs the store: 4 KiB updates prepared and committed as one-participant
# transactions (store_bench's `dtx` mode), alternated with plain updates of new objects.
# Usage: perf/store.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${BUILD:-build/release}"
BASE="${1:-/var/tmp}"
DIR="$(mktemp -d "$BASE/tessera-store.XXXXXX")"
trap 'rm -rf "$DIR"' EXIT

"$BUILD/perf/store_bench" "$DIR/target.dat" 1M 1G 4 2>/dev/null >"$DIR/s1m.txt"
"$BUILD/perf/store_bench" "$DIR/target.dat" 4K 256M 32 uring dtx 2>/dev/null >"$DIR/s4k.txt"

fio_one() {  # rw bs qd size -> "MiB/s IOPS"
  fio --name=base --filename="$DIR/fio.dat" --size="$4" --ioengine=io_uring --direct=1 \
      --rw="$1" --bs="$2" --iodepth="$3" --output-format=json --randrepeat=1 >"$DIR/fio.json" 2>/dev/null
  python3 -c "
import json; j = json.load(open('$DIR/fio.json'))['jobs'][0]; s = j['read'] if 'read' in '$1' else j['write']
print(f\"{s['bw_bytes'] / 2**20:.1f} {s['iops']:.0f}\")"
}
read -r w1 _ <<<"$(fio_one write 1M 4 1G)"
read -r r1 _ <<<"$(fio_one read 1M 4 1G)"
read -r _ w4 <<<"$(fio_one randwrite 4k 32 256M)"
read -r _ r4 <<<"$(fio_one randread 4k 32 256M)"

python3 - "$DIR/s1m.txt" "$DIR/s4k.txt" "$w1" "$r1" "$w4" "$r4" <<'PY'
import re, sys
def parse(path):
    # The first update and fetch passes; then the alternated passes (plain, transaction), each
    # followed by the log bytes it wrote per update.
    out = {"alt": {"update": [], "dtx-update": []}, "log": {"update": [], "dtx-update": []}}
    alt = None
    for line in open(path):
        lm = re.match(r"\s+log: ([\d.]+) bytes", line)
        if lm and alt:
            out["log"][alt].append(float(lm.group(1)))
        m = re.match(r"store (update|fetch|dtx-update)\s+bs \d+ qd \d+: ([\d.]+) MiB/s, ([\d.]+) IOPS", line)
        if not m: continue
        kind, iops = m.group(1), float(m.group(3))
        alt = "dtx-update" if kind == "dtx-update" else None
        if kind not in out:
            out[kind] = (float(m.group(2)), iops)
        elif kind == "update":
            alt = kind
        if alt: out["alt"][alt].append(iops)
    return out
s1, s4 = parse(sys.argv[1]), parse(sys.argv[2])
w1, r1, w4, r4 = map(float, sys.argv[3:7])
print(f"{'workload (store only)':<34} {'tessera':>10} {'fio':>10} {'ratio':>7}")
for name, t, f in [("1 MiB update QD4 (MiB/s)", s1["update"][0], w1), ("1 MiB fetch QD4 (MiB/s)", s1["fetch"][0], r1),
                   ("4 KiB update QD32 (IOPS)", s4["update"][1], w4), ("4 KiB fetch QD32 (IOPS)", s4["fetch"][1], r4)]:
    print(f"{name:<34} {t:10.1f} {f:10.1f} {t / f:7.2f}")
alt = s4["alt"]
if alt["dtx-update"] and alt["update"]:
    plain, dtx = sum(alt["update"]) / len(alt["update"]), sum(alt["dtx-update"]) / len(alt["dtx-update"])
    print(f"4 KiB update QD32 as a transaction (prepare + commit): {dtx:.0f} IOPS beside {plain:.0f} "
          f"plain updates of new objects, alternated ({len(alt['dtx-update'])} passes each): {dtx / plain:.2f}x")
    lg = s4["log"]
    if lg["dtx-update"] and lg["update"]:
        print(f"  log written per update: {sum(lg['dtx-update']) / len(lg['dtx-update']):.0f} bytes as a "
              f"transaction, {sum(lg['update']) / len(lg['update']):.0f} plain")
PY
