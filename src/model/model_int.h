/* Private to model/: the model, its layers and the KV cache layout, shared by
 * arch.c, load.c, kv.c, forward.c and the attention kernels (attn.c, attn_avx2.c). */
#ifndef MAAS_MODEL_INT_H
#define MAAS_MODEL_INT_H

#include "kernels/kernels.h"
#include "model/model.h"

/* A weight matrix: n_out rows of n_in elements of type `type`, a view into
 * the mapping. */
struct wmat {
    enum ggml_type type;
    const void *data;         /* borrowed: the mapping */
    int64_t n_in, n_out;
};

struct layer {
    const float *attn_norm;   /* (n_embd) */
    struct wmat wq;           /* (n_embd -> n_head * head_dim) */
    struct wmat wk, wv;       /* (n_embd -> n_head_kv * head_dim) */
    struct wmat wo;           /* (n_head * head_dim -> n_embd) */
    const float *bq, *bk, *bv;/* biases or NULL: (n_head * head_dim), (n_head_kv * head_dim) x2 */
    const float *q_norm, *k_norm; /* per-head RMS norm weights or NULL: (head_dim) */
    const float *ffn_norm;    /* (n_embd) */
    /* bert (NULL elsewhere): attention output bias, post-attention and
     * post-FFN LayerNorms, FFN biases */
    const float *bo;          /* (n_embd) */
    const float *attn_out_norm, *attn_out_norm_b; /* (n_embd) */
    const float *out_norm, *out_norm_b;           /* (n_embd) */
    const float *up_b;        /* (n_ff) */
    const float *down_b;      /* (n_embd) */
    /* Dense feed-forward (when gate_inp.data is NULL). */
    struct wmat gate, up;     /* (n_embd -> n_ff) */
    struct wmat down;         /* (n_ff -> n_embd) */
    /* Mixture of experts: the router and one slab per expert; expert e's
     * matrix is the wmat at data + e * expert_stride bytes. */
    struct wmat gate_inp;     /* (n_embd -> n_expert) */
    struct wmat gate_exps, up_exps; /* per expert (n_embd -> n_ff_exp) */
    struct wmat down_exps;    /* per expert (n_ff_exp -> n_embd) */
    size_t gate_stride, up_stride, down_stride;
    /* qwen2moe's shared expert, applied to every token, scaled by
     * sigmoid(shexp_gate . x); NULL / zero when absent. */
    const float *shexp_gate;  /* (n_embd) */
    struct wmat gate_sh, up_sh; /* (n_embd -> n_ff_shexp) */
    struct wmat down_sh;      /* (n_ff_shexp -> n_embd) */
};

struct model {
    struct gguf_file *f;      /* owned */
    struct model_hparams hp;
    struct wmat tok_embd;     /* (n_embd -> n_vocab) as rows: one row per token */
    struct wmat output;       /* (n_embd -> n_vocab); == tok_embd when tied */
    const float *output_norm; /* (n_embd) */
    const float *rope_freqs;  /* (n_rot / 2) llama3-style RoPE factors, or NULL */
    struct wmat tok_types;    /* bert: (n_embd -> n_token_types) as rows */
    struct wmat pos_embd;     /* bert: (n_embd -> n_ctx_train) as rows */
    const float *tok_norm, *tok_norm_b; /* bert: embedding LayerNorm (n_embd) */
    struct wmat cls;          /* bert, optional: (n_embd -> n_embd) classification dense layer */
    const float *cls_b;       /* (n_embd) */
    struct wmat cls_out;      /* (n_embd -> n_cls_out) */
    const float *cls_out_b;   /* (n_cls_out) */
    struct kv_cache *embd_kv; /* owned: a decoder's scratch cache for model_embed, grown on demand */
    struct layer *layers;     /* n_layer, from malloc */
    double *inv_freq;         /* n_rot/2 RoPE frequencies incl. scaling, from malloc */
    float **owned;            /* converted (non-f32) norm and bias vectors, from malloc */
    int n_owned;

    /* scratch for up to max_batch tokens, all from maas_alloc_aligned */
    int max_batch;
    struct pool *pool;        /* borrowed; NULL = single-threaded */
    float *x;                 /* (max_batch, n_embd) residual stream */
    float *xn;                /* (max_batch, n_embd) normed input / matmul output */
    float *q;                 /* (max_batch, n_head * head_dim) */
    float *k, *v;             /* (max_batch, n_head_kv * head_dim) */
    float *att;               /* (max_batch, n_head * head_dim) attention output */
    float *ff_a, *ff_b;       /* (max_batch, n_ff) */
    float *rope_cos, *rope_sin; /* (max_batch, n_rot / 2) */
    /* MoE scratch (NULL for dense models) */
    float *router;            /* (max_batch, n_expert) router logits */
    float *moe_x;             /* (max_batch * n_expert_used, n_embd) token rows grouped by expert */
    float *moe_a, *moe_b;     /* (max_batch * n_expert_used, max(n_ff_exp, n_ff_shexp)) */
    float *moe_out;           /* (max_batch, n_embd) accumulated expert outputs */
    int32_t *moe_tok;         /* (max_batch * n_expert_used) token of each grouped row */
    float *moe_w;             /* (max_batch * n_expert_used) its routing weight */
    int32_t *moe_count;       /* (n_expert + 1) rows per expert, then prefix sums */
    int32_t *moe_sel;         /* (max_batch * n_expert_used) chosen experts per token */
    float *moe_selw;          /* (max_batch * n_expert_used) their weights */
    struct kern_mm *moe_mm;   /* (2 * n_expert) the expert products of one pass */
    void *wbuf;               /* kern_matmul work buffer */
    size_t wbuf_size;
};

/* KV layout: for each layer, K (and V) is n_blocks blocks; a block is
 * n_head_kv heads of block_size slots of head_dim elements, so one head's
 * keys in one block are contiguous. Element (layer, block, head, slot) is at
 * (((layer * n_blocks + block) * n_head_kv + head) * block_size + slot) * head_dim. */
struct kv_cache {
    int n_layer, n_head_kv, head_dim;
    int n_blocks, block_size;
    enum ggml_type type;      /* GGML_TYPE_F16 or GGML_TYPE_F32 */
    size_t elt;               /* bytes per element */
    void *k, *v;              /* from maas_alloc_aligned */
    int32_t *refs;            /* n_blocks reference counts, from malloc */
    int32_t *free_list;       /* stack of free block ids, from malloc */
    int n_free;
};

/* model_forward with the flagged tokens' final RMS-normed hidden states
 * (n_embd floats each, in batch order) written to hidden_out instead of
 * logits: a decoder's embeddings (embed.c). */
int model_forward_hidden(struct model *m, struct kv_cache *kv, const struct batch *b, float *hidden_out, struct err *e);

static inline size_t kv_offset(const struct kv_cache *kv, int layer, int block, int head, int slot)
{
    return ((((size_t)layer * kv->n_blocks + block) * kv->n_head_kv + head) * kv->block_size + slot) *
           kv->head_dim;
}


#endif
