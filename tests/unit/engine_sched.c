/* engine: outputs in a crowd equal outputs alone and a plain one-sequence
 * reference loop (greedy and seeded sampling), prefix reuse (n_cached and
 * same output), multi-turn reuse of a reply's blocks, cancellation of
 * running and queued sequences (blocks freed), a full queue, a KV cache
 * too small for everyone (waiting and preemption, same outputs), and
 * engine_free with live sequences. A tiny random qwen2 model is written
 * with gguf_writer; no tokenizer (so no end-of-generation token). The
 * first test runs two kernel threads (sampling is split over them too); the
 * others one, which keeps the file fast on a busy machine. */
#include "engine/engine.h"
#include "kernels/kernels.h"
#include "model_tiny.h"
#include "test.h"

#include <time.h>

#define NV 256
#define MAXT 64

static char model_path[128];
static struct model *m_ref;

static struct tiny_cfg cfg(void)
{
    struct tiny_cfg c = {0};
    c.arch = "qwen2";
    c.n_vocab = NV;
    c.n_embd = 64;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.head_dim = 16;
    c.n_ff = 128;
    c.wtype = GGML_TYPE_F32;
    c.seed = 11;
    return c;
}

static void make_prompt(int32_t *p, int n, uint64_t seed)
{
    struct rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < n; i++)
        p[i] = (int32_t)(rng_u64(&r) % NV);
}

/* The reference: one sequence, whole prompt at once, then one token per
 * forward pass, contiguous blocks, same sampler and rng use. */
static struct sample_result ref_res[MAXT]; /* the last ref_gen's sample results */

static int ref_gen(const int32_t *prompt, int np, const struct sample_params *sp, uint64_t seed, int max_tokens,
                   int32_t *out)
{
    struct err e;
    struct kv_cache *kv = kv_new(m_ref, 64, 4, &e);
    struct sampler *smp = sampler_new(NV, &e);
    int32_t blocks[64], hist[256];
    for (int i = 0; i < 64; i++)
        blocks[i] = i;
    struct batch_seq bs = {blocks, 64};
    struct batch_token bt[128];
    float logits[NV];
    struct rng rng;
    rng_seed(&rng, seed);
    memcpy(hist, prompt, (size_t)np * sizeof *hist);
    int n_hist = np, n = 0, fed = 0;
    while (n < max_tokens) {
        int c = n_hist - fed;
        for (int i = 0; i < c; i++)
            bt[i] = (struct batch_token){hist[fed + i], fed + i, 0, i == c - 1};
        struct batch b = {c, bt, 1, &bs};
        if (model_forward(m_ref, kv, &b, logits, &e) < 0) {
            fprintf(stderr, "ref forward: %s\n", e.msg);
            break;
        }
        fed = n_hist;
        struct sample_result r;
        sampler_sample(smp, logits, sp, hist, n_hist, &rng, &r);
        ref_res[n] = r;
        out[n++] = r.token;
        hist[n_hist++] = r.token;
    }
    sampler_free(smp);
    kv_free(kv);
    return n;
}

static struct engine *new_engine(struct model **mp, struct engine_opts o)
{
    struct err e;
    *mp = model_load(model_path, &e);
    CHECK(*mp != NULL);
    if (!*mp)
        return NULL;
    struct engine *eng = engine_new(*mp, NULL, &o, &e);
    CHECKF(eng != NULL, "%s", e.msg);
    return eng;
}

static void close_engine(struct engine *eng, struct model *m)
{
    engine_free(eng);
    model_free(m);
}

static struct engine_request req_of(const int32_t *p, int np, int max_tokens, float temp, uint64_t seed)
{
    struct engine_request r = {0};
    r.prompt = p;
    r.n_prompt = np;
    r.sample = sample_params_default();
    r.sample.temperature = temp;
    r.seed = seed;
    r.max_tokens = max_tokens;
    return r;
}

/* Reads a sequence to its end: the tokens into out, the DONE event into done. */
static int drain(struct engine_seq *s, int32_t *out, struct engine_event *done)
{
    int n = 0;
    struct engine_event ev;
    for (;;) {
        int rc = engine_next(s, &ev, 20000);
        CHECK(rc == 0);
        if (rc != 0)
            return -1;
        if (ev.kind == ENGINE_EV_DONE)
            break;
        if (n < MAXT)
            out[n] = ev.tok.token;
        n++;
    }
    *done = ev;
    return n;
}

