/*
 * kernels: the variant list and its switch, and the operations added to the
 * table with the variants (attention, the f16 store):
 *  - variant 0 is "ref" and always supported; names are unique; an unknown
 *    name is ERR_NOT_FOUND and an unsupported one ERR_UNAVAILABLE, both
 *    leaving the table as it was;
 *  - MAAS_KERNELS naming no variant makes kern_init fail with ERR_INVALID,
 *    naming the variable and the value, and the best variant is used;
 *  - kern_attn of every supported variant against the reference, f32 and
 *    f16 caches, one head and grouped heads, head sizes with and without a
 *    tail past the vector width, odd position counts over a shuffled block
 *    table, into NaN-prefilled outputs;
 *  - kern_store_f16 of every variant gives the reference's bits;
 *  - kern_gelu of every variant is within 1e-5 (relative) of the reference;
 *  - the VNNI multiply-add probe is positive exactly when the best variant
 *    is avx512 or avxvnni (its speed is bench_peak's business, not a
 *    test's).
 */
#include "kernels/kernels.h"
#include "kernels/kernels_int.h"
#include "test.h"
#include "kernels_variants.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

TEST(test_variant_list)
{
    int n = kern_variant_count();
    CHECK(n >= 1);
    CHECK(kern_variant_name(0) && !strcmp(kern_variant_name(0), "ref"));
    CHECK(kern_variant_supported(0));
    CHECK(kern_variant_name(-1) == NULL && kern_variant_name(n) == NULL);
    CHECK(!kern_variant_supported(-1) && !kern_variant_supported(n));
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            CHECKF(strcmp(kern_variant_name(i), kern_variant_name(j)) != 0, "variants %d and %d share a name", i, j);
}

TEST(test_use_variant)
{
    struct err e;
    const char *before = kern_variant_current();
    CHECK(kern_use_variant("no-such-isa", &e) == -1 && e.code == ERR_NOT_FOUND);
    CHECKF(strstr(e.msg, "no-such-isa") && strstr(e.msg, "ref"), "message: %s", e.msg);
    CHECK(!strcmp(kern_variant_current(), before));
    for (int v = 0; v < kern_variant_count(); v++) {
        const char *name = kern_variant_name(v);
        if (kern_variant_supported(v)) {
            CHECKF(kern_use_variant(name, &e) == 0, "%s: %s", name, e.msg);
            CHECK(!strcmp(kern_variant_current(), name));
        } else {
            CHECK(kern_use_variant(name, &e) == -1 && e.code == ERR_UNAVAILABLE);
            CHECK(strcmp(kern_variant_current(), name) != 0);
        }
    }
    use_best_variant();
}

/* ---- attention ---- */
#define BS 4          /* positions per block */
#define N_BLOCKS 24
#define MAX_HD 72
#define MAX_Q 3

struct attn_case {
    int hd, n_pos, n_q;
    enum ggml_type kv;
};

/* A cache of N_BLOCKS blocks of BS positions of one KV head, the sequence's
 * block table a fixed shuffle. Returns the largest |output| difference from
 * the reference relative to max |v| (NaN if an output was left unwritten). */
