/*
 * Attention (kern_attn) and the reference attention of one query head over
 * a paged sequence: the specification attn_avx2.c is tested against. Online softmax (running
 * maximum and sum, accumulator rescaled when the maximum grows), so no
 * buffer proportional to the context is needed. Also the reference f32 ->
 * f16 store used to write K and V.
 */
#include "kernels/kernels_int.h"

#include <math.h>
#include <string.h>

static inline float load_elt(const void *base, size_t i, bool f16)
{
    return f16 ? fp16_to_fp32(((const uint16_t *)base)[i]) : ((const float *)base)[i];
}

static void attn_head_ref(const struct kern_attn *a, bool f16)
{
    int hd = a->head_dim, bs = a->block_size;
    float m = -INFINITY, l = 0;
    memset(a->out, 0, (size_t)hd * sizeof(float));
    for (int p = 0; p < a->n_pos; p++) {
        size_t base = (size_t)a->blocks[p / bs] * a->block_stride + (size_t)(p % bs) * hd;
        double d = 0;
        for (int i = 0; i < hd; i++)
            d += (double)a->q[i] * load_elt(a->k, base + i, f16);
        float s = (float)d * a->scale;
        if (s > m) {
            float corr = expf(m - s);
            l *= corr;
            for (int i = 0; i < hd; i++)
                a->out[i] *= corr;
            m = s;
        }
        float w = expf(s - m);
        l += w;
        for (int i = 0; i < hd; i++)
            a->out[i] += w * load_elt(a->v, base + i, f16);
    }
    float inv = l > 0 ? 1.0f / l : 0.0f;
    for (int i = 0; i < hd; i++)
        a->out[i] *= inv;
}

static void attn_head_f32_ref(const struct kern_attn *a)
{
    attn_head_ref(a, false);
}

static void attn_head_f16_ref(const struct kern_attn *a)
{
    attn_head_ref(a, true);
}

static void store_f16_ref(uint16_t *dst, const float *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = fp32_to_fp16(src[i]);
}

void kern_register_ref_attn(struct kern_table *tab)
{
    tab->attn_f32 = attn_head_f32_ref, tab->attn_f16 = attn_head_f16_ref;
    tab->attn_group_f16 = NULL; /* attn_f16 per head */
    tab->store_f16 = store_f16_ref;
}

void kern_attn(const struct kern_attn *a, enum ggml_type kv_type, int n_q)
{
    MAAS_ASSERT(kv_type == GGML_TYPE_F32 || kv_type == GGML_TYPE_F16);
    bool f16 = kv_type == GGML_TYPE_F16;
    if (f16 && n_q > 1 && kern_tab.attn_group_f16) {
        kern_tab.attn_group_f16(a, n_q);
        return;
    }
    void (*head)(const struct kern_attn *) = f16 ? kern_tab.attn_f16 : kern_tab.attn_f32;
    for (int g = 0; g < n_q; g++) {
        struct kern_attn h = *a;
        h.q = a->q + (size_t)g * a->head_dim;
        h.out = a->out + (size_t)g * a->head_dim;
        head(&h);
    }
}

void kern_store_f16(uint16_t *dst, const float *src, int64_t n)
{
    kern_tab.store_f16(dst, src, n);
}
