/*
 * Reference k-quants (q2_K, q3_K, q4_K, q5_K, q6_K: super-blocks of 256 with
 * quantized per-sub-block scales) and their activation format q8_K.
 *
 * The quantizers are ggml's reference ones without an importance matrix
 * (quantize_row_q*_K_ref), which is what llama-quantize runs when it is not
 * given one. Per sub-block a scale (and for q2/q4/q5 a min) is searched:
 *   q2_K, q4_K, q5_K  make_qkx2: fit  x ~ scale * L - min,  L in 0..nmax,
 *                     trying nstep+1 scales and solving the weighted least
 *                     squares for (scale, min) at each assignment L;
 *   q3_K              make_q3:   x ~ scale * L, L in -4..3, coordinate
 *                     descent on L with weights x^2;
 *   q6_K              make_qx:   x ~ scale * L, L in -32..31, 19 trial
 *                     scales with weights x^2.
 * The sub-block scales (and mins) are then quantized against one fp16
 * super-block scale, and every value is re-quantized with the scale it will
 * actually be decoded with. Float operations follow ggml's order exactly and
 * are not fused (this file is built without FMA; a build with -mfma and
 * contraction would change the bits, as it would ggml's), so the bytes are
 * ggml's: checked against ggml's own quantizers on many kinds of rows.
 *
 * Speed: the searches run several independent sub-blocks (make_qkx2) or
 * several independent candidate scales (make_qx) side by side in the lanes
 * of 4-float vectors (GCC/Clang vector extensions, plain SSE2 on x86-64).
 * Each lane performs exactly the scalar operations, so the bits do not
 * change; q4_K costs ~10-15 us per 256 values on one core here, less than
 * half of ggml's scalar reference. No allocation, no state: safe on many
 * rows at once.
 *
 * Dot products are ggml's generic vec_dot_q*_K_q8_K: exact integer sums per
 * sub-block times integer scales, the min term taken from q8_K's bsums, then
 * one float scaling per super-block (ggml's generic code spreads that float
 * sum over 8 partial sums; the results agree to float rounding).
 */
#include "kernels/quant_ref.h"

#include <math.h>

#define GROUP_MAX_EPS 1e-15f

static inline int imin(int a, int b)
{
    return a < b ? a : b;
}
static inline int imax(int a, int b)
{
    return a > b ? a : b;
}

/* ---- scale searches ---- */

/* Weighted fit of x[i] ~ scale * L[i] + min with L[i] in 0..nmax and min <= 0
 * (ggml's make_qkx2_quants), for nsub independent sub-blocks of n values at
 * once: x, weights and L hold sub-block s at s * n. Returns scale[s] and
 * -min in the_min[s]. rmin, rdelta, nstep define the trial inverse scales
 * (nmax + rmin + rdelta * is) / (max - min); use_mad measures the error as
 * |diff| instead of diff^2.
 *
 * Each sub-block is one vector lane and goes through exactly ggml's float
 * operations in ggml's order (ifs become per-lane selects), so the result is
 * bit for bit that of ggml's scalar code, about four times faster. */
#define QKX2_MAX_N 32
#define QKX2_MAX_GROUPS 4 /* of 4 lanes: up to 16 sub-blocks */

