#!/usr/bin/env python3
"""maas serve with billing, over raw HTTP (standard library only).

Usage: billing_serve.py BIN MODEL TMPDIR

Starts `maas serve` on a fresh ledger (models: tiny and pc priced, free not
priced) and checks: the admin key printed once at first start; 401 (no key,
wrong key, revoked key), 403 (model outside the key's allow-list, a model
without a price, the admin key on inference and /v1/usage, a tenant key on
/admin), 402, 429 with Retry-After; usage.cost = prices x tokens (and cached
tokens at the cached price on a second turn), streamed or not, and the
response id is the ledger's request id; 64 simultaneous requests against a
balance that covers only some (no overdraw, every refusal a clean 402); a
price change while requests are running (those admitted before pay the old
price); /v1/usage shows only the caller's account; the /admin routes; and a
kill test: under concurrent load the server is SIGKILLed 3 times at random
moments and restarted; afterwards every request the client saw complete has
exactly one usage record with the cost it was told, balances equal credits
minus settled costs, no hold is left, and `maas admin audit` passes. Before
that, the sweeper: a second server on the same ledger (--hold-sweep 1)
releases, while it keeps serving, the hold of a request whose server was
SIGKILLed mid-stream, without charging it.
"""
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal

BIN, MODEL, TMP = sys.argv[1], sys.argv[2], sys.argv[3]
DATA = os.path.join(TMP, "data")
AKF = os.path.join(TMP, "admin-key")
ADMIN_KEY = "sk-maas-admin-test-" + os.urandom(16).hex()
failures = 0
state = {"port": 0, "proc": None}

# per million tokens, in currency units
PRICE = {"input": "100", "cached_input": "50", "output": "200"}


def check(cond, what):
    global failures
    if cond:
        print("ok   " + what)
    else:
        failures += 1
        print("FAIL " + what)
    sys.stdout.flush()
    return cond


def micro(s):
    return int(Decimal(s) * 1000000)


def expected_cost(u, price):
    p, o = u["prompt_tokens"], u["completion_tokens"]
    c = u.get("prompt_tokens_details", {}).get("cached_tokens", 0)
    pin, pc, po = (micro(price[k]) for k in ("input", "cached_input", "output"))
    m = (p - c) * pin + c * pc + o * po
    return (m + 500000) // 1000000


def admin(*args, ok=True):
    r = subprocess.run([BIN, "admin", "--data", DATA] + list(args), capture_output=True, text=True, timeout=30)
    if ok and r.returncode != 0:
        raise RuntimeError("maas admin %s: %s" % (" ".join(args), r.stderr.strip()))
    return r


def admin_json(*args):
    return json.loads(admin("--format", "json", *args).stdout)


def start_server(log, extra=(), data=DATA, admin_key_file=AKF):
    cmd = [BIN, "serve", "--model", "tiny=" + MODEL, "--model", "free=" + MODEL, "--model", "pc=" + MODEL,
           "--data", data, "--port", "0", "--threads", "1", "--ctx", "512", "--timeout", "20"]
    if admin_key_file:
        cmd += ["--admin-key-file", admin_key_file]
    out = open(log, "a")
    p = subprocess.Popen(list(cmd) + list(extra), stdout=out, stderr=subprocess.STDOUT)
    out.close()
    for _ in range(300):
        with open(log) as f:
            m = re.findall(r"listening on http://[^:]+:(\d+)", f.read())
        if m and p.poll() is None:
            return p, int(m[-1])
        if p.poll() is not None:
            break
        time.sleep(0.05)
    with open(log) as f:
        raise RuntimeError("the server did not start:\n" + f.read())


def request(method, path, body=None, key=None, port=None, timeout=30, raw=False):
    c = http.client.HTTPConnection("127.0.0.1", port or state["port"], timeout=timeout)
    h = {"Content-Type": "application/json"}
    if key is not None:
        h["Authorization"] = "Bearer " + key
    c.request(method, path, body=None if body is None else json.dumps(body).encode(), headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    if raw:
        return r.status, data, r
    try:
        return r.status, json.loads(data) if data else None, r
    except ValueError:
        return r.status, data, r


def chat(key, content="hello there", model="tiny", max_tokens=4, **kw):
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
            "temperature": 0}
    body.update(kw)
    return request("POST", "/v1/chat/completions", body, key)


