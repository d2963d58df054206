/* store: the PostgreSQL backend against a real server started for the test
 * (tests/unit/store_pg.h): migrations (also from several processes opening
 * one fresh database at once), parameters and NULLs, transactions, savepoints,
 * an aborted transaction's COMMIT reported as a failure, REPEATABLE READ
 * reports, fault injection, deadlocks flagged retryable, leases that die with
 * their connection and are taken again when it is re-established (a claim
 * keeping them from it fails its statements instead), and conditional updates
 * from many threads never overdrawing. */
#include "store/store.h"
#include "store_test.h"
#include "store_pg.h"
#include "test.h"

#include <pthread.h>
#include <signal.h>

static int pg_ok;

static struct store *open_db(const char *url)
{
    struct err e = {0};
    struct store *s = NULL;
    if (store_open(url, &test_schema, &s, &e)) {
        fprintf(stderr, "  store_open: %s\n", e.msg);
        return NULL;
    }
    return s;
}

#define NEED_PG()                                                  \
    do {                                                           \
        if (pg_ok == 77)                                           \
            SKIP(pg_skip_reason);                                  \
        CHECKF(pg_ok == 0, "no PostgreSQL server for the test");   \
        if (pg_ok)                                                 \
            return;                                                \
    } while (0)

TEST(open_migrate_reopen)
{
    NEED_PG();
    char url[512];
    CHECK(pg_test_db("st_open", url) == 0);
    struct store *s = open_db(url);
    CHECK(s != NULL);
    if (!s)
        return;
    struct err e = {0};
    CHECK(!strcmp(store_backend(s), "postgresql"));
    int v = -1;
    CHECK(store_schema_version(s, &v, &e) == 0);
    CHECK(v == test_schema.n);
    int64_t n = -1;
    CHECK(store_query_int(s, "SELECT COUNT(*) FROM accounts", NULL, 0, &n, NULL, &e) == 0 && n == 0);
    store_close(s);
    s = open_db(url); /* again: nothing to apply */
    CHECK(s != NULL);
    if (s) {
        CHECK(store_query_int(s, "SELECT COUNT(*) FROM schema_version", NULL, 0, &n, NULL, &e) == 0);
        CHECK(n == test_schema.n);
        /* a newer schema than we know is refused */
        CHECK(store_exec(s, "INSERT INTO schema_version (version, applied_at) VALUES ($1, 0)",
                         (struct store_val[]){SV_INT(test_schema.n + 5)}, 1, NULL, &e) == 0);
        store_close(s);
        struct store *t = NULL;
        CHECK(store_open(url, &test_schema, &t, &e) == -1);
        CHECKF(strstr(e.msg, "newer") != NULL, "%s", e.msg);
    }
    /* a bad URL fails with a clear message that names PostgreSQL */
    struct store *bad = NULL;
    CHECK(store_open("postgresql://maas@127.0.0.1:1/nope?connect_timeout=2", &test_schema, &bad, &e) == -1);
    CHECKF(strstr(e.msg, "PostgreSQL") != NULL, "%s", e.msg);
}

/* Six processes open one empty database at the same moment: each must
 * succeed and the migration must be applied exactly once. */
TEST(concurrent_first_open)
{
    NEED_PG();
    char url[512];
    CHECK(pg_test_db("st_race", url) == 0);
    int go[2];
    CHECK(pipe(go) == 0);
    pid_t kids[6];
    for (int i = 0; i < 6; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            char c;
            close(go[1]);
            if (read(go[0], &c, 1) != 0)
                _exit(3);
            struct err e;
            struct store *s = NULL;
            if (store_open(url, &test_schema, &s, &e)) {
                fprintf(stderr, "  child %d: %s\n", i, e.msg);
                _exit(1);
            }
            store_close(s);
            _exit(0);
        }
    }
    close(go[0]);
    close(go[1]); /* all start now */
    for (int i = 0; i < 6; i++) {
        int st = 0;
        waitpid(kids[i], &st, 0);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d status %d", i, st);
    }
    struct store *s = open_db(url);
    CHECK(s != NULL);
    if (!s)
        return;
    struct err e;
    int64_t n = -1;
    CHECK(store_query_int(s, "SELECT COUNT(*) FROM schema_version", NULL, 0, &n, NULL, &e) == 0);
    CHECK(n == test_schema.n);
    store_close(s);
}

