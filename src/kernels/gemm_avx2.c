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
 * MR x NR = 4 x 3 uses 12 of the 16 ymm registers for accumulators. Every
 * smaller tile (for the edges) is its own instance of the same body, so the
 * compiler keeps the accumulators in registers for each shape.
 */
#include "kernels/avx2_int.h"

#define MR 4
#define NR 3

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

static inline __attribute__((always_inline)) __m256i fam_bytes(enum fam f, const char *blk, __m256i table)
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
            const __m256i wb = fam_bytes(f, blk, table);
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

#define TILE_CASE(f, rm, rn)                                                                                  \
    case (rm) * 8 + (rn):                                                                                     \
        tile_q8_family(f, rm, rn, n, w, ldw, a, lda, y, ldy);                                                 \
        break;

#define TILE_FN(name, f)                                                                                      \
    static void name(int64_t n, const void *vw, size_t ldw, int nr, const void *va, size_t lda, int nc,       \
                     float *y, int64_t ldy)                                                                   \
    {                                                                                                         \
        const char *w = vw, *a = va;                                                                          \
        switch (nr * 8 + nc) {                                                                                \
            TILE_CASE(f, 4, 3)                                                                                \
            TILE_CASE(f, 4, 2)                                                                                \
            TILE_CASE(f, 4, 1)                                                                                \
            TILE_CASE(f, 3, 3)                                                                                \
            TILE_CASE(f, 3, 2)                                                                                \
            TILE_CASE(f, 3, 1)                                                                                \
            TILE_CASE(f, 2, 3)                                                                                \
            TILE_CASE(f, 2, 2)                                                                                \
            TILE_CASE(f, 2, 1)                                                                                \
            TILE_CASE(f, 1, 3)                                                                                \
            TILE_CASE(f, 1, 2)                                                                                \
            TILE_CASE(f, 1, 1)                                                                                \
        default:                                                                                              \
            MAAS_ASSERT(!"tile shape out of range");                                                          \
        }                                                                                                     \
    }

_Static_assert(MR == 4 && NR == 3, "TILE_FN lists the shapes up to 4 x 3");

TILE_FN(tile_q8_0, FAM_Q8_0)
TILE_FN(tile_q4_0, FAM_Q4_0)
TILE_FN(tile_q5_0, FAM_Q5_0)
TILE_FN(tile_iq4_nl, FAM_IQ4_NL)

struct kern_tile kern_avx2_tile(enum ggml_type t)
{
    struct kern_tile none = {NULL, 1, 1};
    const struct kern_type_ops *o = kern_ops(t);
    /* The tiles read activations as q8_0; only use them when that is the
     * type's activation format in the current table. */
    if (!o || o->vec_dot_type != GGML_TYPE_Q8_0 || kernels_isa() < KERN_AVX2)
        return none;
    switch (t) {
    case GGML_TYPE_Q8_0:
        return (struct kern_tile){tile_q8_0, MR, NR};
    case GGML_TYPE_Q4_0:
        return (struct kern_tile){tile_q4_0, MR, NR};
    case GGML_TYPE_Q5_0:
        return (struct kern_tile){tile_q5_0, MR, NR};
    case GGML_TYPE_IQ4_NL:
        return (struct kern_tile){tile_iq4_nl, MR, NR};
    default:
        return none;
    }
}
