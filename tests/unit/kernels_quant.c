/*
 * kernels: the reference quantized types (quant_ref.c, kquant_ref.c).
 *
 * Every test runs on the reference table (variant 0, "ref"):
 *   - golden: quantized bytes of fixed inputs hash to the values ggml's own
 *     quantizers produce for the same inputs (recorded from a build of
 *     ggml/llama.cpp, ggml-quants.c, without an importance matrix);
 *   - known answers: hand-built blocks dequantize to hand-computed values;
 *   - round trip: relative RMS error of quantize -> dequantize on gaussian
 *     rows of 1, 3 and 17 blocks is below a bound per type, and the errors
 *     are ordered by bits per weight;
 *   - determinism: the same bytes twice, into buffers pre-filled differently
 *     (which also catches bytes left unwritten);
 *   - dot products: vec_dot equals the double-precision dot of the two
 *     dequantized rows, and is near the f32 dot within the quantization error;
 *   - edge rows: all zero, constant, one huge outlier: finite results;
 *     NaN / infinity spoil only their own block, without undefined behaviour.
 */
#include "kernels/kernels.h"
#include "test.h"
#include "kernels_variants.h"

#include <stdint.h>

/* ---- helpers ---- */

struct qtype {
    enum ggml_type type;
    enum ggml_type act;     /* expected vec_dot type */
    double rms_bound;       /* bound on the relative RMS error, gaussian input */
};

/* Bounds on the relative RMS error of one gaussian row of 1, 3 or 17 blocks.
 * Derivation: rounding to a step h leaves an RMS error of h / sqrt(12). For
 * q8_0, h = amax / 127 and the largest of 32 gaussian values is ~2.1 sigma
 * (up to ~3 sigma in an unlucky block), giving 0.0048 sigma on average and
 * ~0.007 for a single bad block: bound 0.009. q5_0 / q4_0 have 16x / 32x the
 * step of q8_0 (minus the gain from the one level beyond the max): ~0.045 /
 * 0.09. The affine types (q4_1, q5_1) spend one level less on the sign and
 * use the true range, ~10% better. The k-quants' searched scales and mins
 * beat these at equal bits; q2_K / q3_K are bounded by their 4 / 8 levels.
 * Each bound is ~1.25x the worst single row measured (the means are printed
 * by test_roundtrip_rms and recorded in the report of the change). */
static const struct qtype qtypes[] = {
    {GGML_TYPE_Q4_0, GGML_TYPE_Q8_0, 0.125},
    {GGML_TYPE_Q4_1, GGML_TYPE_Q8_1, 0.115},
    {GGML_TYPE_Q5_0, GGML_TYPE_Q8_0, 0.070},
    {GGML_TYPE_Q5_1, GGML_TYPE_Q8_1, 0.060},
    {GGML_TYPE_Q8_0, GGML_TYPE_Q8_0, 0.0090},
    {GGML_TYPE_IQ4_NL, GGML_TYPE_Q8_0, 0.110},
    {GGML_TYPE_Q2_K, GGML_TYPE_Q8_K, 0.410},
    {GGML_TYPE_Q3_K, GGML_TYPE_Q8_K, 0.210},
    {GGML_TYPE_Q4_K, GGML_TYPE_Q8_K, 0.097},
    {GGML_TYPE_Q5_K, GGML_TYPE_Q8_K, 0.048},
    {GGML_TYPE_Q6_K, GGML_TYPE_Q8_K, 0.024},
};
#define N_QTYPES (int)(sizeof qtypes / sizeof qtypes[0])

static double measured_rms[GGML_TYPE_COUNT];

static void fill_normal(struct rng *r, float *x, int64_t n, double scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(rng_normal(r) * scale);
}

