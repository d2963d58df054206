/*
 * Private to kernels/: the reference (plain C) quantized-type functions.
 *
 * These are the specification of every quantized type: the SIMD files test
 * against them and may call them directly (for instance the activation
 * quantizers, or as the tail of a row). They reproduce ggml's reference
 * algorithms (quantize_row_*_ref, dequantize_row_*, the generic
 * ggml_vec_dot_*), so the bytes they write are the bytes ggml writes.
 *
 * Conventions, for every function below:
 *   quantize:   x is n floats, y receives n / block_size blocks.
 *   dequantize: x is n / block_size blocks, y receives n floats.
 *   vec_dot:    x is a weight row of n elements, y the same n elements in the
 *               weight type's vec_dot type (q8_0, q8_1 or q8_K).
 * n must be a multiple of the type's block size (32, or QK_K = 256 for the
 * k-quants and q8_K). None of them allocates, keeps state or fails, so they
 * may run on any number of rows at once. Inputs must be finite; a block whose
 * scale does not fit in fp16 (|x| above ~65504 times the type's largest
 * level) stores an infinite scale, exactly as ggml does.
 */
#ifndef MAAS_KERNELS_QUANT_REF_H
#define MAAS_KERNELS_QUANT_REF_H

#include "kernels/kernels_int.h"

#include <string.h>

/* Round to nearest, ties to even, as ggml's nearest_int: adding 1.5 * 2^23
 * pushes the fraction out of the mantissa. Exact for |v| < 2^22; for larger
 * or non-finite v it returns some value in [-2^22, 2^22) without undefined
 * behaviour, and every caller clamps the result. */
static inline int kern_nearest_int(float v)
{
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* ---- four-lane vectors for the scale searches ----
 * GCC/Clang vector extensions: plain SSE2 on x86-64, scalar code elsewhere.
 * Every operation below acts on each lane exactly as the scalar C operation
 * would (IEEE single precision, no fusion), so code written on lanes gives
 * the same bits as the scalar algorithm, sub-block by sub-block. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f v4f_set1(float a)
{
    return (v4f){a, a, a, a};
}
static inline v4f v4f_select(v4i mask, v4f a, v4f b) /* mask ? a : b, per lane */
{
    return (v4f)(((v4i)a & mask) | ((v4i)b & ~mask));
}
static inline v4i v4i_select(v4i mask, v4i a, v4i b)
{
    return (a & mask) | (b & ~mask);
}
static inline v4f v4f_abs(v4f a)
{
    return (v4f)((v4i)a & 0x7fffffff);
}
/* kern_nearest_int on each lane, clamped to lo..hi */
static inline v4i v4_nearest_clamp(v4f v, int lo, int hi)
{
    v4i i = (v4i)(v + v4f_set1(12582912.f));
    i = (i & 0x007fffff) - 0x00400000;
    i = v4i_select(i < lo, (v4i){lo, lo, lo, lo}, i);
    return v4i_select(i > hi, (v4i){hi, hi, hi, hi}, i);
}

/* The 16 levels of iq4_nl (and iq4_xs), sorted. */
extern const int8_t kern_kvalues_iq4nl[16];

/* ---- 32-element types: quant_ref.c ---- */
void kern_ref_quantize_q4_0(const float *x, void *y, int64_t n);
void kern_ref_quantize_q4_1(const float *x, void *y, int64_t n);
void kern_ref_quantize_q5_0(const float *x, void *y, int64_t n);
void kern_ref_quantize_q5_1(const float *x, void *y, int64_t n);
void kern_ref_quantize_q8_0(const float *x, void *y, int64_t n);
void kern_ref_quantize_q8_1(const float *x, void *y, int64_t n);
void kern_ref_quantize_iq4_nl(const float *x, void *y, int64_t n);

void kern_ref_dequantize_q4_0(const void *x, float *y, int64_t n);
void kern_ref_dequantize_q4_1(const void *x, float *y, int64_t n);
void kern_ref_dequantize_q5_0(const void *x, float *y, int64_t n);
void kern_ref_dequantize_q5_1(const void *x, float *y, int64_t n);
void kern_ref_dequantize_q8_0(const void *x, float *y, int64_t n);
void kern_ref_dequantize_q8_1(const void *x, float *y, int64_t n);
void kern_ref_dequantize_iq4_nl(const void *x, float *y, int64_t n);

float kern_ref_vec_dot_q4_0_q8_0(int64_t n, const void *x, const void *y);
float kern_ref_vec_dot_q4_1_q8_1(int64_t n, const void *x, const void *y);
float kern_ref_vec_dot_q5_0_q8_0(int64_t n, const void *x, const void *y);
float kern_ref_vec_dot_q5_1_q8_1(int64_t n, const void *x, const void *y);
float kern_ref_vec_dot_q8_0_q8_0(int64_t n, const void *x, const void *y);
float kern_ref_vec_dot_iq4_nl_q8_0(int64_t n, const void *x, const void *y);

/* ---- k-quants and q8_K: kquant_ref.c ---- */
void kern_ref_quantize_q2_K(const float *x, void *y, int64_t n);
void kern_ref_quantize_q3_K(const float *x, void *y, int64_t n);
void kern_ref_quantize_q4_K(const float *x, void *y, int64_t n);
void kern_ref_quantize_q5_K(const float *x, void *y, int64_t n);
void kern_ref_quantize_q6_K(const float *x, void *y, int64_t n);
void kern_ref_quantize_q8_K(const float *x, void *y, int64_t n);

void kern_ref_dequantize_q2_K(const void *x, float *y, int64_t n);
void kern_ref_dequantize_q3_K(const void *x, float *y, int64_t n);
void kern_ref_dequantize_q4_K(const void *x, float *y, int64_t n);
void kern_ref_dequantize_q5_K(const void *x, float *y, int64_t n);
void kern_ref_dequantize_q6_K(const void *x, float *y, int64_t n);
void kern_ref_dequantize_q8_K(const void *x, float *y, int64_t n);

float kern_ref_vec_dot_q2_K_q8_K(int64_t n, const void *x, const void *y);
float kern_ref_vec_dot_q3_K_q8_K(int64_t n, const void *x, const void *y);
float kern_ref_vec_dot_q4_K_q8_K(int64_t n, const void *x, const void *y);
float kern_ref_vec_dot_q5_K_q8_K(int64_t n, const void *x, const void *y);
float kern_ref_vec_dot_q6_K_q8_K(int64_t n, const void *x, const void *y);

/* Unpacks the 6-bit scale and min of sub-block j (0..7) of a q4_K / q5_K
 * block from its 12 packed bytes (ggml's get_scale_min_k4). */
void kern_get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m);
/* Unpacks the 16 6-bit scales of a q3_K block to signed values (-32..31). */
void kern_unpack_q3_K_scales(const uint8_t packed[12], int8_t scales[16]);

/* Fills the k-quant and q8_K entries of tab (called by kern_register_ref_quants). */
void kern_register_ref_kquants(struct kern_type_ops *tab);

#endif
