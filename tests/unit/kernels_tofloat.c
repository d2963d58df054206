/*
 * kernels: every SIMD variant's to_float (dequantization) of q4_1, q5_1 and the k-quants
 * gives the reference's floats, bit for bit (memcmp), for
 *  - rows quantized by the reference from gaussian data times row scales of
 *    every sign and size (zero, subnormal, tiny, ordinary, large), with
 *    outliers, constant and all-zero blocks;
 *  - random bytes as blocks, with every fp16 scale finite and some set to
 *    the extremes (+-65504, +-smallest subnormal, +-0, smallest normal);
 * on rows of 1, 2, 3, 5, 7 and 33 blocks, read from an address aligned only
 * to 2 bytes into outputs pre-filled with two different NaNs, so
 * an element left unwritten shows up. The table is switched with
 * kern_use_variant, to every variant the CPU supports.
 * Skips cleanly when the CPU supports none but the reference.
 */
#include "kernels/kernels.h"
#include "test.h"
#include "kernels_variants.h"

#include <stddef.h>
#include <stdint.h>

struct half_fields {
    enum ggml_type type;
    int n_half;            /* fp16 fields per block */
    size_t off[2];         /* their byte offsets in the block */
};

static const struct half_fields types[] = {
    {GGML_TYPE_Q4_1, 2, {offsetof(block_q4_1, d), offsetof(block_q4_1, m)}},
    {GGML_TYPE_Q5_1, 2, {offsetof(block_q5_1, d), offsetof(block_q5_1, m)}},
    {GGML_TYPE_Q2_K, 2, {offsetof(block_q2_K, d), offsetof(block_q2_K, dmin)}},
    {GGML_TYPE_Q3_K, 1, {offsetof(block_q3_K, d), 0}},
    {GGML_TYPE_Q4_K, 2, {offsetof(block_q4_K, d), offsetof(block_q4_K, dmin)}},
    {GGML_TYPE_Q5_K, 2, {offsetof(block_q5_K, d), offsetof(block_q5_K, dmin)}},
    {GGML_TYPE_Q6_K, 1, {offsetof(block_q6_K, d), 0}},
};
#define N_TYPES (int)(sizeof types / sizeof *types)

static const int64_t n_blocks[] = {1, 2, 3, 5, 7, 33};
#define N_LENS (int)(sizeof n_blocks / sizeof *n_blocks)

/* Row scales for the quantized rows: zero, an f32 subnormal, tiny values
 * whose block scales are fp16 subnormals or zero, ordinary ones, and large
 * ones whose block scales stay below the fp16 limit. */
static const float row_scales[] = {0.0f,  1e-40f, -1e-40f, 1e-30f, 3e-7f, -2e-6f, 1e-4f, -0.01f,
                                   1.0f,  -1.0f,  7.5f,    -100.f, 1e3f,  -2e3f,  3e3f};
#define N_SCALES (int)(sizeof row_scales / sizeof *row_scales)

/* fp16 values the raw blocks use on purpose, besides random finite ones. */
static const uint16_t extreme_halves[] = {0x7bff, 0xfbff, 0x0001, 0x8001, 0x0000, 0x8000, 0x0400, 0x83ff, 0x3c00};
#define N_EXTREME (int)(sizeof extreme_halves / sizeof *extreme_halves)

static uint16_t random_half(struct rng *r)
{
    if (rng_u64(r) % 4 == 0)
        return extreme_halves[rng_u64(r) % N_EXTREME];
    uint16_t h;
    do
        h = (uint16_t)rng_u64(r);
    while (((h >> 10) & 0x1f) == 0x1f); /* no infinity or NaN */
    return h;
}

/* Replaces every non-finite fp16 field of nb blocks with a random finite one
 * (with always set, replaces every field). */
static void set_halves(const struct half_fields *hf, uint8_t *blocks, int64_t nb, struct rng *r, bool always)
{
    const size_t bsz = ggml_type_size(hf->type);
    for (int64_t b = 0; b < nb; b++) {
        for (int k = 0; k < hf->n_half; k++) {
            uint8_t *p = blocks + b * bsz + hf->off[k];
            uint16_t h;
            memcpy(&h, p, 2);
            if (always || ((h >> 10) & 0x1f) == 0x1f) {
                h = random_half(r);
                memcpy(p, &h, 2);
            }
        }
    }
}

/* Row kinds for the quantizer. 0: gaussian; 1: one outlier 1000x per 32;
 * 2: constant blocks of 32 (so a zero range); 3: uniform of one sign. */
static void fill_row(struct rng *r, float *x, int64_t n, int kind, float scale)
{
    for (int64_t i = 0; i < n; i++) {
        double v = rng_normal(r);
        if (kind == 2)
            v = (double)((i / 32) % 5) - 2.0;
        else if (kind == 3)
            v = rng_uniform(r) * 4.0;
        x[i] = (float)v * scale;
    }
    if (kind == 1)
        for (int64_t i = 0; i < n; i += 32)
            x[i + (int64_t)(rng_u64(r) % 32)] = scale * (rng_u64(r) & 1 ? 4.0f : -4.0f);
}

