/*
 * Every SIMD kernel variant the CPU supports (the AVX2 one today) against
 * the reference, type by type: for seeded random rows
 * of 1, 2, 3, 7 and 33 blocks (and longer ones for the float types),
 *  - the AVX2 activation quantizer writes exactly the reference's bytes
 *    (including rounding ties, zero blocks and +-max ties);
 *  - the AVX2 vec_dot agrees with the reference vec_dot on the same inputs
 *    within 1e-5 of sum |w_i * a_i| (the integer parts are exact on both
 *    sides; only the order of the float scale accumulation differs), and
 *    f16/bf16 within 1e-3 relative of a double dot product;
 *  - the AVX2 to_float gives the reference floats, bit for bit;
 *  - the activation quantizers (q8_0, q8_1, q8_K) write the reference's
 *    bytes on extreme rows too: +-0, subnormals 1e-45 .. 1e-36, magnitudes
 *    a few ulps either side of the thresholds where the inverse scale
 *    (1 / (amax / 127), -127 / max) becomes infinite, +-FLT_MAX, blocks of
 *    huge and tiny values mixed, and rows holding +-inf or NaNs (quiet,
 *    signalling, with payloads), at several row lengths.
 * Skips cleanly when the CPU supports no variant but the reference.
 */
#include "kernels/kernels.h"
#include "test.h"
#include "kernels_variants.h"

#include <float.h>
#include <stddef.h>
#include <stdint.h>

static const enum ggml_type types[] = {
    GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0,
    GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ4_NL,
};
#define N_TYPES (sizeof types / sizeof *types)

static void fill_normal(struct rng *r, float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(r) * scale;
}

/* Rows that exercise the quantizers' corner cases. kind 0: plain random;
 * 1: exact rounding ties (x = k + 0.5 with max 127, so d = 1 / iscale = -1);
 * 2: a zero block first, then random; 3: +max and -max both present. */
static void fill_row(struct rng *r, float *x, int64_t n, int kind)
{
    fill_normal(r, x, n, kind == 0 ? 1.0f : 3.0f);
    if (n % 32 != 0) /* the corner cases are per block of 32 */
        return;
    if (kind == 1) {
        for (int64_t i = 0; i < n; i++)
            x[i] = (float)((int)(rng_u64(r) % 253) - 126) + 0.5f;
        for (int64_t i = 0; i < n; i += 32)
            x[i + (int64_t)(rng_u64(r) % 32)] = (rng_u64(r) & 1) ? 127.0f : -127.0f;
    } else if (kind == 2) {
        for (int64_t i = 0; i < n && i < 256; i++)
            x[i] = 0.0f;
    } else if (kind == 3) {
        for (int64_t i = 0; i < n; i += 32) {
            x[i + 3] = 50.0f;
            x[i + 20] = -50.0f;
        }
    }
}

static void *alloc_filled(size_t n, int byte)
{
    void *p = malloc(n ? n : 1);
    MAAS_ASSERT(p);
    memset(p, byte, n);
    return p;
}

static int64_t block_elems(enum ggml_type t)
{
    int64_t b = ggml_blck_size(t);
    return b;
}

static double dot_abs_deq(enum ggml_type wt, const void *wq, enum ggml_type at, const void *aq, const float *af,
                          int64_t n, double *exact)
{
    float *wd = malloc((size_t)n * sizeof *wd), *ad = malloc((size_t)n * sizeof *ad);
    MAAS_ASSERT(wd && ad);
    kern_ops(wt)->to_float(wq, wd, n);
    if (at == GGML_TYPE_F32)
        memcpy(ad, af, (size_t)n * sizeof *ad);
    else
        kern_ops(at)->to_float(aq, ad, n);
    double s = 0, sa = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)wd[i] * ad[i];
        sa += fabs((double)wd[i] * ad[i]);
    }
    free(wd);
    free(ad);
    *exact = s;
    return sa;
}

