/* AVX2 + FMA versions of the f32 row operations. Each ends with a scalar tail
 * for the elements that do not fill a register. */
#include "kernels/avx2_int.h"

#include <immintrin.h>
#include <math.h>

static float dot_avx2(const float *a, const float *b, int64_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = avx2_hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void axpy_avx2(float *y, float a, const float *x, int64_t n)
{
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * x[i];
}

static void rmsnorm_avx2(float *y, const float *x, const float *w, int64_t n, float eps)
{
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        acc = _mm256_fmadd_ps(v, v, acc);
    }
    float ss = avx2_hsum_ps(acc);
    for (; i < n; i++)
        ss += x[i] * x[i];
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    __m256 vs = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
        if (w)
            v = _mm256_mul_ps(v, _mm256_loadu_ps(w + i));
        _mm256_storeu_ps(y + i, v);
    }
    for (; i < n; i++)
        y[i] = x[i] * scale * (w ? w[i] : 1.0f);
}

static void swiglu_avx2(float *out, const float *gate, const float *up, int64_t n)
{
    int64_t i = 0;
    __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, kern_exp256(_mm256_sub_ps(zero, g))));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++)
        out[i] = kern_silu(gate[i]) * up[i];
}

/* x * sigmoid(2 z), z = sqrt(2/pi) (x + 0.044715 x^3); the argument of exp
 * is clamped so that exp cannot overflow (the result is then -0 or x). */
static void gelu_avx2(float *y, const float *x, int64_t n)
{
    int64_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f), k = _mm256_set1_ps(-1.5957691216057308f),
                 c = _mm256_set1_ps(0.044715f), lo = _mm256_set1_ps(-80.0f), hi = _mm256_set1_ps(80.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 u = _mm256_mul_ps(k, _mm256_fmadd_ps(_mm256_mul_ps(c, v), _mm256_mul_ps(v, v), v));
        u = _mm256_min_ps(_mm256_max_ps(u, lo), hi);
        _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(one, kern_exp256(u))));
    }
    for (; i < n; i++) {
        float v = x[i], u = -1.5957691216057308f * (v + 0.044715f * v * v * v);
        y[i] = v / (1.0f + expf(u < -80.0f ? -80.0f : u > 80.0f ? 80.0f : u));
    }
}

void kern_register_avx2_ops(struct kern_table *tab)
{
    tab->f32 = (struct kern_f32_ops){
        .dot = dot_avx2, .axpy = axpy_avx2, .rmsnorm = rmsnorm_avx2, .swiglu = swiglu_avx2, .gelu = gelu_avx2};
}
