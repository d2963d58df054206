/* model: the batched forward pass against a naive float64 forward written
 * here from the architecture definitions, batch invariance (prefill vs
 * decode, several sequences in one batch), block-table indirection, f16 vs
 * f32 KV, reference vs AVX2 attention, and the errors of loading and of bad
 * batches. */
#include "model/model.h"
#include "kernels/kernels.h"
#include "model_tiny.h"
#include "test.h"
#include "kernels_variants.h"

#include <math.h>

#define BS 4 /* block size: small, so that sequences span several blocks */

static struct tiny_cfg cfg_of(const char *arch)
{
    struct tiny_cfg c = {0};
    c.arch = arch;
    c.n_vocab = 64;
    c.n_embd = 64;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.head_dim = 16;
    c.n_ff = 96;
    c.wtype = GGML_TYPE_F32;
    c.seed = 7;
    if (!strcmp(arch, "qwen3")) {
        c.head_dim = 32; /* differs from n_embd / n_head, as in real Qwen3 */
    }
    if (!strcmp(arch, "llama"))
        c.tied = true;
    return c;
}

/* MoE configurations: "mixtral" (llama with experts), "qwen2moe", "qwen3moe". */
static struct tiny_cfg moe_cfg_of(const char *which)
{
    struct tiny_cfg c = cfg_of(!strcmp(which, "mixtral") ? "llama" : which);
    c.n_expert = 6;
    c.n_expert_used = 2;
    c.n_ff_exp = 32;
    if (!strcmp(which, "mixtral"))
        c.n_ff = 32; /* the expert width */
    if (!strcmp(which, "qwen2moe"))
        c.n_ff_shexp = 64;
    return c;
}

static struct model *load_tiny(const struct tiny_cfg *c, int max_batch)
{
    char path[128];
    tiny_path(path, sizeof path, c->arch);
    if (tiny_write(c, path) < 0)
        return NULL;
    struct err e;
    struct model *m = model_load(path, &e);
    unlink(path);
    if (!m) {
        fprintf(stderr, "  load: %s\n", e.msg);
        return NULL;
    }
    if (model_reserve(m, max_batch, NULL, &e) < 0) {
        fprintf(stderr, "  reserve: %s\n", e.msg);
        model_free(m);
        return NULL;
    }
    return m;
}

/* ---- naive float64 forward over the file's f32 tensors ---- */
static const float *tf(const struct model *m, const char *fmt, int l)
{
    char n[96];
    snprintf(n, sizeof n, fmt, l);
    const struct gguf_tensor *t = gguf_find_tensor(model_gguf(m), n);
    return t ? t->data : NULL;
}

static void mv(double *y, const float *W, const double *x, int n_in, int n_out)
{
    for (int r = 0; r < n_out; r++) {
        double s = 0;
        for (int k = 0; k < n_in; k++)
            s += (double)W[(size_t)r * n_in + k] * x[k];
        y[r] = s;
    }
}

static void rms(double *y, const double *x, const float *w, int n, double eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    double sc = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++)
        y[i] = x[i] * sc * w[i];
}

static void rope_ref(double *v, int hd, int pos, bool neox)
{
    for (int i = 0; i < hd / 2; i++) {
        double th = pos * pow(10000.0, -2.0 * i / hd);
        int a = neox ? i : 2 * i, b = neox ? i + hd / 2 : 2 * i + 1;
        double x0 = v[a], x1 = v[b];
        v[a] = x0 * cos(th) - x1 * sin(th);
        v[b] = x0 * sin(th) + x1 * cos(th);
    }
}

