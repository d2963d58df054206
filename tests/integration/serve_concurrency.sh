#!/usr/bin/env bash
# maas serve under load: 32 concurrent streaming chat clients at temperature 0
# get exactly their one-at-a-time outputs (cold and with cached prompts), and a
# 10-turn conversation shows cached_tokens growing turn by turn. The checks are
# in serve_concurrency.py (standard library only).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/serve_lib.bash"

serve_tiny_model
serve_start "$tmp/serve.log" --model "tiny=$tmp/tiny.gguf" --threads 1 --ctx 2048 || exit 1
timeout 85 "$PY" "$HERE/serve_concurrency.py" "$port" tiny
rc=$?
[ $rc -eq 0 ] || { echo "--- server log (tail)"; tail -20 "$tmp/serve.log"; }
exit $rc