static int same(const int32_t *a, int na, const int32_t *b, int nb)
{
    return na == nb && !memcmp(a, b, (size_t)na * sizeof *a);
}

#define NSEQ 12

struct crowd {
    int32_t prompt[NSEQ][48];
    int np[NSEQ];
    float temp[NSEQ];
    int32_t want[NSEQ][MAXT];
    int n_want[NSEQ];
};

static void crowd_init(struct crowd *c, int max_tokens, bool sampled)
{
    for (int i = 0; i < NSEQ; i++) {
        c->np[i] = 3 + (i * 7) % 41;
        make_prompt(c->prompt[i], c->np[i], 100 + (uint64_t)i);
        c->temp[i] = sampled && i % 3 == 1 ? 0.9f : 0.0f;
        struct sample_params sp = sample_params_default();
        sp.temperature = c->temp[i];
        c->n_want[i] = ref_gen(c->prompt[i], c->np[i], &sp, 1000 + (uint64_t)i, max_tokens, c->want[i]);
    }
}

/* Runs the crowd on eng, all submitted at once, and compares. The
 * requests belong to three accounts of weights 1, 2, 3 (and none), so that
 * admission and the in-step prefill split interleave them by weight. */
static void crowd_check(struct engine *eng, struct crowd *c, int max_tokens, const char *what)
{
    static const char *const accounts[4] = {"acct_x", "acct_y", "acct_z", NULL};
    struct engine_seq *s[NSEQ];
    struct err e;
    for (int i = 0; i < NSEQ; i++) {
        struct engine_request r = req_of(c->prompt[i], c->np[i], max_tokens, c->temp[i], 1000 + (uint64_t)i);
        r.account = accounts[i % 4];
        r.weight = 1 + i % 4;
        s[i] = engine_submit(eng, &r, &e);
        CHECKF(s[i] != NULL, "%s", e.msg);
    }
    for (int i = 0; i < NSEQ; i++) {
        if (!s[i])
            continue;
        int32_t got[MAXT];
        struct engine_event d;
        int n = drain(s[i], got, &d);
        CHECKF(same(got, n, c->want[i], c->n_want[i]), "%s: sequence %d (temp %g) differs", what, i,
               (double)c->temp[i]);
        CHECK(d.finish == ENGINE_FINISH_LENGTH);
        CHECK(d.n_completion == max_tokens);
        CHECK(d.n_prompt == c->np[i]);
        engine_release(s[i]);
    }
}

TEST(test_crowd_equals_alone)
{
    static struct crowd c;
    crowd_init(&c, 24, true);
    struct model *m;
    struct engine *eng = new_engine(&m, (struct engine_opts){.n_threads = 2, .n_ctx = 128, .block_size = 4});
    if (!eng)
        return;
    /* alone: one at a time */
    for (int i = 0; i < NSEQ; i++) {
        struct err e;
        struct engine_request r = req_of(c.prompt[i], c.np[i], 24, c.temp[i], 1000 + (uint64_t)i);
        struct engine_seq *s = engine_submit(eng, &r, &e);
        CHECK(s != NULL);
        if (!s)
            continue;
        int32_t got[MAXT];
        struct engine_event d;
        int n = drain(s, got, &d);
        CHECKF(same(got, n, c.want[i], c.n_want[i]), "alone: sequence %d differs from the reference", i);
        engine_release(s);
    }
    /* all at once: same tokens (the prompts now partly hit the prefix cache, too) */
    crowd_check(eng, &c, 24, "crowd");
    struct engine_stats st;
    engine_get_stats(eng, &st);
    CHECK(st.running == 0 && st.queued == 0);
    CHECK(st.kv_blocks_used == 0);
    CHECK(st.kv_blocks_free + st.kv_blocks_cached == st.kv_blocks_total);
    CHECK(st.tokens_decoded > 0 && st.tokens_prefilled > 0 && st.steps > 0);
    close_engine(eng, m);
}

/* A small step budget: prompts are prefilled in chunks across steps (and
 * the budget of a step is split among the accounts by weight). */
