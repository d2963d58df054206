/*
 * bench_peak — the arithmetic ceilings of this CPU, and what they allow.
 *
 * A matrix multiplication with a quantized weight can use one of two kinds of
 * multiply on AVX2: 8-bit integer (vpmaddubsw, widened with vpmaddwd — the
 * exact block dot every q8-activation kernel needs) or f32 FMA on
 * dequantized weights. This program measures, in tight register-only loops
 * with many independent chains (no memory traffic), how many multiply-adds
 * per second each reaches on one thread and on all threads of a pool:
 *
 *   fma        vfmadd231ps ymm                       8 MACs per instruction
 *   i8 pair    vpmaddubsw + vpmaddwd + vpaddd ymm   32 MACs per pair
 *   i8 alone   vpmaddubsw + vpaddw ymm              32 MACs (int16 results,
 *              not enough to sum a block exactly: a bound, not a kernel)
 *
 * and turns the best of them into upper bounds for the benchmarks of issues
 * 3, 5 and 6: the multiply-adds per token of each model shape divided by the
 * all-thread peak. A bound is what the multiplies alone would allow at 100%
 * use of the units; real kernels also load, convert and reduce.
 *
 *   make bench && build/bench/bench_peak [--threads T]
 */
#include "core/core.h"

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ITERS 20000000L

static double thread_cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

enum kind { K_FMA, K_I8_PAIR, K_I8_ALONE };

struct job {
    enum kind kind;
    long iters;
    double macs_per_cpu_s[64]; /* per thread: MACs / its CPU seconds */
    int sink[64];
};

/* Eight independent chains. The asm barrier makes every input look new each
 * iteration so that nothing is hoisted, and each accumulator starts from a
 * different value so that the compiler cannot merge two chains that share
 * their inputs (it did, when they all started at zero). */
static void run_kind(enum kind kind, long iters, double *macs_per_s, int *sink)
{
    const double t0 = thread_cpu_s();
    double macs = 0;
    if (kind == K_FMA) {
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
        if (kind == K_I8_PAIR) {
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
    *macs_per_s = macs / (thread_cpu_s() - t0);
}

static void job_fn(void *ctx, int ith, int nth)
{
    (void)nth;
    struct job *j = ctx;
    run_kind(j->kind, j->iters, &j->macs_per_cpu_s[ith], &j->sink[ith]);
}

/* Best of 3 runs of the per-thread rate, summed over the pool's threads:
 * CPU time, not wall time, so that another process on the machine lowers
 * neither figure. */
static double measure(struct pool *pool, enum kind kind, double *per_thread)
{
    int nth = pool_n_threads(pool);
    double best_sum = 0, best_one = 0;
    for (int rep = 0; rep < 3; rep++) {
        struct job j;
        memset(&j, 0, sizeof j);
        j.kind = kind;
        j.iters = ITERS;
        pool_run(pool, job_fn, &j);
        double sum = 0, one = 0;
        for (int i = 0; i < nth; i++) {
            sum += j.macs_per_cpu_s[i];
            if (i == 0)
                one = j.macs_per_cpu_s[i];
        }
        if (sum > best_sum)
            best_sum = sum;
        if (one > best_one)
            best_one = one;
    }
    *per_thread = best_one;
    return best_sum;
}

/* Multiply-adds per token of the benchmark shapes (weights of the matmuls;
 * attention scores and the router are a few percent on top, left out so
 * that the bounds stay upper bounds). */
struct shape {
    const char *name;
    double prefill_macs; /* per prompt token: every layer, no output matrix */
    double decode_macs;  /* per generated token: layers and the output matrix */
};

static struct shape dense_shape(const char *name, double n_embd, double n_layer, double n_head, double n_head_kv,
                                double n_ff, double n_vocab)
{
    double kv = n_embd / n_head * n_head_kv;
    double layer = n_embd * (n_embd + 2 * kv) + n_embd * n_embd + 3 * n_embd * n_ff;
    return (struct shape){name, layer * n_layer, layer * n_layer + n_vocab * n_embd};
}

int main(int argc, char **argv)
{
    int threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--threads T]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || threads > 64) {
        fprintf(stderr, "bench_peak: --threads must be 1..64\n");
        return 2;
    }
    struct pool *pool = pool_new(threads);
    if (!pool) {
        fprintf(stderr, "bench_peak: cannot start %d threads\n", threads);
        return 1;
    }
    static const char *names[] = {"fma f32 (vfmadd231ps)", "i8 pair (vpmaddubsw+vpmaddwd)",
                                  "i8 alone (vpmaddubsw)"};
    double all[3], one[3];
    for (int k = 0; k < 3; k++) {
        all[k] = measure(pool, (enum kind)k, &one[k]);
        printf("peak  %-32s 1 thread %6.1f GMAC/s   %d threads %6.1f GMAC/s (per CPU-second, best of 3)\n",
               names[k], one[k] / 1e9, threads, all[k] / 1e9);
    }
    /* The kernels can use either kind; the bound takes the better. */
    double peak = all[0] > all[1] ? all[0] : all[1];
    printf("bound uses %.1f GMAC/s (%s at %d threads)\n", peak / 1e9, all[0] > all[1] ? "fma" : "i8 pair", threads);

    /* Issue 3: Qwen2.5-0.5B shape with the gpt-2 vocabulary (the bench model). */
    struct shape d = dense_shape("dense 0.5B (896x24, ff 4864, vocab 50257)", 896, 24, 14, 2, 4864, 50257);
    /* Issue 5: 32 experts, top 4, expert width 512: per token the attention,
     * the 4 chosen experts. */
    struct shape m = dense_shape("moe 32x top-4 (1024x16, expert 512)", 1024, 16, 16, 4, 4 * 512, 50257);
    const struct {
        const struct shape *s;
        double target;
    } pp[] = {{&d, 230}, {&m, 300}};
    for (int i = 0; i < 2; i++) {
        double bound = peak / pp[i].s->prefill_macs;
        printf("prefill  %-44s %.0f MMAC/token -> at most %6.1f tokens/s (issue target %.0f: %s)\n", pp[i].s->name,
               pp[i].s->prefill_macs / 1e6, bound, pp[i].target,
               bound >= pp[i].target ? "within the bound" : "above what the multipliers can do");
    }
    /* Issue 6: batched decoding computes every matmul, output matrix
     * included, for every generated token. */
    double serve = peak / d.decode_macs;
    printf("serving  %-44s %.0f MMAC/token -> batched generation at most %6.1f tokens/s in all\n", d.name,
           d.decode_macs / 1e6, serve);
    printf("{\"threads\":%d,\"fma_gmacs\":%.2f,\"i8_pair_gmacs\":%.2f,\"i8_alone_gmacs\":%.2f,"
           "\"dense_prefill_bound\":%.1f,\"moe_prefill_bound\":%.1f,\"dense_batched_decode_bound\":%.1f}\n",
           threads, all[0] / 1e9, all[1] / 1e9, all[2] / 1e9, peak / d.prefill_macs, peak / m.prefill_macs, serve);
    pool_free(pool);
    return 0;
}
