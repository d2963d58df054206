/*
 * The network's forward pass with its activations kept, and its backward
 * pass, for one real type (see train.h for the network). Included by
 * net_f32.c and net_f64.c with R, SFX(name) and GEMM (kern_gemm_f32's
 * contract for R) defined.
 *
 * Rows: the batch's B sequences of T positions are N = B * T rows, row
 * b * T + i for position i of sequence b. Matrices are [out][in] (ggml's
 * ne[0] = in), so a linear layer is y = x W^T.
 *
 * Jobs run on the pool with the net as their context; each writes only its
 * own rows (or columns, for the norm weights' gradients), so every sum has
 * one order whatever the thread count.
 */
#include "ops_body.h"

#define NET SFX(train_net)

struct SFX(lact) {            /* one layer's activations */
    R *x;                     /* its input (the residual stream) */
    R *rs1, *h1;              /* attention norm: 1 / rms per row, normed rows */
    R *qraw, *qrs, *kraw, *krs; /* qk_norm: q and k before the per-head norm, 1 / rms per head */
    R *q, *k, *v;             /* after norms and RoPE */
    R *P;                     /* softmax probabilities [B][n_head][T][T] */
    R *ao;                    /* attention output before Wo */
    R *xmid;                  /* the residual stream after attention */
    R *rs2, *h2;              /* FFN norm */
    R *g, *u, *a;             /* dense: gate, up, silu(gate) * up */
    R *probs, *w;             /* MoE: router probabilities [N][E]; chosen weights [N][k] */
    int32_t *sel, *pos, *tokof, *off; /* chosen experts [N][k]; sorted row of (t, slot); token of a
                               * sorted row; first sorted row of each expert [E + 1] */
    R *Xs, *Gs, *Us, *As, *Ys; /* MoE rows sorted by expert: input, gate, up, act, output */
    double aux;               /* this layer's load-balancing loss */
};

struct NET {
    struct train_shape s;
    const struct train_layout *l;
    int B, T, N, nth;
    struct pool *pool;
    R *cs, *sn;               /* RoPE angles [T][n_rot / 2] */
    struct SFX(lact) *la;     /* n_layer + 1: the last holds only x (the final stream) */
    R *rsf, *hf, *logits;     /* final norm; logits [N][V] (their gradient after the loss) */
    double *row_loss;         /* [N] */
    /* gradients of activations */
    R *dx, *dh, *dq, *dk, *dv, *dqraw, *dkraw, *dao, *dg, *du, *da; /* dense: dg du da [N][F] */
    R *dYs, *dAs, *dGs, *dUs, *dXs, *dprobs, *dw; /* MoE */
    R *scr;                   /* per thread: T * T */
    void **allocs;
    int n_allocs;
    /* the step being run */
    const R *P;
    R *G;
    const int32_t *tok;
    double aux_coef;
    int il;                   /* the layer a job works on */
    /* a norm's forward: y = rmsnorm(x) * w */
    const R *nf_x, *nf_w;
    R *nf_y, *nf_rs;
    /* a norm's backward: dx += ..., dw += ... */
    const R *nb_dy, *nb_x, *nb_w, *nb_rs;
    R *nb_dx, *nb_dw;
    int nb_rows, nb_n;
};

static R *SFX(arena)(struct NET *n, size_t count, bool *ok)
{
    if (!*ok)
        return NULL;
    void *p = calloc(count ? count : 1, sizeof(R));
    void **a = realloc(n->allocs, (size_t)(n->n_allocs + 1) * sizeof *a);
    if (!p || !a) {
        free(p);
        if (a)
            n->allocs = a;
        *ok = false;
        return NULL;
    }
    n->allocs = a;
    n->allocs[n->n_allocs++] = p;
    return p;
}

static void SFX(run)(struct NET *n, pool_fn fn)
{
    if (n->pool)
        pool_run(n->pool, fn, n);
    else
        fn(n, 0, 1);
}

static void SFX(alloc_layer)(struct NET *n, struct SFX(lact) *a, bool *ok)
{
    const struct train_shape *s = &n->s;
    size_t N = (size_t)n->N, d = (size_t)s->n_embd, QD = (size_t)s->n_head * (size_t)s->head_dim,
           KD = (size_t)s->n_head_kv * (size_t)s->head_dim, T = (size_t)n->T;
    a->x = SFX(arena)(n, N * d, ok);
    a->rs1 = SFX(arena)(n, N, ok);
    a->h1 = SFX(arena)(n, N * d, ok);
    if (s->qk_norm) {
        a->qraw = SFX(arena)(n, N * QD, ok);
        a->kraw = SFX(arena)(n, N * KD, ok);
        a->qrs = SFX(arena)(n, N * (size_t)s->n_head, ok);
        a->krs = SFX(arena)(n, N * (size_t)s->n_head_kv, ok);
    }
    a->q = SFX(arena)(n, N * QD, ok);
    a->k = SFX(arena)(n, N * KD, ok);
    a->v = SFX(arena)(n, N * KD, ok);
    a->P = SFX(arena)(n, (size_t)n->B * (size_t)s->n_head * T * T, ok);
    a->ao = SFX(arena)(n, N * QD, ok);
    a->xmid = SFX(arena)(n, N * d, ok);
    a->rs2 = SFX(arena)(n, N, ok);
    a->h2 = SFX(arena)(n, N * d, ok);
    if (s->n_expert == 0) {
        a->g = SFX(arena)(n, N * (size_t)s->n_ff, ok);
        a->u = SFX(arena)(n, N * (size_t)s->n_ff, ok);
        a->a = SFX(arena)(n, N * (size_t)s->n_ff, ok);
        return;
    }
    size_t E = (size_t)s->n_expert, K = (size_t)s->n_expert_used, FE = (size_t)s->n_ff_exp;
    a->probs = SFX(arena)(n, N * E, ok);
    a->w = SFX(arena)(n, N * K, ok);
    /* int32 arrays: R is at least 4 bytes, so a count of R holds them */
    a->sel = (int32_t *)SFX(arena)(n, N * K, ok);
    a->pos = (int32_t *)SFX(arena)(n, N * K, ok);
    a->tokof = (int32_t *)SFX(arena)(n, N * K, ok);
    a->off = (int32_t *)SFX(arena)(n, E + 1, ok);
    a->Xs = SFX(arena)(n, N * K * d, ok);
    a->Gs = SFX(arena)(n, N * K * FE, ok);
    a->Us = SFX(arena)(n, N * K * FE, ok);
    a->As = SFX(arena)(n, N * K * FE, ok);
    a->Ys = SFX(arena)(n, N * K * d, ok);
}