static void check_type(enum ggml_type t, struct rng *r, int v)
{
    static const int64_t quant_blocks[] = {1, 2, 3, 7, 33};
    static const int64_t float_lens[] = {1, 2, 3, 7, 33, 257, 4097};
    const bool is_float = block_elems(t) == 1;
    const int n_len = is_float ? 7 : 5;
    use_variant(0);
    const struct kern_type_ops ref = *kern_ops(t);
    CHECKF(ref.vec_dot && ref.from_float && ref.to_float, "%s: no reference", ggml_type_name(t));
    if (!ref.vec_dot || !ref.from_float || !ref.to_float)
        return;
    const enum ggml_type at = ref.vec_dot_type;
    use_variant(v);
    const char *vn = kern_variant_name(v);
    const struct kern_type_ops simd = *kern_ops(t);
    CHECKF(simd.vec_dot != ref.vec_dot, "%s: %s table has no vec_dot of its own", ggml_type_name(t), vn);
    CHECKF(at == GGML_TYPE_F32 || simd.from_float_act != ref.from_float_act,
           "%s: %s table has no activation quantizer of its own", ggml_type_name(t), vn);

    for (int li = 0; li < n_len; li++) {
        const int64_t n = is_float ? float_lens[li] : quant_blocks[li] * block_elems(t);
        for (int kind = 0; kind < 4; kind++) {
            float *w = malloc((size_t)n * sizeof *w), *a = malloc((size_t)n * sizeof *a);
            MAAS_ASSERT(w && a);
            fill_normal(r, w, n, 0.5f);
            fill_row(r, a, n, kind);
            size_t wsz = ggml_row_size(t, n), asz = at == GGML_TYPE_F32 ? (size_t)n * 4 : ggml_row_size(at, n);
            void *wq = alloc_filled(wsz, 0);
            void *aq_ref = alloc_filled(asz, 0xa5), *aq_simd = alloc_filled(asz, 0x5a);
            ref.from_float(w, wq, n);
            ref.from_float_act(a, aq_ref, n);
            simd.from_float_act(a, aq_simd, n);
            CHECKF(memcmp(aq_ref, aq_simd, asz) == 0, "%s: activation bytes differ (n=%lld kind %d)",
                   ggml_type_name(t), (long long)n, kind);

            float d_ref = ref.vec_dot(n, wq, aq_ref), d_simd = simd.vec_dot(n, wq, aq_ref);
            double exact, sabs = dot_abs_deq(t, wq, at, aq_ref, a, n, &exact);
            if (is_float) {
                CHECKF(fabs(d_simd - exact) <= 1e-3 * fabs(exact) + 1e-6 * sabs, "%s n=%lld: %.9g vs %.9g",
                       ggml_type_name(t), (long long)n, d_simd, exact);
            } else {
                CHECKF(fabs((double)d_simd - d_ref) <= 1e-5 * sabs + 1e-30, "%s n=%lld kind %d: %.9g vs ref %.9g",
                       ggml_type_name(t), (long long)n, kind, d_simd, d_ref);
                /* and both near the exact dot of the dequantized rows (q8_1
                 * stores d * sum(q) in fp16, an error of up to 2^-11 of it) */
                double tol = at == GGML_TYPE_Q8_1 ? 2e-3 : 1e-4;
                CHECKF(fabs((double)d_ref - exact) <= tol * sabs + 1e-30, "%s: ref %.9g vs exact %.9g",
                       ggml_type_name(t), d_ref, exact);
            }

            float *f_ref = malloc((size_t)n * sizeof *f_ref), *f_simd = malloc((size_t)n * sizeof *f_simd);
            MAAS_ASSERT(f_ref && f_simd);
            for (int64_t i = 0; i < n; i++)
                f_ref[i] = f_simd[i] = NAN;
            ref.to_float(wq, f_ref, n);
            simd.to_float(wq, f_simd, n);
            CHECKF(memcmp(f_ref, f_simd, (size_t)n * sizeof *f_ref) == 0, "%s: to_float differs (n=%lld)",
                   ggml_type_name(t), (long long)n);
            free(f_ref);
            free(f_simd);
            free(wq);
            free(aq_ref);
            free(aq_simd);
            free(w);
            free(a);
        }
    }
}

TEST(test_simd_types)
{
    if (simd_variant_count() == 0)
        SKIP("CPU supports no kernel variant but the reference");
    FOR_EACH_SIMD_VARIANT(v)
    {
        struct rng r;
        rng_seed(&r, 20261129);
        for (size_t k = 0; k < N_TYPES; k++)
            check_type(types[k], &r, v);
    }
    use_best_variant();
}

/* The activation quantizers of q8_0 / q8_1 / q8_K, called directly on many
 * rows with large and tiny magnitudes. */
