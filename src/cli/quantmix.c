/*
 * quantmix.c — which type each tensor gets, and row conversion over threads.
 *
 * The rules follow llama.cpp's llama_tensor_get_type (src/llama-quant.cpp)
 * for the file types maas offers, so that `maas quantize in out q4_k_m`
 * gives the same per-tensor types as `llama-quantize in out Q4_K_M`:
 *
 * Which tensors are quantized at all: two or more dimensions, a name that
 * ends in "weight", not a norm ("_norm.weight"), not an MoE router
 * ("ffn_gate_inp.weight"). Everything else (norms, biases, routers, the 1-D
 * shared-expert gate) is written as f32.
 *
 * For a quantized base type (not f32/f16/bf16) and unless the choice is pure:
 *   output.weight, and token_embd.weight when the model has no output.weight
 *   (tied embeddings): q8_0 if the row length is not a multiple of the base
 *   type's block, else the base type when it is q8_0, else q6_k.
 *   attn_v.weight (i = its layer, n = number of attn_v tensors,
 *   gqa = n_head / n_head_kv):
 *     q2_k: q4_k if gqa >= 4 else q3_k;   q3_k_m: q5_k for i < 2, else q4_k;
 *     q3_k_l: q5_k;   iq4_nl: q5_k if gqa >= 4;
 *     q4_k_m, q5_k_m: q6_k where use_more_bits(i, n);   q4_k_s: q5_k for i < 4;
 *     and for models with exactly 8 experts: q8_0 whatever the mix.
 *   attn_k.weight: q8_0 for models with exactly 8 experts.
 *   ffn_down (dense, _exps and _shexp; i = its layer, n = block_count):
 *     q2_k: q3_k;   q3_k_m: q5_k for i < n/16, else q4_k;   q3_k_l: q5_k;
 *     q4_k_m, q5_k_m: q6_k where use_more_bits(i, n);
 *     q4_k_s, iq4_nl: q5_k for i < n/8.
 *   attn_output.weight: with exactly 8 experts q5_k for q2_k, q3_k_s, q3_k_m,
 *     q4_k_s, q4_k_m, iq4_nl; otherwise q2_k: q3_k, q3_k_m: q4_k, q3_k_l: q5_k.
 *   use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2: the first
 *   and last eighth of the layers and every third layer in between.
 * Rules of llama.cpp that cannot apply here are left out: the 70B attn_v
 * bump (it keys on llama.cpp's model-size table), Falcon-specific cases, the
 * IQ1/IQ2/IQ3 mixes and imatrix-dependent choices.
 *
 * Then, for every quantized choice (pure or not), the fallback when the row
 * length ne[0] is not a multiple of the type's block (256 for k-quants):
 *   q2_k, q3_k -> iq4_nl;  q4_k -> q5_0;  q5_k -> q5_1;  q6_k -> q8_0;
 *   and f16 when even that block (32) does not divide the row. (llama.cpp
 *   refuses other types in that case; maas writes f16 rather than fail.)
 *
 * Row conversion: each row is converted on its own (the reference quantizers
 * are deterministic), so the bytes never depend on the thread count.
 */
