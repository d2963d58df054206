/*
 * maas bench — prompt-processing and generation speed of a model, and how
 * close generation comes to the machine's memory-bandwidth roofline:
 *
 *   pp   one sequence's prompt of -p random tokens, prefilled in batches of
 *        --batch (default: the whole prompt up to 512) — tokens/s
 *   tg   -n greedy decode steps after that prompt — tokens/s
 *   bw   read bandwidth measured here (kern_read_bandwidth: all threads, vectorised,
 *        a buffer far larger than the caches, best of several passes), before
 *        and after the timed runs; the larger is the roofline's denominator
 *   roofline = bw / (weight bytes read per generated token); generation's
 *        fraction of it = tg tokens/s x bytes per token / bw
 *   mac  the compute ceiling of prompt processing: this CPU's multiply-add
 *        rate (kern_mac_peak: register-only loops on all threads, the
 *        better of f32 FMA and the 8-bit multiply pair) divided by the
 *        multiply-adds of the weight matrices per prompt token (attention
 *        scores left out, so it stays an upper bound); pp's fraction of it
 *   rss  allocated (anonymous) resident memory after the first decode step
 *        and after the last: it must not grow per token (KV and scratch are
 *        allocated up front). Mapped weight pages are reported apart.
 * Timings of -r repetitions are reported as the best (least disturbed) run.
 */
#include "cli/cli.h"
#include "cli/gen.h"
#include "kernels/kernels.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROBE_BYTES ((size_t)512 << 20)
#define PROBE_REPS 10

/* Multiply-adds of the weight matrices per prompt token (not the output
 * matrix: a prompt's logits are wanted for its last token only). */
static double prefill_macs_per_token(const struct model_hparams *hp)
{
    double E = hp->n_embd, QD = (double)hp->n_head * hp->head_dim, KD = (double)hp->n_head_kv * hp->head_dim;
    double attn = E * QD + 2 * E * KD + QD * E, ffn;
    if (hp->n_expert > 0)
        ffn = (double)hp->n_expert_used * 3 * E * hp->n_ff_exp + E * hp->n_expert + 3 * E * hp->n_ff_shexp;
    else
        ffn = 3 * E * hp->n_ff;
    return hp->n_layer * (attn + ffn);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: maas bench --model FILE [-p 512] [-n 128] [-r 1] [--threads T] [--batch B] [--kv-type f16|f32] [--json]\n"
                 "  -p N        prompt tokens (prompt-processing test; 0 skips it)\n"
                 "  -n N        generated tokens (generation test; 0 skips it)\n"
                 "  -r N        repetitions; the best run is reported\n"
                 "  --batch B   tokens per forward pass during the prompt (default min(p, 512))\n");
}

/* Resident memory in MiB: anonymous (what the process allocated) and
 * file-backed (pages of the mapped weights, which grow as a MoE model's
 * experts are first chosen, and are the page cache, not allocations). */
static void rss_mib(double *anon, double *file)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0, shared = 0;
    *anon = *file = -1;
    if (!f)
        return;
    if (fscanf(f, "%ld %ld %ld", &size, &res, &shared) == 3) {
        double page = (double)sysconf(_SC_PAGESIZE) / (1 << 20);
        *anon = (double)(res - shared) * page;
        *file = (double)shared * page;
    }
    fclose(f);
}

/* CPU seconds used by the process so far (all threads). On a shared
 * machine, tokens per CPU-second at one thread is the figure that other
 * processes disturb least. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double read_bandwidth(struct pool *pool, struct err *e)
{
    return kern_read_bandwidth(pool, PROBE_BYTES, PROBE_REPS, e);
}

struct bench_opts {
    const char *model;
    int n_p, n_g, reps, json, batch;
    struct gen_opts go;
};

/* What the timed runs measured: best tokens/s (wall and per CPU-second),
 * resident memory around generation, read bandwidth before and after. */
struct bench_result {
    double pp_best, tg_best, pp_cpu, tg_cpu;
    double rss0, rss1, file0, file1;
    double bw1, bw2;
};

/* The command line into o. -1 to go on, else the exit code (0 after
 * --help, 2 for bad usage, reported here). */
static int parse_args(int argc, char **argv, struct bench_opts *o)
{
    struct err e;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0, used = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            o->json = 1, used = 0;
        } else if (!v) {
            fprintf(stderr, "maas bench: %s needs a value (or is unknown)\n", a);
            return 2;
        } else if (!strcmp(a, "--model") || !strcmp(a, "-m")) {
            o->model = v;
        } else if (!strcmp(a, "-p")) {
            rc = arg_int(a, v, 0, 1 << 20, &o->n_p, &e);
        } else if (!strcmp(a, "-n")) {
            rc = arg_int(a, v, 0, 1 << 20, &o->n_g, &e);
        } else if (!strcmp(a, "-r")) {
            rc = arg_int(a, v, 1, 1000, &o->reps, &e);
        } else if (!strcmp(a, "--batch") || !strcmp(a, "-b")) {
            rc = arg_int(a, v, 1, 1 << 16, &o->batch, &e);
        } else if ((rc = gen_parse_opts_arg(a, v, &o->go, &e)) != 0) {
            /* parsed (or rc < 0: reported below) */
        } else {
            fprintf(stderr, "maas bench: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (rc < 0) {
            fprintf(stderr, "maas bench: %s\n", e.msg);
            return 2;
        }
        i += used;
    }
    if (!o->model) {
        fprintf(stderr, "maas bench: --model is required\n");
        usage(stderr);
        return 2;
    }
    return -1;
}

