/* bench_probe.h — private to cli/: the read-bandwidth probe of maas bench. */
#ifndef MAAS_CLI_BENCH_PROBE_H
#define MAAS_CLI_BENCH_PROBE_H

#include "core/core.h"

/* Best of reps timed passes of all of pool's threads reading a buffer of
 * `bytes` (vectorised, AVX2; call only when the CPU has it). GB/s (1e9
 * bytes per second), or -1 with a reason. */
double bench_read_bandwidth_avx2(struct pool *pool, size_t bytes, int reps, struct err *e);

/* The multiply-add rate of this CPU in register-only loops (no memory
 * traffic), summed over pool's threads, each thread's rate per second of
 * its own CPU time (so other processes lower it little), best of 3:
 *   BENCH_FMA       vfmadd231ps ymm: 8 MACs per instruction;
 *   BENCH_I8_PAIR   vpmaddubsw + vpmaddwd + vpaddd: the exact 8-bit block
 *                   dot of the q8 kernels, 32 MACs per pair;
 *   BENCH_I8_ALONE  vpmaddubsw + vpaddw: 32 MACs with 16-bit results, too
 *                   narrow to sum a block: a bound, not a kernel.
 * MACs per second; *one_thread (if not NULL) gets thread 0's rate. AVX2. */
enum bench_mac_kind { BENCH_FMA, BENCH_I8_PAIR, BENCH_I8_ALONE };
double bench_mac_peak_avx2(struct pool *pool, enum bench_mac_kind kind, double *one_thread);

#endif