static void act_quantizers_bytes(int v)
{
    static const enum ggml_type acts[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q8_1, GGML_TYPE_Q8_K};
    struct rng r;
    rng_seed(&r, 7);
    const int64_t n = 4 * QK_K;
    float *x = malloc(n * sizeof *x);
    MAAS_ASSERT(x);
    for (size_t k = 0; k < 3; k++) {
        use_variant(0);
        kern_from_float_fn fr = kern_ops(acts[k])->from_float_act;
        use_variant(v);
        kern_from_float_fn fs = kern_ops(acts[k])->from_float_act;
        CHECKF(fr && fs, "%s: no activation quantizer", ggml_type_name(acts[k]));
        if (!fr || !fs)
            continue;
        size_t sz = ggml_row_size(acts[k], n);
        unsigned char *br = alloc_filled(sz, 0x11), *bs = alloc_filled(sz, 0x22);
        int bad = 0;
        for (int it = 0; it < 200; it++) {
            float scale = powf(10.0f, (float)(it % 9) - 4.0f);
            fill_normal(&r, x, n, scale);
            if (it % 5 == 0) /* a block whose largest value appears with both signs */
                x[1] = -(x[0] = 4.0f * scale);
            fr(x, br, n);
            fs(x, bs, n);
            bad += memcmp(br, bs, sz) != 0;
        }
        CHECKF(bad == 0, "%s: %d of 200 rows differ", ggml_type_name(acts[k]), bad);
        free(br);
        free(bs);
    }
    free(x);
}

TEST(test_simd_act_quantizers_bytes)
{
    if (simd_variant_count() == 0)
        SKIP("CPU supports no kernel variant but the reference");
    FOR_EACH_SIMD_VARIANT(v)
        act_quantizers_bytes(v);
    use_best_variant();
}

/* ---- activation quantizers on extreme rows ---- */

#define X_MAX_N (9 * QK_K)

static float float_of_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The smallest positive a whose inverse scale is finite: 1 / (a / 127) for
 * q8_0 / q8_1, -127 / a for q8_K (both near 3.7e-37). Bisection on the bit
 * patterns; the float operations are the quantizers' own. */
static float inverse_threshold(bool q8_K)
{
    uint32_t lo = 1, hi = 0x3f800000; /* inverse infinite at lo, finite at hi */
    while (hi - lo > 1) {
        const uint32_t mid = lo + (hi - lo) / 2;
        volatile float a = float_of_bits(mid);
        const float inv = q8_K ? -127.0f / a : 1.0f / (a / 127.0f);
        if (isfinite(inv))
            hi = mid;
        else
            lo = mid;
    }
    return float_of_bits(hi);
}

/* Row shapes at magnitude m. */
enum {
    XR_POS,       /* m everywhere */
    XR_NEG,       /* -m everywhere */
    XR_ALT,       /* +m, -m, ... (ties between +max and -max) */
    XR_GAUSS,     /* gaussian * m */
    XR_ONE_POS,   /* one m in 16 among +0 */
    XR_ONE_NEG,   /* one -m in 16 among -0 */
    XR_RAMP,      /* (i % 16 - 8) * m / 8 */
    XR_MAX_FIRST, /* m first in each block of 32, then values below it */
    XR_TIE,       /* m and -m in each block of 32, gaussian * m / 4 between */
    XR_BLOCKS,    /* each block of 32 at its own magnitude, 1e-45 .. 1e37 */
    XR_HALVES,    /* each block of 32: half gaussian * 1e37, half * m */
    XR_COUNT
};

/* v as a float, clamped to +-FLT_MAX (so that the conversion is defined) */
static float clamp_f(double v)
{
    return (float)fmax(fmin(v, FLT_MAX), -FLT_MAX);
}

static void extreme_row(struct rng *r, float *x, int64_t n, int kind, float m)
{
    static const float block_mags[] = {1.4e-45f, 1e-42f, 1e-39f, 3.7e-37f, 1e-36f, 1.0f, 1e20f, 1e37f, 0.0f};
    const int n_bm = (int)(sizeof block_mags / sizeof *block_mags);
    for (int64_t i = 0; i < n; i++) {
        const double g = rng_normal(r);
        float v = 0;
        switch (kind) {
        case XR_POS: v = m; break;
        case XR_NEG: v = -m; break;
        case XR_ALT: v = i % 2 ? -m : m; break;
        case XR_GAUSS: v = clamp_f(g * m); break;
        case XR_ONE_POS: v = i % 16 == 5 ? m : 0.0f; break;
        case XR_ONE_NEG: v = i % 16 == 11 ? -m : -0.0f; break;
        case XR_RAMP: v = (float)((double)(i % 16 - 8) * m / 8); break;
        case XR_MAX_FIRST: v = i % 32 == 0 ? m : (float)(fmin(fabs(g) / 4, 1.0) * m); break;
        case XR_TIE: v = i % 32 == 7 ? m : i % 32 == 19 ? -m : (float)(fmax(fmin(g / 4, 0.9), -0.9) * m); break;
        case XR_BLOCKS: v = clamp_f(g * block_mags[(i / 32 + (int64_t)(m > 1)) % n_bm]); break;
        case XR_HALVES: v = clamp_f(g * ((i / 16) % 2 ? 1e37 : (double)m)); break;
        }
        x[i] = v;
    }
}

