/*
 * The avxvnni variant's multiply-add probe: the VEX-encoded vpdpbusd on
 * 256-bit vectors (KERN_MAC_I8_VNNI), the instruction of its tiles and
 * decode kernels; the other kinds are AVX2's (probe_avx2.c), which also runs
 * the threads.
 */
#include "kernels/kernels_int.h"

#include <immintrin.h>

/* Ten independent chains, enough to cover the latency at two per cycle (the
 * 16 ymm registers hold them and the two inputs); the asm barrier makes the
 * inputs look new each iteration so that nothing is hoisted out of the
 * loop. */
static void run_vnni_ymm(enum kern_mac_kind kind, long iters, double *macs_per_s, int *sink)
{
    (void)kind;
    const double t0 = kern_thread_cpu_s();
    __m256i a[10];
    for (int k = 0; k < 10; k++)
        a[k] = _mm256_set1_epi32(k);
    __m256i u = _mm256_set1_epi8(3), s = _mm256_set1_epi8(-2);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 10
        for (int k = 0; k < 10; k++)
            a[k] = _mm256_dpbusd_avx_epi32(a[k], u, s);
        __asm__ volatile("" : "+x"(u), "+x"(s));
    }
    __m256i t = a[0];
    for (int k = 1; k < 10; k++)
        t = _mm256_add_epi32(t, a[k]);
    *sink += _mm_cvtsi128_si32(_mm256_castsi256_si128(t));
    *macs_per_s = 10.0 * 32.0 * (double)iters / (kern_thread_cpu_s() - t0);
}

static double mac_peak_avxvnni(struct pool *pool, enum kern_mac_kind kind, double *one_thread)
{
    if (kind != KERN_MAC_I8_VNNI)
        return kern_avx2_mac_peak(pool, kind, one_thread);
    return kern_peak_run(pool, run_vnni_ymm, kind, one_thread);
}

void kern_register_avxvnni_probes(struct kern_table *tab)
{
    tab->mac_peak = mac_peak_avxvnni;
}
