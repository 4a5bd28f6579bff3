#!/usr/bin/env bash
# Request round trip through Tessera's whole stack (client actor -> fabric -> target fiber ->
# object service -> reply) beside fi_pingpong on the same provider, in the same run.
# fi_pingpong reports usec/xfer = one-way time; its round trip is twice that.
# Usage: perf/rtt.sh [sizes]   (default 8,64,512,4K,64K,1M); env PROVIDER (default tcp;ofi_rxm)
set -euo pipefail
cd "$(dirname "$0")/.."
source perf/common.sh
PROVIDER="${PROVIDER:-tcp;ofi_rxm}"
SIZES="${1:-8,64,512,4K,64K,1M}"
DIR="$(mktemp -d /tmp/tessera-perf.XXXXXX)"
trap 'stop_engine; rm -rf "$DIR"' EXIT

start_engine "$DIR" --provider "$PROVIDER" --targets 1 --cpus 0 --storage-size 256M
"$BIN/tessera-bench" -e "$ENGINE" --json rtt --sizes "$SIZES" --iters 2000 >"$DIR/tessera.json"
stop_engine

to_bytes() { python3 -c "import sys; s=sys.argv[1]; m={'K':1<<10,'M':1<<20}; print(int(s[:-1])*m[s[-1]] if s[-1] in m else int(s))" "$1"; }

printf "provider %s\n" "$PROVIDER"
printf "%-8s %14s %14s %14s %14s %8s\n" size tessera_p50_us tessera_p99_us tessera_mean_us pingpong_rtt_us ratio
port=47700
IFS=',' read -ra LIST <<<"$SIZES"
for s in "${LIST[@]}"; do
  b=$(to_bytes "$s")
  iters=2000; [ "$b" -ge 1048576 ] && iters=200
  port=$((port + 1))
  fi_pingpong -p "$PROVIDER" -e rdm -S "$b" -I "$iters" -B "$port" >"$DIR/pp_srv.txt" 2>&1 &
  srv=$!
  sleep 0.3
  fi_pingpong -p "$PROVIDER" -e rdm -S "$b" -I "$iters" -P "$port" 127.0.0.1 >"$DIR/pp_cli.txt" 2>&1 || true
  wait "$srv" 2>/dev/null || true
  oneway=$(awk 'NR>1 && NF>=7 {print $7}' "$DIR/pp_cli.txt" | tail -1)
  python3 - "$DIR/tessera.json" "$b" "$s" "${oneway:-0}" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
size, label, oneway = int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
row = next(r for r in data["rtt"] if r["size"] == size)
base = 2 * oneway
ratio = row["mean_us"] / base if base > 0 else float("nan")
print(f"{label:<8} {row['p50_us']:14.1f} {row['p99_us']:14.1f} {row['mean_us']:14.1f} {base:14.1f} {ratio:8.2f}")
PY
done
echo "ratio = tessera mean round trip / fi_pingpong round trip (1.0 = as fast as raw libfabric)"