static void SFX(alloc_grads)(struct NET *n, bool *ok)
{
    const struct train_shape *s = &n->s;
    size_t N = (size_t)n->N, d = (size_t)s->n_embd, QD = (size_t)s->n_head * (size_t)s->head_dim,
           KD = (size_t)s->n_head_kv * (size_t)s->head_dim;
    n->dx = SFX(arena)(n, N * d, ok);
    n->dh = SFX(arena)(n, N * d, ok);
    n->dq = SFX(arena)(n, N * QD, ok);
    n->dk = SFX(arena)(n, N * KD, ok);
    n->dv = SFX(arena)(n, N * KD, ok);
    n->dqraw = SFX(arena)(n, N * QD, ok);
    n->dkraw = SFX(arena)(n, N * KD, ok);
    n->dao = SFX(arena)(n, N * QD, ok);
    if (s->n_expert == 0) {
        n->dg = SFX(arena)(n, N * (size_t)s->n_ff, ok);
        n->du = SFX(arena)(n, N * (size_t)s->n_ff, ok);
        n->da = SFX(arena)(n, N * (size_t)s->n_ff, ok);
    } else {
        size_t K = (size_t)s->n_expert_used, FE = (size_t)s->n_ff_exp;
        n->dYs = SFX(arena)(n, N * K * d, ok);
        n->dXs = SFX(arena)(n, N * K * d, ok);
        n->dAs = SFX(arena)(n, N * K * FE, ok);
        n->dGs = SFX(arena)(n, N * K * FE, ok);
        n->dUs = SFX(arena)(n, N * K * FE, ok);
        n->dprobs = SFX(arena)(n, N * (size_t)s->n_expert, ok);
        n->dw = SFX(arena)(n, N * K, ok);
    }
}

void SFX(train_net_free)(struct NET *n)
{
    if (!n)
        return;
    for (int i = 0; i < n->n_allocs; i++)
        free(n->allocs[i]);
    free(n->allocs);
    free(n->la);
    free(n);
}

struct NET *SFX(train_net_new)(const struct train_shape *s, const struct train_layout *l, int B, int T,
                               struct pool *pool, struct err *e)
{
    if (B < 1 || T < 1 || (int64_t)B * T > (1 << 24))
        return err_set(e, ERR_INVALID, "batch %d x %d is out of range", B, T), NULL;
    struct NET *n = calloc(1, sizeof *n);
    if (!n || !(n->la = calloc((size_t)s->n_layer + 1, sizeof *n->la))) {
        free(n);
        return err_set(e, ERR_NOMEM, "out of memory"), NULL;
    }
    n->s = *s, n->l = l, n->B = B, n->T = T, n->N = B * T, n->pool = pool;
    n->nth = pool ? pool_n_threads(pool) : 1;
    bool ok = true;
    int half = s->n_rot / 2;
    n->cs = SFX(arena)(n, (size_t)T * (size_t)half, &ok);
    n->sn = SFX(arena)(n, (size_t)T * (size_t)half, &ok);
    for (int il = 0; il < s->n_layer; il++)
        SFX(alloc_layer)(n, &n->la[il], &ok);
    n->la[s->n_layer].x = SFX(arena)(n, (size_t)n->N * (size_t)s->n_embd, &ok);
    n->rsf = SFX(arena)(n, (size_t)n->N, &ok);
    n->hf = SFX(arena)(n, (size_t)n->N * (size_t)s->n_embd, &ok);
    n->logits = SFX(arena)(n, (size_t)n->N * (size_t)s->n_vocab, &ok);
    n->row_loss = (double *)SFX(arena)(n, (size_t)n->N * (sizeof(double) / sizeof(R)), &ok);
    n->scr = SFX(arena)(n, (size_t)n->nth * (size_t)T * (size_t)T, &ok);
    SFX(alloc_grads)(n, &ok);
    if (!ok) {
        SFX(train_net_free)(n);
        return err_set(e, ERR_NOMEM, "out of memory for the activations of a %d x %d batch", B, T), NULL;
    }
    for (int p = 0; p < T; p++)
        for (int j = 0; j < half; j++) {
            double th = (double)p * pow((double)s->rope_base, -2.0 * j / s->n_rot);
            n->cs[(size_t)p * half + j] = (R)cos(th);
            n->sn[(size_t)p * half + j] = (R)sin(th);
        }
    return n;
}

