/*
 * bf16 weights on the tile unit (the amx variant, AMX-BF16): the prompt and
 * batched-decode tiles of bf16 matrices by tdpbf16ps, which multiplies a
 * 16 x 32 bf16 tile with a 16 x (16 pairs) bf16 tile in VNNI pair order and
 * adds the 16 x 16 products, summed in f32, to an f32 tile (512
 * multiply-adds per instruction).
 *
 * Operands, per 32 values of k (block b; the last one of a row whose length
 * is not a multiple of 32 is padded with zeros on both sides):
 * - A (tile 0): 16 weight rows x 32 bf16, loaded straight from the rows
 *   (stride ldw) when all 16 exist and the block is whole; else staged
 *   through a 1 KiB panel, zero past the row's end and below nr.
 * - B (tiles 1-3): 16 tokens' values 32 b .. 32 b + 31 rounded to bf16, as
 *   16 rows of 64 bytes: row p holds, for token t = 0..15, the pair
 *   (x[t][32 b + 2 p], x[t][32 b + 2 p + 1]). kern_matmul has the f32
 *   activations put in this order once per product (kern_tile.pack), in
 *   groups of 16 tokens (missing tokens zero): KERN_PACK_BF16_BLOCK bytes
 *   per block. The rounding is fp32_to_bf16's (to nearest even, NaN kept
 *   and made quiet), done with integer operations.
 * - C (tiles 4-7): up to 4 groups of 16 tokens; C[r][t] accumulates weight
 *   row r times token t over the whole of k, with no per-block scale, and
 *   is stored once at the end.
 * The weights are used exactly; the activations lose their low 16 bits
 * (relative error up to 2^-8 each), the price of the bf16 x bf16 products:
 * the other variants dot the weights with the f32 activations.
 *
 * The tile configuration (8 tiles of 16 rows x 64 bytes) differs from the
 * q8_0 family's: a thread loads it when kern_amx_config says another one
 * is loaded (kernels_int.h). The path exists when kern_cpu_amx holds and
 * CPUID reports AMX-BF16; else the AVX-512 variant's (untiled) bf16 path
 * runs.
 */
#include "kernels/avx2_int.h"

#include <cpuid.h>
#include <pthread.h>

#define G KERN_PACK_TOKENS /* tokens per packed group */
#define MR 16              /* weight rows per tile */
#define NC_MAX (4 * G)     /* tokens per call, at most: 4 C tiles */

_Static_assert(KERN_PACK_BF16_BLOCK == 16 * 64, "a packed bf16 block is 16 rows of 16 token pairs");

static void bf16_configure(void)
{
    if (kern_amx_config == KERN_AMX_CFG_BF16)
        return;
    kern_amx_load_uniform(8); /* every tile 16 rows x 64 bytes */
    kern_amx_config = KERN_AMX_CFG_BF16;
}

/* 16 f32 values (as bits) rounded to bf16 like fp32_to_bf16, each in the
 * low half of its 32-bit lane. */
static inline __m512i round_bf16(__m512 v)
{
    const __m512i x = _mm512_castps_si512(v);
    const __m512i rounded = _mm512_srli_epi32(
        _mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)),
                         _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1))),
        16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff)),
                                                 _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_or_epi32(rounded, nan, _mm512_srli_epi32(x, 16), _mm512_set1_epi32(0x40));
}

/* Group of n_rows (<= 16) f32 activation rows of n values, lda bytes
 * apart, into dst (KERN_PACK_BF16_BLOCK bytes per 32 values). */
static void bf16_pack(const void *act, size_t lda, int n_rows, int64_t n, void *dst)
{
    const int64_t nb = (n + 31) / 32;
    const char *a = act;
    /* dword p of the 16 tokens' rows (16 dwords each, token-major) */
    const __m512i vidx = _mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240);
    uint32_t in[G][16] __attribute__((aligned(64)));
    for (int64_t b = 0; b < nb; b++) {
        const int64_t len = n - 32 * b < 32 ? n - 32 * b : 32;
        const __mmask16 mlo = (__mmask16)(len >= 16 ? 0xffff : (1u << len) - 1);
        const __mmask16 mhi = (__mmask16)(len >= 32 ? 0xffff : len <= 16 ? 0 : (1u << (len - 16)) - 1);
        for (int t = 0; t < G; t++) {
            __m512i pairs = _mm512_setzero_si512();
            if (t < n_rows) {
                const float *x = (const float *)(a + (size_t)t * lda) + 32 * b;
                /* values 0..31 as 32 words in order: dword p = the pair (2 p, 2 p + 1) */
                const __m256i lo = _mm512_cvtepi32_epi16(round_bf16(_mm512_maskz_loadu_ps(mlo, x)));
                const __m256i hi = _mm512_cvtepi32_epi16(round_bf16(_mm512_maskz_loadu_ps(mhi, x + 16)));
                pairs = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
            }
            _mm512_store_si512(in[t], pairs);
        }
        char *out = (char *)dst + b * KERN_PACK_BF16_BLOCK;
        for (int p = 0; p < 16; p++)
            _mm512_storeu_si512(out + p * 64, _mm512_i32gather_epi32(vidx, (const int *)&in[0][p], 4));
    }
}

