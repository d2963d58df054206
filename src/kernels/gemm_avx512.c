/*
 * The AVX-512 VNNI variant's tiled kernel for the q8_0-activation family
 * (q8_0, q4_0, q5_0, iq4_nl), and its register function.
 *
 * Same tiling as gemm_avx2.c (MR weight rows x NR tokens in registers), with
 * 512-bit vectors each holding two consecutive blocks and one vpdpbusd per
 * block pair and tile cell. vpdpbusd multiplies unsigned by signed bytes, so
 * instead of AVX2's sign trick (which needs a vpsignb per cell and has no
 * 512-bit form) each weight block is turned once into unsigned codes
 * u = w + off (q8_0 and iq4_nl: w xor 0x80, off 128; q4_0: the nibbles,
 * off 8; q5_0: the 5-bit codes, off 16), and each token's block starts its
 * int32 sums at -off * (sum of each 4 of its bytes), computed once per token
 * and block pair with one more vpdpbusd. The int32 result is then exactly
 * sum(w * a) per lane (also for a q8_0 weight of -128, which the sign trick
 * gets wrong), and is scaled by dw * da with one multiply and one FMA.
 *
 * MR x NR = 4 x 4: 16 accumulators of the 32 zmm registers, plus 4 token
 * blocks, their 4 start values and 4 scale vectors. Every smaller tile (for
 * the edges) is its own instance of the same body. An odd last block goes
 * through the same body with the upper half zero.
 */
#include "kernels/avx2_int.h"

#define MR 4
#define NR 4

/* value = code - offset for the unsigned codes of fam_ubytes. */
static inline __attribute__((always_inline)) int fam_offset(enum fam f)
{
    return f == FAM_Q4_0 ? 8 : f == FAM_Q5_0 ? 16 : 128;
}

/* The 32 values of a weight block as unsigned bytes value + offset. */
static inline __attribute__((always_inline)) __m256i fam_ubytes(enum fam f, const char *blk, __m256i table)
{
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    switch (f) {
    case FAM_Q8_0:
        return _mm256_xor_si256(avx2_q8_0_bytes((const block_q8_0 *)blk), flip);
    case FAM_Q4_0:
        return avx2_nibbles32(((const block_q4_0 *)blk)->qs);
    case FAM_Q5_0: { /* the 32 high bits are an AVX-512BW byte mask: + 16 where set */
        const block_q5_0 *x = (const block_q5_0 *)blk;
        uint32_t qh;
        memcpy(&qh, x->qh, 4);
        const __m256i lo = avx2_nibbles32(x->qs);
        return _mm256_mask_add_epi8(lo, (__mmask32)qh, lo, _mm256_set1_epi8(0x10));
    }
    case FAM_IQ4_NL:
        return _mm256_xor_si256(avx2_iq4_nl_bytes((const block_iq4_nl *)blk, table), flip);
    }
    return _mm256_setzero_si256();
}

static inline __attribute__((always_inline)) __m512i pair_epi8(__m256i lo, __m256i hi)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* 8 lanes of s0, then 8 of s1. */
static inline __attribute__((always_inline)) __m512 pair_ps(float s0, float s1)
{
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(s0)), _mm256_set1_ps(s1), 1);
}

/* Blocks b and (when two) b + 1 of the tile into acc. */
static inline __attribute__((always_inline)) void tile_step(enum fam f, const int RM, const int RN, const int two,
                                                             int64_t b, const char *w, size_t ldw, const char *a,
                                                             size_t lda, __m512 acc[MR][NR])
{
    const size_t bs = fam_block_size(f);
    const __m256i table = avx2_iq4nl_table(), z256 = _mm256_setzero_si256();
    const __m512i off = _mm512_set1_epi8((char)fam_offset(f)), z512 = _mm512_setzero_si512();
    __m512i av[NR], start[NR];
    __m512 da[NR];
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++) {
        const block_q8_0 *ab = (const block_q8_0 *)(a + c * lda) + b;
        av[c] = pair_epi8(_mm256_loadu_si256((const __m256i *)ab[0].qs),
                          two ? _mm256_loadu_si256((const __m256i *)ab[1].qs) : z256);
        start[c] = _mm512_sub_epi32(z512, _mm512_dpbusd_epi32(z512, off, av[c]));
        da[c] = pair_ps(avx2_h2f(ab[0].d), two ? avx2_h2f(ab[1].d) : 0.0f);
    }
