/*
 * maas run — generates a continuation of a prompt: the prompt is encoded as
 * llama.cpp does for a raw completion (BOS when the vocabulary asks for it,
 * special-token text not parsed), prefilled in one batched pass, then decoded
 * token by token until -n tokens or an end-of-generation token. Text output
 * streams through the tokenizer's detokenizer, which never splits a UTF-8
 * character; --json prints one object per generated token instead.
 */
#include "cli/cli.h"
#include "cli/gen.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: maas run --model FILE --prompt TEXT [options]\n"
            "  -n N                  tokens to generate (default 128)\n"
            "  --temp T              temperature, 0 = greedy (default 0.8)\n"
            "  --top-k K             keep the K most probable (default 40, 0 = off)\n"
            "  --top-p P             nucleus sampling (default 0.95, 1 = off)\n"
            "  --min-p P             drop tokens below P x the best (default 0.05, 0 = off)\n"
            "  --repeat-penalty R    CTRL repetition penalty over the last 64 tokens (default 1 = off)\n"
            "  --presence-penalty P  OpenAI presence penalty (default 0)\n"
            "  --frequency-penalty F OpenAI frequency penalty (default 0)\n"
            "  --seed S              random seed (default: from the clock)\n"
            "  --top-logprobs K      report the K most probable alternatives (0..%d, with --json)\n"
            "  --threads T           worker threads (default: all CPUs)\n"
            "  --ctx N               context size (default: prompt + N)\n"
            "  --kv-type f32|f16     KV cache element type (default f32)\n"
            "  --json                one JSON object per generated token per line:\n"
            "                        {\"id\":ID,\"text\":\"...\",\"logprob\":X,\"top_logprobs\":[{\"id\":ID,\"logprob\":X},...]}\n",
            SAMPLE_MAX_TOP);
}

/* JSON has no infinities: an impossible token is reported at -1e30. */
static double json_num(float x)
{
    return isfinite(x) ? (double)x : -1e30;
}

static void print_json_token(const struct gen *g, const struct sample_result *r)
{
    size_t len = 0;
    const char *piece = g->tok ? tok_piece(g->tok, r->token, false, &len) : NULL;
    printf("{\"id\":%d,\"text\":\"", (int)r->token);
    if (piece)
        json_write_str(stdout, piece, len);
    printf("\",\"logprob\":%.9g,\"top_logprobs\":[", json_num(r->logprob));
    for (int i = 0; i < r->n_top; i++)
        printf("%s{\"id\":%d,\"logprob\":%.9g}", i ? "," : "", (int)r->top[i].id, json_num(r->top[i].logprob));
    printf("]}\n");
    fflush(stdout);
}

struct run_args {
    struct gen_args ga;
    const char *prompt;
    int n_gen, n_ctx, json;
};

/* run's own options with value v: 1 when a is one, 0 when not, -1 with a
 * message. */
static int run_opt(void *ctx, const char *a, const char *v, struct err *e)
{
    struct run_args *ra = ctx;
    if (!strcmp(a, "--prompt") || !strcmp(a, "-p")) {
        ra->prompt = v;
        return 1;
    }
    int rc;
    if (!strcmp(a, "-n") || !strcmp(a, "--n-predict"))
        rc = arg_int(a, v, 0, 1 << 24, &ra->n_gen, e);
    else if (!strcmp(a, "--presence-penalty"))
        rc = arg_float(a, v, -100, 100, &ra->ga.sp.presence_penalty, e);
    else if (!strcmp(a, "--frequency-penalty"))
        rc = arg_float(a, v, -100, 100, &ra->ga.sp.frequency_penalty, e);
    else if (!strcmp(a, "--top-logprobs"))
        rc = arg_int(a, v, 0, SAMPLE_MAX_TOP, &ra->ga.sp.n_top_logprobs, e);
    else if (!strcmp(a, "--ctx") || !strcmp(a, "-c"))
        rc = arg_int(a, v, 1, 1 << 24, &ra->n_ctx, e);
    else
        return 0;
    return rc < 0 ? -1 : 1;
}

/* The command line into ra: 0 to go on, -1 after --help (exit 0), or the
 * exit status of a usage error (reported). */
static int parse_args(int argc, char **argv, struct run_args *ra)
{
    struct err e;
    *ra = (struct run_args){.n_gen = 128};
    gen_args_init(&ra->ga, GGML_TYPE_F32);
    const struct gen_flag flags[] = {{"--json", &ra->json}, {NULL, NULL}};
    int st = gen_parse_argv("run", argc, argv, usage, flags, run_opt, ra, &ra->ga);
    if (st)
        return st;
    if (!ra->ga.model || !ra->prompt)
        return gen_usage_error("run", usage, "--model and --prompt are required");
    if (sample_params_check(&ra->ga.sp, &e) < 0)
        return gen_usage_error("run", NULL, "%s", e.msg);
    return 0;
}

