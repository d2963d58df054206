/*
 * Matrix multiplication of a weight matrix (any supported type) with a batch
 * of f32 activation rows, over the threads of a pool.
 *
 * 1. The activation rows are converted once into the weight type's vec_dot
 *    type (q8_0, q8_1 or q8_K) in the caller's wbuf; for one row the calling
 *    thread does it, for more the pool's threads share the rows. f32, f16 and
 *    bf16 weights dot directly with the f32 input, but for a tile that packs
 *    it (the amx variant's bf16 tile: rounded to bf16, in wbuf).
 * 2. The output is cut into work units of (a chunk of weight rows) x (a chunk
 *    of tokens) that threads take from a shared atomic counter, so a thread
 *    slowed by another process does not hold the others up and every shape
 *    (one token, few outputs and many tokens, ...) keeps all threads busy.
 *    - n_tok == 1 (decode): a unit is a run of consecutive rows streamed
 *      through the type's vec_dot, or through a matrix-vector kernel
 *      (the table's gemv; for the q8_0 family it first expands the
 *      activation once, the k-quants' read the q8_K row as it is); the cost
 *      should be reading the weights once.
 *    - n_tok > 1 (prefill): a unit's weight rows are reused for every token of
 *      its token chunk. Types with a tiled kernel (the table's tile) compute
 *      MR rows x NR tokens per tile in registers; the others dot one weight
 *      row, held in L1, with each token in turn. The token chunk is sized so
 *      that its converted activations stay in L2 while the rows go by.
 *    - n_tok >= F32_MIN_TOK on AVX2 (prompt processing): the f32 path. The
 *      activations, rounded through the vec_dot type (so the products are
 *      those of the integer kernels), are expanded to f32 once; a unit
 *      dequantizes its weight rows, 4 at a time and F32_KC elements of k at a
 *      time, into a panel on the stack that stays in L1, and multiplies it
 *      with every token of its chunk with FMAs (the table's ftile). On CPUs
 *      with slow byte multiplies this beats the integer tiles once a row is
 *      reused by enough tokens; the threshold was measured with
 *      bench/bench_matmul.c.
 * kern_matmul_multi runs several products of one row length (q, k and v;
 * gate and up; all of a MoE layer's chosen experts) as one job: their units
 * are drawn from one counter, so the pool wakes once instead of once per
 * product and small matrices do not leave a thread idle, and products of one
 * input convert it once. Each output is computed exactly as by kern_matmul
 * (a unit's result does not depend on how the rows and tokens are cut).
 * Nothing is allocated; the work counter lives on the caller's stack.
 */
#include "kernels/kernels_int.h"

#include <stdatomic.h>
#include <string.h>

/* Bytes of activations per token chunk that should stay in L2. */
#define ACT_CHUNK_BYTES (192 * 1024)
/* Bytes of weights per decode work unit: long enough runs that the
 * prefetchers' streams rarely restart (48 KiB -> 192 KiB: the dense q8_0
 * file's generation 41.9-43.4 -> 44.3-44.5 tok/s at 2 threads, the q4_k_m
 * file's 51-52 -> 63-65 with the gemv prefetch at 2048, on a Sapphire
 * Rapids class Xeon); rows are still cut into 8 units per thread at least,
 * for the balance between threads. */
#ifndef DECODE_UNIT_BYTES
#define DECODE_UNIT_BYTES (192 * 1024)
#endif
/* The f32 path: from F32_MIN_TOK tokens on (more for the types whose integer
 * tiles are already fast, see f32_min_tok); elements of k per panel pass (a
 * multiple of every block size, 256). */
#define F32_MIN_TOK 8
#define F32_KC 512

/* Measured crossovers (1 thread, 1024..4864 x 896..1024, this project's
 * Zen 1 machine): about 6-8 tokens for the q8_0 family and for the types
 * without integer tiles; 16 for q4_K and q6_K, whose integer tiles reach
 * 25 GFLOP/s. */
