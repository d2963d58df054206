/*
 * store_postgres — the shared backend: one libpq connection per struct store,
 * for ledgers that several maas nodes use at once (postgresql://... URLs).
 *
 * Transactions: STORE_TX_WRITE is a plain BEGIN (READ COMMITTED). Callers
 * never read-modify-write: they lock rows with conditional UPDATE/DELETE ...
 * RETURNING, which PostgreSQL re-evaluates on the newest row version after
 * waiting for the lock, so concurrent admissions and settlements from any
 * number of nodes serialise per row. STORE_TX_WRITE_LAZY adds SET LOCAL
 * synchronous_commit = off (the commit does not wait for the WAL flush).
 * STORE_TX_READ is REPEATABLE READ READ ONLY, so that every statement of a
 * report sees one snapshot (the rows add up to the total) — a read-only
 * transaction at that level never fails with a serialization error.
 *
 * Statements go through PQexecParams with $1..$N natively; integers are sent
 * as int8 and text as text (typed, so the server never has to guess), results
 * come back in text form and are parsed on access. A failed COMMIT (including
 * the "ROLLBACK" PostgreSQL answers for a transaction already aborted) is an
 * error. The SQLSTATE of the last failure is kept: 40001 (serialization) and
 * 40P01 (deadlock) mark it retryable (store_last_retryable).
 *
 * Leases are session advisory locks on a 64-bit key (FNV-1a of the name):
 * store_lease_keep takes it in shared mode, so every connection of a process
 * can keep that process's lease; store_lease_free and store_lease_claim try it
 * in exclusive mode, which succeeds only when no session keeps it. The server
 * drops a session's locks when the session ends, however it ends.
 * Migrations run under a transaction-scoped advisory lock (migrate_lock).
 *
 * A connection the server closed is reopened before the next statement
 * outside a transaction (never repeating the statement that failed), and the
 * leases it keeps are taken again right then, before that statement: a
 * session that ended took them with it, and a process whose connections came
 * back without its lease would look dead to every other node (whose recovery
 * would release its running requests' holds, unbilled). If a lease cannot be
 * taken again (another node has claimed it, judging the process dead, and
 * does not give it up within LEASE_WAIT_MS), the statement fails instead of
 * running without it, and the next statement tries again. Sessions set
 * idle_in_transaction_session_timeout, so a node stopped in the middle of a
 * transaction cannot hold row locks for more than a minute.
 *
 * Threads: one connection per struct store, as store.h says; libpq
 * connections are independent, so the pool's connections run in parallel.
 */
#include "store/store_int.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#define PG_MAX_PARAMS 32
#define OID_INT8 20
#define OID_TEXT 25
#define PG_MAX_KEPT 4
/* How long re-taking a kept lease after a reconnect waits for another
 * session's claim on it (a recovery in progress) to end. */
#define LEASE_WAIT_MS 2000

struct pg {
    struct store base;
    PGconn *conn;   /* owned */
    char where[256]; /* "postgresql host:port/db" for messages; never the password */
    char sqlstate[6];
    int64_t kept[PG_MAX_KEPT]; /* advisory keys of the leases this connection keeps */
    int n_kept;
    int n_held;     /* of kept[], the first n_held are held by the current session */
};

static void pg_set_where(struct pg *p)
{
    const char *host = PQhost(p->conn), *port = PQport(p->conn), *db = PQdb(p->conn);
    snprintf(p->where, sizeof p->where, "postgresql %s:%s/%s", host && *host ? host : "localhost",
             port && *port ? port : "5432", db ? db : "?");
}

/* Records the failure of res (may be NULL) and returns -1. */
static int pg_fail(struct pg *p, PGresult *res, const char *sql, struct err *e)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(p->sqlstate, sizeof p->sqlstate, "%s", state ? state : "");
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    if (!msg || !*msg)
        msg = PQerrorMessage(p->conn);
    char clean[512];
    snprintf(clean, sizeof clean, "%s", msg && *msg ? msg : "unknown error");
    size_t n = strlen(clean);
    while (n && (clean[n - 1] == '\n' || clean[n - 1] == ' '))
        clean[--n] = '\0';
    if (sql)
        err_set(e, ERR_INTERNAL, "%s: \"%.60s\": %s%s%s%s", p->where, sql, clean, state ? " (SQLSTATE " : "", state ? state : "",
                state ? ")" : "");
    else
        err_set(e, ERR_INTERNAL, "%s: %s", p->where, clean);
    return -1;
}