struct collect {
    int n;
    int64_t ints[8];
    char texts[8][64];
    int nulls[8];
};

static int collect_row(void *ctx, const struct store_row *r)
{
    struct collect *c = ctx;
    if (c->n >= 8)
        return 1;
    c->ints[c->n] = store_row_int(r, 0);
    c->nulls[c->n] = store_row_is_null(r, 1);
    snprintf(c->texts[c->n], sizeof c->texts[0], "%s", c->nulls[c->n] ? "(null)" : store_row_text(r, 1));
    c->n++;
    return 0;
}

TEST(params_rows_and_transactions)
{
    NEED_PG();
    char url[512];
    CHECK(pg_test_db("st_tx", url) == 0);
    struct store *s = open_db(url);
    if (!s) {
        CHECK(0);
        return;
    }
    struct err e = {0};
    CHECK(store_exec(s, "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT, CHECK (id >= 0))", NULL, 0, NULL, &e) == 0);
    /* placeholders out of order, reused, NULL, big integers, quotes, UTF-8 */
    int64_t big = INT64_MAX - 7;
    CHECK(store_exec(s, "INSERT INTO t (name, id) VALUES ($2, $1)",
                     (struct store_val[]){SV_INT(big), SV_TEXT("it's \"q\" é")}, 2, NULL, &e) == 0);
    CHECK(store_exec(s, "INSERT INTO t (id, name) VALUES ($1, $2)", (struct store_val[]){SV_INT(2), SV_NULL}, 2,
                     NULL, &e) == 0);
    struct collect c = {0};
    CHECK(store_query(s, "SELECT id, name FROM t WHERE id >= $1 ORDER BY id", (struct store_val[]){SV_INT(0)}, 1,
                      collect_row, &c, &e) == 0);
    CHECK(c.n == 2);
    CHECK(c.ints[0] == 2 && c.nulls[0]);
    CHECK(c.ints[1] == big && !strcmp(c.texts[1], "it's \"q\" é"));
    /* changes; SUM() is NUMERIC in PostgreSQL and still reads as an integer */
    int64_t changes = -1, sum = 0;
    CHECK(store_exec(s, "UPDATE t SET name = $1 WHERE id < $2", (struct store_val[]){SV_TEXT("x"), SV_INT(100)}, 2,
                     &changes, &e) == 0 && changes == 1);
    CHECK(store_query_int(s, "SELECT COALESCE(SUM(id), 0) FROM t WHERE id < 100", NULL, 0, &sum, NULL, &e) == 0);
    CHECK(sum == 2);
    int found = 1;
    CHECK(store_query_int(s, "SELECT id FROM t WHERE id = 12345", NULL, 0, &sum, &found, &e) == 0 && !found);

    /* rollback discards, commit keeps */
    CHECK(store_begin(s, STORE_TX_WRITE, &e) == 0);
    CHECK(store_exec(s, "INSERT INTO t (id, name) VALUES (3, 'r')", NULL, 0, NULL, &e) == 0);
    store_rollback(s);
    int64_t n = -1;
    CHECK(store_query_int(s, "SELECT COUNT(*) FROM t", NULL, 0, &n, NULL, &e) == 0 && n == 2);
    CHECK(store_begin(s, STORE_TX_WRITE_LAZY, &e) == 0);
    CHECK(store_exec(s, "INSERT INTO t (id, name) VALUES (4, 'lazy')", NULL, 0, NULL, &e) == 0);
    CHECK(store_commit(s, &e) == 0);
    CHECK(store_query_int(s, "SELECT COUNT(*) FROM t", NULL, 0, &n, NULL, &e) == 0 && n == 3);

    /* savepoints: one failing item rolls back alone */
    CHECK(store_begin(s, STORE_TX_WRITE, &e) == 0);
    CHECK(store_savepoint(s, "item", &e) == 0);
    CHECK(store_exec(s, "INSERT INTO t (id, name) VALUES (5, 'a')", NULL, 0, NULL, &e) == 0);
    CHECK(store_release(s, "item", &e) == 0);
    CHECK(store_savepoint(s, "item", &e) == 0);
    CHECK(store_exec(s, "INSERT INTO t (id, name) VALUES (5, 'dup')", NULL, 0, NULL, &e) == -1); /* UNIQUE */
    CHECKF(strstr(e.msg, "23505") != NULL, "%s", e.msg);
    CHECK(store_last_retryable(s) == 0);
    CHECK(store_rollback_to(s, "item", &e) == 0);
    CHECK(store_release(s, "item", &e) == 0);
    CHECK(store_exec(s, "INSERT INTO t (id, name) VALUES (6, 'b')", NULL, 0, NULL, &e) == 0);
    CHECK(store_commit(s, &e) == 0);
    CHECK(store_query_int(s, "SELECT COUNT(*) FROM t", NULL, 0, &n, NULL, &e) == 0 && n == 5);

    /* an error without a savepoint aborts the transaction: COMMIT must fail */
    CHECK(store_begin(s, STORE_TX_WRITE, &e) == 0);
    CHECK(store_exec(s, "INSERT INTO t (id, name) VALUES (7, 'c')", NULL, 0, NULL, &e) == 0);
    CHECK(store_exec(s, "INSERT INTO t (id, name) VALUES (-1, 'neg')", NULL, 0, NULL, &e) == -1); /* CHECK */
    CHECK(store_commit(s, &e) == -1);
    CHECK(store_query_int(s, "SELECT COUNT(*) FROM t WHERE id = 7", NULL, 0, &n, NULL, &e) == 0 && n == 0);

    /* a READ transaction sees one snapshot */
    struct store *w = open_db(url);
    CHECK(w != NULL);
    if (w) {
        int64_t before = -1, after = -1;
        CHECK(store_begin(s, STORE_TX_READ, &e) == 0);
        CHECK(store_query_int(s, "SELECT COUNT(*) FROM t", NULL, 0, &before, NULL, &e) == 0);
        CHECK(store_exec(w, "INSERT INTO t (id, name) VALUES (8, 'other')", NULL, 0, NULL, &e) == 0);
        CHECK(store_query_int(s, "SELECT COUNT(*) FROM t", NULL, 0, &after, NULL, &e) == 0);
        CHECK(before == after);
        CHECK(store_exec(s, "INSERT INTO t (id, name) VALUES (9, 'ro')", NULL, 0, NULL, &e) == -1); /* read only */
        store_rollback(s);
        CHECK(store_query_int(s, "SELECT COUNT(*) FROM t", NULL, 0, &after, NULL, &e) == 0 && after == before + 1);
        store_close(w);
    }

    /* fault injection: after n operations everything fails, a failed commit rolls back */
    store_fail_after(s, 2);
    CHECK(store_begin(s, STORE_TX_WRITE, &e) == 0);
    CHECK(store_exec(s, "INSERT INTO t (id, name) VALUES (10, 'f')", NULL, 0, NULL, &e) == 0);
    CHECK(store_commit(s, &e) == -1);
    CHECKF(strstr(e.msg, "injected") != NULL, "%s", e.msg);
    store_fail_after(s, -1);
    CHECK(store_query_int(s, "SELECT COUNT(*) FROM t WHERE id = 10", NULL, 0, &n, NULL, &e) == 0 && n == 0);
    store_close(s);
}

