/*
 * Weighted fair admission across classes of requests (accounts), by virtual
 * time measured in tokens processed. See engine_int.h for the contract.
 *
 * Each class c has a weight w_c and a virtual time v_c: the tokens the
 * engine processed for it (prompt chunks and decoded tokens) divided by w_c.
 * The engine charges a sequence's work when it admits it — the prompt
 * tokens it must compute plus max_tokens, at the class's weight then — and
 * gives back what was not done when it finishes or is preempted, so that
 * several admissions in one step already interleave by weight, and over time
 * v counts the tokens actually processed. Admission serves the class with the least v
 * among those with a request waiting (ties: fewer running sequences, then
 * queue order), FCFS inside a class. A class that starts waiting after a
 * pause (nothing of it queued) has its v raised to the least v of the other
 * classes present, so an idle or under-using class carries no credit and a
 * newcomer neither starves others nor is starved. Work-conserving: whenever
 * a slot is free and anything waits, something is admitted. Preemption
 * takes the youngest sequence of the running class with the greatest v (the
 * one most above its share). When every slot is taken and the next pick's
 * class has none, the youngest sequence of a class above its share of the
 * slots makes room for it (fair_yield).
 */
#include "engine/engine_int.h"

#include <string.h>

int fair_init(struct fair *f, int cap, bool fcfs, struct err *e)
{
    memset(f, 0, sizeof *f);
    f->fcfs = fcfs;
    f->cap = cap;
    f->cls = calloc((size_t)cap, sizeof *f->cls);
    if (!f->cls)
        return err_set(e, ERR_NOMEM, "engine: out of memory for %d scheduling classes", cap), -1;
    return 0;
}

void fair_release(struct fair *f)
{
    free(f->cls);
    f->cls = NULL;
}

/* The least v over classes with members, other than skip; f->vfloor (which
 * only grows) when there are none. */
static double fair_floor(struct fair *f, int skip)
{
    bool any = false;
    double m = 0;
    for (int i = 0; i < f->cap; i++) {
        const struct fair_class *c = &f->cls[i];
        if (i == skip || c->members == 0)
            continue;
        if (!any || c->vtime < m)
            m = c->vtime;
        any = true;
    }
    if (any && m > f->vfloor)
        f->vfloor = m;
    return any ? m : f->vfloor;
}

int fair_join(struct fair *f, const char *key, int weight)
{
    int c = -1, free_slot = -1;
    for (int i = 0; i < f->cap; i++) {
        if (f->cls[i].members == 0) {
            if (free_slot < 0)
                free_slot = i;
        } else if (!strcmp(f->cls[i].key, key)) {
            c = i;
            break;
        }
    }
    if (c < 0) {
        MAAS_ASSERT(free_slot >= 0);
        c = free_slot;
        struct fair_class *n = &f->cls[c];
        memset(n, 0, sizeof *n);
        snprintf(n->key, sizeof n->key, "%s", key);
        n->vtime = fair_floor(f, c);
    } else if (f->cls[c].n_queued == 0) {
        double fl = fair_floor(f, c);
        if (f->cls[c].vtime < fl)
            f->cls[c].vtime = fl;
    }
    struct fair_class *k = &f->cls[c];
    k->weight = weight >= 1 ? weight : 1;
    k->members++;
    k->n_queued++;
    return c;
}

void fair_admitted(struct fair *f, int c)
{
    f->cls[c].n_queued--;
    f->cls[c].n_running++;
}

void fair_preempted(struct fair *f, int c)
{
    f->cls[c].n_running--;
    f->cls[c].n_queued++;
}

void fair_leave(struct fair *f, int c, bool running)
{
    struct fair_class *k = &f->cls[c];
    if (running)
        k->n_running--;
    else
        k->n_queued--;
    k->members--;
    MAAS_ASSERT(k->members >= 0 && k->n_running >= 0 && k->n_queued >= 0);
    if (k->members == 0) {
        if (k->vtime > f->vfloor && fair_floor(f, c) >= k->vtime)
            f->vfloor = k->vtime;
        k->key[0] = 0;
    }
}

void fair_charge(struct fair *f, int c, int tokens)
{
    struct fair_class *k = &f->cls[c];
    k->tokens += (uint64_t)tokens;
    k->vtime += (double)tokens / k->weight;
}

void fair_reserve(struct fair *f, int c, double vdelta)
{
    f->cls[c].vtime += vdelta;
}

/* Whether class a goes before class b (a != b). */
static bool fair_before(const struct fair *f, int a, int b)
{
    const struct fair_class *x = &f->cls[a], *y = &f->cls[b];
    if (x->vtime != y->vtime)
        return x->vtime < y->vtime;
    return x->n_running < y->n_running;
}

int fair_pick(const struct fair *f, const int *cls, int n)
{
    if (f->fcfs || n <= 0)
        return 0;
    int best = 0;
    for (int i = 1; i < n; i++)
        if (cls[i] != cls[best] && fair_before(f, cls[i], cls[best]))
            best = i;
    return best;
}

int fair_victim(const struct fair *f, const int *cls, int n)
{
    if (f->fcfs || n <= 0)
        return n - 1;
    int v = n - 1;
    for (int i = n - 2; i >= 0; i--)
        if (cls[i] != cls[v] && f->cls[cls[i]].vtime > f->cls[cls[v]].vtime)
            v = i;
    return v;
}

