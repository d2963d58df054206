#!/usr/bin/env bash
# llama.cpp's llama-perplexity and `maas perplexity` on the same GGUF files and text, with the same context:
#
#   bench/perplexity_compare.sh [--ctx N] [--chunks N] MODEL.gguf... TEXT
#
# Prints, per model, both final PPLs (+/- their standard errors) and maas/llama. Both use an f16 KV cache and
# llama-perplexity's default method (chunks of ctx tokens, the second half of each scored).
# llama-perplexity is $LLAMA_PERPLEXITY, else the newest ~/.cache/llama-baseline/*/build/bin/llama-perplexity
# (built by ../shared/tools/llama-baseline.sh, or `cmake --build BUILD --target llama-perplexity`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
M=${MAAS_BIN:-$ROOT/build/maas}
ctx=512 chunks=0 threads=$(nproc)
while [ $# -gt 0 ]; do
  case $1 in
    --ctx) ctx=$2; shift 2 ;;
    --chunks) chunks=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || { echo "usage: $0 [--ctx N] [--chunks N] [--threads N] MODEL.gguf... TEXT" >&2; exit 2; }
text=${!#}
[ -r "$text" ] || { echo "$0: cannot read $text" >&2; exit 1; }
LP=${LLAMA_PERPLEXITY:-$(ls -t "${XDG_CACHE_HOME:-$HOME/.cache}"/llama-baseline/*/build/bin/llama-perplexity 2>/dev/null | head -1)}
[ -x "$LP" ] || { echo "$0: no llama-perplexity (set LLAMA_PERPLEXITY, or build it with ../shared/tools/llama-baseline.sh)" >&2; exit 1; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
copt=(); [ "$chunks" -gt 0 ] && copt=(--chunks "$chunks")
printf '%-40s %6s %24s %24s %9s\n' model ctx "llama-perplexity" "maas perplexity" ratio
for model in "${@:1:$#-1}"; do
  "$LP" -m "$model" -f "$text" -c "$ctx" -t "$threads" "${copt[@]}" >"$T/llama.out" 2>&1 \
    || { tail -5 "$T/llama.out" >&2; echo "$0: llama-perplexity failed on $model" >&2; exit 1; }
  lp=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 \2/p' "$T/llama.out")
  [ -n "$lp" ] || { tail -5 "$T/llama.out" >&2; echo "$0: no final estimate from llama-perplexity" >&2; exit 1; }
  "$M" perplexity --model "$model" --file "$text" --ctx "$ctx" --threads "$threads" "${copt[@]}" >"$T/maas.out"
  mp=$(sed -n 's/^PPL = \([0-9.]*\) +\/- \([0-9.]*\)$/\1 \2/p' "$T/maas.out")
  read -r l ls <<<"$lp"; read -r m ms <<<"$mp"
  printf '%-40s %6d %15.4f +/- %-6.3g %15.4f +/- %-6.3g %9.5f\n' "$(basename "$model")" "$ctx" "$l" "$ls" "$m" "$ms" \
    "$(awk -v a="$m" -v b="$l" 'BEGIN { printf "%.6f", a / b }')"
done
