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
  libsqlite3-dev libsodium-dev     # the ledger (SQLite) and API-key hashing
  libmicrohttpd-dev libjansson-dev # HTTP server and JSON
  libpq-dev postgresql nginx       # shared ledger (PostgreSQL) and scale-out tests
  nodejs npm                       # the OpenAI Node SDK tests (tests/sdk)
  prometheus                       # promtool checks /metrics
)

missing=()
for p in "${PKGS[@]}"; do
  # NodeSource's nodejs bundles npm (and conflicts with Debian's npm package)
  if [ "$p" = npm ] && command -v npm >/dev/null; then continue; fi
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