TEST(test_chunked_prefill)
{
    static struct crowd c;
    crowd_init(&c, 10, false);
    struct model *m;
    struct engine *eng =
        new_engine(&m, (struct engine_opts){.n_threads = 1, .n_ctx = 128, .block_size = 8, .step_tokens = 16,
                                            .max_running = 8});
    if (!eng)
        return;
    crowd_check(eng, &c, 10, "chunked");
    close_engine(eng, m);
}

TEST(test_prefix_reuse)
{
    struct model *m;
    struct engine *eng = new_engine(&m, (struct engine_opts){.n_threads = 1, .n_ctx = 128, .block_size = 8});
    if (!eng)
        return;
    int lens[] = {37, 32, 8, 5};
    for (int k = 0; k < 4; k++) {
        int np = lens[k];
        int32_t p[64], want[MAXT], got[MAXT];
        make_prompt(p, np, 500 + (uint64_t)k);
        struct sample_params sp = sample_params_default();
        sp.temperature = 0;
        int nw = ref_gen(p, np, &sp, 1, 12, want);
        for (int round = 0; round < 2; round++) {
            struct err e;
            struct engine_request r = req_of(p, np, 12, 0, 1);
            struct engine_seq *s = engine_submit(eng, &r, &e);
            CHECK(s != NULL);
            if (!s)
                continue;
            struct engine_event d;
            int n = drain(s, got, &d);
            CHECKF(same(got, n, want, nw), "prompt %d round %d differs", np, round);
            int expect = round == 0 ? 0 : (np - 1) / 8 * 8;
            CHECKF(d.n_cached == expect, "prompt %d round %d: n_cached %d, expected %d", np, round, d.n_cached,
                   expect);
            CHECK(d.n_prompt == np && d.n_completion == 12);
            engine_release(s);
        }
    }
    struct engine_stats st;
    engine_get_stats(eng, &st);
    CHECK(st.kv_blocks_cached > 0);
    CHECK(st.tokens_cached == (uint64_t)(32 + 24 + 0 + 0));
    close_engine(eng, m);
}

/* Turn 2 = turn 1's prompt + its reply + more: the reply's full blocks are
 * reused too. */
TEST(test_multi_turn)
{
    struct model *m;
    struct engine *eng = new_engine(&m, (struct engine_opts){.n_threads = 1, .n_ctx = 128, .block_size = 8});
    if (!eng)
        return;
    int32_t conv[128];
    int n_conv = 20;
    make_prompt(conv, n_conv, 77);
    for (int turn = 0; turn < 3; turn++) {
        struct sample_params sp = sample_params_default();
        sp.temperature = 0;
        int32_t want[MAXT], got[MAXT];
        int nw = ref_gen(conv, n_conv, &sp, 5, 15, want);
        struct err e;
        struct engine_request r = req_of(conv, n_conv, 15, 0, 5);
        struct engine_seq *s = engine_submit(eng, &r, &e);
        CHECK(s != NULL);
        if (!s)
            break;
        struct engine_event d;
        int n = drain(s, got, &d);
        engine_release(s);
        CHECKF(same(got, n, want, nw), "turn %d differs", turn);
        /* KV exists for the prompt and all of the reply but its last token */
        int expect = turn == 0 ? 0 : 0;
        if (turn > 0) {
            int prev_computed = n_conv - 5 - 1; /* previous prompt + reply - last reply token */
            int full = prev_computed / 8 * 8;
            int cap = (n_conv - 1) / 8 * 8;
            expect = full < cap ? full : cap;
        }
        CHECKF(d.n_cached == expect, "turn %d: n_cached %d, expected %d", turn, d.n_cached, expect);
        if (turn > 0)
            CHECK(d.n_cached > (turn == 1 ? 16 : 40));
        memcpy(conv + n_conv, got, (size_t)n * sizeof *got);
        n_conv += n;
        make_prompt(conv + n_conv, 5, 900 + (uint64_t)turn);
        n_conv += 5;
    }
    close_engine(eng, m);
}