/* Logits of the last of n tokens. */
static void naive_forward(const struct model *m, const int32_t *toks, int n, double *logits)
{
    const struct model_hparams *hp = model_hparams(m);
    int E = hp->n_embd, hd = hp->head_dim, nh = hp->n_head, nkv = hp->n_head_kv, F = hp->n_ff;
    int QD = nh * hd, KD = nkv * hd;
    double eps = hp->rms_eps;
    double *x = calloc((size_t)n * E, sizeof *x), *xn = calloc(E > QD ? E : QD, sizeof *xn);
    double *K = calloc((size_t)n * KD, sizeof *K), *V = calloc((size_t)n * KD, sizeof *V);
    double *q = calloc(QD, sizeof *q), *att = calloc(QD, sizeof *att), *o = calloc(E, sizeof *o);
    double *g = calloc(F, sizeof *g), *u = calloc(F, sizeof *u), *sc = calloc(n, sizeof *sc);
    const float *emb = tf(m, "token_embd.weight", 0);
    for (int t = 0; t < n; t++)
        for (int i = 0; i < E; i++)
            x[(size_t)t * E + i] = emb[(size_t)toks[t] * E + i];
    bool neox = strcmp(hp->arch_name, "llama") != 0;
    for (int l = 0; l < hp->n_layer; l++) {
        /* K and V of every token first, then each token's attention */
        for (int t = 0; t < n; t++) {
            rms(xn, x + (size_t)t * E, tf(m, "blk.%d.attn_norm.weight", l), E, eps);
            double *k = K + (size_t)t * KD, *v = V + (size_t)t * KD;
            mv(k, tf(m, "blk.%d.attn_k.weight", l), xn, E, KD);
            mv(v, tf(m, "blk.%d.attn_v.weight", l), xn, E, KD);
            const float *bk = tf(m, "blk.%d.attn_k.bias", l), *bv = tf(m, "blk.%d.attn_v.bias", l);
            for (int i = 0; i < KD && bk; i++)
                k[i] += bk[i];
            for (int i = 0; i < KD && bv; i++)
                v[i] += bv[i];
            const float *kn = tf(m, "blk.%d.attn_k_norm.weight", l);
            for (int h = 0; h < nkv; h++) {
                if (kn)
                    rms(k + h * hd, k + h * hd, kn, hd, eps);
                rope_ref(k + h * hd, hd, t, neox);
            }
        }
        double *xnew = calloc((size_t)n * E, sizeof *xnew);
        for (int t = 0; t < n; t++) {
            rms(xn, x + (size_t)t * E, tf(m, "blk.%d.attn_norm.weight", l), E, eps);
            mv(q, tf(m, "blk.%d.attn_q.weight", l), xn, E, QD);
            const float *bq = tf(m, "blk.%d.attn_q.bias", l), *qn = tf(m, "blk.%d.attn_q_norm.weight", l);
            for (int i = 0; i < QD && bq; i++)
                q[i] += bq[i];
            for (int h = 0; h < nh; h++) {
                if (qn)
                    rms(q + h * hd, q + h * hd, qn, hd, eps);
                rope_ref(q + h * hd, hd, t, neox);
                int hk = h / (nh / nkv);
                double mx = -1e300, z = 0;
                for (int j = 0; j <= t; j++) {
                    double s = 0;
                    for (int i = 0; i < hd; i++)
                        s += q[h * hd + i] * K[(size_t)j * KD + hk * hd + i];
                    sc[j] = s / sqrt((double)hd);
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                for (int j = 0; j <= t; j++)
                    z += (sc[j] = exp(sc[j] - mx));
                for (int i = 0; i < hd; i++) {
                    double a = 0;
                    for (int j = 0; j <= t; j++)
                        a += sc[j] / z * V[(size_t)j * KD + hk * hd + i];
                    att[h * hd + i] = a;
                }
            }
            mv(o, tf(m, "blk.%d.attn_output.weight", l), att, QD, E);
            double *xt = xnew + (size_t)t * E;
            for (int i = 0; i < E; i++)
                xt[i] = x[(size_t)t * E + i] + o[i];
            rms(xn, xt, tf(m, "blk.%d.ffn_norm.weight", l), E, eps);
            mv(g, tf(m, "blk.%d.ffn_gate.weight", l), xn, E, F);
            mv(u, tf(m, "blk.%d.ffn_up.weight", l), xn, E, F);
            for (int i = 0; i < F; i++)
                g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            mv(o, tf(m, "blk.%d.ffn_down.weight", l), g, F, E);
            for (int i = 0; i < E; i++)
                xt[i] += o[i];
        }
        memcpy(x, xnew, (size_t)n * E * sizeof *x);
        free(xnew);
    }
    rms(xn, x + (size_t)(n - 1) * E, tf(m, "output_norm.weight", 0), E, eps);
    const float *out = tf(m, "output.weight", 0);
    mv(logits, out ? out : emb, xn, E, hp->n_vocab);
    free(x);
    free(xn);
    free(K);
    free(V);
    free(q);
    free(att);
    free(o);
    free(g);
    free(u);
    free(sc);
}

/* ---- helpers over model_forward ---- */
static const int32_t prompt[] = {3, 17, 42, 5, 9, 60, 1, 33, 12, 8, 50, 27, 4};
#define NP ((int)(sizeof prompt / sizeof *prompt))

/* Prefill of n tokens of one sequence in one batch; last token's logits. */
static int prefill(struct model *m, struct kv_cache *kv, const int32_t *blocks, int n_blocks, const int32_t *toks,
                   int n, int pos0, float *logits)
{
    struct batch_token bt[64];
    for (int i = 0; i < n; i++)
        bt[i] = (struct batch_token){toks[i], pos0 + i, 0, i == n - 1};
    struct batch_seq s = {blocks, n_blocks};
    struct batch b = {n, bt, 1, &s};
    struct err e;
    int rc = model_forward(m, kv, &b, logits, &e);
    if (rc < 0)
        fprintf(stderr, "  forward: %s\n", e.msg);
    return rc;
}

static double max_diff(const float *a, const float *b, int n)
{
    double d = 0;
    for (int i = 0; i < n; i++)
        d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

static void check_against_naive(const char *arch)
{
    struct tiny_cfg c = cfg_of(arch);
    struct model *m = load_tiny(&c, 32);
    CHECK(m != NULL);
    if (!m)
        return;
    struct err e;
    struct kv_cache *kv = kv_new_typed(m, 8, BS, GGML_TYPE_F32, &e);
    int32_t blocks[] = {0, 1, 2, 3};
    float logits[64];
    double want[64];
    CHECK(prefill(m, kv, blocks, 4, prompt, NP, 0, logits) == 0);
    naive_forward(m, prompt, NP, want);
    double err2 = 0, ref2 = 0;
    for (int i = 0; i < c.n_vocab; i++) {
        err2 += (logits[i] - want[i]) * (logits[i] - want[i]);
        ref2 += want[i] * want[i];
    }
    CHECKF(sqrt(err2 / ref2) < 1e-4, "%s: relative RMS error %g", arch, sqrt(err2 / ref2));
    kv_free(kv);
    model_free(m);
}

TEST(test_llama_matches_naive)
{
    check_against_naive("llama");
}
TEST(test_qwen2_matches_naive)
{
    check_against_naive("qwen2");
}
TEST(test_qwen3_matches_naive)
{
    check_against_naive("qwen3");
}

/* Prefill of NP tokens at once == NP single-token steps == chunks, and a
 * scattered block table == a contiguous one. */
static void check_invariance(const char *arch, enum ggml_type kvt)
{
    struct tiny_cfg c = cfg_of(arch);
    struct model *m = load_tiny(&c, 32);
    CHECK(m != NULL);
    if (!m)
        return;
    struct err e;
    struct kv_cache *kv = kv_new_typed(m, 16, BS, kvt, &e);
    CHECK(kv != NULL);
    int32_t contiguous[] = {0, 1, 2, 3}, scattered[] = {11, 4, 15, 7};
    float a[64], b[64], d[64];
    CHECK(prefill(m, kv, contiguous, 4, prompt, NP, 0, a) == 0);
    for (int i = 0; i < NP; i++)
        CHECK(prefill(m, kv, scattered, 4, prompt + i, 1, i, b) == 0);
    CHECKF(max_diff(a, b, c.n_vocab) < 1e-4, "%s: prefill vs decode: %g", arch, max_diff(a, b, c.n_vocab));
    /* chunks of 5, 5, 3 into other blocks */
    int32_t other[] = {5, 9, 6, 13};
    CHECK(prefill(m, kv, other, 4, prompt, 5, 0, d) == 0);
    CHECK(prefill(m, kv, other, 4, prompt + 5, 5, 5, d) == 0);
    CHECK(prefill(m, kv, other, 4, prompt + 10, 3, 10, d) == 0);
    CHECKF(max_diff(a, d, c.n_vocab) < 1e-4, "%s: prefill vs chunks: %g", arch, max_diff(a, d, c.n_vocab));
    kv_free(kv);
    model_free(m);
}

TEST(test_batch_invariance_f32_kv)
{
    check_invariance("llama", GGML_TYPE_F32);
    check_invariance("qwen2", GGML_TYPE_F32);
    check_invariance("qwen3", GGML_TYPE_F32);
}

TEST(test_batch_invariance_f16_kv)
{
    check_invariance("llama", GGML_TYPE_F16);
    check_invariance("qwen3", GGML_TYPE_F16);
}

/* Logits of several tokens of one batch (every third, and the last) are
 * the logits of single steps at those positions, row for row. */
TEST(test_logits_rows_in_batch_order)
{
    struct tiny_cfg c = cfg_of("qwen3");
    struct model *m = load_tiny(&c, 32);
    CHECK(m != NULL);
    if (!m)
        return;
    struct err e;
    struct kv_cache *kv = kv_new_typed(m, 16, BS, GGML_TYPE_F32, &e);
    int32_t t1[] = {0, 1, 2, 3}, t2[] = {4, 5, 6, 7};
    float single[NP][64], rows[NP * 64];
    for (int i = 0; i < NP; i++)
        CHECK(prefill(m, kv, t1, 4, prompt + i, 1, i, single[i]) == 0);
    struct batch_token bt[NP];
    int n_flag = 0;
    for (int i = 0; i < NP; i++) {
        bt[i] = (struct batch_token){prompt[i], i, 0, i % 3 == 1 || i == NP - 1};
        n_flag += bt[i].logits;
    }
    struct batch_seq sq = {t2, 4};
    struct batch b = {NP, bt, 1, &sq};
    CHECK(model_forward(m, kv, &b, rows, &e) == 0);
    for (int i = 0, r = 0; i < NP; i++)
        if (bt[i].logits) {
            CHECKF(max_diff(single[i], rows + r * 64, 64) < 1e-4, "row %d (token %d): %g", r, i,
                   max_diff(single[i], rows + r * 64, 64));
            r++;
        }
    /* no logits wanted: the KV is still written (the next step sees it) */
    for (int i = 0; i < NP; i++)
        bt[i].logits = false;
    int32_t t3[] = {8, 9, 10, 11};
    sq.blocks = t3;
    CHECK(model_forward(m, kv, &b, rows, &e) == 0);
    float after[64];
    int32_t next = 7;
    CHECK(prefill(m, kv, t3, 4, &next, 1, NP, after) == 0);
    float want[64];
    CHECK(prefill(m, kv, t1, 4, &next, 1, NP, want) == 0);
    CHECKF(max_diff(after, want, 64) < 1e-4, "%g", max_diff(after, want, 64));
    kv_free(kv);
    model_free(m);
}

/* Two sequences, then decode steps of both in one batch == each alone; one
 * sequence shares the other's first block (prefix reuse). */
TEST(test_two_sequences_one_batch)
{
    struct tiny_cfg c = cfg_of("qwen2");
    struct model *m = load_tiny(&c, 32);
    CHECK(m != NULL);
    if (!m)
        return;
    struct err e;
    struct kv_cache *kv = kv_new(m, 32, BS, &e);
    /* sequence A: prompt[0..9); sequence B: prompt[0..4) + other tokens,
     * sharing A's block 0 (the same first 4 tokens) */
    int32_t ta[] = {0, 1, 2, 3}, tb[] = {0, 5, 6, 7};
    int32_t b_toks[] = {44, 45, 46, 47, 48};
    float la[64], lb[64], l2[2 * 64];
    CHECK(prefill(m, kv, ta, 4, prompt, 9, 0, la) == 0);
    CHECK(prefill(m, kv, tb, 4, b_toks, 5, 4, lb) == 0); /* positions 4..8, block 0 shared */
    /* one decode step of each, alone: A at 9, B at 9 */
    int32_t na = 20, nb = 21;
    float sa[64], sb[64];
    CHECK(prefill(m, kv, ta, 4, &na, 1, 9, sa) == 0);
    CHECK(prefill(m, kv, tb, 4, &nb, 1, 9, sb) == 0);
    /* the same step of both in one batch (rewrites the same slots with the same values) */
    struct batch_token bt[2] = {{na, 9, 0, true}, {nb, 9, 1, true}};
    struct batch_seq ss[2] = {{ta, 4}, {tb, 4}};
    struct batch bb = {2, bt, 2, ss};
    CHECK(model_forward(m, kv, &bb, l2, &e) == 0);
    CHECKF(max_diff(sa, l2, 64) < 1e-4, "%g", max_diff(sa, l2, 64));
    CHECKF(max_diff(sb, l2 + 64, 64) < 1e-4, "%g", max_diff(sb, l2 + 64, 64));
    /* and B alone from scratch in private blocks gives the same as with the shared block */
    int32_t tc[] = {8, 9, 10, 11};
    int32_t full_b[10];
    memcpy(full_b, prompt, 4 * sizeof *full_b);
    memcpy(full_b + 4, b_toks, 5 * sizeof *full_b);
    full_b[9] = nb;
    float sc[64];
    CHECK(prefill(m, kv, tc, 4, full_b, 10, 0, sc) == 0);
    CHECKF(max_diff(sb, sc, 64) < 1e-4, "%g", max_diff(sb, sc, 64));
    kv_free(kv);
    model_free(m);
}

/* Every supported kernel variant (attention included) against the reference. */
TEST(test_variants_agree_with_ref)
{
    if (simd_variant_count() == 0)
        SKIP("CPU supports no kernel variant but the reference");
    /* head sizes with and without a tail past the 8- and 16-wide loops */
    const int head_dims[] = {32, 20, 10};
    for (int hi = 0; hi < 3; hi++)
        for (int f16 = 0; f16 < 2; f16++) {
            struct tiny_cfg c = cfg_of("qwen3");
            c.head_dim = head_dims[hi];
            struct model *m = load_tiny(&c, 32);
            CHECK(m != NULL);
            if (!m)
                return;
            struct err e;
            struct kv_cache *kv = kv_new_typed(m, 8, BS, f16 ? GGML_TYPE_F16 : GGML_TYPE_F32, &e);
            int32_t blocks[] = {3, 1, 2, 0};
            float a[64], b[64];
            use_variant(0);
            CHECK(prefill(m, kv, blocks, 4, prompt, NP, 0, b) == 0);
            FOR_EACH_SIMD_VARIANT(v)
            {
                use_variant(v);
                CHECK(prefill(m, kv, blocks, 4, prompt, NP, 0, a) == 0);
                CHECKF(max_diff(a, b, 64) < 1e-3, "%s head_dim %d f16 %d: %g", kern_variant_name(v),
                       head_dims[hi], f16, max_diff(a, b, 64));
            }
            use_best_variant();
            kv_free(kv);
            model_free(m);
        }
}

TEST(test_multithreaded_same_as_single)
{
    struct tiny_cfg c = cfg_of("llama");
    struct model *m = load_tiny(&c, 32);
    CHECK(m != NULL);
    if (!m)
        return;
    struct err e;
    struct kv_cache *kv = kv_new(m, 8, BS, &e);
    int32_t blocks[] = {0, 1, 2, 3};
    float a[64], b[64];
    CHECK(prefill(m, kv, blocks, 4, prompt, NP, 0, a) == 0);
    struct pool *p = pool_new(3);
    CHECK(model_reserve(m, 32, p, &e) == 0);
    CHECK(prefill(m, kv, blocks, 4, prompt, NP, 0, b) == 0);
    CHECKF(max_diff(a, b, 64) < 1e-5, "%g", max_diff(a, b, 64));
    kv_free(kv);
    model_free(m);
    pool_free(p);
}

TEST(test_quantized_weights_close)
{
    /* q8_0 matrices: the logits stay close to the f32 model's */
    struct tiny_cfg c = cfg_of("qwen2");
    struct model *mf = load_tiny(&c, 32);
    c.wtype = GGML_TYPE_Q8_0;
    struct model *mq = load_tiny(&c, 32);
    CHECK(mf && mq);
    if (!mf || !mq) {
        model_free(mf);
        model_free(mq);
        return;
    }
    struct err e;
    struct kv_cache *kf = kv_new(mf, 8, BS, &e), *kq = kv_new(mq, 8, BS, &e);
    int32_t blocks[] = {0, 1, 2, 3};
    float a[64], b[64];
    CHECK(prefill(mf, kf, blocks, 4, prompt, NP, 0, a) == 0);
    CHECK(prefill(mq, kq, blocks, 4, prompt, NP, 0, b) == 0);
    double num = 0, den = 0;
    for (int i = 0; i < 64; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += a[i] * a[i];
    }
    CHECKF(sqrt(num / den) < 0.05, "relative RMS %g", sqrt(num / den));
    CHECK(sqrt(num / den) > 0); /* the quantized weights were really used */
    kv_free(kf);
    kv_free(kq);
    model_free(mf);
    model_free(mq);
}

/* ---- errors ---- */
static void expect_load_error(struct tiny_cfg c, const char *want1, const char *want2)
{
    char path[128];
    tiny_path(path, sizeof path, "err");
    CHECK(tiny_write(&c, path) == 0);
    struct err e;
    e.msg[0] = 0;
    struct model *m = model_load(path, &e);
    unlink(path);
    CHECK(m == NULL);
    CHECKF(strstr(e.msg, want1) && (!want2 || strstr(e.msg, want2)), "message: %s", e.msg);
    model_free(m);
}

TEST(test_load_errors)
{
    struct tiny_cfg c = cfg_of("qwen2");
    c.omit = "blk.1.attn_k.weight";
    expect_load_error(c, "'blk.1.attn_k.weight' is missing", "[64, 32]");
    c = cfg_of("qwen2");
    c.omit = "blk.0.attn_v.bias";
    expect_load_error(c, "'blk.0.attn_v.bias' is missing", NULL);
    c = cfg_of("qwen3");
    c.omit = "blk.0.attn_q_norm.weight";
    expect_load_error(c, "'blk.0.attn_q_norm.weight' is missing", NULL);
    c = cfg_of("llama");
    c.misshape = "blk.1.ffn_down.weight";
    expect_load_error(c, "'blk.1.ffn_down.weight' has shape [128, 64], expected [96, 64]", NULL);
    c = cfg_of("llama");
    c.misstype = "blk.0.attn_q.weight";
    c.misstype_type = GGML_TYPE_I32;
    expect_load_error(c, "'blk.0.attn_q.weight' has type", "i32");
    c = cfg_of("llama");
    c.arch = "gpt9";
    expect_load_error(c, "architecture 'gpt9' is not supported", NULL);
    struct err e;
    CHECK(model_load("/nonexistent/model.gguf", &e) == NULL);
    CHECK(strstr(e.msg, "/nonexistent/model.gguf") != NULL);
}

/* MoE: prefill == single steps == two sequences in one batch (the
 * grouping by expert differs in each), for the three layouts. */
TEST(test_moe_batch_invariance)
{
    const char *which[] = {"mixtral", "qwen2moe", "qwen3moe"};
    for (int w = 0; w < 3; w++) {
        struct tiny_cfg c = moe_cfg_of(which[w]);
        struct model *m = load_tiny(&c, 32);
        CHECKF(m != NULL, "%s", which[w]);
        if (!m)
            continue;
        CHECK(model_hparams(m)->n_expert == 6 && model_hparams(m)->n_expert_used == 2);
        CHECK(model_n_active_params(m) < model_n_params(m));
        struct err e;
        struct kv_cache *kv = kv_new_typed(m, 32, BS, GGML_TYPE_F32, &e);
        int32_t t1[] = {0, 1, 2, 3}, t2[] = {4, 5, 6, 7}, t3[] = {8, 9, 10, 11};
        float a[64], b[64], two[128];
        CHECK(prefill(m, kv, t1, 4, prompt, NP, 0, a) == 0);
        for (int i = 0; i < NP; i++)
            CHECK(prefill(m, kv, t2, 4, prompt + i, 1, i, b) == 0);
        CHECKF(max_diff(a, b, 64) < 1e-4, "%s: prefill vs decode %g", which[w], max_diff(a, b, 64));
        /* a second sequence with other tokens, then one step of both together */
        int32_t other[NP];
        for (int i = 0; i < NP; i++)
            other[i] = (prompt[i] * 5 + 3) % 64;
        float o1[64];
        CHECK(prefill(m, kv, t3, 4, other, NP - 1, 0, o1) == 0);
        CHECK(prefill(m, kv, t3, 4, other + NP - 1, 1, NP - 1, o1) == 0);
        struct batch_token bt[2] = {{prompt[NP - 1], NP - 1, 0, true}, {other[NP - 1], NP - 1, 1, true}};
        struct batch_seq ss[2] = {{t1, 4}, {t3, 4}};
        struct batch bb = {2, bt, 2, ss};
        CHECK(model_forward(m, kv, &bb, two, &e) == 0);
        CHECKF(max_diff(a, two, 64) < 1e-4, "%s: batched seq 0 %g", which[w], max_diff(a, two, 64));
        CHECKF(max_diff(o1, two + 64, 64) < 1e-4, "%s: batched seq 1 %g", which[w], max_diff(o1, two + 64, 64));
        kv_free(kv);
        model_free(m);
    }
}

TEST(test_moe_load_errors)
{
    struct tiny_cfg c = moe_cfg_of("qwen3moe");
    c.omit = "blk.1.ffn_up_exps.weight";
    expect_load_error(c, "'blk.1.ffn_up_exps.weight' is missing", "[64, 32, 6]");
    c = moe_cfg_of("qwen2moe");
    c.misshape = "blk.0.ffn_down_exps.weight";
    expect_load_error(c, "'blk.0.ffn_down_exps.weight' has shape [64, 64, 6], expected [32, 64, 6]", NULL);
    c = moe_cfg_of("qwen2moe");
    c.omit = "blk.0.ffn_down_shexp.weight";
    expect_load_error(c, "'blk.0.ffn_down_shexp.weight' is missing", NULL);
}

TEST(test_forward_errors)
{
    struct tiny_cfg c = cfg_of("llama");
    struct model *m = load_tiny(&c, 4);
    CHECK(m != NULL);
    if (!m)
        return;
    struct err e;
    struct kv_cache *kv = kv_new(m, 4, BS, &e);
    int32_t blocks[] = {0, 1, 9};
    struct batch_seq s = {blocks, 3};
    float logits[64 * 5];
    struct batch_token bt[5] = {{1, 0, 0, true}, {2, 1, 0, true}, {3, 2, 0, true}, {4, 3, 0, true}, {5, 4, 0, true}};
    struct batch b = {5, bt, 1, &s};
    CHECK(model_forward(m, kv, &b, logits, &e) == -1 && strstr(e.msg, "batch of 5 tokens"));
    b.n_tokens = 1;
    bt[0].token = 64;
    CHECK(model_forward(m, kv, &b, logits, &e) == -1 && strstr(e.msg, "outside the vocabulary"));
    bt[0] = (struct batch_token){1, 8, 0, true}; /* block 2 = 9 is not a block */
    CHECK(model_forward(m, kv, &b, logits, &e) == -1 && strstr(e.msg, "block table entry 2 = 9"));
    bt[0] = (struct batch_token){1, 12, 0, true}; /* past the table */
    CHECK(model_forward(m, kv, &b, logits, &e) == -1 && strstr(e.msg, "position 12"));
    bt[0] = (struct batch_token){1, 0, 1, true};
    CHECK(model_forward(m, kv, &b, logits, &e) == -1 && strstr(e.msg, "sequence 1"));
    CHECK(kv_new(m, 0, 16, &e) == NULL && strstr(e.msg, "0 blocks"));
    /* block bookkeeping */
    CHECK(kv_n_free(kv) == 4);
    int x = kv_block_alloc(kv), y = kv_block_alloc(kv);
    CHECK(x == 0 && y == 1 && kv_n_free(kv) == 2);
    kv_block_ref(kv, x);
    kv_block_unref(kv, x);
    CHECK(kv_block_refs(kv, x) == 1 && kv_n_free(kv) == 2);
    kv_block_unref(kv, x);
    kv_block_unref(kv, y);
    CHECK(kv_n_free(kv) == 4);
    for (int i = 0; i < 4; i++)
        CHECK(kv_block_alloc(kv) >= 0);
    CHECK(kv_block_alloc(kv) == -1);
    kv_free(kv);
    model_free(m);
}

int main(void)
{
    kernels_init();
    RUN(test_llama_matches_naive);
    RUN(test_qwen2_matches_naive);
    RUN(test_qwen3_matches_naive);
    RUN(test_batch_invariance_f32_kv);
    RUN(test_batch_invariance_f16_kv);
    RUN(test_two_sequences_one_batch);
    RUN(test_logits_rows_in_batch_order);
    RUN(test_variants_agree_with_ref);
    RUN(test_multithreaded_same_as_single);
    RUN(test_quantized_weights_close);
    RUN(test_load_errors);
    RUN(test_forward_errors);
    RUN(test_moe_batch_invariance);
    RUN(test_moe_load_errors);
    TEST_END();
}
