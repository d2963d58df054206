/*
 * Kernel dispatch: the list of variants and the table of every dispatched
 * operation, filled at start-up with the reference functions and then
 * overridden by the chosen variant's register function. Also the
 * f32/f16/bf16 row conversions, which are the reference for those types.
 */
#include "kernels/kernels_int.h"

#include <pthread.h>
#include <string.h>
#include <cpuid.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

struct kern_table kern_tab, kern_best;
static int cur_variant;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static struct err init_err;

/* ---- fp16 / bf16 ---- */
static inline float f32_of_bits(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint32_t bits_of_f32(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    return x;
}

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
    return f32_of_bits(bits);
}

uint16_t fp32_to_fp16(float f)
{
    uint32_t x = bits_of_f32(f);
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
    return f32_of_bits((uint32_t)h << 16);
}

uint16_t fp32_to_bf16(float f)
{
    uint32_t x = bits_of_f32(f);
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
    return kern_tab.f32.dot(x, y, n);
}
/* f16 and bf16 rows share their loops; cvt is a constant at every call. */
static inline void half_to_float(const void *x, float *y, int64_t n, float (*cvt)(uint16_t))
{
    const uint16_t *h = x;
    for (int64_t i = 0; i < n; i++)
        y[i] = cvt(h[i]);
}
static inline void half_from_float(const float *x, void *y, int64_t n, uint16_t (*cvt)(float))
{
    uint16_t *h = y;
    for (int64_t i = 0; i < n; i++)
        h[i] = cvt(x[i]);
}
static inline float half_vec_dot(int64_t n, const void *x, const void *y, float (*cvt)(uint16_t))
{
    const uint16_t *h = x;
    const float *b = y;
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)cvt(h[i]) * b[i];
    return (float)s;
}
/* The three row functions of a 16-bit float type. */
#define HALF_ROWS(name, to32, from32)                                                                         \
    static void name##_to_float(const void *x, float *y, int64_t n)                                           \
    {                                                                                                         \
        half_to_float(x, y, n, to32);                                                                         \
    }                                                                                                         \
    static void name##_from_float(const float *x, void *y, int64_t n)                                         \
    {                                                                                                         \
        half_from_float(x, y, n, from32);                                                                     \
    }                                                                                                         \
    static float name##_vec_dot(int64_t n, const void *x, const void *y)                                      \
    {                                                                                                         \
        return half_vec_dot(n, x, y, to32);                                                                   \
    }
HALF_ROWS(f16, fp16_to_fp32, fp32_to_fp16)
HALF_ROWS(bf16, bf16_to_fp32, fp32_to_bf16)

void kern_register_ref_float(struct kern_table *t)
{
    struct kern_type_ops *tab = t->type;
    tab[GGML_TYPE_F32] = (struct kern_type_ops){f32_to_float, f32_from_float, f32_from_float, f32_vec_dot,
                                                GGML_TYPE_F32};
    tab[GGML_TYPE_F16] = (struct kern_type_ops){f16_to_float, f16_from_float, f32_from_float, f16_vec_dot,
                                                GGML_TYPE_F32};
    tab[GGML_TYPE_BF16] = (struct kern_type_ops){bf16_to_float, bf16_from_float, f32_from_float, bf16_vec_dot,
                                                 GGML_TYPE_F32};
}

/* ---- the variants ---- */
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

static bool cpu_any(void)
{
    return true;
}

/* AVX2 with FMA and F16C (the flags *_avx2.c files are compiled with). */
static bool cpu_avx2(void)
{
    unsigned a, b, c, d;
    if (!os_saves_ymm() || !__get_cpuid(1, &a, &b, &c, &d))
        return false;
    bool fma = c & bit_FMA, f16c = c & bit_F16C;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return false;
    return (b & bit_AVX2) && fma && f16c;
}

/* AVX-VNNI (CPUID leaf 7 subleaf 1, EAX bit 4: the VEX-encoded vpdpbusd on
 * xmm / ymm) on top of everything cpu_avx2 asks for; ymm state is all it
 * needs from the OS. */
static bool cpu_avxvnni(void)
{
    unsigned a, b, c, d;
    if (!cpu_avx2() || !__get_cpuid_count(7, 0, &a, &b, &c, &d) || a < 1)
        return false;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d))
        return false;
    return (a >> 4) & 1;
}