/* Logprobs and alternatives travel through the event ring unchanged. */
TEST(test_logprobs)
{
    struct model *m;
    struct engine *eng = new_engine(&m, (struct engine_opts){.n_threads = 1, .n_ctx = 128, .block_size = 4});
    if (!eng)
        return;
    int32_t p[12], want[MAXT];
    make_prompt(p, 12, 31);
    struct sample_params sp = sample_params_default();
    sp.temperature = 0.7f;
    sp.top_k = 40;
    sp.n_top_logprobs = 5;
    int nw = ref_gen(p, 12, &sp, 99, 10, want);
    struct err e;
    struct engine_request r = req_of(p, 12, 10, 0.7f, 99);
    r.sample = sp;
    struct engine_seq *s = engine_submit(eng, &r, &e);
    CHECK(s != NULL);
    struct engine_event ev;
    int n = 0;
    while (s && engine_next(s, &ev, 20000) == 0 && ev.kind == ENGINE_EV_TOKEN) {
        CHECK(n < nw && ev.tok.token == want[n]);
        if (n < nw) {
            CHECK_NEAR(ev.tok.logprob, ref_res[n].logprob, 1e-3);
            CHECK(ev.tok.n_top == 5 && ref_res[n].n_top == 5);
            for (int k = 0; k < 5; k++) {
                CHECK(ev.tok.top[k].id == ref_res[n].top[k].id);
                CHECK_NEAR(ev.tok.top[k].logprob, ref_res[n].top[k].logprob, 1e-3);
            }
        }
        n++;
    }
    CHECK(n == 10 && ev.kind == ENGINE_EV_DONE && ev.n_completion == 10);
    engine_release(s);
    close_engine(eng, m);
}

TEST(test_cancel)
{
    struct model *m;
    struct engine *eng = new_engine(
        &m, (struct engine_opts){.n_threads = 1, .n_ctx = 512, .block_size = 4, .max_running = 1});
    if (!eng)
        return;
    int32_t p[16];
    make_prompt(p, 16, 3);
    struct err e;
    /* long enough that the cancel comes first even on a busy machine */
    struct engine_request r = req_of(p, 16, 490, 0, 1);
    r.ignore_eog = true;
    struct engine_seq *a = engine_submit(eng, &r, &e);
    struct engine_seq *b = engine_submit(eng, &r, &e); /* waits: one running at most */
    CHECK(a && b);
    if (!a || !b)
        return;
    struct engine_event ev;
    CHECK(engine_next(a, &ev, 20000) == 0 && ev.kind == ENGINE_EV_TOKEN);
    /* cancel the queued one first */
    engine_cancel(b);
    engine_cancel(b);
    CHECK(engine_next(b, &ev, 20000) == 0);
    CHECK(ev.kind == ENGINE_EV_DONE && ev.finish == ENGINE_FINISH_CANCELLED && ev.n_completion == 0);
    CHECK(engine_next(b, &ev, 0) == 1); /* nothing after DONE */
    engine_release(b);
    /* then the running one */
    engine_cancel(a);
    int32_t got[MAXT];
    int n = drain(a, got, &ev);
    CHECK(ev.finish == ENGINE_FINISH_CANCELLED);
    CHECKF(ev.n_completion < 490 && ev.n_completion == n + 1, "n_completion %d, tokens after the first %d",
           ev.n_completion, n);
    CHECK(engine_next(a, &ev, 50) == 1);
    struct engine_stats st;
    engine_get_stats(eng, &st);
    CHECK(st.running == 0 && st.queued == 0);
    CHECKF(st.kv_blocks_used == 0, "%d blocks still used", st.kv_blocks_used);
    CHECK(st.kv_blocks_free + st.kv_blocks_cached == st.kv_blocks_total);
    engine_release(a);
    /* release without reading (the engine cancels it) */
    struct engine_seq *c = engine_submit(eng, &r, &e);
    CHECK(c != NULL);
    engine_release(c);
    close_engine(eng, m);
}

