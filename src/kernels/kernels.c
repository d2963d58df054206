/*
 * Kernel dispatch: the per-type table and the f32 operation table, filled at
 * start-up with the reference functions and then overridden by the best
 * instruction set the CPU has (or MAAS_KERNELS forces). Also the f32/f16/bf16
 * row conversions, which are the reference for those types.
 */
#include "kernels/kernels_int.h"

#include <pthread.h>
#include <string.h>
#include <cpuid.h>

static struct kern_type_ops table[GGML_TYPE_COUNT];
struct kern_f32_ops kern_f32;
static enum kern_isa cur_isa = KERN_REF;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* ---- fp16 / bf16 ---- */
float fp16_to_fp32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while (!(mant & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t fp32_to_fp16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx > 0x7f800000u) /* NaN: keep it a quiet NaN */
        return (uint16_t)(sign | 0x7e00);
    if (absx >= 0x477ff000u) /* rounds to >= 65520: infinity */
        return (uint16_t)(sign | 0x7c00);
    if (absx < 0x38800000u) { /* result is subnormal or zero */
        if (absx < 0x33000000u) /* below half the smallest subnormal */
            return (uint16_t)sign;
        uint32_t e = absx >> 23, m = (absx & 0x7fffff) | 0x800000;
        /* value = m * 2^(e-150) and the subnormal unit is 2^-24 */
        uint32_t shift = 126 - e;
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1)))
            r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = absx - 0x38000000u; /* rebias exponent 127 -> 15 */
    uint32_t h = r >> 13, rem = r & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

float bf16_to_fp32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t fp32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

/* ---- reference rows for the float types ---- */
static void f32_to_float(const void *x, float *y, int64_t n)
{
    memcpy(y, x, (size_t)n * sizeof(float));
}
static void f32_from_float(const float *x, void *y, int64_t n)
{
    memcpy(y, x, (size_t)n * sizeof(float));
}
static float f32_vec_dot(int64_t n, const void *x, const void *y)
{
    return kern_f32.dot(x, y, n);
}
static void f16_to_float(const void *x, float *y, int64_t n)
{
    const uint16_t *h = x;
    for (int64_t i = 0; i < n; i++)
        y[i] = fp16_to_fp32(h[i]);
}
static void f16_from_float(const float *x, void *y, int64_t n)
{
    uint16_t *h = y;
    for (int64_t i = 0; i < n; i++)
        h[i] = fp32_to_fp16(x[i]);
}
static float f16_vec_dot(int64_t n, const void *x, const void *y)
{
    const uint16_t *h = x;
    const float *b = y;
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)fp16_to_fp32(h[i]) * b[i];
    return (float)s;
}
static void bf16_to_float(const void *x, float *y, int64_t n)
{
    const uint16_t *h = x;
    for (int64_t i = 0; i < n; i++)
        y[i] = bf16_to_fp32(h[i]);
}
static void bf16_from_float(const float *x, void *y, int64_t n)
{
    uint16_t *h = y;
    for (int64_t i = 0; i < n; i++)
        h[i] = fp32_to_bf16(x[i]);
}
static float bf16_vec_dot(int64_t n, const void *x, const void *y)
{
    const uint16_t *h = x;
    const float *b = y;
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)bf16_to_fp32(h[i]) * b[i];
    return (float)s;
}

void kern_register_ref_float(struct kern_type_ops *tab)
{
    tab[GGML_TYPE_F32] = (struct kern_type_ops){f32_to_float, f32_from_float, f32_from_float, f32_vec_dot,
                                                GGML_TYPE_F32};
    tab[GGML_TYPE_F16] = (struct kern_type_ops){f16_to_float, f16_from_float, f32_from_float, f16_vec_dot,
                                                GGML_TYPE_F32};
    tab[GGML_TYPE_BF16] = (struct kern_type_ops){bf16_to_float, bf16_from_float, f32_from_float, bf16_vec_dot,
                                                 GGML_TYPE_F32};
}

/* ---- CPU detection and table set-up ---- */
static bool os_saves_ymm(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE))
        return false;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    return (lo & 0x6) == 0x6;
}

enum kern_isa kernels_cpu_isa(void)
{
    unsigned a, b, c, d;
    if (!os_saves_ymm())
        return KERN_REF;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return KERN_REF;
    bool fma = c & bit_FMA, f16c = c & bit_F16C;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return KERN_REF;
    bool avx2 = b & bit_AVX2;
    /* AVX-512 kernels are not built yet (no machine here to verify them on),
     * so the best level offered is AVX2. */
    if (avx2 && fma && f16c)
        return KERN_AVX2;
    return KERN_REF;
}

const char *kernels_isa_name(enum kern_isa isa)
{
    switch (isa) {
    case KERN_REF:
        return "ref";
    case KERN_AVX2:
        return "avx2";
    case KERN_AVX512:
        return "avx512";
    }
    return "?";
}

static void build_tables(enum kern_isa isa)
{
    memset(table, 0, sizeof table);
    kern_register_ref_float(table);
    kern_register_ref_quants(table);
    kern_register_ref_f32ops(&kern_f32);
    if (isa >= KERN_AVX2) {
        kern_register_avx2(table);
        kern_register_avx2_f32ops(&kern_f32);
    }
    cur_isa = isa;
}

static void init_once_fn(void)
{
    enum kern_isa isa = kernels_cpu_isa();
    const char *env = getenv("MAAS_KERNELS");
    if (env && *env) {
        if (!strcmp(env, "ref"))
            isa = KERN_REF;
        else if (!strcmp(env, "avx2") && isa >= KERN_AVX2)
            isa = KERN_AVX2;
        else if (strcmp(env, "avx512") != 0 || isa < KERN_AVX512)
            log_warn("MAAS_KERNELS=%s is not available on this CPU; using %s", env, kernels_isa_name(isa));
    }
    build_tables(isa);
}

void kernels_init(void)
{
    pthread_once(&init_once, init_once_fn);
}

enum kern_isa kernels_isa(void)
{
    kernels_init();
    return cur_isa;
}

int kernels_force_isa(enum kern_isa isa)
{
    kernels_init();
    if (isa > kernels_cpu_isa())
        return -1;
    build_tables(isa);
    return 0;
}

const struct kern_type_ops *kern_ops(enum ggml_type t)
{
    kernels_init();
    if ((unsigned)t >= GGML_TYPE_COUNT)
        return NULL;
    return &table[t];
}

bool kern_type_supported(enum ggml_type t)
{
    const struct kern_type_ops *o = kern_ops(t);
    return o && o->to_float && o->vec_dot;
}

bool kern_type_quantizable(enum ggml_type t)
{
    const struct kern_type_ops *o = kern_ops(t);
    return o && o->from_float && o->to_float;
}

size_t kern_quantize(enum ggml_type t, const float *x, void *y, int64_t nrows, int64_t n_per_row)
{
    const struct kern_type_ops *o = kern_ops(t);
    MAAS_ASSERT(o && o->from_float);
    MAAS_ASSERT(n_per_row % ggml_blck_size(t) == 0);
    size_t rs = ggml_row_size(t, n_per_row);
    for (int64_t r = 0; r < nrows; r++)
        o->from_float(x + r * n_per_row, (char *)y + (size_t)r * rs, n_per_row);
    return rs * (size_t)nrows;
}

void kern_dequantize_row(enum ggml_type t, const void *x, float *y, int64_t n)
{
    const struct kern_type_ops *o = kern_ops(t);
    MAAS_ASSERT(o && o->to_float);
    o->to_float(x, y, n);
}
