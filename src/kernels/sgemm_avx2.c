/*
 * f32 tile kernel for prompt processing: FMA on dequantized weights.
 *
 * Why floats for quantized weights: on the Zen 1 cores this project runs on,
 * the byte multiplies (vpmaddubsw, vpmaddwd) issue at well under one 256-bit
 * instruction per cycle, so an exact integer block dot (sign, maddubs, madd,
 * convert, scale) costs more per multiply than one FMA does on floats
 * (one 8-wide FMA per cycle). When a weight row is used by many tokens, it
 * pays to dequantize it once into an f32 panel (kern_matmul does that, any
 * weight type) and multiply the panel with the activations, which kern_matmul
 * has rounded through the type's q8 activation format so that the products
 * are the same as the integer kernels' up to float rounding.
 *
 * A tile is up to 4 weight rows x 3 activation rows: 12 accumulators, 3
 * activation vectors and one weight vector fill the 16 ymm registers; per 8
 * elements of k it loads 7 vectors for 12 FMAs. Each accumulator is one
 * chain over k, reduced the same way whatever the tile's shape, so a
 * result does not depend on which tile computed it.
 */
#include "kernels/avx2_int.h"

#define FNR 3 /* activation rows per tile */

/* 4 accumulators (rows 0..3 of one token) -> their 4 sums in one vector. */
static inline __m128 reduce4(__m256 a0, __m256 a1, __m256 a2, __m256 a3)
{
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

static inline __attribute__((always_inline)) void ftile(const int RM, const int RN, int64_t n, const float *w,
                                                         int64_t ldw, const float *a, int64_t lda, float *y,
                                                         int64_t ldy, int accumulate)
{
    __m256 acc[KERN_FTILE_MR][FNR];
#pragma GCC unroll 4
    for (int r = 0; r < KERN_FTILE_MR; r++)
#pragma GCC unroll 4
        for (int c = 0; c < FNR; c++)
            acc[r][c] = _mm256_setzero_ps();
    for (int64_t k = 0; k < n; k += 8) {
        __m256 x[FNR];
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++)
            x[c] = _mm256_loadu_ps(a + c * lda + k);
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++) {
            const __m256 wv = _mm256_loadu_ps(w + r * ldw + k);
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++)
                acc[r][c] = _mm256_fmadd_ps(wv, x[c], acc[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++) {
        float s[4] __attribute__((aligned(16)));
        _mm_store_ps(s, reduce4(acc[0][c], acc[1][c], acc[2][c], acc[3][c]));
        float *yc = y + c * ldy;
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++)
            yc[r] = accumulate ? yc[r] + s[r] : s[r];
    }
}

#define FTILE_CASE(rm, rn)                                                                                    \
    case (rm) * 8 + (rn):                                                                                     \
        ftile(rm, rn, n, w, ldw, a, lda, y, ldy, accumulate);                                                 \
        break;

static void ftile_avx2(int64_t n, const float *w, int64_t ldw, int nr, const float *a, int64_t lda, int nc,
                       float *y, int64_t ldy, int accumulate)
{
    MAAS_ASSERT(n % 8 == 0);
    switch (nr * 8 + nc) {
        FTILE_CASE(4, 3)
        FTILE_CASE(4, 2)
        FTILE_CASE(4, 1)
        FTILE_CASE(3, 3)
        FTILE_CASE(3, 2)
        FTILE_CASE(3, 1)
        FTILE_CASE(2, 3)
        FTILE_CASE(2, 2)
        FTILE_CASE(2, 1)
        FTILE_CASE(1, 3)
        FTILE_CASE(1, 2)
        FTILE_CASE(1, 1)
    default:
        MAAS_ASSERT(!"f32 tile shape out of range");
    }
}

_Static_assert(KERN_FTILE_MR == 4 && KERN_FTILE_NR_MAX >= FNR, "ftile_avx2 lists the shapes up to 4 x 3");

