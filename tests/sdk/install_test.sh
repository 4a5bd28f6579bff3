#!/usr/bin/env bash
# The SDK as an application developer meets it (issue: an installable SDK; docs/API.md):
# `cmake --install` into a temporary prefix; the installed header includes only C headers; the
# shared library has a soname and exports exactly the functions tessera/tessera.h declares; the
# C example builds out of tree through pkg-config and through find_package(Tessera), with only
# the prefix's include/ and lib/, and both builds store and read back data in a local system
# started with the installed `tessera`; so does the C++ example (tessera/tessera.hpp) through
# find_package.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD="$1"
SRC="$2"
WORK="$(mktemp -d /tmp/tessera-sdk-XXXXXX)"
PREFIX="$WORK/prefix"
SYS="$WORK/sys"
cleanup() {
  # Only a system the test did not stop itself (it failed on the way): the stop's errors shown.
  if [ -f "$SYS/system.json" ] && pgrep -f -- "$SYS/" >/dev/null; then
    "$PREFIX/bin/tessera" --system "$SYS" system stop >/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null
LIBDIR="$(ls -d "$PREFIX"/lib* | head -1)"
# lib or lib/<multiarch>
if [ ! -e "$LIBDIR/libtessera.so" ]; then LIBDIR="$(dirname "$(find "$PREFIX" -name 'libtessera.so' | head -1)")"; fi
HEADER="$PREFIX/include/tessera/tessera.h"
[ -f "$HEADER" ] || fail "no $HEADER"
[ -e "$LIBDIR/libtessera.so" ] || fail "no libtessera.so under $PREFIX"
[ -f "$LIBDIR/pkgconfig/tessera.pc" ] || fail "no tessera.pc"
[ -f "$LIBDIR/cmake/Tessera/TesseraConfig.cmake" ] || fail "no CMake package"
for tool in tessera tessera-server tessera-agent; do
  [ -x "$PREFIX/bin/$tool" ] || fail "no $PREFIX/bin/$tool"
done

# The header is self-contained C: only the C library's headers.
others="$(grep -E '^#include' "$HEADER" | grep -vE '<(stddef|stdint)\.h>' || true)"
[ -z "$others" ] || fail "tessera.h includes more than C headers: $others"
# The C++ API's header: tessera.h and the standard library's headers only (no engine header,
# no Boost, Cap'n Proto or libfabric).
HPP="$PREFIX/include/tessera/tessera.hpp"
[ -f "$HPP" ] || fail "no $HPP"
others="$(grep -E '^#include' "$HPP" | grep -vE '<tessera/tessera\.h>|<[a-z_]+>' || true)"
[ -z "$others" ] || fail "tessera.hpp includes more than tessera.h and the C++ library: $others"

# A soname, and the ABI is the header's functions: no more, no fewer.
soname="$(readelf -d "$LIBDIR/libtessera.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
[ "$soname" = "libtessera.so.0" ] || fail "soname is '$soname', not libtessera.so.0"
nm -D --defined-only "$LIBDIR/libtessera.so" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sed 's/@.*//' |
  sort -u > "$WORK/exported"
grep -oE '\btessera_[a-z0-9_]+\(' "$HEADER" | tr -d '(' | sort -u > "$WORK/declared"
if ! diff -u "$WORK/declared" "$WORK/exported" > "$WORK/abi.diff"; then
  cat "$WORK/abi.diff" >&2
  fail "libtessera.so exports other symbols than tessera.h declares (- declared only, + exported only)"
fi
echo "ABI: $(wc -l < "$WORK/exported") functions exported, each declared in tessera.h"

# Out-of-tree builds: pkg-config, and find_package.
cp -r "$SRC/examples" "$WORK/examples"
export PKG_CONFIG_PATH="$LIBDIR/pkgconfig"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror "$WORK/examples/c/put_get.c" $(pkg-config --cflags --libs tessera) \
  -Wl,-rpath,"$LIBDIR" -o "$WORK/put_get_pc"
# Statically: libtessera.a, through tessera-static.pc; the program needs no libtessera.so.
[ -f "$LIBDIR/libtessera.a" ] || fail "no static libtessera.a"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror "$WORK/examples/c/put_get.c" $(pkg-config --cflags --libs tessera-static) \
  -o "$WORK/put_get_static_pc"
if ldd "$WORK/put_get_static_pc" | grep -q libtessera; then fail "the static build loads libtessera.so"; fi
cmake -S "$WORK/examples/c" -B "$WORK/build-c" -DCMAKE_PREFIX_PATH="$PREFIX" \
  -DCMAKE_BUILD_RPATH="$LIBDIR" >/dev/null
cmake --build "$WORK/build-c" >/dev/null
if grep -rq -- "-I$SRC" "$WORK/build-c" 2>/dev/null; then fail "the CMake build used the source tree"; fi
# The C++ example through find_package.
cmake -S "$WORK/examples/cpp" -B "$WORK/build-cpp" -DCMAKE_PREFIX_PATH="$PREFIX" \
  -DCMAKE_BUILD_RPATH="$LIBDIR" >/dev/null
cmake --build "$WORK/build-cpp" >/dev/null
if grep -rq -- "-I$SRC" "$WORK/build-cpp" 2>/dev/null; then fail "the C++ build used the source tree"; fi

# Administration from C decided by who the caller is: a pool create, then its destroy.
cat > "$WORK/admin.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <tessera/tessera.h>
int main(int argc, char** argv) {
  const int allowed = argc > 1 && strcmp(argv[1], "allowed") == 0;
  tessera_client* c = NULL;
  int rc = tessera_connect_system(NULL, &c);
  if (rc != 0) { fprintf(stderr, "connect: %s\n", tessera_last_error()); return 1; }
  tessera_pool_info info;
  rc = tessera_pool_create(c, "sdk-admin", 64ull << 20, &info);
  if (allowed && rc == 0) rc = tessera_pool_destroy(c, "sdk-admin", 0);
  if (rc != (allowed ? 0 : -TESSERA_EPERM)) {
    fprintf(stderr, "pool create as %s: rc %d: %s\n", argv[1], rc, tessera_last_error());
    return 1;
  }
  if (!allowed) printf("refused: %s\n", tessera_last_error());
  tessera_disconnect(c);
  return 0;
}
C
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror "$WORK/admin.c" $(pkg-config --cflags --libs tessera) \
  -Wl,-rpath,"$LIBDIR" -o "$WORK/admin"

# A local system from the installed tools, then both builds do real work in it.
"$PREFIX/bin/tessera" system start --dir "$SYS" --engines 3 --targets 1 >/dev/null
export TESSERA_SYSTEM="$SYS"
"$PREFIX/bin/tessera" pool create tank --target-size 64M >/dev/null
"$PREFIX/bin/tessera" cont create tank c1 --oclass RP_3G1 --rf 2 >/dev/null
# Found as the CLI finds it: the system file ($TESSERA_SYSTEM), whose system key this user reads.
"$WORK/put_get_pc" tank c1 100
"$WORK/admin" allowed
# Found through $TESSERA_MGMT, as a user the node agent vouches for.
unset TESSERA_SYSTEM
TESSERA_MGMT="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mgmt"])' "$SYS/system.json")"
TESSERA_AGENT="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["agent"])' "$SYS/system.json")"
export TESSERA_MGMT TESSERA_AGENT
unset TESSERA_SYSTEM_KEY  # an application's identity: the agent's word for this user
"$WORK/build-c/put_get" tank c1 50
# Root and the user the system runs as administer it; another user, vouched for by the agent, is
# refused. As root the test becomes uid 65534 (setpriv); otherwise it has no other user to be.
if [ "$(id -u)" = 0 ] && [ -x /usr/bin/setpriv ]; then
  chmod 755 "$WORK" "$SYS"  # the program, the library and the agent's socket (the keys stay 0700)
  /usr/bin/setpriv --reuid 65534 --regid 65534 --clear-groups env HOME=/nonexistent \
    "$WORK/admin" denied > "$WORK/denied" || fail "the user's run failed: $(cat "$WORK/denied")"
  grep -q "permission" "$WORK/denied" || fail "a user's pool create was not refused with a reason"