static void make_qkx2_quants(int nsub, int n, int nmax, const float *x, const float *weights, uint8_t *L,
                             float *scale_out, float *the_min, float rmin, float rdelta, int nstep, bool use_mad)
{
    enum { G = QKX2_MAX_GROUPS };
    v4f xt[QKX2_MAX_N][G], wt[QKX2_MAX_N][G];
    v4i Lt[QKX2_MAX_N][G], Laux[QKX2_MAX_N][G];
    v4f min[G], max[G], sum_w[G], sum_x[G], scale[G], best_error[G];
    v4f sum_l[G], sum_l2[G], sum_xl[G], this_scale[G], this_min[G], cur_error[G];
    v4i flat[G], solved[G];
    const int ng = nsub / 4;

    MAAS_ASSERT(n <= QKX2_MAX_N && nsub % 4 == 0 && ng <= G);
    /* transpose: lane s%4 of group s/4 holds sub-block s */
    for (int i = 0; i < n; i++)
        for (int g = 0; g < ng; g++)
            for (int k = 0; k < 4; k++) {
                xt[i][g][k] = x[(4 * g + k) * n + i];
                wt[i][g][k] = weights[(4 * g + k) * n + i];
            }
    for (int g = 0; g < ng; g++) {
        min[g] = max[g] = xt[0][g];
        sum_w[g] = wt[0][g];
        sum_x[g] = sum_w[g] * xt[0][g];
    }
    for (int i = 1; i < n; i++)
        for (int g = 0; g < ng; g++) {
            min[g] = v4f_select(xt[i][g] < min[g], xt[i][g], min[g]);
            max[g] = v4f_select(xt[i][g] > max[g], xt[i][g], max[g]);
            sum_w[g] += wt[i][g];
            sum_x[g] += wt[i][g] * xt[i][g];
        }
    for (int g = 0; g < ng; g++) {
        min[g] = v4f_select(min[g] > 0, v4f_set1(0), min[g]);
        /* a flat sub-block is all L = 0; its lane runs on harmlessly with a
         * unit range and is overwritten at the end */
        flat[g] = max[g] == min[g];
        max[g] = v4f_select(flat[g], min[g] + 1, max[g]);
        v4f iscale = v4f_set1((float)nmax) / (max[g] - min[g]);
        scale[g] = 1 / iscale;
        best_error[g] = v4f_set1(0);
        for (int i = 0; i < n; i++) {
            v4i l = v4_nearest_clamp(iscale * (xt[i][g] - min[g]), 0, nmax);
            Lt[i][g] = l;
            v4f diff = scale[g] * __builtin_convertvector(l, v4f) + min[g] - xt[i][g];
            diff = use_mad ? v4f_abs(diff) : diff * diff;
            best_error[g] += wt[i][g] * diff;
        }
    }
    for (int is = 0; is <= nstep; is++) {
        const float num = rmin + rdelta * is + nmax;
        v4f iscale[G];
        for (int g = 0; g < ng; g++) {
            /* min is the best fit so far, so the trial grid moves with it */
            iscale[g] = v4f_set1(num) / (max[g] - min[g]);
            sum_l[g] = sum_l2[g] = sum_xl[g] = v4f_set1(0);
        }
        for (int i = 0; i < n; i++)
            for (int g = 0; g < ng; g++) {
                v4i l = v4_nearest_clamp(iscale[g] * (xt[i][g] - min[g]), 0, nmax);
                Laux[i][g] = l;
                v4f fl = __builtin_convertvector(l, v4f), w = wt[i][g];
                sum_l[g] += w * fl;
                sum_l2[g] += w * fl * fl;
                sum_xl[g] += w * fl * xt[i][g];
            }
        for (int g = 0; g < ng; g++) {
            v4f D = sum_w[g] * sum_l2[g] - sum_l[g] * sum_l[g];
            solved[g] = D > 0;
            /* lanes without a solution divide by 1 and are discarded below */
            v4f Ds = v4f_select(solved[g], D, v4f_set1(1));
            v4f l2s = v4f_select(solved[g], sum_l2[g], v4f_set1(1));
            v4f sc = (sum_w[g] * sum_xl[g] - sum_x[g] * sum_l[g]) / Ds;
            v4f mn = (sum_l2[g] * sum_x[g] - sum_l[g] * sum_xl[g]) / Ds;
            v4i pos = mn > 0;
            this_min[g] = v4f_select(pos, v4f_set1(0), mn);
            this_scale[g] = v4f_select(pos, sum_xl[g] / l2s, sc);
            cur_error[g] = v4f_set1(0);
        }
        for (int i = 0; i < n; i++)
            for (int g = 0; g < ng; g++) {
                v4f diff = this_scale[g] * __builtin_convertvector(Laux[i][g], v4f) + this_min[g] - xt[i][g];
                diff = use_mad ? v4f_abs(diff) : diff * diff;
                cur_error[g] += wt[i][g] * diff;
            }
        for (int g = 0; g < ng; g++) {
            v4i better = solved[g] & (cur_error[g] < best_error[g]);
            for (int i = 0; i < n; i++)
                Lt[i][g] = v4i_select(better, Laux[i][g], Lt[i][g]);
            best_error[g] = v4f_select(better, cur_error[g], best_error[g]);
            scale[g] = v4f_select(better, this_scale[g], scale[g]);
            min[g] = v4f_select(better, this_min[g], min[g]);
        }
    }
    for (int s = 0; s < nsub; s++) {
        const int g = s / 4, k = s % 4;
        for (int i = 0; i < n; i++)
            L[s * n + i] = flat[g][k] ? 0 : (uint8_t)Lt[i][g][k];
        scale_out[s] = flat[g][k] ? 0.f : scale[g][k];
        the_min[s] = -min[g][k];
    }
}

