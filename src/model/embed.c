/*
 * embed.c — sentence embeddings: the BERT encoder's forward pass, the
 * decoders' final hidden states (through forward.c), and pooling.
 *
 * BERT (as llama.cpp's bert graph, which is what the GGUF files are made
 * for), for the rows of all inputs at once:
 *   x = LN(tok_embd[id] + token_types[0] + position_embd[pos]) (token_embd_norm)
 *   per layer:
 *     q, k, v = x Wq + bq, x Wk + bk, x Wv + bv
 *     att = softmax(q k^T / sqrt(hd)) v over every token of the row's own input
 *     x = LN(att Wo + bo + x)                    (attn_output_norm)
 *     x = LN(gelu(x Wup + bup) Wdown + bdown + x) (layer_output_norm)
 * GELU is the tanh approximation ggml uses (kern_gelu); LN is LayerNorm with weight and
 * bias. Every matrix multiplies all rows of the batch in one kern_matmul,
 * as in forward.c; the row-wise work and the attention (one item per
 * (row, head), online softmax, no score buffer) are split over the pool.
 *
 * Pooling reduces an input's rows to one vector (mean, first, last; or
 * keeps them all), which is then L2-normalised.
 */
#include "model/model_int.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

const char *model_pooling_name(int pooling)
{
    static const char *const names[] = {"none", "mean", "cls", "last", "rank"};
    return pooling >= 0 && pooling <= MODEL_POOL_RANK ? names[pooling] : "?";
}

int model_embed_n_out(const struct model *m)
{
    return m->hp.pooling == MODEL_POOL_RANK ? 1 : m->hp.n_embd;
}

bool model_is_embedding(const struct model *m)
{
    return (m->hp.arch->flags & MODEL_ARCH_BERT) || m->hp.pooling_meta;
}

/* y = (x - mean) / sqrt(var + eps) * w + b */
static void layernorm(float *y, const float *x, const float *w, const float *b, int64_t n, float eps)
{
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++)
        s += x[i];
    double mean = s / (double)n;
    for (int64_t i = 0; i < n; i++)
        s2 += ((double)x[i] - mean) * ((double)x[i] - mean);
    double inv = 1.0 / sqrt(s2 / (double)n + eps);
    for (int64_t i = 0; i < n; i++)
        y[i] = (float)(((double)x[i] - mean) * inv) * w[i] + b[i];
}

enum enc_phase { PH_QKV, PH_ATTN_OUT, PH_UP, PH_FFN_OUT };

struct enc {
    struct model *m;
    const struct layer *ly;
    int n;                    /* rows (tokens of all inputs) */
    const int32_t *seq_of;    /* (n) the input of each row */
    const int32_t *start;     /* (n_seqs) first row of each input */
    const int *lens;          /* (n_seqs) rows of each input */
    enum enc_phase phase;
    atomic_int next;          /* attention's work counter */
};

/* The row-wise work of one phase of a layer, for this thread's rows. */
static void enc_rows(void *ctx, int ith, int nth)
{
    struct enc *c = ctx;
    struct model *m = c->m;
    const struct layer *ly = c->ly;
    int64_t E = m->hp.n_embd, F = m->hp.n_ff, lo, hi;
    float eps = m->hp.rms_eps;
    split_range(c->n, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        float *x = m->x + r * E, *xn = m->xn + r * E;
        switch (c->phase) {
        case PH_QKV:
            kern_add(m->q + r * E, ly->bq, E);
            kern_add(m->k + r * E, ly->bk, E);
            kern_add(m->v + r * E, ly->bv, E);
            break;
        case PH_ATTN_OUT:
        case PH_FFN_OUT:
            kern_add(xn, c->phase == PH_ATTN_OUT ? ly->bo : ly->down_b, E);
            kern_add(xn, x, E);
            if (c->phase == PH_ATTN_OUT)
                layernorm(x, xn, ly->attn_out_norm, ly->attn_out_norm_b, E, eps);
            else
                layernorm(x, xn, ly->out_norm, ly->out_norm_b, E, eps);
            break;
        case PH_UP: {
            float *a = m->ff_a + r * F;
            kern_add(a, ly->up_b, F);
            kern_gelu(a, a, F);
            break;
        }
        }
    }
}