#include "cli/tools.h"
#include "kernels/kernels.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct qmix targets[] = {
    {"f32", GGML_TYPE_F32, LLAMA_FTYPE_ALL_F32, true},
    {"f16", GGML_TYPE_F16, LLAMA_FTYPE_MOSTLY_F16, true},
    {"bf16", GGML_TYPE_BF16, LLAMA_FTYPE_MOSTLY_BF16, true},
    {"q4_0", GGML_TYPE_Q4_0, LLAMA_FTYPE_MOSTLY_Q4_0, false},
    {"q4_1", GGML_TYPE_Q4_1, LLAMA_FTYPE_MOSTLY_Q4_1, false},
    {"q5_0", GGML_TYPE_Q5_0, LLAMA_FTYPE_MOSTLY_Q5_0, false},
    {"q5_1", GGML_TYPE_Q5_1, LLAMA_FTYPE_MOSTLY_Q5_1, false},
    {"q8_0", GGML_TYPE_Q8_0, LLAMA_FTYPE_MOSTLY_Q8_0, false},
    {"iq4_nl", GGML_TYPE_IQ4_NL, LLAMA_FTYPE_MOSTLY_IQ4_NL, false},
    /* q2_k and q6_k are llama.cpp file types (mixes) of their own. */
    {"q2_k", GGML_TYPE_Q2_K, LLAMA_FTYPE_MOSTLY_Q2_K, false},
    {"q6_k", GGML_TYPE_Q6_K, LLAMA_FTYPE_MOSTLY_Q6_K, false},
    /* llama.cpp has no plain q3_k/q4_k/q5_k file type: these are pure (every
     * weight that type, after the fallback), recorded as the "_s" file type. */
    {"q3_k", GGML_TYPE_Q3_K, LLAMA_FTYPE_MOSTLY_Q3_K_S, true},
    {"q4_k", GGML_TYPE_Q4_K, LLAMA_FTYPE_MOSTLY_Q4_K_S, true},
    {"q5_k", GGML_TYPE_Q5_K, LLAMA_FTYPE_MOSTLY_Q5_K_S, true},
    {"q3_k_s", GGML_TYPE_Q3_K, LLAMA_FTYPE_MOSTLY_Q3_K_S, false},
    {"q3_k_m", GGML_TYPE_Q3_K, LLAMA_FTYPE_MOSTLY_Q3_K_M, false},
    {"q3_k_l", GGML_TYPE_Q3_K, LLAMA_FTYPE_MOSTLY_Q3_K_L, false},
    {"q4_k_s", GGML_TYPE_Q4_K, LLAMA_FTYPE_MOSTLY_Q4_K_S, false},
    {"q4_k_m", GGML_TYPE_Q4_K, LLAMA_FTYPE_MOSTLY_Q4_K_M, false},
    {"q5_k_s", GGML_TYPE_Q5_K, LLAMA_FTYPE_MOSTLY_Q5_K_S, false},
    {"q5_k_m", GGML_TYPE_Q5_K, LLAMA_FTYPE_MOSTLY_Q5_K_M, false},
};

int qmix_parse(const char *name, struct qmix *out)
{
    char low[16];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof low)
        return -1;
    for (size_t i = 0; i <= n; i++)
        low[i] = (char)tolower((unsigned char)name[i]);
    for (size_t i = 0; i < sizeof targets / sizeof *targets; i++)
        if (!strcmp(targets[i].name, low)) {
            *out = targets[i];
            return 0;
        }
    return -1;
}

const char *qmix_names(void)
{
    return "f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k iq4_nl "
           "q3_k_s q3_k_m q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m";
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !memcmp(s + n - m, suffix, m);
}

/* Would llama.cpp quantize this tensor at all? (2-D or more, name ends in
 * "weight", not a norm, not an MoE router ffn_gate_inp, not BERT's
 * position_embd or token_types: llama.cpp adds a view of token_types to
 * the embeddings, which it cannot do on a quantized tensor.) */
static bool tensor_quantizable(const char *name, int n_dims)
{
    return n_dims >= 2 && ends_with(name, "weight") && !strstr(name, "_norm.weight") &&
           !strstr(name, "ffn_gate_inp.weight") && strcmp(name, "position_embd.weight") != 0 &&
           strcmp(name, "token_types.weight") != 0;
}

enum category { CAT_TOKEN_EMBD, CAT_OUTPUT, CAT_ATTN_V, CAT_ATTN_K, CAT_ATTN_Q, CAT_ATTN_OUTPUT,
                CAT_FFN_UP, CAT_FFN_GATE, CAT_FFN_DOWN, CAT_OTHER };

/* The same categories, in the same order of tests, as llama.cpp. */
static enum category categorize(const char *name)
{
    if (!strcmp(name, "output.weight"))
        return CAT_OUTPUT;
    if (!strcmp(name, "token_embd.weight"))
        return CAT_TOKEN_EMBD;
    if (strstr(name, "attn_qkv.weight") || strstr(name, "attn_kv_b.weight") || strstr(name, "attn_v.weight"))
        return CAT_ATTN_V;
    if (strstr(name, "attn_k.weight"))
        return CAT_ATTN_K;
    if (strstr(name, "attn_q.weight"))
        return CAT_ATTN_Q;
    if (strstr(name, "attn_output.weight"))
        return CAT_ATTN_OUTPUT;
    if (strstr(name, "ffn_up"))
        return CAT_FFN_UP;
    if (strstr(name, "ffn_gate"))
        return CAT_FFN_GATE;
    if (strstr(name, "ffn_down"))
        return CAT_FFN_DOWN;
    return CAT_OTHER;
}

static int layer_of(const char *name)
{
    int il = -1;
    if (sscanf(name, "blk.%d.", &il) != 1)
        return -1;
    return il;
}

