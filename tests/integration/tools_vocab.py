#!/usr/bin/python3
"""tools_vocab.py [--tool-use T.jinja] IN.gguf OUT.gguf TEMPLATE.jinja TOKEN... — a vocabulary-only
GGUF for the tool-call tests (standard library only, written from the GGUF
format): the tokenizer.* keys of IN, with each TOKEN appended to the
vocabulary as a user-defined token (one id holding a whole call, so that a
logit_bias on it makes a random-weight model write exactly that call), or as
a control token when written ctl:TEXT, and
tokenizer.chat_template set to TEMPLATE (and tokenizer.chat_template.tool_use
to T with --tool-use). Prints the new tokens' ids.
"""
import struct
import sys

FIXED = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class Reader:
    def __init__(self, data):
        self.d, self.o = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.o)[0]
        self.o += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = self.d[self.o:self.o + n]
        self.o += n
        return s

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("<I"), self.take("<Q")
            return (et, [self.value(et) for _ in range(n)])
        return self.take(FIXED[t])


def w_string(out, s):
    out += struct.pack("<Q", len(s)) + s


def w_value(out, t, v):
    if t == 8:
        w_string(out, v)
    elif t == 9:
        et, items = v
        out += struct.pack("<IQ", et, len(items))
        for x in items:
            w_value(out, et, x)
    else:
        out += struct.pack(FIXED[t], v)


def main():
    args = sys.argv[1:]
    tool_use = None
    if args[0] == "--tool-use":
        tool_use, args = args[1], args[2:]
    src, dst, tmpl = args[0], args[1], args[2]
    ctl = [t.startswith("ctl:") for t in args[3:]]
    extra = [t[4:].encode() if c else t.encode() for t, c in zip(args[3:], ctl)]
    r = Reader(open(src, "rb").read())
    assert r.d[:4] == b"GGUF", "not a GGUF file"
    r.o = 4
    version, _n_tensors, n_kv = r.take("<I"), r.take("<Q"), r.take("<Q")
    kv = []
    for _ in range(n_kv):
        k = r.string()
        t = r.take("<I")
        kv.append([k, t, r.value(t)])
    kv = [e for e in kv if e[0].startswith(b"tokenizer.") and not e[0].startswith(b"tokenizer.chat_template")]
    ids = []
    for e in kv:
        if e[0] == b"tokenizer.ggml.tokens":
            ids = list(range(len(e[2][1]), len(e[2][1]) + len(extra)))
            e[2][1].extend(extra)
        elif e[0] == b"tokenizer.ggml.token_type":
            e[2][1].extend([3 if c else 4 for c in ctl])  # CONTROL or USER_DEFINED
        elif e[0] == b"tokenizer.ggml.scores":
            e[2][1].extend([0.0] * len(extra))
    kv.append([b"tokenizer.chat_template", 8, open(tmpl, "rb").read()])
    if tool_use:
        kv.append([b"tokenizer.chat_template.tool_use", 8, open(tool_use, "rb").read()])
    out = bytearray(b"GGUF" + struct.pack("<IQQ", version, 0, len(kv)))
    for k, t, v in kv:
        w_string(out, k)
        out += struct.pack("<I", t)
        w_value(out, t, v)
    out += b"\0" * ((32 - len(out) % 32) % 32)
    open(dst, "wb").write(out)
    print(" ".join(str(i) for i in ids))


main()
