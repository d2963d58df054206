/*
 * billing — accounts, API keys, prices, holds and settlement, budgets, rate
 * limits and usage reports, on top of the store/ ledger.
 *
 * The billing model
 *   Money is int64 micro-units of currency (1 unit = 1,000,000 micro-units),
 *   never floating point. An account has a prepaid balance; `held` is the sum
 *   of its open holds and `credited` the sum of its credits. Always
 *   0 <= held <= balance, and balance == credited - sum(settled costs).
 *
 *   Prices are per model, in micro-units per million tokens, for input, cached
 *   input and output, each with an effective_from time. A request is billed at
 *   the prices in force when it was admitted (they are copied into its hold).
 *
 *   Cost of a request (one rule, everywhere):
 *       micro = (prompt - cached) * input + cached * cached_input + completion * output
 *       cost  = floor((micro + 500000) / 1000000)      -- round half up, per request
 *   computed in 128-bit integers. The hold (worst case) is the same formula
 *   with prompt tokens at max(input, cached_input), no cached tokens and
 *   max_tokens completion tokens, so the settled cost never exceeds the hold
 *   (it is capped at the hold if a caller reports more tokens than admitted).
 *
 * The life of a request
 *   billing_admit()  in ONE write transaction: the key, its model allow-list
 *                    and a price in force, rate limits rpm/tpm and budget
 *                    day/month/total (with the seconds after which a retry
 *                    may pass), and balance - held >= worst case by a
 *                    conditional UPDATE; then the hold is placed. Each check
 *                    that fails refuses with its enum billing_reason. Concurrent admissions
 *                    can never overdraw an account. The commit does not fsync
 *                    (a hold lost with the machine belonged to a dead process
 *                    and would be released anyway); settlements do.
 *   billing_settle() hands the usage to the ledger writer thread, which commits
 *                    settlements in groups (one transaction, one fsync, a
 *                    savepoint per item) and returns once the caller's record
 *                    is durable. Exactly one usage record per request id: a
 *                    second settle returns the first record and changes nothing.
 *                    The usage record, the ledger row and the balance update
 *                    are in the same transaction as the release of the hold.
 *   billing_recover() at start: holds of this node's dead processes, and of
 *                    any node older than a timeout, are released with a
 *                    zero-cost "abandoned" usage record. Every process holds a
 *                    flock on <data dir>/boots/<boot>.lock while it lives, so a
 *                    live neighbour on the same node keeps its holds.
 *   billing_recover_live() while serving, every few minutes: the same for
 *                    holds older than the timeout (this process's own too:
 *                    a settlement that failed leaves its hold behind) and for
 *                    dead neighbours by lock file, never by lease.
 *
 * A shared ledger (PostgreSQL, several nodes): the same transactions, with
 * row locks taken by the conditional updates (the key's row serialises its
 * rate-limit and budget counts across nodes; the account's row its balance).
 * A transaction that loses a deadlock or serialization race with another node
 * is rolled back and run again (admission, settlement groups, recovery).
 * Liveness is a lease instead of a lock file: every connection of a process
 * keeps a session advisory lock named after its boot, which the database
 * drops when the process dies, so billing_recover on ANY node releases a dead
 * process's holds, whatever node made them. When the database ends a live
 * process's sessions (restart, idle kill, network cut), each connection takes
 * the lease again when it reconnects, before anything else runs on it, and a
 * keeper thread reconnects within lease_check_ms; recovery judges a process
 * dead only if its lease is free at two looks lease_grace_ms apart, and holds
 * it while releasing. A process cut off from the database for longer than
 * lease_grace_ms while another node starts may lose its running requests'
 * holds (released as abandoned: never charged twice, not charged; logged when
 * the process settles them). See lease.c. A shared ledger needs secret_file
 * (the same on every node).
 *
 * Rate limits count the key's requests admitted in the last 60 s (rpm) and
 * their tokens (tpm: prompt + max_tokens while open, prompt + completion once
 * settled). Budgets count the key's settled costs in the period (UTC day,
 * UTC month, or all time) plus its open holds.
 *
 * Errors: functions return 0 on success and -1 with the reason in *e (a store
 * failure, bad input). A refusal (a bad key, a limit, the balance) is
 * ERR_REFUSED with e->reason an enum billing_reason: billing says why, and the
 * server decides what to answer (server/refusal.c).
 * Threads: every function may be called from any thread; a struct billing
 * holds a small pool of store connections and one writer thread.
 */
