/* The network in double, for the gradient checks (see net_body.h): the
 * same source as the float one, with a plain matrix product. */
#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void gemm_f64(struct pool *pool, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const double *A,
                     int64_t lda, const double *B, int64_t ldb, double beta, double *C, int64_t ldc)
{
    (void)pool;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
            C[i * ldc + j] = beta != 0 ? C[i * ldc + j] + s : s;
        }
}

#define R double
#define SFX(name) name##_f64
#define GEMM gemm_f64
#define REXP exp
#include "net_body.h"

/* the row operations, for the unit tests */
void train_rmsnorm_fwd_f64(double *y, double *rs, const double *x, const double *w, int n, double eps)
{
    rms_fwd_f64(y, rs, x, w, n, eps);
}

void train_rmsnorm_bwd_f64(double *dx, double *dw, const double *dy, const double *x, const double *w, double rs,
                           int n)
{
    rms_bwd_f64(dx, dw, dy, x, w, rs, n);
}

void train_rope_f64(double *x, int n_head, int hd, int n_rot, bool neox, const double *cs, const double *sn,
                    bool inverse)
{
    rope_f64(x, n_head, hd, n_rot, neox, cs, sn, inverse);
}

void train_swiglu_fwd_f64(double *a, const double *g, const double *u, int n)
{
    swiglu_fwd_f64(a, g, u, n);
}

void train_swiglu_bwd_f64(double *dg, double *du, const double *da, const double *g, const double *u, int n)
{
    swiglu_bwd_f64(dg, du, da, g, u, n);
}

double train_xent_f64(double *dlogits, const double *logits, int n, int target, double scale)
{
    return xent_f64(dlogits, logits, n, target, scale);
}
