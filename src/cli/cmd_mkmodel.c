/*
 * maas mkmodel — write a model with seeded random weights that llama.cpp
 * would load: the metadata keys its converter writes for the architecture,
 * the tokenizer copied from a vocabulary GGUF (or learned from a text), and
 * every tensor with llama.cpp's name and shape (ggml order, ne[0] = row).
 *
 * Weights. Each row of each tensor has its own generator, seeded from
 * (--seed, tensor name, row), so rows can be made on any thread and the file
 * is byte-for-byte the same for any --threads. Values are approximately
 * normal (Irwin–Hall: the sum of four 16-bit uniforms, rescaled), which is
 * several times cheaper than Box–Muller and plenty for random weights.
 * Scales keep activations realistic through many layers:
 *   q, k, v, gate, up, router:   std 1/sqrt(fan_in)
 *   attn_output, ffn_down:       std 1/sqrt(fan_in) / sqrt(2 n_layer)
 *   norms (and q/k norms):       1 + 0.02 N(0,1)
 *   biases:                      0.02 N(0,1)
 *   token_embd, output:          --embd-std (default MKMODEL_EMBD_STD = 0.15),
 *     so that the best next-token logits stand clearly apart (see NOTES.md).
 * With --type the weights are written directly in that type or mix, with the
 * same per-tensor choice as `maas quantize` (quantmix.c).
 */
#include "cli/cli.h"
#include "cli/tools.h"
#include "kernels/kernels.h"
#include "model/model.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MKMODEL_EMBD_STD 0.15
#define MKMODEL_NORM_NOISE 0.02
#define MKMODEL_BIAS_STD 0.02
#define MKMODEL_MAX_DIM (1 << 20)

struct opts {
    const struct model_arch *arch;
    const char *arch_name, *type_name; /* as given */
    const char *vocab, *train_vocab, *out, *name;
    const char *pooling_name; /* --pooling, or NULL */
    int pooling;              /* enum model_pooling; -1: write no pooling_type */
    int64_t n_vocab_train;
    int64_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx, n_expert, n_expert_used, n_ff_exp, n_ff_shexp,
        head_dim;
    double rope_theta, embd_std;
    uint64_t seed;
    int tie; /* -1: the architecture's default */
    int n_threads;
    struct qmix type;
};

enum init { INIT_NORMAL, INIT_NORM, INIT_BIAS };

struct tspec {
    char name[64];
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    enum init init;
    double std;
    enum ggml_type type;
    void *data; /* from maas_alloc_aligned */
    size_t nbytes;
};

static void usage(FILE *out)
{
    char archs[256];
    model_arch_names(archs, sizeof archs);
    fprintf(out,
            "usage: maas mkmodel --arch ARCH (--vocab VOCAB.gguf | --train-vocab TEXT [--vocab-size N]) -o OUT\n"
            "                    [options]\n"
            "\n"
            "Writes a GGUF model with seeded random weights (it knows nothing) for tests and demos.\n"
            "  --arch A            %s (llama with --n-expert is Mixtral)\n"
            "  --vocab FILE        copy the tokenizer.* metadata from this GGUF (e.g. a vocabulary-only file)\n"
            "  --train-vocab TEXT  learn a GPT-2-style byte-level BPE vocabulary from a text file instead\n"
            "  --vocab-size N      tokens of the learned vocabulary (default 4096)\n"
            "  -o, --output OUT    the file to write\n"
            "  --n-embd N (256)  --n-layer N (2)  --n-head N (4)  --n-head-kv N (n_head/2*)  --n-ff N (768)\n"
            "  --n-ctx N (4096; bert 512)  --head-dim N (n_embd/n_head; qwen3, qwen3moe, llama)\n"
            "      * or the largest divisor of n_head below that\n"
            "  --rope-theta X      (llama 10000, qwen 1000000)\n"
            "  --n-expert N (8 for qwen2moe/qwen3moe, 0 for llama) --n-expert-used N (2)\n"
            "  --n-ff-exp N        expert width (256; llama: n_ff)   --n-ff-shexp N (512, qwen2moe)\n"
            "  --tie | --no-tie    share token_embd as the output matrix (default: tied for qwen2 and qwen3)\n"
            "  --seed S (1)  --type TYPE (f32; any type or mix of maas quantize)  --name NAME\n"
            "  --embd-std X        std of token_embd and output (default %.2f)\n"
            "  --threads N         worker threads (default: all cores)\n"
            "  --pooling P         none|mean|cls|last|rank: <arch>.pooling_type, which makes an embedding\n"
            "                      model (bert: default mean; a decoder gets none unless given; rank: a bert\n"
            "                      reranker with the cls / cls.output classification head)\n",
            archs, MKMODEL_EMBD_STD);
}

