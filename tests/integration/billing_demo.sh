#!/usr/bin/env bash
# `make run` (scripts/demo.sh) in a temporary demo directory on a free port:
# it starts, the curl command it prints works and is billed (usage.cost), the
# `maas admin usage` command it prints shows that request, the key file is
# mode 0600, a second start reuses the same ledger and key, and without the
# shipped model it falls back to random weights and says so.
set -u
BIN=${MAAS_BIN:-build/maas}
HERE=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$HERE/../.." && pwd)
[ -x "$BIN" ] || { echo "no maas program at $BIN"; exit 77; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
command -v curl >/dev/null || { echo "curl is not installed"; exit 77; }
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- demo output"; cat "$tmp/out" 2>/dev/null; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_demo() {
  port=$(free_port)
  PORT=$port DEMO_DIR="$tmp/demo" MAAS_BIN="$BIN" "$root/scripts/demo.sh" >"$tmp/out" 2>&1 &
  pid=$!
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || fail "the demo exited"
    sleep 0.1
  done
  fail "the demo did not answer /health"
}

start_demo
grep -q "King James" "$tmp/out" || fail "the demo does not say what its model is"
cmd=$(grep '^curl ' "$tmp/out" | head -1)
[ -n "$cmd" ] || fail "no curl command printed"
echo "$cmd" | grep -q "127.0.0.1:$port" || fail "the curl command does not use port $port"
resp=$(eval "$cmd") || fail "the printed curl command failed"
id=$(echo "$resp" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert float(r["usage"]["cost"]) > 0, r; print(r["id"])') \
  || fail "no billed answer: $resp"
echo "ok   the printed curl command answers, billed ($id)"
[ "$(stat -c %a "$tmp/demo/api-key")" = 600 ] || fail "api-key file is not mode 0600"
[ "$(stat -c %a "$tmp/demo/admin-key")" = 600 ] || fail "admin-key file is not mode 0600"
ucmd=$(grep -E '^\S*maas admin --data ' "$tmp/out" | head -1)
[ -n "$ucmd" ] || fail "no usage command printed"
usage=$(eval "$ucmd") || fail "the printed usage command failed"
echo "$usage" | grep -E '^demo +1 ' >/dev/null || fail "usage does not show the request: $usage"
"$BIN" admin --data "$tmp/demo/data" usage --by request --format json | grep -q "\"$id\"" || fail "no usage record for $id"
echo "ok   the printed usage command shows it"
kill "$pid"; wait "$pid" 2>/dev/null; pid=
key1=$(cat "$tmp/demo/api-key")
start_demo
key2=$(cat "$tmp/demo/api-key")
[ "$key1" = "$key2" ] || fail "a second start made a new key"
grep -q "created the ledger" "$tmp/out" && fail "a second start re-created the ledger"
resp=$(eval "$(grep '^curl ' "$tmp/out" | head -1)")
echo "$resp" | grep -q '"cost"' || fail "second start: $resp"
n=$("$BIN" admin --data "$tmp/demo/data" --format json usage | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"]["requests"])')
[ "$n" = 2 ] || fail "expected 2 requests in the ledger, got $n"
echo "ok   a second start reuses the ledger and key"
kill "$pid"; wait "$pid" 2>/dev/null; pid=
export DEMO_MODEL="$tmp/missing.gguf"
start_demo
grep -q "RANDOM" "$tmp/out" || fail "without the shipped model the demo does not say its weights are random"
resp=$(eval "$(grep '^curl ' "$tmp/out" | head -1)")
echo "$resp" | grep -q '"cost"' || fail "random fallback: $resp"
echo "ok   without data/demo-kjv.gguf it serves a random-weight model and says so"
