"""
gguf_ref — an independent NumPy reference for maas: GGUF parsing, dequantization
and the transformer forward pass in float64.

Nothing here looks at maas's C code. Everything is derived from the GGUF file
format and ggml's block layouts (ggml-common.h) and from the architecture
definitions as llama.cpp interprets GGUF files (which is what maas must match):

  * GGUF v2/v3: "GGUF", u32 version, u64 n_tensors, u64 n_kv, key/values, tensor
    infos (name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset), padding to
    general.alignment (default 32), then the data section.
  * Tensor shapes are in ggml order (ne[0] is the row length); as numpy arrays
    the order is reversed, so a weight of ne [n_in, n_out] is W[n_out, n_in] and
    y = W @ x.
  * Architectures: llama (adjacent-pair RoPE), qwen2 (q/k/v biases, NeoX RoPE),
    qwen3 (per-head RMS norm on q and k before RoPE, NeoX RoPE, head size from
    attention.key_length), and the MoE layers of llama+experts (Mixtral: softmax,
    top-k, renormalise), qwen2moe (softmax, top-k not renormalised, shared expert
    gated by sigmoid(ffn_gate_inp_shexp . x)) and qwen3moe (softmax, top-k,
    renormalised: llama.cpp hard-codes the normalisation for qwen3moe and reads
    no key; we honour `<arch>.expert_weights_norm` when a file carries it and
    default to True).

Public entry points:
  GGUFFile(path)                     metadata (.kv), tensor infos (.tensors), .dequant(name)
  dequantize(type_id, raw_bytes, n)  float64 values of n elements
  Model(path_or_gguf, act_quant=False)
  logits_for_prompt(model, ids, all_positions=False)
  greedy(model, ids, n, stop_ids=())  -> list of steps {token, margin, logprobs}
  log_softmax(v)
  write_gguf(path, kv, tensors)       a small GGUF v3 writer (for self-tests)
"""

import math
import struct

import numpy as np

# ---------------------------------------------------------------------------
# Tensor types: id -> (name, elements per block, bytes per block)
# ---------------------------------------------------------------------------
QK_K = 256
TYPES = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    10: ("Q2_K", QK_K, 84),
    11: ("Q3_K", QK_K, 110),
    12: ("Q4_K", QK_K, 144),
    13: ("Q5_K", QK_K, 176),
    14: ("Q6_K", QK_K, 210),
    20: ("IQ4_NL", 32, 18),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    28: ("F64", 1, 8),
    30: ("BF16", 1, 2),
}
TYPE_BY_NAME = {v[0]: k for k, v in TYPES.items()}
FLOAT_TYPES = {0, 1, 28, 30}  # weights that hold plain floats (no activation quantization)

# The 16 values of IQ4_NL's non-linear code book (ggml-common.h kvalues_iq4nl).
IQ4NL_VALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                        dtype=np.float64)


def _f16(cols):
    """(nb, 2) uint8 little-endian IEEE half -> (nb, 1) float64."""
    return np.ascontiguousarray(cols).view("<f2").astype(np.float64)


def _deq_q4_0(b):
    d = _f16(b[:, 0:2])
    qs = b[:, 2:18]
    q = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.int8) - 8
    return d * q


def _deq_q4_1(b):
    d, m = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    qs = b[:, 4:20]
    q = np.concatenate([qs & 15, qs >> 4], axis=1)
    return d * q + m


def _q5_bits(qh_bytes):
    """(nb, 4) bytes of a little-endian u32 -> (nb, 32) bits, bit j for element j."""
    return np.unpackbits(np.ascontiguousarray(qh_bytes), axis=1, bitorder="little")


def _deq_q5_0(b):
    d = _f16(b[:, 0:2])
    h = _q5_bits(b[:, 2:6])
    qs = b[:, 6:22]
    nib = np.concatenate([qs & 15, qs >> 4], axis=1)
    return d * ((nib | (h << 4)).astype(np.int8) - 16)


def _deq_q5_1(b):
    d, m = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    h = _q5_bits(b[:, 4:8])
    qs = b[:, 8:24]
    nib = np.concatenate([qs & 15, qs >> 4], axis=1)
    return d * (nib | (h << 4)) + m


def _deq_q8_0(b):
    d = _f16(b[:, 0:2])
    return d * np.ascontiguousarray(b[:, 2:34]).view(np.int8)


# Super-blocks of 256. Element e decomposes as e = n*128 + j*32 + l (n: half,
# j: which 2-bit plane / 32-group, l: 0..31) for Q2_K, Q3_K and Q6_K, and as
# e = 32*s + l with sub-block s for Q4_K and Q5_K. The code below builds the
# quants in that element order with reshapes and bit planes (no gathers).
def _planes(x, shifts, mask, axis):
    """Stack (x >> s) & mask for each shift along a new axis."""
    return np.stack([(x >> s) & mask for s in shifts], axis=axis)


