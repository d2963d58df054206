/*
 * The AVX-512 variant's f32 tile kernel for prompt processing (the f32 path
 * of kern_matmul: FMAs on weight rows dequantized into an f32 panel; see
 * sgemm_avx2.c for why floats).
 *
 * With 32 zmm registers a tile is up to 4 weight rows x 6 activation rows:
 * 24 accumulators, 6 activation vectors and one weight vector; per 16
 * elements of k it loads 10 vectors for 24 FMAs of 16 lanes (AVX2's 4 x 3
 * tile loads 7 vectors for 12 FMAs of 8 lanes). A row length that is a
 * multiple of 8 but not of 16 ends with one masked half step. Each
 * accumulator is one chain over k, reduced the same way whatever the
 * tile's shape, so a result does not depend on which tile computed it.
 */
#include "kernels/avx2_int.h"

#include <immintrin.h>

#define FMR 4
#define FNR 6

/* 4 accumulators (rows 0..3 of one token) -> their 4 sums. */
static inline __m128 reduce4x16(__m512 a0, __m512 a1, __m512 a2, __m512 a3)
{
    __m256 b0 = _mm256_add_ps(_mm512_castps512_ps256(a0), _mm512_extractf32x8_ps(a0, 1));
    __m256 b1 = _mm256_add_ps(_mm512_castps512_ps256(a1), _mm512_extractf32x8_ps(a1, 1));
    __m256 b2 = _mm256_add_ps(_mm512_castps512_ps256(a2), _mm512_extractf32x8_ps(a2, 1));
    __m256 b3 = _mm256_add_ps(_mm512_castps512_ps256(a3), _mm512_extractf32x8_ps(a3, 1));
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(b0, b1), _mm256_hadd_ps(b2, b3));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

static inline __attribute__((always_inline)) void ftile(const int RM, const int RN, int64_t n, const float *w,
                                                         int64_t ldw, const float *a, int64_t lda, float *y,
                                                         int64_t ldy, int accumulate)
{
    __m512 acc[FMR][FNR];
#pragma GCC unroll 4
    for (int r = 0; r < FMR; r++)
#pragma GCC unroll 6
        for (int c = 0; c < FNR; c++)
            acc[r][c] = _mm512_setzero_ps();
    const int64_t n16 = n & ~(int64_t)15;
    for (int64_t k = 0; k < n16; k += 16) {
        __m512 x[FNR];
#pragma GCC unroll 6
        for (int c = 0; c < RN; c++)
            x[c] = _mm512_loadu_ps(a + c * lda + k);
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++) {
            const __m512 wv = _mm512_loadu_ps(w + r * ldw + k);
#pragma GCC unroll 6
            for (int c = 0; c < RN; c++)
                acc[r][c] = _mm512_fmadd_ps(wv, x[c], acc[r][c]);
        }
    }
    if (n16 < n) { /* the last 8 */
        const __mmask16 m = 0x00FF;
        __m512 x[FNR];
#pragma GCC unroll 6
        for (int c = 0; c < RN; c++)
            x[c] = _mm512_maskz_loadu_ps(m, a + c * lda + n16);
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++) {
            const __m512 wv = _mm512_maskz_loadu_ps(m, w + r * ldw + n16);
#pragma GCC unroll 6
            for (int c = 0; c < RN; c++)
                acc[r][c] = _mm512_fmadd_ps(wv, x[c], acc[r][c]);
        }
    }
#pragma GCC unroll 6
    for (int c = 0; c < RN; c++) {
        float s[4] __attribute__((aligned(16)));
        _mm_store_ps(s, reduce4x16(acc[0][c], acc[1][c], acc[2][c], acc[3][c]));
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
#define FTILE_ROW(rm) FTILE_CASE(rm, 6) FTILE_CASE(rm, 5) FTILE_CASE(rm, 4) FTILE_CASE(rm, 3) FTILE_CASE(rm, 2) \
    FTILE_CASE(rm, 1)

static void ftile_avx512(int64_t n, const float *w, int64_t ldw, int nr, const float *a, int64_t lda, int nc,
                         float *y, int64_t ldy, int accumulate)
{
    MAAS_ASSERT(n % 8 == 0);
    switch (nr * 8 + nc) {
        FTILE_ROW(4)
        FTILE_ROW(3)
        FTILE_ROW(2)
        FTILE_ROW(1)
    default:
        MAAS_ASSERT(!"f32 tile shape out of range");
    }
}

_Static_assert(KERN_FTILE_MR == FMR && KERN_FTILE_NR_MAX >= FNR, "ftile_avx512 lists the shapes up to 4 x 6");

struct kern_ftile kern_avx512_ftile(void)
{
    return (struct kern_ftile){ftile_avx512, FNR};
}

/* ---- kern_gemm_f32's micro-kernel: 12 x 32 (24 zmm accumulators) ---- */
#define GB_NAME gemm_ukr_avx512
#define GB_V __m512
#define GB_VL 16
#define GB_MR 12
#define GB_NV 2
#define GB_LOAD(p) _mm512_loadu_ps(p)
#define GB_STORE(p, v) _mm512_storeu_ps(p, v)
#define GB_BCAST(p) _mm512_set1_ps(*(p))
#define GB_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define GB_ADD(a, b) _mm512_add_ps(a, b)
#define GB_ZERO() _mm512_setzero_ps()
#include "kernels/gemm_f32_body.h"

struct kern_gemm_ukr kern_avx512_gemm_ukr(void)
{
    return (struct kern_gemm_ukr){gemm_ukr_avx512, GB_MR, GB_NV * GB_VL, kern_avx2_gemm_pack_t};
}