static double rel_rms(const float *x, const float *y, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        den += (double)x[i] * x[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static bool all_finite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

static float *quant_roundtrip(enum ggml_type t, const float *x, int64_t n)
{
    const struct kern_type_ops *o = kern_ops(t);
    void *q = xmalloc(ggml_row_size(t, n));
    float *y = xmalloc((size_t)n * sizeof(float));
    o->from_float(x, q, n);
    o->to_float(q, y, n);
    free(q);
    return y;
}

/* ---- golden: bytes as ggml writes them ---- */

/* Inputs built from integer random bits and IEEE basic operations only (no
 * libm), so that every machine produces the same floats. */
static float gold_normal(struct rng *r)
{
    int32_t s = 0;
    for (int k = 0; k < 4; k++)
        s += (int32_t)(rng_u64(r) >> 40) - (1 << 23);
    return (float)s * (1.7320508f / 8388608.0f);
}

#define GOLD_N 512
#define GOLD_ROWS 9

/* Nine kinds of row: gaussian, small, all positive, sparse, two outliers,
 * half zero, heavy-tailed, values on a grid (rounding ties), and groups of
 * 16 that are constant (negative or zero) between gaussian ones. */
static void gold_rows(float *x)
{
    struct rng r;
    rng_seed(&r, 20260601);
    for (int row = 0; row < GOLD_ROWS; row++) {
        float *y = x + row * GOLD_N;
        for (int i = 0; i < GOLD_N; i++) {
            float g = gold_normal(&r);
            switch (row) {
            case 0: y[i] = g; break;
            case 1: y[i] = g * 0.01f; break;
            case 2: y[i] = (g < 0 ? -g : g) + 0.1f; break;
            case 3: y[i] = (rng_u64(&r) & 1) ? g : 0.0f; break;
            case 4: y[i] = g; break;
            case 5: y[i] = i < GOLD_N / 2 ? 0.0f : g; break;
            case 6: y[i] = g * g * g; break;
            case 7: y[i] = (float)((int)(rng_u64(&r) % 17) - 8) * 0.25f; break;
            case 8: y[i] = (i / 16) % 3 == 0 ? -0.5f - (float)((i / 16) % 7) : (i / 16) % 3 == 1 ? 0.0f : g; break;
            }
        }
        if (row == 4) {
            y[37] = 40.0f;
            y[300] = -25.0f;
        }
    }
}


/* FNV-1a of the quantized rows of gold_rows(), computed with ggml's
 * quantize_<type>(src, dst, 9, 512, NULL) and quantize_row_q8_*_ref (the
 * ggml of llama.cpp as built into the Node binding @fugood/llama.node
 * 1.7.15). The same comparison on 9 kinds of row x 300 rows x 1024 values
 * found every byte equal for every type. */
static const struct {
    enum ggml_type type;
    uint64_t hash;
} golden[] = {
    {GGML_TYPE_Q4_0, 0xa20e6d523c54e3c9ull},   {GGML_TYPE_Q4_1, 0x87af896cb4e7d5b5ull},
    {GGML_TYPE_Q5_0, 0x12f1ff2aaca25268ull},   {GGML_TYPE_Q5_1, 0x8f966a371eb937a7ull},
    {GGML_TYPE_Q8_0, 0x5bce8ce7e6934baaull},   {GGML_TYPE_IQ4_NL, 0xf219b6b55f2bf82aull},
    {GGML_TYPE_Q2_K, 0x71e3049fadbc9f80ull},   {GGML_TYPE_Q3_K, 0x6bec976f379899c3ull},
    {GGML_TYPE_Q4_K, 0xc934da3a4f710c0eull},   {GGML_TYPE_Q5_K, 0xc8296b82e4f68a22ull},
    {GGML_TYPE_Q6_K, 0xd508e7999d980013ull},   {GGML_TYPE_Q8_1, 0x6be0cfe790e70cc1ull},
    {GGML_TYPE_Q8_K, 0xdc61c082d98c46c6ull},
};

TEST(test_golden_ggml_bytes)
{
    float *x = xmalloc(sizeof(float) * GOLD_N * GOLD_ROWS);
    gold_rows(x);
    for (size_t k = 0; k < sizeof golden / sizeof golden[0]; k++) {
        enum ggml_type t = golden[k].type;
        size_t bytes = ggml_row_size(t, GOLD_N) * GOLD_ROWS;
        uint8_t *q = xmalloc(bytes);
        memset(q, 0xa5, bytes);
        for (int r = 0; r < GOLD_ROWS; r++)
            kern_ops(t)->from_float(x + r * GOLD_N, q + r * ggml_row_size(t, GOLD_N), GOLD_N);
        uint64_t h = hash_bytes(q, bytes);
        CHECKF(h == golden[k].hash, "%s: hash %016llx, ggml's %016llx", ggml_type_name(t), (unsigned long long)h,
               (unsigned long long)golden[k].hash);
        free(q);
    }
    free(x);
}

/* ---- table ---- */

TEST(test_table)
{
    for (int k = 0; k < N_QTYPES; k++) {
        const struct kern_type_ops *o = kern_ops(qtypes[k].type);
        CHECKF(o->to_float && o->from_float && o->from_float_act && o->vec_dot, "%s",
               ggml_type_name(qtypes[k].type));
        CHECKF(o->vec_dot_type == qtypes[k].act, "%s", ggml_type_name(qtypes[k].type));
        CHECK(kern_type_supported(qtypes[k].type));
        CHECK(kern_type_quantizable(qtypes[k].type));
        /* the activation quantizer writes the vec_dot type */
        CHECK(o->from_float_act == kern_ops(o->vec_dot_type)->from_float);
    }
    CHECK(kern_ops(GGML_TYPE_Q8_1)->from_float && kern_ops(GGML_TYPE_Q8_1)->to_float);
    CHECK(kern_ops(GGML_TYPE_Q8_K)->from_float && kern_ops(GGML_TYPE_Q8_K)->to_float);
}

/* ---- known answers: hand-built blocks ---- */

TEST(test_known_q4_0)
{
    block_q4_0 b;
    b.d = 0x3800; /* 0.5 */
    for (int j = 0; j < 16; j++)
        b.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32];
    kern_ops(GGML_TYPE_Q4_0)->to_float(&b, y, 32);
    for (int j = 0; j < 16; j++) {
        CHECK(y[j] == (j - 8) * 0.5f);
        CHECK(y[j + 16] == (7 - j) * 0.5f);
    }
    /* Quantizing: the largest magnitude is -2 (element 0), so d = -2 / -8 =
     * 0.25 and q = trunc(x / d + 8.5): x_j = (j - 16) / 8 gives q = trunc(j/2 + 0.5),
     * 16 for j = 31 clamped to 15. */
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = (j - 16) * 0.125f;
    kern_ops(GGML_TYPE_Q4_0)->from_float(x, &b, 32);
    CHECK(b.d == 0x3400); /* 0.25 */
    for (int j = 0; j < 32; j++) {
        int q = j < 16 ? b.qs[j] & 15 : b.qs[j - 16] >> 4;
        int want = j == 31 ? 15 : (int)(j / 2.0 + 0.5);
        CHECKF(q == want, "j=%d q=%d want %d", j, q, want);
    }
}

TEST(test_known_q5_0_high_bits)
{
    block_q5_0 b;
    memset(&b, 0, sizeof b);
    b.d = 0x3c00; /* 1.0 */
    /* bit j of the little-endian word qh is bit 4 of element j */
    b.qh[0] = 0x01; /* element 0 */
    b.qh[1] = 0x80; /* element 15 */
    b.qh[2] = 0x01; /* element 16 */
    b.qh[3] = 0x80; /* element 31 */
    b.qs[0] = 0x21;  /* element 0: 1, element 16: 2 */
    b.qs[15] = 0xf3; /* element 15: 3, element 31: 15 */
    float y[32];
    kern_ops(GGML_TYPE_Q5_0)->to_float(&b, y, 32);
    CHECK(y[0] == 1.0f);   /* 16 + 1 - 16 */
    CHECK(y[15] == 3.0f);  /* 16 + 3 - 16 */
    CHECK(y[16] == 2.0f);  /* 16 + 2 - 16 */
    CHECK(y[31] == 15.0f); /* 16 + 15 - 16 */
    CHECK(y[1] == -16.0f);
    CHECK(y[17] == -16.0f);
    /* q5_1: same bits, d = 0.5, m = -1 */
    block_q5_1 c;
    memset(&c, 0, sizeof c);
    c.d = 0x3800;
    c.m = 0xbc00;
    memcpy(c.qh, b.qh, 4);
    memcpy(c.qs, b.qs, 16);
    kern_ops(GGML_TYPE_Q5_1)->to_float(&c, y, 32);
    CHECK(y[0] == 17 * 0.5f - 1);
    CHECK(y[31] == 31 * 0.5f - 1);
    CHECK(y[1] == -1.0f);
}

TEST(test_known_q8_0_q4_1_iq4_nl)
{
    block_q8_0 a;
    a.d = 0x3400; /* 0.25 */
    for (int j = 0; j < 32; j++)
        a.qs[j] = (int8_t)(j * 8 - 128);
    float y[32];
    kern_ops(GGML_TYPE_Q8_0)->to_float(&a, y, 32);
    for (int j = 0; j < 32; j++)
        CHECK(y[j] == (j * 8 - 128) * 0.25f);

    block_q4_1 b;
    b.d = 0x4000; /* 2 */
    b.m = 0xc500; /* -5 */
    for (int j = 0; j < 16; j++)
        b.qs[j] = (uint8_t)((15 - j) | (j << 4));
    kern_ops(GGML_TYPE_Q4_1)->to_float(&b, y, 32);
    for (int j = 0; j < 16; j++) {
        CHECK(y[j] == (15 - j) * 2.0f - 5);
        CHECK(y[j + 16] == j * 2.0f - 5);
    }

    static const int kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    block_iq4_nl c;
    c.d = 0x3000; /* 0.125 */
    for (int j = 0; j < 16; j++)
        c.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    kern_ops(GGML_TYPE_IQ4_NL)->to_float(&c, y, 32);
    for (int j = 0; j < 16; j++) {
        CHECK(y[j] == kv[j] * 0.125f);
        CHECK(y[j + 16] == kv[15 - j] * 0.125f);
    }
}

/* The 2-bit field of element e (0..255) in a q2_K / q3_K qs array: 32-byte
 * half e/128, byte e%32, bit pair (e%128)/32. */
static void put2(uint8_t *qs, int e, int v)
{
    qs[(e / 128) * 32 + e % 32] |= (uint8_t)((v & 3) << (2 * ((e % 128) / 32)));
}

TEST(test_known_q2_K)
{
    block_q2_K b;
    memset(&b, 0, sizeof b);
    b.d = 0x3800;    /* 0.5 */
    b.dmin = 0x3400; /* 0.25 */
    for (int j = 0; j < 16; j++)
        b.scales[j] = (uint8_t)((j % 16) | (((15 - j) % 16) << 4)); /* scale j, min 15-j */
    for (int e = 0; e < 256; e++)
        put2(b.qs, e, (e * 5 + 1) % 4);
    float y[256];
    kern_ops(GGML_TYPE_Q2_K)->to_float(&b, y, 256);
    for (int e = 0; e < 256; e++) {
        int j = e / 16;
        float want = 0.5f * j * ((e * 5 + 1) % 4) - 0.25f * (15 - j);
        CHECKF(y[e] == want, "e=%d %g vs %g", e, y[e], want);
    }
}

TEST(test_known_q3_K)
{
    /* Scales: low 4 bits in bytes 0..7 (scale j < 8 low nibble of byte j,
     * j >= 8 high nibble of byte j-8), high 2 bits in byte 8 + j%4 at bit
     * pair j/4; stored + 32. Decoded by hand from these bytes: */
    static const uint8_t sb[12] = {0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe, 0x00, 0xff, 0x1b, 0xe4};
    static const int want_sc[16] = {-32, 18, 20, -26, -24, 26, 12, -2, -31, 19, -11, 7, -23, 27, -19, 31};
    block_q3_K b;
    memset(&b, 0, sizeof b);
    memcpy(b.scales, sb, 12);
    b.d = 0x3800; /* 0.5 */
    /* element e: low bits (e*3)%4; high bit set when e%3 == 0 (then q = low,
     * else q = low - 4); hmask byte e%32, bit e/32 */
    for (int e = 0; e < 256; e++) {
        put2(b.qs, e, (e * 3) % 4);
        if (e % 3 == 0)
            b.hmask[e % 32] |= (uint8_t)(1 << (e / 32));
    }
    float y[256];
    kern_ops(GGML_TYPE_Q3_K)->to_float(&b, y, 256);
    for (int e = 0; e < 256; e++) {
        int q = (e * 3) % 4 - (e % 3 == 0 ? 0 : 4);
        float want = 0.5f * want_sc[e / 16] * q;
        CHECKF(y[e] == want, "e=%d %g vs %g", e, y[e], want);
    }
}

TEST(test_known_q4_K_q5_K)
{
    /* Decoded by hand: sub-block j < 4 takes scale = byte j & 63, min = byte
     * j+4 & 63; j >= 4 takes the nibbles of byte j+4 plus the top two bits of
     * bytes j-4 (scale) and j (min) as bits 4-5. */
    static const uint8_t sb[12] = {0x01, 0x0a, 0x54, 0xff, 0x00, 0x47, 0x3c, 0xdf, 0x25, 0x31, 0xf0, 0x0c};
    static const int want_sc[8] = {1, 10, 20, 63, 5, 1, 16, 60};
    static const int want_m[8] = {0, 7, 60, 31, 2, 19, 15, 48};
    block_q4_K b;
    memset(&b, 0, sizeof b);
    b.d = 0x3c00;    /* 1 */
    b.dmin = 0x3800; /* 0.5 */
    memcpy(b.scales, sb, 12);
    /* sub-block j: 32 bytes at 32*(j/2), low nibbles for even j, high for odd */
    for (int k = 0; k < 128; k++)
        b.qs[k] = (uint8_t)(k * 37 + 11);
    float y[256];
    kern_ops(GGML_TYPE_Q4_K)->to_float(&b, y, 256);
    for (int e = 0; e < 256; e++) {
        int j = e / 32, l = e % 32;
        uint8_t byte = (uint8_t)((32 * (j / 2) + l) * 37 + 11);
        int q = j % 2 ? byte >> 4 : byte & 15;
        float want = 1.0f * want_sc[j] * q - 0.5f * want_m[j];
        CHECKF(y[e] == want, "q4_K e=%d %g vs %g", e, y[e], want);
    }

    /* q5_K: the same plus bit 4 of element 32*j + l in bit j of qh[l] */
    block_q5_K c;
    memset(&c, 0, sizeof c);
    c.d = b.d;
    c.dmin = b.dmin;
    memcpy(c.scales, sb, 12);
    memcpy(c.qs, b.qs, 128);
    for (int l = 0; l < 32; l++)
        c.qh[l] = (uint8_t)(l * 13 + 5);
    kern_ops(GGML_TYPE_Q5_K)->to_float(&c, y, 256);
    for (int e = 0; e < 256; e++) {
        int j = e / 32, l = e % 32;
        uint8_t byte = (uint8_t)((32 * (j / 2) + l) * 37 + 11);
        int q = (j % 2 ? byte >> 4 : byte & 15) + ((((l * 13 + 5) & 0xff) >> j) & 1) * 16;
        float want = 1.0f * want_sc[j] * q - 0.5f * want_m[j];
        CHECKF(y[e] == want, "q5_K e=%d %g vs %g", e, y[e], want);
    }
}

TEST(test_known_q6_K)
{
    block_q6_K b;
    memset(&b, 0, sizeof b);
    b.d = 0x3000; /* 0.125 */
    for (int j = 0; j < 16; j++)
        b.scales[j] = (int8_t)(j * 17 - 128);
    /* element e = 128h + 32g + l: low nibble in ql[64h + l + 32(g&1)], low
     * half for g < 2; bits 4-5 in qh[32h + l] at bit pair g */
    for (int e = 0; e < 256; e++) {
        int v = (e * 29 + 3) % 64;
        int h = e / 128, g = (e % 128) / 32, l = e % 32;
        b.ql[64 * h + l + 32 * (g & 1)] |= (uint8_t)((v & 15) << (g < 2 ? 0 : 4));
        b.qh[32 * h + l] |= (uint8_t)((v >> 4) << (2 * g));
    }
    float y[256];
    kern_ops(GGML_TYPE_Q6_K)->to_float(&b, y, 256);
    for (int e = 0; e < 256; e++) {
        float want = 0.125f * (e / 16 * 17 - 128) * ((e * 29 + 3) % 64 - 32);
        CHECKF(y[e] == want, "e=%d %g vs %g", e, y[e], want);
    }
}

/* The activation formats: q8_1's s = d * sum(q) and q8_K's bsums. */
TEST(test_known_activations)
{
    struct rng r;
    rng_seed(&r, 11);
    float x[512];
    fill_normal(&r, x, 512, 1.0);
    block_q8_1 a[16];
    kern_ops(GGML_TYPE_Q8_1)->from_float(x, a, 512);
    for (int i = 0; i < 16; i++) {
        int sum = 0, amax = 0;
        for (int j = 0; j < 32; j++) {
            sum += a[i].qs[j];
            amax = abs(a[i].qs[j]) > amax ? abs(a[i].qs[j]) : amax;
        }
        CHECK(amax == 127);
        /* s uses the unrounded d = max|x| / 127, then rounds to fp16 */
        float xmax = 0;
        for (int j = 0; j < 32; j++)
            xmax = fmaxf(xmax, fabsf(x[32 * i + j]));
        CHECK(a[i].d == fp32_to_fp16(xmax / 127));
        CHECK(a[i].s == fp32_to_fp16(sum * (xmax / 127)));
    }
    block_q8_K k[2];
    kern_ops(GGML_TYPE_Q8_K)->from_float(x, k, 512);
    for (int i = 0; i < 2; i++) {
        int amax = 0;
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) {
                sum += k[i].qs[16 * g + j];
                amax = abs(k[i].qs[16 * g + j]) > amax ? abs(k[i].qs[16 * g + j]) : amax;
            }
            CHECK(k[i].bsums[g] == sum);
        }
        CHECK(amax == 127);
        for (int j = 0; j < 256; j++) /* every value within half a step */
            CHECK(fabsf(k[i].d * k[i].qs[j] - x[256 * i + j]) <= 0.5001f * fabsf(k[i].d));
    }
}

