#!/usr/bin/python3
"""Structured-output benchmark: generation speed with a JSON schema
(response_format json_schema) against unconstrained generation, on the same
server, one stream and N concurrent streams, for each model given.

Starts `maas serve` with every --model, sends one warm-up request per model
and mode (the first request with a schema compiles it and fills the
grammar's mask cache, which later requests with the same schema share), then
alternates unconstrained and constrained runs --repeat times and reports
medians. Rate = completion tokens / wall time of the run (prefill included,
the same short prompt in both modes). The schema's outputs are longer than
--max-tokens, so both modes generate the same number of tokens.

usage: bench/grammar_bench.py --model NAME=FILE [--model NAME=FILE ...] [--threads 2]
                              [--clients 16] [--max-tokens 48] [--repeat 3]
Prints one line per model and stream count and, last, one JSON line.
"""
import argparse
import concurrent.futures
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

SCHEMA = {"type": "object", "properties": {
    "title": {"type": "string", "maxLength": 40},
    "items": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 30}, "count": {"type": "integer", "minimum": 0, "maximum": 1000},
        "ok": {"type": "boolean"}}, "required": ["name", "count", "ok"], "additionalProperties": False},
        "minItems": 8, "maxItems": 8}},
    "required": ["title", "items"], "additionalProperties": False}

ap = argparse.ArgumentParser()
ap.add_argument("--model", action="append", required=True, help="NAME=FILE")
ap.add_argument("--bin", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "maas"))
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--clients", type=int, default=16)
ap.add_argument("--max-tokens", type=int, default=48)
ap.add_argument("--repeat", type=int, default=3)
a = ap.parse_args()


def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def run(port, model, n, schema, seed0):
    def one(i):
        body = {"model": model, "prompt": "Write the inventory:", "max_tokens": a.max_tokens, "temperature": 1,
                "seed": seed0 + i}
        if schema:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "inv", "schema": SCHEMA}}
        return post(port, body)["usage"]["completion_tokens"]
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        toks = sum(ex.map(one, range(n)))
    return toks / (time.time() - t0), toks


def main():
    log = tempfile.NamedTemporaryFile(prefix="grammar_bench", suffix=".log", delete=False)
    args = [a.bin, "serve", "--no-auth", "--port", "0", "--threads", str(a.threads)]
    for m in a.model:
        args += ["--model", m]
    srv = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    port = None
    for _ in range(600):
        txt = open(log.name).read()
        m = re.search(r"listening on http://[^:]*:(\d+)", txt)
        if m:
            port = m.group(1)
            break
        if srv.poll() is not None:
            sys.exit("server did not start:\n" + txt)
        time.sleep(0.1)
    results = {}
    try:
        for spec in a.model:
            name = spec.split("=", 1)[0]
            t0 = time.time()
            run(port, name, 1, True, 1000)
            cold = time.time() - t0
            run(port, name, 1, False, 1000)
            for n in (1, a.clients):
                rates = {False: [], True: []}
                for r in range(a.repeat):
                    for schema in (False, True):
                        rates[schema].append(run(port, name, n, schema, 10 * r)[0])
                free, con = statistics.median(rates[False]), statistics.median(rates[True])
                results[f"{name}/{n}"] = {"free_tps": round(free, 2), "schema_tps": round(con, 2),
                                          "ratio": round(con / free, 3)}
                print(f"{name:14s} streams {n:2d}: unconstrained {free:7.2f} tok/s, schema {con:7.2f} tok/s, "
                      f"ratio {con / free:.3f}  (first schema request {cold:.2f} s)", flush=True)
    finally:
        srv.terminate()
        srv.wait()
        os.unlink(log.name)
    print(json.dumps(results))


main()
