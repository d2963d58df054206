/* store — private: the backend vtable. Each backend (store_sqlite.c,
 * store_postgres.c) defines a struct that begins with struct store and a
 * struct store_ops; store.c dispatches through it and owns what is common to
 * all backends (the fault-injection counter, migrations). */
#ifndef MAAS_STORE_INT_H
#define MAAS_STORE_INT_H

#include "store/store.h"

struct store_ops {
    const char *name;
    void (*close)(struct store *s);
    int (*begin)(struct store *s, enum store_tx mode, struct err *e);
    int (*commit)(struct store *s, struct err *e);
    void (*rollback)(struct store *s);
    /* One or more statements without parameters or results (DDL, SAVEPOINT). */
    int (*script)(struct store *s, const char *sql, struct err *e);
    int (*exec)(struct store *s, const char *sql, const struct store_val *p, int n, int64_t *changes,
                struct err *e);
    int (*query)(struct store *s, const char *sql, const struct store_val *p, int n, store_row_fn fn,
                 void *ctx, struct err *e);
    int (*row_is_null)(const struct store_row *r, int col);
    int64_t (*row_int)(const struct store_row *r, int col);
    const char *(*row_text)(const struct store_row *r, int col);
    /* Optional (NULL where the engine needs none): */
    /* Serialises migrations across processes inside the open transaction
     * (PostgreSQL: pg_advisory_xact_lock; SQLite's BEGIN IMMEDIATE does it). */
    int (*migrate_lock)(struct store *s, struct err *e);
    int (*lease_keep)(struct store *s, const char *name, struct err *e);
    int (*lease_free)(struct store *s, const char *name, int *is_free, struct err *e);
    int (*lease_claim)(struct store *s, const char *name, int *claimed, struct err *e);
    int (*lease_drop)(struct store *s, const char *name, struct err *e);
    int (*ping)(struct store *s, struct err *e);
    /* 1 if the last failure was a serialization failure or a deadlock. */
    int (*retryable)(const struct store *s);
};

/* The entries every backend fills, from its functions named <p>_close,
 * <p>_begin and so on, so that a backend's table spells out only its name and
 * the optional entries it has. */
#define STORE_OPS_REQUIRED(p)                                                                         \
    .close = p##_close, .begin = p##_begin, .commit = p##_commit, .rollback = p##_rollback,           \
    .script = p##_script, .exec = p##_exec, .query = p##_query, .row_is_null = p##_row_is_null,       \
    .row_int = p##_row_int, .row_text = p##_row_text

struct store {
    const struct store_ops *ops;
    long fail_after; /* operations left before injected failures; < 0: off */
    int in_tx;       /* a transaction is open */
};

struct store_row {
    const struct store_ops *ops;
    void *impl; /* borrowed: the backend's current row (sqlite3_stmt *, PGresult row) */
};

/* Backend constructors: open the connection only (no migrations). */
int store_sqlite_open(const char *path, struct store **out, struct err *e);
int store_postgres_open(const char *url, struct store **out, struct err *e);

#endif