static double attn_diff(const struct attn_case *c, int v, struct rng *r)
{
    static const int32_t blocks[N_BLOCKS] = {7, 2, 19, 0, 11, 5, 23, 14, 1, 9, 16, 3,
                                             21, 12, 6, 18, 4, 10, 22, 8, 15, 13, 20, 17};
    const size_t stride = (size_t)BS * c->hd, n_el = stride * N_BLOCKS;
    const size_t elt = c->kv == GGML_TYPE_F16 ? 2 : 4;
    void *k = malloc(n_el * elt), *vv = malloc(n_el * elt);
    float q[MAX_Q * MAX_HD], out_ref[MAX_Q * MAX_HD], out[MAX_Q * MAX_HD];
    MAAS_ASSERT(k && vv);
    double vmax = 0;
    for (size_t i = 0; i < n_el; i++) {
        float kf = (float)rng_normal(r), vf = (float)rng_normal(r);
        if (c->kv == GGML_TYPE_F16) {
            ((uint16_t *)k)[i] = fp32_to_fp16(kf);
            ((uint16_t *)vv)[i] = fp32_to_fp16(vf);
            vf = fp16_to_fp32(fp32_to_fp16(vf));
        } else {
            ((float *)k)[i] = kf;
            ((float *)vv)[i] = vf;
        }
        vmax = fabs(vf) > vmax ? fabs(vf) : vmax;
    }
    for (int i = 0; i < c->n_q * c->hd; i++) {
        q[i] = (float)rng_normal(r);
        out_ref[i] = out[i] = NAN;
    }
    struct kern_attn a = {.q = q, .out = out_ref, .k = k, .v = vv, .block_stride = stride, .blocks = blocks,
                          .n_pos = c->n_pos, .block_size = BS, .head_dim = c->hd,
                          .scale = 1.0f / sqrtf((float)c->hd)};
    use_variant(0);
    kern_attn(&a, c->kv, c->n_q);
    use_variant(v);
    a.out = out;
    kern_attn(&a, c->kv, c->n_q);
    free(k);
    free(vv);
    double worst = 0;
    for (int i = 0; i < c->n_q * c->hd; i++) {
        double d = fabs((double)out[i] - out_ref[i]) / vmax;
        if (isnan(d))
            return NAN;
        worst = d > worst ? d : worst;
    }
    return worst;
}

TEST(test_attn_variants)
{
    if (simd_variant_count() == 0)
        SKIP("CPU supports no kernel variant but the reference");
    static const int hds[] = {8, 20, 64, 72};
    static const int n_pos[] = {1, 3, 5, 33, 70, BS * N_BLOCKS};
    struct rng r;
    rng_seed(&r, 4242);
    FOR_EACH_SIMD_VARIANT(v)
    {
        for (size_t hi = 0; hi < sizeof hds / sizeof *hds; hi++)
            for (size_t pi = 0; pi < sizeof n_pos / sizeof *n_pos; pi++)
                for (int f16 = 0; f16 < 2; f16++)
                    for (int n_q = 1; n_q <= MAX_Q; n_q += 2) {
                        struct attn_case c = {hds[hi], n_pos[pi], n_q, f16 ? GGML_TYPE_F16 : GGML_TYPE_F32};
                        double d = attn_diff(&c, v, &r);
                        CHECKF(d < 1e-5, "%s: head_dim %d, %d positions, %d heads, %s cache: off by %g",
                               kern_variant_name(v), c.hd, c.n_pos, c.n_q, f16 ? "f16" : "f32", d);
                    }
    }
    use_best_variant();
}

TEST(test_store_f16_variants)
{
    if (simd_variant_count() == 0)
        SKIP("CPU supports no kernel variant but the reference");
    enum { N = 67 };
    float x[N];
    uint16_t ref[N + 1], got[N + 1];
    struct rng r;
    rng_seed(&r, 17);
    FOR_EACH_SIMD_VARIANT(v)
    {
        for (int it = 0; it < 50; it++) {
            double scale = pow(10.0, it % 13 - 8); /* subnormal halves up to overflow */
            for (int i = 0; i < N; i++)
                x[i] = (float)(rng_normal(&r) * scale);
            x[it % N] = it % 2 ? INFINITY : -65520.0f;
            for (int n = 1; n <= N; n += 11) {
                memset(ref, 0xa5, sizeof ref);
                memset(got, 0x5a, sizeof got);
                use_variant(0);
                kern_store_f16(ref, x, n);
                use_variant(v);
                kern_store_f16(got, x, n);
                CHECKF(memcmp(ref, got, (size_t)n * 2) == 0 && got[n] == 0x5a5a, "%s: n=%d, scale %g",
                       kern_variant_name(v), n, scale);
            }
        }
    }
    use_best_variant();
}

/* Runs first, before anything starts the kernels: a MAAS_KERNELS that
 * names no variant. */
TEST(test_env_unknown_variant)
{
    setenv("MAAS_KERNELS", "no-such-isa", 1);
    struct err e;
    CHECK(kern_init(&e) == -1 && e.code == ERR_INVALID);
    CHECKF(strstr(e.msg, "MAAS_KERNELS") && strstr(e.msg, "no-such-isa"), "message: %s", e.msg);
    int best = 0;
    for (int v = 0; v < kern_variant_count(); v++)
        if (kern_variant_supported(v))
            best = v;
    CHECK(!strcmp(kern_variant_current(), kern_variant_name(best)));
    unsetenv("MAAS_KERNELS");
}

