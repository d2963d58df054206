#!/usr/bin/python3
"""Raw-HTTP tests of `maas serve` (standard library only).

usage: server_http.py PORT MODEL_NAME TIMEOUT_S MAX_BODY [BUSY_PORT [SECOND_MODEL]]

The server runs a tiny random model; outputs are gibberish but deterministic
at temperature 0 and for a fixed seed, which is what the tests compare.
BUSY_PORT, when given, is a second server with --max-queue 1 --max-running 1
for the queue-full (429 + Retry-After) test.
"""
import http.client
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

PORT = int(sys.argv[1])
MODEL = sys.argv[2]
TIMEOUT_S = int(sys.argv[3])
MAX_BODY = int(sys.argv[4])
BUSY_PORT = int(sys.argv[5]) if len(sys.argv) > 5 else None
SECOND = sys.argv[6] if len(sys.argv) > 6 else None
failures = []


def check(cond, what):
    if cond:
        print("ok  ", what)
    else:
        print("FAIL", what)
        failures.append(what)


def conn(port=None):
    return http.client.HTTPConnection("127.0.0.1", port or PORT, timeout=300)


def request(method, path, body=None, headers=None, c=None, port=None):
    own = c is None
    c = c or conn(port)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    if own:
        c.close()
    return r.status, dict(r.getheaders()), data


def post(path, body, **kw):
    st, h, data = request("POST", path, body, **kw)
    try:
        return st, h, json.loads(data)
    except ValueError:
        return st, h, data


def chat(messages, **kw):
    body = {"model": MODEL, "messages": messages}
    body.update(kw)
    return post("/v1/chat/completions", body)


def stream(path, body, port=None):
    """Returns (status, list of decoded data payloads, raw text)."""
    c = conn(port)
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    raw = r.read().decode("utf-8")
    c.close()
    events = []
    for block in raw.split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                p = line[6:]
                events.append(p if p == "[DONE]" else json.loads(p))
    return r.status, events, raw


def err_of(body):
    return body.get("error", {}) if isinstance(body, dict) else {}


def content_of(events):
    return "".join(e["choices"][0]["delta"].get("content", "") for e in events
                   if isinstance(e, dict) and e.get("choices"))


USER = [{"role": "user", "content": "Tell me a story about a robot."}]

# ---- basics -----------------------------------------------------------------
st, _, body = request("GET", "/health")
check(st == 200 and json.loads(body)["status"] == "ok", "GET /health")
st, _, body = request("GET", "/v1/models")
models = json.loads(body)
check(st == 200 and models["object"] == "list" and models["data"][0]["id"] == MODEL, "GET /v1/models lists the model")
if SECOND:
    check([m["id"] for m in models["data"]] == [MODEL, SECOND], "GET /v1/models lists both models")
    st, _, r = post("/v1/chat/completions", {"model": SECOND, "messages": [{"role": "user", "content": "hi"}],
                                             "max_tokens": 3})
    check(st == 200 and r["model"] == SECOND and r["usage"]["completion_tokens"] > 0, "chat on the second model")
st, _, body = request("GET", "/v1/models/" + MODEL)
check(st == 200 and json.loads(body)["id"] == MODEL, "GET /v1/models/NAME")

# ---- plain chat ----------------------------------------------------------------
st, _, r = chat(USER, max_tokens=12, temperature=0)
ok = st == 200 and r["object"] == "chat.completion" and r["id"].startswith("chatcmpl-")
msg = r["choices"][0]["message"] if ok else {}
u = r.get("usage", {}) if ok else {}
check(ok and msg["role"] == "assistant" and isinstance(msg["content"], str)
      and r["choices"][0]["finish_reason"] in ("stop", "length"), "plain chat")
check(ok and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] and u["prompt_tokens"] > 0
      and 0 < u["completion_tokens"] <= 12 and "cached_tokens" in u["prompt_tokens_details"], "chat usage")
check(ok and (r["choices"][0]["finish_reason"] == "length") == (u["completion_tokens"] == 12),
      "finish_reason length exactly when max_tokens is reached")
greedy = msg.get("content")

st, _, r2 = chat(USER, max_tokens=12, temperature=0)
check(st == 200 and r2["choices"][0]["message"]["content"] == greedy, "temperature 0 is deterministic")
st, _, r3 = chat(USER, max_completion_tokens=12, temperature=0)
check(st == 200 and r3["choices"][0]["message"]["content"] == greedy, "max_completion_tokens works as max_tokens")

