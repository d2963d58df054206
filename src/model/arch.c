/*
 * The architecture table and the tensor table: what load.c binds and what
 * `maas mkmodel` writes, in one place. The tensor names and shapes are
 * llama.cpp's (ggml order: ne[0] is the row length).
 */
#include "model/model_int.h"

#include <stddef.h>
#include <string.h>

#define F(x) MODEL_ARCH_##x

static const struct model_arch archs[] = {
    /* Llama 2/3, Mistral, Yi, DeepSeek-LLM; with experts, Mixtral */
    {"llama", F(EXPERT_NORM) | F(HEAD_DIM_FREE) | F(LLAMA_KEYS), 10000.0, 1e-5},
    {"qwen2", F(ATTN_BIAS) | F(EXPERT_NORM) | F(ROPE_NEOX) | F(DENSE) | F(TIED), 1000000.0, 1e-6},
    {"qwen3", F(QK_NORM) | F(EXPERT_NORM) | F(ROPE_NEOX) | F(HEAD_DIM_FREE) | F(KEY_LENGTH) | F(DENSE) | F(TIED),
     1000000.0, 1e-6},
    {"qwen2moe", F(ATTN_BIAS) | F(MOE) | F(SHARED_EXPERT) | F(ROPE_NEOX) | F(UNTIED), 1000000.0, 1e-6},
    {"qwen3moe", F(QK_NORM) | F(MOE) | F(EXPERT_NORM) | F(ROPE_NEOX) | F(HEAD_DIM_FREE) | F(KEY_LENGTH), 1000000.0,
     1e-6},
    /* BERT encoders (bge, e5, all-MiniLM): learned positions, token types,
     * post-norms with biases, GELU, attention over the whole input */
    {"bert", F(BERT) | F(ATTN_BIAS) | F(TIED), 0.0, 1e-12},
};

#undef F

