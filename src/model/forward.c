/*
 * The batched forward pass. Every weight matrix is applied to all of the
 * batch's tokens in one kern_matmul call, so its bytes are read once per
 * step however many sequences the batch holds. Between the matmuls, the
 * per-token work (norms, biases, RoPE, the K/V store, attention, SwiGLU) is
 * split over the pool's threads by rows or by (token, head).
 *
 * Per layer:
 *   xn = rmsnorm(x) * attn_norm                 (fused with x += previous output)
 *   q, k, v = xn Wq, xn Wk, xn Wv  (+ biases; per-head q/k norm; RoPE)
 *   K/V of each token stored at its position through its block table
 *   att = softmax(q k^T / sqrt(hd)) v over positions 0..pos of its sequence
 *   x += att Wo;  xn = rmsnorm(x) * ffn_norm
 *   x += (silu(xn Wg) * (xn Wu)) Wd
 * then logits = rmsnorm(x) * output_norm Wout for the flagged tokens only.
 */
#include "model/model_int.h"

#include <math.h>
#include <string.h>

struct fwd {
    struct model *m;
    struct kv_cache *kv;
    const struct batch *b;
    const struct layer *ly;
    int layer;
    const float *norm_w;      /* norm weight of the current rows step */
    bool add;                 /* rows step: x += xn first */
    void (*attn)(const struct attn_args *);
    void (*store16)(uint16_t *, const float *, int);
};

/* Runs fn over the pool, or on this thread alone when there is too little
 * work to be worth waking the others. */
static void run(struct model *m, pool_fn fn, struct fwd *f, int64_t n_items)
{
    if (!m->pool || n_items < 2)
        fn(f, 0, 1);
    else
        pool_run(m->pool, fn, f);
}

/* x += xn (if add); xn = rmsnorm(x) * w, for this thread's rows. */
static void step_norm(void *ctx, int ith, int nth)
{
    struct fwd *f = ctx;
    struct model *m = f->m;
    int64_t E = m->hp.n_embd, lo, hi;
    split_range(f->b->n_tokens, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        float *x = m->x + i * E, *xn = m->xn + i * E;
        if (f->add)
            kern_add(x, xn, E);
        kern_rmsnorm(xn, x, f->norm_w, E, m->hp.rms_eps);
    }
}

static inline void rope(float *x, int n_head, int hd, int n_rot, bool neox, const float *c, const float *s)
{
    int half = n_rot / 2;
    for (int h = 0; h < n_head; h++) {
        float *v = x + (size_t)h * hd;
        for (int i = 0; i < half; i++) {
            int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * c[i] - x1 * s[i];
            v[b] = x0 * s[i] + x1 * c[i];
        }
    }
}

/* Biases, per-head q/k norms, RoPE, and the store of K and V into the cache. */
static void step_qkv(void *ctx, int ith, int nth)
{
    struct fwd *f = ctx;
    struct model *m = f->m;
    const struct model_hparams *hp = &m->hp;
    const struct layer *ly = f->ly;
    struct kv_cache *kv = f->kv;
    int hd = hp->head_dim, nh = hp->n_head, nkv = hp->n_head_kv, half = hp->n_rot / 2;
    int64_t QD = (int64_t)nh * hd, KD = (int64_t)nkv * hd, lo, hi;
    split_range(f->b->n_tokens, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        const struct batch_token *t = &f->b->tokens[i];
        float *q = m->q + i * QD, *k = m->k + i * KD, *v = m->v + i * KD;
        if (ly->bq)
            kern_add(q, ly->bq, QD);
        if (ly->bk)
            kern_add(k, ly->bk, KD);
        if (ly->bv)
            kern_add(v, ly->bv, KD);
        if (ly->q_norm) {
            for (int h = 0; h < nh; h++)
                kern_rmsnorm(q + h * hd, q + h * hd, ly->q_norm, hd, hp->rms_eps);
            for (int h = 0; h < nkv; h++)
                kern_rmsnorm(k + h * hd, k + h * hd, ly->k_norm, hd, hp->rms_eps);
        }
        const float *c = m->rope_cos + i * half, *s = m->rope_sin + i * half;
        rope(q, nh, hd, hp->n_rot, hp->rope_neox, c, s);
        rope(k, nkv, hd, hp->n_rot, hp->rope_neox, c, s);
        const struct batch_seq *sq = &f->b->seqs[t->seq];
        int block = sq->blocks[t->pos / kv->block_size], slot = t->pos % kv->block_size;
        for (int h = 0; h < nkv; h++) {
            size_t off = kv_offset(kv, f->layer, block, h, slot);
            if (kv->type == GGML_TYPE_F16) {
                f->store16((uint16_t *)kv->k + off, k + h * hd, hd);
                f->store16((uint16_t *)kv->v + off, v + h * hd, hd);
            } else {
                memcpy((float *)kv->k + off, k + h * hd, (size_t)hd * sizeof(float));
                memcpy((float *)kv->v + off, v + h * hd, (size_t)hd * sizeof(float));
            }
        }
    }
}

