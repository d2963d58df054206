/*
 * The AVX-VNNI variant's tiled kernel for the q8_0-activation family (q8_0,
 * q4_0, q5_0, iq4_nl), and its register function.
 *
 * The arithmetic of gemm_avx512.c on 256-bit vectors, one block per vector:
 * each weight block is turned once into unsigned codes u = w + off (q8_0:
 * w xor 0x80, off 128; iq4_nl: the grid shifted by 128; q4_0: the nibbles,
 * off 8; q5_0: the 5-bit codes, off 16) and each token's block starts its
 * int32 sums at -off * (sum of each 4 of its bytes), computed once per token
 * and block with one more vpdpbusd, so that one vpdpbusd per tile cell gives
 * exactly sum(w * a) per lane, for any codes (where AVX2 needs vpsignb,
 * vpmaddubsw and vpmaddwd). The int32 result is then
 * scaled by dw * da with one FMA, the scales taken as broadcast loads as in
 * gemm_avx2.c.
 *
 * MR x NR = 4 x 2: 8 accumulators, 2 start values and the scratch fit the
 * 16 ymm registers (4 x 3, 3 x 3, 2 x 4 and 3 x 4 spill and were slower:
 * q8_0 4864 x 896, 4 tokens, 1 thread, 63-67 GFLOP/s per CPU-second against
 * 76-84 for 4 x 2 and 66-77 for AVX2's 4 x 3). Every smaller tile (for the
 * edges) is its own instance of the same body.
 *
 * Used from 2 to 7 tokens (kern_matmul of 4864 x 896 at 2, 4 and 7 tokens, 1
 * thread, per CPU-second on an EPYC Zen 5, 2 rounds: q8_0 +4-10%, q4_0
 * +11-28% over AVX2's tile); from 8 tokens on kern_matmul takes the f32
 * path as with AVX2, which was faster there (91 GFLOP/s at 64 tokens, this
 * tile 69-89).
 */
#include "kernels/avx2_int.h"

#define MR 4
#define NR 2

/* value = code - offset for the unsigned codes of fam_ubytes. */
static inline __attribute__((always_inline)) int fam_offset(enum fam f)
{
    return f == FAM_Q4_0 ? 8 : f == FAM_Q5_0 ? 16 : 128;
}

/* The iq4_nl grid plus 128 (1 .. 241), in both lanes. */
static inline __m256i iq4nl_utable(void)
{
    return _mm256_xor_si256(avx2_iq4nl_table(), _mm256_set1_epi8((char)0x80));
}

/* The 32 values of a weight block as unsigned bytes value + offset; table
 * is iq4nl_utable(). */
static inline __attribute__((always_inline)) __m256i fam_ubytes(enum fam f, const char *blk, __m256i table)
{
    switch (f) {
    case FAM_Q8_0:
        return _mm256_xor_si256(avx2_q8_0_bytes((const block_q8_0 *)blk), _mm256_set1_epi8((char)0x80));
    case FAM_Q4_0:
        return avx2_nibbles32(((const block_q4_0 *)blk)->qs);
    case FAM_Q5_0: {
        const block_q5_0 *x = (const block_q5_0 *)blk;
        return _mm256_or_si256(avx2_nibbles32(x->qs), _mm256_and_si256(avx2_bits32(x->qh), _mm256_set1_epi8(0x10)));
    }
    case FAM_IQ4_NL:
        return _mm256_shuffle_epi8(table, avx2_nibbles32(((const block_iq4_nl *)blk)->qs));
    }
    return _mm256_setzero_si256();
}

/* Block b of the tile into acc. */
static inline __attribute__((always_inline)) void tile_step(enum fam f, const int RM, const int RN, int64_t b,
                                                             const char *w, size_t ldw, const char *a, size_t lda,
                                                             __m256 acc[MR][NR])
{
    const size_t bs = fam_block_size(f);
    const __m256i table = iq4nl_utable(), off = _mm256_set1_epi8((char)fam_offset(f));
    const __m256i z = _mm256_setzero_si256();
    __m256i av[NR], start[NR];
    uint16_t dah[4] = {0, 0, 0, 0};
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++) {
        const block_q8_0 *ab = (const block_q8_0 *)(a + c * lda) + b;
        av[c] = _mm256_loadu_si256((const __m256i *)ab->qs);
        start[c] = _mm256_sub_epi32(z, _mm256_dpbusd_avx_epi32(z, off, av[c]));
        dah[c] = ab->d;
    }
    const __m128 da = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)dah));