struct act_pair {
    enum ggml_type t;
    kern_from_float_fn ref, simd;
    unsigned char *br, *bs; /* X_MAX_N elements' worth, owned */
    int bad;
};

/* Quantizes x[0..n) with both and compares the bytes; reports the first few
 * rows that differ. */
static void act_compare(struct act_pair *p, const float *x, int64_t n, const char *what, int kind, float m)
{
    if (n % ggml_blck_size(p->t) != 0)
        return;
    const size_t sz = ggml_row_size(p->t, n);
    memset(p->br, 0xa5, sz);
    memset(p->bs, 0x5a, sz);
    p->ref(x, p->br, n);
    p->simd(x, p->bs, n);
    if (memcmp(p->br, p->bs, sz) == 0)
        return;
    size_t at = 0;
    while (p->br[at] == p->bs[at])
        at++;
    if (++p->bad <= 5)
        CHECKF(0, "%s n=%lld %s kind %d m=%g: byte %zu is %d, reference %d", ggml_type_name(p->t),
           (long long)n, what, kind, (double)m, at, p->bs[at], p->br[at]);
}

static void act_quantizers_extremes(int v)
{
    static const enum ggml_type acts[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q8_1, GGML_TYPE_Q8_K};
    static const int64_t lens[] = {32, 96, QK_K, 3 * QK_K, X_MAX_N};
    struct act_pair p[3];
    for (int k = 0; k < 3; k++) {
        p[k].t = acts[k];
        use_variant(0);
        p[k].ref = kern_ops(acts[k])->from_float_act;
        use_variant(v);
        p[k].simd = kern_ops(acts[k])->from_float_act;
        MAAS_ASSERT(p[k].ref && p[k].simd && p[k].ref != p[k].simd);
        p[k].br = alloc_filled(ggml_row_size(acts[k], X_MAX_N), 0);
        p[k].bs = alloc_filled(ggml_row_size(acts[k], X_MAX_N), 0);
        p[k].bad = 0;
    }

    /* magnitudes: zero, subnormal, around FLT_MIN, the inverse-scale
     * thresholds and 4 ulps either side of each, ordinary, huge */
    float mags[64];
    int n_mags = 0;
    static const float fixed[] = {0.0f,  1.4e-45f, 3e-45f, 1e-44f, 1e-43f, 1e-42f, 1e-41f,   1e-40f,
                                  1e-39f, 2.9e-39f, 3e-39f, FLT_MIN, 1e-38f, 4e-38f, 1e-37f,   3.7e-37f,
                                  3.8e-37f, 4e-37f, 1e-36f, 1e-3f,   1.0f,   1e30f,  1e37f,    FLT_MAX / 4,
                                  FLT_MAX};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        mags[n_mags++] = fixed[i];
    for (int q8_K = 0; q8_K < 2; q8_K++) {
        float a = inverse_threshold(q8_K);
        for (int s = 0; s < 4; s++)
            a = nextafterf(a, 0.0f);
        for (int s = 0; s < 9; s++, a = nextafterf(a, 1.0f))
            mags[n_mags++] = a;
    }
    MAAS_ASSERT(n_mags <= (int)(sizeof mags / sizeof *mags));

    struct rng r;
    rng_seed(&r, 3100732);
    float *x = malloc(X_MAX_N * sizeof *x);
    MAAS_ASSERT(x);
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        const int64_t n = lens[li];
        for (int mi = 0; mi < n_mags; mi++) {
            for (int kind = 0; kind < XR_COUNT; kind++) {
                extreme_row(&r, x, n, kind, mags[mi]);
                for (int k = 0; k < 3; k++)
                    act_compare(&p[k], x, n, "finite", kind, mags[mi]);
            }
        }
    }

    /* +-inf and NaNs, one per row or one in 7 or everywhere, in rows of
     * zeros, tiny, ordinary and huge values */
    const float specials[] = {INFINITY, -INFINITY, float_of_bits(0x7fc00000), float_of_bits(0xffc00000),
                              float_of_bits(0x7fc12345), float_of_bits(0x7f800001), float_of_bits(0xff812345)};
    static const float bases[] = {0.0f, 1e-39f, 1.0f, FLT_MAX};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        const int64_t n = lens[li];
        for (size_t si = 0; si < sizeof specials / sizeof *specials; si++) {
            for (size_t bi = 0; bi < sizeof bases / sizeof *bases; bi++) {
                for (int where = 0; where < 5; where++) {
                    extreme_row(&r, x, n, bi == 3 ? XR_ALT : XR_GAUSS, bases[bi]);
                    for (int64_t i = 0; i < n; i++) {
                        const bool put = where == 0 ? i == 0 : where == 1 ? i == n - 1 : where == 2 ? i == n / 2 + 3
                                       : where == 3 ? i % 7 == 2 : true;
                        if (put)
                            x[i] = specials[si];
                    }
                    if (si == 0 && where == 4) /* +inf and -inf tie */
                        x[n / 2] = -INFINITY;
                    for (int k = 0; k < 3; k++)
                        act_compare(&p[k], x, n, "inf/NaN", where, bases[bi]);
                }
            }
        }
    }

    /* the reported case: a row of 1e-39 is a zero q8_K block (d = -0) */
    for (int64_t i = 0; i < QK_K; i++)
        x[i] = 1e-39f;
    block_q8_K q;
    memset(&q, 0x5a, sizeof q);
    p[2].simd(x, &q, QK_K);
    int nonzero = 0;
    for (int i = 0; i < QK_K; i++)
        nonzero += q.qs[i] != 0;
    for (int i = 0; i < QK_K / 16; i++)
        nonzero += q.bsums[i] != 0;
    CHECKF(nonzero == 0 && q.d == 0.0f && signbit(q.d), "q8_K of 1e-39: %d nonzero qs/bsums, d = %g", nonzero,
           (double)q.d);

    for (int k = 0; k < 3; k++) {
        CHECKF(p[k].bad == 0, "%s: %d rows differ from the reference", ggml_type_name(acts[k]), p[k].bad);
        free(p[k].br);
        free(p[k].bs);
    }
    free(x);
}