#ifndef MAAS_BILLING_H
#define MAAS_BILLING_H

#include "core/core.h"

#include <stdint.h>

#define BILLING_MICRO 1000000LL
#define BILLING_ID_MAX 64
#define BILLING_MODEL_MAX 128

/* ---- amounts ---- */

/* Parses a decimal amount in currency units ("10", "0.25", "0.000001") into
 * micro-units exactly. Rejects empty strings, exponents, more than 6 decimals,
 * a leading '+', a '-' unless allow_negative, "1." and ".5", and overflow. */
int amount_parse(const char *s, int allow_negative, int64_t *out, struct err *e);
/* Formats micro-units as the shortest exact decimal ("10", "0.25", "-0.000001").
 * buf needs at least 24 bytes; returns buf. */
char *amount_format(int64_t micro, char *buf, size_t n);

/* The cost rule above. Returns the cost in micro-units; prices are micro-units
 * per million tokens. Token counts must be >= 0 and cached <= prompt. */
int64_t billing_cost(int64_t prompt, int64_t cached, int64_t completion, int64_t price_input,
                     int64_t price_cached, int64_t price_output);
/* The worst case for an admission: see above. */
int64_t billing_worst_cost(int64_t prompt, int64_t max_tokens, int64_t price_input, int64_t price_cached,
                           int64_t price_output);

/* Parses "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS][Z]" (or with a space), or a
 * plain number of Unix seconds, all UTC, into Unix seconds. */
int time_parse(const char *s, int64_t *out, struct err *e);
/* "YYYY-MM-DD" / "YYYY-MM-DDTHH:MM:SSZ" of Unix seconds (UTC). buf >= 24. */
char *time_format_day(int64_t t, char *buf, size_t n);
char *time_format(int64_t t, char *buf, size_t n);

/* ---- opening ---- */

struct billing;

struct billing_options {
    const char *db;          /* data directory or store URL (see store_open); required */
    const char *secret_file; /* the key-hashing pepper; default <db dir>/secret.key */
    const char *node;        /* this node's name for holds; default the host name */
    int n_conn;              /* connections for admissions and reads; default 4 */
    int writer;              /* 1: start the group-commit writer thread for settlements */
    int group_max;           /* settlements per group commit; default 256 */
    int queue_cap;           /* bounded settlement queue; default 4096 */
    /* Shared ledger only (see "A shared ledger" above): */
    int lease_check_ms;      /* the lease keeper pings its connection this often; default 500 */
    int lease_grace_ms;      /* recovery judges a process dead when its lease is free at two looks
                                this far apart (> lease_check_ms + a reconnect); default 5000 */
    /* Clock override for tests (Unix seconds); NULL = time(NULL). */
    int64_t (*now)(void *ctx);
    void *now_ctx;
};

/* Opens the ledger (creating it, its schema and the pepper file, mode 0600, as
 * needed). Does not release stale holds: the server calls billing_recover. */
int billing_open(const struct billing_options *o, struct billing **out, struct err *e);
/* Stops the writer after it has committed everything queued. NULL does nothing. */
void billing_close(struct billing *b);

int64_t billing_now(struct billing *b);

/* Fault injection for tests: every store connection of b fails after n more
 * operations (n < 0 turns it off). */
void billing_fail_after(struct billing *b, long n);

/* ---- accounts ---- */

struct billing_account {
    char id[BILLING_ID_MAX];
    char name[256];
    int64_t balance, held, credited; /* micro-units */
    int64_t created_at;
    int64_t n_keys;
    int64_t weight;                  /* fair-share weight in the engine's scheduler, 1..1000 */
};

/* Creates an account (with an optional first credit, >= 0) and writes its id
 * ("acct_" + 16 hex) into id_out (BILLING_ID_MAX bytes). */
int billing_account_create(struct billing *b, const char *name, int64_t credit, char *id_out, struct err *e);
/* Adds amount (> 0) to the balance and credited total, with a ledger row. */
int billing_account_credit(struct billing *b, const char *id, int64_t amount, const char *note,
                           struct billing_account *after, struct err *e);
