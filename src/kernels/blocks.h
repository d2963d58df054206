/*
 * Quantized block layouts, byte for byte as ggml defines them (ggml-common.h),
 * so that GGUF files from the ecosystem load as they are. fp16 values are
 * stored as raw uint16_t bit patterns. Every layout has its size asserted.
 */
#ifndef MAAS_KERNELS_BLOCKS_H
#define MAAS_KERNELS_BLOCKS_H

#include <stdint.h>

typedef uint16_t ggml_half;

#define QK4_0 32
typedef struct {
    ggml_half d;          /* scale */
    uint8_t qs[QK4_0 / 2]; /* nibbles: element j in low nibble of qs[j], element j+16 in high nibble */
} block_q4_0;
_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 size");

#define QK4_1 32
typedef struct {
    ggml_half d, m;       /* scale, minimum */
    uint8_t qs[QK4_1 / 2];
} block_q4_1;
_Static_assert(sizeof(block_q4_1) == 20, "block_q4_1 size");

#define QK5_0 32
typedef struct {
    ggml_half d;
    uint8_t qh[4];        /* fifth bit of each element, bit j of the 32-bit little-endian word */
    uint8_t qs[QK5_0 / 2];
} block_q5_0;
_Static_assert(sizeof(block_q5_0) == 22, "block_q5_0 size");

#define QK5_1 32
typedef struct {
    ggml_half d, m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} block_q5_1;
_Static_assert(sizeof(block_q5_1) == 24, "block_q5_1 size");

#define QK8_0 32
typedef struct {
    ggml_half d;
    int8_t qs[QK8_0];
} block_q8_0;
_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 size");

#define QK8_1 32
typedef struct {
    ggml_half d;          /* scale */
    ggml_half s;          /* d * sum(qs) */
    int8_t qs[QK8_1];
} block_q8_1;
_Static_assert(sizeof(block_q8_1) == 36, "block_q8_1 size");

#define QK4_NL 32
typedef struct {
    ggml_half d;
    uint8_t qs[QK4_NL / 2]; /* indices into the non-linear table kvalues_iq4nl */
} block_iq4_nl;
_Static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl size");

/* ---- k-quants: super-blocks of 256 ---- */
#define QK_K 256
#define K_SCALE_SIZE 12

typedef struct {
    uint8_t scales[QK_K / 16]; /* 4-bit scale (low) and 4-bit min (high) per 16 elements */
    uint8_t qs[QK_K / 4];      /* 2-bit quants */
    ggml_half d;               /* super-block scale for scales */
    ggml_half dmin;            /* super-block scale for mins */
} block_q2_K;
_Static_assert(sizeof(block_q2_K) == 84, "block_q2_K size");

typedef struct {
    uint8_t hmask[QK_K / 8];   /* high bit */
    uint8_t qs[QK_K / 4];      /* low 2 bits */
    uint8_t scales[12];        /* 16 6-bit scales */
    ggml_half d;
} block_q3_K;
_Static_assert(sizeof(block_q3_K) == 110, "block_q3_K size");

typedef struct {
    ggml_half d;
    ggml_half dmin;
    uint8_t scales[K_SCALE_SIZE]; /* 8 6-bit scales and 8 6-bit mins */
    uint8_t qs[QK_K / 2];
} block_q4_K;
_Static_assert(sizeof(block_q4_K) == 144, "block_q4_K size");

typedef struct {
    ggml_half d;
    ggml_half dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;
_Static_assert(sizeof(block_q5_K) == 176, "block_q5_K size");

typedef struct {
    uint8_t ql[QK_K / 2];      /* low 4 bits */
    uint8_t qh[QK_K / 4];      /* high 2 bits */
    int8_t scales[QK_K / 16];  /* 8-bit scales */
    ggml_half d;
} block_q6_K;
_Static_assert(sizeof(block_q6_K) == 210, "block_q6_K size");

/* Activations for k-quant dot products (never stored in files). */
typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];  /* sum of qs in each group of 16 */
} block_q8_K;
_Static_assert(sizeof(block_q8_K) == 292, "block_q8_K size");

#endif
