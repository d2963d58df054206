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
 *   x += (silu(xn Wg) * (xn Wu)) Wd        (dense), or for a MoE layer:
 *   x += sum over the token's top-k experts e of w_e * FFN_e(xn)
 *        (+ sigmoid(g . xn) * FFN_shared(xn) for qwen2moe)
 * then logits = rmsnorm(x) * output_norm Wout for the flagged tokens only.
 */
#include "model/model_int.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

struct fwd {
    atomic_int next_item;     /* step_attn's work counter */
    struct model *m;
    struct kv_cache *kv;
    const struct batch *b;
    const struct layer *ly;
    int layer;
    int n_rows;               /* rows of x / xn the rows steps cover */
    const float *norm_w;      /* norm weight of the current rows step */
    bool add;                 /* rows step: x += xn first */
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

/* run() for a step that takes its items from f->next_item (reset here):
 * threads the machine has not scheduled by the time the caller is done are
 * not waited for (pool_run_dynamic). */
static void run_items(struct model *m, pool_fn fn, struct fwd *f, int64_t n_items)
{
    atomic_store_explicit(&f->next_item, 0, memory_order_relaxed);
    if (!m->pool || n_items < 2)
        fn(f, 0, 1);
    else
        pool_run_dynamic(m->pool, fn, f);
}

/* x += xn (if add); xn = rmsnorm(x) * w, for this thread's rows. */
static void step_norm(void *ctx, int ith, int nth)
{
    struct fwd *f = ctx;
    struct model *m = f->m;
    int64_t E = m->hp.n_embd, lo, hi;
    split_range(f->n_rows, ith, nth, &lo, &hi);
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
                kern_store_f16((uint16_t *)kv->k + off, k + h * hd, hd);
                kern_store_f16((uint16_t *)kv->v + off, v + h * hd, hd);
            } else {
                memcpy((float *)kv->k + off, k + h * hd, (size_t)hd * sizeof(float));
                memcpy((float *)kv->v + off, v + h * hd, (size_t)hd * sizeof(float));
            }
        }
    }
}

/* Attention. An item is one (token, KV head): the query heads that share
 * that KV head run back to back and find its keys in cache. Items are taken
 * from a shared counter, since in a prefill the later tokens attend to more
 * positions than the earlier ones and a static split would leave one
 * thread with most of the work. */
static void step_attn(void *ctx, int ith, int nth)
{
    struct fwd *f = ctx;
    struct model *m = f->m;
    const struct model_hparams *hp = &m->hp;
    struct kv_cache *kv = f->kv;
    int hd = hp->head_dim, nh = hp->n_head, nkv = hp->n_head_kv, group = nh / nkv;
    int64_t QD = (int64_t)nh * hd, n_items = (int64_t)f->b->n_tokens * nkv;
    size_t stride = (size_t)kv->n_head_kv * kv->block_size * kv->head_dim;
    (void)ith;
    (void)nth;
    for (int64_t item = atomic_fetch_add_explicit(&f->next_item, 1, memory_order_relaxed); item < n_items;
         item = atomic_fetch_add_explicit(&f->next_item, 1, memory_order_relaxed)) {
        int64_t i = item / nkv;
        int hk = (int)(item % nkv);
        const struct batch_token *t = &f->b->tokens[i];
        size_t base = kv_offset(kv, f->layer, 0, hk, 0) * kv->elt;
        struct kern_attn a = {
            .q = m->q + i * QD + (int64_t)hk * group * hd,
            .out = m->att + i * QD + (int64_t)hk * group * hd,
            .k = (const char *)kv->k + base,
            .v = (const char *)kv->v + base,
            .block_stride = stride,
            .blocks = f->b->seqs[t->seq].blocks,
            .n_pos = t->pos + 1,
            .block_size = kv->block_size,
            .head_dim = hd,
            .scale = 1.0f / sqrtf((float)hd),
        };
        kern_attn(&a, kv->type, group);
    }
}

/* a = silu(a) * b over n_rows rows of width cols (the fields below). */
struct swiglu_job {
    float *a;
    const float *b;
    int64_t n_rows, cols;
};

