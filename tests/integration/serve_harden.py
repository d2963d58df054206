"""Hostile clients against maas serve, on loopback (run by serve_harden.sh).

Arguments: MAIN_PORT (--no-auth, --header-timeout 2), LIMITS_PORT
(--max-connections 40 --max-connections-per-ip 10), LOAD_PORT and its PID
(defaults), BILLING_PORT (models tiny and other), KEY_TINY (allowed: tiny),
KEY_ALL, the billing server's --access-log file, STALL_PORT (--timeout 4
--ctx 4096), its --access-log file, and the model's special token ids
(comma-separated). Standard library only.
"""
import json
import os
import resource
import select
import socket
import sys
import threading
import time

MAIN, LIMITS, LOAD, LOAD_PID, BILLING = (int(a) for a in sys.argv[1:6])
KEY_TINY, KEY_ALL, ACCESS_LOG = sys.argv[6], sys.argv[7], sys.argv[8]
STALL, STALL_LOG = int(sys.argv[9]), sys.argv[10]          # --timeout 4 --ctx 4096 --access-log STALL_LOG
EOG_IDS = [int(x) for x in sys.argv[11].split(",") if x]   # the model's special token ids, biased away
HEADER_TIMEOUT = 2
failures = 0


def check(cond, what):
    global failures
    print(("ok   " if cond else "FAIL ") + what)
    sys.stdout.flush()
    if not cond:
        failures += 1
    return cond


def exchange(port, data, wait=5.0, src="127.0.0.1"):
    """Sends data, reads until the server closes or wait passes: (bytes, closed)."""
    s = socket.socket()
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    s.settimeout(wait)
    out = b""
    closed = False
    try:
        s.sendall(data)
        while True:
            b = s.recv(65536)
            if not b:
                closed = True
                break
            out += b
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    s.close()
    return out, closed


def one_json_error(out, status):
    """Exactly one response, with this status and an OpenAI-style error body."""
    if out.count(b"HTTP/1.") != 1 or not out.startswith(b"HTTP/1.1 %d " % status):
        return False, "not one %d response: %r" % (status, out[:200])
    head, _, body = out.partition(b"\r\n\r\n")
    try:
        e = json.loads(body)["error"]
        return bool(e["message"]) and b"application/json" in head, e["message"]
    except (ValueError, KeyError, TypeError):
        return False, "no JSON error body: %r" % body[:200]


def get(port, path, key=None, timeout=10):
    h = "GET %s HTTP/1.1\r\nHost: x\r\n" % path
    if key:
        h += "Authorization: Bearer %s\r\n" % key
    out, _ = exchange(port, (h + "\r\n").encode(), timeout)
    head, _, body = out.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.") else 0
    return status, body


CHAT = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}).encode()


