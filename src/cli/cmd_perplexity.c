/* maas perplexity — the perplexity of a model on a text file, computed as
 * llama.cpp's llama-perplexity does by default, or with a sliding window.
 *
 *   maas perplexity --model F.gguf --file TEXT [--ctx N] [--stride S]
 *                   [--chunks N] [--threads N] [--kv-type f16|f32] [--json]
 *
 * Chunks (the default, llama-perplexity's method): the whole text is
 * tokenized (BOS first when the vocabulary adds one), cut into
 * n_tokens / ctx chunks of ctx tokens (the tail is dropped); each chunk is
 * evaluated from an empty cache with its first token replaced by BOS (when
 * the vocabulary adds one), and only its second half is scored: the logits
 * at positions ctx/2 .. ctx-2 predict tokens ctx/2+1 .. ctx-1, so every
 * scored token has at least ctx/2 tokens of context. Needs 2*ctx tokens.
 *
 * Sliding window (--stride S, 1 <= S <= ctx): windows of ctx tokens whose
 * ends are ctx, ctx+S, ctx+2S, ... and a last one ending at the text's end;
 * the first window scores all of its tokens but the first, each later one
 * only the tokens past the previous window's end (its last S or fewer), so
 * every token but the first is scored exactly once, with at least ctx-S
 * tokens of context. The first token of each window is replaced by BOS as
 * in chunk mode. Needs ctx tokens; costs about ctx/S times chunk mode.
 *
 * PPL = exp(mean NLL); SE = PPL * sqrt((mean(NLL^2) - mean(NLL)^2) / (n-1)),
 * llama-perplexity's uncertainty. log-softmax is computed in double.
 */
#include "cli/cli.h"
#include "cli/tools.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PPL_BLOCK 16
#define PPL_LOGITS_BUDGET ((size_t)256 << 20) /* bytes of logits per forward batch */

struct ppl_opts {
    const char *model, *file;
    int ctx, stride, chunks, threads;
    enum ggml_type kv_type;
    bool json;
};

/* Everything is owned (freed by ppl_close) but progress. */
struct ppl {
    struct model *m;
    struct tokenizer *tok;
    struct pool *pool;
    struct kv_cache *kv;      /* ctx positions, one sequence, cleared by overwriting from position 0 */
    int32_t *blocks;          /* the block table: 0 .. n_blocks-1 */
    int32_t *toks;            /* from malloc (the tok_ids buffer): the text's n_toks ids */
    int32_t *win;             /* ctx ids: the window being evaluated, its first id maybe BOS */
    int n_toks, n_vocab, max_batch;
    bool add_bos;
    int32_t bos;
    float *logits;            /* (max_batch, n_vocab): one forward batch's scored rows */
    struct batch_token *bt;   /* max_batch entries */
    double nll, nll2;   /* sums over the scored tokens */
    long count;         /* scored tokens */
    int n_windows;      /* chunks or windows evaluated */
    FILE *progress;     /* borrowed: stdout, or stderr with --json */
};

static void ppl_usage(FILE *out)
{
    fprintf(out,
            "usage: maas perplexity --model F.gguf --file TEXT [--ctx N] [--stride S] [--chunks N]\n"
            "                       [--threads N] [--kv-type f16|f32] [--json]\n"
            "  perplexity of the model on the text, as llama.cpp's llama-perplexity computes it:\n"
            "  the text is tokenized (BOS first if the vocabulary adds one) and cut into\n"
            "  n_tokens/ctx chunks; each chunk is evaluated alone with its first token replaced by\n"
            "  BOS (if the vocabulary adds one), and only its second half is scored (the token at\n"
            "  position p is predicted from positions 0..p-1, for p = ctx/2+1 .. ctx-1).\n"
            "  PPL = exp(mean negative log-likelihood); +/- is llama-perplexity's standard error.\n"
            "  --ctx N       tokens per chunk (default 512, llama-perplexity's default; at most the\n"
            "                model's context length); chunk mode needs 2*N tokens of text\n"
            "  --stride S    sliding window instead of chunks: windows of ctx tokens ending at ctx,\n"
            "                ctx+S, ctx+2S, ... and at the text's end; the first scores all its tokens\n"
            "                but the first, each later one only the tokens past the previous window's\n"
            "                end, so each token is scored once with >= ctx-S tokens of context\n"
            "                (1 <= S <= ctx; about ctx/S times the work of chunk mode)\n"
            "  --chunks N    evaluate at most N chunks (or windows)\n"
            "  --threads N   worker threads (default: all cores)\n"
            "  --kv-type T   f16 (default, as llama.cpp) or f32 KV cache\n"
            "  --json        one JSON object on stdout (progress goes to stderr)\n"
            "  Progress: [i]PPL after chunk i, as llama-perplexity prints it.\n");
}

