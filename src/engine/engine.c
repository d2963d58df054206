/*
 * The engine: a request queue, one engine thread that owns the model, the
 * KV cache and the scheduler, and per-sequence event rings read by client
 * threads.
 *
 * Threads and ownership. Client threads call engine_submit / next / cancel
 * / release / get_stats. The engine thread runs engine_main: it admits
 * queued sequences, builds one batch per step, runs model_forward and the
 * samplers, and publishes events. Shared state is small:
 *   - eng->mu guards the queue (a deque of handles: new requests at the
 *     back, preempted ones at the front), the stop flag and the stats copy;
 *   - seq->mu guards a sequence's event ring and its DONE record;
 *   - seq->cancel is an atomic flag read by the engine at each step;
 *   - seq->refs counts the two owners of a handle (client and engine);
 *     whoever drops the last reference frees it.
 * Everything else in a sequence (tokens, block table, rng) belongs to the
 * engine thread. The engine never waits for a client: a sequence's ring
 * holds max_tokens entries, as many as it can ever produce.
 *
 * Scheduling. A running sequence has tokens [0, n_tok): the prompt, then
 * the generated tokens; the KV of [0, n_computed) is in its blocks. Each
 * step feeds [n_computed, n_tok) or a chunk of it: one token for a decoding
 * sequence, a chunk of prompt for a prefilling one (decodes first, then
 * prefills within step_tokens: what is left is shared among the accounts
 * with prompt work by weight, oldest first inside one; oldest first overall
 * under fcfs). Logits are asked only
 * for a sequence's last token; its sample is appended to the tokens.
 * Blocks for all known tokens are taken at admission (after the prefix
 * cache has lent what it has); a decoding sequence takes one more block
 * when it crosses a block boundary. When none is left even after evicting
 * cached blocks, a running sequence is preempted (the youngest of the
 * account most above its fair share; the youngest under fcfs): its blocks are
 * dropped (full ones stay in the prefix cache) and it goes back to the
 * front of the queue with all its tokens; on resumption it recomputes them
 * (or finds them cached). Its sampler state (rng, tokens seen) continues,
 * so the output is the same as without preemption. The same happens when
 * every slot is taken and the next pick's account has none: the youngest
 * sequence of an account above its share of the slots makes room
 * (fair_yield), so that a light tenant does not wait for a flood's request
 * to end.
 *
 * Sequences finished in a step get their DONE events after the stats copy
 * is refreshed, so a client that has seen DONE also sees the blocks freed.
 * After DONE has been read, engine_next returns 1 at once, whatever the
 * timeout. Stats: kv_blocks_used counts blocks held by sequences, so that
 * used + free + cached = total.
 */
#include "engine/engine_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

struct ev_slot {
    int32_t token;
    float logprob;
    int n_top;
};

struct engine_seq {
    /* --- shared with clients, under mu --- */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct ev_slot *ring;             /* from malloc: ring_cap entries */
    struct sample_logprob *ring_top;  /* from malloc: ring_cap * n_top_logprobs, or NULL */
    int ring_cap, ring_head, ring_len;
    bool done, done_read;
    struct engine_event done_ev;
    atomic_bool cancel;
    atomic_int refs;                  /* client + engine */

    /* --- engine thread only --- */
    struct engine_request req;        /* req.prompt is NULL; req.sample.bias points at bias */
    struct sample_bias *bias;         /* from malloc, or NULL */
    int32_t *toks;                    /* from malloc: n_prompt + max_tokens */
    int n_tok, n_prompt;
    int32_t *blocks;                  /* from malloc: block table, max_blocks entries */
    int n_blocks, max_blocks;
    int n_computed;                   /* tokens whose KV is in the blocks */
    int n_gen;
    int n_cached;                     /* prompt tokens reused at first admission */
    bool admitted_once;
    char account[ENGINE_ACCOUNT_MAX];  /* the fair-share class key ("" = none) */
    int cls;                          /* its class in eng->fair, -1 until the engine thread binds it */
    bool in_running;                  /* in eng->running (else queued) */
    double compute_s;                 /* core-seconds attributed so far */
    uint64_t t_submit;                /* now_ns() at engine_submit */
    double queue_s;                   /* seconds waited before the first admission, once admitted */
    int reserved;                     /* tokens charged to the class at admission and not yet processed */
    double res_w;                     /* the class weight they were charged at */
    int n_reg;                        /* leading blocks whose prefix-cache entry is known */
    uint64_t chain_hash, chain_uid;   /* hash and entry id of block n_reg-1 (root when 0) */
    struct rng rng;
    /* this step: */
    int chunk, logit_row;
    bool finished;
    enum engine_finish fin;           /* when finished */
    char why[256];                    /* ENGINE_FINISH_ERROR: the reason */
    struct sample_result res;
    /* structured output (engine thread, or the pool thread sampling it): */
    struct grammar_state *gst;        /* owned, or NULL without a grammar */
    uint32_t *gmask;                  /* from malloc: the allowed tokens of this step */
    int g_allowed;                    /* tokens allowed this step; < 0 when the mask failed */
    bool g_taken;                     /* the grammar took this step's token already (a waiting lazy grammar) */
};

struct engine {
    struct model *m;                  /* borrowed */
    const struct tokenizer *tok;      /* borrowed, may be NULL */
    struct pool *pool;                /* owned */
    struct kv_cache *kv;              /* owned */
    struct pcache pc;
    struct embed_queue eq;            /* embedding requests (embedq.c): queue under mu, work list engine thread */
    struct sampler **smp;             /* owned: one per pool thread */
    int n_smp;
    int n_ctx, bs, step_tokens, max_running, max_queue, n_vocab, n_vocab_sample;
    bool embed_only;                  /* engine_opts.embed_only: no generation, a KV cache of one block */