/* ---- round trip, determinism, dot products ---- */

static int64_t blck(enum ggml_type t)
{
    return ggml_blck_size(t);
}

TEST(test_roundtrip_rms)
{
    static const int nblocks[] = {1, 3, 17};
    struct rng r;
    rng_seed(&r, 42);
    for (int k = 0; k < N_QTYPES; k++) {
        enum ggml_type t = qtypes[k].type;
        double num = 0, den = 0, worst = 0;
        for (int s = 0; s < 3; s++) {
            int64_t n = nblocks[s] * blck(t);
            for (int rep = 0; rep < 8; rep++) {
                float *x = xmalloc((size_t)n * sizeof(float));
                fill_normal(&r, x, n, rep % 2 ? 0.02 : 1.0);
                float *y = quant_roundtrip(t, x, n);
                double e = rel_rms(x, y, n);
                CHECKF(e <= qtypes[k].rms_bound && all_finite(y, n), "%s n=%lld: rel rms %.4f > %.4f",
                       ggml_type_name(t), (long long)n, e, qtypes[k].rms_bound);
                worst = e > worst ? e : worst;
                for (int64_t i = 0; i < n; i++) {
                    num += ((double)x[i] - y[i]) * ((double)x[i] - y[i]) / (rep % 2 ? 0.0004 : 1.0);
                    den += (double)x[i] * x[i] / (rep % 2 ? 0.0004 : 1.0);
                }
                free(x);
                free(y);
            }
        }
        measured_rms[t] = sqrt(num / den);
        printf("     %-6s rel rms %.5f (worst row %.5f, bound %.4f)\n", ggml_type_name(t), measured_rms[t], worst,
               qtypes[k].rms_bound);
    }
    /* more bits, less error */
    CHECK(measured_rms[GGML_TYPE_Q2_K] > measured_rms[GGML_TYPE_Q3_K]);
    CHECK(measured_rms[GGML_TYPE_Q3_K] > measured_rms[GGML_TYPE_Q4_K]);
    CHECK(measured_rms[GGML_TYPE_Q4_K] > measured_rms[GGML_TYPE_Q5_K]);
    CHECK(measured_rms[GGML_TYPE_Q5_K] > measured_rms[GGML_TYPE_Q6_K]);
    CHECK(measured_rms[GGML_TYPE_Q6_K] > measured_rms[GGML_TYPE_Q8_0]);
    CHECK(measured_rms[GGML_TYPE_Q4_0] > measured_rms[GGML_TYPE_Q5_0]);
    CHECK(measured_rms[GGML_TYPE_Q5_0] > measured_rms[GGML_TYPE_Q8_0]);
    CHECK(measured_rms[GGML_TYPE_Q4_1] > measured_rms[GGML_TYPE_Q5_1]);
    CHECK(measured_rms[GGML_TYPE_Q4_0] > measured_rms[GGML_TYPE_Q4_1]);
    CHECK(measured_rms[GGML_TYPE_Q5_0] > measured_rms[GGML_TYPE_Q5_1]);
    /* the non-linear levels beat the linear ones at 4.5 bits */
    CHECK(measured_rms[GGML_TYPE_Q4_0] > measured_rms[GGML_TYPE_IQ4_NL]);
    /* the searched k-quant scales beat the block-of-32 max rule at similar bits */
    CHECK(measured_rms[GGML_TYPE_Q4_0] > measured_rms[GGML_TYPE_Q4_K]);
    CHECK(measured_rms[GGML_TYPE_Q5_0] > measured_rms[GGML_TYPE_Q5_K]);
}