static void step_swiglu(void *ctx, int ith, int nth)
{
    struct swiglu_job *j = ctx;
    int64_t lo, hi;
    split_range(j->n_rows, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        kern_swiglu(j->a + i * j->cols, j->a + i * j->cols, j->b + i * j->cols, j->cols);
}

static void swiglu_rows(struct model *m, float *a, const float *b, int64_t n_rows, int64_t cols)
{
    struct swiglu_job j = {a, b, n_rows, cols};
    if (!m->pool || n_rows < 2)
        step_swiglu(&j, 0, 1);
    else
        pool_run(m->pool, step_swiglu, &j);
}

static void matmul(struct model *m, const struct wmat *w, const float *x, int64_t n_tok, float *y, int64_t ldy)
{
    kern_matmul(m->pool, w->type, w->data, w->n_out, w->n_in, x, n_tok, y, ldy, m->wbuf);
}

/* One product of a matmul_multi call. */
static struct kern_mm mm_of(const struct wmat *w, const float *x, int64_t n_tok, float *y, int64_t ldy)
{
    return (struct kern_mm){.wt = w->type, .W = w->data, .n_out = w->n_out, .x = x, .n_tok = n_tok, .y = y,
                            .ldy = ldy};
}

/* Products with one row length in one pass of the pool (kern_matmul_multi:
 * the same outputs as one matmul each). load.c sizes m->wbuf for the
 * groups used here. */
static void matmul_multi(struct model *m, const struct kern_mm *mm, int n, int64_t n_in)
{
    MAAS_ASSERT(kern_matmul_multi_wsize(mm, n, n_in) <= m->wbuf_size);
    kern_matmul_multi(m->pool, mm, n, n_in, m->wbuf);
}

/* The expert matrix e of a slab. */
static inline struct wmat expert(const struct wmat *w, size_t stride, int e)
{
    struct wmat x = *w;
    x.data = (const char *)w->data + (size_t)e * stride;
    return x;
}

/* A MoE feed-forward over the n rows of m->xn; the result replaces xn.
 * Routing: softmax of the router logits, the n_expert_used largest (lower
 * expert index first on ties), renormalised when the model says so. The
 * rows are then grouped by expert, so every chosen expert runs one matmul
 * per matrix over all of its tokens, and experts nobody chose are not read.
 * Each token's outputs are summed in expert order, whatever the batch. */
static void ffn_moe(struct model *m, const struct layer *ly, int n)
{
    const struct model_hparams *hp = &m->hp;
    int ne = hp->n_expert, k = hp->n_expert_used;
    int64_t E = hp->n_embd, FE = hp->n_ff_exp;
    matmul(m, &ly->gate_inp, m->xn, n, m->router, ne);
    int32_t *count = m->moe_count;
    memset(count, 0, (size_t)(ne + 1) * sizeof *count);
    for (int i = 0; i < n; i++) {
        const float *r = m->router + (int64_t)i * ne;
        float mx = r[0];
        for (int e = 1; e < ne; e++)
            mx = r[e] > mx ? r[e] : mx;
        double z = 0;
        for (int e = 0; e < ne; e++)
            z += exp((double)r[e] - mx);
        int32_t *sel = m->moe_sel + (int64_t)i * k;
        float *w = m->moe_selw + (int64_t)i * k;
        double wsum = 0;
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int e = 0; e < ne; e++) {
                bool taken = false;
                for (int q = 0; q < j; q++)
                    taken |= sel[q] == e;
                if (!taken && (best < 0 || r[e] > r[best]))
                    best = e;
            }
            sel[j] = best;
            w[j] = (float)(exp((double)r[best] - mx) / z);
            wsum += w[j];
            count[best + 1]++;
        }
        if (hp->expert_weights_norm && wsum > 0)
            for (int j = 0; j < k; j++)
                w[j] = (float)(w[j] / wsum);
    }
    /* count[e] becomes the first row of expert e; fill rows in token order */
    for (int e = 0; e < ne; e++)
        count[e + 1] += count[e];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < k; j++) {
            int e = m->moe_sel[(int64_t)i * k + j];
            int32_t row = count[e]++;
            m->moe_tok[row] = i;
            m->moe_w[row] = m->moe_selw[(int64_t)i * k + j];
            memcpy(m->moe_x + (int64_t)row * E, m->xn + (int64_t)i * E, (size_t)E * sizeof(float));
        }
    /* count[e] is now the end of expert e's rows (and the start of e + 1's) */
    /* every chosen expert's gate and up in one pass, then every down */
    int64_t n_rows = (int64_t)n * k;
    struct kern_mm *mm = m->moe_mm;
    int np = 0;
    for (int e = 0; e < ne; e++) {
        int32_t start = e ? count[e - 1] : 0, cnt = count[e] - start;
        if (cnt == 0)
            continue;
        struct wmat g = expert(&ly->gate_exps, ly->gate_stride, e), u = expert(&ly->up_exps, ly->up_stride, e);
        mm[np++] = mm_of(&g, m->moe_x + (int64_t)start * E, cnt, m->moe_a + (int64_t)start * FE, FE);
        mm[np++] = mm_of(&u, m->moe_x + (int64_t)start * E, cnt, m->moe_b + (int64_t)start * FE, FE);
    }
    matmul_multi(m, mm, np, E);
    swiglu_rows(m, m->moe_a, m->moe_b, n_rows, FE);
    np = 0;
    for (int e = 0; e < ne; e++) {
        int32_t start = e ? count[e - 1] : 0, cnt = count[e] - start;
        if (cnt == 0)
            continue;
        struct wmat d = expert(&ly->down_exps, ly->down_stride, e);
        mm[np++] = mm_of(&d, m->moe_a + (int64_t)start * FE, cnt, m->moe_x + (int64_t)start * E, E);
    }
    matmul_multi(m, mm, np, FE);
    memset(m->moe_out, 0, (size_t)n * E * sizeof(float));
    for (int64_t r = 0; r < n_rows; r++)
        kern_axpy(m->moe_out + (int64_t)m->moe_tok[r] * E, m->moe_w[r], m->moe_x + r * E, E);
    if (ly->shexp_gate) {
        int64_t FS = hp->n_ff_shexp;
        const struct kern_mm gu[2] = {mm_of(&ly->gate_sh, m->xn, n, m->moe_a, FS),
                                      mm_of(&ly->up_sh, m->xn, n, m->moe_b, FS)};
        matmul_multi(m, gu, 2, E);
        swiglu_rows(m, m->moe_a, m->moe_b, n, FS);
        matmul(m, &ly->down_sh, m->moe_a, n, m->moe_x, E);
        for (int i = 0; i < n; i++) {
            double g = kern_dot_f32(ly->shexp_gate, m->xn + (int64_t)i * E, E);
            kern_axpy(m->moe_out + (int64_t)i * E, (float)(1.0 / (1.0 + exp(-g))), m->moe_x + (int64_t)i * E, E);
        }
    }
    memcpy(m->xn, m->moe_out, (size_t)n * E * sizeof(float));
}