    /* engine thread only, sized at engine_new: */
    struct batch_token *bt;           /* step_tokens */
    struct batch_seq *bseq;           /* max_running */
    struct engine_seq **bseqs;        /* max_running: the sequences of this batch */
    float *logits;                    /* (max_running, n_vocab) */
    struct engine_seq **running;      /* max_running, oldest admission first */
    int n_running;
    struct engine_seq **sampled;      /* max_running */
    int n_sampled;
    struct engine_seq **finished;     /* q_cap + max_running */
    int n_finished;
    uint64_t steps, tokens_prefilled, tokens_decoded, tokens_cached, preemptions;
    struct fair fair;                 /* admission policy and per-account classes */
    int *qcls, *rcls;                 /* q_cap, max_running: scratch class lists for fair_pick / fair_victim /
                                         fair_split */
    int *rtok;                        /* max_running: fair_split's tokens wanted / granted; fair_yield's lost work */
    int n_threads;
    double busy_s, busy_core_s;

    /* shared, under mu: */
    pthread_mutex_t mu;
    pthread_cond_t cv;                /* work arrived or stop */
    struct engine_seq **queue;        /* ring of q_cap = max_queue + max_running */
    int q_cap, q_head, q_len, q_new;  /* q_new: of q_len, requests never admitted */
    bool stop;
    struct engine_stats stats;
    struct grammar_vocab *gv;         /* owned; built by the first request with a grammar, under mu,
                                         then immutable */

    pthread_t thread;
    bool thread_started;
};

const char *engine_finish_name(enum engine_finish f)
{
    switch (f) {
    case ENGINE_FINISH_STOP:
        return "stop";
    case ENGINE_FINISH_LENGTH:
        return "length";
    case ENGINE_FINISH_CANCELLED:
        return "cancelled";
    case ENGINE_FINISH_ERROR:
        return "error";
    }
    return "?";
}

/* ---- handles ---------------------------------------------------------------- */

static void seq_free(struct engine_seq *s)
{
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->ring);
    free(s->ring_top);
    free(s->bias);
    free(s->toks);
    free(s->blocks);
    grammar_state_free(s->gst);
    free(s->gmask);
    free(s);
}

static void seq_unref(struct engine_seq *s)
{
    if (atomic_fetch_sub(&s->refs, 1) == 1)
        seq_free(s);
}

/* Engine thread: appends one token to the ring and wakes the reader. */
static void seq_push_token(struct engine_seq *s, const struct sample_result *r)
{
    pthread_mutex_lock(&s->mu);
    MAAS_ASSERT(s->ring_len < s->ring_cap);
    int i = (s->ring_head + s->ring_len) % s->ring_cap;
    int nt = s->req.sample.n_top_logprobs;
    int n_top = r->n_top < nt ? r->n_top : nt;
    s->ring[i] = (struct ev_slot){r->token, r->logprob, n_top};
    if (n_top > 0)
        memcpy(s->ring_top + (size_t)i * nt, r->top, (size_t)n_top * sizeof *r->top);
    s->ring_len++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Engine thread: the DONE record, then the engine lets go of the handle. */
static void seq_publish_done(struct engine_seq *s, enum engine_finish fin, const char *why)
{
    pthread_mutex_lock(&s->mu);
    struct engine_event *d = &s->done_ev;
    memset(d, 0, sizeof *d);
    d->kind = ENGINE_EV_DONE;
    d->finish = fin;
    d->n_prompt = s->n_prompt;
    d->n_cached = s->n_cached;
    d->n_completion = s->n_gen;
    d->compute_s = s->compute_s;
    d->queue_s = s->admitted_once ? s->queue_s : (double)(now_ns() - s->t_submit) * 1e-9;
    if (why)
        snprintf(d->error, sizeof d->error, "%s", why);
    s->done = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    seq_unref(s);
}

static void deadline_after(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int engine_next(struct engine_seq *s, struct engine_event *ev, int timeout_ms)
{
    struct timespec dl;
    if (timeout_ms > 0)
        deadline_after(&dl, timeout_ms);
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (s->ring_len > 0) {
            const struct ev_slot *sl = &s->ring[s->ring_head];
            ev->kind = ENGINE_EV_TOKEN;
            ev->tok.token = sl->token;
            ev->tok.logprob = sl->logprob;
            ev->tok.n_top = sl->n_top;
            if (sl->n_top > 0)
                memcpy(ev->tok.top, s->ring_top + (size_t)s->ring_head * s->req.sample.n_top_logprobs,
                       (size_t)sl->n_top * sizeof *ev->tok.top);
            s->ring_head = (s->ring_head + 1) % s->ring_cap;
            s->ring_len--;
            pthread_mutex_unlock(&s->mu);
            return 0;
        }
        if (s->done && !s->done_read) {
            *ev = s->done_ev;
            s->done_read = true;
            pthread_mutex_unlock(&s->mu);
            return 0;
        }
        /* after DONE nothing more comes: report a timeout at once */
        if (s->done_read || timeout_ms == 0)
            break;
        if (timeout_ms < 0) {
            pthread_cond_wait(&s->cv, &s->mu);
        } else if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) != 0) {
            timeout_ms = 0; /* one last look, then time out */
        }
    }
    pthread_mutex_unlock(&s->mu);
    return 1;
}

void engine_cancel(struct engine_seq *s)
{
    if (s)
        atomic_store(&s->cancel, true);
}

void engine_release(struct engine_seq *s)
{
    if (!s)
        return;
    atomic_store(&s->cancel, true);
    seq_unref(s);
}

/* ---- submission ----------------------------------------------------------------- */

/* A new sequence's grammar state and mask, building the engine's token
 * trie on first use (under mu: the engine thread only reads it through
 * the states). */
static int grammar_start(struct engine *eng, struct grammar *g, struct grammar_state **gst, uint32_t **gmask,
                         struct err *e)
{
    if (!eng->tok)
        return err_set(e, ERR_INVALID, "engine: a grammar needs the model's tokenizer");
    pthread_mutex_lock(&eng->mu);
    if (!eng->gv)
        eng->gv = grammar_vocab_new(eng->tok, eng->n_vocab_sample, e);
    struct grammar_vocab *gv = eng->gv;
    pthread_mutex_unlock(&eng->mu);
    if (!gv)
        return -1;
    if (!(*gst = grammar_state_new(g, gv, e)))
        return -1;
    if (!(*gmask = malloc((size_t)grammar_vocab_words(gv) * sizeof **gmask))) {
        grammar_state_free(*gst);
        *gst = NULL;
        return err_set(e, ERR_NOMEM, "engine: out of memory for a grammar mask");
    }
    return 0;
}

