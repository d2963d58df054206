#!/usr/bin/python3
"""Benchmark of `maas serve` over HTTP (standard library only).

Starts `maas serve` on a model and measures, through streaming chat requests:
  (a) one client:       generation tokens/s of a single stream
  (b) N clients at once: aggregate generation tokens/s, and the ratio (b)/(a)
  (c) a T-turn chat (each turn sends the whole history with the replies as
      returned): time to first token per turn and TTFT(last)/TTFT(first)
(a) and (b) alternate --repeat times and medians are reported (the machine
may be shared: the load average and the server's CPU seconds are printed
beside the wall-clock figures). Rates are end to end: completion tokens over
the time from sending the request(s) to the last token, prefill included;
the decode-only rates (tokens between first and last token) are printed too.

usage: bench/serve_bench.py --model FILE [--bin build/maas] [--threads T] [--clients 16]
                            [--max-tokens 128] [--turns 10] [--turn-tokens 32] [--repeat 3]
Prints human-readable lines and, last, one JSON line.
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

ap = argparse.ArgumentParser(description="maas serve benchmark: single vs concurrent streams, multi-turn TTFT")
ap.add_argument("--model", required=True)
ap.add_argument("--bin", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "maas"))
ap.add_argument("--threads", type=int, default=0, help="serve --threads (default: the server's default)")
ap.add_argument("--ctx", type=int, default=4096)
ap.add_argument("--clients", type=int, default=16)
ap.add_argument("--max-tokens", type=int, default=128, help="tokens per stream in (a) and (b)")
ap.add_argument("--turns", type=int, default=10)
ap.add_argument("--turn-tokens", type=int, default=32, help="reply length per chat turn")
ap.add_argument("--repeat", type=int, default=3)
ap.add_argument("--metered", action="store_true",
                help="serve with a ledger (API key, holds, settlement) instead of --no-auth, to measure metering's cost")
args = ap.parse_args()

NAME = "bench"


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- start the server ----------------------------------------------------------------------------------------
help_text = subprocess.run([args.bin, "serve", "--help"], capture_output=True, text=True).stdout
cmd = [args.bin, "serve", "--model", "%s=%s" % (NAME, args.model), "--port", "0", "--ctx", str(args.ctx),
       "--timeout", "600"]
AUTH = {}
if args.metered:
    # a fresh ledger: one account with ample credit, a price for the model, one key
    data = tempfile.mkdtemp(prefix="serve_bench_ledger_")

    def admin(*a):
        r = subprocess.run([args.bin, "admin", "--data", data] + list(a), capture_output=True, text=True, check=True)
        return r.stdout.strip().splitlines()[-1]
    account = admin("account", "create", "bench", "--credit", "1000000")
    admin("price", "set", NAME, "--input", "0.5", "--cached-input", "0.25", "--output", "1.5")
    AUTH = {"Authorization": "Bearer " + admin("key", "create", account)}
    cmd += ["--data", data]
elif "--no-auth" in help_text:
    cmd.append("--no-auth")
if args.threads:
    cmd += ["--threads", str(args.threads)]
log = tempfile.NamedTemporaryFile(prefix="serve_bench_", suffix=".log", delete=False)
srv = subprocess.Popen(cmd, stdout=log, stderr=log)
port = None
t0 = time.time()
while time.time() - t0 < 120 and port is None:
    if srv.poll() is not None:
        sys.exit("maas serve exited: " + open(log.name).read())
    m = re.search(r"listening on http://[^:]*:(\d+)", open(log.name).read())
    port = int(m.group(1)) if m else None
    time.sleep(0.1)
if port is None:
    srv.kill()
    sys.exit("maas serve did not start: " + open(log.name).read())


def stream_chat(messages, max_tokens):
    """One streaming chat at temperature 0: dict(t_send, t_first, t_last, times of content chunks, usage)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"model": NAME, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    t_send = time.monotonic()
    c.request("POST", "/v1/chat/completions", body=json.dumps(body), headers=dict({"Content-Type": "application/json"}, **AUTH))
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError("HTTP %d: %s" % (r.status, r.read()[:300]))
    out = {"t_send": t_send, "times": [], "usage": None, "text": ""}
    while True:
        line = r.readline()
        if not line:
            break
        if not line.startswith(b"data: "):
            continue
        p = line[6:].strip()
        if p == b"[DONE]":
            break
        ev = json.loads(p)
        if ev.get("usage"):
            out["usage"] = ev["usage"]
        for ch in ev.get("choices", []):
            piece = ch.get("delta", {}).get("content")
            if piece:
                out["times"].append(time.monotonic())
                out["text"] += piece
    c.close()
    if not out["times"] or not out["usage"]:
        raise RuntimeError("stream without content or usage")
    out["t_first"], out["t_last"] = out["times"][0], out["times"][-1]
    return out


