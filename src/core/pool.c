/*
 * Thread pool for kernels. Role of each thread: worker i (1..n-1) runs slice i
 * of whatever job the owner posts; the owner runs slice 0 itself and then waits
 * for the others. Jobs are posted by bumping a generation counter; workers spin
 * on it for a short while (a decode step posts hundreds of small jobs, and a
 * sleeping thread takes tens of microseconds to wake), then sleep on a
 * condition variable so that an idle process uses no CPU.
 *
 * The sleep/wake handshake relies on sequentially consistent atomics: the
 * owner increments `gen` then reads `sleepers`; a worker increments `sleepers`
 * (under the mutex) then reads `gen`. At least one of them sees the other's
 * write, so a wake-up is never lost.
 *
 * Dynamic jobs (pool_run_dynamic) do not wait for late workers. A worker
 * that sees generation g joins it (`joined`) and then checks that g has
 * not been closed; the owner, once its own call returns, closes g
 * (`closed` = g) and waits until `joined` is 0. Either the worker's join
 * comes first in the sequentially consistent order, and the owner waits
 * for it, or the worker sees the close and leaves without touching the
 * job. So on a busy machine, where the other core belongs to another
 * process for milliseconds, the owner does all the work instead of
 * waiting for a thread that is not running.
 */
#include "core.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <immintrin.h>

/* A waiting thread first spins with pause (the common case: the other
 * thread is running and finishes within microseconds), then yields its core
 * (the other thread may have been descheduled on a busy machine, and
 * spinning would only keep it off the CPU), and finally sleeps. */
#define PAUSE_ITERS 2048
#define SPIN_ITERS (PAUSE_ITERS + 4096)

struct pool {
    int n;                    /* threads including the owner */
    pthread_t *threads;       /* n-1 workers, from malloc() */
    atomic_uint gen;          /* job generation, written by the owner */
    atomic_int pending;       /* workers still running the current job */
    atomic_int sleepers;      /* workers waiting on cv */
    atomic_int joined;        /* workers inside the current job (or leaving a closed one) */
    atomic_uint closed;       /* the last dynamic generation closed to newcomers */
    atomic_bool stop;
    pool_fn fn;               /* current job, valid while gen is current */
    void *ctx;
    bool dynamic;             /* the current job is pool_run_dynamic's */
    pthread_mutex_t m;
    pthread_cond_t cv;
};

struct worker_arg {
    struct pool *p;
    int ith;
};

static void *worker_main(void *arg)
{
    struct worker_arg wa = *(struct worker_arg *)arg;
    free(arg);
    struct pool *p = wa.p;
    /* gen starts at 0 and no job is posted before pool_new returns, so a
     * worker that starts late still sees the first job as new. */
    unsigned seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) {
            if (++spins < SPIN_ITERS) {
                if (spins < PAUSE_ITERS)
                    _mm_pause();
                else
                    sched_yield();
                continue;
            }
            pthread_mutex_lock(&p->m);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->m);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->m);
        }
        if (atomic_load(&p->stop))
            return NULL;
        seen = atomic_load(&p->gen);
        atomic_fetch_add(&p->joined, 1);
        /* A static job waits for every worker, so it is still current; a
         * dynamic one may have been closed (and followed by others). */
        if (atomic_load(&p->closed) != seen && atomic_load(&p->gen) == seen) {
            const bool dynamic = p->dynamic;
            p->fn(p->ctx, wa.ith, p->n);
            if (!dynamic)
                atomic_fetch_sub(&p->pending, 1);
        }
        atomic_fetch_sub(&p->joined, 1);
    }
}

struct pool *pool_new(int n_threads)
{
    if (n_threads < 1)
        n_threads = 1;
    struct pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->m, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    if (!p->threads) {
        free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *wa = malloc(sizeof *wa);
        if (wa) {
            wa->p = p;
            wa->ith = i;
        }
        if (!wa || pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            p->n = i; /* shut down the ones already started */
            pool_free(p);
            return NULL;
        }
    }
    return p;
}

void pool_free(struct pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->m);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->m);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->m);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

int pool_n_threads(const struct pool *p)
{
    return p ? p->n : 1;
}

/* Posts a job and wakes the sleepers; returns its generation. */
static unsigned post(struct pool *p, pool_fn fn, void *ctx, bool dynamic)
{
    p->fn = fn;
    p->ctx = ctx;
    p->dynamic = dynamic;
    if (!dynamic)
        atomic_store(&p->pending, p->n - 1);
    unsigned g = atomic_fetch_add(&p->gen, 1) + 1;
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->m);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->m);
    }
    return g;
}

static void wait_zero(atomic_int *v)
{
    for (int spins = 0; atomic_load(v) > 0; spins++) {
        if (spins < PAUSE_ITERS)
            _mm_pause();
        else
            sched_yield();
    }
}

void pool_run(struct pool *p, pool_fn fn, void *ctx)
{
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    post(p, fn, ctx, false);
    fn(ctx, 0, p->n);
    wait_zero(&p->pending);
}

void pool_run_dynamic(struct pool *p, pool_fn fn, void *ctx)
{
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    unsigned g = post(p, fn, ctx, true);
    fn(ctx, 0, p->n);
    atomic_store(&p->closed, g);
    wait_zero(&p->joined);
}
