/* server: the sweeper (sweep.c) releases stale holds while the server runs,
 * on a real SQLite ledger with a test clock, under the sanitizers. A tiny
 * random model with the shared gpt-2 vocabulary (or without
 * ../shared/testdata the test's own byte-level BPE one, test_vocab.h),
 * since a server needs one:
 *   - released, not charged: a hold of this process older than the age limit
 *     (a request whose settlement never came), and a hold of a neighbour
 *     process on the same data directory that has gone;
 *   - kept: a young hold of this process (a running request) and a hold of a
 *     neighbour that is alive;
 *   - the running request then settles and is charged once; settling the
 *     released one late returns its "abandoned" record and charges nothing;
 *     the audit passes;
 *   - server_free does not wait for the next sweep.
 * And on a shared PostgreSQL ledger (skipped without PostgreSQL), what the
 * sweeper calls, billing_recover_live, releases old holds but never judges a
 * process dead by its lease (sweep.c, admit.c say why); billing_recover, at
 * a start, does. */
#include "engine/engine.h"
#include "kernels/kernels.h"
#include "server/server.h"
#include "test.h"
#include "tiny_served.h"
#include "store_pg.h"

#include <stdatomic.h>
#include <time.h>

static _Atomic int64_t test_clock;

static int64_t fake_now(void *ctx)
{
    (void)ctx;
    return atomic_load(&test_clock);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Admits a request of max_tokens on b; its hold (micro-units) in *hold. */
static int admit(struct billing *b, const char *key, const char *id, int64_t *hold)
{
    struct billing_request r = {key, "tiny", 10, 100, id};
    struct billing_admission a;
    struct err e;
    if (billing_admit(b, &r, &a, &e) < 0)
        return -1;
    *hold = a.hold;
    return 0;
}

/* The usage record of request id: 1 with *u, 0 if none, -1 on error. */
struct one {
    const char *id;
    struct billing_usage_row row;
    int n;
};

static int one_row(void *ctx, const struct billing_usage_row *r)
{
    struct one *o = ctx;
    if (!strcmp(r->group, o->id))
        o->row = *r, o->n++;
    return 0;
}

static int record(struct billing *b, const char *id, struct billing_usage_row *out)
{
    struct billing_usage_filter f = {0};
    struct billing_usage_row total;
    struct one o;
    memset(&o, 0, sizeof o);
    o.id = id;
    struct err e;
    if (billing_usage_report(b, &f, BILLING_BY_REQUEST, one_row, &o, &total, &e) < 0)
        return -1;
    if (o.n && out)
        *out = o.row;
    return o.n;
}

TEST(test_sweeper)
{
    struct err e;
    struct tokenizer *tok = test_vocab_load(&e);
    CHECKF(tok != NULL, "%s", e.msg);
    if (!tok)
        return;
    struct model *m = tiny_served_model(tok, "server_recover", 12, &e);
    CHECKF(m != NULL, "%s", e.msg);
    struct engine *eng = m ? engine_new(m, tok, &(struct engine_opts){.n_threads = 1, .n_ctx = 256}, &e) : NULL;
    CHECKF(eng != NULL, "%s", e.msg);

    char ddir[128], cmd[200];
    snprintf(ddir, sizeof ddir, "/tmp/maas-server-recover-%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "rm -rf %s", ddir);
    CHECK(system(cmd) == 0);
    const int64_t t0 = 1800000000, age = SERVER_STALE_HOLD_S;
    atomic_store(&test_clock, t0);
    struct billing_options bo = {.db = ddir, .writer = 1, .now = fake_now};
    struct billing *b = NULL, *gone = NULL, *alive = NULL;
    CHECKF(billing_open(&bo, &b, &e) == 0, "%s", e.msg);
    CHECKF(billing_open(&bo, &gone, &e) == 0, "%s", e.msg);
    CHECKF(billing_open(&bo, &alive, &e) == 0, "%s", e.msg);
    if (!b || !gone || !alive || !eng)
        goto out;
    char acct[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1];
    struct billing_price p = {.model = "tiny", .input = 1000000, .cached_input = 500000, .output = 2000000};
    CHECK(billing_account_create(b, "t", BILLING_MICRO, acct, &e) == 0);
    CHECK(billing_key_create(b, acct, NULL, key, NULL, &e) == 0);
    CHECK(billing_price_set(b, &p, &e) == 0);

    /* at t0: a request of this process whose settlement never comes, and one
     * of a neighbour process that then dies (its lock file goes with it) */
    int64_t h_old = 0, h_gone = 0, h_young = 0, h_alive = 0;
    CHECK(admit(b, key, "req-old", &h_old) == 0);
    CHECK(admit(gone, key, "req-gone", &h_gone) == 0);
    billing_close(gone);
    gone = NULL;
    /* a day and a minute later: a running request here, and one of a live neighbour */
    atomic_store(&test_clock, t0 + age + 60);
    CHECK(admit(b, key, "req-young", &h_young) == 0);
    CHECK(admit(alive, key, "req-alive", &h_alive) == 0);
    struct billing_account a;
    CHECK(billing_account_get(b, acct, &a, &e) == 0 && a.held == h_old + h_gone + h_young + h_alive);

    struct server_model sm = {.name = "tiny", .m = m, .tok = tok, .eng = eng, .n_ctx = 256,
                              .chat_template = "chatml"};
    struct server_opts o = server_opts_default();
    o.port = 0;
    o.billing = b;
    o.recover_every_ms = 50;
    struct server *srv = server_new(&sm, 1, &o, &e);
    CHECKF(srv != NULL, "%s", e.msg);
    uint64_t start = mono_ms();
    while (mono_ms() - start < 10000) {
        if (billing_account_get(b, acct, &a, &e) == 0 && a.held == h_young + h_alive)
            break;
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    CHECKF(a.held == h_young + h_alive, "held %lld, want %lld", (long long)a.held, (long long)(h_young + h_alive));
    /* a few more sweeps: the young and the living neighbour's holds stay */
    struct timespec ts = {0, 300000000};
    nanosleep(&ts, NULL);
    CHECK(billing_account_get(b, acct, &a, &e) == 0 && a.held == h_young + h_alive && a.balance == BILLING_MICRO);
    struct billing_usage_row row;
    CHECK(record(b, "req-old", &row) == 1 && row.cost == 0 && row.completion_tokens == 0);
    CHECK(record(b, "req-gone", &row) == 1 && row.cost == 0);
    CHECK(record(b, "req-young", NULL) == 0 && record(b, "req-alive", NULL) == 0);

    /* the running requests end: charged once each */
    struct billing_usage u;
    int64_t want = billing_cost(10, 0, 7, p.input, p.cached_input, p.output);
    CHECK(billing_settle(b, "req-young", 10, 0, 7, "stop", &u, &e) == 0 && u.cost == want);
    CHECK(billing_settle(alive, "req-alive", 10, 0, 7, "stop", &u, &e) == 0 && u.cost == want);
    /* the released one settles late: its abandoned record, nothing charged */
    CHECK(billing_settle(b, "req-old", 10, 0, 7, "stop", &u, &e) == 0 && u.cost == 0 &&
          !strcmp(u.finish_reason, "abandoned"));
    CHECK(billing_account_get(b, acct, &a, &e) == 0 && a.held == 0 && a.balance == BILLING_MICRO - 2 * want);
    CHECKF(billing_audit(b, &e) == 0, "%s", e.msg);

    /* server_free with the default period (minutes) returns at once */
    server_free(srv);
    o.recover_every_ms = 0;
    srv = server_new(&sm, 1, &o, &e);
    CHECKF(srv != NULL, "%s", e.msg);
    start = mono_ms();
    server_free(srv);
    CHECKF(mono_ms() - start < 2000, "server_free took %llu ms", (unsigned long long)(mono_ms() - start));
out:
    billing_close(alive);
    billing_close(gone);
    billing_close(b);
    CHECK(system(cmd) == 0);
    engine_free(eng);
    model_free(m);
    tok_free(tok);
}

TEST(test_live_sweep_shared_ledger)
{
    int pg = pg_test_start();
    if (pg == 77)
        SKIP(pg_skip_reason);
    CHECKF(pg == 0, "no PostgreSQL server for the test");
    char url[512], secret[128], cmd[200];
    if (pg || pg_test_db("server_recover_live", url) < 0)
        return;
    snprintf(secret, sizeof secret, "/tmp/maas-server-recover-secret-%d", (int)getpid());
    unlink(secret);
    const int64_t t0 = 1800000000, age = SERVER_STALE_HOLD_S;
    atomic_store(&test_clock, t0);
    struct billing_options bo = {.db = url, .secret_file = secret, .node = "a", .now = fake_now};
    struct billing *b = NULL, *gone = NULL;
    struct err e;
    CHECKF(billing_open(&bo, &b, &e) == 0, "%s", e.msg);
    bo.node = "b";
    CHECKF(billing_open(&bo, &gone, &e) == 0, "%s", e.msg);
    if (!b || !gone)
        goto out;
    char acct[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1];
    struct billing_price p = {.model = "tiny", .input = 1000000, .cached_input = 500000, .output = 2000000};
    CHECK(billing_account_create(b, "t", BILLING_MICRO, acct, &e) == 0);
    CHECK(billing_key_create(b, acct, NULL, key, NULL, &e) == 0);
    CHECK(billing_price_set(b, &p, &e) == 0);
    int64_t h_old = 0, h_gone = 0, h_young = 0, n = -1;
    CHECK(admit(b, key, "pg-old", &h_old) == 0);
    atomic_store(&test_clock, t0 + age + 60);
    CHECK(admit(gone, key, "pg-gone", &h_gone) == 0);
    billing_close(gone); /* its lease goes with its connection */
    gone = NULL;
    CHECK(admit(b, key, "pg-young", &h_young) == 0);
    /* the sweep: the old hold only */
    CHECKF(billing_recover_live(b, age, &n, &e) == 0 && n == 1, "released %lld: %s", (long long)n, e.msg);
    struct billing_account a;
    CHECK(billing_account_get(b, acct, &a, &e) == 0 && a.held == h_gone + h_young);
    CHECK(record(b, "pg-old", NULL) == 1 && record(b, "pg-gone", NULL) == 0);
    CHECK(billing_recover_live(b, 0, &n, &e) < 0); /* a live node always needs the age limit */
    /* a start: the process whose lease is gone loses its hold too */
    n = 0;
    for (int i = 0; i < 100 && n == 0; i++) {
        CHECKF(billing_recover(b, age, &n, &e) == 0, "%s", e.msg);
        if (n == 0)
            usleep(20000);
    }
    CHECKF(n == 1, "released %lld", (long long)n);
    CHECK(billing_account_get(b, acct, &a, &e) == 0 && a.held == h_young && a.balance == BILLING_MICRO);
    CHECKF(billing_audit(b, &e) == 0, "%s", e.msg);
out:
    billing_close(gone);
    billing_close(b);
    snprintf(cmd, sizeof cmd, "rm -f %s", secret);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    kernels_init();
    RUN(test_sweeper);
    RUN(test_live_sweep_shared_ledger);
    TEST_END();
}
