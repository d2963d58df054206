/*
 * bench_gemm_f32 — GFLOP/s of kern_gemm_f32 on the shapes of `maas train`
 * (d = 512, ffn 2048, vocab 4096, 4096 tokens per batch; attention heads of
 * 64 with 256 positions), for every SIMD variant this CPU supports, on 1
 * thread and on all threads of a pool, next to the FMA peak of
 * kern_mac_peak(KERN_MAC_FMA). That probe counts 8-lane ymm FMAs
 * (vfmadd231ps ymm), so an AVX-512 kernel can pass 100% of it.
 *
 * The attention shapes are called with pool NULL, as from inside a pool job:
 * on T threads each thread of one pool job multiplies its share of 16 heads.
 * Each figure is the best of --reps timed runs, in wall-clock time and (on a
 * machine shared with other work, the steadier figure) in CPU time: FLOPs
 * over the CPU time of the thread that used the most (what the wall clock
 * would show if no other process took the cores), read against the same
 * peak, which is itself measured per CPU-second.
 *
 *   make bench && build/bench/bench_gemm_f32 [--threads T] [--reps R]
 */
#include "kernels/kernels.h"
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct shape {
    const char *name;
    bool ta, tb;
    int64_t M, N, K;
    int heads; /* > 0: that many independent products, pool NULL inside a pool job */
};

static const struct shape shapes[] = {
    {"fwd   X.Wt   qkvo (4096x512x512)", false, true, 4096, 512, 512, 0},
    {"fwd   X.Wt   ffn up (4096x2048x512)", false, true, 4096, 2048, 512, 0},
    {"fwd   X.Wt   logits (4096x4096x512)", false, true, 4096, 4096, 512, 0},
    {"wgrad dYt.X  qkvo (512x512x4096)", true, false, 512, 512, 4096, 0},
    {"wgrad dYt.X  ffn (2048x512x4096)", true, false, 2048, 512, 4096, 0},
    {"wgrad dYt.X  d=256 (256x256x2048)", true, false, 256, 256, 2048, 0},
    {"igrad dY.W   ffn down (4096x512x2048)", false, false, 4096, 512, 2048, 0},
    {"igrad dY.W   logits (4096x512x4096)", false, false, 4096, 512, 4096, 0},
    {"attn  Q.Kt   16 heads (256x256x64)", false, true, 256, 256, 64, 16},
    {"attn  P.V    16 heads (256x64x256)", false, false, 256, 64, 256, 16},
    {"attn  dS.K   16 heads (128x64x128)", false, false, 128, 64, 128, 16},
};
#define N_SHAPES ((int)(sizeof shapes / sizeof *shapes))

struct run {
    const struct shape *s;
    const float *a, *b;
    float *c;
    int64_t sa, sb, sc; /* floats per head */
};

static void one_head(const struct run *r, int h)
{
    const struct shape *s = r->s;
    kern_gemm_f32(NULL, s->ta, s->tb, s->M, s->N, s->K, r->a + h * r->sa, s->ta ? s->M : s->K, r->b + h * r->sb,
                  s->tb ? s->K : s->N, 0.0f, r->c + h * r->sc, s->N);
}

static void heads_job(void *ctx, int ith, int nth)
{
    const struct run *r = ctx;
    int64_t lo, hi;
    split_range(r->s->heads, ith, nth, &lo, &hi);
    for (int64_t h = lo; h < hi; h++)
        one_head(r, (int)h);
}

#define MAX_THREADS 64

static double thread_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void clock_job(void *ctx, int ith, int nth)
{
    ((double *)ctx)[ith] = thread_seconds();
}

/* Each thread's CPU seconds so far (one, the caller's, when pool is NULL). */
static void read_clocks(struct pool *pool, double *t)
{
    if (pool)
        pool_run(pool, clock_job, t);
    else
        t[0] = thread_seconds();
}

/* Best GFLOP/s of reps runs of shape s on pool (NULL: one thread), wall
 * clock; *per_cpu gets the best over the busiest thread's CPU time. */
