/*
 * The AMX variant (AVX-512 VNNI plus Intel's Advanced Matrix Extensions,
 * AMX-TILE and AMX-INT8, of Sapphire Rapids and later Xeons): the prompt and
 * batched-decode tiles of the q8_0-activation family (q8_0, q4_0, q5_0,
 * iq4_nl) and of q4_K, q5_K and q6_K done by the tile unit's tdpbssd,
 * which multiplies a 16 x 64-byte tile of signed bytes with a 16 x 64-byte
 * tile in VNNI order and adds the 16 x 16 int32 products in one instruction (1,024 multiply-adds per
 * instruction against 64 for a zmm vpdpbusd).
 *
 * Operands, per 32-value block b:
 * - A (tile 0/3): 16 weight rows x the block's 32 signed bytes. For q8_0
 *   with 16 rows it is loaded straight from the weight rows (stride ldw, at
 *   the block's qs); the other types, and a last group of fewer than 16
 *   rows, are first unpacked into a thread-local staging panel of up to
 *   KC values per row, zero rows below nr.
 * - B (tile 1/4): 16 tokens' block b in VNNI order, 8 rows of 64 bytes: row
 *   k4 holds, for token t = 0..15, the 4 bytes a[t][4 k4 .. 4 k4 + 3]. The
 *   activation rows are put in this order once per product (kern_tile.pack,
 *   run by kern_matmul after converting them to q8_0), in groups of 16
 *   tokens (missing tokens zero), each block followed by the 16 tokens'
 *   scales as floats: KERN_PACK_BLOCK bytes per block.
 * - C (tile 2/5): C[r][t] = the exact int32 dot of weight row r's block with
 *   token t's block, stored and then scaled: acc[r] (16 tokens of row r in
 *   one zmm) += float(C[r]) * (dw[r] * da[t]) with one convert, one
 *   multiply by the broadcast weight scale and one FMA per row. Two blocks
 *   per step, in two tile sets, so the tile unit runs while the vector
 *   units scale the previous block.
 * The integer sums are exact for every byte (including -128); only the
 * float accumulation order differs from the other variants.
 *
 * The k-quants (q4_K, q5_K, q6_K) read q8_K activations, packed in the same
 * VNNI order per block of 32 (amx_pack_q8_K: per super-block of 256 its 8
 * blocks, the 16 tokens' scales and the 8 block sums of each token as
 * floats, KERN_PACK_SUPER bytes). The weights are unpacked into the staging
 * panel as signed bytes, with their per-sub-block scales as floats:
 * - q4_K / q5_K: the codes 0..15 / 0..31 of each block of 32, d * sc_j and
 *   dmin * m_j; C_j exact per block, then per super-block and row
 *   acc[r] += da * (sum_j float(C_j[r]) * d sc_j - sum_j dmin m_j * S_j),
 *   S_j the tokens' block sums (the min term, as the reference takes it
 *   from bsums).
 * - q6_K: the codes minus 32 (-32..31), each block of 32 staged twice, its
 *   first 16 values then 16 zeros, 16 zeros then its last 16 (so the pass
 *   is KC / 2 values), so that two K = 32 products against one B tile give
 *   each sub-block of 16 its own exact sum, scaled by d * sc_g.
 * All 8 (16) C tiles of a super-block are stored, in one of two buffers:
 * the tile unit computes the next super-block's while the vector units
 * scale this one's.
 *
 * The tile configuration is per thread: each thread loads it before its
 * first tile instruction, and again after bf16_amx.c's tiles (bf16
 * weights, AMX-BF16), whose tile shapes differ (kern_amx_config). The
 * variant exists only when the CPU says it has AMX, the kernel grants this
 * process the tile data state (arch_prctl ARCH_REQ_XCOMP_PERM) and one
 * tdpbssd, run under a SIGILL handler, gives the right answer: some virtual
 * machines advertise AMX and trap it.
 */
#include "kernels/avx2_int.h"

#include <cpuid.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#define G KERN_PACK_TOKENS /* tokens per packed group, the tile's 16 columns */
#define MR 16              /* weight rows per tile */
#define NC_MAX (4 * G)     /* tokens per call, at most: 4 packed groups */
#define KC 4096            /* values of k staged per pass (a multiple of 32) */
#define NBC (KC / 32)