#define L(name, group, init, nd, a, b, c, field) {name, true, MODEL_GROUP_##group, MODEL_INIT_##init, nd, \
    {MODEL_DIM_##a, MODEL_DIM_##b, MODEL_DIM_##c}, offsetof(struct layer, field)}
#define G(name, group, init, nd, a, b, field) {name, false, MODEL_GROUP_##group, MODEL_INIT_##init, nd, \
    {MODEL_DIM_##a, MODEL_DIM_##b, MODEL_DIM_1}, offsetof(struct model, field)}

static const struct model_tensor tensors[] = {
    G("token_embd.weight", ALWAYS, EMBD, 2, EMBD, VOCAB, tok_embd),
    G("token_types.weight", BERT, EMBD, 2, EMBD, TYPES, tok_types),
    G("position_embd.weight", BERT, EMBD, 2, EMBD, CTX, pos_embd),
    G("token_embd_norm.weight", BERT, NORM, 1, EMBD, 1, tok_norm),
    G("token_embd_norm.bias", BERT, BIAS, 1, EMBD, 1, tok_norm_b),
    L("attn_norm.weight", DECODER, NORM, 1, EMBD, 1, 1, attn_norm),
    L("attn_q.weight", ALWAYS, WEIGHT, 2, EMBD, Q, 1, wq),
    L("attn_k.weight", ALWAYS, WEIGHT, 2, EMBD, KV, 1, wk),
    L("attn_v.weight", ALWAYS, WEIGHT, 2, EMBD, KV, 1, wv),
    L("attn_q.bias", ATTN_BIAS, BIAS, 1, Q, 1, 1, bq),
    L("attn_k.bias", ATTN_BIAS, BIAS, 1, KV, 1, 1, bk),
    L("attn_v.bias", ATTN_BIAS, BIAS, 1, KV, 1, 1, bv),
    L("attn_q_norm.weight", QK_NORM, NORM, 1, HEAD, 1, 1, q_norm),
    L("attn_k_norm.weight", QK_NORM, NORM, 1, HEAD, 1, 1, k_norm),
    L("attn_output.weight", ALWAYS, WEIGHT_OUT, 2, Q, EMBD, 1, wo),
    L("attn_output.bias", BERT, BIAS, 1, EMBD, 1, 1, bo),
    L("attn_output_norm.weight", BERT, NORM, 1, EMBD, 1, 1, attn_out_norm),
    L("attn_output_norm.bias", BERT, BIAS, 1, EMBD, 1, 1, attn_out_norm_b),
    L("ffn_norm.weight", DECODER, NORM, 1, EMBD, 1, 1, ffn_norm),
    L("ffn_gate.weight", GATE, WEIGHT, 2, EMBD, FF, 1, gate),
    L("ffn_up.weight", DENSE, WEIGHT, 2, EMBD, FF, 1, up),
    L("ffn_up.bias", BERT, BIAS, 1, FF, 1, 1, up_b),
    L("ffn_down.weight", DENSE, WEIGHT_OUT, 2, FF, EMBD, 1, down),
    L("ffn_down.bias", BERT, BIAS, 1, EMBD, 1, 1, down_b),
    L("layer_output_norm.weight", BERT, NORM, 1, EMBD, 1, 1, out_norm),
    L("layer_output_norm.bias", BERT, BIAS, 1, EMBD, 1, 1, out_norm_b),
    L("ffn_gate_inp.weight", MOE, WEIGHT, 2, EMBD, EXPERT, 1, gate_inp),
    L("ffn_gate_exps.weight", MOE, WEIGHT, 3, EMBD, FF_EXP, EXPERT, gate_exps),
    L("ffn_up_exps.weight", MOE, WEIGHT, 3, EMBD, FF_EXP, EXPERT, up_exps),
    L("ffn_down_exps.weight", MOE, WEIGHT_OUT, 3, FF_EXP, EMBD, EXPERT, down_exps),
    /* the first of the group says whether a layer has a shared expert */
    L("ffn_gate_inp_shexp.weight", SHARED, WEIGHT, 1, EMBD, 1, 1, shexp_gate),
    L("ffn_gate_shexp.weight", SHARED, WEIGHT, 2, EMBD, FF_SHEXP, 1, gate_sh),
    L("ffn_up_shexp.weight", SHARED, WEIGHT, 2, EMBD, FF_SHEXP, 1, up_sh),
    L("ffn_down_shexp.weight", SHARED, WEIGHT_OUT, 2, FF_SHEXP, EMBD, 1, down_sh),
    G("output_norm.weight", DECODER, NORM, 1, EMBD, 1, output_norm),
    G("output.weight", OUTPUT, EMBD, 2, EMBD, VOCAB, output),
    /* an encoder's classification head (pooling rank: rerankers) */
    G("cls.weight", RANK, WEIGHT, 2, EMBD, EMBD, cls),
    G("cls.bias", RANK, BIAS, 1, EMBD, 1, cls_b),
    G("cls.output.weight", RANK, WEIGHT, 2, EMBD, CLS_OUT, cls_out),
    G("cls.output.bias", RANK, BIAS, 1, CLS_OUT, 1, cls_out_b),
    /* llama3-style per-dimension RoPE factors */
    G("rope_freqs.weight", OPTIONAL, NONE, 1, ROT_HALF, 1, rope_freqs),
};

#undef L
#undef G

int model_arch_count(void)
{
    return (int)(sizeof archs / sizeof *archs);
}

const struct model_arch *model_arch_at(int i)
{
    MAAS_ASSERT(i >= 0 && i < model_arch_count());
    return &archs[i];
}

void model_arch_names(char *buf, size_t size)
{
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < model_arch_count() && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? ", " : "", archs[i].name);
}

const struct model_arch *model_arch_find(const char *name, size_t len, struct err *e)
{
    for (int i = 0; i < model_arch_count(); i++)
        if (strlen(archs[i].name) == len && !memcmp(archs[i].name, name, len))
            return &archs[i];
    char names[256];
    model_arch_names(names, sizeof names);
    err_set(e, ERR_NOT_FOUND, "architecture '%.*s' is not supported (%s)", (int)(len > 64 ? 64 : len), name, names);
    return NULL;
}

const struct model_tensor *model_tensors(size_t *n)
{
    *n = sizeof tensors / sizeof *tensors;
    return tensors;
}

void model_tensor_name(const struct model_tensor *t, int il, char *buf, size_t size)
{
    if (t->per_layer)
        snprintf(buf, size, "blk.%d.%s", il, t->name);
    else
        snprintf(buf, size, "%s", t->name);
}

int64_t model_dim(const struct model_hparams *hp, enum model_dim d)
{
    switch (d) {
    case MODEL_DIM_1: return 1;
    case MODEL_DIM_EMBD: return hp->n_embd;
    case MODEL_DIM_VOCAB: return hp->n_vocab;
    case MODEL_DIM_Q: return (int64_t)hp->n_head * hp->head_dim;
    case MODEL_DIM_KV: return (int64_t)hp->n_head_kv * hp->head_dim;
    case MODEL_DIM_HEAD: return hp->head_dim;
    case MODEL_DIM_FF: return hp->n_ff;
    case MODEL_DIM_EXPERT: return hp->n_expert;
    case MODEL_DIM_FF_EXP: return hp->n_ff_exp;
    case MODEL_DIM_FF_SHEXP: return hp->n_ff_shexp;
    case MODEL_DIM_ROT_HALF: return hp->n_rot / 2;
    case MODEL_DIM_CTX: return hp->n_ctx_train;
    case MODEL_DIM_TYPES: return hp->n_token_types;
    case MODEL_DIM_CLS_OUT: return hp->n_cls_out;
    }
    MAAS_ASSERT(!"unknown model_dim");
    return 0;
}

enum model_need model_tensor_need(const struct model_arch *a, const struct model_tensor *t,
                                  const struct model_hparams *hp)
{
    switch (t->group) {
    case MODEL_GROUP_ALWAYS: return MODEL_NEED_REQUIRED;
    case MODEL_GROUP_ATTN_BIAS: return a->flags & MODEL_ARCH_ATTN_BIAS ? MODEL_NEED_REQUIRED : MODEL_NEED_OPTIONAL;
    case MODEL_GROUP_QK_NORM: return a->flags & MODEL_ARCH_QK_NORM ? MODEL_NEED_REQUIRED : MODEL_NEED_OPTIONAL;
    case MODEL_GROUP_DENSE: return hp->n_expert == 0 ? MODEL_NEED_REQUIRED : MODEL_NEED_NONE;
    case MODEL_GROUP_MOE: return hp->n_expert > 0 ? MODEL_NEED_REQUIRED : MODEL_NEED_NONE;
    case MODEL_GROUP_SHARED: return hp->n_expert > 0 && hp->n_ff_shexp > 0 ? MODEL_NEED_REQUIRED : MODEL_NEED_NONE;
    case MODEL_GROUP_OUTPUT: return hp->tied_output ? MODEL_NEED_NONE : MODEL_NEED_REQUIRED;
    case MODEL_GROUP_OPTIONAL: return MODEL_NEED_OPTIONAL;
    case MODEL_GROUP_DECODER: return a->flags & MODEL_ARCH_BERT ? MODEL_NEED_NONE : MODEL_NEED_REQUIRED;
    case MODEL_GROUP_GATE:
        return hp->n_expert == 0 && !(a->flags & MODEL_ARCH_BERT) ? MODEL_NEED_REQUIRED : MODEL_NEED_NONE;
    case MODEL_GROUP_BERT: return a->flags & MODEL_ARCH_BERT ? MODEL_NEED_REQUIRED : MODEL_NEED_NONE;
    case MODEL_GROUP_RANK:
        if (!(a->flags & MODEL_ARCH_BERT))
            return MODEL_NEED_NONE;
        return hp->pooling == MODEL_POOL_RANK ? MODEL_NEED_REQUIRED : MODEL_NEED_OPTIONAL;
    }
    MAAS_ASSERT(!"unknown model_group");
    return MODEL_NEED_NONE;
}

int model_tensors_each(const struct model_arch *a, const struct model_hparams *hp,
                       int (*fn)(void *ctx, const struct model_tensor *t, int il), void *ctx)
{
    size_t n, first = 0;
    const struct model_tensor *ts = model_tensors(&n);
    while (first < n && !ts[first].per_layer)
        first++;
    for (int pass = 0; pass < 3; pass++)
        for (int il = 0; il < (pass == 1 ? hp->n_layer : 1); il++)
            for (size_t i = 0; i < n; i++) {
                bool here = pass == 1 ? ts[i].per_layer : !ts[i].per_layer && (pass == 0) == (i < first);
                int rc;
                if (here && model_tensor_need(a, &ts[i], hp) == MODEL_NEED_REQUIRED && (rc = fn(ctx, &ts[i], il)))
                    return rc;
            }
    return 0;
}