/* Two connections lock two rows in opposite orders: PostgreSQL breaks the
 * deadlock by failing one of them, which must be flagged retryable. */
struct dl_arg {
    const char *url;
    int first, second;
    pthread_barrier_t *bar;
    int rc, retryable;
};

static void *deadlock_thread(void *p)
{
    struct dl_arg *a = p;
    struct err e;
    struct store *s = open_db(a->url);
    if (!s) {
        a->rc = -2;
        pthread_barrier_wait(a->bar);
        return NULL;
    }
    a->rc = -1;
    if (store_begin(s, STORE_TX_WRITE, &e) == 0 &&
        store_exec(s, "UPDATE d SET v = v + 1 WHERE id = $1", (struct store_val[]){SV_INT(a->first)}, 1, NULL, &e) ==
            0) {
        pthread_barrier_wait(a->bar);
        if (store_exec(s, "UPDATE d SET v = v + 1 WHERE id = $1", (struct store_val[]){SV_INT(a->second)}, 1, NULL,
                       &e) == 0 &&
            store_commit(s, &e) == 0)
            a->rc = 0;
        else
            a->retryable = store_last_retryable(s);
    } else {
        pthread_barrier_wait(a->bar);
    }
    store_rollback(s);
    store_close(s);
    return NULL;
}

