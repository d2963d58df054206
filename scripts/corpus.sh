#!/usr/bin/env bash
# The training corpus for `maas train`: the King James Bible from Debian's bible-kjv-text package, as plain
# running prose, split into a training and a held-out part.
#
#   scripts/corpus.sh OUTDIR     -> OUTDIR/kjv-train.txt, OUTDIR/kjv-val.txt
#
# Text: `bible -l0 "Gen1:1-Rev22:21"` (31,102 verses in 1,189 chapters), with the book/chapter headings
# ("Genesis 1"), the blank lines around them and the verse numbers removed: one verse per line. A verse is
# this edition's only unit below the chapter (it marks no paragraphs), is a sentence or a few, and keeps the
# lines short enough for a trainer to sample or shuffle; joining them would only lose that boundary.
# Held-out split: chapters counted 1..1189 in canonical order; every 20th chapter (20, 40, ..., 1180:
# 59 chapters, about 5% of the verses) goes to kjv-val.txt, the rest to kjv-train.txt. Deterministic.
# Idempotent: does nothing when both outputs exist and are newer than this script.
set -euo pipefail
out=${1:?usage: scripts/corpus.sh OUTDIR}
train=$out/kjv-train.txt val=$out/kjv-val.txt
if [ -s "$train" ] && [ -s "$val" ] && [ "$train" -nt "$0" ] && [ "$val" -nt "$0" ]; then
  echo "corpus: $train and $val are up to date"
else
  command -v bible >/dev/null || { echo "corpus: no 'bible' program: install bible-kjv and bible-kjv-text (scripts/setup.sh)" >&2; exit 1; }
  mkdir -p "$out"
  tmp=$(mktemp -d "$out/.corpus.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
  bible -l0 "Gen1:1-Rev22:21" >"$tmp/raw"
  awk -v train="$tmp/train" -v val="$tmp/val" '
    /^$/ { next }
    /^ +[0-9]+ / { sub(/^ +[0-9]+ +/, ""); sub(/ +$/, ""); print > (ch % 20 == 0 ? val : train); v++; next }
    /^[1-3]?[ A-Za-z]+ [0-9]+$/ { ch++; next }
    { printf "corpus: unexpected line %d of bible output: %s\n", NR, $0 > "/dev/stderr"; bad = 1; exit 1 }
    END { if (!bad && (ch != 1189 || v != 31102)) { printf "corpus: %d chapters, %d verses (expected 1189, 31102)\n", ch, v > "/dev/stderr"; exit 1 } }
  ' "$tmp/raw"
  mv "$tmp/train" "$train" && mv "$tmp/val" "$val"
fi
for f in "$train" "$val"; do
  printf 'corpus: %-40s %6d lines %8d words %9d bytes\n' "$f" $(wc -l <"$f") $(wc -w <"$f") $(wc -c <"$f")
done
