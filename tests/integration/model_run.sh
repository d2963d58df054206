#!/usr/bin/env bash
# maas run / chat / bench end to end on tiny random models made by
# `maas mkmodel`: the --json format line by line, greedy logprobs, seed
# reproducibility, argument and file errors, KV reuse across chat turns, and
# bench --json. Exit 77 (skip) when the program or mkmodel is not available.
set -u
BIN=${MAAS_BIN:-build/maas}
PY=/usr/bin/python3
[ -x "$BIN" ] || { echo "no maas program at $BIN"; exit 77; }
"$BIN" mkmodel --help >/dev/null 2>&1 || { echo "maas mkmodel is not available"; exit 77; }
[ -x "$PY" ] || PY=python3

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
die() { echo "FAIL: $*"; fail=1; }

# A vocabulary: the shared GPT-2 one when present, else one learned here.
vocab=()
for d in ../shared/testdata ../../shared/testdata; do
  if [ -f "$d/tokenizer/gpt-2.gguf" ]; then vocab=(--vocab "$d/tokenizer/gpt-2.gguf"); break; fi
done
if [ ${#vocab[@]} -eq 0 ]; then
  for i in $(seq 200); do echo "the quick brown fox $i jumps over the lazy dog, naïve café $((i * 7))"; done >"$tmp/text.txt"
  vocab=(--train-vocab "$tmp/text.txt" --vocab-size 600)
fi

for arch in llama qwen2 qwen3; do
  "$BIN" mkmodel --arch "$arch" "${vocab[@]}" -o "$tmp/$arch.gguf" --n-embd 64 --n-layer 2 --n-head 4 \
    --n-head-kv 2 --n-ff 128 --seed 5 >/dev/null 2>"$tmp/err" || { die "mkmodel $arch: $(tail -1 "$tmp/err")"; continue; }

  # --json: exactly one object per generated token, the documented fields only
  "$BIN" run --model "$tmp/$arch.gguf" --prompt "Hello, world" -n 12 --temp 0 --top-logprobs 4 --json \
    >"$tmp/out.jsonl" 2>"$tmp/err" || { die "run $arch: $(tail -1 "$tmp/err")"; continue; }
  "$PY" - "$tmp/out.jsonl" 12 4 <<'PYEOF' || die "run --json $arch: bad output"
import json, math, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
n, k = int(sys.argv[2]), int(sys.argv[3])
assert 1 <= len(lines) <= n, "got %d lines, wanted 1..%d" % (len(lines), n)
for i, line in enumerate(lines):
    o = json.loads(line)
    assert list(o.keys()) == ["id", "text", "logprob", "top_logprobs"], o.keys()
    assert isinstance(o["id"], int) and isinstance(o["text"], str), o
    assert o["logprob"] <= 1e-6, o
    top = o["top_logprobs"]
    assert len(top) == k, top
    for t in top:
        assert list(t.keys()) == ["id", "logprob"] and isinstance(t["id"], int), t
    lps = [t["logprob"] for t in top]
    assert lps == sorted(lps, reverse=True), lps
    assert sum(math.exp(x) for x in lps) <= 1 + 1e-4, lps
    # greedy: the chosen token is the most probable one
    assert top[0]["id"] == o["id"] and abs(top[0]["logprob"] - o["logprob"]) < 1e-6, o
if len(lines) < n:
    print("stopped early at an end-of-generation token after %d" % len(lines))
PYEOF
done

m="$tmp/qwen2.gguf"
# seeded sampling is reproducible; another seed gives another text
a=$("$BIN" run --model "$m" --prompt "Once upon a time" -n 24 --temp 1.0 --top-k 0 --top-p 1 --min-p 0 --seed 7 --json 2>/dev/null | cut -d, -f1)
b=$("$BIN" run --model "$m" --prompt "Once upon a time" -n 24 --temp 1.0 --top-k 0 --top-p 1 --min-p 0 --seed 7 --json 2>/dev/null | cut -d, -f1)
c=$("$BIN" run --model "$m" --prompt "Once upon a time" -n 24 --temp 1.0 --top-k 0 --top-p 1 --min-p 0 --seed 8 --json 2>/dev/null | cut -d, -f1)
[ -n "$a" ] && [ "$a" = "$b" ] || die "the same seed gave different tokens"
[ "$a" != "$c" ] || die "seeds 7 and 8 gave the same 24 tokens"

# text mode streams something and exits 0
"$BIN" run --model "$m" --prompt "Hi" -n 8 --seed 1 >"$tmp/text.out" 2>"$tmp/err" || die "text run: $(tail -1 "$tmp/err")"

# errors: one line naming the problem, exit codes 1 (runtime) and 2 (usage)
"$BIN" run --model "$tmp/missing.gguf" --prompt x >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q "missing.gguf" "$tmp/err" && [ "$(wc -l <"$tmp/err")" -eq 1 ] || die "missing model: rc $rc: $(cat "$tmp/err")"
"$BIN" run --model "$m" --prompt x --temp -1 >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q -- "--temp" "$tmp/err" || die "bad --temp: rc $rc: $(cat "$tmp/err")"
"$BIN" run --model "$m" --prompt x --top-logprobs 99 >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] || die "bad --top-logprobs accepted (rc $rc)"
head -c 1000 "$m" >"$tmp/trunc.gguf"
"$BIN" run --model "$tmp/trunc.gguf" --prompt x >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q "trunc.gguf" "$tmp/err" || die "truncated model: rc $rc: $(cat "$tmp/err")"

# chat over a pipe: the second turn reuses the KV of the first
printf 'Hello there\nTell me more\n/exit\n' | "$BIN" chat --model "$m" --temp 0 -n 6 --verbose >"$tmp/chat.out" 2>"$tmp/chat.err"
rc=$?
[ $rc -eq 0 ] || die "chat: rc $rc: $(tail -1 "$tmp/chat.err")"
t2=$(grep -o 'turn 2: prompt [0-9]* tokens, [0-9]* reused' "$tmp/chat.err")
reused=$(echo "$t2" | sed -E 's/.*, ([0-9]+) reused/\1/')
[ -n "$reused" ] && [ "$reused" -gt 5 ] || die "chat turn 2 reused no KV: $(cat "$tmp/chat.err")"

# bench --json: the fields, positive speeds, no growth of memory per token
# and the compute ceiling's multiply-adds per prompt token = the elements of
# the layers' weight matrices, counted here from `maas inspect --json`
"$BIN" bench --model "$m" -p 32 -n 16 --threads 2 --json >"$tmp/bench.json" 2>"$tmp/err" || die "bench: $(tail -1 "$tmp/err")"
"$BIN" inspect --json "$m" >"$tmp/inspect.json" 2>"$tmp/err" || die "inspect --json: $(tail -1 "$tmp/err")"
"$PY" - "$tmp/bench.json" "$tmp/inspect.json" <<'PYEOF' || die "bench --json: bad output: $(cat "$tmp/bench.json")"
import json, re, sys
o = json.loads(open(sys.argv[1]).read())
for k in ("pp_tokens_per_s", "tg_tokens_per_s", "bandwidth_gb_s", "bytes_per_token", "roofline_fraction"):
    assert o[k] > 0, k
assert o["pp_tokens"] == 32 and o["tg_tokens"] == 16
assert o["rss_after_tg_mib"] - o["rss_before_tg_mib"] < 1, "memory grew during generation"
ins = json.loads(open(sys.argv[2]).read())
macs = 0
for t in ins["tensors"]:
    if re.fullmatch(r"blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight", t["name"]):
        macs += t["shape"][0] * t["shape"][1]
assert o["pp_macs_per_token"] == macs, (o["pp_macs_per_token"], macs)
if o["kernels"] != "ref":
    assert o["mac_peak_gmac_s"] > 0 and o["pp_ceiling_fraction"] > 0, "no compute ceiling"
    assert abs(o["pp_ceiling_tokens_per_s"] - o["mac_peak_gmac_s"] * 1e9 / macs) < 1e-3 * o["pp_ceiling_tokens_per_s"]
PYEOF

[ $fail -eq 0 ] && echo "model_run: all checks passed"
exit $fail
