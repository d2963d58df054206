#!/usr/bin/env bash
# Billing of requests that end on a stop string: the streamed and the
# non-streamed response, /v1/usage and the ledger (maas admin usage) must
# agree on prompt, cached and completion tokens and on the cost, and the
# completion tokens must be exactly the tokens up to the one that completed
# the stop string (job.c's rule). Checks in serve_stop_usage.py.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/serve_lib.bash"

serve_tiny_model
data="$tmp/data"
akf="$tmp/admin-key"
echo "sk-maas-admin-stop-usage-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')" >"$akf"
chmod 600 "$akf"
adm() { "$BIN" admin --data "$data" "$@"; }
adm price set tiny --input 100 --cached-input 50 --output 200 >/dev/null || { echo "FAIL: price set"; exit 1; }
acct=$(adm account create stop --credit 10 | tail -n 1) || { echo "FAIL: account create"; exit 1; }
key=$(adm key create "$acct" | tail -n 1) || { echo "FAIL: key create"; exit 1; }
SERVE_NOAUTH=()   # this test needs keys and the ledger
serve_start "$tmp/serve.log" --model "tiny=$tmp/tiny.gguf" --data "$data" --admin-key-file "$akf" \
  --threads 1 --ctx 2048 || exit 1
timeout 120 "$PY" "$HERE/serve_stop_usage.py" "$port" "$key" "$BIN" "$data"
rc=$?
[ $rc -eq 0 ] || { echo "--- server log (tail)"; tail -20 "$tmp/serve.log"; }
exit $rc
