/*
 * Model loading: reads the hyper-parameters from the GGUF metadata
 * ("<arch>.<key>" as llama.cpp names them; what the architecture's flags in
 * arch.c ask for), binds every weight of the tensor table as a view into
 * the mapping after checking its presence, shape and type, and precomputes
 * the RoPE frequencies (base, linear scaling, llama3-style per-dimension
 * factors from rope_freqs.weight). Norm and bias vectors that are not f32 in
 * the file are converted once into owned buffers; matrices are never copied.
 */
#include "model/model_int.h"

#include <math.h>
#include <string.h>

struct loader {
    struct model *m;
    const char *fname;
    const char *arch;         /* its name: the prefix of the hyper-parameter keys */
    struct err *e;
};

enum meta_kind { META_INT, META_FLOAT, META_BOOL, META_STR };

/* Reads metadata key `full` into out (an int64_t, double, bool or struct
 * gguf_str, by kind): 1 when present, 0 when absent, -1 with the reason.
 * The one place the loader calls gguf_get_*. */
static int get_key(struct loader *L, const char *full, enum meta_kind kind, void *out)
{
    struct err e2;
    int rc;
    switch (kind) {
    case META_INT:
        rc = gguf_get_int(L->m->f, full, out, &e2);
        break;
    case META_FLOAT:
        rc = gguf_get_float(L->m->f, full, out, &e2);
        break;
    case META_BOOL:
        rc = gguf_get_bool(L->m->f, full, out, &e2);
        break;
    default:
        rc = gguf_get_str(L->m->f, full, out, &e2);
        break;
    }
    if (rc < 0 && e2.code == ERR_NOT_FOUND)
        return 0;
    if (rc < 0)
        return err_set(L->e, ERR_CORRUPT, "%s: %s", L->fname, e2.msg);
    return 1;
}

/* get_key of "<arch>.<key>", whose name is left in full. */
static int get_arch_key(struct loader *L, const char *key, enum meta_kind kind, void *out, char *full, size_t size)
{
    snprintf(full, size, "%s.%s", L->arch, key);
    return get_key(L, full, kind, out);
}

static int meta_int(struct loader *L, const char *key, bool required, int64_t def, int64_t lo, int64_t hi,
                    int *out)
{
    char full[256];
    int64_t v;
    int rc = get_arch_key(L, key, META_INT, &v, full, sizeof full);
    if (rc < 0)
        return -1;
    if (rc == 0 && required)
        return err_set(L->e, ERR_CORRUPT, "%s: metadata key '%s' is missing (architecture %s needs it)", L->fname, full,
                       L->arch);
    v = rc ? v : def;
    if (v < lo || v > hi)
        return err_set(L->e, ERR_CORRUPT, "%s: metadata '%s' = %lld is out of range [%lld, %lld]", L->fname, full, (long long)v,
                       (long long)lo, (long long)hi);
    *out = (int)v;
    return 0;
}

static int meta_float(struct loader *L, const char *key, double def, double lo, double hi, float *out)
{
    char full[256];
    double v;
    int rc = get_arch_key(L, key, META_FLOAT, &v, full, sizeof full);
    if (rc < 0)
        return -1;
    v = rc ? v : def;
    if (!(v >= lo && v <= hi))
        return err_set(L->e, ERR_CORRUPT, "%s: metadata '%s' = %g is out of range [%g, %g]", L->fname, full, v, lo, hi);
    *out = (float)v;
    return 0;
}

static void fmt_shape(char *buf, size_t n, int n_dims, const int64_t *ne)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int i = 0; i < n_dims && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)ne[i]);
    if (o < n)
        snprintf(buf + o, n - o, "]");
}

/* Finds a tensor and checks its shape (n_dims dims ne[0..n_dims)) and that
 * the kernels support its type. 0 with *out = NULL when it is absent and
 * optional; -1 with the reason on error. */
