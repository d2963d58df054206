/*
 * Private to kernels/, included only by *_avx2.c files (compiled with -mavx2
 * -mfma -mf16c): small inline helpers shared by the AVX2 dot products
 * (quant_avx2.c) and the tiled matrix kernels (gemm_avx2.c).
 */
#ifndef MAAS_KERNELS_AVX2_INT_H
#define MAAS_KERNELS_AVX2_INT_H

#include "kernels/kernels_int.h"

#include <immintrin.h>
#include <string.h>

static inline float avx2_h2f(ggml_half h)
{
    return _cvtsh_ss(h);
}

static inline float avx2_hsum_ps(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

static inline int avx2_hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* Sum of adjacent int16 pairs as 8 floats. */
static inline __m256 avx2_sum_i16_pairs_ps(__m256i x)
{
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(x, _mm256_set1_epi16(1)));
}

/* Dot of unsigned bytes ax with signed bytes sy, as 8 partial float sums.
 * ax <= 128 and |sy| <= 127 keep the int16 pair sums from saturating. */
static inline __m256 avx2_mul_sum_us8_ps(__m256i ax, __m256i sy)
{
    return avx2_sum_i16_pairs_ps(_mm256_maddubs_epi16(ax, sy));
}

/* Dot of two vectors of signed bytes (x may be -128, y within +-127). */
static inline __m256 avx2_mul_sum_i8_ps(__m256i x, __m256i y)
{
    return avx2_mul_sum_us8_ps(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* 16 bytes of nibbles -> 32 bytes 0..15: element j (< 16) is the low nibble of
 * p[j], element j + 16 the high nibble (the q4_0/q4_1/q5/iq4_nl order). */
static inline __m256i avx2_nibbles32(const uint8_t *p)
{
    __m128i t = _mm_loadu_si128((const __m128i *)p);
    __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0f));
}

/* 32 bits (little-endian in 4 bytes) -> 32 bytes, 0xff where the bit is set. */
static inline __m256i avx2_bits32(const uint8_t *p)
{
    uint32_t x;
    memcpy(&x, p, 4);
    const __m256i ctl = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3,
                                         3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), ctl);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

/* The fp16 scales of 8 consecutive blocks (the first at p, stride bytes
 * apart) as 8 floats: gathered with integer loads and shifts, converted with
 * one vcvtph2ps. */
static inline __m256 avx2_scales8(const char *p, size_t stride)
{
    uint64_t lo = 0, hi = 0;
    for (int k = 0; k < 4; k++) {
        uint16_t a, b;
        memcpy(&a, p + k * stride, 2);
        memcpy(&b, p + (k + 4) * stride, 2);
        lo |= (uint64_t)a << (16 * k);
        hi |= (uint64_t)b << (16 * k);
    }
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)hi, (long long)lo));
}

/* 16 int16 lanes: the first 8 = s[a], the last 8 = s[b], from 16 int8 s. */
static inline __m256i avx2_scale_pair(__m128i s8, int a, int b)
{
    __m128i ctl = _mm_setr_epi8((char)a, (char)a, (char)a, (char)a, (char)a, (char)a, (char)a, (char)a, (char)b,
                                (char)b, (char)b, (char)b, (char)b, (char)b, (char)b, (char)b);
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s8, ctl));
}

/* A tile kernel (kern_tile_fn) that switches on its shape, nr weight rows
 * (1..4) by nc tokens, to the instance of the always-inline
 * body(f, rm, rn, n, w, ldw, a, lda, y, ldy) for it, shapes constant;
 * WIDTHS(body, f, rm) lists the token counts of rm rows the ISA's tile
 * has, each as KERN_TILE_CASE(body, f, rm, rn). */
#define KERN_TILE_CASE(body, f, rm, rn)                                                                       \
    case (rm) * 8 + (rn):                                                                                     \
        body(f, rm, rn, n, w, ldw, a, lda, y, ldy);                                                           \
        break;
#define KERN_TILE_FN(name, body, f, WIDTHS)                                                                   \
    static void name(int64_t n, const void *vw, size_t ldw, int nr, const void *va, size_t lda, int nc,       \
                     float *y, int64_t ldy)                                                                   \
    {                                                                                                         \
        const char *w = vw, *a = va;                                                                          \
        switch (nr * 8 + nc) {                                                                                \
            WIDTHS(body, f, 4)                                                                                \
            WIDTHS(body, f, 3)                                                                                \
            WIDTHS(body, f, 2)                                                                                \
            WIDTHS(body, f, 1)                                                                                \
        default:                                                                                              \
            MAAS_ASSERT(!"tile shape out of range");                                                          \
        }                                                                                                     \
    }

/* The 8 6-bit scales and 8 6-bit mins of q4_K/q5_K as 16 bytes: scales in
 * bytes 0-7, mins in bytes 8-15. */
