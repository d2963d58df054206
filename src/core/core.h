/*
 * core — the ground floor every other module stands on.
 *
 *   errors   struct err carries one human-readable line: what, where, why.
 *            A function that can fail returns 0 on success and -1 on failure,
 *            having written the reason with err_set(); results go through
 *            out-parameters written only on success.
 *   logging  log_info/log_warn/log_error write one timestamped line to stderr.
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
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define MAAS_ERR_MAX 1024

struct err {
    char msg[MAAS_ERR_MAX];
};

/* Writes the message into e (if e is not NULL) and returns -1, so that
 * callers can write `return err_set(e, "...")`. */
int err_set(struct err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the existing message with "prefix: " (used to add context such as
 * a file name as an error travels up). Returns -1. */
int err_prefix(struct err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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

/* Splits [0, n) into nth nearly equal parts and returns part ith. */
static inline void split_range(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi)
{
    int64_t per = n / nth, rem = n % nth;
    *lo = ith * per + (ith < rem ? ith : rem);
    *hi = *lo + per + (ith < rem ? 1 : 0);
}

/* Number of online CPUs (at least 1). */
int cpu_count(void);

#endif
