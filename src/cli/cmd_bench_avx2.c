/*
 * The memory-bandwidth probe of `maas bench`: every thread streams through
 * its slice of a buffer far larger than the caches with 256-bit loads into
 * eight independent accumulators (so the loop is bound by memory, not by
 * the latency of one add chain), as STREAM's read kernels do. Compiled with
 * AVX2 (the file name selects the flags); only called when the CPU has it.
 */
#include "cli/bench_probe.h"

#include <immintrin.h>
#include <string.h>

struct probe {
    const float *buf;
    size_t n;                 /* floats */
    float sink[64];           /* per-thread results, so the loads cannot be dropped */
};

static void probe_slice(void *ctx, int ith, int nth)
{
    struct probe *p = ctx;
    int64_t lo, hi;
    split_range((int64_t)(p->n / 64), ith, nth, &lo, &hi);
    const float *x = p->buf + lo * 64, *end = p->buf + hi * 64;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (; x < end; x += 64) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(x));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(x + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(x + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(x + 24));
        a4 = _mm256_add_ps(a4, _mm256_load_ps(x + 32));
        a5 = _mm256_add_ps(a5, _mm256_load_ps(x + 40));
        a6 = _mm256_add_ps(a6, _mm256_load_ps(x + 48));
        a7 = _mm256_add_ps(a7, _mm256_load_ps(x + 56));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    float out[8];
    _mm256_storeu_ps(out, s);
    if (ith < 64)
        p->sink[ith] = out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

double bench_read_bandwidth_avx2(struct pool *pool, size_t bytes, int reps, struct err *e)
{
    bytes &= ~(size_t)255;
    struct probe p = {0};
    float *buf = maas_alloc_aligned(bytes);
    if (!buf)
        return err_set(e, "bandwidth probe: out of memory for %zu MiB", bytes >> 20);
    /* touch every page (and give the floats a value) before timing */
    memset(buf, 0, bytes);
    p.buf = buf;
    p.n = bytes / sizeof(float);
    double best = 0;
    pool_run(pool, probe_slice, &p); /* warm-up: page tables, thread wake-up */
    for (int r = 0; r < reps; r++) {
        uint64_t t0 = now_ns();
        pool_run(pool, probe_slice, &p);
        double s = (now_ns() - t0) / 1e9;
        double gbs = (double)bytes / s / 1e9;
        best = gbs > best ? gbs : best;
    }
    volatile float keep = p.sink[0];
    (void)keep;
    maas_free_aligned(buf);
    return best;
}
