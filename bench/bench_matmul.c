/*
 * bench_matmul — how close kern_matmul gets to the machine's limits.
 *
 *  (a) read bandwidth: a vectorised STREAM-style read of a 1 GiB buffer by
 *      every thread of a pool (best of several runs), at 1 and 2 threads;
 *  (b) decode (n_tok = 1): weight bytes / time for q8_0, q4_k, q5_0, q6_k and
 *      f16 on the matrices of a Qwen2.5-0.5B-shaped model (4864x896,
 *      896x4864, 151936x896), at 1 and 2 threads. Enough copies of each
 *      matrix are cycled through that at least 256 MiB go by, so the weights
 *      come from memory as in a real decode step, not from the caches. Each
 *      round measures the probe and the matmul back to back (the machine is
 *      shared and its bandwidth moves by tens of percent from minute to
 *      minute); the ratio reported is the median over rounds of
 *      matmul GB/s / probe GB/s;
 *  (c) prefill (n_tok = 512): GFLOP/s per type and shape, and the time of one
 *      layer's matrices of the Qwen2.5-0.5B shape turned into tokens/s for
 *      its 24 layers (the matmuls alone, at 2 threads).
 * Where the machine is shared, wall-clock figures at 2 threads suffer from
 * the other processes; the one-thread figures "per CPU-second" (the calling
 * thread's CPU time) show the kernels' own speed and are stable.
 * One line per result, then one JSON line with everything.
 *
 *   make bench && build/bench/bench_matmul [--quick]
 */
#include "core/core.h"
#include "kernels/kernels.h"

#include <immintrin.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define MIB (1024.0 * 1024.0)

static int quick;

/* ---- bandwidth probe ---- */
struct probe {
    const float *buf;
    size_t n; /* floats */
    float sink[64];
};

static void probe_job(void *ctx, int ith, int nth)
{
    struct probe *p = ctx;
    int64_t lo, hi;
    split_range((int64_t)(p->n / 64), ith, nth, &lo, &hi);
    const float *b = p->buf;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
    for (int64_t i = lo * 64; i < hi * 64; i += 64) {
        s0 = _mm256_add_ps(s0, _mm256_load_ps(b + i));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(b + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(b + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(b + i + 24));
        s4 = _mm256_add_ps(s4, _mm256_load_ps(b + i + 32));
        s5 = _mm256_add_ps(s5, _mm256_load_ps(b + i + 40));
        s6 = _mm256_add_ps(s6, _mm256_load_ps(b + i + 48));
        s7 = _mm256_add_ps(s7, _mm256_load_ps(b + i + 56));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)),
                             _mm256_add_ps(_mm256_add_ps(s4, s5), _mm256_add_ps(s6, s7)));
    float t[8];
    _mm256_storeu_ps(t, s);
    p->sink[ith % 64] += t[0] + t[7];
}

