#!/usr/bin/env bash
# maas admin: drives every subcommand on a fresh data directory and checks the
# outputs (JSON parsed with python3), the refusals of bad input (exit 2, one
# line), that no key is stored in the clear, and that usage totals equal the
# sum of the usage records (records written straight into the SQLite ledger,
# as the server's settlement would, since the server is not built yet).
set -u
MAAS=$(realpath "${MAAS_BIN:-build/maas}")
PY=/usr/bin/python3
[ -x "$MAAS" ] || { echo "maas binary not found at $MAAS"; exit 77; }
[ -x "$PY" ] || { echo "python3 not available"; exit 77; }
"$PY" -c 'import sqlite3' 2>/dev/null || { echo "python3 sqlite3 module not available"; exit 77; }

D=$(mktemp -d /tmp/maas-admin-XXXXXX)
trap 'rm -rf "$D"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
adm() { "$MAAS" admin --data "$D/data" "$@"; }
json() { "$PY" -c "import json,sys; d=json.load(sys.stdin); $1"; }
expect_rc() { # rc, description, command...
  local want=$1 what=$2; shift 2
  "$@" >"$D/out" 2>"$D/err"; local rc=$?
  [ $rc -eq "$want" ] || fail "$what: exit $rc, want $want ($(cat "$D/err"))"
  if [ "$want" -ne 0 ]; then
    [ "$(wc -l <"$D/err")" -eq 1 ] || fail "$what: error is not one line: $(cat "$D/err")"
  fi
}

# ---- accounts ----
A=$(adm account create "Acme Inc" --credit 10 | tail -n 1)
[[ $A =~ ^acct_[0-9a-f]{16}$ ]] || fail "account create: last line '$A' is not an id"
B=$(adm account create bob | tail -n 1)
[[ $B =~ ^acct_[0-9a-f]{16}$ ]] || fail "account create (no credit): '$B'"
adm account show "$A" --format json | json "assert d['id']=='$A' and d['name']=='Acme Inc' and d['balance']=='10' and d['held']=='0' and d['credited']=='10', d" || fail "account show json"
adm account credit "$A" 0.25 >/dev/null || fail "account credit"
adm account credit "$A" 0.000001 --format json | json "assert d['balance']=='10.250001' and d['credited']=='10.250001', d" || fail "account credit json"
adm account list --format json | json "a=d['accounts']; assert len(a)==2 and {x['id'] for x in a}=={'$A','$B'}, d" || fail "account list json"
adm account list | grep -q "Acme Inc" || fail "account list table"
adm account show "$B" | grep -qE '^balance: +0$' || fail "account show table"
adm account create "x" --credit 1 --format json | json "assert d['balance']=='1' and d['id'].startswith('acct_')" || fail "account create json"
for bad in 1e3 -5 0.0000001 abc "" 1. .5 +1 0x10 "1 000"; do
  expect_rc 2 "account credit '$bad'" adm account credit "$A" "$bad"
done
expect_rc 2 "account credit 0" adm account credit "$A" 0
expect_rc 2 "account create --credit 1e3" adm account create y --credit 1e3
expect_rc 1 "account show unknown" adm account show acct_nope
expect_rc 1 "account credit unknown" adm account credit acct_nope 5
expect_rc 2 "account show without id" adm account show
expect_rc 2 "unknown subcommand" adm frobnicate
expect_rc 2 "unknown option" adm account list --bogus 1
# fair-share weights: default 1, set 1..1000, shown in text and JSON
adm account show "$A" --format json | json "assert d['weight']==1, d" || fail "account weight default"
adm account set "$A" --weight 3 --format json | json "assert d['weight']==3 and d['id']=='$A', d" || fail "account set --weight json"
adm account show "$A" | grep -qE '^weight: +3$' || fail "account show weight table"
adm account list --format json | json "w={x['id']:x['weight'] for x in d['accounts']}; assert w['$A']==3 and w['$B']==1, d" || fail "account list weight json"
adm account list | grep -q "WEIGHT" || fail "account list weight column"
for bad in 0 1001 -1 abc 2.5 ""; do
  expect_rc 2 "account set --weight '$bad'" adm account set "$A" --weight "$bad"
done
expect_rc 2 "account set without --weight" adm account set "$A"
expect_rc 1 "account set unknown" adm account set acct_nope --weight 2
adm account set "$A" --weight 1000 >/dev/null || fail "account set --weight 1000"
adm account set "$A" --weight 1 >/dev/null || fail "account set --weight 1"
expect_rc 2 "bad format" adm account list --format xml

