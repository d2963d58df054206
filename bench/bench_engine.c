/* Aggregate generation rate of the engine with 1 and with N concurrent
 * sequences on a given model file (continuous batching: every step reads
 * the weights once for all running sequences).
 *
 *   build/bench/bench_engine MODEL.gguf [N=16] [GEN=64] [PROMPT=32] [THREADS=0]
 *
 * Each sequence gets its own random prompt (no prefix sharing), greedy,
 * end-of-generation ignored, so every run produces exactly N * GEN tokens.
 * Runs 1, N, 1, N, 1, N and prints one line per run and the medians and
 * their ratio as JSON on the last line. */
#include "engine/engine.h"
#include "kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Returns completion tokens per second of n concurrent sequences (prefill
 * included), the time to the first token of the first sequence in *ttft_ms
 * and the first sequence's rate after its first token in *decode. */
static double run(struct engine *eng, int n, int gen, int np, int n_vocab, uint64_t seed, double *ttft_ms,
                  double *decode)
{
    struct engine_seq **s = calloc((size_t)n, sizeof *s);
    int32_t *p = malloc((size_t)np * n * sizeof *p);
    struct rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < np * n; i++)
        p[i] = (int32_t)(rng_u64(&r) % (uint64_t)n_vocab);
    uint64_t t0 = now_ns();
    struct err e;
    for (int i = 0; i < n; i++) {
        struct engine_request q = {0};
        q.prompt = p + (size_t)i * np;
        q.n_prompt = np;
        q.sample = sample_params_default();
        q.sample.temperature = 0;
        q.max_tokens = gen;
        q.ignore_eog = true;
        s[i] = engine_submit(eng, &q, &e);
        if (!s[i]) {
            fprintf(stderr, "submit: %s\n", e.msg);
            exit(1);
        }
    }
    long total = 0;
    double ttft = 0;
    uint64_t t_first = 0;
    for (int i = 0; i < n; i++) {
        struct engine_event ev;
        bool first = true;
        while (engine_next(s[i], &ev, -1) == 0 && ev.kind == ENGINE_EV_TOKEN) {
            if (first && i == 0) {
                t_first = now_ns();
                ttft = (double)(t_first - t0) / 1e6;
            }
            first = false;
        }
        total += ev.n_completion;
        if (i == 0)
            *decode = ev.n_completion > 1 ? (ev.n_completion - 1) / ((double)(now_ns() - t_first) / 1e9) : 0;
        engine_release(s[i]);
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    free(p);
    free(s);
    *ttft_ms = ttft;
    return (double)total / secs;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [N=16] [GEN=64] [PROMPT=32] [THREADS=0]\n", argv[0]);
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 16;
    int gen = argc > 3 ? atoi(argv[3]) : 64;
    int np = argc > 4 ? atoi(argv[4]) : 32;
    int threads = argc > 5 ? atoi(argv[5]) : 0;
    if (n < 1 || gen < 1 || np < 1) {
        fprintf(stderr, "N, GEN and PROMPT must be positive\n");
        return 2;
    }
    kernels_init();
    struct err e;
    struct model *m = model_load(argv[1], &e);
    if (!m) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    int n_vocab = model_hparams(m)->n_vocab;
    struct engine_opts o = {.n_threads = threads, .n_ctx = np + gen, .max_running = n};
    o.kv_blocks = (n * (np + gen) + 15) / 16 + n;
    struct engine *eng = engine_new(m, NULL, &o, &e);
    if (!eng) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    double one[3], many[3], t1[3], tn[3], d1[3], dn[3];
    for (int k = 0; k < 3; k++) {
        one[k] = run(eng, 1, gen, np, n_vocab, 1000 + (uint64_t)k * 2, &t1[k], &d1[k]);
        many[k] = run(eng, n, gen, np, n_vocab, 2000 + (uint64_t)k * 2, &tn[k], &dn[k]);
        printf("run %d: 1 sequence %.1f tok/s (ttft %.1f ms, then %.1f tok/s), %d sequences %.1f tok/s "
               "(first ttft %.1f ms)\n",
               k, one[k], t1[k], d1[k], n, many[k], tn[k]);
        fflush(stdout);
    }
    qsort(one, 3, sizeof *one, cmp_double);
    qsort(many, 3, sizeof *many, cmp_double);
    struct engine_stats st;
    engine_get_stats(eng, &st);
    printf("{\"bench\":\"engine\",\"model\":\"%s\",\"n\":%d,\"gen\":%d,\"prompt\":%d,\"tok_s_1\":%.2f,"
           "\"tok_s_n\":%.2f,\"ratio\":%.3f,\"steps\":%llu,\"preemptions\":%llu}\n",
           argv[1], n, gen, np, one[1], many[1], many[1] / one[1], (unsigned long long)st.steps,
           (unsigned long long)st.preemptions);
    engine_free(eng);
    model_free(m);
    return 0;
}