/* Fit x[i] ~ scale * (L[i] - nmax), L[i] in 0..2*nmax-1, weights x^2 (ggml's
 * make_qx_quants with rmse_type 1 and no importance weights): the rounding
 * at -nmax / max, then 18 trial scales -(nmax + 0.1 is) / max, is = -9..9,
 * keeping the best least-squares fit. The 19 candidates' sums do not depend
 * on each other, so they run side by side in vector lanes (each lane doing
 * ggml's scalar operations in ggml's order); the choice keeps ggml's order. */
#define QX_CAND 19
#define QX_GROUPS 5 /* 20 lanes, the last one unused */

static float make_qx_quants(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float cand[4 * QX_GROUPS];
    cand[0] = -nmax / max;
    for (int t = 1; t < QX_CAND; t++) {
        int is = t <= 9 ? t - 10 : t - 9; /* -9..-1, 1..9 */
        cand[t] = -(nmax + 0.1f * is) / max;
    }
    cand[QX_CAND] = cand[0];
    v4f iscale[QX_GROUPS], sumlx[QX_GROUPS], suml2[QX_GROUPS];
    for (int g = 0; g < QX_GROUPS; g++) {
        iscale[g] = (v4f){cand[4 * g], cand[4 * g + 1], cand[4 * g + 2], cand[4 * g + 3]};
        sumlx[g] = suml2[g] = v4f_set1(0);
    }
    for (int i = 0; i < n; i++) {
        const float w = x[i] * x[i];
        const v4f xi = v4f_set1(x[i]), wv = v4f_set1(w), wx = v4f_set1(w * x[i]);
        for (int g = 0; g < QX_GROUPS; g++) {
            v4f l = __builtin_convertvector(v4_nearest_clamp(iscale[g] * xi, -nmax, nmax - 1), v4f);
            sumlx[g] += wx * l;
            suml2[g] += wv * l * l;
        }
    }
    int win = 0;
    float scale = suml2[0][0] ? sumlx[0][0] / suml2[0][0] : 0.0f;
    float best = scale * sumlx[0][0];
    for (int t = 1; t < QX_CAND; t++) {
        float slx = sumlx[t / 4][t % 4], sl2 = suml2[t / 4][t % 4];
        if (sl2 > 0 && slx * slx > best * sl2) {
            win = t;
            scale = slx / sl2;
            best = scale * slx;
        }
    }
    for (int i = 0; i < n; i++)
        L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, kern_nearest_int(cand[win] * x[i]))));
    return scale;
}

/* Fit x[i] ~ scale * L[i], L in -nmax..nmax-1, weights x^2, by up to five
 * sweeps of per-element coordinate descent from the max-abs rounding
 * (ggml's make_q3_quants with do_rmse). L is returned offset by nmax. */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = kern_nearest_int(iscale * x[i]);
        l = imax(-nmax, imin(nmax - 1, l));
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = kern_nearest_int(x[i] * sl2 / slx);
                new_l = imax(-nmax, imin(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed)
            break;
    }
    for (int i = 0; i < n; i++)
        L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* ---- 6-bit scale packing of q4_K / q5_K ----
 * bytes 0..3: scale j (low 6 bits), top 2 bits = high bits of scale j+4
 * bytes 4..7: min j   (low 6 bits), top 2 bits = high bits of min j+4
 * bytes 8..11: low 4 bits of scale j+4 | low 4 bits of min j+4 << 4 */
