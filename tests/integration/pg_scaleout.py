#!/usr/bin/env python3
"""Drives two maas serve nodes through nginx (standard library only).

usage: pg_scaleout.py NGINX_PORT NODE_A_PORT NODE_B_PORT CONTROL_FIFO_DIR

Checks, printing "ok   ..." or "FAIL: ..." lines (exit 1 on any failure):
  - consistent hashing on X-Conversation-Id: every turn of a conversation is
    served by the same node (nginx reports it in X-Maas-Upstream), both nodes
    get conversations, and a conversation's second turn reuses its prefix
    cache (cached_tokens > 0), which only its own node can do;
  - under concurrent load node A is killed with SIGKILL (by the shell, when
    this script writes "kill" to CONTROL/ctl and waits for "killed" in
    CONTROL/ack): every request still returns either a complete 200 answer or
    an error status, never a truncated 200; A's conversations move to B;
  - after A is restarted ("restart" / "restarted"), its conversations come
    back to it (the hash ring did not change).
The completed requests are written to CONTROL/completed (one response id per
line) for the ledger checks of the caller. When CONTROL/keys exists (a ledger
is configured), requests carry those API keys: the first (a rich account)
for the routing checks, all of them for the load (402 refusals are expected
once the small balances are spent).
"""
import http.client
import json
import os
import sys
import threading
import time

NGINX, PORT_A, PORT_B, CTL = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
fails = 0


def check(cond, what):
    global fails
    if cond:
        print("ok   " + what, flush=True)
    else:
        fails += 1
        print("FAIL: " + what, flush=True)


SYSTEM = {"role": "system", "content": "You are a helpful assistant who answers briefly. " * 6}


# With a ledger the caller writes API keys to CONTROL/keys: the first (a rich
# account) for the routing checks; the load uses all of them, so that it goes
# on after the small balances are spent.
KEYS = []
if os.path.exists(os.path.join(CTL, "keys")):
    with open(os.path.join(CTL, "keys")) as f:
        KEYS = [line.strip() for line in f if line.strip()]
LOAD_KEYS = KEYS


def chat(conv, messages, max_tokens=4, timeout=60, key=None):
    """One request through nginx; returns (status, upstream, body dict or None)."""
    c = http.client.HTTPConnection("127.0.0.1", NGINX, timeout=timeout)
    body = json.dumps({"model": "tiny", "messages": messages, "max_tokens": max_tokens, "temperature": 0})
    headers = {"Content-Type": "application/json", "X-Conversation-Id": conv}
    key = key or (KEYS[0] if KEYS else None)
    if key:
        headers["Authorization"] = "Bearer " + key
    try:
        c.request("POST", "/v1/chat/completions", body, headers)
        r = c.getresponse()
        data = r.read()
        up = r.getheader("X-Maas-Upstream") or ""
        try:
            doc = json.loads(data) if data else None
        except ValueError:
            doc = None
        return r.status, up, doc
    except (OSError, http.client.HTTPException):
        return -1, "", None
    finally:
        c.close()


def node_of(upstream):
    # with a retry nginx lists every upstream it tried; the last one answered
    last = upstream.split(",")[-1].strip()
    if last.endswith(":%d" % PORT_A):
        return "A"
    if last.endswith(":%d" % PORT_B):
        return "B"
    return "?"


def two_turns(conv):
    m1 = [SYSTEM, {"role": "user", "content": "question one of %s" % conv}]
    s1, u1, r1 = chat(conv, m1)
    if s1 != 200 or not r1:
        return s1, None, None, 0
    answer = r1["choices"][0]["message"]["content"]
    m2 = m1 + [{"role": "assistant", "content": answer}, {"role": "user", "content": "and question two"}]
    s2, u2, r2 = chat(conv, m2)
    if s2 != 200 or not r2:
        return s2, node_of(u1), None, 0
    return 200, node_of(u1), node_of(u2), r2["usage"]["prompt_tokens_details"]["cached_tokens"]


def control(cmd, want):
    with open(os.path.join(CTL, "ctl"), "w") as f:
        f.write(cmd + "\n")
    for _ in range(600):
        try:
            with open(os.path.join(CTL, "ack")) as f:
                if f.read().strip() == want:
                    os.unlink(os.path.join(CTL, "ack"))
                    return True
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    return False


# ---- stickiness and prefix reuse ----------------------------------------------------------------
convs = ["conv-%02d" % i for i in range(16)]
home = {}
sticky = True
cached_ok = True
for conv in convs:
    st, n1, n2, cached = two_turns(conv)
    if st != 200:
        check(False, "%s: status %s" % (conv, st))
        continue
    home[conv] = n1
    sticky &= n1 == n2 and n1 in ("A", "B")
    cached_ok &= cached > 0
check(len(home) == len(convs), "every conversation answered through nginx")
check(sticky, "each conversation stays on one node (%s)" % "".join(home[c] for c in convs if c in home))
check(set(home.values()) == {"A", "B"}, "both nodes get conversations")
check(cached_ok, "every second turn reuses its node's prefix cache (cached_tokens > 0)")
on_a = [c for c in convs if home.get(c) == "A"]

# ---- load, SIGKILL of node A, failover ----------------------------------------------------------
completed = []
bad = []
lock = threading.Lock()
stop = threading.Event()
served_by = {"A": 0, "B": 0, "?": 0}
errors = [0]
refused = [0]


def worker(idx):
    n = 0
    while not stop.is_set():
        conv = convs[(idx * 5 + n) % len(convs)]
        n += 1
        key = LOAD_KEYS[(idx * 5 + n) % len(LOAD_KEYS)] if LOAD_KEYS else None
        st, up, doc = chat(conv, [SYSTEM, {"role": "user", "content": "load %d %d" % (idx, n)}], max_tokens=6,
                           key=key)
        with lock:
            if st == 200:
                ok = (doc and doc.get("id") and doc.get("choices") and doc["choices"][0].get("finish_reason")
                      and "usage" in doc)
                if ok:
                    completed.append(doc["id"])
                    served_by[node_of(up)] += 1
                else:
                    bad.append(conv)
            elif st == 402:
                refused[0] += 1
            else:
                errors[0] += 1


threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
time.sleep(1.5)
before = len(completed)
check(control("kill", "killed"), "node A killed with SIGKILL mid-load")
time.sleep(2.0)
stop.set()
for t in threads:
    t.join()
check(before > 0 and len(completed) > before, "requests kept completing after the kill (%d before, %d after)"
      % (before, len(completed) - before))
check(not bad, "no 200 answer was truncated or malformed (%d bad)" % len(bad))
if KEYS:
    check(refused[0] > 0, "small balances ran out: %d requests refused with 402" % refused[0])
moved = all(node_of(chat(c, [SYSTEM, {"role": "user", "content": "where"}])[1]) == "B" for c in on_a)
check(moved, "node A's %d conversations are served by B while A is down" % len(on_a))

check(control("restart", "restarted"), "node A restarted")
back = False
for _ in range(40):  # nginx retries a failed server after fail_timeout
    if all(node_of(chat(c, [SYSTEM, {"role": "user", "content": "back"}])[1]) == "A" for c in on_a):
        back = True
        break
    time.sleep(0.25)
check(back, "node A's conversations return to A after its restart")

with open(os.path.join(CTL, "completed"), "w") as f:
    f.write("".join(i + "\n" for i in completed))
print("  %d requests completed under load, %d refused (402), %d errors while A died; served by A %d, B %d"
      % (len(completed), refused[0], errors[0], served_by["A"], served_by["B"]), flush=True)
sys.exit(1 if fails else 0)
