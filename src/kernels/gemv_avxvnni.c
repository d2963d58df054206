/* AVX-VNNI matrix-vector kernels for decode (gemv_body.h): each byte dot
 * product is one VEX-encoded vpdpbusd on ymm, as in gemv_avx512.c (same
 * int32 sums, same float order: the same results, bit for bit), for CPUs
 * with AVX-VNNI but no AVX-512 (Alder Lake and the later Core parts). */
#include "kernels/avx2_int.h"

#define GEMV_DOT_U8S8(u, s) _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), (u), (s))
#define GEMV_ENTRY kern_avxvnni_gemv
#include "kernels/gemv_body.h"
