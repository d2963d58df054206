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

static void softmax_ref(float *x, int64_t n)
{
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++)
        x[i] *= inv;
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

void kern_register_ref_ops(struct kern_table *tab)
{
    struct kern_f32_ops *ops = &tab->f32;
    ops->dot = dot_ref;
    ops->axpy = axpy_ref;
    ops->rmsnorm = rmsnorm_ref;
    ops->softmax = softmax_ref;
    ops->swiglu = swiglu_ref;
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
void kern_softmax(float *x, int64_t n)
{
    kern_tab.f32.softmax(x, n);
}
void kern_swiglu(float *out, const float *gate, const float *up, int64_t n)
{
    kern_tab.f32.swiglu(out, gate, up, n);
}

void kern_rope(float *x, int64_t n_head, int64_t head_dim, int64_t n_rot, int64_t pos, float base, float freq_scale,
               bool neox)
{
    /* Angles computed in double: theta_i = pos * freq_scale * base^(-2i/n_rot). */
    for (int64_t i = 0; i < n_rot / 2; i++) {
        double theta = (double)pos * freq_scale * pow((double)base, -2.0 * (double)i / (double)n_rot);
        float c = (float)cos(theta), s = (float)sin(theta);
        for (int64_t h = 0; h < n_head; h++) {
            float *v = x + h * head_dim;
            int64_t a = neox ? i : 2 * i, b = neox ? i + n_rot / 2 : 2 * i + 1;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}
