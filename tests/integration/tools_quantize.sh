#!/usr/bin/env bash
# maas quantize: every single type and every mix on a dense model (tied
# output, 8 layers, gqa 4, an FFN width of 320 so ffn_down rows need the
# k-quant fallback) and on a Mixtral-style 8-expert model; each tensor's type
# is checked against llama.cpp's rules (a Python restatement plus hand-worked
# expectations), and the file type, metadata and shapes against the source.
# Also: the same bytes for --threads 1 and 2 and for two runs, f16 and bf16
# input, the real GPT-2 vocabulary with n_embd 320 (fallbacks everywhere) when
# ../shared is there, and clean errors for bad input.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
M=${MAAS_BIN:-$ROOT/build/maas}
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

TEXT=$ROOT/data/vocab-train.txt
GPT2=$ROOT/../shared/testdata/tokenizer/gpt-2.gguf
V=(--train-vocab "$TEXT" --vocab-size 512)
SINGLE="f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k iq4_nl"
MIXES="q3_k_s q3_k_m q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m"

"$M" mkmodel --arch qwen2 "${V[@]}" --n-embd 256 --n-layer 8 --n-head 4 --n-head-kv 1 --n-ff 320 --seed 11 \
  -o "$T/dense.gguf" >/dev/null
"$M" mkmodel --arch llama "${V[@]}" --n-embd 256 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 256 \
  --n-expert 8 --n-expert-used 2 --seed 12 -o "$T/moe.gguf" >/dev/null

# check.py TOOLS_GGUF SRC OUT:TYPE...: per-tensor types, file type, metadata and shapes.
cat >"$T/check.py" <<'EOF'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("g", sys.argv[1]); g = importlib.util.module_from_spec(spec)
spec.loader.exec_module(g)
src = g.read(sys.argv[2])
FT = {"f32": 0, "f16": 1, "bf16": 32, "q4_0": 2, "q4_1": 3, "q5_0": 8, "q5_1": 9, "q8_0": 7, "iq4_nl": 25,
      "q2_k": 10, "q6_k": 18, "q3_k": 11, "q4_k": 14, "q5_k": 16, "q3_k_s": 11, "q3_k_m": 12, "q3_k_l": 13,
      "q4_k_s": 14, "q4_k_m": 15, "q5_k_s": 16, "q5_k_m": 17}
BASE = {"q3_k_s": "q3_k", "q3_k_m": "q3_k", "q3_k_l": "q3_k", "q4_k_s": "q4_k", "q4_k_m": "q4_k",
        "q5_k_s": "q5_k", "q5_k_m": "q5_k"}
PURE = {"f32", "f16", "bf16", "q3_k", "q4_k", "q5_k"}
BLOCK = {"q2_k": 256, "q3_k": 256, "q4_k": 256, "q5_k": 256, "q6_k": 256}
FALLBACK = {"q2_k": "iq4_nl", "q3_k": "iq4_nl", "q4_k": "q5_0", "q5_k": "q5_1", "q6_k": "q8_0"}
kv = src["kv"]
arch = kv["general.architecture"]
n_layer = kv[arch + ".block_count"]
gqa = kv[arch + ".attention.head_count"] // kv[arch + ".attention.head_count_kv"]
n_expert = kv.get(arch + ".expert_count", 0)
names = [t["name"] for t in src["tensors"]]
tied = "output.weight" not in names
n_attn_v = sum("attn_v.weight" in n for n in names)

def more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2

