#!/usr/bin/env bash
# The `tessera` launcher and the per-user CLI server (apps/cli/zygote_common.hpp): a command the
# server runs behaves as one run directly (output, exit code, stdin, working directory, signals),
# and the server runs nothing for a caller it cannot run as faithfully: another user, another
# network namespace, other loader variables, a rebuilt binary. Against a local system of one
# engine; the test's own server (its own $XDG_RUNTIME_DIR), stopped at the end.
# Usage: launcher_test.sh BIN_DIR
set -euo pipefail
WORK="$(mktemp -d /tmp/tessera-launcher-XXXXXX)"
chmod 755 "$WORK"
# A copy of the two CLI programs (the test rebuilds one by touching it), the rest linked.
BIN="$WORK/bin"
mkdir "$BIN"
cp "$1/tessera" "$1/tessera-cli" "$BIN/"
for tool in tessera-server tessera-agent tessera-fuse; do ln -s "$(cd "$1" && pwd)/$tool" "$BIN/$tool"; done
T="$BIN/tessera"
export XDG_RUNTIME_DIR="$WORK/run" TESSERA_CLI_SERVER_IDLE_S=600 HOME="$WORK/home"
unset TESSERA_SYSTEM TESSERA_MGMT TESSERA_ENGINE TESSERA_POOL TESSERA_CONT TESSERA_CLI_DIRECT
mkdir -p "$XDG_RUNTIME_DIR" "$HOME"
chmod 700 "$XDG_RUNTIME_DIR"
SYS="$WORK/sys"
cleanup() {
  if [ -f "$SYS/system.json" ]; then TESSERA_CLI_DIRECT=1 "$T" -s "$SYS" system stop >/dev/null 2>&1 || true; fi
  pkill -KILL -f -- "--zygote-serve $XDG_RUNTIME_DIR/" 2>/dev/null || true
  pkill -KILL -f -- "--zygote-serve $WORK/" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
server_pid() { pgrep -f -- "--zygote-serve $XDG_RUNTIME_DIR/tessera/" | head -1; }
# Waits (no fixed sleep) until a server listens, up to 120 s.
wait_server() {
  for _ in $(seq 1200); do
    if [ -S "$(ls "$XDG_RUNTIME_DIR"/tessera/cli-*.sock 2>/dev/null | head -1)" ] && [ -n "$(server_pid)" ]; then return 0; fi
    sleep 0.1
  done
  fail "no CLI server started"
}
# Runs "$@" with the launcher's debug lines; prints "server" or "direct".
ran_by() {
  local err
  err="$(TESSERA_CLI_DEBUG=1 "$@" 2>&1 >/dev/null || true)"
  if grep -q "the CLI server runs the command as pid" <<<"$err"; then echo server; else echo direct; fi
}

# The first command runs directly and leaves a server behind.
"$T" --version | grep -q '^tessera ' || fail "--version"
wait_server
[ "$(stat -c %a "$XDG_RUNTIME_DIR/tessera")" = 700 ] || fail "the server's directory is not 0700"
[ "$(ran_by "$T" --version)" = server ] || fail "a command did not reach the server"

TESSERA_CLI_DIRECT=1 "$T" system start --dir "$SYS" -n 1 --targets 1 >/dev/null
export TESSERA_SYSTEM="$SYS/system.json"
"$T" pool create p --size 128M >/dev/null
"$T" cont create p c --type KV >/dev/null

# Output, stdin and the working directory.
[ "$(ran_by "$T" kv put --pool p --cont c k1 v1)" = server ] || fail "kv put did not use the server"
printf 'from-stdin' | "$T" kv put --pool p --cont c k2 >/dev/null
mkdir -p "$WORK/cwd/sub"
(cd "$WORK/cwd" && "$T" kv get --pool p --cont c k2 --out sub/out.bin >/dev/null)
[ "$(cat "$WORK/cwd/sub/out.bin")" = from-stdin ] || fail "stdin or the working directory were not the caller's"
[ "$("$T" kv get --pool p --cont c k1)" = v1 ] || fail "stdout"
"$T" kv get --pool p --cont c k1 | cat >/dev/null || fail "a pipe as stdout"

# Exit codes and error messages are those of a direct run.
set +e
"$T" kv get --pool p --cont c no-such-key >"$WORK/a.out" 2>"$WORK/a.err"; a=$?
TESSERA_CLI_DIRECT=1 "$T" kv get --pool p --cont c no-such-key >"$WORK/b.out" 2>"$WORK/b.err"; b=$?
"$T" pool nosuchcommand >/dev/null 2>&1; c=$?
TESSERA_CLI_DIRECT=1 "$T" pool nosuchcommand >/dev/null 2>&1; d=$?
set -e
[ "$a" = "$b" ] && [ "$a" != 0 ] || fail "exit code $a through the server, $b directly"
[ "$c" = "$d" ] && [ "$c" != 0 ] || fail "usage error exit code $c through the server, $d directly"
cmp -s "$WORK/a.err" "$WORK/b.err" || fail "stderr differs: $(cat "$WORK/a.err") vs $(cat "$WORK/b.err")"

# Many commands at once.
for i in $(seq 16); do "$T" kv put --pool p --cont c "par$i" "value$i" >/dev/null & done
wait
for i in $(seq 16); do [ "$("$T" kv get --pool p --cont c "par$i")" = "value$i" ] || fail "parallel put $i"; done

# A signal to the launcher reaches the command; a launcher killed takes its command with it.
# `system top` refreshes once an hour here, until interrupted.
hang=(system top --interval 3600)
pid_of_child() { sed -n 's/.*runs the command as pid \([0-9]*\).*/\1/p' "$1" | head -1; }
# (TERM: a background job of a script ignores INT, and so does its command, as it would directly.)
for sig in TERM KILL; do
  TESSERA_CLI_DEBUG=1 "$T" "${hang[@]}" >/dev/null 2>"$WORK/hang.err" &
  launcher=$!
  for _ in $(seq 600); do [ -n "$(pid_of_child "$WORK/hang.err")" ] && break; sleep 0.1; done
  child="$(pid_of_child "$WORK/hang.err")"
  [ -n "$child" ] || fail "the hanging command did not start in the server"
  kill -s "$sig" "$launcher"
  set +e; wait "$launcher"; st=$?; set -e
  if [ "$sig" = TERM ]; then [ "$st" = 143 ] || fail "SIGTERM: launcher status $st, not 143"; fi
  for _ in $(seq 600); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$child" 2>/dev/null; then fail "SIG$sig to the launcher left its command $child running"; fi
done

# Not run by the server: other loader variables, another network namespace.
[ "$(ran_by env FI_LOG_LEVEL=warn "$T" --version)" = direct ] || fail "a command with other FI_ variables ran in the server"
FI_LOG_LEVEL=warn "$T" --version | grep -q '^tessera ' || fail "--version with FI_LOG_LEVEL"
if unshare --net true 2>/dev/null; then
  [ "$(ran_by unshare --net "$T" --version)" = direct ] || fail "a command from another network namespace ran in the server"
fi

# Another user is refused by the server itself (the directory would stop them first: opened up
# here to reach the check behind it).
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
  sock="$(ls "$XDG_RUNTIME_DIR"/tessera/cli-*.sock | head -1)"
: >"$WORK/pwned" && chmod 666 "$WORK/pwned"  # where a command run for nobody would print
  chmod 755 "$XDG_RUNTIME_DIR" && chmod 711 "$XDG_RUNTIME_DIR/tessera" && chmod 777 "$sock"
  reply="$(setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/bin/python3 - "$sock" "$WORK/pwned" <<'EOF'
import os, socket, struct, sys
sock, target = sys.argv[1], sys.argv[2]
args = [b"tessera-cli", b"--version"]
env = [b"PATH=/usr/bin:/bin"]
payload = b"".join(a + b"\0" for a in args + env)
header = struct.pack("=6IQQ", 0x315a5354, 0o022, len(args), len(env), len(payload), 0, 0, 0)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sock)
out = os.open(target, os.O_WRONLY | os.O_CREAT, 0o666)
cwd = os.open("/", os.O_RDONLY)
socket.send_fds(s, [header], [0, out, out, cwd])
s.sendall(payload)
kind, value = struct.unpack("=ii", s.recv(8))
print(kind, value)
EOF
)"
  chmod 700 "$XDG_RUNTIME_DIR/tessera" "$XDG_RUNTIME_DIR"
  [ "$reply" = "3 2" ] || fail "the server answered another user with '$reply', not a refusal (3 2)"
  [ ! -s "$WORK/pwned" ] || fail "the server ran a command for another user"
fi

# A rebuilt CLI: the server refuses, stops, and a new one takes over.
old="$(server_pid)"
touch "$BIN/tessera-cli"
[ "$(ran_by "$T" --version)" = direct ] || fail "a stale server ran a command"
for _ in $(seq 600); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
kill -0 "$old" 2>/dev/null && fail "the stale server did not stop"
"$T" --version >/dev/null
wait_server
[ "$(ran_by "$T" --version)" = server ] || fail "no new server after the rebuild"

"$T" system stop >/dev/null

# A server whose binary was deleted (an uninstall, a test's copy) goes by itself, idle or not.
last="$(server_pid)"
rm "$BIN/tessera-cli"
for _ in $(seq 600); do kill -0 "$last" 2>/dev/null || break; sleep 0.1; done
kill -0 "$last" 2>/dev/null && fail "the server of a deleted binary still runs"
echo "PASS: launcher and CLI server"
