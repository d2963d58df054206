/*
 * The AVX-512 VNNI variant's dot products of the k-quants (q2_K ... q6_K)
 * with q8_K activations, for the decode path (kern_matmul with one token):
 * vec_dot for each type, and the table's decode kernel (gemv), the same
 * body looped over a run of rows.
 *
 * The AVX2 code (quant_avx2.c) multiplies the unsigned weight codes with the
 * signed activation bytes by vpmaddubsw (int16 pairs), then multiplies those
 * by the sub-block scales and widens them with vpmaddwd. Here each 64 codes
 * take two VNNI instructions on 512-bit vectors:
 *   t   = vpdpbusd(0, codes, act): per int32 lane the sum of 4 products
 *         code * a. |t| <= 4 * 63 * 128 = 32256 for every type, so t also
 *         fits in the low int16 half of its lane (the high half is its sign);
 *   sum = vpdpwssd(sum, t, sc): + lo16(t) * sc + hi16(t) * 0, where each
 *         lane of sc holds its sub-block's scale in the low 16 bits and 0
 *         in the high 16 (a signed scale masked to 16 bits), so exactly
 *         sum + t * sc.
 * So the integer sums are exact, as in the AVX2 code and the reference
 * (kquant_ref.c), and the float work is the same as AVX2's: one multiply by
 * d = d_w * d_a per super-block, and the minimum terms (q2_K, q4_K, q5_K)
 * as AVX2 forms them from the activation block sums. Results differ from
 * AVX2's only in the order of the float additions (16 lanes instead of 8).
 *
 * The codes are unsigned, as vpdpbusd wants them (q4_K 0..15, q5_K 0..31,
 * q6_K 0..63, q2_K 0..3, q3_K 0..7); q6_K's offset of 32 and q3_K's of 4
 * come off through the block sums: sum(sc * (u - off) * a) =
 * sum(sc * u * a) - off * sum(sc * bsum). An activation byte of -128 (never
 * written by the q8_K quantizer, but a valid byte) is exact too: vpdpbusd
 * and vpdpwssd do not saturate.
 *
 * Layout: a vector holds 64 consecutive codes, lined up with 64 consecutive
 * activation bytes (one unaligned 512-bit load); the codes of two 32-value
 * halves that the format packs into one 32-byte run (nibbles, bit pairs)
 * come from one 256-bit load broadcast to both halves and shifted by a
 * different count in each half (vpsrlvw).
 */
#include "kernels/avx2_int.h"

/* The 32 bytes at p in both 256-bit halves. */
static inline __m512i bcast256(const void *p)
{
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
}

/* lo in the lower 256-bit half, hi in the upper (for the shift counts,
 * masks and permutation indices, all constants after inlining). */
static inline __m512i halves16(short lo, short hi)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(lo)), _mm256_set1_epi16(hi), 1);
}
static inline __m512i halves8(char lo, char hi)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi8(lo)), _mm256_set1_epi8(hi), 1);
}

/* Lane L of the result is lane g0 + L / 4 of v (16 groups of 16 values: a
 * 64-value vector spans 4 of them). */
static inline __m512i groups4(__m512i v, int g0)
{
    const __m512i idx = _mm512_add_epi32(_mm512_set1_epi32(g0),
                                         _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3));
    return _mm512_permutexvar_epi32(idx, v);
}

/* Lanes 0-7 are lane j of v, lanes 8-15 lane j + 1 (groups of 32 values). */
static inline __m512i groups8(__m512i v, int j)
{
    const __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(j)), _mm256_set1_epi32(j + 1), 1);
    return _mm512_permutexvar_epi32(idx, v);
}

/* sum + sc * (sum of 4 products code * a), per int32 lane (see the top). */
static inline __m512i dot_scaled(__m512i sum, __m512i codes, const int8_t *a, __m512i sc)
{
    const __m512i t = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes, _mm512_loadu_si512((const void *)a));
    return _mm512_dpwssd_epi32(sum, t, sc);
}

/* 16 signed bytes -> 16 int32 lanes holding each value's low 16 bits
 * (the scale operand of vpdpwssd). */
static inline __m512i scales_w16(__m128i s8)
{
    return _mm512_and_si512(_mm512_cvtepi8_epi32(s8), _mm512_set1_epi32(0xffff));
}

/* The 8 6-bit scales (bytes 0-7) and 8 6-bit mins (bytes 8-15) of a q4_K /
 * q5_K block, as avx2_unpack_scales_k4 gives them, in vector registers:
 * scale j < 4 is p[j] & 63, scale j >= 4 (p[j + 4] & 15) | (p[j - 4] >> 6)
 * << 4; min j < 4 is p[j + 4] & 63, min j >= 4 (p[j + 4] >> 4) | (p[j] >>
 * 6) << 4. Reads 16 bytes at p (the block goes on after its 12). */
