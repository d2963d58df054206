/*
 * gen.h — private to cli/: one generating sequence over a model, shared by
 * `maas run`, `maas chat` and `maas bench`. Owns the model, tokenizer,
 * thread pool, KV cache (one sequence whose block table is 0..n-1), sampler
 * and every buffer, all allocated by gen_open; feeding tokens and sampling
 * allocate nothing.
 */
#ifndef MAAS_CLI_GEN_H
#define MAAS_CLI_GEN_H

#include "core/core.h"
#include "model/model.h"
#include "sample/sample.h"
#include "tokenizer/tokenizer.h"

struct gen_opts {
    const char *model_path;
    int n_threads;            /* 0 = all CPUs */
    int n_ctx;                /* positions the KV cache holds; 0 = min(n_ctx_train, 4096);
                                 -1 = not yet (call gen_set_ctx) */
    int max_batch;            /* tokens per forward pass (prefill chunk); 0 = 512 */
    enum ggml_type kv_type;   /* GGML_TYPE_F32 or GGML_TYPE_F16 */
    bool need_tokenizer;
};

struct gen {
    struct model *m;          /* owned */
    const struct model_hparams *hp;
    struct tokenizer *tok;    /* owned; NULL when not needed and absent */
    struct pool *pool;        /* owned */
    struct kv_cache *kv;      /* owned */
    struct sampler *smp;      /* owned */
    int n_vocab_sample;       /* ids the sampler may choose: min(model, tokenizer) */
    enum ggml_type kv_type;
    int n_ctx, max_batch, block_size;
    int32_t *blocks;          /* block table 0..n_blocks-1, from malloc */
    int n_blocks;
    int32_t *hist;            /* n_ctx tokens in the KV cache, from malloc */
    int n_hist;
    float *logits;            /* n_vocab: logits after the last token fed, from malloc */
    struct batch_token *bt;   /* max_batch, from malloc */
};

/* Loads the model, tokenizer and threads, and unless o->n_ctx is -1 the
 * context (gen_set_ctx). -1 with a reason (gen is released). */
int gen_open(struct gen *g, const struct gen_opts *o, struct err *e);
/* Allocates the KV cache, scratch and buffers for n_ctx positions (0 = the
 * default); once per gen. -1 with a reason (release with gen_close). */
int gen_set_ctx(struct gen *g, int n_ctx, struct err *e);
void gen_close(struct gen *g);

/* Appends n tokens to the sequence (prefill in chunks of max_batch) and
 * leaves the logits after the last one in g->logits. -1 when the context is
 * full or the forward pass fails. */
int gen_feed(struct gen *g, const int32_t *toks, int n, struct err *e);

/* Forgets tokens past position n (the KV of earlier ones stays valid). */
void gen_truncate(struct gen *g, int n);

/* The sampling `maas run` and `maas chat` start from (llama.cpp's
 * defaults): temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, the rest as
 * sample_params_default. */
struct sample_params gen_sample_defaults(void);

/* The options `maas run` and `maas chat` share, as parsed by gen_parse_arg. */
struct gen_args {
    const char *model;          /* --model/-m (borrowed from argv); NULL until given */
    struct sample_params sp;    /* gen_sample_defaults, then the sampling options */
    int seed, seed_set;         /* --seed */
    struct gen_opts go;         /* --threads, --kv-type; need_tokenizer set */
};

/* Defaults for a command whose KV cache holds kv_type unless --kv-type says. */
void gen_args_init(struct gen_args *ga, enum ggml_type kv_type);
/* --model/-m and the options of gen_parse_sample_arg and gen_parse_opts_arg,
 * with value v: 1 when a is one of them, 0 when not, -1 with a message. */
int gen_parse_arg(const char *a, const char *v, struct gen_args *ga, struct err *e);

/* An option without a value: *set becomes 1 when it is given. */
struct gen_flag {
    const char *name;
    int *set;
};

/* Parses a generating command's whole command line: --help/-h (usage on
 * stdout), the flags (NULL-terminated list), the options of gen_parse_arg
 * into ga, and the command's own options through opt(ctx, a, v, e) (1 when
 * a is one of them, 0 when not, -1 with a message). 0 to go on, -1 after
 * --help (exit 0), or the exit status of a usage error (reported as
 * gen_usage_error does: a missing value, an unknown option, a bad value). */
int gen_parse_argv(const char *cmd, int argc, char **argv, void (*usage)(FILE *out), const struct gen_flag *flags,
                   int (*opt)(void *ctx, const char *a, const char *v, struct err *e), void *ctx,
                   struct gen_args *ga);
/* Seeds r from --seed, else from the clock. */
void gen_rng_seed(struct rng *r, const struct gen_args *ga);

/* A bad command line: prints "maas CMD: <message>" and then, when usage is
 * not NULL, the usage on stderr. Returns 2, the exit status of a usage error. */
int gen_usage_error(const char *cmd, void (*usage)(FILE *out), const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Options shared by the commands, each with its value v: 1 when opt is one
 * of them (v parsed into its place), 0 when it is not, -1 with a message
 * when v is bad.
 *   gen_parse_sample_arg: --temp, --top-k, --top-p, --min-p,
 *     --repeat-penalty, and --seed (into *seed, setting *seed_set);
 *   gen_parse_opts_arg: --threads/-t and --kv-type ("f32" or "f16") into go. */
int gen_parse_sample_arg(const char *opt, const char *v, struct sample_params *sp, int *seed, int *seed_set,
                         struct err *e);
int gen_parse_opts_arg(const char *opt, const char *v, struct gen_opts *go, struct err *e);

/* Writes s[0..n) as a JSON string body (no quotes): escapes, and every
 * invalid UTF-8 byte as \ufffd. */
void json_write_str(FILE *out, const char *s, size_t n);

#endif
