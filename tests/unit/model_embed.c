/* model: embeddings — the BERT encoder and pooling (model_embed) on tiny
 * random models: unit length; several inputs in one pass equal each alone;
 * the pooling types' relations (cls = the first row of none, last = the
 * last row); attention over the whole input for an encoder (a later token
 * changes the first row) and causal for a decoder (it does not); threads
 * agree with one; the errors. */
#include "model/model.h"
#include "model_tiny.h"
#include "test.h"

#include <math.h>

#define E 64

static struct tiny_cfg cfg(void)
{
    struct tiny_cfg c = {0};
    c.arch = "qwen2";
    c.n_vocab = 64, c.n_embd = E, c.n_layer = 2, c.n_head = 4, c.n_head_kv = 2, c.head_dim = 16, c.n_ff = 96;
    c.wtype = GGML_TYPE_F32;
    c.seed = 11;
    return c;
}

static struct model *load(bool bert, int pooling, struct pool *pool)
{
    char path[128];
    struct tiny_cfg c = cfg();
    tiny_path(path, sizeof path, bert ? "bert" : "qwen2e");
    if ((bert ? tiny_write_bert(&c, pooling, path) : tiny_write(&c, path)) < 0)
        return NULL;
    struct err e = {0};
    struct model *m = model_load(path, &e);
    unlink(path);
    CHECKF(m != NULL, "%s", e.msg);
    if (m && model_reserve(m, 64, pool, &e) < 0) {
        CHECKF(0, "%s", e.msg);
        model_free(m);
        return NULL;
    }
    return m;
}

