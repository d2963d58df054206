/*
 * AVX2 + FMA + F16C attention of one query head over a paged sequence (same
 * contract as kern_attn in kernels.h). Scores are computed for up to CHUNK positions of a
 * block at a time — eight keys at once into eight accumulators reduced by
 * one transpose-add, so no horizontal sum per key — exponentiated together
 * with a vectorised exp, and the values accumulated into registers that
 * stay live across the chunk's positions; the online-softmax rescale
 * happens once per chunk instead of once per position.
 */
#include "kernels/avx2_int.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define CHUNK 32

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
    float s = avx2_hsum_ps(_mm256_add_ps(s0, s1));
    for (; i < hd; i++)
        s += q[i] * load1(k, off + i, f16);
    return s;
}

/* The dot products of q with 8 keys at k + off[j], as one vector (hd a
 * multiple of 8). */
static inline __attribute__((always_inline)) __m256 dot8(const float *q, const void *k, const size_t *off, int hd, bool f16)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int i = 0; i < hd; i += 8) {
        __m256 qv = _mm256_loadu_ps(q + i);
        a0 = _mm256_fmadd_ps(qv, load8(k, off[0] + i, f16), a0);
        a1 = _mm256_fmadd_ps(qv, load8(k, off[1] + i, f16), a1);
        a2 = _mm256_fmadd_ps(qv, load8(k, off[2] + i, f16), a2);
        a3 = _mm256_fmadd_ps(qv, load8(k, off[3] + i, f16), a3);
        a4 = _mm256_fmadd_ps(qv, load8(k, off[4] + i, f16), a4);
        a5 = _mm256_fmadd_ps(qv, load8(k, off[5] + i, f16), a5);
        a6 = _mm256_fmadd_ps(qv, load8(k, off[6] + i, f16), a6);
        a7 = _mm256_fmadd_ps(qv, load8(k, off[7] + i, f16), a7);
    }
    /* within each 128-bit lane: u0 = partial sums of a0..a3, u1 of a4..a7 */
    __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* out[0..hd) += sum over j < n of w[j] * v[off[j] ..], the accumulators held
 * in registers across the positions. */
static inline __attribute__((always_inline)) void accum(float *out, const float *w, const void *v, const size_t *off, int n, int hd, bool f16)
{
    int i = 0;
    for (; i + 32 <= hd; i += 32) {
        __m256 c0 = _mm256_loadu_ps(out + i), c1 = _mm256_loadu_ps(out + i + 8);
        __m256 c2 = _mm256_loadu_ps(out + i + 16), c3 = _mm256_loadu_ps(out + i + 24);
        for (int j = 0; j < n; j++) {
            __m256 wj = _mm256_set1_ps(w[j]);
            c0 = _mm256_fmadd_ps(wj, load8(v, off[j] + i, f16), c0);
            c1 = _mm256_fmadd_ps(wj, load8(v, off[j] + i + 8, f16), c1);
            c2 = _mm256_fmadd_ps(wj, load8(v, off[j] + i + 16, f16), c2);
            c3 = _mm256_fmadd_ps(wj, load8(v, off[j] + i + 24, f16), c3);
        }
        _mm256_storeu_ps(out + i, c0);
        _mm256_storeu_ps(out + i + 8, c1);
        _mm256_storeu_ps(out + i + 16, c2);
        _mm256_storeu_ps(out + i + 24, c3);
    }
    for (; i + 8 <= hd; i += 8) {
        __m256 c0 = _mm256_loadu_ps(out + i);
        for (int j = 0; j < n; j++)
            c0 = _mm256_fmadd_ps(_mm256_set1_ps(w[j]), load8(v, off[j] + i, f16), c0);
        _mm256_storeu_ps(out + i, c0);
    }
    for (; i < hd; i++)
        for (int j = 0; j < n; j++)
            out[i] += w[j] * load1(v, off[j] + i, f16);
}

static inline void attn_head(const struct kern_attn *a, bool f16)
{
    int hd = a->head_dim, bs = a->block_size;
    float m = -INFINITY, l = 0;
    float sc[CHUNK];
    size_t off[CHUNK];
    bool vec8 = hd % 8 == 0;
    float *out = a->out;
    memset(out, 0, (size_t)hd * sizeof(float));
    for (int p0 = 0, b = 0; p0 < a->n_pos; p0 += bs, b++) {
        int nb = a->n_pos - p0 < bs ? a->n_pos - p0 : bs;
        size_t base = (size_t)a->blocks[b] * a->block_stride;
        for (int j0 = 0; j0 < nb; j0 += CHUNK) {
            int nc = nb - j0 < CHUNK ? nb - j0 : CHUNK;
            float cmax = -INFINITY;
            for (int j = 0; j < nc; j++)
                off[j] = base + (size_t)(j0 + j) * hd;
            int j8 = 0;
            if (vec8)
                for (; j8 + 8 <= nc; j8 += 8)
                    _mm256_storeu_ps(sc + j8, _mm256_mul_ps(dot8(a->q, a->k, off + j8, hd, f16),
                                                            _mm256_set1_ps(a->scale)));
            for (int j = j8; j < nc; j++)
                sc[j] = dot(a->q, a->k, off[j], hd, f16) * a->scale;
            for (int j = 0; j < nc; j++)
                cmax = sc[j] > cmax ? sc[j] : cmax;
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
                __m256 e = kern_exp256(_mm256_sub_ps(_mm256_loadu_ps(sc + j), vm));
                _mm256_storeu_ps(sc + j, e);
                acc = _mm256_add_ps(acc, e);
            }
            l += avx2_hsum_ps(acc);
            for (; j < nc; j++) {
                sc[j] = expf(sc[j] - m);
                l += sc[j];
            }
            accum(out, sc, a->v, off, nc, hd, f16);
        }
    }
    float inv = l > 0 ? 1.0f / l : 0.0f;
    for (int i = 0; i < hd; i++)
        out[i] *= inv;
}