def expected(name, ne, mix):
    if len(ne) < 2 or not name.endswith("weight") or "_norm.weight" in name or "ffn_gate_inp.weight" in name:
        return "f32"
    base = BASE.get(mix, mix)
    if base in ("f32", "f16", "bf16"):
        return base
    t = base
    layer = int(name.split(".")[1]) if name.startswith("blk.") else -1
    if mix not in PURE:
        if name == "output.weight" or (tied and name == "token_embd.weight"):
            t = "q8_0" if ne[0] % BLOCK.get(base, 32) else (base if base == "q8_0" else "q6_k")
        elif "attn_v.weight" in name:
            t = {"q2_k": "q4_k" if gqa >= 4 else "q3_k", "q3_k_m": "q5_k" if layer < 2 else "q4_k",
                 "q3_k_l": "q5_k"}.get(mix, t)
            if mix == "iq4_nl" and gqa >= 4: t = "q5_k"
            if mix in ("q4_k_m", "q5_k_m") and more_bits(layer, n_attn_v): t = "q6_k"
            if mix == "q4_k_s" and layer < 4: t = "q5_k"
            if n_expert == 8: t = "q8_0"
        elif "attn_k.weight" in name:
            if n_expert == 8: t = "q8_0"
        elif "ffn_down" in name:
            n = n_layer
            t = {"q2_k": "q3_k", "q3_k_m": "q5_k" if layer < n // 16 else "q4_k", "q3_k_l": "q5_k"}.get(mix, t)
            if mix in ("q4_k_m", "q5_k_m") and more_bits(layer, n): t = "q6_k"
            if mix in ("q4_k_s", "iq4_nl") and layer < n // 8: t = "q5_k"
        elif "attn_output.weight" in name:
            if n_expert == 8:
                if mix in ("q2_k", "q3_k_s", "q3_k_m", "q4_k_s", "q4_k_m", "iq4_nl"): t = "q5_k"
            else:
                t = {"q2_k": "q3_k", "q3_k_m": "q4_k", "q3_k_l": "q5_k"}.get(mix, t)
    if ne[0] % BLOCK.get(t, 32):
        t = FALLBACK.get(t, "f16")
        if ne[0] % 32: t = "f16"
    return t

def check(out, mix):
    errors = []
    for s, o in zip(src["tensors"], out["tensors"]):
        if (s["name"], s["ne"]) != (o["name"], o["ne"]):
            errors.append("tensor %s %r became %s %r" % (s["name"], s["ne"], o["name"], o["ne"]))
        e = expected(s["name"], s["ne"], mix)
        if o["type"] != e:
            errors.append("%s: %s, expected %s" % (s["name"], o["type"], e))
    if len(src["tensors"]) != len(out["tensors"]):
        errors.append("tensor count")
    okv = dict(out["kv"])
    if okv.pop("general.file_type", None) != FT[mix]:
        errors.append("general.file_type %r, expected %d" % (out["kv"].get("general.file_type"), FT[mix]))
    if okv.pop("general.quantization_version", None) != 2:
        errors.append("general.quantization_version")
    skv = dict(kv); skv.pop("general.file_type", None); skv.pop("general.quantization_version", None)
    if okv != skv:
        errors.append("metadata not carried over: %r" % sorted(set(okv.items()) ^ set(skv.items()), key=str)[:4])
    return errors

bad = False
for arg in sys.argv[3:]:
    path, mix = arg.rsplit(":", 1)
    out = g.read(path)
    errors = check(out, mix)
    if errors:
        bad = True
        print("%s %s:\n  %s" % (path, mix, "\n  ".join(errors)))
    else:
        print("ok: %-7s %s" % (mix, " ".join(sorted({o["type"] for o in out["tensors"]}))))
sys.exit(1 if bad else 0)
EOF
check() { "$PY" "$T/check.py" "$HERE/tools_gguf.py" "$@"; }
types_of() { # file, tensor names... -> their types
  "$PY" - "$HERE/tools_gguf.py" "$@" <<'EOF'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("g", sys.argv[1]); g = importlib.util.module_from_spec(spec)
spec.loader.exec_module(g)
t = {x["name"]: x["type"] for x in g.read(sys.argv[2])["tensors"]}
print(" ".join(t.get(n, "-") for n in sys.argv[3:]))
EOF
}

dense_outs=() moe_outs=()
for ty in $SINGLE $MIXES; do
  "$M" quantize "$T/dense.gguf" "$T/dense-$ty.gguf" "$ty" >"$T/log" || fail "quantize dense $ty: $(tail -n 3 "$T/log")"
  dense_outs+=("$T/dense-$ty.gguf:$ty")
  case " q8_0 q4_0 q2_k q6_k $MIXES " in
    *" $ty "*)
      "$M" quantize "$T/moe.gguf" "$T/moe-$ty.gguf" "$ty" >"$T/log" || fail "quantize moe $ty: $(tail -n 3 "$T/log")"
      moe_outs+=("$T/moe-$ty.gguf:$ty") ;;
  esac
