#!/usr/bin/env bash
# Fair shares between accounts and compute attribution on a served model
# (checks in fair_compute.py, standard library only; --max-running 8): with
# weights 3:1 and
# both accounts flooding, the tokens streamed while both are backlogged split
# 3:1 (within 25%); a light account's request overtakes a flood, and the
# flooding account's throughput while the light one sends is at least 0.9x
# what it gets alone (the same flood of 64; 6 windows of 1 s with the
# light account sending, alternating with 7 where it pauses); the sum of
# the usage records' compute_s equals /metrics maas_compute_seconds_total
# within 1%; margin = cost - compute_cost exactly in every grouping, in JSON
# and CSV; /v1/usage shows no compute figures. Exit 77 (skip) when the
# program, `serve` or mkmodel is not available.
# maas-test: serial
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
"$BIN" mkmodel --arch qwen2 --train-vocab "$root/data/vocab-train.txt" --n-embd 256 --n-layer 4 --n-head 4 \
  --n-head-kv 2 --n-ff 1024 -o "$tmp/tiny.gguf" >/dev/null 2>"$tmp/mk.err" || { echo "FAIL: mkmodel: $(tail -1 "$tmp/mk.err")"; exit 1; }
timeout 300 "$PY" "$HERE/fair_compute.py" "$BIN" "$tmp/tiny.gguf" "$tmp"