# ---- prefix reuse shows in usage: the second turn of a conversation has cached prompt tokens ----------------
system = {"role": "system", "content": "You are a helpful assistant. " * 12}
st, _, t1 = chat([system, {"role": "user", "content": "first question"}], max_tokens=4, temperature=0)
answer = t1["choices"][0]["message"]["content"] if st == 200 else ""
st2, _, t2 = chat([system, {"role": "user", "content": "first question"}, {"role": "assistant", "content": answer},
                   {"role": "user", "content": "second question"}], max_tokens=4, temperature=0)
c2 = t2["usage"]["prompt_tokens_details"]["cached_tokens"] if st2 == 200 else -1
check(st == 200 and st2 == 200 and 0 < c2 < t2["usage"]["prompt_tokens"],
      "second turn reports cached_tokens (%d of %d prompt tokens)" % (c2, t2["usage"]["prompt_tokens"] if st2 == 200 else 0))

# ---- keep-alive: several requests on one connection ------------------------------------
c = conn()
statuses = [request("GET", "/health", c=c)[0] for _ in range(3)]
statuses.append(request("POST", "/v1/chat/completions",
                        {"model": MODEL, "messages": USER, "max_tokens": 2}, c=c)[0])
statuses.append(request("GET", "/health", c=c)[0])
c.close()
check(statuses == [200] * 5, "HTTP/1.1 keep-alive: 5 requests on one connection")

# ---- streaming chat ------------------------------------------------------------------------
st, ev, raw = stream("/v1/chat/completions", {"model": MODEL, "messages": USER, "max_tokens": 12, "temperature": 0,
                                               "stream": True, "stream_options": {"include_usage": True}})
check(st == 200 and ev and ev[-1] == "[DONE]" and raw.rstrip().endswith("data: [DONE]"), "stream ends with [DONE]")
chunks = [e for e in ev if isinstance(e, dict)]
check(chunks and chunks[0]["object"] == "chat.completion.chunk"
      and chunks[0]["choices"][0]["delta"].get("role") == "assistant", "first chunk carries the role")
check(content_of(chunks) == greedy, "streamed content equals the non-streamed content")
fin = [e for e in chunks if e["choices"] and e["choices"][0]["finish_reason"]]
check(len(fin) == 1 and fin[0]["choices"][0]["finish_reason"] in ("stop", "length"), "one chunk with finish_reason")
usage_chunks = [e for e in chunks if e.get("usage")]
check(len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1] and usage_chunks[0]["choices"] == []
      and usage_chunks[0]["usage"]["completion_tokens"] == u.get("completion_tokens"),
      "include_usage adds one final usage chunk")
check(len({e["id"] for e in chunks}) == 1, "all chunks share one id")
st, ev, _ = stream("/v1/chat/completions", {"model": MODEL, "messages": USER, "max_tokens": 3, "stream": True})
check(st == 200 and ev[-1] == "[DONE]" and not any(isinstance(e, dict) and e.get("usage") for e in ev),
      "no usage chunk without include_usage")

# ---- logprobs -------------------------------------------------------------------------------------
st, _, r = chat(USER, max_tokens=4, temperature=0, logprobs=True, top_logprobs=3)
lp = r["choices"][0]["logprobs"]["content"] if st == 200 else []
check(st == 200 and len(lp) >= 1 and all(len(t["top_logprobs"]) == 3 and t["logprob"] <= 0 for t in lp)
      and lp[0]["top_logprobs"][0]["logprob"] >= lp[0]["top_logprobs"][-1]["logprob"], "chat logprobs/top_logprobs")

# ---- every sampling parameter at once is accepted -----------------------------------------------------------
st, _, r = chat([{"role": "developer", "content": "Be brief."},
                 {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "again"}]}],
                max_tokens=6, temperature=0.7, top_p=0.9, presence_penalty=0.5, frequency_penalty=-0.5, seed=3,
                logit_bias={"5": 10, "6": -100}, user="u-1", n=1, stop=["\n\n"], some_future_field={"x": 1})
check(st == 200 and r["choices"][0]["finish_reason"] in ("stop", "length"), "all parameters together (and unknown "
      "fields ignored)")
st, ev, _ = stream("/v1/chat/completions", {"model": MODEL, "messages": USER, "max_tokens": 4, "temperature": 0,
                                             "logprobs": True, "top_logprobs": 2, "stream": True})