TEST(deadlock_is_retryable)
{
    NEED_PG();
    char url[512];
    CHECK(pg_test_db("st_dl", url) == 0);
    struct store *s = open_db(url);
    if (!s) {
        CHECK(0);
        return;
    }
    struct err e;
    CHECK(store_exec(s, "CREATE TABLE d (id BIGINT PRIMARY KEY, v BIGINT NOT NULL)", NULL, 0, NULL, &e) == 0);
    CHECK(store_exec(s, "INSERT INTO d VALUES (1, 0), (2, 0)", NULL, 0, NULL, &e) == 0);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    struct dl_arg a = {url, 1, 2, &bar, 0, 0}, b = {url, 2, 1, &bar, 0, 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, deadlock_thread, &a);
    pthread_create(&tb, NULL, deadlock_thread, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&bar);
    CHECKF((a.rc == 0) + (b.rc == 0) == 1, "rc %d %d", a.rc, b.rc);
    CHECK(a.rc == 0 || a.retryable);
    CHECK(b.rc == 0 || b.retryable);
    int64_t total = -1;
    CHECK(store_query_int(s, "SELECT SUM(v) FROM d", NULL, 0, &total, NULL, &e) == 0 && total == 2);
    store_close(s);
}

TEST(leases_die_with_their_connection)
{
    NEED_PG();
    char url[512];
    CHECK(pg_test_db("st_lease", url) == 0);
    struct store *a = open_db(url), *b = open_db(url);
    CHECK(a && b);
    if (!a || !b) {
        store_close(a);
        store_close(b);
        return;
    }
    struct err e;
    int is_free = -1;
    CHECK(store_lease_free(b, "boot one", &is_free, &e) == 0 && is_free == 1);
    CHECK(store_lease_keep(a, "boot one", &e) == 0);
    int claimed = -1;
    CHECK(store_lease_claim(b, "boot one", &claimed, &e) == 0 && claimed == 0);
    CHECK(store_lease_free(b, "boot one", &is_free, &e) == 0 && is_free == 0);
    CHECK(store_lease_free(b, "boot two", &is_free, &e) == 0 && is_free == 1);
    /* a process killed outright: its server session ends and the lease with it */
    pid_t kid = fork();
    if (kid == 0) {
        struct store *k = NULL;
        struct err ke;
        if (store_open(url, &test_schema, &k, &ke) || store_lease_keep(k, "boot three", &ke))
            _exit(1);
        for (;;)
            pause();
    }
    int held = 0, st = 0;
    for (int i = 0; i < 500 && !held; i++) {
        usleep(20000);
        CHECK(store_lease_free(b, "boot three", &is_free, &e) == 0);
        held = !is_free;
        CHECKF(waitpid(kid, &st, WNOHANG) == 0, "the child gave up (status %d)", st);
    }
    CHECK(held);
    kill(kid, SIGKILL);
    waitpid(kid, NULL, 0);
    int freed = 0;
    for (int i = 0; i < 250 && !freed; i++) { /* the server notices the closed socket at once */
        CHECK(store_lease_free(b, "boot three", &is_free, &e) == 0);
        freed = is_free;
        if (!freed)
            usleep(20000);
    }
    CHECK(freed);
    store_close(a); /* the server ends the session soon after, not at once */
    freed = 0;
    for (int i = 0; i < 250 && !freed; i++) {
        CHECK(store_lease_free(b, "boot one", &is_free, &e) == 0);
        freed = is_free;
        if (!freed)
            usleep(20000);
    }
    CHECK(freed);
    store_close(b);
}

/* The server ends a session (restart, failover, administrator): the statement
 * that meets it fails, and the connection is reopened for the next one. */
