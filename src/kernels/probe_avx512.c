/*
 * The avx512 variant's multiply-add probe: vpdpbusd on 512-bit vectors
 * (KERN_MAC_I8_VNNI), the instruction of its tiles; the other kinds are
 * AVX2's (probe_avx2.c), which also runs the threads.
 */
#include "kernels/kernels_int.h"

#include <immintrin.h>

/* Ten independent chains (enough to cover the latency at two per cycle);
 * the asm barrier makes the inputs look new each iteration so that nothing
 * is hoisted out of the loop. */
static void run_vnni(enum kern_mac_kind kind, long iters, double *macs_per_s, int *sink)
{
    (void)kind;
    const double t0 = kern_thread_cpu_s();
    __m512i a[10];
    for (int k = 0; k < 10; k++)
        a[k] = _mm512_set1_epi32(k);
    __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-2);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 10
        for (int k = 0; k < 10; k++)
            a[k] = _mm512_dpbusd_epi32(a[k], u, s);
        __asm__ volatile("" : "+v"(u), "+v"(s));
    }
    __m512i t = a[0];
    for (int k = 1; k < 10; k++)
        t = _mm512_add_epi32(t, a[k]);
    *sink += _mm_cvtsi128_si32(_mm512_castsi512_si128(t));
    *macs_per_s = 10.0 * 64.0 * (double)iters / (kern_thread_cpu_s() - t0);
}

double kern_avx512_mac_peak(struct pool *pool, enum kern_mac_kind kind, double *one_thread)
{
    if (kind != KERN_MAC_I8_VNNI)
        return kern_avx2_mac_peak(pool, kind, one_thread);
    return kern_peak_run(pool, run_vnni, kind, one_thread);
}

void kern_register_avx512_probes(struct kern_table *tab)
{
    tab->mac_peak = kern_avx512_mac_peak;
}
