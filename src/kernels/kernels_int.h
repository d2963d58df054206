/* Private to kernels/: the dispatch tables that each ISA file fills in. */
#ifndef MAAS_KERNELS_INT_H
#define MAAS_KERNELS_INT_H

#include "kernels/kernels.h"

/* Tiled matrix kernels (gemm_avx2.c) for kern_matmul: y[c * ldy + r] =
 * dot(weight row r, activation row c) for r < nr <= mr and c < nc <= nc_max,
 * where w holds weight rows ldw bytes apart and a holds activation rows
 * (already in the vec_dot type) lda bytes apart; n is the row length. Each
 * weight block is loaded once for all nc activation rows. */
typedef void (*kern_tile_fn)(int64_t n, const void *w, size_t ldw, int nr, const void *a, size_t lda, int nc,
                             float *y, int64_t ldy);
struct kern_tile {
    kern_tile_fn fn; /* NULL when the type has no tiled kernel */
    int mr, nc_max;  /* largest tile: weight rows x activation rows */
    bool over_f32;   /* faster than the f32 path (ftile) at every token count */
    /* NULL, or the tile reads its activations packed (gemm_amx.c): groups of
     * KERN_PACK_TOKENS activation rows of the type's vec_dot type, q8_0
     * (KERN_PACK_BLOCK bytes per block of 32 values) or q8_K
     * (KERN_PACK_SUPER bytes per super-block of 256); pack(rows, lda,
     * n_rows <= KERN_PACK_TOKENS, n, dst) writes one group (tokens past
     * n_rows zero), in the format of the weight type's tile (bf16:
     * below).
     * kern_matmul packs every group once per product and then calls fn with
     * a = the group of its first token (always a multiple of
     * KERN_PACK_TOKENS) and lda = the group's size, KERN_PACK_SIZE(n,
     * KERN_PACK_TOKENS). */
    void (*pack)(const void *act, size_t lda, int n_rows, int64_t n, void *dst);
};
#define KERN_PACK_TOKENS 16
/* q8_0: the block's 32 bytes of 16 tokens, then their 16 scales */
#define KERN_PACK_BLOCK (8 * 64 + KERN_PACK_TOKENS * 4)
/* q8_K: the 8 blocks of 32 of 16 tokens, their 16 scales, then the 8 x 16
 * block sums as floats */
#define KERN_PACK_SUPER (8 * (8 * 64) + KERN_PACK_TOKENS * 4 + 8 * KERN_PACK_TOKENS * 4)
/* Bytes per 32 values that bound both formats (584 against 576). */
#define KERN_PACK_PER32 (KERN_PACK_SUPER / 8 > KERN_PACK_BLOCK ? KERN_PACK_SUPER / 8 : KERN_PACK_BLOCK)
_Static_assert(KERN_PACK_SUPER % 8 == 0, "KERN_PACK_PER32 bounds the q8_K format exactly");
/* Bytes of the packed activations of n_tok rows of n values, either format
 * (kern_matmul_wsize counts them whatever the ISA in use). */
#define KERN_PACK_SIZE(n, n_tok) \
    ((size_t)(((n_tok) + KERN_PACK_TOKENS - 1) / KERN_PACK_TOKENS) * (size_t)((n) / 32) * KERN_PACK_PER32)
/* bf16 weights (bf16_amx.c) pack their f32 activations the same way (act
 * and lda are then the f32 rows): groups of KERN_PACK_TOKENS tokens, each
 * KERN_PACK_BF16_BLOCK bytes per 32 values of k (16 pairs x 16 tokens of
 * bf16), the last block of a row whose length is not a multiple of 32
 * padded with zeros. */
#define KERN_PACK_BF16_BLOCK (16 * 64)
#define KERN_PACK_BF16_SIZE(n, n_tok) \
    ((size_t)(((n_tok) + KERN_PACK_TOKENS - 1) / KERN_PACK_TOKENS) * (size_t)(((n) + 31) / 32) * KERN_PACK_BF16_BLOCK)
struct kern_tile kern_avx2_tile(enum ggml_type t);   /* gemm_avx2.c */
struct kern_tile kern_avx512_tile(enum ggml_type t); /* gemm_avx512.c */
struct kern_tile kern_avxvnni_tile(enum ggml_type t); /* gemm_avxvnni.c */


/* f32 tile kernel (sgemm_avx2.c, sgemm_avx512.c) for prompt processing on
 * dequantized weights: for r < nr <= KERN_FTILE_MR and c < nc <= nc_max
 * (at most KERN_FTILE_NR_MAX), y[c * ldy + r] = sum over k < n of
 * w[r * ldw + k] * a[c * lda + k] (added to y when accumulate is non-zero);
 * n is a multiple of 8. */
#define KERN_FTILE_MR 4
#define KERN_FTILE_NR_MAX 6
typedef void (*kern_ftile_fn)(int64_t n, const float *w, int64_t ldw, int nr, const float *a, int64_t lda, int nc,
                              float *y, int64_t ldy, int accumulate);