/* The options that take a value: where it goes and its range. */
enum opt_kind { OPT_STR, OPT_I64, OPT_INT, OPT_F64, OPT_SEED };

struct opt_spec {
    const char *name;
    enum opt_kind kind;
    size_t off;               /* in struct opts */
    double lo, hi;
};

#define O(name, kind, field, lo, hi) {name, OPT_##kind, offsetof(struct opts, field), lo, hi}
static const struct opt_spec opt_specs[] = {
    O("--arch", STR, arch_name, 0, 0),
    O("--vocab", STR, vocab, 0, 0),
    O("--train-vocab", STR, train_vocab, 0, 0),
    O("--vocab-size", I64, n_vocab_train, 259, 1 << 20),
    O("-o", STR, out, 0, 0),
    O("--output", STR, out, 0, 0),
    O("--n-embd", I64, n_embd, 1, MKMODEL_MAX_DIM),
    O("--n-layer", I64, n_layer, 1, 4096),
    O("--n-head", I64, n_head, 1, 65536),
    O("--n-head-kv", I64, n_head_kv, 1, 65536),
    O("--n-ff", I64, n_ff, 1, MKMODEL_MAX_DIM),
    O("--n-ctx", I64, n_ctx, 1, 1 << 24),
    O("--rope-theta", F64, rope_theta, 1e-3, 1e12),
    O("--seed", SEED, seed, 0, 0),
    O("--type", STR, type_name, 0, 0),
    O("--n-expert", I64, n_expert, 0, 4096),
    O("--n-expert-used", I64, n_expert_used, 1, 4096),
    O("--n-ff-exp", I64, n_ff_exp, 1, MKMODEL_MAX_DIM),
    O("--n-ff-shexp", I64, n_ff_shexp, 1, MKMODEL_MAX_DIM),
    O("--head-dim", I64, head_dim, 1, 65536),
    O("--name", STR, name, 0, 0),
    O("--pooling", STR, pooling_name, 0, 0),
    O("--threads", INT, n_threads, 1, 1024),
    O("--embd-std", F64, embd_std, 0, 100),
};
#undef O

/* --seed: any unsigned 64-bit value, in C notation (so 0x... works). */
static int parse_seed(const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long s = strtoull(v, &end, 0);
    if (errno || end == v || *end || v[0] == '-') {
        fprintf(stderr, "maas mkmodel: --seed '%s': expected a non-negative integer\n", v);
        return -1;
    }
    *out = s;
    return 0;
}

/* Stores value v of option sp into o. 0, or -1 after printing why. */
static int set_option(const struct opt_spec *sp, const char *v, struct opts *o)
{
    void *field = (char *)o + sp->off;
    struct err e = {0};
    int rc = 0;
    switch (sp->kind) {
    case OPT_STR:
        *(const char **)field = v;
        break;
    case OPT_I64:
        rc = arg_i64(sp->name, v, (int64_t)sp->lo, (int64_t)sp->hi, field, &e);
        break;
    case OPT_INT:
        rc = arg_int(sp->name, v, (int)sp->lo, (int)sp->hi, field, &e);
        break;
    case OPT_F64:
        rc = arg_f64(sp->name, v, sp->lo, sp->hi, field, &e);
        break;
    case OPT_SEED:
        return parse_seed(v, field);
    }
    if (rc != 0)
        fprintf(stderr, "maas mkmodel: %s\n", e.msg);
    return rc;
}

/* Reads argv into o over its defaults. 0, -1 after --help, or the exit
 * code (2) after printing why. */
