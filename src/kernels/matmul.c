/*
 * Matrix multiplication of a weight matrix (any supported type) with a batch
 * of f32 activation rows, over the threads of a pool.
 *
 * 1. The activation rows are converted once into the weight type's vec_dot
 *    type (q8_0, q8_1 or q8_K) in the caller's wbuf; for one row the calling
 *    thread does it, for more the pool's threads share the rows. f32, f16 and
 *    bf16 weights dot directly with the f32 input.
 * 2. The output is cut into work units of (a chunk of weight rows) x (a chunk
 *    of tokens) that threads take from a shared atomic counter, so a thread
 *    slowed by another process does not hold the others up and every shape
 *    (one token, few outputs and many tokens, ...) keeps all threads busy.
 *    - n_tok == 1 (decode): a unit is a run of consecutive rows streamed
 *      through the type's vec_dot, or through a matrix-vector kernel
 *      (kern_avx2_gemv) that first expands the activation once; the cost
 *      should be reading the weights once.
 *    - n_tok > 1 (prefill): a unit's weight rows are reused for every token of
 *      its token chunk. Types with a tiled kernel (kern_avx2_tile) compute
 *      MR rows x NR tokens per tile in registers; the others dot one weight
 *      row, held in L1, with each token in turn. The token chunk is sized so
 *      that its converted activations stay in L2 while the rows go by.
 * Nothing is allocated; the work counter lives on the caller's stack.
 */
#include "kernels/kernels_int.h"

#include <stdatomic.h>

/* Bytes of activations per token chunk that should stay in L2. */
#define ACT_CHUNK_BYTES (192 * 1024)
/* Bytes of weights per decode work unit. */
#define DECODE_UNIT_BYTES (48 * 1024)

struct mm_job {
    const struct kern_type_ops *o;
    struct kern_tile tile;
    struct kern_gemv gemv;  /* decode kernel, used when n_tok == 1 */
    const void *gact;       /* its prepared activation (in wbuf) */
    const char *W;          /* borrowed: n_out rows of ldw bytes */
    size_t ldw;
    int64_t n_out, n_in;
    const float *x;         /* borrowed: n_tok rows of n_in f32 */
    int64_t n_tok;
    float *y;               /* borrowed: n_tok rows of ldy floats */
    int64_t ldy;
    char *act;              /* activations in the vec_dot type (wbuf or x) */
    size_t lda;
    int64_t rows_per_unit, toks_per_unit;
    int64_t n_row_units, n_units;
    atomic_llong next;      /* next work unit to hand out */
};

static size_t act_row_size(const struct kern_type_ops *o, int64_t n_in)
{
    return ggml_row_size(o->vec_dot_type, n_in);
}

size_t kern_matmul_wsize(enum ggml_type wt, int64_t n_in, int64_t n_tok)
{
    const struct kern_type_ops *o = kern_ops(wt);
    MAAS_ASSERT(o && o->vec_dot);
    if (o->vec_dot_type == GGML_TYPE_F32)
        return 0;
    size_t s = act_row_size(o, n_in) * (size_t)n_tok;
    /* Room for the decode kernels' prepared activation, whatever the ISA
     * in use, so that a buffer stays valid when the table changes. */
    if (o->vec_dot_type == GGML_TYPE_Q8_0)
        s += KERN_GEMV_ACT_SIZE(n_in);
    return s;
}

static void convert_job(void *ctx, int ith, int nth)
{
    struct mm_job *j = ctx;
    int64_t lo, hi;
    split_range(j->n_tok, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++)
        j->o->from_float_act(j->x + t * j->n_in, j->act + (size_t)t * j->lda, j->n_in);
}

static void run_unit(struct mm_job *j, int64_t u)
{
    int64_t ru = u % j->n_row_units, tu = u / j->n_row_units;
    int64_t r0 = ru * j->rows_per_unit, r1 = r0 + j->rows_per_unit;
    int64_t t0 = tu * j->toks_per_unit, t1 = t0 + j->toks_per_unit;
    if (r1 > j->n_out)
        r1 = j->n_out;
    if (t1 > j->n_tok)
        t1 = j->n_tok;
    const kern_vec_dot_fn dot = j->o->vec_dot;
    if (j->gemv.fn) {
        j->gemv.fn(j->n_in, j->W + (size_t)r0 * j->ldw, j->ldw, r1 - r0, j->gact, j->y + r0);
        return;
    }
    if (j->tile.fn && t1 - t0 > 1) {
        const int mr = j->tile.mr, nc = j->tile.nc_max;
        for (int64_t r = r0; r < r1; r += mr) {
            int nr = (int)(r1 - r < mr ? r1 - r : mr);
            for (int64_t t = t0; t < t1; t += nc) {
                int ncur = (int)(t1 - t < nc ? t1 - t : nc);
                j->tile.fn(j->n_in, j->W + (size_t)r * j->ldw, j->ldw, nr, j->act + (size_t)t * j->lda, j->lda,
                           ncur, j->y + t * j->ldy + r, j->ldy);
            }
        }
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const char *wr = j->W + (size_t)r * j->ldw;
        for (int64_t t = t0; t < t1; t++)
            j->y[t * j->ldy + r] = dot(j->n_in, wr, j->act + (size_t)t * j->lda);
    }
}

