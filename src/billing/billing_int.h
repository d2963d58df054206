/* billing — private: the handle, its connection pool and the settlement core
 * shared by the writer thread and the synchronous path. */
#ifndef MAAS_BILLING_INT_H
#define MAAS_BILLING_INT_H

#include "billing/billing.h"
#include "store/store.h"

#include <pthread.h>

struct settle_job {
    const char *request_id;       /* borrowed from the waiting caller */
    int64_t prompt, cached, completion;
    int64_t compute_us;           /* core-microseconds */
    const char *finish_reason;    /* borrowed */
    struct billing_usage *out;    /* borrowed; written by the writer */
    struct err err;               /* the writer's message when rc != 0 */
    int rc;
    int done;                     /* guarded by billing.q_mu */
    pthread_cond_t done_cv;       /* the waiting caller's own wake-up */
    struct settle_job *next;      /* queue link, guarded by billing.q_mu */
};

struct billing {
    char data_dir[1024];
    unsigned char pepper[32];     /* key-hashing secret, from secret_file */
    char node[128];
    char boot[96];
    char boots_dir[1100];         /* <data dir>/boots: one locked file per live process */
    int boot_fd;                  /* owned: flock'ed <boots_dir>/<boot>.lock, -1 if none */
    int shared;                   /* the ledger is a shared database (PostgreSQL): liveness by lease */
    struct store *lease;          /* owned (shared only): the lease keeper's connection (lease.c) */
    int lease_check_ms;           /* the keeper pings its connection this often */
    int lease_grace_ms;           /* recovery looks at a free lease twice, this far apart */
    pthread_t keeper;             /* the lease keeper thread, when has_keeper */
    int has_keeper;
    int lease_sync;               /* lease_mu and lease_cv are initialised */
    pthread_mutex_t lease_mu;     /* guards lease_stop */
    pthread_cond_t lease_cv;      /* CLOCK_MONOTONIC; signalled at stop */
    int lease_stop;
    int64_t (*now)(void *ctx);
    void *now_ctx;

    /* Connection pool for admissions and reads: conns[i] is in use while
     * busy[i]; both guarded by pool_mu. */
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    struct store **conns;         /* owned */
    int *busy;                    /* owned */
    int n_conn;

    /* The ledger writer: one thread that owns wconn and drains the queue. */
    struct store *wconn;          /* owned; used only by the writer thread */
    pthread_t writer;
    int has_writer;
    pthread_mutex_t q_mu;
    pthread_cond_t q_cv;          /* writer waits for work */
    pthread_cond_t q_space_cv;    /* producers wait for room */
    struct settle_job *q_head, *q_tail; /* guarded by q_mu */
    int q_len, q_cap, group_max;
    int stopping;                 /* guarded by q_mu */
    struct billing_writer_stats stats; /* guarded by q_mu */
};

/* The ledger's tables (schema.c), applied by every store_open of billing. */
extern const struct store_schema billing_schema;

struct store *billing_conn_get(struct billing *b);
void billing_conn_put(struct billing *b, struct store *s);

/* Reading a row into a struct: one entry per column, in column order, naming
 * the field it fills (text into a char array, cut to fit; an integer into an
 * int64_t). */
struct billing_col {
    size_t off;
    size_t text_size; /* the char array's size; 0 for an int64_t field */
};
#define BILLING_COL_TEXT(type, field) {offsetof(type, field), sizeof(((type *)0)->field)}
#define BILLING_COL_INT(type, field) {offsetof(type, field), 0}
/* Fills the fields of *out that cols names from columns 0 .. n - 1 of r. */
void billing_row_read(const struct store_row *r, const struct billing_col *cols, int n, void *out);

/* n random bytes as 2n lowercase hex characters into out (2n + 1 bytes). */
void billing_random_hex(char *out, size_t n_bytes);

/* Settles one request inside the caller's open write transaction. */
int billing_settle_in_tx(struct billing *b, struct store *s, const struct settle_job *j, struct billing_usage *out,
                         struct err *e);
int billing_settle_check(const char *request_id, int64_t prompt, int64_t cached, int64_t completion,
                         const char *finish_reason, struct err *e);

int billing_writer_start(struct billing *b, struct err *e);
void billing_writer_stop(struct billing *b);

/* A ledger row inside the caller's transaction. */
int billing_ledger_row(struct store *s, const char *account_id, const char *kind, int64_t amount,
                       int64_t balance_after, const char *request_id, int64_t now, struct err *e);
/* The price in force for model at t, on the caller's connection. */
int billing_price_lookup(struct store *s, const char *model, int64_t t, struct billing_price *out, int *found,
                         struct err *e);
/* Key checks shared by admission and authentication: parses the key, reads
 * its row on s and compares the keyed hash in constant time. Returns 0 and
 * fills *out, or -1 with a message safe to show (never the key) and the codes
 * of billing_authenticate (ERR_UNAVAILABLE: the store failed, not the key). */
int billing_key_check(struct billing *b, struct store *s, const char *key, int64_t now, struct billing_key *out,
                      struct err *e);

/* 1 if the process that made holds tagged `boot` on this node is certainly
 * gone (its lock file is missing or no longer locked), 0 if it may be alive. */
int billing_boot_dead(struct billing *b, const char *boot);
/* ---- the session lease on a shared database (lease.c) ---- */
/* The lease name of a boot. n >= 128. */
void billing_boot_lease(const char *boot, char *name, size_t n);
/* Makes connection s keep this process's lease (every connection of the
 * process does, and takes it again after a reconnect). */
int billing_lease_keep(struct billing *b, struct store *s, struct err *e);
/* Opens the keeper's connection (db), keeps the lease on it and starts the
 * keeper thread; billing_lease_stop (safe after a partial start) undoes it. */
int billing_lease_start(struct billing *b, const char *db, struct err *e);
void billing_lease_stop(struct billing *b);
/* Processes of any node that are dead by their lease, for recovery. */
struct dead_boots {
    char (*boots)[96]; /* owned */
    int n, cap;
};
/* Fills *d with the processes (other than this one) that have holds admitted
 * at or after cutoff and whose lease was free at two looks lease_grace_ms
 * apart; their leases are then claimed on s (so they cannot come back and
 * admit) until billing_dead_boots_release, which the caller must call after
 * its release of their holds has committed or failed, on the same s, outside
 * any transaction. A lease that cannot be asked about counts as alive. */
int billing_dead_boots_find(struct billing *b, struct store *s, int64_t cutoff, struct dead_boots *d, struct err *e);
int billing_dead_boots_has(const struct dead_boots *d, const char *boot);
void billing_dead_boots_release(struct store *s, struct dead_boots *d);
/* Removes the lock files of dead processes. */
void billing_boot_sweep(struct billing *b);

/* Period boundaries in UTC for budgets. */
int64_t billing_period_start(enum billing_period p, int64_t t);
int64_t billing_period_end(enum billing_period p, int64_t t);

#endif