_Static_assert(KERN_PACK_BLOCK == 8 * 64 + G * 4, "a packed block is 8 rows of 64 bytes and 16 scales");

/* ---- tile configuration ---- */
struct amx_cfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

/* Loads *c (GCC does not see that ldtilecfg reads the whole struct and
 * drops stores to it: the barrier keeps them). */
static void amx_load_config(const struct amx_cfg *c)
{
    __asm__ volatile("" : : "r"(c) : "memory");
    _tile_loadconfig(c);
}

void kern_amx_load_uniform(int n_tiles)
{
    struct amx_cfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < n_tiles; t++) {
        c.rows[t] = 16;
        c.colsb[t] = 64;
    }
    amx_load_config(&c);
}

__thread int kern_amx_config; /* kernels_int.h */

/* After a tile release (the probes): the next tile kernel loads the
 * configuration again. */
static void amx_reconfigure_thread(void)
{
    kern_amx_config = KERN_AMX_CFG_NONE;
}

static void amx_configure(void)
{
    if (kern_amx_config == KERN_AMX_CFG_I8)
        return;
    struct amx_cfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int s = 0; s < 2; s++) {
        c.rows[3 * s + 0] = MR; /* A: 16 rows x 32 bytes */
        c.colsb[3 * s + 0] = 32;
        c.rows[3 * s + 1] = 8; /* B: 8 rows x 64 bytes */
        c.colsb[3 * s + 1] = 64;
        c.rows[3 * s + 2] = MR; /* C: 16 rows x 16 int32 */
        c.colsb[3 * s + 2] = 64;
    }
    amx_load_config(&c);
    kern_amx_config = KERN_AMX_CFG_I8;
}

/* ---- packing the activations ---- */

/* Group of n_rows (<= 16) q8_0 activation rows of n values, lda bytes apart,
 * into dst (KERN_PACK_BLOCK bytes per block). */
static void amx_pack(const void *act, size_t lda, int n_rows, int64_t n, void *dst)
{
    const int64_t nb = n / QK8_0;
    const char *a = act;
    /* the 16 x 8 dwords of a block, token-major, gathered k4-major: out
     * row k4, lane t = dword k4 of token t */
    const __m512i vidx = _mm512_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120);
    for (int64_t b = 0; b < nb; b++) {
        char *out = (char *)dst + b * KERN_PACK_BLOCK;
        uint32_t in[G][8];
        float d[G];
        for (int t = 0; t < G; t++) {
            if (t < n_rows) {
                const block_q8_0 *blk = (const block_q8_0 *)(a + (size_t)t * lda) + b;
                memcpy(in[t], blk->qs, 32);
                d[t] = avx2_h2f(blk->d);
            } else {
                memset(in[t], 0, 32);
                d[t] = 0.0f;
            }
        }
        for (int k4 = 0; k4 < 8; k4++)
            _mm512_storeu_si512(out + k4 * 64, _mm512_i32gather_epi32(vidx, (const int *)&in[0][k4], 4));
        memcpy(out + 8 * 64, d, sizeof d);
    }
}

/* ---- the tile kernel ---- */


/* Per thread: the weight values of a pass (16 rows x KC) and their scales
 * (16 per block, row-minor; q6_K: per sub-block of 16, twice as many). */
static __thread int8_t stage_q[MR * KC] __attribute__((aligned(64)));
static __thread float stage_d[2 * NBC * MR] __attribute__((aligned(64)));

/* acc[r] += float(C[r]) * (ds[r] * da) for the 16 rows of a stored C tile. */
static inline __attribute__((always_inline)) void scale_rows(const int32_t *cbuf, const float *ds, __m512 da,
                                                               __m512 acc[MR])
{
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
        const __m512 c = _mm512_cvtepi32_ps(_mm512_load_si512(cbuf + r * 16));
        acc[r] = _mm512_fmadd_ps(c, _mm512_mul_ps(da, _mm512_set1_ps(ds[r])), acc[r]);
    }
}

/* y (token-major, ldy apart) from the accumulators of a call:
 * accbuf[g][r][t] is row r of token 16 g + t, for r < nr, tokens < nc. */
