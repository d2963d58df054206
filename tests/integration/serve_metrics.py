#!/usr/bin/python3
"""`promtool check metrics` accepts the /metrics of `maas serve` (standard library only).

usage: serve_metrics.py PORT MODEL SECOND_MODEL PROMTOOL

/metrics is taken three times — fresh (nothing served yet), while streams
are running and one is queued behind them, and after a mix of traffic (200s,
400, 404, 405, 413, a client that disconnected mid-stream) on two models —
and each text must pass promtool with no lint complaint. A copy with a
broken line must fail it (so the check is known to bite).
"""
import http.client
import json
import socket
import subprocess
import sys
import threading
import time

PORT = int(sys.argv[1])
MODEL, SECOND, PROMTOOL = sys.argv[2], sys.argv[3], sys.argv[4]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def request(method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    c.request(method, path, body=json.dumps(body) if isinstance(body, dict) else body,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.getheader("Content-Type"), data


def promtool(text):
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True)
    return p.returncode, (p.stdout + p.stderr).decode().strip()


def check_metrics(when):
    st, ctype, body = request("GET", "/metrics")
    text = body.decode()
    rc, out = promtool(text)
    check(st == 200 and ctype and ctype.startswith("text/plain"), "%s: GET /metrics 200 text/plain (%s)" % (when, ctype))
    check(rc == 0 and out == "", "%s: promtool check metrics accepts %d lines (rc %d%s)"
          % (when, len(text.splitlines()), rc, ": " + out[:300] if out else ""))
    return text


def gauge(text, name, model):
    for line in text.splitlines():
        if line.startswith('%s{model="%s"}' % (name, model)):
            return float(line.rsplit(" ", 1)[1])
    return None


fresh = check_metrics("fresh server")

# promtool is known to reject what is wrong: a sample without a closed label set, a counter without _total
rc, _ = promtool(fresh + 'maas_broken{model="x" 1\n')
check(rc != 0, "promtool rejects a broken sample line (rc %d)" % rc)
rc, _ = promtool("# HELP x_requests Requests.\n# TYPE x_requests counter\nx_requests 1\n")
check(rc != 0, "promtool complains about a counter without _total (rc %d)" % rc)

# ---- while streams run: 3 streams on MODEL with --max-running 2, so one waits in the queue ----------------
# The streams are started one after the other, each once the one before has
# sent its first chunk, i.e. once the engine has admitted it: started at
# once, their requests reach the engine in whatever order the server's
# connection threads run, and when stream 0's came last it sat in the queue
# until the others had generated all their tokens, so that waiting for its
# first chunks ended with 1 running and 0 queued (seen under `make test`).
# the built-in vocabulary's <|endoftext|>, <|im_start|>, <|im_end|>: banned so that
# these streams cannot end early at an end-of-generation token
NO_EOG = {"4093": -100, "4094": -100, "4095": -100}


def stream_reader(sock, first_chunk):
    """Reads a stream to its end (an unread socket would fill up, stall its
    connection and get it closed); sets first_chunk at its first SSE event."""
    got = b""
    try:
        while True:
            d = sock.recv(65536)
            if not d:
                break
            if not first_chunk.is_set():
                got += d
                if b"data: " in got:
                    first_chunk.set()
    except OSError:
        pass


socks = []
for i in range(3):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
    body = json.dumps({"model": MODEL, "prompt": "stream %d" % i, "max_tokens": 15000, "temperature": 0,
                       "logit_bias": NO_EOG,
                       "stream": True}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    socks.append(s)
    first_chunk = threading.Event()
    threading.Thread(target=stream_reader, args=(s, first_chunk), daemon=True).start()
    if i < 2:
        check(first_chunk.wait(30), "stream %d is running (its first chunk arrived)" % i)
# Streams 0 and 1 run, and each has up to 15000 tokens to go (many seconds,
# even on a fast machine), so stream 2 stays queued: wait only until its
# request has reached the engine's queue.
mid = ""
t0 = time.time()
while time.time() - t0 < 30:
    _, _, body = request("GET", "/metrics")
    mid = body.decode()
    if gauge(mid, "maas_running_sequences", MODEL) == 2 and gauge(mid, "maas_queue_length", MODEL) == 1:
        break
    time.sleep(0.05)
check(gauge(mid, "maas_running_sequences", MODEL) == 2 and gauge(mid, "maas_queue_length", MODEL) == 1
      and gauge(mid, "maas_kv_blocks_used", MODEL) > 0,
      "under load: 2 running, 1 queued, KV blocks used (%s, %s, %s)"
      % (gauge(mid, "maas_running_sequences", MODEL), gauge(mid, "maas_queue_length", MODEL),
         gauge(mid, "maas_kv_blocks_used", MODEL)))
check_metrics("under load (2 running, 1 queued)")
for s in socks:  # shutdown first: it wakes the reader blocked in recv, which close alone would not
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()

# ---- a mix of traffic on both models ---------------------------------------------------------------------
USER = [{"role": "user", "content": "hello there"}]
threads = [threading.Thread(target=request, args=("POST", "/v1/chat/completions",
                                                  {"model": m, "messages": USER, "max_tokens": 8, "stream": s}))
           for m in (MODEL, SECOND) for s in (False, True) for _ in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
statuses = [request("POST", "/v1/chat/completions", {"model": MODEL, "messages": USER, "temperature": 9})[0],
            request("POST", "/v1/chat/completions", {"model": "nope", "messages": USER})[0],
            request("GET", "/v1/chat/completions")[0],
            request("GET", "/no/such/route")[0],
            request("POST", "/v1/completions", {"model": SECOND, "prompt": "x" * 70000})[0],
            request("POST", "/v1/completions", "{not json")[0]]
check(statuses == [400, 404, 405, 404, 413, 400], "error traffic statuses %s" % statuses)
t0 = time.time()
after = ""
while time.time() - t0 < 10:  # the disconnected streams are cancelled within a step or so
    _, _, body = request("GET", "/metrics")
    after = body.decode()
    if gauge(after, "maas_running_sequences", MODEL) == 0 and gauge(after, "maas_queue_length", MODEL) == 0:
        break
    time.sleep(0.1)
check(gauge(after, "maas_running_sequences", MODEL) == 0, "the disconnected streams were cancelled")
text = check_metrics("after mixed traffic")
for want in ['route="/v1/chat/completions",status="400"', 'status="404"', 'status="405"', 'status="413"',
             'maas_time_to_first_token_seconds_bucket{model="%s"' % SECOND,
             'maas_inter_token_latency_seconds_bucket{model="%s"' % MODEL]:
    check(want in text, "metrics include %s" % want)

print("%d failures" % len(failures))
sys.exit(1 if failures else 0)
