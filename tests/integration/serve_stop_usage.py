#!/usr/bin/python3
"""Requests that end on a stop string are billed the same however they are
read (standard library only).

usage: serve_stop_usage.py PORT KEY MAAS_BIN DATA_DIR

A greedy reference request (no stop string, logprobs on) gives the model's
tokens and their bytes. A stop string is taken from the middle of that text;
the same request with it then ends where the stop string first appears, and
its completion tokens must be exactly the tokens up to and including the one
that completed the stop string — not the tokens the engine may have generated
after it before the cancellation reached it. Several rounds of a non-streamed
and a streamed request check that both return the same text and the same
usage (prompt, cached, completion tokens) and that the ledger, seen through
/v1/usage and through `maas admin usage`, has exactly the response's usage
and cost for every request id.
"""
import http.client
import json
import subprocess
import sys
from decimal import Decimal

PORT, KEY, BIN, DATA = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
PRICE = {"input": 100, "cached_input": 50, "output": 200}  # per million tokens, as serve_stop_usage.sh sets
# the built-in vocabulary's <|endoftext|>, <|im_start|>, <|im_end|>: banned, so that
# generation cannot end at an end-of-generation token before the stop string
NO_EOG = {"4093": -100, "4094": -100, "4095": -100}
MAX_TOKENS = 64
ROUNDS = 4
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    sys.stdout.flush()
    if not cond:
        failures.append(what)
    return cond


def micro(s):
    return int(Decimal(s) * 1000000)


def expected_cost(u):
    p, c, o = u["prompt_tokens"], u["prompt_tokens_details"]["cached_tokens"], u["completion_tokens"]
    m = (p - c) * PRICE["input"] * 10**6 + c * PRICE["cached_input"] * 10**6 + o * PRICE["output"] * 10**6
    return (m + 500000) // 1000000


def body(**kw):
    b = {"model": "tiny", "messages": [{"role": "user", "content": "Tell me about the sea and ships."}],
         "max_tokens": MAX_TOKENS, "temperature": 0, "logit_bias": NO_EOG}
    b.update(kw)
    return b


def post(b):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    c.request("POST", "/v1/chat/completions", json.dumps(b).encode(),
              {"Content-Type": "application/json", "Authorization": "Bearer " + KEY})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data)


def post_stream(b):
    """(status, id, text, finish_reason, usage) of a streamed request."""
    b = dict(b, stream=True, stream_options={"include_usage": True})
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    c.request("POST", "/v1/chat/completions", json.dumps(b).encode(),
              {"Content-Type": "application/json", "Authorization": "Bearer " + KEY})
    r = c.getresponse()
    if r.status != 200:
        r.read()
        c.close()
        return r.status, None, None, None, None
    rid, text, finish, usage, done = None, "", None, None, False
    while True:
        line = r.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        if line[6:] == b"[DONE]":
            done = True
            break
        obj = json.loads(line[6:])
        if "error" in obj:
            break
        rid = obj.get("id", rid)
        for ch in obj.get("choices", []):
            text += ch.get("delta", {}).get("content") or ""
            finish = ch.get("finish_reason") or finish
        if obj.get("usage"):
            usage = obj["usage"]
    c.close()
    return (200 if done else -1), rid, text, finish, usage


def get(path):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    c.request("GET", path, headers={"Authorization": "Bearer " + KEY})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data)


# ---- the reference: the model's tokens and their bytes --------------------------------------------------
st, ref = post(body(logprobs=True))
if not check(st == 200 and ref["choices"][0]["finish_reason"] == "length"
             and ref["usage"]["completion_tokens"] == MAX_TOKENS,
             "reference request: %d tokens, finish length (%s)" % (MAX_TOKENS, st)):
    sys.exit(1)
toks = [bytes(t["bytes"]) for t in ref["choices"][0]["logprobs"]["content"]]
full = b"".join(toks)
check(len(toks) == MAX_TOKENS and full.decode("utf-8", "replace") == ref["choices"][0]["message"]["content"],
      "reference logprobs: one entry per token, their bytes are the text")

# a stop string of 4 printable ASCII characters from the middle of the text
stop = None
cum = [0]
for t in toks:
    cum.append(cum[-1] + len(t))
