/* store: opening, migrations (fresh, re-open, refuse newer), parameters,
 * transactions and the fault-injection hook. */
#include "store/store.h"
#include "store_test.h"
#include "test.h"

#include <unistd.h>

static char dir[256];

static void fresh_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/maas-store-test-%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

TEST(fresh_and_reopen)
{
    struct err e = {0};
    struct store *s = NULL;
    fresh_dir();
    CHECKF(store_open(dir, &test_schema, &s, &e) == 0, "%s", e.msg);
    if (!s)
        return;
    int v = -1;
    CHECK(store_schema_version(s, &v, &e) == 0);
    CHECK(v == test_schema.n);
    CHECK(!strcmp(store_backend(s), "sqlite"));
    store_close(s);
    s = NULL;
    CHECKF(store_open(dir, &test_schema, &s, &e) == 0, "%s", e.msg);
    CHECK(store_schema_version(s, &v, &e) == 0 && v == test_schema.n);
    int64_t n = -1;
    CHECK(store_query_int(s, "SELECT COUNT(*) FROM schema_version", NULL, 0, &n, NULL, &e) == 0);
    CHECK(n == test_schema.n);
    store_close(s);
}

TEST(refuse_newer)
{
    struct err e = {0};
    struct store *s = NULL;
    fresh_dir();
    CHECK(store_open(dir, &test_schema, &s, &e) == 0);
    CHECK(store_exec(s, "INSERT INTO schema_version (version, applied_at) VALUES ($1, 0)",
                     (struct store_val[]){SV_INT(999)}, 1, NULL, &e) == 0);
    store_close(s);
    s = NULL;
    CHECK(store_open(dir, &test_schema, &s, &e) == -1);
    CHECKF(strstr(e.msg, "newer") != NULL, "%s", e.msg);
    CHECK(s == NULL);
}

TEST(custom_migrations_in_order)
{
    struct err e = {0};
    struct store *s = NULL;
    char path[300];
    fresh_dir();
    CHECK(system("mkdir -p /tmp") == 0);
    snprintf(path, sizeof path, "sqlite:%s.db", dir);
    unlink(path + 7);
    /* open with the first test migration only, then add two more */
    static const struct store_schema first = {test_migrations, 1};
    CHECK(store_open(path, &first, &s, &e) == 0);
    static const struct store_migration extra[] = {
        {1, "SELECT 1", NULL},
        {2, "CREATE TABLE t2 (a BIGINT)", NULL},
        {3, "CREATE TABLE t3 (a BIGINT REFERENCES nonexistent_syntax_error(", NULL},
    };
    /* version 1 is already applied; 2 applies; 3 fails and rolls back alone. */
    CHECK(store_migrate(s, extra, 3, &e) == -1);
    CHECKF(strstr(e.msg, "migration 3") != NULL, "%s", e.msg);
    int v = 0;
    CHECK(store_schema_version(s, &v, &e) == 0 && v == 2);
    CHECK(store_exec(s, "INSERT INTO t2 (a) VALUES ($1)", (struct store_val[]){SV_INT(5)}, 1, NULL, &e) == 0);
    store_close(s);
    unlink(path + 7);
}

static int collect(void *ctx, const struct store_row *r)
{
    char *out = ctx;
    char buf[64];
    snprintf(buf, sizeof buf, "%s=%lld;", store_row_text(r, 0), (long long)store_row_int(r, 1));
    strcat(out, buf);
    return 0;
}

