#!/usr/bin/env bash
# Tools end to end against maas serve, on a random-weight model whose
# vocabulary carries two user-defined tokens that each hold a whole Hermes
# call (one well-formed, one malformed) and whose chat template is
# serve_tools.jinja (Hermes-style, with an enable_thinking switch). A
# logit_bias of +100 on a call token makes the model write that call, so the
# response path is tested deterministically: tool_calls (whole and
# streamed), finish_reason, parallel_tool_calls, tool_choice none, a
# malformed call never written with tool_choice auto (the lazy grammar) and
# returned as text when the tool's schema cannot be enforced, reasoning_content and its token count,
# a tool round rendered as `maas template` renders it (same prompt tokens,
# both with the file's tokenizer.chat_template.tool_use since it has tools),
# the 400 for a forced call whose schema cannot be enforced, and the 400 for tools on a model served with
# a built-in family (--chat-template chatml). Checks in serve_tools.py.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/serve_lib.bash"

"$BIN" mkmodel --arch qwen2 --train-vocab "$ROOT/data/vocab-train.txt" --n-embd 64 --n-layer 2 --n-head 4 \
  --n-head-kv 2 --n-ff 128 -o "$tmp/base.gguf" >/dev/null 2>"$tmp/mk.err" || { echo "FAIL: mkmodel: $(tail -1 "$tmp/mk.err")"; exit 1; }
# the file's tool_use variant: the same template with a marker, so that its use shows
sed 's/^# Tools$/# Tools (tool_use variant)/' "$HERE/serve_tools.jinja" >"$tmp/tool_use.jinja"
ids=$("$PY" "$HERE/tools_vocab.py" --tool-use "$tmp/tool_use.jinja" "$tmp/base.gguf" "$tmp/vocab.gguf" "$HERE/serve_tools.jinja" \
  '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>' \
  '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>') || { echo "FAIL: tools_vocab.py"; exit 1; }
"$BIN" mkmodel --arch qwen2 --vocab "$tmp/vocab.gguf" --n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 128 \
  -o "$tmp/tools.gguf" >/dev/null 2>"$tmp/mk.err" || { echo "FAIL: mkmodel --vocab: $(tail -1 "$tmp/mk.err")"; exit 1; }
serve_start "$tmp/serve.log" --model "tiny=$tmp/tools.gguf" --threads 1 --ctx 2048 || exit 1
main_port=$port
# the same model forced to the built-in ChatML family: tools need the model's own template
serve_start "$tmp/family.log" --model "tiny=$tmp/tools.gguf" --chat-template chatml --threads 1 --ctx 2048 || exit 1
FAMILY_PORT=$port timeout 120 "$PY" "$HERE/serve_tools.py" "$main_port" "$BIN" "$tmp/tools.gguf" "$tmp" $ids
rc=$?
[ $rc -eq 0 ] || { echo "--- server log (tail)"; tail -20 "$tmp/serve.log"; }
exit $rc