static inline __m128i k4_scales(const uint8_t *p)
{
    const __m128i b = _mm_loadu_si128((const __m128i *)p);
    const __m128i a = _mm_shuffle_epi8(b, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    const __m128i t = _mm_shuffle_epi8(b, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    const __m128i top = _mm_and_si128(_mm_srli_epi16(t, 2), _mm_set1_epi8(0x30)); /* bits 6-7 to 4-5 */
    const __m128i low = _mm_and_si128(a, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0));
    const __m128i high = _mm_and_si128(_mm_srli_epi16(a, 4), _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15,
                                                                             15, 15));
    return _mm_or_si128(_mm_or_si128(low, high), top);
}

/* q4_K and q5_K: 8 sub-blocks of 32, 6-bit scales and mins; codes 2p and
 * 2p + 1 are the low and high nibbles of qs[32p .. 32p + 31], plus 16 where
 * bit 2p (2p + 1) of qh[l] is set (q5_K). One super-block of one row (its
 * bytes at blk) into *acc (d * sum(sc * q * a) per lane) and *accm (-dmin *
 * sum(m * bsum)); av: the activation's 4 vectors, bs: its 8 sums of 32. */
static inline __attribute__((always_inline)) void k45_block(const uint8_t *blk, bool q5, const block_q8_K *y,
                                                             const __m512i av[4], __m128i bs, __m512 *acc,
                                                             __m128 *accm)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f), nib = halves16(0, 4), sixteen = _mm512_set1_epi8(0x10);
    /* q4_K and q5_K begin alike: d, dmin, scales[12]; then q5_K's qh */
    const block_q4_K *h = (const block_q4_K *)blk;
    const uint8_t *qs = q5 ? ((const block_q5_K *)blk)->qs : h->qs;
    const float d = y->d * avx2_h2f(h->d), dmin = -y->d * avx2_h2f(h->dmin);
    const __m128i sm8 = k4_scales(h->scales);
    const __m128i pm = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_srli_si128(sm8, 8)), bs);
    *accm = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(pm), *accm);
    const __m512i sc = _mm512_cvtepu8_epi32(sm8); /* lanes 0-7: the scales, < 64 */
    const __m512i qhv = q5 ? bcast256(((const block_q5_K *)blk)->qh) : _mm512_setzero_si512();
    __m512i sumi[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()}; /* two dependency chains */
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        __m512i c = _mm512_and_si512(_mm512_srlv_epi16(bcast256(qs + 32 * p), nib), m4);
        if (q5) {
            const __mmask64 k = _mm512_test_epi8_mask(qhv, halves8((char)(1 << (2 * p)), (char)(1 << (2 * p + 1))));
            c = _mm512_mask_add_epi8(c, k, c, sixteen);
        }
        const __m512i t = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c, av[p]);
        sumi[p & 1] = _mm512_dpwssd_epi32(sumi[p & 1], t, groups8(sc, 2 * p));
    }
    *acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(_mm512_add_epi32(sumi[0], sumi[1])), *acc);
}

/* dot(row, y) for a row of q4_K (q5 false) or q5_K. */
/* Asks for the weight bytes KQ_PREFETCH ahead of a block (into the next
 * row at a row's end: a decode kernel's rows are contiguous), one request
 * per cache line of the block. On the qwen3moe q4_k_m file (q4_K experts,
 * q6_K output) generation went from 157-166 to 173-186 tok/s at 2 threads
 * (Zen 5; 1024 to 4096 bytes ahead within noise of each other, 512 less). */
#define KQ_PREFETCH 2048
static inline __attribute__((always_inline)) void kq_prefetch(const uint8_t *blk, size_t bsize)
{
    for (size_t l = 0; l < bsize; l += 64)
        _mm_prefetch((const char *)blk + KQ_PREFETCH + l, _MM_HINT_T0);
}

static inline __attribute__((always_inline)) float k45_row(int64_t n, const uint8_t *w, bool q5, const block_q8_K *y)
{
    const size_t bsize = q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    __m512 acc = _mm512_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const __m128i bs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)y[i].bsums),
                                          _mm_loadu_si128((const __m128i *)(y[i].bsums + 8)));
        __m512i av[4];
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++)
            av[p] = _mm512_loadu_si512((const void *)(y[i].qs + 64 * p));
        kq_prefetch(w + (size_t)i * bsize, bsize);
        k45_block(w + (size_t)i * bsize, q5, &y[i], av, bs, &acc, &accm);
    }
    __m128 m = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return _mm512_reduce_add_ps(acc) + _mm_cvtss_f32(m);
}