int billing_account_get(struct billing *b, const char *id, struct billing_account *out, struct err *e);
/* Sets the account's fair-share weight (1..1000, else ERR_INVALID; an
 * unknown account is ERR_NOT_FOUND). Servers see it at their next admission
 * of the account's requests (billing_admission.weight). */
int billing_account_set_weight(struct billing *b, const char *id, int64_t weight, struct err *e);
typedef int (*billing_account_fn)(void *ctx, const struct billing_account *a);
int billing_account_list(struct billing *b, billing_account_fn fn, void *ctx, struct err *e);

/* ---- API keys ----
 * A key is "sk-maas-" + 12 hex (the visible prefix, which is also the key id)
 * + "_" + 43 characters of base64url (32 random bytes). Only the keyed BLAKE2b
 * hash of the whole key is stored. */
#define BILLING_KEY_PREFIX "sk-maas-"
#define BILLING_KEY_ID_LEN 12
#define BILLING_KEY_LEN (8 + 12 + 1 + 43)

enum billing_period { BILLING_PERIOD_NONE, BILLING_PERIOD_DAY, BILLING_PERIOD_MONTH, BILLING_PERIOD_TOTAL };

struct billing_key_spec {
    const char *models;  /* comma list of allowed models; NULL = all */
    int64_t rpm, tpm;    /* 0 = unlimited */
    int64_t budget;      /* micro-units; 0 = none */
    enum billing_period budget_period;
    int64_t expires_at;  /* Unix seconds; 0 = never */
};

struct billing_key {
    char id[BILLING_ID_MAX];
    char account_id[BILLING_ID_MAX];
    char models[1024]; /* "" = all */
    int64_t rpm, tpm, budget;
    enum billing_period budget_period;
    int64_t expires_at, revoked_at, created_at, last_used_at; /* 0 = none */
};

const char *billing_period_name(enum billing_period p);
int billing_period_parse(const char *s, enum billing_period *out, struct err *e);

/* Creates a key for an account; the whole key (BILLING_KEY_LEN + 1 bytes) is
 * written to key_out — the only time it exists outside the caller. */
int billing_key_create(struct billing *b, const char *account_id, const struct billing_key_spec *spec,
                       char *key_out, struct billing_key *info, struct err *e);
/* key_id may be the id or the whole key. Revoking twice is not an error. */
int billing_key_revoke(struct billing *b, const char *key_id, struct err *e);
typedef int (*billing_key_fn)(void *ctx, const struct billing_key *k);
/* account_id NULL lists all keys. */
int billing_key_list(struct billing *b, const char *account_id, billing_key_fn fn, void *ctx, struct err *e);

/* Whether key k may use model (its allowed-models list is empty, or names
 * it exactly). */
bool billing_key_allows(const struct billing_key *k, const char *model);

/* Checks a presented key (constant-time hash compare) without placing a hold:
 * for routes that need only the identity (GET /v1/usage, /v1/models).
 * Returns 0 and fills *out for a valid, unrevoked, unexpired key; otherwise -1
 * with e->code ERR_INVALID (malformed), ERR_NOT_FOUND (no such key),
 * ERR_REFUSED (reason BILLING_KEY_REVOKED or BILLING_KEY_EXPIRED), or
 * ERR_UNAVAILABLE when the ledger could not be consulted. The message never
 * contains the key. */
int billing_authenticate(struct billing *b, const char *key, struct billing_key *out, struct err *e);

/* ---- admin keys (for /admin/... HTTP routes) ---- */
/* Creates a new admin key "sk-maas-admin-" + 43 base64url and stores its hash. */
int billing_admin_key_create(struct billing *b, char *key_out, size_t n, struct err *e);
/* 1 if no admin key exists yet (the server creates and prints one at first start). */
int billing_admin_key_missing(struct billing *b, int *missing, struct err *e);
/* Registers an admin key chosen by the operator (maas serve --admin-key-file):
 * 24 to 256 printable characters without spaces. Registering the same key
 * again does nothing. */
int billing_admin_key_import(struct billing *b, const char *key, struct err *e);
/* 0 if key is a valid, unrevoked admin key; otherwise -1 with ERR_INVALID
 * (not shaped like an admin key), ERR_NOT_FOUND (no such admin key), or
 * ERR_UNAVAILABLE when the ledger could not be consulted. */
