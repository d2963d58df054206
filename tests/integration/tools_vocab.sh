#!/usr/bin/env bash
# The built-in vocabulary: `maas mkmodel --train-vocab data/vocab-train.txt`
# learns 4096 tokens (3837 merges) in a few seconds; the result is a standard
# gpt2/gpt-2 byte-level BPE vocabulary that the tokenizer loads: text round-
# trips byte for byte (ASCII, UTF-8, whitespace, digits, code), frequent words
# are single tokens, the ChatML special tokens are control tokens recognised
# only when asked, and a model made with it generates.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
M=${MAAS_BIN:-$ROOT/build/maas}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
TEXT=$ROOT/data/vocab-train.txt

"$M" mkmodel --arch qwen2 --train-vocab "$TEXT" --n-embd 64 --n-head 2 --n-head-kv 1 --n-ff 128 -o "$T/v.gguf" >"$T/out"
cat "$T/out"
line=$(grep '^vocabulary:' "$T/out") || fail "mkmodel did not report the vocabulary"
[[ $line =~ ^vocabulary:\ 4096\ tokens\ \(([0-9]+)\ merges\).*\ in\ ([0-9.]+)\ s ]] || fail "unexpected report: $line"
merges=${BASH_REMATCH[1]} secs=${BASH_REMATCH[2]}
[ "$merges" -ge 3837 ] || fail "only $merges merges"
# "a few seconds at most" (about 1 s on this machine; generous for a loaded CI box)
awk -v s="$secs" 'BEGIN { exit !(s < 10) }' || fail "training took $secs s"
echo "ok: 4096 tokens, $merges merges in $secs s"

# Round trips through the tokenizer (no special-token parsing: raw user text).
i=0
while IFS= read -r -d $'\x1e' sample; do
  i=$((i + 1))
  ids=$("$M" tokenize --model "$T/v.gguf" "$sample") || fail "tokenize sample $i"
  # shellcheck disable=SC2086
  back=$("$M" detokenize --model "$T/v.gguf" $ids; printf x) || fail "detokenize sample $i"
  back=${back%x}
  [ "$back" = "$sample" ] || fail "sample $i does not round-trip: '$sample' -> $ids -> '$back'"
done < <(printf '%s\x1e' \
  "The model serves tokens to the server." \
  "  two spaces, a	tab and
a newline" \
  "Zürich, Kraków, naïve café, 日本語のテキスト, emoji 🙂 and Ω≈ç√" \
  "numbers 1234567890 3.14159 -42 0x1F" \
  'int main(void) { return printf("%d\n", 1 << 4) != 0; }' \
  "<|im_start|> is plain text here" \
  "'s 't 're 've 'm 'll 'd don't it's")
echo "ok: $i samples round-trip byte for byte"

ids=$("$M" tokenize --model "$T/v.gguf" " the model")
[ "$(echo "$ids" | wc -w)" -eq 2 ] || fail "' the model' should be 2 tokens, got: $ids"
ids=$("$M" tokenize --model "$T/v.gguf" --special "<|im_start|>user
hi<|im_end|>")
set -- $ids
[ "$1" = 4094 ] && [ "${!#}" = 4095 ] || fail "ChatML special tokens: $ids"
plain=$("$M" tokenize --model "$T/v.gguf" "<|im_end|>")
[ "$(echo "$plain" | wc -w)" -gt 1 ] || fail "<|im_end|> in raw text must not become the control token"
echo "ok: frequent words are single tokens; <|im_start|>/<|im_end|> are control tokens"

"$M" run --model "$T/v.gguf" --prompt "Hello" -n 4 >/dev/null || fail "a model with the built-in vocabulary does not run"
echo "ok: a model with the built-in vocabulary generates"

printf 'valid \xff\xfe invalid' >"$T/bad.txt"
set +e
"$M" mkmodel --arch qwen2 --train-vocab "$T/bad.txt" -o "$T/bad.gguf" 2>"$T/err"
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "not valid UTF-8 at byte 6" "$T/err" || fail "non-UTF-8 text: exit $rc, $(cat "$T/err")"
: >"$T/empty.txt"
set +e
"$M" mkmodel --arch qwen2 --train-vocab "$T/empty.txt" -o "$T/bad.gguf" 2>"$T/err"
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "empty" "$T/err" || fail "empty text: exit $rc, $(cat "$T/err")"
[ ! -e "$T/bad.gguf" ] || fail "a file was written for bad text"
echo "ok: non-UTF-8 and empty training texts are refused"