static void store_acc(float accbuf[NC_MAX / G][MR][16], int nr, int nc, float *y, int64_t ldy)
{
    for (int g = 0; g * G < nc; g++) {
        const int tn = nc - g * G < G ? nc - g * G : G;
        for (int t = 0; t < tn; t++)
            for (int r = 0; r < nr; r++)
                y[(int64_t)(g * G + t) * ldy + r] = accbuf[g][r][t];
    }
}

static inline __attribute__((always_inline)) void tile_amx(enum fam f, int64_t n, const char *w, size_t ldw, int nr,
                                                           const char *a, size_t lda, int nc, float *y, int64_t ldy)
{
    amx_configure();
    const size_t bs = fam_block_size(f);
    const int64_t nb = n / QK8_0;
    const int ng = (nc + G - 1) / G;
    const bool direct = f == FAM_Q8_0 && nr == MR;
    const __m256i table = avx2_iq4nl_table();
    int32_t cbuf[2][MR * 16] __attribute__((aligned(64)));
    float accbuf[NC_MAX / G][MR][16] __attribute__((aligned(64)));
    for (int64_t b0 = 0; b0 < nb; b0 += NBC) {
        const int64_t nbc = nb - b0 < NBC ? nb - b0 : NBC;
        /* the pass's weight scales and (unless read in place) values */
        if (nr == MR) { /* one gather of the 16 rows' fp16 scales per block */
            const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                                                                      14, 15),
                                                    _mm512_set1_epi32((int)ldw));
            for (int64_t b = 0; b < nbc; b++) {
                const __m512i h = _mm512_i32gather_epi32(rows, (const int *)(w + (b0 + b) * bs), 1);
                _mm512_store_ps(stage_d + b * MR, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h)));
            }
        } else {
            for (int r = 0; r < MR; r++)
                for (int64_t b = 0; b < nbc; b++)
                    stage_d[b * MR + r] = r < nr ? avx2_h2f(*(const ggml_half *)(w + r * ldw + (b0 + b) * bs))
                                                 : 0.0f;
        }
        if (!direct)
            for (int r = 0; r < MR; r++)
                for (int64_t b = 0; b < nbc; b++)
                    _mm256_store_si256((__m256i *)(stage_q + r * KC + b * 32),
                                       r < nr ? fam_sbytes(f, w + r * ldw + (b0 + b) * bs, table)
                                              : _mm256_setzero_si256());
        const char *asrc = direct ? w + b0 * bs + 2 : (const char *)stage_q;
        const size_t astride = direct ? ldw : KC, astep = direct ? bs : 32;
        for (int g = 0; g < ng; g++) {
            const char *pb = a + g * lda + b0 * KERN_PACK_BLOCK;
            __m512 acc[MR];
#pragma GCC unroll 16
            for (int r = 0; r < MR; r++)
                acc[r] = b0 ? _mm512_load_ps(accbuf[g][r]) : _mm512_setzero_ps();
            int64_t b = 0;
            for (; b + 2 <= nbc; b += 2) {
                _tile_loadd(0, asrc + b * astep, astride);
                _tile_loadd(1, pb + b * KERN_PACK_BLOCK, 64);
                _tile_loadd(3, asrc + (b + 1) * astep, astride);
                _tile_loadd(4, pb + (b + 1) * KERN_PACK_BLOCK, 64);
                _tile_zero(2);
                _tile_zero(5);
                _tile_dpbssd(2, 0, 1);
                _tile_dpbssd(5, 3, 4);
                _tile_stored(2, cbuf[0], 64);
                _tile_stored(5, cbuf[1], 64);
                scale_rows(cbuf[0], stage_d + b * MR,
                           _mm512_loadu_ps((const float *)(pb + b * KERN_PACK_BLOCK + 512)), acc);
                scale_rows(cbuf[1], stage_d + (b + 1) * MR,
                           _mm512_loadu_ps((const float *)(pb + (b + 1) * KERN_PACK_BLOCK + 512)), acc);
            }
            if (b < nbc) {
                _tile_loadd(0, asrc + b * astep, astride);
                _tile_loadd(1, pb + b * KERN_PACK_BLOCK, 64);
                _tile_zero(2);
                _tile_dpbssd(2, 0, 1);
                _tile_stored(2, cbuf[0], 64);
                scale_rows(cbuf[0], stage_d + b * MR,
                           _mm512_loadu_ps((const float *)(pb + b * KERN_PACK_BLOCK + 512)), acc);
            }
#pragma GCC unroll 16
            for (int r = 0; r < MR; r++)
                _mm512_store_ps(accbuf[g][r], acc[r]);
        }
    }
    store_acc(accbuf, nr, nc, y, ldy);
}

