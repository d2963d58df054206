/*
 * The sampler (see sample.h for the pipeline). Design: candidates are kept
 * as (id, unnormalised probability) pairs; a total order (probability
 * descending, id ascending) makes every selection deterministic. Truncations
 * never sort the whole vocabulary: top-k, top-N and top-p use quickselect to
 * bring the largest m to the front and sort only those, growing m for top-p
 * until the prefix holds enough mass.
 */
#include "sample/sample.h"

#include <math.h>
#include <string.h>

struct cand {
    int32_t id;
    float p; /* exp(logit - max logit): unnormalised */
};

struct sampler {
    int n_vocab;
    float *l;         /* n_vocab working logits, from malloc */
    int32_t *count;   /* n_vocab occurrence counts, all zero between calls, from malloc */
    struct cand *c;   /* n_vocab candidates, from malloc */
};

struct sample_params sample_params_default(void)
{
    struct sample_params p = {0};
    p.temperature = 1.0f;
    p.top_p = 1.0f;
    p.repeat_penalty = 1.0f;
    p.penalty_last_n = 64;
    return p;
}

int sample_params_check(const struct sample_params *p, struct err *e)
{
    if (!(p->temperature >= 0 && isfinite(p->temperature)))
        return err_set(e, ERR_INVALID, "temperature: %g is not a finite number >= 0", p->temperature);
    if (p->top_k < 0)
        return err_set(e, ERR_INVALID, "top_k: %d is negative", p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1))
        return err_set(e, ERR_INVALID, "top_p: %g is not in (0, 1]", p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return err_set(e, ERR_INVALID, "min_p: %g is not in [0, 1]", p->min_p);
    if (!(p->repeat_penalty > 0 && isfinite(p->repeat_penalty)))
        return err_set(e, ERR_INVALID, "repeat_penalty: %g is not a finite number > 0", p->repeat_penalty);
    if (!isfinite(p->presence_penalty))
        return err_set(e, ERR_INVALID, "presence_penalty: %g is not finite", p->presence_penalty);
    if (!isfinite(p->frequency_penalty))
        return err_set(e, ERR_INVALID, "frequency_penalty: %g is not finite", p->frequency_penalty);
    if (p->penalty_last_n < -1)
        return err_set(e, ERR_INVALID, "penalty_last_n: %d is below -1", p->penalty_last_n);
    if (p->n_top_logprobs < 0 || p->n_top_logprobs > SAMPLE_MAX_TOP)
        return err_set(e, ERR_INVALID, "top_logprobs: %d is not in 0..%d", p->n_top_logprobs, SAMPLE_MAX_TOP);
    if (p->n_bias < 0 || (p->n_bias > 0 && !p->bias))
        return err_set(e, ERR_INVALID, "logit_bias: bad list");
    for (int i = 0; i < p->n_bias; i++)
        if (isnan(p->bias[i].bias) || p->bias[i].bias == INFINITY) /* -inf bans a token */
            return err_set(e, ERR_INVALID, "logit_bias: token %d: bias %g is not a number or -inf", (int)p->bias[i].token,
                           p->bias[i].bias);
    return 0;
}

struct sampler *sampler_new(int n_vocab, struct err *e)
{
    if (n_vocab < 1) {
        err_set(e, ERR_INVALID, "sampler: vocabulary of %d tokens", n_vocab);
        return NULL;
    }
    struct sampler *s = calloc(1, sizeof *s);
    if (!s)
        goto oom;
    s->n_vocab = n_vocab;
    s->l = malloc((size_t)n_vocab * sizeof *s->l);
    s->count = calloc((size_t)n_vocab, sizeof *s->count);
    s->c = malloc((size_t)n_vocab * sizeof *s->c);
    if (!s->l || !s->count || !s->c)
        goto oom;
    return s;
oom:
    sampler_free(s);
    err_set(e, ERR_NOMEM, "sampler: out of memory for a vocabulary of %d tokens", n_vocab);
    return NULL;
}

void sampler_free(struct sampler *s)
{
    if (!s)
        return;
    free(s->l);
    free(s->count);
    free(s->c);
    free(s);
}

/* a before b in the total order: more probable first, then lower id. */
static inline int before(const struct cand *a, const struct cand *b)
{
    return a->p > b->p || (a->p == b->p && a->id < b->id);
}

static inline void swap(struct cand *a, struct cand *b)
{
    struct cand t = *a;
    *a = *b;
    *b = t;
}

/* Reorders c[0..n) so that c[0..k) are the k first in the total order (in
 * any order among themselves). Iterative quickselect, median of three. */
static void select_top(struct cand *c, int n, int k)
{
    int lo = 0, hi = n - 1;
    if (k <= 0 || k >= n)
        return;
    while (hi > lo) {
        int mid = lo + (hi - lo) / 2;
        if (before(&c[mid], &c[lo]))
            swap(&c[mid], &c[lo]);
        if (before(&c[hi], &c[lo]))
            swap(&c[hi], &c[lo]);
        if (before(&c[hi], &c[mid]))
            swap(&c[hi], &c[mid]);
        struct cand pivot = c[mid];
        int i = lo, j = hi;
        while (i <= j) {
            while (before(&c[i], &pivot))
                i++;
            while (before(&pivot, &c[j]))
                j--;
            if (i <= j) {
                swap(&c[i], &c[j]);
                i++;
                j--;
            }
        }
        /* now c[lo..j] come before or equal the pivot, c[i..hi] after or equal */
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            return;
    }
}

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    return before(x, y) ? -1 : before(y, x) ? 1 : 0;
}