static int parse_int(const char *opt, const char *s, int lo, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > 1 << 24) {
        fprintf(stderr, "maas perplexity: %s wants an integer >= %d (got '%s')\n", opt, lo, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* 0, 1 (--help printed), or 2 (usage error printed). */
static int ppl_parse(int argc, char **argv, struct ppl_opts *o)
{
    *o = (struct ppl_opts){.ctx = 512, .kv_type = GGML_TYPE_F16};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            ppl_usage(stdout);
            return 1;
        } else if (!strcmp(a, "--json")) {
            o->json = true;
            continue;
        } else if (!v) {
            fprintf(stderr, "maas perplexity: unknown option '%s' (or missing value)\n", a);
            rc = -1;
        } else if (!strcmp(a, "--model")) {
            o->model = v;
        } else if (!strcmp(a, "--file")) {
            o->file = v;
        } else if (!strcmp(a, "--ctx")) {
            rc = parse_int(a, v, 4, &o->ctx);
        } else if (!strcmp(a, "--stride")) {
            rc = parse_int(a, v, 1, &o->stride);
        } else if (!strcmp(a, "--chunks")) {
            rc = parse_int(a, v, 1, &o->chunks);
        } else if (!strcmp(a, "--threads")) {
            rc = parse_int(a, v, 1, &o->threads);
        } else if (!strcmp(a, "--kv-type")) {
            if (!strcmp(v, "f16") || !strcmp(v, "f32")) {
                o->kv_type = v[1] == '1' ? GGML_TYPE_F16 : GGML_TYPE_F32;
            } else {
                fprintf(stderr, "maas perplexity: --kv-type wants f16 or f32 (got '%s')\n", v);
                rc = -1;
            }
        } else {
            fprintf(stderr, "maas perplexity: unknown option '%s'\n", a);
            rc = -1;
        }
        if (rc < 0) {
            ppl_usage(stderr);
            return 2;
        }
        i++;
    }
    if (!o->model || !o->file) {
        fprintf(stderr, "maas perplexity: %s is required\n", !o->model ? "--model FILE" : "--file TEXT");
        ppl_usage(stderr);
        return 2;
    }
    if (o->stride > o->ctx) {
        fprintf(stderr, "maas perplexity: --stride %d is larger than --ctx %d\n", o->stride, o->ctx);
        return 2;
    }
    return 0;
}

static void ppl_close(struct ppl *p)
{
    free(p->blocks);
    free(p->toks);
    free(p->win);
    free(p->logits);
    free(p->bt);
    kv_free(p->kv);
    tok_free(p->tok);
    model_free(p->m);
    pool_free(p->pool);
}

/* The text's token ids into p->toks (BOS first when the vocabulary adds one). */
static int ppl_tokenize(struct ppl *p, const char *path, struct err *e)
{
    char *text = NULL;
    size_t len = 0;
    if (tool_read_text(path, &text, &len, e) < 0)
        return -1;
    struct tok_ids ids;
    tok_ids_init(&ids);
    int rc = 0;
    if (p->add_bos)
        rc = tok_ids_push(&ids, p->bos, e);
    if (rc == 0)
        rc = tok_encode(p->tok, text, len, false, false, &ids, e);
    free(text);
    if (rc == 0 && ids.n > INT32_MAX / 2)
        rc = err_set(e, ERR_INVALID, "%s: too many tokens (%zu)", path, (size_t)ids.n);
    if (rc < 0) {
        tok_ids_release(&ids);
        return -1;
    }
    p->toks = ids.ids; /* taken over */
    p->n_toks = (int)ids.n;
    return 0;
}

