/* maas embed — sentence embeddings of texts with an embedding model.
 *
 *   maas embed --model FILE [--pooling P] [--threads N] [--json] TEXT...
 * With pooling rank (a reranker) each TEXT gets one score; /v1/rerank of
 * `maas serve` builds the query-document pairs.
 *
 * Each TEXT is tokenized with the model's special tokens ([CLS] ... [SEP]
 * for BERT, BOS/EOS as the vocabulary says), all of them go through one
 * forward pass, and each gets one L2-normalised vector (one per token with
 * --pooling none). Plain output: one line per vector, floats separated by
 * spaces; --json: one object per text, {"ids": [...], "embedding": [...]}
 * (with pooling none, "embedding" holds one array per token). --pooling
 * overrides the model's own (none, mean, cls, last).
 */
#include "cli/cli.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <string.h>

static void embed_usage(FILE *out)
{
    fprintf(out, "usage: maas embed --model FILE [--pooling none|mean|cls|last|rank] [--threads N] [--json] TEXT...\n"
                 "  prints one L2-normalised embedding per TEXT (one per token with --pooling none;\n"
                 "  with rank, a reranker's score of the text)\n");
}

struct embed_args {
    const char *model;
    int pooling, n_threads;
    bool json;
    char **texts;
    int n_texts;
};

static int parse_embed_args(int argc, char **argv, struct embed_args *a)
{
    *a = (struct embed_args){.pooling = -1, .n_threads = cpu_count()};
    a->texts = argv;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        struct err e;
        int64_t v;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            embed_usage(stdout);
            return -1;
        } else if (!strcmp(s, "--model") && i + 1 < argc) {
            a->model = argv[++i];
        } else if (!strcmp(s, "--json")) {
            a->json = true;
        } else if (!strcmp(s, "--threads") && i + 1 < argc) {
            if (arg_i64("--threads", argv[++i], 1, 1024, &v, &e) < 0) {
                fprintf(stderr, "maas embed: %s\n", e.msg);
                return 2;
            }
            a->n_threads = (int)v;
        } else if (!strcmp(s, "--pooling") && i + 1 < argc) {
            const char *p = argv[++i];
            a->pooling = -2;
            for (int k = MODEL_POOL_NONE; k <= MODEL_POOL_RANK; k++)
                if (!strcmp(p, model_pooling_name(k)))
                    a->pooling = k;
            if (a->pooling == -2) {
                fprintf(stderr, "maas embed: unknown --pooling '%s' (none, mean, cls, last, rank)\n", p);
                return 2;
            }
        } else if (s[0] == '-' && s[1]) {
            fprintf(stderr, "maas embed: unknown option '%s' (see maas embed --help)\n", s);
            return 2;
        } else {
            a->texts[a->n_texts++] = argv[i];
        }
    }
    if (!a->model || a->n_texts == 0) {
        embed_usage(stderr);
        return 2;
    }
    return 0;
}

static void print_vec(const float *v, int64_t n, bool json)
{
    for (int64_t d = 0; d < n; d++)
        printf(json ? "%s%.9g" : "%s%.9g", d ? (json ? "," : " ") : "", v[d]);
}

/* One line per text (json) or per vector (plain). */
static void print_results(const struct embed_args *a, struct tok_ids *ids, const float *out, int64_t E, int pooling)
{
    int64_t row = 0;
    for (int i = 0; i < a->n_texts; i++) {
        int64_t rows = pooling == MODEL_POOL_NONE ? (int64_t)ids[i].n : 1;
        if (a->json) {
            printf("{\"ids\":[");
            for (size_t j = 0; j < ids[i].n; j++)
                printf("%s%d", j ? "," : "", ids[i].ids[j]);
            printf("],\"embedding\":%s", pooling == MODEL_POOL_NONE ? "[" : "");
        }
        for (int64_t r = 0; r < rows; r++, row++) {
            if (a->json)
                printf("%s[", r ? "," : "");
            print_vec(out + row * E, E, a->json);
            printf(a->json ? "]" : "\n");
        }
        if (a->json)
            printf("%s}\n", pooling == MODEL_POOL_NONE ? "]" : "");
    }
}

/* Tokenizes, embeds and prints; 0 or 1 after printing why. */
static int embed_texts(const struct embed_args *a, struct model *m, const struct tokenizer *t, struct pool *pool)
{
    struct err e = {0};
    int n = a->n_texts, rc = 1;
    struct tok_ids *ids = calloc((size_t)n, sizeof *ids);
    const int32_t **seqs = calloc((size_t)n, sizeof *seqs);
    int *lens = calloc((size_t)n, sizeof *lens);
    float *out = NULL;
    int pooling = a->pooling >= 0 ? a->pooling : model_hparams(m)->pooling;
    int64_t total = 0, E = pooling == MODEL_POOL_RANK ? 1 : model_hparams(m)->n_embd;
    if (!ids || !seqs || !lens)
        goto out;
    for (int i = 0; i < n; i++) {
        if (tok_encode(t, a->texts[i], strlen(a->texts[i]), true, false, &ids[i], &e) < 0)
            goto fail;
        seqs[i] = ids[i].ids;
        lens[i] = (int)ids[i].n;
        total += lens[i];
    }
    if (!(out = malloc((size_t)(pooling == MODEL_POOL_NONE ? total : n) * E * sizeof *out)))
        goto out;
    if (model_reserve(m, total > 0 ? (int)total : 1, pool, &e) < 0 || model_embed(m, seqs, lens, n, pooling, out, &e) < 0)
        goto fail;
    print_results(a, ids, out, E, pooling);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "maas embed: %s\n", e.msg);
out:
    if (rc && !e.msg[0])
        fprintf(stderr, "maas embed: out of memory\n");
    for (int i = 0; ids && i < n; i++)
        tok_ids_release(&ids[i]);
    free(ids);
    free(seqs);
    free(lens);
    free(out);
    return rc;
}

int cmd_embed(int argc, char **argv)
{
    struct embed_args a;
    int rc = parse_embed_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    struct err e = {0};
    struct model *m = model_load(a.model, &e);
    struct tokenizer *t = m ? tok_load(model_gguf(m), &e) : NULL;
    struct pool *pool = t ? pool_new(a.n_threads) : NULL;
    if (!m || !t) {
        fprintf(stderr, "maas embed: %s\n", e.msg);
        rc = 1;
    } else if (!pool) {
        fprintf(stderr, "maas embed: cannot start %d threads\n", a.n_threads);
        rc = 1;
    } else {
        rc = embed_texts(&a, m, t, pool);
    }
    pool_free(pool);
    tok_free(t);
    model_free(m);
    return rc;
}