static int64_t f32_min_tok(enum ggml_type wt)
{
    return wt == GGML_TYPE_Q4_K || wt == GGML_TYPE_Q6_K ? 16 : F32_MIN_TOK;
}

struct mm_job {
    const struct kern_type_ops *o;
    enum ggml_type wt;
    struct kern_tile tile;
    struct kern_gemv gemv;  /* decode kernel, used when n_tok == 1 */
    kern_ftile_fn ftile;    /* f32 path, used when not NULL */
    int ftile_nc;           /* its tiles' activation rows, at most */
    const float *actf;      /* its activations: n_tok rows of n_in f32 */
    float *actf_buf;        /* where they are written (in wbuf), or NULL */
    kern_to_float_fn w_to_float;
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
    char *apack;            /* the tile's packed activations (in wbuf), or NULL */
    size_t pack_lda;        /* bytes of one packed group */
    int64_t rows_per_unit, toks_per_unit;
    int64_t n_row_units, n_units;
};

static size_t act_row_size(const struct kern_type_ops *o, int64_t n_in)
{
    return ggml_row_size(o->vec_dot_type, n_in);
}

/* Whether the weight type's f32 activations may be packed for a tile
 * (bf16 weights: bf16_amx.c), so that wbuf needs room for them. */
static bool packs_f32(enum ggml_type wt)
{
    return wt == GGML_TYPE_BF16;
}

/* Bytes of one product's packed activations. */
static size_t pack_size(const struct kern_type_ops *o, int64_t n_in, int64_t n_tok)
{
    return o->vec_dot_type == GGML_TYPE_F32 ? KERN_PACK_BF16_SIZE(n_in, n_tok) : KERN_PACK_SIZE(n_in, n_tok);
}

size_t kern_matmul_wsize(enum ggml_type wt, int64_t n_in, int64_t n_tok)
{
    const struct kern_type_ops *o = kern_ops(wt);
    MAAS_ASSERT(o && o->vec_dot);
    if (o->vec_dot_type == GGML_TYPE_F32) /* used as they are, or (from 2 tokens on) packed */
        return packs_f32(wt) && n_tok > 1 ? KERN_PACK_BF16_SIZE(n_in, n_tok) + 64 : 0;
    size_t s = act_row_size(o, n_in) * (size_t)n_tok;
    /* The f32 path's rounded activations, 32-byte aligned. */
    if (n_tok >= F32_MIN_TOK)
        s += (size_t)n_tok * (size_t)n_in * sizeof(float) + 32;
    /* Room for the decode kernels' prepared activation and for the tiles'
     * packed activations, whatever the ISA in use, so that a buffer stays
     * valid when the table changes. */
    if (o->vec_dot_type == GGML_TYPE_Q8_0)
        s += KERN_GEMV_ACT_SIZE(n_in);
    if ((o->vec_dot_type == GGML_TYPE_Q8_0 || o->vec_dot_type == GGML_TYPE_Q8_K) && n_tok > 1)
        s += KERN_PACK_SIZE(n_in, n_tok) + 64;
    return s;
}

static void convert_rows(struct mm_job *j, int64_t lo, int64_t hi)
{
    if (j->o->vec_dot_type == GGML_TYPE_F32) /* only packed */
        return;
    for (int64_t t = lo; t < hi; t++) {
        char *row = j->act + (size_t)t * j->lda;
        j->o->from_float_act(j->x + t * j->n_in, row, j->n_in);
        if (j->actf_buf)
            kern_tab.act_to_float(j->o->vec_dot_type, row, j->actf_buf + t * j->n_in, j->n_in);
    }
}

/* Converts the activation rows, and packs them for the tile when it reads
 * them packed (then a thread takes whole groups). */