static int ppl_open(struct ppl *p, const struct ppl_opts *o, struct err *e)
{
    if (!(p->m = model_load(o->model, e)))
        return -1;
    const struct model_hparams *hp = model_hparams(p->m);
    if (model_is_embedding(p->m))
        return err_set(e, ERR_INVALID, "%s: an embedding model (%s) predicts no tokens", o->model, hp->arch_name);
    if (o->ctx > hp->n_ctx_train)
        return err_set(e, ERR_INVALID, "--ctx %d is larger than the model's context length %d", o->ctx,
                       hp->n_ctx_train);
    if (!(p->tok = tok_load(model_gguf(p->m), e)))
        return err_prefix(e, "%s", o->model);
    p->n_vocab = hp->n_vocab;
    p->add_bos = tok_add_bos(p->tok) && tok_bos(p->tok) >= 0;
    p->bos = tok_bos(p->tok);
    int n_threads = o->threads > 0 ? o->threads : cpu_count();
    if (!(p->pool = pool_new(n_threads)))
        return err_set(e, ERR_INTERNAL, "cannot start %d threads", n_threads);
    p->max_batch = o->ctx < 512 ? o->ctx : 512;
    while (p->max_batch > 16 && (size_t)p->max_batch * (size_t)p->n_vocab * sizeof(float) > PPL_LOGITS_BUDGET)
        p->max_batch /= 2;
    if (model_reserve(p->m, p->max_batch, p->pool, e) < 0)
        return -1;
    int n_blocks = (o->ctx + PPL_BLOCK - 1) / PPL_BLOCK;
    if (!(p->kv = kv_new_typed(p->m, n_blocks, PPL_BLOCK, o->kv_type, e)))
        return -1;
    p->blocks = malloc((size_t)n_blocks * sizeof *p->blocks);
    p->win = malloc((size_t)o->ctx * sizeof *p->win);
    p->logits = malloc((size_t)p->max_batch * (size_t)p->n_vocab * sizeof *p->logits);
    p->bt = malloc((size_t)p->max_batch * sizeof *p->bt);
    if (!p->blocks || !p->win || !p->logits || !p->bt)
        return err_set(e, ERR_NOMEM, "out of memory for a context of %d tokens", o->ctx);
    for (int i = 0; i < n_blocks; i++)
        p->blocks[i] = i;
    return ppl_tokenize(p, o->file, e);
}

/* -log softmax(row)[tok], in double. */
static double nll_of(const float *row, int n_vocab, int32_t tok)
{
    double mx = row[0];
    for (int i = 1; i < n_vocab; i++)
        if (row[i] > mx)
            mx = row[i];
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++)
        sum += exp((double)row[i] - mx);
    return mx + log(sum) - (double)row[tok];
}

/* Evaluates the window toks[start .. start+n) from an empty cache (first
 * token replaced by BOS when the vocabulary adds one) and scores the tokens
 * at window positions score_from .. n-1 (score_from >= 1). */
static int ppl_window(struct ppl *p, int start, int n, int score_from, struct err *e)
{
    memcpy(p->win, p->toks + start, (size_t)n * sizeof *p->win);
    if (p->add_bos)
        p->win[0] = p->bos;
    struct batch_seq s = {p->blocks, kv_n_blocks(p->kv)};
    for (int done = 0; done < n - 1;) {
        int c = n - 1 - done < p->max_batch ? n - 1 - done : p->max_batch;
        int n_out = 0;
        for (int i = 0; i < c; i++) {
            int pos = done + i;
            bool want = pos + 1 >= score_from;
            p->bt[i] = (struct batch_token){p->win[pos], pos, 0, want};
            n_out += want;
        }
        struct batch b = {c, p->bt, 1, &s};
        if (model_forward(p->m, p->kv, &b, p->logits, e) < 0)
            return -1;
        const float *row = p->logits;
        for (int i = 0; i < c; i++) {
            int pos = done + i;
            if (pos + 1 < score_from)
                continue;
            double v = nll_of(row, p->n_vocab, p->win[pos + 1]);
            p->nll += v;
            p->nll2 += v * v;
            p->count++;
            row += p->n_vocab;
        }
        done += c;
    }
    p->n_windows++;
    fprintf(p->progress, "[%d]%.4f,", p->n_windows, exp(p->nll / (double)p->count));
    fflush(p->progress);
    return 0;
}

