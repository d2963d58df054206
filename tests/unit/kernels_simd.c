/*
 * AVX2 kernels against the reference, type by type: for seeded random rows
 * of 1, 2, 3, 7 and 33 blocks (and longer ones for the float types),
 *  - the AVX2 activation quantizer writes exactly the reference's bytes
 *    (including rounding ties, zero blocks and +-max ties);
 *  - the AVX2 vec_dot agrees with the reference vec_dot on the same inputs
 *    within 1e-5 of sum |w_i * a_i| (the integer parts are exact on both
 *    sides; only the order of the float scale accumulation differs), and
 *    f16/bf16 within 1e-3 relative of a double dot product;
 *  - the AVX2 to_float gives the reference floats, bit for bit.
 * Skips cleanly when the CPU has no AVX2.
 */
#include "kernels/kernels.h"
#include "test.h"

#include <stdint.h>

static const enum ggml_type types[] = {
    GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0,
    GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ4_NL,
};
#define N_TYPES (sizeof types / sizeof *types)

static void fill_normal(struct rng *r, float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(r) * scale;
}

/* Rows that exercise the quantizers' corner cases. kind 0: plain random;
 * 1: exact rounding ties (x = k + 0.5 with max 127, so d = 1 / iscale = -1);
 * 2: a zero block first, then random; 3: +max and -max both present. */
static void fill_row(struct rng *r, float *x, int64_t n, int kind)
{
    fill_normal(r, x, n, kind == 0 ? 1.0f : 3.0f);
    if (n % 32 != 0) /* the corner cases are per block of 32 */
        return;
    if (kind == 1) {
        for (int64_t i = 0; i < n; i++)
            x[i] = (float)((int)(rng_u64(r) % 253) - 126) + 0.5f;
        for (int64_t i = 0; i < n; i += 32)
            x[i + (int64_t)(rng_u64(r) % 32)] = (rng_u64(r) & 1) ? 127.0f : -127.0f;
    } else if (kind == 2) {
        for (int64_t i = 0; i < n && i < 256; i++)
            x[i] = 0.0f;
    } else if (kind == 3) {
        for (int64_t i = 0; i < n; i += 32) {
            x[i + 3] = 50.0f;
            x[i + 20] = -50.0f;
        }
    }
}

static void *alloc_filled(size_t n, int byte)
{
    void *p = malloc(n ? n : 1);
    MAAS_ASSERT(p);
    memset(p, byte, n);
    return p;
}

static int64_t block_elems(enum ggml_type t)
{
    int64_t b = ggml_blck_size(t);
    return b;
}

static double dot_abs_deq(enum ggml_type wt, const void *wq, enum ggml_type at, const void *aq, const float *af,
                          int64_t n, double *exact)
{
    float *wd = malloc((size_t)n * sizeof *wd), *ad = malloc((size_t)n * sizeof *ad);
    MAAS_ASSERT(wd && ad);
    kern_ops(wt)->to_float(wq, wd, n);
    if (at == GGML_TYPE_F32)
        memcpy(ad, af, (size_t)n * sizeof *ad);
    else
        kern_ops(at)->to_float(aq, ad, n);
    double s = 0, sa = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)wd[i] * ad[i];
        sa += fabs((double)wd[i] * ad[i]);
    }
    free(wd);
    free(ad);
    *exact = s;
    return sa;
}

