#!/usr/bin/env bash
# Runs every test of maas and prints one closing line "N passed, N failed,
# N skipped". Unit test programs report their own counts; every other test
# (integration scripts, the NumPy reference tests, fuzz replays) counts as one.
# A script that exits 77 is skipped (it prints why).
#
#   scripts/run_tests.sh [SECTION...]   SECTION: unit tsan integration ref fuzz
#                                       (default: all of them, in that order)
#   FUZZ_SECONDS  seconds of fresh fuzzing per target after the corpus replay (default 30)
set -u
cd "$(dirname "$0")/.."
sections=${*:-unit tsan integration ref fuzz}
want() { [[ " $sections " == *" $1 "* ]]; }

passed=0 failed=0 skipped=0
failures=()
export MAAS_BIN="$PWD/build/maas"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS="detect_leaks=1"

log_dir=build/test-logs
mkdir -p "$log_dir"

run_one() { # name, command...
  local name=$1; shift
  local log="$log_dir/$(echo "$name" | tr '/ ' '__').log"
  local t0=$(date +%s)
  "$@" >"$log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1)); echo "ok   $name (${dt}s)"
  elif [ $rc -eq 77 ]; then
    skipped=$((skipped + 1)); echo "skip $name: $(tail -n 1 "$log")"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "FAIL $name (exit $rc, ${dt}s) — log: $log"
    tail -n 30 "$log" | sed 's/^/     /'
  fi
}

# A unit test program prints its own counts; run_unit adds them up.
run_unit() { # section, program
  local t=$2 name="$1/$(basename "$2")"
  local log="$log_dir/$1_$(basename "$2").log"
  local t0=$(date +%s) rc dt line p f s
  "$t" >"$log" 2>&1
  rc=$?
  dt=$(( $(date +%s) - t0 ))
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/'); p=${p:-0}
  f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/'); f=${f:-0}
  s=$(echo "$line" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p'); s=${s:-0}
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crashed before its summary
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  if [ "$f" -gt 0 ]; then
    failures+=("$name"); echo "FAIL $name (${dt}s) — log: $log"
    grep -vE '^ok ' "$log" | tail -n 30 | sed 's/^/     /'
  else
    echo "ok   $name: $p passed, $s skipped (${dt}s)"
    grep -E '^skip ' "$log" | sed 's/^/     /'
  fi
}

# Unit tests (ASan + UBSan), then the threaded modules' tests under
# ThreadSanitizer (halt on the first race report).
if want unit; then
  for t in build/dbg/tests/*; do [ -x "$t" ] && run_unit unit "$t"; done
fi
if want tsan; then
  for t in build/tsan/tests/*; do [ -x "$t" ] && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" run_unit tsan "$t"; done
fi

# Integration tests: shell scripts and Python (NumPy reference) tests.
if want integration; then
  for t in tests/integration/*.sh; do
    [ -f "$t" ] || continue
    run_one "integration/$(basename "$t")" bash "$t"
  done
fi
if want ref; then
  for t in tests/ref/test_*.py; do
    [ -f "$t" ] || continue
    run_one "ref/$(basename "$t")" /usr/bin/python3 "$t"
  done
fi

# Fuzz targets: replay the corpus, then fuzz for a bounded time.
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
want fuzz && for f in build/fuzz/fuzz_*; do
  [ -x "$f" ] || continue
  n=$(basename "$f")
  corpus="tests/fuzz/corpus/${n#fuzz_}"
  work="build/fuzz-work/$n"
  rm -rf "$work"; mkdir -p "$work"
  [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/ 2>/dev/null
  run_one "fuzz/$n" "$f" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$work"
done

if [ ${#failures[@]} -gt 0 ]; then
  echo "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
