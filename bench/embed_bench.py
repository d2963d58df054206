#!/usr/bin/python3
"""Embedding throughput of `maas serve` over HTTP (standard library only).

Makes a BERT-base-shaped model unless --model is given (`maas mkmodel --arch
bert`, 768 x 12 layers, 12 heads, n_ff 3072, q8_0, random weights, the
bert-bge WordPiece vocabulary when ../shared has it), starts `maas serve` on
it, and sends N inputs of about L tokens each to /v1/embeddings as R requests
of N/R inputs, C at a time. Reports tokens/s (the usage's prompt_tokens over
the wall time from the first request to the last answer), inputs/s, and the
server's CPU seconds; --repeat runs, median.

With --llama-server PATH (llama.cpp's llama-server, as
../shared/tools/llama-baseline.sh builds it) it also starts
`llama-server --embeddings` on the same file, same threads, and runs the same
requests against both, interleaved (maas, then llama.cpp, in each round):
medians of each and the median of the per-round ratios. Each server's
tokens are its own usage.prompt_tokens (the same WordPiece vocabulary).

usage: bench/embed_bench.py [--model FILE] [--bin build/maas] [--threads T] [--inputs 256] [--tokens 64]
                            [--requests 8] [--concurrency 2] [--repeat 3] [--llama-server PATH]
Prints human-readable lines and, last, one JSON line.
"""
import argparse
import http.client
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from peer import free_port, stop
from peer import start as start_peer

HERE = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser(description="maas /v1/embeddings throughput")
ap.add_argument("--model")
ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "maas"))
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--inputs", type=int, default=256)
ap.add_argument("--tokens", type=int, default=64, help="about this many tokens per input")
ap.add_argument("--requests", type=int, default=8)
ap.add_argument("--concurrency", type=int, default=2)
ap.add_argument("--repeat", type=int, default=3)
ap.add_argument("--llama-server", help="llama.cpp's llama-server: compare with it, interleaved")
ap.add_argument("--llama-np", type=int, default=0, help="llama-server's slots (default: the inputs in flight)")
a = ap.parse_args()


def make_model(tmp):
    path = os.path.join(tmp, "bert-base-q8_0.gguf")
    vocab = os.path.join(HERE, "..", "..", "shared", "testdata", "tokenizer", "bert-bge.gguf")
    v = ["--vocab", vocab] if os.path.exists(vocab) else ["--train-vocab", os.path.join(HERE, "..", "data",
                                                                                       "vocab-train.txt")]
    subprocess.run([a.bin, "mkmodel", "--arch", "bert"] + v + ["--n-embd", "768", "--n-layer", "12", "--n-head",
                   "12", "--n-ff", "3072", "--type", "q8_0", "-o", path], check=True, stdout=subprocess.DEVNULL)
    return path


def texts(n, words):
    """n texts of about `words` words of the shipped book (1 word ~ 1 token, plus [CLS]/[SEP])."""
    with open(os.path.join(HERE, "..", "data", "vocab-train.txt")) as f:
        book = re.findall(r"[A-Za-z]+", f.read())
    rnd = random.Random(1)
    out = []
    for _ in range(n):
        i = rnd.randrange(len(book) - words)
        out.append(" ".join(book[i:i + words]))
    return out


def start(model, log):
    cmd = [a.bin, "serve", "--no-auth", "--model", "emb=" + model, "--port", "0", "--timeout", "600"]
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    p = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    for _ in range(600):
        m = re.findall(r"listening on http://[^:]+:(\d+)", open(log).read())
        if m:
            return p, int(m[-1])
        if p.poll() is not None:
            break
        time.sleep(0.05)
    sys.exit("the server did not start:\n" + open(log).read())