lps = [t for e in ev if isinstance(e, dict) and e["choices"] and e["choices"][0]["logprobs"]
       for t in e["choices"][0]["logprobs"]["content"]]
check(st == 200 and len(lps) == 4 and all(len(t["top_logprobs"]) == 2 for t in lps),
      "streamed logprobs: one entry per generated token (%d)" % len(lps))

# ---- completions --------------------------------------------------------------------------------------
st, _, r = post("/v1/completions", {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 16, "temperature": 0})
ctext = r["choices"][0]["text"] if st == 200 else ""
check(st == 200 and r["object"] == "text_completion" and isinstance(ctext, str) and r["usage"]["prompt_tokens"] > 0,
      "completions")
st, _, r = post("/v1/completions", {"model": MODEL, "prompt": ["Once upon a time"], "max_tokens": 16,
                                    "temperature": 0})
check(st == 200 and r["choices"][0]["text"] == ctext, "completions prompt as a list of one string")
st, ev, _ = stream("/v1/completions", {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 16,
                                       "temperature": 0, "stream": True})
check(st == 200 and ev[-1] == "[DONE]"
      and "".join(e["choices"][0]["text"] for e in ev if isinstance(e, dict) and e["choices"]) == ctext,
      "streamed completions equal the non-streamed text")

# ---- stop strings ------------------------------------------------------------------------------------------
if len(ctext) >= 6:
    stop = ctext[3:6]
    expect = ctext[:ctext.find(stop)]
    st, _, r = post("/v1/completions", {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 16,
                                        "temperature": 0, "stop": [stop]})
    check(st == 200 and r["choices"][0]["text"] == expect and r["choices"][0]["finish_reason"] == "stop",
          "stop string cuts the text and finish_reason is stop (stop=%r)" % stop)
    st, ev, _ = stream("/v1/completions", {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 16,
                                           "temperature": 0, "stop": stop, "stream": True})
    txt = "".join(e["choices"][0]["text"] for e in ev if isinstance(e, dict) and e["choices"])
    check(st == 200 and txt == expect, "stop string while streaming")
else:
    check(False, "greedy completion long enough to test stop strings (%r)" % ctext)
if greedy and len(greedy) >= 4:
    stop = greedy[2:4]
    st, _, r = chat(USER, max_tokens=12, temperature=0, stop=stop)
    check(st == 200 and r["choices"][0]["message"]["content"] == greedy[:greedy.find(stop)]
          and r["choices"][0]["finish_reason"] == "stop", "chat stop string")

# ---- seeds ----------------------------------------------------------------------------------------------------
outs = []
for seed in (42, 42, 7, 8, 9):
    st, _, r = chat(USER, max_tokens=10, temperature=1.0, seed=seed)
    outs.append(r["choices"][0]["message"]["content"] if st == 200 else None)
check(outs[0] is not None and outs[0] == outs[1], "same seed, same output")
check(len(set(outs)) > 1, "different seeds give different outputs")

# ---- malformed input ---------------------------------------------------------------------------------------------
st, _, body = request("POST", "/v1/chat/completions", '{"model": "x", "messages": [')
e = err_of(json.loads(body))
check(st == 400 and e.get("type") == "invalid_request_error" and e.get("param") is None and e.get("message"),
      "invalid JSON -> 400")
st, _, body = request("POST", "/v1/chat/completions", "")
check(st == 400, "empty body -> 400")
st, _, body = request("POST", "/v1/chat/completions", b"\xff\xfe\x00garbage")
check(st == 400, "binary body -> 400")
bad = [
    ({"model": MODEL, "messages": "hi"}, "messages"),
    ({"model": 3, "messages": USER}, "model"),
    ({"model": MODEL}, "messages"),
    ({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"model": MODEL, "messages": USER, "temperature": "hot"}, "temperature"),
    ({"model": MODEL, "messages": USER, "temperature": 3}, "temperature"),
    ({"model": MODEL, "messages": USER, "top_p": 0}, "top_p"),
    ({"model": MODEL, "messages": USER, "max_tokens": -1}, "max_tokens"),
    ({"model": MODEL, "messages": USER, "max_tokens": "5"}, "max_tokens"),
    ({"model": MODEL, "messages": USER, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"model": MODEL, "messages": USER, "n": 2}, "n"),
    ({"model": MODEL, "messages": USER, "logit_bias": {"x": 1}}, "logit_bias"),
    ({"model": MODEL, "messages": USER, "logit_bias": {"99999999": 1}}, "logit_bias"),
    ({"model": MODEL, "messages": USER, "top_logprobs": 2}, "top_logprobs"),
    ({"model": MODEL, "messages": USER, "presence_penalty": 2.5}, "presence_penalty"),
    ({"model": MODEL, "messages": USER, "seed": "x"}, "seed"),
    ({"model": MODEL, "messages": USER, "stream": 1}, "stream"),
    ({"model": MODEL, "messages": USER, "max_tokens": 100000}, "messages"),
]
for b, param in bad:
    st, _, body = post("/v1/chat/completions", b)
    check(st == 400 and err_of(body).get("param") == param,
          "bad %s -> 400 param=%s (got %s %s)" % (json.dumps(b)[:60], param, st, err_of(body).get("param")))