/* Attention over the row's whole input: items are (row, head). */
static void enc_attn(void *ctx, int ith, int nth)
{
    struct enc *c = ctx;
    struct model *m = c->m;
    int nh = m->hp.n_head, hd = m->hp.head_dim;
    int64_t E = (int64_t)nh * hd, n_items = (int64_t)c->n * nh;
    float scale = 1.0f / sqrtf((float)hd);
    for (int64_t item = ith; item < n_items; item = nth + atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed)) {
        int64_t r = item / nh, h = item % nh;
        int s = c->seq_of[r];
        const float *q = m->q + r * E + h * hd;
        float *out = m->att + r * E + h * hd;
        memset(out, 0, (size_t)hd * sizeof *out);
        float mx = -INFINITY, z = 0;
        for (int64_t j = c->start[s]; j < c->start[s] + c->lens[s]; j++) {
            float sc = kern_dot_f32(q, m->k + j * E + h * hd, hd) * scale;
            if (sc > mx) {
                float resc = expf(mx - sc);
                z *= resc;
                for (int d = 0; d < hd; d++)
                    out[d] *= resc;
                mx = sc;
            }
            float p = expf(sc - mx);
            z += p;
            kern_axpy(out, p, m->v + j * E + h * hd, hd);
        }
        for (int d = 0; d < hd; d++)
            out[d] /= z;
    }
}

static void enc_run(struct enc *c, pool_fn fn)
{
    if (!c->m->pool || c->n < 2)
        fn(c, 0, 1);
    else
        pool_run(c->m->pool, fn, c);
}

static void mm(struct model *m, const struct wmat *w, const float *x, int64_t n, float *y)
{
    kern_matmul(m->pool, w->type, w->data, w->n_out, w->n_in, x, n, y, w->n_out, m->wbuf);
}

/* The embedding LayerNorm of every row's token + type 0 + position. */
static void enc_embed_rows(struct model *m, const int32_t *const *seqs, const int *lens, int n_seqs)
{
    int64_t E = m->hp.n_embd;
    float *tmp = m->q, *type0 = m->k; /* one row of scratch each */
    kern_dequantize_row(m->tok_types.type, m->tok_types.data, type0, E);
    size_t erow = ggml_row_size(m->tok_embd.type, E), prow = ggml_row_size(m->pos_embd.type, E);
    int64_t r = 0;
    for (int s = 0; s < n_seqs; s++)
        for (int p = 0; p < lens[s]; p++, r++) {
            float *x = m->x + r * E;
            kern_dequantize_row(m->tok_embd.type, (const char *)m->tok_embd.data + (size_t)seqs[s][p] * erow, x, E);
            kern_dequantize_row(m->pos_embd.type, (const char *)m->pos_embd.data + (size_t)p * prow, tmp, E);
            kern_add(x, tmp, E);
            kern_add(x, type0, E);
            layernorm(x, x, m->tok_norm, m->tok_norm_b, E, m->hp.rms_eps);
        }
}

/* The encoder over all rows; the last layer's output is left in m->x. */
static void encode(struct model *m, const int32_t *const *seqs, const int *lens, int n_seqs, struct enc *c)
{
    int64_t E = m->hp.n_embd;
    int n = c->n;
    enc_embed_rows(m, seqs, lens, n_seqs);
    for (int il = 0; il < m->hp.n_layer; il++) {
        const struct layer *ly = c->ly = &m->layers[il];
        const struct kern_mm qkv[3] = {
            {.wt = ly->wq.type, .W = ly->wq.data, .n_out = E, .x = m->x, .n_tok = n, .y = m->q, .ldy = E},
            {.wt = ly->wk.type, .W = ly->wk.data, .n_out = E, .x = m->x, .n_tok = n, .y = m->k, .ldy = E},
            {.wt = ly->wv.type, .W = ly->wv.data, .n_out = E, .x = m->x, .n_tok = n, .y = m->v, .ldy = E},
        };
        kern_matmul_multi(m->pool, qkv, 3, E, m->wbuf);
        c->phase = PH_QKV;
        enc_run(c, enc_rows);
        atomic_store_explicit(&c->next, 0, memory_order_relaxed);
        enc_run(c, enc_attn);
        mm(m, &ly->wo, m->att, n, m->xn);
        c->phase = PH_ATTN_OUT;
        enc_run(c, enc_rows);
        mm(m, &ly->up, m->x, n, m->ff_a);
        c->phase = PH_UP;
        enc_run(c, enc_rows);
        mm(m, &ly->down, m->ff_a, n, m->xn);
        c->phase = PH_FFN_OUT;
        enc_run(c, enc_rows);
    }
}