# ---- keys ----
K=$(adm key create "$A" | tail -n 1)
[[ $K =~ ^sk-maas-[0-9a-f]{12}_[A-Za-z0-9_-]{43}$ ]] || fail "key create: last line '$K' is not a key"
KID=${K:8:12}
K2=$(adm key create "$A" --models m1,m2 --rpm 60 --tpm 100000 --budget 2.5 --budget-period month --expires 2099-12-31 | tail -n 1)
[[ $K2 =~ ^sk-maas- ]] || fail "key create with options: '$K2'"
K2ID=${K2:8:12}
adm key create "$B" --format json | json "assert d['key'].startswith('sk-maas-') and d['account']=='$B' and d['revoked'] is False" || fail "key create json"
adm key list "$A" --format json | json "
k={x['id']:x for x in d['keys']}
assert set(k)=={'$KID','$K2ID'}, k
x=k['$K2ID']
assert x['models']==['m1','m2'] and x['rpm']==60 and x['tpm']==100000 and x['budget']=='2.5' and x['budget_period']=='month', x
assert x['expires_at'].startswith('2099-12-31'), x
assert 'key' not in x and k['$KID']['models'] is None" || fail "key list json"
adm key list --format json | json "assert len(d['keys'])==3" || fail "key list all"
adm key list | grep -q "$K2ID" || fail "key list table"
adm key revoke "$KID" >/dev/null || fail "key revoke"
adm key list "$A" --format json | json "k={x['id']:x for x in d['keys']}; assert k['$KID']['revoked'] is True and k['$K2ID']['revoked'] is False" || fail "key revoked flag"
adm key revoke "$K2" --format json | json "assert d['revoked']" || fail "key revoke by whole key"
expect_rc 1 "key revoke unknown" adm key revoke 000000000000
expect_rc 1 "key revoke malformed" adm key revoke nothex
expect_rc 1 "key create unknown account" adm key create acct_nope
expect_rc 1 "key list unknown account" adm key list acct_nope
expect_rc 2 "budget without period" adm key create "$A" --budget 5
expect_rc 2 "bad budget period" adm key create "$A" --budget 5 --budget-period week
expect_rc 2 "bad budget" adm key create "$A" --budget 1e3 --budget-period day
expect_rc 2 "expiry in the past" adm key create "$A" --expires 2020-01-01
expect_rc 2 "malformed expiry" adm key create "$A" --expires 2024-02-30
expect_rc 2 "bad rpm" adm key create "$A" --rpm abc
expect_rc 2 "negative tpm" adm key create "$A" --tpm -5
# keys are stored only as keyed hashes
for k in "$K" "$K2"; do
  secret=${k:21}
  if grep -qa -- "$secret" "$D/data/ledger.db"; then fail "key secret found in ledger.db"; fi
done
[ "$(stat -c %a "$D/data/secret.key")" = 600 ] || fail "secret.key mode is not 600"
[ "$(stat -c %a "$D/data/ledger.db")" = 600 ] || fail "ledger.db mode is not 600"

# ---- prices ----
adm price set m1 --input 3 --cached-input 0.3 --output 15 --from 2024-01-01 >/dev/null || fail "price set"
adm price set m1 --input 4 --cached-input 0.4 --output 20 --from 2024-06-01T00:00:00Z >/dev/null || fail "price set later"
adm price set m2 --input 0.5 --cached-input 0.05 --output 1.5 --format json | json "assert d['model']=='m2' and d['input']=='0.5' and d['cached_input']=='0.05' and d['output']=='1.5'" || fail "price set json"
adm price list --format json | json "
p=[(x['model'],x['input'],x['from'][:10]) for x in d['prices']]
assert ('m1','3','2024-01-01') in p and ('m1','4','2024-06-01') in p and any(x[0]=='m2' for x in p), p" || fail "price list json"
adm price list | grep -q "^m2 " || fail "price list table"
expect_rc 2 "price set missing output" adm price set m3 --input 1 --cached-input 1
expect_rc 2 "price set bad amount" adm price set m3 --input 1e3 --cached-input 1 --output 1
expect_rc 2 "price set negative" adm price set m3 --input -1 --cached-input 1 --output 1
expect_rc 2 "price set bad from" adm price set m3 --input 1 --cached-input 1 --output 1 --from tomorrow

