/*
 * model — transformer architectures over memory-mapped GGUF weights, one
 * batched forward pass, and the paged KV cache it reads and writes.
 *
 * Architectures: `llama` (Llama 2/3, Mistral, Yi, DeepSeek-LLM and other
 * llama-shaped models; RoPE on adjacent pairs; with experts, Mixtral),
 * `qwen2` (biases on q, k, v; NeoX RoPE), `qwen3` (RMS norm on each head of
 * q and k before RoPE; NeoX RoPE; head size from attention.key_length), and
 * the mixture-of-experts `qwen2moe` (routed experts plus a shared expert
 * behind a sigmoid gate) and `qwen3moe`. In a MoE layer the batch's tokens
 * are grouped by the experts they chose, and each chosen expert's weights
 * are multiplied once against all of its tokens; unchosen experts are not
 * read. Hyper-parameters come from the
 * GGUF metadata; weights stay in the mapping (any type kern_type_supported
 * accepts, mixed per tensor).
 *
 * Use:
 *     struct model *m = model_load("m.gguf", &e);
 *     model_reserve(m, max_batch, pool, &e);       // scratch for up to max_batch tokens
 *     struct kv_cache *kv = kv_new(m, n_blocks, 16, &e);
 *     ... fill a struct batch, model_forward(m, kv, &b, logits, &e) ...
 *     kv_free(kv); model_free(m);
 *
 * KV cache: fixed-size blocks of block_size positions, allocated once. A
 * sequence's KV is addressed through its block table: position p lives in
 * block table[p / block_size], slot p % block_size. Blocks may be shared by
 * several sequences (prefix reuse): the forward pass only reads a block
 * table, and writes the K/V of each batch token at its own position. The
 * reference counts below are bookkeeping for the engine; the model never
 * looks at them.
 *
 * Threads: a model and its caches belong to one thread (the engine thread),
 * which calls model_forward; the work fans out over the pool given to
 * model_reserve.
 */
#ifndef MAAS_MODEL_H
#define MAAS_MODEL_H

#include "core/core.h"
#include "gguf/gguf.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- the architecture table (arch.c) ----
 * One entry per architecture the loader accepts and `maas mkmodel` writes:
 * its GGUF name and its feature flags. Tensors are one table shared by all
 * architectures (struct model_tensor), each tensor in a group that the
 * flags and the hyper-parameters switch on or off (model_tensor_need).
 * Adding an architecture is one entry, plus code only for a new feature. */
enum {
    MODEL_ARCH_ATTN_BIAS = 1u << 0,     /* q, k and v biases (required; elsewhere bound when present) */
    MODEL_ARCH_QK_NORM = 1u << 1,       /* per-head RMS norm of q and k (required; elsewhere when present) */
    MODEL_ARCH_MOE = 1u << 2,           /* experts in every layer: expert_count and expert_feed_forward_length
                                         * required (without it, experts are Mixtral-style: expert width =
                                         * feed_forward_length) */
    MODEL_ARCH_SHARED_EXPERT = 1u << 3, /* new models get a shared expert (the loader takes one in any MoE
                                         * model whose layers have it) */
    MODEL_ARCH_EXPERT_NORM = 1u << 4,   /* the chosen experts' weights are renormalised to sum 1 (in a MoE
                                         * architecture, expert_weights_norm may say otherwise) */
    MODEL_ARCH_ROPE_NEOX = 1u << 5,     /* RoPE rotates (i, i + n_rot/2), not (2i, 2i+1) */
    MODEL_ARCH_HEAD_DIM_FREE = 1u << 6, /* the head size may differ from n_embd / n_head */
    MODEL_ARCH_KEY_LENGTH = 1u << 7,    /* the head size is attention.key_length, always written; n_embd
                                         * need not be a multiple of n_head */
    MODEL_ARCH_DENSE = 1u << 8,         /* no experts: a separate MoE architecture has them */
    MODEL_ARCH_TIED = 1u << 9,          /* new models share token_embd as the output matrix by default */
    MODEL_ARCH_UNTIED = 1u << 10,       /* new models need a separate output.weight (llama.cpp requires it) */
    MODEL_ARCH_LLAMA_KEYS = 1u << 11,   /* the converter also writes vocab_size and rope.dimension_count */
    MODEL_ARCH_BERT = 1u << 12,         /* an encoder: learned positions and token types, LayerNorms with
                                         * biases after attention and FFN, GELU, no causal mask, no RoPE,
                                         * no KV cache (model_embed only) */
};

