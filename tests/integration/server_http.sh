#!/usr/bin/env bash
# maas serve over raw HTTP: chat, streaming, completions, stop strings,
# seeds, malformed input (400 with param, 404, 405, 413), a stalled half
# request, 8 concurrent streams against one-at-a-time outputs, a mid-stream
# disconnect freeing its sequence, queue full -> 429, /metrics parsing.
# The checks are in server_http.py (standard library only). Exit 77 (skip)
# when the program, `serve` or mkmodel is not available.
set -u
BIN=${MAAS_BIN:-build/maas}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
[ -x "$BIN" ] || { echo "no maas program at $BIN"; exit 77; }
"$BIN" serve --help >/dev/null 2>&1 || { echo "maas serve is not available"; exit 77; }
"$BIN" mkmodel --help >/dev/null 2>&1 || { echo "maas mkmodel is not available"; exit 77; }
[ -x "$PY" ] || PY=python3

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

root=$(cd "$HERE/../.." && pwd)
"$BIN" mkmodel --arch qwen2 --train-vocab "$root/data/vocab-train.txt" --n-embd 64 --n-layer 2 --n-head 4 \
  --n-head-kv 2 --n-ff 128 -o "$tmp/tiny.gguf" >/dev/null 2>"$tmp/mk.err" || { echo "FAIL: mkmodel: $(tail -1 "$tmp/mk.err")"; exit 1; }

TIMEOUT=2
MAXBODY=65536
# starts a server with the given extra options; sets $port (0 = any free port, read from its log)
start() { # log, options...
  local log=$1; shift
  "$BIN" serve --no-auth --model "tiny=$tmp/tiny.gguf" --port 0 --threads 1 --timeout $TIMEOUT --max-body $MAXBODY "$@" \
    >"$log" 2>&1 &
  pids+=($!)
  port=
  for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "FAIL: the server did not start:"; cat "$log"; return 1
}

# argument errors
"$BIN" serve >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL: serve without --model should exit 2"; exit 1; }
"$BIN" serve --model "$tmp/tiny.gguf" --port 70000 >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL: --port 70000 should exit 2"; exit 1; }
out=$("$BIN" serve --model "a=$tmp/tiny.gguf" --model "a=$tmp/tiny.gguf" --port 0 --threads 1 --ctx 64 2>&1)
[ $? -eq 1 ] && echo "$out" | grep -q "two models are named 'a'" || { echo "FAIL: duplicate model names: $out"; exit 1; }
echo "ok   argument errors"

start "$tmp/main.log" --ctx 4096 --model "other=$tmp/tiny.gguf" || exit 1
main_port=$port
start "$tmp/busy.log" --ctx 65536 --kv-blocks 4200 --max-queue 1 --max-running 1 || exit 1
busy_port=$port

"$PY" "$HERE/server_http.py" "$main_port" tiny "$TIMEOUT" "$MAXBODY" "$busy_port" other
rc=$?

# SIGTERM shuts the server down cleanly (exit 0)
kill -TERM "${pids[0]}"
wait "${pids[0]}"; src=$?
if [ $src -ne 0 ]; then echo "FAIL: serve exited $src after SIGTERM"; tail -5 "$tmp/main.log"; rc=1
else echo "ok   SIGTERM: clean exit"; fi
[ $rc -eq 0 ] || { echo "--- server log (tail)"; tail -20 "$tmp/main.log"; }
exit $rc
