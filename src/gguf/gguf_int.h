/*
 * gguf_int.h — declarations shared only inside the gguf module.
 *
 * A name index: an open-addressing hash table from a byte string (a key or a
 * tensor name) to its position in an array. Slots keep the full 32-bit hash,
 * so the table can grow without looking at the names again; the caller
 * supplies the comparison because the reader compares against spans in the
 * mapping and the writer against its own copies.
 */
#ifndef MAAS_GGUF_INT_H
#define MAAS_GGUF_INT_H

#include "gguf/gguf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "maas reads and writes GGUF files on little-endian hosts only"
#endif

struct nidx_slot {
    uint32_t hash;
    uint32_t idx1; /* index + 1; 0 marks an empty slot */
};

struct nidx {
    struct nidx_slot *slots; /* from malloc; cap entries */
    size_t cap;              /* a power of two, or 0 */
    size_t n;
};

/* Does entry idx have the name (s, len)? */
typedef bool (*nidx_eq_fn)(const void *ctx, uint32_t idx, const char *s, size_t len);

uint32_t nidx_hash(const char *s, size_t len);
/* Makes room for n entries in total. 0, or -1 on out of memory. */
int nidx_reserve(struct nidx *x, size_t n);
void nidx_release(struct nidx *x);
/* Index of the entry named (s, len), or -1. */
int64_t nidx_find(const struct nidx *x, const char *s, size_t len, nidx_eq_fn eq, const void *ctx);
/* Adds entry idx (not present; room reserved). */
void nidx_insert(struct nidx *x, uint32_t hash, uint32_t idx);

#endif