#define AMX_TILE_FN(name, f)                                                                                  \
    static void name(int64_t n, const void *w, size_t ldw, int nr, const void *a, size_t lda, int nc, float *y, \
                     int64_t ldy)                                                                             \
    {                                                                                                         \
        tile_amx(f, n, w, ldw, nr, a, lda, nc, y, ldy);                                                       \
    }
AMX_TILE_FN(amx_q8_0, FAM_Q8_0)
AMX_TILE_FN(amx_q4_0, FAM_Q4_0)
AMX_TILE_FN(amx_q5_0, FAM_Q5_0)
AMX_TILE_FN(amx_iq4_nl, FAM_IQ4_NL)

/* ---- the k-quants: q4_K, q5_K, q6_K against packed q8_K ----
 * Per 16-token group and super-block of 256 the packed activations hold
 * its 8 blocks of 32 in VNNI order (512 bytes each, as for q8_0), the 16
 * tokens' scales and the 8 x 16 block sums (bsums[2 j] + bsums[2 j + 1],
 * exact as floats): KERN_PACK_SUPER bytes. */
#define SUP_D (8 * 512)         /* offset of the 16 scales in a packed super-block */
#define SUP_S (SUP_D + G * 4)   /* offset of the 8 x 16 block sums */
_Static_assert(KERN_PACK_SUPER == SUP_S + 8 * G * 4, "the packed q8_K super-block");

static void amx_pack_q8_K(const void *act, size_t lda, int n_rows, int64_t n, void *dst)
{
    const int64_t nsb = n / QK_K;
    const char *a = act;
    /* token t's dwords are 64 apart in in[] */
    const __m512i vidx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(64));
    for (int64_t i = 0; i < nsb; i++) {
        char *out = (char *)dst + i * KERN_PACK_SUPER;
        uint32_t in[G][64];
        float d[G], sums[8][G];
        for (int t = 0; t < G; t++) {
            if (t < n_rows) {
                const block_q8_K *blk = (const block_q8_K *)(a + (size_t)t * lda) + i;
                memcpy(in[t], blk->qs, QK_K);
                d[t] = blk->d;
                for (int j = 0; j < 8; j++)
                    sums[j][t] = (float)(blk->bsums[2 * j] + blk->bsums[2 * j + 1]);
            } else {
                memset(in[t], 0, QK_K);
                d[t] = 0.0f;
                for (int j = 0; j < 8; j++)
                    sums[j][t] = 0.0f;
            }
        }
        for (int j = 0; j < 8; j++)
            for (int k4 = 0; k4 < 8; k4++)
                _mm512_storeu_si512(out + j * 512 + k4 * 64,
                                    _mm512_i32gather_epi32(vidx, (const int *)&in[0][8 * j + k4], 4));
        memcpy(out + SUP_D, d, sizeof d);
        memcpy(out + SUP_S, sums, sizeof sums);
    }
}

enum kq { KQ_Q4_K, KQ_Q5_K, KQ_Q6_K };

/* Super-blocks staged per pass: KC values of q4_K/q5_K; q6_K stages each
 * block of 32 twice (below), so half as many. */
static inline __attribute__((always_inline)) int kq_pass(enum kq k)
{
    return k == KQ_Q6_K ? KC / 512 : KC / QK_K;
}

/* Per thread: q4_K's and q5_K's min scales dmin * m_j of a pass, as
 * stage_d holds d * sc_j. */
static __thread float stage_m[NBC * MR] __attribute__((aligned(64)));