static int parse_options(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    o->type_name = "f32";
    o->n_vocab_train = 4096;
    o->n_embd = 256, o->n_layer = 2, o->n_head = 4, o->n_head_kv = -1, o->n_ff = 768, o->n_ctx = -1;
    o->n_expert = -1, o->n_expert_used = 2, o->n_ff_exp = -1, o->n_ff_shexp = 512, o->head_dim = -1;
    o->rope_theta = -1, o->embd_std = MKMODEL_EMBD_STD, o->seed = 1, o->tie = -1, o->n_threads = cpu_count();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return -1;
        }
        if (!strcmp(a, "--tie") || !strcmp(a, "--no-tie")) {
            o->tie = !strcmp(a, "--tie");
            continue;
        }
        if (a[0] != '-') {
            fprintf(stderr, "maas mkmodel: unexpected argument '%s' (see maas mkmodel --help)\n", a);
            return 2;
        }
        const struct opt_spec *sp = NULL;
        for (size_t k = 0; k < sizeof opt_specs / sizeof *opt_specs && !sp; k++)
            if (!strcmp(a, opt_specs[k].name))
                sp = &opt_specs[k];
        if (!sp) {
            fprintf(stderr, "maas mkmodel: unknown option '%s' (see maas mkmodel --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "maas mkmodel: %s needs a value\n", a);
            return 2;
        }
        if (set_option(sp, argv[++i], o) != 0)
            return 2;
    }
    return 0;
}

/* --pooling, the encoder's context and heads. 0, or 2 after printing why. */
static int apply_embed(struct opts *o)
{
    bool bert = o->arch->flags & MODEL_ARCH_BERT;
    if (o->n_ctx < 0)
        o->n_ctx = bert ? 512 : 4096;
    o->pooling = bert ? MODEL_POOL_MEAN : -1;
    if (o->pooling_name) {
        o->pooling = -1;
        for (int p = MODEL_POOL_NONE; p <= MODEL_POOL_RANK; p++)
            if (!strcmp(o->pooling_name, model_pooling_name(p)))
                o->pooling = p;
        if (o->pooling < 0) {
            fprintf(stderr, "maas mkmodel: unknown --pooling '%s' (none, mean, cls, last, rank)\n", o->pooling_name);
            return 2;
        }
    }
    if (o->pooling == MODEL_POOL_RANK && !bert) {
        fprintf(stderr, "maas mkmodel: --pooling rank needs --arch bert (the classification head is an encoder's)\n");
        return 2;
    }
    if (bert && o->n_head_kv != o->n_head) {
        fprintf(stderr, "maas mkmodel: bert has no grouped-query attention: --n-head-kv must be --n-head\n");
        return 2;
    }
    return 0;
}

/* The architecture's defaults and the options' consistency. 0, or 2 after
 * printing why. */
static int apply_arch(struct opts *o)
{
    const char *arch = o->arch_name;
    unsigned flags = o->arch->flags;
    bool moe_arch = flags & MODEL_ARCH_MOE;
    if (o->n_expert < 0)
        o->n_expert = moe_arch ? 8 : 0;
    if (moe_arch && o->n_expert == 0) {
        fprintf(stderr, "maas mkmodel: --arch %s needs --n-expert > 0\n", arch);
        return 2;
    }
    if ((flags & MODEL_ARCH_DENSE) && o->n_expert > 0) {
        fprintf(stderr, "maas mkmodel: --arch %s is dense; use %smoe for experts\n", arch, arch);
        return 2;
    }
    if (o->n_expert > 0 && o->n_expert_used > o->n_expert) {
        fprintf(stderr, "maas mkmodel: --n-expert-used %lld is more than --n-expert %lld\n",
                (long long)o->n_expert_used, (long long)o->n_expert);
        return 2;
    }
    if (o->n_ff_exp < 0)
        o->n_ff_exp = moe_arch ? 256 : o->n_ff;
    if (o->n_head_kv < 0 && (flags & MODEL_ARCH_BERT))
        o->n_head_kv = o->n_head;
    if (o->n_head_kv < 0) { /* grouped-query attention: the largest divisor of n_head up to n_head/2 */
        o->n_head_kv = o->n_head >= 2 ? o->n_head / 2 : 1;
        while (o->n_head % o->n_head_kv != 0)
            o->n_head_kv--;
    }
    if (o->n_head % o->n_head_kv != 0) {
        fprintf(stderr, "maas mkmodel: --n-head %lld is not a multiple of --n-head-kv %lld\n", (long long)o->n_head,
                (long long)o->n_head_kv);
        return 2;
    }
    bool free_head_dim = flags & MODEL_ARCH_HEAD_DIM_FREE;
    if (o->head_dim < 0) {
        if (o->n_embd % o->n_head != 0) {
            fprintf(stderr, "maas mkmodel: --n-embd %lld is not a multiple of --n-head %lld%s\n", (long long)o->n_embd,
                    (long long)o->n_head, free_head_dim ? " (or give --head-dim)" : "");
            return 2;
        }
        o->head_dim = o->n_embd / o->n_head;
    } else if (!free_head_dim && o->head_dim * o->n_head != o->n_embd) {
        fprintf(stderr, "maas mkmodel: --arch %s needs --head-dim = n_embd / n_head (%lld)\n", arch,
                (long long)(o->n_embd / o->n_head));
        return 2;
    }
    if (o->head_dim % 2 != 0) {
        fprintf(stderr, "maas mkmodel: the head size %lld must be even (RoPE rotates pairs)\n", (long long)o->head_dim);
        return 2;
    }
    if (o->head_dim * o->n_head > MKMODEL_MAX_DIM) {
        fprintf(stderr, "maas mkmodel: n_head * head_dim is too large\n");
        return 2;
    }
    if (o->tie < 0)
        o->tie = (flags & MODEL_ARCH_TIED) != 0;
    if (o->tie && (flags & MODEL_ARCH_UNTIED)) {
        fprintf(stderr, "maas mkmodel: %s always has a separate output.weight (llama.cpp requires it); drop --tie\n", arch);
        return 2;
    }
    if (o->rope_theta < 0)
        o->rope_theta = o->arch->rope_base;
    return apply_embed(o);
}

