/*
 * kernels — tensor types and the numeric operations of inference.
 *
 * Every operation has a plain-C reference (*_ref.c, ops.c, attn.c) that is
 * its specification; the versions for an instruction set live in files named
 * *_avx2.c / *_avxvnni.c / *_avx512.c, compiled with those flags only. Each variant
 * is one entry in a list (kernels.c) with a CPUID check and a register
 * function that overrides, in a table of function pointers already holding
 * the reference, what it speeds up. The best variant the CPU supports is
 * chosen once at start-up; MAAS_KERNELS=<name> forces one (for tests and
 * debugging).
 *
 * Weights are rows of a type from gguf.h; activations are f32. A dot product
 * of a quantized weight row with activations first converts the activations
 * to the type's "vec_dot type" (q8_0, q8_1 or q8_K), as ggml does, so the
 * inner loop is integer arithmetic.
 *
 * Call kern_init() or kernels_init() once before anything else (both are
 * idempotent).
 */
#ifndef MAAS_KERNELS_H
#define MAAS_KERNELS_H

#include "core/core.h"
#include "gguf/gguf.h"
#include "kernels/blocks.h"

#include <stdbool.h>
#include <stdint.h>

/* Chooses the variant: the one MAAS_KERNELS names or else the best this CPU
 * supports. -1 with ERR_INVALID when MAAS_KERNELS names a variant that does
 * not exist or that this CPU lacks (the best one is then in use). */
int kern_init(struct err *e);
/* kern_init for callers with nowhere to report: a bad MAAS_KERNELS is
 * logged as an error and the best variant used. */
void kernels_init(void);

/* The variants, 0 .. kern_variant_count() - 1, in order of preference from
 * the lowest: 0 is "ref", the portable C every other one is tested against. */
int kern_variant_count(void);
const char *kern_variant_name(int i);      /* "ref", "avx2", ...; NULL out of range */
bool kern_variant_supported(int i);        /* this CPU (and OS) can run variant i */
/* Switches the table to the named variant (tests compare variants; call
 * when no kernel is running). -1 with ERR_NOT_FOUND for an unknown name,
 * ERR_UNAVAILABLE when this CPU lacks it; the table is then unchanged. */
int kern_use_variant(const char *name, struct err *e);
const char *kern_variant_current(void);    /* the name of the variant in use */

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

/* ---- general f32 matrix multiply (training; gemm_f32.c) ----
 * C = beta*C + op(A) * op(B), row-major. op(A) is M x K: A itself (ta =
 * false, A[i*lda + k]) or A transposed (ta = true, A[k*lda + i]); op(B) is
 * K x N: B (tb = false, B[k*ldb + j]) or B transposed (tb = true,
 * B[j*ldb + k]). beta is 0 (C is overwritten, may hold garbage/NaN) or 1
 * (accumulate). Work is split over pool's threads (pool NULL: the calling
 * thread alone; call with NULL from inside a pool job). Each element of C
 * is summed by one thread in an order that does not depend on the thread
 * count, so results are bit-identical for any number of threads: K is cut
 * in fixed blocks of KERN_GEMM_KC from k = 0, each block's products are
 * summed in order of k by fused multiply-adds from 0, and each block's sum
 * is added to C in turn (the first stored when beta is 0). The SIMD
 * variants therefore agree with each other bit for bit; the reference
 * ("ref", the specification) sums each element in double.
 *
 * Operands are packed into per-thread panels kept between calls (grown on
 * demand, freed when the thread exits), so a transpose costs only the
 * packing and concurrent callers are safe. If such a buffer cannot be
 * allocated the reference computes the result. */
#define KERN_GEMM_KC 256
void kern_gemm_f32(struct pool *pool, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                   const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* ---- element-wise and row operations (f32) ---- */
/* y = x / rms(x) * w (w may be NULL); y may equal x. */
void kern_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);
/* out[i] = silu(gate[i]) * up[i]; out may alias gate or up. */
void kern_swiglu(float *out, const float *gate, const float *up, int64_t n);
float kern_silu(float x);
/* y = gelu(x), ggml's tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x +
 * 0.044715 x^3))), computed as x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3));
 * y may be x. */
void kern_gelu(float *y, const float *x, int64_t n);
/* ---- attention ----
 * n_q query heads that share one KV head attending over a paged sequence:
 * n_pos positions (0 .. n_pos-1) reached through the block table. k and v
 * point at the sequence's first slot of block 0 for this KV head; block b's
 * slots start blocks[b] * block_stride elements further, head_dim elements
 * per position. q and out hold n_q heads of head_dim floats back to back.
 * Softmax over q.k * scale, computed online (no buffer proportional to the
 * context). */
struct kern_attn {
    const float *q;           /* n_q * head_dim */
    float *out;               /* n_q * head_dim */
    const void *k, *v;        /* elements of kv_type */
    size_t block_stride;      /* elements between consecutive blocks */
    const int32_t *blocks;
    int n_pos, block_size, head_dim;
    float scale;
};
/* kv_type is GGML_TYPE_F32 or GGML_TYPE_F16. */
void kern_attn(const struct kern_attn *a, enum ggml_type kv_type, int n_q);
/* dst[i] = fp32_to_fp16(src[i]) for i < n (how K and V are written). */
void kern_store_f16(uint16_t *dst, const float *src, int64_t n);

float kern_dot_f32(const float *a, const float *b, int64_t n);
void kern_axpy(float *y, float a, const float *x, int64_t n); /* y += a*x */
void kern_add(float *y, const float *x, int64_t n);           /* y += x */

/* ---- machine probes (maas bench, bench/) ----
 * They use the best variant this CPU supports, whatever variant is in use.
 * Best of reps timed passes of all of pool's threads reading a buffer of
 * `bytes` (vectorised where the variant can). GB/s (1e9 bytes per second),
 * or -1 with ERR_NOMEM. */
double kern_read_bandwidth(struct pool *pool, size_t bytes, int reps, struct err *e);

/* The multiply-add rate of this CPU in register-only loops (no memory
 * traffic), summed over pool's threads, each thread's rate per second of
 * its own CPU time (so other processes lower it little), best of 3:
 *   KERN_MAC_FMA       vfmadd231ps ymm: 8 MACs per instruction;
 *   KERN_MAC_I8_PAIR   vpmaddubsw + vpmaddwd + vpaddd: the exact 8-bit block
 *                      dot of the q8 kernels, 32 MACs per pair;
 *   KERN_MAC_I8_ALONE  vpmaddubsw + vpaddw: 32 MACs with 16-bit results, too
 *                      narrow to sum a block: a bound, not a kernel;
 *   KERN_MAC_I8_VNNI   vpdpbusd zmm: 64 MACs per instruction into int32, the
 *                      block dot of the avx512 variant's tiles (ymm, 32 MACs,
 *                      where the best variant is avxvnni; 0 where the best
 *                      supported variant has no VNNI);
 *   KERN_MAC_I8_AMX    tdpbssd: 16 x 16 x 64 = 16,384 MACs per instruction
 *                      into int32 tiles, the amx variant's tiles (0 where it
 *                      is not the best supported variant).
 * MACs per second; *one_thread (if not NULL) gets thread 0's rate. 0 (and
 * *one_thread 0) when no supported variant has a peak probe. */
enum kern_mac_kind { KERN_MAC_FMA, KERN_MAC_I8_PAIR, KERN_MAC_I8_ALONE, KERN_MAC_I8_VNNI, KERN_MAC_I8_AMX };
#define KERN_MAC_KINDS 5
double kern_mac_peak(struct pool *pool, enum kern_mac_kind kind, double *one_thread);

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
