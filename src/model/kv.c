/*
 * The paged KV cache: one allocation for K and one for V, cut into blocks
 * of block_size positions (layout in model_int.h), plus a free list and
 * reference counts so that the engine can share full blocks between
 * sequences. Nothing here is allocated after kv_new.
 */
#include "model/model_int.h"

#include <string.h>

/* Bytes of K and V together. */
static size_t kv_bytes(const struct kv_cache *kv)
{
    return 2 * (size_t)kv->n_layer * kv->n_blocks * kv->n_head_kv * kv->block_size * kv->head_dim * kv->elt;
}

struct kv_cache *kv_new_typed(const struct model *m, int n_blocks, int block_size, enum ggml_type type,
                              struct err *e)
{
    const struct model_hparams *hp = model_hparams(m);
    if (n_blocks < 1 || block_size < 1 || block_size > 4096)
        return err_set(e, ERR_INVALID, "kv cache: %d blocks of %d positions (need >= 1 block of 1..4096)", n_blocks, block_size),
               NULL;
    if (type != GGML_TYPE_F16 && type != GGML_TYPE_F32)
        return err_set(e, ERR_INVALID, "kv cache: type %s is not supported (f16 or f32)", ggml_type_name(type)), NULL;
    if ((int64_t)n_blocks * block_size > INT32_MAX)
        return err_set(e, ERR_INVALID, "kv cache: %d blocks of %d positions exceed %d positions", n_blocks, block_size, INT32_MAX),
               NULL;
    struct kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv)
        return err_set(e, ERR_NOMEM, "kv cache: out of memory"), NULL;
    kv->n_layer = hp->n_layer;
    kv->n_head_kv = hp->n_head_kv;
    kv->head_dim = hp->head_dim;
    kv->n_blocks = n_blocks;
    kv->block_size = block_size;
    kv->type = type;
    kv->elt = type == GGML_TYPE_F16 ? 2 : 4;
    size_t bytes = kv_bytes(kv) / 2;
    kv->k = maas_alloc_aligned(bytes);
    kv->v = maas_alloc_aligned(bytes);
    kv->refs = calloc((size_t)n_blocks, sizeof *kv->refs);
    kv->free_list = malloc((size_t)n_blocks * sizeof *kv->free_list);
    if (!kv->k || !kv->v || !kv->refs || !kv->free_list) {
        kv_free(kv);
        return err_set(e, ERR_NOMEM, "kv cache: out of memory for %zu bytes (%d blocks of %d positions)", 2 * bytes, n_blocks,
                       block_size),
               NULL;
    }
    /* Zeroed so that a slot read before it is written holds 0, not garbage
     * (the forward pass never does that; this keeps a misuse harmless). */
    memset(kv->k, 0, bytes);
    memset(kv->v, 0, bytes);
    /* the stack pops block 0 first */
    for (int i = 0; i < n_blocks; i++)
        kv->free_list[i] = n_blocks - 1 - i;
    kv->n_free = n_blocks;
    return kv;
}

struct kv_cache *kv_new(const struct model *m, int n_blocks, int block_size, struct err *e)
{
    return kv_new_typed(m, n_blocks, block_size, GGML_TYPE_F16, e);
}

void kv_free(struct kv_cache *kv)
{
    if (!kv)
        return;
    maas_free_aligned(kv->k);
    maas_free_aligned(kv->v);
    free(kv->refs);
    free(kv->free_list);
    free(kv);
}

int kv_n_blocks(const struct kv_cache *kv)
{
    return kv->n_blocks;
}

int kv_block_size(const struct kv_cache *kv)
{
    return kv->block_size;
}

int kv_block_alloc(struct kv_cache *kv)
{
    if (kv->n_free == 0)
        return -1;
    int b = kv->free_list[--kv->n_free];
    kv->refs[b] = 1;
    return b;
}

void kv_block_ref(struct kv_cache *kv, int block)
{
    MAAS_ASSERT(block >= 0 && block < kv->n_blocks && kv->refs[block] > 0);
    kv->refs[block]++;
}

void kv_block_unref(struct kv_cache *kv, int block)
{
    MAAS_ASSERT(block >= 0 && block < kv->n_blocks && kv->refs[block] > 0);
    if (--kv->refs[block] == 0)
        kv->free_list[kv->n_free++] = block;
}

int kv_block_refs(const struct kv_cache *kv, int block)
{
    MAAS_ASSERT(block >= 0 && block < kv->n_blocks);
    return kv->refs[block];
}

int kv_n_free(const struct kv_cache *kv)
{
    return kv->n_free;
}
