#!/usr/bin/env bash
# maas serve driven by the official OpenAI Node SDK (npm package `openai`,
# pinned in tests/sdk/package-lock.json): plain, streamed and usage-carrying
# chat, completions, embeddings, stop strings, seeds, model listing, and errors surfacing
# as the SDK's BadRequestError / NotFoundError / RateLimitError. The checks
# are in tests/sdk/openai.test.mjs (node --test).
#
# Installs the SDK with `npm ci` when tests/sdk/node_modules is missing; exits
# 77 (skip) only when node/npm are absent or the npm registry is unreachable.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/serve_lib.bash"
SDK="$ROOT/tests/sdk"

command -v node >/dev/null || { echo "node is not installed (scripts/setup.sh installs nodejs)"; exit 77; }
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || { echo "node $major is too old for the test runner (need >= 20)"; exit 77; }
if [ ! -f "$SDK/node_modules/openai/package.json" ]; then
  command -v npm >/dev/null || { echo "npm is not installed (scripts/setup.sh installs npm)"; exit 77; }
  echo "installing the openai SDK: npm ci in tests/sdk"
  if ! (cd "$SDK" && timeout 180 npm ci --no-audit --no-fund >"$tmp/npm.log" 2>&1); then
    cat "$tmp/npm.log"
    if (cd "$SDK" && timeout 30 npm ping >/dev/null 2>&1); then
      echo "FAIL: npm ci failed although the registry answers"; exit 1
    fi
    echo "npm cannot reach the registry to install the openai SDK"; exit 77
  fi
fi
echo "openai SDK $(node -p "require('$SDK/node_modules/openai/package.json').version"), node $(node --version)"

serve_tiny_model
# a second model whose vocabulary holds a whole Hermes call as one token (serve_tools.sh explains)
call_id=$("$PY" "$HERE/tools_vocab.py" "$tmp/tiny.gguf" "$tmp/tools-vocab.gguf" "$HERE/serve_tools.jinja" \
  '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>') || { echo "FAIL: tools_vocab.py"; exit 1; }
"$BIN" mkmodel --arch qwen2 --vocab "$tmp/tools-vocab.gguf" --n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 \
  --n-ff 128 -o "$tmp/tools.gguf" >/dev/null 2>"$tmp/mk.err" || { echo "FAIL: mkmodel: $(tail -1 "$tmp/mk.err")"; exit 1; }
# a third with a Hermes template without reasoning, for forced calls (serve_forced.sh explains)
"$PY" "$HERE/tools_vocab.py" "$tmp/tiny.gguf" "$tmp/forced-vocab.gguf" "$HERE/serve_forced.jinja" >/dev/null \
  || { echo "FAIL: tools_vocab.py"; exit 1; }
"$BIN" mkmodel --arch qwen2 --vocab "$tmp/forced-vocab.gguf" --n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 \
  --n-ff 128 -o "$tmp/forced.gguf" >/dev/null 2>"$tmp/mk.err" || { echo "FAIL: mkmodel: $(tail -1 "$tmp/mk.err")"; exit 1; }
# an embedding model beside it: a tiny random BERT
"$BIN" mkmodel --arch bert --train-vocab "$ROOT/data/vocab-train.txt" --n-embd 64 --n-layer 2 --n-head 4 --n-ff 128 \
  -o "$tmp/emb.gguf" >/dev/null 2>"$tmp/mk.err" || { echo "FAIL: mkmodel bert: $(tail -1 "$tmp/mk.err")"; exit 1; }
serve_start "$tmp/main.log" --model "tiny=$tmp/tiny.gguf" --model "tools=$tmp/tools.gguf" --model "forced=$tmp/forced.gguf" --model "emb=$tmp/emb.gguf" --threads 1 --ctx 4096 || exit 1
main_port=$port
# a server that is full with one running and one queued request: the third gets 429
serve_start "$tmp/busy.log" --model "tiny=$tmp/tiny.gguf" --threads 1 --ctx 65536 --max-queue 1 --max-running 1 \
  || exit 1
busy_port=$port

MAAS_CALL_TOKEN=$call_id MAAS_URL="http://127.0.0.1:$main_port/v1" MAAS_BUSY_URL="http://127.0.0.1:$busy_port/v1" MAAS_MODEL=tiny MAAS_EMB_MODEL=emb \
  timeout 85 node --test --test-reporter=spec "$SDK/openai.test.mjs"
rc=$?
[ $rc -eq 0 ] || { echo "--- server log (tail)"; tail -20 "$tmp/main.log"; tail -5 "$tmp/busy.log"; }
exit $rc
