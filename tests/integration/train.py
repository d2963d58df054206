"""maas train end to end on the KJV corpus (scripts/corpus.sh, from Debian's
bible-kjv-text that scripts/setup.sh installs).

Learning: a 2-layer qwen3 (n_embd 64) trains for 300 steps of 8 x 64 tokens on
the first 600 kB of the training text. The threshold is the validation text's
unigram entropy under the training text's token frequencies (add-one
smoothed): the loss of the best predictor that ignores context. A model whose
validation loss ends below it has learned from context; a broken backward
pass or optimizer does not get there (at step 0 the loss is ln(vocab) = 6.93,
the unigram entropy is about 5.4 nats).

Also: a run resumed from its step-100 checkpoint ends with the same bytes as
the uninterrupted run; a run on 1 thread ends with the same bytes as on 2; a
MoE model trains and serves (maas run); and the errors of bad input."""
import collections, math, os, shutil, subprocess, sys, tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MAAS = os.path.join(ROOT, "build", "maas")
failed = 0


def check(cond, what):
    global failed
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failed += 1


def maas(*args, ok=True):
    p = subprocess.run([MAAS, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        sys.exit("maas %s failed (%d): %s" % (" ".join(args), p.returncode, p.stderr[-2000:]))
    return p


def tokens(model, path):
    return [int(t) for t in maas("tokenize", "--model", model, "--file", path).stdout.split()]


def unigram_entropy(train, val, n_vocab):
    c = collections.Counter(train)
    total = len(train) + n_vocab
    return -sum(math.log((c[t] + 1) / total) for t in val) / len(val)


def last_val(out):
    vals = [float(l.split("val ")[1].split()[0]) for l in out.splitlines() if " val " in l]
    return vals[-1] if vals else float("nan")


def main():
    w = tempfile.mkdtemp(prefix="maas-train-")
    try:
        corpus = os.path.join(w, "corpus")
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "corpus.sh"), corpus], check=True,
                       capture_output=True)
        train = os.path.join(w, "train.txt")
        with open(os.path.join(corpus, "kjv-train.txt"), "rb") as f:
            data = f.read(600_000)
        with open(train, "wb") as f:
            f.write(data[: data.rfind(b"\n") + 1])
        val = os.path.join(corpus, "kjv-val.txt")
        shape = ["--arch", "qwen3", "--n-embd", "64", "--n-layer", "2", "--n-head", "4", "--n-head-kv", "2",
                 "--n-ff", "192", "--vocab-size", "1024", "--batch", "8", "--ctx", "64"]
        out = os.path.join(w, "m.gguf")
        p = maas("train", *shape, "--text", train, "--val", val, "--steps", "300", "--eval-every", "100",
                 "--eval-windows", "16", "-o", out)
        v = last_val(p.stdout)
        h = unigram_entropy(tokens(out, train), tokens(out, val), 1024)
        print("validation loss %.4f, unigram entropy %.4f" % (v, h))
        check(v < h - 0.1, "the validation loss falls below the unigram entropy (%.3f < %.3f)" % (v, h))
        check(os.path.exists(out + ".ckpt") and os.path.exists(out + ".svg"), "writes OUT.ckpt and OUT.svg")
        svg = open(out + ".svg").read()
        check(svg.startswith("<?xml") and "validation loss" in svg and "</svg>" in svg, "the loss curve is an SVG")
        gen = maas("run", "--model", out, "--prompt", "And God said", "-n", "8", "--seed", "1")
        check(gen.returncode == 0 and len(gen.stdout.strip()) > len("And God said"), "the trained model generates")

        # resume: 100 steps, then on to 200 == 200 at once (same schedule: --steps 200 both times)
        a, b = os.path.join(w, "a.gguf"), os.path.join(w, "b.gguf")
        maas("train", *shape, "--text", train, "--steps", "200", "--save-every", "100", "--quiet", "-o", a)
        maas("train", *shape, "--text", train, "--steps", "200", "--save-every", "100", "--quiet", "-o", b,
             "--threads", "1")
        check(open(a, "rb").read() == open(b, "rb").read(), "1 thread and 2 threads give the same bytes")
        c = os.path.join(w, "c.gguf")
        p = maas("train", *shape, "--text", train, "--steps", "200", "--stop-after", "100", "-o", c)
        check("stopped at step 100" in p.stdout and not os.path.exists(c), "--stop-after 100 leaves a checkpoint")
        ck = c + ".ckpt"
        r = os.path.join(w, "r.gguf")
        maas("train", "--resume", ck, "--text", train, "--quiet", "-o", r)
        check(open(a, "rb").read() == open(r, "rb").read(), "a run resumed at step 100 ends with the same bytes")

        # the avx2, avxvnni and avx512 kernels give the same bytes (those the CPU has)
        outs = {}
        for v in ("avx2", "avxvnni", "avx512"):
            f = os.path.join(w, "k-%s.gguf" % v)
            p = subprocess.run([MAAS, "train", *shape, "--text", train, "--steps", "10", "--quiet", "-o", f],
                               capture_output=True, text=True, env=dict(os.environ, MAAS_KERNELS=v))
            if p.returncode == 0:
                outs[v] = open(f, "rb").read()
        if len(outs) >= 2:
            check(len(set(outs.values())) == 1, "the %s kernels train to the same bytes" % ", ".join(outs))
        else:
            print("skip the kernel comparison: this CPU has one SIMD variant or none (%s)" % (", ".join(outs) or "none"))

        # MoE with the balance loss, written in q8_0, served by maas run
        moe = os.path.join(w, "moe.gguf")
        p = maas("train", "--arch", "qwen3moe", "--n-embd", "64", "--n-layer", "2", "--n-head", "4",
                 "--n-head-kv", "2", "--n-expert", "4", "--n-expert-used", "2", "--n-ff-exp", "64", "--tie",
                 "--vocab-size", "512", "--batch", "4", "--ctx", "32", "--text", train, "--steps", "30",
                 "--type", "q8_0", "-o", moe)
        first = float(p.stdout.split("step      1/30  loss ")[1].split()[0])
        lastl = float([l for l in p.stdout.splitlines() if l.startswith("step     30/30")][0].split("loss ")[1].split()[0])
        check(lastl < first - 0.5 and "(aux " in p.stdout, "the MoE model's loss falls (%.2f -> %.2f)" % (first, lastl))
        insp = maas("inspect", moe).stdout
        check("q8_0" in insp and "ffn_gate_exps" in insp, "the MoE model is written in q8_0")
        check(maas("run", "--model", moe, "--prompt", "And", "-n", "4").returncode == 0, "maas run serves it")

        # llama: untied output, adjacent-pair RoPE
        ll = os.path.join(w, "llama.gguf")
        p = maas("train", "--arch", "llama", "--n-embd", "64", "--n-layer", "2", "--n-head", "4", "--n-head-kv", "2",
                 "--n-ff", "128", "--vocab-size", "512", "--batch", "4", "--ctx", "32", "--text", train, "--steps", "30",
                 "-o", ll)
        first = float(p.stdout.split("step      1/30  loss ")[1].split()[0])
        lastl = float([l for l in p.stdout.splitlines() if l.startswith("step     30/30")][0].split("loss ")[1].split()[0])
        check(lastl < first - 0.5 and "output.weight" in maas("inspect", ll).stdout,
              "a llama with a separate output matrix trains (%.2f -> %.2f)" % (first, lastl))

        # errors
        e = maas("train", "--arch", "qwen2", "--text", train, "-o", os.path.join(w, "x.gguf"), ok=False)
        check(e.returncode != 0 and "bias" in e.stderr, "qwen2 is refused, naming the biases: " + e.stderr.strip()[-90:])
        short = os.path.join(w, "short.txt")
        open(short, "w").write("In the beginning.\n")
        e = maas("train", *shape, "--text", short, "-o", os.path.join(w, "x.gguf"), ok=False)
        check(e.returncode != 0 and " 5 tokens" in e.stderr, "a text too short is refused: " + e.stderr.strip()[-90:])
        e = maas("train", "--resume", moe, "--text", train, "-o", os.path.join(w, "x.gguf"), ok=False)
        check(e.returncode != 0 and ("checkpoint" in e.stderr or "f32" in e.stderr),
              "resuming a model that is not a checkpoint is refused: " + e.stderr.strip()[-90:])
        e = maas("train", *shape, "--text", os.path.join(w, "nope.txt"), "-o", os.path.join(w, "x.gguf"), ok=False)
        check(e.returncode != 0 and "nope.txt" in e.stderr, "a missing text is named")
        e = maas("train", *shape, "--text", train, "--lr", "abc", "-o", os.path.join(w, "x.gguf"), ok=False)
        check(e.returncode == 2 and "--lr" in e.stderr, "a bad --lr is named")
        e = maas("train", *shape, "--text", train, "--bogus", "1", "-o", os.path.join(w, "x.gguf"), ok=False)
        check(e.returncode == 2 and "--bogus" in e.stderr, "an unknown option is named")
    finally:
        shutil.rmtree(w, ignore_errors=True)
    sys.exit(1 if failed else 0)


main()