TEST(reconnects_after_the_server_drops_it)
{
    NEED_PG();
    char url[512];
    CHECK(pg_test_db("st_reconnect", url) == 0);
    struct store *s = open_db(url), *killer = open_db(url);
    CHECK(s && killer);
    if (!s || !killer) {
        store_close(s);
        store_close(killer);
        return;
    }
    struct err e;
    int64_t pid = 0;
    CHECK(store_query_int(s, "SELECT pg_backend_pid()", NULL, 0, &pid, NULL, &e) == 0 && pid > 0);
    int64_t done = 0;
    CHECK(store_query_int(killer, "SELECT CASE WHEN pg_terminate_backend($1::int) THEN 1 ELSE 0 END",
                          (struct store_val[]){SV_INT(pid)}, 1, &done, NULL, &e) == 0 && done == 1);
    usleep(100000);
    int64_t n = 0;
    CHECK(store_query_int(s, "SELECT 1", NULL, 0, &n, NULL, &e) == -1); /* meets the closed session */
    CHECKF(store_query_int(s, "SELECT COUNT(*) FROM accounts", NULL, 0, &n, NULL, &e) == 0, "%s", e.msg);
    CHECK(store_begin(s, STORE_TX_WRITE, &e) == 0 && store_commit(s, &e) == 0);
    int64_t pid2 = 0;
    CHECK(store_query_int(s, "SELECT pg_backend_pid()", NULL, 0, &pid2, NULL, &e) == 0 && pid2 != pid);
    store_close(killer);
    store_close(s);
}

/* A connection that keeps a lease takes it again when it is re-established,
 * before the statement that reopened it; while another session has claimed
 * the lease, statements fail rather than run without it. */
TEST(kept_lease_taken_again_after_reconnect)
{
    NEED_PG();
    char url[512];
    CHECK(pg_test_db("st_release", url) == 0);
    struct store *s = open_db(url), *t = open_db(url), *other = open_db(url);
    CHECK(s && t && other);
    if (!s || !t || !other) {
        store_close(s);
        store_close(t);
        store_close(other);
        return;
    }
    struct err e;
    int is_free = -1, claimed = -1;
    /* two connections of one process keep its lease: it is held while either lives */
    CHECK(store_lease_keep(s, "boot r", &e) == 0 && store_lease_keep(t, "boot r", &e) == 0);
    int64_t pid = 0, done = 0, n = 0;
    CHECK(store_query_int(t, "SELECT pg_backend_pid()", NULL, 0, &pid, NULL, &e) == 0);
    CHECK(store_query_int(other, "SELECT CASE WHEN pg_terminate_backend($1::int, 5000) THEN 1 ELSE 0 END",
                          (struct store_val[]){SV_INT(pid)}, 1, &done, NULL, &e) == 0 && done == 1);
    CHECK(store_lease_free(other, "boot r", &is_free, &e) == 0 && is_free == 0);
    /* the last session goes: the lease is free until the connection is back */
    CHECK(store_query_int(s, "SELECT pg_backend_pid()", NULL, 0, &pid, NULL, &e) == 0);
    CHECK(store_query_int(other, "SELECT CASE WHEN pg_terminate_backend($1::int, 5000) THEN 1 ELSE 0 END",
                          (struct store_val[]){SV_INT(pid)}, 1, &done, NULL, &e) == 0 && done == 1);
    CHECK(store_lease_free(other, "boot r", &is_free, &e) == 0 && is_free == 1);
    CHECK(store_ping(s, &e) == 0); /* meets the closed session, reopens it, takes the lease */
    CHECK(store_lease_free(other, "boot r", &is_free, &e) == 0 && is_free == 0);
    CHECKF(store_query_int(t, "SELECT 1", NULL, 0, &n, NULL, &e) == -1, "t's session was ended");
    CHECKF(store_query_int(t, "SELECT 1", NULL, 0, &n, NULL, &e) == 0 && n == 1, "%s", e.msg);
    /* another session claims the lease while both are gone: statements fail
     * (after a short wait) until the claim is dropped */
    CHECK(store_query_int(s, "SELECT pg_backend_pid()", NULL, 0, &pid, NULL, &e) == 0);
    CHECK(store_query_int(other, "SELECT CASE WHEN pg_terminate_backend($1::int, 5000) THEN 1 ELSE 0 END",
                          (struct store_val[]){SV_INT(pid)}, 1, &done, NULL, &e) == 0);
    CHECK(store_query_int(t, "SELECT pg_backend_pid()", NULL, 0, &pid, NULL, &e) == 0);
    CHECK(store_query_int(other, "SELECT CASE WHEN pg_terminate_backend($1::int, 5000) THEN 1 ELSE 0 END",
                          (struct store_val[]){SV_INT(pid)}, 1, &done, NULL, &e) == 0);
    CHECK(store_lease_claim(other, "boot r", &claimed, &e) == 0 && claimed == 1);
    CHECK(store_query_int(s, "SELECT 1", NULL, 0, &n, NULL, &e) == -1);
    CHECKF(store_query_int(s, "SELECT 1", NULL, 0, &n, NULL, &e) == -1 && strstr(e.msg, "lease"),
           "no statement without the lease: %s", e.msg);
    CHECK(store_begin(s, STORE_TX_WRITE, &e) == -1);
    CHECK(store_lease_drop(other, "boot r", &e) == 0);
    CHECKF(store_query_int(s, "SELECT 1", NULL, 0, &n, NULL, &e) == 0 && n == 1, "%s", e.msg);
    CHECK(store_lease_free(other, "boot r", &is_free, &e) == 0 && is_free == 0);
    store_close(s);
    store_close(t);
    CHECK(store_lease_free(other, "boot r", &is_free, &e) == 0);
    store_close(other);
}

