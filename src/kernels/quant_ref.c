/*
 * Reference quantized types with 32-element blocks: q4_0, q4_1, q5_0, q5_1,
 * q8_0, iq4_nl, and the activation formats q8_0 / q8_1. Also the
 * registration of every reference quantized type (k-quants come from
 * kquant_ref.c).
 *
 * Each quantizer follows ggml's reference algorithm step by step, with the
 * same float operations in the same order, so that the bytes match ggml's
 * quantize_row_*_ref (and quantize_iq4_nl without an importance matrix)
 * bit for bit. This file is compiled without FMA, so no multiply-add is
 * fused: the results are those of plain IEEE single precision.
 *
 * Where ggml converts a float to a small integer with a C cast, we clamp in
 * float first and then convert: identical for every input on which ggml's
 * cast is defined, and free of undefined behaviour on the others (NaN).
 * (q5_1 casts without a clamp in ggml; the value cannot reach 32 there.)
 *
 * Dot products work as ggml's generic vec_dot_*: an exact integer sum per
 * block, scaled by the product of the two block scales.
 */
#include "kernels/quant_ref.h"

#include <float.h>
#include <math.h>

const int8_t kern_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* ggml's MIN(hi, (int8_t)v) for v >= 0: truncation toward zero, clamped.
 * Clamping before the conversion keeps it defined for any v (NaN -> lo). */
static inline int trunc_clamp(float v, int lo, int hi)
{
    if (!(v >= (float)lo))
        return lo;
    if (v >= (float)hi)
        return hi;
    return (int)v;
}

/* roundf (half away from zero) into [-128, 127]; NaN maps to 0. Done
 * inline (truncate, then step by the exact fractional part) because the
 * libm call dominated q8_0's cost; identical to roundf on this range. */
static inline int8_t round_i8(float v)
{
    if (!(v == v))
        return 0;
    if (v > 127.f)
        v = 127.f;
    if (v < -128.f)
        v = -128.f;
    int t = (int)v;
    float f = v - (float)t; /* exact for |v| < 2^23 */
    return (int8_t)(t + (f >= 0.5f) - (f <= -0.5f));
}