/* Parses argv into o. 0, -1 after --help, or the exit code (2) after
 * printing why. */
static int parse_args(int argc, char **argv, struct opts *o)
{
    int rc = parse_options(argc, argv, o);
    if (rc != 0)
        return rc;
    char archs[256];
    model_arch_names(archs, sizeof archs);
    if (!o->arch_name) {
        fprintf(stderr, "maas mkmodel: --arch is required (%s)\n", archs);
        return 2;
    }
    struct err e;
    if (!(o->arch = model_arch_find(o->arch_name, strlen(o->arch_name), &e))) {
        fprintf(stderr, "maas mkmodel: unknown --arch '%s' (one of: %s)\n", o->arch_name, archs);
        return 2;
    }
    if (!o->vocab == !o->train_vocab) {
        fprintf(stderr, "maas mkmodel: give exactly one of --vocab VOCAB.gguf or --train-vocab TEXT\n");
        return 2;
    }
    if (!o->out) {
        fprintf(stderr, "maas mkmodel: -o OUT is required\n");
        return 2;
    }
    if (qmix_parse(o->type_name, &o->type) != 0) {
        fprintf(stderr, "maas mkmodel: unknown --type '%s' (one of: %s)\n", o->type_name, qmix_names());
        return 2;
    }
    return apply_arch(o);
}

/* ---- the tensor list: the architecture table's, in its order ---- */
struct tlist {
    struct tspec *t; /* from malloc */
    size_t n, cap;
};

/* The model the options describe, as the table's shapes read it. */
static void hparams_of(const struct opts *o, int64_t n_vocab, struct model_hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    hp->arch = o->arch;
    hp->arch_name = o->arch->name;
    hp->n_vocab = (int)n_vocab;
    hp->n_embd = (int)o->n_embd;
    hp->n_layer = (int)o->n_layer;
    hp->n_head = (int)o->n_head;
    hp->n_head_kv = (int)o->n_head_kv;
    hp->head_dim = (int)o->head_dim;
    hp->n_ff = (int)o->n_ff;
    hp->n_ctx_train = (int)o->n_ctx;
    hp->n_expert = (int)o->n_expert;
    hp->n_expert_used = (int)o->n_expert_used;
    hp->n_ff_exp = (int)o->n_ff_exp;
    hp->n_ff_shexp = o->arch->flags & MODEL_ARCH_SHARED_EXPERT ? (int)o->n_ff_shexp : 0;
    hp->tied_output = o->tie;
    hp->n_token_types = 2;
    hp->pooling = o->pooling;
    hp->n_cls_out = 1;
}

struct build_ctx {
    struct tlist *l;
    const struct model_hparams *hp;
    double embd_std;
};