static void convert_job(void *ctx, int ith, int nth)
{
    struct mm_job *j = ctx;
    int64_t lo, hi;
    if (!j->apack) {
        split_range(j->n_tok, ith, nth, &lo, &hi);
        convert_rows(j, lo, hi);
        return;
    }
    const int64_t ng = (j->n_tok + KERN_PACK_TOKENS - 1) / KERN_PACK_TOKENS;
    split_range(ng, ith, nth, &lo, &hi);
    for (int64_t g = lo; g < hi; g++) {
        const int64_t t0 = g * KERN_PACK_TOKENS;
        const int64_t t1 = t0 + KERN_PACK_TOKENS < j->n_tok ? t0 + KERN_PACK_TOKENS : j->n_tok;
        convert_rows(j, t0, t1);
        j->tile.pack(j->act + (size_t)t0 * j->lda, j->lda, (int)(t1 - t0), j->n_in, j->apack + g * j->pack_lda);
    }
}

/* The f32 path for one unit: panels of up to 4 dequantized rows x F32_KC. */
static void run_unit_f32(struct mm_job *j, int64_t r0, int64_t r1, int64_t t0, int64_t t1)
{
    float panel[KERN_FTILE_MR * F32_KC] __attribute__((aligned(32)));
    const enum ggml_type wt = j->wt;
    for (int64_t k0 = 0; k0 < j->n_in; k0 += F32_KC) {
        const int64_t len = j->n_in - k0 < F32_KC ? j->n_in - k0 : F32_KC;
        const size_t koff = ggml_row_size(wt, k0);
        for (int64_t r = r0; r < r1; r += KERN_FTILE_MR) {
            const int nr = (int)(r1 - r < KERN_FTILE_MR ? r1 - r : KERN_FTILE_MR);
            for (int i = 0; i < nr; i++)
                j->w_to_float(j->W + (size_t)(r + i) * j->ldw + koff, panel + i * F32_KC, len);
            for (int64_t t = t0; t < t1; t += j->ftile_nc) {
                const int nc = (int)(t1 - t < j->ftile_nc ? t1 - t : j->ftile_nc);
                j->ftile(len, panel, F32_KC, nr, j->actf + t * j->n_in + k0, j->n_in, nc, j->y + t * j->ldy + r,
                         j->ldy, k0 > 0);
            }
        }
    }
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
    if (j->ftile) {
        run_unit_f32(j, r0, r1, t0, t1);
        return;
    }
    if (j->gemv.fn) { /* the prepared activation, or (no prepare) the converted row */
        j->gemv.fn(j->n_in, j->W + (size_t)r0 * j->ldw, j->ldw, r1 - r0, j->gact ? j->gact : j->act, j->y + r0);
        return;
    }
    if (j->tile.fn && t1 - t0 > 1) {
        const int mr = j->tile.mr, nc = j->tile.nc_max;
        for (int64_t r = r0; r < r1; r += mr) {
            int nr = (int)(r1 - r < mr ? r1 - r : mr);
            for (int64_t t = t0; t < t1; t += nc) {
                int ncur = (int)(t1 - t < nc ? t1 - t : nc);
                const char *a = j->act + (size_t)t * j->lda;
                size_t lda = j->lda;
                if (j->apack) { /* t is a multiple of the group (nc and the units' token counts are) */
                    a = j->apack + (size_t)(t / KERN_PACK_TOKENS) * j->pack_lda;
                    lda = j->pack_lda;
                }
                j->tile.fn(j->n_in, j->W + (size_t)r * j->ldw, j->ldw, nr, a, lda, ncur, j->y + t * j->ldy + r,
                           j->ldy);
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

/* ---- set-up of one product ---- */

/* Bytes of wbuf one product needs beyond its activation rows' share, at
 * most: the f32 region's and the decode area's alignment slack. */
#define PRODUCT_SLACK 64

/* Chooses the kernels of product p, takes its activation buffers from
 * *wcur (advancing it; NULL when the weight type dots with f32 directly),
 * and cuts its output into work units for nth threads. */
static void job_init(struct mm_job *j, const struct kern_mm *p, int64_t n_in, char **wcur, int nth)
{
    const struct kern_type_ops *o = kern_ops(p->wt);
    MAAS_ASSERT(o && o->vec_dot);
    MAAS_ASSERT(n_in % ggml_blck_size(p->wt) == 0 && p->ldy >= p->n_out);
    const int64_t n_tok = p->n_tok;
    memset(j, 0, sizeof *j);
    j->o = o;
    j->wt = p->wt;
    j->W = p->W;
    j->ldw = ggml_row_size(p->wt, n_in);
    j->n_out = p->n_out;
    j->n_in = n_in;
    j->x = p->x;
    j->n_tok = n_tok;
    j->y = p->y;
    j->ldy = p->ldy;
    j->tile = (struct kern_tile){NULL, 1, 1, false, NULL};
    j->gemv = (struct kern_gemv){NULL, NULL};
    if (n_tok > 1 && kern_tab.tile)
        j->tile = kern_tab.tile(p->wt, n_tok);
    if (n_tok == 1 && kern_tab.gemv)
        j->gemv = kern_tab.gemv(p->wt);
    if (n_tok >= f32_min_tok(p->wt) && n_in % 8 == 0 && o->to_float && !j->tile.over_f32) {
        j->ftile = kern_tab.ftile.fn;
        j->ftile_nc = kern_tab.ftile.nc_max;
        j->w_to_float = o->to_float;
    }

    if (o->vec_dot_type == GGML_TYPE_F32) {
        j->act = (char *)p->x;
        j->lda = (size_t)n_in * sizeof(float);
        j->actf = p->x;
        if (j->tile.fn && j->tile.pack) {
            MAAS_ASSERT(*wcur && packs_f32(p->wt) && j->tile.nc_max % KERN_PACK_TOKENS == 0);
            j->apack = (char *)(((uintptr_t)*wcur + 63) & ~(uintptr_t)63);
            j->pack_lda = pack_size(o, n_in, KERN_PACK_TOKENS);
            *wcur = j->apack + pack_size(o, n_in, n_tok);
        }
    } else {
        MAAS_ASSERT(*wcur && o->from_float_act);
        j->act = *wcur;
        j->lda = act_row_size(o, n_in);
        char *end = j->act + j->lda * (size_t)n_tok;
        if (j->ftile) {
            j->actf_buf = (float *)(((uintptr_t)end + 31) & ~(uintptr_t)31);
            j->actf = j->actf_buf;
            end = (char *)(j->actf_buf + n_tok * n_in);
        }
        if (j->gemv.fn && j->gemv.prepare) {
            j->gact = (const void *)(((uintptr_t)end + 31) & ~(uintptr_t)31);
            end = (char *)j->gact + KERN_GEMV_ACT_SIZE(n_in);
        }
        if (j->tile.fn && j->tile.pack && !j->ftile) { /* packed only for a tile that runs */
            MAAS_ASSERT((o->vec_dot_type == GGML_TYPE_Q8_0 || o->vec_dot_type == GGML_TYPE_Q8_K) &&
                        j->tile.nc_max % KERN_PACK_TOKENS == 0);
            j->apack = (char *)(((uintptr_t)end + 63) & ~(uintptr_t)63);
            j->pack_lda = pack_size(o, n_in, KERN_PACK_TOKENS);
            end = j->apack + pack_size(o, n_in, n_tok);
        }
        *wcur = end;
    }

    /* Work units. Rows per unit: a multiple of the tile height, enough units
     * for dynamic balancing (about 8 per thread) but not so small that the
     * counter and the loop overheads show. */
    const int64_t mr = j->ftile ? KERN_FTILE_MR : j->tile.mr;
    if (n_tok == 1) {
        j->toks_per_unit = 1;
        j->rows_per_unit = (int64_t)(DECODE_UNIT_BYTES / j->ldw);
        int64_t max_rows = (j->n_out + 8 * nth - 1) / (8 * nth);
        if (j->rows_per_unit > max_rows)
            j->rows_per_unit = max_rows;
    } else {
        int64_t nc = j->ftile ? j->ftile_nc : j->tile.nc_max;
        /* the f32 path keeps F32_KC floats of each token of the chunk in L2 */
        j->toks_per_unit = (int64_t)(ACT_CHUNK_BYTES / (j->ftile ? F32_KC * sizeof(float) : j->lda));
        j->toks_per_unit = (j->toks_per_unit / nc) * nc;
        if (j->toks_per_unit < nc)
            j->toks_per_unit = nc;
        if (j->toks_per_unit > n_tok)
            j->toks_per_unit = n_tok;
        int64_t n_tok_units = (n_tok + j->toks_per_unit - 1) / j->toks_per_unit;
        /* rows: aim at 8 units per thread overall, at least 4 tiles high, at
         * most 64 rows (the rows of a unit are re-read once per tile column). */
        int64_t want_row_units = (8 * nth + n_tok_units - 1) / n_tok_units;
        j->rows_per_unit = (j->n_out + want_row_units - 1) / want_row_units;
        if (j->rows_per_unit > 64)
            j->rows_per_unit = 64;
        if (j->rows_per_unit < 4 * mr)
            j->rows_per_unit = 4 * mr;
    }
    if (j->rows_per_unit < 1)
        j->rows_per_unit = 1;
    j->rows_per_unit = (j->rows_per_unit + mr - 1) / mr * mr;
    j->n_row_units = (j->n_out + j->rows_per_unit - 1) / j->rows_per_unit;
    j->n_units = j->n_row_units * ((n_tok + j->toks_per_unit - 1) / j->toks_per_unit);
}

/* True when job b can read the converted activations of job a. */
static bool same_activations(const struct mm_job *a, const struct mm_job *b)
{
    return a->x == b->x && a->n_tok == b->n_tok && a->o->vec_dot_type == b->o->vec_dot_type &&
           (a->actf_buf != NULL) == (b->actf_buf != NULL) && (a->gact != NULL) == (b->gact != NULL) &&
           (a->apack != NULL) == (b->apack != NULL);
}

/* True when the job's activations are converted or packed into wbuf
 * (else the weight type dots with the f32 rows as they are). */
static bool converts(const struct mm_job *j)
{
    return j->o->vec_dot_type != GGML_TYPE_F32 || j->apack;
}

static void prepare_gemv(struct mm_job *j)
{
    if (j->gemv.fn && j->gemv.prepare)
        j->gemv.prepare(j->act, (void *)j->gact, j->n_in);
}

/* ---- the compute pass over every product's units ---- */
struct mm_multi {
    struct mm_job *jobs;
    int n;
    int64_t n_units;       /* all products' units */
    atomic_llong next;     /* next unit to hand out (over all products) */
};

static void multi_job(void *ctx, int ith, int nth)
{
    struct mm_multi *mm = ctx;
    (void)nth;
    (void)ith;
    /* Units are handed out in increasing order, so a thread's product index
     * only moves forward. All come from the counter: a thread that never
     * gets to run (pool_run_dynamic) leaves nothing undone. */
    int i = 0;
    int64_t base = 0;
    for (int64_t u = atomic_fetch_add_explicit(&mm->next, 1, memory_order_relaxed); u < mm->n_units;
         u = atomic_fetch_add_explicit(&mm->next, 1, memory_order_relaxed)) {
        while (u >= base + mm->jobs[i].n_units) {
            base += mm->jobs[i].n_units;
            i++;
        }
        run_unit(&mm->jobs[i], u - base);
    }
}

size_t kern_matmul_multi_wsize(const struct kern_mm *mm, int n, int64_t n_in)
{
    size_t s = 0;
    for (int i = 0; i < n; i++) {
        size_t w = kern_matmul_wsize(mm[i].wt, n_in, mm[i].n_tok);
        s += w ? w + PRODUCT_SLACK : 0;
    }
    return s;
}

size_t kern_matmul_wsize_bound(enum ggml_type wt, int64_t n_in, int64_t total_tok, int n_products)
{
    /* kern_matmul_wsize is affine in n_tok but for the f32 region, which
     * it adds from F32_MIN_TOK tokens on: counting it always bounds every
     * split of total_tok tokens into n_products products. */
    const struct kern_type_ops *o = kern_ops(wt);
    MAAS_ASSERT(o && o->vec_dot);
    if (o->vec_dot_type == GGML_TYPE_F32) /* the packed groups: one partial group per product at most */
        return packs_f32(wt) ? (size_t)((n_in + 31) / 32) * KERN_PACK_BF16_BLOCK / KERN_PACK_TOKENS *
                                       (size_t)total_tok +
                                   (KERN_PACK_BF16_SIZE(n_in, KERN_PACK_TOKENS) + 64 + PRODUCT_SLACK) *
                                       (size_t)n_products
                             : 0;
    size_t per_tok = act_row_size(o, n_in) + (size_t)n_in * sizeof(float);
    size_t per_product = 32 + KERN_GEMV_ACT_SIZE(n_in) + PRODUCT_SLACK;
    if (o->vec_dot_type == GGML_TYPE_Q8_0 || o->vec_dot_type == GGML_TYPE_Q8_K) {
        /* packed groups: one partial group per product at most (per token
         * rounded up: KERN_PACK_PER32 / KERN_PACK_TOKENS need not be whole) */
        per_tok += ((size_t)(n_in / 32) * KERN_PACK_PER32 + KERN_PACK_TOKENS - 1) / KERN_PACK_TOKENS;
        per_product += KERN_PACK_SIZE(n_in, KERN_PACK_TOKENS) + 64;
    }
    return per_tok * (size_t)total_tok + per_product * (size_t)n_products;
}

void kern_matmul_multi(struct pool *pool, const struct kern_mm *mm, int n, int64_t n_in, void *wbuf)
{
    enum { CHUNK = 64 };
    const int nth = pool_n_threads(pool);
    /* in groups of CHUNK products (the jobs live on the stack) */
    for (int g0 = 0; g0 < n; g0 += CHUNK) {
        const int gn = n - g0 < CHUNK ? n - g0 : CHUNK;
        struct mm_job jobs[CHUNK];
        char *wcur = wbuf;
        int m = 0;
        for (int i = 0; i < gn; i++) {
            const struct kern_mm *p = &mm[g0 + i];
            if (p->n_out <= 0 || p->n_tok <= 0)
                continue;
            job_init(&jobs[m], p, n_in, &wcur, nth);
            m++;
        }
        /* activations: converted once per distinct input, by the calling
         * thread for single tokens, by the pool's threads for batches */
        for (int i = 0; i < m; i++) {
            struct mm_job *j = &jobs[i];
            if (!converts(j))
                continue;
            int from = -1;
            for (int k = 0; k < i && from < 0; k++)
                if (converts(&jobs[k]) && same_activations(&jobs[k], j))
                    from = k;
            if (from >= 0) {
                j->act = jobs[from].act;
                j->actf = jobs[from].actf;
                j->actf_buf = NULL;
                j->gact = jobs[from].gact;
                j->apack = jobs[from].apack;
                continue;
            }
            if (j->n_tok == 1 || nth == 1)
                convert_job(j, 0, 1);
            else
                pool_run(pool, convert_job, j);
            prepare_gemv(j);
        }
        struct mm_multi all = {.jobs = jobs, .n = m, .n_units = 0};
        for (int i = 0; i < m; i++)
            all.n_units += jobs[i].n_units;
        atomic_init(&all.next, 0);
        if (all.n_units == 0)
            continue;
        if (nth == 1 || all.n_units == 1)
            multi_job(&all, 0, 1);
        else
            pool_run_dynamic(pool, multi_job, &all);
    }
}

void kern_matmul(struct pool *pool, enum ggml_type wt, const void *W, int64_t n_out, int64_t n_in, const float *x,
                 int64_t n_tok, float *y, int64_t ldy, void *wbuf)
{
    struct kern_mm p = {.wt = wt, .W = W, .n_out = n_out, .x = x, .n_tok = n_tok, .y = y, .ldy = ldy};
    kern_matmul_multi(pool, &p, 1, n_in, wbuf);
}
