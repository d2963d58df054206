#!/usr/bin/env bash
# maas mkmodel: every architecture (dense and MoE) with the built-in trained
# vocabulary and, when ../shared is there, the real GPT-2 vocabulary. Checks
# with an independent GGUF reader (tools_gguf.py): llama.cpp's tensor names
# and shapes, the hyper-parameter keys, the tokenizer keys, the weight scales;
# that a seed gives the same bytes for any thread count and another seed other
# weights; that --type writes what `maas quantize` would; and that bad input
# is one clean error line with exit code 1 or 2 and no file left behind.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
M=${MAAS_BIN:-$ROOT/build/maas}
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

TEXT=$ROOT/data/vocab-train.txt
GPT2=$ROOT/../shared/testdata/tokenizer/gpt-2.gguf
VOCABS=(trained)
if [ -f "$GPT2" ]; then VOCABS+=(gpt2); else echo "note: $GPT2 absent: only the built-in vocabulary is tested"; fi

vocab_args() { # name
  if [ "$1" = trained ]; then echo "--train-vocab $TEXT --vocab-size 1024"; else echo "--vocab $GPT2"; fi
}

SMALL="--n-embd 64 --n-layer 3 --n-head 4 --n-head-kv 2 --n-ff 96 --n-ctx 512 --n-ff-exp 32 --n-ff-shexp 48"
ARCHS=("llama" "llama --n-expert 4 --n-expert-used 2" "qwen2" "qwen3 --head-dim 32" "qwen2moe" "qwen3moe --n-expert 6")