struct kern_ftile {
    kern_ftile_fn fn; /* NULL: no f32 path */
    int nc_max;       /* activation rows per tile, at most */
};
struct kern_ftile kern_avx2_ftile(void);   /* sgemm_avx2.c: 4 x 3 */
struct kern_ftile kern_avx512_ftile(void); /* sgemm_avx512.c: 4 x 6 */
/* Register-tile micro-kernel of kern_gemm_f32 (gemm_f32.c drives it;
 * gemm_f32_body.h is its one body, compiled per ISA by sgemm_avx2.c and
 * sgemm_avx512.c): for i < mr, j < nr,
 *   c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0) + s(i, j),
 * where s(i, j) starts at 0 and takes one fused multiply-add per k < kc, in
 * order of k, of pa[k * mr + i] and pb[k * nr + j] (the packed panels). */
typedef void (*kern_gemm_ukr_fn)(int64_t kc, const float *pa, const float *pb, float *c, int64_t ldc, int accumulate);
/* The transposing pack: dst[k * w + r] = x[r * rs + k] for r < rows <= w,
 * k < kc (the other rows of dst untouched). */
typedef void (*kern_gemm_pack_t_fn)(const float *x, int64_t rs, int64_t kc, int rows, int w, float *dst);
struct kern_gemm_ukr {
    kern_gemm_ukr_fn fn;        /* NULL: kern_gemm_f32 runs the reference */
    int mr, nr;                 /* tile: rows of op(A) x columns of op(B) */
    kern_gemm_pack_t_fn pack_t; /* NULL: the plain-C loop of gemm_f32.c */
};
struct kern_gemm_ukr kern_avx2_gemm_ukr(void);   /* sgemm_avx2.c: 6 x 16 */
struct kern_gemm_ukr kern_avx512_gemm_ukr(void); /* sgemm_avx512.c: 12 x 32 */
void kern_avx2_gemm_pack_t(const float *x, int64_t rs, int64_t kc, int rows, int w, float *dst); /* sgemm_avx2.c */
/* A q8_0, q8_1 or q8_K activation row of n values as floats d * q (exact). */
void kern_avx2_act_to_float(enum ggml_type t, const void *src, float *dst, int64_t n);

/* Matrix-vector kernels for decode (gemv_avx2.c), for weight types whose
 * activations are q8_0: prepare() expands one q8_0 activation row of n
 * elements into KERN_GEMV_ACT_SIZE(n) bytes (scales as floats, values and
 * their magnitudes, block sums) that fn() then reads for every weight row:
 * y[r] = dot(weight row r, activation) for r < nr, rows ldw bytes apart. */
#define KERN_GEMV_ACT_SIZE(n) ((size_t)((n) / 32) * 72 + 64) /* includes 32 bytes to align it */
struct kern_gemv {
    /* NULL when the type has no gemv (fn NULL too), or when fn reads the
     * activation row as converted, in the vec_dot type (the k-quants'
     * kernels of kquant_avx512.c: a q8_K row) */
    void (*prepare)(const void *q8_0_row, void *act, int64_t n);
    void (*fn)(int64_t n, const void *w, size_t ldw, int64_t nr, const void *act, float *y);
};
struct kern_gemv kern_avx2_gemv(enum ggml_type t);   /* gemv_avx2.c */
struct kern_gemv kern_avx512_gemv(enum ggml_type t); /* gemv_avx512.c */
struct kern_gemv kern_avxvnni_gemv(enum ggml_type t); /* gemv_avxvnni.c */

/* f32 row operations that have SIMD versions. */
struct kern_f32_ops {
    float (*dot)(const float *a, const float *b, int64_t n);
    void (*axpy)(float *y, float a, const float *x, int64_t n);
    void (*rmsnorm)(float *y, const float *x, const float *w, int64_t n, float eps);
    void (*swiglu)(float *out, const float *gate, const float *up, int64_t n);
    void (*gelu)(float *y, const float *x, int64_t n);
};

/* Every dispatched operation. The reference registration fills all of it
 * (NULL below means "this variant has no such kernel; use the portable
 * path"); a variant's register function then overrides what it speeds up. */
struct kern_table {
    struct kern_type_ops type[GGML_TYPE_COUNT]; /* to-float, quantize, vec_dot */
    struct kern_f32_ops f32;
    /* attention of one head over a paged f32 or f16 sequence (attn.c) */
    void (*attn_f32)(const struct kern_attn *a);
    void (*attn_f16)(const struct kern_attn *a);
    /* n_q > 1 f16 heads sharing one KV head; NULL: attn_f16 per head */
    void (*attn_group_f16)(const struct kern_attn *a, int n_q);
    void (*store_f16)(uint16_t *dst, const float *src, int64_t n);
    /* matrix kernels for kern_matmul (above); NULL: none */
    struct kern_tile (*tile)(enum ggml_type t, int64_t n_tok); /* for a product of n_tok > 1 tokens */
    struct kern_gemv (*gemv)(enum ggml_type t);
    struct kern_ftile ftile;
    struct kern_gemm_ukr gemm_f32; /* kern_gemm_f32's micro-kernel */
    void (*act_to_float)(enum ggml_type t, const void *src, float *dst, int64_t n);
    /* the machine probes (kern_read_bandwidth, kern_mac_peak; probe.c) */
    double (*read_bandwidth)(struct pool *pool, size_t bytes, int reps, struct err *e);
    double (*mac_peak)(struct pool *pool, enum kern_mac_kind kind, double *one_thread); /* NULL: none */
};

