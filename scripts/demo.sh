#!/usr/bin/env bash
# `make run`: a billed demo that works at once. It serves the demo model that
# ships in data/demo-kjv.gguf (a small Mixture-of-Experts model that `maas
# train` trained on the King James Bible; `make demo-model` retrains it). The
# first time it makes a ledger in build/demo/data with an admin key, a demo
# account with credit, a price for the model and an API key for the account;
# later runs reuse them. Then it prints a curl command to paste and the
# command that shows the bill, and becomes `maas serve` on 127.0.0.1:$PORT
# (default 8080). Without data/demo-kjv.gguf it generates a model with random
# weights instead, and says so.
#
#   PORT=9000 make run     another port
#   DEMO_DIR, MAAS_BIN     another place for the demo's files, another program (tests)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MAAS_BIN:-./build/maas}
DEMO=${DEMO_DIR:-build/demo}
DATA=$DEMO/data
MODEL=${DEMO_MODEL:-data/demo-kjv.gguf}
PORT=${PORT:-8080}
HOST=127.0.0.1
umask 077
mkdir -p "$DEMO"

ABOUT=" The demo model is a 8M-parameter Mixture-of-Experts model that maas train
 trained on the King James Bible (data/demo-kjv.gguf; make demo-model retrains
 it): it speaks in the Bible's English and knows nothing else."
if [ ! -s "$MODEL" ]; then
  MODEL=$DEMO/random.gguf
  ABOUT=" NOTE: data/demo-kjv.gguf is missing (make demo-model trains it), so the demo
 model's weights are RANDOM: it answers quickly, in gibberish."
  if [ ! -s "$MODEL" ]; then
    echo "demo: data/demo-kjv.gguf is missing; generating a model with random weights in $MODEL"
    "$BIN" mkmodel --arch qwen2 --train-vocab data/vocab-train.txt --n-embd 256 --n-layer 4 --n-head 8 \
      --n-head-kv 4 --n-ff 512 --name demo -o "$MODEL.tmp" >/dev/null
    mv "$MODEL.tmp" "$MODEL"
  fi
fi

# the ledger: made once; the keys stay in build/demo (mode 0600), never in a log
if [ ! -s "$DEMO/api-key" ]; then
  rm -rf "$DATA"
  "$BIN" admin --data "$DATA" admin-key create | tail -n 1 >"$DEMO/admin-key.tmp"
  mv "$DEMO/admin-key.tmp" "$DEMO/admin-key"
  account=$("$BIN" admin --data "$DATA" account create demo --credit 10 | tail -n 1)
  "$BIN" admin --data "$DATA" price set demo --input 0.50 --cached-input 0.25 --output 1.50 >/dev/null
  "$BIN" admin --data "$DATA" key create "$account" | tail -n 1 >"$DEMO/api-key.tmp"
  mv "$DEMO/api-key.tmp" "$DEMO/api-key"
  echo "demo: created the ledger $DATA: account 'demo' ($account) with a credit of 10, a price for model 'demo'"
  echo "      (0.50 input, 0.25 cached input, 1.50 output per million tokens) and an API key"
fi
key=$(cat "$DEMO/api-key")

cat <<EOF

============================================================================
 maas demo — model 'demo' on http://$HOST:$PORT
$ABOUT

 Ask it (paste this):

curl -s http://$HOST:$PORT/v1/chat/completions -H "Authorization: Bearer $key" -H "Content-Type: application/json" -d '{"model":"demo","messages":[{"role":"user","content":"Who made the heaven and the earth?"}],"max_tokens":48,"temperature":0.6}'

 or let it continue a text:

curl -s http://$HOST:$PORT/v1/completions -H "Authorization: Bearer $key" -H "Content-Type: application/json" -d '{"model":"demo","prompt":"And God said","max_tokens":48,"temperature":0.6}'

 See the bill:

$BIN admin --data $DATA usage --by model

 The API key is in $DEMO/api-key, the admin key (for /admin/...) in $DEMO/admin-key.
 Ctrl-C stops the server.
============================================================================

EOF
exec "$BIN" serve --model "demo=$MODEL" --data "$DATA" --admin-key-file "$DEMO/admin-key" --host "$HOST" --port "$PORT"