# ---- usage ----
adm account credit "$B" 100 >/dev/null || fail "credit for usage"
# Records as settlement writes them (each with its ledger row), spread over
# days, accounts, keys and models.
"$PY" - "$D/data/ledger.db" "$A" "$B" "$KID" "$K2ID" <<'PYEOF' || fail "writing usage records"
import sqlite3, sys, random, datetime
db, A, B, K1, K2 = sys.argv[1:]
c = sqlite3.connect(db)
bk = c.execute("SELECT id FROM api_keys WHERE account_id=?", (B,)).fetchone()[0]
random.seed(5)
base = int(datetime.datetime(2024, 5, 30, tzinfo=datetime.timezone.utc).timestamp())
for i in range(60):
    acct, key = [(A, K1), (A, K2), (B, bk)][i % 3]
    model = ['m1', 'm2'][i % 2]
    p = random.randint(1, 5000); cached = random.randint(0, p); comp = random.randint(0, 800)
    pin, pc, pout = (3000000, 300000, 15000000) if model == 'm1' else (500000, 50000, 1500000)
    cost = ((p - cached) * pin + cached * pc + comp * pout + 500000) // 1000000
    t = base + i * 7200  # every 2 hours from 2024-05-30
    day = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime('%Y-%m-%d')
    rid = 'req_test%04d' % i
    cus = random.randint(0, 90000000)  # core-microseconds, at 3.6 per core-hour
    ccost = (cus * 3600000 + 1800000000) // 3600000000
    c.execute("INSERT INTO usage (request_id, account_id, key_id, model, prompt_tokens, cached_tokens,"
              " completion_tokens, price_input, price_cached, price_output, cost, admitted_at, ended_at, day,"
              " finish_reason, compute_us, compute_cost) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
              (rid, acct, key, model, p, cached, comp, pin, pc, pout, cost, t, t + 5, day, 'stop', cus, ccost))
    bal = c.execute("UPDATE accounts SET balance = balance - ? WHERE id = ? RETURNING balance", (cost, acct)).fetchone()[0]
    c.execute("INSERT INTO ledger VALUES (?,?,?,?,?,?,?,?)", ('use_' + rid, acct, 'usage', -cost, bal, rid, None, t + 5))
c.commit()
PYEOF

check_usage() { # extra args...
  local args=("$@")
  adm usage "${args[@]}" --format json >"$D/u.json" || { fail "usage ${args[*]}"; return; }
  "$PY" - "$D/data/ledger.db" "$D/u.json" "${args[@]}" <<'PYEOF' || fail "usage ${args[*]}: totals"
import json, sqlite3, sys, datetime
db, path, *args = sys.argv[1:]
d = json.load(open(path))
opts = dict(zip(args[::2], args[1::2]))
by = opts.get('--by', 'day')
col = {'day': 'day', 'account': 'account_id', 'key': 'key_id', 'model': 'model', 'request': 'request_id'}[by]
def ts(s, end=False):
    t = int(datetime.datetime.strptime(s[:10], '%Y-%m-%d').replace(tzinfo=datetime.timezone.utc).timestamp())
    return t + (86400 if end else 0)
where, params = [], []
if '--from' in opts: where.append('admitted_at >= ?'); params.append(ts(opts['--from']))
if '--to' in opts: where.append('admitted_at < ?'); params.append(ts(opts['--to'], True))
if '--account' in opts: where.append('account_id = ?'); params.append(opts['--account'])
w = (' WHERE ' + ' AND '.join(where)) if where else ''
recs = sqlite3.connect(db).execute('SELECT %s, prompt_tokens, cached_tokens, completion_tokens, cost, compute_us, compute_cost FROM usage%s' % (col, w), params).fetchall()
def micro(s):
    neg = s.startswith('-'); s = s.lstrip('-')
    u, _, f = s.partition('.')
    v = int(u) * 1000000 + int((f + '000000')[:6])
    return -v if neg else v
keys = ['requests', 'prompt_tokens', 'cached_tokens', 'completion_tokens']
tot = d['total']
# rows add up to the total
for k in keys:
    assert sum(r[k] for r in d['rows']) == tot[k], (k, tot)
assert sum(micro(r['cost']) for r in d['rows']) == micro(tot['cost'])
# the total is the sum of the records
assert tot['requests'] == len(recs), (tot, len(recs))
assert tot['prompt_tokens'] == sum(r[1] for r in recs)
assert tot['cached_tokens'] == sum(r[2] for r in recs)
assert tot['completion_tokens'] == sum(r[3] for r in recs)
assert micro(tot['cost']) == sum(r[4] for r in recs)
# the operator's figures: sums of the records, margin = cost - compute_cost exactly
assert round(tot['compute_s'] * 1000000) == sum(r[5] for r in recs), tot
assert micro(tot['compute_cost']) == sum(r[6] for r in recs), tot
for r in d['rows'] + [tot]:
    assert micro(r['margin']) == micro(r['cost']) - micro(r['compute_cost']), r
# each row is the sum of its group's records
for r in d['rows']:
    g = [x for x in recs if x[0] == r[by]]
    assert r['requests'] == len(g) and micro(r['cost']) == sum(x[4] for x in g), r
assert len(d['rows']) == len({x[0] for x in recs})
PYEOF
}
check_usage
check_usage --by account
check_usage --by key
check_usage --by model
check_usage --by request
check_usage --by day --from 2024-05-31 --to 2024-06-01
check_usage --by model --account "$A"
check_usage --by key --account "$B" --from 2024-06-02
adm usage --format json | json "assert d['total']['requests']==60 and len(d['rows'])==5, d['rows']" || fail "usage spans 5 days"
adm usage --from 2024-05-31 --to 2024-05-31 --format json | json "assert [r['day'] for r in d['rows']]==['2024-05-31'] and d['total']['requests']==12" || fail "usage one day"
adm usage --by model --format csv >"$D/u.csv" || fail "usage csv"
"$PY" - "$D/u.csv" <<'PYEOF' || fail "usage csv content"
import csv, sys
def micro(s):
    neg = s.startswith('-'); s = s.lstrip('-')
    u, _, f = s.partition('.')
    v = int(u) * 1000000 + int((f + '000000')[:6])
    return -v if neg else v
