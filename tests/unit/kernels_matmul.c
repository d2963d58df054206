/*
 * kern_matmul against a naive loop: every weight row dequantized, every
 * activation row quantized to the vec_dot type with the reference quantizer
 * (byte-identical to the fast one) and dequantized, and the dot taken in
 * double. That isolates the matmul's own arithmetic, so the tolerance is
 * tight: 1e-4 of sum |w_i * a_i|. Shapes cover odd n_out (1, 7, 33, 65),
 * n_tok 1..9 and 64 (tile edges in both directions; from 8 tokens on most
 * types take the f32 path, whose k is cut in panels of 512: n_in 608 and
 * 1280 end in a partial one), pools of 1, 2 and 3
 * threads, and ldy > n_out, with y pre-filled with NaN so that a missed
 * output shows and a write into the padding columns is caught. Every
 * kernel variant the CPU has is exercised (ref, avx2, avxvnni, avx512: 4 x 3
 * and 4 x 6 f32 tiles). The decode kernels of avxvnni and avx512 give the
 * same bits.
 */
#include "kernels/kernels.h"
#include "kernels/kernels_int.h"
#include "kernels/blocks.h"
#include "test.h"
#include "kernels_variants.h"

static const enum ggml_type types[] = {
    GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
    GGML_TYPE_Q8_0, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ4_NL,
};
#define N_TYPES (sizeof types / sizeof *types)

static const int64_t n_outs[] = {1, 7, 33, 65};
static const int64_t n_toks[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 64};

/* Checks one (type, n_out, n_in) weight against all n_tok and pools. */
static void check_shape(enum ggml_type t, int64_t n_out, int64_t n_in, struct pool **pools, int n_pools,
                        struct rng *r, const char *isa)
{
    const struct kern_type_ops *o = kern_ops(t);
    const enum ggml_type at = o->vec_dot_type;
    const int64_t max_tok = 64, ldy = n_out + 3;
    size_t wrow = ggml_row_size(t, n_in);
    float *w = malloc((size_t)(n_out * n_in) * sizeof *w);
    float *x = malloc((size_t)(max_tok * n_in) * sizeof *x);
    float *wd = malloc((size_t)(n_out * n_in) * sizeof *wd);
    float *xd = malloc((size_t)(max_tok * n_in) * sizeof *xd);
    char *wq = malloc(wrow * (size_t)n_out);
    double *want = malloc((size_t)(max_tok * n_out) * sizeof *want), *tol = malloc((size_t)(max_tok * n_out) * sizeof *tol);
    float *y = malloc((size_t)(max_tok * ldy) * sizeof *y);
    size_t ws = kern_matmul_wsize(t, n_in, max_tok);
    void *wbuf = ws ? malloc(ws) : NULL;
    MAAS_ASSERT(w && x && wd && xd && wq && want && tol && y && (wbuf || !ws));

    for (int64_t i = 0; i < n_out * n_in; i++)
        w[i] = (float)rng_normal(r) * 0.5f;
    for (int64_t i = 0; i < max_tok * n_in; i++)
        x[i] = (float)rng_normal(r);
    kern_quantize(t, w, wq, n_out, n_in);
    for (int64_t o_ = 0; o_ < n_out; o_++)
        o->to_float(wq + (size_t)o_ * wrow, wd + o_ * n_in, n_in);
    if (at == GGML_TYPE_F32) {
        memcpy(xd, x, (size_t)(max_tok * n_in) * sizeof *x);
    } else {
        size_t arow = ggml_row_size(at, n_in);
        void *aq = malloc(arow);
        MAAS_ASSERT(aq);
        for (int64_t i = 0; i < max_tok; i++) {
            o->from_float_act(x + i * n_in, aq, n_in);
            kern_ops(at)->to_float(aq, xd + i * n_in, n_in);
        }
        free(aq);
    }
    /* bf16 weights on the amx variant's tile (bf16_amx.c) dot with the
     * activations rounded to bf16: each product is off by up to 2^-8 of
     * its magnitude */
    const double act_err = t == GGML_TYPE_BF16 && kern_tab.tile && kern_tab.tile(t, 2).pack ? 0x1p-8 : 0.0;
    for (int64_t i = 0; i < max_tok; i++)
        for (int64_t o_ = 0; o_ < n_out; o_++) {
            double s = 0, sa = 0;
            for (int64_t k = 0; k < n_in; k++) {
                double p = (double)wd[o_ * n_in + k] * xd[i * n_in + k];
                s += p;
                sa += fabs(p);
            }
            want[i * n_out + o_] = s;
            /* q8_1 carries d * sum(q) rounded to fp16 (relative error up
             * to 2^-11), which the dequantized activations do not see */
            tol[i * n_out + o_] = ((at == GGML_TYPE_Q8_1 ? 2e-3 : 1e-4) + act_err) * sa + 1e-6;
        }

