/*
 * AVX2 dot products of every weight type with its activation type, and the
 * activation quantizers (f32 -> q8_0 / q8_1 / q8_K) that feed them.
 *
 * Integer formats use the ggml technique: bytes are multiplied with
 * maddubs (unsigned x signed -> int16 pairs) and widened with madd; a signed
 * weight is made unsigned with sign_epi8 (|w| times sign(w)*a). K-quants
 * unpack their nibbles, high bits and 6-bit scales in registers, accumulate
 * one int32 vector per super-block and apply the float scales once per
 * super-block; the minimum / offset terms use the activation block sums.
 *
 * The activation quantizers produce exactly the bytes of the reference ones
 * in quant_ref.c / kquant_ref.c for every input (the unit test compares them):
 * the same float operations in the same order, roundf() emulated exactly
 * (ties away from zero) for q8_0 and q8_1, and round-to-nearest-even for
 * q8_K, whose reference uses the nearest_int() trick. A block the vector code
 * cannot get right (an infinite inverse scale, or an inf or NaN input; see
 * has_i8_min) is detected after the fact and handed to the reference.
 *
 * Rows are always whole blocks; loops that process two blocks per step finish
 * with a one-block loop for an odd count.
 *
 * The dequantizers (to_float) give the reference's floats bit for bit: the
 * same float operations in the same order, with no product fused into an FMA.
 */
#include "kernels/avx2_int.h"
#include "kernels/quant_ref.h"

#include <math.h>

/* ---- activation quantizers ---- */

/* roundf() of each lane (halfway cases away from zero), exact. */
static inline __m256 round_away(__m256 v)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t)); /* exact */
    __m256 one = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f));
    __m256 up = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), one);
    return _mm256_add_ps(t, up);
}

/* Four vectors of 8 int32 (elements 0..31 in order) -> 32 int8 in order. */
static inline __m256i pack32_i8(__m256i i0, __m256i i1, __m256i i2, __m256i i3)
{
    __m256i a = _mm256_packs_epi32(i0, i1), b = _mm256_packs_epi32(i2, i3);
    __m256i p = _mm256_packs_epi16(a, b);
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static inline float hmax_ps(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline float hmin_ps(__m256 v)
{
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    m = _mm_min_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* True if some byte of b is -128.
 *
 * Why the activation quantizers look for it: _mm256_cvtps_epi32 turns a NaN
 * or out-of-range lane into INT_MIN, which the saturating packs make -128.
 * The vector code meets such lanes in exactly three cases, all of which the
 * reference treats lane by lane with clamps it would cost a fast path to copy:
 *   - the inverse scale is infinite (d = amax / 127 or max / -127 so small,
 *     about |x| < 3.7e-37, that 1 / d overflows): x * inf is +-inf, 0 * inf
 *     is NaN; the reference writes 127 / -128 / 0 there for q8_0 and q8_1,
 *     and a zero block (with d = -+0) for q8_K;
 *   - an input is +-inf: the inverse scale is 0, inf * 0 is NaN;
 *   - an input is NaN: the reference ignores it for the maximum and writes
 *     0 (q8_0, q8_1) or bits of its payload (q8_K: nearest_int(NaN)).
 * Otherwise every lane is a finite |x * iscale| <= 127 (plus a few ulps,
 * rounding to 127), so a finite block never produces -128 and the check
 * costs a compare per 32 bytes on the fast path; a block that trips it is
 * quantized again by the reference. So the AVX2 bytes equal the reference's
 * for every input, NaN and inf included. */
static inline bool has_i8_min(__m256i b)
{
    return _mm256_movemask_epi8(_mm256_cmpeq_epi8(b, _mm256_set1_epi8(INT8_MIN))) != 0;
}

/* One block of 32: d = amax/127, q = roundf(x * (1/d)); *sum = sum(q).
 * Returns false, with qs and *sum not the reference's, for a block that
 * must be quantized by the reference instead (see has_i8_min). */
static inline bool quant_block32(const float *x, int8_t *qs, float *d_out, int *sum)
{
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16),
           v3 = _mm256_loadu_ps(x + 24);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, abs_mask), _mm256_and_ps(v1, abs_mask)),
                             _mm256_max_ps(_mm256_and_ps(v2, abs_mask), _mm256_and_ps(v3, abs_mask)));
    float amax = hmax_ps(m);
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    __m256 vid = _mm256_set1_ps(id);
    __m256i i0 = _mm256_cvtps_epi32(round_away(_mm256_mul_ps(v0, vid)));
    __m256i i1 = _mm256_cvtps_epi32(round_away(_mm256_mul_ps(v1, vid)));
    __m256i i2 = _mm256_cvtps_epi32(round_away(_mm256_mul_ps(v2, vid)));
    __m256i i3 = _mm256_cvtps_epi32(round_away(_mm256_mul_ps(v3, vid)));
    __m256i b = pack32_i8(i0, i1, i2, i3);
    _mm256_storeu_si256((__m256i *)qs, b);
    *d_out = d;
    *sum = avx2_hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
    return !has_i8_min(b);
}

