"""Helpers the side-by-side benchmarks share (standard library only): a free
port, a server started and waited for until /health answers 200, and a
server stopped."""
import http.client
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


def healthy(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/health")
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except OSError:
        return False


def start(cmd, port, log, timeout_s=180):
    """Starts cmd (its output to the file log) and waits until it answers
    /health on port; exits with the log's tail when it does not."""
    p = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        if healthy(port):
            return p
        if p.poll() is not None:
            break
        time.sleep(0.1)
    p.kill()
    sys.exit("%s did not start:\n%s" % (cmd[0], open(log).read()[-3000:]))


def stop(p):
    p.terminate()
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