static int add(void *ctx, const struct model_tensor *mt, int il)
{
    struct build_ctx *b = ctx;
    struct tlist *l = b->l;
    const struct model_hparams *hp = b->hp;
    double embd_std = b->embd_std;
    if (mem_grow(&l->t, &l->cap, l->n + 1, sizeof *l->t) != 0)
        return -1;
    struct tspec *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    model_tensor_name(mt, il, t->name, sizeof t->name);
    t->n_dims = mt->n_dims;
    for (int i = 0; i < 3; i++)
        t->ne[i] = model_dim(hp, mt->ne[i]);
    t->ne[3] = 1;
    double in = 1.0 / sqrt((double)t->ne[0]), depth = 1.0 / sqrt(2.0 * (double)hp->n_layer);
    switch (mt->init) {
    case MODEL_INIT_EMBD:
        t->init = INIT_NORMAL, t->std = embd_std;
        break;
    case MODEL_INIT_WEIGHT:
        t->init = INIT_NORMAL, t->std = in;
        break;
    case MODEL_INIT_WEIGHT_OUT:
        t->init = INIT_NORMAL, t->std = in * depth;
        break;
    case MODEL_INIT_NORM:
        t->init = INIT_NORM;
        break;
    case MODEL_INIT_BIAS:
        t->init = INIT_BIAS, t->std = MKMODEL_BIAS_STD;
        break;
    case MODEL_INIT_NONE:
        MAAS_ASSERT(!"a tensor that is never written");
        break;
    }
    return 0;
}

/* Every tensor the architecture requires for these hyper-parameters, in
 * file order. */
static int build_tensors(const struct opts *o, int64_t n_vocab, struct tlist *l)
{
    struct model_hparams hp;
    hparams_of(o, n_vocab, &hp);
    struct build_ctx b = {l, &hp, o->embd_std};
    return model_tensors_each(o->arch, &hp, add, &b) ? -1 : 0;
}

/* ---- generation ---- */
/* A tensor's seed comes from its name: the legacy basis keeps every model's
 * bytes for a given --seed what they have always been (see core.h). */
static uint64_t hash_name(const char *s)
{
    return hash_fnv1a64(HASH_FNV64_BASIS_LEGACY, s, strlen(s));
}

/* Approximately N(0, 1): four 16-bit uniforms from one draw (Irwin–Hall). */
static inline float fast_normal(struct rng *r)
{
    uint64_t u = rng_u64(r);
    uint32_t s = (uint32_t)(u & 0xffff) + (uint32_t)((u >> 16) & 0xffff) + (uint32_t)((u >> 32) & 0xffff) +
                 (uint32_t)(u >> 48);
    /* sum/65536 has mean 2 (less half a step) and variance 1/3. */
    return ((float)s * (1.0f / 65536.0f) - (2.0f - 2.0f / 65536.0f)) * 1.7320508f;
}

struct gen_job {
    const struct tspec *t;
    uint64_t seed;
    float *scratch; /* borrowed: ne[0] floats per thread */
};

static void gen_rows(void *ctx, int ith, int nth)
{
    const struct gen_job *j = ctx;
    const struct tspec *t = j->t;
    int64_t n = t->ne[0], nrows = t->ne[1] * t->ne[2] * t->ne[3];
    int64_t lo, hi;
    split_range(nrows, ith, nth, &lo, &hi);
    size_t rs = ggml_row_size(t->type, n);
    uint64_t th = hash_name(t->name);
    float *row = j->scratch + (size_t)ith * (size_t)n;
    for (int64_t r = lo; r < hi; r++) {
        struct rng g;
        rng_seed(&g, j->seed ^ th ^ ((uint64_t)r * 0xd1b54a32d192ed03ull));
        float *dst = t->type == GGML_TYPE_F32 ? (float *)((char *)t->data + (size_t)r * rs) : row;
        switch (t->init) {
        case INIT_NORMAL:
            for (int64_t i = 0; i < n; i++)
                dst[i] = (float)t->std * fast_normal(&g);
            break;
        case INIT_NORM:
            for (int64_t i = 0; i < n; i++)
                dst[i] = 1.0f + (float)MKMODEL_NORM_NOISE * fast_normal(&g);
            break;
        case INIT_BIAS:
            for (int64_t i = 0; i < n; i++)
                dst[i] = (float)t->std * fast_normal(&g);
            break;
        }
        if (t->type != GGML_TYPE_F32)
            qrow_from_f32(t->type, row, (char *)t->data + (size_t)r * rs, n);
    }
}