    for (int p = 0; p < n_pools; p++)
        for (size_t ti = 0; ti < sizeof n_toks / sizeof *n_toks; ti++) {
            const int64_t n_tok = n_toks[ti];
            for (int64_t i = 0; i < max_tok * ldy; i++)
                y[i] = NAN;
            kern_matmul(pools[p], t, wq, n_out, n_in, x, n_tok, y, ldy, wbuf);
            int bad = 0, untouched = 0;
            for (int64_t i = 0; i < max_tok; i++)
                for (int64_t c = 0; c < ldy; c++) {
                    float v = y[i * ldy + c];
                    if (i >= n_tok || c >= n_out)
                        untouched += !isnan(v);
                    else if (!(fabs(v - want[i * n_out + c]) <= tol[i * n_out + c]))
                        bad++;
                }
            CHECKF(bad == 0 && untouched == 0,
                   "%s %s: n_out %lld n_in %lld n_tok %lld threads %d: %d wrong, %d writes outside", isa,
                   ggml_type_name(t), (long long)n_out, (long long)n_in, (long long)n_tok,
                   pool_n_threads(pools[p]), bad, untouched);
        }
    free(w);
    free(x);
    free(wd);
    free(xd);
    free(wq);
    free(want);
    free(tol);
    free(y);
    free(wbuf);
}

static void check_all(struct pool **pools, int n_pools, const char *isa)
{
    struct rng r;
    rng_seed(&r, 4242);
    for (size_t k = 0; k < N_TYPES; k++) {
        enum ggml_type t = types[k];
        CHECKF(kern_type_supported(t) && kern_type_quantizable(t), "%s: not supported", ggml_type_name(t));
        if (!kern_type_supported(t) || !kern_type_quantizable(t))
            continue;
        int64_t bs = ggml_blck_size(t);
        /* one block, an odd number of them, and (for the decode kernels'
         * groups of 8 blocks) 19 blocks; f32/f16/bf16: odd lengths, and
         * 520 (a multiple of 8 but not of 16: the f32 path's last panel
         * ends with the AVX-512 tile's masked half step) */
        int64_t n_ins[4] = {bs == 1 ? 37 : bs, bs == 1 ? 333 : 3 * bs, bs == 1 ? 1001 : bs == 32 ? 19 * bs : 5 * bs,
                            520};
        for (int ni = 0; ni < (bs == 1 ? 4 : 3); ni++)
            for (size_t oi = 0; oi < sizeof n_outs / sizeof *n_outs; oi++)
                check_shape(t, n_outs[oi], n_ins[ni], pools, n_pools, &r, isa);
    }
}

TEST(test_matmul)
{
    struct pool *pools[4] = {NULL, pool_new(1), pool_new(2), pool_new(3)};
    MAAS_ASSERT(pools[1] && pools[2] && pools[3]);
    /* The reference table once with one thread and once with three (the
     * work split does not depend on the table); every other supported
     * variant with every pool. */
    struct pool *ref_pools[2] = {NULL, pools[3]};
    use_variant(0);
    check_all(ref_pools, 2, kern_variant_name(0));
    FOR_EACH_SIMD_VARIANT(v)
    {
        use_variant(v);
        check_all(pools, 4, kern_variant_name(v));
    }
    use_best_variant();
    for (int i = 1; i < 4; i++)
        pool_free(pools[i]);
}

/* A larger shape, where prefill work is split in both directions, the tiles
 * and the decode kernels run over many blocks (40 of 32, 5 of 256): AVX2
 * against the reference table's result. */
