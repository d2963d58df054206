# Sourced (not run) by the sdk_*.sh and serve_*.sh integration tests: checks
# that the program can serve, makes a tiny random model, starts servers on a
# free port and stops every one of them when the script exits.
#
#   . "$(dirname "$0")/serve_lib.bash"      # sets BIN ROOT PY tmp, traps EXIT
#   serve_tiny_model                        # -> $tmp/tiny.gguf
#   serve_start LOG [serve options...]      # -> $port, server pid appended to $serve_pids
#
# The name does not end in .sh, so scripts/run_tests.sh does not run it as a test.

BIN=${MAAS_BIN:-build/maas}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
[ -x "$BIN" ] || { echo "no maas program at $BIN"; exit 77; }
"$BIN" serve --help >/dev/null 2>&1 || { echo "maas serve is not available"; exit 77; }
"$BIN" mkmodel --help >/dev/null 2>&1 || { echo "maas mkmodel is not available"; exit 77; }

# Serving without API keys: --no-auth once the program has it (auth is then the default).
SERVE_NOAUTH=()
if "$BIN" serve --help 2>&1 | grep -q -- '--no-auth'; then SERVE_NOAUTH=(--no-auth); fi

tmp=$(mktemp -d)
serve_pids=()
serve_cleanup() {
  local p
  for p in "${serve_pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${serve_pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap serve_cleanup EXIT

serve_tiny_model() {
  "$BIN" mkmodel --arch qwen2 --train-vocab "$ROOT/data/vocab-train.txt" --n-embd 64 --n-layer 2 --n-head 4 \
    --n-head-kv 2 --n-ff 128 -o "$tmp/tiny.gguf" >/dev/null 2>"$tmp/mk.err" \
    || { echo "FAIL: mkmodel: $(tail -1 "$tmp/mk.err")"; exit 1; }
}

serve_start() { # log, serve options...
  local log=$1; shift
  "$BIN" serve "${SERVE_NOAUTH[@]}" --port 0 "$@" >"$log" 2>&1 &
  serve_pids+=($!)
  port=
  local i
  for i in $(seq 150); do
    port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && return 0
    kill -0 "${serve_pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "FAIL: the server did not start:"; cat "$log"; return 1
}