static void quantize_row_q8_0_avx2(const float *x, void *vy, int64_t n)
{
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        float d;
        int sum;
        if (__builtin_expect(!quant_block32(x + i * QK8_0, y[i].qs, &d, &sum), 0)) {
            kern_ref_quantize_q8_0(x + i * QK8_0, &y[i], QK8_0);
            continue;
        }
        y[i].d = fp32_to_fp16(d);
    }
}

static void quantize_row_q8_1_avx2(const float *x, void *vy, int64_t n)
{
    block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        float d;
        int sum;
        if (__builtin_expect(!quant_block32(x + i * QK8_1, y[i].qs, &d, &sum), 0)) {
            kern_ref_quantize_q8_1(x + i * QK8_1, &y[i], QK8_1);
            continue;
        }
        y[i].d = fp32_to_fp16(d);
        y[i].s = fp32_to_fp16((float)sum * d);
    }
}

/* min(127, nearest_int(x[k] * iscale)) for 8 lanes. (Written out per call
 * rather than looped over an array, which GCC kept on the stack.) */
static inline __m256i q8_K_lanes(const float *x, __m256 vs)
{
    __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm256_min_epi32(_mm256_cvtps_epi32(v), _mm256_set1_epi32(127));
}

static void quantize_row_q8_K_avx2(const float *x, void *vy, int64_t n)
{
    block_q8_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        /* From zero, with the new value first: max_ps / min_ps return their
         * second operand when one is NaN, so NaN inputs are skipped as the
         * reference skips them, amax is some |x[j]| and the tie scan below
         * ends (such a block then goes to the reference; see has_i8_min). */
        __m256 vmax = _mm256_setzero_ps(), vmin = vmax;
        for (int j = 0; j < QK_K; j += 8) {
            __m256 v = _mm256_loadu_ps(x + j);
            vmax = _mm256_max_ps(v, vmax);
            vmin = _mm256_min_ps(v, vmin);
        }
        float mx = hmax_ps(vmax), mn = -hmin_ps(vmin);
        float amax = mx > mn ? mx : mn;
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        /* The reference keeps the first element of largest magnitude, with
         * its sign; only a tie between +amax and -amax needs the scan. */
        float max;
        if (mx > mn) {
            max = mx;
        } else if (mn > mx) {
            max = -mn;
        } else {
            int j = 0;
            while (fabsf(x[j]) != amax)
                j++;
            max = x[j];
        }
        const float iscale = -127.0f / max;
        const __m256 vs = _mm256_set1_ps(iscale);
        const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
        int32_t s4[8][8];
        __m256i low = _mm256_setzero_si256(); /* bytewise minimum, for has_i8_min */
        for (int j = 0; j < QK_K; j += 32) {
            __m256i b = pack32_i8(q8_K_lanes(x + j, vs), q8_K_lanes(x + j + 8, vs), q8_K_lanes(x + j + 16, vs),
                                  q8_K_lanes(x + j + 24, vs));
            _mm256_storeu_si256((__m256i *)(y[i].qs + j), b);
            low = _mm256_min_epi8(low, b);
            /* lanes 0-3: sums of 4 of the first 16 bytes, lanes 4-7: the next 16 */
            __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, b), ones16);
            _mm256_storeu_si256((__m256i *)s4[j / 32], s);
        }
        if (__builtin_expect(has_i8_min(low), 0)) {
            kern_ref_quantize_q8_K(x, &y[i], QK_K);
            continue;
        }
        for (int g = 0; g < QK_K / 16; g++) {
            const int32_t *s = &s4[g / 2][(g % 2) * 4];
            y[i].bsums[g] = (int16_t)(s[0] + s[1] + s[2] + s[3]);
        }
        y[i].d = 1.0f / iscale;
    }
}

/* ---- q8_0-activation formats ---- */

#define DOT_Q8_0_FAMILY(name, btype, BYTES)                                                                  \
    static float name(int64_t n, const void *vx, const void *vy)                                             \
    {                                                                                                        \
        const btype *x = vx;                                                                                 \
        const block_q8_0 *y = vy;                                                                            \
        const int64_t nb = n / QK8_0;                                                                        \
        const __m256i table = avx2_iq4nl_table();                                                            \
        (void)table;                                                                                         \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                                       \
        int64_t i = 0;                                                                                       \
        for (; i + 2 <= nb; i += 2) {                                                                        \
            __m256 d0 = _mm256_set1_ps(avx2_h2f(x[i].d) * avx2_h2f(y[i].d));                                 \
            __m256 d1 = _mm256_set1_ps(avx2_h2f(x[i + 1].d) * avx2_h2f(y[i + 1].d));                         \
            __m256i b0 = BYTES(&x[i]), b1 = BYTES(&x[i + 1]);                                                \
            __m256 p0 = avx2_mul_sum_i8_ps(b0, _mm256_loadu_si256((const __m256i *)y[i].qs));                \
            __m256 p1 = avx2_mul_sum_i8_ps(b1, _mm256_loadu_si256((const __m256i *)y[i + 1].qs));            \
            acc0 = _mm256_fmadd_ps(d0, p0, acc0);                                                            \
            acc1 = _mm256_fmadd_ps(d1, p1, acc1);                                                            \
        }                                                                                                    \
        for (; i < nb; i++) {                                                                                \
            __m256 d0 = _mm256_set1_ps(avx2_h2f(x[i].d) * avx2_h2f(y[i].d));                                 \
            __m256 p0 = avx2_mul_sum_i8_ps(BYTES(&x[i]), _mm256_loadu_si256((const __m256i *)y[i].qs));      \
            acc0 = _mm256_fmadd_ps(d0, p0, acc0);                                                            \
        }                                                                                                    \
        return avx2_hsum_ps(_mm256_add_ps(acc0, acc1));                                                      \
    }