static int find_tensor(struct loader *L, const char *name, bool required, int n_dims, const int64_t *ne,
                       const struct gguf_tensor **out)
{
    const struct gguf_tensor *t = gguf_find_tensor(L->m->f, name);
    *out = NULL;
    if (!t) {
        if (!required)
            return 0;
        char want[96];
        fmt_shape(want, sizeof want, n_dims, ne);
        return err_set(L->e, ERR_CORRUPT, "%s: tensor '%s' is missing (architecture %s needs it, shape %s)", L->fname, name,
                       L->arch, want);
    }
    bool ok = true;
    for (int i = 0; i < GGUF_MAX_DIMS; i++)
        if (t->ne[i] != (i < n_dims ? ne[i] : 1))
            ok = false;
    if (!ok) {
        char want[96], got[96];
        fmt_shape(want, sizeof want, n_dims, ne);
        fmt_shape(got, sizeof got, t->n_dims, t->ne);
        return err_set(L->e, ERR_CORRUPT, "%s: tensor '%s' has shape %s, expected %s", L->fname, name, got, want);
    }
    if (!kern_type_supported(t->type))
        return err_set(L->e, ERR_CORRUPT, "%s: tensor '%s' has type %s, which the kernels cannot multiply", L->fname, name,
                       ggml_type_name(t->type));
    *out = t;
    return 0;
}

/* A matrix (n_dims 2) or a slab of n_expert matrices (n_dims 3, ne[2] =
 * n_expert): w describes the first. */
static int bind_mat(struct loader *L, const char *name, bool required, int n_dims, const int64_t *ne, struct wmat *w)
{
    const struct gguf_tensor *t;
    memset(w, 0, sizeof *w);
    if (find_tensor(L, name, required, n_dims, ne, &t) < 0)
        return -1;
    if (!t)
        return 0;
    if (ne[0] % ggml_blck_size(t->type) != 0)
        return err_set(L->e, ERR_CORRUPT, "%s: tensor '%s': row of %lld elements is not a multiple of %s's block of %lld",
                       L->fname, name, (long long)ne[0], ggml_type_name(t->type),
                       (long long)ggml_blck_size(t->type));
    *w = (struct wmat){t->type, t->data, ne[0], ne[1]};
    return 0;
}

/* A vector of n floats: the mapping itself when f32, else a converted copy. */
static int bind_vec(struct loader *L, const char *name, bool required, int64_t n, const float **out)
{
    const struct gguf_tensor *t;
    *out = NULL;
    if (find_tensor(L, name, required, 1, &n, &t) < 0)
        return -1;
    if (!t)
        return 0;
    if (t->type == GGML_TYPE_F32) {
        *out = t->data;
        return 0;
    }
    if (n % ggml_blck_size(t->type) != 0)
        return err_set(L->e, ERR_CORRUPT, "%s: tensor '%s': %lld elements is not a multiple of %s's block", L->fname, name,
                       (long long)n, ggml_type_name(t->type));
    struct model *m = L->m;
    float **grown = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *grown);
    if (!grown)
        return err_set(L->e, ERR_NOMEM, "%s: out of memory", L->fname);
    m->owned = grown;
    float *buf = malloc((size_t)n * sizeof *buf);
    if (!buf)
        return err_set(L->e, ERR_NOMEM, "%s: out of memory", L->fname);
    m->owned[m->n_owned++] = buf;
    kern_dequantize_row(t->type, t->data, buf, n);
    *out = buf;
    return 0;
}

/* Expert counts and widths: llama with experts (Mixtral) uses
 * feed_forward_length as the expert width; MoE architectures have their own
 * widths. Whether the top-k weights are renormalised is the architecture's
 * default unless expert_weights_norm says otherwise. */
static int load_moe_hparams(struct loader *L)
{
    struct model_hparams *hp = &L->m->hp;
    bool moe = hp->arch->flags & MODEL_ARCH_MOE;
    if (meta_int(L, "expert_count", moe, 0, 0, 4096, &hp->n_expert) < 0 ||
        meta_int(L, "expert_used_count", hp->n_expert > 0, 0, 0, hp->n_expert, &hp->n_expert_used) < 0)
        return -1;
    if (hp->n_expert == 0)
        return 0;
    if (hp->n_expert_used < 1)
        return err_set(L->e, ERR_CORRUPT, "%s: %s.expert_used_count is 0 with %d experts", L->fname, L->arch, hp->n_expert);
    hp->expert_weights_norm = hp->arch->flags & MODEL_ARCH_EXPERT_NORM;
    if (!moe) {
        if (hp->n_ff < 1)
            return err_set(L->e, ERR_CORRUPT, "%s: %s.feed_forward_length (the expert width) is 0", L->fname, L->arch);
        hp->n_ff_exp = hp->n_ff;
        hp->n_ff = 0;
        return 0;
    }
    if (meta_int(L, "expert_feed_forward_length", true, 0, 1, 1 << 24, &hp->n_ff_exp) < 0 ||
        meta_int(L, "expert_shared_feed_forward_length", false, 0, 0, 1 << 24, &hp->n_ff_shexp) < 0)
        return -1;
    char key[256];
    bool norm;
    int rc = get_arch_key(L, "expert_weights_norm", META_BOOL, &norm, key, sizeof key);
    if (rc < 0)
        return -1;
    if (rc)
        hp->expert_weights_norm = norm;
    hp->n_ff = 0;
    return 0;
}

