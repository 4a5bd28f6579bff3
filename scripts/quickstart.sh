#!/usr/bin/env bash
# Installs dependencies, builds Tessera (release), starts a local engine on 127.0.0.1 with
# file-backed storage, stores and reads back real data through the CLI, and leaves the engine
# running. Usage: scripts/quickstart.sh [DIR]   (default: a new directory under /tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

bash scripts/install-deps.sh
cmake --preset release -DTESSERA_BUILD_TESTS=OFF -DTESSERA_BUILD_PERF=OFF >/dev/null
cmake --build --preset release -j "$(nproc)" --target tessera-server tessera_cli

BIN="$ROOT/build/release/apps"
DIR="${1:-$(mktemp -d /tmp/tessera-quickstart.XXXXXX)}"
mkdir -p "$DIR/data"
DIR="$(cd "$DIR" && pwd)"
rm -f "$DIR/port"

echo "== starting tessera-server (2 targets, tcp;ofi_rxm on 127.0.0.1, storage in $DIR/data)"
"$BIN/tessera-server" --listen 127.0.0.1:0 --port-file "$DIR/port" --targets 2 \
  --storage-dir "$DIR/data" --storage-size 1G >"$DIR/server.log" 2>&1 &
echo $! >"$DIR/server.pid"
for _ in $(seq 1 300); do
  [ -s "$DIR/port" ] && break
  if ! kill -0 "$(cat "$DIR/server.pid")" 2>/dev/null; then
    echo "tessera-server failed to start:"; cat "$DIR/server.log"; exit 1
  fi
  sleep 0.1
done
[ -s "$DIR/port" ] || { echo "tessera-server did not come up"; cat "$DIR/server.log"; exit 1; }
export TESSERA_ENGINE="127.0.0.1:$(cat "$DIR/port")"
T="$BIN/tessera"

echo "== tessera system query"
"$T" system query

echo "== tessera obj put / get: a greeting as a single value"
echo "Hello from Tessera, $(date -u +%FT%TZ)" | "$T" obj put --oid 1.1 --dkey greetings --akey en
"$T" obj get --oid 1.1 --dkey greetings --akey en

echo "== tessera obj put / get: 16 MiB of random bytes as an array extent"
head -c $((16 << 20)) /dev/urandom >"$DIR/random.bin"
"$T" obj put --oid 1.2 --dkey blob --akey bytes --array --offset 0 --file "$DIR/random.bin"
"$T" obj get --oid 1.2 --dkey blob --akey bytes --array --offset 0 --length $((16 << 20)) --out "$DIR/random.back"
cmp "$DIR/random.bin" "$DIR/random.back"
echo "read back byte-exact: $(sha256sum <"$DIR/random.back" | cut -c1-16)..."

echo "== tessera obj list"
"$T" obj list
"$T" --json obj list --oid 1.2

cat <<MSG

Tessera is running:  engine pid $(cat "$DIR/server.pid"), control $TESSERA_ENGINE, log $DIR/server.log
Use it:              export TESSERA_ENGINE=$TESSERA_ENGINE
                     $T obj put --oid 7 --dkey d --akey a --file somefile
                     $T obj get --oid 7 --dkey d --akey a > copy
Stop it:             kill $(cat "$DIR/server.pid")        (data stays in $DIR/data; rerun the server to reopen it)
MSG
