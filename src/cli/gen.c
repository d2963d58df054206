/* One generating sequence for the CLI commands (see gen.h). */
#include "cli/gen.h"
#include "engine/engine.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

#define BLOCK_SIZE 16

int gen_open(struct gen *g, const struct gen_opts *o, struct err *e)
{
    memset(g, 0, sizeof *g);
    kernels_init();
    g->m = model_load(o->model_path, e);
    if (!g->m)
        return -1;
    g->hp = model_hparams(g->m);
    const struct gguf_file *f = model_gguf(g->m);
    if (o->need_tokenizer || gguf_find_kv(f, "tokenizer.ggml.model")) {
        g->tok = tok_load(f, e);
        if (!g->tok) {
            err_prefix(e, "%s", o->model_path);
            goto fail;
        }
    }
    g->n_vocab_sample = tok_n_vocab_common(g->tok, g->hp->n_vocab);
    int n_threads = o->n_threads > 0 ? o->n_threads : cpu_count();
    g->pool = pool_new(n_threads);
    if (!g->pool) {
        err_set(e, ERR_INTERNAL, "cannot start %d threads", n_threads);
        goto fail;
    }
    g->kv_type = o->kv_type;
    g->max_batch = o->max_batch > 0 ? o->max_batch : 512;
    if (o->n_ctx >= 0 && gen_set_ctx(g, o->n_ctx, e) < 0)
        goto fail;
    return 0;
fail:
    gen_close(g);
    return -1;
}

int gen_set_ctx(struct gen *g, int n_ctx, struct err *e)
{
    g->n_ctx = n_ctx > 0 ? n_ctx : engine_default_n_ctx(g->hp);
    g->block_size = BLOCK_SIZE;
    g->n_blocks = (g->n_ctx + BLOCK_SIZE - 1) / BLOCK_SIZE;
    if (model_reserve(g->m, g->max_batch, g->pool, e) < 0)
        return -1;
    g->kv = kv_new_typed(g->m, g->n_blocks, BLOCK_SIZE, g->kv_type, e);
    if (!g->kv)
        return -1;
    g->smp = sampler_new(g->n_vocab_sample, e);
    if (!g->smp)
        return -1;
    g->blocks = malloc((size_t)g->n_blocks * sizeof *g->blocks);
    g->hist = malloc((size_t)g->n_ctx * sizeof *g->hist);
    g->logits = malloc((size_t)g->hp->n_vocab * sizeof *g->logits);
    g->bt = malloc((size_t)g->max_batch * sizeof *g->bt);
    if (!g->blocks || !g->hist || !g->logits || !g->bt)
        return err_set(e, ERR_NOMEM, "out of memory for a context of %d tokens", g->n_ctx);
    for (int i = 0; i < g->n_blocks; i++)
        g->blocks[i] = i;
    g->n_hist = 0;
    return 0;
}

void gen_close(struct gen *g)
{
    free(g->bt);
    free(g->logits);
    free(g->hist);
    free(g->blocks);
    sampler_free(g->smp);
    kv_free(g->kv);
    model_free(g->m);
    pool_free(g->pool);
    tok_free(g->tok);
    memset(g, 0, sizeof *g);
}

int gen_feed(struct gen *g, const int32_t *toks, int n, struct err *e)
{
    if (n <= 0)
        return 0;
    if (n > g->n_ctx - g->n_hist)
        return err_set(e, ERR_INVALID, "context full: %d tokens held, %d more do not fit in --ctx %d", g->n_hist, n, g->n_ctx);
    struct batch_seq s = {g->blocks, g->n_blocks};
    for (int done = 0; done < n;) {
        int c = n - done < g->max_batch ? n - done : g->max_batch;
        for (int i = 0; i < c; i++)
            g->bt[i] = (struct batch_token){toks[done + i], g->n_hist + i, 0, done + i == n - 1};
        struct batch b = {c, g->bt, 1, &s};
        if (model_forward(g->m, g->kv, &b, g->logits, e) < 0)
            return -1;
        memcpy(g->hist + g->n_hist, toks + done, (size_t)c * sizeof *toks);
        g->n_hist += c;
        done += c;
    }
    return 0;
}

void gen_truncate(struct gen *g, int n)
{
    if (n < g->n_hist)
        g->n_hist = n < 0 ? 0 : n;
}