TEST(test_simd_act_quantizers_extremes)
{
    if (simd_variant_count() == 0)
        SKIP("CPU supports no kernel variant but the reference");
    FOR_EACH_SIMD_VARIANT(v)
        act_quantizers_extremes(v);
    use_best_variant();
}

/* ---- k-quant dot products on raw blocks ----
 * Weight rows of arbitrary bytes (any code, scale and min the format can
 * hold, the largest included) with finite fp16 scales, times q8_K rows whose
 * bytes include -128 (never written by the quantizer, but a valid byte) and
 * whose bsums match: each variant's vec_dot against the reference's, within
 * 1e-6 of a bound on the magnitude of every partial sum (the integer sums
 * are exact on both sides; only the float rounding of the scale products
 * and of the additions differs). */

struct kq_layout {
    enum ggml_type t;
    size_t d_off, dmin_off; /* where a block holds d and dmin (SIZE_MAX: none) */
};

static const struct kq_layout kq_layouts[] = {
    {GGML_TYPE_Q2_K, offsetof(block_q2_K, d), offsetof(block_q2_K, dmin)},
    {GGML_TYPE_Q3_K, offsetof(block_q3_K, d), SIZE_MAX},
    {GGML_TYPE_Q4_K, offsetof(block_q4_K, d), offsetof(block_q4_K, dmin)},
    {GGML_TYPE_Q5_K, offsetof(block_q5_K, d), offsetof(block_q5_K, dmin)},
    {GGML_TYPE_Q6_K, offsetof(block_q6_K, d), SIZE_MAX},
};

/* Writes a random fp16 in +-[1e-4, 0.2] at blk + off; returns its value. */
static float put_half(unsigned char *blk, size_t off, struct rng *r, bool one)
{
    float v = one ? 1.0f : (float)(rng_u64(r) % 2000 + 1) * 1e-4f * ((rng_u64(r) & 1) ? 1.0f : -1.0f);
    uint16_t h = fp32_to_fp16(v);
    memcpy(blk + off, &h, 2);
    return fp16_to_fp32(h);
}

