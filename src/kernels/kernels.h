/*
 * kernels — tensor types and the numeric operations of inference.
 *
 * Every operation has a plain-C reference (kernels_ref*.c) that is its
 * specification; AVX2 (and, where written, AVX-512) versions live in files
 * named *_avx2.c / *_avx512.c, compiled with those flags only, and are chosen
 * once at start-up from CPUID into a table of function pointers.
 * MAAS_KERNELS=ref|avx2|avx512 forces a level (for tests and debugging).
 *
 * Weights are rows of a type from gguf.h; activations are f32. A dot product
 * of a quantized weight row with activations first converts the activations
 * to the type's "vec_dot type" (q8_0, q8_1 or q8_K), as ggml does, so the
 * inner loop is integer arithmetic.
 *
 * Call kernels_init() once before anything else (it is idempotent).
 */
#ifndef MAAS_KERNELS_H
#define MAAS_KERNELS_H

#include "core/core.h"
#include "gguf/gguf.h"
#include "kernels/blocks.h"

#include <stdbool.h>
#include <stdint.h>

enum kern_isa { KERN_REF = 0, KERN_AVX2 = 1, KERN_AVX512 = 2 };

void kernels_init(void);
enum kern_isa kernels_isa(void);           /* the level in use */
enum kern_isa kernels_cpu_isa(void);       /* the best level this CPU supports */
const char *kernels_isa_name(enum kern_isa isa);
/* Switches the table to a level (tests compare levels). -1 if the CPU lacks it. */
int kernels_force_isa(enum kern_isa isa);

/* ---- scalar conversions ---- */
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);            /* round to nearest even */
float bf16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);            /* round to nearest even, NaN kept quiet */

/* ---- per-type operations ---- */
/* Functions of one type; n is a multiple of the type's block size. */
typedef void (*kern_to_float_fn)(const void *x, float *y, int64_t n);
typedef void (*kern_from_float_fn)(const float *x, void *y, int64_t n);
/* Dot product of n elements: a weight row x (type t) with y (t's vec_dot type). */
typedef float (*kern_vec_dot_fn)(int64_t n, const void *x, const void *y);

struct kern_type_ops {
    kern_to_float_fn to_float;        /* dequantize */
    kern_from_float_fn from_float;    /* quantize (reference algorithm, deterministic) */
    kern_from_float_fn from_float_act;/* fast quantizer used for activations of this type */
    kern_vec_dot_fn vec_dot;
    enum ggml_type vec_dot_type;
};

/* The current table entry for t; NULL members mean unsupported. */
const struct kern_type_ops *kern_ops(enum ggml_type t);
/* True when t can be dequantized and multiplied (the weight types). */
bool kern_type_supported(enum ggml_type t);
/* True when t can be produced by kern_quantize. */
bool kern_type_quantizable(enum ggml_type t);

/* Quantizes nrows rows of n_per_row floats into y (ggml_row_size bytes per
 * row). Returns the bytes written. Deterministic: the same input gives the
 * same bytes on every ISA. */
size_t kern_quantize(enum ggml_type t, const float *x, void *y, int64_t nrows, int64_t n_per_row);
void kern_dequantize_row(enum ggml_type t, const void *x, float *y, int64_t n);

/* ---- matrix multiplication ----
 * y[i][r] = sum_k W[r][k] * x[i][k] for r < n_out, i < n_tok.
 * W: n_out rows of n_in elements of type wt (row stride ggml_row_size(wt, n_in)).
 * x: n_tok rows of n_in f32 (row stride n_in). y: n_tok rows, row stride ldy >= n_out.
 * Work is split over the pool's threads. wbuf must hold at least
 * kern_matmul_wsize(wt, n_in, n_tok) bytes (activations converted to the
 * vec_dot type); callers allocate it once, up front. */
size_t kern_matmul_wsize(enum ggml_type wt, int64_t n_in, int64_t n_tok);
void kern_matmul(struct pool *pool, enum ggml_type wt, const void *W, int64_t n_out, int64_t n_in, const float *x,
                 int64_t n_tok, float *y, int64_t ldy, void *wbuf);

/* Several products with the same row length n_in in one pass: the work
 * units of all of them are shared by the pool's threads from one counter
 * (one wake-up of the pool instead of one per product, and small matrices
 * no longer leave threads idle), and products that read the same x (same
 * pointer, tokens and activation format) convert it once. Every output is
 * the same, bit for bit, as kern_matmul's. wbuf must hold
 * kern_matmul_multi_wsize(mm, n, n_in) bytes; kern_matmul_wsize_bound()
 * bounds that for any n_products products of one weight type whose token
 * counts add up to total_tok. */
struct kern_mm {
    enum ggml_type wt;
    const void *W;        /* n_out rows of n_in elements of type wt */
    int64_t n_out;
    const float *x;       /* n_tok rows of n_in f32 */
    int64_t n_tok;
    float *y;             /* n_tok rows, row stride ldy >= n_out */
    int64_t ldy;
};
size_t kern_matmul_multi_wsize(const struct kern_mm *mm, int n, int64_t n_in);
size_t kern_matmul_wsize_bound(enum ggml_type wt, int64_t n_in, int64_t total_tok, int n_products);
void kern_matmul_multi(struct pool *pool, const struct kern_mm *mm, int n, int64_t n_in, void *wbuf);

/* ---- element-wise and row operations (f32) ---- */
/* y = x / rms(x) * w (w may be NULL); y may equal x. */
void kern_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);
/* In-place softmax over n values. */
void kern_softmax(float *x, int64_t n);
/* out[i] = silu(gate[i]) * up[i]; out may alias gate or up. */
void kern_swiglu(float *out, const float *gate, const float *up, int64_t n);
float kern_silu(float x);
/* RoPE on n_head heads of head_dim floats each (contiguous), rotating the
 * first n_rot dims of each head at position pos. theta_i = pos * freq_scale *
 * base^(-2i/n_rot). neox: pairs (i, i + n_rot/2); otherwise (2i, 2i+1). */
void kern_rope(float *x, int64_t n_head, int64_t head_dim, int64_t n_rot, int64_t pos, float base, float freq_scale,
               bool neox);
float kern_dot_f32(const float *a, const float *b, int64_t n);
void kern_axpy(float *y, float a, const float *x, int64_t n); /* y += a*x */
void kern_add(float *y, const float *x, int64_t n);           /* y += x */

/* ---- inline AVX2 math for the *_avx2.c files of any module ----
 * e^x of 8 floats: Cody-Waite range reduction and a degree-6 polynomial;
 * relative error about 2e-7 over [-87, 88] (inputs are clamped to it, so
 * x below -87 gives about 0). */
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
static inline __m256 kern_exp256(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
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
#endif

#endif