static void pg_ok(struct pg *p)
{
    p->sqlstate[0] = '\0';
}

static int pg_script(struct store *s, const char *sql, struct err *e)
{
    struct pg *p = (struct pg *)s;
    PGresult *res = PQexec(p->conn, sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        pg_fail(p, res, sql, e);
        PQclear(res);
        return -1;
    }
    PQclear(res);
    pg_ok(p);
    return 0;
}

static void pg_close(struct store *s)
{
    struct pg *p = (struct pg *)s;
    PQfinish(p->conn);
    free(p);
}

/* Per-session settings, applied at connect and after a reconnect. A session
 * left idle inside a transaction (a node stopped while holding row locks) is
 * ended by the server after a minute, so it cannot block the other nodes. */
static const char session_sql[] = "SET client_encoding = 'UTF8'; SET TIME ZONE 'UTC';"
                                   " SET idle_in_transaction_session_timeout = '60s'";

/* Takes one kept lease (shared) on the current session, waiting at most
 * LEASE_WAIT_MS for an exclusive claim of another session to end. The lock is
 * session-level: it outlives the little transaction that bounds the wait. */
static int take_kept(struct pg *p, int64_t key, struct err *e)
{
    char sql[200];
    snprintf(sql, sizeof sql,
             "BEGIN; SET LOCAL lock_timeout = '%dms'; SELECT pg_advisory_lock_shared(%lld); COMMIT",
             LEASE_WAIT_MS, (long long)key);
    if (pg_script(&p->base, sql, e)) {
        if (PQstatus(p->conn) == CONNECTION_OK && PQtransactionStatus(p->conn) != PQTRANS_IDLE)
            PQclear(PQexec(p->conn, "ROLLBACK"));
        return -1;
    }
    return 0;
}

/* A connection the server dropped (restart, failover, idle kill) is reopened
 * before the next statement outside a transaction, where no state is lost.
 * The statement that met the broken connection has failed already, and is not
 * repeated: it may have been committed before the connection broke. The
 * leases the connection keeps are taken again before anything else runs on
 * the new session; until they are, every statement fails. */
static int ensure_connected(struct pg *p, struct err *e)
{
    if (p->base.in_tx)
        return 0;
    if (PQstatus(p->conn) != CONNECTION_OK) {
        PQreset(p->conn);
        if (PQstatus(p->conn) != CONNECTION_OK)
            return pg_fail(p, NULL, NULL, e);
        p->n_held = 0; /* the old session's locks ended with it */
        if (pg_script(&p->base, session_sql, e))
            return -1;
    }
    if (p->n_held < p->n_kept) {
        while (p->n_held < p->n_kept) {
            if (take_kept(p, p->kept[p->n_held], e))
                return err_prefix(e, "reconnected, but this process's lease cannot be taken again");
            p->n_held++;
        }
        log_warn("%s: the database session was lost and has been reopened; its lease is held again", p->where);
    }
    return 0;
}

static int pg_begin(struct store *s, enum store_tx mode, struct err *e)
{
    struct pg *p = (struct pg *)s;
    if (ensure_connected(p, e))
        return -1;
    switch (mode) {
    case STORE_TX_READ:
        return pg_script(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", e);
    case STORE_TX_WRITE_LAZY:
        return pg_script(s, "BEGIN; SET LOCAL synchronous_commit = off", e);
    default:
        return pg_script(s, "BEGIN", e);
    }
}

static int pg_commit(struct store *s, struct err *e)
{
    struct pg *p = (struct pg *)s;
    PGresult *res = PQexec(p->conn, "COMMIT");
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
        pg_fail(p, res, "COMMIT", e);
        PQclear(res);
        return -1;
    }
    /* COMMIT of an aborted transaction "succeeds" with the tag ROLLBACK. */
    if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        PQclear(res);
        snprintf(p->sqlstate, sizeof p->sqlstate, "25P02");
        return err_set(e, ERR_INTERNAL, "%s: COMMIT: the transaction had failed and was rolled back", p->where);
    }
    PQclear(res);
    pg_ok(p);
    return 0;
}

