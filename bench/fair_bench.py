#!/usr/bin/python3
"""Benchmark of the scheduler's fairness between accounts, FCFS vs fair,
side by side, on `maas serve` with billing (standard library only).

For each of --sched fcfs and --sched fair it starts a fresh server (its own
ledger; accounts a, b, c; --max-running 8) and measures:
  1. a alone keeps 32 requests outstanding: a's throughput (completion
     tokens/s over 2 s).
  2. a keeps 32, then 64 requests outstanding (each ended one replaced at
     once) while c sends 15 short requests one at a time (from a process of
     its own): c's median time to first token, a's mean request latency
     meanwhile. Then, in the same flood, c pauses for 1 s and sends short
     requests for 1 s (each followed by a pause 3 times as long as it took:
     a light load), 4 times, and pauses last: a's throughput while c sends over a's throughput while c
     pauses (alternating, so that the machine's drift falls on both).
  3. a (weight 3) and b (weight 1) both flood 32 requests: the completion
     tokens streamed while both are backlogged (and a first request has
     ended: until then the slots went by arrival), a : b.
Rates are end to end (first request sent to last token). The machine may be
shared: the load average is printed.

usage: bench/fair_bench.py --model FILE [--bin build/maas] [--threads T] [--max-tokens 40]
Prints a table and, last, one JSON line.
"""
import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ap = argparse.ArgumentParser(description="maas scheduler fairness: fcfs vs fair")
ap.add_argument("--model", required=True)
ap.add_argument("--bin", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "maas"))
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--max-tokens", type=int, default=40)
ap.add_argument("--max-running", type=int, default=8)
args = ap.parse_args()