/* GB/s of one pass over the buffer. */
static double probe_once(struct pool *pool, struct probe *p)
{
    uint64_t t0 = now_ns();
    pool_run(pool, probe_job, p);
    return (double)(p->n * sizeof(float)) / (double)(now_ns() - t0);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- JSON accumulation ---- */
static char json[65536];
static size_t json_len;
static void json_add(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void json_add(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(json + json_len, sizeof json - json_len, fmt, ap);
    va_end(ap);
    if (k > 0 && json_len + (size_t)k < sizeof json)
        json_len += (size_t)k;
}

/* ---- matrices ---- */
struct mat {
    enum ggml_type t;
    int64_t n_out, n_in;
    int n_copies;
    size_t bytes; /* one copy */
    void **w;     /* n_copies copies, from maas_alloc_aligned */
};

static int mat_init(struct mat *m, enum ggml_type t, int64_t n_out, int64_t n_in, size_t min_total, struct rng *r)
{
    m->t = t;
    m->n_out = n_out;
    m->n_in = n_in;
    m->bytes = ggml_row_size(t, n_in) * (size_t)n_out;
    m->n_copies = (int)((min_total + m->bytes - 1) / m->bytes);
    if (m->n_copies < 1)
        m->n_copies = 1;
    m->w = calloc((size_t)m->n_copies, sizeof *m->w);
    if (!m->w)
        return -1;
    /* Quantize a block of random rows once and tile it: the values do not
     * matter for speed, and quantizing 150k rows of k-quants takes a while. */
    const int64_t src_rows = n_out < 64 ? n_out : 64;
    float *src = malloc((size_t)(src_rows * n_in) * sizeof *src);
    size_t src_bytes = ggml_row_size(t, n_in) * (size_t)src_rows;
    char *q = malloc(src_bytes);
    if (!src || !q) {
        free(src);
        free(q);
        return -1;
    }
    for (int64_t i = 0; i < src_rows * n_in; i++)
        src[i] = (float)rng_normal(r) * 0.05f;
    kern_quantize(t, src, q, src_rows, n_in);
    for (int c = 0; c < m->n_copies; c++) {
        m->w[c] = maas_alloc_aligned(m->bytes);
        if (!m->w[c]) {
            free(src);
            free(q);
            return -1;
        }
        for (size_t off = 0; off < m->bytes; off += src_bytes)
            memcpy((char *)m->w[c] + off, q, m->bytes - off < src_bytes ? m->bytes - off : src_bytes);
    }
    free(src);
    free(q);
    return 0;
}

static void mat_release(struct mat *m)
{
    for (int c = 0; m->w && c < m->n_copies; c++)
        maas_free_aligned(m->w[c]);
    free(m->w);
    m->w = NULL;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Seconds for one matmul of every copy, n_tok tokens; *cpu_s (if not NULL)
 * gets the calling thread's CPU time, which with a one-thread pool is the
 * whole cost and does not count time the scheduler gave to other processes. */
static double time_pass(struct pool *pool, struct mat *m, const float *x, int64_t n_tok, float *y, void *wbuf,
                        double *cpu_s)
{
    uint64_t t0 = now_ns(), c0 = thread_cpu_ns();
    for (int c = 0; c < m->n_copies; c++)
        kern_matmul(pool, m->t, m->w[c], m->n_out, m->n_in, x, n_tok, y, m->n_out, wbuf);
    if (cpu_s)
        *cpu_s = (double)(thread_cpu_ns() - c0) * 1e-9;
    return (double)(now_ns() - t0) * 1e-9;
}

int main(int argc, char **argv)
{
    quick = argc > 1 && !strcmp(argv[1], "--quick");
    kernels_init();
    printf("kernels: %s, %d CPUs\n", kern_variant_current(), cpu_count());
    json_add("{\"bench\":\"matmul\",\"isa\":\"%s\"", kern_variant_current());

    struct pool *pools[3] = {NULL, pool_new(1), pool_new(2)};
    if (!pools[1] || !pools[2]) {
        fprintf(stderr, "bench_matmul: cannot start threads\n");
        return 1;
    }
    const size_t probe_bytes = (size_t)1 << 30;
    struct probe pr = {.n = probe_bytes / sizeof(float)};
    float *pbuf = maas_alloc_aligned(probe_bytes);
    if (!pbuf) {
        fprintf(stderr, "bench_matmul: cannot allocate the 1 GiB probe buffer\n");
        return 1;
    }
    for (size_t i = 0; i < pr.n; i++)
        pbuf[i] = (float)(i & 7);
    pr.buf = pbuf;

    /* (a) */
    double bw_best[3] = {0};
    json_add(",\"probe_gbps\":{");
    for (int th = 1; th <= 2; th++) {
        for (int k = 0; k < (quick ? 3 : 7); k++) {
            double g = probe_once(pools[th], &pr);
            if (g > bw_best[th])
                bw_best[th] = g;
        }
        printf("probe      read bandwidth  %d thread%s  %6.2f GB/s (best of %d, 1 GiB)\n", th, th > 1 ? "s" : " ",
               bw_best[th], quick ? 3 : 7);
        json_add("%s\"%d\":%.2f", th > 1 ? "," : "", th, bw_best[th]);
    }
    json_add("}");

    /* (b) */
    static const enum ggml_type dtypes[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q5_0, GGML_TYPE_Q6_K,
                                            GGML_TYPE_F16};
    static const int64_t shapes[][2] = {{4864, 896}, {896, 4864}, {151936, 896}};
    struct rng r;
    rng_seed(&r, 1);
    const int64_t max_in = 4864, max_tok = 512;
    float *x = maas_alloc_aligned((size_t)(max_tok * max_in) * sizeof(float));
    float *y = maas_alloc_aligned((size_t)(max_tok * 4864 > 151936 ? max_tok * 4864 : 151936) * sizeof(float));
    size_t wsize = 0;
    for (int t = 0; t < GGML_TYPE_COUNT; t++)
        if (kern_type_supported((enum ggml_type)t) && max_in % ggml_blck_size((enum ggml_type)t) == 0) {
            size_t s = kern_matmul_wsize((enum ggml_type)t, max_in, max_tok);
            wsize = s > wsize ? s : wsize;
        }
    void *wbuf = maas_alloc_aligned(wsize + 64);
    if (!x || !y || !wbuf) {
        fprintf(stderr, "bench_matmul: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < max_tok * max_in; i++)
        x[i] = (float)rng_normal(&r);

    json_add(",\"decode\":[");
    int first = 1;
    const int rounds = quick ? 3 : 7;
    for (size_t ti = 0; ti < sizeof dtypes / sizeof *dtypes; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
            enum ggml_type t = dtypes[ti];
            int64_t n_out = shapes[si][0], n_in = shapes[si][1];
            if (n_in % ggml_blck_size(t) != 0)
                n_in = (n_in + 255) / 256 * 256; /* k-quants: nearest row length they allow */
            struct mat m;
            if (mat_init(&m, t, n_out, n_in, (size_t)(256 * MIB), &r) != 0) {
                fprintf(stderr, "bench_matmul: out of memory for %s %lldx%lld\n", ggml_type_name(t),
                        (long long)n_out, (long long)n_in);
                mat_release(&m);
                continue;
            }
            for (int th = 1; th <= 2; th++) {
                double gbps[16], ratio[16], cpu_gbps[16];
                time_pass(pools[th], &m, x, 1, y, wbuf, NULL); /* warm-up */
                for (int k = 0; k < rounds; k++) {
                    double bw = probe_once(pools[th], &pr), cpu;
                    double s = time_pass(pools[th], &m, x, 1, y, wbuf, &cpu);
                    gbps[k] = (double)m.bytes * m.n_copies / s * 1e-9;
                    cpu_gbps[k] = (double)m.bytes * m.n_copies / cpu * 1e-9;
                    ratio[k] = gbps[k] / bw;
                }
                double mg = median(gbps, rounds), mr = median(ratio, rounds), mc = median(cpu_gbps, rounds);
                printf("decode     %-5s %6lldx%-5lld %d thread%s  %6.2f GB/s  %5.1f%% of probe (median of %d)", ggml_type_name(t),
                       (long long)n_out, (long long)n_in, th, th > 1 ? "s" : " ", mg, 100 * mr, rounds);
                if (th == 1)
                    printf("  per CPU-second: %5.2f GB/s", mc);
                printf("\n");
                json_add("%s{\"type\":\"%s\",\"n_out\":%lld,\"n_in\":%lld,\"threads\":%d,\"gbps\":%.2f,\"ratio\":%.3f",
                         first ? "" : ",", ggml_type_name(t), (long long)n_out, (long long)n_in, th, mg, mr);
                if (th == 1)
                    json_add(",\"cpu_gbps\":%.2f", mc);
                json_add("}");
                first = 0;
            }
            mat_release(&m);
        }
    json_add("]");

    /* (c) */
    static const enum ggml_type ptypes[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q5_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_K,
                                            GGML_TYPE_Q6_K, GGML_TYPE_F16};
    static const int64_t pshapes[][2] = {{4864, 896}, {896, 4864}};
    json_add(",\"prefill\":[");
    first = 1;
    for (size_t ti = 0; ti < sizeof ptypes / sizeof *ptypes; ti++)
        for (size_t si = 0; si < sizeof pshapes / sizeof *pshapes; si++) {
            enum ggml_type t = ptypes[ti];
            int64_t n_out = pshapes[si][0], n_in = pshapes[si][1];
            if (n_in % ggml_blck_size(t) != 0)
                n_in = (n_in + 255) / 256 * 256;
            struct mat m;
            if (mat_init(&m, t, n_out, n_in, 0, &r) != 0) {
                mat_release(&m);
                continue;
            }
            double gf[16], gc[16];
            const int prounds = quick ? 2 : 5;
            const double flop = 2.0 * n_out * n_in * max_tok;
            time_pass(pools[2], &m, x, max_tok, y, wbuf, NULL);
            for (int k = 0; k < prounds; k++) {
                double cpu;
                gf[k] = flop / time_pass(pools[2], &m, x, max_tok, y, wbuf, NULL) * 1e-9;
                time_pass(pools[1], &m, x, max_tok, y, wbuf, &cpu);
                gc[k] = flop / cpu * 1e-9;
            }
            double g = median(gf, prounds), g1 = median(gc, prounds);
            printf("prefill    %-5s %6lldx%-5lld 512 tokens 2 threads  %7.1f GFLOP/s (median of %d)  1 thread per CPU-second: %5.1f\n",
                   ggml_type_name(t), (long long)n_out, (long long)n_in, g, prounds, g1);
            json_add("%s{\"type\":\"%s\",\"n_out\":%lld,\"n_in\":%lld,\"n_tok\":512,\"threads\":2,\"gflops\":%.1f,"
                     "\"cpu_gflops_1t\":%.1f}",
                     first ? "" : ",", ggml_type_name(t), (long long)n_out, (long long)n_in, g, g1);
            first = 0;
            mat_release(&m);
        }
    json_add("]");

    /* One Qwen2.5-0.5B layer: q, k, v, o, gate, up, down. */
    static const int64_t layer[][2] = {{896, 896}, {128, 896}, {128, 896}, {896, 896},
                                       {4864, 896}, {4864, 896}, {896, 4864}};
    static const enum ggml_type ltypes[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q5_0};
    json_add(",\"qwen05b_prefill_matmul_tok_s\":{");
    for (size_t ti = 0; ti < sizeof ltypes / sizeof *ltypes; ti++) {
        enum ggml_type t = ltypes[ti];
        struct mat ms[7];
        int ok = 1;
        for (int k = 0; k < 7; k++)
            ok &= mat_init(&ms[k], t, layer[k][0], layer[k][1], 0, &r) == 0;
        double tps[16], tcpu[16];
        const int lrounds = quick ? 2 : 5;
        for (int it = 0; ok && it <= lrounds; it++) {
            double s = 0, c1 = 0;
            for (int k = 0; k < 7; k++) {
                double cpu;
                s += time_pass(pools[2], &ms[k], x, max_tok, y, wbuf, NULL);
                time_pass(pools[1], &ms[k], x, max_tok, y, wbuf, &cpu);
                c1 += cpu;
            }
            if (it > 0) {
                tps[it - 1] = max_tok / (24 * s);
                tcpu[it - 1] = max_tok / (24 * c1);
            }
        }
        if (ok) {
            double v = median(tps, lrounds), v1 = median(tcpu, lrounds);
            printf("prefill    %-5s Qwen2.5-0.5B layer matmuls x 24, 512 tokens: 2 threads %6.1f tokens/s; "
                   "1 thread per CPU-second %6.1f tokens/s\n",
                   ggml_type_name(t), v, v1);
            json_add("%s\"%s\":{\"2t\":%.1f,\"cpu_1t\":%.1f}", ti ? "," : "", ggml_type_name(t), v, v1);
        }
        for (int k = 0; k < 7; k++)
            mat_release(&ms[k]);
    }
    json_add("}}");
    printf("%s\n", json);

    maas_free_aligned(pbuf);
    maas_free_aligned(x);
    maas_free_aligned(y);
    maas_free_aligned(wbuf);
    pool_free(pools[1]);
    pool_free(pools[2]);
    return 0;
}
