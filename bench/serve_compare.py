#!/usr/bin/python3
"""Serving side by side: `maas serve` and llama.cpp's `llama-server -np N`
on the same GGUF file, the same threads and the same streaming load
(standard library only).

Both servers run at once (each started once, warmed up); each round sends the
same load to maas, then to llama-server:
  (a) one client: a streamed completion of --max-tokens tokens;
  (b) --clients clients at once, each a streamed completion of --max-tokens.
Prompts are about --prompt-words words of the shipped book (~100 tokens),
different per client and round, at temperature 0, through /v1/completions
(no chat template involved). Rates are end to end: completion tokens (each
server's own usage, else its content chunks) over the time from sending the
request(s) to the last token. The machine may be shared: both servers idle
while the other is measured, and the load average is printed. Medians over
--rounds and the median of the per-round ratios maas / llama.cpp.

usage: bench/serve_compare.py --model FILE --llama-server PATH [--bin build/maas] [--threads 2]
                              [--clients 16] [--max-tokens 64] [--prompt-words 80] [--rounds 3]
Prints a table and, last, one JSON line.
"""
import argparse
import http.client
import json
import os
import random
import re
import statistics
import tempfile
import threading
import time

from peer import free_port, start, stop

HERE = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser(description="maas serve vs llama-server: one stream and N concurrent streams")
ap.add_argument("--model", required=True)
ap.add_argument("--llama-server", required=True)
ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "maas"))
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--clients", type=int, default=16)
ap.add_argument("--max-tokens", type=int, default=64)
ap.add_argument("--prompt-words", type=int, default=80)
ap.add_argument("--rounds", type=int, default=3)
a = ap.parse_args()
CTX = 512  # per sequence: prompt + output fit with room


def stream(port, text):
    """A streamed completion at temperature 0: (t_send, t_last, completion tokens)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"model": "m", "prompt": text, "max_tokens": a.max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    t_send = time.monotonic()
    c.request("POST", "/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError("port %d: HTTP %d: %s" % (port, r.status, r.read()[:300]))
    chunks, usage, t_last = 0, None, t_send
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
            usage = ev["usage"]
        for ch in ev.get("choices") or []:
            if ch.get("text"):
                chunks += 1
                t_last = time.monotonic()
    c.close()
    n = usage.get("completion_tokens") if usage else None
    return t_send, t_last, n if n else chunks


def prompts(n, seed):
    with open(os.path.join(HERE, "..", "data", "vocab-train.txt")) as f:
        book = re.findall(r"[A-Za-z]+[,.;]?", f.read())
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        i = rnd.randrange(len(book) - a.prompt_words)
        out.append(" ".join(book[i:i + a.prompt_words]))
    return out


def single(port, text):
    t0, t1, n = stream(port, text)
    return n / (t1 - t0), n


def concurrent(port, texts):
    res, errs = [None] * len(texts), []

    def one(i):
        try:
            res[i] = stream(port, texts[i])
        except Exception as e:  # noqa: BLE001 - reported below
            errs.append(repr(e))
    ts = [threading.Thread(target=one, args=(i,)) for i in range(len(texts))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        raise RuntimeError("concurrent streams failed: %s" % errs[:3])
    n = sum(r[2] for r in res)
    return n / (max(r[1] for r in res) - min(r[0] for r in res)), n


def main():
    with tempfile.TemporaryDirectory() as tmp:
        mport, lport = free_port(), free_port()
        # The same KV room for both: llama-server's -c is the total over its
        # -np slots; maas counts blocks of 16 positions (its default, 4
        # contexts, would hold only 4 of the 16 sequences' worth).
        maas = start([a.bin, "serve", "--no-auth", "--model", "m=" + a.model, "--host", "127.0.0.1", "--port",
                      str(mport), "--threads", str(a.threads), "--ctx", str(CTX), "--max-running", str(a.clients),
                      "--kv-blocks", str(CTX * a.clients // 16), "--timeout", "600"], mport,
                     os.path.join(tmp, "maas.log"))
        llama = start([a.llama_server, "-m", a.model, "--host", "127.0.0.1", "--port", str(lport), "-t",
                       str(a.threads), "-tb", str(a.threads), "-np", str(a.clients), "-c", str(CTX * a.clients)],
                      lport, os.path.join(tmp, "llama.log"))
        servers = [("maas", mport), ("llama.cpp", lport)]
        rows = {s: {"single": [], "conc": []} for s, _ in servers}
        load0 = os.getloadavg()
        try:
            for name, port in servers:  # warm-up: pages the model in
                single(port, prompts(1, 999)[0])
            for r in range(a.rounds):
                texts = prompts(a.clients + 1, r)
                for name, port in servers:
                    s, ns = single(port, texts[0])
                    c, nc = concurrent(port, texts[1:])
                    rows[name]["single"].append(s)
                    rows[name]["conc"].append(c)
                    print("round %d %-9s 1 client %6.1f tok/s (%d tokens) | %d clients %6.1f tok/s (%d tokens) | "
                          "ratio %.2f | load %.2f" % (r + 1, name, s, ns, a.clients, c, nc, c / s, os.getloadavg()[0]))
        finally:
            stop(maas)
            stop(llama)
    med = {n: {k: statistics.median(v) for k, v in d.items()} for n, d in rows.items()}
    rat = {k: statistics.median(x / y for x, y in zip(rows["maas"][k], rows["llama.cpp"][k])) for k in ("single", "conc")}
    print("\n%-34s %10s %10s %8s" % ("", "llama.cpp", "maas", "ratio"))
    print("%-34s %10.1f %10.1f %7.2fx" % ("1 client, tok/s", med["llama.cpp"]["single"], med["maas"]["single"],
                                          rat["single"]))
    print("%-34s %10.1f %10.1f %7.2fx" % ("%d clients at once, tok/s" % a.clients, med["llama.cpp"]["conc"],
                                          med["maas"]["conc"], rat["conc"]))
    print("%-34s %10.2f %10.2f" % ("concurrent / single", med["llama.cpp"]["conc"] / med["llama.cpp"]["single"],
                                   med["maas"]["conc"] / med["maas"]["single"]))
    print("load average %.2f at start, %.2f at end; %d rounds, medians; ratio = median of per-round maas / llama.cpp"
          % (load0[0], os.getloadavg()[0], a.rounds))
    print(json.dumps({"model": os.path.basename(a.model), "threads": a.threads, "clients": a.clients,
                      "max_tokens": a.max_tokens, "rounds": rows, "ratio_single": round(rat["single"], 3),
                      "ratio_concurrent": round(rat["conc"], 3)}))


main()
