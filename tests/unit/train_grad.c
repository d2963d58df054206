/* Gradient checks: every operation's backward pass, and whole small
 * networks' gradients, against central finite differences in double; the
 * float network against the double one; the same bits on 1 and 2 threads. */
#include "kernels/kernels.h"
#include "test.h"
#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rs_state = 0x1234567;
static double urand(void) /* uniform in [-1, 1) */
{
    rs_state = rs_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rs_state >> 11) / (double)(1ull << 52) - 1.0;
}

static void fill(double *x, int n, double scale, double bias)
{
    for (int i = 0; i < n; i++)
        x[i] = bias + scale * urand();
}

/* |a - b| small relative to their size */
static bool close_enough(double num, double ana, double tol)
{
    return fabs(num - ana) <= tol * (1e-3 + fabs(num) + fabs(ana));
}

/* ---- row operations ---- */
/* L = sum c * rmsnorm(x) * w */
static double rms_loss(const double *x, const double *w, const double *c, int n)
{
    double y[16], rs, l = 0;
    train_rmsnorm_fwd_f64(y, &rs, x, w, n, 1e-5);
    for (int i = 0; i < n; i++)
        l += c[i] * y[i];
    return l;
}

TEST(rmsnorm_backward)
{
    int n = 11;
    double x[16], w[16], c[16], y[16], rs, dx[16] = {0}, dw[16] = {0};
    fill(x, n, 1, 0.1), fill(w, n, 0.5, 1), fill(c, n, 1, 0);
    train_rmsnorm_fwd_f64(y, &rs, x, w, n, 1e-5);
    train_rmsnorm_bwd_f64(dx, dw, c, x, w, rs, n);
    for (int i = 0; i < n; i++) {
        double h = 1e-6, s = x[i];
        x[i] = s + h;
        double lp = rms_loss(x, w, c, n);
        x[i] = s - h;
        double lm = rms_loss(x, w, c, n);
        x[i] = s;
        CHECKF(close_enough((lp - lm) / (2 * h), dx[i], 1e-6), "dx[%d] %g vs %g", i, (lp - lm) / (2 * h), dx[i]);
        s = w[i];
        w[i] = s + h;
        lp = rms_loss(x, w, c, n);
        w[i] = s - h;
        lm = rms_loss(x, w, c, n);
        w[i] = s;
        CHECKF(close_enough((lp - lm) / (2 * h), dw[i], 1e-6), "dw[%d]", i);
    }
}

TEST(rope_backward_is_the_transpose)
{
    /* L = <c, rope(x)>: dL/dx = rope^-1(c) for both pairings */
    int nh = 2, hd = 8, n = nh * hd;
    double cs[4], sn[4];
    for (int i = 0; i < 4; i++)
        cs[i] = cos(0.3 + i), sn[i] = sin(0.3 + i);
    for (int neox = 0; neox < 2; neox++) {
        double x[16], c[16], g[16], y[16];
        fill(x, n, 1, 0), fill(c, n, 1, 0);
        memcpy(g, c, sizeof g);
        train_rope_f64(g, nh, hd, hd, neox, cs, sn, true);
        for (int i = 0; i < n; i++) {
            double h = 1e-6, s = x[i], lp = 0, lm = 0;
            x[i] = s + h;
            memcpy(y, x, sizeof y);
            train_rope_f64(y, nh, hd, hd, neox, cs, sn, false);
            for (int j = 0; j < n; j++)
                lp += c[j] * y[j];
            x[i] = s - h;
            memcpy(y, x, sizeof y);
            train_rope_f64(y, nh, hd, hd, neox, cs, sn, false);
            for (int j = 0; j < n; j++)
                lm += c[j] * y[j];
            x[i] = s;
            CHECKF(close_enough((lp - lm) / (2 * h), g[i], 1e-6), "neox %d, dx[%d]", neox, i);
        }
        /* and the inverse undoes the rotation */
        memcpy(y, x, sizeof y);
        train_rope_f64(y, nh, hd, hd, neox, cs, sn, false);
        train_rope_f64(y, nh, hd, hd, neox, cs, sn, true);
        for (int i = 0; i < n; i++)
            CHECK_NEAR(y[i], x[i], 1e-12);
    }
}