else
  echo "SDK: not root: the refusal of another user's pool create is not checked"
fi
"$WORK/build-c/put_get_static" tank c1 20
"$WORK/put_get_static_pc" tank c1 20
if ldd "$WORK/build-c/put_get_static" | grep -q libtessera; then fail "put_get_static loads libtessera.so"; fi
# The C++ API: values, a listing, a transaction and async writes, as a user the agent vouches for.
"$WORK/build-cpp/store_and_list" tank c1 40
# The asynchronous API: a checkpoint written and read back with 8 calls in flight on one queue.
"$WORK/build-c/checkpoint" tank c1 16 8 256
# The Python package from the prefix, with Debian's python3: imported from where it was
# installed (finding libtessera.so beside it through its RPATH), doing real work.
PYDIR="$(find "$PREFIX" -path '*dist-packages/tessera' -type d | head -1)"
if [ -n "$PYDIR" ]; then
  PYTHONPATH="$(dirname "$PYDIR")" /usr/bin/python3 - <<'PY' || fail "the installed Python package failed"
import tessera
assert tessera.__file__.startswith(__import__("os").environ["PYTHONPATH"]), tessera.__file__
with tessera.connect() as conn, conn.open("tank", "c1", write=True) as c:
    c["from-python"] = b"installed"
    assert c["from-python"] == b"installed"
print(f"SDK: tessera {tessera.__version__} imported from the prefix stored and read a value")
PY
else
  echo "SDK: no Python package in the prefix (built without TESSERA_BUILD_PYTHON)"
fi
# A bad container is a clear error, not a crash.
if "$WORK/put_get_pc" tank nosuch 1 2> "$WORK/err"; then fail "put_get opened a container that does not exist"; fi
grep -q "nosuch\|not found\|no container" "$WORK/err" || fail "unclear error: $(cat "$WORK/err")"
# The system stops whole: no engine and no agent of it is left running.
"$PREFIX/bin/tessera" --system "$SYS" system stop >/dev/null || fail "system stop failed"
if pgrep -f -- "$SYS/" >/dev/null; then
  fail "processes of the test system still run after system stop: $(pgrep -af -- "$SYS/")"
fi
echo "SDK: installed, built out of tree two ways, and both builds stored and read back data"
