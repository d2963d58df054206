/*
 * kern_gemm_f32: C = beta*C + op(A) * op(B) in f32, for training.
 *
 * The reference (the specification, variant "ref") sums each element in
 * double. The SIMD variants share one blocked driver, this file, and differ
 * only in the register-tile micro-kernel of the table (gemm_f32 in
 * kernels_int.h, body in gemm_f32_body.h), as in BLIS and GotoBLAS:
 *
 *   for each block of NC columns of C
 *     for each block of KC = KERN_GEMM_KC steps of k (from k = 0)
 *       pack op(B)[k block, column block] into panels of nr columns, k-major
 *       for each block of MC rows of C
 *         pack op(A)[row block, k block] into panels of mr rows, k-major
 *         for each nr-panel of B (kept in L1), each mr-panel of A (from L2):
 *           micro-kernel: the mr x nr tile of C += (or =) the panels' product
 *
 * Packing is where the transposes go: either layout of A or B becomes the
 * same panels, so all four combinations run the same micro-kernel. The
 * layout that needs a transpose (k contiguous in the source: A as stored,
 * B transposed) goes through the table's pack_t where a variant has one
 * (4 x 8 register transposes on AVX2; with it attention-sized products run
 * 1.2-1.6x faster than with the plain loop here). Panels past the edge of
 * the matrix are zero-filled; an edge tile is computed in a scratch tile
 * and then added to C with the same single add as a full one.
 *
 * Threads: the calling thread, or each thread of the pool, takes an equal
 * run of whole tiles along M (or along N when N has more tiles) and runs the
 * blocked loop above on its rectangle of C with its own packing buffer.
 * Since K is cut the same way everywhere, an element's sum (blocks of KC
 * products, each summed in order from 0 and added to C in turn) does not
 * depend on the thread count or on which rectangle it fell into.
 *
 * Buffers: one per thread (a pthread key; freed when the thread exits),
 * grown to what a call needs (at most (MC + NC) * KC floats, 0.67 MB) and
 * kept, so the hot path allocates nothing and concurrent callers from pool
 * jobs (with pool NULL) each use their own.
 */
#include "kernels/kernels_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define GEMM_MC 144 /* rows of op(A) per packed block (rounded down to mr) */
#define GEMM_NC 512 /* columns of op(B) per packed block (rounded down to nr) */
#define GEMM_MR_MAX 16
#define GEMM_NR_MAX 64

struct gemm {
    bool ta, tb;
    int64_t M, N, K;
    const float *A, *B; /* borrowed */
    int64_t lda, ldb, ldc;
    float *C;           /* borrowed */
    bool accumulate;    /* beta == 1 */
    struct kern_gemm_ukr ukr; /* fn NULL: the reference */
    bool split_n;       /* threads split N (else M) */
};

/* ---- the reference ---- */
static inline float op_a(const struct gemm *g, int64_t i, int64_t k)
{
    return g->ta ? g->A[k * g->lda + i] : g->A[i * g->lda + k];
}

static inline float op_b(const struct gemm *g, int64_t k, int64_t j)
{
    return g->tb ? g->B[j * g->ldb + k] : g->B[k * g->ldb + j];
}

static void gemm_ref_rect(const struct gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1)
{
    for (int64_t i = m0; i < m1; i++)
        for (int64_t j = n0; j < n1; j++) {
            double s = 0;
            for (int64_t k = 0; k < g->K; k++)
                s += (double)op_a(g, i, k) * op_b(g, k, j);
            float *c = g->C + i * g->ldc + j;
            *c = (float)(g->accumulate ? *c + s : s);
        }
}

/* ---- per-thread packing buffers ---- */
struct tbuf {
    float *p;   /* from aligned_alloc */
    size_t cap; /* floats */
};
static pthread_key_t tbuf_key;
static pthread_once_t tbuf_once = PTHREAD_ONCE_INIT;
static bool tbuf_key_ok;

static void tbuf_destroy(void *v)
{
    struct tbuf *b = v;
    free(b->p);
    free(b);
}

static void tbuf_key_init(void)
{
    tbuf_key_ok = pthread_key_create(&tbuf_key, tbuf_destroy) == 0;
}

/* This thread's buffer of at least n floats, 64-byte aligned; NULL when it
 * cannot be had. */