TEST(swiglu_backward)
{
    int n = 9;
    double g[9], u[9], c[9], a[9], dg[9], du[9];
    fill(g, n, 3, 0), fill(u, n, 2, 0), fill(c, n, 1, 0);
    train_swiglu_bwd_f64(dg, du, c, g, u, n);
    for (int i = 0; i < n; i++) {
        double h = 1e-6, s = g[i], lp = 0, lm = 0;
        g[i] = s + h;
        train_swiglu_fwd_f64(a, g, u, n);
        for (int j = 0; j < n; j++)
            lp += c[j] * a[j];
        g[i] = s - h;
        train_swiglu_fwd_f64(a, g, u, n);
        for (int j = 0; j < n; j++)
            lm += c[j] * a[j];
        g[i] = s;
        CHECKF(close_enough((lp - lm) / (2 * h), dg[i], 1e-6), "dg[%d]", i);
        s = u[i], lp = lm = 0;
        u[i] = s + h;
        train_swiglu_fwd_f64(a, g, u, n);
        for (int j = 0; j < n; j++)
            lp += c[j] * a[j];
        u[i] = s - h;
        train_swiglu_fwd_f64(a, g, u, n);
        for (int j = 0; j < n; j++)
            lm += c[j] * a[j];
        u[i] = s;
        CHECKF(close_enough((lp - lm) / (2 * h), du[i], 1e-6), "du[%d]", i);
    }
}

TEST(cross_entropy_backward)
{
    int n = 13, target = 5;
    double z[13], d[13];
    fill(z, n, 4, 0);
    double l = train_xent_f64(d, z, n, target, 0.5);
    double mx = z[0], s = 0;
    for (int i = 1; i < n; i++)
        mx = z[i] > mx ? z[i] : mx;
    for (int i = 0; i < n; i++)
        s += exp(z[i] - mx);
    CHECK_NEAR(l, log(s) + mx - z[target], 1e-12);
    for (int i = 0; i < n; i++) {
        double h = 1e-6, v = z[i];
        z[i] = v + h;
        double lp = train_xent_f64(NULL, z, n, target, 1);
        z[i] = v - h;
        double lm = train_xent_f64(NULL, z, n, target, 1);
        z[i] = v;
        CHECKF(close_enough(0.5 * (lp - lm) / (2 * h), d[i], 1e-6), "dz[%d]", i);
    }
}

/* ---- whole networks ---- */
struct tiny {
    const char *arch;
    int n_expert, n_expert_used;
    bool tied;
};

static void tiny_shape(const struct tiny *c, struct model_hparams *hp, struct train_shape *s)
{
    struct err e = {0};
    memset(hp, 0, sizeof *hp);
    hp->arch = model_arch_find(c->arch, strlen(c->arch), &e);
    MAAS_ASSERT(hp->arch);
    hp->arch_name = hp->arch->name;
    hp->n_vocab = 11, hp->n_embd = 8, hp->n_layer = 2, hp->n_head = 4, hp->n_head_kv = 2, hp->head_dim = 4;
    hp->n_rot = 4, hp->n_ff = c->n_expert ? 0 : 12, hp->n_ctx_train = 64;
    hp->n_expert = c->n_expert, hp->n_expert_used = c->n_expert_used, hp->n_ff_exp = c->n_expert ? 6 : 0;
    hp->tied_output = c->tied, hp->rms_eps = 1e-5f, hp->rope_base = 10000, hp->rope_freq_scale = 1;
    hp->rope_neox = (hp->arch->flags & MODEL_ARCH_ROPE_NEOX) != 0;
    hp->expert_weights_norm = (hp->arch->flags & MODEL_ARCH_EXPERT_NORM) != 0;
    CHECK(train_shape_from_hparams(hp, s, &e) == 0);
}

