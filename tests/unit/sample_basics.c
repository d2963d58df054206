/* sample: greedy, seeds, truncations, penalties, logprobs. */
#include "sample/sample.h"
#include "test.h"

#define NV 50

static void fill_logits(float *l, int n, uint64_t seed)
{
    struct rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < n; i++)
        l[i] = (float)(rng_normal(&r) * 2.0);
}

static double log_softmax(const float *l, int n, int t, float temp)
{
    double mx = -1e300, s = 0;
    for (int i = 0; i < n; i++)
        mx = l[i] / temp > mx ? l[i] / temp : mx;
    for (int i = 0; i < n; i++)
        s += exp(l[i] / temp - mx);
    return l[t] / temp - mx - log(s);
}

TEST(test_params_check)
{
    struct err e;
    struct sample_params p = sample_params_default();
    CHECK(sample_params_check(&p, &e) == 0);
    p.top_p = 0;
    CHECK(sample_params_check(&p, &e) == -1 && strstr(e.msg, "top_p"));
    p = sample_params_default();
    p.temperature = -1;
    CHECK(sample_params_check(&p, &e) == -1 && strstr(e.msg, "temperature"));
    p = sample_params_default();
    p.n_top_logprobs = SAMPLE_MAX_TOP + 1;
    CHECK(sample_params_check(&p, &e) == -1 && strstr(e.msg, "top_logprobs"));
    CHECK(sampler_new(0, &e) == NULL && strstr(e.msg, "vocabulary"));
}

TEST(test_greedy_is_argmax_and_logprobs)
{
    struct err e;
    struct sampler *s = sampler_new(NV, &e);
    CHECK(s != NULL);
    float l[NV];
    struct sample_params p = sample_params_default();
    p.temperature = 0;
    p.n_top_logprobs = 5;
    struct rng r;
    rng_seed(&r, 1);
    for (uint64_t seed = 1; seed < 30; seed++) {
        fill_logits(l, NV, seed);
        int am = 0;
        for (int i = 1; i < NV; i++)
            if (l[i] > l[am])
                am = i;
        struct sample_result res;
        sampler_sample(s, l, &p, NULL, 0, &r, &res);
        CHECK(res.token == am);
        CHECK_NEAR(res.logprob, log_softmax(l, NV, am, 1), 1e-5);
        CHECK(res.n_top == 5);
        CHECK(res.top[0].id == am);
        for (int i = 0; i < res.n_top; i++) {
            CHECK_NEAR(res.top[i].logprob, log_softmax(l, NV, res.top[i].id, 1), 1e-5);
            if (i > 0)
                CHECK(res.top[i].logprob <= res.top[i - 1].logprob);
        }
        /* the 5 reported are the 5 largest */
        int larger = 0;
        for (int i = 0; i < NV; i++)
            if (l[i] > l[res.top[4].id])
                larger++;
        CHECK(larger == 4);
    }
    sampler_free(s);
}

TEST(test_logprobs_after_temperature)
{
    struct err e;
    struct sampler *s = sampler_new(NV, &e);
    float l[NV];
    fill_logits(l, NV, 77);
    struct sample_params p = sample_params_default();
    p.temperature = 0.7f;
    p.top_k = 3; /* truncation must not change the reported logprobs */
    p.n_top_logprobs = 10;
    struct rng r;
    rng_seed(&r, 5);
    struct sample_result res;
    sampler_sample(s, l, &p, NULL, 0, &r, &res);
    CHECK_NEAR(res.logprob, log_softmax(l, NV, res.token, 0.7f), 1e-5);
    CHECK(res.n_top == 10);
    for (int i = 0; i < res.n_top; i++)
        CHECK_NEAR(res.top[i].logprob, log_softmax(l, NV, res.top[i].id, 0.7f), 1e-5);
    sampler_free(s);
}

/* Draws many times and records which tokens appear. */
static void support(struct sampler *s, const float *l, const struct sample_params *p, int *seen, int draws)
{
    struct rng r;
    rng_seed(&r, 123);
    memset(seen, 0, NV * sizeof *seen);
    for (int i = 0; i < draws; i++) {
        struct sample_result res;
        sampler_sample(s, l, p, NULL, 0, &r, &res);
        CHECK(res.token >= 0 && res.token < NV);
        seen[res.token]++;
    }
}

TEST(test_seed_reproducible)
{
    struct err e;
    struct sampler *s = sampler_new(NV, &e);
    float l[NV];
    fill_logits(l, NV, 9);
    struct sample_params p = sample_params_default();
    p.top_p = 0.9f;
    struct rng a, b, c;
    rng_seed(&a, 42);
    rng_seed(&b, 42);
    rng_seed(&c, 43);
    int same_ab = 1, same_ac = 1;
    for (int i = 0; i < 200; i++) {
        struct sample_result ra, rb, rc;
        sampler_sample(s, l, &p, NULL, 0, &a, &ra);
        sampler_sample(s, l, &p, NULL, 0, &b, &rb);
        sampler_sample(s, l, &p, NULL, 0, &c, &rc);
        same_ab &= ra.token == rb.token;
        same_ac &= ra.token == rc.token;
    }
    CHECK(same_ab);
    CHECK(!same_ac);
    sampler_free(s);
}