static void bf16_tile(int64_t n, const void *w, size_t ldw, int nr, const void *a, size_t lda, int nc, float *y,
                      int64_t ldy)
{
    bf16_configure();
    const int64_t nb = (n + 31) / 32, nfull = nr == MR ? n / 32 : 0;
    const int ng = (nc + G - 1) / G;
    const char *wc = w, *pa = a;
    uint16_t stage[MR * 32] __attribute__((aligned(64)));
    float cbuf[NC_MAX / G][MR * 16] __attribute__((aligned(64)));
    _tile_zero(4);
    _tile_zero(5);
    _tile_zero(6);
    _tile_zero(7);
    for (int64_t b = 0; b < nb; b++) {
        if (b < nfull) {
            _tile_loadd(0, wc + b * 64, ldw);
        } else { /* rows below nr, or the row's last partial block: staged, zero padded */
            const int64_t len = n - 32 * b < 32 ? n - 32 * b : 32;
            const __mmask32 m = (__mmask32)(len >= 32 ? 0xffffffffu : (1u << len) - 1);
            for (int r = 0; r < MR; r++)
                _mm512_store_si512(stage + r * 32, r < nr ? _mm512_maskz_loadu_epi16(m, wc + r * ldw + b * 64)
                                                          : _mm512_setzero_si512());
            _tile_loadd(0, stage, 64);
        }
        const char *pb = pa + b * KERN_PACK_BF16_BLOCK;
        _tile_loadd(1, pb, 64);
        _tile_dpbf16ps(4, 0, 1);
        if (ng > 1) {
            _tile_loadd(2, pb + lda, 64);
            _tile_dpbf16ps(5, 0, 2);
        }
        if (ng > 2) {
            _tile_loadd(3, pb + 2 * lda, 64);
            _tile_dpbf16ps(6, 0, 3);
        }
        if (ng > 3) {
            _tile_loadd(1, pb + 3 * lda, 64);
            _tile_dpbf16ps(7, 0, 1);
        }
    }
    _tile_stored(4, cbuf[0], 64);
    if (ng > 1)
        _tile_stored(5, cbuf[1], 64);
    if (ng > 2)
        _tile_stored(6, cbuf[2], 64);
    if (ng > 3)
        _tile_stored(7, cbuf[3], 64);
    /* cbuf[g][r * 16 + t] is y for token 16 g + t, row r */
    for (int g = 0; g < ng; g++) {
        const int tn = nc - g * G < G ? nc - g * G : G;
        for (int t = 0; t < tn; t++)
            for (int r = 0; r < nr; r++)
                y[(int64_t)(g * G + t) * ldy + r] = cbuf[g][r * 16 + t];
    }
}

/* AMX-BF16: CPUID.(EAX=7, ECX=0):EDX bit 22, on top of kern_cpu_amx. */
static bool amx_bf16;
static void probe_amx_bf16(void)
{
    unsigned a, b, c, d;
    amx_bf16 = kern_cpu_amx() && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d & (1u << 22));
}

static bool cpu_amx_bf16(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT; /* the first product may run on any thread */
    pthread_once(&once, probe_amx_bf16);
    return amx_bf16;
}

struct kern_tile kern_amx_bf16_tile(int64_t n_tok)
{
    (void)n_tok; /* from 2 tokens on: one weight read for up to 64 tokens beats a dot per token */
    if (!cpu_amx_bf16())
        return kern_avx512_tile(GGML_TYPE_BF16);
    return (struct kern_tile){.fn = bf16_tile, .mr = MR, .nc_max = NC_MAX, .over_f32 = true, .pack = bf16_pack};
}
