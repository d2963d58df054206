#!/usr/bin/env python3
"""tools_gguf.py FILE — an independent GGUF v2/v3 header reader for the
tools_*.sh tests (standard library only; written from the GGUF format, not
from maas's reader). Prints one JSON object:

  {"version": 3, "kv": {key: value, ...},
   "tensors": [{"name", "type", "ne", "offset", "nbytes", "sha1"}, ...]}

With --stats, f32 tensors also get "mean" and "std" of their first 65536 values.
Arrays of more than 64 elements are given as {"n": N, "head": [...], "tail": [...]}
plus, for string arrays, "dups" (the number of repeated entries).
"""
import array
import hashlib
import json
import struct
import sys

TYPES = {0: ("f32", 1, 4), 1: ("f16", 1, 2), 2: ("q4_0", 32, 18), 3: ("q4_1", 32, 20),
         6: ("q5_0", 32, 22), 7: ("q5_1", 32, 24), 8: ("q8_0", 32, 34), 10: ("q2_k", 256, 84),
         11: ("q3_k", 256, 110), 12: ("q4_k", 256, 144), 13: ("q5_k", 256, 176),
         14: ("q6_k", 256, 210), 20: ("iq4_nl", 32, 18), 30: ("bf16", 1, 2)}
SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
          10: "<Q", 11: "<q", 12: "<d"}


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
        if len(s) != n:
            raise ValueError("string runs past the end")
        self.o += n
        return s.decode("utf-8", errors="surrogateescape")

    def value(self, t):
        if t in SCALAR:
            return self.take(SCALAR[t])
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("<I"), self.take("<Q")
            vals = [self.value(et) for _ in range(n)]
            if n <= 64:
                return vals
            out = {"n": n, "head": vals[:8], "tail": vals[-8:], "type": et}
            if et == 8:
                out["dups"] = n - len(set(vals))
            return out
        raise ValueError("bad value type %d" % t)


def stats(raw):
    a = array.array("f")
    a.frombytes(raw[:4 * 65536])
    n = len(a)
    mean = sum(a) / n
    var = sum((x - mean) ** 2 for x in a) / n
    return mean, var ** 0.5


def read(path, with_stats=False):
    data = open(path, "rb").read()
    r = Reader(data)
    if data[:4] != b"GGUF":
        raise ValueError("not a GGUF file")
    r.o = 4
    version = r.take("<I")
    n_t, n_kv = r.take("<Q"), r.take("<Q")
    kv = {}
    for _ in range(n_kv):
        k = r.string()
        kv[k] = r.value(r.take("<I"))
    infos = []
    for _ in range(n_t):
        name = r.string()
        nd = r.take("<I")
        ne = [r.take("<Q") for _ in range(nd)]
        t = r.take("<I")
        off = r.take("<Q")
        infos.append((name, ne, t, off))
    align = kv.get("general.alignment", 32)
    base = (r.o + align - 1) // align * align
    tensors = []
    for name, ne, t, off in infos:
        tname, blk, size = TYPES[t]
        n = 1
        for x in ne:
            n *= x
        nbytes = n // blk * size
        raw = data[base + off: base + off + nbytes]
        if len(raw) != nbytes:
            raise ValueError("tensor %s runs past the end" % name)
        t = {"name": name, "type": tname, "ne": ne, "offset": off, "nbytes": nbytes,
             "sha1": hashlib.sha1(raw).hexdigest()}
        if with_stats and tname == "f32":
            t["mean"], t["std"] = stats(raw)
        tensors.append(t)
    return {"version": version, "kv": kv, "tensors": tensors}


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--stats"]
    json.dump(read(args[0], "--stats" in sys.argv), sys.stdout)
