#!/usr/bin/env bash
# maas template: a few shared chat templates over every shared chat case
# must print exactly what ../shared/tools/render_chat_template.py prints,
# and fail (exit 1) where the reference fails; --now fixes strftime_now;
# --model reads the template and the BOS/EOS texts from a GGUF file;
# --chat-template FILE.jinja replaces a model's template in chat and serve.
set -u
cd "$(dirname "$0")/../.."
MAAS_BIN=${MAAS_BIN:-build/maas}
shared=""
for d in ../shared ../../shared; do [ -d "$d/testdata/templates" ] && shared=$d && break; done
if [ ! -x "$MAAS_BIN" ]; then echo "skip: $MAAS_BIN not built"; exit 77; fi
if [ -z "$shared" ]; then echo "skip: ../shared/testdata not found"; exit 77; fi
if ! /usr/bin/python3 -c 'import jinja2' 2>/dev/null; then echo "skip: /usr/bin/python3 has no jinja2 (python3-jinja2)"; exit 77; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0; n=0
for t in meta-llama-Llama-3.1-8B-Instruct Qwen-Qwen3-0.6B openai-gpt-oss-120b google-gemma-2-2b-it; do
  for c in "$shared"/testdata/chat/*.json; do
    n=$((n + 1))
    "$MAAS_BIN" template --template-file "$shared/testdata/templates/$t.jinja" --now 2026-03-01 "$c" >"$tmp/got" 2>"$tmp/err"; got_rc=$?
    /usr/bin/python3 "$shared/tools/render_chat_template.py" "$shared/testdata/templates/$t.jinja" "$c" --now 2026-03-01 \
      >"$tmp/want" 2>/dev/null; want_rc=$?
    if [ "$got_rc" != "$want_rc" ] || ! cmp -s "$tmp/got" "$tmp/want"; then
      echo "FAIL $t × $(basename "$c"): exit $got_rc (reference $want_rc) $(head -c 300 "$tmp/err")"; fail=1
    fi
  done
done
# --model: the template and BOS/EOS of a model file (mkmodel writes a ChatML template)
"$MAAS_BIN" mkmodel --arch qwen2 --train-vocab README.md --vocab-size 400 --n-embd 32 --n-layer 1 --n-head 2 --n-ff 64 \
  -o "$tmp/m.gguf" >/dev/null 2>&1 || { echo "FAIL mkmodel"; fail=1; }
printf '{"messages": [{"role": "user", "content": "Hi"}]}' >"$tmp/case.json"
out=$("$MAAS_BIN" template --model "$tmp/m.gguf" "$tmp/case.json")
case "$out" in *"<|im_start|>user"*"Hi"*"<|im_start|>assistant"*) ;; *) echo "FAIL --model rendered: $out"; fail=1 ;; esac
# usage and file errors exit 2; a template error 1
"$MAAS_BIN" template "$tmp/case.json" >/dev/null 2>&1; [ $? = 2 ] || { echo "FAIL: no template source should exit 2"; fail=1; }
"$MAAS_BIN" template --template-file "$tmp/case.json" --now 2026-13-45 "$tmp/case.json" >/dev/null 2>&1
[ $? = 2 ] || { echo "FAIL: a bad --now should exit 2"; fail=1; }
printf '{{ raise_exception("no") }}' >"$tmp/t.jinja"
msg=$("$MAAS_BIN" template --template-file "$tmp/t.jinja" "$tmp/case.json" 2>&1); rc=$?
[ $rc = 1 ] && [[ "$msg" == *"line 1 col 4: no"* ]] || { echo "FAIL: raise_exception: exit $rc, '$msg'"; fail=1; }
# --chat-template FILE.jinja replaces the model's template in chat and serve; one that does not parse is refused
printf '{%% for m in messages %%}### {{ m.role }}: {{ m.content }}\n{%% endfor %%}### assistant:' >"$tmp/good.jinja"
echo hello | timeout 120 "$MAAS_BIN" chat --model "$tmp/m.gguf" --chat-template "$tmp/good.jinja" -n 2 >/dev/null 2>"$tmp/err" \
  || { echo "FAIL: chat with a template file: $(head -c 300 "$tmp/err")"; fail=1; }
printf '{%% for m in messages %%}' >"$tmp/bad.jinja"
msg=$(timeout 60 "$MAAS_BIN" serve --model "$tmp/m.gguf" --chat-template "$tmp/bad.jinja" --no-auth --port 1 2>&1); rc=$?
[ $rc != 0 ] && [[ "$msg" == *"missing {% endfor %}"* ]] || { echo "FAIL: serve with a bad template file: exit $rc, '$msg'"; fail=1; }
[ $fail = 0 ] && echo "ok: $n template × case renderings match the reference; --model and errors behave"
exit $fail