/* ---- metadata ---- */
static int set_arch_u32(struct gguf_writer *w, const char *arch, const char *key, int64_t v)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return gguf_writer_set_u32(w, k, (uint32_t)v);
}

static int set_arch_f32(struct gguf_writer *w, const char *arch, const char *key, double v)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return gguf_writer_set_f32(w, k, (float)v);
}

static int write_hparams(struct gguf_writer *w, const struct opts *o, int64_t n_vocab)
{
    const char *a = o->arch->name;
    unsigned flags = o->arch->flags;
    char name[256];
    if (o->name)
        snprintf(name, sizeof name, "%s", o->name);
    else
        snprintf(name, sizeof name, "maas-random-%s-%lldx%lld%s", a, (long long)o->n_embd, (long long)o->n_layer,
                 o->n_expert > 0 ? "-moe" : "");
    int rc = 0;
    rc |= gguf_writer_set_str(w, "general.architecture", a);
    rc |= gguf_writer_set_str(w, "general.type", "model");
    rc |= gguf_writer_set_str(w, "general.name", name);
    if (flags & MODEL_ARCH_LLAMA_KEYS) /* the llama converter writes it; the qwen ones do not */
        rc |= set_arch_u32(w, a, "vocab_size", n_vocab);
    rc |= set_arch_u32(w, a, "context_length", o->n_ctx);
    rc |= set_arch_u32(w, a, "embedding_length", o->n_embd);
    rc |= set_arch_u32(w, a, "block_count", o->n_layer);
    /* For Mixtral-style llama the converter writes the expert width here. */
    rc |= set_arch_u32(w, a, "feed_forward_length",
                       !(flags & MODEL_ARCH_MOE) && o->n_expert > 0 ? o->n_ff_exp : o->n_ff);
    rc |= set_arch_u32(w, a, "attention.head_count", o->n_head);
    rc |= set_arch_u32(w, a, "attention.head_count_kv", o->n_head_kv);
    if (flags & MODEL_ARCH_BERT) {
        rc |= set_arch_f32(w, a, "attention.layer_norm_epsilon", o->arch->rms_eps);
        char k[128];
        snprintf(k, sizeof k, "%s.attention.causal", a);
        rc |= gguf_writer_set_bool(w, k, false);
    } else {
        rc |= set_arch_f32(w, a, "rope.freq_base", o->rope_theta);
        rc |= set_arch_f32(w, a, "attention.layer_norm_rms_epsilon", o->arch->rms_eps);
    }
    if (o->pooling >= 0)
        rc |= set_arch_u32(w, a, "pooling_type", o->pooling);
    if (flags & MODEL_ARCH_LLAMA_KEYS)
        rc |= set_arch_u32(w, a, "rope.dimension_count", o->head_dim);
    if ((flags & MODEL_ARCH_KEY_LENGTH) || o->head_dim * o->n_head != o->n_embd) {
        rc |= set_arch_u32(w, a, "attention.key_length", o->head_dim);
        rc |= set_arch_u32(w, a, "attention.value_length", o->head_dim);
    }
    if (o->n_expert > 0) {
        rc |= set_arch_u32(w, a, "expert_count", o->n_expert);
        rc |= set_arch_u32(w, a, "expert_used_count", o->n_expert_used);
        if (flags & MODEL_ARCH_MOE)
            rc |= set_arch_u32(w, a, "expert_feed_forward_length", o->n_ff_exp);
        if (flags & MODEL_ARCH_SHARED_EXPERT)
            rc |= set_arch_u32(w, a, "expert_shared_feed_forward_length", o->n_ff_shexp);
        /* Qwen3-MoE renormalises its top-k weights (norm_topk_prob); Mixtral
         * does too but llama.cpp keys that on the architecture; Qwen2-MoE does not. */
        if ((flags & MODEL_ARCH_MOE) && (flags & MODEL_ARCH_EXPERT_NORM)) {
            char k[128];
            snprintf(k, sizeof k, "%s.expert_weights_norm", a);
            rc |= gguf_writer_set_bool(w, k, true);
        }
    }
    rc |= gguf_writer_set_u32(w, "general.file_type", (uint32_t)o->type.ftype);
    rc |= gguf_writer_set_u32(w, "general.quantization_version", 2);
    return rc ? -1 : 0;
}