struct engine_seq *engine_submit(struct engine *eng, const struct engine_request *r, struct err *e)
{
    if (eng->embed_only)
        return err_set(e, ERR_INVALID, "engine: this engine only computes embeddings; it does not generate text"), NULL;
    if (r->n_prompt < 1 || !r->prompt)
        return err_set(e, ERR_INVALID, "engine: empty prompt"), NULL;
    if (r->max_tokens < 1)
        return err_set(e, ERR_INVALID, "engine: max_tokens %d must be at least 1", r->max_tokens), NULL;
    if ((int64_t)r->n_prompt + r->max_tokens > eng->n_ctx)
        return err_set(e, ERR_INVALID, "engine: prompt of %d tokens + max_tokens %d exceed the context of %d tokens", r->n_prompt,
                       r->max_tokens, eng->n_ctx),
               NULL;
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= eng->n_vocab)
            return err_set(e, ERR_INVALID, "engine: prompt token %d at index %d is outside the vocabulary of %d", r->prompt[i], i,
                           eng->n_vocab),
                   NULL;
    if (sample_params_check(&r->sample, e) < 0)
        return NULL;
    if (r->sample.n_bias < 0 || (r->sample.n_bias > 0 && !r->sample.bias))
        return err_set(e, ERR_INVALID, "engine: logit bias of %d entries without entries", r->sample.n_bias), NULL;
    if (r->weight < 0 || r->weight > 1000)
        return err_set(e, ERR_INVALID, "engine: weight %d is outside 1..1000", r->weight), NULL;
    if (r->account && strlen(r->account) >= ENGINE_ACCOUNT_MAX)
        return err_set(e, ERR_INVALID, "engine: account name of %zu bytes is longer than %d", strlen(r->account),
                       ENGINE_ACCOUNT_MAX - 1),
               NULL;

    struct grammar_state *gst = NULL;
    uint32_t *gmask = NULL;
    if (r->grammar && grammar_start(eng, r->grammar, &gst, &gmask, e) < 0)
        return NULL;
    struct engine_seq *s = calloc(1, sizeof *s);
    if (!s) {
        grammar_state_free(gst);
        free(gmask);
        return err_set(e, ERR_NOMEM, "engine: out of memory for a request"), NULL;
    }
    s->gst = gst;
    s->gmask = gmask;
    s->req = *r;
    s->req.prompt = NULL;
    s->req.account = NULL;
    s->req.grammar = NULL; /* the state holds its reference */
    s->t_submit = now_ns();
    snprintf(s->account, sizeof s->account, "%s", r->account ? r->account : "");
    s->cls = -1;
    s->n_prompt = r->n_prompt;
    s->n_tok = r->n_prompt;
    int cap = r->n_prompt + r->max_tokens;
    s->max_blocks = (cap + eng->bs - 1) / eng->bs;
    s->ring_cap = r->max_tokens;
    int nt = r->sample.n_top_logprobs;
    s->toks = malloc((size_t)cap * sizeof *s->toks);
    s->blocks = malloc((size_t)s->max_blocks * sizeof *s->blocks);
    s->ring = malloc((size_t)s->ring_cap * sizeof *s->ring);
    if (nt > 0)
        s->ring_top = malloc((size_t)s->ring_cap * nt * sizeof *s->ring_top);
    if (r->sample.n_bias > 0) {
        s->bias = malloc((size_t)r->sample.n_bias * sizeof *s->bias);
        if (s->bias)
            memcpy(s->bias, r->sample.bias, (size_t)r->sample.n_bias * sizeof *s->bias);
    }
    s->req.sample.bias = s->bias;
    if (!s->toks || !s->blocks || !s->ring || (nt > 0 && !s->ring_top) || (r->sample.n_bias > 0 && !s->bias)) {
        free(s->toks);
        free(s->blocks);
        free(s->ring);
        free(s->ring_top);
        free(s->bias);
        grammar_state_free(s->gst);
        free(s->gmask);
        free(s);
        return err_set(e, ERR_NOMEM, "engine: out of memory for a request of %d tokens", cap), NULL;
    }
    memcpy(s->toks, r->prompt, (size_t)r->n_prompt * sizeof *s->toks);
    rng_seed(&s->rng, r->seed);
    s->chain_hash = PCACHE_ROOT_HASH;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&s->cancel, false);
    atomic_init(&s->refs, 2);

    pthread_mutex_lock(&eng->mu);
    if (eng->stop || eng->q_new >= eng->max_queue) {
        bool stopping = eng->stop;
        int waiting = eng->q_new;
        pthread_mutex_unlock(&eng->mu);
        seq_free(s);
        if (stopping)
            return err_set(e, ERR_UNAVAILABLE, "engine: shutting down"), NULL;
        return err_set(e, ERR_EXHAUSTED, "engine: queue full (%d requests waiting, the most it holds); try again later",
                       waiting),
               NULL;
    }
    eng->queue[(eng->q_head + eng->q_len) % eng->q_cap] = s;
    eng->q_len++;
    eng->q_new++;
    eng->stats.queued = eng->q_len;
    pthread_cond_signal(&eng->cv);
    pthread_mutex_unlock(&eng->mu);
    return s;
}

void engine_get_stats(struct engine *eng, struct engine_stats *out)
{
    pthread_mutex_lock(&eng->mu);
    *out = eng->stats;
    pthread_mutex_unlock(&eng->mu);
}

/* ---- the scheduler (engine thread) ---------------------------------------------------- */

/* Drops every block of s (last first, so that the tail of a cached prefix is
 * evicted before its head). */
static void seq_drop_blocks(struct engine *eng, struct engine_seq *s)
{
    for (int i = s->n_blocks - 1; i >= 0; i--)
        pcache_unref(&eng->pc, s->blocks[i]);
    s->n_blocks = 0;
    s->n_computed = 0;
    s->n_reg = 0;
    s->chain_hash = PCACHE_ROOT_HASH;
    s->chain_uid = 0;
}

/* Gives back to s's class the work charged at admission and not done. */
static void seq_unreserve(struct engine *eng, struct engine_seq *s)
{
    if (s->cls >= 0 && s->reserved > 0)
        fair_reserve(&eng->fair, s->cls, -(double)s->reserved / s->res_w);
    s->reserved = 0;
}