/* ---- helpers ---- */
static inline const R *SFX(prm)(const struct NET *n, size_t off)
{
    return n->P + off;
}

static inline R *SFX(grd)(const struct NET *n, size_t off)
{
    return n->G + off;
}

static inline int32_t SFX(tok_in)(const struct NET *n, int64_t r)
{
    return n->tok[(r / n->T) * (n->T + 1) + r % n->T];
}

static inline int32_t SFX(tok_out)(const struct NET *n, int64_t r)
{
    return n->tok[(r / n->T) * (n->T + 1) + r % n->T + 1];
}

/* y[rows][out] (+)= x[rows][in] W^T */
static void SFX(lin)(struct NET *n, const R *x, int64_t rows, int64_t in, size_t w, int64_t out, R *y, bool acc)
{
    GEMM(n->pool, false, true, rows, out, in, x, in, SFX(prm)(n, w), in, acc ? 1 : 0, y, out);
}

/* dx[rows][in] (+)= dy W;  dW += dy^T x */
static void SFX(lin_bwd)(struct NET *n, const R *dy, const R *x, int64_t rows, int64_t in, size_t w, int64_t out, R *dx,
                         bool acc)
{
    GEMM(n->pool, false, false, rows, in, out, dy, out, SFX(prm)(n, w), in, acc ? 1 : 0, dx, in);
    GEMM(n->pool, true, false, out, in, rows, dy, out, x, in, 1, SFX(grd)(n, w), in);
}

/* ---- forward jobs ---- */
static void SFX(job_embed)(void *ctx, int ith, int nth)
{
    struct NET *n = ctx;
    int64_t d = n->s.n_embd, lo, hi;
    split_range(n->N, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++)
        memcpy(n->la[0].x + r * d, SFX(prm)(n, n->l->tok_embd) + (int64_t)SFX(tok_in)(n, r) * d, (size_t)d * sizeof(R));
}

/* rows: nf_y = rmsnorm(nf_x) * nf_w, nf_rs = 1 / rms */
static void SFX(job_norm)(void *ctx, int ith, int nth)
{
    struct NET *n = ctx;
    int d = n->s.n_embd;
    int64_t lo, hi;
    split_range(n->N, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++)
        SFX(rms_fwd)(n->nf_y + r * d, n->nf_rs + r, n->nf_x + r * d, n->nf_w, d, n->s.rms_eps);
}

static void SFX(norm_fwd)(struct NET *n, const R *x, size_t w, R *y, R *rs)
{
    n->nf_x = x, n->nf_w = SFX(prm)(n, w), n->nf_y = y, n->nf_rs = rs;
    SFX(run)(n, SFX(job_norm));
}

/* per-head norms of q and k (qwen3), then RoPE */
static void SFX(job_qk)(void *ctx, int ith, int nth)
{
    struct NET *n = ctx;
    const struct train_shape *s = &n->s;
    struct SFX(lact) *a = &n->la[n->il];
    const struct train_layer *ly = &n->l->layer[n->il];
    int hd = s->head_dim, nh = s->n_head, nkv = s->n_head_kv, half = s->n_rot / 2;
    int64_t QD = (int64_t)nh * hd, KD = (int64_t)nkv * hd, lo, hi;
    split_range(n->N, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        R *q = a->q + r * QD, *k = a->k + r * KD;
        if (s->qk_norm) {
            for (int h = 0; h < nh; h++)
                SFX(rms_fwd)(q + h * hd, a->qrs + r * nh + h, a->qraw + r * QD + h * hd, SFX(prm)(n, ly->q_norm), hd,
                             s->rms_eps);
            for (int h = 0; h < nkv; h++)
                SFX(rms_fwd)(k + h * hd, a->krs + r * nkv + h, a->kraw + r * KD + h * hd, SFX(prm)(n, ly->k_norm),
                             hd, s->rms_eps);
        }
        int64_t p = r % n->T;
        SFX(rope)(q, nh, hd, s->n_rot, s->rope_neox, n->cs + p * half, n->sn + p * half, false);
        SFX(rope)(k, nkv, hd, s->n_rot, s->rope_neox, n->cs + p * half, n->sn + p * half, false);
    }
}

/* causal softmax(q k^T * scale) v for each (sequence, kv head) */
static void SFX(job_attn)(void *ctx, int ith, int nth)
{
    struct NET *n = ctx;
    const struct train_shape *s = &n->s;
    struct SFX(lact) *a = &n->la[n->il];
    int hd = s->head_dim, nh = s->n_head, nkv = s->n_head_kv, grp = nh / nkv, T = n->T;
    int64_t QD = (int64_t)nh * hd, KD = (int64_t)nkv * hd, lo, hi;
    R scale = (R)(1.0 / sqrt((double)hd));
    split_range((int64_t)n->B * nkv, ith, nth, &lo, &hi);
    for (int64_t job = lo; job < hi; job++) {
        int64_t b = job / nkv, g = job % nkv;
        const R *K = a->k + b * T * KD + g * hd, *V = a->v + b * T * KD + g * hd;
        for (int h = (int)g * grp; h < (int)(g + 1) * grp; h++) {
            const R *Q = a->q + b * T * QD + (int64_t)h * hd;
            R *P = a->P + (b * nh + h) * (int64_t)T * T;
            GEMM(NULL, false, true, T, T, hd, Q, QD, K, KD, 0, P, T);
            for (int i = 0; i < T; i++) {
                R *p = P + (int64_t)i * T, mx = p[0] * scale;
                for (int j = 1; j <= i; j++)
                    mx = p[j] * scale > mx ? p[j] * scale : mx;
                double z = 0;
                for (int j = 0; j <= i; j++) {
                    p[j] = REXP(p[j] * scale - mx);
                    z += (double)p[j];
                }
                R iz = (R)(1.0 / z);
                for (int j = 0; j <= i; j++)
                    p[j] *= iz;
                for (int j = i + 1; j < T; j++)
                    p[j] = 0;
            }
            GEMM(NULL, false, false, T, hd, T, P, T, V, KD, 0, a->ao + b * T * QD + (int64_t)h * hd, QD);
        }
    }
}

