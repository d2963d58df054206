/* bench_probe.h — private to cli/: the read-bandwidth probe of maas bench. */
#ifndef MAAS_CLI_BENCH_PROBE_H
#define MAAS_CLI_BENCH_PROBE_H

#include "core/core.h"

/* Best of reps timed passes of all of pool's threads reading a buffer of
 * `bytes` (vectorised, AVX2; call only when the CPU has it). GB/s (1e9
 * bytes per second), or -1 with a reason. */
double bench_read_bandwidth_avx2(struct pool *pool, size_t bytes, int reps, struct err *e);

#endif
