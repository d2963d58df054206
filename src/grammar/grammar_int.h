/*
 * grammar internals: the compiled form of a grammar shared by gbnf.c (which
 * builds it), match.c (which runs it) and the mask cache.
 *
 * A grammar is a flat array of elements. Each alternative of each rule is a
 * run of elements ending with GE_END; rule r's alternatives start at
 * elems[alt_start[rule_first[r] .. rule_first[r] + rule_n_alts[r])]. An
 * element is either a set of code points (GE_CHARS: sorted, disjoint,
 * inclusive ranges ranges[2*a .. 2*(a+n)), never containing surrogates) or a
 * reference to a rule (GE_RULE: a = rule id). Repetition and grouping have
 * been rewritten into generated rules by the parser, so the matcher only
 * knows sequences, alternatives and references.
 */
#ifndef MAAS_GRAMMAR_INT_H
#define MAAS_GRAMMAR_INT_H

#include "grammar/grammar.h"

#include <pthread.h>
#include <stdatomic.h>

enum { GE_END = 0, GE_CHARS = 1, GE_RULE = 2 };

struct gelem {
    int32_t type;
    int32_t a;   /* GE_CHARS: first range; GE_RULE: rule id */
    int32_t n;   /* GE_CHARS: number of ranges */
};

/* One cached allowed-token mask: for one stack (and pending UTF-8 bytes)
 * against one vocabulary. */
struct gcache_entry {
    uint64_t hash;
    const struct grammar_vocab *v;  /* borrowed: the key's vocabulary */
    int32_t *key;                   /* from malloc: n_key ints (stack, then partial state) */
    int n_key;
    uint32_t *mask;                 /* from malloc: the vocabulary's words */
};

struct grammar {
    struct gelem *elems;      /* from malloc: n_elems */
    int n_elems;
    uint32_t *ranges;         /* from malloc: 2 per range */
    int n_ranges;
    int32_t *alt_start;       /* from malloc: one element index per alternative */
    int32_t *rule_first;      /* from malloc: n_rules */
    int32_t *rule_n_alts;     /* from malloc: n_rules */
    char **rule_name;         /* from malloc: n_rules names (each from malloc) */
    int n_rules;
    int root;
    atomic_int refs;
    char **ctl_text;          /* from malloc: n_ctl texts of control tokens allowed (grammar_allow_control) */
    int n_ctl;
    char *trig[3];            /* from malloc or NULL (grammar_set_trigger): the trigger, the open and the close of
                                 the spans where it is not looked for */
    bool skip_start;          /* the output starts inside such a span */

    /* the mask cache, under mu: an open-addressed table of cache_cap slots */
    pthread_mutex_t mu;
    struct gcache_entry *cache; /* from malloc, or NULL until the first insert */
    int cache_cap, cache_len;
    size_t cache_bytes;
};

/* The most bytes the mask cache of one grammar may hold. */
#define GRAMMAR_CACHE_BYTES ((size_t)64 << 20)

/* True when code point c is in the element's ranges. */
static inline bool gelem_has(const struct grammar *g, const struct gelem *x, uint32_t c)
{
    const uint32_t *r = g->ranges + 2 * (size_t)x->a;
    int lo = 0, hi = x->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (c < r[2 * mid])
            hi = mid;
        else if (c > r[2 * mid + 1])
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

/* True when some code point in [lo, hi] is in the element's ranges. */
static inline bool gelem_meets(const struct grammar *g, const struct gelem *x, uint32_t lo, uint32_t hi)
{
    const uint32_t *r = g->ranges + 2 * (size_t)x->a;
    for (int i = 0; i < x->n; i++)
        if (r[2 * i] <= hi && r[2 * i + 1] >= lo)
            return true;
    return false;
}

void grammar_cache_release(struct grammar *g);

#endif