TEST(test_queue_full_and_bad_requests)
{
    struct model *m;
    struct engine *eng = new_engine(
        &m, (struct engine_opts){.n_threads = 1, .n_ctx = 128, .block_size = 4, .max_running = 1, .max_queue = 2});
    if (!eng)
        return;
    int32_t p[16];
    make_prompt(p, 16, 4);
    struct err e;
    struct engine_request r = req_of(p, 16, 100, 0, 1);
    struct engine_seq *s[6];
    int refused = 0;
    for (int i = 0; i < 6; i++) {
        e.msg[0] = 0;
        s[i] = engine_submit(eng, &r, &e);
        if (!s[i]) {
            refused++;
            CHECKF(e.code == ERR_EXHAUSTED && strstr(e.msg, "queue full") != NULL, "%s: %s", err_code_name(e.code), e.msg);
        }
    }
    /* one running and two waiting at most, unless the first finished (100
     * tokens) while the submissions were made */
    CHECKF(refused >= 1, "%d of 6 refused", refused);
    for (int i = 0; i < 6; i++)
        engine_release(s[i]);
    /* invalid requests */
    struct engine_request bad = req_of(p, 16, 113, 0, 1); /* 16 + 113 > 128 */
    CHECK(engine_submit(eng, &bad, &e) == NULL && strstr(e.msg, "context"));
    bad = req_of(p, 16, 0, 0, 1);
    CHECK(engine_submit(eng, &bad, &e) == NULL);
    int32_t oov = NV;
    bad = req_of(&oov, 1, 4, 0, 1);
    CHECK(engine_submit(eng, &bad, &e) == NULL && strstr(e.msg, "vocabulary"));
    bad = req_of(p, 16, 4, -1, 1);
    CHECK(engine_submit(eng, &bad, &e) == NULL);
    close_engine(eng, m);
}

/* KV for one context only (32 blocks of 4 = 128 positions) and a crowd that
 * needs far more: sequences wait, get preempted and resume, and still give
 * the reference outputs. */
TEST(test_small_kv_preemption)
{
    static struct crowd c;
    crowd_init(&c, 40, true);
    struct model *m;
    struct engine *eng = new_engine(
        &m, (struct engine_opts){.n_threads = 1, .n_ctx = 96, .block_size = 4, .kv_blocks = 24});
    if (!eng)
        return;
    crowd_check(eng, &c, 40, "small kv");
    struct engine_stats st;
    engine_get_stats(eng, &st);
    CHECKF(st.preemptions > 0, "no preemption happened");
    CHECK(st.kv_blocks_used == 0);
    close_engine(eng, m);
}

/* Shared prompt prefixes, a cache too small for everyone, some sequences
 * cancelled or released mid-way: the others still give the reference
 * outputs, n_cached stays a whole number of blocks within the prompt, and
 * in the end no block is held by a sequence. */