/* The -r repetitions of the prompt (n_p tokens of toks) and of n_g greedy
 * decode steps, each from an empty sequence; the bandwidth probe before
 * and after. */
static int run_timed(struct gen *g, const struct bench_opts *o, const int32_t *toks, struct rng *rng,
                     struct bench_result *r, struct err *e)
{
    struct sample_params sp = sample_params_default();
    sp.temperature = 0;
    r->bw1 = read_bandwidth(g->pool, e);
    if (r->bw1 < 0)
        return -1;
    for (int rep = 0; rep < o->reps; rep++) {
        gen_truncate(g, 0);
        if (o->n_p > 0) {
            uint64_t t0 = now_ns();
            double c0 = cpu_s();
            if (gen_feed(g, toks, o->n_p, e) < 0)
                return -1;
            double tps = o->n_p / ((now_ns() - t0) / 1e9), cps = o->n_p / (cpu_s() - c0 + 1e-9);
            r->pp_best = tps > r->pp_best ? tps : r->pp_best;
            r->pp_cpu = cps > r->pp_cpu ? cps : r->pp_cpu;
        } else if (gen_feed(g, toks, 1, e) < 0) {
            return -1;
        }
        if (o->n_g > 0) {
            uint64_t t0 = now_ns();
            double c0 = cpu_s();
            for (int i = 0; i < o->n_g; i++) {
                struct sample_result res;
                sampler_sample(g->smp, g->logits, &sp, g->hist, g->n_hist, rng, &res);
                if (gen_feed(g, &res.token, 1, e) < 0)
                    return -1;
                if (i == 0) /* after the first step has touched every buffer once */
                    rss_mib(&r->rss0, &r->file0);
            }
            double tps = o->n_g / ((now_ns() - t0) / 1e9), cps = o->n_g / (cpu_s() - c0 + 1e-9);
            rss_mib(&r->rss1, &r->file1);
            r->tg_best = tps > r->tg_best ? tps : r->tg_best;
            r->tg_cpu = cps > r->tg_cpu ? cps : r->tg_cpu;
        }
    }
    r->bw2 = read_bandwidth(g->pool, e);
    return r->bw2 < 0 ? -1 : 0;
}