struct model_arch {
    const char *name;         /* general.architecture, and the prefix of its hyper-parameter keys */
    unsigned flags;           /* MODEL_ARCH_* */
    double rope_base;         /* rope.freq_base of a new model (the loader's default is 10000) */
    double rms_eps;           /* attention.layer_norm_rms_epsilon of a new model (the loader's default is 1e-5) */
};

/* The entry named name (len bytes, not necessarily NUL-terminated), or NULL
 * with ERR_NOT_FOUND and "architecture '<name>' is not supported (<list>)". */
const struct model_arch *model_arch_find(const char *name, size_t len, struct err *e);
int model_arch_count(void);
const struct model_arch *model_arch_at(int i); /* 0 <= i < model_arch_count() */
/* "llama, qwen2, ..." into buf (truncated to size - 1). */
void model_arch_names(char *buf, size_t size);

/* When a tensor exists (model_tensor_need). */
enum model_group {
    MODEL_GROUP_ALWAYS,       /* every model */
    MODEL_GROUP_ATTN_BIAS,    /* MODEL_ARCH_ATTN_BIAS */
    MODEL_GROUP_QK_NORM,      /* MODEL_ARCH_QK_NORM */
    MODEL_GROUP_DENSE,        /* layers without experts (n_expert == 0) */
    MODEL_GROUP_MOE,          /* layers with experts */
    MODEL_GROUP_SHARED,       /* the shared expert: all of the group's tensors or none */
    MODEL_GROUP_OUTPUT,       /* the output matrix, absent when tied to token_embd */
    MODEL_GROUP_OPTIONAL,     /* read when present, never written (rope_freqs) */
    MODEL_GROUP_DECODER,      /* every model but an encoder (RMS norms) */
    MODEL_GROUP_GATE,         /* the SwiGLU gate of a dense decoder layer */
    MODEL_GROUP_BERT,         /* MODEL_ARCH_BERT: positions, token types, LayerNorms, output and FFN biases */
    MODEL_GROUP_RANK,         /* an encoder's classification head: required with pooling rank, else optional */
};

/* Symbolic sizes in tensor shapes (model_dim). */
enum model_dim {
    MODEL_DIM_1, MODEL_DIM_EMBD, MODEL_DIM_VOCAB, MODEL_DIM_Q /* n_head * head_dim */,
    MODEL_DIM_KV /* n_head_kv * head_dim */, MODEL_DIM_HEAD, MODEL_DIM_FF, MODEL_DIM_EXPERT, MODEL_DIM_FF_EXP,
    MODEL_DIM_FF_SHEXP, MODEL_DIM_ROT_HALF /* n_rot / 2 */, MODEL_DIM_CTX /* n_ctx_train */,
    MODEL_DIM_TYPES /* n_token_types */, MODEL_DIM_CLS_OUT /* n_cls_out */
};

/* How a new model (mkmodel) fills a tensor. */
enum model_init {
    MODEL_INIT_EMBD,          /* token_embd and output: the embedding std */
    MODEL_INIT_WEIGHT,        /* N(0, 1 / fan_in), fan_in = ne[0] */
    MODEL_INIT_WEIGHT_OUT,    /* the same / sqrt(2 n_layer): a layer's output projections */
    MODEL_INIT_NORM,          /* 1 + small noise */
    MODEL_INIT_BIAS,          /* small noise */
    MODEL_INIT_NONE,          /* never written */
};

struct model_tensor {
    const char *name;         /* "token_embd.weight"; per layer, the part after "blk.<i>." */
    bool per_layer;
    enum model_group group;
    enum model_init init;
    int n_dims;               /* 1 or 2, 3 for expert slabs */
    enum model_dim ne[3];
    size_t bind;              /* private to model/: where the loader binds it (offset in struct layer or model) */
};

/* The tensors in file order: the globals before the first per-layer one,
 * every layer's, then the rest of the globals. Sets *n. */
const struct model_tensor *model_tensors(size_t *n);
/* The tensor's name in layer il (ignored for a global one) into buf. */
void model_tensor_name(const struct model_tensor *t, int il, char *buf, size_t size);
struct model_hparams;
/* A size of hp. */
int64_t model_dim(const struct model_hparams *hp, enum model_dim d);
/* Whether a model of this architecture and these hyper-parameters has t:
 * MODEL_NEED_REQUIRED (mkmodel writes it, the loader needs it),
 * MODEL_NEED_OPTIONAL (bound when present, not written), or MODEL_NEED_NONE.
 * Shared experts are REQUIRED when hp->n_ff_shexp > 0 in a MoE model; a
 * loader decides that from the file's tensors. The output matrix is
 * REQUIRED unless hp->tied_output. */