rows = list(csv.DictReader(open(sys.argv[1])))
assert [r['model'] for r in rows] == ['m1', 'm2'], rows
assert sum(int(r['requests']) for r in rows) == 60
for r in rows:
    assert micro(r['margin']) == micro(r['cost']) - micro(r['compute_cost']), r
PYEOF
adm usage --by account | grep -qE '^TOTAL +60 ' || fail "usage table total line"
adm usage --key "$KID" --format json | json "assert d['total']['requests']==20" || fail "usage --key by id"
adm usage --key "$K" --format json | json "assert d['total']['requests']==20" || fail "usage --key by whole key"
expect_rc 2 "usage bad date" adm usage --from 2024-13-01
expect_rc 2 "usage bad by" adm usage --by week
expect_rc 2 "usage to before from" adm usage --from 2024-06-02 --to 2024-06-01
expect_rc 1 "usage unknown account" adm usage --account acct_nope
expect_rc 2 "csv outside usage" adm account list --format csv

# the ledger balances after all of it
adm audit --format json | json "assert d['ok'] is True" || fail "audit"
"$PY" -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('UPDATE accounts SET balance = balance + 1 WHERE id = ?', (sys.argv[2],)); c.commit()" "$D/data/ledger.db" "$A"
expect_rc 1 "audit detects a tampered balance" adm audit
grep -q "$A" "$D/err" || fail "audit names the account"
"$PY" -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('UPDATE accounts SET balance = balance - 1 WHERE id = ?', (sys.argv[2],)); c.commit()" "$D/data/ledger.db" "$A"
adm audit >/dev/null || fail "audit after repair"

# ---- admin key ----
AK=$(adm admin-key create | tail -n 1)
[[ $AK =~ ^sk-maas-admin-[A-Za-z0-9_-]{43}$ ]] || fail "admin-key create: '$AK'"
adm admin-key create --format json | json "assert d['admin_key'].startswith('sk-maas-admin-')" || fail "admin-key json"

# ---- schema newer than this maas: refused clearly ----
cp -r "$D/data" "$D/newer"
"$PY" -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('INSERT INTO schema_version VALUES (999, 0)'); c.commit()" "$D/newer/ledger.db"
"$MAAS" admin --data "$D/newer" account list >/dev/null 2>"$D/err"; rc=$?
[ $rc -eq 1 ] && grep -q "newer" "$D/err" || fail "newer schema not refused (exit $rc: $(cat "$D/err"))"

# ---- a missing ledger is not created by commands that only read ----
expect_rc 1 "account list on a missing data dir" "$MAAS" admin --data "$D/nowhere" account list
[ ! -e "$D/nowhere" ] || fail "a read-only command created the data directory"

# ---- the default data directory is ./maas-data ----
(cd "$D" && "$MAAS" admin account create here >/dev/null) && [ -f "$D/maas-data/ledger.db" ] || fail "default ./maas-data"

if [ $fails -ne 0 ]; then
  echo "$fails check(s) failed"
  exit 1
fi
echo "admin_cli: all checks passed"