done
check "$T/dense.gguf" "${dense_outs[@]}" || fail "dense model: wrong types or metadata"
check "$T/moe.gguf" "${moe_outs[@]}" || fail "8-expert model: wrong types or metadata"

# maas inspect --json reports the same types, shapes, sizes and file type as the independent reader.
inspect_args=()
for pair in "${dense_outs[@]}" "${moe_outs[@]}"; do
  f=${pair%:*}
  "$M" inspect --json "$f" >"$f.json" || fail "maas inspect --json $f"
  inspect_args+=("$f")
done
"$PY" - "$HERE/tools_gguf.py" "${inspect_args[@]}" <<'EOF' || fail "maas inspect disagrees with the file"
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("g", sys.argv[1]); g = importlib.util.module_from_spec(spec)
spec.loader.exec_module(g)
for f in sys.argv[2:]:
    ours, ins = g.read(f), json.load(open(f + ".json"))
    a = [(t["name"], t["type"], t["ne"], t["nbytes"]) for t in ours["tensors"]]
    b = [(t["name"], t["type"], t["shape"], t["bytes"]) for t in ins["tensors"]]
    assert a == b, "%s: tensors differ: %s" % (f, [x for x, y in zip(a, b) if x != y][:3])
    assert ins["metadata"]["general.file_type"] == ours["kv"]["general.file_type"], f
EOF
echo "ok: maas inspect --json agrees on every output file"

