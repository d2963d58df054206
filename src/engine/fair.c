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
 * one most above its share).
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