/* Attention, one (token, query head) pair per item; a thread's items are
 * contiguous, so the query heads that share a KV head run back to back and
 * find its keys in cache. */
static void step_attn(void *ctx, int ith, int nth)
{
    struct fwd *f = ctx;
    struct model *m = f->m;
    const struct model_hparams *hp = &m->hp;
    struct kv_cache *kv = f->kv;
    int hd = hp->head_dim, nh = hp->n_head, group = hp->n_head / hp->n_head_kv;
    int64_t QD = (int64_t)nh * hd, lo, hi;
    split_range((int64_t)f->b->n_tokens * nh, ith, nth, &lo, &hi);
    size_t stride = (size_t)kv->n_head_kv * kv->block_size * kv->head_dim;
    for (int64_t it = lo; it < hi; it++) {
        int64_t i = it / nh;
        int h = (int)(it % nh), hk = h / group;
        const struct batch_token *t = &f->b->tokens[i];
        size_t base = kv_offset(kv, f->layer, 0, hk, 0) * kv->elt;
        struct attn_args a = {
            .q = m->q + i * QD + (int64_t)h * hd,
            .out = m->att + i * QD + (int64_t)h * hd,
            .k = (const char *)kv->k + base,
            .v = (const char *)kv->v + base,
            .block_stride = stride,
            .blocks = f->b->seqs[t->seq].blocks,
            .n_pos = t->pos + 1,
            .block_size = kv->block_size,
            .head_dim = hd,
            .scale = 1.0f / sqrtf((float)hd),
        };
        f->attn(&a);
    }
}