# Hand-worked llama.cpp expectations (8 layers: use_more_bits picks 0, 3, 6, 7).
AV="blk.0.attn_v.weight blk.1.attn_v.weight blk.3.attn_v.weight blk.6.attn_v.weight blk.7.attn_v.weight"
FD="blk.0.ffn_down.weight blk.1.ffn_down.weight blk.3.ffn_down.weight blk.4.ffn_down.weight blk.7.ffn_down.weight"
# shellcheck disable=SC2086
{
  [ "$(types_of "$T/dense-q4_k_m.gguf" token_embd.weight output.weight blk.2.attn_q.weight)" = "q6_k - q4_k" ] ||
    fail "q4_k_m: tied token_embd must be q6_k, attn_q q4_k"
  [ "$(types_of "$T/dense-q4_k_m.gguf" $AV)" = "q6_k q4_k q6_k q6_k q6_k" ] || fail "q4_k_m attn_v: $(types_of "$T/dense-q4_k_m.gguf" $AV)"
  [ "$(types_of "$T/dense-q4_k_m.gguf" $FD)" = "q8_0 q5_0 q8_0 q5_0 q8_0" ] || fail "q4_k_m ffn_down (320-wide rows): $(types_of "$T/dense-q4_k_m.gguf" $FD)"
  [ "$(types_of "$T/dense-q2_k.gguf" blk.1.attn_v.weight blk.1.ffn_down.weight blk.1.attn_output.weight blk.1.ffn_up.weight)" = "q4_k iq4_nl q3_k q2_k" ] ||
    fail "q2_k (gqa 4): $(types_of "$T/dense-q2_k.gguf" blk.1.attn_v.weight blk.1.ffn_down.weight blk.1.attn_output.weight blk.1.ffn_up.weight)"
  [ "$(types_of "$T/dense-q3_k_m.gguf" blk.0.attn_v.weight blk.2.attn_v.weight blk.2.attn_output.weight blk.2.ffn_gate.weight)" = "q5_k q4_k q4_k q3_k" ] ||
    fail "q3_k_m: $(types_of "$T/dense-q3_k_m.gguf" blk.0.attn_v.weight blk.2.attn_v.weight blk.2.attn_output.weight blk.2.ffn_gate.weight)"
  [ "$(types_of "$T/dense-q4_0.gguf" token_embd.weight blk.0.attn_q.weight)" = "q6_k q4_0" ] || fail "q4_0: tied output must be q6_k"
  [ "$(types_of "$T/dense-q8_0.gguf" token_embd.weight blk.0.ffn_down.weight)" = "q8_0 q8_0" ] || fail "q8_0 keeps q8_0"
  [ "$(types_of "$T/dense-q4_k.gguf" token_embd.weight blk.0.attn_v.weight blk.0.ffn_down.weight)" = "q4_k q4_k q5_0" ] || fail "pure q4_k"
  [ "$(types_of "$T/dense-q6_k.gguf" blk.0.attn_q.weight blk.0.ffn_down.weight)" = "q6_k q8_0" ] || fail "q6_k fallback"
  [ "$(types_of "$T/dense-q5_k_s.gguf" blk.0.attn_q.weight blk.0.ffn_down.weight)" = "q5_k q5_1" ] || fail "q5_k fallback"
  [ "$(types_of "$T/dense-q4_k_m.gguf" blk.0.attn_norm.weight blk.0.attn_q.bias output_norm.weight)" = "f32 f32 f32" ] || fail "norms/biases stay f32"
  # 8 experts: attn_v/attn_k q8_0, attn_output q5_k, router f32, 3-D expert slabs quantized.
  [ "$(types_of "$T/moe-q4_k_m.gguf" blk.1.attn_v.weight blk.1.attn_k.weight blk.1.attn_output.weight blk.1.ffn_gate_inp.weight blk.1.ffn_gate_exps.weight blk.0.ffn_down_exps.weight blk.1.ffn_down_exps.weight output.weight token_embd.weight)" = \
    "q8_0 q8_0 q5_k f32 q4_k q4_k q6_k q6_k q4_k" ] ||
    fail "moe q4_k_m: $(types_of "$T/moe-q4_k_m.gguf" blk.1.attn_v.weight blk.1.attn_k.weight blk.1.attn_output.weight blk.1.ffn_gate_inp.weight blk.1.ffn_gate_exps.weight blk.0.ffn_down_exps.weight blk.1.ffn_down_exps.weight output.weight token_embd.weight)"
}
echo "ok: hand-worked llama.cpp choices (q4_k_m, q2_k, q3_k_m, q4_0, q8_0, pure, fallbacks, 8-expert rules)"