TEST(test_shared_prefixes_preemption_cancel)
{
    enum { N = 10, NP = 26, GEN = 30 };
    static int32_t prompt[N][NP], want[N][MAXT];
    int nw[N];
    int32_t common[16];
    make_prompt(common, 16, 4242);
    for (int i = 0; i < N; i++) {
        memcpy(prompt[i], common, sizeof common);
        make_prompt(prompt[i] + 16, NP - 16, 7000 + (uint64_t)(i % 4)); /* some prompts are identical */
        struct sample_params sp = sample_params_default();
        sp.temperature = i % 2 ? 0.8f : 0.0f;
        nw[i] = ref_gen(prompt[i], NP, &sp, 300 + (uint64_t)i, GEN, want[i]);
    }
    struct model *m;
    struct engine *eng = new_engine(
        &m, (struct engine_opts){.n_threads = 1, .n_ctx = 64, .block_size = 4, .kv_blocks = 20, .step_tokens = 24});
    if (!eng)
        return;
    struct engine_seq *s[N];
    struct err e;
    for (int i = 0; i < N; i++) {
        struct engine_request r = req_of(prompt[i], NP, GEN, i % 2 ? 0.8f : 0.0f, 300 + (uint64_t)i);
        s[i] = engine_submit(eng, &r, &e);
        CHECKF(s[i] != NULL, "%s", e.msg);
    }
    for (int i = 0; i < N; i++) {
        if (!s[i])
            continue;
        struct engine_event ev;
        if (i % 5 == 3) { /* cancel after the first token */
            CHECK(engine_next(s[i], &ev, 20000) == 0 && ev.kind == ENGINE_EV_TOKEN);
            engine_cancel(s[i]);
            int32_t got[MAXT];
            drain(s[i], got, &ev);
            CHECK(ev.finish == ENGINE_FINISH_CANCELLED || ev.finish == ENGINE_FINISH_LENGTH);
            engine_release(s[i]);
            continue;
        }
        if (i == N - 1) { /* released unread */
            engine_release(s[i]);
            continue;
        }
        int32_t got[MAXT];
        int n = drain(s[i], got, &ev);
        CHECKF(same(got, n, want[i], nw[i]), "sequence %d differs", i);
        CHECKF(ev.n_cached % 4 == 0 && ev.n_cached < NP, "n_cached %d", ev.n_cached);
        engine_release(s[i]);
    }
    /* the released one finishes within a few steps */
    struct engine_stats st;
    for (int k = 0; k < 2000; k++) {
        engine_get_stats(eng, &st);
        if (st.running == 0 && st.queued == 0)
            break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    CHECK(st.running == 0 && st.queued == 0);
    CHECKF(st.kv_blocks_used == 0, "%d blocks still used", st.kv_blocks_used);
    CHECK(st.tokens_cached > 0);
    CHECKF(st.preemptions > 0, "no preemption happened");
    close_engine(eng, m);
}

TEST(test_free_with_live_sequences)
{
    struct model *m;
    struct engine *eng = new_engine(
        &m, (struct engine_opts){.n_threads = 1, .n_ctx = 128, .block_size = 4, .max_running = 2});
    if (!eng)
        return;
    int32_t p[20];
    make_prompt(p, 20, 9);
    struct err e;
    struct engine_seq *s[5];
    for (int i = 0; i < 5; i++) {
        struct engine_request r = req_of(p, 20, 100, 0.5f, (uint64_t)i);
        s[i] = engine_submit(eng, &r, &e);
        CHECK(s[i] != NULL);
    }
    struct engine_event ev;
    CHECK(engine_next(s[0], &ev, 20000) == 0);
    engine_release(s[4]); /* one handle gone before engine_free */
    engine_free(eng);
    for (int i = 0; i < 4; i++) {
        int32_t got[MAXT];
        drain(s[i], got, &ev);
        CHECK(ev.kind == ENGINE_EV_DONE && ev.finish == ENGINE_FINISH_CANCELLED);
        engine_release(s[i]);
    }
    model_free(m);
}

/* Reads what is left of s up to its DONE (unless *seen already), adding its
 * compute_s to *sum. */
static void finish_seq(struct engine_seq *s, bool *seen, double *sum)
{
    struct engine_event ev;
    while (!*seen) {
        int rc = engine_next(s, &ev, 20000);
        CHECK(rc == 0);
        if (rc != 0)
            return;
        if (ev.kind == ENGINE_EV_DONE) {
            *seen = true;
            *sum += ev.compute_s;
        }
    }
}

/* Accounts: one running sequence at a time, six requests of account "a"
 * submitted, then one of "b". Under fair shares b overtakes most of a's
 * backlog; under fcfs it ends last. Returns how many of a's ended before b
 * did; *waiting gets how many of a's were still waiting when b was
 * submitted (on a loaded machine the engine may have taken some before the
 * submitting thread got to b, and those end before b whatever the policy).
 * Every request's
 * compute_s adds up to the engine's busy core-seconds, which are busy_s
 * times the threads. */
static int b_overtakes(bool fcfs, int *waiting)
{
    enum { NA = 6, NP = 12, GEN = 12 };
    struct model *m;
    struct engine *eng = new_engine(
        &m, (struct engine_opts){.n_threads = 2, .n_ctx = 64, .block_size = 4, .max_running = 1, .fcfs = fcfs});
    if (!eng)
        return -1;
    int32_t prompt[NP];
    make_prompt(prompt, NP, 77);
    struct engine_seq *h[NA + 1];
    bool seen[NA + 1] = {0};
    struct err e;
    double sum = 0;
    int a_done = 0;
    for (int i = 0; i <= NA; i++) {
        struct engine_request r = req_of(prompt, NP, GEN, 0, 1);
        if (i == NA) { /* a's requests not yet admitted (the stats copy may lag one step: counted generously) */
            struct engine_event ev0; /* first a's first token: the engine has started, the rest wait behind it */
            if (h[0] && engine_next(h[0], &ev0, -1) == 0 && ev0.kind == ENGINE_EV_DONE) {
                seen[0] = true;
                sum += ev0.compute_s;
                a_done++;
            }
            struct engine_stats st0;
            engine_get_stats(eng, &st0);
            *waiting = st0.queued < NA - 1 ? st0.queued : NA - 1; /* the first has started */
        }
        r.account = i < NA ? "acct_a" : "acct_b";
        r.weight = i < NA ? 1 : 2;
        h[i] = engine_submit(eng, &r, &e);
        CHECKF(h[i] != NULL, "%s", e.msg);
        if (!h[i])
            seen[i] = true;
    }
    if (h[NA])
        finish_seq(h[NA], &seen[NA], &sum);
    for (int i = 0; i < NA; i++) {
        struct engine_event ev;
        while (!seen[i] && engine_next(h[i], &ev, 0) == 0) {
            if (ev.kind == ENGINE_EV_DONE) {
                seen[i] = true;
                sum += ev.compute_s;
                a_done++;
            }
        }
    }
    for (int i = 0; i < NA; i++)
        finish_seq(h[i], &seen[i], &sum);
    struct engine_stats st;
    engine_get_stats(eng, &st);
    CHECK(st.n_threads == 2);
    CHECK(st.busy_s > 0 && fabs(st.busy_core_s - st.busy_s * st.n_threads) <= 1e-9 * st.busy_core_s);
    CHECKF(fabs(sum - st.busy_core_s) <= 1e-6 * st.busy_core_s, "compute_s adds up to %.9f, busy %.9f core-s", sum,
           st.busy_core_s);
    for (int i = 0; i <= NA; i++)
        engine_release(h[i]);
    close_engine(eng, m);
    return a_done;
}

TEST(test_fair_accounts_and_compute)
{
    int wait_fair = 0, wait_fcfs = 0;
    int fair = b_overtakes(false, &wait_fair), fcfs = b_overtakes(true, &wait_fcfs);
    /* fair: of the a's still waiting when b came, at most 3 go first */
    CHECKF(wait_fair >= 1 && fair - (6 - wait_fair) <= 3, "fair: %d of a's 6 requests ended before b's (%d were "
           "waiting when b came)", fair, wait_fair);
    CHECKF(fcfs == 6, "fcfs: %d of a's 6 requests ended before b's", fcfs);
    (void)wait_fcfs;
    /* a weight outside 1..1000 and an account name too long are refused */
    struct model *m;
    struct engine *eng = new_engine(&m, (struct engine_opts){.n_threads = 1, .n_ctx = 64});
    if (!eng)
        return;
    int32_t p[4] = {1, 2, 3, 4};
    struct engine_request r = req_of(p, 4, 2, 0, 1);
    struct err e;
    r.weight = 1001;
    CHECK(!engine_submit(eng, &r, &e) && e.code == ERR_INVALID);
    r.weight = 1000;
    char longname[ENGINE_ACCOUNT_MAX + 1];
    memset(longname, 'x', ENGINE_ACCOUNT_MAX);
    longname[ENGINE_ACCOUNT_MAX] = 0;
    r.account = longname;
    CHECK(!engine_submit(eng, &r, &e) && e.code == ERR_INVALID);
    close_engine(eng, m);
}

int main(void)
{
    kernels_init();
    tiny_path(model_path, sizeof model_path, "engine");
    struct tiny_cfg c = cfg();
    if (tiny_write(&c, model_path) < 0)
        return 1;
    struct err e;
    m_ref = model_load(model_path, &e);
    if (!m_ref || model_reserve(m_ref, 128, NULL, &e) < 0) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    RUN(test_crowd_equals_alone);
    RUN(test_chunked_prefill);
    RUN(test_prefix_reuse);
    RUN(test_multi_turn);
    RUN(test_logprobs);
    RUN(test_cancel);
    RUN(test_queue_full_and_bad_requests);
    RUN(test_small_kv_preemption);
    RUN(test_shared_prefixes_preemption_cancel);
    RUN(test_free_with_live_sequences);
    RUN(test_fair_accounts_and_compute);
    model_free(m_ref);
    unlink(model_path);
    TEST_END();
}