TEST(test_deterministic)
{
    struct rng r;
    rng_seed(&r, 7);
    const int64_t n = 17 * 256;
    float *x = xmalloc(n * sizeof(float));
    fill_normal(&r, x, n, 1.0);
    enum ggml_type all[N_QTYPES + 2];
    for (int k = 0; k < N_QTYPES; k++)
        all[k] = qtypes[k].type;
    all[N_QTYPES] = GGML_TYPE_Q8_1;
    all[N_QTYPES + 1] = GGML_TYPE_Q8_K;
    for (int k = 0; k < N_QTYPES + 2; k++) {
        size_t bytes = ggml_row_size(all[k], n);
        uint8_t *a = xmalloc(bytes), *b = xmalloc(bytes);
        memset(a, 0x00, bytes);
        memset(b, 0xff, bytes);
        kern_ops(all[k])->from_float(x, a, n);
        kern_ops(all[k])->from_float(x, b, n);
        CHECKF(memcmp(a, b, bytes) == 0, "%s", ggml_type_name(all[k]));
        free(a);
        free(b);
    }
    free(x);
}

/* The exact dot of two dequantized rows in double, and sum |w a|. */
static double exact_dot(const float *w, const float *a, int64_t n, double *abs_sum)
{
    double s = 0, as = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)w[i] * a[i];
        as += fabs((double)w[i] * a[i]);
    }
    *abs_sum = as;
    return s;
}