static void seq_finish(struct engine *eng, struct engine_seq *s, enum engine_finish fin)
{
    seq_drop_blocks(eng, s);
    seq_unreserve(eng, s);
    if (s->cls >= 0)
        fair_leave(&eng->fair, s->cls, s->in_running);
    s->cls = -1;
    s->in_running = false;
    s->finished = true;
    s->fin = fin;
    eng->finished[eng->n_finished++] = s;
}

static void remove_running(struct engine *eng, int i)
{
    memmove(eng->running + i, eng->running + i + 1, (size_t)(eng->n_running - i - 1) * sizeof *eng->running);
    eng->n_running--;
}

/* Moves running sequence k back to the front of the queue (its class in
 * qcls[0], the others' move up one). eng->mu held. */
static void requeue_front(struct engine *eng, int k)
{
    struct engine_seq *v = eng->running[k];
    remove_running(eng, k);
    seq_drop_blocks(eng, v);
    seq_unreserve(eng, v);
    fair_preempted(&eng->fair, v->cls);
    v->in_running = false;
    v->chunk = 0;
    eng->preemptions++;
    MAAS_ASSERT(eng->q_len < eng->q_cap);
    eng->q_head = (eng->q_head + eng->q_cap - 1) % eng->q_cap;
    eng->queue[eng->q_head] = v;
    memmove(eng->qcls + 1, eng->qcls, (size_t)eng->q_len * sizeof *eng->qcls);
    eng->qcls[0] = v->cls;
    eng->q_len++;
}

/* Moves a running sequence back to the front of the queue: the youngest
 * of the account most above its share (the youngest under fcfs). Returns
 * its former index in eng->running. */
static int preempt_one(struct engine *eng, int *n_decode)
{
    for (int i = 0; i < eng->n_running; i++)
        eng->rcls[i] = eng->running[i]->cls;
    int k = fair_victim(&eng->fair, eng->rcls, eng->n_running);
    if (eng->running[k]->chunk == 1)
        (*n_decode)--; /* it was counted among this step's decodes */
    pthread_mutex_lock(&eng->mu);
    requeue_front(eng, k);
    pthread_mutex_unlock(&eng->mu);
    return k;
}

/* Registers the sequence's newly full, computed blocks in the prefix cache. */
static void seq_register_blocks(struct engine *eng, struct engine_seq *s)
{
    int bs = eng->bs;
    while ((s->n_reg + 1) * bs <= s->n_computed) {
        const int32_t *t = s->toks + (size_t)s->n_reg * bs;
        uint64_t h = pcache_hash(s->chain_hash, t, bs);
        int b = pcache_find(&eng->pc, h, s->chain_uid, t);
        if (b < 0) {
            b = s->blocks[s->n_reg];
            s->chain_uid = pcache_insert(&eng->pc, b, h, s->chain_uid, t);
        } else {
            /* the same prefix is cached already (ours, or computed by another
             * sequence at the same time): follow that entry */
            s->chain_uid = eng->pc.uid[b];
        }
        s->chain_hash = h;
        s->n_reg++;
    }
}

/* Admits the queue's head if the blocks for its tokens can be had (with a
 * margin of one block per running sequence for their decoding). Engine
 * thread, with eng->mu held. */
static bool try_admit(struct engine *eng, struct engine_seq *s)
{
    struct pcache *pc = &eng->pc;
    int bs = eng->bs;
    int need = (s->n_tok + bs - 1) / bs;
    /* reuse cached full blocks, but always recompute the last token so that it has logits */
    int max_hit = (s->n_tok - 1) / bs;
    int n_hit = 0;
    uint64_t h = PCACHE_ROOT_HASH, uid = 0;
    while (n_hit < max_hit) {
        const int32_t *t = s->toks + (size_t)n_hit * bs;
        uint64_t hh = pcache_hash(h, t, bs);
        int b = pcache_find(pc, hh, uid, t);
        if (b < 0)
            break;
        pcache_ref(pc, b);
        s->blocks[n_hit++] = b;
        h = hh;
        uid = pc->uid[b];
    }
    int avail = kv_n_free(eng->kv) + pc->n_lru;
    if (avail < need - n_hit + eng->n_running) {
        for (int i = n_hit - 1; i >= 0; i--)
            pcache_unref(pc, s->blocks[i]);
        return false;
    }
    for (int i = n_hit; i < need; i++) {
        int b = pcache_alloc(pc);
        MAAS_ASSERT(b >= 0);
        s->blocks[i] = b;
    }
    s->n_blocks = need;
    s->n_computed = n_hit * bs;
    s->n_reg = n_hit;
    s->chain_hash = h;
    s->chain_uid = uid;
    if (!s->admitted_once) {
        s->admitted_once = true;
        s->queue_s = (double)(now_ns() - s->t_submit) * 1e-9;
        s->n_cached = n_hit * bs;
    }
    eng->tokens_cached += (uint64_t)n_hit * bs;
    return true;
}

