#!/usr/bin/env bash
# POST /v1/embeddings and /v1/rerank on `maas serve` with billing, a BERT
# model and a BERT reranker beside a chat model: shapes, float and base64, dimensions, batch = singles = the
# CLI's `maas embed`, normalisation, token-id inputs, the errors, 400s across
# the kinds of model, concurrent requests, reranking (order, top_n, documents,
# batch = singles, errors), and one usage record per request at the input
# price. Checks in serve_embed.py (standard library).
set -u
. "$(dirname "$0")/serve_lib.bash"
"$BIN" embed --help >/dev/null 2>&1 || { echo "maas embed is not available"; exit 77; }
vocab=("--train-vocab" "$ROOT/data/vocab-train.txt")
[ -f "$ROOT/../shared/testdata/tokenizer/bert-bge.gguf" ] && vocab=("--vocab" "$ROOT/../shared/testdata/tokenizer/bert-bge.gguf")
"$BIN" mkmodel --arch bert "${vocab[@]}" --n-embd 64 --n-layer 2 --n-head 4 --n-ff 128 -o "$tmp/emb.gguf" \
  >/dev/null 2>"$tmp/mk.err" || { echo "FAIL: mkmodel bert: $(tail -1 "$tmp/mk.err")"; exit 1; }
# a reranker: the classification head on [CLS] query [SEP] document [SEP]
"$BIN" mkmodel --arch bert "${vocab[@]}" --n-embd 64 --n-layer 2 --n-head 4 --n-ff 128 --pooling rank \
  -o "$tmp/rr.gguf" >/dev/null 2>"$tmp/mk.err" || { echo "FAIL: mkmodel reranker: $(tail -1 "$tmp/mk.err")"; exit 1; }
serve_tiny_model
"$PY" "$(dirname "$0")/serve_embed.py" "$BIN" "$tmp/emb.gguf" "$tmp/tiny.gguf" "$tmp"