TEST(test_matmul_large_vs_ref)
{
    if (simd_variant_count() == 0)
        SKIP("CPU supports no kernel variant but the reference");
    static const enum ggml_type big[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q5_0, GGML_TYPE_IQ4_NL,
                                         GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_F16};
    const int64_t n_out = 131, n_in = 1280;
    struct pool *pool = pool_new(2);
    MAAS_ASSERT(pool);
    struct rng r;
    rng_seed(&r, 99);
    float *w = malloc((size_t)(n_out * n_in) * sizeof *w), *x = malloc((size_t)(77 * n_in) * sizeof *x);
    float *y0 = malloc((size_t)(77 * n_out) * sizeof *y0), *y1 = malloc((size_t)(77 * n_out) * sizeof *y1);
    MAAS_ASSERT(w && x && y0 && y1);
    for (int64_t i = 0; i < n_out * n_in; i++)
        w[i] = (float)rng_normal(&r);
    for (int64_t i = 0; i < 77 * n_in; i++)
        x[i] = (float)rng_normal(&r);
    for (size_t k = 0; k < sizeof big / sizeof *big; k++) {
        enum ggml_type t = big[k];
        if (!kern_type_quantizable(t))
            continue;
        void *wq = malloc(ggml_row_size(t, n_in) * n_out);
        MAAS_ASSERT(wq);
        kern_quantize(t, w, wq, n_out, n_in);
        void *wb = malloc(kern_matmul_wsize(t, n_in, 77) + 1);
        MAAS_ASSERT(wb);
        /* prefill (tiles) and decode (matrix-vector kernels) */
        for (int64_t n_tok = 77; n_tok >= 1; n_tok -= 76) {
            use_variant(0);
            kern_matmul(NULL, t, wq, n_out, n_in, x, n_tok, y0, n_out, wb);
            FOR_EACH_SIMD_VARIANT(v)
            {
                use_variant(v);
                kern_matmul(pool, t, wq, n_out, n_in, x, n_tok, y1, n_out, wb);
                int bad = 0;
                for (int64_t i = 0; i < n_tok * n_out; i++)
                    bad += !(fabsf(y0[i] - y1[i]) <= 1e-3f * (fabsf(y0[i]) + 1.0f));
                CHECKF(bad == 0, "%s %s n_tok %lld: %d of %lld outputs differ from the reference",
                       kern_variant_name(v), ggml_type_name(t), (long long)n_tok, bad, (long long)(n_tok * n_out));
            }
        }
        free(wq);
        free(wb);
    }
    use_best_variant();
    free(w);
    free(x);
    free(y0);
    free(y1);
    pool_free(pool);
}

/* kern_matmul_multi against one kern_matmul per product, bit for bit:
 * mixed weight types (q8_0-, q8_K- and f32-activation ones), products that
 * share their input (converted once) or not, token counts on both sides of
 * the f32 path's threshold and single tokens (decode kernels), an empty
 * product, and more than 64 products (the call works in groups). Pools of
 * 1, 2 and 3 threads; the table in use (AVX2 where the CPU has it). */
TEST(test_matmul_multi)
{
    static const enum ggml_type ts[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q5_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K,
                                        GGML_TYPE_F16,  GGML_TYPE_Q4_1, GGML_TYPE_IQ4_NL};
    static const int64_t toks[] = {1, 5, 20, 64, 0, 1, 9, 33};
    enum { NP = 70, MAXTOK = 64 };
    const int64_t n_in = 512;
    struct rng r;
    rng_seed(&r, 7);
    struct pool *pools[3] = {pool_new(1), pool_new(2), pool_new(3)};
    MAAS_ASSERT(pools[0] && pools[1] && pools[2]);
    float *xs[4];
    for (int i = 0; i < 4; i++) {
        xs[i] = malloc((size_t)(MAXTOK * n_in) * sizeof(float));
        MAAS_ASSERT(xs[i]);
        for (int64_t k = 0; k < MAXTOK * n_in; k++)
            xs[i][k] = (float)rng_normal(&r);
    }
    struct kern_mm mm[NP];
    void *wq[NP];
    float *y1[NP], *y2[NP];
    float *w = malloc((size_t)(96 * n_in) * sizeof *w);
    MAAS_ASSERT(w);
    for (int i = 0; i < NP; i++) {
        enum ggml_type t = ts[i % 7];
        int64_t n_out = 1 + (int64_t)(rng_u64(&r) % 96), n_tok = toks[i % 8];
        for (int64_t k = 0; k < n_out * n_in; k++)
            w[k] = (float)rng_normal(&r) * 0.3f;
        wq[i] = malloc(ggml_row_size(t, n_in) * (size_t)n_out);
        MAAS_ASSERT(wq[i]);
        kern_quantize(t, w, wq[i], n_out, n_in);
        /* products i and i + 8 of a block of 16 have the same input and
         * token count, and neighbouring types: q8_0/q5_0, q4_K/q6_K and
         * iq4_nl/q8_0 then share one conversion, the other pairs cannot */
        const float *x = xs[(i / 16) % 4];
        size_t ny = (size_t)(n_tok ? n_tok : 1) * (size_t)(n_out + 2);
        y1[i] = malloc(ny * sizeof(float));
        y2[i] = malloc(ny * sizeof(float));
        MAAS_ASSERT(y1[i] && y2[i]);
        for (size_t k = 0; k < ny; k++)
            y1[i][k] = y2[i][k] = NAN;
        mm[i] = (struct kern_mm){.wt = t, .W = wq[i], .n_out = n_out, .x = x, .n_tok = n_tok, .y = y2[i],
                                 .ldy = n_out + 2};
    }
    size_t ws = kern_matmul_multi_wsize(mm, NP, n_in), ws1 = 0;
    for (int i = 0; i < NP; i++) {
        size_t s = kern_matmul_wsize(mm[i].wt, n_in, mm[i].n_tok);
        ws1 = s > ws1 ? s : ws1;
    }
    char *wb = malloc(ws + 1), *wb1 = malloc(ws1 + 1);
    MAAS_ASSERT(wb && wb1);
    for (int p = 0; p < 3; p++) {
        for (int i = 0; i < NP; i++)
            kern_matmul(pools[p], mm[i].wt, mm[i].W, mm[i].n_out, n_in, mm[i].x, mm[i].n_tok, y1[i], mm[i].ldy,
                        wb1);
        kern_matmul_multi(pools[p], mm, NP, n_in, wb);
        int bad = 0;
        for (int i = 0; i < NP; i++) {
            size_t ny = (size_t)(mm[i].n_tok ? mm[i].n_tok : 1) * (size_t)mm[i].ldy;
            /* NaN padding compares equal bit for bit too */
            if (memcmp(y1[i], y2[i], ny * sizeof(float)) != 0) {
                if (bad++ < 3)
                    fprintf(stderr, "  product %d (%s, %lld x %lld tokens) differs\n", i,
                            ggml_type_name(mm[i].wt), (long long)mm[i].n_out, (long long)mm[i].n_tok);
            }
        }
        CHECKF(bad == 0, "%d threads: %d of %d products differ from one kern_matmul each", p + 1, bad, NP);
    }
    for (int i = 0; i < NP; i++) {
        free(wq[i]);
        free(y1[i]);
        free(y2[i]);
    }
    for (int i = 0; i < 4; i++)
        free(xs[i]);
    free(w);
    free(wb);
    free(wb1);
    for (int p = 0; p < 3; p++)
        pool_free(pools[p]);
}

