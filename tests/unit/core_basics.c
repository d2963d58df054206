/* core: errors, rng reproducibility, range splitting and the thread pool. */
#include "core/core.h"
#include "test.h"

#include <stdarg.h>
#include <stdatomic.h>

TEST(test_err_prefix)
{
    struct err e;
    CHECK(err_set(&e, ERR_CORRUPT, "bad %s", "thing") == -1);
    err_prefix(&e, "file.gguf");
    CHECK(strcmp(e.msg, "file.gguf: bad thing") == 0);
    CHECK(e.code == ERR_CORRUPT); /* context does not change the kind */
    CHECK(err_set(NULL, ERR_INVALID, "ignored") == -1);
    CHECK(err_refuse(&e, 7, "no money") == -1);
    CHECK(e.code == ERR_REFUSED && e.reason == 7 && !strcmp(e.msg, "no money"));
    err_clear(&e);
    CHECK(e.code == ERR_OK && e.reason == 0 && e.msg[0] == 0);
    CHECK(!strcmp(err_code_name(ERR_NOT_FOUND), "not_found"));
    CHECK(!strcmp(err_code_name(ERR_EXHAUSTED), "exhausted"));
    for (int c = 0; c < ERR_CODE_COUNT; c++)
        CHECK(strcmp(err_code_name((enum err_code)c), "unknown") != 0);
    CHECK(!strcmp(err_code_name(ERR_CODE_COUNT), "unknown"));
}

TEST(test_sbuf)
{
    struct sbuf b = SBUF_INIT;
    CHECK(b.buf == NULL && b.len == 0);
    CHECK(sbuf_addstr(&b, "abc") == 0);
    CHECK(sbuf_addch(&b, 0) == 0);            /* an embedded NUL is content */
    CHECK(sbuf_addf(&b, "%d-%s", 42, "x") == 0);
    CHECK(b.len == 8 && !memcmp(b.buf, "abc\0" "42-x", 9) && b.buf[b.len] == 0);
    /* a long formatted append takes the second vsnprintf */
    char big[1000];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = 0;
    CHECK(sbuf_addf(&b, "[%s]", big) == 0);
    CHECK(b.len == 8 + 1001 && b.buf[8] == '[' && b.buf[b.len - 1] == ']' && b.buf[b.len] == 0);
    sbuf_reset(&b);
    CHECK(b.len == 0 && b.buf[0] == 0 && b.cap >= 1010);
    CHECK(sbuf_add(&b, "xy", 2) == 0);
    size_t n = 0;
    char *s = sbuf_detach(&b, &n);
    CHECK(s && n == 2 && !strcmp(s, "xy"));
    CHECK(b.buf == NULL && b.len == 0 && b.cap == 0);
    free(s);
    /* empty detach gives "" */
    s = sbuf_detach(&b, NULL);
    CHECK(s && s[0] == 0);
    free(s);
    /* a size that cannot be had fails, keeps the contents, and sticks */
    CHECK(sbuf_addstr(&b, "keep") == 0);
    CHECK(sbuf_grow(&b, SIZE_MAX - 2) == -1);
    CHECK(sbuf_failed(&b) && b.len == 4 && !strcmp(b.buf, "keep"));
    CHECK(sbuf_addstr(&b, "more") == -1 && b.len == 4);
    CHECK(sbuf_detach(&b, NULL) == NULL);
    CHECK(b.buf == NULL && !b.failed);
    sbuf_release(&b);
}

