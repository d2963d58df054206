#!/usr/bin/env bash
# `make run`: until the server exists, shows the most useful end-to-end path
# that works today.
set -euo pipefail
cd "$(dirname "$0")/.."
./build/maas version
