#!/usr/bin/env bash
# Shows, for a running tessera-server, what the foundation promises: each target thread pinned
# to its own CPU, one io_uring instance per target, libfabric loaded, and the CPU an idle engine
# uses over 10 seconds. Usage: scripts/check-engine.sh PID [seconds]
set -euo pipefail
PID="${1:?usage: scripts/check-engine.sh PID [seconds]}"
SECS="${2:-10}"
[ -d "/proc/$PID" ] || { echo "no process $PID"; exit 1; }

echo "== threads and CPU affinity (Cpus_allowed_list)"
for t in /proc/"$PID"/task/*; do
  printf "  %-8s %-16s %s\n" "$(basename "$t")" "$(cat "$t/comm")" "$(awk '/Cpus_allowed_list/ {print $2}' "$t/status")"
done
echo "== io_uring instances: $(ls -l /proc/"$PID"/fd 2>/dev/null | grep -c 'anon_inode:\[io_uring\]')"
echo "== libfabric: $(grep -m1 -o '/[^ ]*libfabric[^ ]*' /proc/"$PID"/maps || echo 'not loaded')"
HZ=$(getconf CLK_TCK)
a=$(awk '{print $14 + $15}' /proc/"$PID"/stat)
sleep "$SECS"
b=$(awk '{print $14 + $15}' /proc/"$PID"/stat)
python3 -c "t=($b-$a)/$HZ; print(f'== idle CPU over $SECS s: {t:.2f} s of CPU = {100*t/$SECS:.2f}% of one core')"
