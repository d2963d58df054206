/*
 * The AMX variant (AVX-512 VNNI plus Intel's Advanced Matrix Extensions,
 * AMX-TILE and AMX-INT8, of Sapphire Rapids and later Xeons): the prompt and
 * batched-decode tiles of the q8_0-activation family (q8_0, q4_0, q5_0,
 * iq4_nl) done by the tile unit's tdpbssd, which multiplies a 16 x 64-byte
 * tile of signed bytes with a 16 x 64-byte tile in VNNI order and adds the
 * 16 x 16 int32 products in one instruction (1,024 multiply-adds per
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

/* Per thread: the weight values of a pass (16 rows x KC) and their scales
 * (16 per block, row-minor). */
static __thread int8_t stage_q[MR * KC] __attribute__((aligned(64)));
static __thread float stage_d[NBC * MR] __attribute__((aligned(64)));

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
    /* accbuf[g][r][t] is y for token 16 g + t, row r */
    for (int g = 0; g < ng; g++) {
        const int tn = nc - g * G < G ? nc - g * G : G;
        for (int t = 0; t < tn; t++)
            for (int r = 0; r < nr; r++)
                y[(int64_t)(g * G + t) * ldy + r] = accbuf[g][r][t];
    }
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

/* From this many tokens on the tile unit beats the AVX-512 VNNI tiles
 * (bench_matmul on a Sapphire Rapids class Xeon; below, they are used). */
#define AMX_MIN_TOK 4

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
    if (!fn || n_tok < AMX_MIN_TOK)
        return kern_avx512_tile(t);
    return (struct kern_tile){.fn = fn, .mr = MR, .nc_max = NC_MAX, .over_f32 = true, .pack = amx_pack};
}

/* ---- the multiply-add probe (KERN_MAC_I8_AMX) ---- */

/* Four independent accumulators (tiles 2, 5, 6, 7) of products of tiles
 * 0/1 and 3/4: 16 x 16 x 32 MACs per tdpbssd in this configuration. */
static void run_amx(enum kern_mac_kind kind, long iters, double *macs_per_s, int *sink)
{
    (void)kind;
    struct amx_cfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) {
        c.rows[t] = 16;
        c.colsb[t] = 64;
    }
    static const int8_t ones[16 * 64] __attribute__((aligned(64))) = {1};
    int32_t out[16 * 16] __attribute__((aligned(64)));
    amx_load_config(&c);
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
        struct amx_cfg c;
        memset(&c, 0, sizeof c);
        c.palette = 1;
        for (int i = 0; i < 3; i++) {
            c.rows[i] = 16;
            c.colsb[i] = 64;
        }
        amx_load_config(&c);
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
