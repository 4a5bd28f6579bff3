#!/usr/bin/env bash
# Installs dependencies, builds Tessera (release), starts a local system of 3 engines on
# 127.0.0.1 with file-backed storage, creates a pool and a 3-way replicated (RP_3GX) container,
# stores and reads back real data through it, and leaves the system running.
# Usage: scripts/quickstart.sh [DIR]   (default: a new directory under /tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

bash scripts/install-deps.sh
cmake --preset release -DTESSERA_BUILD_TESTS=OFF -DTESSERA_BUILD_PERF=OFF >/dev/null
cmake --build --preset release -j "$(nproc)" --target tessera-server tessera-agent tessera_cli

BIN="$ROOT/build/release/apps"
DIR="${1:-$(mktemp -d /tmp/tessera-quickstart.XXXXXX)}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
T="$BIN/tessera"
# Later commands find the system through this file (default: ~/.tessera/system.json).
export TESSERA_SYSTEM="$DIR/system.json"

echo "== tessera system start: 3 engines x 2 targets on 127.0.0.1, data and logs in $DIR"
"$T" system start --dir "$DIR" --engines 3 --targets 2
"$T" system query

echo "== tessera pool create / cont create: a pool on every engine, a 3-way replicated container"
"$T" pool list --json | grep -q '"label": "demo"' || "$T" pool create demo --target-size 256M
"$T" cont query demo files >/dev/null 2>&1 ||
  "$T" cont create demo files --type KV --oclass RP_3GX --rf 2
"$T" cont query demo files

echo "== tessera kv put / get: a greeting"
"$T" kv put --pool demo --cont files greeting "Hello from Tessera, $(date -u +%FT%TZ)"
"$T" kv get --pool demo --cont files greeting; echo

echo "== tessera obj put / get: 16 MiB of random bytes as an array, on three engines"
head -c $((16 << 20)) /dev/urandom >"$DIR/random.bin"
"$T" obj put --pool demo --cont files --oid 1.2 --dkey blob --akey bytes --array --file "$DIR/random.bin"
"$T" obj get --pool demo --cont files --oid 1.2 --dkey blob --akey bytes --array --out "$DIR/random.back"
cmp "$DIR/random.bin" "$DIR/random.back"
echo "read back byte-exact: $(sha256sum <"$DIR/random.back" | cut -c1-16)..."

echo "== tessera obj list / kv list / pool query"
"$T" obj list --pool demo --cont files
"$T" kv list --pool demo --cont files
"$T" pool query demo

cat <<MSG

Tessera is running: 3 engines, system file $DIR/system.json, logs $DIR/rank*/engine.log
Use it:    export TESSERA_SYSTEM=$DIR/system.json
           $T kv put --pool demo --cont files mykey "my value"
           $T obj put --pool demo --cont files --oid 7 --dkey d --akey a --file somefile
           $T pool query demo        $T cont list demo        $T --help
Stop it:   $T system stop            (data stays in $DIR; \`$T system start\` restarts it)
MSG