def stream(key, content="hello there", model="tiny", max_tokens=4, include_usage=True, port=None, timeout=30,
           on_first=None):
    """A streamed chat: (status, id, usage or None, saw [DONE])."""
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    c = http.client.HTTPConnection("127.0.0.1", port or state["port"], timeout=timeout)
    c.request("POST", "/v1/chat/completions", json.dumps(body).encode(),
              {"Content-Type": "application/json", "Authorization": "Bearer " + key})
    r = c.getresponse()
    if r.status != 200:
        r.read()
        c.close()
        return r.status, None, None, False
    rid, usage, done, first = None, None, False, True
    while True:
        line = r.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        if first and on_first:
            on_first()
        first = False
        payload = line[6:]
        if payload == b"[DONE]":
            done = True
            break
        obj = json.loads(payload)
        if "error" in obj:
            break
        rid = obj.get("id", rid)
        if obj.get("usage"):
            usage = obj["usage"]
    c.close()
    return 200, rid, usage, done


def ledger_by_request(account=None):
    args = ["usage", "--by", "request"]
    if account:
        args += ["--account", account]
    return {row["request"]: row for row in admin_json(*args)["rows"]}


def err_code(body):
    try:
        return body["error"]["code"]
    except (TypeError, KeyError):
        return None


# ---------------------------------------------------------------------------


def test_first_start_prints_admin_key():
    data = os.path.join(TMP, "data-first")
    log = os.path.join(TMP, "first.log")
    p, port = start_server(log, data=data, admin_key_file=None)
    p.terminate()
    p.wait(timeout=20)
    with open(log) as f:
        first = f.read()
    keys = re.findall(r"sk-maas-admin-[A-Za-z0-9_-]+", first)
    p, port = start_server(log + "2", data=data, admin_key_file=None)
    try:
        st, body, _ = request("GET", "/admin/accounts", key=keys[0] if keys else "x", port=port)
        check(len(keys) == 1 and st == 200, "first start prints an admin key once, and it works on /admin")
    finally:
        p.terminate()
        p.wait(timeout=20)
    with open(log + "2") as f:
        check("sk-maas-admin-" not in f.read(), "a second start does not print it again")


def setup_ledger():
    with open(AKF, "w") as f:
        f.write(ADMIN_KEY + "\n")
    os.chmod(AKF, 0o600)
    admin("price", "set", "tiny", "--input", PRICE["input"], "--cached-input", PRICE["cached_input"],
          "--output", PRICE["output"])
    admin("price", "set", "pc", "--input", PRICE["input"], "--cached-input", PRICE["cached_input"],
          "--output", PRICE["output"])
    acct = {}
    for name, credit in [("a", "1"), ("b", "1"), ("poor", "0.000001")]:
        acct[name] = admin("account", "create", name, "--credit", credit).stdout.strip().splitlines()[-1]
    keys = {
        "a": admin("key", "create", acct["a"]).stdout.strip().splitlines()[-1],
        "b": admin("key", "create", acct["b"]).stdout.strip().splitlines()[-1],
        "poor": admin("key", "create", acct["poor"]).stdout.strip().splitlines()[-1],
        "only_free": admin("key", "create", acct["a"], "--models", "free").stdout.strip().splitlines()[-1],
        "rpm2": admin("key", "create", acct["b"], "--rpm", "2").stdout.strip().splitlines()[-1],
        "revoked": admin("key", "create", acct["a"]).stdout.strip().splitlines()[-1],
    }
    admin("key", "revoke", keys["revoked"])
    return acct, keys