#define IQ4_BYTES(b) avx2_iq4_nl_bytes(b, table)
DOT_Q8_0_FAMILY(vec_dot_q8_0_q8_0, block_q8_0, avx2_q8_0_bytes)
DOT_Q8_0_FAMILY(vec_dot_q4_0_q8_0, block_q4_0, avx2_q4_0_bytes)
DOT_Q8_0_FAMILY(vec_dot_q5_0_q8_0, block_q5_0, avx2_q5_0_bytes)
DOT_Q8_0_FAMILY(vec_dot_iq4_nl_q8_0, block_iq4_nl, IQ4_BYTES)

/* ---- q8_1-activation formats: w = d*q + m, so dot = dx*dy*sum(q*a) + m*s ---- */

static inline __m256i q4_1_bytes(const block_q4_1 *b)
{
    return avx2_nibbles32(b->qs);
}
static inline __m256i q5_1_bytes(const block_q5_1 *b)
{
    return _mm256_or_si256(avx2_nibbles32(b->qs), _mm256_and_si256(avx2_bits32(b->qh), _mm256_set1_epi8(0x10)));
}

#define DOT_Q8_1_FAMILY(name, btype, BYTES)                                                                  \
    static float name(int64_t n, const void *vx, const void *vy)                                             \
    {                                                                                                        \
        const btype *x = vx;                                                                                 \
        const block_q8_1 *y = vy;                                                                            \
        const int64_t nb = n / QK8_1;                                                                        \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                                       \
        float summs = 0;                                                                                     \
        int64_t i = 0;                                                                                       \
        for (; i + 2 <= nb; i += 2) {                                                                        \
            __m256 d0 = _mm256_set1_ps(avx2_h2f(x[i].d) * avx2_h2f(y[i].d));                                 \
            __m256 d1 = _mm256_set1_ps(avx2_h2f(x[i + 1].d) * avx2_h2f(y[i + 1].d));                         \
            summs += avx2_h2f(x[i].m) * avx2_h2f(y[i].s) + avx2_h2f(x[i + 1].m) * avx2_h2f(y[i + 1].s);     \
            __m256 p0 = avx2_mul_sum_us8_ps(BYTES(&x[i]), _mm256_loadu_si256((const __m256i *)y[i].qs));    \
            __m256 p1 = avx2_mul_sum_us8_ps(BYTES(&x[i + 1]), _mm256_loadu_si256((const __m256i *)y[i + 1].qs)); \
            acc0 = _mm256_fmadd_ps(d0, p0, acc0);                                                            \
            acc1 = _mm256_fmadd_ps(d1, p1, acc1);                                                            \
        }                                                                                                    \
        for (; i < nb; i++) {                                                                                \
            __m256 d0 = _mm256_set1_ps(avx2_h2f(x[i].d) * avx2_h2f(y[i].d));                                 \
            summs += avx2_h2f(x[i].m) * avx2_h2f(y[i].s);                                                    \
            __m256 p0 = avx2_mul_sum_us8_ps(BYTES(&x[i]), _mm256_loadu_si256((const __m256i *)y[i].qs));    \
            acc0 = _mm256_fmadd_ps(d0, p0, acc0);                                                            \
        }                                                                                                    \
        return avx2_hsum_ps(_mm256_add_ps(acc0, acc1)) + summs;                                              \
    }

DOT_Q8_1_FAMILY(vec_dot_q4_1_q8_1, block_q4_1, q4_1_bytes)
DOT_Q8_1_FAMILY(vec_dot_q5_1_q8_1, block_q5_1, q5_1_bytes)

/* ---- k-quants (q8_K activations) ---- */

