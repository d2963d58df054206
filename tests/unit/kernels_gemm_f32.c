/*
 * kern_gemm_f32: the reference against hand-computed products for all four
 * transpose combinations; then every SIMD variant this CPU supports against
 * the reference on odd sizes (1, 3, 17, ..., K past one KERN_GEMM_KC block),
 * all four transposes, beta 0 with C pre-filled with NaN and beta 1, leading
 * dimensions larger than the rows (the padding must stay untouched), within
 * 1e-5 of sum |a||b| per element; results bit-identical on 1 and 2 threads,
 * for concurrent callers inside a pool job (pool NULL), and between SIMD
 * variants (they share the summation order). Skips the SIMD part cleanly
 * when the CPU supports no variant but the reference.
 */
#include "kernels/kernels.h"
#include "test.h"
#include "kernels_variants.h"

#include <stdint.h>

#define PAD 3       /* extra floats per row of A, B and C */
#define SENTINEL -777.0f

struct prob {
    bool ta, tb;
    int64_t M, N, K, lda, ldb, ldc;
    float *a, *b, *c0; /* c0: C before the call (NaN for beta 0) */
    float beta;
};

static float *alloc_floats(int64_t n)
{
    float *p = malloc((size_t)n * sizeof *p);
    MAAS_ASSERT(p);
    return p;
}

static void prob_init(struct prob *p, struct rng *r, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float beta)
{
    *p = (struct prob){.ta = ta, .tb = tb, .M = M, .N = N, .K = K, .beta = beta};
    p->lda = (ta ? M : K) + PAD, p->ldb = (tb ? K : N) + PAD, p->ldc = N + PAD;
    const int64_t na = (ta ? K : M) * p->lda, nb = (tb ? N : K) * p->ldb, nc = M * p->ldc;
    p->a = alloc_floats(na), p->b = alloc_floats(nb), p->c0 = alloc_floats(nc);
    for (int64_t i = 0; i < na; i++)
        p->a[i] = (float)rng_normal(r);
    for (int64_t i = 0; i < nb; i++)
        p->b[i] = (float)rng_normal(r);
    for (int64_t i = 0; i < nc; i++)
        p->c0[i] = i % p->ldc >= N ? SENTINEL : beta == 0 ? NAN : (float)rng_normal(r);
}

static void prob_free(struct prob *p)
{
    free(p->a), free(p->b), free(p->c0);
}

/* C (a fresh copy of c0) after kern_gemm_f32 on pool; the caller frees it. */
static float *run(const struct prob *p, struct pool *pool)
{
    float *c = alloc_floats(p->M * p->ldc);
    memcpy(c, p->c0, (size_t)(p->M * p->ldc) * sizeof *c);
    kern_gemm_f32(pool, p->ta, p->tb, p->M, p->N, p->K, p->a, p->lda, p->b, p->ldb, p->beta, c, p->ldc);
    return c;
}

/* sum over k of |op(A)[i][k]| |op(B)[k][j]|, plus |C0| for beta 1. */
static double abs_scale(const struct prob *p, int64_t i, int64_t j)
{
    double s = p->beta != 0 ? fabs(p->c0[i * p->ldc + j]) : 0;
    for (int64_t k = 0; k < p->K; k++) {
        float a = p->ta ? p->a[k * p->lda + i] : p->a[i * p->lda + k];
        float b = p->tb ? p->b[j * p->ldb + k] : p->b[k * p->ldb + j];
        s += fabs((double)a * b);
    }
    return s;
}

/* Elements of c farther from ref than 1e-5 of their scale (or, in the
 * padding, changed); prints the first. */
static int count_bad(const struct prob *p, const float *c, const float *ref, const char *what)
{
    int bad = 0;
    for (int64_t i = 0; i < p->M; i++)
        for (int64_t j = 0; j < p->ldc; j++) {
            const float x = c[i * p->ldc + j], y = ref[i * p->ldc + j];
            const bool ok = j >= p->N ? x == SENTINEL : fabs((double)x - y) <= 1e-5 * abs_scale(p, i, j) + 1e-30;
            if (!ok && bad++ == 0)
                fprintf(stderr, "  %s ta=%d tb=%d %lldx%lldx%lld beta=%g: C[%lld][%lld] = %.9g, reference %.9g\n",
                        what, p->ta, p->tb, (long long)p->M, (long long)p->N, (long long)p->K, p->beta,
                        (long long)i, (long long)j, x, y);
        }
    return bad;
}

/* The reference on a 2 x 3 x 2 product, all transposes, against numbers
 * worked out by hand: op(A) = [1 2; 3 4; 5 6] ... as M=3, K=2, op(B) =
 * [1 0 2; -1 3 1] (K=2, N=3). */