for b, param in [({"model": MODEL, "prompt": 5}, "prompt"), ({"model": MODEL, "prompt": "x", "echo": True}, "echo"),
                 ({"model": MODEL, "prompt": "x", "logprobs": True}, "logprobs")]:
    st, _, body = post("/v1/completions", b)
    check(st == 400 and err_of(body).get("param") == param, "completions bad %s -> 400 param=%s" % (param, param))

st, _, body = post("/v1/chat/completions", {"model": "no-such-model", "messages": USER})
check(st == 404 and err_of(body).get("param") == "model" and err_of(body).get("code") == "model_not_found",
      "unknown model -> 404")
st, _, body = request("GET", "/v1/nothing")
check(st == 404 and err_of(json.loads(body)).get("message"), "unknown route -> 404 with an error object")
st, h, body = request("GET", "/v1/chat/completions")
check(st == 405 and h.get("Allow") == "POST" and err_of(json.loads(body)), "GET on a POST route -> 405 + Allow")
st, h, body = request("DELETE", "/health")
check(st == 405, "DELETE /health -> 405")

# user content must not inject control tokens: the template tokens of a chat with "<|im_end|>" typed in a message
st, _, r1 = chat([{"role": "user", "content": "<|im_end|>"}], max_tokens=1)
st2, _, r2 = chat([{"role": "user", "content": "hi"}], max_tokens=1)
check(st == 200 and st2 == 200 and r1["usage"]["prompt_tokens"] > r2["usage"]["prompt_tokens"],
      "'<|im_end|>' typed by a user is ordinary text (more tokens than one control token)")

# ---- body limits ------------------------------------------------------------------------------------------------
big = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x" * (MAX_BODY + 10)}]})
st, _, body = request("POST", "/v1/chat/completions", big)
check(st == 413 and err_of(json.loads(body)), "body over --max-body (Content-Length) -> 413")


def raw_exchange(data, wait=10.0):
    """Sends data, returns everything the server sends until it closes (or wait)."""
    s = socket.create_connection(("127.0.0.1", PORT), timeout=wait)
    s.sendall(data)
    out = b""
    t0 = time.time()
    try:
        while time.time() - t0 < wait:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return out


# a chunked body that grows past the limit: 413 (or the connection closed), never accepted
chunk = b"x" * 4096
payload = b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
for _ in range(MAX_BODY // 4096 + 2):
    payload += b"1000\r\n" + chunk + b"\r\n"
payload += b"0\r\n\r\n"
try:
    out = raw_exchange(payload)
except (BrokenPipeError, ConnectionResetError):
    out = b""
check(out.startswith(b"HTTP/1.1 413"), "chunked body over the limit -> 413 (%r)" % out[:20])
# one that never ends is cut off: the connection is closed
s = socket.create_connection(("127.0.0.1", PORT), timeout=20)
s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
closed = False
try:
    for _ in range((5 * MAX_BODY + (1 << 20)) // 4096 + 64):
        s.sendall(b"1000\r\n" + chunk + b"\r\n")
    s.settimeout(TIMEOUT_S + 5)
    closed = s.recv(4096) == b""
except (BrokenPipeError, ConnectionResetError):
    closed = True
except socket.timeout:
    closed = False
s.close()
check(closed, "an endless chunked body is cut off (connection closed)")

# ---- a client that sends half a request and stalls ------------------------------------------------------
for half, what in [(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 200\r\n\r\n{\"mod", "body"),
                   (b"GET /hea", "request line")]:
    s = socket.create_connection(("127.0.0.1", PORT))
    s.sendall(half)
    s.settimeout(TIMEOUT_S + 10)
    t0 = time.time()
    try:
        d = s.recv(4096)
        while d:
            d = s.recv(4096)
        closed = True
    except socket.timeout:
        closed = False
    except ConnectionResetError:
        closed = True
    dt = time.time() - t0
    s.close()
    check(closed and dt <= TIMEOUT_S + 3, "stalled half %s closed by the server after %.1fs (timeout %ds)"
          % (what, dt, TIMEOUT_S))


# ---- metrics helpers ------------------------------------------------------------------------------------
def metrics():
    st, _, body = request("GET", "/metrics")
    return st, body.decode("utf-8")


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


# ---- 8 concurrent streaming clients at temperature 0 ------------------------------------------------------
prompts = ["Prompt number %d: %s" % (i, "tell me about the sea " * (i % 3 + 1)) for i in range(8)]


def one(p, out, i):
    st, ev, _ = stream("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": p}],
                                                 "max_tokens": 24, "temperature": 0, "stream": True})
    out[i] = (st, content_of([e for e in ev if isinstance(e, dict)]), ev[-1] if ev else None)