static void SFX(job_swiglu)(void *ctx, int ith, int nth)
{
    struct NET *n = ctx;
    struct SFX(lact) *a = &n->la[n->il];
    bool moe = n->s.n_expert > 0;
    int64_t F = moe ? n->s.n_ff_exp : n->s.n_ff, rows = moe ? (int64_t)n->N * n->s.n_expert_used : n->N, lo, hi;
    split_range(rows, ith, nth, &lo, &hi);
    if (moe)
        SFX(swiglu_fwd)(a->As + lo * F, a->Gs + lo * F, a->Us + lo * F, (int)((hi - lo) * F));
    else
        SFX(swiglu_fwd)(a->a + lo * F, a->g + lo * F, a->u + lo * F, (int)((hi - lo) * F));
}

/* router softmax and top-k choice */
static void SFX(job_route)(void *ctx, int ith, int nth)
{
    struct NET *n = ctx;
    const struct train_shape *s = &n->s;
    struct SFX(lact) *a = &n->la[n->il];
    int E = s->n_expert, K = s->n_expert_used;
    int64_t lo, hi;
    split_range(n->N, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        R *p = a->probs + r * E;
        R mx = p[0];
        for (int e = 1; e < E; e++)
            mx = p[e] > mx ? p[e] : mx;
        double z = 0;
        for (int e = 0; e < E; e++)
            z += exp((double)(p[e] - mx));
        int32_t *sel = a->sel + r * K;
        for (int j = 0; j < K; j++) { /* on the logits, as the inference path does */
            int best = -1;
            for (int e = 0; e < E; e++) {
                bool taken = false;
                for (int q = 0; q < j; q++)
                    taken |= sel[q] == e;
                if (!taken && (best < 0 || p[e] > p[best]))
                    best = e;
            }
            sel[j] = best;
        }
        for (int e = 0; e < E; e++)
            p[e] = (R)(exp((double)(p[e] - mx)) / z);
        double wsum = 0;
        for (int j = 0; j < K; j++)
            wsum += (double)p[sel[j]];
        for (int j = 0; j < K; j++)
            a->w[r * K + j] = s->expert_norm ? (R)((double)p[sel[j]] / wsum) : p[sel[j]];
    }
}

static void SFX(job_gather)(void *ctx, int ith, int nth)
{
    struct NET *n = ctx;
    struct SFX(lact) *a = &n->la[n->il];
    int64_t d = n->s.n_embd, lo, hi;
    split_range((int64_t)n->N * n->s.n_expert_used, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++)
        memcpy(a->Xs + r * d, a->h2 + (int64_t)a->tokof[r] * d, (size_t)d * sizeof(R));
}

/* next x = xmid + sum over slots of w * Ys (slots in order) */
static void SFX(job_combine)(void *ctx, int ith, int nth)
{
    struct NET *n = ctx;
    struct SFX(lact) *a = &n->la[n->il];
    R *out = n->la[n->il + 1].x;
    int K = n->s.n_expert_used;
    int64_t d = n->s.n_embd, lo, hi;
    split_range(n->N, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        R *o = out + r * d;
        memcpy(o, a->xmid + r * d, (size_t)d * sizeof(R));
        for (int j = 0; j < K; j++) {
            R w = a->w[r * K + j];
            const R *y = a->Ys + (int64_t)a->pos[r * K + j] * d;
            for (int64_t c = 0; c < d; c++)
                o[c] += w * y[c];
        }
    }
}

static void SFX(job_xent)(void *ctx, int ith, int nth)
{
    struct NET *n = ctx;
    int V = n->s.n_vocab;
    int64_t lo, hi;
    split_range(n->N, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        R *lg = n->logits + r * V;
        n->row_loss[r] = SFX(xent)(n->G ? lg : NULL, lg, V, SFX(tok_out)(n, r), 1.0 / n->N);
    }
}

/* Sorts the (token, slot) pairs by expert, tokens in order within one; the
 * load-balancing loss of the layer. */
