#!/usr/bin/env bash
# Structured output end to end: `maas serve` with tiny random-weight models
# of the gpt-2 and deepseek-llm vocabularies (../shared/testdata/tokenizer;
# without it, the project's own trained vocabulary), and
# grammar_conformance.py's 66 schemas x 3 seeds per model, validated by
# python3-jsonschema. Also a GBNF `grammar` request, a bad grammar's 400
# with its position, and finish_reason `stop` when the grammar completes.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/serve_lib.bash
"$PY" -c 'import jsonschema' 2>/dev/null || { echo "python3-jsonschema is not installed (scripts/setup.sh)"; exit 77; }

shared=""
for d in "${MAAS_SHARED_TESTDATA:-}" ../shared/testdata ../../shared/testdata; do
  [ -n "$d" ] && [ -f "$d/tokenizer/gpt-2.gguf" ] && { shared=$d; break; }
done
models=()
if [ -n "$shared" ]; then
  for v in gpt-2 deepseek-llm; do
    "$BIN" mkmodel --arch qwen2 --vocab "$shared/tokenizer/$v.gguf" --n-embd 64 --n-layer 2 --n-head 4 \
      --n-head-kv 2 --n-ff 128 -o "$tmp/$v.gguf" >/dev/null 2>"$tmp/mk.err" \
      || { echo "FAIL: mkmodel $v: $(tail -1 "$tmp/mk.err")"; exit 1; }
    models+=(--model "$v=$tmp/$v.gguf")
  done
  names=(gpt-2 deepseek-llm)
else
  echo "(no ../shared/testdata: the project's own vocabulary only)"
  serve_tiny_model
  models=(--model "tiny=$tmp/tiny.gguf")
  names=(tiny)
fi
serve_start "$tmp/serve.log" --threads 2 "${models[@]}" || exit 1

# a GBNF grammar: the output is exactly one of the alternatives, finish stop
out=$(curl -s "localhost:$port/v1/completions" -d '{"model":"'"${names[0]}"'","prompt":"x","max_tokens":50,"seed":5,
  "grammar":"root ::= (\"yes\" | \"no\") \" \" [0-9]{2}\n"}')
echo "$out" | "$PY" -c '
import json, re, sys
c = json.load(sys.stdin)["choices"][0]
assert re.fullmatch(r"(yes|no) [0-9]{2}", c["text"]) and c["finish_reason"] == "stop", c
' || { echo "FAIL: grammar request: $out"; exit 1; }
# a bad grammar: 400 naming the field and the position
out=$(curl -s "localhost:$port/v1/completions" -d '{"model":"'"${names[0]}"'","prompt":"x","grammar":"root ::= \"a\" bogus"}')
echo "$out" | grep -q '"param":"grammar"' && echo "$out" | grep -q "line 1 col 14: undefined rule 'bogus'" \
  || { echo "FAIL: bad grammar answer: $out"; exit 1; }
out=$(curl -s "localhost:$port/v1/chat/completions" -d '{"model":"'"${names[0]}"'","messages":[{"role":"user","content":"x"}],
  "response_format":{"type":"json_schema","json_schema":{"name":"t","schema":{"type":"object","patternProperties":{}}}}}')
echo "$out" | grep -q '"param":"response_format"' && echo "$out" | grep -q "patternProperties" \
  || { echo "FAIL: unsupported keyword answer: $out"; exit 1; }
# streaming is unchanged: chunks, then finish_reason stop
out=$(curl -sN "localhost:$port/v1/chat/completions" -d '{"model":"'"${names[0]}"'","messages":[{"role":"user","content":"x"}],
  "stream":true,"max_tokens":300,"seed":2,"response_format":{"type":"json_object"}}')
echo "$out" | grep -q '"finish_reason":"stop"\|"finish_reason":"length"' || { echo "FAIL: stream: $out"; exit 1; }

"$PY" tests/integration/grammar_conformance.py "$port" "${names[@]}" || exit 1
echo "ok"
