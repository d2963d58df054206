/*
 * store — the backend-independent half: choosing a backend from the URL,
 * dispatching through its vtable, the fault-injection counter, and schema
 * migrations (a schema_version table; each pending migration runs in one write
 * transaction together with its version row, re-checking the version inside
 * the transaction so that two processes opening a new database at once do not
 * both apply it; on PostgreSQL under an advisory transaction lock too, since
 * READ COMMITTED alone would let both see the old version).
 */
#include "store/store_int.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static int starts_with(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* mkdir -p, mode 0700 for what it creates (the ledger and its secrets). */
static int make_dirs(const char *dir, struct err *e)
{
    char buf[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf)
        return err_set(e, ERR_INTERNAL, "data directory '%s': bad path", dir);
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0700) != 0 && errno != EEXIST)
                return err_set(e, ERR_IO, "data directory '%s': cannot create '%s': %s", dir, buf, strerror(errno));
            buf[i] = c;
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return err_set(e, ERR_INTERNAL, "data directory '%s': not a directory", dir);
    return 0;
}

int store_open(const char *url, const struct store_schema *schema, struct store **out, struct err *e)
{
    MAAS_ASSERT(schema);
    struct store *s = NULL;
    char path[4096];
    if (!url || !*url)
        return err_set(e, ERR_INTERNAL, "ledger: empty database location");
    if (starts_with(url, "postgresql://") || starts_with(url, "postgres://")) {
        if (store_postgres_open(url, &s, e))
            return -1;
        if (store_migrate(s, schema->migrations, schema->n, e)) {
            err_prefix(e, "postgresql ledger");
            store_close(s);
            return -1;
        }
        *out = s;
        return 0;
    }
    if (starts_with(url, "sqlite:")) {
        snprintf(path, sizeof path, "%s", url + strlen("sqlite:"));
    } else {
        if (make_dirs(url, e))
            return -1;
        if ((size_t)snprintf(path, sizeof path, "%s/ledger.db", url) >= sizeof path)
            return err_set(e, ERR_INTERNAL, "data directory '%s': path too long", url);

    }
    if (store_sqlite_open(path, &s, e))
        return -1;
    if (store_migrate(s, schema->migrations, schema->n, e)) {
        err_prefix(e, "%s", path);
        store_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

void store_close(struct store *s)
{
    if (s)
        s->ops->close(s);
}

const char *store_backend(const struct store *s)
{
    return s->ops->name;
}

/* The fault-injection counter: one tick per operation. A test sets it from
 * its own thread while the ledger writer thread ticks it, so it is atomic
 * (relaxed: it orders nothing else). */
static int tick(struct store *s, struct err *e)
{
    long left = __atomic_load_n(&s->fail_after, __ATOMIC_RELAXED);
    while (left > 0 && !__atomic_compare_exchange_n(&s->fail_after, &left, left - 1, false,
                                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    if (left == 0)
        return err_set(e, ERR_INTERNAL, "%s: injected failure", s->ops->name);
    return 0;
}

void store_fail_after(struct store *s, long n)
{
    __atomic_store_n(&s->fail_after, n < 0 ? -1 : n, __ATOMIC_RELAXED);
}

int store_begin(struct store *s, enum store_tx mode, struct err *e)
{
    MAAS_ASSERT(!s->in_tx);
    if (tick(s, e) || s->ops->begin(s, mode, e))
        return -1;
    s->in_tx = 1;
    return 0;
}

int store_commit(struct store *s, struct err *e)
{
    MAAS_ASSERT(s->in_tx);
    if (tick(s, e) || s->ops->commit(s, e)) {
        s->ops->rollback(s);
        s->in_tx = 0;
        return -1;
    }
    s->in_tx = 0;
    return 0;
}

void store_rollback(struct store *s)
{
    if (s->in_tx)
        s->ops->rollback(s);
    s->in_tx = 0;
}

static int savepoint_cmd(struct store *s, const char *verb, const char *name, struct err *e)
{
    char sql[128];
    for (const char *p = name; *p; p++)
        MAAS_ASSERT((*p >= 'a' && *p <= 'z') || *p == '_' || (*p >= '0' && *p <= '9'));
    snprintf(sql, sizeof sql, "%s %s", verb, name);
    if (tick(s, e))
        return -1;
    /* through exec, so the backend can keep the statement prepared */
    return s->ops->exec(s, sql, NULL, 0, NULL, e);
}

int store_savepoint(struct store *s, const char *name, struct err *e)
{
    return savepoint_cmd(s, "SAVEPOINT", name, e);
}

int store_release(struct store *s, const char *name, struct err *e)
{
    return savepoint_cmd(s, "RELEASE SAVEPOINT", name, e);
}

int store_rollback_to(struct store *s, const char *name, struct err *e)
{
    /* Rolling back must work even when the injected failure is active, or a
     * group could not recover from one failing item. */
    char sql[128];
    snprintf(sql, sizeof sql, "ROLLBACK TO SAVEPOINT %s", name);
    return s->ops->exec(s, sql, NULL, 0, NULL, e);
}

int store_exec(struct store *s, const char *sql, const struct store_val *params, int n_params,
               int64_t *changes, struct err *e)
{
    if (tick(s, e))
        return -1;
    return s->ops->exec(s, sql, params, n_params, changes, e);
}

int store_query(struct store *s, const char *sql, const struct store_val *params, int n_params,
                store_row_fn fn, void *ctx, struct err *e)
{
    if (tick(s, e))
        return -1;
    return s->ops->query(s, sql, params, n_params, fn, ctx, e);
}

int store_lease_keep(struct store *s, const char *name, struct err *e)
{
    if (!s->ops->lease_keep)
        return err_set(e, ERR_INTERNAL, "%s: leases are not supported", s->ops->name);
    if (tick(s, e))
        return -1;
    return s->ops->lease_keep(s, name, e);
}

int store_lease_free(struct store *s, const char *name, int *is_free, struct err *e)
{
    if (!s->ops->lease_free)
        return err_set(e, ERR_INTERNAL, "%s: leases are not supported", s->ops->name);
    if (tick(s, e))
        return -1;
    return s->ops->lease_free(s, name, is_free, e);
}

int store_lease_claim(struct store *s, const char *name, int *claimed, struct err *e)
{
    if (!s->ops->lease_claim)
        return err_set(e, ERR_INTERNAL, "%s: leases are not supported", s->ops->name);
    if (tick(s, e))
        return -1;
    return s->ops->lease_claim(s, name, claimed, e);
}

int store_lease_drop(struct store *s, const char *name, struct err *e)
{
    /* Like a rollback, giving up must work while injected failures are on. */
    if (!s->ops->lease_drop)
        return err_set(e, ERR_INTERNAL, "%s: leases are not supported", s->ops->name);
    return s->ops->lease_drop(s, name, e);
}

int store_ping(struct store *s, struct err *e)
{
    MAAS_ASSERT(!s->in_tx);
    if (tick(s, e))
        return -1;
    return s->ops->ping ? s->ops->ping(s, e) : 0;
}

int store_last_retryable(const struct store *s)
{
    return s->ops->retryable ? s->ops->retryable(s) : 0;
}

int store_row_is_null(const struct store_row *r, int col)
{
    return r->ops->row_is_null(r, col);
}

int64_t store_row_int(const struct store_row *r, int col)
{
    return r->ops->row_int(r, col);
}

const char *store_row_text(const struct store_row *r, int col)
{
    return r->ops->row_text(r, col);
}

struct one_int {
    int64_t v;
    int found;
};

static int one_int_row(void *ctx, const struct store_row *r)
{
    struct one_int *o = ctx;
    if (!store_row_is_null(r, 0)) {
        o->v = store_row_int(r, 0);
        o->found = 1;
    }
    return 1;
}

int store_query_int(struct store *s, const char *sql, const struct store_val *params, int n_params,
                    int64_t *out, int *found, struct err *e)
{
    struct one_int o = {0, 0};
    if (store_query(s, sql, params, n_params, one_int_row, &o, e))
        return -1;
    if (o.found)
        *out = o.v;
    if (found)
        *found = o.found;
    return 0;
}

/* ---- migrations ---- */

static const char schema_version_ddl[] =
    "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";

int store_schema_version(struct store *s, int *version, struct err *e)
{
    int64_t v = 0;
    int found = 0;
    if (store_query_int(s, "SELECT MAX(version) FROM schema_version", NULL, 0, &v, &found, e))
        return -1;
    *version = found ? (int)v : 0;
    return 0;
}

int store_migrate(struct store *s, const struct store_migration *m, int n, struct err *e)
{
    int latest = n > 0 ? m[n - 1].version : 0;
    if (s->ops->migrate_lock) {
        /* Two processes creating the table at once would collide in the
         * catalog: create it under the migration lock. */
        if (store_begin(s, STORE_TX_WRITE, e))
            return err_prefix(e, "creating schema_version");
        if (s->ops->migrate_lock(s, e) || tick(s, e) || s->ops->script(s, schema_version_ddl, e)) {
            store_rollback(s);
            return err_prefix(e, "creating schema_version");
        }
        if (store_commit(s, e))
            return err_prefix(e, "creating schema_version");
    } else if (tick(s, e) || s->ops->script(s, schema_version_ddl, e)) {
        return err_prefix(e, "creating schema_version");
    }
    int i;
    for (i = 0; i < n; i++) {
        MAAS_ASSERT(m[i].version == i + 1);
        int cur;
        if (store_begin(s, STORE_TX_WRITE, e))
            return err_prefix(e, "migration %d", m[i].version);
        if (s->ops->migrate_lock && s->ops->migrate_lock(s, e))
            goto fail;
        if (store_schema_version(s, &cur, e))
            goto fail;
        if (cur > latest) {
            store_rollback(s);
            return err_set(e, ERR_INTERNAL, "database schema version %d is newer than this maas knows (%d); "
                              "use a newer maas or another data directory", cur, latest);
        }
        if (cur >= m[i].version) {
            store_rollback(s);
            continue;
        }
        const char *sql = m[i].sqlite;
        if (!strcmp(s->ops->name, "postgresql") && m[i].postgres)
            sql = m[i].postgres;
        if (tick(s, e) || s->ops->script(s, sql, e))
            goto fail;
        struct store_val p[2] = {SV_INT(m[i].version), SV_INT((int64_t)time(NULL))};
        if (store_exec(s, "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)", p, 2, NULL, e))
            goto fail;
        if (store_commit(s, e))
            return err_prefix(e, "migration %d", m[i].version);
    }
    /* An already up-to-date database may still be newer than we know. */
    int cur;
    if (store_schema_version(s, &cur, e))
        return -1;
    if (cur > latest)
        return err_set(e, ERR_INTERNAL, "database schema version %d is newer than this maas knows (%d); "
                          "use a newer maas or another data directory", cur, latest);
    return 0;
fail:
    store_rollback(s);
    return err_prefix(e, "migration %d", m[i].version);
}