/* RoPE scaling: rope.scaling.type none|linear (factor), or the older
 * rope.scale_linear; YaRN and others are refused rather than ignored. */
static int load_rope_scaling(struct loader *L)
{
    struct model_hparams *hp = &L->m->hp;
    char key[256];
    struct gguf_str st;
    int rc = get_arch_key(L, "rope.scaling.type", META_STR, &st, key, sizeof key);
    if (rc < 0)
        return -1;
    float factor = 1.0f;
    if (rc && gguf_str_eq(st, "linear")) {
        if (meta_float(L, "rope.scaling.factor", 1.0, 1e-6, 1e6, &factor) < 0)
            return -1;
    } else if (rc && !gguf_str_eq(st, "none")) {
        return err_set(L->e, ERR_CORRUPT, "%s: rope.scaling.type '%.*s' is not supported (only none and linear)", L->fname,
                       (int)(st.len > 64 ? 64 : st.len), st.ptr);
    } else if (!rc) {
        if (meta_float(L, "rope.scale_linear", 1.0, 1e-6, 1e6, &factor) < 0)
            return -1;
    }
    hp->rope_freq_scale = 1.0f / factor;
    return 0;
}

/* Pooling (<arch>.pooling_type, numbered as llama.cpp: none 0, mean 1,
 * cls 2, last 3, rank 4), and for an encoder its LayerNorm epsilon and
 * token-type count. */
static int load_embed_hparams(struct loader *L)
{
    struct model_hparams *hp = &L->m->hp;
    bool bert = hp->arch->flags & MODEL_ARCH_BERT;
    char key[256];
    int64_t v;
    int rc = get_arch_key(L, "pooling_type", META_INT, &v, key, sizeof key);
    if (rc < 0)
        return -1;
    if (rc && (v < MODEL_POOL_NONE || v > MODEL_POOL_RANK))
        return err_set(L->e, ERR_CORRUPT, "%s: metadata '%s' = %lld is not a pooling type (0 none, 1 mean, 2 cls, 3 last, 4 rank)",
                       L->fname, key, (long long)v);
    hp->pooling_meta = rc == 1;
    hp->pooling = rc ? (int)v : bert ? MODEL_POOL_MEAN : MODEL_POOL_LAST;
    if (!bert)
        return 0;
    hp->n_token_types = 2;
    rc = get_key(L, "tokenizer.ggml.token_type_count", META_INT, &v);
    if (rc < 0)
        return -1;
    if (rc && (v < 1 || v > 1 << 16))
        return err_set(L->e, ERR_CORRUPT, "%s: tokenizer.ggml.token_type_count = %lld is out of range [1, 65536]", L->fname,
                       (long long)v);
    if (rc)
        hp->n_token_types = (int)v;
    hp->n_cls_out = 1;
    const struct gguf_kv *labels;
    struct err e2;
    snprintf(key, sizeof key, "%s.classifier.output_labels", L->arch);
    if (gguf_get_arr(L->m->f, key, GGUF_VT_STRING, &labels, &e2) == 0 && labels->arr_n >= 1 && labels->arr_n <= 65536)
        hp->n_cls_out = (int)labels->arr_n;
    bool causal;
    rc = get_arch_key(L, "attention.causal", META_BOOL, &causal, key, sizeof key);
    if (rc < 0)
        return -1;
    if (rc && causal)
        return err_set(L->e, ERR_CORRUPT, "%s: %s = true: a causal BERT is not supported", L->fname, key);
    return meta_float(L, "attention.layer_norm_epsilon", 1e-12, 0, 1, &hp->rms_eps);
}

