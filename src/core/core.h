/*
 * core — the ground floor every other module stands on.
 *
 *   errors   struct err carries a code (what kind of failure: the thing a
 *            caller may decide on) and one human-readable line (what, where,
 *            why: the thing a person reads). A function that can fail returns
 *            0 on success and -1 on failure, having written both with
 *            err_set(); results go through out-parameters written only on
 *            success. Nothing decides anything by reading the message.
 *   logging  log_info/log_warn/log_error write one timestamped line to stderr.
 *   buffers  struct sbuf, a growable byte string (git's strbuf in spirit),
 *            and mem_grow() for growable arrays of any element.
 *   hashing  FNV-1a, 32 and 64 bits: the one hash of the program.
 *   parsing  checked integer and decimal parsing of whole strings.
 *   memory   aligned allocation for tensors and scratch (64-byte aligned).
 *   time     monotonic nanoseconds.
 *   rng      a seeded, splittable generator (splitmix64 + xoshiro256**) so that
 *            random models and tests are reproducible on every machine.
 *   pool     a fixed set of worker threads that run one job at a time as
 *            fn(ctx, ith, nth) and meet at the end (ggml's compute params).
 */
#ifndef MAAS_CORE_H
#define MAAS_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define MAAS_ERR_MAX 1024

/* What kind of failure an error is. Callers branch on this, never on text.
 * The layer that meets a failure picks the code; layers above keep it when
 * they add context (err_prefix) and translate it at the edge (the CLI to an
 * exit status and a message, the server to an HTTP status). */
enum err_code {
    ERR_OK = 0,
    ERR_INTERNAL,    /* a state that should not happen: a bug, or a library failing unexpectedly */
    ERR_INVALID,     /* the caller's input is wrong: an argument, a request field, a parameter value */
    ERR_NOT_FOUND,   /* the named thing (account, key, file, model, tensor) does not exist */
    ERR_EXHAUSTED,   /* a bounded resource is full: a queue, the KV cache, the context, a limit */
    ERR_UNAVAILABLE, /* a service cannot be used right now (database down, shutting down); a retry may work */
    ERR_REFUSED,     /* refused by policy (billing): err.reason holds the module's reason code */
    ERR_IO,          /* the operating system failed a read, write, open or map */
    ERR_CORRUPT,     /* stored or received data is malformed: a GGUF file, a ledger row */
    ERR_NOMEM,       /* out of memory */
    ERR_CODE_COUNT
};

struct err {
    enum err_code code;  /* ERR_OK until err_set */
    int reason;          /* with ERR_REFUSED: the refusing module's reason (e.g. enum billing_reason); else 0 */
    char msg[MAAS_ERR_MAX];
};

/* Writes the code and the message into e (if e is not NULL) and returns -1,
 * so that callers can write `return err_set(e, ERR_INVALID, "...")`. */
