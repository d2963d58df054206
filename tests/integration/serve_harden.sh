#!/usr/bin/env bash
# Hostile clients (issue 19): framing errors through a raw socket (one JSON
# 400, then the connection closed), the header deadline, a body dripped below
# --min-body-rate, a stream whose client stops reading, the connection
# limits (in all and per address), thousands of idle connections and slow
# senders while /health answers, a world-readable --admin-key-file refused,
# /v1/models filtered by the key's allowed models, the access log. Checks in
# serve_harden.py.
# maas-test: serial
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/serve_lib.bash"

serve_tiny_model
# --admin-key-file readable by others: refused like the secret file
akf="$tmp/admin-key"
echo "sk-maas-admin-harden-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')" >"$akf"
chmod 644 "$akf"
out=$(timeout 60 "$BIN" serve --model "tiny=$tmp/tiny.gguf" --data "$tmp/data" --admin-key-file "$akf" --port 0 \
  --threads 1 2>&1)
rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -q "admin-key-file $akf: readable by others (mode 644); run chmod 600 on it" \
  || { echo "FAIL: a 0644 --admin-key-file should be refused (rc $rc): $out"; exit 1; }
echo "ok   a --admin-key-file readable by others is refused: $(echo "$out" | tail -1)"
chmod 600 "$akf"

# the ledger for the /v1/models check: one key for tiny only, one for every model
adm() { "$BIN" admin --data "$tmp/data" "$@"; }
adm price set tiny --input 100 --cached-input 50 --output 200 >/dev/null || { echo "FAIL: price set"; exit 1; }
acct=$(adm account create harden --credit 1 | tail -n 1) || { echo "FAIL: account create"; exit 1; }
key_tiny=$(adm key create "$acct" --models tiny | tail -n 1) || { echo "FAIL: key create"; exit 1; }
key_all=$(adm key create "$acct" | tail -n 1) || { echo "FAIL: key create"; exit 1; }
SERVE_NOAUTH=()
serve_start "$tmp/billing.log" --model "tiny=$tmp/tiny.gguf" --model "other=$tmp/tiny.gguf" --data "$tmp/data" \
  --admin-key-file "$akf" --threads 1 --ctx 256 --access-log "$tmp/access.log" || exit 1
billing_port=$port
SERVE_NOAUTH=(--no-auth)
serve_start "$tmp/main.log" --model "tiny=$tmp/tiny.gguf" --threads 1 --ctx 256 --header-timeout 2 || exit 1
main_port=$port
serve_start "$tmp/limits.log" --model "tiny=$tmp/tiny.gguf" --threads 1 --ctx 256 --max-connections 40 \
  --max-connections-per-ip 10 || exit 1
limits_port=$port
serve_start "$tmp/load.log" --model "tiny=$tmp/tiny.gguf" --threads 1 --ctx 256 || exit 1
load_port=$port
load_pid=${serve_pids[-1]}
serve_start "$tmp/stall.log" --model "tiny=$tmp/tiny.gguf" --threads 1 --ctx 4096 --timeout 4 \
  --access-log "$tmp/stall-access.log" || exit 1
stall_port=$port
eog=$("$BIN" inspect "$tmp/tiny.gguf" | awk '/tokenizer.ggml.*_token_id/ {print $3}' | paste -sd, -)

timeout 300 "$PY" "$HERE/serve_harden.py" "$main_port" "$limits_port" "$load_port" "$load_pid" \
  "$billing_port" "$key_tiny" "$key_all" "$tmp/access.log" "$stall_port" "$tmp/stall-access.log" "$eog"
rc=$?
[ $rc -eq 0 ] || { for l in main limits load billing; do echo "--- $l log (tail)"; tail -5 "$tmp/$l.log"; done; }
exit $rc