/* For the q8_1 pairs the min term is m * s with s = d_a * sum(q_a) rounded
 * to fp16 (as ggml stores it), not m * d_a * sum(q_a): the difference to add
 * to the dot of the dequantized rows. Zero for every other type. */
static double q8_1_min_correction(enum ggml_type t, const void *qx, const void *qa, int64_t n)
{
    if (t != GGML_TYPE_Q4_1 && t != GGML_TYPE_Q5_1)
        return 0;
    const block_q8_1 *a = qa;
    double c = 0;
    for (int64_t b = 0; b < n / 32; b++) {
        float m = fp16_to_fp32(t == GGML_TYPE_Q4_1 ? ((const block_q4_1 *)qx)[b].m : ((const block_q5_1 *)qx)[b].m);
        int sum = 0;
        for (int j = 0; j < 32; j++)
            sum += a[b].qs[j];
        c += (double)m * ((double)fp16_to_fp32(a[b].s) - (double)fp16_to_fp32(a[b].d) * sum);
    }
    return c;
}

static double norm2(const float *x, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return sqrt(s);
}

TEST(test_vec_dot)
{
    static const int nblocks[] = {1, 3, 17};
    struct rng r;
    rng_seed(&r, 99);
    for (int k = 0; k < N_QTYPES; k++) {
        enum ggml_type t = qtypes[k].type;
        const struct kern_type_ops *o = kern_ops(t), *ao = kern_ops(o->vec_dot_type);
        double worst_rel = 0;
        for (int s = 0; s < 3; s++) {
            int64_t n = nblocks[s] * blck(t);
            for (int rep = 0; rep < 6; rep++) {
                float *x = xmalloc(n * sizeof(float)), *a = xmalloc(n * sizeof(float));
                fill_normal(&r, x, n, 1.0);
                fill_normal(&r, a, n, 3.0);
                if (rep >= 3) /* correlated rows: a large dot */
                    for (int64_t i = 0; i < n; i++)
                        a[i] = 2.0f * x[i] + 0.5f * a[i];
                void *qx = xmalloc(ggml_row_size(t, n)), *qa = xmalloc(ggml_row_size(o->vec_dot_type, n));
                float *dx = xmalloc(n * sizeof(float)), *da = xmalloc(n * sizeof(float));
                o->from_float(x, qx, n);
                o->from_float_act(a, qa, n);
                o->to_float(qx, dx, n);
                ao->to_float(qa, da, n);
                double abs_sum, ex = exact_dot(dx, da, n, &abs_sum) + q8_1_min_correction(t, qx, qa, n);
                double vd = o->vec_dot(n, qx, qa);
                /* integer sums are exact; only the per-block float scaling and
                 * accumulation round */
                CHECKF(fabs(vd - ex) <= 1e-4 * fabs(ex) + 1e-6 * abs_sum, "%s n=%lld: vec_dot %.9g exact %.9g",
                       ggml_type_name(t), (long long)n, vd, ex);
                if (rep >= 3)
                    worst_rel = fmax(worst_rel, fabs(vd - ex) / fabs(ex));

                /* against the f32 dot: by Cauchy-Schwarz |sum(w^a^ - wa)| <=
                 * |ew||a| + |w||ea| + |ew||ea| with the measured error vectors */
                double f32dot = 0;
                for (int64_t i = 0; i < n; i++)
                    f32dot += (double)x[i] * a[i];
                double ew = rel_rms(x, dx, n) * norm2(x, n), ea = rel_rms(a, da, n) * norm2(a, n);
                double bound = ew * norm2(a, n) + norm2(x, n) * ea + ew * ea;
                CHECKF(fabs(vd - f32dot) <= bound * 1.0001 + 1e-5, "%s n=%lld: %.6g vs f32 %.6g (bound %.3g)",
                       ggml_type_name(t), (long long)n, vd, f32dot, bound);
                /* and, for these random rows, within a few standard deviations of
                 * the error (errors ~independent of the other row) */
                double sd = (ew * norm2(a, n) + norm2(x, n) * ea) / sqrt((double)n);
                if (rep < 3)
                    CHECKF(fabs(vd - f32dot) <= 6 * sd + 1e-5, "%s n=%lld: %.6g vs f32 %.6g (sd %.3g)",
                           ggml_type_name(t), (long long)n, vd, f32dot, sd);
                free(x);
                free(a);
                free(qx);
                free(qa);
                free(dx);
                free(da);
            }
        }
        printf("     %-6s vec_dot vs exact dequantized dot: worst relative %.2e\n", ggml_type_name(t), worst_rel);
    }
}

