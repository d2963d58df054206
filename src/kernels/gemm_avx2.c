/*
 * Tiled AVX2 kernels for matrix multiplication: a tile of up to MR weight
 * rows times NR activation rows is computed in MR x NR accumulators, so each
 * weight block is decoded once and used NR times, and each activation block
 * is loaded once and used MR times. That turns prompt processing from
 * memory-bound into compute-bound (llamafile's tinyBLAS does the same).
 *
 * Covered: the q8_0-activation family (q8_0, q4_0, q5_0, iq4_nl), whose
 * blocks decode to 32 signed bytes and one fp16 scale. The dot of a block
 * pair is maddubs(|w|, sign(a, w)) widened with madd, scaled by dw * da.
 *
 * And q4_K / q6_K, one weight row times up to 4 tokens (below).
 *
 * MR x NR = 4 x 3 uses 12 of the 16 ymm registers for accumulators. Every
 * smaller tile (for the edges) is its own instance of the same body, so the
 * compiler keeps the accumulators in registers for each shape.
 */
#include "kernels/avx2_int.h"

#define MR 4
#define NR 3


/* The tile body; f, RM and RN are constants at every call site. */
static inline __attribute__((always_inline)) void tile_q8_family(enum fam f, const int RM, const int RN, int64_t n,
                                                                   const char *w, size_t ldw, const char *a,
                                                                   size_t lda, float *y, int64_t ldy)
{
    const int64_t nb = n / QK8_0;
    const size_t bs = fam_block_size(f);
    const __m256i table = avx2_iq4nl_table(), ones = _mm256_set1_epi16(1);
    __m256 acc[MR][NR];
#pragma GCC unroll 4
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++)
            acc[r][c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        /* The activation scales of this block as floats, then per weight row
         * the RN products dw * da stored, so that each FMA takes its scale
         * with a broadcast load rather than a shuffle. */
        uint16_t dah[4] = {0, 0, 0, 0};
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++)
            dah[c] = ((const block_q8_0 *)(a + c * lda))[b].d;
        const __m128 da = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)dah));
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++) {
            const char *blk = w + r * ldw + b * bs;
            const __m256i wb = fam_sbytes(f, blk, table);
            const __m256i wabs = _mm256_sign_epi8(wb, wb);
            float sc[4] __attribute__((aligned(16)));
            _mm_store_ps(sc, _mm_mul_ps(_mm_set1_ps(avx2_h2f(*(const ggml_half *)blk)), da));
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) {
                const block_q8_0 *ab = (const block_q8_0 *)(a + c * lda) + b;
                __m256i s = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)ab->qs), wb);
                __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(wabs, s), ones));
                acc[r][c] = _mm256_fmadd_ps(_mm256_broadcast_ss(&sc[c]), p, acc[r][c]);
            }
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++)
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++)
            y[c * ldy + r] = avx2_hsum_ps(acc[r][c]);
}

/* The token counts of rm weight rows (KERN_TILE_FN). */
#define TILE_WIDTHS(body, f, rm)                                                                              \
    KERN_TILE_CASE(body, f, rm, 3) KERN_TILE_CASE(body, f, rm, 2) KERN_TILE_CASE(body, f, rm, 1)
#define TILE_FN(name, f) KERN_TILE_FN(name, tile_q8_family, f, TILE_WIDTHS)

_Static_assert(MR == 4 && NR == 3, "TILE_FN lists the shapes up to 4 x 3");

TILE_FN(tile_q8_0, FAM_Q8_0)
TILE_FN(tile_q4_0, FAM_Q4_0)
TILE_FN(tile_q5_0, FAM_Q5_0)
TILE_FN(tile_iq4_nl, FAM_IQ4_NL)

/* ---- k-quants: one weight row x up to KN tokens ----
 * A super-block of q4_K / q6_K is unpacked (nibbles, high bits, scales)
 * once and multiplied with the q8_K blocks of KN tokens, each with its own
 * int32 accumulator for the super-block. The min (q4_K) and offset (q6_K)
 * terms use each token's block sums. */
#define KN 4

static inline __attribute__((always_inline)) void tile_q4_K_row(const int RN, int64_t n, const block_q4_K *x,
                                                                  const char *a, size_t lda, float *y, int64_t ldy)
{
    const int64_t nb = n / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    /* mins duplicated per 16 elements: byte 8 + g / 2 for group g */
    const __m128i mdup_ctl = _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    __m256 acc[KN];
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++)
        acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const float d = avx2_h2f(x[i].d), dmin = avx2_h2f(x[i].dmin);
        const __m128i sm8 = avx2_unpack_scales_k4(x[i].scales);
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sm8, mdup_ctl));
        const __m256i scales = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(_mm256_cvtepu8_epi16(sm8)));
        __m256i sumi[KN];
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++)
            sumi[c] = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m256i sl = _mm256_shuffle_epi8(scales, _mm256_set1_epi16((short)((4 * j + 1) << 8 | 4 * j)));
            const __m256i sh = _mm256_shuffle_epi8(scales, _mm256_set1_epi16((short)((4 * j + 3) << 8 | (4 * j + 2))));
            const __m256i qb = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j));
            const __m256i lo = _mm256_and_si256(qb, m4), hi = _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4);
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) {
                const int8_t *q = ((const block_q8_K *)(a + c * lda))[i].qs + 64 * j;
                __m256i pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)q));
                __m256i ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q + 32)));
                sumi[c] = _mm256_add_epi32(sumi[c],
                                           _mm256_add_epi32(_mm256_madd_epi16(pl, sl), _mm256_madd_epi16(ph, sh)));
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            const block_q8_K *yb = (const block_q8_K *)(a + c * lda) + i;
            __m256i pm = _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)yb->bsums));
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * yb->d), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(-dmin * yb->d), _mm256_cvtepi32_ps(pm), acc[c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++)
        y[c * ldy] = avx2_hsum_ps(acc[c]);
}

