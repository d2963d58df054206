/*
 * store — the ledger's storage: one small SQL-level contract over an
 * opaque connection, with one file per backend behind it (store_sqlite.c,
 * store_postgres.c), as Redis picks ae_epoll.c or ae_kqueue.c.
 *
 * What callers get:
 *   - store_open(url, schema)
 *                          "DIR" or "sqlite:PATH" → SQLite (WAL, busy timeout,
 *                          foreign keys, synchronous=FULL); DIR means
 *                          DIR/ledger.db. "postgresql://..." or "postgres://..."
 *                          → PostgreSQL (libpq connection URI; the password may
 *                          also come from PGPASSWORD or ~/.pgpass). Opening
 *                          applies the migrations of the caller's schema
 *                          (PostgreSQL: under an advisory lock, so nodes may
 *                          start at once). The store owns no table but
 *                          schema_version; the tables are the caller's
 *                          (billing/schema.c).
 *   - transactions         store_begin(STORE_TX_WRITE) takes the write lock at
 *                          the start (SQLite BEGIN IMMEDIATE; PostgreSQL BEGIN,
 *                          and callers lock rows with conditional UPDATEs, which
 *                          both engines serialise the same way). Savepoints let
 *                          one failing item of a group roll back alone.
 *   - statements           SQL with $1, $2 ... placeholders (both engines accept
 *                          them), parameters as struct store_val, rows through a
 *                          callback. Write SQL that ports: no engine-specific
 *                          functions, TEXT and BIGINT columns, "AS alias" on
 *                          subqueries, conditional updates instead of
 *                          read-modify-write.
 *
 * Errors: functions return 0 on success and -1 with the reason in *e.
 * Threads: a struct store is one connection; use it from one thread at a time.
 * SQLite allows one writer per database: the SQLite backend serialises the
 * write transactions of all connections of the process with one mutex (taken
 * by store_begin(WRITE), released by commit/rollback), so that threads queue
 * fairly instead of polling the file lock; the busy timeout then only covers
 * other processes. Do not open a second write transaction on another
 * connection from a thread that holds one.
 * Fault injection: store_fail_after(s, n) makes every operation after the next
 * n fail (as an I/O error would), so tests can check that money still balances.
 */
#ifndef MAAS_STORE_H
#define MAAS_STORE_H

#include "core/core.h"

#include <stdint.h>

struct store;
struct store_row;

enum store_type { STORE_NULL, STORE_INT, STORE_TEXT };

struct store_val {
    enum store_type type;
    int64_t i;
    const char *s; /* borrowed; must outlive the call */
};

#define SV_INT(x) ((struct store_val){.type = STORE_INT, .i = (int64_t)(x)})
#define SV_TEXT(x) ((struct store_val){.type = STORE_TEXT, .s = (x)})
#define SV_NULL ((struct store_val){.type = STORE_NULL})
/* text or NULL when x is NULL */
#define SV_OPT_TEXT(x) ((x) ? SV_TEXT(x) : SV_NULL)

/* STORE_TX_WRITE commits durably (fsync; survives power loss).
 * STORE_TX_WRITE_LAZY commits atomically and survives a crash of the process,
 * but the last such commits may be lost with the machine (no fsync of their
 * own; the next durable commit makes them durable too, as the log is
 * sequential). Use it only for state that recovery rebuilds anyway — holds,
 * which a dead process's restart releases. (SQLite: synchronous=NORMAL for
 * that transaction; PostgreSQL: SET LOCAL synchronous_commit = off.) */
enum store_tx { STORE_TX_READ, STORE_TX_WRITE, STORE_TX_WRITE_LAZY };

struct store_schema;

/* Opens a connection to the database named by url (see above), creating it
 * and applying the migrations of schema (required) that it lacks, as
 * store_migrate does. A database whose schema is newer than schema knows is
 * refused. */
int store_open(const char *url, const struct store_schema *schema, struct store **out, struct err *e);
void store_close(struct store *s); /* NULL does nothing */

/* "sqlite" or "postgresql". */
const char *store_backend(const struct store *s);

int store_begin(struct store *s, enum store_tx mode, struct err *e);
int store_commit(struct store *s, struct err *e);
/* Never fails from the caller's point of view; safe to call with no
 * transaction open. */
void store_rollback(struct store *s);
int store_savepoint(struct store *s, const char *name, struct err *e);
int store_release(struct store *s, const char *name, struct err *e);
int store_rollback_to(struct store *s, const char *name, struct err *e);