int billing_admin_key_verify(struct billing *b, const char *key, struct err *e);

/* ---- prices ---- */
struct billing_price {
    char model[BILLING_MODEL_MAX];
    int64_t input, cached_input, output; /* micro-units per million tokens */
    int64_t effective_from;
};
/* Sets a price from effective_from (Unix seconds) on; a second price for the
 * same model and time replaces the first. Amounts must be >= 0. */
int billing_price_set(struct billing *b, const struct billing_price *p, struct err *e);
typedef int (*billing_price_fn)(void *ctx, const struct billing_price *p);
/* Every price row, by model then time. */
int billing_price_list(struct billing *b, billing_price_fn fn, void *ctx, struct err *e);

/* The operator's compute price: per_core_hour micro-units per core-hour
 * (>= 0) from effective_from (Unix seconds) on; a second one for the same
 * time replaces the first. A request's compute_cost uses the price in force
 * at its admission (0 before any): round(compute_us * per_core_hour / 3.6e9). */
int billing_compute_price_set(struct billing *b, int64_t per_core_hour, int64_t effective_from, struct err *e);
int64_t billing_compute_cost(int64_t compute_us, int64_t per_core_hour);

/* ---- admission and settlement ---- */
/* Why an admission (or an authentication) was refused: e->reason of an
 * ERR_REFUSED. */
enum billing_reason {
    BILLING_KEY_UNKNOWN = 1,   /* the key is malformed, or no such key */
    BILLING_KEY_REVOKED,
    BILLING_KEY_EXPIRED,
    BILLING_MODEL_NOT_ALLOWED, /* not in the key's model allow-list */
    BILLING_MODEL_NOT_PRICED,  /* the model has no price in force */
    BILLING_RATE_LIMITED,      /* the key's requests (rpm) or tokens (tpm) per minute */
    BILLING_BUDGET_EXCEEDED,   /* the key's day, month or total budget */
    BILLING_INSUFFICIENT,      /* the account's balance less its holds is below the worst case */
};

struct billing_request {
    const char *key;        /* the presented bearer key */
    const char *model;
    int64_t prompt_tokens;  /* >= 0 */
    int64_t max_tokens;     /* >= 0: the most completion tokens that may be generated */
    const char *request_id; /* optional; NULL generates "req_" + 12 hex of Unix ms + 12 random hex */
};

struct billing_admission {
    int64_t retry_after;     /* refusals only: seconds until a retry may pass (0 = it will not) */
    char request_id[BILLING_ID_MAX];
    char account_id[BILLING_ID_MAX];
    char key_id[BILLING_ID_MAX];
    int64_t hold;            /* micro-units reserved */
    int64_t price_input, price_cached, price_output;
    int64_t admitted_at;
    int weight;              /* the account's fair-share weight (1..1000) at admission */
};

/* See the top of this file. Returns 0 with *out filled once the hold is
 * placed. A refusal is -1 with ERR_REFUSED, e->reason an enum billing_reason,
 * a message that never contains the key, and out->retry_after written (the
 * only field written on failure). Any other failure (bad input, a ledger that
 * could not be consulted) is -1 with its own code. */
int billing_admit(struct billing *b, const struct billing_request *r, struct billing_admission *out,
                  struct err *e);

struct billing_usage {
    char request_id[BILLING_ID_MAX];
    char account_id[BILLING_ID_MAX];
    char key_id[BILLING_ID_MAX];
    char model[BILLING_MODEL_MAX];
    int64_t prompt_tokens, cached_tokens, completion_tokens;
    int64_t price_input, price_cached, price_output;
    int64_t cost;
    int64_t admitted_at, ended_at;
    char finish_reason[32]; /* stop, length, cancelled, disconnected, error, abandoned ... */
    int64_t compute_us;     /* core-microseconds the engine spent on it (operator-only) */
    int64_t compute_cost;   /* micro-units: compute_us at the compute price in force at admission */
};

/* Settles an admitted request: writes its usage record and ledger row,
 * charges the cost and releases the hold, and returns once committed. A second
 * call for the same request returns the first record (out) and changes
 * nothing. Fails for an unknown request id, cached > prompt, negative counts or
 * a finish reason that is not [a-z_]{1,31}. */
int billing_settle(struct billing *b, const char *request_id, int64_t prompt_tokens, int64_t cached_tokens,
                   int64_t completion_tokens, const char *finish_reason, struct billing_usage *out,
                   struct err *e);