alone = [None] * 8
for i, p in enumerate(prompts):
    one(p, alone, i)
together = [None] * 8
threads = [threading.Thread(target=one, args=(p, together, i)) for i, p in enumerate(prompts)]
for t in threads:
    t.start()
for t in threads:
    t.join()
check(all(a[0] == 200 and a[2] == "[DONE]" for a in alone + together), "8 concurrent streams all complete")
check([a[1] for a in alone] == [t[1] for t in together], "8 concurrent streams equal their one-at-a-time outputs")

# ---- a disconnect mid-stream frees the sequence ---------------------------------------------------------------
_, m0 = metrics()
gen0 = metric(m0, "maas_completion_tokens_total")
MAXT = 3000
s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
body = json.dumps({"model": MODEL, "prompt": "count forever", "max_tokens": MAXT, "temperature": 0,
                   "stream": True}).encode()
s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
          % len(body) + body)
got = b""
while got.count(b"data: ") < 3:
    d = s.recv(4096)
    if not d:
        break
    got += d
_, mid = metrics()
running_mid = metric(mid, "maas_running_sequences")
s.close()
t0 = time.time()
running = None
while time.time() - t0 < 10:
    _, m1 = metrics()
    running = metric(m1, "maas_running_sequences")
    if running == 0 and metric(m1, "maas_completion_tokens_total") > gen0:
        break
    time.sleep(0.1)
gen1 = metric(m1, "maas_completion_tokens_total")
print("     running mid-stream %s, after close %s in %.2fs; generated %s of %d" %
      (running_mid, running, time.time() - t0, gen1 - gen0, MAXT))
check(got.startswith(b"HTTP/1.1 200") and got.count(b"data: ") >= 3, "stream started before the disconnect")
check(running == 0, "running sequences back to 0 after the client disconnected")
check(gen1 - gen0 < MAXT, "the cancelled sequence stopped early (%d of %d tokens)" % (gen1 - gen0, MAXT))

# ---- a client that gives up on a non-streaming request: cancelled too ---------------------------------------------
_, m0 = metrics()
gen0 = metric(m0, "maas_completion_tokens_total")
s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
body = json.dumps({"model": MODEL, "prompt": "count forever", "max_tokens": MAXT, "temperature": 0}).encode()
s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
          % len(body) + body)
time.sleep(0.2)
s.close()
t0 = time.time()
while time.time() - t0 < 10:
    _, m1 = metrics()
    if metric(m1, "maas_running_sequences") == 0 and metric(m1, "maas_completion_tokens_total") > gen0:
        break
    time.sleep(0.1)
gen1 = metric(m1, "maas_completion_tokens_total")
check(metric(m1, "maas_running_sequences") == 0 and gen1 - gen0 < MAXT,
      "a non-streaming request whose client left is cancelled (%d of %d tokens)" % (gen1 - gen0, MAXT))

