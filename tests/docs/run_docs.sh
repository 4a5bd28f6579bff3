#!/usr/bin/env bash
# Runs the commands of the `sh` code blocks of docs/USER_GUIDE.md and docs/OPERATIONS.md, in
# order, against local systems in a temporary home: a command that no longer parses, or fails,
# fails the test and is named with its file and line. `text` blocks (other machines, foreground
# servers) are not run; the script prints how many commands each file had run and how many
# blocks it left.
#
#   run_docs.sh BIN_DIR SOURCE_DIR      (BIN_DIR holds `tessera` and `tessera-server`)
#
# USER_GUIDE.md is a walkthrough: it starts its own system and ends by stopping it.
# OPERATIONS.md is reference: it runs against a system this script starts first (three engines
# of two targets, pool `tank` with container `results`, RP_3GX).
set -uo pipefail

bin="$(cd "$1" && pwd)"
src="$(cd "$2" && pwd)"
work="$(mktemp -d /tmp/tessera-docs.XXXXXX)"
export HOME="$work/home" PATH="$bin:$PATH"
unset TESSERA_SYSTEM TESSERA_MGMT TESSERA_ENGINE TESSERA_POOL TESSERA_CONT
mkdir -p "$HOME"

# Every engine this test started stops, whatever happens: the systems' own stop first, then
# any process still running from under the temporary directory.
cleanup() {
  for f in "$work"/*/system.json "$HOME"/*/system.json; do
    [ -f "$f" ] && tessera system stop --system "$f" --grace-s 10 >/dev/null 2>&1
  done
  pkill -KILL -f -- "--storage-dir $work" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# Prints "LINE<TAB>COMMAND" for every command of the file's sh blocks (a line ending in a
# backslash continues on the next; blank and comment lines are skipped).
commands() {
  awk '
    /^```/ {
      if (inb) { inb = 0 } else { inb = 1; run = ($0 == "```sh"); if ($0 == "```text") skipped++ }
      next
    }
    inb && run {
      if (cont != "") { cmd = cmd "\n" $0 } else { cmd = $0; at = NR }
      if ($0 ~ /\\$/) { cont = 1; next }
      cont = ""
      if (cmd ~ /^[[:space:]]*(#|$)/) next
      gsub(/\n/, "\\n", cmd)
      printf "%d\t%s\n", at, cmd
    }
    END { printf "skipped\t%d\n", skipped + 0 > "/dev/stderr" }
  ' "$1"
}

failures=0
run_file() {
  local doc="$1" n=0 line cmd
  local list="$work/$(basename "$doc").cmds"
  commands "$doc" > "$list" 2> "$list.skipped"
  while IFS=$'\t' read -r line cmd; do
    cmd="$(printf '%b' "$cmd")"
    n=$((n + 1))
    echo "+ $(basename "$doc"):$line: $cmd"
    # In this shell: an `export` stays for the lines after it.
    if ! eval "$cmd" </dev/null; then
      echo "FAILED: $(basename "$doc"):$line: $cmd" >&2
      failures=$((failures + 1))
    fi
  done < "$list"
  echo "== $(basename "$doc"): $n commands run, $(cut -f2 "$list.skipped") text block(s) not run"
  [ "$n" -gt 0 ] || { echo "FAILED: no sh block in $doc" >&2; failures=$((failures + 1)); }
}

cd "$work" || exit 1
run_file "$src/docs/USER_GUIDE.md"

# The reference pages' system.
unset TESSERA_POOL TESSERA_CONT
setup=(
  "tessera system start --dir $work/ops --engines 3 --targets 2"
  "tessera pool create tank --target-size 64M"
  "tessera cont create tank results --type KV --oclass RP_3GX --rf 2"
  "tessera kv put --pool tank --cont results color blue"
)
for c in "${setup[@]}"; do
  echo "+ (setup) $c"
  eval "$c" </dev/null || { echo "FAILED: setup: $c" >&2; exit 1; }
done
run_file "$src/docs/OPERATIONS.md"

if [ "$failures" -ne 0 ]; then
  echo "$failures documented command(s) failed" >&2
  exit 1
fi
echo "every documented command ran"