/* Runs a statement that returns no rows. *changes (if not NULL) receives the
 * number of rows inserted, updated or deleted. A UNIQUE or CHECK violation is
 * an error like any other. */
int store_exec(struct store *s, const char *sql, const struct store_val *params, int n_params,
               int64_t *changes, struct err *e);

/* Runs a query and calls fn once per row; fn returns 0 to go on, non-zero to
 * stop early (not an error). The row is valid only during the call. */
typedef int (*store_row_fn)(void *ctx, const struct store_row *row);
int store_query(struct store *s, const char *sql, const struct store_val *params, int n_params,
                store_row_fn fn, void *ctx, struct err *e);

/* Column access inside a row callback (columns count from 0). Text is valid
 * only during the callback; NULL reads as 0 / NULL. */
int store_row_is_null(const struct store_row *r, int col);
int64_t store_row_int(const struct store_row *r, int col);
const char *store_row_text(const struct store_row *r, int col);

/* Convenience: the first column of the first row as an integer. *found is set
 * to 0 when there is no row (or the value is NULL) and *out is then left alone. */
int store_query_int(struct store *s, const char *sql, const struct store_val *params, int n_params,
                    int64_t *out, int *found, struct err *e);

/* ---- schema migrations ----
 * Migration i (1-based version) is applied in its own write transaction
 * together with its row in schema_version. sqlite/postgres hold the SQL for
 * each engine; postgres NULL means the same SQL serves both. */
struct store_migration {
    int version;
    const char *sqlite;
    const char *postgres;
};
/* A database's schema: its migrations, versions 1..n in order. The module
 * that owns the tables defines it (billing: billing/schema.c). */
struct store_schema {
    const struct store_migration *migrations;
    int n;
};

/* Applies the given migrations (sorted by version, 1..n) that the database
 * lacks. Fails if the database holds a version newer than the last one. */
int store_migrate(struct store *s, const struct store_migration *m, int n, struct err *e);
/* The highest applied version (0 for an empty database). */
int store_schema_version(struct store *s, int *version, struct err *e);

/* ---- leases and retries (shared databases) ----
 * A lease is a named lock held by a database session; the database drops it
 * when the session ends, and so when the process dies, however it dies, so
 * any node can tell whether the process that held it is gone. PostgreSQL only
 * (session advisory locks); on SQLite the calls fail ("not supported") and a
 * caller uses lock files beside the database instead.
 *   store_lease_keep   this connection holds the lease for as long as it
 *                      lives, shared with any other connection that keeps the
 *                      same name (all the connections of one process keep its
 *                      lease: it is gone only when all of them are). The
 *                      connection takes it again whenever it is re-established
 *                      after the server dropped it, before any other statement
 *                      runs on it; while it cannot (a store_lease_claim of
 *                      another session holds the name past a short wait), every
 *                      statement on it fails. So a statement that succeeds on
 *                      the connection ran while the lease was held.
 *   store_lease_free   *is_free = 1 if no session holds it (momentarily taking
 *                      and dropping it to find out). Never waits.
 *   store_lease_claim  *claimed = 1 if no session held it: this connection now
 *                      holds it alone, and no other connection can keep it (or
 *                      run statements, if it keeps that name) until
 *                      store_lease_drop or the end of the session. Never waits.
 *   store_lease_drop   gives up a claim. */
int store_lease_keep(struct store *s, const char *name, struct err *e);
int store_lease_free(struct store *s, const char *name, int *is_free, struct err *e);
int store_lease_claim(struct store *s, const char *name, int *claimed, struct err *e);
int store_lease_drop(struct store *s, const char *name, struct err *e);
/* Checks that the connection works with a trivial statement; a connection the
 * server dropped is re-established at once (with its kept leases) and checked
 * again. Outside a transaction only. Always succeeds on SQLite. */
int store_ping(struct store *s, struct err *e);
/* 1 if the last failed operation on s was a serialization failure or a
 * deadlock (PostgreSQL SQLSTATE 40001 / 40P01): the transaction was rolled
 * back and running it again from its start may succeed. Always 0 on SQLite,
 * whose write transactions are serial. */
int store_last_retryable(const struct store *s);

/* ---- fault injection (tests) ----
 * After n more successful operations (begin, commit, exec, query, savepoint),
 * every operation fails with "injected failure" until reset with n < 0. A
 * commit that fails this way rolls the transaction back, as a lost write would. */
void store_fail_after(struct store *s, long n);

#endif