void kern_get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void pack_scale_min_k4(uint8_t packed[K_SCALE_SIZE], const uint8_t ls[8], const uint8_t lm[8])
{
    for (int j = 0; j < 4; j++) {
        packed[j] = (uint8_t)(ls[j] | ((ls[j + 4] >> 4) << 6));
        packed[j + 4] = (uint8_t)(lm[j] | ((lm[j + 4] >> 4) << 6));
        packed[j + 8] = (uint8_t)((ls[j + 4] & 0x0f) | ((lm[j + 4] & 0x0f) << 4));
    }
}

/* The search shared by q4_K and q5_K: per sub-block of 32 a (scale, min)
 * fit with weights av_x + |x|, both quantized to 6 bits against fp16
 * super-block scales; then L re-quantized with the decoded scales. */
static void quantize_superblock_k4(const float *x, int nmax, float rmin, float rdelta, int nstep, ggml_half *d_out,
                                   ggml_half *dmin_out, uint8_t packed[K_SCALE_SIZE], uint8_t L[QK_K])
{
    float scales[QK_K / 32], mins[QK_K / 32], weights[QK_K];
    uint8_t ls[QK_K / 32], lm[QK_K / 32];
    float max_scale = 0, max_min = 0;

    for (int j = 0; j < QK_K / 32; j++) {
        const float *xb = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++)
            sum_x2 += xb[l] * xb[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            weights[32 * j + l] = av_x + fabsf(xb[l]);
    }
    make_qkx2_quants(QK_K / 32, 32, nmax, x, weights, L, scales, mins, rmin, rdelta, nstep, false);
    for (int j = 0; j < QK_K / 32; j++) {
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    /* An infinite inverse (max below ~1.9e-37) makes every level 0 in
     * ggml's code too (nearest_int(inf) = -2^22 and NaN's 0, cast to
     * uint8_t): 0 says so without leaning on those bit patterns. */
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    if (!isfinite(inv_scale))
        inv_scale = 0.f;
    if (!isfinite(inv_min))
        inv_min = 0.f;
    for (int j = 0; j < QK_K / 32; j++) {
        /* ggml stores nearest_int into a uint8_t before MIN(63, .) */
        ls[j] = (uint8_t)imin(63, (uint8_t)kern_nearest_int(inv_scale * scales[j]));
        lm[j] = (uint8_t)imin(63, (uint8_t)kern_nearest_int(inv_min * mins[j]));
    }
    pack_scale_min_k4(packed, ls, lm);
    *d_out = fp32_to_fp16(max_scale / 63.f);
    *dmin_out = fp32_to_fp16(max_min / 63.f);

    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        kern_get_scale_min_k4(j, packed, &sc, &m);
        const float d = fp16_to_fp32(*d_out) * sc;
        if (!d)
            continue;
        const float dm = fp16_to_fp32(*dmin_out) * m;
        for (int ii = 0; ii < 32; ii++) {
            int l = kern_nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)imax(0, imin(nmax, l));
        }
    }
}