/* Stages the super-block at blk of weight row r (NULL: a zero row) as the
 * pass's super-block s: its values into stage_q + r * KC + s * (256 or
 * 512), its sub-block scales into stage_d[(s * 8 + j) * MR + r] (q4_K/q5_K:
 * d * sc_j; q6_K: d * sc_g at (s * 16 + g) * MR + r for its 16 sub-blocks of
 * 16) and the mins into stage_m (dmin * m_j). */

static inline __attribute__((always_inline)) void kq_stage(enum kq k, const char *blk, int r, int s)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    if (k == KQ_Q6_K) {
        int8_t *dst = stage_q + r * KC + s * 512;
        float *ds = stage_d + (s * 16) * MR + r;
        if (!blk) {
            for (int b = 0; b < 16; b++)
                _mm256_store_si256((__m256i *)(dst + 32 * b), _mm256_setzero_si256());
            for (int g = 0; g < 16; g++)
                ds[g * MR] = 0.0f;
            return;
        }
        const block_q6_K *x = (const block_q6_K *)blk;
        const float d = avx2_h2f(x->d);
        for (int g = 0; g < 16; g++)
            ds[g * MR] = d * x->scales[g];
        /* block of 32 b as two: its first 16 values with 16 zeros, and 16
         * zeros with its last 16, so that one K = 32 product gives each
         * sub-block of 16 its own sum */
        const __m256i lo16 = _mm256_setr_epi64x(-1, -1, 0, 0), off = _mm256_set1_epi8(32);
        for (int h = 0; h < 2; h++) {
            __m256i q[4];
            avx2_q6_K_unpack(x->ql + 64 * h, x->qh + 32 * h, m4, _mm256_set1_epi8(3), q);
            for (int c = 0; c < 4; c++) {
                const __m256i v = _mm256_sub_epi8(q[c], off);
                int8_t *o = dst + (4 * h + c) * 64;
                _mm256_store_si256((__m256i *)o, _mm256_and_si256(v, lo16));
                _mm256_store_si256((__m256i *)(o + 32), _mm256_andnot_si256(lo16, v));
            }
        }
        return;
    }
    int8_t *dst = stage_q + r * KC + s * QK_K;
    float *ds = stage_d + (s * 8) * MR + r, *dm = stage_m + (s * 8) * MR + r;
    if (!blk) {
        for (int b = 0; b < 8; b++)
            _mm256_store_si256((__m256i *)(dst + 32 * b), _mm256_setzero_si256());
        for (int j = 0; j < 8; j++)
            ds[j * MR] = dm[j * MR] = 0.0f;
        return;
    }
    /* q4_K and q5_K share their first fields */
    const block_q4_K *x = (const block_q4_K *)blk;
    const float d = avx2_h2f(x->d), dmin = avx2_h2f(x->dmin);
    uint8_t sm[16];
    _mm_storeu_si128((__m128i *)sm, avx2_unpack_scales_k4(x->scales));
    for (int j = 0; j < 8; j++) {
        ds[j * MR] = d * sm[j];
        dm[j * MR] = dmin * sm[8 + j];
    }
    const uint8_t *qs = k == KQ_Q5_K ? ((const block_q5_K *)blk)->qs : x->qs;
    __m256i qh = _mm256_setzero_si256();
    if (k == KQ_Q5_K)
        qh = _mm256_loadu_si256((const __m256i *)((const block_q5_K *)blk)->qh);
    const __m256i one = _mm256_set1_epi8(1);
    /* bytes 32 p .. 32 p + 31: sub-block 2 p in the low nibbles, 2 p + 1 in
     * the high ones; q5_K's fifth bit of sub-block j is bit j of qh[l] */
    for (int p = 0; p < 4; p++) {
        const __m256i qb = _mm256_loadu_si256((const __m256i *)(qs + 32 * p));
        __m256i lo = _mm256_and_si256(qb, m4), hi = _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4);
        if (k == KQ_Q5_K) {
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * p), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * p + 1), one), 4));
        }
        _mm256_store_si256((__m256i *)(dst + 64 * p), lo);
        _mm256_store_si256((__m256i *)(dst + 64 * p + 32), hi);
    }
}

/* The tile products of one super-block (pass super-block s, packed at ps)
 * into cb: q4_K/q5_K 8 blocks of 32, cb[j]; q6_K 16 sub-blocks of 16, cb[g]
 * (its block of 32 b staged as two halves, each against the same B). */