/* -off * (sum over the 16 groups of sc * bsum), as the start of a
 * super-block's int32 sums (8 lanes; the upper 8 zero). */
static inline __m512i offset_start(const block_q8_K *y, __m128i sc8, int shift)
{
    const __m256i corr = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), _mm256_cvtepi8_epi16(sc8));
    return _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(corr, shift)));
}

/* q6_K: 16 sub-blocks of 16 with int8 scales; per half h of 128, codes
 * 0..63 are 4 bits of ql[64h ..] (low nibbles for the first 64, high for
 * the next 64) and 2 bits of qh[32h + l] (bits 2k, 2k + 1 for quarter k);
 * the value is code - 32. One super-block of one row into *acc; av: the
 * activation's 4 vectors. */
static inline __attribute__((always_inline)) void q6_block(const block_q6_K *x, const block_q8_K *y,
                                                            const __m512i av[4], __m512 *acc)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    const __m512i up01 = halves16(4, 2), down23 = halves16(0, 2);
    const float d = y->d * avx2_h2f(x->d);
    const __m128i sc8 = _mm_loadu_si128((const __m128i *)x->scales);
    const __m512i sc = scales_w16(sc8);
    __m512i sumi[2] = {offset_start(y, sc8, 5), _mm512_setzero_si512()}; /* two dependency chains */
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m512i ql = _mm512_loadu_si512((const void *)(x->ql + 64 * h));
        const __m512i qh = bcast256(x->qh + 32 * h);
        /* quarters 0, 1: low nibbles, qh bits 0-1 and 2-3 moved to 4-5 */
        const __m512i c01 =
            _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(_mm512_sllv_epi16(qh, up01), m30));
        /* quarters 2, 3: high nibbles, qh bits 4-5 and 6-7 */
        const __m512i c23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                            _mm512_and_si512(_mm512_srlv_epi16(qh, down23), m30));
        const __m512i t01 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c01, av[2 * h]);
        const __m512i t23 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c23, av[2 * h + 1]);
        sumi[0] = _mm512_dpwssd_epi32(sumi[0], t01, groups4(sc, 8 * h));
        sumi[1] = _mm512_dpwssd_epi32(sumi[1], t23, groups4(sc, 8 * h + 4));
    }
    *acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(_mm512_add_epi32(sumi[0], sumi[1])), *acc);
}

/* dot(row, y) for a row of q6_K. */
static inline __attribute__((always_inline)) float q6_row(int64_t n, const uint8_t *w, const block_q8_K *y)
{
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m512i av[4];
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++)
            av[p] = _mm512_loadu_si512((const void *)(y[i].qs + 64 * p));
        kq_prefetch(w + (size_t)i * sizeof(block_q6_K), sizeof(block_q6_K));
        q6_block((const block_q6_K *)w + i, &y[i], av, &acc);
    }
    return _mm512_reduce_add_ps(acc);
}

static float vec_dot_q4_K_vnni(int64_t n, const void *vx, const void *vy)
{
    return k45_row(n, vx, false, vy);
}

static float vec_dot_q5_K_vnni(int64_t n, const void *vx, const void *vy)
{
    return k45_row(n, vx, true, vy);
}

static float vec_dot_q6_K_vnni(int64_t n, const void *vx, const void *vy)
{
    return q6_row(n, vx, vy);
}

/* The decode kernels (struct kern_gemv with no prepare: act is the q8_K
 * row): vec_dot's body inlined in a loop over the rows, without an indirect
 * call per row and with the constants set up once, so the results are
 * vec_dot's bit for bit. One row at a time: kernels that interleave 2 or 4
 * rows (sharing each super-block's activation loads) were 10-20% faster on
 * weights in L2 but 30-50% slower on weights streamed from memory, the
 * decode case (1 thread, 896x4864 and 4864x1024; the hardware prefetchers
 * follow one stream better than four). */
#define KQ_GEMV(name, ROW)                                                                                    \
    static void name(int64_t n, const void *vw, size_t ldw, int64_t nr, const void *act, float *y)            \
    {                                                                                                         \
        const uint8_t *w = vw;                                                                                \
        for (int64_t r = 0; r < nr; r++)                                                                      \
            y[r] = ROW(n, w + (size_t)r * ldw, act);                                                          \
    }

#define Q4_ROW(n, w, a) k45_row(n, w, false, a)
#define Q5_ROW(n, w, a) k45_row(n, w, true, a)
KQ_GEMV(gemv_q4_K_vnni, Q4_ROW)
KQ_GEMV(gemv_q5_K_vnni, Q5_ROW)
KQ_GEMV(gemv_q6_K_vnni, q6_row)

/* q2_K: element 128h + 32k + l is bits 2k, 2k + 1 of qs[32h + l]; 4-bit
 * scale (low) and min (high) per 16. d * sum(sc * q * a) - dmin * sum(m *
 * bsum). */