/* Length of the valid UTF-8 character at s[0..n), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (len > n)
        return 0;
    unsigned cp = c & (0xff >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

void json_write_str(FILE *out, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c == '"' || c == '\\') {
            fprintf(out, "\\%c", c);
            i++;
        } else if (c == '\n') {
            fputs("\\n", out);
            i++;
        } else if (c == '\r') {
            fputs("\\r", out);
            i++;
        } else if (c == '\t') {
            fputs("\\t", out);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(out, "\\u%04x", c);
            i++;
        } else {
            size_t l = utf8_len(s + i, n - i);
            if (l == 0) {
                fputs("\\ufffd", out);
                i++;
            } else {
                fwrite(s + i, 1, l, out);
                i += l;
            }
        }
    }
}

static int parse_kv_type(const char *opt, const char *s, enum ggml_type *out, struct err *e)
{
    if (!strcmp(s, "f32"))
        *out = GGML_TYPE_F32;
    else if (!strcmp(s, "f16"))
        *out = GGML_TYPE_F16;
    else
        return err_set(e, ERR_INVALID, "%s: '%s' is not f32 or f16", opt, s);
    return 0;
}

int gen_parse_sample_arg(const char *opt, const char *v, struct sample_params *sp, int *seed, int *seed_set,
                         struct err *e)
{
    int rc;
    if (!strcmp(opt, "--temp"))
        rc = arg_float(opt, v, 0, 100, &sp->temperature, e);
    else if (!strcmp(opt, "--top-k"))
        rc = arg_int(opt, v, 0, 1 << 30, &sp->top_k, e);
    else if (!strcmp(opt, "--top-p"))
        rc = arg_float(opt, v, 1e-9, 1, &sp->top_p, e);
    else if (!strcmp(opt, "--min-p"))
        rc = arg_float(opt, v, 0, 1, &sp->min_p, e);
    else if (!strcmp(opt, "--repeat-penalty"))
        rc = arg_float(opt, v, 1e-3, 1e3, &sp->repeat_penalty, e);
    else if (!strcmp(opt, "--seed")) {
        rc = arg_int(opt, v, 0, 0x7fffffff, seed, e);
        *seed_set = 1;
    } else
        return 0;
    return rc < 0 ? -1 : 1;
}

int gen_parse_opts_arg(const char *opt, const char *v, struct gen_opts *go, struct err *e)
{
    int rc;
    if (!strcmp(opt, "--threads") || !strcmp(opt, "-t"))
        rc = arg_int(opt, v, 1, 1024, &go->n_threads, e);
    else if (!strcmp(opt, "--kv-type"))
        rc = parse_kv_type(opt, v, &go->kv_type, e);
    else
        return 0;
    return rc < 0 ? -1 : 1;
}

struct sample_params gen_sample_defaults(void)
{
    struct sample_params sp = sample_params_default();
    sp.temperature = 0.8f;
    sp.top_k = 40;
    sp.top_p = 0.95f;
    sp.min_p = 0.05f;
    return sp;
}

void gen_args_init(struct gen_args *ga, enum ggml_type kv_type)
{
    *ga = (struct gen_args){.sp = gen_sample_defaults(), .go = {.kv_type = kv_type, .need_tokenizer = true}};
}

int gen_parse_arg(const char *a, const char *v, struct gen_args *ga, struct err *e)
{
    if (!strcmp(a, "--model") || !strcmp(a, "-m")) {
        ga->model = v;
        return 1;
    }
    int rc = gen_parse_sample_arg(a, v, &ga->sp, &ga->seed, &ga->seed_set, e);
    return rc != 0 ? rc : gen_parse_opts_arg(a, v, &ga->go, e);
}

/* Sets the flag named a; false when a is none of flags. */
static bool set_flag(const struct gen_flag *flags, const char *a)
{
    for (; flags && flags->name; flags++)
        if (!strcmp(flags->name, a)) {
            *flags->set = 1;
            return true;
        }
    return false;
}

int gen_parse_argv(const char *cmd, int argc, char **argv, void (*usage)(FILE *out), const struct gen_flag *flags,
                   int (*opt)(void *ctx, const char *a, const char *v, struct err *e), void *ctx,
                   struct gen_args *ga)
{
    struct err e;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return -1;
        }
        if (set_flag(flags, a))
            continue;
        if (!v)
            return gen_usage_error(cmd, NULL, "%s needs a value (or is unknown)", a);
        int rc = gen_parse_arg(a, v, ga, &e);
        if (rc == 0)
            rc = opt(ctx, a, v, &e);
        if (rc == 0)
            return gen_usage_error(cmd, usage, "unknown option '%s'", a);
        if (rc < 0)
            return gen_usage_error(cmd, NULL, "%s", e.msg);
        i++;
    }
    return 0;
}

void gen_rng_seed(struct rng *r, const struct gen_args *ga)
{
    rng_seed(r, ga->seed_set ? (uint64_t)ga->seed : now_ns());
}

int gen_usage_error(const char *cmd, void (*usage)(FILE *out), const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "maas %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (usage)
        usage(stderr);
    return 2;
}
