#!/usr/bin/env bash
# maas inspect end to end: a GGUF file written by an independent Python
# writer (struct module only) is inspected in the human form, as JSON and
# with --dump; corrupt files must end with one clean line and exit 1.
set -u
cd "$(dirname "$0")/../.."
MAAS_BIN=${MAAS_BIN:-build/maas}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3 || true)
if [ -z "$PY" ]; then echo "python3 not found"; exit 77; fi
if [ ! -x "$MAAS_BIN" ]; then echo "FAIL: $MAAS_BIN not built"; exit 1; fi

work=$(mktemp -d /tmp/maas_inspect.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail=0
check() { # description, command...
  local what=$1; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}

# ---- the file ------------------------------------------------------------------
"$PY" - "$work/m.gguf" <<'EOF' || { echo "FAIL: generator"; exit 1; }
import struct, sys
out = bytearray()
def u32(v): out.extend(struct.pack('<I', v))
def u64(v): out.extend(struct.pack('<Q', v))
def s(b): u64(len(b)); out.extend(b)
kvs = []
def kv(key, typ, payload): kvs.append((key.encode(), typ, payload))
kv('general.architecture', 8, struct.pack('<Q', 5) + b'llama')
name = b'bad \xff\xc3( \x01\n'                       # invalid UTF-8 and controls
kv('general.name', 8, struct.pack('<Q', len(name)) + name)
kv('llama.block_count', 4, struct.pack('<I', 2))
kv('llama.rope.freq_base', 6, struct.pack('<f', 10000.0))
kv('t.i64', 11, struct.pack('<q', -5))
kv('t.bool', 7, b'\x01')
kv('t.f64', 12, struct.pack('<d', 0.1))
kv('t.long', 9, struct.pack('<IQ', 5, 100) + b''.join(struct.pack('<i', i * 3) for i in range(100)))
kv('t.strs', 9, struct.pack('<IQ', 8, 3) + b''.join(struct.pack('<Q', len(x)) + x for x in (b'a', b'', b'\xe4\xb8\x96')))
# tensors: f32 [3, 2], f16 [4], q8_0 [32, 2]
f32 = [1.5, -2.0, 3.25, 0.0, -0.5, 100.0]
f16 = [1.0, -2.5, 0.099975586, 65504.0]
q8 = []
for row in range(2):
    d = 0.5 if row == 0 else 0.25
    q8.append((d, [(i - 16) * (row + 1) for i in range(32)]))
t_data = [
    (b'w.f32', [3, 2], 0, struct.pack('<6f', *f32)),
    (b'w.f16', [4], 1, struct.pack('<4e', *f16)),
    (b'blk.0.q8', [32, 2], 8, b''.join(struct.pack('<e', d) + struct.pack('<32b', *q) for d, q in q8)),
]
out.extend(b'GGUF'); u32(3); u64(len(t_data)); u64(len(kvs))
for key, typ, payload in kvs:
    s(key); u32(typ); out.extend(payload)
off = 0
offs = []
for name, ne, typ, data in t_data:
    s(name); u32(len(ne))
    for n in ne: u64(n)
    u32(typ); u64(off); offs.append(off)
    off += (len(data) + 31) // 32 * 32
while len(out) % 32: out.append(0)
for name, ne, typ, data in t_data:
    out.extend(data)
    while len(out) % 32: out.append(0)
open(sys.argv[1], 'wb').write(out)
EOF

# ---- human form ----------------------------------------------------------------
"$MAAS_BIN" inspect "$work/m.gguf" >"$work/human.txt" 2>"$work/err.txt"
check "human form exits 0" test $? -eq 0
check "human form lists tensors and shapes" grep -Eq '^  blk\.0\.q8 +q8_0 +\[32, 2\] +68$' "$work/human.txt"
check "human form shows the totals" grep -q '^totals: 3 tensors, 74 parameters, 100 bytes' "$work/human.txt"
check "human form abbreviates long arrays" grep -Eq 't\.long +\[int32\] +n=100 \[0, 3, 6, 9, 12, 15, 18, 21, \.\.\.\]' "$work/human.txt"
check "human form escapes control bytes" grep -q '"bad \\xff\\xc3( \\x01\\n"' "$work/human.txt"

# ---- JSON ----------------------------------------------------------------------
"$MAAS_BIN" inspect --json "$work/m.gguf" >"$work/j.json" 2>"$work/err.txt"
check "json exits 0" test $? -eq 0
check "json content" "$PY" - "$work/j.json" <<'EOF'
import json, sys
raw = open(sys.argv[1], 'rb').read()
raw.decode('utf-8')                       # strictly valid UTF-8
d = json.loads(raw)
m = d['metadata']
assert d['version'] == 3 and d['alignment'] == 32, d
assert m['general.name'] == 'bad \ufffd\ufffd( \x01\n', repr(m['general.name'])
assert m['llama.block_count'] == 2 and m['llama.rope.freq_base'] == 10000.0
assert m['t.i64'] == -5 and m['t.bool'] is True and m['t.f64'] == 0.1
assert m['t.strs'] == ['a', '', '\u4e16'], m['t.strs']
lg = m['t.long']
assert lg['type'] == 'array' and lg['element_type'] == 'int32' and lg['n'] == 100, lg
assert lg['head'] == [i * 3 for i in range(16)], lg
t = d['tensors']
assert [x['name'] for x in t] == ['w.f32', 'w.f16', 'blk.0.q8']
assert t[0]['shape'] == [3, 2] and t[0]['type'] == 'f32' and t[0]['bytes'] == 24 and t[0]['offset'] == 0
assert t[1]['shape'] == [4] and t[1]['offset'] == 32 and t[1]['bytes'] == 8
assert t[2]['shape'] == [32, 2] and t[2]['type'] == 'q8_0' and t[2]['offset'] == 64 and t[2]['bytes'] == 68
assert d['n_params'] == 74 and d['n_bytes'] == 100 and d['file_size'] == d['data_offset'] + 160
EOF

# ---- --dump --------------------------------------------------------------------
"$MAAS_BIN" inspect "$work/m.gguf" --dump w.f32 >"$work/f32.bin" &&
"$MAAS_BIN" inspect "$work/m.gguf" --dump w.f16 >"$work/f16.bin" &&
"$MAAS_BIN" inspect "$work/m.gguf" --dump blk.0.q8 >"$work/q8.bin"
check "dump exits 0" test $? -eq 0
check "dumped values" "$PY" - "$work" <<'EOF'
import struct, sys
w = sys.argv[1]
def floats(p):
    b = open(p, 'rb').read(); return list(struct.unpack('<%df' % (len(b) // 4), b))
assert floats(w + '/f32.bin') == [1.5, -2.0, 3.25, 0.0, -0.5, 100.0]
assert floats(w + '/f16.bin') == [1.0, -2.5, struct.unpack('<e', struct.pack('<e', 0.099975586))[0], 65504.0]
want = [0.5 * (i - 16) for i in range(32)] + [0.25 * (i - 16) * 2 for i in range(32)]
got = floats(w + '/q8.bin')
assert got == want, (got[:4], want[:4])
EOF
"$MAAS_BIN" inspect "$work/m.gguf" --dump nope >/dev/null 2>"$work/err.txt"
check "dump of a missing tensor exits 1" test $? -eq 1
check "... naming it" grep -q "no tensor named 'nope'" "$work/err.txt"

# ---- corrupt files -------------------------------------------------------------
size=$(stat -c %s "$work/m.gguf")
for cut in 3 24 100 300 $((size - 29)); do   # the last 28 bytes are padding
  head -c $cut "$work/m.gguf" >"$work/cut.gguf"
  "$MAAS_BIN" inspect "$work/cut.gguf" >/dev/null 2>"$work/err.txt"
  rc=$?
  check "truncated to $cut bytes: exit 1" test $rc -eq 1
  check "... with one line naming the file" test "$(wc -l <"$work/err.txt")" -eq 1 -a -n "$(grep "cut.gguf: " "$work/err.txt")"
done
"$PY" - "$work/m.gguf" "$work/bad.gguf" <<'EOF'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
b[16:24] = (2**63).to_bytes(8, 'little')     # hostile n_kv
open(sys.argv[2], 'wb').write(b)
EOF
"$MAAS_BIN" inspect --json "$work/bad.gguf" >/dev/null 2>"$work/err.txt"
check "hostile n_kv: exit 1" test $? -eq 1
check "... message says what and where" grep -q 'bad.gguf: key/value count 9223372036854775808 is impossible.*(at offset 16)' "$work/err.txt"
"$MAAS_BIN" inspect "$work/missing.gguf" >/dev/null 2>"$work/err.txt"
check "missing file: exit 1" test $? -eq 1
"$MAAS_BIN" inspect >/dev/null 2>&1
check "no file: usage error 2" test $? -eq 2
"$MAAS_BIN" inspect "$work/m.gguf" --frobnicate >/dev/null 2>&1
check "unknown option: usage error 2" test $? -eq 2

# ---- damaged seeds: exit 0 with valid JSON, or exit 1 with one line --------------
check "300 damaged seeds: valid JSON or one clean error line" "$PY" - "$MAAS_BIN" "$work" <<'EOF2'
import glob, json, random, subprocess, sys
maas, work = sys.argv[1], sys.argv[2]
rng = random.Random(7)
seeds = [open(p, 'rb').read() for p in sorted(glob.glob('tests/fuzz/corpus/gguf_read/*.gguf'))]
opened = refused = 0
for i in range(300):
    b = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 6)):
        b[rng.randrange(len(b))] = rng.randrange(256)
    path = '%s/mut.gguf' % work
    open(path, 'wb').write(b)
    for args in (['--json'], []):
        p = subprocess.run([maas, 'inspect', path] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode == 0:
            opened += 1
            text = p.stdout.decode('utf-8')          # strict: must be valid UTF-8
            if args:
                json.loads(text)
        elif p.returncode == 1:
            refused += 1
            err = p.stderr.decode('utf-8', 'replace')
            assert err.count('\n') == 1 and 'mut.gguf: ' in err, err
        else:
            raise SystemExit('exit %d on a damaged file: %s' % (p.returncode, p.stderr[-300:]))
print('damaged seeds: %d runs opened, %d refused' % (opened, refused))
assert opened > 50 and refused > 50
EOF2

# ---- files from our writer, read by the independent NumPy reader --------------
# (tests/ref/gguf_ref.py): same keys, tensors, shapes and offsets, and --dump
# agrees with its dequantization.
if "$PY" -c "import numpy" 2>/dev/null; then
  for seed in tensors_mixed model_like vocab_small kv_all_types align64; do
    f=tests/fuzz/corpus/gguf_read/$seed.gguf
    "$MAAS_BIN" inspect --json "$f" >"$work/s.json" 2>"$work/err.txt"
    check "$seed: inspect --json" test $? -eq 0
    check "$seed: agrees with tests/ref/gguf_ref.py" "$PY" - "$f" "$work/s.json" "$MAAS_BIN" <<'EOF2'
import json, subprocess, sys
sys.path.insert(0, 'tests/ref')
import numpy as np
import gguf_ref
path, js, maas = sys.argv[1], sys.argv[2], sys.argv[3]
g = gguf_ref.GGUFFile(path)
d = json.load(open(js))
assert list(d['metadata']) == list(g.kv), (list(d['metadata']), list(g.kv))
for k, v in g.kv.items():
    m = d['metadata'][k]
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, str):
        v = v.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')
    if isinstance(v, list) and v and isinstance(v[0], str):
        v = [x.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace') for x in v]
    if isinstance(m, float) or (isinstance(m, list) and m and isinstance(m[0], float)):
        assert np.allclose(np.array(m, dtype=float), np.array(v, dtype=float), rtol=1e-7, atol=0), (k, m, v)
    else:
        assert m == v, (k, m, v)
assert [t['name'] for t in d['tensors']] == list(g.tensors)
for t in d['tensors']:
    r = g.tensors[t['name']]
    assert tuple(t['shape']) == r.ne and t['offset'] == r.offset and t['bytes'] == r.nbytes, (t, r.ne)
    assert t['type'] == r.type_name.lower(), (t['type'], r.type_name)
    want = gguf_ref.dequantize(r.type, g.raw(t['name']), r.n_elements)
    got = np.frombuffer(subprocess.run([maas, 'inspect', path, '--dump', t['name']], check=True,
                                       stdout=subprocess.PIPE).stdout, dtype='<f4').astype(np.float64)
    assert got.shape == want.shape and np.array_equal(got, want), (t['name'], got[:4], want[:4])
assert d['data_offset'] == g.data_offset and d['alignment'] == g.alignment
EOF2
  done
else
  echo "note: numpy not available; the cross-check with tests/ref/gguf_ref.py was not run"
fi

[ $fail -eq 0 ] && echo "gguf_inspect: all checks passed"
exit $fail