static double total(struct train_net_f64 *n, const double *P, double *G, const int32_t *tok, double aux)
{
    struct train_loss l = train_net_step_f64(n, P, G, tok, aux);
    return l.ce + aux * l.aux;
}

static void check_network(const struct tiny *c)
{
    struct model_hparams hp;
    struct train_shape s;
    tiny_shape(c, &hp, &s);
    struct train_layout l;
    struct err e = {0};
    CHECK(train_layout_init(&l, hp.arch, &hp, &s, &e) == 0);
    int B = 2, T = 5;
    struct train_net_f64 *n = train_net_new_f64(&s, &l, B, T, NULL, &e);
    CHECK(n != NULL);
    double *P = malloc(l.n_params * sizeof *P), *G = calloc(l.n_params, sizeof *G);
    for (int t = 0; t < l.n_t; t++)
        fill(P + l.t[t].off, (int)l.t[t].n, l.t[t].n_dims == 1 ? 0.3 : 0.6, l.t[t].n_dims == 1 ? 1 : 0);
    int32_t tok[12];
    for (int i = 0; i < B * (T + 1); i++)
        tok[i] = (int32_t)((i * 7 + 3) % s.n_vocab);
    double aux = 0.05;
    total(n, P, G, tok, aux);
    int bad = 0, checked = 0;
    for (int t = 0; t < l.n_t; t++) /* up to 6 entries of every tensor */
        for (size_t k = 0; k < 6 && k < l.t[t].n; k++) {
            size_t i = l.t[t].off + (k * 7919) % l.t[t].n;
            double h = 1e-5, v = P[i];
            P[i] = v + h;
            double lp = total(n, P, NULL, tok, aux);
            P[i] = v - h;
            double lm = total(n, P, NULL, tok, aux);
            P[i] = v;
            double num = (lp - lm) / (2 * h);
            checked++;
            if (!close_enough(num, G[i], 1e-5)) {
                if (bad++ < 5)
                    fprintf(stderr, "  %s: %s[%zu]: numeric %.9g, backward %.9g\n", c->arch, l.t[t].name,
                            i - l.t[t].off, num, G[i]);
            }
        }
    CHECKF(bad == 0, "%s (%d experts): %d of %d gradients differ", c->arch, c->n_expert, bad, checked);
    free(P);
    free(G);
    train_net_free_f64(n);
    train_layout_release(&l);
}

TEST(llama_dense_gradients)
{
    struct tiny c = {"llama", 0, 0, false};
    check_network(&c);
}

TEST(qwen3_tied_gradients)
{
    struct tiny c = {"qwen3", 0, 0, true};
    check_network(&c);
}

TEST(qwen3moe_gradients)
{
    struct tiny c = {"qwen3moe", 4, 2, false};
    check_network(&c);
}

TEST(mixtral_gradients)
{
    struct tiny c = {"llama", 4, 2, false};
    check_network(&c);
}

/* The float network computes what the double one does, and the same bits
 * on one thread and on two. */