/* ---- edge rows ---- */

TEST(test_edge_rows)
{
    const int64_t n = 3 * 256;
    float *x = xmalloc(n * sizeof(float));
    struct rng r;
    rng_seed(&r, 5);
    for (int k = 0; k < N_QTYPES; k++) {
        enum ggml_type t = qtypes[k].type;
        const struct kern_type_ops *o = kern_ops(t), *ao = kern_ops(o->vec_dot_type);
        void *qx = xmalloc(ggml_row_size(t, n)), *qa = xmalloc(ggml_row_size(o->vec_dot_type, n));

        /* all zero: exact zeros, zero dot */
        memset(x, 0, n * sizeof(float));
        float *y = quant_roundtrip(t, x, n);
        for (int64_t i = 0; i < n; i++)
            CHECKF(y[i] == 0.0f, "%s zero row: y[%lld] = %g", ggml_type_name(t), (long long)i, y[i]);
        free(y);
        o->from_float(x, qx, n);
        o->from_float_act(x, qa, n);
        CHECK(o->vec_dot(n, qx, qa) == 0.0f);
        ao->to_float(qa, x, n);
        for (int64_t i = 0; i < n; i++)
            CHECK(x[i] == 0.0f);

        /* constant rows: every type represents them to within its step */
        for (int64_t i = 0; i < n; i++)
            x[i] = 0.75f;
        y = quant_roundtrip(t, x, n);
        CHECKF(rel_rms(x, y, n) < 0.02 && all_finite(y, n), "%s constant row: %g", ggml_type_name(t),
               rel_rms(x, y, n));
        free(y);

        /* one huge outlier (1000 sigma) in each block of 256: finite, and the
         * outlier itself kept within the type's step at that scale */
        fill_normal(&r, x, n, 1.0);
        for (int64_t b = 0; b < n / 256; b++)
            x[b * 256 + 77 + b] = b % 2 ? -1000.0f : 1000.0f;
        y = quant_roundtrip(t, x, n);
        CHECKF(all_finite(y, n), "%s outlier row: non-finite output", ggml_type_name(t));
        for (int64_t b = 0; b < n / 256; b++) {
            int64_t i = b * 256 + 77 + b;
            CHECKF(fabsf(y[i] - x[i]) <= 0.25f * fabsf(x[i]), "%s outlier %g -> %g", ggml_type_name(t), x[i], y[i]);
        }
        free(y);
        o->from_float(x, qx, n);
        o->from_float_act(x, qa, n);
        CHECK(isfinite(o->vec_dot(n, qx, qa)));
        ao->to_float(qa, x, n);
        CHECK(all_finite(x, n));
        free(qx);
        free(qa);
    }
    free(x);
}

