/*
 * engine internals shared between engine.c (API, thread, scheduler) and
 * prefix.c (the prefix cache). Everything here belongs to the engine thread.
 */
#ifndef MAAS_ENGINE_INT_H
#define MAAS_ENGINE_INT_H

#include "engine/engine.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * The prefix cache indexes full KV blocks by a hash chain: the hash of block
 * i is H(hash of block i-1, tokens of block i), so it stands for the whole
 * token prefix up to the block's end. Each registered block also records
 * the tokens it holds, a unique id (never reused) and the id of the entry it
 * follows; a lookup checks hash, tokens and parent id, so a match is exact
 * by induction (a hash collision can only cost a miss, never a wrong hit).
 *
 * References: the cache holds one reference on every registered block, and
 * sequences take theirs through pcache_ref / pcache_unref. A registered block
 * that only the cache holds is evictable and sits in an LRU list; pcache_alloc
 * evicts the least recently released one when the free list is empty.
 * Entry arrays are indexed by block id (a block is registered at most once),
 * all allocated by pcache_init.
 */
struct pcache {
    struct kv_cache *kv;          /* borrowed */
    int n_blocks, block_size;
    uint64_t next_uid;            /* ids start at 1; 0 is the root (no parent) */
    bool *reg;                    /* from malloc: registered */
    uint64_t *hash, *uid, *parent_uid; /* from malloc, per block */
    int32_t *toks;                /* from malloc: (n_blocks, block_size) tokens of each registered block */
    int *chain;                   /* from malloc: next block in the same hash bucket, -1 ends */
    int *bucket;                  /* from malloc: first block of each bucket, -1 if none */
    uint64_t mask;                /* buckets - 1 (a power of two) */
    int *lru_prev, *lru_next;     /* from malloc: LRU list links, -1 ends */
    bool *in_lru;                 /* from malloc */
    int lru_head, lru_tail;       /* head: least recent */
    int n_lru;                    /* evictable blocks */
    uint64_t n_evicted;
};

#define PCACHE_ROOT_HASH 0x6a09e667f3bcc908ull

int pcache_init(struct pcache *c, struct kv_cache *kv, struct err *e);
void pcache_release(struct pcache *c);
uint64_t pcache_hash(uint64_t prev, const int32_t *toks, int n);
/* The registered block following parent_uid whose tokens are toks (hash
 * being pcache_hash(parent's hash, toks)), or -1. */
int pcache_find(const struct pcache *c, uint64_t hash, uint64_t parent_uid, const int32_t *toks);
/* Registers block b (held by the caller, full, not registered) with its
 * tokens; the cache takes a reference. Returns the entry's id. */
uint64_t pcache_insert(struct pcache *c, int b, uint64_t hash, uint64_t parent_uid, const int32_t *toks);
void pcache_ref(struct pcache *c, int b);   /* a sequence takes block b */
void pcache_unref(struct pcache *c, int b); /* a sequence drops block b */
/* A free block with one reference (the caller's), evicting the least
 * recently used cached block if needed; -1 when none can be had. */
int pcache_alloc(struct pcache *c);

/*
 * Weighted fair admission (fair.c). A class is the requests of one account
 * (key "" for requests without one); it exists while it has members
 * (sequences queued or running). Charges are tokens processed; v = tokens /
 * weight. fcfs turns the policy into first come, first served (pick the
 * oldest, preempt the youngest) for comparison. Engine thread only.
 */
#define FAIR_KEY_MAX 64
struct fair_class {
    char key[FAIR_KEY_MAX];
    int weight;                   /* >= 1: the latest weight a member was submitted with */
    double vtime;                 /* virtual time: tokens processed / weight, raised on rejoining */
    uint64_t tokens;              /* tokens processed while the class existed */
    int members, n_queued, n_running;
    /* fair_split's scratch, valid during one call: */
    int sp_first;                 /* the class's first position in cls[] */
    int sp_want, sp_got;          /* prompt tokens its sequences want this step; tokens granted */
    double sp_frac;               /* the fraction of a token its share lost to rounding */
};
struct fair {
    bool fcfs;
    struct fair_class *cls;       /* from calloc: cap slots; a slot with no members is free */
    int cap;                      /* at least the most sequences the engine holds */
    double vfloor;                /* the least v of present classes when last computed (only grows) */
};
int fair_init(struct fair *f, int cap, bool fcfs, struct err *e);
void fair_release(struct fair *f);
/* A new waiting member of class key (created if absent) with this weight
 * (< 1 counts as 1); returns the class index. A class that had nothing
 * waiting has its v raised to the least v of the other present classes. */