def test_refusals(acct, keys):
    st, body, _ = chat(None)
    check(st == 401 and err_code(body) == "invalid_api_key", "401 invalid_api_key without a key")
    wrong = keys["a"][:-4] + ("AAAA" if not keys["a"].endswith("AAAA") else "BBBB")
    st, body, _ = chat(wrong)
    check(st == 401 and err_code(body) == "invalid_api_key", "401 with a wrong key")
    st, body, _ = chat("garbage")
    check(st == 401, "401 with a malformed key")
    st, body, _ = chat(keys["revoked"])
    check(st == 401 and err_code(body) == "invalid_api_key", "401 with a revoked key")
    st, body, _ = request("GET", "/v1/models", key=None)
    check(st == 401, "401 on /v1/models without a key")
    st, body, _ = request("GET", "/health")
    check(st == 200, "/health needs no key")
    st, body, _ = chat(keys["only_free"], model="tiny")
    check(st == 403, "403 for a model outside the key's allow-list (%s)" % err_code(body))
    st, body, _ = chat(keys["a"], model="free")
    check(st == 403, "403 for a model without a price (%s)" % err_code(body))
    st, body, _ = chat(keys["poor"])
    check(st == 402 and err_code(body) == "insufficient_quota" and body["error"]["type"] == "insufficient_quota",
          "402 insufficient_quota when the balance cannot cover the hold")
    st, body, _ = chat(ADMIN_KEY)
    check(st == 403, "the admin key is refused on inference (403)")
    codes = [chat(keys["rpm2"])[0] for _ in range(2)]
    st, body, r = chat(keys["rpm2"])
    ra = r.getheader("Retry-After")
    check(codes == [200, 200] and st == 429 and ra is not None and int(ra) >= 1,
          "rpm 2: the third request gets 429 with Retry-After (%s, %s)" % (err_code(body), ra))
    big = "x" * 20000
    c = http.client.HTTPConnection("127.0.0.1", state["port"], timeout=10)
    try:
        c.request("POST", "/v1/chat/completions", b"{}", {"Authorization": "Bearer " + big})
        st = c.getresponse().status
    except (ConnectionError, http.client.HTTPException):
        st = 0
    c.close()
    check(st == 401, "a 20 kB Authorization header is refused (%d)" % st)
    c = http.client.HTTPConnection("127.0.0.1", state["port"], timeout=10)
    try:
        c.request("POST", "/v1/chat/completions", b"{}", {"Authorization": "Bearer " + keys["a"],
                                                          "X-Big": "y" * 40000})
        st = c.getresponse().status
    except (ConnectionError, http.client.HTTPException):
        st = 0
    c.close()
    check(st == 431, "40 kB of headers are refused with 431 (%d)" % st)
    led = ledger_by_request(acct["poor"])
    check(not led, "refused requests leave no usage record")


