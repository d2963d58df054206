/*
 * store_sqlite — the embedded backend: one SQLite file in WAL mode.
 *
 * Settings per connection: WAL (readers never block the writer),
 * synchronous=FULL (a committed settlement survives power loss; the writer
 * thread commits in groups so the fsync is shared), foreign keys on, a busy
 * timeout so that connections of this and other processes (maas admin while
 * the server runs) wait for the write lock instead of failing. Write
 * transactions are BEGIN IMMEDIATE: the lock is taken first, so a transaction
 * that reads a balance and then updates it can never interleave with another.
 *
 * Prepared statements are cached per connection, keyed by the SQL text.
 * Placeholders are $1..$N, bound by name so that the order in which they
 * appear in the SQL does not matter.
 */
#include "store/store_int.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STMT_CACHE 64
#define BUSY_TIMEOUT_MS 10000

struct stmt_slot {
    char *sql;           /* owned copy of the SQL text, the cache key */
    sqlite3_stmt *stmt;  /* owned */
};

struct sq {
    struct store base;
    sqlite3 *db; /* owned */
    char path[1024];
    struct stmt_slot cache[STMT_CACHE];
    int n_cache;
    int next_evict;
    int writing; /* holds write_mu */
    int lazy;    /* synchronous=NORMAL for the open transaction */
};

static int sq_err(struct sq *q, struct err *e, const char *what)
{
    return err_set(e, ERR_UNAVAILABLE, "%s: %s: %s", q->path, what, sqlite3_errmsg(q->db));
}