static void pg_rollback(struct store *s)
{
    struct pg *p = (struct pg *)s;
    if (PQtransactionStatus(p->conn) != PQTRANS_IDLE && PQstatus(p->conn) == CONNECTION_OK)
        PQclear(PQexec(p->conn, "ROLLBACK"));
}

/* Runs one statement; *out receives the result (caller clears) on success. */
static int run(struct pg *p, const char *sql, const struct store_val *v, int n, PGresult **out, struct err *e)
{
    Oid types[PG_MAX_PARAMS];
    const char *values[PG_MAX_PARAMS];
    char nums[PG_MAX_PARAMS][24];
    if (n > PG_MAX_PARAMS)
        return err_set(e, ERR_INTERNAL, "%s: \"%.60s\": %d parameters, at most %d supported", p->where, sql, n, PG_MAX_PARAMS);
    for (int i = 0; i < n; i++) {
        switch (v[i].type) {
        case STORE_INT:
            types[i] = OID_INT8;
            snprintf(nums[i], sizeof nums[i], "%lld", (long long)v[i].i);
            values[i] = nums[i];
            break;
        case STORE_TEXT:
            types[i] = OID_TEXT;
            values[i] = v[i].s;
            break;
        default:
            types[i] = 0; /* the server infers the type of a NULL from its use */
            values[i] = NULL;
            break;
        }
    }
    if (ensure_connected(p, e))
        return -1;
    PGresult *res = PQexecParams(p->conn, sql, n, n ? types : NULL, n ? values : NULL, NULL, NULL, 0);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        pg_fail(p, res, sql, e);
        PQclear(res);
        return -1;
    }
    pg_ok(p);
    *out = res;
    return 0;
}

static int pg_exec(struct store *s, const char *sql, const struct store_val *v, int n, int64_t *changes,
                   struct err *e)
{
    struct pg *p = (struct pg *)s;
    PGresult *res;
    if (run(p, sql, v, n, &res, e))
        return -1;
    if (changes) {
        const char *t = PQcmdTuples(res);
        *changes = t && *t ? strtoll(t, NULL, 10) : 0;
    }
    PQclear(res);
    return 0;
}

struct pg_row {
    PGresult *res; /* borrowed from pg_query */
    int row;
};

static int pg_query(struct store *s, const char *sql, const struct store_val *v, int n, store_row_fn fn,
                    void *ctx, struct err *e)
{
    struct pg *p = (struct pg *)s;
    PGresult *res;
    if (run(p, sql, v, n, &res, e))
        return -1;
    struct pg_row pr = {res, 0};
    struct store_row row = {.ops = s->ops, .impl = &pr};
    int rows = PQntuples(res);
    for (pr.row = 0; pr.row < rows; pr.row++)
        if (fn(ctx, &row))
            break;
    PQclear(res);
    return 0;
}

static int pg_row_is_null(const struct store_row *r, int col)
{
    const struct pg_row *pr = r->impl;
    return PQgetisnull(pr->res, pr->row, col);
}

static int64_t pg_row_int(const struct store_row *r, int col)
{
    const struct pg_row *pr = r->impl;
    if (PQgetisnull(pr->res, pr->row, col))
        return 0;
    const char *t = PQgetvalue(pr->res, pr->row, col);
    if (t[0] == 't' && t[1] == '\0') /* boolean */
        return 1;
    /* SUM() of BIGINT is NUMERIC in PostgreSQL: integral text all the same. */
    return strtoll(t, NULL, 10);
}

static const char *pg_row_text(const struct store_row *r, int col)
{
    const struct pg_row *pr = r->impl;
    if (PQgetisnull(pr->res, pr->row, col))
        return NULL;
    return PQgetvalue(pr->res, pr->row, col);
}

/* Advisory-lock keys are 64-bit: FNV-1a of the name from the legacy basis.
 * Every node sharing the database must compute the same keys, so the basis
 * cannot change (see core.h; core_basics pins the migration lock's key). */
static int64_t lock_key(const char *name)
{
    return (int64_t)hash_fnv1a64(HASH_FNV64_BASIS_LEGACY, name, strlen(name));
}

static int pg_migrate_lock(struct store *s, struct err *e)
{
    struct pg *p = (struct pg *)s;
    PGresult *res;
    struct store_val k = SV_INT(lock_key("maas ledger migrations"));
    if (run(p, "SELECT pg_advisory_xact_lock($1)", &k, 1, &res, e))
        return -1;
    PQclear(res);
    return 0;
}