static double time_shape(const struct shape *s, struct pool *pool, int reps, double *per_cpu)
{
    const int heads = s->heads ? s->heads : 1;
    struct run r = {.s = s, .sa = s->M * s->K, .sb = s->K * s->N, .sc = s->M * s->N};
    float *a = malloc((size_t)(r.sa * heads) * sizeof *a), *b = malloc((size_t)(r.sb * heads) * sizeof *b);
    float *c = malloc((size_t)(r.sc * heads) * sizeof *c);
    if (!a || !b || !c) {
        free(a), free(b), free(c);
        return 0;
    }
    struct rng g;
    rng_seed(&g, 7);
    for (int64_t i = 0; i < r.sa * heads; i++)
        a[i] = (float)rng_normal(&g);
    for (int64_t i = 0; i < r.sb * heads; i++)
        b[i] = (float)rng_normal(&g);
    r.a = a, r.b = b, r.c = c;
    double best = 1e30, best_cpu = 1e30;
    for (int rep = 0; rep <= reps; rep++) { /* rep 0 warms up */
        double c0[MAX_THREADS], c1[MAX_THREADS];
        read_clocks(pool, c0);
        uint64_t t0 = now_ns();
        if (s->heads && pool)
            pool_run(pool, heads_job, &r);
        else if (s->heads)
            heads_job(&r, 0, 1);
        else
            kern_gemm_f32(pool, s->ta, s->tb, s->M, s->N, s->K, a, s->ta ? s->M : s->K, b, s->tb ? s->K : s->N,
                          0.0f, c, s->N);
        double t = (double)(now_ns() - t0) / 1e9, tc = 0;
        read_clocks(pool, c1);
        for (int i = 0; i < (pool ? pool_n_threads(pool) : 1); i++)
            tc = c1[i] - c0[i] > tc ? c1[i] - c0[i] : tc;
        if (rep > 0 && t < best)
            best = t;
        if (rep > 0 && tc < best_cpu)
            best_cpu = tc;
    }
    free(a), free(b), free(c);
    const double gflop = 2.0 * (double)s->M * (double)s->N * (double)s->K * heads / 1e9;
    *per_cpu = gflop / best_cpu;
    return gflop / best;
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--threads T] [--reps R]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || threads > MAX_THREADS || reps < 1 || reps > 1000) {
        fprintf(stderr, "bench_gemm_f32: --threads must be 1..64 and --reps 1..1000\n");
        return 2;
    }
    kernels_init();
    struct pool *pool = pool_new(threads);
    if (!pool) {
        fprintf(stderr, "bench_gemm_f32: cannot start %d threads\n", threads);
        return 1;
    }
    double one = 0, all = kern_mac_peak(pool, KERN_MAC_FMA, &one);
    printf("FMA peak (ymm vfmadd231ps, 8 lanes): 1 thread %.1f GFLOP/s, %d threads %.1f GFLOP/s\n", 2 * one / 1e9,
           threads, 2 * all / 1e9);
    for (int v = 1; v < kern_variant_count(); v++) {
        struct err e;
        if (!kern_variant_supported(v) || kern_use_variant(kern_variant_name(v), &e) < 0)
            continue;
        printf("variant %s: GFLOP/s wall clock at 1 and %d threads (%% of the %d-thread ymm FMA peak);"
               " then over the busiest thread's CPU time\n", kern_variant_name(v), threads, threads);
        for (int i = 0; i < N_SHAPES; i++) {
            double c1, cn, g1 = time_shape(&shapes[i], NULL, reps, &c1), gn = time_shape(&shapes[i], pool, reps, &cn);
            printf("  %-40s %7.1f %7.1f (%3.0f%%)   cpu %7.1f %7.1f (%3.0f%%)\n", shapes[i].name, g1, gn,
                   100 * gn / (2 * all / 1e9), c1, cn, 100 * cn / (2 * all / 1e9));
            fflush(stdout);
        }
    }
    pool_free(pool);
    return 0;
}
