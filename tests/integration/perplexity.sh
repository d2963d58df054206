#!/usr/bin/env bash
# `maas perplexity` against the float64 NumPy reference, both methods, and its
# errors (tests/integration/perplexity.py says how).
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/perplexity.py"
