/*
 * hash.c — FNV-1a (Fowler/Noll/Vo), the program's one hash. Not for
 * adversaries: the tables that hash untrusted strings (vocabularies, GGUF
 * keys) are built from files the operator chose, not from requests.
 */
#include "core.h"

#define FNV64_PRIME 0x100000001b3ull
#define FNV32_BASIS 2166136261u
#define FNV32_PRIME 16777619u

uint64_t hash_fnv1a64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= FNV64_PRIME;
    }
    return h;
}

uint32_t hash_fnv1a32(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint32_t h = FNV32_BASIS;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= FNV32_PRIME;
    }
    return h;
}