TEST(float_matches_double_and_threads)
{
    struct tiny c = {"qwen3moe", 4, 2, true};
    struct model_hparams hp;
    struct train_shape s;
    tiny_shape(&c, &hp, &s);
    struct train_layout l;
    struct err e = {0};
    CHECK(train_layout_init(&l, hp.arch, &hp, &s, &e) == 0);
    int B = 3, T = 7;
    struct pool *pool = pool_new(2);
    struct train_net_f64 *nd = train_net_new_f64(&s, &l, B, T, NULL, &e);
    struct train_net_f32 *n1 = train_net_new_f32(&s, &l, B, T, NULL, &e);
    struct train_net_f32 *n2 = train_net_new_f32(&s, &l, B, T, pool, &e);
    CHECK(nd && n1 && n2 && pool);
    size_t np = l.n_params;
    double *Pd = malloc(np * sizeof *Pd), *Gd = calloc(np, sizeof *Gd);
    float *Pf = malloc(np * sizeof *Pf), *G1 = calloc(np, sizeof *G1), *G2 = calloc(np, sizeof *G2);
    for (int t = 0; t < l.n_t; t++)
        fill(Pd + l.t[t].off, (int)l.t[t].n, l.t[t].n_dims == 1 ? 0.3 : 0.6, l.t[t].n_dims == 1 ? 1 : 0);
    for (size_t i = 0; i < np; i++)
        Pf[i] = (float)Pd[i];
    for (size_t i = 0; i < np; i++)
        Pd[i] = (double)Pf[i];
    int32_t tok[64];
    for (int i = 0; i < B * (T + 1); i++)
        tok[i] = (int32_t)((i * 5 + 1) % s.n_vocab);
    struct train_loss ld = train_net_step_f64(nd, Pd, Gd, tok, 0.01);
    struct train_loss l1 = train_net_step_f32(n1, Pf, G1, tok, 0.01);
    struct train_loss l2 = train_net_step_f32(n2, Pf, G2, tok, 0.01);
    CHECK_NEAR(l1.ce, ld.ce, 1e-4 * ld.ce);
    CHECK_NEAR(l1.aux, ld.aux, 1e-4);
    CHECK(l1.ce == l2.ce && l1.aux == l2.aux);
    CHECK(memcmp(G1, G2, np * sizeof *G1) == 0);
    double gmax = 0;
    for (size_t i = 0; i < np; i++)
        gmax = fabs(Gd[i]) > gmax ? fabs(Gd[i]) : gmax;
    int bad = 0;
    for (size_t i = 0; i < np; i++)
        bad += fabs((double)G1[i] - Gd[i]) > 1e-4 * gmax;
    CHECKF(bad == 0, "%d of %zu float gradients differ from the double ones", bad, np);
    free(Pd), free(Gd), free(Pf), free(G1), free(G2);
    train_net_free_f64(nd);
    train_net_free_f32(n1);
    train_net_free_f32(n2);
    pool_free(pool);
    train_layout_release(&l);
}

/* A few AdamW steps on one fixed batch lower its loss; the schedule's shape. */
TEST(adamw_lowers_the_loss)
{
    struct tiny c = {"qwen3", 0, 0, true};
    struct model_hparams hp;
    struct train_shape s;
    tiny_shape(&c, &hp, &s);
    struct train_layout l;
    struct err e = {0};
    CHECK(train_layout_init(&l, hp.arch, &hp, &s, &e) == 0);
    int B = 2, T = 6;
    struct train_net_f32 *n = train_net_new_f32(&s, &l, B, T, NULL, &e);
    size_t np = l.n_params;
    float *P = malloc(np * 4), *G = calloc(np, 4), *M = calloc(np, 4), *V = calloc(np, 4);
    double tmp[4096];
    for (int t = 0; t < l.n_t; t++) {
        fill(tmp, (int)l.t[t].n, l.t[t].n_dims == 1 ? 0 : 0.3, l.t[t].n_dims == 1 ? 1 : 0);
        for (size_t i = 0; i < l.t[t].n; i++)
            P[l.t[t].off + i] = (float)tmp[i];
    }
    int32_t tok[14];
    for (int i = 0; i < 14; i++)
        tok[i] = (int32_t)((i * 3) % s.n_vocab);
    struct train_adamw o = {3e-2, 3e-3, 5, 60, 0.9, 0.95, 1e-8, 0.1, 1.0};
    CHECK_NEAR(train_lr(&o, 0), 3e-2 / 5, 1e-12);
    CHECK_NEAR(train_lr(&o, 4), 3e-2, 1e-12);
    CHECK_NEAR(train_lr(&o, 60), 3e-3, 1e-12);
    CHECK(train_lr(&o, 30) < 3e-2 && train_lr(&o, 30) > 3e-3);
    double first = 0, last = 0;
    for (int step = 0; step < 60; step++) {
        memset(G, 0, np * 4);
        struct train_loss ls = train_net_step_f32(n, P, G, tok, 0);
        if (step == 0)
            first = ls.ce;
        last = ls.ce;
        train_adamw_step(NULL, &o, step, &l, P, G, M, V);
    }
    CHECKF(last < 0.2 * first, "loss %g -> %g", first, last);
    free(P), free(G), free(M), free(V);
    train_net_free_f32(n);
    train_layout_release(&l);
}

