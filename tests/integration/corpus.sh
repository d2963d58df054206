#!/usr/bin/env bash
# scripts/corpus.sh: the KJV training corpus. Plain verses (no headings, no verse numbers), every 20th chapter
# held out (about 5% of the verses), deterministic, and a second run does nothing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
command -v bible >/dev/null || { echo "skip: no 'bible' program (bible-kjv, bible-kjv-text from scripts/setup.sh)"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$ROOT/scripts/corpus.sh" "$T/a" >"$T/out1"
cat "$T/out1"
tr=$T/a/kjv-train.txt va=$T/a/kjv-val.txt
nt=$(wc -l <"$tr") nv=$(wc -l <"$va")
[ $((nt + nv)) -eq 31102 ] || fail "$nt + $nv verses, not 31102"
awk -v t="$nt" -v v="$nv" 'BEGIN { f = v / (t + v); exit !(f > 0.04 && f < 0.06) }' || fail "held out $nv of $((nt + nv))"
[ "$(head -1 "$tr")" = "In the beginning God created the heaven and the earth." ] || fail "first line: $(head -1 "$tr")"
[ "$(tail -1 "$tr")" = "The grace of our Lord Jesus Christ be with you all. Amen." ] || fail "last line: $(tail -1 "$tr")"
# Genesis 20:1 is the first verse of the 20th chapter
[ "$(head -1 "$va")" = "And Abraham journeyed from thence toward the south country, and dwelled between Kadesh and Shur, and sojourned in Gerar." ] \
  || fail "first held-out line: $(head -1 "$va")"
! grep -qE '^ *[0-9]+ |^$|^[1-3]?[ A-Za-z]+ [0-9]+$' "$tr" "$va" || fail "a verse number, blank line or heading is left"
# formulaic verses ("And the LORD spake unto Moses, saying,") recur across the split; say how many
echo "note: $(grep -cxFf "$tr" "$va" || true) of $(wc -l <"$va") held-out verses also occur verbatim in training"
"$ROOT/scripts/corpus.sh" "$T/a" >"$T/out2"
grep -q "up to date" "$T/out2" || fail "second run did not skip: $(cat "$T/out2")"
"$ROOT/scripts/corpus.sh" "$T/b" >/dev/null
cmp -s "$tr" "$T/b/kjv-train.txt" && cmp -s "$va" "$T/b/kjv-val.txt" || fail "two runs differ"
[ -z "$(ls -A "$T/a" | grep -v '^kjv-')" ] || fail "temporary files left: $(ls -A "$T/a")"
echo "ok: $nt training verses, $nv held out"