static float *thread_buf(size_t n)
{
    pthread_once(&tbuf_once, tbuf_key_init);
    if (!tbuf_key_ok)
        return NULL;
    struct tbuf *b = pthread_getspecific(tbuf_key);
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b || pthread_setspecific(tbuf_key, b) != 0) {
            free(b);
            return NULL;
        }
    }
    if (b->cap < n) {
        size_t cap = (n + 15) & ~(size_t)15;
        free(b->p);
        b->p = aligned_alloc(64, cap * sizeof(float));
        b->cap = b->p ? cap : 0;
    }
    return b->p;
}

/* ---- packing ----
 * Rows r < n of a source whose element (r, k) is x[r * rs + k * cs], for
 * k < kc, into panels of w rows: dst[p * w * kc + k * w + r % w] for the
 * panel p = r / w; rows from n to the end of the last panel are zeros. */
static void pack_panels(const float *x, int64_t rs, int64_t cs, int64_t n, int64_t kc, int w, float *dst,
                        kern_gemm_pack_t_fn pack_t)
{
    for (int64_t p = 0; p < n; p += w, dst += w * kc, x += w * rs) {
        const int rows = (int)(n - p < w ? n - p : w);
        if (rows < w)
            memset(dst, 0, (size_t)(w * kc) * sizeof *dst);
        if (rs == 1) { /* rows contiguous: one copy per k */
            for (int64_t k = 0; k < kc; k++)
                memcpy(dst + k * w, x + k * cs, (size_t)rows * sizeof *dst);
        } else if (cs == 1 && pack_t) {
            pack_t(x, rs, kc, rows, w, dst);
        } else if (cs == 1) { /* k contiguous: a transpose, 8 steps of k per pass over the rows */
            int64_t k0 = 0;
            for (; k0 + 8 <= kc; k0 += 8)
                for (int r = 0; r < rows; r++) {
                    const float *src = x + r * rs + k0;
                    float *d = dst + k0 * w + r;
                    for (int k = 0; k < 8; k++)
                        d[k * w] = src[k];
                }
            for (int r = 0; r < rows; r++)
                for (int64_t k = k0; k < kc; k++)
                    dst[k * w + r] = x[r * rs + k];
        } else {
            for (int r = 0; r < rows; r++)
                for (int64_t k = 0; k < kc; k++)
                    dst[k * w + r] = x[r * rs + k * cs];
        }
    }
}

/* op(A) rows i0 .. i0 + mc, k0 .. k0 + kc into panels of mr rows. */
static void pack_a(const struct gemm *g, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float *pa)
{
    if (g->ta)
        pack_panels(g->A + k0 * g->lda + i0, 1, g->lda, mc, kc, g->ukr.mr, pa, g->ukr.pack_t);
    else
        pack_panels(g->A + i0 * g->lda + k0, g->lda, 1, mc, kc, g->ukr.mr, pa, g->ukr.pack_t);
}

/* op(B) k0 .. k0 + kc, columns j0 .. j0 + nc into panels of nr columns. */
static void pack_b(const struct gemm *g, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float *pb)
{
    if (g->tb)
        pack_panels(g->B + j0 * g->ldb + k0, g->ldb, 1, nc, kc, g->ukr.nr, pb, g->ukr.pack_t);
    else
        pack_panels(g->B + k0 * g->ldb + j0, 1, g->ldb, nc, kc, g->ukr.nr, pb, g->ukr.pack_t);
}

/* ---- the blocked driver ---- */
/* C[i0 .. i0 + mc][j0 .. j0 + nc] (=, or += when acc) pa * pb, tile by tile. */
static void macro_tile(const struct gemm *g, const float *pa, const float *pb, int64_t i0, int64_t mc, int64_t j0,
                       int64_t nc, int64_t kc, int acc)
{
    const int mr = g->ukr.mr, nr = g->ukr.nr;
    for (int64_t jr = 0; jr < nc; jr += nr) {
        const int n = (int)(nc - jr < nr ? nc - jr : nr);
        for (int64_t ir = 0; ir < mc; ir += mr) {
            const int m = (int)(mc - ir < mr ? mc - ir : mr);
            float *c = g->C + (i0 + ir) * g->ldc + j0 + jr;
            if (m == mr && n == nr) {
                g->ukr.fn(kc, pa + ir * kc, pb + jr * kc, c, g->ldc, acc);
                continue;
            }
            float t[GEMM_MR_MAX * GEMM_NR_MAX];
            g->ukr.fn(kc, pa + ir * kc, pb + jr * kc, t, nr, 0);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                    c[i * g->ldc + j] = acc ? c[i * g->ldc + j] + t[i * nr + j] : t[i * nr + j];
        }
    }
}