extern struct kern_table kern_tab;  /* the table in use */
extern struct kern_table kern_best; /* the best supported variant's (for the probes) */

/* The reference registrations, each filling its part of the table. */
void kern_register_ref_float(struct kern_table *tab);   /* f32, f16, bf16: kernels.c */
void kern_register_ref_quants(struct kern_table *tab);  /* q4_0 ... q6_k, iq4_nl, q8_*: quant_ref.c */
void kern_register_ref_ops(struct kern_table *tab);     /* f32 operations: ops.c */
void kern_register_ref_attn(struct kern_table *tab);    /* attn.c */
void kern_register_ref_probes(struct kern_table *tab);  /* probe.c */

/* A variant's register function: called on a table already holding the
 * reference, it overrides the entries it implements. The AVX2 variant
 * spreads over its files, one part each; kern_register_avx2 (quant_avx2.c)
 * fills the per-type entries and the matrix kernels and calls the others. */
void kern_register_avx2(struct kern_table *tab);
void kern_register_avx2_ops(struct kern_table *tab);    /* ops_avx2.c */
void kern_register_avx2_attn(struct kern_table *tab);   /* attn_avx2.c */
void kern_register_avx2_probes(struct kern_table *tab); /* probe_avx2.c */
/* The AVX-512 variant (F/BW/VL/DQ with VNNI; gemm_avx512.c): the AVX2 table
 * with the 8-bit dot products of the q8_0-family tiles and decode kernels
 * done by vpdpbusd. */
void kern_register_avx512(struct kern_table *tab);
void kern_register_avx512_probes(struct kern_table *tab); /* probe_avx512.c */
/* The AVX-VNNI variant (AVX2 with the VEX-encoded 256-bit vpdpbusd of Alder
 * Lake, Sapphire Rapids, Zen 5; gemm_avxvnni.c): the AVX2 table with the
 * q8_0-family tiles and decode kernels done by vpdpbusd on ymm. */
void kern_register_avxvnni(struct kern_table *tab);
void kern_register_avxvnni_probes(struct kern_table *tab); /* probe_avxvnni.c */
void kern_register_avx512_kquants(struct kern_table *tab); /* kquant_avx512.c: q2_K..q6_K vec_dot */
/* The AMX variant (AMX-TILE and AMX-INT8 on top of AVX-512 VNNI;
 * gemm_amx.c): the AVX-512 table with the tiles of the q8_0 family and of
 * q4_K, q5_K and q6_K done by the tile unit from a few tokens on. kern_cpu_amx: the CPU has it, the OS
 * lets this process use it, and a trial run gives the right answer. */
void kern_register_amx(struct kern_table *tab);
bool kern_cpu_amx(void);
/* The amx variant's bf16 tile (bf16_amx.c; AMX-BF16 tdpbf16ps on packed
 * bf16-rounded activations), or the AVX-512 variant's when the CPU lacks
 * AMX-BF16. */
struct kern_tile kern_amx_bf16_tile(int64_t n_tok);
/* The tile configuration this thread has loaded: the tile kernels of
 * gemm_amx.c and bf16_amx.c use different tile shapes, and each loads its
 * own when this names another (the probes set KERN_AMX_CFG_NONE after they
 * release the tiles). */
enum { KERN_AMX_CFG_NONE, KERN_AMX_CFG_I8, KERN_AMX_CFG_BF16 };
extern __thread int kern_amx_config;
/* Loads, in this thread, a tile configuration (palette 1) of tiles 0 ..
 * n_tiles - 1 each 16 rows x 64 bytes (gemm_amx.c; AMX CPUs only). */
void kern_amx_load_uniform(int n_tiles);

/* The multiply-add probes' driver (probe_avx2.c): loop(kind, iters, &rate,
 * &sink) runs iters iterations of a register-only loop and stores its MACs
 * per second of the thread's CPU time; kern_peak_run runs it on every
 * thread of pool, 3 times, and returns the best sum (*one_thread: the best
 * rate of thread 0). */
typedef void (*kern_peak_loop_fn)(enum kern_mac_kind kind, long iters, double *macs_per_s, int *sink);
double kern_peak_run(struct pool *pool, kern_peak_loop_fn loop, enum kern_mac_kind kind, double *one_thread);
/* This thread's CPU time in seconds (CLOCK_THREAD_CPUTIME_ID), the probes' clock. */
double kern_thread_cpu_s(void);
/* The AVX-512 variant's mac_peak (0 for KERN_MAC_I8_AMX). */
double kern_avx512_mac_peak(struct pool *pool, enum kern_mac_kind kind, double *one_thread);
/* The AVX2 variant's mac_peak (0 for KERN_MAC_I8_VNNI and KERN_MAC_I8_AMX). */
double kern_avx2_mac_peak(struct pool *pool, enum kern_mac_kind kind, double *one_thread);

#endif