/* Brings the k first to the front, sorted. */
static void top_sorted(struct cand *c, int n, int k)
{
    if (k > n)
        k = n;
    select_top(c, n, k);
    qsort(c, (size_t)k, sizeof *c, cmp_cand);
}

/* Masks the tokens outside the allowed bitset. */
static void apply_allowed(float *l, int n, const uint32_t *allowed)
{
    for (int w = 0; w * 32 < n; w++) {
        uint32_t bits = allowed[w];
        if (bits == 0xFFFFFFFFu)
            continue;
        int end = w * 32 + 32 < n ? w * 32 + 32 : n;
        for (int i = w * 32; i < end; i++)
            if (!(bits >> (i % 32) & 1))
                l[i] = -INFINITY;
    }
}

static void apply_penalties(struct sampler *s, const struct sample_params *p, const int32_t *prev, int n_prev)
{
    bool rep = p->repeat_penalty != 1.0f, pres = p->presence_penalty != 0.0f, freq = p->frequency_penalty != 0.0f;
    if (!(rep || pres || freq) || n_prev <= 0 || !prev)
        return;
    int start = p->penalty_last_n < 0 || p->penalty_last_n >= n_prev ? 0 : n_prev - p->penalty_last_n;
    for (int i = start; i < n_prev; i++)
        if (prev[i] >= 0 && prev[i] < s->n_vocab)
            s->count[prev[i]]++;
    /* Each distinct token is penalised once, by its first occurrence in the
     * window, which also resets its count so that count[] is zero again. */
    for (int i = start; i < n_prev; i++) {
        int32_t t = prev[i];
        if (t < 0 || t >= s->n_vocab || s->count[t] == 0)
            continue;
        float l = s->l[t];
        if (rep)
            l = l > 0 ? l / p->repeat_penalty : l * p->repeat_penalty;
        l -= p->presence_penalty + p->frequency_penalty * (float)s->count[t];
        s->l[t] = l;
        s->count[t] = 0;
    }
}

void sampler_sample(struct sampler *s, const float *logits, const struct sample_params *p, const int32_t *prev,
                    int n_prev, struct rng *rng, struct sample_result *out)
{
    int n = s->n_vocab;
    float *l = s->l;
    memcpy(l, logits, (size_t)n * sizeof *l);
    for (int i = 0; i < p->n_bias; i++)
        if (p->bias[i].token >= 0 && p->bias[i].token < n)
            l[p->bias[i].token] += p->bias[i].bias;
    if (p->allowed)
        apply_allowed(l, n, p->allowed);
    apply_penalties(s, p, prev, n_prev);
    bool greedy = p->temperature == 0.0f;
    if (!greedy) {
        float inv = 1.0f / p->temperature;
        for (int i = 0; i < n; i++)
            l[i] *= inv;
    }

    /* Normaliser of the distribution the logprobs describe. A logit of
     * -inf (a ban through logit_bias) gets probability 0. */
    int arg = 0;
    if (p->allowed) /* start from an allowed token, so that it wins even when all are at -inf */
        while (arg < n - 1 && !(p->allowed[arg / 32] >> (arg % 32) & 1))
            arg++;
    for (int i = 1; i < n; i++)
        if (l[i] > l[arg])
            arg = i;
    float mx = l[arg];
    if (!isfinite(mx)) /* every token banned, or NaN logits: fall back to the first */
        mx = 0;
    double sum = 0;
    struct cand *c = s->c;
    for (int i = 0; i < n; i++) {
        float e = expf(l[i] - mx);
        if (!(e >= 0)) /* NaN */
            e = 0;
        c[i].id = i;
        c[i].p = e;
        sum += e;
    }
    double log_z = (double)mx + log(sum > 0 ? sum : 1.0);

    int nt = p->n_top_logprobs < n ? p->n_top_logprobs : n;
    out->n_top = nt;
    if (nt > 0) {
        top_sorted(c, n, nt);
        for (int i = 0; i < nt; i++) {
            out->top[i].id = c[i].id;
            out->top[i].logprob = (float)((double)l[c[i].id] - log_z);
        }
    }

    int32_t tok;
    if (greedy) {
        tok = arg;
    } else {
        int m = n;
        if (p->top_k > 0 && p->top_k < m) {
            select_top(c, m, p->top_k);
            m = p->top_k;
        }
        if (p->top_p < 1.0f) {
            double mass = 0;
            for (int i = 0; i < m; i++)
                mass += c[i].p;
            double want = p->top_p * mass;
            for (int k = m < 64 ? m : 64;; k = k * 4 < m ? k * 4 : m) {
                top_sorted(c, m, k);
                double acc = 0;
                int cut = -1;
                for (int i = 0; i < k; i++) {
                    acc += c[i].p;
                    if (acc >= want) {
                        cut = i + 1;
                        break;
                    }
                }
                if (cut > 0 || k == m) {
                    m = cut > 0 ? cut : m;
                    break;
                }
            }
        }
        if (p->min_p > 0.0f) {
            /* the most probable token has p = 1 (its logit is the max) */
            int w = 0;
            for (int i = 0; i < m; i++)
                if (c[i].p >= p->min_p)
                    c[w++] = c[i];
            m = w;
        }
        double kept = 0;
        for (int i = 0; i < m; i++)
            kept += c[i].p;
        tok = arg;
        if (m > 0 && kept > 0) {
            double r = rng_uniform(rng) * kept, acc = 0;
            for (int i = 0; i < m; i++) {
                if (c[i].p <= 0) /* never a token of probability 0 (a masked one), even on rounding */
                    continue;
                acc += c[i].p;
                tok = c[i].id;
                if (r < acc)
                    break;
            }
        }
    }
    out->token = tok;
    out->logprob = (float)((double)l[tok] - log_z);
}