int err_set(struct err *e, enum err_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* err_set for ERR_REFUSED with the refusing module's reason code. */
int err_refuse(struct err *e, int reason, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefixes the existing message with "prefix: " (used to add context such as
 * a file name as an error travels up; fmt gives the prefix without the ": ");
 * the code stays. Returns -1. */
int err_prefix(struct err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Resets e to no error (code ERR_OK, empty message). */
void err_clear(struct err *e);
/* A stable lower-case name for a code ("not_found", "exhausted", ...). */
const char *err_code_name(enum err_code code);

void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Programmer mistakes only; stays on in release builds. */
#define MAAS_ASSERT(x)                                                             \
    do {                                                                           \
        if (!(x)) {                                                                \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #x); \
            abort();                                                               \
        }                                                                          \
    } while (0)

/* 64-byte aligned allocation; NULL on failure. Free with maas_free_aligned. */
void *maas_alloc_aligned(size_t n);
void maas_free_aligned(void *p);

uint64_t now_ns(void);

/* ---- deterministic random numbers ---- */
struct rng {
    uint64_t s[4];
};
void rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_u64(struct rng *r);
double rng_uniform(struct rng *r);   /* [0, 1) */
double rng_normal(struct rng *r);    /* mean 0, std 1 (Box-Muller) */

/* ---- thread pool ----
 * pool_run() runs fn(ctx, ith, nth) on nth = pool_n_threads() threads (the
 * caller is thread 0) and returns when all have finished. One job at a time:
 * pool_run must be called from one thread only (the pool's owner). Workers spin
 * briefly between jobs, then sleep, so an idle server does not burn CPU. */
struct pool;
typedef void (*pool_fn)(void *ctx, int ith, int nth);
struct pool *pool_new(int n_threads);           /* NULL on failure */
void pool_free(struct pool *p);                 /* NULL does nothing */
int pool_n_threads(const struct pool *p);
void pool_run(struct pool *p, pool_fn fn, void *ctx);
/* For jobs that take their work from a shared counter: fn runs on the
 * caller and on the workers that reach the job before the caller has
 * finished its own call, each at most once (ith distinct, nth =
 * pool_n_threads()); a worker still descheduled by then (a busy machine)
 * never runs it, and the caller does not wait for it. Returns when every
 * thread that started fn has returned. fn must cope with any subset of
 * threads, thread 0 always among them. */
void pool_run_dynamic(struct pool *p, pool_fn fn, void *ctx);

/* Splits [0, n) into nth nearly equal parts and returns part ith. */
static inline void split_range(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi)
{
    int64_t per = n / nth, rem = n % nth;
    *lo = ith * per + (ith < rem ? ith : rem);
    *hi = *lo + per + (ith < rem ? 1 : 0);
}

/* Number of online CPUs (at least 1). */
int cpu_count(void);

/* ---- buffers ----
 * struct sbuf is a growable byte string, always NUL-terminated once it holds
 * anything (buf[len] == 0), so buf can be used as a C string; it may also hold
 * NUL bytes of its own (use len). buf is from malloc() and owned by the sbuf.
 * Start it with SBUF_INIT or sbuf_init(); end it with sbuf_release() or take
 * the string with sbuf_detach().
 *
 * Out of memory: an append that cannot grow the buffer returns -1, leaves the
 * contents as they were and marks the buffer failed; every later append is
 * then a no-op returning -1 and sbuf_detach() returns NULL. So a run of
 * appends can be checked once, at the end (sbuf_failed or the detach). */
struct sbuf {
    char *buf;    /* NULL until the first append; from malloc(), owned */
    size_t len;   /* bytes used, not counting the terminating NUL */
    size_t cap;   /* bytes allocated */
    bool failed;  /* an append ran out of memory (or would pass SIZE_MAX) */
};
#define SBUF_INIT {NULL, 0, 0, false}

void sbuf_init(struct sbuf *b);
void sbuf_release(struct sbuf *b);              /* frees buf and re-initialises */
void sbuf_reset(struct sbuf *b);                /* len = 0, keeps the memory (and clears failed) */
int sbuf_grow(struct sbuf *b, size_t extra);    /* room for extra more bytes (+ NUL) */
int sbuf_add(struct sbuf *b, const void *p, size_t n);
int sbuf_addstr(struct sbuf *b, const char *s);
int sbuf_addch(struct sbuf *b, int c);
int sbuf_addf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sbuf_vaddf(struct sbuf *b, const char *fmt, va_list ap);
static inline bool sbuf_failed(const struct sbuf *b)
{
    return b->failed;
}
/* Hands the NUL-terminated string to the caller (free() it) and
 * re-initialises b; *len (if not NULL) gets its length. An empty buffer gives
 * "" (allocated). NULL if an append had failed or "" cannot be allocated; b is
 * released then too. */
char *sbuf_detach(struct sbuf *b, size_t *len);

/* Makes *pp (an array of elem-byte elements, from malloc or NULL) hold at
 * least need elements, growing *cap geometrically. 0, or -1 on overflow or
 * out of memory with *pp and *cap unchanged. */
int mem_grow(void *pp, size_t *cap, size_t need, size_t elem);

/* ---- hashing: FNV-1a ----
 * One hash for every in-memory table and for the few values derived from
 * names. hash_fnv1a64(h, p, n) continues the hash h over n bytes, so a hash
 * can be chained over pieces; start from HASH_FNV64_BASIS. */
#define HASH_FNV64_BASIS 0xcbf29ce484222325ull
/* Persisted values were derived from this basis, the FNV one with its last
 * digit dropped (1469598103934665603 instead of 14695981039346656037): the
 * PostgreSQL advisory-lock keys that every node of a shared ledger must agree
 * on, and the seeds of maas mkmodel's tensors (a model's bytes for a given
 * --seed). Do not change it: tests/unit/core_basics.c pins both values. */
#define HASH_FNV64_BASIS_LEGACY 1469598103934665603ull
uint64_t hash_fnv1a64(uint64_t h, const void *p, size_t n);
uint32_t hash_fnv1a32(const void *p, size_t n);
static inline uint64_t hash_bytes(const void *p, size_t n)
{
    return hash_fnv1a64(HASH_FNV64_BASIS, p, n);
}
/* Spreads the bits of a 64-bit key (MurmurHash3's finaliser) so that its low
 * bits can index a power-of-two table. In-memory tables only: nothing
 * persisted or shared between processes depends on it. */
static inline uint64_t hash_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* ---- checked parsing of whole strings ----
 * parse_i64: s is entirely a base-10 integer (optional sign, no spaces) in
 * [lo, hi]. parse_f64: s is entirely a finite decimal number in [lo, hi].
 * 0 with *out set, or -1 (no message: the caller names the option).
 * arg_*: the same, with the message "<what>: '<s>' is not an integer in
 * [lo, hi]" (or "a number") and ERR_INVALID in e; s may be NULL (a missing
 * value). */
int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
int parse_f64(const char *s, double lo, double hi, double *out);
int arg_i64(const char *what, const char *s, int64_t lo, int64_t hi, int64_t *out, struct err *e);
int arg_int(const char *what, const char *s, int lo, int hi, int *out, struct err *e);
int arg_f64(const char *what, const char *s, double lo, double hi, double *out, struct err *e);
int arg_float(const char *what, const char *s, double lo, double hi, float *out, struct err *e);

#endif