int fair_join(struct fair *f, const char *key, int weight);
void fair_admitted(struct fair *f, int c);   /* a member of c went from waiting to running */
void fair_preempted(struct fair *f, int c);  /* ... and back */
void fair_leave(struct fair *f, int c, bool running); /* a member finished (running or waiting) */
void fair_charge(struct fair *f, int c, int tokens);  /* c had tokens processed */
void fair_reserve(struct fair *f, int c, double vdelta); /* adds vdelta (may be < 0) to c's v */
/* The position (0..n-1) of the waiting sequence to admit next, given the
 * class of each in queue order (n >= 1): the first of the class with the
 * least v (ties: fewer running, then earlier); 0 under fcfs. */
int fair_pick(const struct fair *f, const int *cls, int n);
/* The running sequence to preempt, given the class of each in admission
 * order (oldest first, n >= 1): the youngest of the class with the greatest
 * v; n - 1 under fcfs. */
int fair_victim(const struct fair *f, const int *cls, int n);
/* When every slot is taken (n running = the engine's max_running): the
 * running sequence that makes room for the class `waiting` (the next
 * pick), given the class of each running sequence in admission order and
 * the work each would lose if preempted (lost[i] tokens to recompute), or
 * -1. The waiting class must have no slot, or stay within its weighted
 * share of the max_running slots (among the present classes) with one
 * more; the giver is the other running class with the greatest v (ties:
 * the one running more), which must not be behind it in v (at fair_pick's
 * ties it runs more), hold at least 2 slots and stay at or
 * above its own share with one less. The giver's sequence that loses the
 * least is chosen (the youngest on ties). A light tenant then starts within
 * a step instead of waiting for a flood's request to end; as both sides
 * stay on their side of their shares, no two classes take a slot back and
 * forth. -1 under fcfs. */
int fair_yield(const struct fair *f, int waiting, const int *cls, const int *lost, int n, int max_running);
/* One step's prefill budget among n running sequences, given the class of
 * each in admission order (oldest first) and in tok[i] the prompt tokens it
 * still has to compute (0 when it has none); tok[i] becomes its chunk. The
 * classes with prompt work share the budget in proportion to their weights,
 * a class wanting less than its share taking only what it wants and the
 * rest going to the others by weight (work-conserving; tokens lost to
 * rounding go to the largest fractions, ties to the class of the older
 * sequence); inside a class, oldest first. Under fcfs, oldest first across
 * classes. Returns the tokens granted: min(budget, the sum wanted). */
int fair_split(struct fair *f, const int *cls, int *tok, int n, int budget);

/*
 * Embedding requests (embedq.c). A job is made by engine_embed on the
 * caller's thread, appended to the queue under the engine's mutex, and
 * waited for on its own condition variable. The engine thread moves
 * submitted jobs to its work list and runs embedq_run between steps.
 */
struct embed_job {
    const int32_t *const *inputs; /* borrowed from the caller, who waits */
    const int *lens;
    int n_inputs;
    float *out;                   /* the caller's: n_inputs rows of model_embed_n_out floats */
    int next_input;               /* engine thread: first input not yet in a pass */
    int n_done;                   /* engine thread: inputs embedded */
    double compute_s;             /* engine thread: its share of the passes */
    bool finished;                /* under the engine's mu */
    struct err err;               /* code ERR_OK unless it failed; written before finished */
    pthread_cond_t cv;            /* signalled when finished */
    struct embed_job *next;
};
struct embed_queue {
    struct embed_job *head, *tail;  /* under the engine's mu: submitted, not yet taken */
    int n, max;                     /* under mu: jobs submitted and not finished; the most allowed */
    struct embed_job *work;         /* engine thread: taken, not finished (FIFO linked by next) */
    /* engine thread scratch, grown on demand (from malloc): */
    const int32_t **seqs;
    int *lens;
    struct embed_job **owner;       /* the job of each input of a pass */
    int *idx;                       /* the input's index in its job */
    size_t cap_seqs, cap_lens, cap_owner, cap_idx;
};
void embedq_init(struct embed_queue *q, int max);
void embedq_release(struct embed_queue *q);
/* Caller thread: submits j and waits for it. 0 or -1 (j->err says why). */
int embedq_submit(struct embed_queue *q, pthread_mutex_t *mu, pthread_cond_t *eng_cv, const bool *stop,
                  struct embed_job *j);
/* Under mu: whether there is work. */
bool embedq_pending(const struct embed_queue *q);
/* Engine thread: one pass over at most max_tokens tokens of the waiting
 * inputs (oldest job first); adds its wall time to *busy_s and times
 * n_threads to *busy_core_s. Nothing when there is no work. */
void embedq_run(struct embed_queue *q, pthread_mutex_t *mu, struct model *m, int max_tokens, int n_threads,
                double *busy_s, double *busy_core_s);
/* Engine thread, shutting down: every job fails with ERR_UNAVAILABLE. */
void embedq_cancel_all(struct embed_queue *q, pthread_mutex_t *mu);

#endif