def test_costs(acct, keys):
    st, body, _ = chat(keys["a"], max_tokens=5)
    ok = st == 200 and micro(body["usage"]["cost"]) == expected_cost(body["usage"], PRICE)
    check(ok, "usage.cost = prices x tokens (%s)" % (body["usage"] if st == 200 else st))
    led = ledger_by_request(acct["a"])
    row = led.get(body["id"]) if st == 200 else None
    check(row is not None and row["requests"] == 1 and micro(row["cost"]) == micro(body["usage"]["cost"]) and
          row["prompt_tokens"] == body["usage"]["prompt_tokens"] and
          row["completion_tokens"] == body["usage"]["completion_tokens"],
          "the response id is the ledger's request id, with the same tokens and cost")
    # a second turn of the same conversation: cached prompt tokens at the cached price
    long = "Tell me a story about a lighthouse keeper and the sea. " * 6
    st1, b1, _ = chat(keys["a"], content=long, max_tokens=2)
    st2, b2, _ = chat(keys["a"], content=long, max_tokens=2)
    cached = b2["usage"]["prompt_tokens_details"]["cached_tokens"] if st2 == 200 else 0
    check(st1 == 200 and st2 == 200 and cached > 0 and
          micro(b2["usage"]["cost"]) == expected_cost(b2["usage"], PRICE) and
          micro(b2["usage"]["cost"]) < micro(b1["usage"]["cost"]),
          "second turn: %d cached tokens billed at the cached price (%s < %s)" %
          (cached, b2["usage"]["cost"] if st2 == 200 else "-", b1["usage"]["cost"] if st1 == 200 else "-"))
    # streamed, with and without include_usage
    st, rid, usage, done = stream(keys["a"], max_tokens=3)
    led = ledger_by_request(acct["a"])
    check(st == 200 and done and usage and "cost" in usage and
          micro(usage["cost"]) == expected_cost(usage, PRICE) and rid in led and
          micro(led[rid]["cost"]) == micro(usage["cost"]),
          "streamed: the final usage chunk carries cost, and the ledger has the same")
    st, rid, usage, done = stream(keys["a"], max_tokens=3, include_usage=False)
    led = ledger_by_request(acct["a"])
    check(st == 200 and done and usage is None and rid in led and led[rid]["completion_tokens"] == 3,
          "streamed without include_usage: no usage chunk, still settled")
    # a client that hangs up mid-stream: settled with what was generated
    body = {"model": "tiny", "messages": [{"role": "user", "content": "go on"}], "max_tokens": 400,
            "temperature": 0, "stream": True, "ignore_eos": True}
    c = http.client.HTTPConnection("127.0.0.1", state["port"], timeout=30)
    c.request("POST", "/v1/chat/completions", json.dumps(body).encode(),
              {"Content-Type": "application/json", "Authorization": "Bearer " + keys["a"]})
    sock = c.sock  # the response takes it over: every response says Connection: close
    r = c.getresponse()
    rid = None
    for _ in range(6):
        line = r.readline().strip()
        if line.startswith(b"data: {"):
            rid = json.loads(line[6:])["id"]
    sock.shutdown(2)
    c.close()
    row = None
    for _ in range(100):
        row = ledger_by_request(acct["a"]).get(rid)
        if row:
            break
        time.sleep(0.05)
    a = admin_json("account", "show", acct["a"])
    check(row is not None and 0 < row["completion_tokens"] < 400 and micro(a["held"]) == 0,
          "a client gone mid-stream is settled for the tokens generated (%s of 400)" %
          (row["completion_tokens"] if row else "no record"))
    st, body, _ = request("POST", "/v1/completions", {"model": "tiny", "prompt": "abc", "max_tokens": 2},
                          keys["a"])
    check(st == 200 and body["id"] in ledger_by_request(acct["a"]) and "cost" in body["usage"],
          "/v1/completions is billed too")
    a = admin_json("account", "show", acct["a"])
    total = admin_json("usage", "--account", acct["a"])["total"]
    check(micro(a["balance"]) == micro(a["credited"]) - micro(total["cost"]) and micro(a["held"]) == 0,
          "account a: balance = credits - costs (%s = %s - %s), nothing held" %
          (a["balance"], a["credited"], total["cost"]))