/* The element of largest magnitude, sign included (first one on ties). */
static inline float signed_absmax(const float *x, int n)
{
    float amax = 0.f, max = 0.f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

/* ---- q4_0: d = max / -8, q = x/d + 8 in 0..15 ---- */
void kern_ref_quantize_q4_0(const float *x, void *vy, int64_t n)
{
    block_q4_0 *y = vy;
    for (int64_t i = 0; i < n / QK4_0; i++, x += QK4_0) {
        const float max = signed_absmax(x, QK4_0);
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            int q0 = trunc_clamp(x[j] * id + 8.5f, 0, 15);
            int q1 = trunc_clamp(x[j + QK4_0 / 2] * id + 8.5f, 0, 15);
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void kern_ref_dequantize_q4_0(const void *vx, float *y, int64_t n)
{
    const block_q4_0 *x = vx;
    for (int64_t i = 0; i < n / QK4_0; i++, y += QK4_0) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = ((x[i].qs[j] & 0x0f) - 8) * d;
            y[j + QK4_0 / 2] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* ---- q4_1: d = (max - min) / 15, m = min, q = (x - min)/d in 0..15 ---- */
void kern_ref_quantize_q4_1(const float *x, void *vy, int64_t n)
{
    block_q4_1 *y = vy;
    for (int64_t i = 0; i < n / QK4_1; i++, x += QK4_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK4_1; j++) {
            if (x[j] < min)
                min = x[j];
            if (x[j] > max)
                max = x[j];
        }
        const float d = (max - min) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(min);
        for (int j = 0; j < QK4_1 / 2; j++) {
            int q0 = trunc_clamp((x[j] - min) * id + 0.5f, 0, 15);
            int q1 = trunc_clamp((x[j + QK4_1 / 2] - min) * id + 0.5f, 0, 15);
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void kern_ref_dequantize_q4_1(const void *vx, float *y, int64_t n)
{
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < n / QK4_1; i++, y += QK4_1) {
        const float d = fp16_to_fp32(x[i].d), m = fp16_to_fp32(x[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[j] = (x[i].qs[j] & 0x0f) * d + m;
            y[j + QK4_1 / 2] = (x[i].qs[j] >> 4) * d + m;
        }
    }
}

/* ---- q5_0: d = max / -16, q = x/d + 16 in 0..31, bit 4 in qh ---- */
static void store_q5(uint8_t qs[16], uint8_t qh_bytes[4], const int q[32])
{
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4));
        qh |= (uint32_t)((q[j] >> 4) & 1) << j;
        qh |= (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    /* little-endian word, byte by byte so the layout does not depend on the host */
    for (int b = 0; b < 4; b++)
        qh_bytes[b] = (uint8_t)(qh >> (8 * b));
}

static inline uint32_t load_qh(const uint8_t qh[4])
{
    return (uint32_t)qh[0] | ((uint32_t)qh[1] << 8) | ((uint32_t)qh[2] << 16) | ((uint32_t)qh[3] << 24);
}

void kern_ref_quantize_q5_0(const float *x, void *vy, int64_t n)
{
    block_q5_0 *y = vy;
    int q[QK5_0];
    for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
        const float max = signed_absmax(x, QK5_0);
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK5_0; j++)
            q[j] = trunc_clamp(x[j] * id + 16.5f, 0, 31);
        store_q5(y[i].qs, y[i].qh, q);
    }
}

void kern_ref_dequantize_q5_0(const void *vx, float *y, int64_t n)
{
    const block_q5_0 *x = vx;
    for (int64_t i = 0; i < n / QK5_0; i++, y += QK5_0) {
        const float d = fp16_to_fp32(x[i].d);
        const uint32_t qh = load_qh(x[i].qh);
        for (int j = 0; j < QK5_0 / 2; j++) {
            int q0 = (x[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
            int q1 = (x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = (q0 - 16) * d;
            y[j + QK5_0 / 2] = (q1 - 16) * d;
        }
    }
}

/* ---- q5_1: d = (max - min) / 31, m = min ---- */
void kern_ref_quantize_q5_1(const float *x, void *vy, int64_t n)
{
    block_q5_1 *y = vy;
    int q[QK5_1];
    for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK5_1; j++) {
            if (x[j] < min)
                min = x[j];
            if (x[j] > max)
                max = x[j];
        }
        const float d = (max - min) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(min);
        /* ggml casts without clamping; (x - min)/d never reaches 31.5 */
        for (int j = 0; j < QK5_1; j++)
            q[j] = trunc_clamp((x[j] - min) * id + 0.5f, 0, 31);
        store_q5(y[i].qs, y[i].qh, q);
    }
}

void kern_ref_dequantize_q5_1(const void *vx, float *y, int64_t n)
{
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < n / QK5_1; i++, y += QK5_1) {
        const float d = fp16_to_fp32(x[i].d), m = fp16_to_fp32(x[i].m);
        const uint32_t qh = load_qh(x[i].qh);
        for (int j = 0; j < QK5_1 / 2; j++) {
            int q0 = (x[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
            int q1 = (x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = q0 * d + m;
            y[j + QK5_1 / 2] = q1 * d + m;
        }
    }
}

/* ---- q8_0: d = amax / 127, q = round(x/d) ---- */
void kern_ref_quantize_q8_0(const float *x, void *vy, int64_t n)
{
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        float amax = 0.f;
        for (int j = 0; j < QK8_0; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++)
            y[i].qs[j] = round_i8(x[j] * id);
    }
}

void kern_ref_dequantize_q8_0(const void *vx, float *y, int64_t n)
{
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < n / QK8_0; i++, y += QK8_0) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < QK8_0; j++)
            y[j] = x[i].qs[j] * d;
    }
}

/* ---- q8_1: q8_0 plus s = d * sum(q), for the min term of q4_1 / q5_1 ---- */
void kern_ref_quantize_q8_1(const float *x, void *vy, int64_t n)
{
    block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        float amax = 0.f;
        for (int j = 0; j < QK8_1; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) {
            y[i].qs[j] = round_i8(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = fp32_to_fp16(sum * d);
    }
}

void kern_ref_dequantize_q8_1(const void *vx, float *y, int64_t n)
{
    const block_q8_1 *x = vx;
    for (int64_t i = 0; i < n / QK8_1; i++, y += QK8_1) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < QK8_1; j++)
            y[j] = x[i].qs[j] * d;
    }
}

/* ---- iq4_nl: one scale per 32, levels from a non-linear table ----
 * ggml's quantize_iq4_nl without an importance matrix (what llama-quantize
 * writes): weights x^2, the scale refined by least squares over 15 trial
 * scales around -max / -127, then every value re-assigned to its nearest
 * level. (ggml's quantize_row_iq4_nl_ref skips that search; files are made
 * with the search, so that is the algorithm reproduced here.) */

/* Index of the level nearest to v, ties to the upper one; exact because
 * 2v and the sum of two int8 levels are both exact in float. */
static inline int iq4nl_index(float v)
{
    const float v2 = v + v;
    int idx = 0;
    for (int step = 8; step > 0; step >>= 1) {
        int j = idx + step;
        if (v2 >= (float)(kern_kvalues_iq4nl[j - 1] + kern_kvalues_iq4nl[j]))
            idx = j;
    }
    return idx;
}

#define IQ4NL_NTRY 7

static void quantize_block_iq4_nl(const float *x, block_iq4_nl *y)
{
    const int8_t *values = kern_kvalues_iq4nl;
    float weight[QK4_NL];
    uint8_t L[QK4_NL];
    float amax = 0.f, max = 0.f;

    for (int j = 0; j < QK4_NL; j++) {
        weight[j] = x[j] * x[j];
        float ax = fabsf(x[j]);
        if (ax > amax) {
            amax = ax;
            max = x[j];
        }
    }
    float d = 0.f;
    if (amax >= 1e-15f) {
        /* The 16 candidate inverse scales, one per lane: the first from the
         * max (d = -max / -127), then (itry - 127) / max for itry = -7..7.
         * Their least-squares sums are independent, so they are computed
         * side by side; the choice among them keeps ggml's order. */
        float cand[16];
        cand[0] = 1 / (-max / values[0]);
        for (int t = 1; t < 16; t++)
            cand[t] = (t - 1 - IQ4NL_NTRY + values[0]) / max;
        v4f id[4], sqx[4], sq2[4];
        for (int g = 0; g < 4; g++) {
            id[g] = (v4f){cand[4 * g], cand[4 * g + 1], cand[4 * g + 2], cand[4 * g + 3]};
            sqx[g] = sq2[g] = (v4f){0, 0, 0, 0};
        }
        for (int j = 0; j < QK4_NL; j++) {
            const v4f xj = {x[j], x[j], x[j], x[j]}, wj = {weight[j], weight[j], weight[j], weight[j]};
            for (int g = 0; g < 4; g++) {
                v4f al = id[g] * xj, a2 = al + al;
                /* the nearest level (ties up) is values[0] plus every step
                 * whose midpoint lies at or below al; the sum is exact */
                v4f q = {values[0], values[0], values[0], values[0]};
                for (int k = 1; k < 16; k++) {
                    const float mid2 = (float)(values[k - 1] + values[k]), step = (float)(values[k] - values[k - 1]);
                    v4i ge = a2 >= (v4f){mid2, mid2, mid2, mid2};
                    q += (v4f)(ge & (v4i)(v4f){step, step, step, step});
                }
                sqx[g] += wj * q * xj;
                sq2[g] += wj * q * q;
            }
        }
        d = sq2[0][0] > 0 ? sqx[0][0] / sq2[0][0] : 0.f;
        float best = d * sqx[0][0];
        for (int t = 1; t < 16; t++) {
            float sumqx = sqx[t / 4][t % 4], sumq2 = sq2[t / 4][t % 4];
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
    }
    y->d = fp32_to_fp16(d);
    const float id = d ? 1 / d : 0;
    for (int j = 0; j < QK4_NL; j++)
        L[j] = (uint8_t)iq4nl_index(id * x[j]);
    for (int j = 0; j < QK4_NL / 2; j++)
        y->qs[j] = (uint8_t)(L[j] | (L[j + QK4_NL / 2] << 4));
}

void kern_ref_quantize_iq4_nl(const float *x, void *vy, int64_t n)
{
    block_iq4_nl *y = vy;
    for (int64_t i = 0; i < n / QK4_NL; i++)
        quantize_block_iq4_nl(x + i * QK4_NL, &y[i]);
}

void kern_ref_dequantize_iq4_nl(const void *vx, float *y, int64_t n)
{
    const block_iq4_nl *x = vx;
    for (int64_t i = 0; i < n / QK4_NL; i++, y += QK4_NL) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < QK4_NL / 2; j++) {
            y[j] = d * kern_kvalues_iq4nl[x[i].qs[j] & 0x0f];
            y[j + QK4_NL / 2] = d * kern_kvalues_iq4nl[x[i].qs[j] >> 4];
        }
    }
}