static double max_diff(const float *a, const float *b, int n)
{
    double d = 0;
    for (int i = 0; i < n; i++)
        d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

static const int32_t in0[] = {1, 5, 9, 13, 2}, in1[] = {1, 40, 2}, in2[] = {1, 7, 7, 7, 7, 7, 30, 2};
static const int32_t *const ins[] = {in0, in1, in2};
static const int lens[] = {5, 3, 8};

/* Batch = singles and unit length, for one pooling. */
static void batch_vs_single(struct model *m, int pooling)
{
    float all[3 * E], one[E];
    struct err e = {0};
    CHECKF(model_embed(m, ins, lens, 3, pooling, all, &e) == 0, "%s", e.msg);
    for (int i = 0; i < 3; i++) {
        double s = 0;
        for (int d = 0; d < E; d++)
            s += (double)all[i * E + d] * all[i * E + d];
        CHECK_NEAR(sqrt(s), 1.0, 1e-5);
        CHECK(model_embed(m, &ins[i], &lens[i], 1, pooling, one, &e) == 0);
        CHECKF(max_diff(one, all + i * E, E) < 1e-5, "pooling %s, input %d: batch vs alone %g",
               model_pooling_name(pooling), i, max_diff(one, all + i * E, E));
    }
}

TEST(test_bert_batch_and_poolings)
{
    struct model *m = load(true, -1, NULL);
    if (!m)
        return;
    CHECK(model_is_embedding(m) && model_hparams(m)->pooling == MODEL_POOL_MEAN); /* an encoder's default */
    for (int p = MODEL_POOL_MEAN; p <= MODEL_POOL_LAST; p++)
        batch_vs_single(m, p);
    /* none: one row per token; cls and last are its first and last rows */
    float none[8 * E], cls[E], last[E];
    struct err e = {0};
    CHECK(model_embed(m, &ins[2], &lens[2], 1, MODEL_POOL_NONE, none, &e) == 0);
    CHECK(model_embed(m, &ins[2], &lens[2], 1, MODEL_POOL_CLS, cls, &e) == 0);
    CHECK(model_embed(m, &ins[2], &lens[2], 1, MODEL_POOL_LAST, last, &e) == 0);
    CHECK(max_diff(none, cls, E) < 1e-6 && max_diff(none + 7 * E, last, E) < 1e-6);
    /* the encoder sees the whole input: a later token moves the first row */
    int32_t other[8];
    memcpy(other, in2, sizeof other);
    other[6] = 31;
    const int32_t *po = other;
    float cls2[E];
    CHECK(model_embed(m, &po, &lens[2], 1, MODEL_POOL_CLS, cls2, &e) == 0);
    CHECK(max_diff(cls, cls2, E) > 1e-3);
    model_free(m);
}

TEST(test_decoder_pooling_is_causal)
{
    struct model *m = load(false, -1, NULL);
    if (!m)
        return;
    CHECK(!model_is_embedding(m) && model_hparams(m)->pooling == MODEL_POOL_LAST); /* a decoder's default */
    for (int p = MODEL_POOL_MEAN; p <= MODEL_POOL_LAST; p++)
        batch_vs_single(m, p);
    int32_t other[8];
    memcpy(other, in2, sizeof other);
    other[6] = 31;
    const int32_t *po = other;
    float a[E], b[E], la[E], lb[E];
    struct err e = {0};
    CHECK(model_embed(m, &ins[2], &lens[2], 1, MODEL_POOL_CLS, a, &e) == 0);
    CHECK(model_embed(m, &po, &lens[2], 1, MODEL_POOL_CLS, b, &e) == 0);
    CHECK(max_diff(a, b, E) < 1e-6); /* the first token cannot see the later ones */
    CHECK(model_embed(m, &ins[2], &lens[2], 1, MODEL_POOL_LAST, la, &e) == 0);
    CHECK(model_embed(m, &po, &lens[2], 1, MODEL_POOL_LAST, lb, &e) == 0);
    CHECK(max_diff(la, lb, E) > 1e-3);
    model_free(m);
}

TEST(test_threads_agree)
{
    struct pool *pool = pool_new(3);
    struct model *m1 = load(true, MODEL_POOL_CLS, NULL), *m3 = load(true, MODEL_POOL_CLS, pool);
    if (m1 && m3) {
        CHECK(model_hparams(m1)->pooling == MODEL_POOL_CLS);
        float a[3 * E], b[3 * E];
        struct err e = {0};
        CHECK(model_embed(m1, ins, lens, 3, -1, a, &e) == 0 && model_embed(m3, ins, lens, 3, -1, b, &e) == 0);
        CHECK(max_diff(a, b, 3 * E) < 1e-6);
    }
    model_free(m1);
    model_free(m3);
    pool_free(pool);
}

TEST(test_embed_errors)
{
    struct model *m = load(true, -1, NULL);
    if (!m)
        return;
    float out[E * 40];
    struct err e = {0};
    int zero = 0, long_len = 33;
    int32_t ids[40] = {0}, bad = 64;
    const int32_t *pi = ids, *pb = &bad;
    CHECK(model_embed(m, &pi, &zero, 1, -1, out, &e) < 0 && e.code == ERR_INVALID && strstr(e.msg, "input 0"));
    CHECK(model_embed(m, &pi, &long_len, 1, -1, out, &e) < 0 && e.code == ERR_INVALID && strstr(e.msg, "context"));
    int one = 1;
    CHECK(model_embed(m, &pb, &one, 1, -1, out, &e) < 0 && strstr(e.msg, "vocabulary"));
    CHECK(model_embed(m, &pi, &one, 1, MODEL_POOL_RANK, out, &e) < 0 && strstr(e.msg, "rank"));
    const int32_t *many[3] = {ids, ids, ids};
    int l30[3] = {30, 30, 30}; /* 90 tokens > the 64 reserved */
    CHECK(model_embed(m, many, l30, 3, -1, out, &e) < 0 && strstr(e.msg, "reserved"));
    model_free(m);
}

int main(void)
{
    RUN(test_bert_batch_and_poolings);
    RUN(test_decoder_pooling_is_causal);
    RUN(test_threads_agree);
    RUN(test_embed_errors);
    TEST_END();
}