static inline __attribute__((always_inline)) void kq_products(enum kq k, int s, const char *ps,
                                                              int32_t cb[16][MR * 16])
{
    if (k == KQ_Q6_K) {
        const int8_t *aq = stage_q + s * 512;
        for (int b = 0; b < 8; b++) {
            _tile_loadd(1, ps + b * 512, 64);
            _tile_loadd(0, aq + b * 64, KC);
            _tile_loadd(3, aq + b * 64 + 32, KC);
            _tile_zero(2);
            _tile_zero(5);
            _tile_dpbssd(2, 0, 1);
            _tile_dpbssd(5, 3, 1);
            _tile_stored(2, cb[2 * b], 64);
            _tile_stored(5, cb[2 * b + 1], 64);
        }
        return;
    }
    const int8_t *aq = stage_q + s * QK_K;
    for (int b = 0; b < 8; b += 2) {
        _tile_loadd(0, aq + b * 32, KC);
        _tile_loadd(1, ps + b * 512, 64);
        _tile_loadd(3, aq + (b + 1) * 32, KC);
        _tile_loadd(4, ps + (b + 1) * 512, 64);
        _tile_zero(2);
        _tile_zero(5);
        _tile_dpbssd(2, 0, 1);
        _tile_dpbssd(5, 3, 4);
        _tile_stored(2, cb[b], 64);
        _tile_stored(5, cb[b + 1], 64);
    }
}

/* acc[r] += da * (sum_j float(C_j[r]) * ds_j[r] - sum_j dm_j[r] * S_j) for
 * the 16 rows: the sub-blocks' exact sums scaled per row, the min term
 * (q4_K/q5_K) from the block sums, the tokens' scales once. */
static inline __attribute__((always_inline)) void kq_scale(enum kq k, int s, const char *ps,
                                                           int32_t cb[16][MR * 16], __m512 acc[MR])
{
    const __m512 da = _mm512_loadu_ps((const float *)(ps + SUP_D));
    if (k == KQ_Q6_K) {
        const float *ds = stage_d + (s * 16) * MR;
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
            __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(cb[0] + r * 16)), _mm512_set1_ps(ds[r]));
#pragma GCC unroll 16
            for (int g = 1; g < 16; g++)
                v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(cb[g] + r * 16)),
                                    _mm512_set1_ps(ds[g * MR + r]), v);
            acc[r] = _mm512_fmadd_ps(v, da, acc[r]);
        }
        return;
    }
    const float *ds = stage_d + (s * 8) * MR, *dm = stage_m + (s * 8) * MR;
    __m512 sums[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
        sums[j] = _mm512_loadu_ps((const float *)(ps + SUP_S) + j * G);
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
        __m512 v = _mm512_mul_ps(_mm512_set1_ps(-dm[r]), sums[0]);
#pragma GCC unroll 8
        for (int j = 1; j < 8; j++)
            v = _mm512_fnmadd_ps(_mm512_set1_ps(dm[j * MR + r]), sums[j], v);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(cb[j] + r * 16)),
                                _mm512_set1_ps(ds[j * MR + r]), v);
        acc[r] = _mm512_fmadd_ps(v, da, acc[r]);
    }
}