static void SFX(moe_sort)(struct NET *n, struct SFX(lact) *a)
{
    int E = n->s.n_expert, K = n->s.n_expert_used;
    int64_t NK = (int64_t)n->N * K;
    memset(a->off, 0, (size_t)(E + 1) * sizeof *a->off);
    for (int64_t i = 0; i < NK; i++)
        a->off[a->sel[i] + 1]++;
    for (int e = 0; e < E; e++)
        a->off[e + 1] += a->off[e];
    int32_t fill[4096];
    MAAS_ASSERT(E <= 4096);
    memcpy(fill, a->off, (size_t)E * sizeof *fill);
    for (int64_t i = 0; i < NK; i++) {
        int32_t row = fill[a->sel[i]]++;
        a->pos[i] = row;
        a->tokof[row] = (int32_t)(i / K);
    }
    double aux = 0;
    for (int e = 0; e < E; e++) {
        double pe = 0;
        for (int64_t r = 0; r < n->N; r++)
            pe += (double)a->probs[r * E + e];
        aux += (double)(a->off[e + 1] - a->off[e]) / (double)NK * (pe / n->N);
    }
    a->aux = aux * E;
}

static void SFX(ffn_fwd)(struct NET *n, int il)
{
    const struct train_shape *s = &n->s;
    const struct train_layer *ly = &n->l->layer[il];
    struct SFX(lact) *a = &n->la[il];
    int64_t N = n->N, d = s->n_embd;
    R *xo = n->la[il + 1].x;
    if (s->n_expert == 0) {
        SFX(lin)(n, a->h2, N, d, ly->gate, s->n_ff, a->g, false);
        SFX(lin)(n, a->h2, N, d, ly->up, s->n_ff, a->u, false);
        SFX(run)(n, SFX(job_swiglu));
        memcpy(xo, a->xmid, (size_t)(N * d) * sizeof(R));
        SFX(lin)(n, a->a, N, s->n_ff, ly->down, d, xo, true);
        return;
    }
    int64_t FE = s->n_ff_exp;
    SFX(lin)(n, a->h2, N, d, ly->gate_inp, s->n_expert, a->probs, false);
    SFX(run)(n, SFX(job_route));
    SFX(moe_sort)(n, a);
    SFX(run)(n, SFX(job_gather));
    for (int e = 0; e < s->n_expert; e++) {
        int64_t r0 = a->off[e], ne = a->off[e + 1] - r0;
        if (ne == 0)
            continue;
        SFX(lin)(n, a->Xs + r0 * d, ne, d, ly->gate_exps + (size_t)e * (size_t)(FE * d), FE, a->Gs + r0 * FE, false);
        SFX(lin)(n, a->Xs + r0 * d, ne, d, ly->up_exps + (size_t)e * (size_t)(FE * d), FE, a->Us + r0 * FE, false);
    }
    SFX(run)(n, SFX(job_swiglu));
    for (int e = 0; e < s->n_expert; e++) {
        int64_t r0 = a->off[e], ne = a->off[e + 1] - r0;
        if (ne > 0)
            SFX(lin)(n, a->As + r0 * FE, ne, FE, ly->down_exps + (size_t)e * (size_t)(FE * d), d, a->Ys + r0 * d, false);
    }
    SFX(run)(n, SFX(job_combine));
}

static void SFX(layer_fwd)(struct NET *n, int il)
{
    const struct train_shape *s = &n->s;
    const struct train_layer *ly = &n->l->layer[il];
    struct SFX(lact) *a = &n->la[il];
    int64_t N = n->N, d = s->n_embd, QD = (int64_t)s->n_head * s->head_dim, KD = (int64_t)s->n_head_kv * s->head_dim;
    n->il = il;
    SFX(norm_fwd)(n, a->x, ly->attn_norm, a->h1, a->rs1);
    SFX(lin)(n, a->h1, N, d, ly->wq, QD, s->qk_norm ? a->qraw : a->q, false);
    SFX(lin)(n, a->h1, N, d, ly->wk, KD, s->qk_norm ? a->kraw : a->k, false);
    SFX(lin)(n, a->h1, N, d, ly->wv, KD, a->v, false);
    SFX(run)(n, SFX(job_qk));
    SFX(run)(n, SFX(job_attn));
    memcpy(a->xmid, a->x, (size_t)(N * d) * sizeof(R));
    SFX(lin)(n, a->ao, N, QD, ly->wo, d, a->xmid, true);
    SFX(norm_fwd)(n, a->xmid, ly->ffn_norm, a->h2, a->rs2);
    SFX(ffn_fwd)(n, il);
}

/* ---- backward jobs ---- */
/* rows: nb_dx += rmsnorm backward of nb_dy */
static void SFX(job_nb_rows)(void *ctx, int ith, int nth)
{
    struct NET *n = ctx;
    int64_t d = n->nb_n, lo, hi;
    split_range(n->nb_rows, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++)
        SFX(rms_bwd)(n->nb_dx + r * d, NULL, n->nb_dy + r * d, n->nb_x + r * d, n->nb_w, n->nb_rs[r], (int)d);
}

/* columns: nb_dw[c] += sum over rows of dy * x * rs */
static void SFX(job_nb_cols)(void *ctx, int ith, int nth)
{
    struct NET *n = ctx;
    int64_t d = n->nb_n, lo, hi;
    split_range(d, ith, nth, &lo, &hi);
    for (int64_t c = lo; c < hi; c++) {
        double acc = 0;
        for (int64_t r = 0; r < n->nb_rows; r++)
            acc += (double)n->nb_dy[r * d + c] * (double)n->nb_x[r * d + c] * (double)n->nb_rs[r];
        n->nb_dw[c] += (R)acc;
    }
}

