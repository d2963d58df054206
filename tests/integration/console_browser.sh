#!/usr/bin/env bash
# The web console (/console) in a real browser: Debian's chromium, headless,
# driven by puppeteer-core (pinned in tests/browser/package-lock.json). The
# checks are in tests/browser/console.test.mjs: a tenant's balance, spend and
# request count equal `maas admin`'s; the operator makes a key in the page
# that works with curl and gets 401 once revoked there, credits an account;
# an account named <img src=x onerror=alert(1)> shows as text and fires no
# alert; every request the page made went to the server, none with a key in
# its URL; the page's CSP has no 'unsafe-inline'.
#
# Also checked here with curl: the console's headers, 304 on its ETag, 404
# for unknown files, /v1/me for a tenant key (403 for the admin key, 401
# without a key) and /v1/me/requests' limit.
#
# SHOTS=DIR: the browser also saves screenshots there (make screenshots).
# Skips (77) without chromium, node >= 20, or npm and the registry.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/serve_lib.bash"
SERVE_NOAUTH=() # this test needs keys
BROWSER_DIR="$ROOT/tests/browser"
t0=$(date +%s.%N)

CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[ -n "$CHROMIUM" ] && [ -x "$CHROMIUM" ] \
  || { echo "chromium is not installed${CHROMIUM:+ at $CHROMIUM} (scripts/setup.sh installs it)"; exit 77; }
command -v node >/dev/null || { echo "node is not installed (scripts/setup.sh installs nodejs)"; exit 77; }
command -v curl >/dev/null || { echo "curl is not installed"; exit 77; }
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || { echo "node $major is too old (need >= 20)"; exit 77; }
if [ ! -f "$BROWSER_DIR/node_modules/puppeteer-core/package.json" ]; then
  command -v npm >/dev/null || { echo "npm is not installed (scripts/setup.sh installs npm)"; exit 77; }
  echo "installing puppeteer-core: npm ci in tests/browser"
  if ! (cd "$BROWSER_DIR" && timeout 180 npm ci --no-audit --no-fund >"$tmp/npm.log" 2>&1); then
    cat "$tmp/npm.log"
    if (cd "$BROWSER_DIR" && timeout 30 npm ping >/dev/null 2>&1); then
      echo "FAIL: npm ci failed although the registry answers"; exit 1
    fi
    echo "npm cannot reach the registry to install puppeteer-core"; exit 77
  fi
fi

fail() { echo "FAIL: $*"; exit 1; }

# ---- a ledger: an account with a key and some usage, an XSS-named account ----
serve_tiny_model
DATA="$tmp/data"
admin() { "$BIN" admin --data "$DATA" "$@"; }
admin admin-key create | tail -n 1 >"$tmp/admin-key" && chmod 600 "$tmp/admin-key" || fail "admin-key create"
account=$(admin account create "Acme Research" --credit 25 | tail -n 1)
XSS_NAME='<img src=x onerror=alert(1)>'
admin account create "$XSS_NAME" --credit 1 >/dev/null || fail "account create"
admin price set demo --input 0.50 --cached-input 0.25 --output 1.50 >/dev/null
admin price set mini --input 0.20 --cached-input 0.10 --output 0.60 >/dev/null
admin cost set --per-core-hour 0.05 --from 2020-01-01 >/dev/null || fail "cost set"
tenant_key=$(admin key create "$account" | tail -n 1)
admin_key=$(cat "$tmp/admin-key")

serve_start "$tmp/serve.log" --model "demo=$tmp/tiny.gguf" --model "mini=$tmp/tiny.gguf" --data "$DATA" \
  --admin-key-file "$tmp/admin-key" --threads 1 || exit 1
URL="http://127.0.0.1:$port"