static int add_formatted(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int add_formatted(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = sbuf_vaddf(b, fmt, ap);
    va_end(ap);
    return rc;
}

TEST(test_sbuf_init_vaddf)
{
    struct sbuf b;
    memset(&b, 0x5a, sizeof b);
    sbuf_init(&b);
    CHECK(b.buf == NULL && b.len == 0 && b.cap == 0 && !b.failed);
    CHECK(add_formatted(&b, "%s=%d", "n", 3) == 0 && add_formatted(&b, ";%.1f", 0.5) == 0);
    CHECK(b.len == 7 && !strcmp(b.buf, "n=3;0.5"));
    sbuf_release(&b);
    CHECK(b.buf == NULL && b.len == 0);
}

TEST(test_mem_grow)
{
    int *v = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < 1000; i++) {
        CHECK(mem_grow(&v, &cap, i + 1, sizeof *v) == 0);
        CHECK(cap >= i + 1);
        v[i] = (int)i;
    }
    long sum = 0;
    for (size_t i = 0; i < 1000; i++)
        sum += v[i];
    CHECK(sum == 999L * 1000 / 2);
    size_t before = cap;
    CHECK(mem_grow(&v, &cap, SIZE_MAX / 2, sizeof *v) == -1); /* overflow: unchanged */
    CHECK(cap == before && v[999] == 999);
    free(v);
}

TEST(test_hash_values_pinned)
{
    /* The published FNV-1a test vectors. */
    CHECK(hash_bytes("", 0) == 0xcbf29ce484222325ull);
    CHECK(hash_bytes("a", 1) == 0xaf63dc4c8601ec8cull);
    CHECK(hash_bytes("foobar", 6) == 0x85944171f73967e8ull);
    CHECK(hash_fnv1a32("", 0) == 0x811c9dc5u);
    CHECK(hash_fnv1a32("a", 1) == 0xe40c292cu);
    CHECK(hash_fnv1a32("foobar", 6) == 0xbf9cf968u);
    /* Chaining over pieces is the hash of the whole. */
    CHECK(hash_fnv1a64(hash_bytes("foo", 3), "bar", 3) == hash_bytes("foobar", 6));
    /* The legacy basis is persisted (PostgreSQL advisory-lock keys shared by
     * every node, mkmodel's per-tensor seeds): these values must never move. */
    CHECK(HASH_FNV64_BASIS_LEGACY == 1469598103934665603ull);
    CHECK(hash_fnv1a64(HASH_FNV64_BASIS_LEGACY, "maas ledger migrations", 22) == 0xec08a91352d5b047ull);
    CHECK(hash_fnv1a64(HASH_FNV64_BASIS_LEGACY, "token_embd.weight", 17) == 0xc93a73183bb37739ull);
}

