/*
 * kernels: rows of tiny, zero and extreme values through every quantizable
 * type, on the reference table. The point is the sanitizer build: a model
 * whose weights are ~1e-38 or subnormal makes a scale's inverse overflow to
 * infinity (15 / 1e-39), and the quantizers must turn that into a defined,
 * sensible block instead of shifting a negative int or converting inf to an
 * int (both undefined; UBSan aborts this program on either).
 *
 *   - tiny rows (magnitudes 1e-45 .. 1e-30, several shapes): dequantized
 *     values are finite and within the row's own magnitude of the input, so
 *     near zero; the activation quantizers and dot products stay finite too;
 *   - zero rows (+0 and -0): exact zeros back;
 *   - rows of +-FLT_MAX, alone or among zeros, tiny or gaussian values: no
 *     undefined behaviour (fp16 scales overflow there, as in ggml, so the
 *     output need not be finite);
 *   - every row: the same bytes twice, into buffers pre-filled differently
 *     (garbage from undefined behaviour or bytes left unwritten show here);
 *   - q2_K: a block of constant -1e-39 (the reported case: all of the fit
 *     in the min, whose inverse scale 15 / 1e-39 is infinite) is a zero
 *     block, byte for byte, as ggml writes for a block too small to scale.
 *
 * The golden ggml hashes of ordinary rows are in kernels_quant.c.
 */
#include "kernels/kernels.h"
#include "test.h"
#include "kernels_variants.h"

#include <float.h>
#include <stdint.h>

#define N_ROW 512 /* two super-blocks, 16 blocks of 32 */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

static float amax_of(const float *x, int n)
{
    float a = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > a)
            a = fabsf(x[i]);
    return a;
}

/* Shapes of tiny row, value m at scale 1: NSHAPES of them. */
enum { SH_GAUSS, SH_POS, SH_NEG, SH_ALT, SH_ONE_POS, SH_ONE_NEG, SH_RAMP, SH_HALF, NSHAPES };

static void tiny_row(float *x, int shape, float m, struct rng *r)
{
    for (int i = 0; i < N_ROW; i++) {
        float v = 0;
        switch (shape) {
        case SH_GAUSS: v = (float)rng_normal(r) * m; break;
        case SH_POS: v = m; break;
        case SH_NEG: v = -m; break;
        case SH_ALT: v = i % 2 ? -m : m; break;
        case SH_ONE_POS: v = i % 16 == 5 ? m : 0.0f; break;
        case SH_ONE_NEG: v = i % 16 == 11 ? -m : 0.0f; break;
        case SH_RAMP: v = (float)(i % 16 - 8) * m; break;
        case SH_HALF: v = (i / 16) % 2 ? m : (float)rng_normal(r) * m; break; /* flat and varied sub-blocks */
        }
        x[i] = v;
    }
}

/* Every type with a reference quantizer and dequantizer: the weight types,
 * f32 / f16 / bf16 and the activation formats. */
static bool next_type(int *t)
{
    while (++*t < GGML_TYPE_COUNT)
        if (kern_type_quantizable((enum ggml_type)*t))
            return true;
    return false;
}

/* Quantizes x twice (into 0x00- and 0xff-filled buffers), checks the bytes
 * agree, and dequantizes into y (pre-filled with NaN). */
static void roundtrip(enum ggml_type t, const float *x, float *y, const char *what)
{
    const size_t rs = ggml_row_size(t, N_ROW);
    uint8_t *a = xmalloc(rs), *b = xmalloc(rs);
    memset(a, 0x00, rs);
    memset(b, 0xff, rs);
    kern_ops(t)->from_float(x, a, N_ROW);
    kern_ops(t)->from_float(x, b, N_ROW);
    CHECKF(memcmp(a, b, rs) == 0, "%s %s: bytes differ between two runs", ggml_type_name(t), what);
    for (int i = 0; i < N_ROW; i++)
        y[i] = NAN;
    kern_ops(t)->to_float(a, y, N_ROW);
    free(a);
    free(b);
}

TEST(test_tiny_rows)
{
    static const float mags[] = {1.4e-45f, 1e-44f, 1e-42f, 1e-40f, 1e-39f, FLT_MIN, 1e-38f, 4e-38f,
                                 1e-37f,   4e-37f, 1e-36f, 1e-35f, 1e-33f, 1e-32f,  1e-30f};
    float *x = xmalloc(N_ROW * sizeof(float)), *y = xmalloc(N_ROW * sizeof(float));
    struct rng r;
    rng_seed(&r, 38);
    for (int t = -1; next_type(&t);) {
        int bad = 0;
        for (size_t k = 0; k < sizeof mags / sizeof mags[0]; k++) {
            for (int shape = 0; shape < NSHAPES; shape++) {
                char what[64];
                snprintf(what, sizeof what, "shape %d, magnitude %g", shape, (double)mags[k]);
                tiny_row(x, shape, mags[k], &r);
                roundtrip((enum ggml_type)t, x, y, what);
                const float a = amax_of(x, N_ROW);
                for (int i = 0; i < N_ROW && bad < 5; i++) {
                    if (!isfinite(y[i]) || !(fabsf(y[i] - x[i]) <= a)) {
                        CHECKF(0, "%s %s: y[%d] = %g for x = %g", ggml_type_name((enum ggml_type)t), what, i,
                               (double)y[i], (double)x[i]);
                        bad++;
                    }
                }
            }
        }
    }
    free(x);
    free(y);
}

