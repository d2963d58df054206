#!/usr/bin/env bash
# `maas train`: a 2-layer model learns (its validation loss falls below the
# text's unigram entropy), checkpoints resume exactly, the result is the same
# on 1 and 2 threads, and bad input gets a clear error (train.py says how).
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/train.py"