static int write_trained_vocab(struct gguf_writer *w, const struct vocab *v)
{
    int rc = 0;
    rc |= gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    rc |= gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt-2");
    rc |= gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", v->tokens, v->n_tokens);
    rc |= gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, v->token_type, v->n_tokens);
    rc |= gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", v->merges, v->n_merges);
    rc |= gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", v->bos_id);
    rc |= gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", v->eos_id);
    rc |= gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", v->pad_id);
    rc |= gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false);
    rc |= gguf_writer_set_str(w, "tokenizer.chat_template", vocab_chatml_template);
    return rc ? -1 : 0;
}

/* One run: what it holds, freed by mk_release. */
struct mk {
    struct opts o;
    struct gguf_file *vf;     /* the --vocab file */
    struct vocab v;           /* the --train-vocab vocabulary */
    char *text;
    int64_t n_vocab;
    struct gguf_writer *w;
    struct tlist l;
    int64_t max_row;
    uint64_t n_params, total;
    struct pool *pool;
    float *scratch;
};

/* The vocabulary decides n_vocab, so it comes first: copied from --vocab
 * or learned from --train-vocab. */
static int read_vocab(struct mk *k, struct err *e)
{
    const struct opts *o = &k->o;
    if (o->vocab) {
        if (!(k->vf = gguf_open(o->vocab, e)))
            return -1;
        const struct gguf_kv *toks;
        if (gguf_get_arr(k->vf, "tokenizer.ggml.tokens", GGUF_VT_STRING, &toks, e) < 0) {
            if (e->code == ERR_NOT_FOUND)
                err_set(e, ERR_INVALID, "%s: no tokenizer.ggml.tokens: not a vocabulary file", o->vocab);
            return -1;
        }
        if (toks->arr_n == 0 || toks->arr_n > (1u << 24))
            return err_set(e, ERR_INVALID, "%s: tokenizer.ggml.tokens has %llu entries", o->vocab,
                           (unsigned long long)toks->arr_n);
        k->n_vocab = (int64_t)toks->arr_n;
        return 0;
    }
    size_t len = 0;
    if (tool_read_text(o->train_vocab, &k->text, &len, e) != 0)
        return -1;
    uint64_t tv = now_ns();
    if (vocab_train(k->text, len, (uint32_t)o->n_vocab_train, &k->v, e) != 0) {
        err_prefix(e, "%s", o->train_vocab);
        return -1;
    }
    k->n_vocab = (int64_t)k->v.n_tokens;
    printf("vocabulary: %lld tokens (%llu merges) learned from %s in %.2f s%s\n", (long long)k->n_vocab,
           (unsigned long long)k->v.n_merges, o->train_vocab, (double)(now_ns() - tv) * 1e-9,
           k->n_vocab < o->n_vocab_train ? " (the text has no more pairs to merge)" : "");
    return 0;
}

/* The hyper-parameters, then the tokenizer keys. */
static int write_metadata(struct mk *k, struct err *e)
{
    if (write_hparams(k->w, &k->o, k->n_vocab) != 0)
        return err_set(e, ERR_NOMEM, "out of memory");
    if (!k->vf)
        return write_trained_vocab(k->w, &k->v) != 0 ? err_set(e, ERR_NOMEM, "out of memory") : 0;
    for (size_t i = 0; i < gguf_n_kv(k->vf); i++) {
        const struct gguf_kv *kv = gguf_kv_at(k->vf, i);
        if (!strncmp(kv->key, "tokenizer.", 10) && gguf_writer_copy_kv(k->w, kv) != 0)
            return err_set(e, ERR_NOMEM, "out of memory");
    }
    return 0;
}

/* Each tensor's type (quantize's per-tensor choice) and size. */
static int plan_tensors(struct mk *k, struct err *e)
{
    const struct opts *o = &k->o;
    if (build_tensors(o, k->n_vocab, &k->l) != 0)
        return err_set(e, ERR_NOMEM, "out of memory");
    struct qmix_model qm = {(int)o->n_layer, (int)o->n_head, (int)o->n_head_kv, (int)o->n_expert, (int)o->n_layer,
                            !o->tie};
    for (size_t i = 0; i < k->l.n; i++) {
        struct tspec *t = &k->l.t[i];
        t->type = qmix_tensor_type(&o->type, &qm, t->name, t->n_dims, t->ne, NULL);
        if (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16 && t->type != GGML_TYPE_BF16 &&
            !kern_type_quantizable(t->type))
            return err_set(e, ERR_INVALID, "tensor '%s' would be %s, which this build of maas cannot produce", t->name,
                           ggml_type_name(t->type));
        int64_t nrows = t->ne[1] * t->ne[2] * t->ne[3];
        t->nbytes = ggml_row_size(t->type, t->ne[0]) * (size_t)nrows;
        if (t->ne[0] > k->max_row)
            k->max_row = t->ne[0];
        k->n_params += (uint64_t)(t->ne[0] * nrows);
        k->total += t->nbytes;
    }
    return 0;
}

