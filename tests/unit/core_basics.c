/* core: errors, rng reproducibility, range splitting and the thread pool. */
#include "core/core.h"
#include "test.h"

#include <stdatomic.h>

TEST(test_err_prefix)
{
    struct err e;
    CHECK(err_set(&e, "bad %s", "thing") == -1);
    err_prefix(&e, "file.gguf");
    CHECK(strcmp(e.msg, "file.gguf: bad thing") == 0);
    CHECK(err_set(NULL, "ignored") == -1);
}

TEST(test_rng_reproducible)
{
    struct rng a, b;
    rng_seed(&a, 42);
    rng_seed(&b, 42);
    for (int i = 0; i < 1000; i++)
        CHECK(rng_u64(&a) == rng_u64(&b));
    rng_seed(&a, 7);
    double sum = 0, sq = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        double x = rng_normal(&a);
        sum += x;
        sq += x * x;
    }
    CHECK_NEAR(sum / n, 0.0, 0.02);
    CHECK_NEAR(sq / n, 1.0, 0.02);
}

TEST(test_split_range)
{
    for (int n = 0; n < 50; n++)
        for (int nth = 1; nth < 7; nth++) {
            int64_t covered = 0, prev_hi = 0;
            for (int i = 0; i < nth; i++) {
                int64_t lo, hi;
                split_range(n, i, nth, &lo, &hi);
                CHECK(lo == prev_hi);
                CHECK(hi >= lo);
                covered += hi - lo;
                prev_hi = hi;
            }
            CHECK(covered == n);
        }
}

struct job {
    atomic_int hits[8];
    atomic_long total;
};

static void job_fn(void *ctx, int ith, int nth)
{
    struct job *j = ctx;
    atomic_fetch_add(&j->hits[ith], 1);
    atomic_fetch_add(&j->total, nth);
}

TEST(test_pool_runs_every_slice)
{
    for (int nt = 1; nt <= 4; nt++) {
        struct pool *p = pool_new(nt);
        CHECK(p != NULL);
        CHECK(pool_n_threads(p) == nt);
        struct job j;
        memset(&j, 0, sizeof j);
        for (int it = 0; it < 2000; it++)
            pool_run(p, job_fn, &j);
        for (int i = 0; i < nt; i++)
            CHECK(atomic_load(&j.hits[i]) == 2000);
        CHECK(atomic_load(&j.total) == 2000L * nt * nt);
        pool_free(p);
    }
    pool_free(NULL);
}

int main(void)
{
    RUN(test_err_prefix);
    RUN(test_rng_reproducible);
    RUN(test_split_range);
    RUN(test_pool_runs_every_slice);
    TEST_END();
}
