/*
 * For the tests of kernels (and of the model's forward pass): every kernel
 * variant this CPU supports is compared with the reference, variant 0
 * ("ref"). Include after test.h.
 */
#ifndef MAAS_TEST_KERNELS_VARIANTS_H
#define MAAS_TEST_KERNELS_VARIANTS_H

#include "kernels/kernels.h"

#include <stdio.h>

/* Switches the kernel table to variant v (which must be supported). */
static inline void use_variant(int v)
{
    struct err e;
    if (kern_use_variant(kern_variant_name(v), &e) < 0) {
        fprintf(stderr, "kern_use_variant(%s): %s\n", kern_variant_name(v), e.msg);
        MAAS_ASSERT(!"a supported variant cannot be used");
    }
}

/* Back to the best variant this CPU supports (what start-up chose). */
static inline void use_best_variant(void)
{
    int best = 0;
    for (int v = 0; v < kern_variant_count(); v++)
        if (kern_variant_supported(v))
            best = v;
    use_variant(best);
}

/* The supported variants other than the reference: how many there are. */
static inline int simd_variant_count(void)
{
    int n = 0;
    for (int v = 1; v < kern_variant_count(); v++)
        n += kern_variant_supported(v);
    return n;
}

/* Says on stderr that variant v is not tested here; returns 0. */
static inline int variant_skipped(int v)
{
    fprintf(stderr, "  %s: skipped: CPU lacks %s\n", kern_variant_name(v), kern_variant_name(v));
    return 0;
}

/* Runs the statement that follows once for each supported variant other
 * than the reference, with v its index (the table is not switched); a
 * variant the CPU lacks is named as skipped. */
#define FOR_EACH_SIMD_VARIANT(v)                                               \
    for (int v = 1; v < kern_variant_count(); v++)                            \
        if (!kern_variant_supported(v)) {                                      \
            variant_skipped(v);                                                \
        } else

#endif
