/*
 * Reference attention of one query head over a paged sequence: the
 * specification attn_avx2.c is tested against. Online softmax (running
 * maximum and sum, accumulator rescaled when the maximum grows), so no
 * buffer proportional to the context is needed. Also the reference f32 ->
 * f16 store used to write K and V.
 */
#include "model/model_int.h"

#include <math.h>
#include <string.h>

static inline float load_elt(const void *base, size_t i, bool f16)
{
    return f16 ? fp16_to_fp32(((const uint16_t *)base)[i]) : ((const float *)base)[i];
}

static void attn_head_ref(const struct attn_args *a, bool f16)
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

void attn_head_f32_ref(const struct attn_args *a)
{
    attn_head_ref(a, false);
}

void attn_head_f16_ref(const struct attn_args *a)
{
    attn_head_ref(a, true);
}

void store_f16_ref(uint16_t *dst, const float *src, int n)
{
    for (int i = 0; i < n; i++)
        dst[i] = fp32_to_fp16(src[i]);
}