static void check_type(enum ggml_type t, struct rng *r)
{
    static const int64_t quant_blocks[] = {1, 2, 3, 7, 33};
    static const int64_t float_lens[] = {1, 2, 3, 7, 33, 257, 4097};
    const bool is_float = block_elems(t) == 1;
    const int n_len = is_float ? 7 : 5;
    MAAS_ASSERT(kernels_force_isa(KERN_REF) == 0);
    const struct kern_type_ops ref = *kern_ops(t);
    CHECKF(ref.vec_dot && ref.from_float && ref.to_float, "%s: no reference", ggml_type_name(t));
    if (!ref.vec_dot || !ref.from_float || !ref.to_float)
        return;
    const enum ggml_type at = ref.vec_dot_type;
    MAAS_ASSERT(kernels_force_isa(KERN_AVX2) == 0);
    const struct kern_type_ops simd = *kern_ops(t);
    CHECKF(simd.vec_dot != ref.vec_dot, "%s: AVX2 table has no vec_dot of its own", ggml_type_name(t));
    CHECKF(at == GGML_TYPE_F32 || simd.from_float_act != ref.from_float_act,
           "%s: AVX2 table has no activation quantizer of its own", ggml_type_name(t));

    for (int li = 0; li < n_len; li++) {
        const int64_t n = is_float ? float_lens[li] : quant_blocks[li] * block_elems(t);
        for (int kind = 0; kind < 4; kind++) {
            float *w = malloc((size_t)n * sizeof *w), *a = malloc((size_t)n * sizeof *a);
            MAAS_ASSERT(w && a);
            fill_normal(r, w, n, 0.5f);
            fill_row(r, a, n, kind);
            size_t wsz = ggml_row_size(t, n), asz = at == GGML_TYPE_F32 ? (size_t)n * 4 : ggml_row_size(at, n);
            void *wq = alloc_filled(wsz, 0);
            void *aq_ref = alloc_filled(asz, 0xa5), *aq_simd = alloc_filled(asz, 0x5a);
            ref.from_float(w, wq, n);
            ref.from_float_act(a, aq_ref, n);
            simd.from_float_act(a, aq_simd, n);
            CHECKF(memcmp(aq_ref, aq_simd, asz) == 0, "%s: activation bytes differ (n=%lld kind %d)",
                   ggml_type_name(t), (long long)n, kind);

            float d_ref = ref.vec_dot(n, wq, aq_ref), d_simd = simd.vec_dot(n, wq, aq_ref);
            double exact, sabs = dot_abs_deq(t, wq, at, aq_ref, a, n, &exact);
            if (is_float) {
                CHECKF(fabs(d_simd - exact) <= 1e-3 * fabs(exact) + 1e-6 * sabs, "%s n=%lld: %.9g vs %.9g",
                       ggml_type_name(t), (long long)n, d_simd, exact);
            } else {
                CHECKF(fabs((double)d_simd - d_ref) <= 1e-5 * sabs + 1e-30, "%s n=%lld kind %d: %.9g vs ref %.9g",
                       ggml_type_name(t), (long long)n, kind, d_simd, d_ref);
                /* and both near the exact dot of the dequantized rows (q8_1
                 * stores d * sum(q) in fp16, an error of up to 2^-11 of it) */
                double tol = at == GGML_TYPE_Q8_1 ? 2e-3 : 1e-4;
                CHECKF(fabs((double)d_ref - exact) <= tol * sabs + 1e-30, "%s: ref %.9g vs exact %.9g",
                       ggml_type_name(t), d_ref, exact);
            }

            float *f_ref = malloc((size_t)n * sizeof *f_ref), *f_simd = malloc((size_t)n * sizeof *f_simd);
            MAAS_ASSERT(f_ref && f_simd);
            for (int64_t i = 0; i < n; i++)
                f_ref[i] = f_simd[i] = NAN;
            ref.to_float(wq, f_ref, n);
            simd.to_float(wq, f_simd, n);
            CHECKF(memcmp(f_ref, f_simd, (size_t)n * sizeof *f_ref) == 0, "%s: to_float differs (n=%lld)",
                   ggml_type_name(t), (long long)n);
            free(f_ref);
            free(f_simd);
            free(wq);
            free(aq_ref);
            free(aq_simd);
            free(w);
            free(a);
        }
    }
}

TEST(test_simd_types)
{
    if (kernels_cpu_isa() < KERN_AVX2)
        SKIP("CPU has no AVX2");
    struct rng r;
    rng_seed(&r, 20261129);
    for (size_t k = 0; k < N_TYPES; k++)
        check_type(types[k], &r);
    kernels_force_isa(kernels_cpu_isa());
}

/* The activation quantizers of q8_0 / q8_1 / q8_K, called directly on many
 * rows with large and tiny magnitudes. */
TEST(test_simd_act_quantizers_bytes)
{
    if (kernels_cpu_isa() < KERN_AVX2)
        SKIP("CPU has no AVX2");
    static const enum ggml_type acts[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q8_1, GGML_TYPE_Q8_K};
    struct rng r;
    rng_seed(&r, 7);
    const int64_t n = 4 * QK_K;
    float *x = malloc(n * sizeof *x);
    MAAS_ASSERT(x);
    for (size_t k = 0; k < 3; k++) {
        MAAS_ASSERT(kernels_force_isa(KERN_REF) == 0);
        kern_from_float_fn fr = kern_ops(acts[k])->from_float_act;
        MAAS_ASSERT(kernels_force_isa(KERN_AVX2) == 0);
        kern_from_float_fn fs = kern_ops(acts[k])->from_float_act;
        CHECKF(fr && fs, "%s: no activation quantizer", ggml_type_name(acts[k]));
        if (!fr || !fs)
            continue;
        size_t sz = ggml_row_size(acts[k], n);
        unsigned char *br = alloc_filled(sz, 0x11), *bs = alloc_filled(sz, 0x22);
        int bad = 0;
        for (int it = 0; it < 200; it++) {
            float scale = powf(10.0f, (float)(it % 9) - 4.0f);
            fill_normal(&r, x, n, scale);
            if (it % 5 == 0) /* a block whose largest value appears with both signs */
                x[1] = -(x[0] = 4.0f * scale);
            fr(x, br, n);
            fs(x, bs, n);
            bad += memcmp(br, bs, sz) != 0;
        }
        CHECKF(bad == 0, "%s: %d of 200 rows differ", ggml_type_name(acts[k]), bad);
        free(br);
        free(bs);
    }
    free(x);
    kernels_force_isa(kernels_cpu_isa());
}

int main(void)
{
    kernels_init();
    RUN(test_simd_types);
    RUN(test_simd_act_quantizers_bytes);
    TEST_END();
}