/* Many threads take from one balance with the conditional update the ledger
 * uses: exactly balance / cost succeed, the balance never goes below zero. */
struct take_arg {
    const char *url;
    int taken;
    int failed;
};

static void *take_thread(void *p)
{
    struct take_arg *a = p;
    struct store *s = open_db(a->url);
    if (!s) {
        a->failed = 1;
        return NULL;
    }
    for (int i = 0; i < 30; i++) {
        struct err e;
        int64_t changed = 0;
        if (store_begin(s, STORE_TX_WRITE, &e) ||
            store_exec(s, "UPDATE acct SET held = held + $1 WHERE id = 'a' AND balance - held >= $1",
                       (struct store_val[]){SV_INT(7)}, 1, &changed, &e) ||
            store_commit(s, &e)) {
            store_rollback(s);
            a->failed = 1;
            continue;
        }
        a->taken += (int)changed;
    }
    store_close(s);
    return NULL;
}

TEST(conditional_updates_never_overdraw)
{
    NEED_PG();
    char url[512];
    CHECK(pg_test_db("st_take", url) == 0);
    struct store *s = open_db(url);
    if (!s) {
        CHECK(0);
        return;
    }
    struct err e;
    CHECK(store_exec(s, "CREATE TABLE acct (id TEXT PRIMARY KEY, balance BIGINT, held BIGINT, CHECK (held <= balance))",
                     NULL, 0, NULL, &e) == 0);
    CHECK(store_exec(s, "INSERT INTO acct VALUES ('a', 500, 0)", NULL, 0, NULL, &e) == 0);
    struct take_arg args[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        args[i] = (struct take_arg){url, 0, 0};
        pthread_create(&th[i], NULL, take_thread, &args[i]);
    }
    int taken = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        taken += args[i].taken;
        CHECK(!args[i].failed);
    }
    CHECKF(taken == 500 / 7, "taken %d", taken);
    int64_t held = -1;
    CHECK(store_query_int(s, "SELECT held FROM acct WHERE id = 'a'", NULL, 0, &held, NULL, &e) == 0);
    CHECK(held == (int64_t)taken * 7);
    store_close(s);
}

int main(void)
{
    pg_ok = pg_test_start();
    RUN(open_migrate_reopen);
    RUN(concurrent_first_open);
    RUN(params_rows_and_transactions);
    RUN(deadlock_is_retryable);
    RUN(leases_die_with_their_connection);
    RUN(reconnects_after_the_server_drops_it);
    RUN(kept_lease_taken_again_after_reconnect);
    RUN(conditional_updates_never_overdraw);
    TEST_END();
}
