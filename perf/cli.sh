#!/usr/bin/env bash
# CLI start-up (issue: a fast CLI): the wall time of `tessera kv get` of a 5-byte value, through
# the per-user CLI server (the launcher's normal path) and run directly (TESSERA_CLI_DIRECT=1),
# beside what any process pays: exec of /bin/true, and `fi_info -l`, a program that only loads
# libfabric and initializes its providers. A local system of one engine with one target.
# Medians of ROUNDS runs (default 30) each.
# Usage: perf/cli.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
source perf/common.sh
ROUNDS="${1:-30}"
local_system_workdir
export XDG_RUNTIME_DIR="$WORK/run"  # this run's own CLI server, stopped at the end
mkdir -m 700 "$XDG_RUNTIME_DIR"
trap '"$CLI" system stop >/dev/null 2>&1 || true; pkill -f -- "--zygote-serve $XDG_RUNTIME_DIR/" || true; rm -rf "$WORK"' EXIT
"$CLI" system start --dir "$WORK/sys" --engines 1 --targets 1 >/dev/null
"$CLI" pool create p --size 128M >/dev/null
"$CLI" cont create p c --type KV >/dev/null
"$CLI" kv put --pool p --cont c key hello >/dev/null
# The server started by the commands above; wait until it answers.
until TESSERA_CLI_DEBUG=1 "$CLI" --version 2>&1 | grep -q "runs the command"; do sleep 0.1; done
python3 - "$ROUNDS" "$CLI" <<'EOF'
import os, statistics, subprocess, sys, time
rounds, cli = int(sys.argv[1]), sys.argv[2]
get = [cli, "kv", "get", "--pool", "p", "--cont", "c", "key"]
def median_ms(argv, env=None):
    e = dict(os.environ, **(env or {}))
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run(argv, env=e, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)
true_ms = median_ms(["/bin/true"])
fi_ms = median_ms(["fi_info", "-l"])
server_ms = median_ms(get)
direct_ms = median_ms(get, {"TESSERA_CLI_DIRECT": "1"})
print(f"{'what':46} {'median ms':>10}")
print(f"{'exec /bin/true':46} {true_ms:10.1f}")
print(f"{'fi_info -l (load libfabric, init providers)':46} {fi_ms:10.1f}")
print(f"{'tessera kv get, run directly':46} {direct_ms:10.1f}")
print(f"{'tessera kv get, through the CLI server':46} {server_ms:10.1f}")
print(f"server / direct: {server_ms / direct_ms:.2f}x; server vs fi_info -l: {server_ms / fi_ms:.2f}x; "
      f"goal <= 50 ms: {'met' if server_ms <= 50 else 'missed'}")
EOF
