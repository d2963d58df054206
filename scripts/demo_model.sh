#!/usr/bin/env bash
# `make demo-model`: trains the demo model that `make run` serves, from
# scratch, reproducibly: the King James Bible (Debian's bible-kjv-text; see
# scripts/corpus.sh) with every 20th chapter held out, a 4096-token
# byte-level BPE vocabulary learned from it, and a small Mixture-of-Experts
# model (qwen3moe: 4 layers, n_embd 256, 8 experts of width 256, 2 used per
# token; 8.1M parameters, 3.4M active) trained for 3000 steps of 8 x 256
# tokens. About 35 minutes on 2 cores of an AMD EPYC (Zen 5, AVX-512).
# Writes data/demo-kjv.gguf (q8_0) and data/demo-kjv.svg (the loss curves);
# the f32 checkpoint stays in build/demo-model/.
#
# The run is deterministic: the same bytes on 1 or 2 threads and under the
# avx2 or avx512 kernels (the ref variant sums in double and differs).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MAAS_BIN:-./build/maas}
WORK=${DEMO_MODEL_DIR:-build/demo-model}
OUT=${DEMO_MODEL_OUT:-data/demo-kjv.gguf}
STEPS=${DEMO_MODEL_STEPS:-3000}
mkdir -p "$WORK"
bash scripts/corpus.sh "$WORK/corpus"
"$BIN" train --arch qwen3moe --name maas-demo-kjv \
  --text "$WORK/corpus/kjv-train.txt" --val "$WORK/corpus/kjv-val.txt" \
  --vocab-size 4096 --n-embd 256 --n-layer 4 --n-head 4 --n-head-kv 2 \
  --n-expert 8 --n-expert-used 2 --n-ff-exp 256 --tie \
  --batch 8 --ctx 256 --steps "$STEPS" --lr 2e-3 --seed 1 --eval-every 100 --save-every 250 \
  --threads "${DEMO_MODEL_THREADS:-2}" -o "$WORK/demo-kjv-f32.gguf"
"$BIN" quantize "$WORK/demo-kjv-f32.gguf" "$OUT.tmp" q8_0 >/dev/null
mv "$OUT.tmp" "$OUT"
cp "$WORK/demo-kjv-f32.gguf.svg" "${OUT%.gguf}.svg"
echo "demo-model: wrote $OUT ($(du -h "$OUT" | cut -f1)) and ${OUT%.gguf}.svg"