TEST(test_top_k_support)
{
    struct err e;
    struct sampler *s = sampler_new(NV, &e);
    float l[NV];
    for (int i = 0; i < NV; i++)
        l[i] = (float)((i * 7) % NV) * 0.05f; /* distinct, permuted */
    struct sample_params p = sample_params_default();
    p.top_k = 4;
    int seen[NV];
    support(s, l, &p, seen, 4000);
    int n_seen = 0;
    for (int i = 0; i < NV; i++) {
        int rank = 0;
        for (int j = 0; j < NV; j++)
            rank += l[j] > l[i];
        if (seen[i])
            n_seen++;
        CHECK(rank < 4 ? seen[i] > 0 : seen[i] == 0);
    }
    CHECK(n_seen == 4);
    sampler_free(s);
}

TEST(test_top_p_support)
{
    struct err e;
    struct sampler *s = sampler_new(NV, &e);
    float l[NV];
    /* probabilities 0.4, 0.3, 0.2 and the rest share 0.1 */
    for (int i = 0; i < NV; i++)
        l[i] = logf(0.1f / (NV - 3));
    l[10] = logf(0.4f);
    l[20] = logf(0.3f);
    l[30] = logf(0.2f);
    struct sample_params p = sample_params_default();
    p.top_p = 0.65f; /* 0.4 < 0.65 <= 0.7: {10, 20} */
    int seen[NV];
    support(s, l, &p, seen, 4000);
    for (int i = 0; i < NV; i++)
        CHECK((i == 10 || i == 20) ? seen[i] > 0 : seen[i] == 0);
    CHECK(seen[10] > seen[20]);
    p.top_p = 0.85f; /* {10, 20, 30} */
    support(s, l, &p, seen, 4000);
    for (int i = 0; i < NV; i++)
        CHECK((i == 10 || i == 20 || i == 30) ? seen[i] > 0 : seen[i] == 0);
    sampler_free(s);
}

TEST(test_top_p_large_vocab)
{
    /* exercises the growing-prefix search past its first 64 candidates */
    int n = 5000;
    struct err e;
    struct sampler *s = sampler_new(n, &e);
    float *l = malloc(n * sizeof *l);
    fill_logits(l, n, 3);
    struct sample_params p = sample_params_default();
    p.top_p = 0.5f;
    /* the expected support: sort probabilities, take the shortest prefix with >= half the mass */
    double *pr = malloc(n * sizeof *pr), z = 0;
    for (int i = 0; i < n; i++)
        z += (pr[i] = exp(l[i]));
    int *keep = calloc(n, sizeof *keep);
    double acc = 0;
    int n_keep = 0;
    while (acc < 0.5 * z) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (!keep[i] && (best < 0 || pr[i] > pr[best]))
                best = i;
        keep[best] = 1;
        acc += pr[best];
        n_keep++;
    }
    CHECK(n_keep > 64);
    struct rng r;
    rng_seed(&r, 8);
    int bad = 0;
    for (int i = 0; i < 3000; i++) {
        struct sample_result res;
        sampler_sample(s, l, &p, NULL, 0, &r, &res);
        bad += !keep[res.token];
    }
    CHECK(bad == 0);
    free(keep);
    free(pr);
    free(l);
    sampler_free(s);
}

TEST(test_min_p_support)
{
    struct err e;
    struct sampler *s = sampler_new(NV, &e);
    float l[NV];
    for (int i = 0; i < NV; i++)
        l[i] = -5.0f;
    l[3] = 0.0f;
    l[4] = logf(0.5f);  /* relative prob 0.5 */
    l[5] = logf(0.25f); /* relative prob 0.25 */
    struct sample_params p = sample_params_default();
    p.min_p = 0.3f;
    int seen[NV];
    support(s, l, &p, seen, 3000);
    for (int i = 0; i < NV; i++)
        CHECK((i == 3 || i == 4) ? seen[i] > 0 : seen[i] == 0);
    sampler_free(s);
}