enum model_need { MODEL_NEED_NONE, MODEL_NEED_OPTIONAL, MODEL_NEED_REQUIRED };
enum model_need model_tensor_need(const struct model_arch *a, const struct model_tensor *t,
                                  const struct model_hparams *hp);

/* Calls fn(ctx, t, il) for every tensor a model of this architecture and
 * these hyper-parameters has (MODEL_NEED_REQUIRED), in file order, il being
 * the layer of a per-layer tensor (0 for a global one). Stops at the first
 * nonzero return of fn and returns it; 0 when every call returned 0. */
int model_tensors_each(const struct model_arch *a, const struct model_hparams *hp,
                       int (*fn)(void *ctx, const struct model_tensor *t, int il), void *ctx);

struct model_hparams {
    const struct model_arch *arch; /* its entry in the table */
    const char *arch_name;    /* arch->name: "llama", "qwen2", "qwen3", "qwen2moe", "qwen3moe" */
    int n_vocab;
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim;             /* key_length (= value_length) */
    int n_ff;                 /* dense FFN width (0 in MoE-only models) */
    int n_ctx_train;          /* bert: the rows of position_embd, the longest input */
    int n_token_types;        /* bert: rows of token_types (tokenizer.ggml.token_type_count, default 2) */
    int pooling;              /* enum model_pooling: <arch>.pooling_type, or the default (mean for an
                               * encoder, last for a decoder) */
    bool pooling_meta;        /* the file has <arch>.pooling_type: an embedding model */
    int n_cls_out;            /* bert: outputs of the classification head (classifier.output_labels, default 1) */
    int n_rot;                /* rotated dims per head (rope.dimension_count) */
    float rms_eps;            /* bert: attention.layer_norm_epsilon (LayerNorm) */
    float rope_base;
    float rope_freq_scale;    /* 1 / linear scaling factor */
    bool rope_neox;           /* rotate (i, i + n_rot/2) instead of (2i, 2i+1) */
    bool rope_freq_factors;   /* llama3-style per-dimension factors (rope_freqs.weight) */
    bool tied_output;         /* output matrix is token_embd */
    int n_expert;             /* 0 for dense models */
    int n_expert_used;        /* experts each token goes through */
    int n_ff_exp;             /* width of one expert */
    int n_ff_shexp;           /* width of the shared expert (qwen2moe), else 0 */
    bool expert_weights_norm; /* renormalise the chosen experts' weights to sum 1 */
};

struct model;

/* Opens, validates and binds a GGUF model. NULL with one line in e (file,
 * what, why) on failure: unknown architecture, missing or out-of-range
 * metadata, a missing tensor, a tensor of the wrong shape (both shapes are
 * named) or of a type the kernels cannot multiply. */
struct model *model_load(const char *path, struct err *e);
void model_free(struct model *m); /* NULL does nothing */

const struct model_hparams *model_hparams(const struct model *m);
const struct gguf_file *model_gguf(const struct model *m); /* borrowed: for the tokenizer and metadata */
/* Bytes of weights read for one token of decode (every matrix once, the
 * n_expert_used chosen experts of a MoE layer, plus one embedding row), the
 * number of parameters, and the number used per token (MoE: shared weights
 * plus the chosen experts; dense: all). */
uint64_t model_weight_bytes_per_token(const struct model *m);
uint64_t model_n_params(const struct model *m);
uint64_t model_n_active_params(const struct model *m);

/* Allocates the scratch for batches of up to max_batch tokens (replacing any
 * earlier reservation) and sets the pool the forward pass runs on (borrowed;
 * NULL = the calling thread alone). -1 on out of memory. */
int model_reserve(struct model *m, int max_batch, struct pool *pool, struct err *e);
int model_max_batch(const struct model *m);

/* ---- the paged KV cache ---- */
struct kv_cache;

/* n_blocks blocks of block_size positions for every layer; K and V stored
 * as f16. NULL with a reason (bad sizes, out of memory). */
struct kv_cache *kv_new(const struct model *m, int n_blocks, int block_size, struct err *e);
/* The same with the element type chosen: GGML_TYPE_F16 or GGML_TYPE_F32. */
struct kv_cache *kv_new_typed(const struct model *m, int n_blocks, int block_size, enum ggml_type type,
                              struct err *e);