/* Takes the queue's cancelled entries out and admits what fits. */
static void admit(struct engine *eng)
{
    pthread_mutex_lock(&eng->mu);
    int kept = 0;
    for (int i = 0; i < eng->q_len; i++) {
        struct engine_seq *s = eng->queue[(eng->q_head + i) % eng->q_cap];
        if (atomic_load(&s->cancel)) {
            if (!s->admitted_once)
                eng->q_new--;
            seq_finish(eng, s, ENGINE_FINISH_CANCELLED);
        } else {
            eng->queue[(eng->q_head + kept++) % eng->q_cap] = s;
        }
    }
    eng->q_len = kept;
    for (int i = 0; i < eng->q_len; i++) {
        struct engine_seq *s = eng->queue[(eng->q_head + i) % eng->q_cap];
        if (s->cls < 0)
            s->cls = fair_join(&eng->fair, s->account, s->req.weight);
        eng->qcls[i] = s->cls;
    }
    while (eng->q_len > 0) {
        int p = fair_pick(&eng->fair, eng->qcls, eng->q_len);
        if (eng->n_running >= eng->max_running) {
            /* every slot taken: one above its share may make room (fair_yield) */
            for (int i = 0; i < eng->n_running; i++) {
                const struct engine_seq *r = eng->running[i];
                eng->rcls[i] = r->cls;
                /* what it would recompute: its computed tokens past its last cached full block */
                eng->rtok[i] = r->n_computed - r->n_reg * eng->bs;
            }
            int k = fair_yield(&eng->fair, eng->qcls[p], eng->rcls, eng->rtok, eng->n_running, eng->max_running);
            if (k < 0)
                break;
            requeue_front(eng, k);
            p++;
        }
        struct engine_seq *s = eng->queue[(eng->q_head + p) % eng->q_cap];
        bool fresh = !s->admitted_once;
        if (!try_admit(eng, s))
            break;
        if (fresh)
            eng->q_new--;
        /* close the gap: entries before p move one place towards the back */
        for (int i = p; i > 0; i--) {
            eng->queue[(eng->q_head + i) % eng->q_cap] = eng->queue[(eng->q_head + i - 1) % eng->q_cap];
            eng->qcls[i] = eng->qcls[i - 1];
        }
        eng->q_head = (eng->q_head + 1) % eng->q_cap;
        memmove(eng->qcls, eng->qcls + 1, (size_t)(eng->q_len - 1) * sizeof *eng->qcls);
        eng->q_len--;
        fair_admitted(&eng->fair, s->cls);
        /* charge the work it will do now, so that the next pick sees it */
        s->res_w = eng->fair.cls[s->cls].weight;
        s->reserved = (s->n_tok - s->n_computed) + (s->req.max_tokens - s->n_gen);
        fair_reserve(&eng->fair, s->cls, s->reserved / s->res_w);
        s->in_running = true;
        eng->running[eng->n_running++] = s;
    }
    pthread_mutex_unlock(&eng->mu);
}

struct sample_job {
    struct engine *eng;
};

/* Most tokens a waiting lazy grammar refuses in one step before the
 * sequence ends with an error. */
#define LAZY_RETRIES 16

/* A sequence whose lazy grammar waits for its trigger: sampled without a
 * mask, and the grammar takes the token at once. A token that completes
 * the trigger with bytes the grammar refuses after it (one token holding
 * the trigger and more) is masked out and another one sampled, so a call
 * the model starts is always one the grammar can finish. */
static void sample_waiting(struct sampler *smp, const float *row, struct engine_seq *s)
{
    struct sample_params p = s->req.sample;
    int left = 0;
    s->g_allowed = 1;
    s->g_taken = true;
    for (int tries = 0;; tries++) {
        sampler_sample(smp, row, &p, s->toks, s->n_tok, &s->rng, &s->res);
        struct err e;
        if (grammar_state_accept(s->gst, s->res.token, &e) == 0)
            return;
        if (e.code != ERR_INVALID || tries == LAZY_RETRIES || left == 1) {
            snprintf(s->why, sizeof s->why, "%s", e.code != ERR_INVALID ? e.msg
                     : "grammar: every likely token starts a tool call the grammar refuses");
            s->g_allowed = -1;
            return;
        }
        if (!p.allowed) {
            left = grammar_state_mask(s->gst, s->gmask, &e); /* waiting: every token */
            p.allowed = s->gmask;
        }
        s->gmask[s->res.token / 32] &= ~(1u << (s->res.token % 32));
        left--;
    }
}

static void sample_fn(void *ctx, int ith, int nth)
{
    struct engine *eng = ((struct sample_job *)ctx)->eng;
    struct sampler *smp = eng->smp[ith];
    for (int i = ith; i < eng->n_sampled; i += nth) {
        struct engine_seq *s = eng->sampled[i];
        struct sample_params p = s->req.sample;
        const float *row = eng->logits + (size_t)s->logit_row * eng->n_vocab;
        if (s->gst && grammar_state_waiting(s->gst)) {
            sample_waiting(smp, row, s);
            continue;
        }
        if (s->gst) {
            struct err e;
            s->g_allowed = grammar_state_mask(s->gst, s->gmask, &e);
            if (s->g_allowed <= 0)
                continue; /* run_batch finishes it */
            p.allowed = s->gmask;
        }
        sampler_sample(smp, row, &p, s->toks, s->n_tok, &s->rng, &s->res);
    }
}

/* Structured output, before the sampled token is used: a step in which
 * no token was allowed ends the sequence (stop when the grammar may end
 * there, an error when the vocabulary cannot continue it). True when it
 * ended. */
static bool grammar_before_token(struct engine_seq *s)
{
    if (s->g_allowed > 0)
        return false;
    if (s->g_allowed < 0 || !grammar_state_can_end(s->gst)) {
        if (!s->why[0])
            snprintf(s->why, sizeof s->why, "%s", s->g_allowed < 0 ? "grammar: out of memory"
                     : "grammar: no token of the vocabulary can continue the output");
        s->fin = ENGINE_FINISH_ERROR;
    } else {
        s->fin = ENGINE_FINISH_STOP;
    }
    return true;
}

/* Structured output, after the token was emitted: advances the grammar
 * (unless a waiting lazy grammar took it when it was sampled).
 * True (with s->fin) when the sequence ends here: the grammar is complete,
 * or (a bug) it refused the token it allowed. */
static bool grammar_after_token(struct engine_seq *s)
{
    struct err e;
    bool taken = s->g_taken;
    s->g_taken = false;
    if (!taken && grammar_state_accept(s->gst, s->res.token, &e) < 0) {
        snprintf(s->why, sizeof s->why, "%s", e.msg);
        s->fin = ENGINE_FINISH_ERROR;
        return true;
    }
    if (!grammar_state_is_done(s->gst))
        return false;
    s->fin = ENGINE_FINISH_STOP;
    return true;
}

/* Splits a step's core-seconds among its sequences in proportion to the
 * tokens each fed, and charges those tokens to their accounts. */
static void charge_step(struct engine *eng, int nt, int nseq, double wall_s)
{
    double core_s = wall_s * eng->n_threads;
    eng->busy_s += wall_s;
    eng->busy_core_s += core_s;
    for (int k = 0; k < nseq; k++) {
        struct engine_seq *s = eng->bseqs[k];
        s->compute_s += core_s * s->chunk / nt;
        if (s->cls < 0)
            continue;
        /* processed work was charged at admission; beyond that, charge it now */
        int from_res = s->chunk < s->reserved ? s->chunk : s->reserved;
        s->reserved -= from_res;
        fair_charge(&eng->fair, s->cls, s->chunk);
        fair_reserve(&eng->fair, s->cls, -(double)from_res / s->res_w);
    }
}

