#!/usr/bin/env bash
# Dense against Mixture-of-Experts at the same active parameters and the same
# training time, on the KJV corpus (scripts/corpus.sh):
#
#   bench/train_compare.sh [--minutes M (15)] [--threads N (1)] [WORKDIR]
#
# Both models: 4 layers, n_embd 256, 4 heads (2 kv), tied embeddings, the
# same 4096-token vocabulary, batch 8 x 256, lr 2e-3, seed 1, and M minutes
# of training each (maas train --minutes: the step count comes from the first
# steps' speed, so the schedule ends on time). The two runs go side by side,
# N threads each, so that both see the same machine (a shared machine's load
# falls on both alike). The MoE model (qwen3moe) has 8
# experts of width 256 with 2 used per token; the dense one (qwen3) an FFN of
# width 512 — the same FFN multiply-adds per token. Prints parameters, steps,
# tokens, the held-out loss and perplexity (maas perplexity, ctx 256), the
# validation loss (the trainer's windows) at the last step both evaluated
# (equal tokens), and generation speed (maas bench, f32 and q8_0).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
M=${MAAS_BIN:-$ROOT/build/maas}
minutes=15 threads=1
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
W=${1:-$ROOT/build/train-compare}
mkdir -p "$W"
bash "$ROOT/scripts/corpus.sh" "$W/corpus" >/dev/null
common=(--text "$W/corpus/kjv-train.txt" --val "$W/corpus/kjv-val.txt" --vocab-size 4096 --n-embd 256 --n-layer 4
        --n-head 4 --n-head-kv 2 --tie --batch 8 --ctx 256 --lr 2e-3 --seed 1 --eval-every 100 --save-every 100000
        --minutes "$minutes" --threads "$threads")
"$M" train --arch qwen3moe --n-expert 8 --n-expert-used 2 --n-ff-exp 256 "${common[@]}" -o "$W/moe.gguf" >"$W/moe.log" &
moe=$!
"$M" train --arch qwen3 --n-ff 512 "${common[@]}" -o "$W/dense.gguf" >"$W/dense.log" &
dense=$!
wait $moe
wait $dense
# the validation loss both reached at the last evaluation step they share (equal tokens)
common_step=$(comm -12 <(sed -n 's/^step *\([0-9]*\)\/.* val .*/\1/p' "$W/moe.log" | sort) \
                       <(sed -n 's/^step *\([0-9]*\)\/.* val .*/\1/p' "$W/dense.log" | sort) | sort -n | tail -1)
val_at() { sed -n "s/^step *$common_step\/.* val \([0-9.]*\).*/\1/p" "$1"; }
printf '%-6s %8s %8s %7s %10s %9s %9s %11s %12s %12s\n' model params active steps tokens "val loss" "val ppl" \
  "val@$common_step" "gen f32 t/s" "gen q8_0 t/s"
for m in moe dense; do
  f=$W/$m.gguf
  "$M" quantize "$f" "$W/$m-q8_0.gguf" q8_0 >/dev/null
  steps=$(sed -n 's/^wrote .*(\([0-9]*\) steps, \([0-9]*\) tokens.*/\1 \2/p' "$W/$m.log")
  ppl=$("$M" perplexity --model "$f" --file "$W/corpus/kjv-val.txt" --ctx 256 --threads "$threads" | sed -n 's/^PPL = \([0-9.]*\).*/\1/p')
  b1=$("$M" bench --model "$f" -p 16 -n 128 --threads "$threads")
  b2=$("$M" bench --model "$W/$m-q8_0.gguf" -p 16 -n 128 --threads "$threads")
  params=$(echo "$b1" | sed -n 's/.*, \([0-9.]*M\) params.*/\1/p')
  active=$(echo "$b1" | sed -n 's/^experts:.*: \([0-9.]*M\) active.*/\1/p')
  g1=$(echo "$b1" | sed -n 's/^generation: *[0-9]* tokens, \([0-9.]*\) tokens\/s.*/\1/p')
  g2=$(echo "$b2" | sed -n 's/^generation: *[0-9]* tokens, \([0-9.]*\) tokens\/s.*/\1/p')
  read -r st tk <<<"$steps"
  printf '%-6s %8s %8s %7s %10s %9.4f %9s %9s %11s %12s\n' "$m" "$params" "${active:-$params}" "$st" "$tk" \
    "$(awk -v p="$ppl" 'BEGIN { printf "%.4f", log(p) }')" "$ppl" "$(val_at "$W/$m.log")" "$g1" "$g2"
done
