/* The tensor types of the GGUF format: names, block sizes, bytes per block. */
#include "gguf/gguf.h"

#include <strings.h>

struct type_info {
    const char *name;
    int64_t blck;
    size_t size;
};

static const struct type_info types[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = {"f32", 1, 4},         [GGML_TYPE_F16] = {"f16", 1, 2},
    [GGML_TYPE_Q4_0] = {"q4_0", 32, 18},     [GGML_TYPE_Q4_1] = {"q4_1", 32, 20},
    [GGML_TYPE_Q5_0] = {"q5_0", 32, 22},     [GGML_TYPE_Q5_1] = {"q5_1", 32, 24},
    [GGML_TYPE_Q8_0] = {"q8_0", 32, 34},     [GGML_TYPE_Q8_1] = {"q8_1", 32, 36},
    [GGML_TYPE_Q2_K] = {"q2_k", 256, 84},    [GGML_TYPE_Q3_K] = {"q3_k", 256, 110},
    [GGML_TYPE_Q4_K] = {"q4_k", 256, 144},   [GGML_TYPE_Q5_K] = {"q5_k", 256, 176},
    [GGML_TYPE_Q6_K] = {"q6_k", 256, 210},   [GGML_TYPE_Q8_K] = {"q8_k", 256, 292},
    [GGML_TYPE_IQ2_XXS] = {"iq2_xxs", 256, 66}, [GGML_TYPE_IQ2_XS] = {"iq2_xs", 256, 74},
    [GGML_TYPE_IQ3_XXS] = {"iq3_xxs", 256, 98}, [GGML_TYPE_IQ1_S] = {"iq1_s", 256, 50},
    [GGML_TYPE_IQ4_NL] = {"iq4_nl", 32, 18}, [GGML_TYPE_IQ3_S] = {"iq3_s", 256, 110},
    [GGML_TYPE_IQ2_S] = {"iq2_s", 256, 82},  [GGML_TYPE_IQ4_XS] = {"iq4_xs", 256, 136},
    [GGML_TYPE_I8] = {"i8", 1, 1},           [GGML_TYPE_I16] = {"i16", 1, 2},
    [GGML_TYPE_I32] = {"i32", 1, 4},         [GGML_TYPE_I64] = {"i64", 1, 8},
    [GGML_TYPE_F64] = {"f64", 1, 8},         [GGML_TYPE_IQ1_M] = {"iq1_m", 256, 56},
    [GGML_TYPE_BF16] = {"bf16", 1, 2},       [GGML_TYPE_TQ1_0] = {"tq1_0", 256, 54},
    [GGML_TYPE_TQ2_0] = {"tq2_0", 256, 66},  [GGML_TYPE_MXFP4] = {"mxfp4", 32, 17},
};

bool ggml_type_known(uint32_t t)
{
    return t < GGML_TYPE_COUNT && types[t].name != NULL;
}

int64_t ggml_blck_size(enum ggml_type t)
{
    return ggml_type_known((uint32_t)t) ? types[t].blck : 0;
}

size_t ggml_type_size(enum ggml_type t)
{
    return ggml_type_known((uint32_t)t) ? types[t].size : 0;
}

size_t ggml_row_size(enum ggml_type t, int64_t ne0)
{
    MAAS_ASSERT(ggml_type_known((uint32_t)t) && ne0 % types[t].blck == 0);
    return types[t].size * (size_t)(ne0 / types[t].blck);
}

const char *ggml_type_name(enum ggml_type t)
{
    return ggml_type_known((uint32_t)t) ? types[t].name : "?";
}

int ggml_type_from_name(const char *name)
{
    for (int t = 0; t < GGML_TYPE_COUNT; t++)
        if (types[t].name && !strcasecmp(types[t].name, name))
            return t;
    return -1;
}

const char *gguf_vtype_name(enum gguf_vtype t)
{
    static const char *const names[GGUF_VT_COUNT] = {
        [GGUF_VT_UINT8] = "uint8",     [GGUF_VT_INT8] = "int8",     [GGUF_VT_UINT16] = "uint16",
        [GGUF_VT_INT16] = "int16",     [GGUF_VT_UINT32] = "uint32", [GGUF_VT_INT32] = "int32",
        [GGUF_VT_FLOAT32] = "float32", [GGUF_VT_BOOL] = "bool",     [GGUF_VT_STRING] = "string",
        [GGUF_VT_ARRAY] = "array",     [GGUF_VT_UINT64] = "uint64", [GGUF_VT_INT64] = "int64",
        [GGUF_VT_FLOAT64] = "float64",
    };
    return (unsigned)t < GGUF_VT_COUNT ? names[t] : "?";
}