static void SFX(norm_bwd)(struct NET *n, const R *dy, const R *x, size_t w, const R *rs, R *dx, int64_t rows, int d)
{
    n->nb_dy = dy, n->nb_x = x, n->nb_w = SFX(prm)(n, w), n->nb_rs = rs, n->nb_dx = dx, n->nb_dw = SFX(grd)(n, w);
    n->nb_rows = (int)rows, n->nb_n = d;
    SFX(run)(n, SFX(job_nb_rows));
    SFX(run)(n, SFX(job_nb_cols));
}

static void SFX(job_swiglu_bwd)(void *ctx, int ith, int nth)
{
    struct NET *n = ctx;
    struct SFX(lact) *a = &n->la[n->il];
    bool moe = n->s.n_expert > 0;
    int64_t F = moe ? n->s.n_ff_exp : n->s.n_ff, rows = moe ? (int64_t)n->N * n->s.n_expert_used : n->N, lo, hi;
    split_range(rows, ith, nth, &lo, &hi);
    if (moe)
        SFX(swiglu_bwd)(n->dGs + lo * F, n->dUs + lo * F, n->dAs + lo * F, a->Gs + lo * F, a->Us + lo * F,
                        (int)((hi - lo) * F));
    else
        SFX(swiglu_bwd)(n->dg + lo * F, n->du + lo * F, n->da + lo * F, a->g + lo * F, a->u + lo * F,
                        (int)((hi - lo) * F));
}

/* MoE: the slots' output gradients dYs = w * dx and the weights' gradients dw = dx . Ys */
static void SFX(job_moe_dy)(void *ctx, int ith, int nth)
{
    struct NET *n = ctx;
    struct SFX(lact) *a = &n->la[n->il];
    int K = n->s.n_expert_used;
    int64_t d = n->s.n_embd, lo, hi;
    split_range(n->N, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const R *dx = n->dx + r * d;
        for (int j = 0; j < K; j++) {
            int64_t row = a->pos[r * K + j];
            R w = a->w[r * K + j], *dy = n->dYs + row * d;
            const R *y = a->Ys + row * d;
            double dot = 0;
            for (int64_t c = 0; c < d; c++) {
                dy[c] = w * dx[c];
                dot += (double)dx[c] * (double)y[c];
            }
            n->dw[r * K + j] = (R)dot;
        }
    }
}

/* MoE: dh = sum of the slots' input gradients; the router logits' gradient
 * (through the renormalisation, the softmax and the load-balancing term). */
static void SFX(job_moe_dx)(void *ctx, int ith, int nth)
{
    struct NET *n = ctx;
    const struct train_shape *s = &n->s;
    struct SFX(lact) *a = &n->la[n->il];
    int K = s->n_expert_used, E = s->n_expert;
    int64_t d = s->n_embd, NK = (int64_t)n->N * K, lo, hi;
    int n_moe = s->n_layer;
    split_range(n->N, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        R *dh = n->dh + r * d;
        memset(dh, 0, (size_t)d * sizeof(R));
        for (int j = 0; j < K; j++) {
            const R *dxs = n->dXs + (int64_t)a->pos[r * K + j] * d;
            for (int64_t c = 0; c < d; c++)
                dh[c] += dxs[c];
        }
        const R *p = a->probs + r * E, *w = a->w + r * K, *dw = n->dw + r * K;
        const int32_t *sel = a->sel + r * K;
        R *dp = n->dprobs + r * E;
        for (int e = 0; e < E; e++) /* the load-balancing term: d/dp of E * sum f_e P_e */
            dp[e] = (R)(n->aux_coef / n_moe * E * ((double)(a->off[e + 1] - a->off[e]) / (double)NK) / n->N);
        if (s->expert_norm) {
            double wsum = 0, wdw = 0;
            for (int j = 0; j < K; j++) {
                wsum += (double)p[sel[j]];
                wdw += (double)w[j] * (double)dw[j];
            }
            for (int j = 0; j < K; j++)
                dp[sel[j]] += (R)(((double)dw[j] - wdw) / wsum);
        } else {
            for (int j = 0; j < K; j++)
                dp[sel[j]] += dw[j];
        }
        double pdp = 0;
        for (int e = 0; e < E; e++)
            pdp += (double)p[e] * (double)dp[e];
        for (int e = 0; e < E; e++)
            dp[e] = (R)((double)p[e] * ((double)dp[e] - pdp)); /* now the logits' gradient */
    }
}

static void SFX(ffn_bwd)(struct NET *n, int il)
{
    const struct train_shape *s = &n->s;
    const struct train_layer *ly = &n->l->layer[il];
    struct SFX(lact) *a = &n->la[il];
    int64_t N = n->N, d = s->n_embd;
    if (s->n_expert == 0) {
        SFX(lin_bwd)(n, n->dx, a->a, N, s->n_ff, ly->down, d, n->da, false);
        SFX(run)(n, SFX(job_swiglu_bwd));
        SFX(lin_bwd)(n, n->dg, a->h2, N, d, ly->gate, s->n_ff, n->dh, false);
        SFX(lin_bwd)(n, n->du, a->h2, N, d, ly->up, s->n_ff, n->dh, true);
        return;
    }
    int64_t FE = s->n_ff_exp;
    SFX(run)(n, SFX(job_moe_dy));
    for (int e = 0; e < s->n_expert; e++) {
        int64_t r0 = a->off[e], ne = a->off[e + 1] - r0;
        if (ne > 0)
            SFX(lin_bwd)(n, n->dYs + r0 * d, a->As + r0 * FE, ne, FE, ly->down_exps + (size_t)e * (size_t)(FE * d), d,
                         n->dAs + r0 * FE, false);
    }
    SFX(run)(n, SFX(job_swiglu_bwd));
    for (int e = 0; e < s->n_expert; e++) {
        int64_t r0 = a->off[e], ne = a->off[e + 1] - r0;
        if (ne == 0)
            continue;
        size_t wo = (size_t)e * (size_t)(FE * d);
        SFX(lin_bwd)(n, n->dGs + r0 * FE, a->Xs + r0 * d, ne, d, ly->gate_exps + wo, FE, n->dXs + r0 * d, false);
        SFX(lin_bwd)(n, n->dUs + r0 * FE, a->Xs + r0 * d, ne, d, ly->up_exps + wo, FE, n->dXs + r0 * d, true);
    }
    SFX(run)(n, SFX(job_moe_dx));
    SFX(lin_bwd)(n, n->dprobs, a->h2, N, d, ly->gate_inp, s->n_expert, n->dh, true);
}