static int try_lock(struct pg *p, const char *name, int *got, struct err *e)
{
    PGresult *res;
    struct store_val k = SV_INT(lock_key(name));
    if (run(p, "SELECT pg_try_advisory_lock($1)", &k, 1, &res, e))
        return -1;
    *got = PQntuples(res) == 1 && !strcmp(PQgetvalue(res, 0, 0), "t");
    PQclear(res);
    return 0;
}

static int pg_lease_keep(struct store *s, const char *name, struct err *e)
{
    struct pg *p = (struct pg *)s;
    if (p->n_kept == PG_MAX_KEPT)
        return err_set(e, ERR_INTERNAL, "%s: lease '%s': a connection keeps at most %d leases", p->where, name, PG_MAX_KEPT);
    if (ensure_connected(p, e))
        return -1;
    int64_t key = lock_key(name);
    if (take_kept(p, key, e))
        return err_prefix(e, "lease '%s'", name);
    /* from now on ensure_connected takes it again after every reconnect */
    p->kept[p->n_kept++] = key;
    p->n_held = p->n_kept;
    return 0;
}

static int pg_lease_claim(struct store *s, const char *name, int *claimed, struct err *e)
{
    struct pg *p = (struct pg *)s;
    return try_lock(p, name, claimed, e);
}

static int pg_lease_drop(struct store *s, const char *name, struct err *e)
{
    struct pg *p = (struct pg *)s;
    PGresult *res;
    struct store_val k = SV_INT(lock_key(name));
    if (run(p, "SELECT pg_advisory_unlock($1)", &k, 1, &res, e))
        return -1;
    PQclear(res);
    return 0;
}

static int pg_lease_free(struct store *s, const char *name, int *is_free, struct err *e)
{
    int got = 0;
    if (pg_lease_claim(s, name, &got, e))
        return -1;
    if (got && pg_lease_drop(s, name, e))
        return -1;
    *is_free = got;
    return 0;
}

/* One retry: the first statement on a dropped session fails and marks the
 * connection broken; the second reopens it (and takes its leases again). */
static int pg_ping(struct store *s, struct err *e)
{
    struct pg *p = (struct pg *)s;
    PGresult *res;
    if (run(p, "SELECT 1", NULL, 0, &res, e)) {
        if (PQstatus(p->conn) == CONNECTION_OK)
            return -1;
        if (run(p, "SELECT 1", NULL, 0, &res, e))
            return -1;
    }
    PQclear(res);
    return 0;
}

static int pg_retryable(const struct store *s)
{
    const struct pg *p = (const struct pg *)s;
    return !strcmp(p->sqlstate, "40001") || !strcmp(p->sqlstate, "40P01");
}

static const struct store_ops postgres_ops = {
    .name = "postgresql",
    STORE_OPS_REQUIRED(pg),
    .migrate_lock = pg_migrate_lock,
    .lease_keep = pg_lease_keep,
    .lease_free = pg_lease_free,
    .lease_claim = pg_lease_claim,
    .lease_drop = pg_lease_drop,
    .ping = pg_ping,
    .retryable = pg_retryable,
};

static void quiet_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message; /* "relation already exists, skipping" and the like */
}

int store_postgres_open(const char *url, struct store **out, struct err *e)
{
    struct pg *p = calloc(1, sizeof *p);
    if (!p)
        return err_set(e, ERR_NOMEM, "postgresql: out of memory");
    p->base.ops = &postgres_ops;
    p->base.fail_after = -1;
    p->conn = PQconnectdb(url);
    if (!p->conn) {
        free(p);
        return err_set(e, ERR_NOMEM, "postgresql: out of memory");
    }
    if (PQstatus(p->conn) != CONNECTION_OK) {
        /* PQerrorMessage names host and port but never the password. */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(p->conn));
        size_t n = strlen(msg);
        while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
            msg[--n] = '\0';
        err_set(e, ERR_UNAVAILABLE, "PostgreSQL ledger: cannot connect: %s", msg);
        goto fail;
    }
    pg_set_where(p);
    PQsetNoticeProcessor(p->conn, quiet_notices, NULL);
    if (pg_script(&p->base, session_sql, e))
        goto fail;
    *out = &p->base;
    return 0;
fail:
    PQfinish(p->conn);
    free(p);
    return -1;
}
