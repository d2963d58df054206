/*
 * bench_peak — the arithmetic ceilings of this CPU, and what they allow.
 *
 * A matrix multiplication with a quantized weight can use one of two kinds of
 * multiply on AVX2: 8-bit integer (vpmaddubsw, widened with vpmaddwd — the
 * exact block dot every q8-activation kernel needs) or f32 FMA on
 * dequantized weights. This program measures, in tight register-only loops
 * with many independent chains (no memory traffic), how many multiply-adds
 * per second each reaches on one thread and on all threads of a pool:
 *
 *   fma        vfmadd231ps ymm                       8 MACs per instruction
 *   i8 pair    vpmaddubsw + vpmaddwd + vpaddd ymm   32 MACs per pair
 *   i8 alone   vpmaddubsw + vpaddw ymm              32 MACs (int16 results,
 *              not enough to sum a block exactly: a bound, not a kernel)
 *   i8 vnni    vpdpbusd zmm                         64 MACs into int32 (the
 *              avx512 variant's tiles; 0 on a CPU without AVX-512 VNNI)
 *
 * and turns the best of them into upper bounds for the benchmarks of issues
 * 3, 5 and 6: the multiply-adds per token of each model shape divided by the
 * all-thread peak. A bound is what the multiplies alone would allow at 100%
 * use of the units; real kernels also load, convert and reduce.
 *
 * The loops are the ones `maas bench` uses for its compute ceiling
 * (src/kernels/probe_avx2.c and probe_avx512.c, kern_mac_peak).
 *
 *   make bench && build/bench/bench_peak [--threads T]
 */
#include "kernels/kernels.h"
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Multiply-adds per token of the benchmark shapes (weights of the matmuls;
 * attention scores and the router are a few percent on top, left out so
 * that the bounds stay upper bounds). */
struct shape {
    const char *name;
    double prefill_macs; /* per prompt token: every layer, no output matrix */
    double decode_macs;  /* per generated token: layers and the output matrix */
};

static struct shape dense_shape(const char *name, double n_embd, double n_layer, double n_head, double n_head_kv,
                                double n_ff, double n_vocab)
{
    double kv = n_embd / n_head * n_head_kv;
    double layer = n_embd * (n_embd + 2 * kv) + n_embd * n_embd + 3 * n_embd * n_ff;
    return (struct shape){name, layer * n_layer, layer * n_layer + n_vocab * n_embd};
}

int main(int argc, char **argv)
{
    int threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--threads T]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || threads > 64) {
        fprintf(stderr, "bench_peak: --threads must be 1..64\n");
        return 2;
    }
    struct pool *pool = pool_new(threads);
    if (!pool) {
        fprintf(stderr, "bench_peak: cannot start %d threads\n", threads);
        return 1;
    }
    static const char *names[KERN_MAC_KINDS] = {"fma f32 (vfmadd231ps)", "i8 pair (vpmaddubsw+vpmaddwd)",
                                                "i8 alone (vpmaddubsw)", "i8 vnni (vpdpbusd zmm)",
                                                "i8 amx (tdpbssd)"};
    double all[KERN_MAC_KINDS], one[KERN_MAC_KINDS];
    for (int k = 0; k < KERN_MAC_KINDS; k++) {
        all[k] = kern_mac_peak(pool, (enum kern_mac_kind)k, &one[k]);
        printf("peak  %-32s 1 thread %6.1f GMAC/s   %d threads %6.1f GMAC/s (per CPU-second, best of 3)\n",
               names[k], one[k] / 1e9, threads, all[k] / 1e9);
    }
    /* The kernels can use the f32, the i8 pair or (avx512) the VNNI kind;
     * the bound takes the best (VNNI is 0 where the CPU lacks it). */
    int best = all[0] > all[1] ? 0 : 1;
    if (all[KERN_MAC_I8_VNNI] > all[best])
        best = KERN_MAC_I8_VNNI;
    if (all[KERN_MAC_I8_AMX] > all[best])
        best = KERN_MAC_I8_AMX;
    double peak = all[best];
    printf("bound uses %.1f GMAC/s (%s at %d threads)\n", peak / 1e9, names[best], threads);

    /* Issue 3: Qwen2.5-0.5B shape with the gpt-2 vocabulary (the bench model). */
    struct shape d = dense_shape("dense 0.5B (896x24, ff 4864, vocab 50257)", 896, 24, 14, 2, 4864, 50257);
    /* Issue 5: 32 experts, top 4, expert width 512: per token the attention,
     * the 4 chosen experts. */
    struct shape m = dense_shape("moe 32x top-4 (1024x16, expert 512)", 1024, 16, 16, 4, 4 * 512, 50257);
    const struct {
        const struct shape *s;
        double target;
    } pp[] = {{&d, 230}, {&m, 300}};
    for (int i = 0; i < 2; i++) {
        double bound = peak / pp[i].s->prefill_macs;
        printf("prefill  %-44s %.0f MMAC/token -> at most %6.1f tokens/s (issue target %.0f: %s)\n", pp[i].s->name,
               pp[i].s->prefill_macs / 1e6, bound, pp[i].target,
               bound >= pp[i].target ? "within the bound" : "above what the multipliers can do");
    }
    /* Issue 6: batched decoding computes every matmul, output matrix
     * included, for every generated token. */
    double serve = peak / d.decode_macs;
    printf("serving  %-44s %.0f MMAC/token -> batched generation at most %6.1f tokens/s in all\n", d.name,
           d.decode_macs / 1e6, serve);
    printf("{\"threads\":%d,\"fma_gmacs\":%.2f,\"i8_pair_gmacs\":%.2f,\"i8_alone_gmacs\":%.2f,\"i8_vnni_gmacs\":%.2f,"
           "\"dense_prefill_bound\":%.1f,\"moe_prefill_bound\":%.1f,\"dense_batched_decode_bound\":%.1f}\n",
           threads, all[0] / 1e9, all[1] / 1e9, all[2] / 1e9, all[3] / 1e9, peak / d.prefill_macs, peak / m.prefill_macs, serve);
    pool_free(pool);
    return 0;
}