/* Runs the batch of nt tokens over nseq sequences (eng->bt, bseq, bseqs):
 * one forward pass, sampling, events; charges the step's time. */
static void run_batch(struct engine *eng, int nt, int nseq)
{
    struct batch b = {nt, eng->bt, nseq, eng->bseq};
    struct err e;
    uint64_t t0 = now_ns();
    if (model_forward(eng->m, eng->kv, &b, eng->logits, &e) < 0) {
        charge_step(eng, nt, nseq, (double)(now_ns() - t0) * 1e-9);
        log_error("engine: forward pass of %d tokens failed: %s", nt, e.msg);
        for (int k = 0; k < nseq; k++) {
            struct engine_seq *s = eng->bseqs[k];
            snprintf(s->why, sizeof s->why, "forward pass failed: %s", e.msg);
            seq_finish(eng, s, ENGINE_FINISH_ERROR);
        }
        return;
    }
    eng->steps++;
    eng->n_sampled = 0;
    for (int k = 0; k < nseq; k++) {
        struct engine_seq *s = eng->bseqs[k];
        if (s->chunk == 1 && s->n_computed >= s->n_prompt)
            eng->tokens_decoded++;
        else
            eng->tokens_prefilled += (uint64_t)s->chunk;
        s->n_computed += s->chunk;
        seq_register_blocks(eng, s);
        if (s->logit_row >= 0)
            eng->sampled[eng->n_sampled++] = s;
    }
    struct sample_job job = {eng};
    if (eng->n_sampled > 0)
        pool_run(eng->pool, sample_fn, &job);
    charge_step(eng, nt, nseq, (double)(now_ns() - t0) * 1e-9);
    for (int k = 0; k < eng->n_sampled; k++) {
        struct engine_seq *s = eng->sampled[k];
        if (s->gst && grammar_before_token(s)) {
            seq_finish(eng, s, s->fin);
            continue;
        }
        int32_t t = s->res.token;
        if (!s->req.ignore_eog && eng->tok && tok_is_eog(eng->tok, t)) {
            seq_finish(eng, s, ENGINE_FINISH_STOP);
            continue;
        }
        seq_push_token(s, &s->res);
        s->toks[s->n_tok++] = t;
        s->n_gen++;
        if (s->gst && grammar_after_token(s))
            seq_finish(eng, s, s->fin);
        else if (s->n_gen >= s->req.max_tokens || s->n_tok >= eng->n_ctx)
            seq_finish(eng, s, ENGINE_FINISH_LENGTH);
    }
}

/* Prefill chunks within what is left of the step's budget: shared among
 * the accounts with prompt work by weight, oldest first inside one
 * (fair_split; oldest first overall under fcfs). */
static void plan_prefill(struct engine *eng, int budget)
{
    for (int i = 0; i < eng->n_running; i++) {
        const struct engine_seq *s = eng->running[i];
        int left = s->n_tok - s->n_computed;
        MAAS_ASSERT(s->cls >= 0);
        eng->rcls[i] = s->cls;
        eng->rtok[i] = left > 1 ? left : 0;
    }
    fair_split(&eng->fair, eng->rcls, eng->rtok, eng->n_running, budget);
    for (int i = 0; i < eng->n_running; i++)
        if (eng->running[i]->n_tok - eng->running[i]->n_computed > 1)
            eng->running[i]->chunk = eng->rtok[i];
}

/* One scheduler step: admission, cancellations, one batch, one forward
 * pass, sampling. Finished sequences are left in eng->finished. */
static void step(struct engine *eng)
{
    admit(eng);
    for (int i = 0; i < eng->n_running;) {
        struct engine_seq *s = eng->running[i];
        if (atomic_load(&s->cancel)) {
            seq_finish(eng, s, ENGINE_FINISH_CANCELLED);
            remove_running(eng, i);
        } else {
            i++;
        }
    }

    /* decoding sequences: one token each, one more block at a boundary;
     * when no block is left, a running sequence makes room (preempt_one) */
    int n_decode = 0;
    for (int i = 0; i < eng->n_running; i++)
        eng->running[i]->chunk = 0;
    for (int i = 0; i < eng->n_running; i++) {
        struct engine_seq *s = eng->running[i];
        if (s->n_tok - s->n_computed != 1)
            continue;
        bool gone = false;
        while (s->n_blocks * eng->bs < s->n_tok) {
            int b = pcache_alloc(&eng->pc);
            if (b >= 0) {
                s->blocks[s->n_blocks++] = b;
                continue;
            }
            int k = preempt_one(eng, &n_decode);
            if (k == i) {
                gone = true;
                break;
            }
            if (k < i)
                i--; /* an older sequence went: s moved down by one */
        }
        if (gone) {
            i--; /* s went: the next sequence is at index i now */
            continue;
        }
        s->chunk = 1;
        n_decode++;
    }
    plan_prefill(eng, eng->step_tokens - n_decode);
    int nt = 0, nseq = 0, nrow = 0;
    for (int i = 0; i < eng->n_running; i++) {
        struct engine_seq *s = eng->running[i];
        if (s->chunk == 0)
            continue;
        bool want = s->n_computed + s->chunk == s->n_tok;
        for (int j = 0; j < s->chunk; j++) {
            int p = s->n_computed + j;
            eng->bt[nt++] = (struct batch_token){s->toks[p], p, nseq, want && j == s->chunk - 1};
        }
        s->logit_row = want ? nrow++ : -1;
        eng->bseq[nseq] = (struct batch_seq){s->blocks, s->n_blocks};
        eng->bseqs[nseq++] = s;
    }
    if (nt == 0)
        return;

    run_batch(eng, nt, nseq);
    for (int i = 0; i < eng->n_running;) {
        if (eng->running[i]->finished)
            remove_running(eng, i);
        else
            i++;
    }
}

/* The accounts with the most waiting requests into st->top (insertion into
 * a short sorted list). Engine thread. */
