/* Reference f32 row operations: the specification the SIMD versions are
 * tested against. Accumulations are in double where it costs nothing in
 * clarity, so the reference is the more accurate side of any comparison. */
#include "kernels/kernels_int.h"

#include <math.h>

static float dot_ref(const float *a, const float *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return (float)s;
}

static void axpy_ref(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

static void rmsnorm_ref(float *y, const float *x, const float *w, int64_t n, float eps)
{
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * scale * (w ? w[i] : 1.0f);
}

float kern_silu(float x)
{
    return x / (1.0f + expf(-x));
}

static void swiglu_ref(float *out, const float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = kern_silu(gate[i]) * up[i];
}

/* 0.5 x (1 + tanh(z)) = x sigmoid(2 z), z = sqrt(2/pi) (x + 0.044715 x^3) */
static void gelu_ref(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double v = x[i], z = 0.7978845608028654 * (v + 0.044715 * v * v * v);
        y[i] = (float)(0.5 * v * (1.0 + tanh(z)));
    }
}

void kern_register_ref_ops(struct kern_table *tab)
{
    tab->f32 = (struct kern_f32_ops){
        .dot = dot_ref, .axpy = axpy_ref, .rmsnorm = rmsnorm_ref, .swiglu = swiglu_ref, .gelu = gelu_ref};
}

float kern_dot_f32(const float *a, const float *b, int64_t n)
{
    return kern_tab.f32.dot(a, b, n);
}
void kern_axpy(float *y, float a, const float *x, int64_t n)
{
    kern_tab.f32.axpy(y, a, x, n);
}
void kern_add(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}
void kern_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
    kern_tab.f32.rmsnorm(y, x, w, n, eps);
}
void kern_swiglu(float *out, const float *gate, const float *up, int64_t n)
{
    kern_tab.f32.swiglu(out, gate, up, n);
}
void kern_gelu(float *y, const float *x, int64_t n)
{
    kern_tab.f32.gelu(y, x, n);
}