/* nb blocks of kind 0: random bytes; 1: every weight byte 0xff (largest
 * codes and scales) and every activation -128; 2: weight bytes 0; 3: random
 * weights, activations -128 and 127 alternating; 4 (exact): random weights
 * with d = dmin = 1, activations with d = 1, one random byte (-128 in every
 * fourth block) in each 32 and zero elsewhere, so that every sum, integer
 * or float, is an integer below 2^24 and the result is exact on every side.
 * Returns the bound. */
static double raw_kquant_row(const struct kq_layout *L, int64_t nb, int kind, struct rng *r, unsigned char *w,
                             block_q8_K *a)
{
    const size_t bs = ggml_type_size(L->t);
    for (size_t i = 0; i < bs * (size_t)nb; i++)
        w[i] = kind == 1 ? 0xff : kind == 2 ? 0 : (unsigned char)rng_u64(r);
    double bound = 0;
    for (int64_t i = 0; i < nb; i++) {
        const float d = put_half(w + i * bs, L->d_off, r, kind == 4);
        const float dmin = L->dmin_off == SIZE_MAX ? 0.0f : put_half(w + i * bs, L->dmin_off, r, kind == 4);
        a[i].d = kind == 4 ? 1.0f : (float)(rng_u64(r) % 100 + 1) * 1e-3f;
        for (int j = 0; j < QK_K; j++)
            a[i].qs[j] = kind == 1 ? -128 : kind == 3 ? (j % 2 ? 127 : -128) : (int8_t)rng_u64(r);
        if (kind == 4) {
            memset(a[i].qs, 0, QK_K);
            for (int j = 0; j < QK_K; j += 32)
                a[i].qs[j + (int)(rng_u64(r) % 32)] = i % 4 == 3 ? -128 : (int8_t)rng_u64(r);
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++)
                sum += a[i].qs[16 * g + j];
            a[i].bsums[g] = (int16_t)sum;
        }
        /* |scale| <= 128, |code| <= 63, |min| <= 63, |activation| <= 128 */
        bound += QK_K * 128.0 * a[i].d * (fabs(d) * 128 * 63 + fabs(dmin) * 63);
    }
    return bound;
}

static void check_kquant_raw(int v, struct rng *r)
{
    static const int64_t blocks[] = {1, 2, 3, 7};
    static const int n_kinds = 5;
    enum { MAX_NB = 7 };
    unsigned char *w = malloc(MAX_NB * sizeof(block_q2_K) * 3); /* the largest k-quant block is q6_K's */
    block_q8_K *a = malloc(MAX_NB * sizeof *a);
    MAAS_ASSERT(w && a && sizeof(block_q6_K) <= 3 * sizeof(block_q2_K));
    for (size_t k = 0; k < sizeof kq_layouts / sizeof *kq_layouts; k++) {
        const enum ggml_type t = kq_layouts[k].t;
        use_variant(0);
        const kern_vec_dot_fn ref = kern_ops(t)->vec_dot;
        use_variant(v);
        const kern_vec_dot_fn dot = kern_ops(t)->vec_dot;
        for (size_t bi = 0; bi < sizeof blocks / sizeof *blocks; bi++) {
            for (int kind = 0; kind < n_kinds; kind++) {
                const int64_t n = blocks[bi] * QK_K;
                if (kind == 4 && blocks[bi] > 3) /* the exact case: sums below 2^24 */
                    continue;
                const double bound = raw_kquant_row(&kq_layouts[k], blocks[bi], kind, r, w, a);
                const float d_ref = ref(n, w, a), d_var = dot(n, w, a);
                const double tol = kind == 4 ? 0.0 : 1e-6 * bound;
                CHECKF(isfinite(d_var) && fabs((double)d_var - d_ref) <= tol,
                       "%s %s raw n=%lld kind %d: %.9g vs ref %.9g (bound %g)", kern_variant_name(v),
                       ggml_type_name(t), (long long)n, kind, d_var, d_ref, bound);
            }
        }
    }
    free(w);
    free(a);
}

TEST(test_simd_kquant_raw_blocks)
{
    if (simd_variant_count() == 0)
        SKIP("CPU supports no kernel variant but the reference");
    struct rng r;
    rng_seed(&r, 20261207);
    FOR_EACH_SIMD_VARIANT(v)
        check_kquant_raw(v, &r);
    use_best_variant();
}

int main(void)
{
    kernels_init();
    RUN(test_simd_types);
    RUN(test_simd_act_quantizers_bytes);
    RUN(test_simd_act_quantizers_extremes);
    RUN(test_simd_kquant_raw_blocks);
    TEST_END();
}