void kv_free(struct kv_cache *kv); /* NULL does nothing */
int kv_n_blocks(const struct kv_cache *kv);
int kv_block_size(const struct kv_cache *kv);

/* Block bookkeeping for the engine: a free list and reference counts.
 * kv_block_alloc returns a block with one reference, or -1 when none is
 * free; kv_block_ref adds one; kv_block_unref drops one and frees the block
 * at zero. */
int kv_block_alloc(struct kv_cache *kv);
void kv_block_ref(struct kv_cache *kv, int block);
void kv_block_unref(struct kv_cache *kv, int block);
int kv_block_refs(const struct kv_cache *kv, int block);
int kv_n_free(const struct kv_cache *kv);

/* ---- one batched forward pass ---- */
struct batch_token {
    int32_t token;
    int32_t pos;              /* position in its sequence */
    int32_t seq;              /* index into batch.seqs */
    bool logits;              /* write this token's logits */
};

struct batch_seq {
    const int32_t *blocks;    /* borrowed: block table, n_blocks entries */
    int n_blocks;
};

struct batch {
    int n_tokens;
    const struct batch_token *tokens; /* borrowed */
    int n_seqs;
    const struct batch_seq *seqs;     /* borrowed */
};

/* Runs the batch through the network. Every token first writes its K and V
 * at its position, then attends causally to positions 0..pos of its own
 * sequence (tokens of one sequence must come in increasing position order,
 * and positions below the batch's must already be in the cache). Logits of
 * the flagged tokens are written to logits_out, one row of n_vocab floats
 * per flagged token, in batch order. -1 with a reason for a batch that does
 * not fit (more tokens than reserved, a token id, position, sequence or block
 * out of range); nothing is computed then. */
int model_forward(struct model *m, struct kv_cache *kv, const struct batch *b, float *logits_out, struct err *e);

/* ---- embeddings (embed.c) ----
 * A sentence embedding is the network's final hidden states pooled over one
 * input: the encoder's last layer output (bert), or a decoder's final
 * RMS-normed hidden states (llama, qwen2, qwen3 files carrying
 * <arch>.pooling_type, as Qwen3-Embedding ships), then L2-normalised. */
enum model_pooling {        /* numbered as llama.cpp's pooling_type */
    MODEL_POOL_NONE = 0,    /* one vector per token */
    MODEL_POOL_MEAN = 1,    /* the mean over the input's tokens */
    MODEL_POOL_CLS = 2,     /* the first token's ([CLS]) */
    MODEL_POOL_LAST = 3,    /* the last token's */
    MODEL_POOL_RANK = 4,    /* bert: the classification head on the first token: one score per input */
};
/* "none", "mean", "cls", "last", "rank" ("?" otherwise). */
const char *model_pooling_name(int pooling);
/* Whether the model is for embeddings: an encoder, or a file with
 * <arch>.pooling_type. Such a model is not for chat (an encoder has no
 * output matrix). */
bool model_is_embedding(const struct model *m);

/* Floats per input model_embed writes with the model's own pooling: 1 for
 * rank (the score), else n_embd. */
int model_embed_n_out(const struct model *m);

/* Embeds n_seqs inputs in one forward pass: input i is the lens[i] token ids
 * at seqs[i] (its [CLS]/[SEP] or BOS/EOS included: what the tokenizer gave).
 * pooling is an enum model_pooling, or -1 for the model's own
 * (hparams.pooling). Writes, L2-normalised, one row of n_embd floats per
 * input to out — with MODEL_POOL_NONE one row per token, inputs one after
 * another; with MODEL_POOL_RANK (an encoder with cls weights) one float per
 * input, the classification head's first output on the [CLS] row:
 * cls.output(tanh(cls(h))), not normalised. The inputs' tokens together must fit in model_max_batch (call
 * model_reserve first); each input holds 1..n_ctx_train tokens. Encoders
 * attend over the whole input, decoders causally (their KV lives in a
 * scratch cache the model keeps; nothing survives the call). -1 with e:
 * ERR_INVALID for an input that is empty, too long, has an id outside the
 * vocabulary (the input and position are named), a batch over the
 * reservation or an unsupported pooling; ERR_NOMEM. */
int model_embed(struct model *m, const int32_t *const *seqs, const int *lens, int n_seqs, int pooling, float *out,
                struct err *e);

#endif