/* The n_q query heads that share one KV head (grouped-query attention):
 * q and out hold n_q heads of head_dim floats back to back. Each chunk of
 * GCHUNK keys and values is converted from f16 once into an f32 buffer and
 * then serves every head of the group, instead of being converted once per
 * head (the conversion, not the FMAs, bounds the per-head kernel). */
#define GCHUNK 16
#define GMAX_HD 256
#define GMAX_Q 64

static void attn_group_f16_avx2(const struct kern_attn *a, int n_q)
{
    int hd = a->head_dim, bs = a->block_size;
    if (n_q > GMAX_Q || hd > GMAX_HD || hd % 8 != 0) {
        for (int g = 0; g < n_q; g++) {
            struct kern_attn h = *a;
            h.q = a->q + (size_t)g * hd;
            h.out = a->out + (size_t)g * hd;
            attn_head(&h, true);
        }
        return;
    }
    float kf[GCHUNK * GMAX_HD] __attribute__((aligned(32)));
    float vf[GCHUNK * GMAX_HD] __attribute__((aligned(32)));
    float mrun[GMAX_Q], lrun[GMAX_Q], sc[GCHUNK];
    size_t off[GCHUNK];
    for (int j = 0; j < GCHUNK; j++)
        off[j] = (size_t)j * hd;
    for (int g = 0; g < n_q; g++) {
        mrun[g] = -INFINITY;
        lrun[g] = 0;
    }
    memset(a->out, 0, (size_t)n_q * hd * sizeof(float));
    const uint16_t *K = a->k, *V = a->v;
    for (int p0 = 0, b = 0; p0 < a->n_pos; p0 += bs, b++) {
        int nb = a->n_pos - p0 < bs ? a->n_pos - p0 : bs;
        size_t base = (size_t)a->blocks[b] * a->block_stride;
        for (int j0 = 0; j0 < nb; j0 += GCHUNK) {
            int nc = nb - j0 < GCHUNK ? nb - j0 : GCHUNK;
            size_t src = base + (size_t)j0 * hd, n_el = (size_t)nc * hd;
            for (size_t i = 0; i < n_el; i += 8) {
                _mm256_store_ps(kf + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(K + src + i))));
                _mm256_store_ps(vf + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(V + src + i))));
            }
            for (int g = 0; g < n_q; g++) {
                const float *q = a->q + (size_t)g * hd;
                float *out = a->out + (size_t)g * hd;
                int j8 = 0;
                for (; j8 + 8 <= nc; j8 += 8)
                    _mm256_storeu_ps(sc + j8,
                                     _mm256_mul_ps(dot8(q, kf, off + j8, hd, false), _mm256_set1_ps(a->scale)));
                for (int j = j8; j < nc; j++)
                    sc[j] = dot(q, kf, off[j], hd, false) * a->scale;
                float cmax = -INFINITY;
                for (int j = 0; j < nc; j++)
                    cmax = sc[j] > cmax ? sc[j] : cmax;
                if (cmax > mrun[g]) {
                    float corr = expf(mrun[g] - cmax);
                    lrun[g] *= corr;
                    __m256 vc = _mm256_set1_ps(corr);
                    for (int i = 0; i < hd; i += 8)
                        _mm256_storeu_ps(out + i, _mm256_mul_ps(vc, _mm256_loadu_ps(out + i)));
                    mrun[g] = cmax;
                }
                __m256 vm = _mm256_set1_ps(mrun[g]), acc = _mm256_setzero_ps();
                int j = 0;
                for (; j + 8 <= nc; j += 8) {
                    __m256 e = kern_exp256(_mm256_sub_ps(_mm256_loadu_ps(sc + j), vm));
                    _mm256_storeu_ps(sc + j, e);
                    acc = _mm256_add_ps(acc, e);
                }
                lrun[g] += avx2_hsum_ps(acc);
                for (; j < nc; j++) {
                    sc[j] = expf(sc[j] - mrun[g]);
                    lrun[g] += sc[j];
                }
                accum(out, sc, vf, off, nc, hd, false);
            }
        }
    }
    for (int g = 0; g < n_q; g++) {
        float inv = lrun[g] > 0 ? 1.0f / lrun[g] : 0.0f;
        float *out = a->out + (size_t)g * hd;
        for (int i = 0; i < hd; i++)
            out[i] *= inv;
    }
}

static void attn_head_f32_avx2(const struct kern_attn *a)
{
    attn_head(a, false);
}

static void attn_head_f16_avx2(const struct kern_attn *a)
{
    attn_head(a, true);
}

static void store_f16_avx2(uint16_t *dst, const float *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++)
        dst[i] = fp32_to_fp16(src[i]);
}

void kern_register_avx2_attn(struct kern_table *tab)
{
    tab->attn_f32 = attn_head_f32_avx2, tab->attn_f16 = attn_head_f16_avx2;
    tab->attn_group_f16 = attn_group_f16_avx2;
    tab->store_f16 = store_f16_avx2;
}
