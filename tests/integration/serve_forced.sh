#!/usr/bin/env bash
# Forced tool calls end to end against maas serve (tool_choice "required" and
# a named function), on a random-weight model whose vocabulary holds the
# Hermes markers <tool_call> and </tool_call> as control tokens and whose
# chat template is serve_forced.jinja (Hermes-style, no reasoning, so that a
# random model is not let into an endless <think>). At temperature 1 with
# several seeds every response must end in finish_reason tool_calls with an
# allowed name and arguments that validate against the tool's schema
# (python3-jsonschema); a logit_bias on the marker tokens shows they are
# reachable as single control tokens; a schema the compiler cannot enforce
# is a 400 naming it. tool_choice "auto" (parallel_tool_calls false) with a
# logit_bias on <tool_call>: +100 or +6 (some text first), every answer that
# starts a call ends in exactly one valid call (the lazy grammar), whole and
# streamed; -100: plain text. Checks in serve_forced.py.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/serve_lib.bash"
"$PY" -c "import jsonschema" 2>/dev/null || { echo "python3-jsonschema is not installed"; exit 77; }

"$BIN" mkmodel --arch qwen2 --train-vocab "$ROOT/data/vocab-train.txt" --n-embd 64 --n-layer 2 --n-head 4 \
  --n-head-kv 2 --n-ff 128 -o "$tmp/base.gguf" >/dev/null 2>"$tmp/mk.err" || { echo "FAIL: mkmodel: $(tail -1 "$tmp/mk.err")"; exit 1; }
ids=$("$PY" "$HERE/tools_vocab.py" "$tmp/base.gguf" "$tmp/vocab.gguf" "$HERE/serve_forced.jinja" \
  'ctl:<tool_call>' 'ctl:</tool_call>') || { echo "FAIL: tools_vocab.py"; exit 1; }
"$BIN" mkmodel --arch qwen2 --vocab "$tmp/vocab.gguf" --n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 128 \
  -o "$tmp/forced.gguf" >/dev/null 2>"$tmp/mk.err" || { echo "FAIL: mkmodel --vocab: $(tail -1 "$tmp/mk.err")"; exit 1; }
serve_start "$tmp/serve.log" --model "tiny=$tmp/forced.gguf" --threads 1 --ctx 2048 || exit 1
timeout 120 "$PY" "$HERE/serve_forced.py" "$port" $ids
rc=$?
[ $rc -eq 0 ] || { echo "--- server log (tail)"; tail -20 "$tmp/serve.log"; }
exit $rc
