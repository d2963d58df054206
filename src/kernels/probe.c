/*
 * The machine probes of `maas bench` and bench/: memory read bandwidth and
 * the multiply-add peak. They measure the machine, not the kernels, so they
 * come from the best variant this CPU supports (kern_best), whatever variant
 * MAAS_KERNELS selects. This file holds the portable read probe.
 */
#include "kernels/kernels_int.h"

#include <string.h>

/* Plain C read probe (eight independent chains). */
struct probe_c {
    const uint64_t *buf;
    size_t n;
    uint64_t sink[64];
};

static void probe_c_slice(void *ctx, int ith, int nth)
{
    struct probe_c *p = ctx;
    int64_t lo, hi;
    split_range((int64_t)(p->n / 8), ith, nth, &lo, &hi);
    uint64_t s[8] = {0};
    for (int64_t i = lo * 8; i < hi * 8; i += 8)
        for (int j = 0; j < 8; j++)
            s[j] += p->buf[i + j];
    if (ith < 64)
        p->sink[ith] = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

static double read_bandwidth_c(struct pool *pool, size_t bytes, int reps, struct err *e)
{
    struct probe_c p = {0};
    uint64_t *buf = maas_alloc_aligned(bytes);
    if (!buf)
        return err_set(e, ERR_NOMEM, "bandwidth probe: out of memory");
    memset(buf, 1, bytes);
    p.buf = buf;
    p.n = bytes / 8;
    double best = 0;
    for (int r = 0; r < reps; r++) {
        uint64_t t0 = now_ns();
        pool_run(pool, probe_c_slice, &p);
        double gbs = bytes / ((now_ns() - t0) / 1e9) / 1e9;
        best = gbs > best ? gbs : best;
    }
    maas_free_aligned(buf);
    return best;
}

void kern_register_ref_probes(struct kern_table *tab)
{
    tab->read_bandwidth = read_bandwidth_c;
    tab->mac_peak = NULL;
}

double kern_read_bandwidth(struct pool *pool, size_t bytes, int reps, struct err *e)
{
    kernels_init();
    return kern_best.read_bandwidth(pool, bytes, reps, e);
}

double kern_mac_peak(struct pool *pool, enum kern_mac_kind kind, double *one_thread)
{
    kernels_init();
    if (!kern_best.mac_peak) {
        if (one_thread)
            *one_thread = 0;
        return 0;
    }
    return kern_best.mac_peak(pool, kind, one_thread);
}