/* Encodes the prompt into ids and sizes the context for it and n_gen more
 * tokens (--ctx, or just enough). */
static int prepare(struct gen *g, const struct run_args *ra, struct tok_ids *ids, struct err *e)
{
    if (tok_encode(g->tok, ra->prompt, strlen(ra->prompt), true, false, ids, e) < 0)
        return -1;
    if (ids->n == 0)
        return err_set(e, ERR_INVALID, "the prompt encodes to no tokens (empty, and the vocabulary adds no BOS)");
    int n_ctx = ra->n_ctx;
    if (n_ctx == 0)
        n_ctx = (int)ids->n + (ra->n_gen > 0 ? ra->n_gen : 1);
    if ((int64_t)ids->n + ra->n_gen > n_ctx)
        return err_set(e, ERR_INVALID, "prompt of %zu tokens + %d to generate exceed --ctx %d", ids->n, ra->n_gen, n_ctx);
    return gen_set_ctx(g, n_ctx, e);
}

/* Writes out[0..len) to stdout at once, as the tokens stream. */
static void put_text(const char *out, size_t len)
{
    fwrite(out, 1, len, stdout);
    fflush(stdout);
}

/* Samples and prints up to n_gen tokens after the prompt (fed already),
 * through ts unless --json; *produced counts them, an end-of-generation
 * token included. */
static int generate(struct gen *g, const struct run_args *ra, struct tok_stream *ts, int *produced, struct err *e)
{
    struct rng rng;
    gen_rng_seed(&rng, &ra->ga);
    for (*produced = 0; *produced < ra->n_gen;) {
        struct sample_result r;
        sampler_sample(g->smp, g->logits, &ra->ga.sp, g->hist, g->n_hist, &rng, &r);
        bool eog = tok_is_eog(g->tok, r.token);
        (*produced)++;
        if (ra->json) {
            print_json_token(g, &r);
        } else if (!eog) {
            const char *out;
            size_t len;
            if (tok_stream_feed(ts, r.token, &out, &len, e) < 0)
                return -1;
            put_text(out, len);
        }
        if (eog)
            break;
        if (*produced < ra->n_gen && gen_feed(g, &r.token, 1, e) < 0)
            return -1;
    }
    if (ts) {
        const char *out;
        size_t len;
        if (tok_stream_finish(ts, &out, &len, e) < 0)
            return -1;
        fwrite(out, 1, len, stdout);
        if (isatty(STDOUT_FILENO))
            fputc('\n', stdout);
        fflush(stdout);
    }
    return 0;
}

int cmd_run(int argc, char **argv)
{
    struct run_args ra;
    int st = parse_args(argc, argv, &ra);
    if (st)
        return st < 0 ? 0 : st;

    int rc = 1;
    struct gen g;
    struct tok_ids ids;
    struct tok_stream *ts = NULL;
    struct err e;
    tok_ids_init(&ids);
    ra.ga.go.model_path = ra.ga.model;
    ra.ga.go.max_batch = 512;
    ra.ga.go.n_ctx = -1; /* sized once the prompt's length is known */
    if (gen_open(&g, &ra.ga.go, &e) < 0) {
        fprintf(stderr, "maas run: %s\n", e.msg);
        return 1;
    }
    if (prepare(&g, &ra, &ids, &e) < 0)
        goto out;
    if (!ra.json && !(ts = tok_stream_new(g.tok, NULL, 0, false, &e)))
        goto out;
    uint64_t t0 = now_ns();
    if (gen_feed(&g, ids.ids, (int)ids.n, &e) < 0)
        goto out;
    uint64_t t1 = now_ns();
    int produced;
    if (generate(&g, &ra, ts, &produced, &e) < 0)
        goto out;
    uint64_t t2 = now_ns();
    fprintf(stderr, "maas run: prompt %zu tokens in %.3f s (%.1f tokens/s), generated %d tokens in %.3f s (%.1f tokens/s)\n",
            ids.n, (t1 - t0) / 1e9, ids.n / ((t1 - t0) / 1e9 + 1e-12), produced, (t2 - t1) / 1e9,
            produced > 1 ? (produced - 1) / ((t2 - t1) / 1e9 + 1e-12) : 0.0);
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "maas run: %s\n", e.msg);
    tok_stream_free(ts);
    gen_close(&g);
    tok_ids_release(&ids);
    return rc;
}
