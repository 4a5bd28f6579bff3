# Shared helpers for the perf scripts: start/stop a tessera-server on 127.0.0.1.
BUILD="${BUILD:-build/release}"
BIN="$BUILD/apps"
export FI_TCP_IFACE=lo  # every fabric byte (ours and the baselines') stays on loopback

start_engine() {  # start_engine DIR [extra flags...]
  local dir="$1"; shift
  mkdir -p "$dir/data"
  rm -f "$dir/port"
  # Engines authenticate with a system key (docs/SECURITY.md); the benchmark is its administrator.
  # KEYLESS=1 starts a build older than the system key (perf/security.sh compares with one).
  local key=()
  if [ "${KEYLESS:-0}" != 1 ]; then
    [ -f "$dir/system.key" ] || "$BIN/tessera-server" --keygen "$dir/system.key" >/dev/null
    export TESSERA_SYSTEM_KEY="$dir/system.key"
    key=(--system-key "$dir/system.key")
  fi
  "$BIN/tessera-server" --listen 127.0.0.1:0 --port-file "$dir/port" --storage-dir "$dir/data" \
    "${key[@]}" "$@" \
    >"$dir/server.log" 2>&1 &
  ENGINE_PID=$!
  for _ in $(seq 1 300); do [ -s "$dir/port" ] && break; sleep 0.1; done
  [ -s "$dir/port" ] || { cat "$dir/server.log"; return 1; }
  ENGINE="127.0.0.1:$(cat "$dir/port")"
}

stop_engine() {
  if [ -n "${ENGINE_PID:-}" ]; then kill "$ENGINE_PID" 2>/dev/null || true; wait "$ENGINE_PID" 2>/dev/null || true; fi
  ENGINE_PID=""
}

# A local system under a fresh temp dir, stopped and removed when the script exits: sets CLI,
# WORK and TESSERA_SYSTEM ($WORK/sys, for `tessera system start --dir "$WORK/sys"`).
local_system_workdir() {
  CLI="$BIN/tessera"
  WORK="$(mktemp -d)"
  export TESSERA_SYSTEM="$WORK/sys"
  trap '"$CLI" system stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
}
