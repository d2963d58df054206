#!/usr/bin/python3
"""Concurrency and prefix reuse of `maas serve` (standard library only).

usage: serve_concurrency.py PORT MODEL

1. 32 streaming chat clients at temperature 0, all at once, get exactly the
   text (and finish_reason and token counts) they get when run one at a time
   — checked cold (nothing cached), one at a time, and again at once with
   every prompt in the prefix cache. A poller on /metrics shows the streams
   really ran together (running sequences).
2. A 10-turn conversation, each turn sending the whole history with the
   assistant replies as returned: cached_tokens is > 0 from turn 2, grows
   every turn, and covers at least every full 16-token block of the previous
   turn's prompt; how much of the previous reply is reused is printed.
"""
import http.client
import json
import sys
import threading
import time

PORT = int(sys.argv[1])
MODEL = sys.argv[2]
BLOCK = 16  # KV block size of maas serve (--kv-blocks counts blocks of 16 positions)
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def conn():
    return http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)


def post(body):
    c = conn()
    c.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data)


def stream_chat(messages, max_tokens):
    """Streams one chat completion; returns dict(status, text, finish, usage, done, t_first, t_last)."""
    c = conn()
    body = {"model": MODEL, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    c.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    out = {"status": r.status, "text": "", "finish": None, "usage": None, "done": False, "t_first": None,
           "t_last": None}
    buf = b""
    while True:
        line = r.readline()
        if not line:
            break
        line = line.rstrip(b"\r\n")
        if not line.startswith(b"data: "):
            continue
        p = line[6:]
        if p == b"[DONE]":
            out["done"] = True
            break
        ev = json.loads(p)
        if ev.get("usage"):
            out["usage"] = ev["usage"]
        for ch in ev.get("choices", []):
            piece = ch.get("delta", {}).get("content")
            if piece:
                now = time.monotonic()
                out["t_first"] = out["t_first"] or now
                out["t_last"] = now
                out["text"] += piece
            if ch.get("finish_reason"):
                out["finish"] = ch["finish_reason"]
    buf += r.read()
    c.close()
    return out


def metric(name):
    c = conn()
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


# ---- 1. 32 concurrent streams against one at a time ---------------------------------------------------------
N = 32
MAXT = 40
topics = ["the sea", "a robot", "mountains", "trains", "bread", "the moon", "cats", "rivers"]
prompts = []
for i in range(N):
    # different lengths (1 to 4 repetitions: some prompts span several KV blocks) and groups sharing prefixes
    prompts.append("Request %d. Please tell me about %s. %s" % (i, topics[i % 8], "And more details, please. " * (i % 4)))
msgs = [[{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": p}] for p in prompts]


def run_together():
    res = [None] * N
    peak = [0.0]
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            v = metric("maas_running_sequences") or 0
            peak[0] = max(peak[0], v)
            time.sleep(0.02)

    def one(i):
        res[i] = stream_chat(msgs[i], MAXT)
    poller = threading.Thread(target=poll)
    poller.start()
    ts = [threading.Thread(target=one, args=(i,)) for i in range(N)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.monotonic() - t0
    stop.set()
    poller.join()
    return res, peak[0], dt


def key(r):
    return (r["status"], r["text"], r["finish"], r["usage"] and r["usage"]["completion_tokens"])


cold, peak_cold, dt_cold = run_together()
t0 = time.monotonic()
alone = [stream_chat(m, MAXT) for m in msgs]
dt_alone = time.monotonic() - t0
warm, peak_warm, dt_warm = run_together()
print("     32 streams: together (cold cache) %.2fs, peak running %d; one at a time %.2fs; together (warm) %.2fs, "
      "peak running %d" % (dt_cold, peak_cold, dt_alone, dt_warm, peak_warm))
check(all(r["status"] == 200 and r["done"] and r["usage"] for r in cold + alone + warm),
      "96 streams complete with [DONE] and a usage chunk")
check(len({r["text"] for r in alone}) > N // 2, "the prompts give different outputs (%d distinct of %d)"
      % (len({r["text"] for r in alone}), N))
check(all(r["usage"]["completion_tokens"] > 0 for r in alone), "every stream generated tokens")
same_cold = sum(key(a) == key(c) for a, c in zip(alone, cold))
same_warm = sum(key(a) == key(w) for a, w in zip(alone, warm))
for i, (a, c, w) in enumerate(zip(alone, cold, warm)):
    if key(a) != key(c) or key(a) != key(w):
        print("     differs #%d: alone %r\n                 cold  %r\n                 warm  %r"
              % (i, key(a)[1:], key(c)[1:], key(w)[1:]))
check(same_cold == N, "32 concurrent streams (cold cache) equal their one-at-a-time outputs (%d of %d)"
      % (same_cold, N))
check(same_warm == N, "32 concurrent streams (prompts cached) equal their one-at-a-time outputs (%d of %d)"
      % (same_warm, N))
check(peak_cold >= 8 and peak_warm >= 8, "the streams ran together (peak running sequences %d and %d)"
      % (peak_cold, peak_warm))
warm_cached = sum(r["usage"]["prompt_tokens_details"]["cached_tokens"] for r in warm)
check(warm_cached > 0, "the second concurrent round reused cached prompt blocks (%d tokens)" % warm_cached)

# ---- 2. a 10-turn conversation --------------------------------------------------------------------------------
history = [{"role": "system", "content": "You are a patient assistant. Keep answers short."}]
rows = []
for turn in range(1, 11):
    history.append({"role": "user", "content": "Turn %d: here is my next question about the same story, with a few "
                    "more words so that every turn adds at least one full block." % turn})
    st, r = post({"model": MODEL, "messages": history, "max_tokens": 20, "temperature": 0})
    if st != 200:
        check(False, "turn %d: status %d %s" % (turn, st, r))
        break
    u = r["usage"]
    rows.append((u["prompt_tokens"], u["prompt_tokens_details"]["cached_tokens"], u["completion_tokens"]))
    history.append({"role": "assistant", "content": r["choices"][0]["message"]["content"]})

print("     turn  prompt  cached  completion  | prev prompt blocks  reused beyond them")
for i, (p, c, g) in enumerate(rows):
    prev_blocks = (rows[i - 1][0] // BLOCK) * BLOCK if i else 0
    print("     %4d  %6d  %6d  %10d  | %18d  %d" % (i + 1, p, c, g, prev_blocks, c - prev_blocks if i else 0))
if len(rows) == 10:
    cached = [c for _, c, _ in rows]
    check(all(c > 0 for c in cached[1:]), "cached_tokens > 0 from turn 2 (%s)" % cached)
    check(all(b > a for a, b in zip(cached[1:], cached[2:])), "cached_tokens grows every turn from turn 2")
    check(all(cached[i] >= (rows[i - 1][0] // BLOCK) * BLOCK for i in range(1, 10)),
          "each turn reuses at least every full block of the previous turn's prompt")
    check(all(c < p for p, c, _ in rows), "cached_tokens < prompt_tokens (the last prompt token is always computed)")
    # the blocks holding generated tokens are cached too: reused whenever the reply re-tokenises as generated
    # (random models often emit token sequences that re-tokenise differently, so not every turn)
    reply_reuse = sum(cached[i] > (rows[i - 1][0] // BLOCK) * BLOCK for i in range(1, 10))
    check(reply_reuse >= 5, "blocks of the previous reply reused in %d of 9 turns" % reply_reuse)
    best = sum(cached[i] == ((rows[i - 1][0] + rows[i - 1][2]) // BLOCK) * BLOCK for i in range(1, 10))
    print("     %d of 9 turns reuse every full block of the previous prompt + reply" % best)
    print("     turn 10: %d of %d prompt tokens cached (%.0f%%)" % (cached[9], rows[9][0],
                                                                  100.0 * cached[9] / rows[9][0]))

print("%d failures" % len(failures))
sys.exit(1 if failures else 0)