TEST(test_zero_rows)
{
    float *x = xmalloc(N_ROW * sizeof(float)), *y = xmalloc(N_ROW * sizeof(float));
    for (int t = -1; next_type(&t);) {
        for (int sign = 0; sign < 2; sign++) {
            for (int i = 0; i < N_ROW; i++)
                x[i] = sign ? -0.0f : 0.0f;
            roundtrip((enum ggml_type)t, x, y, sign ? "-0 row" : "+0 row");
            int bad = 0;
            for (int i = 0; i < N_ROW; i++)
                bad += !(y[i] == 0.0f);
            CHECKF(bad == 0, "%s %s zero row: %d values not zero", ggml_type_name((enum ggml_type)t),
                   sign ? "-0" : "+0", bad);
        }
    }
    free(x);
    free(y);
}

/* Huge values: fp16 scales overflow (ggml's too), so only the absence of
 * undefined behaviour and the determinism of the bytes are checked. */
TEST(test_huge_rows)
{
    float *x = xmalloc(N_ROW * sizeof(float)), *y = xmalloc(N_ROW * sizeof(float));
    struct rng r;
    rng_seed(&r, 3402823);
    for (int t = -1; next_type(&t);) {
        for (int kind = 0; kind < 8; kind++) {
            for (int i = 0; i < N_ROW; i++) {
                float g = (float)rng_normal(&r);
                switch (kind) {
                case 0: x[i] = FLT_MAX; break;
                case 1: x[i] = -FLT_MAX; break;
                case 2: x[i] = i % 2 ? -FLT_MAX : FLT_MAX; break;
                case 3: x[i] = i % 16 == 3 ? FLT_MAX : i % 16 == 9 ? -FLT_MAX : 0.0f; break;
                case 4: x[i] = i % 37 == 0 ? (i % 2 ? -FLT_MAX : FLT_MAX) : g; break;
                case 5: x[i] = i % 16 == 7 ? -FLT_MAX : 1.4e-45f; break;
                case 6: x[i] = g * 1e37f; break;
                case 7: x[i] = (i / 16) % 2 ? g * 3e38f : g * 1e-39f; break;
                }
            }
            char what[32];
            snprintf(what, sizeof what, "huge kind %d", kind);
            roundtrip((enum ggml_type)t, x, y, what);
        }
    }
    free(x);
    free(y);
}

/* Activations and dot products on tiny rows: finite, and near zero. */
TEST(test_tiny_vec_dot)
{
    static const float mags[] = {1.4e-45f, 1e-40f, 1e-38f, 1e-36f, 1e-30f};
    float *w = xmalloc(N_ROW * sizeof(float)), *a = xmalloc(N_ROW * sizeof(float));
    struct rng r;
    rng_seed(&r, 45);
    for (int t = -1; next_type(&t);) {
        const struct kern_type_ops *o = kern_ops((enum ggml_type)t);
        if (!o->vec_dot || !o->from_float_act)
            continue;
        uint8_t *qw = xmalloc(ggml_row_size((enum ggml_type)t, N_ROW));
        uint8_t *qa = xmalloc(ggml_row_size(o->vec_dot_type, N_ROW));
        for (size_t k = 0; k < sizeof mags / sizeof mags[0]; k++) {
            for (int shape = 0; shape < NSHAPES; shape++) {
                /* tiny weights with unit activations, and unit weights with tiny activations */
                for (int side = 0; side < 2; side++) {
                    tiny_row(side ? a : w, shape, mags[k], &r);
                    for (int i = 0; i < N_ROW; i++)
                        (side ? w : a)[i] = (float)rng_normal(&r);
                    o->from_float(w, qw, N_ROW);
                    o->from_float_act(a, qa, N_ROW);
                    float d = o->vec_dot(N_ROW, qw, qa);
                    /* |sum| <= n * amax(w) * amax(a), with room for the quantization steps */
                    const double bound = 2.0 * N_ROW * amax_of(w, N_ROW) * amax_of(a, N_ROW) + 1e-30;
                    CHECKF(isfinite(d) && fabs(d) <= bound, "%s shape %d magnitude %g side %d: dot %g",
                           ggml_type_name((enum ggml_type)t), shape, (double)mags[k], side, (double)d);
                }
            }
        }
        free(qw);
        free(qa);
    }
    free(w);
    free(a);
}

/* The reported case: q2_K's min 1e-39 makes 15 / max_min infinite. ggml
 * writes a zero block for a block too small to scale; so do we. */
TEST(test_q2_K_tiny_min_is_zero_block)
{
    float x[QK_K];
    block_q2_K q;
    static const float mags[] = {1.4e-45f, 1e-39f, 1e-38f};
    for (size_t k = 0; k < sizeof mags / sizeof mags[0]; k++) {
        for (int i = 0; i < QK_K; i++)
            x[i] = -mags[k];
        memset(&q, 0xa5, sizeof q);
        kern_ops(GGML_TYPE_Q2_K)->from_float(x, &q, QK_K);
        static const block_q2_K zero;
        CHECKF(memcmp(&q, &zero, sizeof q) == 0, "q2_K block of %g is not all zero", (double)-mags[k]);
    }
}

int main(void)
{
    kernels_init();
    use_variant(0); /* the reference */
    RUN(test_q2_K_tiny_min_is_zero_block);
    RUN(test_zero_rows);
    RUN(test_tiny_rows);
    RUN(test_tiny_vec_dot);
    RUN(test_huge_rows);
    TEST_END();
}