#pragma GCC unroll 4
    for (int r = 0; r < RM; r++) {
        const char *blk = w + r * ldw + b * bs;
        const __m512i wu = pair_epi8(fam_ubytes(f, blk, table), two ? fam_ubytes(f, blk + bs, table) : z256);
        const __m512 dw = pair_ps(avx2_h2f(*(const ggml_half *)blk), two ? avx2_h2f(*(const ggml_half *)(blk + bs))
                                                                         : 0.0f);
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            const __m512i t = _mm512_dpbusd_epi32(start[c], wu, av[c]);
            acc[r][c] = _mm512_fmadd_ps(_mm512_mul_ps(dw, da[c]), _mm512_cvtepi32_ps(t), acc[r][c]);
        }
    }
}

/* The tile body; f, RM and RN are constants at every call site. */
static inline __attribute__((always_inline)) void tile_vnni(enum fam f, const int RM, const int RN, int64_t n,
                                                             const char *w, size_t ldw, const char *a, size_t lda,
                                                             float *y, int64_t ldy)
{
    const int64_t nb = n / QK8_0;
    __m512 acc[MR][NR];
#pragma GCC unroll 4
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++)
            acc[r][c] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2)
        tile_step(f, RM, RN, 1, b, w, ldw, a, lda, acc);
    if (b < nb)
        tile_step(f, RM, RN, 0, b, w, ldw, a, lda, acc);
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++)
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++)
            y[c * ldy + r] = _mm512_reduce_add_ps(acc[r][c]);
}

/* The token counts of rm weight rows (KERN_TILE_FN). */
#define TILE_WIDTHS(body, f, rm)                                                                              \
    KERN_TILE_CASE(body, f, rm, 4) KERN_TILE_CASE(body, f, rm, 3) KERN_TILE_CASE(body, f, rm, 2)            \
    KERN_TILE_CASE(body, f, rm, 1)
#define TILE_FN(name, f) KERN_TILE_FN(name, tile_vnni, f, TILE_WIDTHS)

_Static_assert(MR == 4 && NR == 4, "TILE_FN lists the shapes up to 4 x 4");

TILE_FN(tile_q8_0, FAM_Q8_0)
TILE_FN(tile_q4_0, FAM_Q4_0)
TILE_FN(tile_q5_0, FAM_Q5_0)
TILE_FN(tile_iq4_nl, FAM_IQ4_NL)

/* The q8_0 family's VNNI tiles, which beat the f32 path at every token
 * count on the machine they were measured on (README, Performance); the
 * k-quant tiles are AVX2's. */
struct kern_tile kern_avx512_tile(enum ggml_type t)
{
    const struct kern_type_ops *o = kern_ops(t);
    if (!o || o->vec_dot_type != GGML_TYPE_Q8_0)
        return kern_avx2_tile(t);
    switch (t) {
    case GGML_TYPE_Q8_0:
        return (struct kern_tile){tile_q8_0, MR, NR, true, NULL};
    case GGML_TYPE_Q4_0:
        return (struct kern_tile){tile_q4_0, MR, NR, true, NULL};
    case GGML_TYPE_Q5_0:
        return (struct kern_tile){tile_q5_0, MR, NR, true, NULL};
    case GGML_TYPE_IQ4_NL:
        return (struct kern_tile){tile_iq4_nl, MR, NR, true, NULL};
    default:
        return kern_avx2_tile(t);
    }
}

/* The table's entry: the same tile at every token count. */
static struct kern_tile avx512_tile_any(enum ggml_type t, int64_t n_tok)
{
    (void)n_tok;
    return kern_avx512_tile(t);
}

void kern_register_avx512(struct kern_table *tab)
{
    kern_register_avx2(tab);
    kern_register_avx512_probes(tab);
    tab->tile = avx512_tile_any;
    tab->gemv = kern_avx512_gemv;
    tab->ftile = kern_avx512_ftile();
    tab->gemm_f32 = kern_avx512_gemm_ukr();
    kern_register_avx512_kquants(tab); /* after tab->gemv, which it extends */
}