static inline int64_t round_up(int64_t x, int64_t m)
{
    return (x + m - 1) / m * m;
}

static inline int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Rows m0 .. m1 x columns n0 .. n1 of C, on this thread. */
static void gemm_blocked_rect(const struct gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1)
{
    const int mr = g->ukr.mr, nr = g->ukr.nr;
    const int64_t mc_max = GEMM_MC / mr * mr, nc_max = GEMM_NC / nr * nr;
    const int64_t kc_max = min64(g->K, KERN_GEMM_KC);
    const int64_t a_size = min64(mc_max, round_up(m1 - m0, mr)) * kc_max;
    const int64_t b_size = min64(nc_max, round_up(n1 - n0, nr)) * kc_max;
    float *pa = thread_buf((size_t)(a_size + b_size));
    if (!pa) {
        gemm_ref_rect(g, m0, m1, n0, n1);
        return;
    }
    float *pb = pa + a_size;
    for (int64_t jc = n0; jc < n1; jc += nc_max) {
        const int64_t nc = min64(nc_max, n1 - jc);
        for (int64_t pc = 0; pc < g->K; pc += KERN_GEMM_KC) {
            const int64_t kc = min64(KERN_GEMM_KC, g->K - pc);
            const int acc = pc > 0 || g->accumulate;
            pack_b(g, pc, kc, jc, nc, pb);
            for (int64_t ic = m0; ic < m1; ic += mc_max) {
                const int64_t mc = min64(mc_max, m1 - ic);
                pack_a(g, ic, mc, pc, kc, pa);
                macro_tile(g, pa, pb, ic, mc, jc, nc, kc, acc);
            }
        }
    }
}

/* ---- threads ---- */
static void gemm_rect(const struct gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1)
{
    if (m0 >= m1 || n0 >= n1)
        return;
    if (g->ukr.fn)
        gemm_blocked_rect(g, m0, m1, n0, n1);
    else
        gemm_ref_rect(g, m0, m1, n0, n1);
}

/* Thread ith's share: an equal run of whole tiles along the split side. */
static void gemm_job(void *ctx, int ith, int nth)
{
    const struct gemm *g = ctx;
    const int64_t unit = g->split_n ? g->ukr.nr : g->ukr.mr;
    const int64_t len = g->split_n ? g->N : g->M;
    int64_t lo, hi;
    split_range((len + unit - 1) / unit, ith, nth, &lo, &hi);
    lo = min64(lo * unit, len);
    hi = min64(hi * unit, len);
    if (g->split_n)
        gemm_rect(g, 0, g->M, lo, hi);
    else
        gemm_rect(g, lo, hi, 0, g->N);
}

void kern_gemm_f32(struct pool *pool, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                   const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    MAAS_ASSERT(beta == 0 || beta == 1);
    MAAS_ASSERT(M >= 0 && N >= 0 && K >= 0 && ldc >= N);
    MAAS_ASSERT(lda >= (ta ? M : K) && ldb >= (tb ? K : N));
    if (M == 0 || N == 0)
        return;
    if (K == 0) {
        for (int64_t i = 0; beta == 0 && i < M; i++)
            memset(C + i * ldc, 0, (size_t)N * sizeof *C);
        return;
    }
    struct gemm g = {.ta = ta, .tb = tb, .M = M, .N = N, .K = K, .A = A, .B = B, .lda = lda, .ldb = ldb,
                     .ldc = ldc, .C = C, .accumulate = beta != 0, .ukr = kern_tab.gemm_f32};
    if (!g.ukr.fn)
        g.ukr.mr = g.ukr.nr = 1;
    MAAS_ASSERT(g.ukr.mr <= GEMM_MR_MAX && g.ukr.nr <= GEMM_NR_MAX);
    g.split_n = (N + g.ukr.nr - 1) / g.ukr.nr > (M + g.ukr.mr - 1) / g.ukr.mr;
    if (!pool || pool_n_threads(pool) <= 1)
        gemm_rect(&g, 0, M, 0, N);
    else
        pool_run(pool, gemm_job, &g);
}