TEST(test_parse_numbers)
{
    int64_t v = 0;
    double d = 0;
    CHECK(parse_i64("42", 0, 100, &v) == 0 && v == 42);
    CHECK(parse_i64("-7", -10, 10, &v) == 0 && v == -7);
    CHECK(parse_i64("101", 0, 100, &v) == -1 && v == -7);     /* out of range: untouched */
    CHECK(parse_i64("4x", 0, 100, &v) == -1);
    CHECK(parse_i64("", 0, 100, &v) == -1);
    CHECK(parse_i64(" 4", 0, 100, &v) == -1);
    CHECK(parse_i64(NULL, 0, 100, &v) == -1);
    CHECK(parse_i64("99999999999999999999", INT64_MIN, INT64_MAX, &v) == -1); /* overflow */
    CHECK(parse_i64("9223372036854775807", 0, INT64_MAX, &v) == 0 && v == INT64_MAX);
    CHECK(parse_f64("0.25", 0, 1, &d) == 0 && d == 0.25);
    CHECK(parse_f64("1e400", 0, 1e308, &d) == -1);
    CHECK(parse_f64("nan", -1, 1, &d) == -1);
    CHECK(parse_f64("inf", 0, INFINITY, &d) == -1);
    CHECK(parse_f64("1.5", 0, 1, &d) == -1);
    struct err e;
    int i = 0;
    CHECK(arg_int("--threads", "abc", 1, 64, &i, &e) == -1);
    CHECK(e.code == ERR_INVALID && !strcmp(e.msg, "--threads: 'abc' is not an integer in [1, 64]"));
    CHECK(arg_int("--threads", NULL, 1, 64, &i, &e) == -1 && !strcmp(e.msg, "--threads: '' is not an integer in [1, 64]"));
    CHECK(arg_int("--threads", "8", 1, 64, &i, &e) == 0 && i == 8);
    float f = 0;
    CHECK(arg_float("--temp", "-1", 0, 2, &f, &e) == -1 && !strcmp(e.msg, "--temp: '-1' is not a number in [0, 2]"));
    CHECK(arg_float("--temp", "0.5", 0, 2, &f, &e) == 0 && f == 0.5f);
    /* the 64-bit forms, and a failed parse leaves the output alone */
    int64_t big = 7;
    CHECK(arg_i64("--seed", "18446744073709551616", 0, INT64_MAX, &big, &e) == -1 && big == 7);
    CHECK(e.code == ERR_INVALID && strstr(e.msg, "--seed: '18446744073709551616' is not an integer"));
    CHECK(arg_i64("--seed", "-3", -5, 5, &big, &e) == 0 && big == -3);
    CHECK(arg_int("--threads", "65", 1, 64, &i, &e) == -1 && i == 8);
    CHECK(arg_f64("--price", "0.000001", 0, 1, &d, &e) == 0 && d == 0.000001);
    CHECK(arg_f64("--price", "1x", 0, 1, &d, &e) == -1 && !strcmp(e.msg, "--price: '1x' is not a number in [0, 1]"));
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

/* A dynamic job: units from a counter, each marked once; each thread that
 * runs the job marks its slot, which must not already be marked. */
struct djob {
    atomic_int next;
    int n_units;
    atomic_int unit_hits[64];
    atomic_int thread_runs[8];
    int bad_ith;
};

static void djob_fn(void *ctx, int ith, int nth)
{
    struct djob *j = ctx;
    if (ith < 0 || ith >= nth || atomic_fetch_add(&j->thread_runs[ith], 1) != 0)
        j->bad_ith = 1;
    for (int u = atomic_fetch_add(&j->next, 1); u < j->n_units; u = atomic_fetch_add(&j->next, 1))
        atomic_fetch_add(&j->unit_hits[u], 1);
}

/* pool_run_dynamic, interleaved with static jobs: every unit exactly once,
 * every thread at most once per job and thread 0 always, static jobs still
 * on every thread; also with a worker kept busy by the static job before
 * (so that it reaches the dynamic job late or never). */
TEST(test_pool_dynamic)
{
    for (int nt = 1; nt <= 4; nt++) {
        struct pool *p = pool_new(nt);
        CHECK(p != NULL);
        struct job sj;
        memset(&sj, 0, sizeof sj);
        int bad_units = 0, bad_threads = 0, missing_owner = 0, runs = 0;
        for (int it = 0; it < 3000; it++) {
            struct djob dj;
            memset(&dj, 0, sizeof dj);
            dj.n_units = 1 + it % 64;
            pool_run_dynamic(p, djob_fn, &dj);
            for (int u = 0; u < 64; u++)
                bad_units += atomic_load(&dj.unit_hits[u]) != (u < dj.n_units);
            bad_threads += dj.bad_ith;
            missing_owner += atomic_load(&dj.thread_runs[0]) != 1;
            for (int i = 0; i < nt; i++)
                runs += atomic_load(&dj.thread_runs[i]);
            if (it % 3 == 0)
                pool_run(p, job_fn, &sj);
        }
        CHECKF(bad_units == 0 && bad_threads == 0 && missing_owner == 0,
               "%d threads: %d units not run exactly once, %d double or bad runs, %d without the owner", nt,
               bad_units, bad_threads, missing_owner);
        CHECK(runs >= 3000 && runs <= 3000 * nt);
        for (int i = 0; i < nt; i++)
            CHECK(atomic_load(&sj.hits[i]) == 1000);
        pool_free(p);
    }
}

int main(void)
{
    RUN(test_err_prefix);
    RUN(test_sbuf);
    RUN(test_sbuf_init_vaddf);
    RUN(test_mem_grow);
    RUN(test_hash_values_pinned);
    RUN(test_parse_numbers);
    RUN(test_rng_reproducible);
    RUN(test_split_range);
    RUN(test_pool_runs_every_slice);
    RUN(test_pool_dynamic);
    TEST_END();
}
