#!/usr/bin/python3
"""`maas perplexity` against an independent float64 NumPy computation
(tests/ref/gguf_ref.py's forward pass) on the same file and the same token
ids, in both methods: llama-perplexity's chunks (first token -> BOS when the
vocabulary adds one, only the second half of each chunk scored) and the
sliding window (--stride). Tolerance 1e-4 relative on PPL: the KV cache is
f32 here (--kv-type f32), so what remains is float32 accumulation in maas.
Models: a qwen3 with a learned BPE vocabulary (no BOS) and, when
../shared/testdata is there, a llama with the llama-spm vocabulary (adds
BOS). Also the errors: missing file, text too short, ctx over the model's.
Exit 0 pass, 1 fail, 77 skip.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
import gguf_ref as R  # noqa: E402

MAAS = os.environ.get("MAAS_BIN", os.path.join(ROOT, "build", "maas"))
# ../shared from the project root (a worktree of it sits one level deeper)
SPM = next((p for p in (os.path.join(ROOT, up, "shared", "testdata", "tokenizer", "llama-spm.gguf")
                        for up in ("..", os.path.join("..", ".."))) if os.path.exists(p)), "../shared/testdata")
TOL = 1e-4
failures = []


def run(*args, ok=True):
    p = subprocess.run([MAAS] + list(args), capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise SystemExit("FAIL: maas %s: %s" % (" ".join(args), p.stderr.strip()))
    return p


def ids_of(model, text_path, add_bos):
    out = run("tokenize", "--model", model, "--file", text_path, *(["--bos"] if add_bos else [])).stdout.split()
    return [int(x) for x in out]


def ref_windows(m, ids, ctx, stride, bos):
    """(start, n, score_from) of each window, as the help text describes."""
    if not stride:
        return [(i * ctx, ctx, ctx // 2 + 1) for i in range(len(ids) // ctx)]
    wins, prev, end = [], 0, ctx
    while True:
        end = min(end, len(ids))
        if end <= prev:
            return wins
        start = end - ctx
        wins.append((start, ctx, 1 if prev == 0 else prev - start))
        prev, end = end, end + stride


def ref_ppl(m, ids, ctx, stride, bos):
    nlls = []
    for start, n, frm in ref_windows(m, ids, ctx, stride, bos):
        w = list(ids[start:start + n])
        if bos is not None:
            w[0] = bos
        logits, _ = m.forward(w)
        lp = R.log_softmax(logits.astype(np.float64))
        nlls += [-lp[p - 1, w[p]] for p in range(frm, n)]
    nlls = np.array(nlls)
    mean = nlls.mean()
    ppl = math.exp(mean)
    se = ppl * math.sqrt((np.mean(nlls * nlls) - mean * mean) / (len(nlls) - 1))
    return ppl, se, len(nlls)


def check(name, model, text, ctx, stride=0):
    g = R.GGUFFile(model)
    add_bos = bool(g.kv.get("tokenizer.ggml.add_bos_token", False))
    bos = int(g.kv["tokenizer.ggml.bos_token_id"]) if add_bos else None
    ids = ids_of(model, text, add_bos)
    args = ["perplexity", "--model", model, "--file", text, "--ctx", str(ctx), "--kv-type", "f32", "--json",
            "--threads", "2"]
    if stride:
        args += ["--stride", str(stride)]
    got = json.loads(run(*args).stdout)
    want, want_se, n_scored = ref_ppl(R.Model(model), ids, ctx, stride, bos)
    rel = abs(got["ppl"] - want) / want
    rel_se = abs(got["se"] - want_se) / want_se
    line = "%s ctx %d stride %d: maas %.6f +/- %.5f, numpy %.6f +/- %.5f, rel %.2e (%d tokens scored)" % (
        name, ctx, stride, got["ppl"], got["se"], want, want_se, rel, n_scored)
    print(line)
    if rel > TOL or rel_se > 1e-3 or got["n_tokens_scored"] != n_scored or got["n_tokens"] != len(ids) \
            or got["add_bos"] != add_bos:
        failures.append(line + " / " + json.dumps(got))


def expect_error(what, args, needle):
    p = run(*args, ok=False)
    if p.returncode == 0 or needle not in p.stderr:
        failures.append("%s: rc %d, stderr %r (wanted %r)" % (what, p.returncode, p.stderr.strip(), needle))
    else:
        print("ok: %s -> %s" % (what, p.stderr.strip().splitlines()[0]))


def main():
    if not os.access(MAAS, os.X_OK):
        print("skip: %s not built" % MAAS)
        return 77
    if run("perplexity", "--help", ok=False).returncode != 0:
        print("skip: this maas has no perplexity command")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        src = open(os.path.join(ROOT, "data", "vocab-train.txt"), encoding="utf-8").read()
        text = os.path.join(tmp, "text.txt")
        open(text, "w", encoding="utf-8").write(src[:3000])
        short = os.path.join(tmp, "short.txt")
        open(short, "w").write("In the beginning")
        q3 = os.path.join(tmp, "q3.gguf")
        run("mkmodel", "--arch", "qwen3", "--train-vocab", text, "--vocab-size", "400", "--n-embd", "64",
            "--n-layer", "2", "--n-head", "4", "--n-ff", "128", "--n-ctx", "256", "-o", q3)
        check("qwen3/bpe", q3, text, 64)
        check("qwen3/bpe", q3, text, 48, stride=20)
        if os.path.exists(SPM):
            ll = os.path.join(tmp, "llama.gguf")
            run("mkmodel", "--arch", "llama", "--vocab", SPM, "--n-embd", "32", "--n-layer", "1", "--n-head", "2",
                "--n-ff", "64", "-o", ll)
            check("llama/spm", ll, text, 128)
            check("llama/spm", ll, text, 96, stride=64)
        else:
            print("note: %s absent: the BOS-adding vocabulary is not tested" % SPM)
        p = json.loads(run("perplexity", "--model", q3, "--file", text, "--ctx", "32", "--chunks", "2",
                           "--json").stdout)
        if p["n_chunks"] != 2 or p["n_tokens_scored"] != 2 * 15:
            failures.append("--chunks 2: %s" % json.dumps(p))
        expect_error("missing file", ["perplexity", "--model", q3, "--file", os.path.join(tmp, "nope"), "--ctx", "32"], "nope")
        expect_error("text too short", ["perplexity", "--model", q3, "--file", short, "--ctx", "64"],
                     "needs at least 128")
        expect_error("ctx over the model's", ["perplexity", "--model", q3, "--file", text, "--ctx", "512"],
                     "larger than the model's context length 256")
        expect_error("stride over ctx", ["perplexity", "--model", q3, "--file", text, "--ctx", "32",
                                         "--stride", "33"], "larger than --ctx")
        expect_error("bad ctx", ["perplexity", "--model", q3, "--file", text, "--ctx", "x"], "--ctx")
        expect_error("no model", ["perplexity", "--file", text], "--model")
        expect_error("missing model", ["perplexity", "--model", os.path.join(tmp, "m.gguf"), "--file", text],
                     "m.gguf")
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