static int load_hparams(struct loader *L)
{
    struct model_hparams *hp = &L->m->hp;
    unsigned flags = hp->arch->flags;
    const int64_t BIG = 1 << 24;
    if (meta_int(L, "embedding_length", true, 0, 1, BIG, &hp->n_embd) < 0 ||
        meta_int(L, "block_count", true, 0, 1, 4096, &hp->n_layer) < 0 ||
        meta_int(L, "feed_forward_length", !(flags & MODEL_ARCH_MOE), 0, 0, BIG, &hp->n_ff) < 0 ||
        meta_int(L, "attention.head_count", true, 0, 1, 4096, &hp->n_head) < 0 ||
        meta_int(L, "attention.head_count_kv", false, hp->n_head, 1, hp->n_head, &hp->n_head_kv) < 0 ||
        meta_int(L, "context_length", false, (flags & MODEL_ARCH_BERT) ? 512 : 4096, 1, 1 << 30, &hp->n_ctx_train) < 0)
        return -1;
    if (load_moe_hparams(L) < 0)
        return -1;
    if (hp->n_expert == 0 && hp->n_ff < 1)
        return err_set(L->e, ERR_CORRUPT, "%s: %s.feed_forward_length is 0", L->fname, L->arch);
    if (hp->n_head % hp->n_head_kv != 0)
        return err_set(L->e, ERR_CORRUPT, "%s: %d attention heads are not a multiple of %d KV heads", L->fname, hp->n_head,
                       hp->n_head_kv);
    int def_hd = hp->n_embd / hp->n_head;
    if (!(flags & MODEL_ARCH_KEY_LENGTH) && hp->n_embd % hp->n_head != 0)
        return err_set(L->e, ERR_CORRUPT, "%s: embedding size %d is not a multiple of %d heads", L->fname, hp->n_embd,
                       hp->n_head);
    int vlen;
    if (meta_int(L, "attention.key_length", false, def_hd, 1, 65536, &hp->head_dim) < 0 ||
        meta_int(L, "attention.value_length", false, hp->head_dim, 1, 65536, &vlen) < 0)
        return -1;
    if (hp->head_dim < 1)
        return err_set(L->e, ERR_CORRUPT, "%s: head size is 0 (embedding %d, %d heads)", L->fname, hp->n_embd, hp->n_head);
    if (vlen != hp->head_dim)
        return err_set(L->e, ERR_CORRUPT, "%s: attention.value_length %d differs from key_length %d (not supported)", L->fname,
                       vlen, hp->head_dim);
    if (!(flags & MODEL_ARCH_HEAD_DIM_FREE) && hp->head_dim != def_hd)
        return err_set(L->e, ERR_CORRUPT, "%s: %s needs head size n_embd / n_head = %d, file declares %d", L->fname, L->arch, def_hd,
                       hp->head_dim);
    if (meta_int(L, "rope.dimension_count", false, hp->head_dim, 2, hp->head_dim, &hp->n_rot) < 0)
        return -1;
    if (hp->n_rot % 2)
        return err_set(L->e, ERR_CORRUPT, "%s: rope.dimension_count %d is odd", L->fname, hp->n_rot);
    if (meta_float(L, "attention.layer_norm_rms_epsilon", 1e-5, 0, 1, &hp->rms_eps) < 0 ||
        meta_float(L, "rope.freq_base", 10000.0, 1e-3, 1e12, &hp->rope_base) < 0 || load_rope_scaling(L) < 0)
        return -1;
    hp->rope_neox = flags & MODEL_ARCH_ROPE_NEOX;
    return load_embed_hparams(L);
}

static uint64_t mat_bytes(const struct wmat *w)
{
    return w->data ? (uint64_t)ggml_row_size(w->type, w->n_in) * (uint64_t)w->n_out : 0;
}

/* Binds table tensor t (of layer il when per layer) where the table says,
 * as need says: absent, optional or required. */
