/*
 * Checkpoints and trained models as GGUF files (see train.h).
 */
#include "train/train.h"

#include <stdlib.h>
#include <string.h>

int train_hist_push(struct train_hist *h, int64_t step, double loss)
{
    if (h->n == h->cap) {
        int cap = h->cap ? 2 * h->cap : 256;
        int32_t *s = realloc(h->step, (size_t)cap * sizeof *s);
        if (!s)
            return -1;
        h->step = s;
        float *l = realloc(h->loss, (size_t)cap * sizeof *l);
        if (!l)
            return -1;
        h->loss = l, h->cap = cap;
    }
    h->step[h->n] = (int32_t)step;
    h->loss[h->n++] = (float)loss;
    return 0;
}

void train_meta_release(struct train_meta *m)
{
    free(m->loss.step), free(m->loss.loss), free(m->val.step), free(m->val.loss);
    memset(&m->loss, 0, sizeof m->loss);
    memset(&m->val, 0, sizeof m->val);
}

/* the settings and history as train.* keys */
static int put_meta(struct gguf_writer *w, const struct train_meta *m)
{
    int rc = 0;
    rc |= gguf_writer_set_u64(w, "train.seed", m->seed);
    rc |= gguf_writer_set_u32(w, "train.batch", (uint32_t)m->batch);
    rc |= gguf_writer_set_u32(w, "train.ctx", (uint32_t)m->ctx);
    rc |= gguf_writer_set_u64(w, "train.step", (uint64_t)m->step);
    rc |= gguf_writer_set_u32(w, "train.steps", (uint32_t)m->opt.steps);
    rc |= gguf_writer_set_u32(w, "train.warmup", (uint32_t)m->opt.warmup);
    double f[] = {m->opt.lr, m->opt.lr_min, m->opt.beta1, m->opt.beta2, m->opt.eps, m->opt.weight_decay,
                  m->opt.clip, m->aux_coef, m->seconds};
    rc |= gguf_writer_set_arr(w, "train.hyper", GGUF_VT_FLOAT64, f, sizeof f / sizeof *f);
    rc |= gguf_writer_set_u64(w, "train.tokens", m->tokens);
    rc |= gguf_writer_set_arr(w, "train.loss.step", GGUF_VT_INT32, m->loss.step, (uint64_t)m->loss.n);
    rc |= gguf_writer_set_arr(w, "train.loss.value", GGUF_VT_FLOAT32, m->loss.loss, (uint64_t)m->loss.n);
    rc |= gguf_writer_set_arr(w, "train.val.step", GGUF_VT_INT32, m->val.step, (uint64_t)m->val.n);
    rc |= gguf_writer_set_arr(w, "train.val.value", GGUF_VT_FLOAT32, m->val.loss, (uint64_t)m->val.n);
    return rc ? -1 : 0;
}

static int add_tensor(struct gguf_writer *w, const char *prefix, const struct train_tensor *t, const float *base,
                      struct err *e)
{
    char name[96];
    snprintf(name, sizeof name, "%s%s", prefix, t->name);
    int64_t ne[GGUF_MAX_DIMS] = {t->ne[0], t->ne[1], t->ne[2], 1};
    return gguf_writer_add_tensor(w, name, GGML_TYPE_F32, t->n_dims, ne, base + t->off, t->n * sizeof(float), e);
}

int train_write(const char *path, const struct gguf_file *src, const struct train_layout *l, const float *P,
                const float *M, const float *V, const struct train_meta *meta, struct err *e)
{
    struct gguf_writer *w = gguf_writer_new();
    if (!w)
        return err_set(e, ERR_NOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < gguf_n_kv(src) && rc == 0; i++) {
        const struct gguf_kv *kv = gguf_kv_at(src, i);
        if (strncmp(kv->key, "train.", 6) != 0)
            rc = gguf_writer_copy_kv(w, kv);
    }
    rc |= gguf_writer_set_u32(w, "general.file_type", 0); /* all f32 */
    if (meta)
        rc |= put_meta(w, meta);
    if (rc != 0) {
        gguf_writer_free(w);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < l->n_t && rc == 0; i++) {
        rc = add_tensor(w, "", &l->t[i], P, e);
        if (rc == 0 && meta)
            rc = add_tensor(w, "train.m.", &l->t[i], M, e) || add_tensor(w, "train.v.", &l->t[i], V, e) ? -1 : 0;
    }
    if (rc == 0)
        rc = gguf_writer_write(w, path, e);
    gguf_writer_free(w);
    return rc;
}