chat() { # model, content: the HTTP status
  curl -s -o /dev/null -w '%{http_code}' "$URL/v1/chat/completions" -H "Authorization: Bearer $tenant_key" \
    -H 'Content-Type: application/json' \
    -d "{\"model\":\"$1\",\"messages\":[{\"role\":\"user\",\"content\":\"$2\"}],\"max_tokens\":${3:-8}}"
}
long="Tell me about the history of the printing press, the steam engine and the telegraph in detail."
for i in 1 2 3; do [ "$(chat demo "$long" 12)" = 200 ] || fail "chat demo"; done
for i in 1 2; do [ "$(chat mini "Hello number $i" 6)" = 200 ] || fail "chat mini"; done

# ---- the routes, with curl ----
hdrs=$(curl -s -D - -o "$tmp/index.html" "$URL/console")
grep -qi '^content-security-policy: .*script-src '"'"'self'"'"'' <<<"$hdrs" || fail "no CSP on /console: $hdrs"
grep -qi 'unsafe-inline' <<<"$hdrs" && fail "the CSP allows unsafe-inline"
grep -qi '^x-content-type-options: nosniff' <<<"$hdrs" || fail "no nosniff"
grep -qi '^content-type: text/html; charset=utf-8' <<<"$hdrs" || fail "index.html content type: $hdrs"
cmp -s "$tmp/index.html" "$ROOT/web/index.html" || fail "/console is not web/index.html"
grep -q '<script>\|onclick=\|onload=\| style=' "$ROOT/web/index.html" && fail "inline script or style in index.html"
ctype=$(curl -s -o /dev/null -w '%{content_type}' "$URL/console/console.js")
[ "$ctype" = "text/javascript; charset=utf-8" ] || fail "console.js content type: $ctype"
etag=$(curl -s -D - -o /dev/null "$URL/console/console.css" | tr -d '\r' | sed -n 's/^[Ee][Tt][Aa][Gg]: //p')
[ -n "$etag" ] || fail "no ETag"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$URL/console/console.css")
[ "$code" = 304 ] || fail "If-None-Match with the ETag: $code, not 304"
for u in /console/nope.js /console/../README.md /consolex; do
  code=$(curl -s --path-as-is -o /dev/null -w '%{http_code}' "$URL$u")
  [ "$code" = 404 ] || fail "$u: $code, not 404"
done
me=$(curl -s "$URL/v1/me" -H "Authorization: Bearer $tenant_key")
[ "$("$PY" -c 'import json,sys;print(json.load(sys.stdin)["account"]["id"])' <<<"$me")" = "$account" ] \
  || fail "/v1/me: $me"
grep -q '"sk-maas-' <<<"$me" && fail "/v1/me shows a whole key"
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/me" -H "Authorization: Bearer $admin_key")
[ "$code" = 403 ] || fail "/v1/me with the admin key: $code, not 403"
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/me")
[ "$code" = 401 ] || fail "/v1/me without a key: $code, not 401"
n=$(curl -s "$URL/v1/me/requests?limit=2" -H "Authorization: Bearer $tenant_key" | grep -o '"status"' | wc -l)
[ "$n" = 2 ] || fail "/v1/me/requests?limit=2 gave $n requests"
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/me/requests?limit=abc" -H "Authorization: Bearer $tenant_key")
[ "$code" = 400 ] || fail "limit=abc: $code, not 400"
echo "ok console headers, ETag, 404s; /v1/me and /v1/me/requests"

# ---- the browser ----
MAAS_URL="$URL" MAAS_BIN="$BIN" MAAS_DATA="$DATA" TENANT_KEY="$tenant_key" TENANT_ACCOUNT="$account" \
  ADMIN_KEY="$admin_key" XSS_NAME="$XSS_NAME" CHROMIUM="$CHROMIUM" SHOTS="${SHOTS:-}" \
  timeout 90 node "$BROWSER_DIR/console.test.mjs" || fail "the browser checks (above)"
echo "PASS console_browser ($(printf '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc 2>/dev/null || echo 0)") s)"