TOPICS = ["the history of bridges", "how bread rises", "the tides", "a lighthouse keeper", "trains in winter",
          "the moons of Jupiter", "a chess tournament", "mountain weather", "bees and flowers", "paper making",
          "the first clocks", "deep sea fish", "a small bakery", "desert night skies", "old maps", "river deltas"]


def prompt(i, run):
    return [{"role": "system", "content": "You are a helpful assistant. Run %d." % run},
            {"role": "user", "content": "Please write a long, detailed story about %s, client %d." % (TOPICS[i % 16], i)}]


def single(run):
    r = stream_chat(prompt(0, run), args.max_tokens)
    n = r["usage"]["completion_tokens"]
    return {"tokens": n, "e2e": n / (r["t_last"] - r["t_send"]),
            "decode": (len(r["times"]) - 1) / (r["t_last"] - r["t_first"]), "ttft": r["t_first"] - r["t_send"]}


def concurrent(run):
    res = [None] * args.clients
    errs = []

    def one(i):
        try:
            res[i] = stream_chat(prompt(i, run), args.max_tokens)
        except Exception as e:  # noqa: BLE001 - reported below
            errs.append(repr(e))
    ts = [threading.Thread(target=one, args=(i,)) for i in range(args.clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        raise RuntimeError("concurrent streams failed: %s" % errs[:3])
    n = sum(r["usage"]["completion_tokens"] for r in res)
    t_send = min(r["t_send"] for r in res)
    t_end = max(r["t_last"] for r in res)
    # decode window: every stream has its first token and none has finished
    w0, w1 = max(r["t_first"] for r in res), min(r["t_last"] for r in res)
    in_win = sum(sum(1 for t in r["times"] if w0 < t <= w1) for r in res)
    return {"tokens": n, "e2e": n / (t_end - t_send), "decode": in_win / (w1 - w0) if w1 > w0 else float("nan"),
            "ttft_median": statistics.median(r["t_first"] - r["t_send"] for r in res)}


def chat_turns(run):
    history = [{"role": "system", "content": "Conversation %d-%d. You are a helpful assistant who answers every "
                "question about cooking with care and in detail." % (run, os.getpid())}]
    rows = []
    for turn in range(1, args.turns + 1):
        history.append({"role": "user", "content": "Question %d: what should I cook tonight with rice, beans, "
                        "two tomatoes and an onion, and how long will it take?" % turn})
        r = stream_chat(history, args.turn_tokens)
        rows.append({"ttft": r["t_first"] - r["t_send"], "prompt": r["usage"]["prompt_tokens"],
                     "cached": r["usage"]["prompt_tokens_details"]["cached_tokens"]})
        history.append({"role": "assistant", "content": r["text"]})
    return rows


pid = srv.pid
result = {}
try:
    load0 = loadavg()
    print("model %s, server %s, %d clients x %d tokens, %d turns x %d tokens, repeat %d"
          % (args.model, " ".join(cmd[1:]), args.clients, args.max_tokens, args.turns, args.turn_tokens, args.repeat))
    print("load average at start: %.2f %.2f %.2f (%d CPUs)" % (*load0, os.cpu_count()))
    stream_chat(prompt(99, 0), 8)  # warm-up: pages the model in
    singles, concs = [], []
    for rep in range(args.repeat):
        c0 = cpu_seconds(pid)
        s = single(rep + 1)
        s["cpu"] = cpu_seconds(pid) - c0
        c0 = cpu_seconds(pid)
        c = concurrent(rep + 1)
        c["cpu"] = cpu_seconds(pid) - c0
        singles.append(s)
        concs.append(c)
        print("  run %d: 1 client %.1f tok/s (decode %.1f, TTFT %.3fs, %.1f tok/CPU-s) | %d clients %.1f tok/s "
              "(decode %.1f, median TTFT %.2fs, %.1f tok/CPU-s) | ratio %.2f | load %.2f"
              % (rep + 1, s["e2e"], s["decode"], s["ttft"], s["tokens"] / s["cpu"], args.clients, c["e2e"],
                 c["decode"], c["ttft_median"], c["tokens"] / c["cpu"], c["e2e"] / s["e2e"], loadavg()[0]))
    med = lambda xs, k: statistics.median(x[k] for x in xs)  # noqa: E731
    a, b = med(singles, "e2e"), med(concs, "e2e")
    ad, bd = med(singles, "decode"), med(concs, "decode")
    a_cpu = statistics.median(x["tokens"] / x["cpu"] for x in singles)
    b_cpu = statistics.median(x["tokens"] / x["cpu"] for x in concs)
    print("(a) single client:      %.1f tokens/s (decode only %.1f; %.1f tokens per server CPU-second)" % (a, ad, a_cpu))
    print("(b) %d clients at once: %.1f tokens/s aggregate (decode only %.1f; %.1f tokens per server CPU-second)"
          % (args.clients, b, bd, b_cpu))
    print("    ratio (b)/(a) = %.2f (decode only %.2f; per CPU-second %.2f)  [target >= 3]"
          % (b / a, bd / ad, b_cpu / a_cpu))

    ratios, all_rows = [], []
    for rep in range(args.repeat):
        rows = chat_turns(rep + 1)
        all_rows.append(rows)
        ratios.append(rows[-1]["ttft"] / rows[0]["ttft"])
    print("(c) %d-turn chat, time to first token per turn (median of %d conversations):" % (args.turns, args.repeat))
    ttft_med = []
    for t in range(args.turns):
        v = statistics.median(rows[t]["ttft"] for rows in all_rows)
        ttft_med.append(v)
        r0 = all_rows[0][t]
        print("    turn %2d: TTFT %.3fs   prompt %4d tokens, %4d cached" % (t + 1, v, r0["prompt"], r0["cached"]))
    ratio_c = statistics.median(ratios)
    print("    TTFT(turn %d)/TTFT(turn 1) = %.2f (per conversation: %s)  [target <= 1.5]"
          % (args.turns, ratio_c, ", ".join("%.2f" % x for x in ratios)))
    load1 = loadavg()
    print("load average at end: %.2f %.2f %.2f" % tuple(load1))
    result = {"model": os.path.basename(args.model), "metered": args.metered, "clients": args.clients, "max_tokens": args.max_tokens,
              "repeat": args.repeat, "single_tok_s": round(a, 2), "concurrent_tok_s": round(b, 2),
              "ratio": round(b / a, 3), "single_decode_tok_s": round(ad, 2), "concurrent_decode_tok_s": round(bd, 2),
              "decode_ratio": round(bd / ad, 3), "single_tok_per_cpu_s": round(a_cpu, 2),
              "concurrent_tok_per_cpu_s": round(b_cpu, 2), "turns": args.turns,
              "ttft_s": [round(x, 4) for x in ttft_med], "ttft_ratio": round(ratio_c, 3),
              "cached_tokens": [r["cached"] for r in all_rows[0]], "prompt_tokens": [r["prompt"] for r in all_rows[0]],
              "loadavg_start": load0, "loadavg_end": load1}
    print(json.dumps(result))
finally:
    srv.terminate()
    try:
        srv.wait(timeout=30)
    except subprocess.TimeoutExpired:
        srv.kill()
        srv.wait()
    os.unlink(log.name)
