/*
 * The trainable shape of a model and where each of its tensors lives in the
 * one parameter array: the architecture table's tensor list (the same one
 * mkmodel writes and the loader binds), each tensor a range of floats.
 */
#include "train/train.h"

#include <stdlib.h>
#include <string.h>

int train_shape_from_hparams(const struct model_hparams *hp, struct train_shape *s, struct err *e)
{
    unsigned f = hp->arch->flags;
    if (f & MODEL_ARCH_BERT)
        return err_set(e, ERR_INVALID, "%s: encoders cannot be trained (llama, qwen3 and qwen3moe can)", hp->arch_name);
    if (f & MODEL_ARCH_ATTN_BIAS)
        return err_set(e, ERR_INVALID, "%s: attention biases are not trainable here (llama, qwen3 and qwen3moe are)",
                       hp->arch_name);
    if (hp->n_ff_shexp > 0)
        return err_set(e, ERR_INVALID, "%s: shared experts are not trainable here (qwen3moe is)", hp->arch_name);
    if (hp->n_rot != hp->head_dim)
        return err_set(e, ERR_INVALID, "partial RoPE (%d of %d dims) is not trainable", hp->n_rot, hp->head_dim);
    if (hp->rope_freq_scale != 1.0f || hp->rope_freq_factors)
        return err_set(e, ERR_INVALID, "scaled RoPE is not trainable");
    memset(s, 0, sizeof *s);
    s->n_vocab = hp->n_vocab;
    s->n_embd = hp->n_embd;
    s->n_layer = hp->n_layer;
    s->n_head = hp->n_head;
    s->n_head_kv = hp->n_head_kv;
    s->head_dim = hp->head_dim;
    s->n_rot = hp->n_rot;
    s->n_ff = hp->n_ff;
    if (hp->n_expert > 0) {
        s->n_expert = hp->n_expert;
        s->n_expert_used = hp->n_expert_used;
        s->n_ff_exp = hp->n_ff_exp;
    }
    s->tied = hp->tied_output;
    s->qk_norm = (f & MODEL_ARCH_QK_NORM) != 0;
    s->rope_neox = hp->rope_neox;
    s->expert_norm = hp->expert_weights_norm;
    s->rms_eps = hp->rms_eps;
    s->rope_base = hp->rope_base;
    return 0;
}

/* Where each per-layer tensor's offset goes in struct train_layer. */
static const struct {
    const char *name;
    size_t field;
} roles[] = {
    {"attn_norm.weight", offsetof(struct train_layer, attn_norm)},
    {"attn_q.weight", offsetof(struct train_layer, wq)},
    {"attn_k.weight", offsetof(struct train_layer, wk)},
    {"attn_v.weight", offsetof(struct train_layer, wv)},
    {"attn_output.weight", offsetof(struct train_layer, wo)},
    {"attn_q_norm.weight", offsetof(struct train_layer, q_norm)},
    {"attn_k_norm.weight", offsetof(struct train_layer, k_norm)},
    {"ffn_norm.weight", offsetof(struct train_layer, ffn_norm)},
    {"ffn_gate.weight", offsetof(struct train_layer, gate)},
    {"ffn_up.weight", offsetof(struct train_layer, up)},
    {"ffn_down.weight", offsetof(struct train_layer, down)},
    {"ffn_gate_inp.weight", offsetof(struct train_layer, gate_inp)},
    {"ffn_gate_exps.weight", offsetof(struct train_layer, gate_exps)},
    {"ffn_up_exps.weight", offsetof(struct train_layer, up_exps)},
    {"ffn_down_exps.weight", offsetof(struct train_layer, down_exps)},
};

static void bind(struct train_layout *l, const struct model_tensor *mt, int il, size_t off)
{
    if (!mt->per_layer) {
        if (!strcmp(mt->name, "token_embd.weight"))
            l->tok_embd = off;
        else if (!strcmp(mt->name, "output_norm.weight"))
            l->output_norm = off;
        else if (!strcmp(mt->name, "output.weight"))
            l->output = off;
        return;
    }
    for (size_t i = 0; i < sizeof roles / sizeof *roles; i++)
        if (!strcmp(mt->name, roles[i].name))
            *(size_t *)((char *)&l->layer[il] + roles[i].field) = off;
}

struct add_ctx {
    struct train_layout *l;
    size_t cap;
    const struct model_hparams *hp;
};

static int add(void *ctx, const struct model_tensor *mt, int il)
{
    struct add_ctx *a = ctx;
    struct train_layout *l = a->l;
    const struct model_hparams *hp = a->hp;
    size_t *cap = &a->cap;
    if (mem_grow(&l->t, cap, (size_t)l->n_t + 1, sizeof *l->t) != 0)
        return -1;
    struct train_tensor *t = &l->t[l->n_t++];
    memset(t, 0, sizeof *t);
    model_tensor_name(mt, il, t->name, sizeof t->name);
    t->n_dims = mt->n_dims;
    t->n = 1;
    for (int i = 0; i < 3; i++) {
        t->ne[i] = model_dim(hp, mt->ne[i]);
        t->n *= (size_t)t->ne[i];
    }
    t->off = l->n_params;
    t->decay = mt->n_dims >= 2;
    l->n_params += t->n;
    bind(l, mt, il, t->off);
    return 0;
}

int train_layout_init(struct train_layout *l, const struct model_arch *arch, const struct model_hparams *hp,
                      const struct train_shape *s, struct err *e)
{
    memset(l, 0, sizeof *l);
    l->tok_embd = l->output_norm = l->output = TRAIN_NONE;
    if (!(l->layer = malloc((size_t)s->n_layer * sizeof *l->layer)))
        return err_set(e, ERR_NOMEM, "out of memory");
    for (int il = 0; il < s->n_layer; il++)
        for (size_t i = 0; i < sizeof roles / sizeof *roles; i++)
            *(size_t *)((char *)&l->layer[il] + roles[i].field) = TRAIN_NONE;
    struct add_ctx a = {l, 0, hp};
    int rc = model_tensors_each(arch, hp, add, &a);
    if (rc) {
        train_layout_release(l);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    if (s->tied)
        l->output = l->tok_embd;
    return 0;
}

void train_layout_release(struct train_layout *l)
{
    free(l->t);
    free(l->layer);
    memset(l, 0, sizeof *l);
}

const struct train_tensor *train_layout_find(const struct train_layout *l, const char *name)
{
    for (int i = 0; i < l->n_t; i++)
        if (!strcmp(l->t[i].name, name))
            return &l->t[i];
    return NULL;
}