/* AVX-512 F, BW, VL and DQ with VNNI (the flags *_avx512.c files are
 * compiled with), on top of everything cpu_avx2 asks for, and an OS that
 * saves the opmask and zmm state (XCR0 bits 5-7 as well as 1-2). */
static bool cpu_avx512(void)
{
    unsigned a, b, c, d;
    if (!cpu_avx2() || !__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return false;
    const unsigned need_b = bit_AVX512F | bit_AVX512BW | bit_AVX512VL | bit_AVX512DQ;
    if ((b & need_b) != need_b || !(c & bit_AVX512VNNI))
        return false;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    return (lo & 0xe6) == 0xe6;
}

/* AMX-TILE and AMX-INT8 that this process may use and that run
 * (kern_cpu_amx), on top of everything cpu_avx512 asks for. */
static bool cpu_amx(void)
{
    return cpu_avx512() && kern_cpu_amx();
}

/* In order of preference from the lowest. A new instruction set is one
 * entry here: its CPUID check and its register function, which is applied
 * to the reference table (it may call another variant's register function
 * first to build on it). */
static const struct kern_variant {
    const char *name;
    bool (*supported)(void);
    void (*register_fn)(struct kern_table *tab); /* NULL: the reference alone */
} variants[] = {
    {"ref", cpu_any, NULL},
    {"avx2", cpu_avx2, kern_register_avx2},
    {"avxvnni", cpu_avxvnni, kern_register_avxvnni},
    {"avx512", cpu_avx512, kern_register_avx512},
    {"amx", cpu_amx, kern_register_amx},
};
#define N_VARIANTS ((int)(sizeof variants / sizeof *variants))

int kern_variant_count(void)
{
    return N_VARIANTS;
}

const char *kern_variant_name(int i)
{
    return i >= 0 && i < N_VARIANTS ? variants[i].name : NULL;
}

bool kern_variant_supported(int i)
{
    return i >= 0 && i < N_VARIANTS && variants[i].supported();
}

const char *kern_variant_current(void)
{
    kernels_init();
    return variants[cur_variant].name;
}

static void build_table(struct kern_table *tab, int v)
{
    memset(tab, 0, sizeof *tab);
    kern_register_ref_float(tab);
    kern_register_ref_quants(tab);
    kern_register_ref_ops(tab);
    kern_register_ref_attn(tab);
    kern_register_ref_probes(tab);
    if (variants[v].register_fn)
        variants[v].register_fn(tab);
}

/* The index of the named variant, or -1 with the reason in e. */
static int find_variant(const char *name, struct err *e)
{
    for (int i = 0; i < N_VARIANTS; i++) {
        if (strcmp(name, variants[i].name) != 0)
            continue;
        if (!variants[i].supported())
            return err_set(e, ERR_UNAVAILABLE, "kernel variant '%s' is not supported by this CPU", name);
        return i;
    }
    char known[128] = "";
    for (int i = 0; i < N_VARIANTS; i++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", variants[i].name);
    return err_set(e, ERR_NOT_FOUND, "unknown kernel variant '%s' (known: %s)", name, known);
}

static void init_once_fn(void)
{
    int best = 0;
    for (int i = 0; i < N_VARIANTS; i++)
        if (variants[i].supported())
            best = i;
    const char *env = getenv("MAAS_KERNELS");
    int v = best;
    if (env && *env) {
        v = find_variant(env, &init_err);
        if (v < 0) {
            err_prefix(&init_err, "MAAS_KERNELS");
            init_err.code = ERR_INVALID;
            v = best;
        }
    }
    build_table(&kern_best, best);
    build_table(&kern_tab, v);
    cur_variant = v;
}

int kern_init(struct err *e)
{
    pthread_once(&init_once, init_once_fn);
    if (init_err.code == ERR_OK)
        return 0;
    return err_set(e, init_err.code, "%s", init_err.msg);
}

void kernels_init(void)
{
    static atomic_bool reported;
    if (kern_init(NULL) < 0 && !atomic_exchange(&reported, true))
        log_error("%s; using '%s'", init_err.msg, variants[cur_variant].name);
}

int kern_use_variant(const char *name, struct err *e)
{
    kernels_init();
    int v = find_variant(name, e);
    if (v < 0)
        return -1;
    build_table(&kern_tab, v);
    cur_variant = v;
    return 0;
}

const struct kern_type_ops *kern_ops(enum ggml_type t)
{
    kernels_init();
    if ((unsigned)t >= GGML_TYPE_COUNT)
        return NULL;
    return &kern_tab.type[t];
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