def start_llama(model, log):
    """llama-server --embeddings on the same file, set up to batch as much as
    maas does: it runs each input in a slot of its own, so one slot per input
    of the requests in flight (--llama-np, default all of them), each slot a
    context of 2 x --tokens (its attention spans the slot's cells only), and a
    batch that holds them all."""
    port = free_port()
    np_ = a.llama_np or a.inputs // a.requests * a.concurrency
    n_ctx = np_ * 2 * a.tokens
    n_batch = max(2048, np_ * a.tokens * 3 // 2)
    cmd = [a.llama_server, "-m", model, "--embeddings", "--host", "127.0.0.1", "--port", str(port),
           "-c", str(n_ctx), "-b", str(n_batch), "-ub", str(n_batch), "-np", str(np_)]
    if a.threads:
        cmd += ["-t", str(a.threads), "-tb", str(a.threads)]
    return start_peer(cmd, port, log), port


def post(port, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/v1/embeddings", json.dumps(body).encode(), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = json.loads(r.read())
    c.close()
    if r.status != 200:
        sys.exit("HTTP %d: %s" % (r.status, data))
    return data["usage"]["prompt_tokens"]


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def run_once(port, pid, inputs):
    per = len(inputs) // a.requests
    batches = [inputs[i * per:(i + 1) * per] for i in range(a.requests)]
    tokens = [0] * len(batches)
    nxt = [0]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(batches):
                return
            tokens[i] = post(port, {"model": "emb", "input": batches[i]})

    c0, t0 = cpu_s(pid), time.time()
    ts = [threading.Thread(target=worker) for _ in range(a.concurrency)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.time() - t0
    return sum(tokens), wall, cpu_s(pid) - c0


def main():
    with tempfile.TemporaryDirectory() as tmp:
        model = a.model or make_model(tmp)
        p, port = start(model, os.path.join(tmp, "serve.log"))
        lp, lport = start_llama(model, os.path.join(tmp, "llama.log")) if a.llama_server else (None, None)
        try:
            inputs = texts(a.inputs, a.tokens - 4)
            post(port, {"model": "emb", "input": inputs[:4]})  # warm up
            if lp:
                post(lport, {"model": "emb", "input": inputs[:4]})
            runs, lruns = [], []
            for r in range(a.repeat):
                tok, wall, cpu = run_once(port, p.pid, inputs)
                runs.append((tok / wall, tok, wall, cpu))
                print("run %d: %d tokens in %d inputs, %.2f s: %.0f tokens/s, %.1f inputs/s, server CPU %.2f s" %
                      (r + 1, tok, len(inputs), wall, tok / wall, len(inputs) / wall, cpu))
                if lp:
                    tok, wall, cpu = run_once(lport, lp.pid, inputs)
                    lruns.append((tok / wall, tok, wall, cpu))
                    print("       llama-server: %d tokens, %.2f s: %.0f tokens/s, %.1f inputs/s, server CPU %.2f s;"
                          " maas / llama.cpp %.2f" % (tok, wall, tok / wall, len(inputs) / wall, cpu,
                                                      runs[-1][0] / lruns[-1][0]))
        finally:
            stop(p)
            if lp:
                stop(lp)
    med = statistics.median(x[0] for x in runs)
    print("median: %.0f tokens/s (%d inputs of ~%d tokens, %d requests, %d at a time; load %.2f)" %
          (med, a.inputs, runs[0][1] // a.inputs, a.requests, a.concurrency, os.getloadavg()[0]))
    out = {"tokens_per_s": round(med), "inputs": a.inputs, "tokens": runs[0][1], "runs": [round(x[0]) for x in runs]}
    if lruns:
        lmed = statistics.median(x[0] for x in lruns)
        ratio = statistics.median(x[0] / y[0] for x, y in zip(runs, lruns))
        print("llama-server median: %.0f tokens/s (%d tokens per run); maas / llama.cpp, median of the per-round "
              "ratios: %.2f" % (lmed, lruns[0][1], ratio))
        out.update({"llama_tokens_per_s": round(lmed), "llama_tokens": lruns[0][1],
                    "llama_runs": [round(x[0]) for x in lruns], "ratio": round(ratio, 3)})
    print(json.dumps(out))


main()