/* The index of the named variant, or -1 when the CPU lacks it. */
static int supported_variant(const char *name)
{
    for (int v = 0; v < kern_variant_count(); v++)
        if (!strcmp(kern_variant_name(v), name))
            return kern_variant_supported(v) ? v : -1;
    return -1;
}

/* The decode kernels of avxvnni and avx512 are one body (gemv_body.h) whose
 * byte dot is a vpdpbusd in both (VEX on ymm, EVEX on ymm): the same int32
 * sums in the same float order, so the same bits, for every q8_0-family
 * type, with and without a tail past the groups of 8 blocks, on 1 and 2
 * threads. */
TEST(test_gemv_avxvnni_is_avx512)
{
    int vv = supported_variant("avxvnni"), v5 = supported_variant("avx512");
    if (vv < 0 || v5 < 0)
        SKIP("CPU lacks AVX-VNNI or AVX-512 VNNI");
    static const enum ggml_type ts[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q5_0, GGML_TYPE_IQ4_NL};
    static const int64_t n_ins[] = {19 * 32, 40 * 32, 32};
    const int64_t n_out = 67;
    struct pool *pool = pool_new(2);
    MAAS_ASSERT(pool);
    struct rng r;
    rng_seed(&r, 5150);
    float *w = malloc((size_t)(n_out * 1280) * sizeof *w), *x = malloc(1280 * sizeof *x);
    float *y5 = malloc((size_t)n_out * sizeof *y5), *yv = malloc((size_t)n_out * sizeof *yv);
    MAAS_ASSERT(w && x && y5 && yv);
    for (int64_t i = 0; i < n_out * 1280; i++)
        w[i] = (float)rng_normal(&r);
    for (int64_t i = 0; i < 1280; i++)
        x[i] = (float)(rng_normal(&r) * (i % 7 == 3 ? 9.0 : 1.0));
    for (size_t k = 0; k < sizeof ts / sizeof *ts; k++)
        for (size_t ni = 0; ni < sizeof n_ins / sizeof *n_ins; ni++) {
            enum ggml_type t = ts[k];
            int64_t n_in = n_ins[ni];
            void *wq = malloc(ggml_row_size(t, n_in) * (size_t)n_out);
            void *wb = malloc(kern_matmul_wsize(t, n_in, 1) + 1);
            MAAS_ASSERT(wq && wb);
            kern_quantize(t, w, wq, n_out, n_in);
            for (struct pool *p = NULL;; p = pool) {
                use_variant(v5);
                kern_matmul(p, t, wq, n_out, n_in, x, 1, y5, n_out, wb);
                use_variant(vv);
                kern_matmul(p, t, wq, n_out, n_in, x, 1, yv, n_out, wb);
                CHECKF(memcmp(y5, yv, (size_t)n_out * sizeof *y5) == 0, "%s n_in %lld, %s: avxvnni != avx512",
                       ggml_type_name(t), (long long)n_in, p ? "2 threads" : "1 thread");
                if (p)
                    break;
            }
            free(wq);
            free(wb);
        }
    use_best_variant();
    free(w);
    free(x);
    free(y5);
    free(yv);
    pool_free(pool);
}