static void fill_nan(float *y, int64_t n, uint32_t bits)
{
    for (int64_t i = 0; i < n; i++)
        memcpy(&y[i], &bits, 4);
}

/* Runs both functions on the nb blocks at q; returns 1 if they differ. */
static int compare_one(kern_to_float_fn fr, kern_to_float_fn fs, const uint8_t *q, int64_t n, float *yr, float *ys,
                       enum ggml_type t, const char *what)
{
    fill_nan(yr, n, 0x7fc00001u);
    fill_nan(ys, n, 0xffc00002u);
    fr(q, yr, n);
    fs(q, ys, n);
    if (memcmp(yr, ys, (size_t)n * sizeof *yr) == 0)
        return 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t a, b;
        memcpy(&a, &yr[i], 4);
        memcpy(&b, &ys[i], 4);
        if (a != b) {
            fprintf(stderr, "  %s (%s, n=%lld): element %lld: ref %.9g (0x%08x), %s %.9g (0x%08x)\n",
                    ggml_type_name(t), what, (long long)n, (long long)i, yr[i], a, kern_variant_current(), ys[i], b);
            break;
        }
    }
    return 1;
}

static void check_type(const struct half_fields *hf, struct rng *r, int v)
{
    const enum ggml_type t = hf->type;
    use_variant(0);
    const kern_to_float_fn fr = kern_ops(t)->to_float;
    const kern_from_float_fn quant = kern_ops(t)->from_float;
    use_variant(v);
    const kern_to_float_fn fs = kern_ops(t)->to_float;
    CHECKF(fr && fs && quant, "%s: missing to_float or from_float", ggml_type_name(t));
    if (!fr || !fs || !quant)
        return;
    CHECKF(fs != fr, "%s: the %s table has no to_float of its own", ggml_type_name(t), kern_variant_name(v));

    const int64_t bk = ggml_blck_size(t);
    const int64_t nmax = n_blocks[N_LENS - 1] * bk;
    float *x = malloc((size_t)nmax * sizeof *x);
    float *yr = malloc((size_t)(nmax + 1) * sizeof *yr), *ys = malloc((size_t)(nmax + 1) * sizeof *ys);
    uint8_t *qbuf = malloc(ggml_row_size(t, nmax) + 2);
    MAAS_ASSERT(x && yr && ys && qbuf);
    uint8_t *q = qbuf + 2; /* 2-byte aligned (the fp16 fields need it), no more */

    int bad_quant = 0, bad_raw = 0, rows_quant = 0, rows_raw = 0;
    for (int li = 0; li < N_LENS; li++) {
        const int64_t n = n_blocks[li] * bk, nb = n_blocks[li];
        /* rows the reference quantizer wrote */
        for (int si = 0; si < N_SCALES; si++) {
            /* The reference q2_K quantizer shifts a negative int (undefined
             * behaviour, UBSan stops) when the mins are f32 subnormals:
             * 15 / max_min is infinite there. Not the subject of this test. */
            if (t == GGML_TYPE_Q2_K && row_scales[si] != 0.0f && fabsf(row_scales[si]) < 1e-37f)
                continue;
            for (int kind = 0; kind < 4; kind++) {
                fill_row(r, x, n, kind, row_scales[si]);
                quant(x, q, n);
                set_halves(hf, q, nb, r, false);
                /* the output one float off its natural alignment, too */
                const int shift = (si + kind) & 1;
                bad_quant += compare_one(fr, fs, q, n, yr + shift, ys + shift, t, "quantized row");
                rows_quant++;
            }
        }
        /* random bytes as blocks */
        for (int it = 0; it < 40; it++) {
            for (size_t b = 0; b < ggml_row_size(t, n); b++)
                q[b] = (uint8_t)rng_u64(r);
            set_halves(hf, q, nb, r, it % 2 == 0);
            bad_raw += compare_one(fr, fs, q, n, yr, ys, t, "random bytes");
            rows_raw++;
        }
    }
    CHECKF(bad_quant == 0, "%s: %d of %d quantized rows differ", ggml_type_name(t), bad_quant, rows_quant);
    CHECKF(bad_raw == 0, "%s: %d of %d random-byte rows differ", ggml_type_name(t), bad_raw, rows_raw);
    free(x);
    free(yr);
    free(ys);
    free(qbuf);
}

TEST(test_tofloat_bit_identical)
{
    if (simd_variant_count() == 0)
        SKIP("CPU supports no kernel variant but the reference");
    FOR_EACH_SIMD_VARIANT(v)
    {
        struct rng r;
        rng_seed(&r, 20261129);
        for (int k = 0; k < N_TYPES; k++)
            check_type(&types[k], &r, v);
    }
    use_best_variant();
}

int main(void)
{
    kernels_init();
    RUN(test_tofloat_bit_identical);
    TEST_END();
}