static inline __attribute__((always_inline)) void tile_q6_K_row(const int RN, int64_t n, const block_q6_K *x,
                                                                  const char *a, size_t lda, float *y, int64_t ldy)
{
    const int64_t nb = n / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x03);
    __m256 acc[KN];
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++)
        acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const float d = avx2_h2f(x[i].d);
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
        __m256i sumi[KN];
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) /* start from -32 * sum(scale * bsum): the offset of the codes */
            sumi[c] = _mm256_slli_epi32(
                _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)((const block_q8_K *)(a + c * lda))[i].bsums),
                                  sc16),
                5);
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++)
            sumi[c] = _mm256_sub_epi32(_mm256_setzero_si256(), sumi[c]);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            __m256i q[4];
            avx2_q6_K_unpack(ql, qh, m4, m2, q);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const int g = 4 * h + k;
                const __m256i s = avx2_scale_pair(sc8, 2 * g, 2 * g + 1);
#pragma GCC unroll 4
                for (int c = 0; c < RN; c++) {
                    const int8_t *yq = ((const block_q8_K *)(a + c * lda))[i].qs + 128 * h + 32 * k;
                    __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)yq));
                    sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(p, s));
                }
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            const float yd = ((const block_q8_K *)(a + c * lda))[i].d;
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * yd), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++)
        y[c * ldy] = avx2_hsum_ps(acc[c]);
}

#define KTILE_FN(name, btype, BODY)                                                                           \
    static void name(int64_t n, const void *vw, size_t ldw, int nr, const void *va, size_t lda, int nc,       \
                     float *y, int64_t ldy)                                                                   \
    {                                                                                                         \
        const char *a = va;                                                                                   \
        for (int r = 0; r < nr; r++) {                                                                        \
            const btype *x = (const btype *)((const char *)vw + (size_t)r * ldw);                             \
            switch (nc) {                                                                                     \
            case 4:                                                                                           \
                BODY(4, n, x, a, lda, y + r, ldy);                                                            \
                break;                                                                                        \
            case 3:                                                                                           \
                BODY(3, n, x, a, lda, y + r, ldy);                                                            \
                break;                                                                                        \
            case 2:                                                                                           \
                BODY(2, n, x, a, lda, y + r, ldy);                                                            \
                break;                                                                                        \
            case 1:                                                                                           \
                BODY(1, n, x, a, lda, y + r, ldy);                                                            \
                break;                                                                                        \
            default:                                                                                          \
                MAAS_ASSERT(!"tile width out of range");                                                      \
            }                                                                                                 \
        }                                                                                                     \
    }

_Static_assert(KN == 4, "KTILE_FN lists the widths up to 4");

KTILE_FN(tile_q4_K, block_q4_K, tile_q4_K_row)
KTILE_FN(tile_q6_K, block_q6_K, tile_q6_K_row)

struct kern_tile kern_avx2_tile(enum ggml_type t)
{
    struct kern_tile none = {NULL, 1, 1, false, NULL};
    const struct kern_type_ops *o = kern_ops(t);
    if (!o)
        return none;
    /* The tiles read activations in the layout they were written for; use
     * them only when that is the type's activation format in the table. */
    if (o->vec_dot_type == GGML_TYPE_Q8_K) {
        if (t == GGML_TYPE_Q4_K)
            return (struct kern_tile){tile_q4_K, 1, KN, false, NULL};
        if (t == GGML_TYPE_Q6_K)
            return (struct kern_tile){tile_q6_K, 1, KN, false, NULL};
        return none;
    }
    if (o->vec_dot_type != GGML_TYPE_Q8_0)
        return none;
    switch (t) {
    case GGML_TYPE_Q8_0:
        return (struct kern_tile){tile_q8_0, MR, NR, false, NULL};
    case GGML_TYPE_Q4_0:
        return (struct kern_tile){tile_q4_0, MR, NR, false, NULL};
    case GGML_TYPE_Q5_0:
        return (struct kern_tile){tile_q5_0, MR, NR, false, NULL};
    case GGML_TYPE_IQ4_NL:
        return (struct kern_tile){tile_iq4_nl, MR, NR, false, NULL};
    default:
        return none;
    }
}
