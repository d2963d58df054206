/* The name index of gguf_int.h: linear probing over a power-of-two table kept
 * at most half full, FNV-1a hashes. */
#include "gguf/gguf_int.h"

#include <stdlib.h>
#include <string.h>

uint32_t nidx_hash(const char *s, size_t len)
{
    return hash_fnv1a32(s, len);
}

int nidx_reserve(struct nidx *x, size_t n)
{
    if (n <= x->cap / 2)
        return 0;
    if (n > SIZE_MAX / 4 / sizeof(struct nidx_slot))
        return -1;
    size_t cap = 16;
    while (cap / 2 < n)
        cap *= 2;
    struct nidx_slot *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -1;
    /* Re-place the old entries by their stored hashes. */
    for (size_t i = 0; i < x->cap; i++) {
        if (!x->slots[i].idx1)
            continue;
        size_t j = x->slots[i].hash & (cap - 1);
        while (slots[j].idx1)
            j = (j + 1) & (cap - 1);
        slots[j] = x->slots[i];
    }
    free(x->slots);
    x->slots = slots;
    x->cap = cap;
    return 0;
}

void nidx_release(struct nidx *x)
{
    free(x->slots);
    x->slots = NULL;
    x->cap = x->n = 0;
}

int64_t nidx_find(const struct nidx *x, const char *s, size_t len, nidx_eq_fn eq, const void *ctx)
{
    if (!x->cap)
        return -1;
    uint32_t h = nidx_hash(s, len);
    for (size_t j = h & (x->cap - 1);; j = (j + 1) & (x->cap - 1)) {
        const struct nidx_slot *sl = &x->slots[j];
        if (!sl->idx1)
            return -1;
        if (sl->hash == h && eq(ctx, sl->idx1 - 1, s, len))
            return (int64_t)sl->idx1 - 1;
    }
}

void nidx_insert(struct nidx *x, uint32_t hash, uint32_t idx)
{
    MAAS_ASSERT(x->cap && x->n < x->cap / 2 + 1);
    size_t j = hash & (x->cap - 1);
    while (x->slots[j].idx1)
        j = (j + 1) & (x->cap - 1);
    x->slots[j].hash = hash;
    x->slots[j].idx1 = idx + 1;
    x->n++;
}

size_t gguf_vtype_size(enum gguf_vtype t)
{
    switch (t) {
    case GGUF_VT_UINT8: case GGUF_VT_INT8: case GGUF_VT_BOOL: return 1;
    case GGUF_VT_UINT16: case GGUF_VT_INT16: return 2;
    case GGUF_VT_UINT32: case GGUF_VT_INT32: case GGUF_VT_FLOAT32: return 4;
    case GGUF_VT_UINT64: case GGUF_VT_INT64: case GGUF_VT_FLOAT64: return 8;
    default: return 0;
    }
}