/* attention backward for each (sequence, kv head) */
static void SFX(job_attn_bwd)(void *ctx, int ith, int nth)
{
    struct NET *n = ctx;
    const struct train_shape *s = &n->s;
    struct SFX(lact) *a = &n->la[n->il];
    int hd = s->head_dim, nh = s->n_head, nkv = s->n_head_kv, grp = nh / nkv, T = n->T;
    int64_t QD = (int64_t)nh * hd, KD = (int64_t)nkv * hd, lo, hi;
    R scale = (R)(1.0 / sqrt((double)hd)), *dS = n->scr + (int64_t)ith * T * T;
    split_range((int64_t)n->B * nkv, ith, nth, &lo, &hi);
    for (int64_t job = lo; job < hi; job++) {
        int64_t b = job / nkv, g = job % nkv;
        const R *K = a->k + b * T * KD + g * hd, *V = a->v + b * T * KD + g * hd;
        R *dK = n->dk + b * T * KD + g * hd, *dV = n->dv + b * T * KD + g * hd;
        for (int i = 0; i < T; i++) {
            memset(dK + (int64_t)i * KD, 0, (size_t)hd * sizeof(R));
            memset(dV + (int64_t)i * KD, 0, (size_t)hd * sizeof(R));
        }
        for (int h = (int)g * grp; h < (int)(g + 1) * grp; h++) {
            const R *Q = a->q + b * T * QD + (int64_t)h * hd, *dO = n->dao + b * T * QD + (int64_t)h * hd;
            const R *P = a->P + (b * nh + h) * (int64_t)T * T;
            GEMM(NULL, false, true, T, T, hd, dO, QD, V, KD, 0, dS, T); /* dP */
            for (int i = 0; i < T; i++) {
                R *ds = dS + (int64_t)i * T;
                const R *p = P + (int64_t)i * T;
                double dot = 0;
                for (int j = 0; j <= i; j++)
                    dot += (double)ds[j] * (double)p[j];
                for (int j = 0; j <= i; j++)
                    ds[j] = p[j] * (ds[j] - (R)dot) * scale;
                for (int j = i + 1; j < T; j++)
                    ds[j] = 0;
            }
            GEMM(NULL, false, false, T, hd, T, dS, T, K, KD, 0, n->dq + b * T * QD + (int64_t)h * hd, QD);
            GEMM(NULL, true, false, T, hd, T, dS, T, Q, QD, 1, dK, KD);
            GEMM(NULL, true, false, T, hd, T, P, T, dO, QD, 1, dV, KD);
        }
    }
}

/* RoPE backward on dq, dk; then the per-head norms' (into dqraw, dkraw) */
static void SFX(job_qk_bwd)(void *ctx, int ith, int nth)
{
    struct NET *n = ctx;
    const struct train_shape *s = &n->s;
    struct SFX(lact) *a = &n->la[n->il];
    const struct train_layer *ly = &n->l->layer[n->il];
    int hd = s->head_dim, nh = s->n_head, nkv = s->n_head_kv, half = s->n_rot / 2;
    int64_t QD = (int64_t)nh * hd, KD = (int64_t)nkv * hd, lo, hi;
    split_range(n->N, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        R *dq = n->dq + r * QD, *dk = n->dk + r * KD;
        int64_t p = r % n->T;
        SFX(rope)(dq, nh, hd, s->n_rot, s->rope_neox, n->cs + p * half, n->sn + p * half, true);
        SFX(rope)(dk, nkv, hd, s->n_rot, s->rope_neox, n->cs + p * half, n->sn + p * half, true);
        if (!s->qk_norm)
            continue;
        memset(n->dqraw + r * QD, 0, (size_t)QD * sizeof(R));
        memset(n->dkraw + r * KD, 0, (size_t)KD * sizeof(R));
        for (int h = 0; h < nh; h++)
            SFX(rms_bwd)(n->dqraw + r * QD + h * hd, NULL, dq + h * hd, a->qraw + r * QD + h * hd,
                         SFX(prm)(n, ly->q_norm), a->qrs[r * nh + h], hd);
        for (int h = 0; h < nkv; h++)
            SFX(rms_bwd)(n->dkraw + r * KD + h * hd, NULL, dk + h * hd, a->kraw + r * KD + h * hd,
                         SFX(prm)(n, ly->k_norm), a->krs[r * nkv + h], hd);
    }
}