/* ---- q2_K: 16 sub-blocks of 16, L in 0..3, 4-bit scale and min ---- */
void kern_ref_quantize_q2_K(const float *x, void *vy, int64_t n)
{
    block_q2_K *y = vy;
    uint8_t L[QK_K];
    float weights[QK_K], mins[QK_K / 16], scales[QK_K / 16];
    const float q4scale = 15.f;

    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max_scale = 0, max_min = 0;
        for (int l = 0; l < QK_K; l++)
            weights[l] = fabsf(x[l]);
        make_qkx2_quants(QK_K / 16, 16, 3, x, weights, L, scales, mins, -0.5f, 0.1f, 15, true);
        for (int j = 0; j < QK_K / 16; j++) {
            if (scales[j] > max_scale)
                max_scale = scales[j];
            if (mins[j] > max_min)
                max_min = mins[j];
        }
        /* Below ~4.4e-38 the inverse 15 / max is infinite: ggml's nearest_int
         * then gives -2^22, which it stores as 0 in the scales and shifts
         * left (undefined) into the mins. Such a scale is 0 in fp16 anyway,
         * so it takes the zero branch, which writes the bytes ggml's code
         * comes to in practice. With a finite inverse, 0 <= mins[j] <= max_min
         * keeps the shifted l in 0..15 (a NaN min gives some l >= 0). */
        const float iscale_s = max_scale > 0 ? q4scale / max_scale : 0.f;
        const float iscale_m = max_min > 0 ? q4scale / max_min : 0.f;
        if (max_scale > 0 && isfinite(iscale_s)) {
            for (int j = 0; j < QK_K / 16; j++)
                y[i].scales[j] = (uint8_t)kern_nearest_int(iscale_s * scales[j]);
            y[i].d = fp32_to_fp16(max_scale / q4scale);
        } else {
            memset(y[i].scales, 0, sizeof y[i].scales);
            y[i].d = fp32_to_fp16(0.f);
        }
        if (max_min > 0 && isfinite(iscale_m)) {
            for (int j = 0; j < QK_K / 16; j++)
                y[i].scales[j] |= (uint8_t)((unsigned)kern_nearest_int(iscale_m * mins[j]) << 4);
            y[i].dmin = fp32_to_fp16(max_min / q4scale);
        } else {
            y[i].dmin = fp32_to_fp16(0.f);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = fp16_to_fp32(y[i].d) * (y[i].scales[j] & 0xf);
            if (!d)
                continue;
            const float dm = fp16_to_fp32(y[i].dmin) * (y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ii++) {
                int l = kern_nearest_int((x[16 * j + ii] + dm) / d);
                L[16 * j + ii] = (uint8_t)imax(0, imin(3, l));
            }
        }
        /* byte l of each 32-byte half holds elements l, l+32, l+64, l+96 */
        for (int j = 0; j < QK_K; j += 128)
            for (int l = 0; l < 32; l++)
                y[i].qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                               (L[j + l + 96] << 6));
    }
}

void kern_ref_dequantize_q2_K(const void *vx, float *y, int64_t n)
{
    const block_q2_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
        for (int e = 0; e < QK_K; e++) {
            /* element e: half e/128, bit pair (e%128)/32, byte e%32 */
            int q = (x[i].qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            uint8_t sc = x[i].scales[e / 16];
            *y++ = d * (sc & 0xf) * q - dmin * (sc >> 4);
        }
    }
}

/* ---- q3_K: 16 sub-blocks of 16, L in -4..3 (2 low bits + hmask), 6-bit scales ---- */
void kern_unpack_q3_K_scales(const uint8_t packed[12], int8_t scales[16])
{
    /* low 4 bits: bytes 0..7 (j < 8 low nibble, j >= 8 high nibble of byte j-8);
     * high 2 bits: byte 8 + j%4, bit pair j/4 */
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? packed[j] & 0xf : packed[j - 8] >> 4;
        int hi = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        scales[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

void kern_ref_quantize_q3_K(const float *x, void *vy, int64_t n)
{
    block_q3_K *y = vy;
    int8_t L[QK_K], sc[QK_K / 16];
    float scales[QK_K / 16];

    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            float scale = fabsf(scales[j]);
            if (scale > amax) {
                amax = scale;
                max_scale = scales[j];
            }
        }
        memset(y[i].scales, 0, sizeof y[i].scales);
        if (max_scale) {
            float iscale = -32.f / max_scale;
            for (int j = 0; j < QK_K / 16; j++) {
                int l = (int8_t)kern_nearest_int(iscale * scales[j]);
                l = imax(-32, imin(31, l)) + 32;
                if (j < 8)
                    y[i].scales[j] = (uint8_t)(l & 0xf);
                else
                    y[i].scales[j - 8] |= (uint8_t)((l & 0xf) << 4);
                y[i].scales[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            y[i].d = fp32_to_fp16(1 / iscale);
        } else {
            y[i].d = fp32_to_fp16(0.f);
        }
        kern_unpack_q3_K_scales(y[i].scales, sc);
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = fp16_to_fp32(y[i].d) * sc[j];
            if (!d)
                continue;
            for (int ii = 0; ii < 16; ii++) {
                int l = kern_nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(imax(-4, imin(3, l)) + 4);
            }
        }
        /* high bit of element e: byte e%32 of hmask, bit e/32 */
        memset(y[i].hmask, 0, sizeof y[i].hmask);
        for (int e = 0; e < QK_K; e++) {
            if (L[e] > 3) {
                y[i].hmask[e % 32] |= (uint8_t)(1 << (e / 32));
                L[e] -= 4;
            }
        }
        for (int j = 0; j < QK_K; j += 128)
            for (int l = 0; l < 32; l++)
                y[i].qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                               (L[j + l + 96] << 6));
    }
}