/* NaN, infinity or a value whose scale overflows fp16 spoils only its own
 * block (as in ggml), without undefined behaviour: the blocks around it come
 * out exactly as from a clean row. */
TEST(test_nonfinite_input)
{
    static const float bad[] = {NAN, INFINITY, -INFINITY, 1e30f};
    const int64_t n = 3 * 256;
    float *x = xmalloc(n * sizeof(float));
    struct rng r;
    rng_seed(&r, 3);
    for (int k = 0; k < N_QTYPES; k++) {
        enum ggml_type t = qtypes[k].type;
        const size_t rs = ggml_row_size(t, n), bs = ggml_row_size(t, 256);
        uint8_t *clean = xmalloc(rs), *dirty = xmalloc(rs);
        fill_normal(&r, x, n, 1.0);
        kern_ops(t)->from_float(x, clean, n);
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            float keep = x[300];
            x[300] = bad[b];
            kern_ops(t)->from_float(x, dirty, n);
            x[300] = keep;
            /* the first and last 256 values lie in other blocks for every type */
            CHECKF(memcmp(clean, dirty, bs) == 0 && memcmp(clean + 2 * bs, dirty + 2 * bs, bs) == 0, "%s %g",
                   ggml_type_name(t), bad[b]);
        }
        free(clean);
        free(dirty);
    }
    free(x);
}

int main(void)
{
    kernels_init();
    use_variant(0);
    RUN(test_table);
    RUN(test_golden_ggml_bytes);
    RUN(test_known_q4_0);
    RUN(test_known_q5_0_high_bits);
    RUN(test_known_q8_0_q4_1_iq4_nl);
    RUN(test_known_q2_K);
    RUN(test_known_q3_K);
    RUN(test_known_q4_K_q5_K);
    RUN(test_known_q6_K);
    RUN(test_known_activations);
    RUN(test_roundtrip_rms);
    RUN(test_deterministic);
    RUN(test_vec_dot);
    RUN(test_edge_rows);
    RUN(test_nonfinite_input);
    TEST_END();
}