/* ---- the activations of the f32 path: q8 rows back to floats ---- */
static inline void scale8x4(float *y, const int8_t *q, __m256 d)
{
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + 8 * k)));
        _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(v)));
    }
}

void kern_avx2_act_to_float(enum ggml_type t, const void *src, float *dst, int64_t n)
{
    switch (t) {
    case GGML_TYPE_Q8_0: {
        const block_q8_0 *x = src;
        for (int64_t b = 0; b < n / 32; b++)
            scale8x4(dst + 32 * b, x[b].qs, _mm256_set1_ps(avx2_h2f(x[b].d)));
        break;
    }
    case GGML_TYPE_Q8_1: {
        const block_q8_1 *x = src;
        for (int64_t b = 0; b < n / 32; b++)
            scale8x4(dst + 32 * b, x[b].qs, _mm256_set1_ps(avx2_h2f(x[b].d)));
        break;
    }
    case GGML_TYPE_Q8_K: {
        const block_q8_K *x = src;
        for (int64_t b = 0; b < n / QK_K; b++)
            for (int i = 0; i < QK_K; i += 32)
                scale8x4(dst + QK_K * b + i, x[b].qs + i, _mm256_set1_ps(x[b].d));
        break;
    }
    default:
        MAAS_ASSERT(!"no f32 expansion for this activation type");
    }
}

struct kern_ftile kern_avx2_ftile(void)
{
    return (struct kern_ftile){ftile_avx2, FNR};
}

/* ---- kern_gemm_f32's micro-kernel: 6 x 16 (12 ymm accumulators) ---- */
#define GB_NAME gemm_ukr_avx2
#define GB_V __m256
#define GB_VL 8
#define GB_MR 6
#define GB_NV 2
#define GB_LOAD(p) _mm256_loadu_ps(p)
#define GB_STORE(p, v) _mm256_storeu_ps(p, v)
#define GB_BCAST(p) _mm256_broadcast_ss(p)
#define GB_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define GB_ADD(a, b) _mm256_add_ps(a, b)
#define GB_ZERO() _mm256_setzero_ps()
#include "kernels/gemm_f32_body.h"

/* The transposing pack (kernels_int.h), 4 rows x 8 steps of k at a time:
 * a 4 x 8 transpose in registers, then 8 stores of 4 floats. */
static inline void transpose4x8(const float *x0, int64_t rs, float *d, int w)
{
    const __m256 r0 = _mm256_loadu_ps(x0), r1 = _mm256_loadu_ps(x0 + rs);
    const __m256 r2 = _mm256_loadu_ps(x0 + 2 * rs), r3 = _mm256_loadu_ps(x0 + 3 * rs);
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    const __m256 u[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE),
                         _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xEE)};
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        _mm_storeu_ps(d + i * w, _mm256_castps256_ps128(u[i]));
        _mm_storeu_ps(d + (i + 4) * w, _mm256_extractf128_ps(u[i], 1));
    }
}

void kern_avx2_gemm_pack_t(const float *x, int64_t rs, int64_t kc, int rows, int w, float *dst)
{
    int r = 0;
    for (; r + 4 <= rows; r += 4) {
        int64_t k = 0;
        for (; k + 8 <= kc; k += 8)
            transpose4x8(x + r * rs + k, rs, dst + k * w + r, w);
        for (; k < kc; k++)
            for (int i = 0; i < 4; i++)
                dst[k * w + r + i] = x[(r + i) * rs + k];
    }
    for (; r < rows; r++)
        for (int64_t k = 0; k < kc; k++)
            dst[k * w + r] = x[r * rs + k];
}

struct kern_gemm_ukr kern_avx2_gemm_ukr(void)
{
    return (struct kern_gemm_ukr){gemm_ukr_avx2, GB_MR, GB_NV * GB_VL, kern_avx2_gemm_pack_t};
}
