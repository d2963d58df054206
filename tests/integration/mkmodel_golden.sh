#!/usr/bin/env bash
# maas mkmodel's bytes are pinned: for a given vocabulary text, architecture,
# shape, type and --seed the file is always the same, byte for byte. The
# hashes below were taken from the build before issue 12's refactor (commit
# 1c57c29) and must not change: tests and benchmarks elsewhere rely on a seed
# naming one model, and the seeds themselves come from the legacy FNV basis
# (src/core/core.h, HASH_FNV64_BASIS_LEGACY). The vocabulary is learned from
# the project's own data/vocab-train.txt, so its merges are pinned too.
set -u
cd "$(dirname "$0")/../.."
MAAS_BIN=${MAAS_BIN:-build/maas}
if [ ! -x "$MAAS_BIN" ]; then echo "FAIL: $MAAS_BIN not built"; exit 1; fi
work=$(mktemp -d /tmp/maas_golden.XXXXXX)
trap 'rm -rf "$work"' EXIT
V="--train-vocab data/vocab-train.txt --vocab-size 300"
S="--n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 96 --n-ctx 512"
fail=0
while read -r want args; do
  [ -z "$want" ] && continue
  # shellcheck disable=SC2086
  if ! "$MAAS_BIN" mkmodel $V $args -o "$work/m.gguf" > "$work/out" 2>&1; then
    echo "FAIL mkmodel $args:"; cat "$work/out"; fail=1; continue
  fi
  got=$(sha256sum < "$work/m.gguf" | cut -c1-64)
  if [ "$got" = "$want" ]; then echo "ok   $args"; else echo "FAIL $args: sha256 $got, want $want"; fail=1; fi
  rm -f "$work/m.gguf"
done <<LIST
f05590b6114c7c5b059735cc038644193ce9851989be5d326f8d33059ca7cf5e --arch llama $S --seed 7
e4d76a2a4bb188eaee6afe11baebca4fdf9c4261c40fa43659b074d58ceb669a --arch qwen2 $S --seed 7 --no-tie
7dc0f326cbe300b15d51fbd61572f6bfcc0cb64a1d7d96af15226f07d1a6ee86 --arch qwen3 --head-dim 32 $S --seed 16
089cca52d88d6f5c7995e72d93adb1fb612ddee41966c4ecdc8d12c337f776f7 --arch qwen2moe $S --n-ff-exp 32 --n-ff-shexp 48 --seed 5
bfb1663c621207715977b7812358f74acff42ea8d04f94a24094400ae06c69fb --arch qwen3moe --n-expert 6 --n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff-exp 32 --seed 3
8c63f17283cf1241a7a4b14321401de68e438b0fcb0bcea5b161c4f87500b951 --arch llama --n-expert 4 --n-expert-used 2 $S --n-ff-exp 32
155d048ff737d7ef04e95cf9dea6c0a522419c19c6eeb4f976f03edecbe48379 --arch qwen3 $S --type q8_0 --seed 3
70300984fb9f3a7b44bd6b0e14fb75c9d39edd4e82c200267df8487bbf63174a --arch llama $S --type q4_k_m --seed 3
69a35b2c67f0b48f7ce53594303af6013514e033dabbffc5267a730a20fcbe61 --arch qwen2moe $S --type q4_0 --n-ff-exp 32
0430f7b829058c5da660375047a973badf746eca59ee1b0b8a1c18025aadb340 --arch llama $S --type f16 --tie --rope-theta 5e5 --embd-std 0.3 --name foo
LIST
exit $fail