/* m compared with c's weighted share of the slots: the sign of
 * m - slots * w_c / wsum (wsum: the weights of the present classes). */
static int share_cmp(const struct fair *f, int c, int m, int slots, double wsum)
{
    double l = (double)m * wsum, r = (double)slots * f->cls[c].weight;
    return l < r ? -1 : l > r;
}

int fair_yield(const struct fair *f, int waiting, const int *cls, const int *lost, int n, int max_running)
{
    const struct fair_class *w = &f->cls[waiting];
    if (f->fcfs || n <= 0 || n < max_running)
        return -1;
    double wsum = 0;
    for (int i = 0; i < f->cap; i++)
        if (f->cls[i].members > 0)
            wsum += f->cls[i].weight;
    /* the waiting class has no slot, or one more leaves it within its share */
    if (w->n_running > 0 && share_cmp(f, waiting, w->n_running + 1, max_running, wsum) > 0)
        return -1;
    /* the giver: the other running class with the greatest v (ties: the
     * one running more); not behind the waiting one in v (at fair_pick's
     * ties it runs more), and one less leaves it at or above its share */
    int vc = -1;
    for (int i = 0; i < n; i++) {
        const struct fair_class *x = &f->cls[cls[i]];
        if (cls[i] != waiting && (vc < 0 || x->vtime > f->cls[vc].vtime ||
                                  (x->vtime == f->cls[vc].vtime && x->n_running > f->cls[vc].n_running)))
            vc = cls[i];
    }
    if (vc < 0)
        return -1;
    const struct fair_class *k = &f->cls[vc];
    if (k->vtime < w->vtime || k->n_running < 2 || share_cmp(f, vc, k->n_running - 1, max_running, wsum) < 0)
        return -1;
    int v = -1;
    for (int i = n - 1; i >= 0; i--)
        if (cls[i] == vc && (v < 0 || lost[i] < lost[v]))
            v = i;
    return v;
}

/* Oldest first: each sequence takes what it wants of what is left. */
static int split_in_order(int *tok, int n, int budget)
{
    int given = 0;
    for (int i = 0; i < n; i++) {
        int g = tok[i] < budget - given ? tok[i] : budget - given;
        tok[i] = g;
        given += g;
    }
    return given;
}

/* Water filling over the distinct classes of cls[] (those at their
 * sp_first): each round, the classes still wanting more split what is left
 * by weight; a class whose want fits in its share is served in full and
 * the round repeats with the rest; when none fits, each takes the floor of
 * its share and the tokens lost to rounding go to the largest fractions. */
static void split_shares(struct fair *f, const int *cls, int n, int left)
{
    for (;;) {
        double wsum = 0;
        for (int i = 0; i < n; i++) {
            const struct fair_class *k = &f->cls[cls[i]];
            if (k->sp_first == i && k->sp_got < k->sp_want)
                wsum += k->weight;
        }
        if (wsum == 0 || left == 0)
            return;
        int served = 0;
        for (int i = 0; i < n; i++) {
            struct fair_class *k = &f->cls[cls[i]];
            if (k->sp_first != i || k->sp_got >= k->sp_want)
                continue;
            int need = k->sp_want - k->sp_got;
            if (need <= (double)left * k->weight / wsum) {
                k->sp_got = k->sp_want;
                served += need;
            }
        }
        if (served > 0) {
            left -= served;
            continue;
        }
        int given = 0;
        for (int i = 0; i < n; i++) {
            struct fair_class *k = &f->cls[cls[i]];
            if (k->sp_first != i || k->sp_got >= k->sp_want)
                continue;
            double q = (double)left * k->weight / wsum;
            int g = (int)q;
            k->sp_got += g;
            k->sp_frac = q - g;
            given += g;
        }
        /* fewer tokens than classes remain; each fraction is < 1 token of a
         * share below the class's want, so one more token still fits */
        for (; given < left; given++) {
            struct fair_class *best = NULL;
            for (int i = 0; i < n; i++) {
                struct fair_class *k = &f->cls[cls[i]];
                if (k->sp_first == i && k->sp_got < k->sp_want && k->sp_frac >= 0 &&
                    (!best || k->sp_frac > best->sp_frac))
                    best = k;
            }
            MAAS_ASSERT(best != NULL);
            best->sp_got++;
            best->sp_frac = -1; /* one extra token per class at most */
        }
        return;
    }
}

int fair_split(struct fair *f, const int *cls, int *tok, int n, int budget)
{
    if (budget < 0)
        budget = 0;
    if (f->fcfs)
        return split_in_order(tok, n, budget);
    for (int i = 0; i < n; i++) {
        struct fair_class *k = &f->cls[cls[i]];
        k->sp_first = -1;
        k->sp_want = k->sp_got = 0;
        k->sp_frac = -1;
    }
    for (int i = 0; i < n; i++) {
        struct fair_class *k = &f->cls[cls[i]];
        if (k->sp_first < 0)
            k->sp_first = i;
        k->sp_want += tok[i];
    }
    split_shares(f, cls, n, budget);
    int given = 0;
    for (int i = 0; i < n; i++) {
        struct fair_class *k = &f->cls[cls[i]];
        int g = tok[i] < k->sp_got ? tok[i] : k->sp_got;
        tok[i] = g;
        k->sp_got -= g;
        given += g;
    }
    return given;
}