static int sq_script(struct store *s, const char *sql, struct err *e)
{
    struct sq *q = (struct sq *)s;
    char *msg = NULL;
    if (sqlite3_exec(q->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        err_set(e, ERR_UNAVAILABLE, "%s: %s", q->path, msg ? msg : sqlite3_errmsg(q->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static void sq_close(struct store *s)
{
    struct sq *q = (struct sq *)s;
    for (int i = 0; i < q->n_cache; i++) {
        sqlite3_finalize(q->cache[i].stmt);
        free(q->cache[i].sql);
    }
    sqlite3_close(q->db);
    free(q);
}

/* One writer at a time per process (see store.h). */
static pthread_mutex_t write_mu = PTHREAD_MUTEX_INITIALIZER;

static void end_tx(struct sq *q)
{
    if (q->lazy) {
        sqlite3_exec(q->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
        q->lazy = 0;
    }
    if (q->writing) {
        q->writing = 0;
        pthread_mutex_unlock(&write_mu);
    }
}

static int sq_begin(struct store *s, enum store_tx mode, struct err *e)
{
    struct sq *q = (struct sq *)s;
    if (mode == STORE_TX_READ)
        return sq_script(s, "BEGIN", e);
    pthread_mutex_lock(&write_mu);
    q->writing = 1;
    if (mode == STORE_TX_WRITE_LAZY) {
        q->lazy = 1;
        if (sq_script(s, "PRAGMA synchronous=NORMAL", e)) {
            end_tx(q);
            return -1;
        }
    }
    if (sq_script(s, "BEGIN IMMEDIATE", e)) {
        end_tx(q);
        return -1;
    }
    return 0;
}

static int sq_commit(struct store *s, struct err *e)
{
    struct sq *q = (struct sq *)s;
    int rc = sq_script(s, "COMMIT", e);
    /* A failed COMMIT leaves the transaction open: the caller rolls back,
     * which ends it. */
    if (rc == 0)
        end_tx(q);
    return rc;
}

static void sq_rollback(struct store *s)
{
    struct sq *q = (struct sq *)s;
    if (!sqlite3_get_autocommit(q->db))
        sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
    end_tx(q);
}

static int prepare(struct sq *q, const char *sql, sqlite3_stmt **out, struct err *e)
{
    for (int i = 0; i < q->n_cache; i++) {
        /* The text decides: a caller's buffer may be reused for other SQL. */
        if (!strcmp(q->cache[i].sql, sql)) {
            *out = q->cache[i].stmt;
            return 0;
        }
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK)
        return err_set(e, ERR_UNAVAILABLE, "%s: preparing \"%.80s\": %s", q->path, sql, sqlite3_errmsg(q->db));
    char *copy = strdup(sql);
    if (!copy) {
        sqlite3_finalize(st);
        return err_set(e, ERR_NOMEM, "%s: out of memory", q->path);
    }
    int slot;
    if (q->n_cache < STMT_CACHE) {
        slot = q->n_cache++;
    } else {
        slot = q->next_evict;
        q->next_evict = (q->next_evict + 1) % STMT_CACHE;
        sqlite3_finalize(q->cache[slot].stmt);
        free(q->cache[slot].sql);
    }
    q->cache[slot] = (struct stmt_slot){.sql = copy, .stmt = st};
    *out = st;
    return 0;
}

static int bind_all(struct sq *q, sqlite3_stmt *st, const struct store_val *p, int n, struct err *e)
{
    int count = sqlite3_bind_parameter_count(st);
    for (int i = 1; i <= count; i++) {
        const char *name = sqlite3_bind_parameter_name(st, i);
        if (!name || name[0] != '$')
            return err_set(e, ERR_INTERNAL, "%s: placeholder %d is not of the form $N", q->path, i);
        int k = atoi(name + 1);
        if (k < 1 || k > n)
            return err_set(e, ERR_INTERNAL, "%s: placeholder %s has no parameter (%d given)", q->path, name, n);
        const struct store_val *v = &p[k - 1];
        int rc;
        switch (v->type) {
        case STORE_INT:
            rc = sqlite3_bind_int64(st, i, v->i);
            break;
        case STORE_TEXT:
            rc = sqlite3_bind_text(st, i, v->s, -1, SQLITE_STATIC);
            break;
        default:
            rc = sqlite3_bind_null(st, i);
            break;
        }
        if (rc != SQLITE_OK)
            return sq_err(q, e, "binding parameters");
    }
    return 0;
}

static void done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static int sq_exec(struct store *s, const char *sql, const struct store_val *p, int n, int64_t *changes,
                   struct err *e)
{
    struct sq *q = (struct sq *)s;
    sqlite3_stmt *st;
    if (prepare(q, sql, &st, e) || bind_all(q, st, p, n, e))
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    if (rc != SQLITE_DONE) {
        err_set(e, ERR_UNAVAILABLE, "%s: \"%.60s\": %s", q->path, sql, sqlite3_errmsg(q->db));
        done(st);
        return -1;
    }
    if (changes)
        *changes = sqlite3_changes64(q->db);
    done(st);
    return 0;
}

static int sq_query(struct store *s, const char *sql, const struct store_val *p, int n, store_row_fn fn,
                    void *ctx, struct err *e)
{
    struct sq *q = (struct sq *)s;
    sqlite3_stmt *st;
    if (prepare(q, sql, &st, e) || bind_all(q, st, p, n, e))
        return -1;
    struct store_row row = {.ops = s->ops, .impl = st};
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (fn(ctx, &row)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE) {
        err_set(e, ERR_UNAVAILABLE, "%s: \"%.60s\": %s", q->path, sql, sqlite3_errmsg(q->db));
        done(st);
        return -1;
    }
    done(st);
    return 0;
}

static int sq_row_is_null(const struct store_row *r, int col)
{
    return sqlite3_column_type(r->impl, col) == SQLITE_NULL;
}

static int64_t sq_row_int(const struct store_row *r, int col)
{
    return sqlite3_column_int64(r->impl, col);
}

static const char *sq_row_text(const struct store_row *r, int col)
{
    return (const char *)sqlite3_column_text(r->impl, col);
}

static const struct store_ops sqlite_ops = {.name = "sqlite", STORE_OPS_REQUIRED(sq)};

int store_sqlite_open(const char *path, struct store **out, struct err *e)
{
    struct sq *q = calloc(1, sizeof *q);
    if (!q)
        return err_set(e, ERR_NOMEM, "%s: out of memory", path);
    q->base.ops = &sqlite_ops;
    q->base.fail_after = -1;
    snprintf(q->path, sizeof q->path, "%s", path);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &q->db, flags, NULL) != SQLITE_OK) {
        err_set(e, ERR_NOMEM, "%s: cannot open: %s", path, q->db ? sqlite3_errmsg(q->db) : "out of memory");
        goto fail;
    }
    /* Owner-only, before the -wal and -shm files exist (SQLite gives them
     * the database's mode). Never open()/close() the file ourselves: closing
     * any descriptor of it would drop every POSIX lock this process holds on
     * it, and another process could then checkpoint and reset the WAL under
     * our feet (a lost-commit bug the crash test caught). chmod touches no
     * lock. */
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077))
        chmod(path, st.st_mode & 0700);
    sqlite3_busy_timeout(q->db, BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(q->db, 1);
    /* journal_mode returns a row; sqlite3_exec ignores it. */
    if (sq_script(&q->base,
                  "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", e))
        goto fail;
    *out = &q->base;
    return 0;
fail:
    if (q->db)
        sqlite3_close(q->db);
    free(q);
    return -1;
}
