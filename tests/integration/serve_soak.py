"""Soak under kills (run by serve_soak.sh): mixed streamed and non-streamed
requests from several accounts, some clients hanging up mid-stream, while
the server is SIGKILLed and restarted at random moments. Afterwards:
`maas admin audit` passes; every request a client saw complete has exactly
one ledger record with the cost it was told; a request whose client hung up
has at most one; no hold is left; every balance equals its credits minus
its settled costs. Prints the counts.

Arguments: BIN MODEL TMP SECONDS KILLS. Standard library only.
"""
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal

BIN, MODEL, TMP = sys.argv[1], sys.argv[2], sys.argv[3]
SECONDS, KILLS = float(sys.argv[4]), int(sys.argv[5])
DATA = os.path.join(TMP, "data")
AKF = os.path.join(TMP, "admin-key")
LOG = os.path.join(TMP, "serve.log")
N_ACCOUNTS, N_CLIENTS = 4, 6
state = {"port": 0, "proc": None}
failures = 0


def check(cond, what):
    global failures
    print(("ok   " if cond else "FAIL ") + what)
    sys.stdout.flush()
    if not cond:
        failures += 1


def micro(s):
    return int(Decimal(s) * 1000000)


def admin(*args):
    r = subprocess.run([BIN, "admin", "--data", DATA] + list(args), capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("maas admin %s: %s" % (" ".join(args), r.stderr.strip()))
    return r.stdout


def start_server():
    out = open(LOG, "a")
    cmd = [BIN, "serve", "--model", "tiny=" + MODEL, "--data", DATA, "--admin-key-file", AKF, "--port", "0",
           "--threads", "1", "--ctx", "512", "--timeout", "10"]
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    for _ in range(600):
        with open(LOG) as f:
            ports = re.findall(r"listening on http://[^:]+:(\d+)", f.read())
        if p.poll() is not None:
            break
        if len(ports) > state.get("starts", 0):
            state["starts"] = len(ports)
            state["proc"], state["port"] = p, int(ports[-1])
            return
        time.sleep(0.05)
    raise RuntimeError("the server did not start; see " + LOG)


def one_request(key, rng, i, n, done, hung):
    """One request of a random kind; records what the client saw."""
    kind = rng.randrange(4)  # 0 plain, 1 stream + usage, 2 stream, 3 stream abandoned
    body = {"model": "tiny", "messages": [{"role": "user", "content": "soak %d %d" % (i, n)}],
            "max_tokens": rng.randrange(1, 12), "temperature": 0}
    if kind:
        body["stream"] = True
    if kind == 1:
        body["stream_options"] = {"include_usage": True}
    c = http.client.HTTPConnection("127.0.0.1", state["port"], timeout=20)
    c.request("POST", "/v1/chat/completions", json.dumps(body).encode(),
              {"Content-Type": "application/json", "Authorization": "Bearer " + key})
    sock = c.sock
    r = c.getresponse()
    if r.status != 200:
        r.read()
        c.close()
        return
    if kind == 0:
        b = json.loads(r.read())
        done[b["id"]] = b["usage"]["cost"]
        c.close()
        return
    rid, cost, fin = None, None, False
    while True:
        line = r.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        if line[6:] == b"[DONE]":
            fin = True
            break
        obj = json.loads(line[6:])
        if "error" in obj:
            break
        rid = obj.get("id", rid)
        if obj.get("usage"):
            cost = obj["usage"]["cost"]
        if kind == 3 and rid:
            hung.add(rid)
            sock.shutdown(2)
            break
    c.close()
    if fin and rid:
        done[rid] = cost


def client(i, keys, done, hung, stop, counts):
    rng = random.Random(i * 7919 + os.getpid())
    n = 0
    while not stop.is_set():
        n += 1
        counts[i] += 1
        try:
            one_request(keys[rng.randrange(len(keys))], rng, i, n, done, hung)
        except (OSError, http.client.HTTPException, ValueError):
            time.sleep(0.05)  # the server is down: try again


def main():
    with open(AKF, "w") as f:
        f.write("sk-maas-admin-soak-" + os.urandom(16).hex() + "\n")
    os.chmod(AKF, 0o600)
    admin("price", "set", "tiny", "--input", "100", "--cached-input", "50", "--output", "200")
    accounts, keys = [], []
    for a in range(N_ACCOUNTS):
        aid = admin("account", "create", "soak%d" % a, "--credit", "100").strip().splitlines()[-1]
        accounts.append(aid)
        keys.append(admin("key", "create", aid).strip().splitlines()[-1])
    start_server()
    done, hung, stop = {}, set(), threading.Event()
    counts = [0] * N_CLIENTS
    ts = [threading.Thread(target=client, args=(i, keys, done, hung, stop, counts)) for i in range(N_CLIENTS)]
    for t in ts:
        t.start()
    rng = random.Random(os.getpid())
    kills = 0
    t_end = time.monotonic() + SECONDS
    gap = SECONDS / (KILLS + 1)
    while kills < KILLS:
        time.sleep(rng.uniform(0.5 * gap, 1.5 * gap) if time.monotonic() < t_end else 0.2)
        state["proc"].send_signal(signal.SIGKILL)
        state["proc"].wait()
        kills += 1
        start_server()
    time.sleep(max(0.0, min(2.0, t_end - time.monotonic())))
    stop.set()
    for t in ts:
        t.join()
    state["proc"].terminate()
    rc = state["proc"].wait(timeout=60)
    check(rc == 0, "the last server stopped cleanly")

    led = {}
    for row in json.loads(admin("--format", "json", "usage", "--by", "request"))["rows"]:
        led[row["request"]] = row
    missing = [r for r in done if r not in led]
    twice = [r for r in list(done) + list(hung) if r in led and led[r]["requests"] != 1]
    wrong = [r for r, c in done.items() if r in led and c is not None and micro(led[r]["cost"]) != micro(c)]
    check(done and not missing and not twice and not wrong,
          "every one of %d completed requests has exactly one record with the cost it was told "
          "(missing %d, twice %d, wrong cost %d); %d hung up mid-stream" %
          (len(done), len(missing), len(twice), len(wrong), len(hung)))
    bad = []
    for aid in accounts:
        a = json.loads(admin("--format", "json", "account", "show", aid))
        total = json.loads(admin("--format", "json", "usage", "--account", aid))["total"]
        if micro(a["held"]) != 0 or micro(a["balance"]) != micro(a["credited"]) - micro(total["cost"]):
            bad.append("%s: balance %s held %s credited %s cost %s" % (aid, a["balance"], a["held"], a["credited"],
                                                                      total["cost"]))
    check(not bad, "no hold left, and every balance = credits - settled costs %s" % bad)
    r = subprocess.run([BIN, "admin", "--data", DATA, "audit"], capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "maas admin audit passes: %s" % (r.stdout.strip() or r.stderr.strip()))
    print("soak: %.0f s, %d requests sent, %d completed, %d hung up, %d kills, %d ledger records"
          % (SECONDS, sum(counts), len(done), len(hung), kills, len(led)))
    print("%d failures" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        if state["proc"] and state["proc"].poll() is None:
            state["proc"].kill()
            state["proc"].wait()