/* llama-perplexity's chunks. */
static int ppl_chunks(struct ppl *p, const struct ppl_opts *o, struct err *e)
{
    if (p->n_toks < 2 * o->ctx)
        return err_set(e, ERR_INVALID,
                       "%s tokenizes to %d tokens; a context of %d needs at least %d (2 * ctx, as llama-perplexity); "
                       "use a longer text or a smaller --ctx",
                       o->file, p->n_toks, o->ctx, 2 * o->ctx);
    int n_chunk = p->n_toks / o->ctx;
    if (o->chunks > 0 && o->chunks < n_chunk)
        n_chunk = o->chunks;
    for (int i = 0; i < n_chunk; i++)
        if (ppl_window(p, i * o->ctx, o->ctx, o->ctx / 2 + 1, e) < 0)
            return -1;
    return 0;
}

/* The sliding window. */
static int ppl_slide(struct ppl *p, const struct ppl_opts *o, struct err *e)
{
    if (p->n_toks < o->ctx)
        return err_set(e, ERR_INVALID,
                       "%s tokenizes to %d tokens; a sliding window of %d needs at least %d; "
                       "use a longer text or a smaller --ctx",
                       o->file, p->n_toks, o->ctx, o->ctx);
    int prev_end = 0;
    for (int end = o->ctx;; end += o->stride) {
        if (end > p->n_toks)
            end = p->n_toks;
        if (end <= prev_end || (o->chunks > 0 && p->n_windows >= o->chunks))
            break;
        int start = end - o->ctx;
        int from = prev_end == 0 ? 1 : prev_end - start;
        if (ppl_window(p, start, o->ctx, from, e) < 0)
            return -1;
        prev_end = end;
    }
    return 0;
}

static void ppl_report(const struct ppl *p, const struct ppl_opts *o, double secs)
{
    double mean = p->nll / (double)p->count;
    double ppl = exp(mean);
    double var = p->nll2 / (double)p->count - mean * mean;
    double se = var > 0 && p->count > 1 ? ppl * sqrt(var / (double)(p->count - 1)) : 0.0;
    fprintf(p->progress, "\n");
    if (!o->json) {
        printf("%d %s of %d tokens (ctx %d%s), %ld tokens scored, %.2f s (%.1f scored tokens/s)\n", p->n_windows,
               o->stride ? "windows" : "chunks", p->n_toks, o->ctx, o->stride ? ", sliding" : "", p->count, secs,
               secs > 0 ? (double)p->count / secs : 0.0);
        printf("PPL = %.4f +/- %.5f\n", ppl, se);
        return;
    }
    printf("{\"ppl\":%.17g,\"se\":%.17g,\"nll_mean\":%.17g,\"n_tokens\":%d,\"n_tokens_scored\":%ld,"
           "\"n_chunks\":%d,\"ctx\":%d,\"stride\":%d,\"method\":\"%s\",\"add_bos\":%s,\"kv_type\":\"%s\","
           "\"seconds\":%.3f}\n",
           ppl, se, mean, p->n_toks, p->count, p->n_windows, o->ctx, o->stride, o->stride ? "sliding" : "chunks",
           p->add_bos ? "true" : "false", o->kv_type == GGML_TYPE_F32 ? "f32" : "f16", secs);
}

int cmd_perplexity(int argc, char **argv)
{
    struct ppl_opts o;
    int rc = ppl_parse(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : 2;
    struct ppl p = {.progress = o.json ? stderr : stdout};
    struct err e = {0};
    kernels_init();
    uint64_t t0 = now_ns();
    rc = ppl_open(&p, &o, &e);
    if (rc == 0)
        rc = o.stride ? ppl_slide(&p, &o, &e) : ppl_chunks(&p, &o, &e);
    if (rc == 0)
        ppl_report(&p, &o, (double)(now_ns() - t0) / 1e9);
    else
        fprintf(stderr, "maas perplexity: %s\n", e.msg);
    ppl_close(&p);
    return rc == 0 ? 0 : 1;
}