/* ---- dot products with q8_0 / q8_1 activations ---- */
float kern_ref_vec_dot_q4_0_q8_0(int64_t n, const void *vx, const void *vy)
{
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        int sumi = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            sumi += ((x[i].qs[j] & 0x0f) - 8) * y[i].qs[j];
            sumi += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + QK4_0 / 2];
        }
        sumf += sumi * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
    }
    return sumf;
}

float kern_ref_vec_dot_q4_1_q8_1(int64_t n, const void *vx, const void *vy)
{
    const block_q4_1 *x = vx;
    const block_q8_1 *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        int sumi = 0;
        for (int j = 0; j < QK4_1 / 2; j++) {
            sumi += (x[i].qs[j] & 0x0f) * y[i].qs[j];
            sumi += (x[i].qs[j] >> 4) * y[i].qs[j + QK4_1 / 2];
        }
        /* sum (d q + m) * (dy qy) = d dy sum(q qy) + m * (dy sum(qy)) */
        sumf += (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * sumi + fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
    }
    return sumf;
}

float kern_ref_vec_dot_q5_0_q8_0(int64_t n, const void *vx, const void *vy)
{
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        const uint32_t qh = load_qh(x[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            int q0 = ((x[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4)) - 16;
            int q1 = ((x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4)) - 16;
            sumi += q0 * y[i].qs[j] + q1 * y[i].qs[j + QK5_0 / 2];
        }
        sumf += sumi * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
    }
    return sumf;
}

float kern_ref_vec_dot_q5_1_q8_1(int64_t n, const void *vx, const void *vy)
{
    const block_q5_1 *x = vx;
    const block_q8_1 *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        const uint32_t qh = load_qh(x[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK5_1 / 2; j++) {
            int q0 = (x[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
            int q1 = (x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            sumi += q0 * y[i].qs[j] + q1 * y[i].qs[j + QK5_1 / 2];
        }
        sumf += (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * sumi + fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
    }
    return sumf;
}

float kern_ref_vec_dot_q8_0_q8_0(int64_t n, const void *vx, const void *vy)
{
    const block_q8_0 *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++)
            sumi += x[i].qs[j] * y[i].qs[j];
        sumf += sumi * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
    }
    return sumf;
}

float kern_ref_vec_dot_iq4_nl_q8_0(int64_t n, const void *vx, const void *vy)
{
    const block_iq4_nl *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK4_NL; i++) {
        int sumi = 0;
        for (int j = 0; j < QK4_NL / 2; j++) {
            sumi += kern_kvalues_iq4nl[x[i].qs[j] & 0x0f] * y[i].qs[j];
            sumi += kern_kvalues_iq4nl[x[i].qs[j] >> 4] * y[i].qs[j + QK4_NL / 2];
        }
        sumf += (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * sumi;
    }
    return sumf;
}

/* ---- registration ---- */
void kern_register_ref_quants(struct kern_table *t)
{
    struct kern_type_ops *tab = t->type;
    tab[GGML_TYPE_Q4_0] = (struct kern_type_ops){kern_ref_dequantize_q4_0, kern_ref_quantize_q4_0,
                                                 kern_ref_quantize_q8_0, kern_ref_vec_dot_q4_0_q8_0, GGML_TYPE_Q8_0};
    tab[GGML_TYPE_Q4_1] = (struct kern_type_ops){kern_ref_dequantize_q4_1, kern_ref_quantize_q4_1,
                                                 kern_ref_quantize_q8_1, kern_ref_vec_dot_q4_1_q8_1, GGML_TYPE_Q8_1};
    tab[GGML_TYPE_Q5_0] = (struct kern_type_ops){kern_ref_dequantize_q5_0, kern_ref_quantize_q5_0,
                                                 kern_ref_quantize_q8_0, kern_ref_vec_dot_q5_0_q8_0, GGML_TYPE_Q8_0};
    tab[GGML_TYPE_Q5_1] = (struct kern_type_ops){kern_ref_dequantize_q5_1, kern_ref_quantize_q5_1,
                                                 kern_ref_quantize_q8_1, kern_ref_vec_dot_q5_1_q8_1, GGML_TYPE_Q8_1};
    tab[GGML_TYPE_Q8_0] = (struct kern_type_ops){kern_ref_dequantize_q8_0, kern_ref_quantize_q8_0,
                                                 kern_ref_quantize_q8_0, kern_ref_vec_dot_q8_0_q8_0, GGML_TYPE_Q8_0};
    tab[GGML_TYPE_IQ4_NL] = (struct kern_type_ops){kern_ref_dequantize_iq4_nl, kern_ref_quantize_iq4_nl,
                                                   kern_ref_quantize_q8_0, kern_ref_vec_dot_iq4_nl_q8_0,
                                                   GGML_TYPE_Q8_0};
    /* Activation format only: no dot product with q8_1 as the weight. */
    tab[GGML_TYPE_Q8_1] = (struct kern_type_ops){kern_ref_dequantize_q8_1, kern_ref_quantize_q8_1,
                                                 kern_ref_quantize_q8_1, NULL, GGML_TYPE_Q8_1};
    kern_register_ref_kquants(tab);
}