#pragma GCC unroll 4
    for (int r = 0; r < RM; r++) {
        const char *blk = w + r * ldw + b * bs;
        const __m256i wu = fam_ubytes(f, blk, table);
        float sc[4] __attribute__((aligned(16)));
        _mm_store_ps(sc, _mm_mul_ps(_mm_set1_ps(avx2_h2f(*(const ggml_half *)blk)), da));
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            const __m256i t = _mm256_dpbusd_avx_epi32(start[c], wu, av[c]);
            acc[r][c] = _mm256_fmadd_ps(_mm256_broadcast_ss(&sc[c]), _mm256_cvtepi32_ps(t), acc[r][c]);
        }
    }
}

/* The tile body; f, RM and RN are constants at every call site. */
static inline __attribute__((always_inline)) void tile_vnni(enum fam f, const int RM, const int RN, int64_t n,
                                                             const char *w, size_t ldw, const char *a, size_t lda,
                                                             float *y, int64_t ldy)
{
    const int64_t nb = n / QK8_0;
    __m256 acc[MR][NR];
#pragma GCC unroll 4
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++)
            acc[r][c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
        tile_step(f, RM, RN, b, w, ldw, a, lda, acc);
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++)
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++)
            y[c * ldy + r] = avx2_hsum_ps(acc[r][c]);
}

/* The token counts of rm weight rows (KERN_TILE_FN). */
#define TILE_WIDTHS(body, f, rm) KERN_TILE_CASE(body, f, rm, 2) KERN_TILE_CASE(body, f, rm, 1)
#define TILE_FN(name, f) KERN_TILE_FN(name, tile_vnni, f, TILE_WIDTHS)

_Static_assert(MR == 4 && NR == 2, "TILE_FN lists the shapes up to 4 x 2");

TILE_FN(tile_q8_0, FAM_Q8_0)
TILE_FN(tile_q4_0, FAM_Q4_0)
TILE_FN(tile_q5_0, FAM_Q5_0)
TILE_FN(tile_iq4_nl, FAM_IQ4_NL)

/* The q8_0 family's VNNI tiles; the k-quant tiles are AVX2's. over_f32 as
 * AVX2 has it (false: the f32 path from 8 tokens on, measured above). */
struct kern_tile kern_avxvnni_tile(enum ggml_type t)
{
    struct kern_tile base = kern_avx2_tile(t);
    const struct kern_type_ops *o = kern_ops(t);
    if (!o || o->vec_dot_type != GGML_TYPE_Q8_0)
        return base;
    switch (t) {
    case GGML_TYPE_Q8_0:
        return (struct kern_tile){tile_q8_0, MR, NR, base.over_f32, NULL};
    case GGML_TYPE_Q4_0:
        return (struct kern_tile){tile_q4_0, MR, NR, base.over_f32, NULL};
    case GGML_TYPE_Q5_0:
        return (struct kern_tile){tile_q5_0, MR, NR, base.over_f32, NULL};
    case GGML_TYPE_IQ4_NL:
        return (struct kern_tile){tile_iq4_nl, MR, NR, base.over_f32, NULL};
    default:
        return base;
    }
}

/* The table's entry: the same tile at every token count. */
static struct kern_tile avxvnni_tile_any(enum ggml_type t, int64_t n_tok)
{
    (void)n_tok;
    return kern_avxvnni_tile(t);
}

void kern_register_avxvnni(struct kern_table *tab)
{
    kern_register_avx2(tab);
    kern_register_avxvnni_probes(tab);
    tab->tile = avxvnni_tile_any;
    tab->gemv = kern_avxvnni_gemv;
}