TEST(reference_by_hand)
{
    use_variant(0);
    const float a[6] = {1, 2, 3, 4, 5, 6};       /* op(A) 3x2, row-major */
    const float at[6] = {1, 3, 5, 2, 4, 6};      /* its transpose, 2x3 */
    const float b[6] = {1, 0, 2, -1, 3, 1};      /* op(B) 2x3 */
    const float bt[6] = {1, -1, 0, 3, 2, 1};     /* its transpose, 3x2 */
    const float want[9] = {-1, 6, 4, -1, 12, 10, -1, 18, 16};
    for (int t = 0; t < 4; t++) {
        const bool ta = t & 1, tb = t & 2;
        float c[9];
        for (int i = 0; i < 9; i++)
            c[i] = NAN;
        kern_gemm_f32(NULL, ta, tb, 3, 3, 2, ta ? at : a, ta ? 3 : 2, tb ? bt : b, tb ? 2 : 3, 0.0f, c, 3);
        for (int i = 0; i < 9; i++)
            CHECKF(c[i] == want[i], "ta=%d tb=%d C[%d] = %g, want %g", ta, tb, i, c[i], want[i]);
        kern_gemm_f32(NULL, ta, tb, 3, 3, 2, ta ? at : a, ta ? 3 : 2, tb ? bt : b, tb ? 2 : 3, 1.0f, c, 3);
        for (int i = 0; i < 9; i++)
            CHECKF(c[i] == 2 * want[i], "beta 1: ta=%d tb=%d C[%d] = %g, want %g", ta, tb, i, c[i], 2 * want[i]);
    }
    use_best_variant();
}

/* K = 0: C = beta * C. */
TEST(empty_k)
{
    float c[4] = {NAN, NAN, NAN, NAN}, d[4] = {1, 2, 3, 4}, x = 0;
    kern_gemm_f32(NULL, false, false, 2, 2, 0, &x, 1, &x, 2, 0.0f, c, 2);
    kern_gemm_f32(NULL, true, true, 2, 2, 0, &x, 2, &x, 1, 1.0f, d, 2);
    for (int i = 0; i < 4; i++) {
        CHECK(c[i] == 0);
        CHECK(d[i] == i + 1);
    }
}

static const int64_t sizes[][3] = {
    {1, 1, 1},   {3, 17, 5},  {17, 3, 33},  {1, 100, 20}, {100, 1, 20}, {13, 35, 300},
    {37, 70, 257}, {64, 64, 64}, {29, 97, 511}, {160, 33, 7}, {7, 600, 9},
};
#define N_SIZES ((int)(sizeof sizes / sizeof *sizes))

/* One problem: every SIMD variant against the reference, on NULL and on a
 * 2-thread pool (bit-identical), and against each other (bit-identical). */
static void check_problem(const struct prob *p, struct pool *pool)
{
    use_variant(0);
    float *ref = run(p, NULL), *first = NULL;
    FOR_EACH_SIMD_VARIANT(v)
    {
        use_variant(v);
        float *c1 = run(p, NULL), *c2 = run(p, pool);
        CHECK(count_bad(p, c1, ref, kern_variant_name(v)) == 0);
        CHECKF(memcmp(c1, c2, (size_t)(p->M * p->ldc) * sizeof *c1) == 0, "%s: 1 and 2 threads differ",
               kern_variant_name(v));
        if (!first)
            first = c1;
        else {
            CHECKF(memcmp(c1, first, (size_t)(p->M * p->ldc) * sizeof *c1) == 0, "%s: differs from the first variant",
                   kern_variant_name(v));
            free(c1);
        }
        free(c2);
    }
    free(first);
    free(ref);
}

TEST(simd_vs_reference)
{
    if (simd_variant_count() == 0)
        SKIP("this CPU supports no SIMD variant");
    struct pool *pool = pool_new(2);
    MAAS_ASSERT(pool);
    struct rng r;
    rng_seed(&r, 2024);
    for (int s = 0; s < N_SIZES; s++)
        for (int t = 0; t < 8; t++) {
            struct prob p;
            prob_init(&p, &r, t & 1, t & 2, sizes[s][0], sizes[s][1], sizes[s][2], (t & 4) ? 1.0f : 0.0f);
            check_problem(&p, pool);
            prob_free(&p);
        }
    pool_free(pool);
    use_best_variant();
}

/* Concurrent callers: each thread of a pool job runs its own products with
 * pool NULL (as attention does); each must equal the same product run alone. */
struct conc {
    struct prob p[4];
    float *c[4];
};

static void conc_job(void *ctx, int ith, int nth)
{
    struct conc *x = ctx;
    for (int i = ith; i < 4; i += nth)
        x->c[i] = run(&x->p[i], NULL);
}

TEST(concurrent_callers)
{
    struct pool *pool = pool_new(2);
    MAAS_ASSERT(pool);
    struct rng r;
    rng_seed(&r, 99);
    struct conc x;
    for (int i = 0; i < 4; i++)
        prob_init(&x.p[i], &r, i & 1, true, 40 + 17 * i, 130 - 9 * i, 64 + 100 * i, 0.0f);
    pool_run(pool, conc_job, &x);
    for (int i = 0; i < 4; i++) {
        float *alone = run(&x.p[i], NULL);
        CHECKF(memcmp(alone, x.c[i], (size_t)(x.p[i].M * x.p[i].ldc) * sizeof *alone) == 0,
               "product %d differs when run beside another", i);
        free(alone), free(x.c[i]);
        prob_free(&x.p[i]);
    }
    pool_free(pool);
}

int main(void)
{
    kernels_init();
    RUN(reference_by_hand);
    RUN(empty_k);
    RUN(simd_vs_reference);
    RUN(concurrent_callers);
    TEST_END();
}