/* The amx variant's tiles (gemm_amx.c), against the reference: k longer
 * than one staged pass (4,096 values of the q8_0 family, q4_K and q5_K;
 * 2,048 of q6_K) and short; weight rows in whole groups of 16 and a
 * remainder; token counts below (4: the k-quants' 9; q6_K's tile starts
 * at 8), at and past one packed group; weights of
 * raw random bytes (q8_0: -128 included; k-quants: any scales, mins and
 * codes under small finite super-block scales) as well as quantized ones;
 * outputs pre-filled with NaN, ldy > n_out (the gap must stay NaN). */
TEST(test_matmul_amx)
{
    int va = supported_variant("amx");
    if (va < 0)
        SKIP("CPU lacks AMX-INT8 (or the OS does not let this process use it)");
    use_variant(va);
    CHECK(kern_tab.tile(GGML_TYPE_Q8_0, 16).pack != NULL && kern_tab.tile(GGML_TYPE_Q4_0, 64).pack != NULL);
    CHECK(kern_tab.tile(GGML_TYPE_Q4_K, 9).pack != NULL && kern_tab.tile(GGML_TYPE_Q6_K, 9).pack != NULL &&
          kern_tab.tile(GGML_TYPE_Q5_K, 4).pack != NULL);
    static const enum ggml_type ts[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q5_0, GGML_TYPE_IQ4_NL,
                                        GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    static const int64_t n_ins[] = {4096 + 5 * 32, 96}, k_ins[] = {4096 + 3 * 256, 256};
    static const int64_t amx_toks[] = {4, 9, 16, 17, 77};
    const int64_t n_out = 35, ldy = n_out + 5, max_tok = 77, max_in = k_ins[0];
    struct pool *pool = pool_new(2);
    MAAS_ASSERT(pool);
    struct rng r;
    rng_seed(&r, 4242);
    float *w = malloc((size_t)(n_out * max_in) * sizeof *w), *x = malloc((size_t)(max_tok * max_in) * sizeof *x);
    float *y0 = malloc((size_t)(max_tok * ldy) * sizeof *y0), *y1 = malloc((size_t)(max_tok * ldy) * sizeof *y1);
    MAAS_ASSERT(w && x && y0 && y1);
    for (int64_t i = 0; i < n_out * max_in; i++)
        w[i] = (float)rng_normal(&r);
    for (int64_t i = 0; i < max_tok * max_in; i++)
        x[i] = (float)(rng_normal(&r) * (i % 11 == 4 ? 7.0 : 1.0));
    for (size_t k = 0; k < sizeof ts / sizeof *ts; k++) {
        const enum ggml_type t = ts[k];
        const bool kq = ggml_blck_size(t) == QK_K;
        for (int raw = 0; raw <= (t == GGML_TYPE_Q8_0 || kq); raw++)
            for (size_t ni = 0; ni < 2; ni++) {
                const int64_t n_in = kq ? k_ins[ni] : n_ins[ni];
                const size_t wrow = ggml_row_size(t, n_in), bsz = ggml_row_size(t, ggml_blck_size(t));
                char *wq = malloc(wrow * (size_t)n_out);
                void *wb = malloc(kern_matmul_wsize(t, n_in, max_tok) + 1);
                MAAS_ASSERT(wq && wb);
                kern_quantize(t, w, wq, n_out, n_in);
                if (raw && !kq) /* every byte value as a weight, scales kept small */
                    for (int64_t o_ = 0; o_ < n_out; o_++)
                        for (int64_t b = 0; b < n_in / 32; b++) {
                            block_q8_0 *blk = (block_q8_0 *)(wq + (size_t)o_ * wrow) + b;
                            blk->d = fp32_to_fp16(0.01f * (float)(1 + (uint32_t)rng_u64(&r) % 8));
                            for (int i = 0; i < 32; i++)
                                blk->qs[i] = (int8_t)((uint32_t)rng_u64(&r) & 0xff);
                            if (b == 0)
                                blk->qs[0] = -128;
                        }
                if (raw && kq) /* every byte random, then d (and dmin) small and finite */
                    for (int64_t o_ = 0; o_ < n_out; o_++)
                        for (int64_t b = 0; b < n_in / QK_K; b++) {
                            char *blk = wq + (size_t)o_ * wrow + (size_t)b * bsz;
                            for (size_t i = 0; i < bsz; i++)
                                blk[i] = (char)(rng_u64(&r) & 0xff);
                            const ggml_half d = fp32_to_fp16(0.001f * (float)(1 + (uint32_t)rng_u64(&r) % 8));
                            const ggml_half dm = fp32_to_fp16(0.001f * (float)(1 + (uint32_t)rng_u64(&r) % 8));
                            if (t == GGML_TYPE_Q6_K) {
                                ((block_q6_K *)blk)->d = d;
                            } else { /* q4_K and q5_K: d and dmin first */
                                ((block_q4_K *)blk)->d = d;
                                ((block_q4_K *)blk)->dmin = dm;
                            }
                        }
                for (size_t ti = 0; ti < sizeof amx_toks / sizeof *amx_toks; ti++) {
                    const int64_t n_tok = amx_toks[ti];
                    use_variant(0);
                    for (int64_t i = 0; i < max_tok * ldy; i++)
                        y0[i] = y1[i] = NAN;
                    kern_matmul(NULL, t, wq, n_out, n_in, x, n_tok, y0, ldy, wb);
                    use_variant(va);
                    kern_matmul(pool, t, wq, n_out, n_in, x, n_tok, y1, ldy, wb);
                    int bad = 0, gap = 0;
                    for (int64_t tk = 0; tk < n_tok; tk++)
                        for (int64_t o_ = 0; o_ < ldy; o_++) {
                            const float a = y0[tk * ldy + o_], b = y1[tk * ldy + o_];
                            if (o_ >= n_out)
                                gap += !isnan(b);
                            else
                                bad += !(fabsf(a - b) <= 1e-3f * (fabsf(a) + 1.0f));
                        }
                    CHECKF(bad == 0 && gap == 0, "amx %s%s n_in %lld n_tok %lld: %d outputs differ, %d written past n_out",
                           ggml_type_name(t), raw ? " (raw bytes)" : "", (long long)n_in, (long long)n_tok, bad, gap);
                }
                free(wq);
                free(wb);
            }
    }
    use_best_variant();
    free(w);
    free(x);
    free(y0);
    free(y1);
    pool_free(pool);
}

/* The amx variant's bf16 tile (bf16_amx.c), against the reference
 * variant and against the exact product of the weights with the
 * activations rounded to bf16 (fp32_to_bf16), in double. The tile's
 * products are exactly those of the bf16-rounded values, so the second
 * comparison is tight: 1e-4 of sum |w_i * bf16(a_i)| (f32 accumulation).
 * The reference dots the weights with the f32 activations: rounding each
 * activation to bf16 (8 significant bits) moves each product by up to 2^-8
 * of its magnitude, hence 2^-8 + 1e-4 of sum |w_i * a_i| there. k of one
 * block, of several with a partial last one (37, 4,263) and a multiple of
 * 32; weight rows in whole groups of 16 and a remainder (35) and fewer
 * than 16 (7); token counts 2, 4, 16, 17 and 77 (below, at and past one
 * packed group, past the tile's 64 tokens); outputs pre-filled with NaN,
 * ldy > n_out (the gap must stay NaN). Then kern_matmul_multi of products
 * sharing their packed activations. */
TEST(test_matmul_amx_bf16)
{
    int va = supported_variant("amx");
    if (va < 0)
        SKIP("CPU lacks AMX-INT8 (or the OS does not let this process use it)");
    use_variant(va);
    const bool tiled = kern_tab.tile(GGML_TYPE_BF16, 16).pack != NULL;
    use_best_variant();
    if (!tiled)
        SKIP("CPU lacks AMX-BF16");
    static const int64_t n_ins[] = {4263, 96, 37};
    static const int64_t n_outs_b[] = {35, 7};
    static const int64_t toks[] = {2, 4, 16, 17, 77};
    const int64_t max_out = 35, max_in = 4263, max_tok = 77, ldy = max_out + 5;
    struct pool *pool = pool_new(2);
    MAAS_ASSERT(pool);
    struct rng r;
    rng_seed(&r, 1616);
    float *w = malloc((size_t)(max_out * max_in) * sizeof *w), *x = malloc((size_t)(max_tok * max_in) * sizeof *x);
    float *xr = malloc((size_t)(max_tok * max_in) * sizeof *xr), *wd = malloc((size_t)max_in * sizeof *wd);
    float *y0 = malloc((size_t)(max_tok * ldy) * sizeof *y0), *y1 = malloc((size_t)(max_tok * ldy) * sizeof *y1);
    uint16_t *wq = malloc((size_t)(max_out * max_in) * sizeof *wq);
    MAAS_ASSERT(w && x && xr && wd && y0 && y1 && wq);
    for (int64_t i = 0; i < max_out * max_in; i++)
        w[i] = (float)rng_normal(&r);
    for (int64_t i = 0; i < max_tok * max_in; i++) {
        x[i] = (float)(rng_normal(&r) * (i % 11 == 4 ? 7.0 : 1.0));
        xr[i] = bf16_to_fp32(fp32_to_bf16(x[i]));
    }
    for (size_t ni = 0; ni < sizeof n_ins / sizeof *n_ins; ni++)
        for (size_t oi = 0; oi < sizeof n_outs_b / sizeof *n_outs_b; oi++) {
            const int64_t n_in = n_ins[ni], n_out = n_outs_b[oi];
            void *wb = malloc(kern_matmul_wsize(GGML_TYPE_BF16, n_in, max_tok) + 1);
            MAAS_ASSERT(wb);
            kern_quantize(GGML_TYPE_BF16, w, wq, n_out, n_in);
            for (size_t ti = 0; ti < sizeof toks / sizeof *toks; ti++) {
                const int64_t n_tok = toks[ti];
                for (int64_t i = 0; i < max_tok * ldy; i++)
                    y0[i] = y1[i] = NAN;
                use_variant(0);
                kern_matmul(NULL, GGML_TYPE_BF16, wq, n_out, n_in, x, n_tok, y0, ldy, wb);
                use_variant(va);
                kern_matmul(pool, GGML_TYPE_BF16, wq, n_out, n_in, x, n_tok, y1, ldy, wb);
                int bad_ref = 0, bad_exact = 0, gap = 0;
                for (int64_t o_ = 0; o_ < n_out; o_++) {
                    for (int64_t k = 0; k < n_in; k++)
                        wd[k] = bf16_to_fp32(wq[o_ * n_in + k]);
                    for (int64_t tk = 0; tk < n_tok; tk++) {
                        double s = 0, sa = 0, sar = 0;
                        for (int64_t k = 0; k < n_in; k++) {
                            s += (double)wd[k] * xr[tk * n_in + k];
                            sa += fabs((double)wd[k] * x[tk * n_in + k]);
                            sar += fabs((double)wd[k] * xr[tk * n_in + k]);
                        }
                        const float a = y0[tk * ldy + o_], b = y1[tk * ldy + o_];
                        bad_ref += !(fabs((double)a - b) <= (0x1p-8 + 1e-4) * sa + 1e-6);
                        bad_exact += !(fabs(b - s) <= 1e-4 * sar + 1e-6);
                    }
                }
                for (int64_t tk = 0; tk < n_tok; tk++)
                    for (int64_t o_ = n_out; o_ < ldy; o_++)
                        gap += !isnan(y1[tk * ldy + o_]);
                CHECKF(bad_ref == 0 && bad_exact == 0 && gap == 0,
                       "amx bf16 n_out %lld n_in %lld n_tok %lld: %d off the reference, %d off the exact bf16 "
                       "product, %d written past n_out",
                       (long long)n_out, (long long)n_in, (long long)n_tok, bad_ref, bad_exact, gap);
            }
            free(wb);
        }
    /* kern_matmul_multi: three products of one input (packed once, like
     * forward.c's q, k and v) and one of another token count, in a wbuf of
     * kern_matmul_wsize_bound's size: bit for bit one kern_matmul each */
    use_variant(va);
    const int64_t mn_in = 96, mt[4] = {17, 17, 17, 5}, mo[4] = {35, 7, 16, 20};
    struct kern_mm mm[4];
    float *ym[4], *ys[4];
    size_t bound = 0;
    for (int i = 0; i < 4; i++) {
        const size_t ny = (size_t)(mt[i] * (mo[i] + 2));
        uint16_t *wi = wq + i * max_out * mn_in;
        kern_quantize(GGML_TYPE_BF16, w + i * max_out * mn_in, wi, mo[i], mn_in);
        ym[i] = malloc(ny * sizeof(float));
        ys[i] = malloc(ny * sizeof(float));
        MAAS_ASSERT(ym[i] && ys[i]);
        for (size_t k = 0; k < ny; k++)
            ym[i][k] = ys[i][k] = NAN;
        mm[i] = (struct kern_mm){.wt = GGML_TYPE_BF16, .W = wi, .n_out = mo[i], .x = x, .n_tok = mt[i], .y = ym[i],
                                 .ldy = mo[i] + 2};
        bound += kern_matmul_wsize_bound(GGML_TYPE_BF16, mn_in, mt[i], 1);
    }
    CHECK(kern_matmul_multi_wsize(mm, 4, mn_in) <= bound);
    void *wbm = malloc(bound + 1), *wb1 = malloc(kern_matmul_wsize(GGML_TYPE_BF16, mn_in, 17) + 1);
    MAAS_ASSERT(wbm && wb1);
    kern_matmul_multi(pool, mm, 4, mn_in, wbm);
    for (int i = 0; i < 4; i++) {
        kern_matmul(pool, GGML_TYPE_BF16, mm[i].W, mo[i], mn_in, x, mt[i], ys[i], mm[i].ldy, wb1);
        CHECKF(memcmp(ym[i], ys[i], (size_t)(mt[i] * mm[i].ldy) * sizeof(float)) == 0,
               "amx bf16 kern_matmul_multi product %d differs from kern_matmul", i);
        free(ym[i]);
        free(ys[i]);
    }
    free(wbm);
    free(wb1);
    use_best_variant();
    free(w);
    free(x);
    free(xr);
    free(wd);
    free(y0);
    free(y1);
    free(wq);
    pool_free(pool);
}

/* Decode (one token) of the k-quants, every variant: kern_matmul's output
 * is, bit for bit, the type's vec_dot of each row with the converted
 * activation, whichever kernel ran (the per-row vec_dot, or the table's
 * decode kernel over a run of rows, which must do vec_dot's float
 * operations). n_out 1..7, 9, 13 and 67 (every remainder of a group of 2, 4
 * or 8 rows, should a kernel take rows in groups); pools of 1 and 2 threads
 * cut the rows into different units; rows of 1, 3 and 4 super-blocks. */
TEST(test_matmul_decode_vs_vec_dot)
{
    static const enum ggml_type ts[] = {GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K,
                                        GGML_TYPE_Q6_K};
    static const int64_t n_ins[] = {256, 768, 1024};
    static const int64_t n_outs_d[] = {1, 2, 3, 4, 5, 6, 7, 9, 13, 67};
    enum { MAX_OUT = 67, MAX_IN = 1024 };
    struct pool *pools[2] = {pool_new(1), pool_new(2)};
    MAAS_ASSERT(pools[0] && pools[1]);
    float *w = malloc((size_t)MAX_OUT * MAX_IN * sizeof *w), *x = malloc(MAX_IN * sizeof *x);
    float *y = malloc((MAX_OUT + 1) * sizeof *y);
    char *wq = malloc(ggml_row_size(GGML_TYPE_Q6_K, MAX_IN) * MAX_OUT);
    char *aq = malloc(ggml_row_size(GGML_TYPE_Q8_K, MAX_IN));
    void *wbuf = malloc(kern_matmul_wsize(GGML_TYPE_Q6_K, MAX_IN, 1) + 64);
    MAAS_ASSERT(w && x && y && wq && aq && wbuf);
    struct rng r;
    rng_seed(&r, 99);
    for (int v = 0; v < kern_variant_count(); v++) {
        if (!kern_variant_supported(v))
            continue;
        use_variant(v);
        int bad = 0, cases = 0;
        for (size_t ti = 0; ti < sizeof ts / sizeof *ts; ti++)
            for (size_t ii = 0; ii < sizeof n_ins / sizeof *n_ins; ii++) {
                /* MAX_OUT rows, of which each case takes the first n_out */
                const enum ggml_type t = ts[ti];
                const int64_t n_in = n_ins[ii];
                const struct kern_type_ops *o = kern_ops(t);
                for (int64_t k = 0; k < MAX_OUT * n_in; k++)
                    w[k] = (float)rng_normal(&r) * 0.5f;
                for (int64_t k = 0; k < n_in; k++)
                    x[k] = (float)rng_normal(&r);
                kern_quantize(t, w, wq, MAX_OUT, n_in);
                o->from_float_act(x, aq, n_in);
                const size_t wrow = ggml_row_size(t, n_in);
                for (size_t oi = 0; oi < sizeof n_outs_d / sizeof *n_outs_d; oi++)
                    for (int p = 0; p < 2; p++) {
                        const int64_t n_out = n_outs_d[oi];
                        y[n_out] = -1.0f;
                        kern_matmul(pools[p], t, wq, n_out, n_in, x, 1, y, n_out, wbuf);
                        for (int64_t o_ = 0; o_ < n_out; o_++) {
                            const float want = o->vec_dot(n_in, wq + (size_t)o_ * wrow, aq);
                            if (memcmp(&want, &y[o_], sizeof want) != 0 && bad++ < 3)
                                fprintf(stderr, "  %s %s n_out %lld n_in %lld row %lld: %.9g vs vec_dot %.9g\n",
                                        kern_variant_name(v), ggml_type_name(t), (long long)n_out, (long long)n_in,
                                        (long long)o_, (double)y[o_], (double)want);
                        }
                        bad += y[n_out] != -1.0f; /* nothing written past the last row */
                        cases++;
                    }
            }
        CHECKF(bad == 0, "%s: %d outputs of %d cases differ from vec_dot", kern_variant_name(v), bad, cases);
    }
    use_best_variant();
    free(w);
    free(x);
    free(y);
    free(wq);
    free(aq);
    free(wbuf);
    pool_free(pools[0]);
    pool_free(pools[1]);
}

int main(void)
{
    kernels_init();
    RUN(test_matmul);
    RUN(test_matmul_multi);
    RUN(test_matmul_large_vs_ref);
    RUN(test_gemv_avxvnni_is_avx512);
    RUN(test_matmul_amx);
    RUN(test_matmul_amx_bf16);
    RUN(test_matmul_decode_vs_vec_dot);
    TEST_END();
}