def test_concurrent_overdraw():
    # each request holds prompt x input + 8 x output; the credit covers about ten
    acct = admin("account", "create", "crowd", "--credit", "0.03").stdout.strip().splitlines()[-1]
    key = admin("key", "create", acct).stdout.strip().splitlines()[-1]
    results = [None] * 64
    barrier = threading.Barrier(64)

    def one(i):
        barrier.wait()
        try:
            results[i] = chat(key, content="count to ten %d" % i, max_tokens=8)[:2]
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = (-1, str(e))

    ts = [threading.Thread(target=one, args=(i,)) for i in range(64)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ok = [b for s, b in results if s == 200]
    refused = [b for s, b in results if s == 402]
    clean = all(err_code(b) == "insufficient_quota" for b in refused)
    spent = sum(micro(b["usage"]["cost"]) for b in ok)
    a = admin_json("account", "show", acct)
    led = ledger_by_request(acct)
    check(len(ok) + len(refused) == 64 and len(ok) > 0 and len(refused) > 0 and clean,
          "64 simultaneous requests: %d answered, %d refused with a clean 402" % (len(ok), len(refused)))
    check(micro(a["balance"]) >= 0 and micro(a["balance"]) == 30000 - spent and micro(a["held"]) == 0 and
          len(led) == len(ok) and all(b["id"] in led for b in ok),
          "no overdraw: balance %s = 0.03 - sum of the %d costs, one record each, nothing held" %
          (a["balance"], len(ok)))


def test_price_change():
    acct = admin("account", "create", "pricey", "--credit", "10").stdout.strip().splitlines()[-1]
    key = admin("key", "create", acct).stdout.strip().splitlines()[-1]
    n = 4
    admitted = threading.Semaphore(0)
    go = threading.Event()
    out = [None] * n

    def one(i):
        def first():
            admitted.release()
            go.wait(30)
        out[i] = stream(key, content="price %d" % i, model="pc", max_tokens=6, on_first=first)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for _ in range(n):
        admitted.acquire(timeout=30)
    new = {"input": "1000", "cached_input": "500", "output": "3000"}
    st, body, _ = request("PUT", "/admin/prices", dict(model="pc", **new), ADMIN_KEY)
    go.set()
    for t in ts:
        t.join()
    old_ok = all(o[0] == 200 and o[2] and micro(o[2]["cost"]) == expected_cost(o[2], PRICE) for o in out)
    check(st == 200 and old_ok, "requests admitted before a price change pay the old price (%s)" %
          [o[2]["cost"] if o[2] else o[0] for o in out])
    st, body, _ = chat(key, model="pc", max_tokens=4)
    check(st == 200 and micro(body["usage"]["cost"]) == expected_cost(body["usage"], new),
          "a request admitted after it pays the new price (%s)" % (body["usage"]["cost"] if st == 200 else st))


def test_v1_usage(acct, keys):
    for who in ("a", "b"):
        st, body, _ = request("GET", "/v1/usage?by=request", key=keys[who])
        mine = ledger_by_request(acct[who])
        ids = {r["request"] for r in body["rows"]} if st == 200 else set()
        check(st == 200 and ids == set(mine) and body["total"]["requests"] == len(mine),
              "/v1/usage for account %s shows its %d requests and no other's" % (who, len(mine)))
    st, body, _ = request("GET", "/v1/usage?from=2000-01-01&to=2000-01-02", key=keys["a"])
    check(st == 200 and body["total"]["requests"] == 0, "/v1/usage honours from/to")
    st, body, _ = request("GET", "/v1/usage?by=account", key=keys["a"])
    check(st == 400, "/v1/usage?by=account is refused")
    st, body, _ = request("GET", "/v1/usage", key=ADMIN_KEY)
    check(st == 403, "the admin key is refused on /v1/usage")


def test_admin_routes(acct, keys):
    st, body, _ = request("GET", "/admin/accounts", key=keys["a"])
    check(st == 403, "a tenant key is refused on /admin (403)")
    st, body, _ = request("GET", "/admin/accounts")
    check(st == 401, "no key on /admin: 401")
    st, acc, _ = request("POST", "/admin/accounts", {"name": "viahttp", "credit": "2.5"}, ADMIN_KEY)
    check(st == 201 and acc["balance"] == "2.5" and acc["name"] == "viahttp", "POST /admin/accounts")
    aid = acc["id"]
    st, body, _ = request("POST", "/admin/accounts/%s/credit" % aid, {"amount": "0.5"}, ADMIN_KEY)
    check(st == 200 and body["balance"] == "3" and body["credited"] == "3", "POST /admin/accounts/{id}/credit")
    st, body, _ = request("POST", "/admin/accounts/%s/credit" % aid, {"amount": 0.5}, ADMIN_KEY)
    check(st == 400, "a floating-point amount is refused")
    st, body, _ = request("GET", "/admin/accounts/%s" % aid, key=ADMIN_KEY)
    check(st == 200 and body == admin_json("account", "show", aid), "GET /admin/accounts/{id} = maas admin account show")
    st, body, _ = request("GET", "/admin/accounts", key=ADMIN_KEY)
    check(st == 200 and {a["id"] for a in body["accounts"]} == {a["id"] for a in admin_json("account", "list")["accounts"]},
          "GET /admin/accounts = maas admin account list")
    st, k, _ = request("POST", "/admin/keys", {"account": aid, "models": ["tiny"], "rpm": 100}, ADMIN_KEY)
    check(st == 201 and k["key"].startswith("sk-maas-") and k["models"] == ["tiny"] and k["rpm"] == 100,
          "POST /admin/keys")
    st2, body, _ = chat(k.get("key", ""))
    check(st2 == 200, "the new key works")
    st, body, _ = request("GET", "/admin/keys?account=%s" % aid, key=ADMIN_KEY)
    check(st == 200 and [x["id"] for x in body["keys"]] == [k["id"]] and "key" not in body["keys"][0],
          "GET /admin/keys?account= (without the secret)")
    st, body, _ = request("POST", "/admin/keys/%s/revoke" % k["id"], {}, ADMIN_KEY)
    st2, _, _ = chat(k["key"])
    check(st == 200 and st2 == 401, "POST /admin/keys/{id}/revoke: the key is refused at once")
    st, k2, _ = request("POST", "/admin/keys", {"account": aid}, ADMIN_KEY)
    st, body, _ = request("DELETE", "/admin/keys/%s" % k2["id"], key=ADMIN_KEY)
    check(st == 200 and chat(k2["key"])[0] == 401, "DELETE /admin/keys/{id}")
    st, body, _ = request("PUT", "/admin/prices", {"model": "http-model", "input": "1", "cached_input": "0.5",
                                                   "output": "2"}, ADMIN_KEY)
    check(st == 200 and body["output"] == "2", "PUT /admin/prices")
    st, body, _ = request("GET", "/admin/prices", key=ADMIN_KEY)
    check(st == 200 and any(p["model"] == "http-model" for p in body["prices"]) and
          len(body["prices"]) == len(admin_json("price", "list")["prices"]), "GET /admin/prices = maas admin price list")
    st, body, _ = request("GET", "/admin/usage?by=account", key=ADMIN_KEY)
    cli = admin_json("usage", "--by", "account")
    check(st == 200 and body["total"] == cli["total"] and len(body["rows"]) == len(cli["rows"]),
          "GET /admin/usage = maas admin usage (total %s)" % (body["total"]["cost"] if st == 200 else st))
    st, body, _ = request("GET", "/admin/audit", key=ADMIN_KEY)
    check(st == 200 and body == {"ok": True}, "GET /admin/audit")
    st, body, _ = request("GET", "/admin/nothing", key=ADMIN_KEY)
    check(st == 404, "unknown admin route: 404")
    st, body, _ = request("DELETE", "/admin/accounts", key=ADMIN_KEY)
    check(st == 405, "wrong method on an admin route: 405")


def test_sweep_neighbour():
    acct = admin("account", "create", "sweepme", "--credit", "100").stdout.strip().splitlines()[-1]
    key = admin("key", "create", acct).stdout.strip().splitlines()[-1]
    log_b = os.path.join(TMP, "sweeper.log")
    proc_b, port_b = start_server(log_b, extra=("--hold-sweep", "1"))
    try:
        # a long stream on server A (the end-of-generation ids of the built-in
        # vocabulary banned); its hold is visible at the first chunk, then A
        # is killed and not restarted until the hold is gone: only B can
        # release it
        body = {"model": "tiny", "messages": [{"role": "user", "content": "sweep"}],
                "max_tokens": 480, "temperature": 0, "stream": True,
                "logit_bias": {"4093": -100, "4094": -100, "4095": -100}}
        c = http.client.HTTPConnection("127.0.0.1", state["port"], timeout=10)
        c.request("POST", "/v1/chat/completions", json.dumps(body).encode(),
                  {"Content-Type": "application/json", "Authorization": "Bearer " + key})
        r = c.getresponse()
        check(r.status == 200, "the stream to be orphaned started (%d)" % r.status)
        r.readline()
        os.kill(state["proc"].pid, signal.SIGSTOP)  # frozen mid-stream, hold in place
        held = Decimal(admin_json("account", "show", acct)["held"])
        check(held > 0, "a running stream holds %s" % held)
        state["proc"].send_signal(signal.SIGKILL)
        state["proc"].wait()
        c.close()
        t0 = time.time()
        while time.time() - t0 < 15 and Decimal(admin_json("account", "show", acct)["held"]) > 0:
            time.sleep(0.2)
        a = admin_json("account", "show", acct)
        check(Decimal(a["held"]) == 0 and micro(a["balance"]) == micro(a["credited"]),
              "the sweeper of a running neighbour released the killed server's hold within %.1f s, uncharged "
              "(held %s, balance %s of %s)" % (time.time() - t0, a["held"], a["balance"], a["credited"]))
        state["proc"], state["port"] = start_server(os.path.join(TMP, "server.log"))
        st, _, _, fin = stream(key, content="after the sweep", max_tokens=3, port=port_b)
        check(st == 200 and fin, "the sweeping server still serves (%d)" % st)
    finally:
        proc_b.terminate()
        proc_b.wait(timeout=30)


def test_kill():
    acct = admin("account", "create", "killme", "--credit", "100").stdout.strip().splitlines()[-1]
    key = admin("key", "create", acct).stdout.strip().splitlines()[-1]
    done_lock = threading.Lock()
    completed = {}  # request id -> cost the client was told (None: streamed without usage)
    stop = threading.Event()
    rng = random.Random(os.getpid())

    def client(i):
        n = 0
        while not stop.is_set():
            n += 1
            try:
                kind = (i + n) % 3
                if kind == 0:
                    st, body, _ = chat(key, content="kill %d %d" % (i, n), max_tokens=6)
                    if st == 200:
                        with done_lock:
                            completed[body["id"]] = body["usage"]["cost"]
                else:
                    st, rid, usage, fin = stream(key, content="kill %d %d" % (i, n), max_tokens=6,
                                                 include_usage=kind == 1, timeout=10)
                    if st == 200 and fin:
                        with done_lock:
                            completed[rid] = usage["cost"] if usage else None
            except (OSError, http.client.HTTPException, ValueError):
                time.sleep(0.05)

    ts = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    log = os.path.join(TMP, "kill.log")
    def kill_now():
        state["proc"].send_signal(signal.SIGKILL)

    for round_ in range(3):
        time.sleep(rng.uniform(0.2, 0.8))
        # Each kill lands while a long streamed request is certainly admitted
        # and holding (its first chunk has arrived), besides whatever the
        # clients have in flight, so every restart has a hold to release.
        try:
            stream(key, content="held %d" % round_, max_tokens=400, include_usage=False, on_first=kill_now)
        except (OSError, http.client.HTTPException, ValueError):
            pass
        kill_now()
        state["proc"].wait()
        state["proc"], state["port"] = start_server(log)
    time.sleep(0.8)
    stop.set()
    for t in ts:
        t.join()
    state["proc"].terminate()
    rc = state["proc"].wait(timeout=30)
    check(rc == 0, "the last server stopped cleanly")
    led = ledger_by_request(acct)
    missing = [r for r in completed if r not in led]
    once = all(led[r]["requests"] == 1 for r in completed if r in led)
    wrong = [r for r, c in completed.items() if r in led and c is not None and micro(led[r]["cost"]) != micro(c)]
    check(len(completed) > 10 and not missing and once and not wrong,
          "after 3 SIGKILLs: all %d completed requests have exactly one usage record with the cost they were "
          "told (missing %d, wrong cost %d; %d records in all)" % (len(completed), len(missing), len(wrong), len(led)))
    a = admin_json("account", "show", acct)
    total = admin_json("usage", "--account", acct)["total"]
    check(micro(a["balance"]) == micro(a["credited"]) - micro(total["cost"]) and micro(a["held"]) == 0,
          "balance = credits - settled costs (%s = %s - %s), no hold left" % (a["balance"], a["credited"],
                                                                               total["cost"]))
    with open(log) as f:
        released = sum(int(n) for n in re.findall(r"released (\d+) holds of requests", f.read()))
    check(released >= 1, "the restarts released %d holds of the killed processes" % released)
    r = admin("audit", ok=False)
    check(r.returncode == 0, "maas admin audit passes: %s" % (r.stdout.strip() or r.stderr.strip()))


def main():
    test_first_start_prints_admin_key()
    acct, keys = setup_ledger()
    log = os.path.join(TMP, "server.log")
    state["proc"], state["port"] = start_server(log)
    try:
        test_refusals(acct, keys)
        test_costs(acct, keys)
        test_concurrent_overdraw()
        test_price_change()
        test_v1_usage(acct, keys)
        test_admin_routes(acct, keys)
        test_sweep_neighbour()
        test_kill()
    except Exception:
        import traceback
        traceback.print_exc()
        global failures
        failures += 1
    finally:
        if state["proc"] and state["proc"].poll() is None:
            state["proc"].kill()
            state["proc"].wait()
    with open(log) as f:
        text = f.read()
    check(ADMIN_KEY not in text and not re.search(r"sk-maas-[0-9a-f]{12}_", text), "no key in the server's log")
    if failures:
        print("--- server log (tail)")
        print("\n".join(text.splitlines()[-30:]))
    print("%d failures" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