static void publish_top(struct engine *eng, struct engine_stats *st)
{
    st->n_top = 0;
    for (int i = 0; i < eng->fair.cap; i++) {
        const struct fair_class *c = &eng->fair.cls[i];
        if (c->members == 0 || c->n_queued == 0)
            continue;
        int k = st->n_top < ENGINE_TOP_ACCOUNTS ? st->n_top++ : ENGINE_TOP_ACCOUNTS;
        while (k > 0 && st->top[k - 1].queued < c->n_queued) {
            if (k < ENGINE_TOP_ACCOUNTS)
                st->top[k] = st->top[k - 1];
            k--;
        }
        if (k < ENGINE_TOP_ACCOUNTS) {
            snprintf(st->top[k].account, sizeof st->top[k].account, "%s", c->key);
            st->top[k].queued = c->n_queued;
        }
    }
}

/* Refreshes the stats copy, then sends the DONE events of the step. */
static void publish(struct engine *eng)
{
    pthread_mutex_lock(&eng->mu);
    struct engine_stats *st = &eng->stats;
    st->queued = eng->q_len;
    st->running = eng->n_running;
    st->kv_blocks_total = kv_n_blocks(eng->kv);
    st->kv_blocks_free = kv_n_free(eng->kv);
    st->kv_blocks_cached = eng->pc.n_lru;
    st->kv_blocks_used = st->kv_blocks_total - st->kv_blocks_free - st->kv_blocks_cached;
    st->steps = eng->steps;
    st->tokens_prefilled = eng->tokens_prefilled;
    st->tokens_decoded = eng->tokens_decoded;
    st->tokens_cached = eng->tokens_cached;
    st->preemptions = eng->preemptions;
    st->busy_s = eng->busy_s;
    st->busy_core_s = eng->busy_core_s;
    st->n_threads = eng->n_threads;
    publish_top(eng, st);
    pthread_mutex_unlock(&eng->mu);
    for (int i = 0; i < eng->n_finished; i++) {
        struct engine_seq *s = eng->finished[i];
        seq_publish_done(s, s->fin, s->fin == ENGINE_FINISH_ERROR ? s->why : NULL);
    }
    eng->n_finished = 0;
}

/* One pass of waiting embedding inputs (embedq.c), between scheduler steps. */
static void embed_between_steps(struct engine *eng)
{
    embedq_run(&eng->eq, &eng->mu, eng->m, engine_embed_max_tokens(eng), eng->n_threads, &eng->busy_s,
               &eng->busy_core_s);
}

int engine_embed_max_tokens(const struct engine *eng)
{
    int ctx = model_hparams(eng->m)->n_ctx_train;
    return ctx < eng->step_tokens ? ctx : eng->step_tokens;
}

int engine_embed(struct engine *eng, const struct engine_embed_request *r, float *out, double *compute_s,
                 struct err *e)
{
    struct embed_job j = {.inputs = r->inputs, .lens = r->lens, .n_inputs = r->n_inputs, .out = out};
    if (r->n_inputs < 1)
        return err_set(e, ERR_INVALID, "engine_embed: no inputs");
    pthread_cond_init(&j.cv, NULL);
    int rc = embedq_submit(&eng->eq, &eng->mu, &eng->cv, &eng->stop, &j);
    pthread_cond_destroy(&j.cv);
    if (rc < 0) {
        *e = j.err;
        return -1;
    }
    *compute_s = j.compute_s;
    return 0;
}

static void *engine_main(void *arg)
{
    struct engine *eng = arg;
    for (;;) {
        pthread_mutex_lock(&eng->mu);
        while (!eng->stop && eng->q_len == 0 && eng->n_running == 0 && !embedq_pending(&eng->eq))
            pthread_cond_wait(&eng->cv, &eng->mu);
        bool stop = eng->stop, chat = eng->q_len > 0 || eng->n_running > 0;
        pthread_mutex_unlock(&eng->mu);
        if (stop)
            break;
        if (chat)
            step(eng);
        embed_between_steps(eng);
        publish(eng);
    }
    embedq_cancel_all(&eng->eq, &eng->mu);
    /* shutting down: everything still here is cancelled */
    while (eng->n_running > 0) {
        seq_finish(eng, eng->running[eng->n_running - 1], ENGINE_FINISH_CANCELLED);
        eng->n_running--;
    }
    pthread_mutex_lock(&eng->mu);
    for (int i = 0; i < eng->q_len; i++)
        seq_finish(eng, eng->queue[(eng->q_head + i) % eng->q_cap], ENGINE_FINISH_CANCELLED);
    eng->q_len = 0;
    eng->q_new = 0;
    pthread_mutex_unlock(&eng->mu);
    publish(eng);
    return NULL;
}

/* ---- construction ---------------------------------------------------------------- */

int engine_default_n_ctx(const struct model_hparams *hp)
{
    return hp->n_ctx_train > 0 && hp->n_ctx_train < ENGINE_MAX_DEFAULT_CTX ? hp->n_ctx_train : ENGINE_MAX_DEFAULT_CTX;
}

