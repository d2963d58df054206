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

/* Parsers for the option values shared by the commands; -1 with a message. */
int parse_int_arg(const char *opt, const char *s, long lo, long hi, int *out, struct err *e);
int parse_float_arg(const char *opt, const char *s, double lo, double hi, float *out, struct err *e);
/* --kv-type: "f32" or "f16" into *out; -1 with a message naming opt otherwise. */
int parse_kv_type_arg(const char *opt, const char *s, enum ggml_type *out, struct err *e);

/* Options shared by the commands, each with its value v: 1 when opt is one
 * of them (v parsed into its place), 0 when it is not, -1 with a message
 * when v is bad.
 *   gen_parse_sample_arg: --temp, --top-k, --top-p, --min-p,
 *     --repeat-penalty, and --seed (into *seed, setting *seed_set);
 *   gen_parse_opts_arg: --threads/-t and --kv-type into go. */
int gen_parse_sample_arg(const char *opt, const char *v, struct sample_params *sp, int *seed, int *seed_set,
                         struct err *e);
int gen_parse_opts_arg(const char *opt, const char *v, struct gen_opts *go, struct err *e);

/* Writes s[0..n) as a JSON string body (no quotes): escapes, and every
 * invalid UTF-8 byte as \ufffd. */
void json_write_str(FILE *out, const char *s, size_t n);

#endif