TEST(test_penalties_and_bias)
{
    struct err e;
    struct sampler *s = sampler_new(NV, &e);
    float l[NV];
    for (int i = 0; i < NV; i++)
        l[i] = 0.0f;
    l[1] = 2.0f;
    l[2] = -2.0f;
    l[3] = 1.0f;
    struct sample_params p = sample_params_default();
    p.temperature = 0;
    p.n_top_logprobs = SAMPLE_MAX_TOP;
    struct rng r;
    rng_seed(&r, 1);
    struct sample_result res;

    /* Penalties seen through logprobs: compute the expected logits and compare. */
    int32_t prev[] = {1, 1, 2, 3, 1};
    p.repeat_penalty = 2.0f;
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    p.penalty_last_n = -1;
    float want[NV];
    memcpy(want, l, sizeof want);
    want[1] = 2.0f / 2 - 0.5f - 0.25f * 3;  /* -0.25 */
    want[2] = -2.0f * 2 - 0.5f - 0.25f * 1; /* -4.75 */
    want[3] = 1.0f / 2 - 0.5f - 0.25f * 1;  /* -0.25 */
    sampler_sample(s, l, &p, prev, 5, &r, &res);
    CHECK(res.token == 0); /* 1 fell from 2 to -0.25; 0 is the first of the zeros */
    for (int i = 0; i < res.n_top; i++)
        CHECK_NEAR(res.top[i].logprob, log_softmax(want, NV, res.top[i].id, 1), 1e-5);
    /* the counts are reset: the same call gives the same answer */
    struct sample_result res2;
    sampler_sample(s, l, &p, prev, 5, &r, &res2);
    CHECK(res2.token == res.token && res2.logprob == res.logprob);

    /* A window of the last 2 tokens only sees 3 and 1. */
    p.penalty_last_n = 2;
    memcpy(want, l, sizeof want);
    want[1] = 2.0f / 2 - 0.5f - 0.25f;
    want[3] = 1.0f / 2 - 0.5f - 0.25f;
    sampler_sample(s, l, &p, prev, 5, &r, &res);
    for (int i = 0; i < res.n_top; i++)
        CHECK_NEAR(res.top[i].logprob, log_softmax(want, NV, res.top[i].id, 1), 1e-5);

    /* Logit bias moves the argmax; -inf bans a token. */
    p = sample_params_default();
    p.temperature = 0;
    struct sample_bias b[] = {{7, 5.0f}, {1000, 1.0f}};
    p.bias = b;
    p.n_bias = 2;
    sampler_sample(s, l, &p, NULL, 0, &r, &res);
    CHECK(res.token == 7);
    struct sample_bias ban[] = {{1, -INFINITY}};
    p.bias = ban;
    p.n_bias = 1;
    p.temperature = 1;
    int seen[NV];
    support(s, l, &p, seen, 2000);
    CHECK(seen[1] == 0);
    sampler_free(s);
}

/* The allowed bitset holds greedy and sampled draws to its tokens, after
 * the logit bias and before temperature, top-k and top-p. */
TEST(test_allowed_mask)
{
    struct err e;
    struct sampler *s = sampler_new(NV, &e);
    float l[NV];
    fill_logits(l, NV, 7);
    uint32_t allowed[(NV + 31) / 32] = {0};
    int ok[] = {3, 17, 40, 49};
    for (int i = 0; i < 4; i++)
        allowed[ok[i] / 32] |= 1u << (ok[i] % 32);
    struct sample_params p = sample_params_default();
    p.allowed = allowed;
    struct sample_bias b = {17, 100.0f}; /* the bias applies before the mask */
    p.bias = &b;
    p.n_bias = 1;
    p.temperature = 0;
    struct sample_result r;
    struct rng g;
    rng_seed(&g, 1);
    sampler_sample(s, l, &p, NULL, 0, &g, &r);
    CHECK(r.token == 17);
    p.n_bias = 0;
    int best = ok[0];
    for (int i = 1; i < 4; i++)
        if (l[ok[i]] > l[best])
            best = ok[i];
    sampler_sample(s, l, &p, NULL, 0, &g, &r);
    CHECK(r.token == best);
    p.temperature = 1.5f;
    p.top_k = 40;
    p.top_p = 0.9f;
    int seen[NV] = {0};
    for (int k = 0; k < 2000; k++) {
        sampler_sample(s, l, &p, NULL, 0, &g, &r);
        CHECK(r.token >= 0 && r.token < NV && (allowed[r.token / 32] >> (r.token % 32) & 1));
        seen[r.token]++;
    }
    CHECK(seen[best] > 0);
    /* every logit at -inf but allowed tokens: still an allowed token */
    for (int i = 0; i < NV; i++)
        l[i] = -INFINITY;
    p.temperature = 0;
    sampler_sample(s, l, &p, NULL, 0, &g, &r);
    CHECK(r.token == 3);
    sampler_free(s);
}

int main(void)
{
    RUN(test_params_check);
    RUN(test_greedy_is_argmax_and_logprobs);
    RUN(test_logprobs_after_temperature);
    RUN(test_seed_reproducible);
    RUN(test_top_k_support);
    RUN(test_top_p_support);
    RUN(test_top_p_large_vocab);
    RUN(test_min_p_support);
    RUN(test_penalties_and_bias);
    RUN(test_allowed_mask);
    TEST_END();
}