def adm(data, *a):
    r = subprocess.run([args.bin, "admin", "--data", data] + list(a), capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        sys.exit("maas admin %s: %s" % (" ".join(a), r.stderr.strip()))
    return r.stdout


def start(sched, tmp):
    data = os.path.join(tmp, sched)
    akf = os.path.join(tmp, "akf-" + sched)
    with open(os.open(akf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:  # a secret: mode 600
        f.write("sk-maas-admin-bench-" + os.urandom(16).hex() + "\n")
    adm(data, "price", "set", "m", "--input", "1", "--cached-input", "1", "--output", "1", "--from", "2020-01-01")
    keys = {}
    for name, w in (("a", 3), ("b", 1), ("c", 1)):
        acct = adm(data, "account", "create", name, "--credit", "1000000").strip().splitlines()[-1]
        adm(data, "account", "set", acct, "--weight", str(w))
        keys[name] = adm(data, "key", "create", acct).strip().splitlines()[-1]
    log = os.path.join(tmp, sched + ".log")
    cmd = [args.bin, "serve", "--model", "m=" + args.model, "--data", data, "--port", "0", "--threads",
           str(args.threads), "--max-running", str(args.max_running), "--ctx", "1024", "--sched", sched,
           "--admin-key-file", akf, "--timeout", "120"]
    out = open(log, "w")
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    for _ in range(600):
        with open(log) as f:
            m = re.findall(r"listening on http://[^:]+:(\d+)", f.read())
        if m:
            return p, int(m[-1]), keys
        if p.poll() is not None:
            break
        time.sleep(0.05)
    with open(log) as f:
        sys.exit("the server did not start:\n" + f.read())


def stream(port, key, prompt, max_tokens, stamps):
    body = {"model": "m", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/v1/completions", json.dumps(body).encode(),
              {"Content-Type": "application/json", "Authorization": "Bearer " + key})
    r = c.getresponse()
    if r.status != 200:
        sys.exit("request failed: %d %s" % (r.status, r.read()[:200]))
    while True:
        line = r.readline()
        if not line:
            break
        line = line.strip()
        if line.startswith(b"data: ") and line[6:] != b"[DONE]":
            obj = json.loads(line[6:])
            if obj.get("choices") and obj["choices"][0].get("text"):
                stamps.append(time.monotonic())
    c.close()


def flood(port, floods):
    """floods: [(key, n)]; returns per flood a list of (submit time, stamps)."""
    res = [[(0.0, []) for _ in range(n)] for _, n in floods]
    threads = []
    for f, (key, n) in enumerate(floods):
        for i in range(n):
            def one(f=f, i=i, key=key):
                st = []
                res[f][i] = (time.monotonic(), st)
                stream(port, key, "request %d of flood %d" % (i, f), args.max_tokens, st)
            threads.append(threading.Thread(target=one))
    for t in threads:
        t.start()
    return threads, res


def sustained(port, key, n, stop):
    """Keeps n requests of key outstanding until stop is set (each thread
    sends its next request when the last one ends). Returns the threads and
    the list of (submit time, stamps) of every request."""
    res, lock = [], threading.Lock()

    def loop(i):
        k = 0
        while not stop.is_set():
            st = []
            with lock:
                res.append((time.monotonic(), st))
            stream(port, key, "request %d.%d" % (i, k), args.max_tokens, st)
            k += 1
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, res


def c_short(port, keys, ttft, count=None, until=None, think=False):
    """c sends short requests one at a time: count of them, or until the
    monotonic time until; with think it pauses after each for 3 times as
    long as it took (a light load). Returns the time the last one ended."""
    k = 0
    while (count is not None and k < count) or (until is not None and time.monotonic() < until):
        b = []
        t0 = time.monotonic()
        stream(port, keys["c"], "short", 4, b)
        t1 = time.monotonic()
        ttft.append(b[0] - t0 if b else float("nan"))
        k += 1
        if think:
            time.sleep(3 * (t1 - t0))
    return time.monotonic()


def c_short_apart(port, keys, count):
    """c_short(count=count) in a child process, so that the flood's client
    threads do not delay the reading of c's first token. Returns the TTFTs."""
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rd)
        code = 0
        try:
            ttft = []
            c_short(port, keys, ttft, count=count)
            os.write(wr, json.dumps(ttft).encode())
        except BaseException:
            code = 1
        os._exit(code)
    os.close(wr)
    chunks = []
    while True:
        b = os.read(rd, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(rd)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks) or b"[]") or [float("nan")]


def light(port, keys, n, windows=4, w_s=1.0):
    """a keeps n requests outstanding while c sends 15 short ones, one at a
    time (from a process of its own): c's median TTFT, a's mean latency
    meanwhile; then c pauses and sends by turns (w_s seconds each, windows
    times, pausing last; a light load: after each request c pauses 3 times
    as long as it took): a's rate while c sends, a's rate while c pauses."""
    stop = threading.Event()
    threads, res = sustained(port, keys["a"], n, stop)
    time.sleep(1.0)  # the backlog builds up
    t_begin = time.monotonic()
    ttft = c_short_apart(port, keys, 15)
    t_end = time.monotonic()
    on, off = [], []
    for _ in range(windows + 1):
        t0 = time.monotonic()
        time.sleep(w_s)
        t1 = time.monotonic()
        off.append((t0, t1))
        if len(on) < windows:
            on.append((t1, c_short(port, keys, [], until=t1 + w_s, think=True)))
    stop.set()
    for t in threads:
        t.join()
    done = [(t, s) for t, s in res if s and t_begin <= max(s) <= t_end]
    lat = [max(s) - t for t, s in done] or [float("nan")]
    def rate(spans):
        return sum(1 for _, s in res for x in s for u, v in spans if u <= x <= v) / sum(v - u for u, v in spans)
    return statistics.median(ttft), statistics.mean(lat), rate(on), rate(off)


def alone(port, keys, n):
    """a keeps n requests outstanding for 2 s alone: a's rate."""
    stop = threading.Event()
    threads, res = sustained(port, keys["a"], n, stop)
    time.sleep(1.0)
    t_begin = time.monotonic()
    time.sleep(2.0)
    t_end = time.monotonic()
    stop.set()
    for t in threads:
        t.join()
    return sum(1 for _, s in res for x in s if t_begin <= x <= t_end) / (t_end - t_begin)


def weights(port, keys):
    threads, res = flood(port, [(keys["a"], 32), (keys["b"], 32)])
    for t in threads:
        t.join()
    starts = [min(min(s) for _, s in r if s) for r in res]
    last_starts = [max(min(s) for _, s in r if s) for r in res]
    first_end = min(max(s) for r in res for _, s in r if s)  # before it, slots went by arrival
    t0, t1 = max(max(starts), first_end), min(last_starts)
    if t1 <= t0:  # never both served while both waited (fcfs: all of a, then all of b)
        return float("nan")
    n = [sum(1 for _, s in r for t in s if t0 <= t <= t1) for r in res]
    return n[0] / max(n[1], 1)


def run(sched, tmp):
    p, port, keys = start(sched, tmp)
    try:
        a_alone = alone(port, keys, 32)
        r32 = light(port, keys, 32)
        r64 = light(port, keys, 64)
        w = weights(port, keys)
    finally:
        p.terminate()
        p.wait(timeout=60)
    return {"a_alone_tok_s": a_alone, "c_ttft_32_s": r32[0], "a_latency_32_s": r32[1], "a_tok_s_32": r32[2],
            "a_paused_32_tok_s": r32[3], "c_ttft_64_s": r64[0], "a_latency_64_s": r64[1], "a_tok_s_64": r64[2],
            "a_paused_64_tok_s": r64[3], "weights_3_1_split": w}


with tempfile.TemporaryDirectory() as tmp:
    print("load average before: %.2f %.2f %.2f" % os.getloadavg())
    out = {s: run(s, tmp) for s in ("fcfs", "fair")}
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())
rows = [
    ("c's TTFT, a flooding 32 (s)", "c_ttft_32_s"), ("c's TTFT, a flooding 64 (s)", "c_ttft_64_s"),
    ("a's mean latency at 32 (s)", "a_latency_32_s"), ("a's mean latency at 64 (s)", "a_latency_64_s"),
    ("a alone at 32 (tok/s)", "a_alone_tok_s"),
    ("a at 32, c sends / pauses (tok/s)", "a_tok_s_32"), ("", "a_paused_32_tok_s"),
    ("a at 64, c sends / pauses (tok/s)", "a_tok_s_64"), ("", "a_paused_64_tok_s"), ("a : b tokens, weights 3:1", "weights_3_1_split"),
]
print("%-34s %10s %10s" % ("", "fcfs", "fair"))
for label, k in rows:
    print("%-34s %10.3f %10.3f" % (label, out["fcfs"][k], out["fair"][k]))
for s in ("fcfs", "fair"):
    o = out[s]
    print("%s: c's TTFT 64 vs 32 = %.2fx; c's TTFT / a's latency = %.2f; a's throughput while c sends / while c pauses = "
          "%.2f at 32, %.2f at 64" % (s, o["c_ttft_64_s"] / o["c_ttft_32_s"], o["c_ttft_64_s"] / o["a_latency_64_s"],
                                      o["a_tok_s_32"] / o["a_paused_32_tok_s"], o["a_tok_s_64"] / o["a_paused_64_tok_s"]))
print(json.dumps(out))