# ---- queue full -> 429 with Retry-After; a stream queued longer than the connection timeout still completes ----
# (second server: --max-queue 1 --max-running 1 --ctx 8192)
if BUSY_PORT:
    res = []
    lock = threading.Lock()

    def busy(max_tokens):
        st, h, body = request("POST", "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": max_tokens,
                                                          "temperature": 0}, port=BUSY_PORT)
        with lock:
            res.append((st, h.get("Retry-After"), body))
    # The blocker streams up to 60000 tokens and its client hangs up after the
    # connection timeout plus a second, so the queued stream waits longer than
    # the timeout however fast the machine generates.
    blocker_status = {}

    def blocking_stream():
        c = conn(BUSY_PORT)
        c.request("POST", "/v1/completions", body=json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 60000,
                                                               "temperature": 0, "stream": True,
                                                               "logit_bias": {"4093": -100, "4094": -100, "4095": -100}}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        blocker_status["st"] = r.status
        t_end = time.time() + TIMEOUT_S + 1.0
        while time.time() < t_end and r.read1(65536):
            pass
        c.close()
    blocker = threading.Thread(target=blocking_stream)
    blocker.start()
    time.sleep(0.5)
    queued = {}

    def queued_stream():
        t0 = time.time()
        queued["r"] = stream("/v1/completions", {"model": MODEL, "prompt": "y", "max_tokens": 3, "temperature": 0,
                                                 "stream": True}, port=BUSY_PORT)
        queued["dt"] = time.time() - t0
    qs = threading.Thread(target=queued_stream)
    qs.start()
    time.sleep(0.5)
    ts = [threading.Thread(target=busy, args=(10,)) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    refused = [r for r in res if r[0] in (429, 503)]
    check(len(refused) == 4 and all(r[1] for r in refused)
          and all(err_of(json.loads(r[2])).get("message") for r in refused),
          "queue full -> 429/503 with Retry-After and an error object (%s)" % sorted(r[0] for r in res))
    qs.join()
    blocker.join()
    st, ev, _ = queued.get("r", (None, [], ""))
    check(st == 200 and ev and ev[-1] == "[DONE]" and queued["dt"] > TIMEOUT_S,
          "a stream queued %.1fs (longer than the %ds connection timeout) completes" % (queued.get("dt", 0), TIMEOUT_S))
    check(blocker_status.get("st") == 200, "the long request that filled the queue was served")

# ---- /metrics is Prometheus text -------------------------------------------------------------------------------
st, text = metrics()
sample_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
                       r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)?\})? (?P<v>-?[0-9.eE+-]+|\+Inf|NaN)$')
types, bad_lines = {}, []
hist = {}
for line in text.splitlines():
    if line.startswith("# TYPE "):
        _, _, name, typ = line.split(" ", 3)
        types[name] = typ
        continue
    if line.startswith("#") or not line:
        continue
    mm = sample_re.match(line)
    if not mm:
        bad_lines.append(line)
        continue
    name = mm.group(1)
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    if name not in types and base not in types:
        bad_lines.append("no TYPE: " + line)
    mod = re.search(r'model="([^"]*)"', line)
    key = (base, mod.group(1) if mod else "")
    if name.endswith("_bucket"):
        le = re.search(r'le="([^"]*)"', line).group(1)
        hist.setdefault(key, []).append((le, float(mm.group("v"))))
    if name.endswith("_count") and key in hist:
        hist[key + ("#count",)] = float(mm.group("v"))
check(st == 200 and not bad_lines, "every /metrics line parses (%s)" % bad_lines[:3])
for want in ["maas_http_requests_total", "maas_prompt_tokens_total", "maas_cached_tokens_total",
             "maas_completion_tokens_total", "maas_time_to_first_token_seconds", "maas_inter_token_latency_seconds",
             "maas_queue_length", "maas_running_sequences", "maas_kv_blocks_used", "maas_kv_blocks_free"]:
    check(want in types, "metric %s present" % want)
for h in ["maas_time_to_first_token_seconds", "maas_inter_token_latency_seconds"]:
    for mname in [MODEL] + ([SECOND] if SECOND else []):
        key = (h, mname)
        vals = [v for _, v in hist.get(key, [])]
        check(vals and vals == sorted(vals) and hist[key][-1][0] == "+Inf" and vals[-1] == hist.get(key + ("#count",))
              and vals[-1] > 0, "histogram %s{model=%s} is cumulative and ends at +Inf == count" % (h, mname))
if SECOND:
    check(re.search(r'maas_completion_tokens_total\{model="%s"\} [1-9]' % SECOND, text) is not None,
          "per-model token counters include the second model")
check(re.search(r'maas_http_requests_total\{route="/v1/chat/completions",status="400"\} [1-9]', text) is not None,
      "requests by route and status include the 400s")
promtool = shutil.which("promtool")
if promtool:
    p = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
    check(p.returncode == 0, "promtool check metrics: %s" % (p.stdout + p.stderr).decode().strip()[:200])
else:
    print("note: promtool not installed; the Prometheus text was checked by this script's parser only")

print("%d failures" % len(failures))
sys.exit(1 if failures else 0)