struct engine *engine_new(struct model *m, const struct tokenizer *tok, const struct engine_opts *o, struct err *e)
{
    const struct model_hparams *hp = model_hparams(m);
    struct engine_opts d = {0};
    if (o)
        d = *o;
    if (d.n_threads < 0 || d.n_ctx < 0 || d.kv_blocks < 0 || d.block_size < 0 || d.step_tokens < 0 ||
        d.max_running < 0 || d.max_queue < 0)
        return err_set(e, ERR_INTERNAL, "engine: negative option (n_threads %d, n_ctx %d, kv_blocks %d, block_size %d, "
                          "step_tokens %d, max_running %d, max_queue %d)",
                       d.n_threads, d.n_ctx, d.kv_blocks, d.block_size, d.step_tokens, d.max_running, d.max_queue),
               NULL;
    struct engine *eng = calloc(1, sizeof *eng);
    if (!eng)
        return err_set(e, ERR_NOMEM, "engine: out of memory"), NULL;
    eng->m = m;
    eng->tok = tok;
    eng->n_ctx = d.n_ctx > 0 ? d.n_ctx : engine_default_n_ctx(hp);
    eng->bs = d.block_size > 0 ? d.block_size : 16;
    eng->step_tokens = d.step_tokens > 0 ? d.step_tokens : 512;
    eng->max_running = d.max_running > 0 ? d.max_running : 64;
    if (eng->max_running > eng->step_tokens)
        eng->max_running = eng->step_tokens; /* every running sequence decodes in every step */
    eng->max_queue = d.max_queue > 0 ? d.max_queue : 256;
    embedq_init(&eng->eq, eng->max_queue);
    eng->q_cap = eng->max_queue + eng->max_running;
    eng->n_vocab = hp->n_vocab;
    eng->n_vocab_sample = tok_n_vocab_common(tok, hp->n_vocab);
    int ctx_blocks = (eng->n_ctx + eng->bs - 1) / eng->bs;
    /* embedding passes keep no KV: one block keeps the cache's code paths whole */
    eng->embed_only = d.embed_only;
    int64_t kv_blocks = eng->embed_only ? 1
                        : d.kv_blocks > 0 ? d.kv_blocks
                                          : ((int64_t)eng->n_ctx * 4 + eng->bs - 1) / eng->bs;
    int n_threads = d.n_threads > 0 ? d.n_threads : cpu_count();
    if (!eng->embed_only && kv_blocks < ctx_blocks) {
        err_set(e, ERR_INVALID, "engine: %lld KV blocks of %d positions cannot hold one context of %d positions (need %d)",
                (long long)kv_blocks, eng->bs, eng->n_ctx, ctx_blocks);
        goto fail;
    }
    if (kv_blocks > INT32_MAX / eng->bs) {
        err_set(e, ERR_INVALID, "engine: %lld KV blocks of %d positions are too many", (long long)kv_blocks, eng->bs);
        goto fail;
    }
    eng->pool = pool_new(n_threads);
    if (!eng->pool) {
        err_set(e, ERR_INTERNAL, "engine: cannot start %d threads", n_threads);
        goto fail;
    }
    if (model_reserve(m, eng->step_tokens, eng->pool, e) < 0)
        goto fail;
    eng->kv = kv_new(m, (int)kv_blocks, eng->bs, e);
    if (!eng->kv)
        goto fail;
    if (pcache_init(&eng->pc, eng->kv, e) < 0)
        goto fail;
    eng->n_smp = pool_n_threads(eng->pool);
    eng->n_threads = eng->n_smp;
    if (fair_init(&eng->fair, eng->q_cap, d.fcfs, e) < 0)
        goto fail;
    eng->smp = calloc((size_t)eng->n_smp, sizeof *eng->smp);
    if (!eng->smp) {
        err_set(e, ERR_NOMEM, "engine: out of memory");
        goto fail;
    }
    for (int i = 0; i < eng->n_smp; i++)
        if (!(eng->smp[i] = sampler_new(eng->n_vocab_sample, e)))
            goto fail;
    size_t mr = (size_t)eng->max_running;
    eng->bt = malloc((size_t)eng->step_tokens * sizeof *eng->bt);
    eng->bseq = malloc(mr * sizeof *eng->bseq);
    eng->bseqs = malloc(mr * sizeof *eng->bseqs);
    eng->logits = malloc(mr * (size_t)eng->n_vocab * sizeof *eng->logits);
    eng->running = malloc(mr * sizeof *eng->running);
    eng->sampled = malloc(mr * sizeof *eng->sampled);
    eng->finished = malloc(((size_t)eng->q_cap + mr) * sizeof *eng->finished);
    eng->queue = malloc((size_t)eng->q_cap * sizeof *eng->queue);
    eng->qcls = malloc((size_t)eng->q_cap * sizeof *eng->qcls);
    eng->rcls = malloc(mr * sizeof *eng->rcls);
    eng->rtok = malloc(mr * sizeof *eng->rtok);
    if (!eng->qcls || !eng->rcls || !eng->rtok || !eng->bt || !eng->bseq || !eng->bseqs || !eng->logits || !eng->running || !eng->sampled || !eng->finished ||
        !eng->queue) {
        err_set(e, ERR_NOMEM, "engine: out of memory for batches of %d tokens and %d sequences", eng->step_tokens,
                eng->max_running);
        goto fail;
    }
    pthread_mutex_init(&eng->mu, NULL);
    pthread_cond_init(&eng->cv, NULL);
    eng->stats.kv_blocks_total = kv_n_blocks(eng->kv);
    eng->stats.kv_blocks_free = kv_n_free(eng->kv);
    if (pthread_create(&eng->thread, NULL, engine_main, eng) != 0) {
        err_set(e, ERR_INTERNAL, "engine: cannot start the engine thread");
        pthread_mutex_destroy(&eng->mu);
        pthread_cond_destroy(&eng->cv);
        goto fail;
    }
    eng->thread_started = true;
    return eng;
fail:
    engine_free(eng);
    return NULL;
}

void engine_free(struct engine *eng)
{
    if (!eng)
        return;
    if (eng->thread_started) {
        pthread_mutex_lock(&eng->mu);
        eng->stop = true;
        pthread_cond_signal(&eng->cv);
        pthread_mutex_unlock(&eng->mu);
        pthread_join(eng->thread, NULL);
        pthread_mutex_destroy(&eng->mu);
        pthread_cond_destroy(&eng->cv);
    }
    if (eng->pool) {
        /* the model must not keep a pointer to the pool freed below */
        struct err e;
        if (model_reserve(eng->m, model_max_batch(eng->m) > 0 ? model_max_batch(eng->m) : 1, NULL, &e) < 0)
            log_warn("engine: detaching the thread pool from the model: %s", e.msg);
    }
    embedq_release(&eng->eq);
    free(eng->queue);
    free(eng->qcls);
    free(eng->rcls);
    free(eng->rtok);
    fair_release(&eng->fair);
    free(eng->finished);
    free(eng->sampled);
    free(eng->running);
    free(eng->logits);
    free(eng->bseqs);
    free(eng->bseq);
    free(eng->bt);
    for (int i = 0; i < eng->n_smp && eng->smp; i++)
        sampler_free(eng->smp[i]);
    free(eng->smp);
    grammar_vocab_free(eng->gv);
    if (eng->kv)
        pcache_release(&eng->pc);
    kv_free(eng->kv);
    pool_free(eng->pool);
    free(eng);
}
