#!/usr/bin/env bash
# maas against llama.cpp on the same GGUF files, interleaved: for each round
# and file, llama-bench then `maas bench`, same prompt and generation lengths
# and threads. Prints one line per file with the medians and the median of
# the per-round ratios (maas / llama.cpp), for prompt processing and
# generation. Ratios measured in one run on one machine are the figures to
# report; absolute numbers move with the machine's load.
#
#   bench/llama_compare.sh LLAMA_BIN_DIR FILE.gguf... [-p 512] [-n 64] [-r 3] [-t 2]
#
# LLAMA_BIN_DIR holds llama-bench (../shared/tools/llama-baseline.sh prints it).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,12p' "$0"; exit 2; }
lbin=$1; shift
files=() p=512 n=64 rounds=3 t=2
while [ $# -gt 0 ]; do
  case $1 in
    -p) p=$2; shift 2 ;; -n) n=$2; shift 2 ;; -r) rounds=$2; shift 2 ;; -t) t=$2; shift 2 ;;
    *) files+=("$1"); shift ;;
  esac
done
[ -x "$lbin/llama-bench" ] || { echo "no llama-bench in $lbin"; exit 2; }
[ -x build/maas ] || make -s build/maas
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq 1 "$rounds"); do
  for f in "${files[@]}"; do
    k=$(basename "$f")
    "$lbin/llama-bench" -m "$f" -p "$p" -n "$n" -t "$t" -r 1 -o json >"$out/llama.$k.$r.json" 2>/dev/null
    build/maas bench --model "$f" -p "$p" -n "$n" -r 1 --threads "$t" --json >"$out/maas.$k.$r.json" 2>/dev/null
  done
done
/usr/bin/python3 - "$out" "$rounds" "${files[@]}" <<'PY'
import json, os, statistics, sys
out, rounds, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
med = statistics.median
print("%-28s %22s %22s %10s %22s %22s %10s" % ("file", "prompt llama.cpp", "prompt maas", "ratio",
                                               "gen llama.cpp", "gen maas", "ratio"))
for f in files:
    k = os.path.basename(f)
    lp, lg, mp, mg = [], [], [], []
    for r in range(1, rounds + 1):
        for t in json.load(open("%s/llama.%s.%d.json" % (out, k, r))):
            (lp if t["n_prompt"] > 0 else lg).append(t["avg_ts"])
        m = json.load(open("%s/maas.%s.%d.json" % (out, k, r)))
        mp.append(m["pp_tokens_per_s"]); mg.append(m["tg_tokens_per_s"])
    rp = [a / b for a, b in zip(mp, lp)]
    rg = [a / b for a, b in zip(mg, lg)]
    fmt = lambda xs: "/".join("%.1f" % x for x in xs)
    print("%-28s %22s %22s %10.2f %22s %22s %10.2f" % (k[:28], fmt(lp), fmt(mp), med(rp), fmt(lg), fmt(mg), med(rg)))
PY
