#!/usr/bin/env bash
# The Python package (docs/PYTHON.md) beside its baselines, in one run against a local system of
# 3 engines (1 target each) on this machine:
#  - samples per second of tessera.torch.Dataset through a DataLoader with 2 worker processes,
#    4 KiB and 1 MiB samples of an RP_3GX POSIX container, beside the same loop over the same
#    samples in files of the local file system (warm page cache; as root also after dropping
#    it). Goal: >= 1x the local files for 1 MiB samples.
#  - put_many / get_many of 4 KiB values with 64 in flight, beside the C++ client doing the same
#    requests (perf/kv_bench.cpp), alternating. Goal: >= 0.7x the C++ client's rate.
# Usage: perf/python.sh [ROUNDS] [SAMPLES_4K] [SAMPLES_1M] [KV_OPS]  (default 3 2000 300 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
source perf/common.sh
ROUNDS="${1:-3}"
N4K="${2:-2000}"
N1M="${3:-300}"
KVOPS="${4:-20000}"
PY=/usr/bin/python3
export PYTHONPATH="$PWD/$BUILD/python"
local_system_workdir
"$CLI" system start --dir "$WORK/sys" --engines 3 --targets 1 >/dev/null
"$CLI" pool create tank --target-size 2G >/dev/null
"$CLI" cont create tank samples --type POSIX --oclass RP_3GX --rf 2 >/dev/null
"$CLI" cont create tank kv --type KV --oclass RP_3GX --rf 2 >/dev/null
mgmt=$($PY -c "import json;print(json.load(open('$WORK/sys/system.json'))['mgmt'])")
COLD=()
if [ "$(id -u)" = 0 ]; then COLD=(--drop-caches); fi

{
  $PY perf/python_bench.py dataset tank samples "$WORK/local" "$N4K" 4096 "$ROUNDS" "${COLD[@]}"
  $PY perf/python_bench.py dataset tank samples "$WORK/local" "$N1M" 1048576 "$ROUNDS" "${COLD[@]}"
  for r in $(seq 1 "$ROUNDS"); do
    # Both are users the system's agent vouches for, connected to the access point alike.
    TESSERA_AGENT="$WORK/sys/agent.sock" "$BUILD/perf/kv_bench" "$mgmt" tank kv "$KVOPS" 64 4096 |
      sed "s/^/cxx $r /"
    TESSERA_AGENT="$WORK/sys/agent.sock" $PY perf/python_bench.py kv "$mgmt" tank kv "$KVOPS" 4096 64 |
      sed "s/^kv /py $r /"
  done
} > "$WORK/results"

$PY - "$WORK/results" <<'PY'
import collections, statistics as st, sys
ds = collections.defaultdict(list)
kv = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == "dataset":
        ds[(int(f[1]), f[2])].append(float(f[4]))
    else:
        kv[(f[0], f[2])].append(float(f[3]))
print("tessera.torch.Dataset through DataLoader(num_workers=2), RP_3GX POSIX container, samples/s")
print(f"{'sample':>8} {'round':>5} {'tessera':>9} {'local':>9} {'ratio':>6} {'local cold':>10} {'ratio':>6}")
for size in sorted({s for s, _ in ds}):
    for r, ours in enumerate(ds[(size, "tessera")]):
        local = ds[(size, "local")][r]
        cold = ds.get((size, "local-cold"), [])
        extra = f" {cold[r]:10.0f} {ours / cold[r]:6.2f}" if cold else ""
        print(f"{size // 1024:>6}Ki {r:>5} {ours:9.0f} {local:9.0f} {ours / local:6.2f}{extra}")
    print(f"{size // 1024:>6}Ki  mean ratio to local files (warm): "
          f"{st.mean(o / l for o, l in zip(ds[(size, 'tessera')], ds[(size, 'local')])):.2f}x")
print("KV bulk, 4 KiB values, 64 in flight from one thread, requests/s")
print(f"{'op':>4} {'round':>5} {'C++':>9} {'Python':>9} {'ratio':>6}")
for op in ("put", "get"):
    for r, (c, p) in enumerate(zip(kv[("cxx", op)], kv[("py", op)])):
        print(f"{op:>4} {r:>5} {c:9.0f} {p:9.0f} {p / c:6.2f}")
    print(f"{op:>4}  mean ratio Python/C++: "
          f"{st.mean(p / c for c, p in zip(kv[('cxx', op)], kv[('py', op)])):.2f}x")
PY