/* The shared body of q4_K and q5_K: HB adds the fifth bits (or nothing). */
#define DOT_Q45_K(name, btype, HIGHBITS)                                                                       \
    static float name(int64_t n, const void *vx, const void *vy)                                               \
    {                                                                                                          \
        const btype *x = vx;                                                                                   \
        const block_q8_K *y = vy;                                                                              \
        const int64_t nb = n / QK_K;                                                                           \
        const __m256i m4 = _mm256_set1_epi8(0x0f);                                                             \
        __m256 acc = _mm256_setzero_ps();                                                                      \
        __m128 accm = _mm_setzero_ps();                                                                        \
        for (int64_t i = 0; i < nb; i++) {                                                                     \
            const float d = y[i].d * avx2_h2f(x[i].d);                                                         \
            const float dmin = -y[i].d * avx2_h2f(x[i].dmin);                                                  \
            __m128i sm8 = avx2_unpack_scales_k4(x[i].scales);                                                       \
            __m256i sm16 = _mm256_cvtepu8_epi16(sm8);                                                          \
            __m128i bs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)y[i].bsums),                         \
                                        _mm_loadu_si128((const __m128i *)(y[i].bsums + 8)));                   \
            __m128i pm = _mm_madd_epi16(_mm256_extracti128_si256(sm16, 1), bs);                                \
            accm = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(pm), accm);                                 \
            const __m256i scales = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sm16));                  \
            const uint8_t *q = x[i].qs;                                                                        \
            const int8_t *a = y[i].qs;                                                                         \
            __m256i sumi = _mm256_setzero_si256();                                                             \
            HIGHBITS##_LOAD                                                                                    \
            for (int j = 0; j < 4; j++) {                                                                      \
                __m256i sl = _mm256_shuffle_epi8(scales, _mm256_set1_epi16((short)((4 * j + 1) << 8 | 4 * j)));  \
                __m256i sh = _mm256_shuffle_epi8(scales, _mm256_set1_epi16((short)((4 * j + 3) << 8 | (4 * j + 2)))); \
                __m256i qb = _mm256_loadu_si256((const __m256i *)(q + 32 * j));                                \
                __m256i lo = _mm256_and_si256(qb, m4), hi = _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4);    \
                HIGHBITS##_APPLY                                                                               \
                __m256i pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(a + 64 * j)));      \
                __m256i ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(a + 64 * j + 32))); \
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(_mm256_madd_epi16(pl, sl), _mm256_madd_epi16(ph, sh))); \
            }                                                                                                  \
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);                           \
        }                                                                                                      \
        __m128 m = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));                                                \
        m = _mm_add_ss(m, _mm_movehdup_ps(m));                                                                 \
        return avx2_hsum_ps(acc) + _mm_cvtss_f32(m);                                                           \
    }

#define Q4K_LOAD
#define Q4K_APPLY
#define Q5K_LOAD const __m256i qh = _mm256_loadu_si256((const __m256i *)x[i].qh), one = _mm256_set1_epi8(1);
#define Q5K_APPLY                                                                                              \
    lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j), one), 4));       \
    hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j + 1), one), 4));

DOT_Q45_K(vec_dot_q4_K_q8_K, block_q4_K, Q4K)
DOT_Q45_K(vec_dot_q5_K_q8_K, block_q5_K, Q5K)

/* q6_K: 6-bit values (0..63) with an offset of 32 and 16 int8 scales. */
static float vec_dot_q6_K_q8_K(int64_t n, const void *vx, const void *vy)
{
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x03);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const float d = y[i].d * avx2_h2f(x[i].d);
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)x[i].scales);
        __m256i corr = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[i].bsums), _mm256_cvtepi8_epi16(sc8));
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            const int8_t *a = y[i].qs + 128 * h;
            __m256i q[4];
            avx2_q6_K_unpack(ql, qh, m4, m2, q);
            for (int k = 0; k < 4; k++) {
                int g = 4 * h + k;
                __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(a + 32 * k)));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, avx2_scale_pair(sc8, 2 * g, 2 * g + 1)));
            }
        }
        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(corr, 5));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return avx2_hsum_ps(acc);
}

/* q2_K: 2-bit values with a 4-bit scale and a 4-bit min per 16. */
static float vec_dot_q2_K_q8_K(int64_t n, const void *vx, const void *vy)
{
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const __m256i m3 = _mm256_set1_epi8(0x03);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const float d = y[i].d * avx2_h2f(x[i].d);
        const float dmin = -y[i].d * avx2_h2f(x[i].dmin);
        const __m128i raw = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m128i sc8 = _mm_and_si128(raw, m4);
        __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
        __m256i pm = _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)y[i].bsums));
        accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(pm), accm);
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i qv = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            const int8_t *a = y[i].qs + 128 * h;
            for (int k = 0; k < 4; k++) {
                int g = 4 * h + k;
                __m256i q = _mm256_and_si256(_mm256_srli_epi16(qv, 2 * k), m3);
                __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(a + 32 * k)));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, avx2_scale_pair(sc8, 2 * g, 2 * g + 1)));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return avx2_hsum_ps(_mm256_add_ps(acc, accm));
}

/* q3_K: 2 low bits + 1 high bit (value - 4), 16 6-bit scales (value - 32). */
static float vec_dot_q3_K_q8_K(int64_t n, const void *vx, const void *vy)
{
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const uint32_t km1 = 0x03030303, km2 = 0x0f0f0f0f;
    const __m256i m3 = _mm256_set1_epi8(0x03), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const float d = y[i].d * avx2_h2f(x[i].d);
        uint32_t u[4];
        memcpy(u, x[i].scales, 12);
        uint32_t t = u[2];
        u[2] = ((u[0] >> 4) & km2) | (((t >> 4) & km1) << 4);
        u[3] = ((u[1] >> 4) & km2) | (((t >> 6) & km1) << 4);
        u[0] = (u[0] & km2) | (((t >> 0) & km1) << 4);
        u[1] = (u[1] & km2) | (((t >> 2) & km1) << 4);
        const __m128i sc8 = _mm_sub_epi8(_mm_setr_epi32((int)u[0], (int)u[1], (int)u[2], (int)u[3]), _mm_set1_epi8(32));
        __m256i corr = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[i].bsums), _mm256_cvtepi8_epi16(sc8));
        const __m256i hm = _mm256_loadu_si256((const __m256i *)x[i].hmask);
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i qv = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            const int8_t *a = y[i].qs + 128 * h;
            for (int k = 0; k < 4; k++) {
                int g = 4 * h + k;
                __m256i q = _mm256_and_si256(_mm256_srli_epi16(qv, 2 * k), m3);
                __m256i hbit = _mm256_and_si256(_mm256_srli_epi16(hm, g), one);
                q = _mm256_or_si256(q, _mm256_slli_epi16(hbit, 2));
                __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(a + 32 * k)));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, avx2_scale_pair(sc8, 2 * g, 2 * g + 1)));
            }
        }
        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(corr, 2));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return avx2_hsum_ps(acc);
}

