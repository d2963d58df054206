/*
 * AdamW with linear warm-up and cosine decay, global-norm clipping, and the
 * batches a token stream gives.
 */
#include "train/train.h"

#include <math.h>
#include <string.h>

#define NORM_CHUNK 65536

double train_lr(const struct train_adamw *o, int step)
{
    if (o->warmup > 0 && step < o->warmup)
        return o->lr * (double)(step + 1) / (double)o->warmup;
    int span = o->steps - o->warmup;
    if (span <= 0)
        return o->lr;
    double t = (double)(step - o->warmup) / (double)span;
    if (t > 1)
        t = 1;
    return o->lr_min + 0.5 * (o->lr - o->lr_min) * (1.0 + cos(M_PI * t));
}

struct norm_job {
    const float *g;
    size_t n, n_chunks;
    double *part; /* one sum per chunk */
};

static void norm_chunks(void *ctx, int ith, int nth)
{
    struct norm_job *j = ctx;
    int64_t lo, hi;
    split_range((int64_t)j->n_chunks, ith, nth, &lo, &hi);
    for (int64_t c = lo; c < hi; c++) {
        size_t a = (size_t)c * NORM_CHUNK, b = a + NORM_CHUNK < j->n ? a + NORM_CHUNK : j->n;
        double s = 0;
        for (size_t i = a; i < b; i++)
            s += (double)j->g[i] * (double)j->g[i];
        j->part[c] = s;
    }
}

double train_grad_norm(struct pool *pool, const float *G, size_t n)
{
    size_t nc = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double stack[256], *part = nc <= 256 ? stack : malloc(nc * sizeof *part);
    if (!part) { /* out of memory: one thread, one order */
        double s = 0;
        for (size_t i = 0; i < n; i++)
            s += (double)G[i] * (double)G[i];
        return sqrt(s);
    }
    struct norm_job j = {G, n, nc, part};
    if (pool)
        pool_run(pool, norm_chunks, &j);
    else
        norm_chunks(&j, 0, 1);
    double s = 0;
    for (size_t c = 0; c < nc; c++)
        s += part[c];
    if (part != stack)
        free(part);
    return sqrt(s);
}

struct adam_job {
    const struct train_adamw *o;
    const struct train_layout *l;
    float *P, *G, *M, *V;
    float lr, gscale, bc1, bc2;
};

static void adam_tensors(void *ctx, int ith, int nth)
{
    struct adam_job *j = ctx;
    const struct train_adamw *o = j->o;
    float b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->eps;
    /* every thread takes a slice of every tensor: work stays even */
    for (int t = 0; t < j->l->n_t; t++) {
        const struct train_tensor *tt = &j->l->t[t];
        int64_t lo, hi;
        split_range((int64_t)tt->n, ith, nth, &lo, &hi);
        float wd = tt->decay ? (float)(o->weight_decay * j->lr) : 0.0f;
        float *p = j->P + tt->off, *g = j->G + tt->off, *m = j->M + tt->off, *v = j->V + tt->off;
        for (int64_t i = lo; i < hi; i++) {
            float gi = g[i] * j->gscale;
            m[i] = b1 * m[i] + (1 - b1) * gi;
            v[i] = b2 * v[i] + (1 - b2) * gi * gi;
            float mh = m[i] / j->bc1, vh = v[i] / j->bc2;
            p[i] -= j->lr * mh / (sqrtf(vh) + eps) + wd * p[i];
        }
    }
}

double train_adamw_step(struct pool *pool, const struct train_adamw *o, int step, const struct train_layout *l,
                        float *P, float *G, float *M, float *V)
{
    double norm = train_grad_norm(pool, G, l->n_params);
    double scale = o->clip > 0 && norm > o->clip ? o->clip / norm : 1.0;
    struct adam_job j = {o, l, P, G, M, V, (float)train_lr(o, step), (float)scale,
                         (float)(1.0 - pow(o->beta1, step + 1)), (float)(1.0 - pow(o->beta2, step + 1))};
    if (pool)
        pool_run(pool, adam_tensors, &j);
    else
        adam_tensors(&j, 0, 1);
    return norm;
}

/* ---- batches ---- */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void train_batch(const int32_t *toks, size_t n, int B, int T, uint64_t seed, int64_t step, int32_t *out)
{
    size_t span = n - (size_t)T - 1;
    for (int b = 0; b < B; b++) {
        uint64_t h = mix64(seed ^ mix64((uint64_t)step * 0x9e3779b97f4a7c15ull + (uint64_t)b + 1));
        size_t start = (size_t)(h % (span + 1));
        memcpy(out + (size_t)b * (size_t)(T + 1), toks + start, (size_t)(T + 1) * sizeof *out);
    }
}

int train_eval_windows(const int32_t *toks, size_t n, int T, int n_win, int32_t *out)
{
    if (n <= (size_t)T + 1 || n_win < 1)
        return 0;
    size_t span = n - (size_t)T - 1;
    for (int w = 0; w < n_win; w++) {
        size_t start = n_win == 1 ? 0 : span * (size_t)w / (size_t)(n_win - 1);
        memcpy(out + (size_t)w * (size_t)(T + 1), toks + start, (size_t)(T + 1) * sizeof *out);
    }
    return n_win;
}
