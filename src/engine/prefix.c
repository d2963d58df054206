/*
 * The prefix cache (see engine_int.h): a chained hash table and an LRU list
 * over the KV blocks, both stored in per-block arrays allocated once, so
 * lookups, registrations and evictions allocate nothing.
 */
#include "engine/engine_int.h"

#include <string.h>

int pcache_init(struct pcache *c, struct kv_cache *kv, struct err *e)
{
    memset(c, 0, sizeof *c);
    c->kv = kv;
    c->n_blocks = kv_n_blocks(kv);
    c->block_size = kv_block_size(kv);
    c->next_uid = 1;
    size_t n = (size_t)c->n_blocks;
    uint64_t nb = 1;
    while (nb < 2 * n)
        nb <<= 1;
    c->mask = nb - 1;
    c->reg = calloc(n, sizeof *c->reg);
    c->in_lru = calloc(n, sizeof *c->in_lru);
    c->hash = malloc(n * sizeof *c->hash);
    c->uid = malloc(n * sizeof *c->uid);
    c->parent_uid = malloc(n * sizeof *c->parent_uid);
    c->toks = malloc(n * (size_t)c->block_size * sizeof *c->toks);
    c->chain = malloc(n * sizeof *c->chain);
    c->bucket = malloc(nb * sizeof *c->bucket);
    c->lru_prev = malloc(n * sizeof *c->lru_prev);
    c->lru_next = malloc(n * sizeof *c->lru_next);
    if (!c->reg || !c->in_lru || !c->hash || !c->uid || !c->parent_uid || !c->toks || !c->chain || !c->bucket ||
        !c->lru_prev || !c->lru_next) {
        pcache_release(c);
        return err_set(e, ERR_NOMEM, "engine: out of memory for the prefix cache index of %d blocks", (int)n);
    }
    for (uint64_t i = 0; i < nb; i++)
        c->bucket[i] = -1;
    c->lru_head = c->lru_tail = -1;
    return 0;
}

void pcache_release(struct pcache *c)
{
    free(c->reg);
    free(c->in_lru);
    free(c->hash);
    free(c->uid);
    free(c->parent_uid);
    free(c->toks);
    free(c->chain);
    free(c->bucket);
    free(c->lru_prev);
    free(c->lru_next);
    memset(c, 0, sizeof *c);
}

/* FNV-1a over the token ids' bytes (little-endian in memory on x86; the
 * hash lives only in this process), seeded with the previous hash, then
 * mixed to spread the bits over the bucket mask. */
uint64_t pcache_hash(uint64_t prev, const int32_t *toks, int n)
{
    return hash_mix64(hash_fnv1a64(prev ^ HASH_FNV64_BASIS, toks, (size_t)n * sizeof *toks));
}

int pcache_find(const struct pcache *c, uint64_t hash, uint64_t parent_uid, const int32_t *toks)
{
    size_t bytes = (size_t)c->block_size * sizeof *toks;
    for (int b = c->bucket[hash & c->mask]; b >= 0; b = c->chain[b])
        if (c->hash[b] == hash && c->parent_uid[b] == parent_uid &&
            !memcmp(c->toks + (size_t)b * c->block_size, toks, bytes))
            return b;
    return -1;
}

static void lru_remove(struct pcache *c, int b)
{
    int p = c->lru_prev[b], n = c->lru_next[b];
    if (p >= 0)
        c->lru_next[p] = n;
    else
        c->lru_head = n;
    if (n >= 0)
        c->lru_prev[n] = p;
    else
        c->lru_tail = p;
    c->in_lru[b] = false;
    c->n_lru--;
}

static void lru_push(struct pcache *c, int b)
{
    c->lru_prev[b] = c->lru_tail;
    c->lru_next[b] = -1;
    if (c->lru_tail >= 0)
        c->lru_next[c->lru_tail] = b;
    else
        c->lru_head = b;
    c->lru_tail = b;
    c->in_lru[b] = true;
    c->n_lru++;
}

uint64_t pcache_insert(struct pcache *c, int b, uint64_t hash, uint64_t parent_uid, const int32_t *toks)
{
    MAAS_ASSERT(!c->reg[b]);
    kv_block_ref(c->kv, b);
    c->reg[b] = true;
    c->hash[b] = hash;
    c->uid[b] = c->next_uid++;
    c->parent_uid[b] = parent_uid;
    memcpy(c->toks + (size_t)b * c->block_size, toks, (size_t)c->block_size * sizeof *toks);
    c->chain[b] = c->bucket[hash & c->mask];
    c->bucket[hash & c->mask] = b;
    return c->uid[b];
}

void pcache_ref(struct pcache *c, int b)
{
    if (c->in_lru[b])
        lru_remove(c, b);
    kv_block_ref(c->kv, b);
}

void pcache_unref(struct pcache *c, int b)
{
    kv_block_unref(c->kv, b);
    if (c->reg[b] && kv_block_refs(c->kv, b) == 1)
        lru_push(c, b);
}

static void evict(struct pcache *c, int b)
{
    lru_remove(c, b);
    int *pp = &c->bucket[c->hash[b] & c->mask];
    while (*pp != b) {
        MAAS_ASSERT(*pp >= 0);
        pp = &c->chain[*pp];
    }
    *pp = c->chain[b];
    c->reg[b] = false;
    c->n_evicted++;
    kv_block_unref(c->kv, b); /* the cache's reference was the last */
}

int pcache_alloc(struct pcache *c)
{
    int b = kv_block_alloc(c->kv);
    if (b < 0 && c->lru_head >= 0) {
        evict(c, c->lru_head);
        b = kv_block_alloc(c->kv);
    }
    return b;
}