def test_framing():
    start = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
    cases = [
        ("a negative Content-Length", b"Content-Length: -1\r\n"),
        ("a non-numeric Content-Length", b"Content-Length: abc\r\n"),
        ("an empty Content-Length", b"Content-Length: \r\n"),
        ("differing Content-Length headers", b"Content-Length: 5\r\nContent-Length: 7\r\n"),
        ("a repeated Content-Length", b"Content-Length: 5\r\nContent-Length: 5\r\n"),
        ("a Content-Length list", b"Content-Length: 5, 5\r\n"),
        ("Content-Length with Transfer-Encoding", b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
        ("Transfer-Encoding before Content-Length", b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"),
        ("an unsupported transfer coding", b"Transfer-Encoding: gzip\r\n"),
        ("a coding list", b"Transfer-Encoding: gzip, chunked\r\n"),
        ("a repeated Transfer-Encoding", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
        ("a NUL in a header value", b"X-A: a\x00b\r\nContent-Length: 5\r\n"),
        ("a control byte in a header value", b"X-A: a\x01b\r\nContent-Length: 5\r\n"),
        ("a bare CR in a header value", b"X-A: a\rb\r\nContent-Length: 5\r\n"),
        ("a folded header line", b"X-A: a\r\n b\r\nContent-Length: 5\r\n"),
        ("a blank before the colon", b"Content-Length : 5\r\n"),
    ]
    for what, headers in cases:
        out, closed = exchange(MAIN, start + headers + b"\r\nhello")
        ok, msg = one_json_error(out, 400)
        check(ok and closed, "%s: one JSON 400, then closed (%s)" % (what, msg))
    out, closed = exchange(MAIN, start + b"Content-Length: %d\r\n\r\n" % len(CHAT) + CHAT, 30)
    check(out.startswith(b"HTTP/1.1 200 ") and out.count(b"HTTP/1.") == 1 and closed,
          "a well-framed request through the same door: 200, then closed")
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(CHAT), CHAT)
    out, closed = exchange(MAIN, start + b"Transfer-Encoding: chunked\r\n\r\n" + chunked, 30)
    check(out.startswith(b"HTTP/1.1 200 ") and closed, "a chunked request: 200")


def drip(s, data, limit):
    """Sends data one byte per 0.25 s on the connected socket s (then
    nothing more), reading what comes back, until the server closes or limit
    seconds pass. Returns (what was read, seconds until the close or None)."""
    s.setblocking(False)
    t0 = time.monotonic()
    got = b""
    i = 0
    while time.monotonic() - t0 < limit:
        try:
            if i < len(data):
                s.send(data[i:i + 1])
                i += 1
        except OSError:
            return got, time.monotonic() - t0
        r, _, _ = select.select([s], [], [], 0.25)
        if r:
            try:
                b = s.recv(4096)
            except OSError:
                b = b""
            if not b:
                return got, time.monotonic() - t0
            got += b
    return got, None


def test_header_deadline():
    """A slow sender gets a 408 and is closed HEADER_TIMEOUT after its first byte."""
    s = socket.create_connection(("127.0.0.1", MAIN))
    got, dt = drip(s, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100, HEADER_TIMEOUT + 5)
    s.close()
    ok, m = one_json_error(got, 408)
    check(dt is not None and HEADER_TIMEOUT - 0.3 <= dt <= HEADER_TIMEOUT + 1.5 and ok,
          "a sender of one header byte per 0.25 s gets 408 and is closed after %.1f s (--header-timeout %d): %s"
          % (dt if dt is not None else -1, HEADER_TIMEOUT, m))


def test_body_rate():
    """A body dripped at 4 bytes/s is cut once the grace (--header-timeout) is over."""
    s = socket.create_connection(("127.0.0.1", MAIN))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 2000\r\n\r\n")
    _, dt = drip(s, b" " * 2000, HEADER_TIMEOUT + 8)
    s.close()
    check(dt is not None and dt <= HEADER_TIMEOUT + 2,
          "a body sent at 4 bytes/s is cut off after %.1f s (grace %d s, --min-body-rate 4096)"
          % (dt if dt is not None else -1, HEADER_TIMEOUT))


def test_stalled_reader():
    """A stream whose client stops reading: the connection is closed about --timeout (4 s) after the
    socket buffers fill, the sequence ends as cancelled, and /health is served meanwhile."""
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                       "max_tokens": 4000, "logprobs": True, "top_logprobs": 20,
                       "logit_bias": {str(t): -100 for t in EOG_IDS}}).encode()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", STALL))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    t0 = time.monotonic()
    health = []
    ended = None
    while time.monotonic() - t0 < 25 and ended is None:
        time.sleep(0.5)
        st, _ = get(STALL, "/health")
        health.append(st)
        with open(STALL_LOG) as f:
            lines = [json.loads(x) for x in f if '"/v1/chat/completions"' in x]
        if lines:
            ended = (time.monotonic() - t0, lines[-1])
    got = b""
    s.settimeout(2)
    try:
        while True:  # what the server sent before it gave up: the client reads it now
            b = s.recv(1 << 20)
            if not b:
                break
            got += b
    except (socket.timeout, OSError):
        pass
    s.close()
    check(ended is not None and ended[1].get("finish") == "cancelled" and ended[0] < 15,
          "a stream nobody reads is closed and cancelled after %.1f s (--timeout 4): %s"
          % (ended[0] if ended else -1, ended[1] if ended else "no access-log line"))
    check(all(st == 200 for st in health), "/health answered meanwhile (%d times)" % len(health))
    check(b"[DONE]" not in got and len(got) > 0, "the stalled client got a partial stream (%d bytes), no [DONE]"
          % len(got))