TEST(layout_and_grad_norm)
{
    struct tiny c = {"qwen3moe", 4, 2, false};
    struct model_hparams hp;
    struct train_shape s;
    tiny_shape(&c, &hp, &s);
    struct train_layout l;
    struct err e = {0};
    CHECK(train_layout_init(&l, hp.arch, &hp, &s, &e) == 0);
    const struct train_tensor *t = train_layout_find(&l, "blk.1.ffn_gate_exps.weight");
    CHECK(t && t->n_dims == 3 && t->ne[0] == 8 && t->ne[1] == 6 && t->ne[2] == 4 && t->decay);
    CHECK(t && t->off == l.layer[1].gate_exps);
    CHECK(train_layout_find(&l, "output.weight") && l.output != l.tok_embd);
    CHECK(!train_layout_find(&l, "blk.2.attn_q.weight"));
    const struct train_tensor *nw = train_layout_find(&l, "blk.0.attn_norm.weight");
    CHECK(nw && !nw->decay);
    /* the global norm: the same value on 1 and 2 threads, and the plain sum */
    size_t n = 200003;
    float *g = malloc(n * sizeof *g);
    double ref = 0;
    for (size_t i = 0; i < n; i++) {
        g[i] = (float)urand();
        ref += (double)g[i] * g[i];
    }
    struct pool *pool = pool_new(2);
    double a = train_grad_norm(NULL, g, n), b = train_grad_norm(pool, g, n);
    CHECK(a == b);
    CHECK_NEAR(a, sqrt(ref), 1e-9 * sqrt(ref));
    pool_free(pool);
    free(g);
    train_layout_release(&l);
}

TEST(batches_are_reproducible)
{
    int32_t toks[100], a[2 * 11], b[2 * 11], w[3 * 11];
    for (int i = 0; i < 100; i++)
        toks[i] = i;
    train_batch(toks, 100, 2, 10, 7, 3, a);
    train_batch(toks, 100, 2, 10, 7, 3, b);
    CHECK(memcmp(a, b, sizeof a) == 0);
    for (int i = 0; i < 2; i++)
        for (int j = 1; j < 11; j++)
            CHECK(a[i * 11 + j] == a[i * 11 + j - 1] + 1);
    train_batch(toks, 100, 2, 10, 7, 4, b);
    CHECK(memcmp(a, b, sizeof a) != 0);
    CHECK(train_eval_windows(toks, 100, 10, 3, w) == 3);
    CHECK(w[0] == 0 && w[22] == 89 && w[32] == 99);
    CHECK(train_eval_windows(toks, 11, 10, 3, w) == 0);
}

int main(void)
{
    kernels_init();
    RUN(rmsnorm_backward);
    RUN(rope_backward_is_the_transpose);
    RUN(swiglu_backward);
    RUN(cross_entropy_backward);
    RUN(llama_dense_gradients);
    RUN(qwen3_tied_gradients);
    RUN(qwen3moe_gradients);
    RUN(mixtral_gradients);
    RUN(float_matches_double_and_threads);
    RUN(adamw_lowers_the_loss);
    RUN(layout_and_grad_norm);
    RUN(batches_are_reproducible);
    TEST_END();
}