TEST(params_out_of_order_and_tx)
{
    struct err e = {0};
    struct store *s = NULL;
    fresh_dir();
    CHECK(store_open(dir, &test_schema, &s, &e) == 0);
    CHECK(store_exec(s, "CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT)", NULL, 0, NULL, &e) == 0);
    /* $2 appears before $1 and $1 twice. */
    struct store_val p[2] = {SV_INT(7), SV_TEXT("a")};
    CHECKF(store_exec(s, "INSERT INTO kv (k, v) VALUES ($2, $1 + $1)", p, 2, NULL, &e) == 0, "%s", e.msg);
    CHECK(store_begin(s, STORE_TX_WRITE, &e) == 0);
    CHECK(store_exec(s, "INSERT INTO kv (k, v) VALUES ('b', 1)", NULL, 0, NULL, &e) == 0);
    store_rollback(s);
    CHECK(store_begin(s, STORE_TX_WRITE, &e) == 0);
    CHECK(store_savepoint(s, "sp", &e) == 0);
    CHECK(store_exec(s, "INSERT INTO kv (k, v) VALUES ('c', 1)", NULL, 0, NULL, &e) == 0);
    CHECK(store_rollback_to(s, "sp", &e) == 0);
    CHECK(store_release(s, "sp", &e) == 0);
    CHECK(store_exec(s, "INSERT INTO kv (k, v) VALUES ('d', 2)", NULL, 0, NULL, &e) == 0);
    int64_t ch = 0;
    CHECK(store_exec(s, "UPDATE kv SET v = v + 1 WHERE k = $1 AND v > $2", (struct store_val[]){SV_TEXT("a"), SV_INT(100)}, 2, &ch, &e) == 0);
    CHECK(ch == 0);
    CHECK(store_commit(s, &e) == 0);
    char out[256] = "";
    CHECK(store_query(s, "SELECT k, v FROM kv ORDER BY k", NULL, 0, collect, out, &e) == 0);
    CHECKF(!strcmp(out, "a=14;d=2;"), "%s", out);
    /* A duplicate key is an error, not a crash. */
    CHECK(store_exec(s, "INSERT INTO kv (k, v) VALUES ('a', 1)", NULL, 0, NULL, &e) == -1);
    CHECKF(strstr(e.msg, "UNIQUE") != NULL, "%s", e.msg);
    /* Missing parameter. */
    CHECK(store_exec(s, "INSERT INTO kv (k, v) VALUES ($1, $2)", p, 1, NULL, &e) == -1);
    store_close(s);
}

TEST(fault_injection)
{
    struct err e = {0};
    struct store *s = NULL;
    fresh_dir();
    CHECK(store_open(dir, &test_schema, &s, &e) == 0);
    CHECK(store_exec(s, "CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT)", NULL, 0, NULL, &e) == 0);
    store_fail_after(s, 2); /* begin, exec succeed; commit fails */
    CHECK(store_begin(s, STORE_TX_WRITE, &e) == 0);
    CHECK(store_exec(s, "INSERT INTO kv (k, v) VALUES ('x', 1)", NULL, 0, NULL, &e) == 0);
    CHECK(store_commit(s, &e) == -1);
    CHECKF(strstr(e.msg, "injected") != NULL, "%s", e.msg);
    CHECK(store_exec(s, "SELECT 1", NULL, 0, NULL, &e) == -1);
    store_fail_after(s, -1);
    int64_t n = -1;
    CHECK(store_query_int(s, "SELECT COUNT(*) FROM kv", NULL, 0, &n, NULL, &e) == 0);
    CHECK(n == 0); /* the failed commit rolled back */
    store_close(s);
}

TEST(postgres_unreachable_clearly)
{
    struct err e = {0};
    struct store *s = NULL;
    CHECK(store_open("postgresql://127.0.0.1:1/maas?connect_timeout=2", &test_schema, &s, &e) == -1);
    CHECKF(strstr(e.msg, "PostgreSQL") != NULL, "%s", e.msg);
    CHECK(store_open("", &test_schema, &s, &e) == -1);
}

int main(void)
{
    RUN(fresh_and_reopen);
    RUN(refuse_newer);
    RUN(custom_migrations_in_order);
    RUN(params_out_of_order_and_tx);
    RUN(fault_injection);
    RUN(postgres_unreachable_clearly);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    TEST_END();
}