static void compute_job(void *ctx, int ith, int nth)
{
    struct mm_job *j = ctx;
    (void)nth;
    /* Thread ith starts with unit ith without touching the counter. */
    for (int64_t u = ith; u < j->n_units; u = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed))
        run_unit(j, u);
}

void kern_matmul(struct pool *pool, enum ggml_type wt, const void *W, int64_t n_out, int64_t n_in, const float *x,
                 int64_t n_tok, float *y, int64_t ldy, void *wbuf)
{
    const struct kern_type_ops *o = kern_ops(wt);
    MAAS_ASSERT(o && o->vec_dot);
    MAAS_ASSERT(n_in % ggml_blck_size(wt) == 0 && ldy >= n_out);
    if (n_out <= 0 || n_tok <= 0)
        return;
    const int nth = pool_n_threads(pool);
    struct mm_job j = {
        .o = o,
        .W = W,
        .ldw = ggml_row_size(wt, n_in),
        .n_out = n_out,
        .n_in = n_in,
        .x = x,
        .n_tok = n_tok,
        .y = y,
        .ldy = ldy,
    };
    j.tile = (struct kern_tile){NULL, 1, 1};
    j.gemv = (struct kern_gemv){NULL, NULL};
    if (n_tok > 1 && kernels_isa() >= KERN_AVX2)
        j.tile = kern_avx2_tile(wt);
    if (n_tok == 1 && kernels_isa() >= KERN_AVX2)
        j.gemv = kern_avx2_gemv(wt);

    if (o->vec_dot_type == GGML_TYPE_F32) {
        j.act = (char *)x;
        j.lda = (size_t)n_in * sizeof(float);
    } else {
        MAAS_ASSERT(wbuf && o->from_float_act);
        j.act = wbuf;
        j.lda = act_row_size(o, n_in);
        if (n_tok == 1 || nth == 1)
            convert_job(&j, 0, 1);
        else
            pool_run(pool, convert_job, &j);
        if (j.gemv.fn) {
            /* 32-byte aligned; KERN_GEMV_ACT_SIZE has the slack */
            uintptr_t p = (uintptr_t)(j.act + j.lda * (size_t)n_tok);
            j.gact = (const void *)((p + 31) & ~(uintptr_t)31);
            j.gemv.prepare(j.act, (void *)j.gact, n_in);
        }
    }

    /* Work units. Rows per unit: a multiple of the tile height, enough units
     * for dynamic balancing (about 8 per thread) but not so small that the
     * counter and the loop overheads show. */
    const int64_t mr = j.tile.mr;
    if (n_tok == 1) {
        j.toks_per_unit = 1;
        j.rows_per_unit = (int64_t)(DECODE_UNIT_BYTES / j.ldw);
        int64_t max_rows = (n_out + 8 * nth - 1) / (8 * nth);
        if (j.rows_per_unit > max_rows)
            j.rows_per_unit = max_rows;
    } else {
        int64_t nc = j.tile.nc_max;
        j.toks_per_unit = (int64_t)(ACT_CHUNK_BYTES / j.lda);
        j.toks_per_unit = (j.toks_per_unit / nc) * nc;
        if (j.toks_per_unit < nc)
            j.toks_per_unit = nc;
        if (j.toks_per_unit > n_tok)
            j.toks_per_unit = n_tok;
        int64_t n_tok_units = (n_tok + j.toks_per_unit - 1) / j.toks_per_unit;
        /* rows: aim at 8 units per thread overall, at least 4 tiles high, at
         * most 64 rows (the rows of a unit are re-read once per tile column). */
        int64_t want_row_units = (8 * nth + n_tok_units - 1) / n_tok_units;
        j.rows_per_unit = (n_out + want_row_units - 1) / want_row_units;
        if (j.rows_per_unit > 64)
            j.rows_per_unit = 64;
        if (j.rows_per_unit < 4 * mr)
            j.rows_per_unit = 4 * mr;
    }
    if (j.rows_per_unit < 1)
        j.rows_per_unit = 1;
    j.rows_per_unit = (j.rows_per_unit + mr - 1) / mr * mr;
    j.n_row_units = (n_out + j.rows_per_unit - 1) / j.rows_per_unit;
    j.n_units = j.n_row_units * ((n_tok + j.toks_per_unit - 1) / j.toks_per_unit);
    atomic_init(&j.next, nth);
    if (nth == 1 || j.n_units == 1)
        compute_job(&j, 0, 1);
    else
        pool_run(pool, compute_job, &j);
}