def test_limits():
    """--max-connections-per-ip 10 and --max-connections 40 on LIMITS."""
    held = [socket.create_connection(("127.0.0.1", LIMITS)) for _ in range(10)]
    time.sleep(0.3)
    out, closed = exchange(LIMITS, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    ok, m = one_json_error(out, 503)
    check(ok and closed and b"Retry-After: 1" in out,
          "the 11th connection from one address gets a 503 and is closed (%s)" % m)
    out, _ = exchange(LIMITS, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", src="127.0.0.2")
    check(out.startswith(b"HTTP/1.1 200 "), "another address is still served")
    for src in ("127.0.0.3", "127.0.0.4", "127.0.0.5"):
        for _ in range(10):
            s = socket.socket()
            s.bind((src, 0))
            s.connect(("127.0.0.1", LIMITS))
            held.append(s)
    time.sleep(0.3)
    out, closed = exchange(LIMITS, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", src="127.0.0.6")
    ok, m = one_json_error(out, 503)
    check(ok and closed, "past --max-connections 40 a new connection gets a 503 (%s)" % m)
    for s in held[:5]:
        s.close()
    time.sleep(0.3)
    out, _ = exchange(LIMITS, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", src="127.0.0.6")
    check(out.startswith(b"HTTP/1.1 200 "), "a closed connection gives its place back")
    for s in held[5:]:
        s.close()


def threads_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def test_load(n_idle=5000, n_slow=200, seconds=20):
    """n_idle idle connections and n_slow slow senders for `seconds` while
    /health is timed and a chat request completes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = n_idle + n_slow + 200
    if hard < need:
        print("skip the load check: open-file limit %d < %d" % (hard, need))
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    threads0 = threads_of(LOAD_PID)
    idle = []
    for i in range(n_idle):
        idle.append(socket.create_connection(("127.0.0.1", LOAD)))
    slow = []
    for i in range(n_slow):
        s = socket.create_connection(("127.0.0.1", LOAD))
        s.setblocking(False)
        slow.append([s, True, None])
    stop = threading.Event()
    chat_res = {}

    def chat():
        out, _ = exchange(LOAD, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                          % len(CHAT) + CHAT, 60)
        chat_res["out"] = out

    lat = []
    max_threads = threads0
    t0 = time.monotonic()
    tc = threading.Thread(target=chat)
    tc.start()
    last_byte = 0
    while time.monotonic() - t0 < seconds:
        now = time.monotonic()
        if now - last_byte >= 1.0:
            last_byte = now
            for e in slow:
                if e[1]:
                    try:
                        e[0].send(b"G" if e[2] is None else b"a")
                        e[2] = e[2] or now
                    except OSError:
                        e[1] = False
        for e in slow:  # closed by the server?
            if e[1]:
                try:
                    b = e[0].recv(4096)
                    if not b:
                        e[1] = False
                except BlockingIOError:
                    pass
                except OSError:
                    e[1] = False
        t = time.monotonic()
        st, _ = get(LOAD, "/health", timeout=5)
        lat.append((time.monotonic() - t, st))
        max_threads = max(max_threads, threads_of(LOAD_PID))
        time.sleep(0.05)
    tc.join(60)
    lat_ok = [d for d, st in lat if st == 200]
    lat_ok.sort()
    p99 = lat_ok[min(len(lat_ok) - 1, int(len(lat_ok) * 0.99))] if lat_ok else 99
    check(len(lat_ok) == len(lat) and p99 < 0.2,
          "with %d idle connections and %d slow senders, /health answered %d/%d times, p99 %.1f ms"
          % (n_idle, n_slow, len(lat_ok), len(lat), p99 * 1000))
    out = chat_res.get("out", b"")
    check(out.startswith(b"HTTP/1.1 200 "), "a chat request completes meanwhile")
    cut = sum(1 for e in slow if not e[1])
    check(cut == n_slow, "the slow senders were all disconnected by the header deadline (%d/%d)" % (cut, n_slow))
    check(max_threads < threads0 + 16, "the server's threads stay bounded: %d at the start, at most %d under load"
          % (threads0, max_threads))
    for s in idle:
        s.close()
    for e in slow:
        e[0].close()


def test_models_filter():
    st, body = get(BILLING, "/v1/models", KEY_TINY)
    names = sorted(m["id"] for m in json.loads(body)["data"]) if st == 200 else None
    check(names == ["tiny"], "/v1/models shows a key limited to tiny only tiny (%s)" % names)
    st, body = get(BILLING, "/v1/models", KEY_ALL)
    names = sorted(m["id"] for m in json.loads(body)["data"]) if st == 200 else None
    check(names == ["other", "tiny"], "/v1/models shows an unlimited key every model (%s)" % names)
    st, _ = get(BILLING, "/v1/models/other", KEY_TINY)
    check(st == 404, "/v1/models/other is a 404 for the key limited to tiny (%d)" % st)
    st, _ = get(BILLING, "/v1/models/tiny", KEY_TINY)
    check(st == 200, "/v1/models/tiny is a 200 for it (%d)" % st)


def post_chat(port, key, stream=False):
    body = json.loads(CHAT)
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    data = json.dumps(body).encode()
    out, _ = exchange(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                      b"Content-Length: %d\r\n\r\n" % (key.encode(), len(data)) + data, 30)
    head, _, body = out.partition(b"\r\n\r\n")
    if not stream:
        try:
            return json.loads(body)
        except ValueError:
            return None
    usage, rid = None, None
    for line in body.split(b"\n"):
        if line.startswith(b"data: {"):
            obj = json.loads(line[6:])
            rid = obj["id"]
            usage = obj.get("usage") or usage
    return {"id": rid, "usage": usage}


def test_access_log():
    plain = post_chat(BILLING, KEY_TINY)
    streamed = post_chat(BILLING, KEY_TINY, stream=True)
    get(BILLING, "/v1/models/nope", KEY_ALL)
    get(BILLING, "/health")
    time.sleep(0.5)
    with open(ACCESS_LOG) as f:
        text = f.read()
    lines = [json.loads(l) for l in text.splitlines()]
    by_id = {l["request_id"]: l for l in lines if l["request_id"]}
    key_id = KEY_TINY[len("sk-maas-"):][:12]
    for what, resp in (("a chat", plain), ("a stream", streamed)):
        l = by_id.get(resp and resp["id"])
        u = resp and resp["usage"]
        check(l is not None and u is not None and l["status"] == 200 and l["model"] == "tiny" and
              l["key"] == key_id and l["account"] and l["client"] == "127.0.0.1" and
              l["prompt_tokens"] == u["prompt_tokens"] and l["completion_tokens"] == u["completion_tokens"] and
              l["duration_us"] > 0,
              "the access log has %s's line with its id, key id, account, status, tokens and client: %s"
              % (what, l))
    statuses = sorted((l["route"], l["status"]) for l in lines)
    check(("/v1/models/{model}", 404) in statuses and ("/health", 200) in statuses,
          "the access log has the 404 and /health lines too")
    check(KEY_TINY not in text and KEY_ALL not in text and "sk-maas-" not in text, "no key in the access log")


def main():
    test_framing()
    test_header_deadline()
    test_body_rate()
    test_stalled_reader()
    test_limits()
    test_models_filter()
    test_access_log()
    test_load()
    print("%d failures" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