static inline __attribute__((always_inline)) void tile_amx_k(enum kq k, int64_t n, const char *w, size_t ldw, int nr,
                                                             const char *a, size_t lda, int nc, float *y,
                                                             int64_t ldy)
{
    amx_configure();
    const size_t bs = k == KQ_Q4_K ? sizeof(block_q4_K) : k == KQ_Q5_K ? sizeof(block_q5_K) : sizeof(block_q6_K);
    const int64_t nsb = n / QK_K;
    const int ng = (nc + G - 1) / G, spp = kq_pass(k);
    /* two sets of C tiles stored: the tile unit fills one super-block's
     * while the vector units scale the previous one's */
    int32_t cbuf[2][16][MR * 16] __attribute__((aligned(64)));
    float accbuf[NC_MAX / G][MR][16] __attribute__((aligned(64)));
    for (int64_t s0 = 0; s0 < nsb; s0 += spp) {
        const int nsc = (int)(nsb - s0 < spp ? nsb - s0 : spp);
        for (int r = 0; r < MR; r++)
            for (int s = 0; s < nsc; s++)
                kq_stage(k, r < nr ? w + r * ldw + (s0 + s) * bs : NULL, r, s);
        for (int g = 0; g < ng; g++) {
            const char *pb = a + g * lda + s0 * KERN_PACK_SUPER;
            __m512 acc[MR];
#pragma GCC unroll 16
            for (int r = 0; r < MR; r++)
                acc[r] = s0 ? _mm512_load_ps(accbuf[g][r]) : _mm512_setzero_ps();
            kq_products(k, 0, pb, cbuf[0]);
            for (int s = 0; s < nsc; s++) {
                if (s + 1 < nsc)
                    kq_products(k, s + 1, pb + (s + 1) * KERN_PACK_SUPER, cbuf[(s + 1) & 1]);
                kq_scale(k, s, pb + s * KERN_PACK_SUPER, cbuf[s & 1], acc);
            }
#pragma GCC unroll 16
            for (int r = 0; r < MR; r++)
                _mm512_store_ps(accbuf[g][r], acc[r]);
        }
    }
    store_acc(accbuf, nr, nc, y, ldy);
}

#define AMX_KTILE_FN(name, k)                                                                                 \
    static void name(int64_t n, const void *w, size_t ldw, int nr, const void *a, size_t lda, int nc, float *y, \
                     int64_t ldy)                                                                             \
    {                                                                                                         \
        tile_amx_k(k, n, w, ldw, nr, a, lda, nc, y, ldy);                                                     \
    }
AMX_KTILE_FN(amx_q4_K, KQ_Q4_K)
AMX_KTILE_FN(amx_q5_K, KQ_Q5_K)
AMX_KTILE_FN(amx_q6_K, KQ_Q6_K)

/* From this many tokens on the tile unit beats the AVX-512 VNNI tiles
 * (bench_matmul on a Sapphire Rapids class Xeon; below, they are used). */
#define AMX_MIN_TOK 4

/* The k-quants' tiles pay for a whole group of 16 tokens and q6_K for two
 * products per block of 32: from this many tokens on they beat the AVX2
 * integer tiles (q4_K, q6_K) and the per-row dot (q5_K), measured 1 thread,
 * 2048 x 2048 and 768 x 2048 (q4_K at 4 tokens 74-81 GFLOP/s against
 * 80-82, at 5 93-98 against 74-80; q6_K at 8 84-96 against 82-87). From 16
 * tokens on, where the other variants take the f32 path, they are 2.5 to 4
 * times as fast as it (over_f32). */
static int64_t kq_min_tok(enum ggml_type t)
{
    return t == GGML_TYPE_Q6_K ? 8 : t == GGML_TYPE_Q4_K ? 5 : AMX_MIN_TOK;
}

static struct kern_tile amx_tile(enum ggml_type t, int64_t n_tok)
{
    kern_tile_fn fn = NULL;
    if (t == GGML_TYPE_BF16)
        return kern_amx_bf16_tile(n_tok);
    switch (t) {
    case GGML_TYPE_Q8_0:
        fn = amx_q8_0;
        break;
    case GGML_TYPE_Q4_0:
        fn = amx_q4_0;
        break;
    case GGML_TYPE_Q5_0:
        fn = amx_q5_0;
        break;
    case GGML_TYPE_IQ4_NL:
        fn = amx_iq4_nl;
        break;
    default:
        break;
    }
    if (fn)
        return n_tok < AMX_MIN_TOK
                   ? kern_avx512_tile(t)
                   : (struct kern_tile){.fn = fn, .mr = MR, .nc_max = NC_MAX, .over_f32 = true, .pack = amx_pack};
    const struct kern_type_ops *o = kern_ops(t);
    if (!o || o->vec_dot_type != GGML_TYPE_Q8_K || n_tok < kq_min_tok(t)) /* the k-tiles read q8_K */
        return kern_avx512_tile(t);
    switch (t) {
    case GGML_TYPE_Q4_K:
        fn = amx_q4_K;
        break;
    case GGML_TYPE_Q5_K:
        fn = amx_q5_K;
        break;
    case GGML_TYPE_Q6_K:
        fn = amx_q6_K;
        break;
    default:
        return kern_avx512_tile(t);
    }
    return (struct kern_tile){.fn = fn, .mr = MR, .nc_max = NC_MAX, .over_f32 = true, .pack = amx_pack_q8_K};
}

