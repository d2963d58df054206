#!/usr/bin/python3
"""POST /v1/embeddings and /v1/rerank against `maas serve` with billing (see
serve_embed.sh).

Usage: serve_embed.py BIN EMB_MODEL CHAT_MODEL TMPDIR
"""
import base64
import http.client
import json
import math
import os
import re
import struct
import subprocess
import sys
import threading
import time

BIN, EMB, CHAT, TMP = sys.argv[1:5]
RR = os.path.join(TMP, "rr.gguf")
DATA = os.path.join(TMP, "data")
fails = 0


def check(cond, what):
    global fails
    print(("ok   " if cond else "FAIL ") + what)
    fails += not cond


def admin(*args):
    r = subprocess.run([BIN, "admin", "--data", DATA] + list(args), capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError("maas admin %s: %s" % (" ".join(args), r.stderr.strip()))
    return r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""


def start_server(log):
    cmd = [BIN, "serve", "--model", "emb=" + EMB, "--model", "chat=" + CHAT, "--model", "rr=" + RR, "--data", DATA, "--port", "0",
           "--threads", "2", "--timeout", "20"]
    p = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    for _ in range(300):
        with open(log) as f:
            m = re.findall(r"listening on http://[^:]+:(\d+)", f.read())
        if m:
            return p, int(m[-1])
        if p.poll() is not None:
            break
        time.sleep(0.05)
    with open(log) as f:
        raise RuntimeError("the server did not start:\n" + f.read())


def request(path, body, key, port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h = {"Content-Type": "application/json"}
    if key:
        h["Authorization"] = "Bearer " + key
    c.request("POST", path, body=json.dumps(body).encode(), headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data)


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / (norm(a) * norm(b))


def cli_embed(texts):
    r = subprocess.run([BIN, "embed", "--model", EMB, "--json"] + texts, capture_output=True, text=True, timeout=60)
    return [json.loads(line) for line in r.stdout.strip().splitlines()]


def test_shapes(emb, key):
    texts = ["Hello world", "The quick brown fox jumps over the lazy dog.", "Äpfel, 3.5 kg!"]
    ref = cli_embed(texts)
    st, one = emb({"model": "emb", "input": texts[0]})
    check(st == 200 and one["object"] == "list" and len(one["data"]) == 1 and one["model"] == "emb",
          "a string gives one embedding (%d)" % st)
    v = one["data"][0]["embedding"]
    check(len(v) == 64 and abs(norm(v) - 1) < 1e-5, "64 values of unit length (norm %.7f)" % norm(v))
    check(one["usage"]["prompt_tokens"] == len(ref[0]["ids"]) == one["usage"]["total_tokens"],
          "usage.prompt_tokens = the tokens of the text with [CLS]/[SEP] (%s)" % one["usage"])
    check("cost" in one["usage"], "usage carries the cost (%s)" % one["usage"].get("cost"))
    st, many = emb({"model": "emb", "input": texts})
    check(st == 200 and [d["index"] for d in many["data"]] == [0, 1, 2], "an array of strings: indices 0, 1, 2")
    check(many["usage"]["prompt_tokens"] == sum(len(r["ids"]) for r in ref), "usage sums the inputs' tokens")
    worst_batch, worst_cli = 1.0, 1.0
    for i, t in enumerate(texts):
        st, single = emb({"model": "emb", "input": t})
        worst_batch = min(worst_batch, cos(single["data"][0]["embedding"], many["data"][i]["embedding"]))
        worst_cli = min(worst_cli, cos(ref[i]["embedding"], many["data"][i]["embedding"]))
    check(worst_batch > 0.999999, "batch equals singles (worst cosine %.9f)" % worst_batch)
    check(worst_cli > 0.999999, "equals maas embed (worst cosine %.9f)" % worst_cli)
    st, ids = emb({"model": "emb", "input": ref[1]["ids"]})
    check(st == 200 and cos(ids["data"][0]["embedding"], many["data"][1]["embedding"]) > 0.999999,
          "token ids give the text's embedding")
    st, arrs = emb({"model": "emb", "input": [r["ids"] for r in ref]})
    check(st == 200 and len(arrs["data"]) == 3 and
          cos(arrs["data"][2]["embedding"], many["data"][2]["embedding"]) > 0.999999, "an array of id arrays")
    st, b64 = emb({"model": "emb", "input": texts, "encoding_format": "base64"})
    raw = base64.b64decode(b64["data"][1]["embedding"])
    vals = struct.unpack("<%df" % (len(raw) // 4), raw)
    check(st == 200 and len(vals) == 64 and max(abs(a - b) for a, b in zip(vals, many["data"][1]["embedding"])) < 1e-7,
          "base64: little-endian float32, the same values")
    st, d16 = emb({"model": "emb", "input": texts[1], "dimensions": 16})
    v16 = d16["data"][0]["embedding"]
    full = many["data"][1]["embedding"][:16]
    check(st == 200 and len(v16) == 16 and abs(norm(v16) - 1) < 1e-5 and cos(v16, full) > 0.999999,
          "dimensions 16: the first 16 values, renormalised")


def test_errors(emb, key, port):
    long_text = " ".join(["word"] * 600)
    cases = [
        ({"model": "emb", "input": ""}, 400, "input", "empty string"),
        ({"model": "emb", "input": []}, 400, "input", "must not be empty"),
        ({"model": "emb", "input": ["ok", 3]}, 400, "input", "input[1]"),
        ({"model": "emb", "input": ["ok", long_text]}, 400, "input", "input[1]"),
        ({"model": "emb", "input": [1, -5]}, 400, "input", "input[1]"),
        ({"model": "emb", "input": "x", "encoding_format": "hex"}, 400, "encoding_format", "encoding_format"),
        ({"model": "emb", "input": "x", "dimensions": 0}, 400, "dimensions", "dimensions"),
        ({"model": "emb", "input": "x", "dimensions": 65}, 400, "dimensions", "dimensions"),
        ({"model": "nope", "input": "x"}, 404, "model", "nope"),
        ({"model": "chat", "input": "x"}, 400, "model", "not an embedding model"),
        ({"input": "x"}, 400, "model", "model"),
    ]
    for body, status, param, says in cases:
        st, r = emb(body)
        e = r.get("error", {})
        check(st == status and e.get("param") == param and says in e.get("message", ""),
              "%s -> %d %s (%d %s: %s)" % (json.dumps(body)[:60], status, param, st, e.get("param"),
                                          e.get("message", "")[:90]))
    st, r = request("/v1/embeddings", {"model": "emb", "input": "x"}, None, port)
    check(st == 401, "no key: 401 (%d)" % st)
    st, r = request("/v1/chat/completions", {"model": "emb", "messages": [{"role": "user", "content": "hi"}]}, key,
                    port)
    check(st == 400 and "embedding model" in r["error"]["message"], "chat on the embedding model: 400 (%d)" % st)
    st, r = request("/v1/chat/completions", {"model": "chat", "messages": [{"role": "user", "content": "hi"}],
                                             "max_tokens": 3}, key, port)
    check(st == 200, "chat on the chat model beside it: 200 (%d)" % st)


def test_concurrent(emb):
    texts = ["request number %d says hello" % i for i in range(16)]
    st, want = emb({"model": "emb", "input": texts})
    got = [None] * 16

    def one(i):
        got[i] = emb({"model": "emb", "input": [texts[i], texts[(i + 1) % 16]]})

    ts = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ok = all(g and g[0] == 200 for g in got)
    worst = min(cos(got[i][1]["data"][0]["embedding"], want["data"][i]["embedding"]) for i in range(16)) if ok else 0
    check(ok and worst > 0.999999, "16 concurrent requests: all 200, same vectors (worst cosine %.9f)" % worst)


def test_rerank(key, port):
    rr = lambda body: request("/v1/rerank", body, key, port)
    docs = ["The giant panda is a bear native to China.", "Paris is the capital of France.", "hi",
            "Pandas eat bamboo."]
    st, r = rr({"model": "rr", "query": "What do pandas eat?", "documents": docs})
    res = r.get("results", [])
    scores = [x["relevance_score"] for x in res]
    check(st == 200 and sorted(x["index"] for x in res) == [0, 1, 2, 3] and scores == sorted(scores, reverse=True),
          "rerank: every document once, best first (%d)" % st)
    check(r["usage"]["prompt_tokens"] > 0 and "cost" in r["usage"], "rerank usage and cost (%s)" % r.get("usage"))
    worst = 0.0
    for x in res:
        st1, one = rr({"model": "rr", "query": "What do pandas eat?", "documents": [docs[x["index"]]]})
        worst = max(worst, abs(one["results"][0]["relevance_score"] - x["relevance_score"]))
    check(worst < 1e-5, "rerank: batch equals singles (worst %.1e)" % worst)
    st, top = rr({"model": "rr", "query": "What do pandas eat?", "documents": docs, "top_n": 2,
                  "return_documents": True})
    check(st == 200 and [x["index"] for x in top["results"]] == [x["index"] for x in res[:2]] and
          all(x["document"]["text"] == docs[x["index"]] for x in top["results"]), "top_n 2 with the documents")
    cases = [({"model": "rr", "query": "", "documents": docs}, "query"),
             ({"model": "rr", "query": "q", "documents": []}, "documents"),
             ({"model": "rr", "query": "q", "documents": ["a", 3]}, "documents"),
             ({"model": "rr", "query": "q", "documents": ["a"], "top_n": 0}, "top_n"),
             ({"model": "emb", "query": "q", "documents": ["a"]}, "model")]
    for body, param in cases:
        st, e = rr(body)
        check(st == 400 and e["error"]["param"] == param, "rerank %s -> 400 %s (%d: %s)" % (
            json.dumps(body)[:50], param, st, e.get("error", {}).get("message", "")[:80]))
    st, e = request("/v1/embeddings", {"model": "rr", "input": "x"}, key, port)
    check(st == 400 and e["error"]["param"] == "model", "embeddings on the reranker: 400 (%d)" % st)


def test_ledger(acct):
    r = subprocess.run([BIN, "admin", "--data", DATA, "--format", "json", "usage", "--by", "request", "--account",
                        acct], capture_output=True, text=True, timeout=30)
    all_rows = json.loads(r.stdout)["rows"]
    rows = [x for x in all_rows if x["request"].startswith("embd-")]
    ok = rows and all(x["completion_tokens"] == 0 and x["prompt_tokens"] > 0 for x in rows)
    check(bool(ok), "%d usage records of embeddings requests, input tokens only" % len(rows))
    rr = [x for x in all_rows if x["request"].startswith("rrnk-")]
    check(len(rr) >= 6 and all(x["completion_tokens"] == 0 for x in rr), "%d usage records of rerank requests" % len(rr))
    if rows:
        x = rows[0]
        cost = float(x["cost"])
        want = x["prompt_tokens"] * 2.0 / 1e6
        check(abs(cost - want) < 1e-9, "cost = prompt tokens x input price (%s for %d tokens)" % (x["cost"],
                                                                                                 x["prompt_tokens"]))


def test_models(key, port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/v1/models", headers={"Authorization": "Bearer " + key})
    kinds = {m["id"]: m.get("kind") for m in json.loads(c.getresponse().read())["data"]}
    c.request("GET", "/v1/models/rr", headers={"Authorization": "Bearer " + key})
    one = json.loads(c.getresponse().read())
    c.close()
    check(kinds == {"emb": "embedding", "chat": "chat", "rr": "rerank"} and one.get("kind") == "rerank",
          "/v1/models says which model is for chat, embeddings or reranking: %s" % kinds)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/metrics")
    body = c.getresponse().read().decode()
    c.close()
    kv = {m: int(v) for m, v in re.findall(r'^maas_kv_blocks\{model="([^"]+)"\} (\d+)$', body, re.M)}
    check(kv.get("emb") == 1 and kv.get("rr") == 1 and kv.get("chat", 0) > 1,
          "no KV cache for the embedding and rerank models (one block each; chat has its own): %s" % kv)


def main():
    os.makedirs(DATA, exist_ok=True)
    admin("price", "set", "emb", "--input", "2", "--cached-input", "1", "--output", "8")
    admin("price", "set", "chat", "--input", "2", "--cached-input", "1", "--output", "8")
    admin("price", "set", "rr", "--input", "2", "--cached-input", "1", "--output", "8")
    acct = admin("account", "create", "a", "--credit", "10")
    key = admin("key", "create", acct)
    p, port = start_server(os.path.join(TMP, "serve.log"))
    t0 = time.time()
    try:
        emb = lambda body: request("/v1/embeddings", body, key, port)
        test_shapes(emb, key)
        test_errors(emb, key, port)
        test_concurrent(emb)
        test_rerank(key, port)
        test_models(key, port)
    finally:
        p.terminate()
        p.wait()
    test_ledger(acct)
    print("%d failures, %.1f s" % (fails, time.time() - t0))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