/* billing_settle with the request's compute time (core-microseconds, >= 0,
 * at most 2^50) stored in its record with its compute cost. */
int billing_settle_compute(struct billing *b, const char *request_id, int64_t prompt_tokens, int64_t cached_tokens,
                           int64_t completion_tokens, int64_t compute_us, const char *finish_reason,
                           struct billing_usage *out, struct err *e);

/* The account's latest usage records (settled requests), newest first: fn
 * is called for at most limit (1..BILLING_RECENT_MAX) of them and may stop
 * the walk by returning non-zero. An unknown account is ERR_NOT_FOUND. */
#define BILLING_RECENT_MAX 1000
typedef int (*billing_recent_fn)(void *ctx, const struct billing_usage *u);
int billing_usage_recent(struct billing *b, const char *account_id, int limit, billing_recent_fn fn, void *ctx,
                         struct err *e);

/* Releases stale holds with a zero-cost "abandoned" usage record: those of
 * this node (on a shared ledger: of any node) made by a process that is gone
 * (on a shared ledger this waits lease_grace_ms when some process's lease is
 * free, to tell a dead process from one reconnecting: see lease.c),
 * and (stale_after > 0) those of any
 * node admitted more than stale_after seconds ago — so stale_after must exceed
 * the longest request. A request released this way that is settled later gets
 * the abandoned record back (never a second charge). *n_released may be NULL. */
int billing_recover(struct billing *b, int64_t stale_after, int64_t *n_released, struct err *e);
/* The same for a node that is serving, to run periodically (the server does,
 * see server.h): releases holds admitted more than stale_after (> 0) seconds
 * ago, of any process including this one, and the holds of this node's dead
 * processes when liveness is a lock file (a ledger in a data directory). On
 * a shared ledger it does not release holds by lease (a process cut off from
 * the database for longer than lease_grace_ms looks dead: see lease.c and
 * admit.c); those wait for billing_recover at a start, or for stale_after. */
int billing_recover_live(struct billing *b, int64_t stale_after, int64_t *n_released, struct err *e);

/* ---- usage reports ---- */
enum billing_group { BILLING_BY_DAY, BILLING_BY_ACCOUNT, BILLING_BY_KEY, BILLING_BY_MODEL, BILLING_BY_REQUEST };

struct billing_usage_filter {
    int64_t from, to;       /* admitted_at in [from, to); 0 = unbounded */
    const char *account_id; /* NULL = all */
    const char *key_id;     /* NULL = all */
};

struct billing_usage_row {
    char group[BILLING_MODEL_MAX]; /* the day, account id, key id, model or request id */
    int64_t requests, prompt_tokens, cached_tokens, completion_tokens, cost;
    int64_t compute_us, compute_cost; /* operator-only: never shown to tenants; margin = cost - compute_cost */
};

const char *billing_group_name(enum billing_group g);
int billing_group_parse(const char *s, enum billing_group *out, struct err *e);

typedef int (*billing_usage_fn)(void *ctx, const struct billing_usage_row *row);
/* Calls fn for each group in order, then fills *total from the same
 * transaction (so the rows always add up to the total). */
int billing_usage_report(struct billing *b, const struct billing_usage_filter *f, enum billing_group by,
                         billing_usage_fn fn, void *ctx, struct billing_usage_row *total, struct err *e);

/* ---- writer statistics (for /metrics and benchmarks) ---- */
struct billing_writer_stats {
    int64_t groups;      /* group commits done */
    int64_t settlements; /* settlements processed by the writer */
    int64_t failed;      /* of which failed */
    int64_t cpu_ns;      /* CPU time of the writer thread in groups */
    int64_t busy_ns;     /* wall time of the writer in groups (work + fsync) */
    int64_t queue_len;   /* waiting now */
};
void billing_writer_stats(struct billing *b, struct billing_writer_stats *out);

/* ---- audit ---- */
/* Checks every account's invariants: balance == sum of its ledger rows,
 * credited == sum of its credits, held == sum of its open holds, 0 <= held <=
 * balance, and each usage record has its ledger row. Returns 0 if all hold,
 * -1 with the first violation in *e. */
int billing_audit(struct billing *b, struct err *e);

#endif