static bool use_more_bits(int i, int n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static bool is_float_type(enum ggml_type t)
{
    return t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_BF16;
}

static enum ggml_type mix_rules(enum llama_ftype ft, enum ggml_type t, const struct qmix_model *m, const char *name,
                                int64_t ne0)
{
    enum category cat = categorize(name);
    int gqa = m->n_head_kv > 0 ? m->n_head / m->n_head_kv : 1;
    int il = layer_of(name);

    if (cat == CAT_OUTPUT || (!m->has_output && cat == CAT_TOKEN_EMBD)) {
        if (ne0 % ggml_blck_size(t) != 0)
            return GGML_TYPE_Q8_0;
        return t == GGML_TYPE_Q8_0 ? t : GGML_TYPE_Q6_K;
    }
    switch (cat) {
    case CAT_ATTN_V:
        if (ft == LLAMA_FTYPE_MOSTLY_Q2_K)
            t = gqa >= 4 ? GGML_TYPE_Q4_K : GGML_TYPE_Q3_K;
        else if (ft == LLAMA_FTYPE_MOSTLY_Q3_K_M)
            t = il < 2 ? GGML_TYPE_Q5_K : GGML_TYPE_Q4_K;
        else if (ft == LLAMA_FTYPE_MOSTLY_Q3_K_L)
            t = GGML_TYPE_Q5_K;
        else if (ft == LLAMA_FTYPE_MOSTLY_IQ4_NL && gqa >= 4)
            t = GGML_TYPE_Q5_K;
        else if ((ft == LLAMA_FTYPE_MOSTLY_Q4_K_M || ft == LLAMA_FTYPE_MOSTLY_Q5_K_M) && use_more_bits(il, m->n_attn_v))
            t = GGML_TYPE_Q6_K;
        else if (ft == LLAMA_FTYPE_MOSTLY_Q4_K_S && il < 4)
            t = GGML_TYPE_Q5_K;
        if (m->n_expert == 8)
            t = GGML_TYPE_Q8_0;
        break;
    case CAT_ATTN_K:
        if (m->n_expert == 8)
            t = GGML_TYPE_Q8_0;
        break;
    case CAT_FFN_DOWN: {
        int n = m->n_layer;
        if (ft == LLAMA_FTYPE_MOSTLY_Q2_K)
            t = GGML_TYPE_Q3_K;
        else if (ft == LLAMA_FTYPE_MOSTLY_Q3_K_M)
            t = il < n / 16 ? GGML_TYPE_Q5_K : GGML_TYPE_Q4_K;
        else if (ft == LLAMA_FTYPE_MOSTLY_Q3_K_L)
            t = GGML_TYPE_Q5_K;
        else if ((ft == LLAMA_FTYPE_MOSTLY_Q4_K_M || ft == LLAMA_FTYPE_MOSTLY_Q5_K_M) && use_more_bits(il, n))
            t = GGML_TYPE_Q6_K;
        else if ((ft == LLAMA_FTYPE_MOSTLY_Q4_K_S || ft == LLAMA_FTYPE_MOSTLY_IQ4_NL) && il < n / 8)
            t = GGML_TYPE_Q5_K;
        break;
    }
    case CAT_ATTN_OUTPUT:
        if (m->n_expert == 8) {
            if (ft == LLAMA_FTYPE_MOSTLY_Q2_K || ft == LLAMA_FTYPE_MOSTLY_Q3_K_S || ft == LLAMA_FTYPE_MOSTLY_Q3_K_M ||
                ft == LLAMA_FTYPE_MOSTLY_IQ4_NL || ft == LLAMA_FTYPE_MOSTLY_Q4_K_S || ft == LLAMA_FTYPE_MOSTLY_Q4_K_M)
                t = GGML_TYPE_Q5_K;
        } else if (ft == LLAMA_FTYPE_MOSTLY_Q2_K) {
            t = GGML_TYPE_Q3_K;
        } else if (ft == LLAMA_FTYPE_MOSTLY_Q3_K_M) {
            t = GGML_TYPE_Q4_K;
        } else if (ft == LLAMA_FTYPE_MOSTLY_Q3_K_L) {
            t = GGML_TYPE_Q5_K;
        }
        break;
    default:
        break;
    }
    return t;
}

static enum ggml_type row_fallback(enum ggml_type t, int64_t ne0)
{
    if (ne0 % ggml_blck_size(t) == 0)
        return t;
    enum ggml_type f;
    switch (t) {
    case GGML_TYPE_Q2_K:
    case GGML_TYPE_Q3_K:
        f = GGML_TYPE_IQ4_NL;
        break;
    case GGML_TYPE_Q4_K:
        f = GGML_TYPE_Q5_0;
        break;
    case GGML_TYPE_Q5_K:
        f = GGML_TYPE_Q5_1;
        break;
    case GGML_TYPE_Q6_K:
        f = GGML_TYPE_Q8_0;
        break;
    default:
        f = GGML_TYPE_F16;
        break;
    }
    if (ne0 % ggml_blck_size(f) != 0)
        f = GGML_TYPE_F16;
    return f;
}

enum ggml_type qmix_tensor_type(const struct qmix *q, const struct qmix_model *m, const char *name, int n_dims,
                                const int64_t *ne, bool *fallback)
{
    if (fallback)
        *fallback = false;
    if (!tensor_quantizable(name, n_dims))
        return GGML_TYPE_F32;
    if (is_float_type(q->base))
        return q->base;
    enum ggml_type t = q->pure ? q->base : mix_rules(q->ftype, q->base, m, name, ne[0]);
    enum ggml_type f = row_fallback(t, ne[0]);
    if (fallback)
        *fallback = f != t;
    return f;
}

/* ---- row conversion over the pool ---- */
struct conv_job {
    enum ggml_type src, dst;
    const void *x;
    void *y;
    int64_t nrows, n;
    float *scratch; /* borrowed: n floats per thread */
};

static void to_f32_row(enum ggml_type src, const void *x, float *out, int64_t n)
{
    if (src == GGML_TYPE_F16) {
        const uint16_t *h = x;
        for (int64_t i = 0; i < n; i++)
            out[i] = fp16_to_fp32(h[i]);
    } else if (src == GGML_TYPE_BF16) {
        const uint16_t *h = x;
        for (int64_t i = 0; i < n; i++)
            out[i] = bf16_to_fp32(h[i]);
    } else {
        memcpy(out, x, (size_t)n * sizeof(float));
    }
}

void qrow_from_f32(enum ggml_type dst, const float *x, void *y, int64_t n)
{
    if (dst == GGML_TYPE_F32) {
        memcpy(y, x, (size_t)n * sizeof(float));
    } else if (dst == GGML_TYPE_F16) {
        uint16_t *h = y;
        for (int64_t i = 0; i < n; i++)
            h[i] = fp32_to_fp16(x[i]);
    } else if (dst == GGML_TYPE_BF16) {
        uint16_t *h = y;
        for (int64_t i = 0; i < n; i++)
            h[i] = fp32_to_bf16(x[i]);
    } else {
        kern_quantize(dst, x, y, 1, n);
    }
}

static void conv_worker(void *ctx, int ith, int nth)
{
    const struct conv_job *j = ctx;
    int64_t lo, hi;
    split_range(j->nrows, ith, nth, &lo, &hi);
    size_t in_rs = ggml_row_size(j->src, j->n), out_rs = ggml_row_size(j->dst, j->n);
    float *buf = j->scratch + (size_t)ith * (size_t)j->n;
    for (int64_t r = lo; r < hi; r++) {
        const char *xr = (const char *)j->x + (size_t)r * in_rs;
        char *yr = (char *)j->y + (size_t)r * out_rs;
        if (j->src == GGML_TYPE_F32) {
            qrow_from_f32(j->dst, (const float *)xr, yr, j->n);
        } else {
            to_f32_row(j->src, xr, buf, j->n);
            qrow_from_f32(j->dst, buf, yr, j->n);
        }
    }
}

int qrows_convert(struct pool *pool, enum ggml_type src, const void *x, enum ggml_type dst_type, void *y,
                  int64_t nrows, int64_t n_per_row, struct err *e)
{
    MAAS_ASSERT(is_float_type(src));
    MAAS_ASSERT(n_per_row % ggml_blck_size(dst_type) == 0);
    int nth = pool ? pool_n_threads(pool) : 1;
    if (nrows < nth)
        nth = 1; /* small tensors (and vectors) are not worth a fan-out */
    struct conv_job j = {src, dst_type, x, y, nrows, n_per_row, NULL};
    if (src != GGML_TYPE_F32) {
        j.scratch = malloc((size_t)nth * (size_t)n_per_row * sizeof(float));
        if (!j.scratch)
            return err_set(e, ERR_NOMEM, "out of memory converting %lld rows of %lld", (long long)nrows, (long long)n_per_row);
    }
    if (nth == 1)
        conv_worker(&j, 0, 1);
    else
        pool_run(pool, conv_worker, &j);
    free(j.scratch);
    return 0;
}
