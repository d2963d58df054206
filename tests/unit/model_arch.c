/* model: the architecture table and the tensor table that the loader and
 * `maas mkmodel` share — every entry well-formed, lookup by name, unknown
 * names, and which tensors each architecture has. */
#include "model/model_int.h"
#include "test.h"

#include <string.h>

TEST(test_archs_well_formed_and_found)
{
    CHECK(model_arch_count() >= 5);
    for (int i = 0; i < model_arch_count(); i++) {
        const struct model_arch *a = model_arch_at(i);
        CHECKF(a->name && a->name[0], "entry %d has no name", i);
        for (int j = 0; j < i; j++)
            CHECKF(strcmp(a->name, model_arch_at(j)->name) != 0, "%s twice", a->name);
        struct err e = {0};
        CHECKF(model_arch_find(a->name, strlen(a->name), &e) == a, "%s not found", a->name);
        /* an encoder has no RoPE: its rope_base is 0 */
        CHECKF((a->rope_base > 0) != ((a->flags & MODEL_ARCH_BERT) != 0) && a->rms_eps > 0 && a->rms_eps < 1,
               "%s defaults", a->name);
        unsigned f = a->flags;
        CHECKF(!((f & MODEL_ARCH_MOE) && (f & MODEL_ARCH_DENSE)), "%s is both MoE and dense", a->name);
        CHECKF(!((f & MODEL_ARCH_TIED) && (f & MODEL_ARCH_UNTIED)), "%s is both tied and untied", a->name);
        CHECKF(!(f & MODEL_ARCH_SHARED_EXPERT) || (f & MODEL_ARCH_MOE), "%s: shared expert without MoE", a->name);
        CHECKF(!(f & MODEL_ARCH_KEY_LENGTH) || (f & MODEL_ARCH_HEAD_DIM_FREE), "%s: key_length but fixed head",
               a->name);
    }
}

TEST(test_arch_lookup)
{
    struct err e = {0};
    const struct model_arch *a = model_arch_find("qwen2moe", 5, &e); /* a prefix of a longer string */
    CHECK(a != NULL && !strcmp(a->name, "qwen2"));
    a = model_arch_find("qwen2moe", 8, &e);
    CHECK(a != NULL && !strcmp(a->name, "qwen2moe") && (a->flags & MODEL_ARCH_SHARED_EXPERT));
    CHECK(model_arch_find("gpt9", 4, &e) == NULL);
    CHECK(e.code == ERR_NOT_FOUND);
    CHECKF(!strcmp(e.msg, "architecture 'gpt9' is not supported (llama, qwen2, qwen3, qwen2moe, qwen3moe, bert)"), "%s",
           e.msg);
    CHECK(model_arch_find("", 0, &e) == NULL && e.code == ERR_NOT_FOUND);
    CHECK(model_arch_find("llam", 4, &e) == NULL && e.code == ERR_NOT_FOUND);
    char buf[256];
    model_arch_names(buf, sizeof buf);
    CHECK(!strcmp(buf, "llama, qwen2, qwen3, qwen2moe, qwen3moe, bert"));
    model_arch_names(buf, 8);
    CHECK(!strcmp(buf, "llama, "));
}

/* Names unique and llama.cpp-shaped, shapes consistent with their rank,
 * the layer tensors in one run, and every binding inside its struct. */
TEST(test_tensors_well_formed)
{
    size_t n;
    const struct model_tensor *ts = model_tensors(&n);
    CHECK(n > 10);
    int runs = 0;
    for (size_t i = 0; i < n; i++) {
        const struct model_tensor *t = &ts[i];
        size_t len = strlen(t->name);
        CHECKF(len > 5 && (!strcmp(t->name + len - 7, ".weight") || !strcmp(t->name + len - 5, ".bias")), "%s",
               t->name);
        for (size_t j = 0; j < i; j++)
            CHECKF(strcmp(t->name, ts[j].name) != 0, "%s twice", t->name);
        CHECKF(t->n_dims >= 1 && t->n_dims <= 3, "%s: %d dims", t->name, t->n_dims);
        for (int d = 0; d < 3; d++)
            CHECKF((d < t->n_dims) == (t->ne[d] != MODEL_DIM_1), "%s: dim %d", t->name, d);
        CHECKF(t->n_dims < 3 || (t->group == MODEL_GROUP_MOE && t->ne[2] == MODEL_DIM_EXPERT && t->per_layer),
               "%s: a slab outside the expert group", t->name);
        size_t size = t->n_dims == 1 ? sizeof(const float *) : sizeof(struct wmat);
        size_t limit = t->per_layer ? sizeof(struct layer) : sizeof(struct model);
        CHECKF(t->bind + size <= limit, "%s: binding outside its struct", t->name);
        CHECKF(t->group != MODEL_GROUP_OPTIONAL || t->init == MODEL_INIT_NONE, "%s: optional but written", t->name);
        CHECKF(t->group == MODEL_GROUP_OPTIONAL || t->init != MODEL_INIT_NONE, "%s: written without init", t->name);
        if (t->per_layer && (i == 0 || !ts[i - 1].per_layer))
            runs++;
    }
    CHECK(runs == 1);
    char name[64];
    model_tensor_name(&ts[0], 3, name, sizeof name);
    CHECK(!strcmp(name, "token_embd.weight"));
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ts[i].name, "attn_q.weight")) {
            model_tensor_name(&ts[i], 3, name, sizeof name);
            CHECK(!strcmp(name, "blk.3.attn_q.weight"));
        }
}