/* ---- f16 and bf16 weights with f32 activations ---- */

static inline __m256 load_f16(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
static inline __m256 load_bf16(const uint16_t *p)
{
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

#define DOT_HALF(name, LOAD, SCALAR)                                                                          \
    static float name(int64_t n, const void *vx, const void *vy)                                              \
    {                                                                                                         \
        const uint16_t *x = vx;                                                                               \
        const float *y = vy;                                                                                  \
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(),                  \
               s3 = _mm256_setzero_ps();                                                                      \
        int64_t i = 0;                                                                                        \
        for (; i + 32 <= n; i += 32) {                                                                        \
            s0 = _mm256_fmadd_ps(LOAD(x + i), _mm256_loadu_ps(y + i), s0);                                    \
            s1 = _mm256_fmadd_ps(LOAD(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);                            \
            s2 = _mm256_fmadd_ps(LOAD(x + i + 16), _mm256_loadu_ps(y + i + 16), s2);                          \
            s3 = _mm256_fmadd_ps(LOAD(x + i + 24), _mm256_loadu_ps(y + i + 24), s3);                          \
        }                                                                                                     \
        for (; i + 8 <= n; i += 8)                                                                            \
            s0 = _mm256_fmadd_ps(LOAD(x + i), _mm256_loadu_ps(y + i), s0);                                    \
        float s = avx2_hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));                  \
        for (; i < n; i++)                                                                                    \
            s += SCALAR(x[i]) * y[i];                                                                         \
        return s;                                                                                             \
    }

DOT_HALF(vec_dot_f16_f32, load_f16, fp16_to_fp32)
DOT_HALF(vec_dot_bf16_f32, load_bf16, bf16_to_fp32)

/* ---- dequantization of the most common types ---- */

static void f16_to_float_avx2(const void *vx, float *y, int64_t n)
{
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, load_f16(x + i));
    for (; i < n; i++)
        y[i] = fp16_to_fp32(x[i]);
}

static void bf16_to_float_avx2(const void *vx, float *y, int64_t n)
{
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, load_bf16(x + i));
    for (; i < n; i++)
        y[i] = bf16_to_fp32(x[i]);
}

/* 32 signed bytes times a scale -> 32 floats. */
static inline void store_scaled32(float *y, __m256i b, float d)
{
    __m256 vd = _mm256_set1_ps(d);
    __m128i lo = _mm256_castsi256_si128(b), hi = _mm256_extracti128_si256(b, 1);
    _mm256_storeu_ps(y, _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
}

#define TO_FLOAT_Q8_0_FAMILY(name, btype, BYTES)                                                              \
    static void name(const void *vx, float *y, int64_t n)                                                     \
    {                                                                                                         \
        const btype *x = vx;                                                                                  \
        const __m256i table = avx2_iq4nl_table();                                                             \
        (void)table;                                                                                          \
        for (int64_t i = 0; i < n / 32; i++)                                                                  \
            store_scaled32(y + 32 * i, BYTES(&x[i]), avx2_h2f(x[i].d));                                       \
    }

TO_FLOAT_Q8_0_FAMILY(q8_0_to_float_avx2, block_q8_0, avx2_q8_0_bytes)
TO_FLOAT_Q8_0_FAMILY(q4_0_to_float_avx2, block_q4_0, avx2_q4_0_bytes)
TO_FLOAT_Q8_0_FAMILY(q5_0_to_float_avx2, block_q5_0, avx2_q5_0_bytes)
TO_FLOAT_Q8_0_FAMILY(iq4_nl_to_float_avx2, block_iq4_nl, IQ4_BYTES)

/* ---- dequantization of the affine and k-quant types ----
 * Each element is computed with the reference's float operations, in its
 * order, so the floats are bit for bit the reference's: q4_1 / q5_1
 * q * d + m; q2_K (d * sc) * q - dmin * m; q3_K and q6_K (d * sc) * q;
 * q4_K / q5_K (d * sc) * q - dmin * m. The per-sub-block products d * sc and
 * dmin * m are formed once per super-block, 8 at a time, as the reference
 * forms them one by one. The quants are small integers, exact as floats. */

/* p, kept as a rounded product of its own. This file is compiled with -mfma
 * and GCC contracts mul + add into one FMA by default (-ffp-contract=fast),
 * also for the intrinsics; the reference is compiled for baseline x86-64,
 * which has no FMA, so it always rounds the product first. The empty asm
 * hides where p came from, so no compiler can fuse it into the next add.
 * (Every product below is in fact exact: an fp16 scale has at most 11
 * significant bits, a sub-block scale at most 6 and a quant at most 5, so
 * fusing would round the same. The barrier makes the reference's operation
 * order hold by construction rather than by that argument; it costs no
 * instruction. An fmsub instead of mul + sub measured ~14% faster on q4_K.) */
static inline __m256 unfused(__m256 p)
{
    __asm__("" : "+x"(p));
    return p;
}

/* 8 signed bytes (the low 8 of b) -> 8 floats. */
static inline __m256 i8x8_ps(__m128i b)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}