for a in range(cum[MAX_TOKENS // 3], len(full) - 4):
    w = full[a:a + 4]
    if all(33 <= ch < 127 for ch in w):
        stop = w
        break
if not check(stop is not None, "a printable stop string in the reference text (%r)" % stop):
    sys.exit(1)
first = full.find(stop)
end = first + len(stop)
n_expected = next(m for m in range(1, MAX_TOKENS + 1) if cum[m] >= end)
text_expected = full[:first].decode("utf-8", "replace")
check(n_expected < MAX_TOKENS - 4, "the stop string %r ends in token %d of %d" % (stop, n_expected, MAX_TOKENS))
stop_s = stop.decode()

# ---- stop-string requests, non-streamed and streamed ---------------------------------------------------
responses = {}  # request id -> usage as the client saw it
usages = []
for rnd in range(ROUNDS):
    st, r = post(body(stop=[stop_s]))
    ok = st == 200
    if check(ok, "round %d non-streamed: 200 (%s)" % (rnd, st)):
        u = r["usage"]
        responses[r["id"]] = u
        usages.append(("non-streamed", u))
        check(r["choices"][0]["message"]["content"] == text_expected and r["choices"][0]["finish_reason"] == "stop",
              "round %d non-streamed: text cut before the stop string, finish stop" % rnd)
        check(u["completion_tokens"] == n_expected,
              "round %d non-streamed: completion_tokens %d = tokens up to the stop string %d"
              % (rnd, u["completion_tokens"], n_expected))
        check(micro(u["cost"]) == expected_cost(u), "round %d non-streamed: cost %s = prices x tokens" % (rnd, u["cost"]))
    st, rid, text, finish, u = post_stream(body(stop=[stop_s]))
    if check(st == 200 and u is not None, "round %d streamed: 200, [DONE] and a usage chunk (%s)" % (rnd, st)):
        responses[rid] = u
        usages.append(("streamed", u))
        check(text == text_expected and finish == "stop",
              "round %d streamed: text cut before the stop string, finish stop" % rnd)
        check(u["completion_tokens"] == n_expected,
              "round %d streamed: completion_tokens %d = tokens up to the stop string %d"
              % (rnd, u["completion_tokens"], n_expected))
        check(micro(u["cost"]) == expected_cost(u), "round %d streamed: cost %s = prices x tokens" % (rnd, u["cost"]))

# the reference run left the prompt's full blocks in the prefix cache: every
# stop-string request had the same prompt and the same cached tokens
shape = {(u["prompt_tokens"], u["prompt_tokens_details"]["cached_tokens"], u["completion_tokens"])
         for _, u in usages}
check(len(shape) == 1 and len(usages) == 2 * ROUNDS,
      "streamed and non-streamed agree on (prompt, cached, completion) tokens: %s" % sorted(shape))
check(all(u["prompt_tokens_details"]["cached_tokens"] > 0 for _, u in usages),
      "the repeated prompt was served from the prefix cache (cached_tokens > 0)")

# ---- the ledger: /v1/usage and maas admin usage, per request id -----------------------------------------
responses[ref["id"]] = ref["usage"]
st, rep = get("/v1/usage?by=request")
rows = {row["request"]: row for row in rep.get("rows", [])} if st == 200 else {}
admin = subprocess.run([BIN, "admin", "--data", DATA, "--format", "json", "usage", "--by", "request"],
                       capture_output=True, text=True, timeout=30)
led = {row["request"]: row for row in json.loads(admin.stdout)["rows"]} if admin.returncode == 0 else {}
for rid, u in responses.items():
    want = (1, u["prompt_tokens"], u["prompt_tokens_details"]["cached_tokens"], u["completion_tokens"],
            micro(u["cost"]))
    for name, table in (("/v1/usage", rows), ("maas admin usage", led)):
        row = table.get(rid)
        got = None if row is None else (row["requests"], row["prompt_tokens"], row["cached_tokens"],
                                        row["completion_tokens"], micro(row["cost"]))
        check(got == want, "%s has %s's usage (requests, prompt, cached, completion, cost) %s (response %s)"
              % (name, rid[:24], got, want))
check(st == 200 and len(rows) == len(responses) and
      rep["total"]["completion_tokens"] == sum(u["completion_tokens"] for u in responses.values()) and
      micro(rep["total"]["cost"]) == sum(micro(u["cost"]) for u in responses.values()),
      "/v1/usage totals are the sum of the responses' usage (%d requests)" % len(responses))

print("%d failures" % len(failures))
sys.exit(1 if failures else 0)