static int bind_tensor(struct loader *L, const struct model_tensor *t, int il, enum model_need need)
{
    if (need == MODEL_NEED_NONE)
        return 0;
    struct model *m = L->m;
    char name[128];
    model_tensor_name(t, il, name, sizeof name);
    char *base = t->per_layer ? (char *)&m->layers[il] : (char *)m;
    int64_t ne[3];
    for (int i = 0; i < 3; i++)
        ne[i] = model_dim(&m->hp, t->ne[i]);
    bool required = need == MODEL_NEED_REQUIRED;
    if (t->n_dims == 1)
        return bind_vec(L, name, required, ne[0], (const float **)(void *)(base + t->bind));
    return bind_mat(L, name, required, t->n_dims, ne, (struct wmat *)(void *)(base + t->bind));
}

/* Layer il's tensors. An expert router in a dense model is refused; a layer
 * of a MoE model has a shared expert when its file has the shared expert's
 * gate. */
static int load_layer(struct loader *L, int il, const struct model_tensor *ts, size_t n_ts)
{
    struct model *m = L->m;
    const struct model_hparams *hp = &m->hp;
    struct layer *ly = &m->layers[il];
    char name[128];
    bool shared = false;
    if (hp->n_expert == 0) {
        snprintf(name, sizeof name, "blk.%d.ffn_gate_inp.weight", il);
        if (gguf_find_tensor(m->f, name))
            return err_set(L->e, ERR_CORRUPT, "%s: tensor '%s' (an expert router) in a model whose %s.expert_count is 0",
                           L->fname, name, L->arch);
    } else {
        snprintf(name, sizeof name, "blk.%d.ffn_gate_inp_shexp.weight", il);
        shared = gguf_find_tensor(m->f, name) != NULL;
        if (shared && hp->n_ff_shexp < 1)
            return err_set(L->e, ERR_CORRUPT,
                           "%s: layer %d has a shared expert but %s.expert_shared_feed_forward_length is missing", L->fname,
                           il, L->arch);
    }
    for (size_t i = 0; i < n_ts; i++) {
        const struct model_tensor *t = &ts[i];
        if (!t->per_layer)
            continue;
        enum model_need need = model_tensor_need(hp->arch, t, hp);
        if (t->group == MODEL_GROUP_SHARED)
            need = shared ? MODEL_NEED_REQUIRED : MODEL_NEED_NONE;
        if (bind_tensor(L, t, il, need) < 0)
            return -1;
    }
    ly->gate_stride = (size_t)mat_bytes(&ly->gate_exps);
    ly->up_stride = (size_t)mat_bytes(&ly->up_exps);
    ly->down_stride = (size_t)mat_bytes(&ly->down_exps);
    /* q/k norm needs both or neither */
    if (!ly->q_norm != !ly->k_norm)
        return err_set(L->e, ERR_CORRUPT, "%s: layer %d has only one of attn_q_norm / attn_k_norm", L->fname, il);
    return 0;
}

/* theta_i = pos * freq_scale * base^(-2i/n_rot) / factor_i */
static int rope_frequencies(struct loader *L)
{
    struct model *m = L->m;
    struct model_hparams *hp = &m->hp;
    int half = hp->n_rot / 2;
    m->inv_freq = malloc((size_t)half * sizeof *m->inv_freq);
    if (!m->inv_freq)
        return err_set(L->e, ERR_NOMEM, "%s: out of memory", L->fname);
    const float *ff = m->rope_freqs;
    hp->rope_freq_factors = ff != NULL;
    for (int i = 0; i < half; i++) {
        double f = hp->rope_freq_scale * pow((double)hp->rope_base, -2.0 * i / hp->n_rot);
        if (ff) {
            if (!(ff[i] > 0))
                return err_set(L->e, ERR_CORRUPT, "%s: rope_freqs.weight[%d] = %g is not positive", L->fname, i, ff[i]);
            f /= ff[i];
        }
        m->inv_freq[i] = f;
    }
    return 0;
}

/* The vocabulary size comes from token_embd's shape; every other tensor's
 * shape follows from the hyper-parameters. An absent output matrix means
 * it is tied to token_embd. */