/* 32 signed bytes -> 32 floats, y[k] = vd * b[k] + vm (two roundings). */
static inline void store32_mul_add(float *y, __m256i b, __m256 vd, __m256 vm)
{
    __m128i lo = _mm256_castsi256_si128(b), hi = _mm256_extracti128_si256(b, 1);
    _mm256_storeu_ps(y, _mm256_add_ps(unfused(_mm256_mul_ps(vd, i8x8_ps(lo))), vm));
    _mm256_storeu_ps(y + 8, _mm256_add_ps(unfused(_mm256_mul_ps(vd, i8x8_ps(_mm_srli_si128(lo, 8)))), vm));
    _mm256_storeu_ps(y + 16, _mm256_add_ps(unfused(_mm256_mul_ps(vd, i8x8_ps(hi))), vm));
    _mm256_storeu_ps(y + 24, _mm256_add_ps(unfused(_mm256_mul_ps(vd, i8x8_ps(_mm_srli_si128(hi, 8)))), vm));
}

/* 16 signed bytes -> 16 floats, y[k] = vd * b[k] - vm (two roundings). */
static inline void store16_mul_sub(float *y, __m128i b, __m256 vd, __m256 vm)
{
    _mm256_storeu_ps(y, _mm256_sub_ps(unfused(_mm256_mul_ps(vd, i8x8_ps(b))), vm));
    _mm256_storeu_ps(y + 8, _mm256_sub_ps(unfused(_mm256_mul_ps(vd, i8x8_ps(_mm_srli_si128(b, 8)))), vm));
}

/* 32 signed bytes of one sub-block -> 32 floats, y[k] = vd * b[k] - vm. */
static inline void store32_mul_sub(float *y, __m256i b, __m256 vd, __m256 vm)
{
    store16_mul_sub(y, _mm256_castsi256_si128(b), vd, vm);
    store16_mul_sub(y + 16, _mm256_extracti128_si256(b, 1), vd, vm);
}

/* 16 signed bytes -> 16 floats, y[k] = vd * b[k]. */
static inline void store16_mul(float *y, __m128i b, __m256 vd)
{
    _mm256_storeu_ps(y, _mm256_mul_ps(vd, i8x8_ps(b)));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(vd, i8x8_ps(_mm_srli_si128(b, 8))));
}

/* 16 signed bytes s -> out[k] = v * s[k], k < 16: the per-sub-block scales. */
static inline void scale16(float out[16], __m128i s, float v)
{
    __m256 vv = _mm256_set1_ps(v);
    _mm256_storeu_ps(out, _mm256_mul_ps(vv, i8x8_ps(s)));
    _mm256_storeu_ps(out + 8, _mm256_mul_ps(vv, i8x8_ps(_mm_srli_si128(s, 8))));
}

static void q4_1_to_float_avx2(const void *vx, float *y, int64_t n)
{
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < n / QK4_1; i++)
        store32_mul_add(y + 32 * i, q4_1_bytes(&x[i]), _mm256_set1_ps(avx2_h2f(x[i].d)),
                        _mm256_set1_ps(avx2_h2f(x[i].m)));
}

static void q5_1_to_float_avx2(const void *vx, float *y, int64_t n)
{
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < n / QK5_1; i++)
        store32_mul_add(y + 32 * i, q5_1_bytes(&x[i]), _mm256_set1_ps(avx2_h2f(x[i].d)),
                        _mm256_set1_ps(avx2_h2f(x[i].m)));
}

/* q2_K: element 128h + 32k + l is bits 2k..2k+1 of qs[32h + l]; the 4-bit
 * scale (low) and min (high) of its 16 in scales[8h + 2k + l / 16]. */
static void q2_K_to_float_avx2(const void *vx, float *y, int64_t n)
{
    const block_q2_K *x = vx;
    const __m256i m3 = _mm256_set1_epi8(0x03);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    float dl[16], ml[16];
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        const __m128i raw = _mm_loadu_si128((const __m128i *)x[i].scales);
        scale16(dl, _mm_and_si128(raw, m4), avx2_h2f(x[i].d));
        scale16(ml, _mm_and_si128(_mm_srli_epi16(raw, 4), m4), avx2_h2f(x[i].dmin));
        for (int h = 0; h < 2; h++) {
            const __m256i qv = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            for (int k = 0; k < 4; k++) {
                const int g = 8 * h + 2 * k;
                const __m256i q = _mm256_and_si256(_mm256_srli_epi16(qv, 2 * k), m3);
                float *yy = y + 128 * h + 32 * k;
                store16_mul_sub(yy, _mm256_castsi256_si128(q), _mm256_set1_ps(dl[g]), _mm256_set1_ps(ml[g]));
                store16_mul_sub(yy + 16, _mm256_extracti128_si256(q, 1), _mm256_set1_ps(dl[g + 1]),
                                _mm256_set1_ps(ml[g + 1]));
            }
        }
    }
}