static void step_swiglu(void *ctx, int ith, int nth)
{
    struct fwd *f = ctx;
    struct model *m = f->m;
    int64_t F = m->hp.n_ff, lo, hi;
    split_range(f->b->n_tokens, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        kern_swiglu(m->ff_a + i * F, m->ff_a + i * F, m->ff_b + i * F, F);
}

static void matmul(struct model *m, const struct wmat *w, const float *x, int64_t n_tok, float *y, int64_t ldy)
{
    kern_matmul(m->pool, w->type, w->data, w->n_out, w->n_in, x, n_tok, y, ldy, m->wbuf);
}

static int check_batch(const struct model *m, const struct kv_cache *kv, const struct batch *b, struct err *e)
{
    if (m->max_batch == 0)
        return err_set(e, "model_forward: no scratch reserved (call model_reserve first)");
    if (b->n_tokens < 1 || b->n_tokens > m->max_batch)
        return err_set(e, "model_forward: batch of %d tokens is outside 1..%d (the reserved maximum)", b->n_tokens,
                       m->max_batch);
    if (kv->n_layer != m->hp.n_layer || kv->n_head_kv != m->hp.n_head_kv || kv->head_dim != m->hp.head_dim)
        return err_set(e, "model_forward: the KV cache was made for another model");
    for (int i = 0; i < b->n_tokens; i++) {
        const struct batch_token *t = &b->tokens[i];
        if (t->token < 0 || t->token >= m->hp.n_vocab)
            return err_set(e, "model_forward: batch token %d: id %d is outside the vocabulary of %d", i,
                           (int)t->token, m->hp.n_vocab);
        if (t->seq < 0 || t->seq >= b->n_seqs)
            return err_set(e, "model_forward: batch token %d: sequence %d is outside 0..%d", i, (int)t->seq,
                           b->n_seqs - 1);
        const struct batch_seq *s = &b->seqs[t->seq];
        if (t->pos < 0 || t->pos / kv->block_size >= s->n_blocks)
            return err_set(e, "model_forward: batch token %d: position %d is outside sequence %d's %d blocks of %d",
                           i, (int)t->pos, (int)t->seq, s->n_blocks, kv->block_size);
        for (int j = 0; j <= t->pos / kv->block_size; j++)
            if (s->blocks[j] < 0 || s->blocks[j] >= kv->n_blocks)
                return err_set(e, "model_forward: sequence %d: block table entry %d = %d is outside 0..%d",
                               (int)t->seq, j, (int)s->blocks[j], kv->n_blocks - 1);
    }
    return 0;
}

int model_forward(struct model *m, struct kv_cache *kv, const struct batch *b, float *logits_out, struct err *e)
{
    if (check_batch(m, kv, b, e) < 0)
        return -1;
    const struct model_hparams *hp = &m->hp;
    int n = b->n_tokens;
    int64_t E = hp->n_embd, QD = (int64_t)hp->n_head * hp->head_dim, KD = (int64_t)hp->n_head_kv * hp->head_dim;
    int64_t F = hp->n_ff;
    bool avx2 = kernels_isa() >= KERN_AVX2;
    struct fwd f = {.m = m, .kv = kv, .b = b};
    if (kv->type == GGML_TYPE_F16)
        f.attn = avx2 ? attn_head_f16_avx2 : attn_head_f16_ref;
    else
        f.attn = avx2 ? attn_head_f32_avx2 : attn_head_f32_ref;
    f.store16 = avx2 ? store_f16_avx2 : store_f16_ref;

    /* embeddings and this batch's RoPE angles (computed in double, once) */
    size_t erow = ggml_row_size(m->tok_embd.type, E);
    int half = hp->n_rot / 2;
    for (int i = 0; i < n; i++) {
        const struct batch_token *t = &b->tokens[i];
        kern_dequantize_row(m->tok_embd.type, (const char *)m->tok_embd.data + (size_t)t->token * erow,
                            m->x + (int64_t)i * E, E);
        for (int j = 0; j < half; j++) {
            double th = (double)t->pos * m->inv_freq[j];
            m->rope_cos[(int64_t)i * half + j] = (float)cos(th);
            m->rope_sin[(int64_t)i * half + j] = (float)sin(th);
        }
    }

    for (int il = 0; il < hp->n_layer; il++) {
        const struct layer *ly = &m->layers[il];
        f.ly = ly;
        f.layer = il;
        f.norm_w = ly->attn_norm;
        f.add = il > 0;
        run(m, step_norm, &f, n);
        matmul(m, &ly->wq, m->xn, n, m->q, QD);
        matmul(m, &ly->wk, m->xn, n, m->k, KD);
        matmul(m, &ly->wv, m->xn, n, m->v, KD);
        run(m, step_qkv, &f, n);
        run(m, step_attn, &f, (int64_t)n * hp->n_head);
        matmul(m, &ly->wo, m->att, n, m->xn, E);
        f.norm_w = ly->ffn_norm;
        f.add = true;
        run(m, step_norm, &f, n);
        matmul(m, &ly->gate, m->xn, n, m->ff_a, F);
        matmul(m, &ly->up, m->xn, n, m->ff_b, F);
        run(m, step_swiglu, &f, n);
        matmul(m, &ly->down, m->ff_a, n, m->xn, E);
    }

    /* final norm of the flagged tokens only, gathered to the front of xn */
    int n_out = 0;
    for (int i = 0; i < n; i++) {
        if (!b->tokens[i].logits)
            continue;
        float *x = m->x + (int64_t)i * E;
        kern_add(x, m->xn + (int64_t)i * E, E);
        kern_rmsnorm(m->xn + (int64_t)n_out * E, x, m->output_norm, E, hp->rms_eps);
        n_out++;
    }
    if (n_out > 0)
        matmul(m, &m->output, m->xn, n_out, logits_out, hp->n_vocab);
    return 0;
}
