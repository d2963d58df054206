#!/usr/bin/env bash
# Runs every test of maas and prints one closing line "N passed, N failed,
# N skipped". Unit test programs report their own counts; every other test
# (integration scripts, the NumPy reference tests, fuzz replays) counts as one.
# A script that exits 77 is skipped (it prints why).
#
#   scripts/run_tests.sh [SECTION...]   SECTION: unit tsan integration ref fuzz
#                                       (default: all of them, in that order)
#   TEST_JOBS     tests run at once (default: the number of cores)
#   FUZZ_SECONDS  seconds of fresh fuzzing per target after the corpus replay (default 20)
#
# Tests run TEST_JOBS at a time; a test whose file holds the line
# "# maas-test: serial" (timing checks, load measurements) runs alone after the
# others of its section. Each test's lines are printed when it ends, so the
# order of the lines is the order tests finished in.
set -u
cd "$(dirname "$0")/.."
sections=${*:-unit tsan integration ref fuzz}
want() { [[ " $sections " == *" $1 "* ]]; }
jobs_max=${TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}
[ "$jobs_max" -ge 1 ] 2>/dev/null || jobs_max=1

export MAAS_BIN="$PWD/build/maas"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS="detect_leaks=1"

log_dir=build/test-logs
res_dir=$log_dir/results
rm -rf "$res_dir"
mkdir -p "$log_dir" "$res_dir"

# ---- one test, run in the background: writes "P F S" to its result file and
# its report lines to the .out file beside it ----
run_one() { # name, command... (counts as one test)
  local name=$1; shift
  local key; key=$(echo "$name" | tr '/ ' '__')
  local log="$log_dir/$key.log" t0 rc dt
  t0=$(date +%s)
  "$@" >"$log" 2>&1
  rc=$?
  dt=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then
    echo "ok   $name (${dt}s)" >"$res_dir/$key.out"; echo "1 0 0" >"$res_dir/$key.res"
  elif [ $rc -eq 77 ]; then
    echo "skip $name: $(tail -n 1 "$log")" >"$res_dir/$key.out"; echo "0 0 1" >"$res_dir/$key.res"
  else
    { echo "FAIL $name (exit $rc, ${dt}s) — log: $log"; tail -n 30 "$log" | sed 's/^/     /'; } >"$res_dir/$key.out"
    echo "0 1 0 $name" >"$res_dir/$key.res"
  fi
}

# A unit test program prints its own counts; run_unit takes them.
run_unit() { # section, program, [env assignments...]
  local sec=$1 t=$2; shift 2
  local name="$sec/$(basename "$t")" key="${sec}_$(basename "$t")"
  local log="$log_dir/$key.log" t0 rc dt line p f s
  t0=$(date +%s)
  env "$@" "$t" >"$log" 2>&1
  rc=$?
  dt=$(( $(date +%s) - t0 ))
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/'); p=${p:-0}
  f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/'); f=${f:-0}
  s=$(echo "$line" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p'); s=${s:-0}
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crashed before its summary
  if [ "$f" -gt 0 ]; then
    { echo "FAIL $name (${dt}s) — log: $log"; grep -vE '^ok ' "$log" | tail -n 30 | sed 's/^/     /'; } \
      >"$res_dir/$key.out"
    echo "$p $f $s $name" >"$res_dir/$key.res"
  else
    { echo "ok   $name: $p passed, $s skipped (${dt}s)"; grep -E '^skip ' "$log" | sed 's/^/     /'; } \
      >"$res_dir/$key.out"
    echo "$p 0 $s" >"$res_dir/$key.res"
  fi
}

# ---- the pool ----
running=0
reap() { # waits for one background test and prints its report
  wait -n 2>/dev/null
  running=$((running - 1))
  flush
}
printed=" "
flush() { # prints the reports of finished tests not printed yet
  local o k
  for o in "$res_dir"/*.out; do
    [ -f "$o" ] || continue
    k=$(basename "$o" .out)
    [[ "$printed" == *" $k "* ]] && continue
    [ -f "$res_dir/$k.res" ] || continue
    cat "$o"; printed="$printed$k "
  done
}
spawn() { # runs "$@" in the background, at most jobs_max at once
  while [ $running -ge "$jobs_max" ]; do reap; done
  "$@" &
  running=$((running + 1))
}
drain() { while [ $running -gt 0 ]; do reap; done; flush; }
is_serial() { grep -q '^# maas-test: serial' "$1" 2>/dev/null; }

# Unit tests (ASan + UBSan), then the threaded modules' tests under
# ThreadSanitizer (halt on the first race report).
if want unit; then
  for t in build/dbg/tests/*; do [ -x "$t" ] && [ -f "$t" ] && spawn run_unit unit "$t"; done
  drain
fi
if want tsan; then
  for t in build/tsan/tests/*; do
    [ -x "$t" ] && [ -f "$t" ] && spawn run_unit tsan "$t" TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
  done
  drain
fi

# Integration tests: shell scripts and Python (NumPy reference) tests; the
# serial ones after the rest, one at a time.
if want integration; then
  serial=()
  for t in tests/integration/*.sh; do
    [ -f "$t" ] || continue
    if is_serial "$t"; then serial+=("$t"); continue; fi
    spawn run_one "integration/$(basename "$t")" bash "$t"
  done
  drain
  for t in "${serial[@]}"; do run_one "integration/$(basename "$t")" bash "$t"; flush; done
fi
if want ref; then
  for t in tests/ref/test_*.py; do
    [ -f "$t" ] || continue
    spawn run_one "ref/$(basename "$t")" /usr/bin/python3 "$t"
  done
  drain
fi

# Fuzz targets: replay the corpus, then fuzz for a bounded time.
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
if want fuzz; then
  for f in build/fuzz/fuzz_*; do
    [ -x "$f" ] || continue
    n=$(basename "$f")
    corpus="tests/fuzz/corpus/${n#fuzz_}"
    work="build/fuzz-work/$n"
    rm -rf "$work"; mkdir -p "$work"
    [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/ 2>/dev/null
    # -error_exitcode: libFuzzer's default for a crash is 77, which this
    # runner reads as "skipped"; crash inputs go to the work folder
    spawn run_one "fuzz/$n" "$f" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
      -error_exitcode=1 -artifact_prefix="$work/" -print_final_stats=1 "$work"
  done
  drain
fi

passed=0 failed=0 skipped=0
failures=()
for r in "$res_dir"/*.res; do
  [ -f "$r" ] || continue
  read -r p f s name <"$r"
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  [ "$f" -gt 0 ] && failures+=("$name")
done
if [ ${#failures[@]} -gt 0 ]; then
  echo "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