void kern_ref_dequantize_q3_K(const void *vx, float *y, int64_t n)
{
    const block_q3_K *x = vx;
    int8_t sc[QK_K / 16];
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = fp16_to_fp32(x[i].d);
        kern_unpack_q3_K_scales(x[i].scales, sc);
        for (int e = 0; e < QK_K; e++) {
            int q = (x[i].qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            if (!(x[i].hmask[e % 32] & (1 << (e / 32))))
                q -= 4;
            *y++ = d * sc[e / 16] * q;
        }
    }
}

/* ---- q4_K: 8 sub-blocks of 32, L in 0..15, 6-bit scales and mins ---- */
void kern_ref_quantize_q4_K(const float *x, void *vy, int64_t n)
{
    block_q4_K *y = vy;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        quantize_superblock_k4(x, 15, -1.f, 0.1f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        /* each 32 bytes: elements j..j+31 in low nibbles, j+32..j+63 in high */
        for (int j = 0; j < QK_K; j += 64)
            for (int l = 0; l < 32; l++)
                y[i].qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

void kern_ref_dequantize_q4_K(const void *vx, float *y, int64_t n)
{
    const block_q4_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
        for (int j = 0; j < QK_K / 32; j++) {
            uint8_t sc, m;
            kern_get_scale_min_k4(j, x[i].scales, &sc, &m);
            const float dl = d * sc, ml = dmin * m;
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            for (int l = 0; l < 32; l++)
                *y++ = dl * ((q[l] >> shift) & 0xf) - ml;
        }
    }
}

/* ---- q5_K: q4_K with a fifth bit per element in qh ---- */
void kern_ref_quantize_q5_K(const float *x, void *vy, int64_t n)
{
    block_q5_K *y = vy;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        quantize_superblock_k4(x, 31, -0.5f, 0.1f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        /* sub-block j: low nibbles as q4_K, bit 4 in qh[l] bit j */
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int j = 0; j < QK_K / 32; j++) {
            for (int l = 0; l < 32; l++) {
                int q = L[32 * j + l];
                if (q > 15)
                    y[i].qh[l] |= (uint8_t)(1 << j);
                uint8_t *dst = &y[i].qs[32 * (j / 2) + l];
                if (j % 2 == 0)
                    *dst = (uint8_t)(q & 0xf);
                else
                    *dst |= (uint8_t)((q & 0xf) << 4);
            }
        }
    }
}

void kern_ref_dequantize_q5_K(const void *vx, float *y, int64_t n)
{
    const block_q5_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
        for (int j = 0; j < QK_K / 32; j++) {
            uint8_t sc, m;
            kern_get_scale_min_k4(j, x[i].scales, &sc, &m);
            const float dl = d * sc, ml = dmin * m;
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            for (int l = 0; l < 32; l++) {
                int v = ((q[l] >> shift) & 0xf) + ((x[i].qh[l] >> j) & 1) * 16;
                *y++ = dl * v - ml;
            }
        }
    }
}

/* ---- q6_K: 16 sub-blocks of 16, L in -32..31, 8-bit scales ---- */
void kern_ref_quantize_q6_K(const float *x, void *vy, int64_t n)
{
    block_q6_K *y = vy;
    int8_t L[QK_K];
    float scales[QK_K / 16];

    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ib++) {
            const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            if (fabsf(scale) > max_abs_scale) {
                max_abs_scale = fabsf(scale);
                max_scale = scale;
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = -128.f / max_scale;
        y[i].d = fp32_to_fp16(1 / iscale);
        for (int ib = 0; ib < QK_K / 16; ib++)
            y[i].scales[ib] = (int8_t)imin(127, kern_nearest_int(iscale * scales[ib]));
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = fp16_to_fp32(y[i].d) * y[i].scales[j];
            if (!d)
                continue;
            for (int ii = 0; ii < 16; ii++) {
                int l = kern_nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(imax(-32, imin(31, l)) + 32);
            }
        }
        /* per 128 elements: ql holds the low nibbles of e (low) and e+64
         * (high) at byte e%64; qh byte e%32 holds bits 4-5 at pair (e%128)/32 */
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = y[i].ql + 64 * h, *qh = y[i].qh + 32 * h;
            const int8_t *Lh = L + 128 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 0xf) | ((Lh[l + 64] & 0xf) << 4));
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 0xf) | ((Lh[l + 96] & 0xf) << 4));
                qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                                  ((Lh[l + 96] >> 4) << 6));
            }
        }
    }
}

