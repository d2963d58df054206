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

enum model_arch { MODEL_ARCH_LLAMA, MODEL_ARCH_QWEN2, MODEL_ARCH_QWEN3, MODEL_ARCH_QWEN2MOE, MODEL_ARCH_QWEN3MOE };

struct model_hparams {
    enum model_arch arch;
    const char *arch_name;    /* "llama", "qwen2", "qwen3", "qwen2moe", "qwen3moe" */
    int n_vocab;
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim;             /* key_length (= value_length) */
    int n_ff;                 /* dense FFN width (0 in MoE-only models) */
    int n_ctx_train;
    int n_rot;                /* rotated dims per head (rope.dimension_count) */
    float rms_eps;
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

#endif