static int get_tensor(const struct gguf_file *f, const char *prefix, const struct train_tensor *t, float *base,
                      struct err *e)
{
    char name[96];
    snprintf(name, sizeof name, "%s%s", prefix, t->name);
    const struct gguf_tensor *g = gguf_find_tensor(f, name);
    if (!g)
        return err_set(e, ERR_INVALID, "%s: no tensor '%s'", gguf_name(f), name);
    if (g->type != GGML_TYPE_F32 || g->ne[0] != t->ne[0] || g->ne[1] != t->ne[1] || g->ne[2] != t->ne[2])
        return err_set(e, ERR_INVALID,
                       "%s: tensor '%s' is %s [%lld, %lld, %lld]; training needs f32 [%lld, %lld, %lld] (train from an "
                       "f32 file)",
                       gguf_name(f), name, ggml_type_name(g->type), (long long)g->ne[0], (long long)g->ne[1],
                       (long long)g->ne[2], (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2]);
    memcpy(base + t->off, g->data, t->n * sizeof(float));
    return 0;
}

static int get_int(const struct gguf_file *f, const char *key, int64_t *v, struct err *e)
{
    if (gguf_get_int(f, key, v, e) != 0)
        return err_prefix(e, "%s: not a checkpoint", gguf_name(f)), -1;
    return 0;
}

static int get_hist(const struct gguf_file *f, const char *skey, const char *vkey, struct train_hist *h,
                    struct err *e)
{
    const struct gguf_kv *s, *v;
    if (gguf_get_arr(f, skey, GGUF_VT_INT32, &s, e) != 0 || gguf_get_arr(f, vkey, GGUF_VT_FLOAT32, &v, e) != 0)
        return err_prefix(e, "%s: not a checkpoint", gguf_name(f)), -1;
    if (s->arr_n != v->arr_n)
        return err_set(e, ERR_INVALID, "%s: %s and %s differ in length", gguf_name(f), skey, vkey);
    for (uint64_t i = 0; i < s->arr_n; i++)
        if (train_hist_push(h, gguf_arr_int(s, i), gguf_arr_float(v, i)) != 0)
            return err_set(e, ERR_NOMEM, "out of memory");
    return 0;
}

static int get_meta(const struct gguf_file *f, struct train_meta *m, struct err *e)
{
    int64_t seed, batch, ctx, step, steps, warmup, tokens;
    if (get_int(f, "train.seed", &seed, e) || get_int(f, "train.batch", &batch, e) ||
        get_int(f, "train.ctx", &ctx, e) || get_int(f, "train.step", &step, e) ||
        get_int(f, "train.steps", &steps, e) || get_int(f, "train.warmup", &warmup, e) ||
        get_int(f, "train.tokens", &tokens, e))
        return -1;
    const struct gguf_kv *hy;
    if (gguf_get_arr(f, "train.hyper", GGUF_VT_FLOAT64, &hy, e) != 0)
        return err_prefix(e, "%s: not a checkpoint", gguf_name(f)), -1;
    if (hy->arr_n != 9 || batch < 1 || ctx < 1 || step < 0 || steps < 1 || warmup < 0)
        return err_set(e, ERR_INVALID, "%s: the train.* settings are out of range", gguf_name(f));
    m->seed = (uint64_t)seed, m->batch = (int)batch, m->ctx = (int)ctx, m->step = step, m->tokens = (uint64_t)tokens;
    m->opt.steps = (int)steps, m->opt.warmup = (int)warmup;
    m->opt.lr = gguf_arr_float(hy, 0), m->opt.lr_min = gguf_arr_float(hy, 1), m->opt.beta1 = gguf_arr_float(hy, 2);
    m->opt.beta2 = gguf_arr_float(hy, 3), m->opt.eps = gguf_arr_float(hy, 4);
    m->opt.weight_decay = gguf_arr_float(hy, 5), m->opt.clip = gguf_arr_float(hy, 6);
    m->aux_coef = gguf_arr_float(hy, 7), m->seconds = gguf_arr_float(hy, 8);
    return get_hist(f, "train.loss.step", "train.loss.value", &m->loss, e) ||
                   get_hist(f, "train.val.step", "train.val.value", &m->val, e)
               ? -1
               : 0;
}

int train_read(const struct gguf_file *f, const struct train_layout *l, float *P, float *M, float *V,
               struct train_meta *meta, struct err *e)
{
    for (int i = 0; i < l->n_t; i++) {
        if (get_tensor(f, "", &l->t[i], P, e) != 0)
            return -1;
        if (M && (get_tensor(f, "train.m.", &l->t[i], M, e) != 0 || get_tensor(f, "train.v.", &l->t[i], V, e) != 0))
            return -1;
    }
    return meta ? get_meta(f, meta, e) : 0;
}
