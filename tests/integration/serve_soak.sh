#!/usr/bin/env bash
# Soak under kills: mixed streamed/non-streamed load from several accounts,
# random client hang-ups, the server SIGKILLed and restarted SOAK_KILLS times
# (default 10) over SOAK_SECONDS (default 60; `make soak` runs longer); then
# the ledger must balance, with one record per completed request and no hold
# left. Checks in serve_soak.py.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/serve_lib.bash"

serve_tiny_model
timeout $(( ${SOAK_SECONDS:-60} * 3 + 300 )) "$PY" "$HERE/serve_soak.py" "$BIN" "$tmp/tiny.gguf" "$tmp" \
  "${SOAK_SECONDS:-60}" "${SOAK_KILLS:-10}"
rc=$?
[ $rc -eq 0 ] || { echo "--- server log (tail)"; tail -20 "$tmp/serve.log"; }
exit $rc