/* The results against the rooflines, as JSON or as text. */
static void report(const struct bench_opts *o, struct gen *g, const struct bench_result *r)
{
    const char *model = o->model;
    int n_p = o->n_p, n_g = o->n_g, reps = o->reps;
    double bw = r->bw1 > r->bw2 ? r->bw1 : r->bw2;
    double mac_peak = 0, pp_macs = prefill_macs_per_token(g->hp);
    {
        double fma = kern_mac_peak(g->pool, KERN_MAC_FMA, NULL), i8 = kern_mac_peak(g->pool, KERN_MAC_I8_PAIR, NULL);
        double vnni = kern_mac_peak(g->pool, KERN_MAC_I8_VNNI, NULL); /* 0 without VNNI */
        double amx = kern_mac_peak(g->pool, KERN_MAC_I8_AMX, NULL);   /* 0 without AMX */
        mac_peak = fma > i8 ? fma : i8;
        mac_peak = vnni > mac_peak ? vnni : mac_peak;
        mac_peak = amx > mac_peak ? amx : mac_peak;
    }
    double pp_ceiling = mac_peak > 0 ? mac_peak / pp_macs : 0, pp_frac = pp_ceiling > 0 ? r->pp_best / pp_ceiling : 0;
    double bpt = (double)model_weight_bytes_per_token(g->m);
    double roof = bw * 1e9 / bpt, frac = r->tg_best / roof;
    const struct model_hparams *hp = g->hp;
    int nth = pool_n_threads(g->pool);
    if (o->json) {
        printf("{\"model\":\"");
        json_write_str(stdout, model, strlen(model));
        printf("\",\"arch\":\"%s\",\"n_params\":%llu,\"n_active_params\":%llu,\"n_expert\":%d,\"n_expert_used\":%d,\"n_layer\":%d,\"n_embd\":%d,\"threads\":%d,\"kernels\":\"%s\","
               "\"kv_type\":\"%s\",\"pp_tokens\":%d,\"pp_tokens_per_s\":%.2f,\"tg_tokens\":%d,\"tg_tokens_per_s\":%.2f,"
               "\"pp_tokens_per_cpu_s\":%.2f,\"tg_tokens_per_cpu_s\":%.2f,"
               "\"bandwidth_gb_s\":%.2f,\"bandwidth_before_gb_s\":%.2f,\"bandwidth_after_gb_s\":%.2f,"
               "\"bytes_per_token\":%.0f,\"roofline_tokens_per_s\":%.2f,\"roofline_fraction\":%.4f,"
               "\"mac_peak_gmac_s\":%.2f,\"pp_macs_per_token\":%.0f,\"pp_ceiling_tokens_per_s\":%.2f,"
               "\"pp_ceiling_fraction\":%.4f,"
               "\"rss_before_tg_mib\":%.1f,\"rss_after_tg_mib\":%.1f,\"mapped_before_tg_mib\":%.1f,"
               "\"mapped_after_tg_mib\":%.1f}\n",
               hp->arch_name, (unsigned long long)model_n_params(g->m), (unsigned long long)model_n_active_params(g->m),
               hp->n_expert, hp->n_expert_used, hp->n_layer, hp->n_embd, nth,
               kern_variant_current(), ggml_type_name(g->kv_type), n_p, r->pp_best, n_g, r->tg_best, r->pp_cpu,
               r->tg_cpu, bw, r->bw1, r->bw2, bpt, roof, frac, mac_peak / 1e9, pp_macs, pp_ceiling, pp_frac, r->rss0,
               r->rss1, r->file0, r->file1);
        return;
    }
    printf("model:             %s (%s, %.1fM params, %d layers, n_embd %d), %d threads, kernels %s, kv %s\n",
           model, hp->arch_name, model_n_params(g->m) / 1e6, hp->n_layer, hp->n_embd, nth,
           kern_variant_current(), ggml_type_name(g->kv_type));
    if (hp->n_expert > 0)
        printf("experts:           %d, %d used per token: %.1fM active params of %.1fM\n", hp->n_expert,
               hp->n_expert_used, model_n_active_params(g->m) / 1e6, model_n_params(g->m) / 1e6);
    if (n_p > 0)
        printf("prompt processing: %d tokens, %.1f tokens/s (batches of %d, best of %d; %.1f tokens per CPU-second)\n",
               n_p, r->pp_best, g->max_batch, reps, r->pp_cpu);
    if (n_g > 0)
        printf("generation:        %d tokens, %.2f tokens/s (best of %d; %.2f tokens per CPU-second)\n", n_g,
               r->tg_best, reps, r->tg_cpu);
    printf("memory bandwidth:  %.1f GB/s (read probe, %zu MiB, best of %d passes; %.1f before, %.1f after)\n", bw,
           PROBE_BYTES >> 20, PROBE_REPS, r->bw1, r->bw2);
    printf("weights per token: %.1f MB -> roofline %.1f tokens/s", bpt / 1e6, roof);
    if (n_g > 0)
        printf("; generation reached %.2f of it", frac);
    printf("\n");
    if (pp_ceiling > 0) {
        printf("compute ceiling:   %.1f GMAC/s (multiply-add peak, %d threads) / %.1fM MACs per prompt token -> "
               "%.1f tokens/s", mac_peak / 1e9, nth, pp_macs / 1e6, pp_ceiling);
        if (n_p > 0)
            printf("; prompt processing reached %.2f of it", pp_frac);
        printf("\n");
    }
    if (n_g > 0)
        printf("memory:            allocated (anonymous RSS) %.1f MiB after the first generated token, %.1f MiB "
               "after %d (%+.1f MiB); mapped weight pages %.1f -> %.1f MiB\n",
               r->rss0, r->rss1, n_g, r->rss1 - r->rss0, r->file0, r->file1);
}

int cmd_bench(int argc, char **argv)
{
    struct bench_opts o = {.n_p = 512, .n_g = 128, .reps = 1,
                           .go = {.kv_type = GGML_TYPE_F16, .need_tokenizer = false, .n_ctx = -1}};
    int prc = parse_args(argc, argv, &o);
    if (prc >= 0)
        return prc;
    struct err e;
    int n_p = o.n_p, n_g = o.n_g;

    /* the model, a context for the prompt and the generated tokens, and
     * the random prompt */
    o.go.model_path = o.model;
    o.go.max_batch = o.batch > 0 ? o.batch : (n_p > 0 && n_p < 512 ? n_p : 512);
    struct gen g;
    if (gen_open(&g, &o.go, &e) < 0) {
        fprintf(stderr, "maas bench: %s\n", e.msg);
        return 1;
    }
    int rc = 1;
    int32_t *toks = NULL;
    if (gen_set_ctx(&g, n_p + n_g + 16, &e) < 0)
        goto out;
    int n_tok = n_p > 16 ? n_p : 16;
    toks = malloc((size_t)n_tok * sizeof *toks);
    if (!toks) {
        err_set(&e, ERR_NOMEM, "out of memory");
        goto out;
    }
    struct rng rng;
    rng_seed(&rng, 1234);
    for (int i = 0; i < n_tok; i++)
        toks[i] = (int32_t)(rng_u64(&rng) % (uint64_t)g.n_vocab_sample);

    /* warm-up: fault in every weight page and wake the threads */
    if (gen_feed(&g, toks, 16, &e) < 0)
        goto out;
    struct bench_result r = {0};
    if (run_timed(&g, &o, toks, &rng, &r, &e) < 0)
        goto out;
    report(&o, &g, &r);
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "maas bench: %s\n", e.msg);
    free(toks);
    gen_close(&g);
    return rc;
}