static int load_tensors(struct loader *L)
{
    struct model *m = L->m;
    struct model_hparams *hp = &m->hp;
    const struct gguf_tensor *te = gguf_find_tensor(m->f, "token_embd.weight");
    if (!te)
        return err_set(L->e, ERR_CORRUPT, "%s: tensor 'token_embd.weight' is missing (architecture %s needs it, shape [%d, n_vocab])",
                       L->fname, L->arch, hp->n_embd);
    if (te->n_dims != 2 || te->ne[0] != hp->n_embd || te->ne[1] < 1 || te->ne[1] > INT32_MAX) {
        char got[96];
        fmt_shape(got, sizeof got, te->n_dims, te->ne);
        return err_set(L->e, ERR_CORRUPT, "%s: tensor 'token_embd.weight' has shape %s, expected [%d, n_vocab]", L->fname, got,
                       hp->n_embd);
    }
    hp->n_vocab = (int)te->ne[1];
    size_t n_ts;
    const struct model_tensor *ts = model_tensors(&n_ts);
    for (size_t i = 0; i < n_ts; i++) {
        const struct model_tensor *t = &ts[i];
        enum model_need need = t->group == MODEL_GROUP_OUTPUT ? MODEL_NEED_OPTIONAL : model_tensor_need(hp->arch, t, hp);
        if (!t->per_layer && bind_tensor(L, t, -1, need) < 0)
            return -1;
    }
    hp->tied_output = m->output.data == NULL;
    if (hp->tied_output)
        m->output = m->tok_embd;

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers)
        return err_set(L->e, ERR_NOMEM, "%s: out of memory", L->fname);
    for (int il = 0; il < hp->n_layer; il++)
        if (load_layer(L, il, ts, n_ts) < 0)
            return -1;
    return rope_frequencies(L);
}

/* Binds an opened file, which the model takes over (closed by model_free, or
 * at once on failure). */