/* The 6-bit value of element e (0..255) of a q6_K block, 0..63. */
static inline int q6_K_value(const block_q6_K *b, int e)
{
    const int h = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
    const uint8_t lq = b->ql[64 * h + l + 32 * (quarter & 1)];
    const int lo = quarter < 2 ? lq & 0xf : lq >> 4;
    const int hi = (b->qh[32 * h + l] >> (2 * quarter)) & 3;
    return lo | (hi << 4);
}

void kern_ref_dequantize_q6_K(const void *vx, float *y, int64_t n)
{
    const block_q6_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = fp16_to_fp32(x[i].d);
        for (int e = 0; e < QK_K; e++)
            *y++ = d * x[i].scales[e / 16] * (q6_K_value(&x[i], e) - 32);
    }
}

/* ---- q8_K: activations, d = max / -127 per 256, with sums of 16 ---- */
void kern_ref_quantize_q8_K(const float *x, void *vy, int64_t n)
{
    block_q8_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < QK_K; j++) {
            float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (!amax) {
            /* ggml leaves bsums unset here; zero them so the bytes are defined */
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.f / max;
        if (!isfinite(iscale)) {
            /* |max| below ~3.7e-37: every iscale * x[j] is infinite or NaN.
             * ggml's nearest_int gives -2^22 or 0 and its int8_t store keeps
             * the low byte, 0; write those zeros (and its d, a signed zero)
             * without the out-of-range conversion. */
            memset(&y[i], 0, sizeof y[i]);
            y[i].d = 1 / iscale;
            continue;
        }
        for (int j = 0; j < QK_K; j++)
            y[i].qs[j] = (int8_t)imin(127, kern_nearest_int(iscale * x[j]));
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int ii = 0; ii < 16; ii++)
                sum += y[i].qs[16 * j + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

void kern_ref_dequantize_q8_K(const void *vx, float *y, int64_t n)
{
    const block_q8_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K)
        for (int j = 0; j < QK_K; j++)
            y[j] = x[i].d * x[i].qs[j];
}

/* ---- dot products with q8_K ---- */
float kern_ref_vec_dot_q2_K_q8_K(int64_t n, const void *vx, const void *vy)
{
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int summs = 0, isum = 0;
        for (int j = 0; j < QK_K / 16; j++)
            summs += y[i].bsums[j] * (x[i].scales[j] >> 4);
        for (int g = 0; g < QK_K / 16; g++) {
            int isuml = 0;
            for (int e = 16 * g; e < 16 * g + 16; e++)
                isuml += y[i].qs[e] * ((x[i].qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3);
            isum += (x[i].scales[g] & 0xf) * isuml;
        }
        const float dall = y[i].d * fp16_to_fp32(x[i].d);
        const float dmin = y[i].d * fp16_to_fp32(x[i].dmin);
        sumf += dall * isum - dmin * summs;
    }
    return sumf;
}

float kern_ref_vec_dot_q3_K_q8_K(int64_t n, const void *vx, const void *vy)
{
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    int8_t sc[QK_K / 16];
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        kern_unpack_q3_K_scales(x[i].scales, sc);
        int isum = 0;
        for (int g = 0; g < QK_K / 16; g++) {
            int isuml = 0;
            for (int e = 16 * g; e < 16 * g + 16; e++) {
                int q = (x[i].qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
                if (!(x[i].hmask[e % 32] & (1 << (e / 32))))
                    q -= 4;
                isuml += y[i].qs[e] * q;
            }
            isum += sc[g] * isuml;
        }
        sumf += fp16_to_fp32(x[i].d) * y[i].d * isum;
    }
    return sumf;
}

/* One q4_K or q5_K block (qh NULL for q4_K: no fifth bits) times a q8_K
 * block: d * sum(sc * q * a) - dmin * sum(m * a), the latter from the bsums. */
static inline float dot_k45_block(ggml_half xd, ggml_half xdmin, const uint8_t *scales, const uint8_t *qs,
                                  const uint8_t *qh, const block_q8_K *y)
{
    int isum = 0, summs = 0;
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        kern_get_scale_min_k4(j, scales, &sc, &m);
        summs += (y->bsums[2 * j] + y->bsums[2 * j + 1]) * m;
        const uint8_t *q = qs + 32 * (j / 2);
        const int shift = 4 * (j % 2);
        int isuml = 0;
        for (int l = 0; l < 32; l++) {
            int v = ((q[l] >> shift) & 0xf) + (qh ? ((qh[l] >> j) & 1) * 16 : 0);
            isuml += y->qs[32 * j + l] * v;
        }
        isum += sc * isuml;
    }
    const float d = fp16_to_fp32(xd) * y->d;
    const float dmin = fp16_to_fp32(xdmin) * y->d;
    return d * isum - dmin * summs;
}