static void l2_normalize(float *v, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    if (s <= 0)
        return;
    float inv = (float)(1.0 / sqrt(s));
    for (int64_t i = 0; i < n; i++)
        v[i] *= inv;
}

/* Pools rows hid[start[s] .. start[s] + cnt[s]) of each input into out. */
static void pool_rows(const float *hid, int64_t E, const int32_t *start, const int32_t *cnt, int n_seqs, int pooling,
                      float *out)
{
    int64_t o = 0;
    for (int s = 0; s < n_seqs; s++) {
        const float *h = hid + (int64_t)start[s] * E;
        if (pooling == MODEL_POOL_NONE) {
            memcpy(out + o * E, h, (size_t)cnt[s] * E * sizeof(float));
            for (int i = 0; i < cnt[s]; i++)
                l2_normalize(out + (o + i) * E, E);
            o += cnt[s];
            continue;
        }
        float *y = out + o * E;
        if (pooling == MODEL_POOL_CLS || pooling == MODEL_POOL_LAST) {
            memcpy(y, pooling == MODEL_POOL_CLS ? h : h + (int64_t)(cnt[s] - 1) * E, (size_t)E * sizeof(float));
        } else {
            for (int64_t d = 0; d < E; d++) {
                double acc = 0;
                for (int i = 0; i < cnt[s]; i++)
                    acc += h[(int64_t)i * E + d];
                y[d] = (float)(acc / cnt[s]);
            }
        }
        l2_normalize(y, E);
        o++;
    }
}

/* Pooling rank: the classification head on each input's first row of
 * m->x, cls.output(tanh(cls(h) + b) + b), its first output into out[s]. */
static int rank_rows(struct model *m, const int32_t *start, int n_seqs, float *out, struct err *e)
{
    int64_t E = m->hp.n_embd, C = m->hp.n_cls_out;
    float *s = malloc((size_t)n_seqs * (size_t)C * sizeof *s);
    if (!s)
        return err_set(e, ERR_NOMEM, "model_embed: out of memory");
    for (int i = 0; i < n_seqs; i++)
        memcpy(m->xn + i * E, m->x + (int64_t)start[i] * E, (size_t)E * sizeof(float));
    mm(m, &m->cls, m->xn, n_seqs, m->q);
    for (int i = 0; i < n_seqs; i++) {
        float *h = m->q + i * E;
        kern_add(h, m->cls_b, E);
        for (int64_t d = 0; d < E; d++)
            h[d] = tanhf(h[d]);
    }
    mm(m, &m->cls_out, m->q, n_seqs, s);
    for (int i = 0; i < n_seqs; i++)
        out[i] = s[i * C] + m->cls_out_b[0];
    free(s);
    return 0;
}

/* A decoder's final normed hidden states of the rows pooling needs: all
 * rows (mean, none) or one per input (cls: first, last: last), through
 * forward.c with a scratch KV cache of f32 blocks. hid receives the rows;
 * start/cnt say where each input's are. */
static int decode_hidden(struct model *m, const int32_t *const *seqs, const int *lens, int n_seqs, int pooling,
                         int n, float *hid, int32_t *start, int32_t *cnt, struct err *e)
{
    const int BS = 16;
    int n_blocks = 0;
    for (int s = 0; s < n_seqs; s++)
        n_blocks += (lens[s] + BS - 1) / BS;
    if (!m->embd_kv || kv_n_blocks(m->embd_kv) < n_blocks) {
        kv_free(m->embd_kv);
        if (!(m->embd_kv = kv_new_typed(m, n_blocks, BS, GGML_TYPE_F32, e)))
            return -1;
    }
    struct batch_token *tok = malloc((size_t)n * sizeof *tok);
    struct batch_seq *bs = malloc((size_t)n_seqs * sizeof *bs);
    int32_t *tables = malloc((size_t)n_blocks * sizeof *tables);
    int rc = -1;
    if (!tok || !bs || !tables) {
        err_set(e, ERR_NOMEM, "model_embed: out of memory for a batch of %d tokens", n);
        goto out;
    }
    for (int i = 0; i < n_blocks; i++)
        tables[i] = i;
    int r = 0, b0 = 0, rows = 0;
    for (int s = 0; s < n_seqs; s++) {
        bs[s] = (struct batch_seq){tables + b0, (lens[s] + BS - 1) / BS};
        b0 += bs[s].n_blocks;
        start[s] = rows;
        for (int p = 0; p < lens[s]; p++, r++) {
            bool want = pooling == MODEL_POOL_MEAN || pooling == MODEL_POOL_NONE ||
                        (pooling == MODEL_POOL_CLS && p == 0) || (pooling == MODEL_POOL_LAST && p == lens[s] - 1);
            tok[r] = (struct batch_token){seqs[s][p], p, s, want};
            rows += want;
        }
        cnt[s] = rows - start[s];
    }
    struct batch b = {n, tok, n_seqs, bs};
    rc = model_forward_hidden(m, m->embd_kv, &b, hid, e);
out:
    free(tok);
    free(bs);
    free(tables);
    return rc;
}

