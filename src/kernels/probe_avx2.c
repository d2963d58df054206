/*
 * The memory-bandwidth probe of `maas bench`: every thread streams through
 * its slice of a buffer far larger than the caches with 256-bit loads into
 * eight independent accumulators (so the loop is bound by memory, not by
 * the latency of one add chain), as STREAM's read kernels do; and the
 * multiply-add peak. Compiled with AVX2 (the file name selects the flags);
 * registered in the AVX2 variant's table.
 */
#include "kernels/kernels_int.h"

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

static double read_bandwidth_avx2(struct pool *pool, size_t bytes, int reps, struct err *e)
{
    bytes &= ~(size_t)255;
    struct probe p = {0};
    float *buf = maas_alloc_aligned(bytes);
    if (!buf)
        return err_set(e, ERR_NOMEM, "bandwidth probe: out of memory for %zu MiB", bytes >> 20);
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

/* ---- the multiply-add peak ---- */
#include <time.h>

#define PEAK_ITERS 20000000L

double kern_thread_cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

struct peak_job {
    kern_peak_loop_fn loop;
    enum kern_mac_kind kind;
    long iters;
    double macs_per_cpu_s[64]; /* per thread: MACs / its CPU seconds */
    int sink[64];
};

/* Eight independent chains. The asm barrier makes every input look new each
 * iteration so that nothing is hoisted, and each accumulator starts from a
 * different value so that the compiler cannot merge two chains that share
 * their inputs (it did, when they all started at zero). */
static void run_kind(enum kern_mac_kind kind, long iters, double *macs_per_s, int *sink)
{
    const double t0 = kern_thread_cpu_s();
    double macs = 0;
    if (kind == KERN_MAC_FMA) {
        __m256 a0 = _mm256_set1_ps(0), a1 = _mm256_set1_ps(1), a2 = _mm256_set1_ps(2), a3 = _mm256_set1_ps(3),
               a4 = _mm256_set1_ps(4), a5 = _mm256_set1_ps(5), a6 = _mm256_set1_ps(6), a7 = _mm256_set1_ps(7);
        __m256 w0 = _mm256_set1_ps(1.0f), w1 = _mm256_set1_ps(1.5f), x = _mm256_set1_ps(1e-9f);
        for (long i = 0; i < iters; i++) {
            a0 = _mm256_fmadd_ps(w0, x, a0);
            a1 = _mm256_fmadd_ps(w1, x, a1);
            a2 = _mm256_fmadd_ps(w0, x, a2);
            a3 = _mm256_fmadd_ps(w1, x, a3);
            a4 = _mm256_fmadd_ps(w0, x, a4);
            a5 = _mm256_fmadd_ps(w1, x, a5);
            a6 = _mm256_fmadd_ps(w0, x, a6);
            a7 = _mm256_fmadd_ps(w1, x, a7);
            __asm__ volatile("" : "+x"(w0), "+x"(w1), "+x"(x));
        }
        __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                 _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
        *sink += (int)_mm256_cvtss_f32(s);
        macs = 8.0 * 8.0 * (double)iters;
    } else {
        /* Six chains with six different inputs: with fewer inputs than
         * chains the compiler computes a shared product once. */
        __m256i a0 = _mm256_set1_epi32(0), a1 = _mm256_set1_epi32(1), a2 = _mm256_set1_epi32(2),
                a3 = _mm256_set1_epi32(3), a4 = _mm256_set1_epi32(4), a5 = _mm256_set1_epi32(5);
        __m256i u0 = _mm256_set1_epi8(3), u1 = _mm256_set1_epi8(5), u2 = _mm256_set1_epi8(7),
                u3 = _mm256_set1_epi8(9), u4 = _mm256_set1_epi8(11), u5 = _mm256_set1_epi8(13),
                s = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
        if (kind == KERN_MAC_I8_PAIR) {
            for (long i = 0; i < iters; i++) {
                a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_maddubs_epi16(u0, s), ones));
                a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_maddubs_epi16(u1, s), ones));
                a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_maddubs_epi16(u2, s), ones));
                a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_maddubs_epi16(u3, s), ones));
                a4 = _mm256_add_epi32(a4, _mm256_madd_epi16(_mm256_maddubs_epi16(u4, s), ones));
                a5 = _mm256_add_epi32(a5, _mm256_madd_epi16(_mm256_maddubs_epi16(u5, s), ones));
                __asm__ volatile("" : "+x"(u0), "+x"(u1), "+x"(u2), "+x"(u3), "+x"(u4), "+x"(u5), "+x"(s));
            }
        } else {
            for (long i = 0; i < iters; i++) {
                a0 = _mm256_add_epi16(a0, _mm256_maddubs_epi16(u0, s));
                a1 = _mm256_add_epi16(a1, _mm256_maddubs_epi16(u1, s));
                a2 = _mm256_add_epi16(a2, _mm256_maddubs_epi16(u2, s));
                a3 = _mm256_add_epi16(a3, _mm256_maddubs_epi16(u3, s));
                a4 = _mm256_add_epi16(a4, _mm256_maddubs_epi16(u4, s));
                a5 = _mm256_add_epi16(a5, _mm256_maddubs_epi16(u5, s));
                __asm__ volatile("" : "+x"(u0), "+x"(u1), "+x"(u2), "+x"(u3), "+x"(u4), "+x"(u5), "+x"(s));
            }
        }
        __m256i t = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3)),
                                     _mm256_add_epi32(a4, a5));
        *sink += _mm256_extract_epi32(t, 0);
        macs = 6.0 * 32.0 * (double)iters;
    }
    *macs_per_s = macs / (kern_thread_cpu_s() - t0);
}

static void peak_job_fn(void *ctx, int ith, int nth)
{
    (void)nth;
    struct peak_job *j = ctx;
    double rate;
    int sink = 0;
    j->loop(j->kind, j->iters, &rate, &sink);
    if (ith < 64) {
        j->macs_per_cpu_s[ith] = rate;
        j->sink[ith] = sink;
    }
}

double kern_peak_run(struct pool *pool, kern_peak_loop_fn loop, enum kern_mac_kind kind, double *one_thread)
{
    int nth = pool_n_threads(pool);
    double best_sum = 0, best_one = 0;
    for (int rep = 0; rep < 3; rep++) {
        struct peak_job j;
        memset(&j, 0, sizeof j);
        j.loop = loop;
        j.kind = kind;
        j.iters = PEAK_ITERS;
        pool_run(pool, peak_job_fn, &j);
        double sum = 0;
        for (int i = 0; i < nth && i < 64; i++)
            sum += j.macs_per_cpu_s[i];
        best_sum = sum > best_sum ? sum : best_sum;
        best_one = j.macs_per_cpu_s[0] > best_one ? j.macs_per_cpu_s[0] : best_one;
    }
    if (one_thread)
        *one_thread = best_one;
    return best_sum;
}

double kern_avx2_mac_peak(struct pool *pool, enum kern_mac_kind kind, double *one_thread)
{
    if (kind == KERN_MAC_I8_VNNI || kind == KERN_MAC_I8_AMX) { /* not AVX2 instructions */
        if (one_thread)
            *one_thread = 0;
        return 0;
    }
    return kern_peak_run(pool, run_kind, kind, one_thread);
}

void kern_register_avx2_probes(struct kern_table *tab)
{
    tab->read_bandwidth = read_bandwidth_avx2;
    tab->mac_peak = kern_avx2_mac_peak;
}