/* q3_K: element 128h + 32k + l: bits 2k..2k+1 of qs[32h + l], minus 4 unless
 * bit 4h + k of hmask[l] is set; the scale of its 16 is scales[8h + 2k + l / 16]. */
static void q3_K_to_float_avx2(const void *vx, float *y, int64_t n)
{
    const block_q3_K *x = vx;
    const __m256i m3 = _mm256_set1_epi8(0x03), one = _mm256_set1_epi8(1), four = _mm256_set1_epi8(4);
    float dl[16];
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        scale16(dl, avx2_q3_K_scales16(x[i].scales), avx2_h2f(x[i].d));
        const __m256i hm = _mm256_loadu_si256((const __m256i *)x[i].hmask);
        for (int h = 0; h < 2; h++) {
            const __m256i qv = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            for (int k = 0; k < 4; k++) {
                const int g = 8 * h + 2 * k;
                __m256i q = _mm256_and_si256(_mm256_srli_epi16(qv, 2 * k), m3);
                const __m256i hbit = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + k), one);
                q = _mm256_sub_epi8(_mm256_or_si256(q, _mm256_slli_epi16(hbit, 2)), four);
                float *yy = y + 128 * h + 32 * k;
                store16_mul(yy, _mm256_castsi256_si128(q), _mm256_set1_ps(dl[g]));
                store16_mul(yy + 16, _mm256_extracti128_si256(q, 1), _mm256_set1_ps(dl[g + 1]));
            }
        }
    }
}

/* The 8 scales (times d) and 8 mins (times dmin) of a q4_K / q5_K block. */
static inline void k4_scales(const uint8_t *packed, float d, float dmin, float dl[8], float ml[8])
{
    const __m128i sm = avx2_unpack_scales_k4(packed);
    _mm256_storeu_ps(dl, _mm256_mul_ps(_mm256_set1_ps(d), i8x8_ps(sm)));
    _mm256_storeu_ps(ml, _mm256_mul_ps(_mm256_set1_ps(dmin), i8x8_ps(_mm_srli_si128(sm, 8))));
}

/* q4_K: sub-block 2p is the low nibbles of qs[32p..32p+31], 2p+1 the high. */
static void q4_K_to_float_avx2(const void *vx, float *y, int64_t n)
{
    const block_q4_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    float dl[8], ml[8];
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        k4_scales(x[i].scales, avx2_h2f(x[i].d), avx2_h2f(x[i].dmin), dl, ml);
        for (int p = 0; p < 4; p++) {
            const __m256i qv = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * p));
            store32_mul_sub(y + 64 * p, _mm256_and_si256(qv, m4), _mm256_set1_ps(dl[2 * p]),
                            _mm256_set1_ps(ml[2 * p]));
            store32_mul_sub(y + 64 * p + 32, _mm256_and_si256(_mm256_srli_epi16(qv, 4), m4),
                            _mm256_set1_ps(dl[2 * p + 1]), _mm256_set1_ps(ml[2 * p + 1]));
        }
    }
}

/* q5_K: q4_K plus 16 where bit j of qh[l] is set (sub-block j, element l). */
static void q5_K_to_float_avx2(const void *vx, float *y, int64_t n)
{
    const block_q5_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    float dl[8], ml[8];
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        k4_scales(x[i].scales, avx2_h2f(x[i].d), avx2_h2f(x[i].dmin), dl, ml);
        const __m256i hv = _mm256_loadu_si256((const __m256i *)x[i].qh);
        for (int p = 0; p < 4; p++) {
            const __m256i qv = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * p));
            const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(hv, 2 * p), one);
            const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(hv, 2 * p + 1), one);
            const __m256i q0 = _mm256_or_si256(_mm256_and_si256(qv, m4), _mm256_slli_epi16(h0, 4));
            const __m256i q1 =
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qv, 4), m4), _mm256_slli_epi16(h1, 4));
            store32_mul_sub(y + 64 * p, q0, _mm256_set1_ps(dl[2 * p]), _mm256_set1_ps(ml[2 * p]));
            store32_mul_sub(y + 64 * p + 32, q1, _mm256_set1_ps(dl[2 * p + 1]), _mm256_set1_ps(ml[2 * p + 1]));
        }
    }
}

/* q6_K, per half h of 128: quarter k of 32 takes its low 4 bits from
 * ql[64h + 32(k & 1) + l] (low nibble for k < 2, high for k >= 2) and its
 * high 2 bits from bits 2k..2k+1 of qh[32h + l]; value - 32, scale of its 16
 * in scales[8h + 2k + l / 16]. */
