#!/usr/bin/python3
"""maas's embeddings (`maas embed --json`) against the float64 NumPy reference
(gguf_ref.Bert and the decoders' final normed hidden states), for every
pooling type (none, mean, cls, last), L2-normalised.

Models: `maas mkmodel` writes a small BERT (n_embd 128, 2 layers, 4 heads,
n_ff 256; the bert-bge WordPiece vocabulary when ../shared is there, else a
learned BPE one: the encoder does not care which; MAAS_BERT_VOCAB names
another) and a qwen3 decoder with
pooling metadata (Qwen3-Embedding's shape: last-token pooling), each in F32
and q8_0 (`maas quantize`). The reference reads the same file and
dequantizes its weights itself; maas's token ids (printed with the vectors)
are fed to it.

Tolerances (the issue's): cosine >= 0.99999 for F32 (float32 accumulation
over a few hundred terms), >= 0.999 for q8_0 (the reference uses the
file's own dequantized weights; what remains is maas's 8-bit activation
quantization in the integer dot products).

Exit 0 pass, 1 fail, 77 skip (no program).
"""
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_ref as R  # noqa: E402

TEXTS = ["Hello world", "The quick brown fox jumps over the lazy dog, twice!",
         "Äpfel und Birnen: 3.5 kg"]
TOL = {"f32": 0.99999, "q8_0": 0.999}
BERT_VOCAB = os.environ.get("MAAS_BERT_VOCAB") or os.path.join(R.REPO_ROOT, "..", "shared", "testdata", "tokenizer",
                                                               "bert-bge.gguf")


def make_models(tmp):
    """(name, path) of every model under test."""
    R.require_subcommand("embed", ["--help"])
    bert_vocab = ["--vocab", os.path.abspath(BERT_VOCAB)] if os.path.exists(BERT_VOCAB) else R.vocab_args(tmp)
    specs = [("bert", ["--arch", "bert"] + bert_vocab + ["--n-embd", 128, "--n-layer", 2, "--n-head", 4,
                                                         "--n-ff", 256]),
             ("bert-rank", ["--arch", "bert", "--pooling", "rank"] + bert_vocab + ["--n-embd", 128, "--n-layer", 2,
                                                                             "--n-head", 4, "--n-ff", 256]),
             ("qwen3-last", ["--arch", "qwen3", "--pooling", "last"] + R.vocab_args(tmp) +
              ["--n-embd", 128, "--n-layer", 2, "--n-head", 4, "--n-head-kv", 2, "--n-ff", 256])]
    out = []
    for name, args in specs:
        f32 = os.path.join(tmp, name + "-f32.gguf")
        rc, o, e = R.run_maas(["mkmodel"] + args + ["-o", f32])
        if rc != 0:
            raise RuntimeError("mkmodel %s: %s" % (name, e.strip()[-300:]))
        q8 = os.path.join(tmp, name + "-q8_0.gguf")
        rc, o, e = R.run_maas(["quantize", f32, q8, "q8_0"])
        if rc != 0:
            raise RuntimeError("quantize %s: %s" % (name, e.strip()[-300:]))
        out += [(name + " f32", "f32", f32), (name + " q8_0", "q8_0", q8)]
    return out


def check_model(label, ty, path):
    """Number of failures for one file over every pooling."""
    kv = R.GGUFFile(path)
    ref = R.Bert(kv) if kv.kv["general.architecture"] == "bert" else R.Model(kv)
    fails = 0
    if kv.kv.get("bert.pooling_type") == 4:
        return check_rank(label, ty, path, ref)
    for pooling in ("none", "mean", "cls", "last"):
        rc, out, err = R.run_maas(["embed", "--model", path, "--json", "--pooling", pooling] + TEXTS)
        if rc != 0:
            print("FAIL %s %s: maas embed: %s" % (label, pooling, err.strip()[-300:]))
            fails += 1
            continue
        worst = 1.0
        for line in out.strip().splitlines():
            r = json.loads(line)
            got = np.asarray(r["embedding"], dtype=np.float64)
            want = R.embed(ref, r["ids"], pooling)
            cos = np.sum(got * want, axis=-1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(want, axis=-1))
            worst = min(worst, float(np.min(cos)))
            if np.any(np.abs(np.linalg.norm(got, axis=-1) - 1) > 1e-5):
                print("FAIL %s %s: maas's vectors are not unit length" % (label, pooling))
                fails += 1
        ok = worst >= TOL[ty]
        fails += not ok
        print("%s %-15s %-5s worst cosine %.9f, 1 - cos %.1e (>= %g)" % ("ok  " if ok else "FAIL", label, pooling, worst, 1 - worst, TOL[ty]))
    return fails


RANK_TOL = {"f32": 1e-4, "q8_0": 2e-2}


def check_rank(label, ty, path, ref):
    """A reranker: each text's score against the reference's, absolute
    difference within RANK_TOL (scores are O(1) here)."""
    rc, out, err = R.run_maas(["embed", "--model", path, "--json"] + TEXTS)
    if rc != 0:
        print("FAIL %s rank: maas embed: %s" % (label, err.strip()[-300:]))
        return 1
    worst = 0.0
    for line in out.strip().splitlines():
        r = json.loads(line)
        worst = max(worst, abs(r["embedding"][0] - float(R.embed(ref, r["ids"], "rank")[0])))
    ok = worst <= RANK_TOL[ty]
    print("%s %-15s rank  worst |score - reference| %.1e (<= %g)" % ("ok  " if ok else "FAIL", label, worst,
                                                                      RANK_TOL[ty]))
    return 0 if ok else 1


def main():
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        fails = sum(check_model(*m) for m in make_models(tmp))
    print("%d failures, %.1f s" % (fails, time.time() - t0))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
