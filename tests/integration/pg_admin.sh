#!/usr/bin/env bash
# maas admin --db postgresql://...: the same commands as on SQLite against a
# throw-away PostgreSQL server (scripts/pg_server.sh, loopback, temp dir):
# accounts, keys, prices, usage totals equal to the records (written with psql
# as a settlement would write them), the audit, and that a shared ledger
# refuses to run without the shared --secret-file. Exit 77 when PostgreSQL is
# not installed.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MAAS=$(realpath "${MAAS_BIN:-build/maas}")
PY=/usr/bin/python3
[ -x "$MAAS" ] || { echo "maas binary not found at $MAAS"; exit 77; }
[ -x "$PY" ] || { echo "python3 not available"; exit 77; }

D=$(mktemp -d /tmp/maas-pgadmin-XXXXXX)
cleanup() { "$ROOT/scripts/pg_server.sh" stop "$D/pg" >/dev/null 2>&1; rm -rf "$D"; }
trap cleanup EXIT
out=$("$ROOT/scripts/pg_server.sh" start "$D/pg" 2>&1); rc=$?
[ $rc -eq 77 ] && { echo "$out" | tail -n 1; exit 77; }
[ $rc -eq 0 ] || { echo "FAIL: PostgreSQL did not start: $out"; exit 1; }
URL=$(echo "$out" | tail -n 1)
psql() { "$ROOT/scripts/pg_server.sh" psql "$D/pg" -At "$@"; }

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
head -c 32 /dev/urandom >"$D/secret"; chmod 600 "$D/secret"
adm() { "$MAAS" admin --db "$URL" --secret-file "$D/secret" "$@"; }
json() { "$PY" -c "import json,sys; d=json.load(sys.stdin); $1"; }

# a shared ledger needs the shared key-hashing secret
"$MAAS" admin --db "$URL" account list >/dev/null 2>"$D/err" && fail "--db without --secret-file accepted"
grep -qi "secret.file" "$D/err" || fail "--db without --secret-file: unclear error: $(cat "$D/err")"

A=$(adm account create "Acme Inc" --credit 10 | tail -n 1)
[[ $A =~ ^acct_[0-9a-f]{16}$ ]] || fail "account create: last line '$A' is not an id"
B=$(adm account create bob --credit 1 | tail -n 1)
adm account credit "$A" 0.25 >/dev/null || fail "account credit"
adm account show "$A" --format json | json "assert d['balance']=='10.25' and d['held']=='0' and d['credited']=='10.25', d" \
  || fail "account show json"
adm account list --format json | json "assert {x['id'] for x in d['accounts']}=={'$A','$B'}, d" || fail "account list"
K=$(adm key create "$A" --rpm 60 --models tiny | tail -n 1)
[[ $K =~ ^sk-maas-[0-9a-f]{12}_ ]] || fail "key create: '$K'"
KID=${K:8:12}
psql -c "SELECT count(*) FROM api_keys WHERE hash LIKE '%${K:21:10}%'" | grep -qx 0 || fail "key stored in the clear"
adm key list "$A" --format json | json "assert d['keys'][0]['id']=='$KID', d" || fail "key list"
adm price set tiny --input 1 --cached-input 0.5 --output 2 --from 2020-01-01 >/dev/null || fail "price set"
adm price list --format json | json "assert d['prices'][0]['model']=='tiny', d" || fail "price list"

# three settled requests, written as billing_settle writes them
for i in 1 2 3; do
  cost=$((i * 1000))
  psql -q -c "BEGIN;
    INSERT INTO usage (request_id, account_id, key_id, model, prompt_tokens, cached_tokens, completion_tokens,
      price_input, price_cached, price_output, cost, admitted_at, ended_at, day, finish_reason)
      VALUES ('req_t$i', '$A', '$KID', 'tiny', $((i * 100)), $i, $((i * 10)), 1000000, 500000, 2000000, $cost,
              1700000000 + $i, 1700000001 + $i, '2023-11-14', 'stop');
    UPDATE accounts SET balance = balance - $cost WHERE id = '$A';
    INSERT INTO ledger (id, account_id, kind, amount, balance_after, request_id, created_at)
      SELECT 'use_req_t$i', '$A', 'usage', -$cost, balance, 'req_t$i', 1700000002 FROM accounts WHERE id = '$A';
    COMMIT;" || fail "psql insert $i"
done
adm usage --format json --by account | json \
  "t=d['total']; assert t['requests']==3 and t['prompt_tokens']==600 and t['cached_tokens']==6 and t['completion_tokens']==60 and t['cost']=='0.006', d; assert d['rows'][0]['account']=='$A', d" \
  || fail "usage totals"
adm usage --format json --by request --account "$A" | json "assert len(d['rows'])==3, d" || fail "usage by request"
adm account show "$A" --format json | json "assert d['balance']=='10.244', d" || fail "balance after usage"
adm audit >/dev/null || fail "audit of a balanced ledger"
psql -q -c "UPDATE accounts SET balance = balance + 1 WHERE id = '$B'"
adm audit >/dev/null 2>&1 && fail "audit missed an unbalanced account"
[ "$(psql -c 'SELECT max(version) FROM schema_version')" -ge 1 ] || fail "schema_version"

[ $fails -eq 0 ] || exit 1
echo "ok   maas admin on PostgreSQL"
