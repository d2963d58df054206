/* AVX-512 VNNI matrix-vector kernels for decode (gemv_body.h): each byte
 * dot product is one vpdpbusd (EVEX-encoded on 256-bit vectors, AVX512VL),
 * instead of vpmaddubsw + vpmaddwd: half the multiply work per block and no
 * int16 intermediate. */
#include "kernels/avx2_int.h"

#define GEMV_DOT_U8S8(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (s))
#define GEMV_ENTRY kern_avx512_gemv
#include "kernels/gemv_body.h"