/* KERN_MAC_I8_VNNI: measured by the avx512 and avxvnni variants, 0 by the
 * others; the ymm probe of avxvnni (never the best where avx512 is
 * supported) is run directly when the CPU has it. */
TEST(test_vnni_peak)
{
    const char *best = NULL;
    for (int v = 0; v < kern_variant_count(); v++)
        if (kern_variant_supported(v))
            best = kern_variant_name(v);
    struct pool *pool = pool_new(1);
    MAAS_ASSERT(pool);
    double one = -1, vnni = kern_mac_peak(pool, KERN_MAC_I8_VNNI, &one);
    if (strcmp(best, "avx512") != 0 && strcmp(best, "avxvnni") != 0 && strcmp(best, "amx") != 0) {
        CHECKF(vnni == 0 && one == 0, "best variant %s: VNNI peak %g, one thread %g", best, vnni, one);
    } else {
        CHECKF(vnni > 0 && one > 0, "VNNI peak %g, one thread %g", vnni, one);
    }
    double one_a = -1, amx = kern_mac_peak(pool, KERN_MAC_I8_AMX, &one_a);
    if (strcmp(best, "amx") != 0) {
        CHECKF(amx == 0 && one_a == 0, "best variant %s: AMX peak %g, one thread %g", best, amx, one_a);
    } else { /* 16,384 MACs per instruction: far above the zmm VNNI rate */
        CHECKF(amx > 2 * vnni && one_a > 2 * one, "AMX peak %g (one thread %g) against VNNI %g (%g)", amx, one_a,
               vnni, one);
    }
    for (int v = 0; v < kern_variant_count(); v++) {
        if (strcmp(kern_variant_name(v), "avxvnni") != 0 || !kern_variant_supported(v))
            continue;
        use_variant(v);
        double one_y = -1, ymm = kern_tab.mac_peak(pool, KERN_MAC_I8_VNNI, &one_y);
        CHECKF(ymm > 0 && one_y > 0, "avxvnni's ymm VNNI peak %g, one thread %g", ymm, one_y);
        use_best_variant();
    }
    pool_free(pool);
}

/* kern_gelu of every variant against the reference, odd sizes, NaN-filled
 * outputs, in place too, over a range that reaches both saturations. */
TEST(test_gelu_variants)
{
    if (simd_variant_count() == 0)
        SKIP("CPU supports no kernel variant but the reference");
    static const int sizes[] = {1, 7, 31, 33, 4097};
    struct rng r;
    rng_seed(&r, 77);
    float *x = malloc(4097 * sizeof *x), *ref = malloc(4097 * sizeof *ref), *y = malloc(4097 * sizeof *y);
    FOR_EACH_SIMD_VARIANT(v)
    {
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
            int n = sizes[si];
            for (int i = 0; i < n; i++) {
                x[i] = (float)(rng_normal(&r) * (i % 5 == 4 ? 40.0 : 3.0));
                ref[i] = y[i] = NAN;
            }
            use_variant(0);
            kern_gelu(ref, x, n);
            use_variant(v);
            kern_gelu(y, x, n);
            double worst = 0;
            for (int i = 0; i < n; i++) {
                double d = fabs((double)y[i] - ref[i]) / (1e-3 + fabs((double)ref[i]));
                worst = isnan(d) || d > worst ? (isnan(d) ? INFINITY : d) : worst;
            }
            CHECKF(worst < 1e-5, "%s: gelu of %d values off by %g (relative)", kern_variant_name(v), n, worst);
            kern_gelu(x, x, n); /* in place */
            CHECKF(!memcmp(x, y, (size_t)n * sizeof *x), "%s: gelu in place differs", kern_variant_name(v));
        }
    }
    use_best_variant();
    free(x);
    free(ref);
    free(y);
}

int main(void)
{
    RUN(test_env_unknown_variant);
    RUN(test_variant_list);
    RUN(test_use_variant);
    RUN(test_attn_variants);
    RUN(test_store_f16_variants);
    RUN(test_gelu_variants);
    RUN(test_vnni_peak);
    TEST_END();
}