static void q6_K_to_float_avx2(const void *vx, float *y, int64_t n)
{
    const block_q6_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x03), off = _mm256_set1_epi8(32);
    float dl[16];
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        scale16(dl, _mm_loadu_si128((const __m128i *)x[i].scales), avx2_h2f(x[i].d));
        for (int h = 0; h < 2; h++) {
            const __m256i qa = _mm256_loadu_si256((const __m256i *)(x[i].ql + 64 * h));
            const __m256i qb = _mm256_loadu_si256((const __m256i *)(x[i].ql + 64 * h + 32));
            const __m256i hb = _mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h));
            for (int k = 0; k < 4; k++) {
                const __m256i src = (k & 1) ? qb : qa;
                const __m256i lo = _mm256_and_si256(k < 2 ? src : _mm256_srli_epi16(src, 4), m4);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(hb, 2 * k), m2);
                const __m256i q = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), off);
                const int g = 8 * h + 2 * k;
                float *yy = y + 128 * h + 32 * k;
                store16_mul(yy, _mm256_castsi256_si128(q), _mm256_set1_ps(dl[g]));
                store16_mul(yy + 16, _mm256_extracti128_si256(q, 1), _mm256_set1_ps(dl[g + 1]));
            }
        }
    }
}

static void register_types(struct kern_type_ops *tab)
{
    static const struct {
        enum ggml_type t;
        kern_vec_dot_fn dot;
    } dots[] = {
        {GGML_TYPE_Q4_0, vec_dot_q4_0_q8_0}, {GGML_TYPE_Q4_1, vec_dot_q4_1_q8_1}, {GGML_TYPE_Q5_0, vec_dot_q5_0_q8_0},
        {GGML_TYPE_Q5_1, vec_dot_q5_1_q8_1}, {GGML_TYPE_Q8_0, vec_dot_q8_0_q8_0}, {GGML_TYPE_Q2_K, vec_dot_q2_K_q8_K},
        {GGML_TYPE_Q3_K, vec_dot_q3_K_q8_K}, {GGML_TYPE_Q4_K, vec_dot_q4_K_q8_K}, {GGML_TYPE_Q5_K, vec_dot_q5_K_q8_K},
        {GGML_TYPE_Q6_K, vec_dot_q6_K_q8_K}, {GGML_TYPE_IQ4_NL, vec_dot_iq4_nl_q8_0},
        {GGML_TYPE_F16, vec_dot_f16_f32},    {GGML_TYPE_BF16, vec_dot_bf16_f32},
    };
    for (size_t k = 0; k < sizeof dots / sizeof *dots; k++) {
        struct kern_type_ops *o = &tab[dots[k].t];
        /* Only types the reference supports: the vec_dot_type (and so the
         * activation layout) is the reference's. */
        if (!o->vec_dot)
            continue;
        o->vec_dot = dots[k].dot;
        switch (o->vec_dot_type) {
        case GGML_TYPE_Q8_0:
            o->from_float_act = quantize_row_q8_0_avx2;
            break;
        case GGML_TYPE_Q8_1:
            o->from_float_act = quantize_row_q8_1_avx2;
            break;
        case GGML_TYPE_Q8_K:
            o->from_float_act = quantize_row_q8_K_avx2;
            break;
        default:
            break;
        }
    }
    /* the activation types themselves */
    static const struct {
        enum ggml_type t;
        kern_from_float_fn fn;
    } acts[] = {
        {GGML_TYPE_Q8_0, quantize_row_q8_0_avx2},
        {GGML_TYPE_Q8_1, quantize_row_q8_1_avx2},
        {GGML_TYPE_Q8_K, quantize_row_q8_K_avx2},
    };
    for (size_t k = 0; k < sizeof acts / sizeof *acts; k++)
        if (tab[acts[k].t].from_float_act)
            tab[acts[k].t].from_float_act = acts[k].fn;

    static const struct {
        enum ggml_type t;
        kern_to_float_fn fn;
    } to_floats[] = {
        {GGML_TYPE_F16, f16_to_float_avx2},   {GGML_TYPE_BF16, bf16_to_float_avx2},
        {GGML_TYPE_Q8_0, q8_0_to_float_avx2}, {GGML_TYPE_Q4_0, q4_0_to_float_avx2},
        {GGML_TYPE_Q5_0, q5_0_to_float_avx2}, {GGML_TYPE_IQ4_NL, iq4_nl_to_float_avx2},
        {GGML_TYPE_Q4_1, q4_1_to_float_avx2}, {GGML_TYPE_Q5_1, q5_1_to_float_avx2},
        {GGML_TYPE_Q2_K, q2_K_to_float_avx2}, {GGML_TYPE_Q3_K, q3_K_to_float_avx2},
        {GGML_TYPE_Q4_K, q4_K_to_float_avx2}, {GGML_TYPE_Q5_K, q5_K_to_float_avx2},
        {GGML_TYPE_Q6_K, q6_K_to_float_avx2},
    };
    for (size_t k = 0; k < sizeof to_floats / sizeof *to_floats; k++)
        if (tab[to_floats[k].t].to_float)
            tab[to_floats[k].t].to_float = to_floats[k].fn;
}

/* The table's entry: the same tile at every token count. */
static struct kern_tile avx2_tile_any(enum ggml_type t, int64_t n_tok)
{
    (void)n_tok;
    return kern_avx2_tile(t);
}

void kern_register_avx2(struct kern_table *tab)
{
    register_types(tab->type);
    kern_register_avx2_ops(tab);
    kern_register_avx2_attn(tab);
    kern_register_avx2_probes(tab);
    tab->tile = avx2_tile_any;
    tab->gemv = kern_avx2_gemv;
    tab->ftile = kern_avx2_ftile();
    tab->gemm_f32 = kern_avx2_gemm_ukr();
    tab->act_to_float = kern_avx2_act_to_float;
}