/* Fills every tensor on the pool and hands it to the writer. */
static int generate(struct mk *k, struct err *e)
{
    const struct opts *o = &k->o;
    if (!(k->pool = pool_new(o->n_threads)))
        return err_set(e, ERR_INTERNAL, "cannot start %d threads", o->n_threads);
    if (!(k->scratch = malloc((size_t)pool_n_threads(k->pool) * (size_t)k->max_row * sizeof(float))))
        return err_set(e, ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < k->l.n; i++) {
        struct tspec *t = &k->l.t[i];
        if (!(t->data = maas_alloc_aligned(t->nbytes)))
            return err_set(e, ERR_NOMEM, "out of memory for tensor '%s' (%zu bytes; %.1f MiB in all)", t->name,
                           t->nbytes, (double)k->total / 1048576.0);
        struct gen_job j = {t, o->seed, k->scratch};
        if (t->ne[1] * t->ne[2] < pool_n_threads(k->pool))
            gen_rows(&j, 0, 1);
        else
            pool_run(k->pool, gen_rows, &j);
        if (gguf_writer_add_tensor(k->w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes, e) != 0)
            return -1;
    }
    return 0;
}

static void report(const struct mk *k, uint64_t t0)
{
    const struct opts *o = &k->o;
    printf("%s: %s, %lld layers, n_embd %lld, %lld heads (%lld kv, head size %lld), n_ff %lld", o->out,
           o->arch->name, (long long)o->n_layer, (long long)o->n_embd, (long long)o->n_head,
           (long long)o->n_head_kv, (long long)o->head_dim, (long long)o->n_ff);
    if (o->n_expert > 0)
        printf(", %lld experts (%lld used, width %lld)", (long long)o->n_expert, (long long)o->n_expert_used,
               (long long)o->n_ff_exp);
    printf(", vocab %lld, %s output\n", (long long)k->n_vocab, o->tie ? "tied" : "separate");
    printf("%zu tensors, %.1fM parameters, %.2f MiB (%s), seed %llu, random weights, in %.2f s with %d threads\n",
           k->l.n, (double)k->n_params * 1e-6, (double)k->total / 1048576.0, o->type.name,
           (unsigned long long)o->seed, (double)(now_ns() - t0) * 1e-9, pool_n_threads(k->pool));
}

static void mk_release(struct mk *k)
{
    for (size_t i = 0; i < k->l.n; i++)
        maas_free_aligned(k->l.t[i].data);
    free(k->l.t);
    free(k->scratch);
    pool_free(k->pool);
    vocab_release(&k->v);
    free(k->text);
    gguf_writer_free(k->w);
    gguf_close(k->vf);
}

int cmd_mkmodel(int argc, char **argv)
{
    struct mk k = {0};
    int prc = parse_args(argc, argv, &k.o);
    if (prc < 0)
        return 0; /* --help */
    if (prc > 0)
        return prc;

    kernels_init();
    uint64_t t0 = now_ns();
    struct err e = {0};
    int ret = 1;
    if (tool_check_out_path(k.o.out, &e) != 0)
        goto out;
    if (!(k.w = gguf_writer_new())) {
        err_set(&e, ERR_NOMEM, "out of memory");
        goto out;
    }
    if (read_vocab(&k, &e) != 0 || write_metadata(&k, &e) != 0 || plan_tensors(&k, &e) != 0 || generate(&k, &e) != 0 ||
        gguf_writer_write(k.w, k.o.out, &e) != 0)
        goto out;
    report(&k, t0);
    ret = 0;
out:
    if (ret)
        fprintf(stderr, "maas mkmodel: %s\n", e.msg);
    mk_release(&k);
    return ret;
}