static int check_batch(const struct model *m, const struct kv_cache *kv, const struct batch *b, struct err *e)
{
    if (m->max_batch == 0)
        return err_set(e, ERR_INVALID, "model_forward: no scratch reserved (call model_reserve first)");
    if (b->n_tokens < 1 || b->n_tokens > m->max_batch)
        return err_set(e, ERR_INVALID, "model_forward: batch of %d tokens is outside 1..%d (the reserved maximum)", b->n_tokens,
                       m->max_batch);
    if (kv->n_layer != m->hp.n_layer || kv->n_head_kv != m->hp.n_head_kv || kv->head_dim != m->hp.head_dim)
        return err_set(e, ERR_INVALID, "model_forward: the KV cache was made for another model");
    for (int i = 0; i < b->n_tokens; i++) {
        const struct batch_token *t = &b->tokens[i];
        if (t->token < 0 || t->token >= m->hp.n_vocab)
            return err_set(e, ERR_INVALID, "model_forward: batch token %d: id %d is outside the vocabulary of %d", i,
                           (int)t->token, m->hp.n_vocab);
        if (t->seq < 0 || t->seq >= b->n_seqs)
            return err_set(e, ERR_INVALID, "model_forward: batch token %d: sequence %d is outside 0..%d", i, (int)t->seq,
                           b->n_seqs - 1);
        const struct batch_seq *s = &b->seqs[t->seq];
        if (t->pos < 0 || t->pos / kv->block_size >= s->n_blocks)
            return err_set(e, ERR_INVALID, "model_forward: batch token %d: position %d is outside sequence %d's %d blocks of %d",
                           i, (int)t->pos, (int)t->seq, s->n_blocks, kv->block_size);
        for (int j = 0; j <= t->pos / kv->block_size; j++)
            if (s->blocks[j] < 0 || s->blocks[j] >= kv->n_blocks)
                return err_set(e, ERR_INVALID, "model_forward: sequence %d: block table entry %d = %d is outside 0..%d",
                               (int)t->seq, j, (int)s->blocks[j], kv->n_blocks - 1);
    }
    return 0;
}

