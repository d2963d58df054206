#!/usr/bin/env bash
# maas serve with billing: keys, refusals (401/402/403/429), costs in usage,
# 64 simultaneous requests against a small balance, a price change, /v1/usage,
# the /admin routes and a kill test (3 x SIGKILL under load). The checks are
# in billing_serve.py (standard library only). Exit 77 (skip) when the
# program, `serve` or mkmodel is not available.
set -u
BIN=${MAAS_BIN:-build/maas}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$HERE/../.." && pwd)
[ -x "$BIN" ] || { echo "no maas program at $BIN"; exit 77; }
"$BIN" serve --help >/dev/null 2>&1 || { echo "maas serve is not available"; exit 77; }
"$BIN" mkmodel --help >/dev/null 2>&1 || { echo "maas mkmodel is not available"; exit 77; }
[ -x "$PY" ] || PY=python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BIN" mkmodel --arch qwen2 --train-vocab "$root/data/vocab-train.txt" --n-embd 64 --n-layer 2 --n-head 4 \
  --n-head-kv 2 --n-ff 128 -o "$tmp/tiny.gguf" >/dev/null 2>"$tmp/mk.err" || { echo "FAIL: mkmodel: $(tail -1 "$tmp/mk.err")"; exit 1; }
"$PY" "$HERE/billing_serve.py" "$BIN" "$tmp/tiny.gguf" "$tmp"