/* the per-head norm weights' gradients: column c of every head */
static void SFX(job_qk_norm_w)(void *ctx, int ith, int nth)
{
    struct NET *n = ctx;
    const struct train_shape *s = &n->s;
    struct SFX(lact) *a = &n->la[n->il];
    const struct train_layer *ly = &n->l->layer[n->il];
    int hd = s->head_dim;
    int64_t lo, hi;
    split_range(2 * (int64_t)hd, ith, nth, &lo, &hi);
    for (int64_t cc = lo; cc < hi; cc++) {
        bool isq = cc < hd;
        int c = (int)(isq ? cc : cc - hd), nhh = isq ? s->n_head : s->n_head_kv;
        int64_t D = (int64_t)nhh * hd;
        const R *dy = isq ? n->dq : n->dk, *x = isq ? a->qraw : a->kraw, *rs = isq ? a->qrs : a->krs;
        double acc = 0;
        for (int64_t r = 0; r < n->N; r++)
            for (int h = 0; h < nhh; h++)
                acc += (double)dy[r * D + h * hd + c] * (double)x[r * D + h * hd + c] * (double)rs[r * nhh + h];
        SFX(grd)(n, isq ? ly->q_norm : ly->k_norm)[c] += (R)acc;
    }
}

static void SFX(attn_bwd)(struct NET *n, int il)
{
    const struct train_shape *s = &n->s;
    const struct train_layer *ly = &n->l->layer[il];
    struct SFX(lact) *a = &n->la[il];
    int64_t N = n->N, d = s->n_embd, QD = (int64_t)s->n_head * s->head_dim, KD = (int64_t)s->n_head_kv * s->head_dim;
    SFX(lin_bwd)(n, n->dx, a->ao, N, QD, ly->wo, d, n->dao, false);
    SFX(run)(n, SFX(job_attn_bwd));
    SFX(run)(n, SFX(job_qk_bwd));
    const R *dq = n->dq, *dk = n->dk;
    if (s->qk_norm) {
        SFX(run)(n, SFX(job_qk_norm_w));
        dq = n->dqraw, dk = n->dkraw;
    }
    SFX(lin_bwd)(n, dq, a->h1, N, d, ly->wq, QD, n->dh, false);
    SFX(lin_bwd)(n, dk, a->h1, N, d, ly->wk, KD, n->dh, true);
    SFX(lin_bwd)(n, n->dv, a->h1, N, d, ly->wv, KD, n->dh, true);
}

/* token_embd's gradient: columns split over threads, rows in order */
static void SFX(job_embed_bwd)(void *ctx, int ith, int nth)
{
    struct NET *n = ctx;
    int64_t d = n->s.n_embd, lo, hi;
    split_range(d, ith, nth, &lo, &hi);
    R *gE = SFX(grd)(n, n->l->tok_embd);
    for (int64_t r = 0; r < n->N; r++) {
        R *g = gE + (int64_t)SFX(tok_in)(n, r) * d;
        const R *dx = n->dx + r * d;
        for (int64_t c = lo; c < hi; c++)
            g[c] += dx[c];
    }
}

static void SFX(backward)(struct NET *n)
{
    const struct train_shape *s = &n->s;
    int64_t N = n->N, d = s->n_embd;
    /* logits = hf W_out^T; n->logits holds their gradient now */
    SFX(lin_bwd)(n, n->logits, n->hf, N, d, n->l->output, s->n_vocab, n->dh, false);
    memset(n->dx, 0, (size_t)(N * d) * sizeof(R));
    SFX(norm_bwd)(n, n->dh, n->la[s->n_layer].x, n->l->output_norm, n->rsf, n->dx, N, (int)d);
    for (int il = s->n_layer - 1; il >= 0; il--) {
        struct SFX(lact) *a = &n->la[il];
        const struct train_layer *ly = &n->l->layer[il];
        n->il = il;
        /* dx: the gradient of the layer's output = of xmid through the residual */
        SFX(ffn_bwd)(n, il);
        SFX(norm_bwd)(n, n->dh, a->xmid, ly->ffn_norm, a->rs2, n->dx, N, (int)d);
        SFX(attn_bwd)(n, il);
        SFX(norm_bwd)(n, n->dh, a->x, ly->attn_norm, a->rs1, n->dx, N, (int)d);
    }
    SFX(run)(n, SFX(job_embed_bwd));
}

struct train_loss SFX(train_net_step)(struct NET *n, const R *P, R *G, const int32_t *tokens, double aux_coef)
{
    const struct train_shape *s = &n->s;
    n->P = P, n->G = G, n->tok = tokens, n->aux_coef = aux_coef;
    SFX(run)(n, SFX(job_embed));
    for (int il = 0; il < s->n_layer; il++)
        SFX(layer_fwd)(n, il);
    SFX(norm_fwd)(n, n->la[s->n_layer].x, n->l->output_norm, n->hf, n->rsf);
    SFX(lin)(n, n->hf, n->N, s->n_embd, n->l->output, s->n_vocab, n->logits, false);
    SFX(run)(n, SFX(job_xent));
    struct train_loss loss = {0, 0};
    for (int64_t r = 0; r < n->N; r++)
        loss.ce += n->row_loss[r];
    loss.ce /= n->N;
    if (s->n_expert > 0) {
        for (int il = 0; il < s->n_layer; il++)
            loss.aux += n->la[il].aux;
        loss.aux /= s->n_layer;
    }
    if (G)
        SFX(backward)(n);
    return loss;
}

#undef NET