/* The pass; the flagged tokens' logits go to logits_out, or, when hidden_out
 * is not NULL, their final normed hidden states instead. */
static int forward(struct model *m, struct kv_cache *kv, const struct batch *b, float *logits_out, float *hidden_out,
                   struct err *e)
{
    if (check_batch(m, kv, b, e) < 0)
        return -1;
    const struct model_hparams *hp = &m->hp;
    int n = b->n_tokens;
    int64_t E = hp->n_embd, QD = (int64_t)hp->n_head * hp->head_dim, KD = (int64_t)hp->n_head_kv * hp->head_dim;
    int64_t F = hp->n_ff;
    struct fwd f = {.m = m, .kv = kv, .b = b, .n_rows = n};

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
        const struct kern_mm qkv[3] = {mm_of(&ly->wq, m->xn, n, m->q, QD), mm_of(&ly->wk, m->xn, n, m->k, KD),
                                       mm_of(&ly->wv, m->xn, n, m->v, KD)};
        matmul_multi(m, qkv, 3, E);
        run(m, step_qkv, &f, n);
        run_items(m, step_attn, &f, (int64_t)n * hp->n_head_kv);
        if (il == hp->n_layer - 1) {
            /* Past the last attention only the rows whose logits are
             * wanted matter: move them to the front and drop the rest. */
            int j = 0;
            for (int i = 0; i < n; i++) {
                if (!b->tokens[i].logits)
                    continue;
                if (j != i) {
                    memcpy(m->att + (int64_t)j * QD, m->att + (int64_t)i * QD, (size_t)QD * sizeof(float));
                    memcpy(m->x + (int64_t)j * E, m->x + (int64_t)i * E, (size_t)E * sizeof(float));
                }
                j++;
            }
            n = f.n_rows = j;
            if (n == 0)
                return 0;
        }
        matmul(m, &ly->wo, m->att, n, m->xn, E);
        f.norm_w = ly->ffn_norm;
        f.add = true;
        run(m, step_norm, &f, n);
        if (ly->gate_inp.data) {
            ffn_moe(m, ly, n);
        } else {
            const struct kern_mm gu[2] = {mm_of(&ly->gate, m->xn, n, m->ff_a, F), mm_of(&ly->up, m->xn, n, m->ff_b, F)};
            matmul_multi(m, gu, 2, E);
            swiglu_rows(m, m->ff_a, m->ff_b, n, F);
            matmul(m, &ly->down, m->ff_a, n, m->xn, E);
        }
    }

    /* the n rows left are the flagged tokens, in batch order */
    f.norm_w = m->output_norm;
    f.add = true;
    run(m, step_norm, &f, n);
    if (hidden_out)
        memcpy(hidden_out, m->xn, (size_t)n * E * sizeof(float));
    else
        matmul(m, &m->output, m->xn, n, logits_out, hp->n_vocab);
    return 0;
}

int model_forward(struct model *m, struct kv_cache *kv, const struct batch *b, float *logits_out, struct err *e)
{
    if (m->hp.arch->flags & MODEL_ARCH_BERT)
        return err_set(e, ERR_INVALID, "model_forward: %s is an encoder (no logits; use model_embed)", m->hp.arch_name);
    return forward(m, kv, b, logits_out, NULL, e);
}

int model_forward_hidden(struct model *m, struct kv_cache *kv, const struct batch *b, float *hidden_out, struct err *e)
{
    return forward(m, kv, b, NULL, hidden_out, e);
}