static struct model *load_gguf(struct gguf_file *f, struct err *e)
{
    struct model *m = calloc(1, sizeof *m);
    if (!m) {
        gguf_close(f);
        err_set(e, ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->f = f;
    kernels_init();
    struct loader L = {m, gguf_name(f), NULL, e};
    struct gguf_str arch;
    struct err e2;
    int rc = get_key(&L, "general.architecture", META_STR, &arch);
    if (rc == 0)
        err_set(e, ERR_CORRUPT, "%s: metadata key 'general.architecture' is missing", L.fname);
    if (rc <= 0)
        goto fail;
    if (!(m->hp.arch = model_arch_find(arch.ptr, arch.len, &e2))) {
        err_set(e, ERR_CORRUPT, "%s: %s", L.fname, e2.msg);
        goto fail;
    }
    m->hp.arch_name = L.arch = m->hp.arch->name;
    if (load_hparams(&L) < 0 || load_tensors(&L) < 0)
        goto fail;
    return m;
fail:
    model_free(m);
    return NULL;
}

struct model *model_load(const char *path, struct err *e)
{
    /* MAAS_WEIGHTS=map keeps the file mapped (shared with other processes
     * through the page cache) instead of a huge-page copy. */
    const char *how = getenv("MAAS_WEIGHTS");
    struct gguf_file *f = how && !strcmp(how, "map") ? gguf_open(path, e) : gguf_open_copy(path, e);
    if (!f)
        return NULL;
    return load_gguf(f, e);
}

static void free_scratch(struct model *m)
{
    maas_free_aligned(m->x);
    maas_free_aligned(m->xn);
    maas_free_aligned(m->q);
    maas_free_aligned(m->k);
    maas_free_aligned(m->v);
    maas_free_aligned(m->att);
    maas_free_aligned(m->ff_a);
    maas_free_aligned(m->ff_b);
    maas_free_aligned(m->rope_cos);
    maas_free_aligned(m->rope_sin);
    maas_free_aligned(m->wbuf);
    maas_free_aligned(m->router);
    maas_free_aligned(m->moe_x);
    maas_free_aligned(m->moe_a);
    maas_free_aligned(m->moe_b);
    maas_free_aligned(m->moe_out);
    maas_free_aligned(m->moe_tok);
    maas_free_aligned(m->moe_w);
    maas_free_aligned(m->moe_count);
    maas_free_aligned(m->moe_sel);
    maas_free_aligned(m->moe_selw);
    maas_free_aligned(m->moe_mm);
    m->moe_mm = NULL;
    m->router = m->moe_x = m->moe_a = m->moe_b = m->moe_out = m->moe_w = m->moe_selw = NULL;
    m->moe_tok = m->moe_count = m->moe_sel = NULL;
    m->x = m->xn = m->q = m->k = m->v = m->att = m->ff_a = m->ff_b = m->rope_cos = m->rope_sin = NULL;
    m->wbuf = NULL;
    m->wbuf_size = 0;
    m->max_batch = 0;
}

void model_free(struct model *m)
{
    if (!m)
        return;
    free_scratch(m);
    kv_free(m->embd_kv);
    for (int i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->inv_freq);
    gguf_close(m->f);
    free(m);
}

const struct model_hparams *model_hparams(const struct model *m)
{
    return &m->hp;
}

const struct gguf_file *model_gguf(const struct model *m)
{
    return m->f;
}

uint64_t model_weight_bytes_per_token(const struct model *m)
{
    uint64_t b = ggml_row_size(m->tok_embd.type, m->tok_embd.n_in) + mat_bytes(&m->output);
    for (int i = 0; i < m->hp.n_layer; i++) {
        const struct layer *l = &m->layers[i];
        b += mat_bytes(&l->wq) + mat_bytes(&l->wk) + mat_bytes(&l->wv) + mat_bytes(&l->wo) + mat_bytes(&l->gate) +
             mat_bytes(&l->up) + mat_bytes(&l->down);
        if (l->gate_inp.data)
            b += mat_bytes(&l->gate_inp) + mat_bytes(&l->gate_sh) + mat_bytes(&l->up_sh) + mat_bytes(&l->down_sh) +
                 (uint64_t)m->hp.n_expert_used * (l->gate_stride + l->up_stride + l->down_stride);
        b += 2 * (uint64_t)m->hp.n_embd * sizeof(float);
    }
    return b;
}

uint64_t model_n_params(const struct model *m)
{
    uint64_t n = 0;
    for (size_t i = 0; i < gguf_n_tensors(m->f); i++)
        n += (uint64_t)gguf_tensor_nelements(gguf_tensor_at(m->f, i));
    return n;
}

uint64_t model_n_active_params(const struct model *m)
{
    uint64_t n = 0;
    for (size_t i = 0; i < gguf_n_tensors(m->f); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(m->f, i);
        uint64_t ne = (uint64_t)gguf_tensor_nelements(t);
        if (m->hp.n_expert > 0 && strstr(t->name, "_exps."))
            ne = ne / (uint64_t)m->hp.n_expert * (uint64_t)m->hp.n_expert_used;
        n += ne;
    }
    return n;
}

int model_reserve(struct model *m, int max_batch, struct pool *pool, struct err *e)
{
    const struct model_hparams *hp = &m->hp;
    if (max_batch < 1 || max_batch > (1 << 20))
        return err_set(e, ERR_CORRUPT, "model: batch size %d is out of range [1, %d]", max_batch, 1 << 20);
    free_scratch(m);
    m->pool = pool;
    size_t B = (size_t)max_batch, QD = (size_t)hp->n_head * hp->head_dim, KD = (size_t)hp->n_head_kv * hp->head_dim;
    size_t fl = sizeof(float);
    m->x = maas_alloc_aligned(B * hp->n_embd * fl);
    m->xn = maas_alloc_aligned(B * hp->n_embd * fl);
    m->q = maas_alloc_aligned(B * QD * fl);
    m->k = maas_alloc_aligned(B * KD * fl);
    m->v = maas_alloc_aligned(B * KD * fl);
    m->att = maas_alloc_aligned(B * QD * fl);
    m->ff_a = maas_alloc_aligned(B * hp->n_ff * fl);
    m->ff_b = maas_alloc_aligned(B * hp->n_ff * fl);
    m->rope_cos = maas_alloc_aligned(B * (size_t)(hp->n_rot / 2) * fl);
    m->rope_sin = maas_alloc_aligned(B * (size_t)(hp->n_rot / 2) * fl);
    /* wbuf: the largest of the single matmuls and of forward.c's groups
     * (q, k, v; gate and up; every chosen expert's gate and up, or down, in
     * one kern_matmul_multi), each bounded by kern_matmul_wsize_bound */
    size_t ws = kern_matmul_wsize(m->output.type, m->output.n_in, max_batch);
    if (m->cls.data) {
        size_t a = kern_matmul_wsize(m->cls.type, m->cls.n_in, max_batch),
               b = kern_matmul_wsize(m->cls_out.type, m->cls_out.n_in, max_batch);
        ws = a > ws ? a : ws;
        ws = b > ws ? b : ws;
    }
    for (int i = 0; i < hp->n_layer; i++) {
        const struct layer *l = &m->layers[i];
        const struct wmat *ws_of[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->gate, &l->up, &l->down,
                                      &l->gate_inp, &l->gate_sh, &l->up_sh, &l->down_sh};
        for (size_t j = 0; j < sizeof ws_of / sizeof *ws_of; j++) {
            if (!ws_of[j]->data)
                continue;
            size_t s = kern_matmul_wsize(ws_of[j]->type, ws_of[j]->n_in, max_batch);
            ws = s > ws ? s : ws;
        }
        const struct wmat *groups[][3] = {{&l->wq, &l->wk, &l->wv}, {&l->gate, &l->up, NULL},
                                          {&l->gate_sh, &l->up_sh, NULL}};
        for (size_t g = 0; g < sizeof groups / sizeof *groups; g++) {
            size_t s = 0;
            for (int j = 0; j < 3; j++)
                if (groups[g][j] && groups[g][j]->data)
                    s += kern_matmul_wsize_bound(groups[g][j]->type, groups[g][j]->n_in, max_batch, 1);
            ws = s > ws ? s : ws;
        }
        if (l->gate_exps.data) {
            /* each token's rows go to n_expert_used experts */
            int64_t rows = (int64_t)max_batch * hp->n_expert_used;
            size_t gu = kern_matmul_wsize_bound(l->gate_exps.type, l->gate_exps.n_in, rows, hp->n_expert) +
                        kern_matmul_wsize_bound(l->up_exps.type, l->up_exps.n_in, rows, hp->n_expert);
            size_t dn = kern_matmul_wsize_bound(l->down_exps.type, l->down_exps.n_in, rows, hp->n_expert);
            ws = gu > ws ? gu : ws;
            ws = dn > ws ? dn : ws;
        }
    }
    m->wbuf = maas_alloc_aligned(ws);
    m->wbuf_size = ws;
    bool moe_ok = true;
    if (hp->n_expert > 0) {
        size_t R = B * (size_t)hp->n_expert_used;
        size_t FW = (size_t)(hp->n_ff_exp > hp->n_ff_shexp ? hp->n_ff_exp : hp->n_ff_shexp);
        m->router = maas_alloc_aligned(B * hp->n_expert * fl);
        m->moe_x = maas_alloc_aligned(R * hp->n_embd * fl);
        m->moe_a = maas_alloc_aligned(R * FW * fl);
        m->moe_b = maas_alloc_aligned(R * FW * fl);
        m->moe_out = maas_alloc_aligned(B * hp->n_embd * fl);
        m->moe_tok = maas_alloc_aligned(R * sizeof(int32_t));
        m->moe_w = maas_alloc_aligned(R * fl);
        m->moe_count = maas_alloc_aligned((size_t)(hp->n_expert + 1) * sizeof(int32_t));
        m->moe_sel = maas_alloc_aligned(R * sizeof(int32_t));
        m->moe_selw = maas_alloc_aligned(R * fl);
        m->moe_mm = maas_alloc_aligned((size_t)(2 * hp->n_expert) * sizeof *m->moe_mm);
        moe_ok = m->router && m->moe_x && m->moe_a && m->moe_b && m->moe_out && m->moe_tok && m->moe_w &&
                 m->moe_count && m->moe_sel && m->moe_selw && m->moe_mm;
    }
    if (!moe_ok || !m->x || !m->xn || !m->q || !m->k || !m->v || !m->att || !m->ff_a || !m->ff_b || !m->rope_cos ||
        !m->rope_sin || !m->wbuf) {
        free_scratch(m);
        return err_set(e, ERR_NOMEM, "model: out of memory for the scratch of a %d-token batch", max_batch);
    }
    m->max_batch = max_batch;
    return 0;
}

int model_max_batch(const struct model *m)
{
    return m->max_batch;
}