/* The inputs' sizes and ids; the total number of rows in *n. */
static int check_inputs(const struct model *m, const int32_t *const *seqs, const int *lens, int n_seqs, int pooling,
                        int *n, struct err *e)
{
    bool rank_ok = pooling == MODEL_POOL_RANK && (m->hp.arch->flags & MODEL_ARCH_BERT) && m->cls.data;
    if (pooling < MODEL_POOL_NONE || (pooling > MODEL_POOL_LAST && !rank_ok))
        return err_set(e, ERR_INVALID, "model_embed: pooling '%s' is not supported (none, mean, cls, last; rank "
                          "with an encoder's classification head)", model_pooling_name(pooling));
    if (m->max_batch == 0)
        return err_set(e, ERR_INVALID, "model_embed: no scratch reserved (call model_reserve first)");
    if (n_seqs < 1)
        return err_set(e, ERR_INVALID, "model_embed: no inputs");
    int64_t total = 0;
    for (int s = 0; s < n_seqs; s++) {
        if (lens[s] < 1 || lens[s] > m->hp.n_ctx_train)
            return err_set(e, ERR_INVALID, "input %d: %d tokens is outside 1..%d (the model's context)", s, lens[s],
                           m->hp.n_ctx_train);
        for (int p = 0; p < lens[s]; p++)
            if (seqs[s][p] < 0 || seqs[s][p] >= m->hp.n_vocab)
                return err_set(e, ERR_INVALID, "input %d, token %d: id %d is outside the vocabulary of %d", s, p,
                               (int)seqs[s][p], m->hp.n_vocab);
        total += lens[s];
    }
    if (total > m->max_batch)
        return err_set(e, ERR_INVALID, "model_embed: %lld tokens in one call is more than the %d reserved",
                       (long long)total, m->max_batch);
    *n = (int)total;
    return 0;
}

int model_embed(struct model *m, const int32_t *const *seqs, const int *lens, int n_seqs, int pooling, float *out,
                struct err *e)
{
    if (pooling < 0)
        pooling = m->hp.pooling;
    int n = 0;
    if (check_inputs(m, seqs, lens, n_seqs, pooling, &n, e) < 0)
        return -1;
    int64_t E = m->hp.n_embd;
    int32_t *start = malloc((size_t)n_seqs * sizeof *start), *cnt = malloc((size_t)n_seqs * sizeof *cnt);
    int32_t *seq_of = malloc((size_t)n * sizeof *seq_of);
    float *hid = NULL;
    int rc = -1;
    if (!start || !cnt || !seq_of) {
        err_set(e, ERR_NOMEM, "model_embed: out of memory");
        goto out;
    }
    for (int s = 0, r = 0; s < n_seqs; s++) {
        start[s] = r;
        cnt[s] = lens[s];
        for (int p = 0; p < lens[s]; p++)
            seq_of[r++] = s;
    }
    if (m->hp.arch->flags & MODEL_ARCH_BERT) {
        struct enc c = {.m = m, .n = n, .seq_of = seq_of, .start = start, .lens = lens};
        encode(m, seqs, lens, n_seqs, &c);
        if (pooling == MODEL_POOL_RANK) {
            rc = rank_rows(m, start, n_seqs, out, e);
            goto out;
        }
        pool_rows(m->x, E, start, cnt, n_seqs, pooling, out);
        rc = 0;
        goto out;
    }
    if (!(hid = malloc((size_t)n * E * sizeof *hid))) {
        err_set(e, ERR_NOMEM, "model_embed: out of memory");
        goto out;
    }
    if (decode_hidden(m, seqs, lens, n_seqs, pooling, n, hid, start, cnt, e) < 0)
        goto out;
    pool_rows(hid, E, start, cnt, n_seqs, pooling, out);
    rc = 0;
out:
    free(start);
    free(cnt);
    free(seq_of);
    free(hid);
    return rc;
}
