/*
 * The matrix-vector kernels for decode (one activation row), for the weight
 * types whose activations are q8_0: q8_0, q4_0, q5_0 and iq4_nl. One
 * algorithm, compiled once per instruction set: a *_avx2.c / *_avx512.c file
 * defines GEMV_DOT_U8S8(u, s) (the dot of 32 unsigned bytes u with 32
 * signed bytes s as 8 int32 sums of 4 products: vpmaddubsw + vpmaddwd on
 * AVX2, one vpdpbusd with VNNI) and GEMV_ENTRY (the name of the function
 * that returns a type's kernel), then includes this file once.
 *
 * On CPUs whose byte multiplies are slow (this project's Zen machines run
 * vpmaddubsw and vpmaddwd on one pipe), a decode step is bound by the vector
 * work per weight block rather than by memory unless that work is cut to the
 * bone. The activation row is used by every weight row, so everything that
 * depends on it alone is computed once, in prepare():
 *   - the float scales (no fp16 conversion per block and row);
 *   - the magnitudes |a|, so that a signed weight needs one vpsignb
 *     (sign(w, a) times |a| = w * a) instead of two;
 *   - d * sum(a) per block, so that q4_0 and q5_0 multiply their unsigned
 *     codes (0..15, 0..31) directly and subtract 8 (16) * d_w * d_a * sum(a)
 *     afterwards: no vpsignb at all.
 * The weight scales are converted 8 blocks at a time and their products with
 * the activation scales reach the FMAs as broadcast loads.
 *
 * sign(w, a) misses one case: w = -128 with a < 0 gives -128 instead of
 * +128. q8_0 quantizers (ggml's and ours) write codes in -127..127, and q4_0,
 * q5_0 and iq4_nl cannot hold -128, so a file would have to be crafted to
 * hit it; the cost would be wrong numbers, never memory safety.
 */
#if !defined(GEMV_DOT_U8S8) || !defined(GEMV_ENTRY)
#error "define GEMV_DOT_U8S8 and GEMV_ENTRY before including gemv_body.h"
#endif

enum gfam { G_Q8_0, G_Q4_0, G_Q5_0, G_IQ4_NL };

/* Software prefetch distance in bytes; 1024 measured best of 512..4096 on
 * 4864 x 896 q8_0 at 2 threads on a Zen 1 (+14% median of 5 interleaved
 * rounds); 2048 on a Sapphire Rapids class Xeon (the dense q8_0 file's
 * generation 44.1-44.7 -> 46.1-47.5 tok/s, 3 interleaved rounds, against
 * 45.6-47.3 for 4096). */
#define GEMV_PREFETCH 2048

/* Layout of a prepared activation of nb blocks (KERN_GEMV_ACT_SIZE). */
struct act_view {
    const float *d;   /* nb scales */
    const float *c;   /* nb values d * sum(q) */
    const int8_t *q;  /* nb * 32 values */
    const uint8_t *m; /* nb * 32 magnitudes */
};

static inline struct act_view act_view(const void *act, int64_t nb)
{
    const char *p = act;
    struct act_view v = {(const float *)p, (const float *)p + nb, (const int8_t *)(p + 8 * nb),
                         (const uint8_t *)(p + 8 * nb + 32 * nb)};
    return v;
}

static void gemv_prepare(const void *vx, void *act, int64_t n)
{
    const block_q8_0 *x = vx;
    const int64_t nb = n / QK8_0;
    char *p = act;
    float *d = (float *)p, *c = d + nb;
    int8_t *q = (int8_t *)(p + 8 * nb);
    uint8_t *m = (uint8_t *)(p + 8 * nb + 32 * nb);
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < nb; b++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)x[b].qs);
        _mm256_storeu_si256((__m256i *)(q + 32 * b), v);
        _mm256_storeu_si256((__m256i *)(m + 32 * b), _mm256_sign_epi8(v, v));
        int sum = avx2_hsum_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(ones8, v), ones16));
        d[b] = avx2_h2f(x[b].d);
        c[b] = d[b] * (float)sum;
    }
}

static inline __attribute__((always_inline)) size_t gfam_size(enum gfam f)
{
    switch (f) {
    case G_Q8_0:
        return sizeof(block_q8_0);
    case G_Q4_0:
        return sizeof(block_q4_0);
    case G_Q5_0:
        return sizeof(block_q5_0);
    case G_IQ4_NL:
        return sizeof(block_iq4_nl);
    }
    return 0;
}

/* Codes of q4_0 / q5_0 offset by this much (value = code - offset). */
static inline __attribute__((always_inline)) float gfam_offset(enum gfam f)
{
    return f == G_Q4_0 ? 8.0f : f == G_Q5_0 ? 16.0f : 0.0f;
}

/* The integer dot of one weight block with activation block (q, m), as 8
 * partial sums (of code * a for q4_0 / q5_0, of w * a for the others). */