static inline __attribute__((always_inline)) float vec_dot_q2_K_vnni(int64_t n, const void *vx, const void *vy)
{
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    const __m512i m3 = _mm512_set1_epi8(0x03);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = y[i].d * avx2_h2f(x[i].d), dmin = -y[i].d * avx2_h2f(x[i].dmin);
        const __m128i raw = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
        const __m256i pm = _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)y[i].bsums));
        accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(pm), accm);
        const __m512i sc = _mm512_cvtepu8_epi32(_mm_and_si128(raw, m4));
        __m512i sumi = _mm512_setzero_si512();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i qv = bcast256(x[i].qs + 32 * h);
#pragma GCC unroll 2
            for (int m = 0; m < 2; m++) {
                const __m512i sh = halves16((short)(4 * m), (short)(4 * m + 2));
                const __m512i c = _mm512_and_si512(_mm512_srlv_epi16(qv, sh), m3);
                sumi = dot_scaled(sumi, c, y[i].qs + 128 * h + 64 * m, groups4(sc, 8 * h + 4 * m));
            }
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    return _mm512_reduce_add_ps(acc) + avx2_hsum_ps(accm);
}

/* q3_K: element 128h + 32k + l is bits 2k, 2k + 1 of qs[32h + l] plus 4 if
 * bit 4h + k of hmask[l] is set (code 0..7, value code - 4); 16 signed
 * 6-bit scales. */
static inline __attribute__((always_inline)) float vec_dot_q3_K_vnni(int64_t n, const void *vx, const void *vy)
{
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    const __m512i m3 = _mm512_set1_epi8(0x03), four = _mm512_set1_epi8(4);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = y[i].d * avx2_h2f(x[i].d);
        const __m128i sc8 = avx2_q3_K_scales16(x[i].scales);
        const __m512i sc = scales_w16(sc8);
        const __m512i hm = bcast256(x[i].hmask);
        __m512i sumi = offset_start(&y[i], sc8, 2);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i qv = bcast256(x[i].qs + 32 * h);
#pragma GCC unroll 2
            for (int m = 0; m < 2; m++) {
                const int g = 4 * h + 2 * m; /* the quarter of the lower half */
                __m512i c = _mm512_and_si512(_mm512_srlv_epi16(qv, halves16((short)(4 * m), (short)(4 * m + 2))), m3);
                const __mmask64 k = _mm512_test_epi8_mask(hm, halves8((char)(1 << g), (char)(1 << (g + 1))));
                c = _mm512_mask_add_epi8(c, k, c, four);
                sumi = dot_scaled(sumi, c, y[i].qs + 128 * h + 64 * m, groups4(sc, 8 * h + 4 * m));
            }
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

KQ_GEMV(gemv_q2_K_vnni, vec_dot_q2_K_vnni)
KQ_GEMV(gemv_q3_K_vnni, vec_dot_q3_K_vnni)

/* The avx512 table's decode kernels: the k-quants' above, the q8_0
 * family's from gemv_avx512.c. */
static struct kern_gemv avx512_gemv(enum ggml_type t)
{
    switch (t) {
    case GGML_TYPE_Q4_K:
        return (struct kern_gemv){NULL, gemv_q4_K_vnni};
    case GGML_TYPE_Q5_K:
        return (struct kern_gemv){NULL, gemv_q5_K_vnni};
    case GGML_TYPE_Q6_K:
        return (struct kern_gemv){NULL, gemv_q6_K_vnni};
    case GGML_TYPE_Q2_K:
        return (struct kern_gemv){NULL, gemv_q2_K_vnni};
    case GGML_TYPE_Q3_K:
        return (struct kern_gemv){NULL, gemv_q3_K_vnni};
    default:
        return kern_avx512_gemv(t);
    }
}

void kern_register_avx512_kquants(struct kern_table *tab)
{
    static const struct {
        enum ggml_type t;
        kern_vec_dot_fn dot;
    } dots[] = {
        {GGML_TYPE_Q2_K, vec_dot_q2_K_vnni}, {GGML_TYPE_Q3_K, vec_dot_q3_K_vnni}, {GGML_TYPE_Q4_K, vec_dot_q4_K_vnni},
        {GGML_TYPE_Q5_K, vec_dot_q5_K_vnni}, {GGML_TYPE_Q6_K, vec_dot_q6_K_vnni},
    };
    for (size_t k = 0; k < sizeof dots / sizeof *dots; k++)
        if (tab->type[dots[k].t].vec_dot) /* only where the reference has one (same activation type) */
            tab->type[dots[k].t].vec_dot = dots[k].dot;
    tab->gemv = avx512_gemv;
}