check_model() { # file, vocab-name, arch args...
  local f=$1 vname=$2; shift 2
  "$PY" "$HERE/tools_gguf.py" --stats "$f" >"$T/j.json"
  local vj=""
  if [ "$vname" = gpt2 ]; then
    [ -f "$T/gpt2.json" ] || "$PY" "$HERE/tools_gguf.py" "$GPT2" >"$T/gpt2.json"
    vj="$T/gpt2.json"
  fi
  "$PY" - "$T/j.json" "$vj" "$@" <<'EOF'
import json, math, sys
d = json.load(open(sys.argv[1]))
vocab = json.load(open(sys.argv[2])) if sys.argv[2] else None
args = sys.argv[3:]
arch = args[0]
opt = {a.lstrip("-"): args[i + 1] for i, a in enumerate(args) if a.startswith("--") and i + 1 < len(args)}
kv, tensors = d["kv"], {t["name"]: t for t in d["tensors"]}
errors = []
def want(cond, msg):
    if not cond:
        errors.append(msg)

E, L, H, HKV, FF = 64, 3, 4, 2, 96
n_exp = int(opt.get("n-expert", 8 if arch.endswith("moe") else 0))
used = 2
FE, FS = 32, 48
hd = int(opt.get("head-dim", E // H))
toks = kv["tokenizer.ggml.tokens"]
V = toks["n"] if isinstance(toks, dict) else len(toks)

# metadata as llama.cpp's converter writes it
want(kv.get("general.architecture") == arch, "architecture")
want(kv.get("general.file_type") == 0, "file_type of an f32 model is 0")
p = arch + "."
expect = {"context_length": 512, "embedding_length": E, "block_count": L,
          "attention.head_count": H, "attention.head_count_kv": HKV}
expect["feed_forward_length"] = FE if (arch == "llama" and n_exp) else FF
if arch.startswith("qwen3"):
    expect["attention.key_length"] = hd
    expect["attention.value_length"] = hd
if n_exp:
    expect["expert_count"] = n_exp
    expect["expert_used_count"] = used
if arch in ("qwen2moe", "qwen3moe"):
    expect["expert_feed_forward_length"] = FE
if arch == "qwen2moe":
    expect["expert_shared_feed_forward_length"] = FS
if arch == "llama":
    expect["vocab_size"] = V
    expect["rope.dimension_count"] = hd
for k, v in expect.items():
    want(kv.get(p + k) == v, "%s%s = %r, expected %r" % (p, k, kv.get(p + k), v))
want(abs(kv.get(p + "rope.freq_base", 0) - (10000.0 if arch == "llama" else 1e6)) < 1e-3, "rope.freq_base")
eps = kv.get(p + "attention.layer_norm_rms_epsilon", 0)
want(abs(eps - (1e-5 if arch == "llama" else 1e-6)) < 1e-9, "rms epsilon %r" % eps)

# tokenizer: copied verbatim, or the trained gpt2-style vocabulary
tok_keys = sorted(k for k in kv if k.startswith("tokenizer."))
if vocab:
    src = sorted(k for k in vocab["kv"] if k.startswith("tokenizer."))
    want(tok_keys == src, "tokenizer keys %r != %r" % (tok_keys, src))
    for k in src:
        want(kv[k] == vocab["kv"][k], "tokenizer key %s differs from the vocabulary file" % k)
else:
    want(kv["tokenizer.ggml.model"] == "gpt2" and kv["tokenizer.ggml.pre"] == "gpt-2", "gpt2 / gpt-2")
    want(V == 1024, "trained vocabulary has %d tokens, asked for 1024" % V)
    want(toks["dups"] == 0, "duplicate tokens")
    want(toks["head"][:3] == ["!", '"', "#"], "byte tokens in GPT-2 order")
    want(toks["tail"][-3:] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "special tokens last")
    tt = kv["tokenizer.ggml.token_type"]
    want(tt["tail"][-3:] == [3, 3, 3] and tt["tail"][-4] == 1 and tt["head"][0] == 1, "token types")
    merges = kv["tokenizer.ggml.merges"]
    want(merges["n"] >= V - 259, "merges %d for %d tokens" % (merges["n"], V))
    want(all(len(m.split(" ")) == 2 for m in merges["head"] + merges["tail"]), "merge format 'a b'")
    want(kv["tokenizer.ggml.bos_token_id"] == V - 3 and kv["tokenizer.ggml.eos_token_id"] == V - 1, "bos/eos")
    want(kv["tokenizer.ggml.add_bos_token"] is False, "add_bos_token false")
    want("<|im_start|>" in kv["tokenizer.chat_template"], "ChatML template")

# tensors: llama.cpp names and ggml-order shapes, all f32 here
exp = {"token_embd.weight": [E, V], "output_norm.weight": [E]}
tied = arch in ("qwen2", "qwen3")
if not tied:
    exp["output.weight"] = [E, V]
for i in range(L):
    b = "blk.%d." % i
    exp.update({b + "attn_norm.weight": [E], b + "attn_q.weight": [E, H * hd],
                b + "attn_k.weight": [E, HKV * hd], b + "attn_v.weight": [E, HKV * hd],
                b + "attn_output.weight": [H * hd, E], b + "ffn_norm.weight": [E]})
    if arch.startswith("qwen2"):
        exp.update({b + "attn_q.bias": [H * hd], b + "attn_k.bias": [HKV * hd], b + "attn_v.bias": [HKV * hd]})
    if arch.startswith("qwen3"):
        exp.update({b + "attn_q_norm.weight": [hd], b + "attn_k_norm.weight": [hd]})
    if n_exp:
        exp.update({b + "ffn_gate_inp.weight": [E, n_exp], b + "ffn_gate_exps.weight": [E, FE, n_exp],
                    b + "ffn_up_exps.weight": [E, FE, n_exp], b + "ffn_down_exps.weight": [FE, E, n_exp]})
        if arch == "qwen2moe":
            exp.update({b + "ffn_gate_inp_shexp.weight": [E], b + "ffn_gate_shexp.weight": [E, FS],
                        b + "ffn_up_shexp.weight": [E, FS], b + "ffn_down_shexp.weight": [FS, E]})
    else:
        exp.update({b + "ffn_gate.weight": [E, FF], b + "ffn_up.weight": [E, FF], b + "ffn_down.weight": [FF, E]})
want(set(tensors) == set(exp), "tensor names: missing %s, unexpected %s"
     % (sorted(set(exp) - set(tensors)), sorted(set(tensors) - set(exp))))
for n, ne in exp.items():
    if n in tensors:
        want(tensors[n]["ne"] == ne, "%s shape %r, expected %r" % (n, tensors[n]["ne"], ne))
        want(tensors[n]["type"] == "f32", "%s is %s" % (n, tensors[n]["type"]))

# weight scales
def near(n, field, value, tol):
    t = tensors.get(n)
    if t:
        want(abs(t[field] - value) <= tol, "%s %s %.4f, expected %.4f" % (n, field, t[field], value))
near("token_embd.weight", "std", 0.15, 0.01)
near("blk.0.attn_q.weight", "std", 1 / math.sqrt(E), 0.01)
near("blk.1.attn_norm.weight", "mean", 1.0, 0.01)
near("blk.1.attn_norm.weight", "std", 0.02, 0.01)
near("blk.0.attn_output.weight", "std", 1 / math.sqrt(H * hd) / math.sqrt(2 * L), 0.01)
if errors:
    print("\n".join(errors))
    sys.exit(1)
EOF
}

n=0
for v in "${VOCABS[@]}"; do
  for a in "${ARCHS[@]}"; do
    # shellcheck disable=SC2086
    "$M" mkmodel --arch $a $(vocab_args "$v") $SMALL --seed 7 -o "$T/m.gguf" >"$T/out.txt" ||
      fail "mkmodel --arch $a ($v): $(cat "$T/out.txt")"
    # shellcheck disable=SC2086
    check_model "$T/m.gguf" "$v" $a || fail "mkmodel --arch $a ($v vocabulary): wrong model"
    "$M" inspect --json "$T/m.gguf" >"$T/m.inspect.json" || fail "maas inspect --json on the $a model"
    "$PY" - "$T/j.json" "$T/m.inspect.json" <<'EOF' || fail "maas inspect disagrees with the $a model"
import json, sys
ours, ins = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
a = [(t["name"], t["type"], t["ne"], t["nbytes"]) for t in ours["tensors"]]
b = [(t["name"], t["type"], t["shape"], t["bytes"]) for t in ins["tensors"]]
assert a == b, [x for x, y in zip(a, b) if x != y][:3]
for k, v in ours["kv"].items():
    if not isinstance(v, (list, dict)) and not isinstance(v, float):
        assert ins["metadata"].get(k) == v, (k, v, ins["metadata"].get(k))
EOF
    n=$((n + 1))
  done
done
echo "ok: $n models have llama.cpp's names, shapes and keys (and maas inspect --json agrees)"

# Determinism: the same seed gives the same bytes for any thread count; another seed differs.
V1=$(vocab_args trained)
# shellcheck disable=SC2086
for th in 1 2 3; do "$M" mkmodel --arch qwen2moe $V1 $SMALL --seed 5 --threads $th -o "$T/d$th.gguf" >/dev/null; done
cmp -s "$T/d1.gguf" "$T/d2.gguf" && cmp -s "$T/d1.gguf" "$T/d3.gguf" || fail "mkmodel output depends on --threads"
# shellcheck disable=SC2086
"$M" mkmodel --arch qwen2moe $V1 $SMALL --seed 6 -o "$T/d6.gguf" >/dev/null
"$PY" - "$T/d1.gguf" "$T/d6.gguf" "$HERE/tools_gguf.py" <<'EOF' || fail "another seed must change every weight tensor"
import importlib.util, sys
spec = importlib.util.spec_from_file_location("g", sys.argv[3]); g = importlib.util.module_from_spec(spec)
spec.loader.exec_module(g)
a, b = g.read(sys.argv[1]), g.read(sys.argv[2])
same = [x["name"] for x, y in zip(a["tensors"], b["tensors"]) if x["sha1"] == y["sha1"]]
assert a["kv"] == b["kv"], "metadata must not depend on the seed"
if same:
    print("unchanged by the seed:", same); sys.exit(1)
EOF
echo "ok: deterministic for a seed and any --threads; another seed changes every tensor"

# --type writes exactly what quantize makes of the f32 model (same per-tensor choice, same bytes).
QS="--n-embd 256 --n-layer 4 --n-head 4 --n-head-kv 1 --n-ff 320"
for ty in q8_0 q4_k_m f16; do
  # shellcheck disable=SC2086
  "$M" mkmodel --arch qwen3 $V1 $QS --seed 3 -o "$T/f.gguf" >/dev/null
  # shellcheck disable=SC2086
  "$M" mkmodel --arch qwen3 $V1 $QS --seed 3 --type $ty -o "$T/t.gguf" >/dev/null
  "$M" quantize "$T/f.gguf" "$T/q.gguf" $ty >/dev/null
  "$PY" - "$T/t.gguf" "$T/q.gguf" "$HERE/tools_gguf.py" <<'EOF' || fail "mkmodel --type $ty differs from quantize $ty"
import importlib.util, sys
spec = importlib.util.spec_from_file_location("g", sys.argv[3]); g = importlib.util.module_from_spec(spec)
spec.loader.exec_module(g)
a, b = g.read(sys.argv[1]), g.read(sys.argv[2])
assert a["kv"] == b["kv"], "metadata differs"
for x, y in zip(a["tensors"], b["tensors"]):
    assert (x["name"], x["type"], x["ne"], x["sha1"]) == (y["name"], y["type"], y["ne"], y["sha1"]), x["name"]
EOF
done
echo "ok: mkmodel --type equals quantize of the f32 model"

# Bad input: one line on stderr, the documented exit code, no file written.
expect_error() { # code, args...
  local code=$1; shift
  rm -f "$T/bad.gguf"
  set +e
  "$M" "$@" >"$T/so" 2>"$T/se"
  local rc=$?
  set -e
  [ $rc -eq "$code" ] || fail "maas $* exited $rc, expected $code: $(cat "$T/se")"
  [ "$(wc -l <"$T/se")" -ge 1 ] && grep -q . "$T/se" || fail "maas $*: no error message"
  grep -qi "assert\|sanitizer\|segmentation" "$T/se" && fail "maas $*: crashed: $(cat "$T/se")"
  [ ! -e "$T/bad.gguf" ] || fail "maas $*: left $T/bad.gguf behind"
  [ "$code" -eq 2 ] || [ "$(wc -l <"$T/se")" -eq 1 ] || fail "maas $*: more than one error line: $(cat "$T/se")"
  echo "  exit $rc: $(tail -n 1 "$T/se")"
}
V2=(--train-vocab "$TEXT" --vocab-size 300)
expect_error 2 mkmodel --arch gpt5 "${V2[@]}" -o "$T/bad.gguf"
expect_error 2 mkmodel --arch llama -o "$T/bad.gguf"
expect_error 2 mkmodel "${V2[@]}" -o "$T/bad.gguf"
expect_error 2 mkmodel --arch llama "${V2[@]}"
expect_error 1 mkmodel --arch llama --vocab "$T/no-such.gguf" -o "$T/bad.gguf"
expect_error 1 mkmodel --arch llama --vocab "$TEXT" -o "$T/bad.gguf"
expect_error 1 mkmodel --arch llama --train-vocab "$T/no-such.txt" -o "$T/bad.gguf"
expect_error 1 mkmodel --arch llama "${V2[@]}" -o "$T/no-such-dir/bad.gguf"
expect_error 2 mkmodel --arch llama "${V2[@]}" --n-embd 12x -o "$T/bad.gguf"
expect_error 2 mkmodel --arch llama "${V2[@]}" --n-layer 0 -o "$T/bad.gguf"
expect_error 2 mkmodel --arch llama "${V2[@]}" --n-head 5 -o "$T/bad.gguf"
expect_error 2 mkmodel --arch llama "${V2[@]}" --n-head-kv 3 -o "$T/bad.gguf"
expect_error 2 mkmodel --arch llama "${V2[@]}" --type q9_9 -o "$T/bad.gguf"
expect_error 2 mkmodel --arch llama "${V2[@]}" --frobnicate -o "$T/bad.gguf"
expect_error 2 mkmodel --arch llama "${V2[@]}" --seed -1 -o "$T/bad.gguf"
expect_error 2 mkmodel --arch llama --train-vocab "$TEXT" --vocab-size 100 -o "$T/bad.gguf"
expect_error 2 mkmodel --arch qwen2moe "${V2[@]}" --tie -o "$T/bad.gguf"
expect_error 2 mkmodel --arch qwen2 "${V2[@]}" --head-dim 32 -o "$T/bad.gguf"
expect_error 2 mkmodel --arch qwen2 "${V2[@]}" --n-expert 4 -o "$T/bad.gguf"
expect_error 2 mkmodel --arch llama "${V2[@]}" --n-expert 4 --n-expert-used 5 -o "$T/bad.gguf"
expect_error 2 mkmodel --arch llama "${V2[@]}" -o
echo "ok: bad input is refused cleanly"
