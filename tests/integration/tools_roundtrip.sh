#!/usr/bin/env bash
# mkmodel -> quantize -> dequantize round trip for every type: each tensor of
# the quantized file, dequantized by the independent NumPy reference
# (tests/ref/gguf_ref.py, written from ggml's block layouts), must be within
# its type's expected error of the f32 source (relative RMS error, for the
# Gaussian weights mkmodel writes), and f32 tensors must be exact.
# Needs python3-numpy (installed by scripts/setup.sh); skips without it.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
M=${MAAS_BIN:-$ROOT/build/maas}
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
if ! "$PY" -c "import numpy" 2>/dev/null; then
  echo "python3-numpy is not installed (scripts/setup.sh installs it)"
  exit 77
fi
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$M" mkmodel --arch qwen3 --train-vocab "$ROOT/data/vocab-train.txt" --vocab-size 512 --n-embd 256 --n-layer 2 \
  --n-ff 512 --n-head 4 --n-head-kv 2 --no-tie --seed 21 -o "$T/src.gguf" >/dev/null
TYPES="f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k iq4_nl"
for ty in $TYPES; do
  "$M" quantize "$T/src.gguf" "$T/$ty.gguf" "$ty" --pure >/dev/null || fail "quantize $ty"
done
"$M" quantize "$T/src.gguf" "$T/q4_k_m.gguf" q4_k_m >/dev/null || fail "quantize q4_k_m"

"$PY" - "$ROOT/tests/ref" "$T" $TYPES q4_k_m <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import gguf_ref as g

# Relative RMS error bounds for N(0, s) weights: about 1.4x what ggml's
# quantizers reach on such data (f16 ~2e-4, bf16 ~1.7e-3, q8_0 ~5e-3,
# q6_k ~1.7e-2, q5 ~3.5-4e-2, q4 ~7-8e-2, q3_k ~0.15, q2_k ~0.29).
BOUND = {"F32": 0.0, "F16": 1e-3, "BF16": 5e-3, "Q8_0": 1e-2, "Q6_K": 3e-2, "Q5_0": 6e-2, "Q5_1": 6e-2,
         "Q5_K": 6e-2, "Q4_0": 0.11, "Q4_1": 0.11, "Q4_K": 0.11, "IQ4_NL": 0.11, "Q3_K": 0.2, "Q2_K": 0.4}
d = sys.argv[2]
src = g.GGUFFile(d + "/src.gguf")
errors, seen = [], set()
for ty in sys.argv[3:]:
    q = g.GGUFFile("%s/%s.gguf" % (d, ty))
    worst = {}
    for name in src.tensors:
        a, b = src.dequant(name), q.dequant(name)
        tname = q.tensors[name].type_name
        seen.add(tname)
        err = float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(a ** 2)))
        worst[tname] = max(worst.get(tname, 0.0), err)
        if err > BOUND[tname]:
            errors.append("%s %s (%s): relative RMS error %.4g > %.4g" % (ty, name, tname, err, BOUND[tname]))
    print("%-7s %s" % (ty, ", ".join("%s %.2g" % kv for kv in sorted(worst.items()))))
missing = set(BOUND) - seen
if missing:
    errors.append("types never exercised: %s" % sorted(missing))
if errors:
    print("\n".join(errors))
    sys.exit(1)
EOF
echo "ok: every type dequantizes within its expected error of the f32 source"