static inline __m128i avx2_unpack_scales_k4(const uint8_t *q)
{
    const uint32_t km1 = 0x3f3f3f3f, km2 = 0x0f0f0f0f, km3 = 0x03030303;
    uint32_t u[4];
    memcpy(u, q, 12);
    u[3] = ((u[2] >> 4) & km2) | (((u[1] >> 6) & km3) << 4);
    uint32_t mins_lo = u[1] & km1;
    u[1] = (u[2] & km2) | (((u[0] >> 6) & km3) << 4);
    u[2] = mins_lo;
    u[0] &= km1;
    return _mm_setr_epi32((int)u[0], (int)u[1], (int)u[2], (int)u[3]);
}

/* The 16 6-bit scales of a q3_K block as signed bytes (-32..31), in order:
 * low 4 bits from the nibbles of bytes 0..7, high 2 bits from bytes 8..11. */
static inline __m128i avx2_q3_K_scales16(const uint8_t packed[12])
{
    const uint32_t m2 = 0x03030303, m4 = 0x0f0f0f0f;
    uint32_t u[3];
    memcpy(u, packed, 12);
    const uint32_t s0 = (u[0] & m4) | ((u[2] & m2) << 4);
    const uint32_t s1 = (u[1] & m4) | (((u[2] >> 2) & m2) << 4);
    const uint32_t s2 = ((u[0] >> 4) & m4) | (((u[2] >> 4) & m2) << 4);
    const uint32_t s3 = ((u[1] >> 4) & m4) | (((u[2] >> 6) & m2) << 4);
    return _mm_sub_epi8(_mm_setr_epi32((int)s0, (int)s1, (int)s2, (int)s3), _mm_set1_epi8(32));
}

/* Half a q6_K block (64 bytes of low nibbles at ql, 32 of high bit pairs at
 * qh) as four vectors of 32 unsigned 6-bit values, before the -32 offset;
 * m4 = 0x0f and m2 = 0x03 in every byte. */
static inline __attribute__((always_inline)) void avx2_q6_K_unpack(const uint8_t *ql, const uint8_t *qh, __m256i m4,
                                                                     __m256i m2, __m256i q[4])
{
    const __m256i qa = _mm256_loadu_si256((const __m256i *)ql);
    const __m256i qb = _mm256_loadu_si256((const __m256i *)(ql + 32));
    const __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
    q[0] = _mm256_or_si256(_mm256_and_si256(qa, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4));
    q[1] = _mm256_or_si256(_mm256_and_si256(qb, m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4));
}

/* The 16 values of the iq4_nl non-linear grid, in both lanes. */
static inline __m256i avx2_iq4nl_table(void)
{
    const __m128i t = _mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
    return _mm256_set_m128i(t, t);
}

/* A q8_0-family weight block (q4_0, q5_0, q8_0, iq4_nl) as 32 signed bytes
 * (each in -128..127) and its scale. */
static inline __m256i avx2_q4_0_bytes(const block_q4_0 *b)
{
    return _mm256_sub_epi8(avx2_nibbles32(b->qs), _mm256_set1_epi8(8));
}
static inline __m256i avx2_q5_0_bytes(const block_q5_0 *b)
{
    __m256i hi = _mm256_andnot_si256(avx2_bits32(b->qh), _mm256_set1_epi8((char)0xf0));
    return _mm256_or_si256(avx2_nibbles32(b->qs), hi);
}
static inline __m256i avx2_q8_0_bytes(const block_q8_0 *b)
{
    return _mm256_loadu_si256((const __m256i *)b->qs);
}
static inline __m256i avx2_iq4_nl_bytes(const block_iq4_nl *b, __m256i table)
{
    return _mm256_shuffle_epi8(table, avx2_nibbles32(b->qs));
}

/* The q8_0 family: the 32-weight block types whose weights come out as one
 * 32-byte vector of signed values (the prompt tiles of gemm_avx2.c and
 * gemm_avx512.c). */
enum fam { FAM_Q8_0, FAM_Q4_0, FAM_Q5_0, FAM_IQ4_NL };

static inline __attribute__((always_inline)) size_t fam_block_size(enum fam f)
{
    switch (f) {
    case FAM_Q8_0:
        return sizeof(block_q8_0);
    case FAM_Q4_0:
        return sizeof(block_q4_0);
    case FAM_Q5_0:
        return sizeof(block_q5_0);
    case FAM_IQ4_NL:
        return sizeof(block_iq4_nl);
    }
    return 0;
}

/* The 32 values of a weight block as signed bytes. */
static inline __attribute__((always_inline)) __m256i fam_sbytes(enum fam f, const char *blk, __m256i table)
{
    switch (f) {
    case FAM_Q8_0:
        return avx2_q8_0_bytes((const block_q8_0 *)blk);
    case FAM_Q4_0:
        return avx2_q4_0_bytes((const block_q4_0 *)blk);
    case FAM_Q5_0:
        return avx2_q5_0_bytes((const block_q5_0 *)blk);
    case FAM_IQ4_NL:
        return avx2_iq4_nl_bytes((const block_iq4_nl *)blk, table);
    }
    return _mm256_setzero_si256();
}

#endif
