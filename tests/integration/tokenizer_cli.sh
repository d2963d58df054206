#!/usr/bin/env bash
# maas tokenize / detokenize on the vocabulary-only GGUF files of
# ../shared/testdata/tokenizer: every text of NAME.gguf.inp, written to a file
# byte for byte, must tokenize (--file) to the ids on the matching line of
# NAME.gguf.out, and detokenizing those ids must reproduce the file exactly.
# Also: TEXT given as an argument, --bos, and the error exits.
set -u
cd "$(dirname "$0")/../.."
MAAS_BIN=${MAAS_BIN:-build/maas}
dir=../shared/testdata/tokenizer
if [ ! -x "$MAAS_BIN" ]; then echo "skip: $MAAS_BIN not built"; exit 77; fi
if [ ! -f "$dir/gpt-2.gguf" ]; then echo "skip: ../shared/testdata not found"; exit 77; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
for vocab in llama-spm phi-3 gpt-2 deepseek-llm; do
  model="$dir/$vocab.gguf"
  python3 - "$dir/$vocab.gguf.inp" "$tmp/$vocab" <<'PY'
import sys
data = open(sys.argv[1], 'rb').read()
parts = data.split(b"\n__ggml_vocab_test__\n")
if parts and parts[-1] == b"":
    parts.pop()
for i, p in enumerate(parts):
    open(f"{sys.argv[2]}.{i}.txt", "wb").write(p)
PY
  n=0; ok=0
  while IFS= read -r want; do
    f="$tmp/$vocab.$n.txt"
    got=$("$MAAS_BIN" tokenize --model "$model" --file "$f") || { echo "FAIL $vocab case $n: tokenize exited $?"; fail=1; }
    want=$(echo "$want" | sed -e 's/^ *//' -e 's/ *$//')
    if [ "$got" != "$want" ]; then
      echo "FAIL $vocab case $n: want '$want' got '$got'"; fail=1
    else
      # shellcheck disable=SC2086
      "$MAAS_BIN" detokenize --model "$model" $got > "$tmp/back" || { echo "FAIL $vocab case $n: detokenize exited $?"; fail=1; }
      if cmp -s "$f" "$tmp/back"; then ok=$((ok + 1)); else echo "FAIL $vocab case $n: round trip differs"; fail=1; fi
    fi
    n=$((n + 1))
  done < "$dir/$vocab.gguf.out"
  echo "$vocab: $ok/$n cases pass (tokenize --file and detokenize round trip)"
done

# TEXT argument and --bos
got=$("$MAAS_BIN" tokenize --model "$dir/llama-spm.gguf" --bos "Hello world")
[ "$got" = "1 15043 3186" ] || { echo "FAIL --bos: got '$got'"; fail=1; }
got=$("$MAAS_BIN" tokenize --model "$dir/gpt-2.gguf" "Hello world")
[ "$got" = "15496 995" ] || { echo "FAIL TEXT: got '$got'"; fail=1; }
# --special: the control token's text is that token only when asked
got=$("$MAAS_BIN" tokenize --model "$dir/gpt-2.gguf" "<|endoftext|>")
[ "$got" != "50256" ] || { echo "FAIL: control token recognised without --special"; fail=1; }
got=$("$MAAS_BIN" tokenize --model "$dir/gpt-2.gguf" --special "<|endoftext|>")
[ "$got" = "50256" ] || { echo "FAIL --special: got '$got'"; fail=1; }

# errors: exit 1 with one line naming the problem
expect_fail() { # description, expected substring, command...
  local what=$1 needle=$2; shift 2
  local err
  err=$("$@" 2>&1 >/dev/null); local rc=$?
  if [ $rc -eq 0 ] || ! grep -qF -- "$needle" <<<"$err"; then
    echo "FAIL $what: exit $rc, message '$err'"; fail=1
  fi
}
expect_fail "missing model" "/no/such.gguf" "$MAAS_BIN" tokenize --model /no/such.gguf hi
expect_fail "missing file" "/no/such.txt" "$MAAS_BIN" tokenize --model "$dir/gpt-2.gguf" --file /no/such.txt
expect_fail "unknown id" "99999" "$MAAS_BIN" detokenize --model "$dir/gpt-2.gguf" 15496 99999
expect_fail "bad id" "'12x'" "$MAAS_BIN" detokenize --model "$dir/gpt-2.gguf" 12x
expect_fail "negative id" "-5" "$MAAS_BIN" detokenize --model "$dir/gpt-2.gguf" -- -5
expect_fail "no model" "--model" "$MAAS_BIN" tokenize hi

exit $fail
