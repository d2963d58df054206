/* AVX2 matrix-vector kernels for decode (gemv_body.h): byte dot products
 * with vpmaddubsw, widened to int32 with vpmaddwd. */
#include "kernels/avx2_int.h"

#define GEMV_DOT_U8S8(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1))
#define GEMV_ENTRY kern_avx2_gemv
#include "kernels/gemv_body.h"