/* ---- the multiply-add probe (KERN_MAC_I8_AMX) ---- */

/* Four independent accumulators (tiles 2, 5, 6, 7) of products of tiles
 * 0/1 and 3/4: 16 x 16 x 32 MACs per tdpbssd in this configuration. */
static void run_amx(enum kern_mac_kind kind, long iters, double *macs_per_s, int *sink)
{
    (void)kind;
    static const int8_t ones[16 * 64] __attribute__((aligned(64))) = {1};
    int32_t out[16 * 16] __attribute__((aligned(64)));
    kern_amx_load_uniform(8);
    const double t0 = kern_thread_cpu_s();
    _tile_loadd(0, ones, 64);
    _tile_loadd(1, ones, 64);
    _tile_loadd(3, ones, 64);
    _tile_loadd(4, ones, 64);
    _tile_zero(2);
    _tile_zero(5);
    _tile_zero(6);
    _tile_zero(7);
    for (long i = 0; i < iters; i++) {
        _tile_dpbssd(2, 0, 1);
        _tile_dpbssd(5, 3, 4);
        _tile_dpbssd(6, 0, 4);
        _tile_dpbssd(7, 3, 1);
    }
    _tile_stored(2, out, 64);
    const double t1 = kern_thread_cpu_s();
    _tile_release();
    amx_reconfigure_thread();
    *sink += out[0];
    *macs_per_s = 4.0 * 16 * 16 * 64 * (double)iters / (t1 - t0);
}

static double amx_mac_peak(struct pool *pool, enum kern_mac_kind kind, double *one_thread)
{
    if (kind != KERN_MAC_I8_AMX)
        return kern_avx512_mac_peak(pool, kind, one_thread);
    return kern_peak_run(pool, run_amx, kind, one_thread);
}

void kern_register_amx(struct kern_table *tab)
{
    kern_register_avx512(tab);
    tab->tile = amx_tile;
    tab->mac_peak = amx_mac_peak;
}

/* ---- is it there? ---- */
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static sigjmp_buf probe_jmp;
static void probe_sigill(int sig)
{
    (void)sig;
    siglongjmp(probe_jmp, 1);
}

/* One tdpbssd of known operands, under a SIGILL handler. */
static bool amx_runs(void)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = probe_sigill;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGILL, &sa, &old) != 0)
        return false;
    static volatile bool ok;
    ok = false;
    if (sigsetjmp(probe_jmp, 1) == 0) {
        int8_t A[16 * 64], B[16 * 64];
        int32_t C[16 * 16];
        for (int i = 0; i < 16 * 64; i++) {
            A[i] = (int8_t)(i % 7 - 3);
            B[i] = (int8_t)(i % 5 - 2);
        }
        kern_amx_load_uniform(3);
        _tile_loadd(1, A, 64);
        _tile_loadd(2, B, 64);
        _tile_zero(0);
        _tile_dpbssd(0, 1, 2);
        _tile_stored(0, C, 64);
        _tile_release();
        amx_reconfigure_thread();
        bool good = true;
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 16; n++) {
                int s = 0;
                for (int k = 0; k < 64; k++)
                    s += A[m * 64 + k] * B[(k / 4) * 64 + n * 4 + k % 4];
                good &= s == C[m * 16 + n];
            }
        ok = good;
    }
    sigaction(SIGILL, &old, NULL);
    return ok;
}

bool kern_cpu_amx(void)
{
    static int known = -1; /* set once, under kern_init's pthread_once or before */
    if (known >= 0)
        return known;
    unsigned a, b, c, d;
    bool yes = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d & (1u << 24)) && (d & (1u << 25));
    if (yes) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        (void)hi;
        yes = (lo & (3u << 17)) == (3u << 17);
    }
    yes = yes && syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 && amx_runs();
    known = yes;
    return yes;
}