static const struct model_tensor *tensor(const char *name)
{
    size_t n;
    const struct model_tensor *ts = model_tensors(&n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ts[i].name, name))
            return &ts[i];
    return NULL;
}

static enum model_need need(const char *arch, const char *name, const struct model_hparams *hp)
{
    struct err e;
    const struct model_arch *a = model_arch_find(arch, strlen(arch), &e);
    const struct model_tensor *t = tensor(name);
    MAAS_ASSERT(a && t);
    return model_tensor_need(a, t, hp);
}

TEST(test_need_per_architecture)
{
    struct model_hparams dense = {.n_embd = 64, .n_head = 4, .n_head_kv = 2, .head_dim = 16, .n_ff = 96, .n_vocab = 50};
    CHECK(need("llama", "attn_q.weight", &dense) == MODEL_NEED_REQUIRED);
    CHECK(need("llama", "attn_q.bias", &dense) == MODEL_NEED_OPTIONAL);
    CHECK(need("qwen2", "attn_q.bias", &dense) == MODEL_NEED_REQUIRED);
    CHECK(need("qwen2", "attn_q_norm.weight", &dense) == MODEL_NEED_OPTIONAL);
    CHECK(need("qwen3", "attn_k_norm.weight", &dense) == MODEL_NEED_REQUIRED);
    CHECK(need("llama", "ffn_gate.weight", &dense) == MODEL_NEED_REQUIRED);
    CHECK(need("llama", "ffn_gate_exps.weight", &dense) == MODEL_NEED_NONE);
    CHECK(need("llama", "output.weight", &dense) == MODEL_NEED_REQUIRED);
    CHECK(need("llama", "rope_freqs.weight", &dense) == MODEL_NEED_OPTIONAL);
    dense.tied_output = true;
    CHECK(need("qwen2", "output.weight", &dense) == MODEL_NEED_NONE);
    /* bert: positions, token types and LayerNorms; no RMS norms, gate or output matrix */
    CHECK(need("bert", "position_embd.weight", &dense) == MODEL_NEED_REQUIRED);
    CHECK(need("bert", "layer_output_norm.bias", &dense) == MODEL_NEED_REQUIRED);
    CHECK(need("bert", "attn_q.bias", &dense) == MODEL_NEED_REQUIRED);
    CHECK(need("bert", "attn_norm.weight", &dense) == MODEL_NEED_NONE);
    CHECK(need("bert", "ffn_gate.weight", &dense) == MODEL_NEED_NONE);
    CHECK(need("bert", "ffn_up.weight", &dense) == MODEL_NEED_REQUIRED);
    CHECK(need("bert", "output_norm.weight", &dense) == MODEL_NEED_NONE);
    CHECK(need("llama", "token_types.weight", &dense) == MODEL_NEED_NONE);
    CHECK(need("qwen2", "attn_output_norm.weight", &dense) == MODEL_NEED_NONE);

    struct model_hparams moe = dense;
    moe.n_ff = 0, moe.n_expert = 6, moe.n_expert_used = 2, moe.n_ff_exp = 32;
    CHECK(need("qwen3moe", "ffn_gate.weight", &moe) == MODEL_NEED_NONE);
    CHECK(need("qwen3moe", "ffn_down_exps.weight", &moe) == MODEL_NEED_REQUIRED);
    CHECK(need("qwen3moe", "ffn_up_shexp.weight", &moe) == MODEL_NEED_NONE);
    moe.n_ff_shexp = 48;
    CHECK(need("qwen2moe", "ffn_gate_inp_shexp.weight", &moe) == MODEL_NEED_REQUIRED);

    /* shapes resolve against the hyper-parameters */
    moe.n_rot = 16;
    CHECK(model_dim(&moe, MODEL_DIM_Q) == 64 && model_dim(&moe, MODEL_DIM_KV) == 32);
    CHECK(model_dim(&moe, MODEL_DIM_FF_EXP) == 32 && model_dim(&moe, MODEL_DIM_EXPERT) == 6);
    CHECK(model_dim(&moe, MODEL_DIM_ROT_HALF) == 8 && model_dim(&moe, MODEL_DIM_VOCAB) == 50);
    CHECK(model_dim(&moe, MODEL_DIM_FF_SHEXP) == 48 && model_dim(&moe, MODEL_DIM_1) == 1);
    moe.n_ctx_train = 512, moe.n_token_types = 2;
    CHECK(model_dim(&moe, MODEL_DIM_CTX) == 512 && model_dim(&moe, MODEL_DIM_TYPES) == 2);
}

int main(void)
{
    RUN(test_archs_well_formed_and_found);
    RUN(test_arch_lookup);
    RUN(test_tensors_well_formed);
    RUN(test_need_per_architecture);
    TEST_END();
}
