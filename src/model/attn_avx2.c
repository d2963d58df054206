/*
 * AVX2 + FMA + F16C attention of one query head over a paged sequence (same
 * contract as attn.c). Scores are computed for up to CHUNK positions of a
 * block at a time, exponentiated together with a vectorised exp, and the
 * values accumulated with FMAs; the online-softmax rescale happens once per
 * chunk instead of once per position.
 */
#include "model/model_int.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define CHUNK 32

static inline float hsum(__m256 v)
{
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* e^x for x <= 0 (scores minus their maximum): 2^n * p(r), r = x - n ln2,
 * p a degree-6 minimax polynomial; relative error ~2e-7; x below -87 gives
 * about 0. */
static inline __m256 exp_neg(__m256 x)
{
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline __m256 load8(const void *base, size_t i, bool f16)
{
    if (f16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)));
    return _mm256_loadu_ps((const float *)base + i);
}

static inline float load1(const void *base, size_t i, bool f16)
{
    return f16 ? fp16_to_fp32(((const uint16_t *)base)[i]) : ((const float *)base)[i];
}

static inline float dot(const float *q, const void *k, size_t off, int hd, bool f16)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= hd; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(k, off + i, f16), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), load8(k, off + i + 8, f16), s1);
    }
    for (; i + 8 <= hd; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(k, off + i, f16), s0);
    float s = hsum(_mm256_add_ps(s0, s1));
    for (; i < hd; i++)
        s += q[i] * load1(k, off + i, f16);
    return s;
}

static inline void axpy(float *out, float w, const void *v, size_t off, int hd, bool f16)
{
    __m256 vw = _mm256_set1_ps(w);
    int i = 0;
    for (; i + 8 <= hd; i += 8)
        _mm256_storeu_ps(out + i, _mm256_fmadd_ps(vw, load8(v, off + i, f16), _mm256_loadu_ps(out + i)));
    for (; i < hd; i++)
        out[i] += w * load1(v, off + i, f16);
}

static inline void attn_head(const struct attn_args *a, bool f16)
{
    int hd = a->head_dim, bs = a->block_size;
    float m = -INFINITY, l = 0;
    float sc[CHUNK];
    float *out = a->out;
    memset(out, 0, (size_t)hd * sizeof(float));
    for (int p0 = 0, b = 0; p0 < a->n_pos; p0 += bs, b++) {
        int nb = a->n_pos - p0 < bs ? a->n_pos - p0 : bs;
        size_t base = (size_t)a->blocks[b] * a->block_stride;
        for (int j0 = 0; j0 < nb; j0 += CHUNK) {
            int nc = nb - j0 < CHUNK ? nb - j0 : CHUNK;
            float cmax = -INFINITY;
            for (int j = 0; j < nc; j++) {
                sc[j] = dot(a->q, a->k, base + (size_t)(j0 + j) * hd, hd, f16) * a->scale;
                cmax = sc[j] > cmax ? sc[j] : cmax;
            }
            if (cmax > m) {
                float corr = expf(m - cmax);
                l *= corr;
                __m256 vc = _mm256_set1_ps(corr);
                int i = 0;
                for (; i + 8 <= hd; i += 8)
                    _mm256_storeu_ps(out + i, _mm256_mul_ps(vc, _mm256_loadu_ps(out + i)));
                for (; i < hd; i++)
                    out[i] *= corr;
                m = cmax;
            }
            __m256 vm = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
            int j = 0;
            for (; j + 8 <= nc; j += 8) {
                __m256 e = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(sc + j), vm));
                _mm256_storeu_ps(sc + j, e);
                acc = _mm256_add_ps(acc, e);
            }
            l += hsum(acc);
            for (; j < nc; j++) {
                sc[j] = expf(sc[j] - m);
                l += sc[j];
            }
            for (j = 0; j < nc; j++)
                axpy(out, sc[j], a->v, base + (size_t)(j0 + j) * hd, hd, f16);
        }
    }
    float inv = l > 0 ? 1.0f / l : 0.0f;
    for (int i = 0; i < hd; i++)
        out[i] *= inv;
}

void attn_head_f32_avx2(const struct attn_args *a)
{
    attn_head(a, false);
}

void attn_head_f16_avx2(const struct attn_args *a)
{
    attn_head(a, true);
}

void store_f16_avx2(uint16_t *dst, const float *src, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++)
        dst[i] = fp32_to_fp16(src[i]);
}
