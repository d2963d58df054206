/* libFuzzer target for the GGUF reader: any bytes either open cleanly or are
 * refused with a message; an opened file is walked completely (every kv, every
 * array element, every tensor byte) so that ASan sees any pointer the
 * validation should not have let through. */
#include "gguf/gguf.h"

#include <stdint.h>
#include <string.h>

static volatile uint64_t sink;

/* The bits of a double: casting a NaN or huge value to an integer is undefined. */
static uint64_t float_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static void walk(const struct gguf_file *f)
{
    uint64_t h = gguf_version(f) + gguf_alignment(f) + gguf_data_offset(f) + gguf_size(f);
    for (size_t i = 0; i < gguf_n_kv(f); i++) {
        const struct gguf_kv *kv = gguf_kv_at(f, i);
        MAAS_ASSERT(gguf_find_kv(f, kv->key) == kv);
        h += strlen(kv->key);
        struct err e;
        int64_t iv;
        double dv;
        bool bv;
        struct gguf_str sv;
        const struct gguf_kv *av;
        h += (uint64_t)gguf_get_int(f, kv->key, &iv, &e) + (uint64_t)gguf_get_float(f, kv->key, &dv, &e) +
             (uint64_t)gguf_get_bool(f, kv->key, &bv, &e) + (uint64_t)gguf_get_str(f, kv->key, &sv, &e) +
             (uint64_t)gguf_get_arr(f, kv->key, GGUF_VT_COUNT, &av, &e);
        if (kv->type == GGUF_VT_STRING) {
            for (uint64_t j = 0; j < kv->str.len; j++)
                h += (uint8_t)kv->str.ptr[j];
        } else if (kv->type == GGUF_VT_ARRAY) {
            for (uint64_t j = 0; j < kv->arr_n; j++) {
                if (kv->arr_type == GGUF_VT_STRING)
                    for (uint64_t k = 0; k < kv->arr_strs[j].len; k++)
                        h += (uint8_t)kv->arr_strs[j].ptr[k];
                else
                    h += (uint64_t)gguf_arr_int(kv, j) + float_bits(gguf_arr_float(kv, j));
            }
        } else {
            h += (uint64_t)gguf_kv_int(kv) + float_bits(gguf_kv_float(kv));
        }
    }
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        MAAS_ASSERT(gguf_find_tensor(f, t->name) == t);
        MAAS_ASSERT(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS && gguf_tensor_nelements(t) > 0);
        MAAS_ASSERT(t->nbytes == ggml_row_size(t->type, t->ne[0]) * (uint64_t)(gguf_tensor_nelements(t) / t->ne[0]));
        MAAS_ASSERT(gguf_data_offset(f) + t->offset + t->nbytes <= gguf_size(f));
        const uint8_t *d = t->data;
        for (uint64_t j = 0; j < t->nbytes; j++)
            h += d[j];
    }
    sink = h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct err e;
    e.msg[0] = '\0';
    struct gguf_file *f = gguf_open_mem(data, size, "fuzz.gguf", &e);
    if (f) {
        walk(f);
        gguf_close(f);
    } else {
        MAAS_ASSERT(strncmp(e.msg, "fuzz.gguf: ", 11) == 0 && !strchr(e.msg, '\n'));
    }
    return 0;
}