float kern_ref_vec_dot_q4_K_q8_K(int64_t n, const void *vx, const void *vy)
{
    const block_q4_K *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; i++)
        sumf += dot_k45_block(x[i].d, x[i].dmin, x[i].scales, x[i].qs, NULL, &y[i]);
    return sumf;
}

float kern_ref_vec_dot_q5_K_q8_K(int64_t n, const void *vx, const void *vy)
{
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; i++)
        sumf += dot_k45_block(x[i].d, x[i].dmin, x[i].scales, x[i].qs, x[i].qh, &y[i]);
    return sumf;
}

float kern_ref_vec_dot_q6_K_q8_K(int64_t n, const void *vx, const void *vy)
{
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int isum = 0;
        for (int g = 0; g < QK_K / 16; g++) {
            int isuml = 0;
            for (int e = 16 * g; e < 16 * g + 16; e++)
                isuml += y[i].qs[e] * (q6_K_value(&x[i], e) - 32);
            isum += x[i].scales[g] * isuml;
        }
        sumf += fp16_to_fp32(x[i].d) * y[i].d * isum;
    }
    return sumf;
}

void kern_register_ref_kquants(struct kern_type_ops *tab)
{
    tab[GGML_TYPE_Q2_K] = (struct kern_type_ops){kern_ref_dequantize_q2_K, kern_ref_quantize_q2_K,
                                                 kern_ref_quantize_q8_K, kern_ref_vec_dot_q2_K_q8_K, GGML_TYPE_Q8_K};
    tab[GGML_TYPE_Q3_K] = (struct kern_type_ops){kern_ref_dequantize_q3_K, kern_ref_quantize_q3_K,
                                                 kern_ref_quantize_q8_K, kern_ref_vec_dot_q3_K_q8_K, GGML_TYPE_Q8_K};
    tab[GGML_TYPE_Q4_K] = (struct kern_type_ops){kern_ref_dequantize_q4_K, kern_ref_quantize_q4_K,
                                                 kern_ref_quantize_q8_K, kern_ref_vec_dot_q4_K_q8_K, GGML_TYPE_Q8_K};
    tab[GGML_TYPE_Q5_K] = (struct kern_type_ops){kern_ref_dequantize_q5_K, kern_ref_quantize_q5_K,
                                                 kern_ref_quantize_q8_K, kern_ref_vec_dot_q5_K_q8_K, GGML_TYPE_Q8_K};
    tab[GGML_TYPE_Q6_K] = (struct kern_type_ops){kern_ref_dequantize_q6_K, kern_ref_quantize_q6_K,
                                                 kern_ref_quantize_q8_K, kern_ref_vec_dot_q6_K_q8_K, GGML_TYPE_Q8_K};
    /* Activation format only: no dot product with q8_K as the weight. */
    tab[GGML_TYPE_Q8_K] = (struct kern_type_ops){kern_ref_dequantize_q8_K, kern_ref_quantize_q8_K,
                                                 kern_ref_quantize_q8_K, NULL, GGML_TYPE_Q8_K};
}