# Deterministic: any --threads, and run after run.
for mt in moe:q4_k_m moe:q2_k dense:q3_k dense:iq4_nl; do
  model=${mt%%:*} ty=${mt#*:}
  "$M" quantize "$T/$model.gguf" "$T/t1.gguf" "$ty" --threads 1 >/dev/null
  "$M" quantize "$T/$model.gguf" "$T/t2.gguf" "$ty" --threads 2 >/dev/null
  "$M" quantize "$T/$model.gguf" "$T/t3.gguf" "$ty" --threads 3 >/dev/null
  cmp -s "$T/t1.gguf" "$T/t2.gguf" && cmp -s "$T/t1.gguf" "$T/t3.gguf" && cmp -s "$T/t1.gguf" "$T/$model-$ty.gguf" ||
    fail "quantize $model $ty is not deterministic across --threads"
done
echo "ok: the same bytes for --threads 1, 2, 3 and run after run"

# f16 and bf16 input (1-D tensors come out f32).
for src in f16 bf16; do
  "$M" quantize "$T/dense-$src.gguf" "$T/from-$src.gguf" q4_k_m >/dev/null || fail "quantize from $src"
  check "$T/dense.gguf" "$T/from-$src.gguf:q4_k_m" >/dev/null || fail "types from $src input"
done
echo "ok: f16 and bf16 input"

# The real GPT-2 vocabulary, n_embd 320: every k-quant falls back.
if [ -f "$GPT2" ]; then
  "$M" mkmodel --arch qwen2 --vocab "$GPT2" --n-embd 320 --n-layer 2 --n-head 5 --n-head-kv 1 --n-ff 512 -o "$T/g.gguf" >/dev/null
  outs=()
  for ty in q4_k_m q2_k q6_k q5_k; do
    "$M" quantize "$T/g.gguf" "$T/g-$ty.gguf" $ty >/dev/null || fail "quantize gpt-2 model $ty"
    outs+=("$T/g-$ty.gguf:$ty")
  done
  check "$T/g.gguf" "${outs[@]}" >/dev/null || fail "gpt-2 model: wrong types"
  [ "$(types_of "$T/g-q4_k_m.gguf" token_embd.weight blk.0.attn_q.weight blk.0.attn_v.weight blk.1.ffn_down.weight)" = "q8_0 q5_0 q5_0 q6_k" ] ||
    fail "gpt-2 q4_k_m: $(types_of "$T/g-q4_k_m.gguf" token_embd.weight blk.0.attn_q.weight blk.0.attn_v.weight blk.1.ffn_down.weight)"
  [ "$(types_of "$T/g-q4_k_m.gguf" blk.1.attn_v.weight)" = "q8_0" ] || fail "gpt-2 q4_k_m: blk.1.attn_v must be q6_k -> q8_0"
  [ "$(types_of "$T/g-q2_k.gguf" blk.0.attn_q.weight blk.0.ffn_down.weight)" = "iq4_nl q3_k" ] || fail "gpt-2 q2_k fallback"
  echo "ok: GPT-2 vocabulary, 320-wide rows fall back (q4_k->q5_0, q6_k->q8_0, q2_k->iq4_nl)"
else
  echo "note: $GPT2 absent: the GPT-2 vocabulary case is not run"
fi

# Bad input.
expect_error() { # code, args...
  local code=$1; shift
  rm -f "$T/bad.gguf"
  set +e
  "$M" "$@" >"$T/so" 2>"$T/se"
  local rc=$?
  set -e
  [ $rc -eq "$code" ] || fail "maas $* exited $rc, expected $code: $(cat "$T/se")"
  grep -q . "$T/se" || fail "maas $*: no error message"
  grep -qi "assert\|sanitizer\|segmentation" "$T/se" && fail "maas $*: crashed: $(cat "$T/se")"
  [ ! -e "$T/bad.gguf" ] || fail "maas $*: left a file behind"
  [ "$code" -eq 2 ] || [ "$(wc -l <"$T/se")" -eq 1 ] || fail "maas $*: more than one error line: $(cat "$T/se")"
  echo "  exit $rc: $(tail -n 1 "$T/se")"
}
expect_error 1 quantize "$T/dense-q4_k_m.gguf" "$T/bad.gguf" q8_0
grep -q "token_embd.weight' is q6_k" "$T/se" || fail "the error must name the quantized tensor and its type"
expect_error 2 quantize "$T/dense.gguf" "$T/bad.gguf" q4_k_x
expect_error 2 quantize "$T/dense.gguf" "$T/bad.gguf"
expect_error 2 quantize "$T/dense.gguf" "$T/bad.gguf" q8_0 extra
expect_error 2 quantize "$T/dense.gguf" "$T/bad.gguf" q8_0 --threads 0
expect_error 2 quantize "$T/dense.gguf" "$T/bad.gguf" q8_0 --fast
expect_error 1 quantize "$T/none.gguf" "$T/bad.gguf" q8_0
expect_error 1 quantize "$TEXT" "$T/bad.gguf" q8_0
expect_error 1 quantize "$T/dense.gguf" "$T/no-dir/bad.gguf" q8_0
echo "ok: bad input is refused cleanly"
