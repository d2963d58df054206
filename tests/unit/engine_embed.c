/* engine: embedding requests (engine_embed) on the engine thread — several
 * threads at once, each with several inputs, while a chat sequence
 * generates on the same engine: every vector equals model_embed's on a
 * separate copy of the model, the chat output equals its output alone, and
 * the compute is attributed; an input longer than a pass is refused with
 * ERR_INVALID naming it, an id outside the vocabulary too; engine_free
 * with nothing waiting. A tiny random qwen2 (a decoder: pooled by its last
 * token) keeps chat and embeddings on one engine. */
#include "engine/engine.h"
#include "model_tiny.h"
#include "test.h"

#include <math.h>
#include <pthread.h>

#define NV 128
#define E 64
#define NTHR 4
#define NCALL 5

static struct tiny_cfg cfg(void)
{
    struct tiny_cfg c = {0};
    c.arch = "qwen2";
    c.n_vocab = NV, c.n_embd = E, c.n_layer = 2, c.n_head = 4, c.n_head_kv = 2, c.head_dim = 16, c.n_ff = 96;
    c.wtype = GGML_TYPE_F32;
    c.seed = 5;
    return c;
}

static char path[128];
static float want[NTHR * NCALL][3][E];
static int32_t inputs[NTHR * NCALL][3][24];
static int lens[NTHR * NCALL][3];

struct worker {
    struct engine *eng;
    int t, fails;
    double compute_s;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    for (int c = 0; c < NCALL; c++) {
        int k = w->t * NCALL + c;
        const int32_t *in[3] = {inputs[k][0], inputs[k][1], inputs[k][2]};
        float out[3 * E];
        double cs = 0;
        struct err e = {0};
        struct engine_embed_request r = {3, in, lens[k]};
        if (engine_embed(w->eng, &r, out, &cs, &e) < 0) {
            w->fails++;
            continue;
        }
        w->compute_s += cs;
        for (int i = 0; i < 3; i++)
            for (int d = 0; d < E; d++)
                if (fabsf(out[i * E + d] - want[k][i][d]) > 1e-5f)
                    w->fails++;
    }
    return NULL;
}

/* Inputs and what model_embed gives for them on a model of our own. */
static int prepare(void)
{
    struct tiny_cfg c = cfg();
    tiny_path(path, sizeof path, "engemb");
    if (tiny_write(&c, path) < 0)
        return -1;
    struct err e = {0};
    struct model *m = model_load(path, &e);
    if (!m || model_reserve(m, 64, NULL, &e) < 0) {
        CHECKF(0, "%s", e.msg);
        model_free(m);
        return -1;
    }
    struct rng r;
    rng_seed(&r, 9);
    for (int k = 0; k < NTHR * NCALL; k++) {
        const int32_t *in[3];
        for (int i = 0; i < 3; i++) {
            lens[k][i] = 1 + (int)(rng_u64(&r) % 24);
            for (int p = 0; p < lens[k][i]; p++)
                inputs[k][i][p] = (int32_t)(rng_u64(&r) % NV);
            in[i] = inputs[k][i];
        }
        CHECK(model_embed(m, in, lens[k], 3, -1, &want[k][0][0], &e) == 0);
    }
    model_free(m);
    return 0;
}

/* A chat sequence's tokens (max 40). */
static int chat(struct engine *eng, int32_t *out)
{
    int32_t prompt[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    struct engine_request r = {0};
    r.prompt = prompt, r.n_prompt = 8, r.sample = sample_params_default(), r.max_tokens = 40;
    r.sample.temperature = 0;
    struct err e = {0};
    struct engine_seq *s = engine_submit(eng, &r, &e);
    CHECKF(s != NULL, "%s", e.msg);
    if (!s)
        return 0;
    int n = 0;
    struct engine_event ev;
    while (engine_next(s, &ev, 20000) == 0 && ev.kind == ENGINE_EV_TOKEN)
        out[n++] = ev.tok.token;
    engine_release(s);
    return n;
}

TEST(test_embed_with_chat)
{
    if (prepare() < 0)
        return;
    struct err e = {0};
    struct model *m = model_load(path, &e);
    struct engine_opts o = {.n_threads = 1, .step_tokens = 32, .n_ctx = 128};
    struct engine *eng = m ? engine_new(m, NULL, &o, &e) : NULL;
    CHECKF(eng != NULL, "%s", e.msg);
    if (!eng) {
        model_free(m);
        return;
    }
    CHECK(engine_embed_max_tokens(eng) == 32);
    int32_t alone[40], crowd[40];
    int n_alone = chat(eng, alone);
    struct worker w[NTHR];
    pthread_t th[NTHR];
    for (int t = 0; t < NTHR; t++) {
        w[t] = (struct worker){eng, t, 0, 0};
        pthread_create(&th[t], NULL, work, &w[t]);
    }
    int n_crowd = chat(eng, crowd);
    for (int t = 0; t < NTHR; t++) {
        pthread_join(th[t], NULL);
        CHECKF(w[t].fails == 0, "thread %d: %d values or calls differ", t, w[t].fails);
        CHECK(w[t].compute_s > 0);
    }
    CHECK(n_alone == 40 && n_crowd == 40 && !memcmp(alone, crowd, sizeof alone));
    /* errors: too long for a pass, an id outside the vocabulary */
    int32_t big[40] = {0}, bad[2] = {1, NV};
    const int32_t *pb = big, *pbad = bad;
    int l40 = 40, l2 = 2;
    float out[E];
    double cs;
    struct engine_embed_request r1 = {1, &pb, &l40}, r2 = {1, &pbad, &l2};
    CHECK(engine_embed(eng, &r1, out, &cs, &e) < 0 && e.code == ERR_INVALID && strstr(e.msg, "input 0"));
    CHECK(engine_embed(eng, &r2, out, &cs, &e) < 0 && e.code == ERR_INVALID && strstr(e.msg, "vocabulary"));
    engine_free(eng);
    model_free(m);
    unlink(path);
}

/* embed_only (what maas serve asks for an embedding model): a KV cache of
 * one block, whatever kv_blocks says; engine_submit refuses; embeddings as
 * model_embed gives them. */
TEST(test_embed_only)
{
    if (prepare() < 0)
        return;
    struct err e = {0};
    struct model *m = model_load(path, &e);
    struct engine_opts o = {.n_threads = 1, .step_tokens = 32, .n_ctx = 128, .kv_blocks = 4096, .embed_only = true};
    struct engine *eng = m ? engine_new(m, NULL, &o, &e) : NULL;
    CHECKF(eng != NULL, "%s", e.msg);
    if (!eng) {
        model_free(m);
        return;
    }
    struct engine_stats st;
    engine_get_stats(eng, &st);
    CHECKF(st.kv_blocks_total == 1, "%d KV blocks", (int)st.kv_blocks_total);
    int32_t prompt[4] = {1, 2, 3, 4};
    struct engine_request r = {0};
    r.prompt = prompt, r.n_prompt = 4, r.sample = sample_params_default(), r.max_tokens = 4;
    CHECK(engine_submit(eng, &r, &e) == NULL && e.code == ERR_INVALID && strstr(e.msg, "embeddings"));
    struct worker w = {eng, 0, 0, 0};
    work(&w);
    CHECKF(w.fails == 0, "%d values or calls differ", w.fails);
    engine_free(eng);
    model_free(m);
    unlink(path);
}

int main(void)
{
    RUN(test_embed_with_chat);
    RUN(test_embed_only);
    TEST_END();
}
