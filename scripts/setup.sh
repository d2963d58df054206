#!/usr/bin/env bash
# Installs the Debian packages maas needs to build and test, only those that
# are missing. Safe to run again; used by `make test`, `make run` and CI.
set -euo pipefail

PKGS=(
  gcc make pkg-config              # build
  libtsan2                         # ThreadSanitizer runtime (make tsan)
  clang libclang-rt-14-dev         # libFuzzer targets
  python3 python3-numpy            # the independent NumPy reference in tests/
  python3-jinja2                   # the Jinja2 reference the chat template golden test compares with
  python3-jsonschema               # the validator of the structured-output conformance test
  libpcre2-dev                     # tokenizer pre-splitting
  libicu-dev                       # WordPiece: Unicode decomposition, categories, lower case
  libsqlite3-dev libsodium-dev     # the ledger (SQLite) and API-key hashing
  libmicrohttpd-dev libjansson-dev # HTTP server and JSON
  libpq-dev postgresql nginx       # shared ledger (PostgreSQL) and scale-out tests
  nodejs npm                       # the OpenAI Node SDK tests (tests/sdk)
  chromium                         # the web console's browser test (tests/browser, puppeteer-core)
  prometheus                       # promtool checks /metrics
  bible-kjv bible-kjv-text         # the King James Bible: scripts/corpus.sh makes the training corpus of maas train
)

missing=()
for p in "${PKGS[@]}"; do
  # NodeSource's nodejs bundles npm (and conflicts with Debian's npm package)
  if [ "$p" = npm ] && command -v npm >/dev/null; then continue; fi
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "setup: done"
fi

# npm packages of the browser test (tests/browser/package-lock.json): the
# driver for chromium. A failure here is not fatal: the test installs them
# itself or skips, saying why.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -f "$ROOT/tests/browser/node_modules/puppeteer-core/package.json" ] && command -v npm >/dev/null; then
  echo "setup: npm ci in tests/browser (puppeteer-core)"
  (cd "$ROOT/tests/browser" && timeout 180 npm ci --no-audit --no-fund >/dev/null 2>&1) \
    || echo "setup: npm ci in tests/browser failed (the browser test will retry or skip)"
fi
