#!/usr/bin/env bash
# The code rules CONTRIBUTING.md states and a machine can check:
#   - no function in src/ is longer than 120 lines;
#   - no code decides by matching an error message's text (strstr/strcmp on
#     a struct err's msg) — callers branch on e.code;
#   - the FNV offset bases are written once, in src/core/core.h (hash.c has
#     the primes), so there is one hash;
#   - every public function has a caller outside its file or a test
#     (scripts/deadapi.sh, on the release objects).
set -u
cd "$(dirname "$0")/../.."
fail=0
check() { # description, command...
  local what=$1; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}
PY=$(command -v python3 || true)
if [ -n "$PY" ]; then
  check "no function in src/ over 120 lines" "$PY" scripts/funclen.py src 120
else
  echo "skip function lengths: python3 not found"
fi
no_msg_matching() { # grep exits 1 when nothing matched, 2 on an error
  grep -rnE '(strstr|strcmp|strncmp|memcmp)\([^;]*\b[a-z_]+(\.|->)msg\b' src
  [ $? -eq 1 ]
}
check "no branch on error-message text in src/" no_msg_matching
fnv_bases_once() {
  local n
  n=$(grep -rniE 'cbf29ce484222325|1469598103934665603|14695981039346656037|811c9dc5|2166136261' src | grep -v '^src/core/' | wc -l)
  [ "$n" -eq 0 ] || { grep -rniE 'cbf29ce484222325|1469598103934665603|811c9dc5|2166136261' src | grep -v '^src/core/'; return 1; }
}
check "FNV offset bases only in src/core" fnv_bases_once
if [ -d build/rel/obj/src ]; then
  check "every public function has a caller or a test" scripts/deadapi.sh build/rel
else
  echo "FAIL build/rel/obj/src missing: build with make first"; fail=1
fi
exit $fail
