/*
 * The register-tile micro-kernel of kern_gemm_f32 (see kernels_int.h for
 * its contract), written once and compiled per instruction set: the file
 * that includes this defines the vector type and operations first.
 *
 *   GB_NAME            the function's name
 *   GB_V, GB_VL        vector type and its float lanes
 *   GB_MR, GB_NV       tile rows, and vectors per tile row (GB_NR = NV * VL)
 *   GB_LOAD(p), GB_STORE(p, v), GB_BCAST(p), GB_FMA(a, b, c) (a*b + c fused),
 *   GB_ADD(a, b), GB_ZERO()
 *
 * The tile's GB_MR x GB_NV accumulators live in registers; per k it loads
 * GB_NV vectors of the packed B row and broadcasts GB_MR scalars of the
 * packed A column, each feeding GB_NV FMAs. Every accumulator lane is one
 * chain over k, so the sum of an element does not depend on the tile
 * shape or the instruction set.
 */
#define GB_NR (GB_NV * GB_VL)

static void GB_NAME(int64_t kc, const float *restrict pa, const float *restrict pb, float *restrict c, int64_t ldc,
                    int accumulate)
{
    GB_V acc[GB_MR][GB_NV];
#pragma GCC unroll 16
    for (int r = 0; r < GB_MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < GB_NV; v++)
            acc[r][v] = GB_ZERO();
    for (int64_t k = 0; k < kc; k++, pa += GB_MR, pb += GB_NR) {
        GB_V b[GB_NV];
#pragma GCC unroll 4
        for (int v = 0; v < GB_NV; v++)
            b[v] = GB_LOAD(pb + v * GB_VL);
#pragma GCC unroll 16
        for (int r = 0; r < GB_MR; r++) {
            const GB_V a = GB_BCAST(pa + r);
#pragma GCC unroll 4
            for (int v = 0; v < GB_NV; v++)
                acc[r][v] = GB_FMA(a, b[v], acc[r][v]);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < GB_MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < GB_NV; v++) {
            float *cp = c + r * ldc + v * GB_VL;
            GB_STORE(cp, accumulate ? GB_ADD(GB_LOAD(cp), acc[r][v]) : acc[r][v]);
        }
}

#undef GB_NR
