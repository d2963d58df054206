#!/usr/bin/env bash
# Forced tool calls on a tiny random-weight model (the serve_forced.sh setup:
# a Hermes template, <tool_call> and </tool_call> control tokens), one
# stream, 20 requests each at temperature 1: unconstrained (tool_choice none),
# tool_choice auto (its lazy grammar waiting: text only), auto with the call
# started at once (logit_bias +100 on <tool_call>), tool_choice required
# among 8 tools, and response_format with the same schema. Prints completion tokens/s end to end and the first request's
# latency (the grammar is built, compiled and its masks computed then).
# usage: bench/forced_bench.sh   (from the project root, after make)
set -u
HERE=$(cd "$(dirname "$0")/../tests/integration" && pwd)
. "$HERE/serve_lib.bash"
"$BIN" mkmodel --arch qwen2 --train-vocab "$ROOT/data/vocab-train.txt" --n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 128 -o "$tmp/base.gguf" >/dev/null 2>&1
ids=$("$PY" "$HERE/tools_vocab.py" "$tmp/base.gguf" "$tmp/vocab.gguf" "$HERE/serve_forced.jinja" 'ctl:<tool_call>' 'ctl:</tool_call>')
"$BIN" mkmodel --arch qwen2 --vocab "$tmp/vocab.gguf" --n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 128 -o "$tmp/f.gguf" >/dev/null 2>&1
serve_start "$tmp/serve.log" --model "tiny=$tmp/f.gguf" --threads 1 --ctx 2048 || exit 1
"$PY" - "$port" $ids <<'PY'
import http.client, json, sys, time
port, OPEN = int(sys.argv[1]), sys.argv[2]
S = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["celsius", "fahrenheit"]},
     "days": {"type": "integer", "minimum": 1, "maximum": 7}}, "required": ["city", "unit", "days"]}
tools = [{"type": "function", "function": {"name": "t%d" % i, "parameters": S}} for i in range(8)]
def post(b):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    t = time.time(); c.request("POST", "/v1/chat/completions", json.dumps(b)); r = json.loads(c.getresponse().read()); dt = time.time() - t
    return r, dt
base = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "temperature": 1}
post(dict(base, tools=tools, tool_choice="none", max_tokens=1))  # warm-up: the tools prompt enters the prefix cache
for name, extra in [("tools, tool_choice none", {"tools": tools, "tool_choice": "none", "max_tokens": 40,
                                                 "ignore_eos": True, "logit_bias": {OPEN: -100}}),
                    ("auto, text only (lazy, waiting)", {"tools": tools, "max_tokens": 40, "ignore_eos": True,
                                                         "logit_bias": {OPEN: -100}}),
                    ("auto, call started at once", {"tools": tools, "parallel_tool_calls": False, "max_tokens": 400,
                                                    "logit_bias": {OPEN: 100}}),
                    ("forced, required of 8 tools", {"tools": tools, "tool_choice": "required", "parallel_tool_calls": False, "max_tokens": 400}),
                    ("response_format, same schema", {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": S}}, "max_tokens": 400})]:
    toks = secs = 0; first = None
    for seed in range(1, 21):
        r, dt = post(dict(base, seed=seed, **extra))
        if "usage" not in r: print(name, r); break
        if first is None: first = dt
        toks += r["usage"]["completion_tokens"]; secs += dt
    print("%-32s %5d tokens in %.2f s: %6.0f tokens/s (first request %.1f ms)" % (name, toks, secs, toks / secs, first * 1000))
PY