static inline __attribute__((always_inline)) __m256 gfam_dot(enum gfam f, const char *blk, const int8_t *q,
                                                              const uint8_t *m, __m256i table)
{
    __m256i p;
    switch (f) {
    case G_Q4_0:
        p = GEMV_DOT_U8S8(avx2_nibbles32(((const block_q4_0 *)blk)->qs), _mm256_loadu_si256((const __m256i *)q));
        break;
    case G_Q5_0: {
        const block_q5_0 *x = (const block_q5_0 *)blk;
        __m256i u = _mm256_or_si256(avx2_nibbles32(x->qs),
                                    _mm256_and_si256(avx2_bits32(x->qh), _mm256_set1_epi8(0x10)));
        p = GEMV_DOT_U8S8(u, _mm256_loadu_si256((const __m256i *)q));
        break;
    }
    case G_IQ4_NL:
    case G_Q8_0:
    default: {
        __m256i w = f == G_IQ4_NL ? avx2_iq4_nl_bytes((const block_iq4_nl *)blk, table)
                                  : avx2_q8_0_bytes((const block_q8_0 *)blk);
        p = GEMV_DOT_U8S8(_mm256_loadu_si256((const __m256i *)m),
                          _mm256_sign_epi8(w, _mm256_loadu_si256((const __m256i *)q)));
        break;
    }
    }
    return _mm256_cvtepi32_ps(p);
}

static inline __attribute__((always_inline)) void gemv_rows(enum gfam f, int64_t n, const char *w, size_t ldw,
                                                             int64_t nr, const void *act, float *y)
{
    const int64_t nb = n / QK8_0;
    const size_t bs = gfam_size(f);
    const float off = gfam_offset(f);
    const struct act_view a = act_view(act, nb);
    const __m256i table = avx2_iq4nl_table();
    float sc[8] __attribute__((aligned(32)));
    for (int64_t r = 0; r < nr; r++) {
        const char *x = w + (size_t)r * ldw;
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), accc = _mm256_setzero_ps();
        int64_t b = 0;
        for (; b + 8 <= nb; b += 8) {
            const char *xb = x + (size_t)b * bs;
            /* Ask for the weights GEMV_PREFETCH bytes ahead (the next row,
             * since rows are consecutive): the hardware prefetcher alone
             * leaves the two threads' streams short of the read bandwidth. */
#pragma GCC unroll 8
            for (size_t l = 0; l < 8 * bs; l += 64)
                _mm_prefetch(xb + GEMV_PREFETCH + l, _MM_HINT_T0);
            __m256 dw = avx2_scales8(xb, bs);
            _mm256_store_ps(sc, _mm256_mul_ps(dw, _mm256_loadu_ps(a.d + b)));
            if (off != 0.0f)
                accc = _mm256_fmadd_ps(dw, _mm256_loadu_ps(a.c + b), accc);
#pragma GCC unroll 4
            for (int k = 0; k < 8; k += 2) {
                __m256 p0 = gfam_dot(f, xb + k * bs, a.q + 32 * (b + k), a.m + 32 * (b + k), table);
                __m256 p1 = gfam_dot(f, xb + (k + 1) * bs, a.q + 32 * (b + k + 1), a.m + 32 * (b + k + 1), table);
                acc0 = _mm256_fmadd_ps(_mm256_broadcast_ss(&sc[k]), p0, acc0);
                acc1 = _mm256_fmadd_ps(_mm256_broadcast_ss(&sc[k + 1]), p1, acc1);
            }
        }
        float corr = 0.0f;
        for (; b < nb; b++) {
            const char *xb = x + (size_t)b * bs;
            float dw = avx2_h2f(*(const ggml_half *)xb);
            __m256 p = gfam_dot(f, xb, a.q + 32 * b, a.m + 32 * b, table);
            acc0 = _mm256_fmadd_ps(_mm256_set1_ps(dw * a.d[b]), p, acc0);
            corr += dw * a.c[b];
        }
        float s = avx2_hsum_ps(_mm256_add_ps(acc0, acc1));
        if (off != 0.0f)
            s -= off * (avx2_hsum_ps(accc) + corr);
        y[r] = s;
    }
}

#define GEMV_FN(name, f)                                                                                      \
    static void name(int64_t n, const void *w, size_t ldw, int64_t nr, const void *act, float *y)             \
    {                                                                                                         \
        gemv_rows(f, n, w, ldw, nr, act, y);                                                                  \
    }

GEMV_FN(gemv_q8_0, G_Q8_0)
GEMV_FN(gemv_q4_0, G_Q4_0)
GEMV_FN(gemv_q5_0, G_Q5_0)
GEMV_FN(gemv_iq4_nl, G_IQ4_NL)

struct kern_gemv GEMV_ENTRY(enum ggml_type t)
{
    struct kern_gemv none = {NULL, NULL};
    const struct kern_type_ops *o = kern_ops(t);
    if (!o || o->vec_dot_type != GGML_TYPE_Q8_0)
        return none;
    switch (t) {
    case GGML_TYPE_Q8_0:
        return (struct kern_gemv){gemv_prepare, gemv_q8_0};
    case GGML_TYPE_Q4_0:
        return (struct kern_gemv){gemv_prepare, gemv_q4_0};
    case GGML_TYPE_Q5_0:
        return (struct kern_gemv){gemv_prepare, gemv_q5_0};
    case GGML_TYPE_IQ4_NL:
        return (struct kern_gemv){gemv_prepare, gemv_iq4_nl};
    default:
        return none;
    }
}
