#!/usr/bin/env bash
# `promtool check metrics` (Debian's prometheus package, installed by
# scripts/setup.sh) accepts the /metrics of maas serve: fresh, under load
# with a queue, and after mixed traffic on two models. Checks in
# serve_metrics.py. Exit 77 (skip) when promtool is not installed.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/serve_lib.bash"
PROMTOOL=$(command -v promtool) || { echo "promtool is not installed (scripts/setup.sh installs prometheus)"; exit 77; }

serve_tiny_model
serve_start "$tmp/serve.log" --model "tiny=$tmp/tiny.gguf" --model "second=$tmp/tiny.gguf" --threads 1 --ctx 16384 \
  --max-running 2 --max-body 65536 || exit 1
timeout 85 "$PY" "$HERE/serve_metrics.py" "$port" tiny second "$PROMTOOL"
rc=$?
[ $rc -eq 0 ] || { echo "--- server log (tail)"; tail -20 "$tmp/serve.log"; }
exit $rc