def _deq_q2_k(b):
    nb = b.shape[0]
    scales = b[:, 0:16]
    qs = b[:, 16:80].reshape(nb, 2, 32)           # byte n*32 + l
    d, dmin = _f16(b[:, 80:82]), _f16(b[:, 82:84])
    q = _planes(qs, (0, 2, 4, 6), 3, 2)           # (nb, n, j, l): bits 2j
    q = q.reshape(nb, 16, 16)                     # 16 groups of 16 = scale index e // 16
    dl = d * (scales & 15)                        # (nb, 16)
    ml = dmin * (scales >> 4)
    return (dl[:, :, None] * q - ml[:, :, None]).reshape(nb, QK_K)


def _q3_k_scales(s):
    """(nb, 12) packed bytes -> (nb, 16) signed scales (6-bit value - 32):
    scale i has its low 4 bits in byte i (i < 8, low nibble) or byte i-8 (high
    nibble), and its high 2 bits at bit 2*(i//4) of byte 8 + i%4."""
    s = s.astype(np.int16)
    i = np.arange(16)
    low = np.where(i < 8, s[:, i % 8] & 15, s[:, i % 8] >> 4)
    high = (s[:, 8 + i % 4] >> (2 * (i // 4))) & 3
    return (low | (high << 4)) - 32


def _deq_q3_k(b):
    nb = b.shape[0]
    hmask = b[:, 0:32]                            # bit n*4 + j of byte l
    qs = b[:, 32:96].reshape(nb, 2, 32)
    sc = _q3_k_scales(b[:, 96:108])
    d = _f16(b[:, 108:110])
    low = _planes(qs, (0, 2, 4, 6), 3, 2).astype(np.int16)          # (nb, n, j, l)
    hbit = _planes(hmask, range(8), 1, 1).reshape(nb, 2, 4, 32)     # (nb, n, j, l)
    q = (low - 4 * (1 - hbit.astype(np.int16))).reshape(nb, 16, 16)
    return ((d * sc)[:, :, None] * q).reshape(nb, QK_K)


def _k4_scale_min(s):
    """(nb, 12) packed bytes -> ((nb, 8) scales, (nb, 8) mins), 6 bits each:
    sub-blocks 0..3 in the low 6 bits of bytes 0..3 (scales) and 4..7 (mins);
    sub-blocks 4..7 have their low 4 bits in the nibbles of bytes 8..11 and
    their high 2 bits in the top bits of bytes 0..3 (scales) and 4..7 (mins)."""
    s = s.astype(np.int16)
    sc = np.empty((s.shape[0], 8), np.int16)
    mn = np.empty((s.shape[0], 8), np.int16)
    sc[:, 0:4] = s[:, 0:4] & 63
    mn[:, 0:4] = s[:, 4:8] & 63
    sc[:, 4:8] = (s[:, 8:12] & 15) | ((s[:, 0:4] >> 6) << 4)
    mn[:, 4:8] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc, mn


def _k4_nibbles(qs):
    """(nb, 128) bytes -> (nb, 8, 32): sub-block 2c takes the low nibbles of
    bytes 32c..32c+31, sub-block 2c+1 their high nibbles."""
    nb = qs.shape[0]
    return _planes(qs.reshape(nb, 4, 32), (0, 4), 15, 2).reshape(nb, 8, 32)


def _deq_q4_k(b):
    nb = b.shape[0]
    d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    sc, mn = _k4_scale_min(b[:, 4:16])
    q = _k4_nibbles(b[:, 16:144])
    return ((d * sc)[:, :, None] * q - (dmin * mn)[:, :, None]).reshape(nb, QK_K)


def _deq_q5_k(b):
    nb = b.shape[0]
    d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    sc, mn = _k4_scale_min(b[:, 4:16])
    hbit = _planes(b[:, 16:48], range(8), 1, 1)   # (nb, s, l): bit s of byte l
    q = _k4_nibbles(b[:, 48:176]) | (hbit << 4)
    return ((d * sc)[:, :, None] * q - (dmin * mn)[:, :, None]).reshape(nb, QK_K)


def _deq_q6_k(b):
    nb = b.shape[0]
    ql = b[:, 0:128].reshape(nb, 2, 2, 32)        # byte n*64 + 32*(k%2) + l
    qh = b[:, 128:192].reshape(nb, 2, 32)         # byte n*32 + l, bits 2k
    sc = np.ascontiguousarray(b[:, 192:208]).view(np.int8).astype(np.float64)
    d = _f16(b[:, 208:210])
    low = _planes(ql, (0, 4), 15, 2).reshape(nb, 2, 4, 32)  # k = 2*(k//2) + k%2: nibble k//2 of byte k%2
    high = _planes(qh, (0, 2, 4, 6), 3, 2)                  # (nb, n, k, l)
    q = (low | (high << 4)).astype(np.int16) - 32
    return ((d * sc)[:, :, None] * q.reshape(nb, 16, 16)).reshape(nb, QK_K)


def _deq_iq4_nl(b):
    d = _f16(b[:, 0:2])
    qs = b[:, 2:18]
    idx = np.concatenate([qs & 15, qs >> 4], axis=1)
    return d * IQ4NL_VALUES[idx]


_DEQ = {
    2: _deq_q4_0, 3: _deq_q4_1, 6: _deq_q5_0, 7: _deq_q5_1, 8: _deq_q8_0,
    10: _deq_q2_k, 11: _deq_q3_k, 12: _deq_q4_k, 13: _deq_q5_k, 14: _deq_q6_k,
    20: _deq_iq4_nl,
}


def type_nbytes(type_id, n_elements):
    _, bs, ts = TYPES[type_id]
    if n_elements % bs:
        raise ValueError("%d elements is not a whole number of %s blocks" % (n_elements, TYPES[type_id][0]))
    return n_elements // bs * ts


def dequantize(type_id, raw, n_elements):
    """Bytes (anything np.frombuffer accepts, or a uint8 array) of one tensor of
    n_elements -> flat float64 array."""
    raw = np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw.reshape(-1).view(np.uint8)
    nbytes = type_nbytes(type_id, n_elements)
    if raw.size < nbytes:
        raise ValueError("need %d bytes, have %d" % (nbytes, raw.size))
    raw = raw[:nbytes]
    if type_id == 0:
        return raw.view("<f4").astype(np.float64)
    if type_id == 1:
        return raw.view("<f2").astype(np.float64)
    if type_id == 28:
        return raw.view("<f8").astype(np.float64)
    if type_id == 30:  # bf16: the high half of a float32
        return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    if type_id == 24:
        return raw.view(np.int8).astype(np.float64)
    if type_id == 25:
        return raw.view("<i2").astype(np.float64)
    if type_id == 26:
        return raw.view("<i4").astype(np.float64)
    if type_id not in _DEQ:
        raise ValueError("no dequantization for type %d" % type_id)
    _, bs, ts = TYPES[type_id]
    return _DEQ[type_id](raw.reshape(-1, ts)).reshape(-1)


# ---------------------------------------------------------------------------
# GGUF reading
# ---------------------------------------------------------------------------
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_NP_SCALAR = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1",
              10: "<u8", 11: "<i8", 12: "<f8"}


class TensorInfo:
    def __init__(self, name, ne, type_id, offset):
        self.name, self.ne, self.type, self.offset = name, tuple(ne), type_id, offset
        self.n_elements = int(np.prod(ne))
        self.nbytes = type_nbytes(type_id, self.n_elements)

    @property
    def shape(self):  # numpy order
        return tuple(reversed(self.ne))

    @property
    def type_name(self):
        return TYPES[self.type][0]


class GGUFFile:
    """A parsed GGUF v2/v3 file. .kv: key -> value (str, int, float, bool, list
    of str, or numpy array); .tensors: name -> TensorInfo (in file order)."""

    def __init__(self, path):
        self.path = path
        self.data = np.memmap(path, dtype=np.uint8, mode="r")
        self.pos = 0
        if bytes(self.data[0:4]) != b"GGUF":
            raise ValueError("%s: not a GGUF file" % path)
        self.pos = 4
        self.version = self._u("<I")
        if self.version not in (2, 3):
            raise ValueError("%s: GGUF version %d not supported" % (path, self.version))
        n_tensors = self._u("<Q")
        n_kv = self._u("<Q")
        self.kv = {}
        for _ in range(n_kv):
            key = self._str()
            vtype = self._u("<I")
            self.kv[key] = self._value(vtype)
        self.tensors = {}
        for _ in range(n_tensors):
            name = self._str()
            n_dims = self._u("<I")
            ne = [self._u("<Q") for _ in range(n_dims)]
            ttype = self._u("<I")
            off = self._u("<Q")
            if ttype not in TYPES:
                raise ValueError("%s: tensor %s has unknown type %d" % (path, name, ttype))
            self.tensors[name] = TensorInfo(name, ne, ttype, off)
        self.alignment = int(self.kv.get("general.alignment", 32))
        self.data_offset = (self.pos + self.alignment - 1) // self.alignment * self.alignment
        for t in self.tensors.values():
            if self.data_offset + t.offset + t.nbytes > self.data.size:
                raise ValueError("%s: tensor %s runs past the end of the file" % (path, t.name))

    def _u(self, fmt):
        n = struct.calcsize(fmt)
        v = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += n
        return v

    def _str(self):
        n = self._u("<Q")
        s = bytes(self.data[self.pos:self.pos + n]).decode("utf-8", errors="surrogateescape")
        self.pos += n
        return s

    def _value(self, vtype):
        if vtype == 8:
            return self._str()
        if vtype == 9:
            etype = self._u("<I")
            n = self._u("<Q")
            if etype == 8:
                return [self._str() for _ in range(n)]
            if etype == 9:
                return [self._value(9) for _ in range(n)]
            dt = np.dtype(_NP_SCALAR[etype])
            arr = np.frombuffer(self.data, dtype=dt, count=n, offset=self.pos).copy()
            self.pos += n * dt.itemsize
            return arr.astype(bool) if etype == 7 else arr
        if vtype not in _SCALAR:
            raise ValueError("%s: unknown metadata value type %d" % (self.path, vtype))
        return self._u(_SCALAR[vtype])

    def raw(self, name):
        t = self.tensors[name]
        start = self.data_offset + t.offset
        return self.data[start:start + t.nbytes]

    def dequant(self, name):
        """float64 array in numpy order (ne reversed)."""
        t = self.tensors[name]
        return dequantize(t.type, self.raw(name), t.n_elements).reshape(t.shape)


# ---------------------------------------------------------------------------
# GGUF writing (v3), enough for self-tests
# ---------------------------------------------------------------------------
def _pack_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _pack_value(v):
    """-> (vtype, bytes). bool, int (i32/i64 by range), float (f32), str, list/array."""
    if isinstance(v, bool):
        return 7, struct.pack("<?", v)
    if isinstance(v, (int, np.integer)):
        v = int(v)
        if -2**31 <= v < 2**31:
            return 5, struct.pack("<i", v)
        return 11, struct.pack("<q", v)
    if isinstance(v, (float, np.floating)):
        return 6, struct.pack("<f", float(v))
    if isinstance(v, str):
        return 8, _pack_str(v)
    if isinstance(v, (list, tuple, np.ndarray)):
        if len(v) and isinstance(v[0], str):
            return 9, struct.pack("<IQ", 8, len(v)) + b"".join(_pack_str(s) for s in v)
        a = np.asarray(v)
        if a.dtype.kind == "f":
            return 9, struct.pack("<IQ", 6, a.size) + a.astype("<f4").tobytes()
        return 9, struct.pack("<IQ", 5, a.size) + a.astype("<i4").tobytes()
    raise TypeError("cannot store %r" % (v,))


def write_gguf(path, kv, tensors, alignment=32):
    """kv: dict key -> value. tensors: list of (name, type_id, ne (ggml order),
    raw bytes)."""
    out = bytearray(b"GGUF")
    out += struct.pack("<IQQ", 3, len(tensors), len(kv))
    for k, v in kv.items():
        vt, vb = _pack_value(v)
        out += _pack_str(k) + struct.pack("<I", vt) + vb
    off = 0
    offs = []
    for name, ttype, ne, raw in tensors:
        assert len(raw) == type_nbytes(ttype, int(np.prod(ne))), name
        out += _pack_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        out += struct.pack("<IQ", ttype, off)
        offs.append(off)
        off = (off + len(raw) + alignment - 1) // alignment * alignment
    out += b"\0" * ((-len(out)) % alignment)
    base = len(out)
    for (name, ttype, ne, raw), o in zip(tensors, offs):
        assert len(out) == base + o
        out += raw
        out += b"\0" * ((-len(raw)) % alignment)
    with open(path, "wb") as f:
        f.write(bytes(out))


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------
def rms_norm(x, w, eps):
    """x (..., n) normalised over the last axis, times w (n,)."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def log_softmax(v):
    v = np.asarray(v, dtype=np.float64)
    m = np.max(v, axis=-1, keepdims=True)
    return v - m - np.log(np.sum(np.exp(v - m), axis=-1, keepdims=True))


def rope(x, pos, n_rot, base, neox, freq_scale=1.0):
    """x (T, H, D) rotated by positions pos (T,). Pairs are (2i, 2i+1) for the
    llama layout and (i, i + n_rot/2) for NeoX; pair i turns by
    pos * freq_scale * base^(-2i/n_rot). Dimensions >= n_rot pass through."""
    half = n_rot // 2
    inv = base ** (-np.arange(half, dtype=np.float64) * 2.0 / n_rot)
    ang = (np.asarray(pos, dtype=np.float64) * freq_scale)[:, None] * inv[None, :]  # (T, half)
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    y = x.copy()
    if neox:
        a, b = x[..., :half], x[..., half:n_rot]
        y[..., :half] = a * cos - b * sin
        y[..., half:n_rot] = a * sin + b * cos
    else:
        a, b = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
        y[..., 0:n_rot:2] = a * cos - b * sin
        y[..., 1:n_rot:2] = a * sin + b * cos
    return y


def quantize_act_q8_0(x):
    """Round activations (..., n) the way a q8_0 activation row stores them:
    blocks of 32, scale amax/127 kept as fp16, values rounded to int8. Used to
    estimate what activation quantization does to the logits."""
    shp = x.shape
    b = x.reshape(-1, 32)
    d = (np.max(np.abs(b), axis=1, keepdims=True) / 127.0).astype(np.float16).astype(np.float64)
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.clip(np.sign(b * inv) * np.floor(np.abs(b * inv) + 0.5), -127, 127)
    return (q * d).reshape(shp)


def quantize_act_q8_k(x):
    """The same for a q8_K activation row (what k-quant dot products use):
    blocks of 256, float32 scale chosen so the largest-magnitude element maps
    to -128, values rounded and capped at 127."""
    shp = x.shape
    b = x.reshape(-1, QK_K)
    idx = np.argmax(np.abs(b), axis=1)
    mx = b[np.arange(b.shape[0]), idx][:, None]
    iscale = np.divide(-128.0, mx, out=np.zeros_like(mx), where=mx != 0).astype(np.float32).astype(np.float64)
    q = np.minimum(127, np.sign(b * iscale) * np.floor(np.abs(b * iscale) + 0.5))
    d = np.divide(1.0, iscale, out=np.zeros_like(iscale), where=iscale != 0).astype(np.float32).astype(np.float64)
    return (q * d).reshape(shp)


K_QUANTS = {10, 11, 12, 13, 14}


def quantize_act(x, weight_type):
    """Activation rounding an engine applies before a dot product with a weight
    of weight_type: none for float weights, q8_K for k-quants when the row
    length allows, q8_0 otherwise."""
    if weight_type in FLOAT_TYPES:
        return x
    if weight_type in K_QUANTS and x.shape[-1] % QK_K == 0:
        return quantize_act_q8_k(x)
    return quantize_act_q8_0(x)


class Model:
    """Hyper-parameters and dequantized (float64) weights of a GGUF model.
    act_quant=True rounds the input of every matmul whose weight is quantized
    to q8_K (k-quants) or q8_0 (others) first (an estimate of what a CPU engine's activation quantization
    costs; never used for the pass/fail reference itself)."""

    def __init__(self, src, act_quant=False):
        self.f = src if isinstance(src, GGUFFile) else GGUFFile(src)
        self.act_quant = act_quant
        kv = self.f.kv
        self.arch = arch = kv["general.architecture"]
        if arch not in ("llama", "qwen2", "qwen3", "qwen2moe", "qwen3moe"):
            raise ValueError("architecture %s not supported by the reference" % arch)
        g = lambda k, d=None: kv.get("%s.%s" % (arch, k), d)
        self.n_embd = int(g("embedding_length"))
        self.n_layer = int(g("block_count"))
        self.n_head = int(g("attention.head_count"))
        self.n_head_kv = int(g("attention.head_count_kv", self.n_head))
        self.head_dim = int(g("attention.key_length", self.n_embd // self.n_head))
        self.head_dim_v = int(g("attention.value_length", self.head_dim))
        self.n_rot = int(g("rope.dimension_count", self.head_dim))
        self.eps = float(g("attention.layer_norm_rms_epsilon", 1e-5))
        self.rope_base = float(g("rope.freq_base", 10000.0))
        self.freq_scale = 1.0
        if g("rope.scaling.type") == "linear" and g("rope.scaling.factor"):
            self.freq_scale = 1.0 / float(g("rope.scaling.factor"))
        elif g("rope.scale_linear"):
            self.freq_scale = 1.0 / float(g("rope.scale_linear"))
        self.neox = arch != "llama"
        self.n_expert = int(g("expert_count", 0) or 0)
        self.n_expert_used = int(g("expert_used_count", 0) or 0)
        if arch == "llama":
            self.norm_topk = True
        elif arch == "qwen2moe":
            self.norm_topk = False
        else:
            self.norm_topk = bool(g("expert_weights_norm", True))
        self._w = {}
        # MoE routing: route_trace, when a list, receives (layer, position,
        # router logits) for every token; route_override maps (layer, position)
        # to the experts to use there instead of the top-k (to follow another
        # engine through a near-tie of the router); the value "flip" means: the
        # top k-1 and then the (k+1)-th instead of the k-th
        self.route_trace = None
        self.route_override = {}
        self.vocab_size = self.f.tensors["token_embd.weight"].ne[1]
        self.out_name = "output.weight" if "output.weight" in self.f.tensors else "token_embd.weight"

    def has(self, name):
        return name in self.f.tensors

    def w(self, name):
        if name not in self._w:
            self._w[name] = self.f.dequant(name)
        return self._w[name]

    def matmul(self, name, x, bias=None):
        """x (T, n_in) -> (T, n_out) with the weight of ne [n_in, n_out]."""
        W = self.w(name)
        if self.act_quant:
            x = quantize_act(x, self.f.tensors[name].type)
        y = x @ W.T
        if bias is not None and self.has(bias):
            y = y + self.w(bias)
        return y

    def _ffn_dense(self, il, x):
        p = "blk.%d." % il
        return self.matmul(p + "ffn_down.weight",
                           silu(self.matmul(p + "ffn_gate.weight", x)) * self.matmul(p + "ffn_up.weight", x))

    def _expert(self, il, e, x):
        """x (n, n_embd) through expert e of layer il."""
        p = "blk.%d." % il
        if self.has(p + "ffn_gate_exps.weight"):
            mats = [self.w(p + n + "_exps.weight")[e] for n in ("ffn_gate", "ffn_up", "ffn_down")]
            types = [self.f.tensors[p + n + "_exps.weight"].type for n in ("ffn_gate", "ffn_up", "ffn_down")]
        else:  # old Mixtral files: one tensor per expert
            names = [p + "%s.%d.weight" % (n, e) for n in ("ffn_gate", "ffn_up", "ffn_down")]
            mats = [self.w(n) for n in names]
            types = [self.f.tensors[n].type for n in names]
        q = lambda v, t: quantize_act(v, t) if self.act_quant else v
        xg, xu = q(x, types[0]), q(x, types[1])
        h = silu(xg @ mats[0].T) * (xu @ mats[1].T)
        return q(h, types[2]) @ mats[2].T

    def _ffn_moe(self, il, x, pos):
        p = "blk.%d." % il
        logits = self.matmul(p + "ffn_gate_inp.weight", x)  # (T, n_expert)
        probs = np.exp(log_softmax(logits))
        out = np.zeros_like(x)
        k = self.n_expert_used
        chosen = {}  # expert -> [(token row, weight)]
        for t in range(x.shape[0]):
            if self.route_trace is not None:
                self.route_trace.append((il, int(pos[t]), logits[t].copy()))
            ov = self.route_override.get((il, int(pos[t])))
            if ov is None or isinstance(ov, str):
                order = np.argsort(-probs[t], kind="stable")
                top = order[:k] if ov is None else np.concatenate([order[:k - 1], order[k:k + 1]])
            else:
                top = np.asarray(ov)
            wts = probs[t, top]
            if self.norm_topk:
                wts = wts / wts.sum()
            for e, wt in zip(top, wts):
                chosen.setdefault(int(e), []).append((t, wt))
        for e, tw in chosen.items():  # each expert once, over the tokens that chose it
            rows = np.array([t for t, _ in tw])
            wts = np.array([wt for _, wt in tw])
            out[rows] += wts[:, None] * self._expert(il, e, x[rows])
        if self.has(p + "ffn_gate_inp_shexp.weight"):
            gate = self.w(p + "ffn_gate_inp_shexp.weight").reshape(-1)
            xs = quantize_act(x, self.f.tensors[p + "ffn_gate_inp_shexp.weight"].type) if self.act_quant else x
            g = 1.0 / (1.0 + np.exp(-(xs @ gate)))  # (T,)
            sh = self.matmul(p + "ffn_down_shexp.weight",
                             silu(self.matmul(p + "ffn_gate_shexp.weight", x)) * self.matmul(p + "ffn_up_shexp.weight", x))
            out = out + g[:, None] * sh
        return out

    def new_cache(self):
        return {"k": [np.zeros((0, self.n_head_kv, self.head_dim)) for _ in range(self.n_layer)],
                "v": [np.zeros((0, self.n_head_kv, self.head_dim_v)) for _ in range(self.n_layer)],
                "n": 0}

    def forward(self, tokens, cache=None, n_out=None, hidden=False):
        """Appends tokens to the sequence held in cache (a new one when None);
        returns (logits (T, n_vocab), cache), or only the logits of the last
        n_out tokens when n_out is given (the output matrix is the costly part).
        hidden=True returns the final RMS-normed hidden states instead of the
        logits (what a decoder's embeddings are pooled from)."""
        if cache is None:
            cache = self.new_cache()
        tokens = np.asarray(tokens, dtype=np.int64)
        T = tokens.size
        p0 = cache["n"]
        pos = np.arange(p0, p0 + T)
        x = self.w("token_embd.weight")[tokens]  # (T, n_embd)
        nh, nkv, hd, hdv = self.n_head, self.n_head_kv, self.head_dim, self.head_dim_v
        group = nh // nkv
        # causal mask: query t (absolute p0+t) sees keys 0..p0+t
        mask = np.arange(p0 + T)[None, :] <= (p0 + np.arange(T))[:, None]  # (T, P)
        for il in range(self.n_layer):
            p = "blk.%d." % il
            h = rms_norm(x, self.w(p + "attn_norm.weight"), self.eps)
            q = self.matmul(p + "attn_q.weight", h, p + "attn_q.bias").reshape(T, nh, hd)
            k = self.matmul(p + "attn_k.weight", h, p + "attn_k.bias").reshape(T, nkv, hd)
            v = self.matmul(p + "attn_v.weight", h, p + "attn_v.bias").reshape(T, nkv, hdv)
            if self.has(p + "attn_q_norm.weight"):
                q = rms_norm(q, self.w(p + "attn_q_norm.weight"), self.eps)
                k = rms_norm(k, self.w(p + "attn_k_norm.weight"), self.eps)
            q = rope(q, pos, self.n_rot, self.rope_base, self.neox, self.freq_scale)
            k = rope(k, pos, self.n_rot, self.rope_base, self.neox, self.freq_scale)
            K = cache["k"][il] = np.concatenate([cache["k"][il], k], axis=0)  # (P, nkv, hd)
            V = cache["v"][il] = np.concatenate([cache["v"][il], v], axis=0)
            Kh = np.repeat(K, group, axis=1)  # (P, nh, hd): head h uses kv head h // group
            Vh = np.repeat(V, group, axis=1)
            s = np.einsum("thd,phd->htp", q, Kh) / math.sqrt(hd)
            s = np.where(mask[None], s, -np.inf)
            a = np.exp(log_softmax(s))
            o = np.einsum("htp,phd->thd", a, Vh).reshape(T, nh * hdv)
            x = x + self.matmul(p + "attn_output.weight", o, p + "attn_output.bias")
            h = rms_norm(x, self.w(p + "ffn_norm.weight"), self.eps)
            if self.has(p + "ffn_gate_inp.weight"):
                x = x + self._ffn_moe(il, h, pos)
            else:
                x = x + self._ffn_dense(il, h)
        cache["n"] = p0 + T
        if n_out is not None:
            x = x[T - n_out:]
        h = rms_norm(x, self.w("output_norm.weight"), self.eps)
        if hidden:
            return h, cache
        return self.matmul(self.out_name, h), cache


def layer_norm(x, w, b, eps):
    m = x.mean(axis=-1, keepdims=True)
    v = ((x - m) ** 2).mean(axis=-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b


def gelu(x):
    """The tanh approximation (ggml's gelu, which llama.cpp's bert graph uses)."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


class Bert:
    """A BERT encoder as llama.cpp's bert graph reads a GGUF file: token +
    token type 0 + learned position embeddings, LayerNorm; per layer
    attention over the whole input (q, k, v and output with biases), residual,
    LayerNorm (attn_output_norm), GELU FFN with biases, residual, LayerNorm
    (layer_output_norm). No causal mask, no RoPE, no final norm."""

    def __init__(self, src):
        self.f = src if isinstance(src, GGUFFile) else GGUFFile(src)
        kv = self.f.kv
        if kv["general.architecture"] != "bert":
            raise ValueError("not a bert file")
        g = lambda k, d=None: kv.get("bert.%s" % k, d)
        self.n_embd = int(g("embedding_length"))
        self.n_layer = int(g("block_count"))
        self.n_head = int(g("attention.head_count"))
        self.eps = float(g("attention.layer_norm_epsilon", 1e-12))
        self.pooling = int(g("pooling_type", 1))
        self._w = {}

    def w(self, name):
        if name not in self._w:
            self._w[name] = self.f.dequant(name)
        return self._w[name]

    def lin(self, name, x):
        return x @ self.w(name + ".weight").T + self.w(name + ".bias")

    def hidden(self, tokens):
        """(T, n_embd) final hidden states of one input."""
        tokens = np.asarray(tokens, dtype=np.int64)
        T = tokens.size
        x = self.w("token_embd.weight")[tokens] + self.w("token_types.weight")[0] + \
            self.w("position_embd.weight")[np.arange(T)]
        x = layer_norm(x, self.w("token_embd_norm.weight"), self.w("token_embd_norm.bias"), self.eps)
        nh = self.n_head
        hd = self.n_embd // nh
        for il in range(self.n_layer):
            p = "blk.%d." % il
            q = self.lin(p + "attn_q", x).reshape(T, nh, hd)
            k = self.lin(p + "attn_k", x).reshape(T, nh, hd)
            v = self.lin(p + "attn_v", x).reshape(T, nh, hd)
            s = np.einsum("thd,phd->htp", q, k) / math.sqrt(hd)
            a = np.exp(log_softmax(s))
            o = np.einsum("htp,phd->thd", a, v).reshape(T, nh * hd)
            x = layer_norm(self.lin(p + "attn_output", o) + x, self.w(p + "attn_output_norm.weight"),
                           self.w(p + "attn_output_norm.bias"), self.eps)
            h = self.lin(p + "ffn_down", gelu(self.lin(p + "ffn_up", x)))
            x = layer_norm(h + x, self.w(p + "layer_output_norm.weight"), self.w(p + "layer_output_norm.bias"),
                           self.eps)
        return x


POOLING = {"none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}


def embed(model, tokens, pooling):
    """The L2-normalised embedding of one input (a Bert or a decoder Model)
    with pooling none|mean|cls|last: (n_embd,), or (T, n_embd) for none;
    rank (a Bert with a classification head): the score
    cls.output(tanh(cls(h[0])))[0], as a (1,) array."""
    h = model.hidden(tokens) if isinstance(model, Bert) else model.forward(tokens, hidden=True)[0]
    if pooling == "rank":
        t = np.tanh(model.lin("cls", h[0]))
        return model.lin("cls.output", t)[:1]
    if pooling == "none":
        return h / np.linalg.norm(h, axis=1, keepdims=True)
    v = {"mean": lambda: h.mean(axis=0), "cls": lambda: h[0], "last": lambda: h[-1]}[pooling]()
    return v / np.linalg.norm(v)


def logits_for_prompt(model, token_ids, all_positions=False):
    """Logits after the last token of the prompt ((n_vocab,)), or after every
    token ((T, n_vocab)) with all_positions."""
    logits, _ = model.forward(token_ids, n_out=None if all_positions else 1)
    return logits if all_positions else logits[-1]


def logits_along(model, prompt_ids, generated):
    """The logits from which each generated token was chosen, given the prompt
    and the tokens generated so far (teacher forcing): row i is the
    distribution for generated[i]. One batched pass (causal attention makes it
    equal to step-by-step decoding; the self-test checks that)."""
    seq = list(prompt_ids) + list(generated[:-1])
    logits, _ = model.forward(seq, n_out=len(generated))
    return logits


def top2_margin(logits):
    two = np.partition(logits, -2)[-2:]
    return float(two[1] - two[0])


def greedy(model, token_ids, n, stop_ids=()):
    """Greedy decoding of up to n tokens after the prompt. Returns a list of
    steps, each {"token": id, "margin": top-1 minus top-2 logit, "logits": the
    logits the token was chosen from}. Stops after a token in stop_ids."""
    logits, cache = model.forward(token_ids)
    cur = logits[-1]
    steps = []
    for i in range(n):
        tok = int(np.argmax(cur))
        steps.append({"token": tok, "margin": top2_margin(cur), "logits": cur})
        if tok in stop_ids or i == n - 1:
            break
        lg, cache = model.forward([tok], cache)
        cur = lg[-1]
    return steps


# ---------------------------------------------------------------------------
# Helpers shared by the tests that drive the C program
# ---------------------------------------------------------------------------
import os as _os
import subprocess as _sp
import sys as _sys

REPO_ROOT = _os.path.abspath(_os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "..", ".."))


def skip(reason):
    """Exit 77 (skipped) with the reason as the last line."""
    print("skip: " + reason)
    _sys.stdout.flush()
    _sys.exit(77)


def maas_bin():
    """Path of the maas program (env MAAS_BIN, default build/maas in the repo);
    skips the test when it is missing."""
    path = _os.environ.get("MAAS_BIN") or _os.path.join(REPO_ROOT, "build", "maas")
    if not _os.path.isabs(path):
        path = _os.path.join(REPO_ROOT, path)
    if not _os.access(path, _os.X_OK):
        skip("no maas program at %s (build it with make)" % path)
    return path


def run_maas(args, timeout=300, binary=False):
    """Runs maas with args; returns (returncode, stdout, stderr)."""
    p = _sp.run([maas_bin()] + [str(a) for a in args], stdout=_sp.PIPE, stderr=_sp.PIPE, timeout=timeout)
    out = p.stdout if binary else p.stdout.decode("utf-8", errors="replace")
    return p.returncode, out, p.stderr.decode("utf-8", errors="replace")


def require_subcommand(name, probe_args):
    """Skips unless `maas <name> <probe_args>` looks implemented: a missing
    command or one that says it is not built yet means skip."""
    rc, out, err = run_maas([name] + list(probe_args), timeout=60)
    text = (out + err).lower()
    if "not built yet" in text or "unknown command" in text or "not implemented" in text:
        skip("maas %s is not available yet (%s)" % (name, (err or out).strip().splitlines()[-1] if (err or out).strip() else "rc %d" % rc))
    return rc, out, err


def vocab_args(tmpdir, small=True):
    """mkmodel arguments for a vocabulary. MAAS_REF_VOCAB (a GGUF) wins; else,
    with small, a 1024-token byte-level BPE vocabulary that maas learns once per
    tmpdir from data/vocab-train.txt (tiny output matrices keep the float64
    reference fast); else ../shared/testdata/tokenizer/gpt-2.gguf."""
    env = _os.environ.get("MAAS_REF_VOCAB")
    if env:
        return ["--vocab", _os.path.abspath(env)]
    gpt2 = _os.path.join(REPO_ROOT, "..", "shared", "testdata", "tokenizer", "gpt-2.gguf")
    if not small and _os.path.exists(gpt2):
        return ["--vocab", _os.path.abspath(gpt2)]
    out = _os.path.join(tmpdir, "vocab-1024.gguf")
    if not _os.path.exists(out):
        text = _os.path.join(REPO_ROOT, "data", "vocab-train.txt")
        if not _os.path.exists(text):
            text = _os.path.join(tmpdir, "train.txt")
            with open(text, "w") as f:
                for i in range(300):
                    f.write("Request %d: the quick brown fox jumps over the lazy dog; a model serves tokens "
                            "to users who pay per token, and the ledger records every cent. " % i)
        rc, o, e = run_maas(["mkmodel", "--arch", "llama", "--train-vocab", text, "--vocab-size", 1024, "-o", out,
                             "--n-embd", 64, "--n-layer", 1, "--n-head", 2, "--n-head-kv", 1, "--n-ff", 64])
        if rc != 0:
            if _os.path.exists(gpt2):
                return ["--vocab", _os.path.abspath(gpt2)]
            raise RuntimeError("maas mkmodel --train-vocab failed: %s" % e.strip()[-300:])
    return ["--vocab", out]
